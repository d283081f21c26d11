//! `wire::wrapper`: `WrapperDeframer` with arbitrary split points and payload
//! limits, and `WrapperFrame::decode_datagram`.
//!
//! Input: `limit(2) | seed(2) | stream...`. The frames (and the error, if any)
//! must not depend on how the stream is split; a datagram that decodes
//! re-encodes to exactly its bytes.
#![no_main]

use idis_harness::wire::wrapper::{HEADER_LEN, WrapperDeframer, WrapperError, WrapperFrame};
use libfuzzer_sys::fuzz_target;

/// Runs the deframer over `stream` cut at the given points; returns what came out.
fn deframe(
    stream: &[u8],
    max_payload: usize,
    mut seed: u32,
) -> (Vec<WrapperFrame>, Option<WrapperError>) {
    let mut d = WrapperDeframer::new(max_payload);
    let mut frames = Vec::new();
    let mut rest = stream;
    loop {
        while let Some(r) = d.next_frame() {
            match r {
                Ok(f) => {
                    assert!(f.payload.len() <= max_payload);
                    frames.push(f);
                }
                Err(e) => {
                    // The error sticks until reset, and bytes pushed meanwhile are dropped.
                    d.push(rest);
                    assert_eq!(d.next_frame(), Some(Err(e.clone())));
                    assert_eq!(d.buffered(), 0);
                    d.reset();
                    assert_eq!(d.buffered(), 0);
                    return (frames, Some(e));
                }
            }
        }
        if rest.is_empty() {
            // What is left is an incomplete frame.
            assert!(d.buffered() < HEADER_LEN + max_payload);
            return (frames, None);
        }
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let n = (seed as usize % 24).clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        d.push(chunk);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = WrapperFrame::decode_datagram(data) {
        assert_eq!(f.encode(), data, "a datagram re-encodes to its bytes");
        let _ = f.to_string();
    }
    let Some((&[l0, l1, s0, s1], stream)) = data.split_first_chunk::<4>() else {
        return;
    };
    let max_payload = usize::from(u16::from_be_bytes([l0, l1]));
    let seed = u32::from(u16::from_be_bytes([s0, s1])) | 0x1_0000;
    let split = deframe(stream, max_payload, seed);
    // The same stream in one piece.
    let mut d = WrapperDeframer::new(max_payload);
    d.push(stream);
    let mut whole = (Vec::new(), None);
    while let Some(r) = d.next_frame() {
        match r {
            Ok(f) => whole.0.push(f),
            Err(e) => {
                whole.1 = Some(e);
                break;
            }
        }
    }
    assert_eq!(split, whole, "framing must not depend on the split points");
    for f in &split.0 {
        let wire = f.encode();
        assert_eq!(WrapperFrame::decode_datagram(&wire).as_ref(), Ok(f));
    }
});
