//! AES-GCM-128 protection of xDLMS APDUs and HLS-GMAC (Green Book 9.2.7.2;
//! dlms-facts.md 1.3):
//!
//! * IV = system title of the sender (8 bytes) || invocation counter (4 bytes, big-endian).
//! * authenticated and encrypted: A = SC || AK, P = APDU, out = C || T.
//! * authenticated only: A = SC || AK || APDU, P empty, out = APDU || T.
//! * encrypted only: no A and no T, out = C.
//! * HLS-GMAC: A = SC || AK || challenge, P empty; f(challenge) = SC || IC || T.
//!
//! T is the first 12 bytes of the GCM tag.

use std::borrow::Cow;
use std::fmt;

use super::gcm::{AadHash, Gcm, GcmError, constant_time_eq};
use super::{Key, SecurityControl, SecurityError, SystemTitle};

/// Length of the authentication tag.
pub const TAG_LEN: usize = 12;

/// AES-GCM-128 keyed once: the AES key schedule and the GHASH key of one
/// encryption key, computed once and reused for every APDU protected or
/// unprotected under it (expanding the key for each APDU was the largest cost
/// of protecting a short APDU). With [`GcmKey::prepare`] it also holds the GHASH
/// of `SC || AK`, the additional data of every authenticated and encrypted APDU
/// of an association. It holds key material: its `Debug` shows none.
#[derive(Clone)]
pub struct GcmKey {
    gcm: Gcm,
    /// The security control and authentication key `sc_ak` was computed for.
    prepared: Option<(SecurityControl, Key, AadHash)>,
}

impl GcmKey {
    /// Expands an encryption key (global unicast, broadcast or dedicated).
    pub fn new(ek: &Key) -> Self {
        GcmKey {
            gcm: Gcm::new(ek.expose()),
            prepared: None,
        }
    }

    /// Precomputes the GHASH of `SC || AK` for this security control and
    /// authentication key (other values still work, computed per APDU).
    pub fn prepare(&mut self, sc: SecurityControl, ak: &Key) {
        if self.prepared_for(sc, ak).is_none() {
            let hash = self.gcm.aad(&aad_sc_ak(sc, ak));
            self.prepared = Some((sc, ak.clone(), hash));
        }
    }

    /// The prepared GHASH of `SC || AK`, when it was prepared for these.
    fn prepared_for(&self, sc: SecurityControl, ak: &Key) -> Option<&AadHash> {
        match &self.prepared {
            Some((s, k, hash)) if *s == sc && k == ak => Some(hash),
            _ => None,
        }
    }

    /// The GHASH of `SC || AK`: the prepared one, or computed now.
    fn sc_ak(&self, sc: SecurityControl, ak: &Key) -> Cow<'_, AadHash> {
        match self.prepared_for(sc, ak) {
            Some(hash) => Cow::Borrowed(hash),
            None => Cow::Owned(self.gcm.aad(&aad_sc_ak(sc, ak))),
        }
    }
}

impl fmt::Debug for GcmKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GcmKey(<expanded key, not shown>)")
    }
}

fn iv(st: &SystemTitle, ic: u32) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&st.0);
    n[8..].copy_from_slice(&ic.to_be_bytes());
    n
}

/// `SC || AK`, the additional data of authenticated encryption, without allocating.
fn aad_sc_ak(sc: SecurityControl, ak: &Key) -> [u8; 17] {
    let mut a = [0u8; 17];
    a[0] = sc.0;
    a[1..].copy_from_slice(ak.expose());
    a
}

fn aad(sc: SecurityControl, ak: &Key, extra: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(1 + 16 + extra.len());
    a.push(sc.0);
    a.extend_from_slice(ak.expose());
    a.extend_from_slice(extra);
    a
}

/// GMAC over `aad` with an empty plaintext.
pub(crate) fn gmac_raw(key: &Key, iv12: &[u8; 12], aad: &[u8]) -> [u8; TAG_LEN] {
    gmac_with(&GcmKey::new(key), iv12, aad)
}

/// GMAC over `aad` with an empty plaintext, under an expanded key.
fn gmac_with(gcm: &GcmKey, iv12: &[u8; 12], aad: &[u8]) -> [u8; TAG_LEN] {
    let tag = gcm
        .gcm
        .seal(iv12, &gcm.gcm.aad(aad), &mut [])
        .expect("GMAC of an empty message cannot be too long");
    truncate(tag)
}

fn truncate(tag: [u8; 16]) -> [u8; TAG_LEN] {
    let mut t = [0u8; TAG_LEN];
    t.copy_from_slice(&tag[..TAG_LEN]);
    t
}

/// Only for messages beyond GCM's limit of 64 GiB for one IV.
fn too_long(len: usize) -> SecurityError {
    SecurityError::TooLong { len }
}

fn check_suite(sc: SecurityControl) -> Result<(), SecurityError> {
    // Suites 0 and 1 both use AES-GCM-128 for symmetric protection.
    match sc.suite() {
        0 | 1 => Ok(()),
        s => Err(SecurityError::UnsupportedSuite(s)),
    }
}

/// Protects an APDU: returns `SC || IC || (ciphertext or APDU) || [T]`, the content
/// of a glo-/ded- APDU or of a general-glo-ciphering ciphered-content.
pub fn protect(
    sc: SecurityControl,
    st: &SystemTitle,
    ic: u32,
    ek: &Key,
    ak: &Key,
    apdu: &[u8],
) -> Result<Vec<u8>, SecurityError> {
    protect_with_key(sc, st, ic, &GcmKey::new(ek), ak, apdu)
}

/// [`protect`] with an encryption key expanded once ([`GcmKey`]), for a context
/// that protects many APDUs under the same key.
pub fn protect_with_key(
    sc: SecurityControl,
    st: &SystemTitle,
    ic: u32,
    gcm: &GcmKey,
    ak: &Key,
    apdu: &[u8],
) -> Result<Vec<u8>, SecurityError> {
    let mut out = Vec::with_capacity(protected_len(sc, apdu.len()));
    protect_append(&mut out, sc, st, ic, gcm, ak, apdu)?;
    Ok(out)
}

/// Length of the content `SC || IC || (ciphertext or APDU) || [T]` that protecting
/// an APDU of `apdu_len` bytes gives.
pub fn protected_len(sc: SecurityControl, apdu_len: usize) -> usize {
    5 + apdu_len + if sc.authenticated() { TAG_LEN } else { 0 }
}

/// [`protect_with_key`] appending the content to `out`, after whatever header the
/// caller wrote there (so a glo- APDU is built in one buffer). On an error `out`
/// is left as it was.
pub fn protect_append(
    out: &mut Vec<u8>,
    sc: SecurityControl,
    st: &SystemTitle,
    ic: u32,
    gcm: &GcmKey,
    ak: &Key,
    apdu: &[u8],
) -> Result<(), SecurityError> {
    check_suite(sc)?;
    if !sc.authenticated() && !sc.encrypted() {
        return Err(SecurityError::NoProtection(sc.0));
    }
    let nonce = iv(st, ic);
    let header = out.len();
    out.reserve(protected_len(sc, apdu.len()));
    out.push(sc.0);
    out.extend_from_slice(&ic.to_be_bytes());
    let start = out.len();
    out.extend_from_slice(apdu);
    let done = match (sc.authenticated(), sc.encrypted()) {
        // A = SC || AK || APDU, P empty: the tag follows the APDU in clear.
        (true, false) => {
            out.extend_from_slice(&gmac_with(gcm, &nonce, &aad(sc, ak, apdu)));
            Ok(())
        }
        // A = SC || AK, P = APDU.
        (true, true) => match gcm.gcm.seal(&nonce, &gcm.sc_ak(sc, ak), &mut out[start..]) {
            Ok(tag) => {
                out.extend_from_slice(&tag[..TAG_LEN]);
                Ok(())
            }
            Err(_) => Err(too_long(apdu.len())),
        },
        // Only the counter-mode part of GCM, no tag.
        _ => gcm
            .gcm
            .ctr(&nonce, &mut out[start..])
            .map_err(|_| too_long(apdu.len())),
    };
    if done.is_err() {
        out.truncate(header);
    }
    done
}

/// The result of [`unprotect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protected {
    pub sc: SecurityControl,
    pub ic: u32,
    /// The APDU inside.
    pub apdu: Vec<u8>,
}

/// Reads `SC || IC || payload || [T]`, verifies the tag (when authenticated) and
/// deciphers (when encrypted). `st` is the *sender's* system title. The caller
/// checks the invocation counter against its replay guard.
pub fn unprotect(
    content: &[u8],
    st: &SystemTitle,
    ek: &Key,
    ak: &Key,
) -> Result<Protected, SecurityError> {
    unprotect_with_key(content, st, &GcmKey::new(ek), ak)
}

/// [`unprotect`] with an encryption key expanded once ([`GcmKey`]).
pub fn unprotect_with_key(
    content: &[u8],
    st: &SystemTitle,
    gcm: &GcmKey,
    ak: &Key,
) -> Result<Protected, SecurityError> {
    unprotect_vec(content.to_vec(), st, gcm, ak)
}

/// [`unprotect_with_key`] deciphering in place in the content's own buffer, for
/// a caller that owns it (the content of a decoded ciphered APDU).
pub fn unprotect_vec(
    mut content: Vec<u8>,
    st: &SystemTitle,
    gcm: &GcmKey,
    ak: &Key,
) -> Result<Protected, SecurityError> {
    if content.len() < 5 {
        return Err(SecurityError::TooShort {
            len: content.len(),
            need: 5,
        });
    }
    let sc = SecurityControl(content[0]);
    check_suite(sc)?;
    let ic = u32::from_be_bytes([content[1], content[2], content[3], content[4]]);
    let nonce = iv(st, ic);
    let end = match (sc.authenticated(), sc.encrypted()) {
        (true, enc) => {
            if content.len() < 5 + TAG_LEN {
                return Err(SecurityError::TooShort {
                    len: content.len(),
                    need: 5 + TAG_LEN,
                });
            }
            let end = content.len() - TAG_LEN;
            let (head, t) = content.split_at_mut(end);
            let payload = &mut head[5..];
            if enc {
                gcm.gcm
                    .open(&nonce, &gcm.sc_ak(sc, ak), payload, t)
                    .map_err(|e| match e {
                        GcmError::TagMismatch => SecurityError::TagMismatch,
                        GcmError::TooLong => too_long(payload.len()),
                    })?;
            } else {
                let expect = gmac_with(gcm, &nonce, &aad(sc, ak, payload));
                if !constant_time_eq(&expect, t) {
                    return Err(SecurityError::TagMismatch);
                }
            }
            end
        }
        (false, true) => {
            let len = content.len();
            gcm.gcm
                .ctr(&nonce, &mut content[5..])
                .map_err(|_| too_long(len - 5))?;
            len
        }
        (false, false) => return Err(SecurityError::NoProtection(sc.0)),
    };
    content.truncate(end);
    content.drain(..5);
    Ok(Protected {
        sc,
        ic,
        apdu: content,
    })
}

/// HLS-GMAC (mechanism 5) reply to a challenge: `SC || IC || GMAC(SC || AK || challenge)`,
/// 17 bytes, with IV = `st || ic` where `st` is the system title of the party answering.
pub fn hls_gmac(
    sc: SecurityControl,
    st: &SystemTitle,
    ic: u32,
    ek: &Key,
    ak: &Key,
    challenge: &[u8],
) -> [u8; 17] {
    let sc = SecurityControl(sc.0 | SecurityControl::AUTHENTICATION);
    let t = gmac_raw(ek, &iv(st, ic), &aad(sc, ak, challenge));
    let mut out = [0u8; 17];
    out[0] = sc.0;
    out[1..5].copy_from_slice(&ic.to_be_bytes());
    out[5..].copy_from_slice(&t);
    out
}

/// Verifies an HLS-GMAC reply `SC || IC || T` to `challenge`, sent by the party
/// with system title `st`. Returns its invocation counter.
pub fn verify_hls_gmac(
    reply: &[u8],
    st: &SystemTitle,
    ek: &Key,
    ak: &Key,
    challenge: &[u8],
) -> Result<u32, SecurityError> {
    if reply.len() != 17 {
        return Err(SecurityError::TooShort {
            len: reply.len(),
            need: 17,
        });
    }
    let sc = SecurityControl(reply[0]);
    check_suite(sc)?;
    if !sc.authenticated() {
        return Err(SecurityError::NoProtection(sc.0));
    }
    let ic = u32::from_be_bytes([reply[1], reply[2], reply[3], reply[4]]);
    let expect = gmac_raw(ek, &iv(st, ic), &aad(sc, ak, challenge));
    if constant_time_eq(&expect, &reply[5..]) {
        Ok(ic)
    } else {
        Err(SecurityError::TagMismatch)
    }
}

#[cfg(test)]
mod tests {
    //! Vectors from the Green Book example (dlms-facts.md 1.5): EK 000102..0F,
    //! AK D0..DF, server system title 4D4D4D0000BC614E, IC 01234567. Also in u9n
    //! dlms-cosem tests/test_security.py, jDLMS CipheringTest.java and EnergyICT
    //! SecurityContextTest.
    use super::*;

    const ST_SERVER: SystemTitle = SystemTitle::EXAMPLE_SERVER;
    const ST_CLIENT: SystemTitle = SystemTitle::EXAMPLE_CLIENT;
    const GET_CLOCK: &str = "C0010000080000010000FF0200";

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    fn check_vector(sc: u8, expected_content: &str) {
        let ek = Key::EXAMPLE_EK;
        let ak = Key::EXAMPLE_AK;
        let apdu = h(GET_CLOCK);
        let out = protect(SecurityControl(sc), &ST_SERVER, 0x01234567, &ek, &ak, &apdu).unwrap();
        assert_eq!(hex::encode_upper(&out), expected_content.replace(' ', ""));
        let p = unprotect(&out, &ST_SERVER, &ek, &ak).unwrap();
        assert_eq!(p.apdu, apdu);
        assert_eq!(p.ic, 0x01234567);
        assert_eq!(p.sc, SecurityControl(sc));
    }

    #[test]
    fn green_book_sc10_authentication_only() {
        check_vector(
            0x10,
            "10 01234567 C0010000080000010000FF0200 06725D910F9221D263877516",
        );
    }

    #[test]
    fn green_book_sc20_encryption_only() {
        check_vector(0x20, "20 01234567 411312FF935A47566827C467BC");
    }

    #[test]
    fn green_book_sc30_authenticated_encryption() {
        check_vector(
            0x30,
            "30 01234567 411312FF935A47566827C467BC 7D825C3BE4A77C3FCC056B6B",
        );
    }

    /// glo-initiate-request of the Green Book example (jDLMS CipheringTest
    /// `testCipheringExampleFromStandard`; Elster "GB ed.7 p.265").
    #[test]
    fn green_book_glo_initiate_request() {
        let plain = h("01 01 10 00112233445566778899AABBCCDDEEFF 00 00 06 5F1F0400007E1F 04B0");
        let out = protect(
            SecurityControl::AUTH_ENC,
            &ST_SERVER,
            0x01234567,
            &Key::EXAMPLE_EK,
            &Key::EXAMPLE_AK,
            &plain,
        )
        .unwrap();
        assert_eq!(
            hex::encode_upper(&out),
            "3001234567801302FF8A7874133D414CED25B42534D28DB0047720606B175BD52211BE6841DB204D39EE6FDB8E356855"
        );
    }

    /// HLS-GMAC pass 3 and pass 4 (u9n `test_gmac`/`test_gmac2`; Elster
    /// `testProcessServerChallenge`).
    #[test]
    fn green_book_hls_gmac_pass_3_and_4() {
        let (ek, ak) = (Key::EXAMPLE_EK, Key::EXAMPLE_AK);
        let ctos = b"K56iVagY";
        let stoc = b"P6wRJ21F";
        let f_stoc = hls_gmac(SecurityControl::AUTH, &ST_CLIENT, 1, &ek, &ak, stoc);
        assert_eq!(
            hex::encode_upper(f_stoc),
            "10000000011A52FE7DD3E72748973C1E28"
        );
        let f_ctos = hls_gmac(
            SecurityControl::AUTH,
            &ST_SERVER,
            0x01234567,
            &ek,
            &ak,
            ctos,
        );
        assert_eq!(
            hex::encode_upper(f_ctos),
            "1001234567FE1466AFB3DBCD4F9389E2B7"
        );
        assert_eq!(
            verify_hls_gmac(&f_ctos, &ST_SERVER, &ek, &ak, ctos),
            Ok(0x01234567)
        );
        assert_eq!(
            verify_hls_gmac(&f_ctos, &ST_SERVER, &ek, &ak, stoc),
            Err(SecurityError::TagMismatch)
        );
    }

    /// A real general-glo-ciphering push (u9n tests/test_general_global_cipher.py),
    /// EK = AK = "MYDUMMYGLOBALKEY".
    #[test]
    fn u9n_general_glo_ciphering_push_frame() {
        let key = Key::from_slice(b"MYDUMMYGLOBALKEY").unwrap();
        let st = SystemTitle::from_slice(&h("2F19229199164103")).unwrap();
        let content = h(concat!(
            "30 000001E5",
            "025CE9D2271FD78BE8C204211A916A9D7F587E0A7A814CADEA89E9593F01F92EA8C087B5BDFDEFEAB6BE",
            "CF282DFE49C08F5BE6DC8400"
        ));
        let p = unprotect(&content, &st, &key, &key).unwrap();
        assert_eq!(p.ic, 0x1E5);
        assert_eq!(
            hex::encode_upper(&p.apdu),
            "0F000001DB000922125A8591360000000049000000110000000A5A8513D014800000000D0000000A0100"
        );
    }

    #[test]
    fn rejects_every_single_bit_flip() {
        // Generated tamper tests: flipping any bit of SC, IC, ciphertext or tag fails.
        // Clearing the SC authentication bit is the one flip GCM cannot see (the
        // content then reads as encryption-only); the security policy of the
        // session layer refuses such a downgrade, see `downgrade_is_a_policy_matter`.
        let (ek, ak) = (Key::EXAMPLE_EK, Key::EXAMPLE_AK);
        for sc in [0x10u8, 0x30] {
            let out = protect(SecurityControl(sc), &ST_SERVER, 7, &ek, &ak, &h(GET_CLOCK)).unwrap();
            for i in 0..out.len() {
                for bit in 0..8 {
                    if i == 0 && 1 << bit == SecurityControl::AUTHENTICATION {
                        continue;
                    }
                    let mut t = out.clone();
                    t[i] ^= 1 << bit;
                    assert!(
                        unprotect(&t, &ST_SERVER, &ek, &ak).is_err(),
                        "sc {sc:02X}: flip byte {i} bit {bit} accepted"
                    );
                }
            }
        }
    }

    #[test]
    fn expanded_key_gives_the_green_book_vector_and_hides_its_bytes() {
        // dlms-facts.md 1.5, SC 0x30: the same content as `protect` with the raw key.
        let gcm = GcmKey::new(&Key::EXAMPLE_EK);
        let apdu = h(GET_CLOCK);
        let out = protect_with_key(
            SecurityControl::AUTH_ENC,
            &ST_SERVER,
            0x01234567,
            &gcm,
            &Key::EXAMPLE_AK,
            &apdu,
        )
        .unwrap();
        assert_eq!(
            hex::encode_upper(&out),
            "3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B"
        );
        let p = unprotect_with_key(&out, &ST_SERVER, &gcm, &Key::EXAMPLE_AK).unwrap();
        assert_eq!(p.apdu, apdu);
        let text = format!("{gcm:?}");
        assert!(
            !text.contains("0102") && !text.contains("1, 2, 3"),
            "{text}"
        );
    }

    #[test]
    fn downgrade_is_a_policy_matter() {
        let (ek, ak) = (Key::EXAMPLE_EK, Key::EXAMPLE_AK);
        let mut out = protect(SecurityControl::AUTH_ENC, &ST_SERVER, 7, &ek, &ak, b"abc").unwrap();
        out[0] = 0x20;
        let p = unprotect(&out, &ST_SERVER, &ek, &ak).unwrap();
        assert!(
            !p.sc.authenticated(),
            "caller sees the weaker SC and must refuse it"
        );
    }

    #[test]
    fn rejects_wrong_keys_system_title_and_short_input() {
        let (ek, ak) = (Key::EXAMPLE_EK, Key::EXAMPLE_AK);
        let out = protect(SecurityControl::AUTH_ENC, &ST_SERVER, 7, &ek, &ak, b"x").unwrap();
        assert!(unprotect(&out, &ST_CLIENT, &ek, &ak).is_err());
        assert!(unprotect(&out, &ST_SERVER, &ak, &ak).is_err());
        assert!(unprotect(&out, &ST_SERVER, &ek, &ek).is_err());
        assert!(unprotect(&out[..10], &ST_SERVER, &ek, &ak).is_err());
        assert!(unprotect(&[0x30, 0, 0], &ST_SERVER, &ek, &ak).is_err());
        assert_eq!(
            unprotect(&[0x32, 0, 0, 0, 0], &ST_SERVER, &ek, &ak),
            Err(SecurityError::UnsupportedSuite(2))
        );
    }
}
