//! Feeds arbitrary bytes, in arbitrary chunks, to `wire::hdlc::Deframer`.
//!
//! Input: `mode | seed(2) | bytes...`.
//! * mode even: `bytes` is a raw line stream. Every event is checked: a frame
//!   re-encodes to bytes that decode to the same frame, an invalid frame's bytes
//!   really fail to decode, and the buffer stays within its bound.
//! * mode odd: `bytes` is cut into frame descriptions that are encoded, joined
//!   (with runs of extra flags between them) and deframed: exactly those frames
//!   must come out, in order, whatever the chunking.
#![no_main]

use idis_harness::wire::hdlc::{
    Address, Control, DeframeEvent, Deframer, FLAG, Frame, FrameRepr, MAX_FRAME_LEN,
};
use libfuzzer_sys::fuzz_target;

/// A small deterministic generator for chunk sizes.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        // xorshift32; a zero state stays zero, so mix in a constant.
        let mut x = self.0 | 1;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }

    /// Mostly small chunks, sometimes large ones, sometimes everything at once.
    fn chunk(&mut self, left: usize) -> usize {
        let r = self.next();
        let n = match r % 8 {
            0 => left,
            1 => (r >> 8) as usize % 4096,
            _ => (r >> 8) as usize % 32,
        };
        n.clamp(1, left.max(1))
    }
}

fn check_event(ev: &DeframeEvent) {
    match ev {
        DeframeEvent::Frame(f) => {
            let wire = f.encode();
            assert_eq!(wire.len(), f.buffer_len());
            assert_eq!(FrameRepr::decode(&wire).as_ref(), Ok(f), "frame re-encodes");
            let _ = f.to_string();
        }
        DeframeEvent::Invalid { bytes, error } => {
            assert!(
                FrameRepr::decode(bytes).is_err(),
                "an invalid event holds a decodable frame"
            );
            let _ = error.to_string();
            // The lenient view must answer every accessor without panicking.
            let v = Frame::new_unchecked(&bytes[..]);
            let _ = (v.format_type(), v.segmented(), v.length(), v.body());
            let _ = (v.dest(), v.src(), v.control(), v.hcs(), v.computed_hcs());
            let _ = (v.info(), v.fcs(), v.computed_fcs());
            let _ = Frame::new_checked(&bytes[..]);
        }
    }
}

/// Feeds `stream` in chunks, checking events and the memory bound; returns the events.
fn deframe(stream: &[u8], rng: &mut Rng) -> Vec<DeframeEvent> {
    let mut d = Deframer::new();
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rng.chunk(rest.len()));
        rest = tail;
        d.push(chunk);
        // Documented bound: about two maximum frames (push works in frame-sized pieces).
        assert!(
            d.buffered() <= 3 * MAX_FRAME_LEN,
            "deframer holds {} bytes",
            d.buffered()
        );
        while let Some(ev) = d.next_event() {
            check_event(&ev);
            out.push(ev);
        }
    }
    out
}

fn address(kind: u8, a: u8, b: u8, c: u8) -> Address {
    match kind % 3 {
        0 => Address::One(a & 0x7F),
        1 => Address::Two {
            upper: a & 0x7F,
            lower: b & 0x7F,
        },
        _ => Address::Four {
            upper: (u16::from(a) << 6 | u16::from(b)) & 0x3FFF,
            lower: (u16::from(b) << 7 | u16::from(c)) & 0x3FFF,
        },
    }
}

/// Cuts `data` into frames: `kinds control dest(3) src(3) flags info_len(2) info...`.
fn frames_from(mut data: &[u8]) -> (Vec<FrameRepr>, Vec<u8>) {
    let mut frames = Vec::new();
    let mut stream = Vec::new();
    while let Some((head, rest)) = data.split_first_chunk::<11>() {
        let [kinds, control, d0, d1, d2, s0, s1, s2, extra_flags, l0, l1] = *head;
        let len = usize::from(u16::from_be_bytes([l0, l1])) % 600;
        let len = len.min(rest.len());
        let (info, rest) = rest.split_at(len);
        data = rest;
        let f = FrameRepr {
            segmented: kinds & 0x80 != 0,
            dest: address(kinds, d0, d1, d2),
            src: address(kinds >> 2, s0, s1, s2),
            control: Control::from_byte(control),
            info: info.to_vec(),
        };
        stream.extend(std::iter::repeat_n(FLAG, usize::from(extra_flags % 3)));
        stream.extend_from_slice(&f.encode());
        frames.push(f);
    }
    (frames, stream)
}

fuzz_target!(|data: &[u8]| {
    let Some((&[mode, s0, s1], bytes)) = data.split_first_chunk::<3>() else {
        return;
    };
    let mut rng = Rng(u32::from(u16::from_be_bytes([s0, s1])) << 8 | u32::from(mode));
    if mode & 1 == 0 {
        deframe(bytes, &mut rng);
        return;
    }
    let (frames, stream) = frames_from(bytes);
    let events = deframe(&stream, &mut rng);
    let got: Vec<FrameRepr> = events
        .into_iter()
        .map(|e| match e {
            DeframeEvent::Frame(f) => f,
            DeframeEvent::Invalid { bytes, error } => {
                panic!("valid stream gave an invalid frame {error}: {bytes:02X?}")
            }
        })
        .collect();
    assert_eq!(got, frames, "valid frames in, the same frames out");
});
