//! `wire::axdr::Data::decode` on arbitrary bytes: when it decodes, encoding and
//! decoding again gives the same value, and every accessor (Display,
//! compact-array elements) terminates without panicking.
#![no_main]

use idis_harness::wire::Reader;
use idis_harness::wire::axdr::{Data, format_date_time};
use libfuzzer_sys::fuzz_target;

fn visit(d: &Data) {
    let _ = (d.tag(), d.type_name(), d.as_bytes(), d.as_integer());
    match d {
        Data::Array(items) | Data::Structure(items) => items.iter().for_each(visit),
        Data::CompactArray(c) => {
            if let Ok(elements) = c.elements() {
                elements.iter().for_each(visit);
            }
        }
        Data::BitString(b) => {
            let _ = b.get(b.bits.saturating_sub(1));
        }
        Data::DateTime(v) => {
            let _ = format_date_time(v);
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = Data::decode(data) {
        let wire = d.encode();
        assert_eq!(Data::decode(&wire).as_ref(), Ok(&d), "encode then decode");
        assert!(wire.len() <= data.len(), "the encoding never grows");
        visit(&d);
        let _ = d.to_string();
    }
    // Reading a prefix: a value followed by anything.
    let mut r = Reader::new(data);
    if let Ok(d) = Data::read(&mut r) {
        let used = r.position();
        assert_eq!(Data::decode(&data[..used]).as_ref(), Ok(&d));
    }
});
