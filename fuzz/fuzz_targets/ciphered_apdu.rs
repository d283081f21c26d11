//! The security layer on arbitrary content, with the Green Book example keys
//! (EK 000102..0F, AK D0..DF; dlms-facts.md 1.5): `security::unprotect`,
//! `session::cipher::CipherContext::open`/`unprotect` and HLS-GMAC verification.
//!
//! Input: `mode | rest...`.
//! * mode 0: `rest` is untrusted protected content, and an untrusted APDU.
//! * mode 1: `sc | ic(4) | flags | at(2) | xor | plain...`: `plain` is protected
//!   honestly (so the fuzzer reaches the code behind a verified tag), optionally
//!   tampered with at `at`, and opened by the peer.
//! * mode 2: HLS-GMAC, an untrusted reply and challenge, then an honest one.
#![no_main]

use idis_harness::profile::{Ciphering, Protection};
use idis_harness::security::{
    Key, SecurityControl, SecurityError, SystemTitle, hls_gmac, protect, unprotect, verify_hls_gmac,
};
use idis_harness::session::cipher::{CipherContext, CipherError};
use idis_harness::wire::apdu::Apdu;
use libfuzzer_sys::fuzz_target;

const CLIENT: SystemTitle = SystemTitle::EXAMPLE_CLIENT;
const SERVER: SystemTitle = SystemTitle::EXAMPLE_SERVER;

fn context(own: SystemTitle, peer: SystemTitle, ciphering: Ciphering) -> CipherContext {
    let mut c = CipherContext::new(
        own,
        Key::EXAMPLE_EK,
        Key::EXAMPLE_AK,
        Protection::AuthenticatedEncrypted,
        ciphering,
        1,
    );
    c.peer_title = Some(peer);
    c
}

fn untrusted(rest: &[u8]) {
    for st in [SERVER, CLIENT] {
        if let Ok(p) = unprotect(rest, &st, &Key::EXAMPLE_EK, &Key::EXAMPLE_AK) {
            // Only reachable without a tag (encryption only), or with a forged one.
            let again = protect(p.sc, &st, p.ic, &Key::EXAMPLE_EK, &Key::EXAMPLE_AK, &p.apdu);
            assert_eq!(again.as_deref(), Ok(rest), "unprotect then protect");
        }
    }
    if let Ok(apdu) = Apdu::decode(rest) {
        let mut server = context(SERVER, CLIENT, Ciphering::ServiceSpecific);
        let opened = server.open(&apdu);
        let checked = server.unprotect(&apdu);
        assert_eq!(
            opened.is_ok(),
            checked.is_ok()
                || matches!(
                    checked,
                    Err(CipherError::Replayed { .. } | CipherError::Exhausted(_))
                )
        );
        if let Ok(u) = checked {
            let _ = (
                u.apdu.to_string(),
                CipherContext::meets(u.sc, Protection::AuthenticatedEncrypted),
            );
            // The same bytes again are a replay.
            assert!(server.unprotect(&apdu).is_err());
        }
    }
}

fn honest(rest: &[u8]) {
    let Some((&[sc, i0, i1, i2, i3, flags, a0, a1, x], plain)) = rest.split_first_chunk::<9>()
    else {
        return;
    };
    let sc = SecurityControl(sc);
    let ic = u32::from_be_bytes([i0, i1, i2, i3]);
    let ciphering = if flags & 1 == 0 {
        Ciphering::ServiceSpecific
    } else {
        Ciphering::General
    };
    let client = context(CLIENT, SERVER, ciphering);
    let mut server = context(SERVER, CLIENT, ciphering);

    // The raw layer first.
    let content = protect(sc, &CLIENT, ic, &Key::EXAMPLE_EK, &Key::EXAMPLE_AK, plain);
    let content = match content {
        Ok(c) => c,
        Err(e) => {
            assert!(
                matches!(
                    e,
                    SecurityError::UnsupportedSuite(_) | SecurityError::NoProtection(_)
                ),
                "{e}"
            );
            assert!(client.protect_with(plain, sc, ic, ciphering).is_err());
            return;
        }
    };
    let p = unprotect(&content, &CLIENT, &Key::EXAMPLE_EK, &Key::EXAMPLE_AK);
    let p = p.expect("honest content opens");
    assert_eq!((p.sc, p.ic, p.apdu.as_slice()), (sc, ic, plain));
    if flags & 2 != 0 {
        let mut tampered = content.clone();
        let at = usize::from(u16::from_be_bytes([a0, a1])) % tampered.len();
        tampered[at] ^= x;
        let still_authenticated = SecurityControl(tampered[0]).authenticated();
        let r = unprotect(&tampered, &CLIENT, &Key::EXAMPLE_EK, &Key::EXAMPLE_AK);
        if x != 0 && sc.authenticated() && still_authenticated {
            assert!(r.is_err(), "tampered authenticated content accepted");
        }
    }

    // The session layer: wrapped in its glo- or general-glo APDU.
    let wire = client
        .protect_with(plain, sc, ic, ciphering)
        .expect("protect_with");
    let apdu = Apdu::decode(&wire).expect("a protected APDU decodes");
    match server.unprotect(&apdu) {
        Ok(u) => {
            assert_eq!(u.plain, plain);
            assert_eq!(u.ic, ic);
            assert_eq!(Ok(&u.apdu), Apdu::decode(plain).as_ref());
            assert!(server.unprotect(&apdu).is_err(), "replay accepted");
        }
        Err(CipherError::Garbled(_)) => assert!(Apdu::decode(plain).is_err()),
        Err(CipherError::Exhausted(_)) => assert_eq!(ic, u32::MAX),
        Err(e) => panic!("honest APDU refused: {e}"),
    }
}

fn hls(rest: &[u8]) {
    let (reply, challenge) = rest.split_at(rest.len().min(17));
    for st in [SERVER, CLIENT] {
        let _ = verify_hls_gmac(reply, &st, &Key::EXAMPLE_EK, &Key::EXAMPLE_AK, challenge);
    }
    let Some((&[sc, i0, i1, i2, i3], challenge)) = rest.split_first_chunk::<5>() else {
        return;
    };
    let ic = u32::from_be_bytes([i0, i1, i2, i3]);
    let sc = SecurityControl(sc);
    let f = hls_gmac(
        sc,
        &SERVER,
        ic,
        &Key::EXAMPLE_EK,
        &Key::EXAMPLE_AK,
        challenge,
    );
    let v = verify_hls_gmac(&f, &SERVER, &Key::EXAMPLE_EK, &Key::EXAMPLE_AK, challenge);
    if sc.suite() <= 1 {
        assert_eq!(v, Ok(ic));
        assert!(
            verify_hls_gmac(&f, &CLIENT, &Key::EXAMPLE_EK, &Key::EXAMPLE_AK, challenge).is_err()
        );
    } else {
        assert_eq!(v, Err(SecurityError::UnsupportedSuite(sc.suite())));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => untrusted(rest),
        1 => honest(rest),
        _ => hls(rest),
    }
});
