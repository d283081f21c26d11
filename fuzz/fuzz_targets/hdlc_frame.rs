//! `wire::hdlc::FrameRepr::decode` and `LinkParams::decode` on arbitrary bytes.
//!
//! A frame that decodes re-encodes to exactly the input (the format is canonical:
//! addresses, control byte and CRCs are all determined by the decoded fields).
//! Link parameters that decode survive encode then decode.
#![no_main]

use idis_harness::wire::hdlc::{Frame, FrameRepr, LinkParams, RawFrame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match FrameRepr::decode(data) {
        Ok(f) => {
            let wire = f.encode();
            assert_eq!(wire, data, "a decoded frame re-encodes to its input");
            assert_eq!(f.buffer_len(), data.len());
            assert_eq!(RawFrame::from(&f).encode(), wire);
            let _ = f.to_string();
            let _ = f.check_info_len(u16::from(data.first().copied().unwrap_or(0)));
            // The parameter field of SNRM/UA, and any info field, through LinkParams.
            if let Ok(p) = LinkParams::decode(&f.info) {
                assert_eq!(LinkParams::decode(&p.encode()), Ok(p));
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    // The lenient view of the same bytes.
    let v = Frame::new_unchecked(data);
    let _ = (v.format_type(), v.segmented(), v.length(), v.body());
    let _ = (v.dest_bytes(), v.src_bytes(), v.dest(), v.src());
    let _ = (
        v.control(),
        v.hcs(),
        v.computed_hcs(),
        v.info(),
        v.fcs(),
        v.computed_fcs(),
    );
    let _ = Frame::new_checked(data).map(|f| f.has_closing_flag());
    // The whole input as a parameter field.
    match LinkParams::decode(data) {
        Ok(p) => assert_eq!(LinkParams::decode(&p.encode()), Ok(p)),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
