//! The TCP/UDP wrapper of the DLMS/COSEM transport layer (IEC 62056-47; facts file
//! section 6.3).
//!
//! Every APDU is preceded by an 8-byte header:
//! `version (0x0001) | source wPort | destination wPort | length`, all big-endian
//! u16, where the length counts the APDU bytes that follow. A wPort is the client
//! SAP or the server logical device address. There is no checksum and no
//! delimiter: over TCP the length field alone frames the stream, so after a bad
//! header the stream cannot be resynchronised and the connection must be reset.

use std::fmt;

/// The only wrapper protocol version.
pub const VERSION: u16 = 1;
/// Length of the wrapper header.
pub const HEADER_LEN: usize = 8;
/// The IANA-registered DLMS/COSEM port for TCP and UDP.
pub const DEFAULT_PORT: u16 = 4059;

/// Errors in a wrapper frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WrapperError {
    /// The version field is not 0x0001.
    #[error("{}", bad_version(*.0))]
    BadVersion(u16),
    /// The length field does not match the payload bytes.
    #[error("wrapper length field says {declared} payload byte(s), but there are {actual}")]
    LengthMismatch { declared: usize, actual: usize },
    /// Fewer bytes than the 8-byte header.
    #[error("wrapper frame too short: {len} byte(s), the header alone is 8")]
    TooShort { len: usize },
    /// The declared payload is longer than allowed.
    #[error("wrapper payload of {len} byte(s) declared, at most {max} allowed")]
    TooLong { len: usize, max: usize },
}

/// The message of [`WrapperError::BadVersion`]: the field in hex, and what the
/// bytes more likely are when they start an HDLC frame (flag 7E, frame format
/// type 1010: a meter answering in HDLC on a wrapper connection).
fn bad_version(v: u16) -> String {
    let mut s = format!("wrapper version is 0x{v:04X}, expected 0x0001");
    if v >> 8 == 0x7E && v & 0xF0 == 0xA0 {
        s.push_str(" (the bytes 7E A_ start an HDLC frame, not a wrapper header)");
    }
    s
}

/// A wrapper frame: header fields and the APDU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrapperFrame {
    /// Version field (1 when valid).
    pub version: u16,
    /// Source wPort.
    pub source: u16,
    /// Destination wPort.
    pub destination: u16,
    /// The APDU.
    pub payload: Vec<u8>,
}

impl WrapperFrame {
    /// A version-1 frame.
    pub fn new(source: u16, destination: u16, payload: Vec<u8>) -> Self {
        WrapperFrame {
            version: VERSION,
            source,
            destination,
            payload,
        }
    }

    /// Header and payload. A payload over 65535 bytes gets a wrong length field
    /// (saturated at 65535): callers must keep APDUs within that.
    pub fn encode(&self) -> Vec<u8> {
        RawWrapper {
            version: self.version,
            source: self.source,
            destination: self.destination,
            length: None,
            payload: self.payload.clone(),
        }
        .encode()
    }

    /// Decodes one UDP datagram: exactly one frame, whose length must match exactly.
    pub fn decode_datagram(d: &[u8]) -> Result<WrapperFrame, WrapperError> {
        let header = parse_header(d)?;
        let payload = d.get(HEADER_LEN..).unwrap_or_default();
        if header.length != payload.len() {
            return Err(WrapperError::LengthMismatch {
                declared: header.length,
                actual: payload.len(),
            });
        }
        Ok(WrapperFrame {
            version: header.version,
            source: header.source,
            destination: header.destination,
            payload: payload.to_vec(),
        })
    }
}

impl fmt::Display for WrapperFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wrapper {} -> {} payload {} B",
            self.source,
            self.destination,
            self.payload.len()
        )?;
        if self.version != VERSION {
            write!(f, " (version {})", self.version)?;
        }
        Ok(())
    }
}

/// Any wrapper header, for negative tests (wrong version, wrong length, unknown wPort).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawWrapper {
    /// Version field to send.
    pub version: u16,
    /// Source wPort.
    pub source: u16,
    /// Destination wPort.
    pub destination: u16,
    /// Length field to send; `None` = the payload length.
    pub length: Option<u16>,
    /// Bytes after the header.
    pub payload: Vec<u8>,
}

impl RawWrapper {
    /// Header and payload exactly as described.
    pub fn encode(&self) -> Vec<u8> {
        let length = self
            .length
            .unwrap_or(u16::try_from(self.payload.len()).unwrap_or(u16::MAX));
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        for v in [self.version, self.source, self.destination, length] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&self.payload);
        out
    }
}

impl From<&WrapperFrame> for RawWrapper {
    fn from(f: &WrapperFrame) -> RawWrapper {
        RawWrapper {
            version: f.version,
            source: f.source,
            destination: f.destination,
            length: None,
            payload: f.payload.clone(),
        }
    }
}

struct Header {
    version: u16,
    source: u16,
    destination: u16,
    length: usize,
}

/// Reads and checks the header (version) at the start of `b`.
fn parse_header(b: &[u8]) -> Result<Header, WrapperError> {
    let Some(&[v0, v1, s0, s1, d0, d1, l0, l1]) = b.get(..HEADER_LEN) else {
        return Err(WrapperError::TooShort { len: b.len() });
    };
    let version = u16::from_be_bytes([v0, v1]);
    if version != VERSION {
        return Err(WrapperError::BadVersion(version));
    }
    Ok(Header {
        version,
        source: u16::from_be_bytes([s0, s1]),
        destination: u16::from_be_bytes([d0, d1]),
        length: usize::from(u16::from_be_bytes([l0, l1])),
    })
}

/// Splits a TCP byte stream into wrapper frames: several frames in one read, one frame
/// split across reads. After an error the stream is unsynchronised (the wrapper has no
/// delimiter): the error repeats until [`WrapperDeframer::reset`], and bytes pushed in
/// the meantime are discarded.
#[derive(Debug)]
pub struct WrapperDeframer {
    buf: Vec<u8>,
    max_payload: usize,
    error: Option<WrapperError>,
}

impl WrapperDeframer {
    /// A deframer that rejects a declared payload length above `max_payload`.
    pub fn new(max_payload: usize) -> Self {
        WrapperDeframer {
            buf: Vec::new(),
            max_payload,
            error: None,
        }
    }

    /// Feeds bytes from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.error.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The next complete frame, `None` if more bytes are needed, or the error that
    /// unsynchronised the stream.
    pub fn next_frame(&mut self) -> Option<Result<WrapperFrame, WrapperError>> {
        if let Some(e) = &self.error {
            return Some(Err(e.clone()));
        }
        let header = match parse_header(&self.buf) {
            Ok(h) => h,
            Err(WrapperError::TooShort { .. }) => return None,
            Err(e) => return Some(Err(self.fail(e))),
        };
        if header.length > self.max_payload {
            return Some(Err(self.fail(WrapperError::TooLong {
                len: header.length,
                max: self.max_payload,
            })));
        }
        let end = HEADER_LEN + header.length;
        let payload = self.buf.get(HEADER_LEN..end)?.to_vec();
        self.buf.drain(..end);
        Some(Ok(WrapperFrame {
            version: header.version,
            source: header.source,
            destination: header.destination,
            payload,
        }))
    }

    fn fail(&mut self, e: WrapperError) -> WrapperError {
        self.buf.clear();
        self.error = Some(e.clone());
        e
    }

    /// Forgets buffered bytes and any error (after the connection was reset).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.error = None;
    }

    /// Bytes held while waiting for the rest of a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_bad_version_is_shown_in_hex_and_an_hdlc_frame_is_named() {
        assert_eq!(
            WrapperError::BadVersion(2).to_string(),
            "wrapper version is 0x0002, expected 0x0001"
        );
        // The Gurux Python server answers a bad wrapper frame with the HDLC
        // FRMR 7E A0 07 21 03 97 2B E1 7E on the wrapper connection.
        let e = WrapperFrame::decode_datagram(&hex("7EA0072103972BE17E")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "wrapper version is 0x7EA0, expected 0x0001 (the bytes 7E A_ start an HDLC frame, \
             not a wrapper header)"
        );
    }

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn header_layout() {
        // dlms-facts 6.3: `version 0x0001 | source wPort | destination wPort | length`
        // (Gurux.NET GXDLMS.cs; jDLMS WrapperHeader HEADER_LENGTH = 8). Client SAP 16 to
        // the management logical device 1, a 3-byte payload.
        let f = WrapperFrame::new(16, 1, vec![0xC0, 0x01, 0xC1]);
        let wire = hex("0001 0010 0001 0003 C0 01 C1");
        assert_eq!(f.encode(), wire);
        assert_eq!(WrapperFrame::decode_datagram(&wire), Ok(f.clone()));
        assert_eq!(f.to_string(), "wrapper 16 -> 1 payload 3 B");
        assert_eq!(HEADER_LEN, 8);
        assert_eq!(DEFAULT_PORT, 4059);
        assert_eq!(RawWrapper::from(&f).encode(), wire);
        // An empty payload is a valid frame.
        let e = WrapperFrame::new(1, 16, vec![]);
        assert_eq!(WrapperFrame::decode_datagram(&e.encode()), Ok(e));
    }

    #[test]
    fn rejects_bad_version() {
        let raw = RawWrapper {
            version: 2,
            source: 16,
            destination: 1,
            length: None,
            payload: vec![1],
        };
        assert_eq!(
            WrapperFrame::decode_datagram(&raw.encode()),
            Err(WrapperError::BadVersion(2))
        );
    }

    #[test]
    fn rejects_length_mismatch() {
        for (length, actual) in [(4u16, 3usize), (2, 3), (0, 3)] {
            let raw = RawWrapper {
                version: 1,
                source: 16,
                destination: 1,
                length: Some(length),
                payload: vec![1, 2, 3],
            };
            assert_eq!(
                WrapperFrame::decode_datagram(&raw.encode()),
                Err(WrapperError::LengthMismatch {
                    declared: usize::from(length),
                    actual
                })
            );
        }
    }

    #[test]
    fn rejects_too_short() {
        assert_eq!(
            WrapperFrame::decode_datagram(&hex("0001 0010 0001 00")),
            Err(WrapperError::TooShort { len: 7 })
        );
        assert_eq!(
            WrapperFrame::decode_datagram(&[]),
            Err(WrapperError::TooShort { len: 0 })
        );
    }

    #[test]
    fn rejects_too_long_in_stream_until_reset() {
        let mut d = WrapperDeframer::new(16);
        d.push(&hex("0001 0010 0001 0011"));
        let e = WrapperError::TooLong { len: 17, max: 16 };
        assert_eq!(d.next_frame(), Some(Err(e.clone())));
        d.push(&WrapperFrame::new(1, 16, vec![1]).encode());
        assert_eq!(d.next_frame(), Some(Err(e)));
        assert_eq!(d.buffered(), 0);
        d.reset();
        let f = WrapperFrame::new(1, 16, vec![1]);
        d.push(&f.encode());
        assert_eq!(d.next_frame(), Some(Ok(f)));
        assert_eq!(d.next_frame(), None);
    }

    #[test]
    fn rejects_bad_version_in_stream() {
        let mut d = WrapperDeframer::new(1000);
        d.push(&hex("0002 0010 0001 0000"));
        assert_eq!(d.next_frame(), Some(Err(WrapperError::BadVersion(2))));
        assert_eq!(d.next_frame(), Some(Err(WrapperError::BadVersion(2))));
    }

    #[test]
    fn stream_with_two_frames_in_one_read_and_one_split() {
        let a = WrapperFrame::new(16, 1, vec![0xAA; 5]);
        let b = WrapperFrame::new(1, 16, vec![0xBB; 300]);
        let mut bytes = a.encode();
        bytes.extend(b.encode());
        bytes.extend(a.encode());
        let mut d = WrapperDeframer::new(1000);
        d.push(&bytes[..bytes.len() - 4]);
        assert_eq!(d.next_frame(), Some(Ok(a.clone())));
        assert_eq!(d.next_frame(), Some(Ok(b)));
        assert_eq!(d.next_frame(), None);
        assert_eq!(d.buffered(), 9);
        d.push(&bytes[bytes.len() - 4..]);
        assert_eq!(d.next_frame(), Some(Ok(a)));
        assert_eq!(d.buffered(), 0);
    }

    fn frame() -> impl Strategy<Value = WrapperFrame> {
        (
            any::<u16>(),
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..400),
        )
            .prop_map(|(s, d, p)| WrapperFrame::new(s, d, p))
    }

    proptest! {
        #[test]
        fn datagram_round_trips(f in frame()) {
            prop_assert_eq!(WrapperFrame::decode_datagram(&f.encode()), Ok(f));
        }

        #[test]
        fn decode_arbitrary_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = WrapperFrame::decode_datagram(&b);
            let mut d = WrapperDeframer::new(32);
            d.push(&b);
            for _ in 0..4 { let _ = d.next_frame(); }
        }

        #[test]
        fn stream_round_trips_with_random_splits(
            frames in proptest::collection::vec(frame(), 0..8),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let stream: Vec<u8> = frames.iter().flat_map(|f| f.encode()).collect();
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.push(0);
            cuts.push(stream.len());
            cuts.sort_unstable();
            let mut d = WrapperDeframer::new(400);
            let mut got = Vec::new();
            for w in cuts.windows(2) {
                d.push(&stream[w[0]..w[1]]);
                while let Some(r) = d.next_frame() {
                    got.push(r.unwrap());
                }
            }
            prop_assert_eq!(got, frames);
            prop_assert_eq!(d.buffered(), 0);
        }
    }
}
