//! The AES-GCM of `src/security/gcm.rs` (composed from `aes` and `ghash`)
//! against the `aes-gcm` crate, through the public `security::protect` and
//! `security::unprotect`, for any keys, system title, counter, security control
//! and APDU (any length up to libFuzzer's `-max_len`).
//!
//! Input: `sc | ek(16) | ak(16) | st(8) | ic(4) | flip(2) | apdu...`. The
//! security control is reduced to authentication and/or encryption of suite 0.
//! `flip` names a bit of the protected content to flip; when authenticated,
//! the flipped content must then be rejected.
#![no_main]

use aes_gcm::aead::consts::U12;
use aes_gcm::aes::Aes128;
use aes_gcm::{AeadInOut, AesGcm, KeyInit};
use idis_harness::security::{Key, SecurityControl, SystemTitle, protect, unprotect};
use libfuzzer_sys::fuzz_target;

type Reference = AesGcm<Aes128, U12, U12>;

/// `SC || IC || C || T` by the reference, per dlms-facts.md 1.3.
fn reference(sc: u8, ek: &[u8; 16], ak: &[u8; 16], st: &[u8; 8], ic: u32, apdu: &[u8]) -> Vec<u8> {
    let g = Reference::new(ek.into());
    let mut iv = [0u8; 12];
    iv[..8].copy_from_slice(st);
    iv[8..].copy_from_slice(&ic.to_be_bytes());
    let mut out = vec![sc];
    out.extend_from_slice(&ic.to_be_bytes());
    let mut a = vec![sc];
    a.extend_from_slice(ak);
    let (auth, enc) = (sc & 0x10 != 0, sc & 0x20 != 0);
    let mut body = apdu.to_vec();
    if auth && !enc {
        a.extend_from_slice(apdu);
        let t = g.encrypt_inout_detached(&iv.into(), &a, (&mut [][..]).into()).unwrap();
        out.extend_from_slice(&body);
        out.extend_from_slice(&t);
    } else {
        let aad: &[u8] = if auth { &a } else { &[] };
        let t = g.encrypt_inout_detached(&iv.into(), aad, (&mut body[..]).into()).unwrap();
        out.extend_from_slice(&body);
        if auth {
            out.extend_from_slice(&t);
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 1 + 16 + 16 + 8 + 4 + 2 {
        return;
    }
    let sc = match data[0] % 3 {
        0 => 0x10,
        1 => 0x20,
        _ => 0x30,
    };
    let ek: [u8; 16] = data[1..17].try_into().unwrap();
    let ak: [u8; 16] = data[17..33].try_into().unwrap();
    let st: [u8; 8] = data[33..41].try_into().unwrap();
    let ic = u32::from_be_bytes(data[41..45].try_into().unwrap());
    let flip = u16::from_be_bytes([data[45], data[46]]) as usize;
    let apdu = &data[47..];

    let (k_ek, k_ak, title) = (Key::new(ek), Key::new(ak), SystemTitle(st));
    let ours = protect(SecurityControl(sc), &title, ic, &k_ek, &k_ak, apdu).unwrap();
    assert_eq!(ours, reference(sc, &ek, &ak, &st, ic, apdu), "protect differs from aes-gcm");

    let back = unprotect(&ours, &title, &k_ek, &k_ak).unwrap();
    assert_eq!((back.sc.0, back.ic, back.apdu.as_slice()), (sc, ic, apdu));

    // A flipped bit after SC || IC: rejected when authenticated.
    let mut bad = ours.clone();
    let at = 5 + flip / 8 % (bad.len() - 5).max(1);
    if at < bad.len() {
        bad[at] ^= 1 << (flip % 8);
        let r = unprotect(&bad, &title, &k_ek, &k_ak);
        if sc & 0x10 != 0 {
            assert!(r.is_err(), "a flipped bit at {at} was accepted");
        }
    }
});
