//! AES-128 key wrap (RFC 3394, default IV A6A6A6A6A6A6A6A6), used by the Security
//! Setup key transfer methods (Green Book 9.2.7.3; dlms-facts.md 3.3).

use aes_kw::KwAes128;
use aes_kw::cipher::KeyInit;

use super::{Key, SecurityError};

/// Wraps a 16-byte key under the KEK: 24 bytes out.
pub fn wrap_key(kek: &Key, key: &Key) -> [u8; 24] {
    let kw = KwAes128::new(kek.expose().into());
    let mut out = [0u8; 24];
    // A 16-byte key is a multiple of 8 and the buffer is exactly key + 8: cannot fail.
    kw.wrap_key(key.expose(), &mut out)
        .expect("RFC 3394 wrap of a 16-byte key into 24 bytes");
    out
}

/// Unwraps 24 bytes under the KEK, checking the RFC 3394 integrity value.
pub fn unwrap_key(kek: &Key, wrapped: &[u8]) -> Result<Key, SecurityError> {
    if wrapped.len() != 24 {
        return Err(SecurityError::KeyLength {
            expected: 24,
            got: wrapped.len(),
        });
    }
    let kw = KwAes128::new(kek.expose().into());
    let mut out = [0u8; 16];
    kw.unwrap_key(wrapped, &mut out)
        .map_err(|_| SecurityError::UnwrapFailed)?;
    Ok(Key::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3394 section 4.1 (128-bit KEK, 128-bit key), also the Elster test
    /// `testWrapKey` (dlms-facts.md 1.5).
    #[test]
    fn rfc3394_4_1_vector() {
        let kek: Key = "000102030405060708090A0B0C0D0E0F".parse().unwrap();
        let key: Key = "00112233445566778899AABBCCDDEEFF".parse().unwrap();
        let w = wrap_key(&kek, &key);
        assert_eq!(
            hex::encode_upper(w),
            "1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"
        );
        assert_eq!(unwrap_key(&kek, &w).unwrap(), key);
    }

    #[test]
    fn rejects_a_wrong_kek_or_tampered_wrap() {
        let kek = Key::EXAMPLE_KEK;
        let w = wrap_key(&kek, &Key::EXAMPLE_AK);
        assert_eq!(
            unwrap_key(&Key::EXAMPLE_AK, &w),
            Err(SecurityError::UnwrapFailed)
        );
        let mut t = w;
        t[5] ^= 1;
        assert_eq!(unwrap_key(&kek, &t), Err(SecurityError::UnwrapFailed));
        assert!(matches!(
            unwrap_key(&kek, &w[..16]),
            Err(SecurityError::KeyLength { .. })
        ));
    }
}
