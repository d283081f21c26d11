//! HDLC frames of the DLMS/COSEM 3-layer connection-oriented profile (IEC 62056-46;
//! facts file section 6.1).
//!
//! SAFETY of parsing: IEC 62056-46 uses HDLC frame format type 3 (from ISO/IEC 13239),
//! in which the frame format field carries an 11-bit length counting
//! every byte between the two flags. Frames are therefore delimited by that length,
//! and there is **no byte stuffing**: a 0x7E may appear anywhere inside the header,
//! the info field or the CRCs. A parser that cut frames at the next 0x7E would split
//! valid frames, so [`FrameRepr::decode`] checks the declared length against the
//! bytes it got and [`Deframer`] uses the declared length to find the closing flag.
//! The flag only marks where a frame may start or end; the HCS and FCS (both
//! CRC-16/X.25) are what make a frame trustworthy.
//!
//! Layout: `7E | format(2) | dest(1,2,4) | src(1,2,4) | control | [HCS(2) info] | FCS(2) | 7E`.
//! The HCS is present only when there is an info field. CRCs are sent LSB first.
//!
//! Layers (smoltcp style): [`FrameRepr`] is the typed, valid frame; [`Frame`] is a
//! lenient view for reporting fields of a frame that failed to decode; [`RawFrame`]
//! builds any frame, broken ones included, for negative tests.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, VecDeque};
use std::fmt;

use crc::{CRC_16_IBM_SDLC, Crc, Table};

use super::Reader;

/// The HDLC flag that opens and closes every frame.
pub const FLAG: u8 = 0x7E;
/// LLC header of an I-frame sent by the client (facts 6.1, "LLC header").
pub const LLC_REQUEST: [u8; 3] = [0xE6, 0xE6, 0x00];
/// LLC header of an I-frame sent by the server.
pub const LLC_RESPONSE: [u8; 3] = [0xE6, 0xE7, 0x00];
/// Largest frame on the wire, flags included: the 11-bit length field counts at most
/// 2047 bytes between the flags, plus the two flags.
pub const MAX_FRAME_LEN: usize = 0x07FF + 2;
/// Frame format type of IEC 62056-46 (binary 1010), the high nibble of the format field.
pub const FORMAT_TYPE: u8 = 0xA;
/// Smallest frame: two flags, format (2), one-byte addresses, control, FCS (2).
pub const MIN_FRAME_LEN: usize = 9;
/// Smallest value of the length field (a frame without info and with 1-byte addresses).
const MIN_LENGTH_FIELD: usize = MIN_FRAME_LEN - 2;
/// The segmentation bit S in the 16-bit format field (0x08 of its first byte).
const SEGMENT_BIT: u16 = 0x0800;
/// Mask of the 11-bit length subfield.
const LENGTH_MASK: u16 = 0x07FF;
/// The poll/final bit of the control field.
const PF_BIT: u8 = 0x10;

/// Slice-by-16 tables (8 KiB, built at compile time): the byte-wise default
/// made the two CRCs 60-90 % of encoding or deframing a 128-byte I-frame.
const X25: Crc<u16, Table<16>> = Crc::<u16, Table<16>>::new(&CRC_16_IBM_SDLC);

/// CRC-16/X.25 used for the HCS and FCS (check value of "123456789" = 0x906E).
/// On the wire the result is sent least significant byte first.
pub fn crc16(data: &[u8]) -> u16 {
    X25.checksum(data)
}

/// Errors found in an HDLC frame or in its parameter field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HdlcError {
    /// The frame does not both start and end with the flag 0x7E.
    #[error("HDLC frame does not start and end with the flag 0x7E")]
    MissingFlag,
    /// Fewer bytes than the smallest possible frame.
    #[error("HDLC frame too short: {len} byte(s), a frame needs at least 9 with its flags")]
    TooShort { len: usize },
    /// The frame format type (high nibble of the format field) is not 0xA.
    #[error("HDLC frame format type is 0x{0:X}, expected 0xA (frame format type 3)")]
    BadFormatType(u8),
    /// The length subfield does not match the bytes between the flags.
    #[error("HDLC length field says {declared} byte(s) between the flags, but there are {actual}")]
    LengthMismatch { declared: usize, actual: usize },
    /// An address field is not 1, 2 or 4 bytes, or is cut off.
    #[error("HDLC address field invalid: {detail}")]
    BadAddress { detail: String },
    /// The bytes after the control field fit neither "FCS" nor "HCS, info, FCS".
    #[error(
        "HDLC frame has {len} byte(s) after the control field: expected 2 (FCS only) \
         or at least 5 (HCS, info, FCS)"
    )]
    BadInfoLength { len: usize },
    /// The header check sequence is wrong.
    #[error("HDLC header check sequence wrong: computed 0x{expected:04X}, frame has 0x{got:04X}")]
    HcsMismatch { expected: u16, got: u16 },
    /// The frame check sequence is wrong.
    #[error("HDLC frame check sequence wrong: computed 0x{expected:04X}, frame has 0x{got:04X}")]
    FcsMismatch { expected: u16, got: u16 },
    /// The frame or info field is longer than allowed.
    #[error("HDLC frame or info field too long: {len} byte(s), at most {max} allowed")]
    TooLong { len: usize, max: usize },
    /// The SNRM/UA parameter field is malformed.
    #[error("HDLC link parameters malformed: {detail}")]
    BadParameters { detail: String },
}

fn bad_address(detail: impl Into<String>) -> HdlcError {
    HdlcError::BadAddress {
        detail: detail.into(),
    }
}

fn bad_params(detail: impl Into<String>) -> HdlcError {
    HdlcError::BadParameters {
        detail: detail.into(),
    }
}

// ---------------------------------------------------------------------------------
// Addresses

/// An HDLC address (facts 6.1): 7 bits per byte, LSB = 1 on the last byte.
///
/// The client address is one byte (its SAP). The server address is the upper
/// (logical device) address alone, or upper plus lower (physical device) address,
/// each of 1 or 2 bytes, so 1, 2 or 4 bytes in all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// One byte: a client SAP, or a server upper address alone (0..=0x7F).
    One(u8),
    /// Two bytes: server upper and lower address, 7 bits each.
    Two { upper: u8, lower: u8 },
    /// Four bytes: server upper and lower address, 14 bits each.
    Four { upper: u16, lower: u16 },
}

impl Address {
    /// A client address (one byte).
    pub fn client(sap: u8) -> Address {
        Address::One(sap)
    }

    /// A server address: two bytes if both parts fit in 7 bits, four otherwise.
    pub fn server(upper: u16, lower: u16) -> Address {
        match (u8::try_from(upper), u8::try_from(lower)) {
            (Ok(u), Ok(l)) if u <= 0x7F && l <= 0x7F => Address::Two { upper: u, lower: l },
            _ => Address::Four { upper, lower },
        }
    }

    /// The upper address (the only one for a one-byte address).
    pub fn upper(&self) -> u16 {
        match *self {
            Address::One(v) => u16::from(v),
            Address::Two { upper, .. } => u16::from(upper),
            Address::Four { upper, .. } => upper,
        }
    }

    /// The lower (physical device) address, if present.
    pub fn lower(&self) -> Option<u16> {
        match *self {
            Address::One(_) => None,
            Address::Two { lower, .. } => Some(u16::from(lower)),
            Address::Four { lower, .. } => Some(lower),
        }
    }

    /// Number of bytes on the wire: 1, 2 or 4.
    pub fn encoded_len(&self) -> usize {
        match self {
            Address::One(_) => 1,
            Address::Two { .. } => 2,
            Address::Four { .. } => 4,
        }
    }

    /// Appends the address, 7 bits per byte with LSB = 1 on the last byte.
    /// Bits beyond 7 (1- and 2-byte forms) or 14 (4-byte form) per part are dropped.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let b7 = |v: u16| ((v & 0x7F) as u8) << 1;
        match *self {
            Address::One(v) => out.push(b7(u16::from(v)) | 1),
            Address::Two { upper, lower } => {
                out.push(b7(u16::from(upper)));
                out.push(b7(u16::from(lower)) | 1);
            }
            Address::Four { upper, lower } => {
                out.push(b7(upper >> 7));
                out.push(b7(upper));
                out.push(b7(lower >> 7));
                out.push(b7(lower) | 1);
            }
        }
    }

    /// Reads an address: bytes up to the first with LSB = 1. Only 1, 2 or 4 bytes are valid.
    pub fn decode(r: &mut Reader<'_>) -> Result<Address, HdlcError> {
        let mut bytes = [0u8; 4];
        let mut n = 0usize;
        loop {
            let Ok(b) = r.u8("HDLC address") else {
                return Err(bad_address(format!(
                    "frame ends inside the address after {n} byte(s) (no byte with LSB = 1)"
                )));
            };
            match bytes.get_mut(n) {
                Some(slot) => *slot = b >> 1,
                None => {
                    return Err(bad_address(
                        "more than 4 bytes without a final byte (LSB = 1)",
                    ));
                }
            }
            n += 1;
            if b & 1 == 1 {
                break;
            }
        }
        let [b0, b1, b2, b3] = bytes;
        match n {
            1 => Ok(Address::One(b0)),
            2 => Ok(Address::Two {
                upper: b0,
                lower: b1,
            }),
            4 => Ok(Address::Four {
                upper: (u16::from(b0) << 7) | u16::from(b1),
                lower: (u16::from(b2) << 7) | u16::from(b3),
            }),
            _ => Err(bad_address(format!(
                "{n}-byte address; only 1, 2 or 4 bytes are allowed"
            ))),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.lower() {
            None => write!(f, "{}", self.upper()),
            Some(lower) => write!(f, "{}/{}", self.upper(), lower),
        }
    }
}

// ---------------------------------------------------------------------------------
// Control field

/// The control field (facts 6.1, control value table; P/F = 0x10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Information frame, `RRR P SSS 0`.
    I {
        send_seq: u8,
        recv_seq: u8,
        poll_final: bool,
    },
    /// Receive ready, `RRR P 0001`.
    Rr { recv_seq: u8, poll_final: bool },
    /// Receive not ready, `RRR P 0101`.
    Rnr { recv_seq: u8, poll_final: bool },
    /// Set normal response mode, 0x83 / 0x93.
    Snrm { poll_final: bool },
    /// Unnumbered acknowledge, 0x63 / 0x73.
    Ua { poll_final: bool },
    /// Disconnect, 0x43 / 0x53.
    Disc { poll_final: bool },
    /// Disconnected mode, 0x0F / 0x1F.
    Dm { poll_final: bool },
    /// Frame reject, 0x87 / 0x97.
    Frmr { poll_final: bool },
    /// Unnumbered information, `000P0011` (0x03 / 0x13).
    // UNVERIFIED: this is the ISO/IEC 13239 UI pattern; the facts file (6.1) has no
    // DLMS source for it and notes jDLMS lists other values.
    Ui { poll_final: bool },
    /// Any other control byte (kept as sent).
    Unknown(u8),
}

impl Control {
    /// Decodes a control byte; bytes matching no known pattern become [`Control::Unknown`].
    pub fn from_byte(b: u8) -> Control {
        let poll_final = b & PF_BIT != 0;
        let recv_seq = b >> 5;
        if b & 0x01 == 0 {
            return Control::I {
                send_seq: (b >> 1) & 0x07,
                recv_seq,
                poll_final,
            };
        }
        match b & 0x0F {
            0x01 => {
                return Control::Rr {
                    recv_seq,
                    poll_final,
                };
            }
            0x05 => {
                return Control::Rnr {
                    recv_seq,
                    poll_final,
                };
            }
            _ => {}
        }
        match b & !PF_BIT {
            0x83 => Control::Snrm { poll_final },
            0x63 => Control::Ua { poll_final },
            0x43 => Control::Disc { poll_final },
            0x0F => Control::Dm { poll_final },
            0x87 => Control::Frmr { poll_final },
            0x03 => Control::Ui { poll_final },
            _ => Control::Unknown(b),
        }
    }

    /// Encodes the control byte. Sequence numbers are taken modulo 8.
    pub fn to_byte(&self) -> u8 {
        let pf = |p: bool| if p { PF_BIT } else { 0 };
        match *self {
            Control::I {
                send_seq,
                recv_seq,
                poll_final,
            } => ((recv_seq & 7) << 5) | pf(poll_final) | ((send_seq & 7) << 1),
            Control::Rr {
                recv_seq,
                poll_final,
            } => ((recv_seq & 7) << 5) | pf(poll_final) | 0x01,
            Control::Rnr {
                recv_seq,
                poll_final,
            } => ((recv_seq & 7) << 5) | pf(poll_final) | 0x05,
            Control::Snrm { poll_final } => 0x83 | pf(poll_final),
            Control::Ua { poll_final } => 0x63 | pf(poll_final),
            Control::Disc { poll_final } => 0x43 | pf(poll_final),
            Control::Dm { poll_final } => 0x0F | pf(poll_final),
            Control::Frmr { poll_final } => 0x87 | pf(poll_final),
            Control::Ui { poll_final } => 0x03 | pf(poll_final),
            Control::Unknown(b) => b,
        }
    }

    /// The poll/final bit.
    pub fn poll_final(&self) -> bool {
        self.to_byte() & PF_BIT != 0
    }
}

impl fmt::Display for Control {
    /// SNRM and DISC are commands, so their bit prints as `P`; UA, DM and FRMR are
    /// responses, so `F`. I, RR, RNR and UI go both ways and print `P/F`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bit = |on: bool, name: &'static str| if on { name } else { "" };
        match *self {
            Control::I {
                send_seq,
                recv_seq,
                poll_final,
            } => {
                let p = bit(poll_final, ",P/F");
                write!(f, "I(S={},R={}{p})", send_seq & 7, recv_seq & 7)
            }
            Control::Rr {
                recv_seq,
                poll_final,
            } => write!(f, "RR(R={}{})", recv_seq & 7, bit(poll_final, ",P/F")),
            Control::Rnr {
                recv_seq,
                poll_final,
            } => write!(f, "RNR(R={}{})", recv_seq & 7, bit(poll_final, ",P/F")),
            Control::Unknown(b) => write!(f, "UNKNOWN(0x{b:02X})"),
            u => {
                let (name, flag) = match u {
                    Control::Snrm { .. } => ("SNRM", "P"),
                    Control::Disc { .. } => ("DISC", "P"),
                    Control::Ua { .. } => ("UA", "F"),
                    Control::Dm { .. } => ("DM", "F"),
                    Control::Frmr { .. } => ("FRMR", "F"),
                    _ => ("UI", "P/F"),
                };
                if u.poll_final() {
                    write!(f, "{name}({flag})")
                } else {
                    write!(f, "{name}")
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Typed frame

/// A valid HDLC frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameRepr {
    /// The segmentation bit S: more segments of the same APDU follow.
    pub segmented: bool,
    /// Destination address.
    pub dest: Address,
    /// Source address.
    pub src: Address,
    /// Control field.
    pub control: Control,
    /// Info field (empty when absent).
    pub info: Vec<u8>,
}

impl FrameRepr {
    /// Encodes the frame with both flags; the HCS is present only with a non-empty info.
    /// An info field too long for the 11-bit length yields a frame with a wrong length
    /// field: callers must segment (see [`MAX_FRAME_LEN`]).
    pub fn encode(&self) -> Vec<u8> {
        RawFrame::from(self).encode()
    }

    /// Decodes exactly one frame, both flags included. Checks, in this order: maximum
    /// size, flags, format type, minimum size, length field, addresses, HCS, FCS.
    pub fn decode(frame: &[u8]) -> Result<FrameRepr, HdlcError> {
        if frame.len() > MAX_FRAME_LEN {
            return Err(HdlcError::TooLong {
                len: frame.len(),
                max: MAX_FRAME_LEN,
            });
        }
        if frame.len() < 2 {
            return Err(HdlcError::TooShort { len: frame.len() });
        }
        let (Some(&FLAG), Some(&FLAG)) = (frame.first(), frame.last()) else {
            return Err(HdlcError::MissingFlag);
        };
        // The format type is reported even for a short frame, as long as it is there.
        if let Some(&f0) = frame.get(1).filter(|_| frame.len() >= 4)
            && f0 >> 4 != FORMAT_TYPE
        {
            return Err(HdlcError::BadFormatType(f0 >> 4));
        }
        if frame.len() < MIN_FRAME_LEN {
            return Err(HdlcError::TooShort { len: frame.len() });
        }
        let body = frame.get(1..frame.len() - 1).unwrap_or_default();
        let mut r = Reader::new(body);
        let format = r
            .u16("HDLC format")
            .map_err(|_| HdlcError::TooShort { len: frame.len() })?;
        let declared = usize::from(format & LENGTH_MASK);
        if declared != body.len() {
            return Err(HdlcError::LengthMismatch {
                declared,
                actual: body.len(),
            });
        }
        let dest = Address::decode(&mut r)?;
        let src = Address::decode(&mut r)?;
        let control = r
            .u8("HDLC control")
            .map_err(|_| HdlcError::TooShort { len: frame.len() })?;
        let header_len = r.position();
        let after = r.remaining();
        let info = match after {
            0 | 1 => return Err(HdlcError::TooShort { len: frame.len() }),
            2 => Vec::new(),
            3 | 4 => return Err(HdlcError::BadInfoLength { len: after }),
            _ => {
                let header = body.get(..header_len).unwrap_or_default();
                let got = u16::from_le_bytes(
                    r.array("HCS")
                        .map_err(|_| HdlcError::TooShort { len: frame.len() })?,
                );
                let expected = crc16(header);
                if got != expected {
                    return Err(HdlcError::HcsMismatch { expected, got });
                }
                let info = r
                    .take(r.remaining().saturating_sub(2), "HDLC info")
                    .map_err(|_| HdlcError::TooShort { len: frame.len() })?;
                info.to_vec()
            }
        };
        let covered = body.get(..body.len() - 2).unwrap_or_default();
        let got = u16::from_le_bytes(
            r.array("FCS")
                .map_err(|_| HdlcError::TooShort { len: frame.len() })?,
        );
        let expected = crc16(covered);
        if got != expected {
            return Err(HdlcError::FcsMismatch { expected, got });
        }
        Ok(FrameRepr {
            segmented: format & SEGMENT_BIT != 0,
            dest,
            src,
            control: Control::from_byte(control),
            info,
        })
    }

    /// Checks the info field against a negotiated maximum (HDLC_INFO_N1: I-frame too long).
    pub fn check_info_len(&self, max_info: u16) -> Result<(), HdlcError> {
        let max = usize::from(max_info);
        if self.info.len() > max {
            return Err(HdlcError::TooLong {
                len: self.info.len(),
                max,
            });
        }
        Ok(())
    }

    /// Length of the encoded frame, flags included.
    pub fn buffer_len(&self) -> usize {
        let hcs_info = if self.info.is_empty() {
            0
        } else {
            2 + self.info.len()
        };
        2 + 2 + self.dest.encoded_len() + self.src.encoded_len() + 1 + hcs_info + 2
    }
}

impl fmt::Display for FrameRepr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {}", self.control, self.src, self.dest)?;
        if !self.info.is_empty() {
            write!(f, " info {} B", self.info.len())?;
        }
        if self.segmented {
            write!(f, " segmented")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------
// Lenient view

/// A checked view over the bytes of one frame (smoltcp-style), for reporting fields
/// of frames that fail to decode. The opening flag is optional; each accessor returns
/// `None` when its field is not present in the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps bytes without checking anything; accessors still never panic.
    pub fn new_unchecked(buffer: T) -> Self {
        Frame { buffer }
    }

    /// Wraps bytes that hold at least the format field (after an optional opening flag).
    pub fn new_checked(buffer: T) -> Result<Self, HdlcError> {
        let f = Frame { buffer };
        let len = f.buffer.as_ref().len();
        if len < f.start() + 2 {
            return Err(HdlcError::TooShort { len });
        }
        Ok(f)
    }

    /// The wrapped bytes.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn start(&self) -> usize {
        usize::from(self.has_opening_flag())
    }

    fn format(&self) -> u16 {
        let s = self.start();
        let b = |i: usize| self.bytes().get(s + i).copied().unwrap_or(0);
        u16::from_be_bytes([b(0), b(1)])
    }

    /// Whether the first byte is the flag.
    pub fn has_opening_flag(&self) -> bool {
        self.bytes().first() == Some(&FLAG)
    }

    /// Whether the last byte (after the format field) is the flag.
    pub fn has_closing_flag(&self) -> bool {
        self.bytes().len() > self.start() + 2 && self.bytes().last() == Some(&FLAG)
    }

    /// Frame format type: the high nibble of the format field (0xA when valid).
    pub fn format_type(&self) -> u8 {
        (self.format() >> 12) as u8
    }

    /// The segmentation bit S.
    pub fn segmented(&self) -> bool {
        self.format() & SEGMENT_BIT != 0
    }

    /// The 11-bit length field.
    pub fn length(&self) -> u16 {
        self.format() & LENGTH_MASK
    }

    /// The bytes between the flags (a missing flag is not stripped).
    pub fn body(&self) -> &[u8] {
        let end = if self.has_closing_flag() {
            self.bytes().len() - 1
        } else {
            self.bytes().len()
        };
        self.bytes().get(self.start()..end).unwrap_or_default()
    }

    /// Byte range, inside [`Frame::body`], of the address starting at `from`.
    fn address_end(&self, from: usize) -> Option<usize> {
        let rest = self.body().get(from..)?;
        let n = rest.iter().position(|b| b & 1 == 1)?;
        Some(from + n + 1)
    }

    /// The destination address bytes as sent (up to the first byte with LSB = 1).
    pub fn dest_bytes(&self) -> Option<&[u8]> {
        let end = self.address_end(2)?;
        self.body().get(2..end)
    }

    /// The source address bytes as sent.
    pub fn src_bytes(&self) -> Option<&[u8]> {
        let from = self.address_end(2)?;
        let end = self.address_end(from)?;
        self.body().get(from..end)
    }

    /// The destination address, if its bytes are present and form a valid address.
    pub fn dest(&self) -> Option<Result<Address, HdlcError>> {
        Some(Address::decode(&mut Reader::new(self.dest_bytes()?)))
    }

    /// The source address, if its bytes are present and form a valid address.
    pub fn src(&self) -> Option<Result<Address, HdlcError>> {
        Some(Address::decode(&mut Reader::new(self.src_bytes()?)))
    }

    /// Length of format, addresses and control inside the body.
    fn header_len(&self) -> Option<usize> {
        let from = self.address_end(2)?;
        let end = self.address_end(from)?;
        let h = end + 1;
        (h <= self.body().len()).then_some(h)
    }

    /// The control byte.
    pub fn control_byte(&self) -> Option<u8> {
        self.body().get(self.header_len()? - 1).copied()
    }

    /// The control field, decoded.
    pub fn control(&self) -> Option<Control> {
        self.control_byte().map(Control::from_byte)
    }

    /// Whether the body is long enough to hold an HCS and an info field.
    fn has_hcs(&self) -> Option<bool> {
        Some(self.body().len() >= self.header_len()? + 5)
    }

    /// The HCS as sent, when the frame has an info field.
    pub fn hcs(&self) -> Option<u16> {
        if !self.has_hcs()? {
            return None;
        }
        let h = self.header_len()?;
        let b = self.body().get(h..h + 2)?;
        Some(u16::from_le_bytes([*b.first()?, *b.get(1)?]))
    }

    /// The HCS computed over format, addresses and control.
    pub fn computed_hcs(&self) -> Option<u16> {
        Some(crc16(self.body().get(..self.header_len()?)?))
    }

    /// The info field (empty when the frame has none).
    pub fn info(&self) -> Option<&[u8]> {
        let h = self.header_len()?;
        if self.has_hcs()? {
            self.body().get(h + 2..self.body().len() - 2)
        } else {
            Some(&[])
        }
    }

    /// The FCS as sent: the last two bytes of the body.
    pub fn fcs(&self) -> Option<u16> {
        let body = self.body();
        let n = body.len();
        if n < 4 {
            return None;
        }
        Some(u16::from_le_bytes([*body.get(n - 2)?, *body.get(n - 1)?]))
    }

    /// The FCS computed over the body without its last two bytes.
    pub fn computed_fcs(&self) -> Option<u16> {
        let body = self.body();
        if body.len() < 4 {
            return None;
        }
        Some(crc16(body.get(..body.len() - 2)?))
    }
}

// ---------------------------------------------------------------------------------
// Raw builder

/// Builds any frame, including broken ones, for negative tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawFrame {
    /// Send the opening flag.
    pub opening_flag: bool,
    /// Send the closing flag.
    pub closing_flag: bool,
    /// High nibble of the first format byte, normally 0xA (only the low 4 bits are used).
    pub format_type: u8,
    /// The segmentation bit S.
    pub segmented: bool,
    /// Length field to send (low 11 bits); `None` = the correct length.
    pub length: Option<u16>,
    /// Destination address bytes exactly as sent.
    pub dest: Vec<u8>,
    /// Source address bytes exactly as sent.
    pub src: Vec<u8>,
    /// Control byte.
    pub control: u8,
    /// Info field.
    pub info: Vec<u8>,
    /// HCS to send; `None` = the correct one. An HCS is sent when the info field is
    /// non-empty or when this is `Some` (so "HCS without info" can be built).
    pub hcs: Option<u16>,
    /// FCS to send; `None` = the correct one.
    pub fcs: Option<u16>,
    /// Leave the HCS out even with an info field.
    pub omit_hcs: bool,
}

impl RawFrame {
    fn sends_hcs(&self) -> bool {
        !self.omit_hcs && (!self.info.is_empty() || self.hcs.is_some())
    }

    /// Encodes the frame exactly as described. CRCs are computed over what is sent.
    pub fn encode(&self) -> Vec<u8> {
        let hcs_len = if self.sends_hcs() { 2 } else { 0 };
        let body_len = 2 + self.dest.len() + self.src.len() + 1 + hcs_len + self.info.len() + 2;
        let length = self
            .length
            .unwrap_or(u16::try_from(body_len).unwrap_or(u16::MAX));
        let format = (u16::from(self.format_type & 0x0F) << 12)
            | if self.segmented { SEGMENT_BIT } else { 0 }
            | (length & LENGTH_MASK);
        let mut out = Vec::with_capacity(body_len + 2);
        if self.opening_flag {
            out.push(FLAG);
        }
        let start = out.len();
        out.extend_from_slice(&format.to_be_bytes());
        out.extend_from_slice(&self.dest);
        out.extend_from_slice(&self.src);
        out.push(self.control);
        if self.sends_hcs() {
            let hcs = self
                .hcs
                .unwrap_or_else(|| crc16(out.get(start..).unwrap_or_default()));
            out.extend_from_slice(&hcs.to_le_bytes());
        }
        out.extend_from_slice(&self.info);
        let fcs = self
            .fcs
            .unwrap_or_else(|| crc16(out.get(start..).unwrap_or_default()));
        out.extend_from_slice(&fcs.to_le_bytes());
        if self.closing_flag {
            out.push(FLAG);
        }
        out
    }
}

impl From<&FrameRepr> for RawFrame {
    fn from(f: &FrameRepr) -> RawFrame {
        let mut dest = Vec::with_capacity(4);
        f.dest.encode(&mut dest);
        let mut src = Vec::with_capacity(4);
        f.src.encode(&mut src);
        RawFrame {
            opening_flag: true,
            closing_flag: true,
            format_type: FORMAT_TYPE,
            segmented: f.segmented,
            length: None,
            dest,
            src,
            control: f.control.to_byte(),
            info: f.info.clone(),
            hcs: None,
            fcs: None,
            omit_hcs: false,
        }
    }
}

// ---------------------------------------------------------------------------------
// SNRM / UA parameter negotiation

/// Format identifier of the parameter field.
const PARAM_FORMAT_ID: u8 = 0x81;
/// Group identifier of the HDLC parameter group.
const PARAM_GROUP_ID: u8 = 0x80;
const PARAM_MAX_INFO_TX: u8 = 0x05;
const PARAM_MAX_INFO_RX: u8 = 0x06;
const PARAM_WINDOW_TX: u8 = 0x07;
const PARAM_WINDOW_RX: u8 = 0x08;

/// HDLC link parameters carried by SNRM and UA (facts 6.1). `_tx`/`_rx` are from the
/// point of view of the frame's sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkParams {
    /// Maximum info field length the sender transmits.
    pub max_info_tx: u16,
    /// Maximum info field length the sender receives.
    pub max_info_rx: u16,
    /// Window size the sender transmits with.
    pub window_tx: u32,
    /// Window size the sender receives with.
    pub window_rx: u32,
}

impl Default for LinkParams {
    /// The defaults when a parameter is absent: max info 128, window 1.
    fn default() -> Self {
        LinkParams {
            max_info_tx: 128,
            max_info_rx: 128,
            window_tx: 1,
            window_rx: 1,
        }
    }
}

impl LinkParams {
    /// Encodes `81 80 <len> 05 <n> v 06 <n> v 07 04 u32 08 04 u32`: max info lengths
    /// in one byte when they fit, else two; windows always in four bytes.
    pub fn encode(&self) -> Vec<u8> {
        fn put_info(out: &mut Vec<u8>, id: u8, v: u16) {
            out.push(id);
            match u8::try_from(v) {
                Ok(b) => out.extend_from_slice(&[1, b]),
                Err(_) => {
                    out.push(2);
                    out.extend_from_slice(&v.to_be_bytes());
                }
            }
        }
        let mut group = Vec::with_capacity(20);
        put_info(&mut group, PARAM_MAX_INFO_TX, self.max_info_tx);
        put_info(&mut group, PARAM_MAX_INFO_RX, self.max_info_rx);
        for (id, v) in [
            (PARAM_WINDOW_TX, self.window_tx),
            (PARAM_WINDOW_RX, self.window_rx),
        ] {
            group.extend_from_slice(&[id, 4]);
            group.extend_from_slice(&v.to_be_bytes());
        }
        let mut out = Vec::with_capacity(group.len() + 3);
        // The group is at most 4 * 6 = 24 bytes, so its length fits one byte.
        out.extend_from_slice(&[PARAM_FORMAT_ID, PARAM_GROUP_ID, group.len() as u8]);
        out.extend_from_slice(&group);
        out
    }

    /// Decodes a SNRM/UA info field. Empty info gives the defaults, an absent
    /// parameter its default. Values of 1, 2 or 4 bytes are accepted; unknown
    /// parameters and groups are skipped; anything else malformed is an error.
    pub fn decode(info: &[u8]) -> Result<LinkParams, HdlcError> {
        let mut p = LinkParams::default();
        if info.is_empty() {
            return Ok(p);
        }
        let mut r = Reader::new(info);
        let format = r.u8("format id").map_err(|e| bad_params(e.to_string()))?;
        if format != PARAM_FORMAT_ID {
            return Err(bad_params(format!(
                "format identifier 0x{format:02X}, expected 0x81"
            )));
        }
        let mut seen = [false; 4];
        let mut groups = 0usize;
        while !r.is_empty() {
            let group_id = r.u8("group id").map_err(|e| bad_params(e.to_string()))?;
            let glen = r
                .u8("group length")
                .map_err(|e| bad_params(e.to_string()))?;
            let group = r.take(usize::from(glen), "group").map_err(|_| {
                bad_params(format!(
                    "group 0x{group_id:02X} declares {glen} byte(s) but {} remain",
                    info.len().saturating_sub(r.position())
                ))
            })?;
            groups += 1;
            if group_id != PARAM_GROUP_ID {
                continue;
            }
            let mut g = Reader::new(group);
            while !g.is_empty() {
                let id = g
                    .u8("parameter id")
                    .map_err(|e| bad_params(e.to_string()))?;
                let len = g
                    .u8("parameter length")
                    .map_err(|_| bad_params(format!("parameter 0x{id:02X} has no length byte")))?;
                let value = g.take(usize::from(len), "parameter").map_err(|_| {
                    bad_params(format!(
                        "parameter 0x{id:02X} declares {len} byte(s) but {} remain in the group",
                        g.remaining()
                    ))
                })?;
                let slot = match id {
                    PARAM_MAX_INFO_TX..=PARAM_WINDOW_RX => usize::from(id - PARAM_MAX_INFO_TX),
                    _ => continue,
                };
                let v = match *value {
                    [a] => u32::from(a),
                    [a, b] => u32::from(u16::from_be_bytes([a, b])),
                    [a, b, c, d] => u32::from_be_bytes([a, b, c, d]),
                    _ => {
                        return Err(bad_params(format!(
                            "parameter 0x{id:02X} has a {len}-byte value; 1, 2 or 4 expected"
                        )));
                    }
                };
                if let Some(s) = seen.get_mut(slot) {
                    if *s {
                        return Err(bad_params(format!("parameter 0x{id:02X} appears twice")));
                    }
                    *s = true;
                }
                match id {
                    PARAM_MAX_INFO_TX | PARAM_MAX_INFO_RX => {
                        let v = u16::try_from(v).map_err(|_| {
                            bad_params(format!(
                                "parameter 0x{id:02X}: max info length {v} exceeds 65535"
                            ))
                        })?;
                        if id == PARAM_MAX_INFO_TX {
                            p.max_info_tx = v;
                        } else {
                            p.max_info_rx = v;
                        }
                    }
                    PARAM_WINDOW_TX => p.window_tx = v,
                    _ => p.window_rx = v,
                }
            }
        }
        if groups == 0 {
            return Err(bad_params("format identifier without any parameter group"));
        }
        Ok(p)
    }
}

// ---------------------------------------------------------------------------------
// Stream deframer

/// What the deframer found in the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeframeEvent {
    /// A valid frame.
    Frame(FrameRepr),
    /// A flag-delimited frame that failed to decode (bad HCS/FCS, bad length, ...): its bytes and why.
    Invalid { bytes: Vec<u8>, error: HdlcError },
}

/// Where a candidate frame starting at a flag stands.
enum Candidate {
    /// More bytes are needed: the buffer must hold `need` bytes (from its start).
    Incomplete { need: usize },
    /// Format type and length are plausible and a flag sits at the declared end
    /// (index of that closing flag).
    Delimited(usize),
    /// The candidate cannot be a frame as declared (wrong format type, length too
    /// small, or no flag at the declared end).
    Broken,
}

/// Stream deframer for serial/TCP: resynchronises after garbage, counts dropped bytes,
/// bounded memory.
///
/// Rules, in order, for the bytes from a flag on (the "candidate"):
/// * Bytes before the first flag are garbage: dropped and counted. Runs of flags collapse.
/// * If the format type is 0xA and the length is plausible, the frame ends where the
///   length says, so a 0x7E inside the frame does not cut it. A flag-delimited candidate
///   that decodes is a [`DeframeEvent::Frame`]; its closing flag stays in the buffer, as
///   it may open the next frame.
/// * Otherwise the candidate is [`DeframeEvent::Invalid`] and the deframer resynchronises
///   at the next flag after the opening one. When a complete, valid frame starts at a
///   flag inside the candidate (or, while the candidate is still incomplete, anywhere
///   in the buffer), the candidate is cut there, so that line noise with a plausible
///   header cannot swallow or hold back the frames that follow it. An incomplete
///   candidate whose header already checks against its HCS is not noise: it is waited
///   for, so a frame whose info field happens to hold a valid frame stays whole however
///   the stream is chunked.
/// * An `Invalid` event's bytes run from its opening flag up to and including the flag
///   where the deframer resynchronised (that flag is shared with what follows).
/// * At most about two maximum frames are buffered; beyond that, bytes that cannot
///   start a frame are dropped and counted.
///
/// Every flag in the buffer is classified once when its candidate becomes decidable
/// (a frame is CRC-checked once), so the work per byte stays bounded however the
/// stream is chunked.
#[derive(Debug)]
pub struct Deframer {
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`; the sets below hold stream offsets of flags.
    base: u64,
    /// Stream offset up to which flags have been discovered.
    scanned: u64,
    /// All flags discovered in the buffer.
    flags: BTreeSet<u64>,
    /// Flags whose candidate is still incomplete, by the stream offset that decides it.
    waiting: BinaryHeap<Reverse<(u64, u64)>>,
    /// The flags in `waiting` (entries for flags dropped since are stale).
    waiting_flags: BTreeSet<u64>,
    /// Flags where a complete, valid frame starts.
    valid: BTreeSet<u64>,
    events: VecDeque<DeframeEvent>,
    max_frame: usize,
    dropped: u64,
}

impl Default for Deframer {
    fn default() -> Self {
        Self::new()
    }
}

impl Deframer {
    /// A deframer for frames of up to [`MAX_FRAME_LEN`] bytes.
    pub fn new() -> Self {
        Deframer {
            buf: Vec::new(),
            base: 0,
            scanned: 0,
            flags: BTreeSet::new(),
            waiting: BinaryHeap::new(),
            waiting_flags: BTreeSet::new(),
            valid: BTreeSet::new(),
            events: VecDeque::new(),
            max_frame: MAX_FRAME_LEN,
            dropped: 0,
        }
    }

    /// Feeds bytes from the line, in any chunking.
    pub fn push(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(self.max_frame.max(1)) {
            self.buf.extend_from_slice(chunk);
            self.process();
        }
    }

    /// The next frame or invalid frame, in stream order.
    pub fn next_event(&mut self) -> Option<DeframeEvent> {
        self.events.pop_front()
    }

    /// Garbage bytes dropped outside any frame (not counting invalid frames).
    pub fn dropped_bytes(&self) -> u64 {
        self.dropped
    }

    /// Bytes held while waiting for the rest of a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn abs(&self, i: usize) -> u64 {
        self.base.saturating_add(i as u64)
    }

    fn idx(&self, abs: u64) -> Option<usize> {
        abs.checked_sub(self.base)
            .and_then(|d| usize::try_from(d).ok())
    }

    fn drop_front(&mut self, n: usize, count: bool) {
        let n = n.min(self.buf.len());
        if count {
            self.dropped = self.dropped.saturating_add(n as u64);
        }
        self.buf.drain(..n);
        self.base = self.abs(n);
        self.scanned = self.scanned.max(self.base);
        // Forget the flags before the new base, in place (split_off would build
        // new trees on every frame).
        let base = self.base;
        for set in [&mut self.flags, &mut self.valid, &mut self.waiting_flags] {
            while set.first().is_some_and(|&f| f < base) {
                set.pop_first();
            }
        }
        if self.buf.is_empty() {
            self.waiting.clear();
        }
    }

    /// Classifies the candidate starting with the flag at index `at`.
    fn candidate(&self, at: usize) -> Candidate {
        let (Some(&f0), Some(&f1)) = (self.buf.get(at + 1), self.buf.get(at + 2)) else {
            return Candidate::Incomplete { need: at + 3 };
        };
        if f0 >> 4 != FORMAT_TYPE {
            return Candidate::Broken;
        }
        let len = usize::from(u16::from_be_bytes([f0, f1]) & LENGTH_MASK);
        if len < MIN_LENGTH_FIELD || len + 2 > self.max_frame {
            return Candidate::Broken;
        }
        match self.buf.get(at + len + 1) {
            None => Candidate::Incomplete { need: at + len + 2 },
            Some(&FLAG) => Candidate::Delimited(at + len + 1),
            Some(_) => Candidate::Broken,
        }
    }

    /// Whether the candidate at the start of the buffer declares an info field and
    /// its header (format, addresses, control) is already verified by its HCS.
    /// Line noise passes this with odds of 1 in 65536; a real frame always does.
    fn hcs_verified(&self) -> bool {
        let Some(body) = self.buf.get(1..) else {
            return false;
        };
        let mut r = Reader::new(body);
        let Ok(format) = r.u16("HDLC format") else {
            return false;
        };
        if Address::decode(&mut r).is_err() || Address::decode(&mut r).is_err() {
            return false;
        }
        if r.u8("HDLC control").is_err() {
            return false;
        }
        let header_len = r.position();
        // Without info (FCS only) there is no HCS; with info, HCS and at least one byte.
        if usize::from(format & LENGTH_MASK) < header_len + 5 {
            return false;
        }
        match (r.array::<2>("HCS"), body.get(..header_len)) {
            (Ok(hcs), Some(header)) => u16::from_le_bytes(hcs) == crc16(header),
            _ => false,
        }
    }

    /// Classifies the candidate at the flag with stream offset `p`, once it is decidable.
    fn classify(&mut self, p: u64) {
        let Some(i) = self.idx(p) else { return };
        match self.candidate(i) {
            Candidate::Incomplete { need } => {
                self.waiting.push(Reverse((self.abs(need), p)));
                self.waiting_flags.insert(p);
            }
            Candidate::Delimited(end) => {
                let ok = self
                    .buf
                    .get(i..=end)
                    .is_some_and(|b| FrameRepr::decode(b).is_ok());
                if ok {
                    self.valid.insert(p);
                }
            }
            Candidate::Broken => {}
        }
    }

    /// Discovers flags in new bytes and classifies candidates that became decidable.
    fn refresh(&mut self) {
        let end = self.abs(self.buf.len());
        if let Some(from) = self.idx(self.scanned.max(self.base)) {
            let base = self.base;
            let new: Vec<u64> = self
                .buf
                .iter()
                .enumerate()
                .skip(from)
                .filter(|&(_, &b)| b == FLAG)
                .map(|(i, _)| base.saturating_add(i as u64))
                .collect();
            self.scanned = end;
            for p in new {
                self.flags.insert(p);
                self.classify(p);
            }
        }
        while let Some(&Reverse((decided_at, p))) = self.waiting.peek() {
            if decided_at > end {
                break;
            }
            self.waiting.pop();
            if self.waiting_flags.remove(&p) {
                self.classify(p);
            }
        }
    }

    /// Index of the first flag after the opening one.
    fn next_flag(&self) -> Option<usize> {
        let p = *self.flags.range(self.base.saturating_add(1)..).next()?;
        self.idx(p)
    }

    /// Index of the first flag after the opening one where a complete valid frame starts.
    fn first_valid_after_start(&self) -> Option<usize> {
        let p = *self.valid.range(self.base.saturating_add(1)..).next()?;
        self.idx(p)
    }

    /// Emits the bytes `0..=end` as a frame or an invalid frame, and drops `0..end`
    /// (the flag at `end` stays: it may open the next frame).
    fn emit_upto(&mut self, end: usize) {
        let bytes = self.buf.get(..=end).unwrap_or_default();
        let event = match FrameRepr::decode(bytes) {
            Ok(f) => DeframeEvent::Frame(f),
            Err(error) => DeframeEvent::Invalid {
                bytes: bytes.to_vec(),
                error,
            },
        };
        self.events.push_back(event);
        self.drop_front(end, false);
    }

    /// Makes as much progress as the buffer allows.
    fn process(&mut self) {
        loop {
            // Garbage before the first flag.
            match self.buf.iter().position(|&b| b == FLAG) {
                None => {
                    let n = self.buf.len();
                    self.drop_front(n, true);
                    return;
                }
                Some(p) => self.drop_front(p, true),
            }
            // Collapse runs of flags: keep the last as the opening flag.
            let run = self.buf.iter().take_while(|&&b| b == FLAG).count();
            if run > 1 {
                self.drop_front(run - 1, false);
            }
            self.refresh();
            match self.candidate(0) {
                Candidate::Delimited(end) => {
                    if self.valid.contains(&self.base) {
                        self.emit_upto(end);
                        continue;
                    }
                    match self.first_valid_after_start() {
                        Some(p) if p < end => self.emit_upto(p),
                        Some(_) => self.emit_upto(end),
                        None => {
                            // A frame may start inside this one and still be arriving:
                            // wait for it, within the memory bound.
                            let inside = self.base.saturating_add(1)..self.abs(end);
                            let pending = self.waiting_flags.range(inside).next().is_some();
                            if pending && self.buf.len() <= 2 * self.max_frame {
                                return;
                            }
                            self.emit_upto(end);
                        }
                    }
                }
                Candidate::Broken => match self.next_flag() {
                    Some(p) => self.emit_upto(p),
                    None => {
                        if self.buf.len() > self.max_frame {
                            let n = self.buf.len();
                            self.drop_front(n, true);
                        }
                        return;
                    }
                },
                // A candidate whose header is verified by its HCS is a frame still
                // arriving: a valid frame inside it is part of its info field
                // (found by fuzzing: cutting there split such frames in two,
                // depending on how the stream was chunked).
                Candidate::Incomplete { .. } if self.hcs_verified() => return,
                Candidate::Incomplete { .. } => match self.first_valid_after_start() {
                    Some(p) => self.emit_upto(p),
                    None => return,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    // --- CRC -------------------------------------------------------------------

    #[test]
    fn crc16_check_value() {
        // dlms-facts 6.1: CRC-16/X.25, check("123456789") = 0x906E
        // (Gurux.NET GXFCS16.cs; the catalogue check value of CRC-16/IBM-SDLC).
        assert_eq!(crc16(b"123456789"), 0x906E);
    }

    // --- Published frames (dlms-facts 6.1, from Gurux.NET GXDLMS.cs / crc.py) -----

    #[test]
    fn accepts_published_disc_dm_snrm_frames() {
        let cases = [
            (
                "7E A0 07 03 21 53 03 C7 7E",
                Address::One(1),
                Address::One(16),
                Control::Disc { poll_final: true },
            ),
            (
                "7E A0 07 21 03 1F 6B E9 7E",
                Address::One(16),
                Address::One(1),
                Control::Dm { poll_final: true },
            ),
            (
                "7E A0 07 03 21 93 0F 01 7E",
                Address::One(1),
                Address::One(16),
                Control::Snrm { poll_final: true },
            ),
        ];
        for (wire, dest, src, control) in cases {
            let bytes = hex(wire);
            let f = FrameRepr::decode(&bytes).unwrap();
            assert_eq!(
                f,
                FrameRepr {
                    segmented: false,
                    dest,
                    src,
                    control,
                    info: vec![]
                },
                "{wire}"
            );
            assert_eq!(f.encode(), bytes, "{wire}");
            assert_eq!(f.buffer_len(), bytes.len());
            assert_eq!(RawFrame::from(&f).encode(), bytes);
        }
        let disc = FrameRepr::decode(&hex("7E A0 07 03 21 53 03 C7 7E")).unwrap();
        assert_eq!(disc.to_string(), "DISC(P) 16 -> 1");
    }

    #[test]
    fn gurux_forum_snrm_parameters_round_trip() {
        // dlms-facts 6.1, wire example from the Gurux forum, cut at the start:
        // `… 93 72 4F 81 80 12 05 01 80 06 01 80 07 04 00 00 00 01 08 04 00 00 00 01 53 3B 7E`.
        // 0x93 = SNRM(P), `72 4F` = HCS, then the info field, `53 3B` = FCS.
        let info = hex("81 80 12 05 01 80 06 01 80 07 04 00 00 00 01 08 04 00 00 00 01");
        let p = LinkParams::decode(&info).unwrap();
        assert_eq!(p, LinkParams::default());
        assert_eq!(p.encode(), info, "defaults encode as in the forum example");

        // The header (format, addresses) is cut off, so the HCS `72 4F` cannot be
        // checked. The FCS can: the CRC register after a block followed by its own
        // correct CRC is a constant, so with a correct HCS the FCS depends on the info
        // field alone. Whatever the addresses, it must come out as `53 3B`.
        for dest in [
            Address::One(1),
            Address::server(1, 17),
            Address::server(1, 0x3FFF),
        ] {
            let f = FrameRepr {
                segmented: false,
                dest,
                src: Address::client(16),
                control: Control::Snrm { poll_final: true },
                info: info.clone(),
            };
            let wire = f.encode();
            let n = wire.len();
            assert_eq!(&wire[n - 3..], &[0x53, 0x3B, FLAG], "{dest}");
            assert_eq!(FrameRepr::decode(&wire).unwrap(), f);
            let h = 1 + 2 + dest.encoded_len() + 1;
            assert_eq!(wire[h], 0x93);
        }
    }

    // --- Addresses ---------------------------------------------------------------

    #[test]
    fn addresses_encode_seven_bits_per_byte() {
        // dlms-facts 6.1: 0x03 = server 1, 0x21 = client 16; GetServerAddress = l<<7|p
        // or l<<14|p (Gurux.NET GXDLMSClient.cs).
        let cases: &[(Address, &[u8], &str)] = &[
            (Address::client(16), &[0x21], "16"),
            (Address::One(1), &[0x03], "1"),
            (Address::server(1, 17), &[0x02, 0x23], "1/17"),
            (
                Address::server(1, 0x3FFF),
                &[0x00, 0x02, 0xFE, 0xFF],
                "1/16383",
            ),
            (
                Address::server(0x3FFF, 0x3FFE),
                &[0xFE, 0xFE, 0xFE, 0xFD],
                "16383/16382",
            ),
            (Address::server(0x80, 1), &[0x02, 0x00, 0x00, 0x03], "128/1"),
        ];
        for (a, wire, text) in cases {
            let mut out = vec![];
            a.encode(&mut out);
            assert_eq!(&out, wire, "{a:?}");
            assert_eq!(a.encoded_len(), wire.len());
            let mut r = Reader::new(wire);
            assert_eq!(Address::decode(&mut r).unwrap(), *a);
            assert!(r.is_empty());
            assert_eq!(a.to_string(), *text);
        }
        assert_eq!(Address::server(1, 0x3FFF).upper(), 1);
        assert_eq!(Address::server(1, 0x3FFF).lower(), Some(0x3FFF));
        assert_eq!(Address::client(16).lower(), None);
        assert!(matches!(Address::server(0x7F, 0x7F), Address::Two { .. }));
        assert!(matches!(Address::server(0x7F, 0x80), Address::Four { .. }));
    }

    #[test]
    fn accepts_frame_with_four_byte_server_address() {
        let f = FrameRepr {
            segmented: true,
            dest: Address::server(1, 0x3FFF),
            src: Address::client(16),
            control: Control::I {
                send_seq: 3,
                recv_seq: 5,
                poll_final: true,
            },
            info: [LLC_REQUEST.as_slice(), &[0xC0, 0x01, 0xC1]].concat(),
        };
        let wire = f.encode();
        assert_eq!(
            &wire[..7],
            &[0x7E, 0xA8, wire.len() as u8 - 2, 0x00, 0x02, 0xFE, 0xFF]
        );
        assert_eq!(FrameRepr::decode(&wire).unwrap(), f);
        assert_eq!(
            f.to_string(),
            "I(S=3,R=5,P/F) 16 -> 1/16383 info 6 B segmented"
        );
    }

    #[test]
    fn rejects_three_and_five_byte_addresses() {
        // HDLC_ADDRESS_N7 (dlms-facts 7.1): 3/5-byte destination.
        for wire in [&[0x02, 0x02, 0x03][..], &[0x02, 0x02, 0x02, 0x02, 0x03]] {
            let e = Address::decode(&mut Reader::new(wire)).unwrap_err();
            assert!(matches!(e, HdlcError::BadAddress { .. }), "{e}");
        }
        let e = Address::decode(&mut Reader::new(&[0x02, 0x02])).unwrap_err();
        assert!(e.to_string().contains("ends inside the address"), "{e}");
    }

    // --- Control -------------------------------------------------------------------

    #[test]
    fn control_values_of_the_facts_table() {
        // dlms-facts 6.1 control table (jDLMS FrameType.java; Gurux.NET GXDLMS.cs FRMR 0x97).
        let cases = [
            (0x93, Control::Snrm { poll_final: true }, "SNRM(P)"),
            (0x83, Control::Snrm { poll_final: false }, "SNRM"),
            (0x73, Control::Ua { poll_final: true }, "UA(F)"),
            (0x63, Control::Ua { poll_final: false }, "UA"),
            (0x53, Control::Disc { poll_final: true }, "DISC(P)"),
            (0x43, Control::Disc { poll_final: false }, "DISC"),
            (0x1F, Control::Dm { poll_final: true }, "DM(F)"),
            (0x0F, Control::Dm { poll_final: false }, "DM"),
            (0x97, Control::Frmr { poll_final: true }, "FRMR(F)"),
            (0x87, Control::Frmr { poll_final: false }, "FRMR"),
            (0x13, Control::Ui { poll_final: true }, "UI(P/F)"),
            (0x03, Control::Ui { poll_final: false }, "UI"),
            // I: RRR P SSS 0
            (
                0x10,
                Control::I {
                    send_seq: 0,
                    recv_seq: 0,
                    poll_final: true,
                },
                "I(S=0,R=0,P/F)",
            ),
            (
                0x54,
                Control::I {
                    send_seq: 2,
                    recv_seq: 2,
                    poll_final: true,
                },
                "I(S=2,R=2,P/F)",
            ),
            (
                0xFE,
                Control::I {
                    send_seq: 7,
                    recv_seq: 7,
                    poll_final: true,
                },
                "I(S=7,R=7,P/F)",
            ),
            // RR: RRR P 0001
            (
                0x71,
                Control::Rr {
                    recv_seq: 3,
                    poll_final: true,
                },
                "RR(R=3,P/F)",
            ),
            (
                0x01,
                Control::Rr {
                    recv_seq: 0,
                    poll_final: false,
                },
                "RR(R=0)",
            ),
            // RNR: RRR P 0101
            (
                0xB5,
                Control::Rnr {
                    recv_seq: 5,
                    poll_final: true,
                },
                "RNR(R=5,P/F)",
            ),
            (0xFF, Control::Unknown(0xFF), "UNKNOWN(0xFF)"),
            (0x09, Control::Unknown(0x09), "UNKNOWN(0x09)"),
        ];
        for (b, c, text) in cases {
            assert_eq!(Control::from_byte(b), c, "0x{b:02X}");
            assert_eq!(c.to_byte(), b, "{c:?}");
            assert_eq!(c.poll_final(), b & 0x10 != 0);
            assert_eq!(c.to_string(), text);
        }
    }

    #[test]
    fn control_byte_round_trips_for_all_values() {
        for b in 0..=255u8 {
            assert_eq!(Control::from_byte(b).to_byte(), b);
        }
    }

    // --- Rejections (one per HdlcError; CTT ids from dlms-facts 7.1) ---------------

    fn disc() -> FrameRepr {
        FrameRepr::decode(&hex("7E A0 07 03 21 53 03 C7 7E")).unwrap()
    }

    fn raw_i_frame() -> RawFrame {
        RawFrame::from(&FrameRepr {
            segmented: false,
            dest: Address::server(1, 17),
            src: Address::client(16),
            control: Control::I {
                send_seq: 0,
                recv_seq: 0,
                poll_final: true,
            },
            info: [LLC_REQUEST.as_slice(), &[0x60, 0x1D, 0x7E, 0x00]].concat(),
        })
    }

    #[test]
    fn rejects_missing_flags() {
        // HDLC_FRAME_N1
        for (open, close) in [(false, true), (true, false), (false, false)] {
            let raw = RawFrame {
                opening_flag: open,
                closing_flag: close,
                ..RawFrame::from(&disc())
            };
            assert_eq!(
                FrameRepr::decode(&raw.encode()),
                Err(HdlcError::MissingFlag)
            );
        }
    }

    #[test]
    fn rejects_too_short() {
        // HDLC_FRAME_N2
        for wire in [
            "",
            "7E",
            "7E 7E",
            "7E A0 05 03 21 7E",
            "7E A0 06 03 21 53 03 7E",
        ] {
            let b = hex(wire);
            assert_eq!(
                FrameRepr::decode(&b),
                Err(HdlcError::TooShort { len: b.len() }),
                "{wire}"
            );
        }
        // Length-consistent, 9 bytes, but a 4-byte destination leaves no room for the
        // control field and FCS.
        let b = hex("7E A0 07 00 02 00 23 21 7E");
        assert_eq!(FrameRepr::decode(&b), Err(HdlcError::TooShort { len: 9 }));
    }

    #[test]
    fn rejects_bad_format_type() {
        // HDLC_FRAME_N3
        let raw = RawFrame {
            format_type: 0xB,
            ..RawFrame::from(&disc())
        };
        assert_eq!(
            FrameRepr::decode(&raw.encode()),
            Err(HdlcError::BadFormatType(0xB))
        );
    }

    #[test]
    fn rejects_length_mismatch() {
        // HDLC_FRAME_N4
        let raw = RawFrame {
            length: Some(8),
            ..RawFrame::from(&disc())
        };
        assert_eq!(
            FrameRepr::decode(&raw.encode()),
            Err(HdlcError::LengthMismatch {
                declared: 8,
                actual: 7
            })
        );
    }

    #[test]
    fn rejects_bad_address() {
        // HDLC_ADDRESS_N7: a 3-byte destination.
        let raw = RawFrame {
            dest: vec![0x02, 0x02, 0x23],
            ..RawFrame::from(&disc())
        };
        assert!(matches!(
            FrameRepr::decode(&raw.encode()),
            Err(HdlcError::BadAddress { .. })
        ));
        // No terminating byte at all: the address runs into the FCS.
        let raw = RawFrame {
            dest: vec![0x02, 0x02],
            src: vec![],
            control: 0x52,
            fcs: Some(0x0202),
            ..RawFrame::from(&disc())
        };
        assert!(matches!(
            FrameRepr::decode(&raw.encode()),
            Err(HdlcError::BadAddress { .. })
        ));
    }

    #[test]
    fn accepts_two_byte_source_and_unknown_destination_at_frame_level() {
        // HDLC_ADDRESS_N1 (2-byte source) and N4 (unknown destination) are well-formed
        // frames: the link layer, not the codec, must reject them.
        let raw = RawFrame {
            src: vec![0x20, 0x21],
            ..RawFrame::from(&disc())
        };
        let f = FrameRepr::decode(&raw.encode()).unwrap();
        assert_eq!(
            f.src,
            Address::Two {
                upper: 16,
                lower: 16
            }
        );
        let raw = RawFrame {
            dest: vec![0x7B],
            ..RawFrame::from(&disc())
        };
        assert_eq!(
            FrameRepr::decode(&raw.encode()).unwrap().dest,
            Address::One(61)
        );
    }

    #[test]
    fn rejects_bad_info_length() {
        for n in [3usize, 4] {
            let mut b = RawFrame::from(&disc()).encode();
            for _ in 2..n {
                b.insert(6, 0x00);
            }
            b[2] = (b.len() - 2) as u8;
            assert_eq!(
                FrameRepr::decode(&b),
                Err(HdlcError::BadInfoLength { len: n })
            );
        }
        // An HCS without info, built on purpose.
        let raw = RawFrame {
            hcs: Some(0x1234),
            ..RawFrame::from(&disc())
        };
        assert_eq!(
            FrameRepr::decode(&raw.encode()),
            Err(HdlcError::BadInfoLength { len: 4 })
        );
    }

    #[test]
    fn rejects_hcs_mismatch() {
        // HDLC_FRAME_N7
        let good = raw_i_frame();
        let raw = RawFrame {
            hcs: Some(0xBEEF),
            ..good.clone()
        };
        let wire = raw.encode();
        let expected = Frame::new_checked(&wire).unwrap().computed_hcs().unwrap();
        assert_eq!(
            FrameRepr::decode(&wire),
            Err(HdlcError::HcsMismatch {
                expected,
                got: 0xBEEF
            })
        );
        // The HCS is checked before the FCS.
        let raw = RawFrame {
            hcs: Some(0xBEEF),
            fcs: Some(0),
            ..good
        };
        assert!(matches!(
            FrameRepr::decode(&raw.encode()),
            Err(HdlcError::HcsMismatch { .. })
        ));
    }

    #[test]
    fn rejects_fcs_mismatch() {
        // HDLC_FRAME_N8
        let raw = RawFrame {
            fcs: Some(0x0000),
            ..RawFrame::from(&disc())
        };
        assert_eq!(
            FrameRepr::decode(&raw.encode()),
            Err(HdlcError::FcsMismatch {
                expected: 0xC703,
                got: 0
            })
        );
        // One flipped bit in the info field.
        let mut wire = raw_i_frame().encode();
        wire[14] ^= 0x01;
        assert!(matches!(
            FrameRepr::decode(&wire),
            Err(HdlcError::FcsMismatch { .. })
        ));
    }

    #[test]
    fn rejects_omitted_hcs() {
        let raw = RawFrame {
            omit_hcs: true,
            ..raw_i_frame()
        };
        let wire = raw.encode();
        assert_eq!(wire.len(), raw_i_frame().encode().len() - 2);
        assert!(matches!(
            FrameRepr::decode(&wire),
            Err(HdlcError::HcsMismatch { .. })
        ));
    }

    #[test]
    fn rejects_too_long() {
        let b = vec![FLAG; MAX_FRAME_LEN + 1];
        assert_eq!(
            FrameRepr::decode(&b),
            Err(HdlcError::TooLong {
                len: MAX_FRAME_LEN + 1,
                max: MAX_FRAME_LEN
            })
        );
        // The largest frame the length field allows decodes.
        let f = FrameRepr {
            segmented: false,
            dest: Address::server(1, 17),
            src: Address::client(16),
            control: Control::I {
                send_seq: 1,
                recv_seq: 2,
                poll_final: false,
            },
            info: vec![0x7E; 0x7FF - 2 - 2 - 1 - 1 - 2 - 2],
        };
        assert_eq!(f.buffer_len(), MAX_FRAME_LEN);
        assert_eq!(FrameRepr::decode(&f.encode()).unwrap(), f);
        // HDLC_INFO_N1 (dlms-facts 7.1): info longer than the negotiated maximum.
        assert_eq!(f.check_info_len(2037), Ok(()));
        assert_eq!(
            f.check_info_len(2036),
            Err(HdlcError::TooLong {
                len: 2037,
                max: 2036
            })
        );
    }

    #[test]
    fn raw_frames_for_wrong_sequence_numbers_and_bad_control() {
        // HDLC_INFO_N2/N3 (wrong N(R)/N(S)) and HDLC_FRAME_N5 (bad control): the
        // frames are well-formed, the codec reports the fields for the link layer.
        let raw = RawFrame {
            control: Control::I {
                send_seq: 5,
                recv_seq: 6,
                poll_final: true,
            }
            .to_byte(),
            ..raw_i_frame()
        };
        let f = FrameRepr::decode(&raw.encode()).unwrap();
        assert_eq!(
            f.control,
            Control::I {
                send_seq: 5,
                recv_seq: 6,
                poll_final: true
            }
        );
        let raw = RawFrame {
            control: 0xFF,
            ..RawFrame::from(&disc())
        };
        assert_eq!(
            FrameRepr::decode(&raw.encode()).unwrap().control,
            Control::Unknown(0xFF)
        );
    }

    // --- Frame view --------------------------------------------------------------

    #[test]
    fn frame_view_reports_fields_of_a_broken_frame() {
        let raw = RawFrame {
            fcs: Some(0x1111),
            ..raw_i_frame()
        };
        let wire = raw.encode();
        let v = Frame::new_checked(&wire[..]).unwrap();
        assert!(v.has_opening_flag() && v.has_closing_flag());
        assert_eq!(v.format_type(), 0xA);
        assert!(!v.segmented());
        assert_eq!(usize::from(v.length()), wire.len() - 2);
        assert_eq!(v.dest_bytes(), Some(&[0x02, 0x23][..]));
        assert_eq!(v.src_bytes(), Some(&[0x21][..]));
        assert_eq!(v.dest(), Some(Ok(Address::server(1, 17))));
        assert_eq!(v.src(), Some(Ok(Address::client(16))));
        assert_eq!(v.control_byte(), Some(0x10));
        assert_eq!(v.hcs(), v.computed_hcs());
        assert_eq!(v.info(), Some(&raw.info[..]));
        assert_eq!(v.fcs(), Some(0x1111));
        assert_ne!(v.computed_fcs(), Some(0x1111));

        let v = Frame::new_checked(hex("7E A0 07 03 21 53 03 C7 7E")).unwrap();
        assert_eq!(v.info(), Some(&[][..]));
        assert_eq!(v.hcs(), None);
        assert_eq!(v.fcs(), Some(0xC703));
        assert_eq!(v.computed_fcs(), Some(0xC703));

        // Without flags.
        let v = Frame::new_checked(hex("A0 07 03 21 53 03 C7")).unwrap();
        assert!(!v.has_opening_flag());
        assert_eq!(v.control(), Some(Control::Disc { poll_final: true }));
    }

    #[test]
    fn rejects_frame_view_shorter_than_format() {
        assert_eq!(
            Frame::new_checked(&[0x7E, 0xA0][..]).err(),
            Some(HdlcError::TooShort { len: 2 })
        );
        assert!(Frame::new_checked(&[][..]).is_err());
        let v = Frame::new_checked(&[0x7E, 0xA0, 0x07][..]).unwrap();
        assert_eq!(v.dest_bytes(), None);
        assert_eq!(v.control_byte(), None);
        assert_eq!(v.fcs(), None);
    }

    // --- Link parameters -----------------------------------------------------------

    #[test]
    fn link_params_encode_and_decode() {
        let p = LinkParams {
            max_info_tx: 2030,
            max_info_rx: 0x80,
            window_tx: 4,
            window_rx: 7,
        };
        let enc = p.encode();
        assert_eq!(
            enc,
            hex("81 80 13 05 02 07 EE 06 01 80 07 04 00 00 00 04 08 04 00 00 00 07")
        );
        assert_eq!(LinkParams::decode(&enc).unwrap(), p);
        assert_eq!(LinkParams::decode(&[]).unwrap(), LinkParams::default());
        // Absent parameters take their default; 2- and 1-byte windows; unknown skipped.
        let p = LinkParams::decode(&hex("81 80 0A 06 02 01 00 09 01 FF 08 01 03")).unwrap();
        assert_eq!(
            p,
            LinkParams {
                max_info_rx: 256,
                window_rx: 3,
                ..LinkParams::default()
            }
        );
        // A 4-byte max info length that fits.
        let p = LinkParams::decode(&hex("81 80 06 05 04 00 00 04 00")).unwrap();
        assert_eq!(p.max_info_tx, 1024);
        // An unknown group is skipped.
        let p = LinkParams::decode(&hex("81 F0 01 AA 80 03 07 01 02")).unwrap();
        assert_eq!(p.window_tx, 2);
    }

    #[test]
    fn rejects_bad_parameters() {
        for bad in [
            "80 80 00",                   // wrong format identifier
            "81",                         // no group
            "81 80",                      // no group length
            "81 80 05 05 01 80",          // group longer than the bytes
            "81 80 03 05 03 00 00",       // parameter longer than the group
            "81 80 05 05 03 00 00 80",    // 3-byte value
            "81 80 02 05 00",             // 0-byte value
            "81 80 01 05",                // no parameter length
            "81 80 06 05 04 00 01 00 00", // max info > 65535
            "81 80 06 07 01 01 07 01 02", // duplicate
        ] {
            let e = LinkParams::decode(&hex(bad)).unwrap_err();
            assert!(matches!(e, HdlcError::BadParameters { .. }), "{bad}: {e}");
        }
    }

    // --- Deframer --------------------------------------------------------------------

    fn events(d: &mut Deframer) -> Vec<DeframeEvent> {
        std::iter::from_fn(|| d.next_event()).collect()
    }

    fn frames(d: &mut Deframer) -> Vec<FrameRepr> {
        events(d)
            .into_iter()
            .filter_map(|e| match e {
                DeframeEvent::Frame(f) => Some(f),
                DeframeEvent::Invalid { .. } => None,
            })
            .collect()
    }

    #[test]
    fn deframer_handles_shared_and_doubled_flags_and_garbage() {
        let a = hex("7E A0 07 03 21 53 03 C7 7E");
        let b = hex("7E A0 07 21 03 1F 6B E9 7E");
        let mut d = Deframer::new();
        d.push(&[0x00, 0x11, 0x22]);
        d.push(&a);
        d.push(&b[1..]); // shared flag
        d.push(&[0x7E]);
        d.push(&a); // doubled flag
        d.push(&[0x7E, 0x7E]);
        assert_eq!(d.dropped_bytes(), 3);
        let fs = frames(&mut d);
        assert_eq!(fs.len(), 3);
        assert_eq!(fs[1].control, Control::Dm { poll_final: true });
        assert_eq!(d.buffered(), 1); // the last flag may open a frame
    }

    #[test]
    fn deframer_uses_length_so_inner_flags_do_not_cut() {
        let f = FrameRepr {
            segmented: false,
            dest: Address::client(16),
            src: Address::server(1, 17),
            control: Control::I {
                send_seq: 0,
                recv_seq: 1,
                poll_final: true,
            },
            info: vec![0x7E, 0x7E, 0xA0, 0x07, 0x7E, 0x00],
        };
        let wire = f.encode();
        let mut d = Deframer::new();
        for b in &wire {
            d.push(&[*b]);
        }
        assert_eq!(events(&mut d), vec![DeframeEvent::Frame(f)]);
    }

    /// An FCS whose last byte is 0x7E (1 frame in 256: no byte stuffing) is
    /// followed by the closing flag, `.. 7E 7E`. dlms-cosem 25.1.0 hangs on
    /// such a frame (tests/interop.rs, "Findings"); the deframer must not,
    /// whether the next frame shares that flag, has its own, or never comes.
    #[test]
    fn deframer_takes_a_frame_whose_fcs_ends_in_a_flag_byte() {
        let f = (0u8..=255)
            .map(|x| FrameRepr {
                segmented: false,
                dest: Address::client(16),
                src: Address::server(1, 17),
                control: Control::I {
                    send_seq: 1,
                    recv_seq: 2,
                    poll_final: true,
                },
                info: vec![0xE6, 0xE7, 0x00, 0xC4, 0x01, 0xC1, 0x00, x],
            })
            .find(|f| f.encode().ends_with(&[0x7E, 0x7E]))
            .expect("one of 256 infos gives an FCS ending in 7E");
        let wire = f.encode();
        let next = hex("7E A0 07 21 03 1F 6B E9 7E");
        for follow in [&[][..], &next[..], &next[1..]] {
            let mut stream = wire.clone();
            stream.extend_from_slice(follow);
            for chunk in [1, 3, stream.len()] {
                let mut d = Deframer::new();
                for c in stream.chunks(chunk) {
                    d.push(c);
                }
                let got = events(&mut d);
                assert_eq!(got.len(), 1 + usize::from(!follow.is_empty()));
                assert_eq!(got[0], DeframeEvent::Frame(f.clone()));
                assert!(matches!(got.last(), Some(DeframeEvent::Frame(_))));
                assert_eq!(d.dropped_bytes(), 0);
            }
        }
    }

    #[test]
    fn deframer_reports_invalid_frames_and_resynchronises() {
        let good = hex("7E A0 07 03 21 53 03 C7 7E");
        let bad_fcs = RawFrame {
            fcs: Some(0),
            ..RawFrame::from(&disc())
        }
        .encode();
        let mut d = Deframer::new();
        d.push(&bad_fcs);
        d.push(&good);
        let ev = events(&mut d);
        assert_eq!(ev.len(), 2);
        assert_eq!(
            ev[0],
            DeframeEvent::Invalid {
                bytes: bad_fcs.clone(),
                error: HdlcError::FcsMismatch {
                    expected: 0xC703,
                    got: 0
                }
            }
        );
        assert_eq!(ev[1], DeframeEvent::Frame(disc()));
        assert_eq!(d.dropped_bytes(), 0);

        // Wrong format type: invalid up to the next flag.
        let mut d = Deframer::new();
        d.push(&hex("7E 12 34 56"));
        d.push(&good);
        let ev = events(&mut d);
        assert_eq!(
            ev[0],
            DeframeEvent::Invalid {
                bytes: hex("7E 12 34 56 7E"),
                error: HdlcError::BadFormatType(1)
            }
        );
        assert_eq!(ev[1], DeframeEvent::Frame(disc()));

        // Length says the frame ends on a byte that is not a flag.
        let mut d = Deframer::new();
        d.push(&hex("7E A0 08 03 21 53 03 C7 7E 00"));
        d.push(&good);
        let ev = events(&mut d);
        assert!(matches!(
            ev[0],
            DeframeEvent::Invalid {
                error: HdlcError::LengthMismatch {
                    declared: 8,
                    actual: 7
                },
                ..
            }
        ));
        assert_eq!(
            ev[1],
            DeframeEvent::Invalid {
                bytes: hex("7E 00 7E"),
                error: HdlcError::TooShort { len: 3 }
            }
        );
        assert_eq!(ev[2], DeframeEvent::Frame(disc()));
    }

    #[test]
    fn deframer_noise_with_plausible_header_does_not_stall_the_next_frame() {
        // Line noise after a flag that looks like the start of a 2000-byte frame.
        let good = hex("7E A0 07 03 21 53 03 C7 7E");
        let mut d = Deframer::new();
        d.push(&hex("7E A7 D0 01"));
        d.push(&good);
        let ev = events(&mut d);
        assert!(matches!(ev[0], DeframeEvent::Invalid { .. }));
        assert_eq!(ev[1], DeframeEvent::Frame(disc()));
    }

    #[test]
    fn accepts_frame_whose_info_holds_a_valid_frame_in_any_chunking() {
        // Found by the `hdlc_deframer` fuzz target (fuzz/regressions/hdlc_deframer/):
        // an I-frame whose info field contains a complete DM frame was cut at the
        // inner flag when the inner frame arrived before the outer one was complete,
        // giving an invalid frame and a DM that was never sent.
        let outer = FrameRepr {
            segmented: false,
            dest: Address::One(0x21),
            src: Address::One(0x12),
            control: Control::I {
                send_seq: 0,
                recv_seq: 0,
                poll_final: false,
            },
            info: hex("F8FCDEACC51A3081 67 7EA00721031F6BE97E 00228D221D30"),
        };
        let mut stream = vec![FLAG];
        stream.extend_from_slice(&outer.encode());
        for chunk in [1, 2, 3, 5, 8, 13, 21, stream.len()] {
            let mut d = Deframer::new();
            for piece in stream.chunks(chunk) {
                d.push(piece);
            }
            assert_eq!(
                events(&mut d),
                vec![DeframeEvent::Frame(outer.clone())],
                "chunks of {chunk}"
            );
        }
        // Noise whose header does not check is still cut at the valid frame inside.
        let mut noise = outer.encode();
        noise[6] ^= 0xFF; // the HCS
        noise.truncate(noise.len() - 8);
        let mut d = Deframer::new();
        d.push(&noise);
        let ev = events(&mut d);
        assert!(matches!(ev[0], DeframeEvent::Invalid { .. }), "{ev:?}");
        assert!(
            matches!(ev[1], DeframeEvent::Frame(ref f) if f.control == Control::Dm { poll_final: true })
        );
    }

    #[test]
    fn deframer_bounds_memory() {
        let mut d = Deframer::new();
        d.push(&vec![0x55; 10_000]);
        assert_eq!(d.buffered(), 0);
        assert_eq!(d.dropped_bytes(), 10_000);
        // A flag followed by endless bytes that cannot form a frame.
        let mut d = Deframer::new();
        d.push(&[0x7E, 0x00]);
        for _ in 0..100 {
            d.push(&[0x11; 100]);
            assert!(d.buffered() <= 2 * MAX_FRAME_LEN);
        }
        assert!(d.dropped_bytes() > 0);
        // A plausible header waiting for its end never holds more than one frame.
        let mut d = Deframer::new();
        d.push(&[0x7E, 0xA7, 0xFF]);
        for _ in 0..100 {
            d.push(&[0x11; 100]);
            assert!(d.buffered() <= 2 * MAX_FRAME_LEN);
        }
    }

    #[test]
    fn deframer_adversarial_streams_finish() {
        // Streams built to defeat the deframer: long plausible headers whose ends land on
        // flags, endless flags, endless half-frames. Fed one byte at a time, they must
        // finish quickly (each flag is classified once) and within the memory bound.
        // (100 kB of each ran in under 0.5 s unoptimised when this was written.)
        let pats: [&[u8]; 7] = [
            &[0x7E, 0xA7, 0xFF, 0x11],
            &[
                0x7E, 0xA0, 0x07, 0x03, 0x21, 0x53, 0x03, 0xC7, 0x7E, 0xA7, 0xFF,
            ],
            &[0x7E, 0xA0, 0x07, 0x03, 0x21, 0x53, 0x03, 0x00, 0x7E],
            &[0x7E],
            &[0x7E, 0xA0],
            &[0x7E, 0x00, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11],
            &[0x7E, 0xA0, 0x09, 0x11, 0x11, 0x11, 0x11, 0x11],
        ];
        for p in pats {
            let mut d = Deframer::new();
            for b in p.iter().copied().cycle().take(20_000) {
                d.push(&[b]);
                while d.next_event().is_some() {}
                assert!(d.buffered() <= 2 * MAX_FRAME_LEN + 1);
            }
        }
    }

    // --- Property tests ------------------------------------------------------------

    fn address() -> impl Strategy<Value = Address> {
        prop_oneof![
            (0u8..=0x7F).prop_map(Address::One),
            (0u8..=0x7F, 0u8..=0x7F).prop_map(|(upper, lower)| Address::Two { upper, lower }),
            (0u16..=0x3FFF, 0u16..=0x3FFF)
                .prop_map(|(upper, lower)| Address::Four { upper, lower }),
        ]
    }

    fn frame_repr() -> impl Strategy<Value = FrameRepr> {
        (
            any::<bool>(),
            address(),
            address(),
            any::<u8>(),
            // Flags inside the info field are frequent on purpose: they must not cut frames.
            proptest::collection::vec(prop_oneof![3 => any::<u8>(), 1 => Just(FLAG)], 0..200),
        )
            .prop_map(|(segmented, dest, src, c, info)| FrameRepr {
                segmented,
                dest,
                src,
                control: Control::from_byte(c),
                info,
            })
    }

    /// Garbage often looks like the start of a frame (format type 0xA).
    fn garbage_byte() -> impl Strategy<Value = u8> {
        prop_oneof![2 => any::<u8>(), 1 => 0xA0u8..=0xAF]
    }

    proptest! {
        #[test]
        fn frame_repr_round_trips(f in frame_repr()) {
            let wire = f.encode();
            prop_assert_eq!(wire.len(), f.buffer_len());
            prop_assert_eq!(RawFrame::from(&f).encode(), wire.clone());
            prop_assert_eq!(FrameRepr::decode(&wire), Ok(f));
        }

        #[test]
        fn decode_arbitrary_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = FrameRepr::decode(&b);
            let mut framed = vec![FLAG];
            framed.extend_from_slice(&b);
            framed.push(FLAG);
            let _ = FrameRepr::decode(&framed);
            let _ = LinkParams::decode(&b);
            if let Ok(v) = Frame::new_checked(&b[..]) {
                let _ = (v.dest(), v.src(), v.control(), v.hcs(), v.info(), v.fcs());
                let _ = (v.computed_hcs(), v.computed_fcs(), v.length(), v.segmented());
            }
            let _ = Address::decode(&mut Reader::new(&b));
        }

        #[test]
        fn link_params_round_trip(a in any::<u16>(), b in any::<u16>(), c in any::<u32>(), d in any::<u32>()) {
            let p = LinkParams { max_info_tx: a, max_info_rx: b, window_tx: c, window_rx: d };
            prop_assert_eq!(LinkParams::decode(&p.encode()), Ok(p));
        }

        #[test]
        fn deframer_never_panics_on_random_chunks(
            chunks in proptest::collection::vec(
                proptest::collection::vec(
                    prop_oneof![any::<u8>(), Just(FLAG), Just(0xA0)], 0..300),
                0..20)
        ) {
            let mut d = Deframer::new();
            for c in &chunks {
                d.push(c);
                while d.next_event().is_some() {}
                prop_assert!(d.buffered() <= 3 * MAX_FRAME_LEN);
            }
        }

        #[test]
        fn deframer_recovers_every_frame_between_garbage(
            items in proptest::collection::vec(
                (frame_repr(), proptest::collection::vec(garbage_byte(), 0..40)),
                1..8),
            lead in proptest::collection::vec(garbage_byte(), 0..40),
            cuts in proptest::collection::vec(any::<usize>(), 0..30),
        ) {
            let clean = |g: &[u8]| g.iter().map(|&b| if b == FLAG { 0x00 } else { b }).collect::<Vec<u8>>();
            let mut stream = clean(&lead);
            for (f, g) in &items {
                stream.extend(f.encode());
                stream.extend(clean(g));
            }
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.push(0);
            cuts.push(stream.len());
            cuts.sort_unstable();
            let mut d = Deframer::new();
            let mut got = Vec::new();
            for w in cuts.windows(2) {
                d.push(&stream[w[0]..w[1]]);
                while let Some(e) = d.next_event() {
                    if let DeframeEvent::Frame(f) = e { got.push(f); }
                }
            }
            let want: Vec<FrameRepr> = items.into_iter().map(|(f, _)| f).collect();
            prop_assert_eq!(got, want);
        }
    }
}
