//! `wire::apdu::Apdu::decode` on arbitrary bytes: when it decodes, encoding and
//! decoding again gives the same APDU, and the Display and accessors work.
#![no_main]

use idis_harness::wire::apdu::{Apdu, tag_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(a) = Apdu::decode(data) else {
        return;
    };
    let wire = a.encode();
    assert_eq!(Apdu::decode(&wire).as_ref(), Ok(&a), "encode then decode");
    assert_eq!(a.tag(), wire.first().copied().unwrap_or_default());
    let _ = (a.name(), a.invoke_id(), tag_name(a.tag()));
    let _ = a.to_string();
    match &a {
        Apdu::Aarq(x) => {
            let _ = x.user_information_apdu();
        }
        Apdu::Aare(x) => {
            let _ = (x.user_information_apdu(), x.accepted());
        }
        Apdu::Ciphered(c) => {
            let _ = (c.security_control(), c.invocation_counter(), c.kind());
        }
        Apdu::GeneralGloCiphering(g) | Apdu::GeneralDedCiphering(g) => {
            let _ = (g.security_control(), g.invocation_counter());
        }
        _ => {}
    }
});
