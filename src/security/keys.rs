//! Key and system-title types.

use std::fmt;
use std::str::FromStr;

use zeroize::Zeroize;

use super::SecurityError;

/// A 128-bit AES key (suite 0). Its `Debug` and `Display` never show the bytes;
/// they show a short fingerprint instead, so two keys can be told apart in a
/// trace without revealing either. The bytes are wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; 16]);

impl Key {
    pub const LEN: usize = 16;

    pub const fn new(bytes: [u8; 16]) -> Self {
        Key(bytes)
    }

    pub fn from_slice(b: &[u8]) -> Result<Self, SecurityError> {
        let a: [u8; 16] = b.try_into().map_err(|_| SecurityError::KeyLength {
            expected: 16,
            got: b.len(),
        })?;
        Ok(Key(a))
    }

    /// The key bytes. Call sites are the cipher, key wrap and key files, nothing that prints.
    pub fn expose(&self) -> &[u8; 16] {
        &self.0
    }

    /// A non-reversible 4-hex-digit fingerprint (the first two bytes of a GMAC of
    /// a fixed label under this key), for telling keys apart in traces.
    pub fn fingerprint(&self) -> String {
        let tag = super::cipher::gmac_raw(self, &[0u8; 12], b"idis-harness key fingerprint");
        hex::encode_upper(&tag[..2])
    }

    /// The Green Book example global unicast encryption key 000102..0F.
    pub const EXAMPLE_EK: Key = Key([
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E,
        0x0F,
    ]);
    /// The Green Book example authentication key D0D1..DF.
    pub const EXAMPLE_AK: Key = Key([
        0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xDB, 0xDC, 0xDD, 0xDE,
        0xDF,
    ]);
    /// The Green Book example master key (KEK) 000102..0F.
    pub const EXAMPLE_KEK: Key = Key::EXAMPLE_EK;

    /// Example encryption and authentication keys of the built-in simulator's
    /// extra HLS clients: the Green Book keys with the first byte XOR the SAP,
    /// so that no two clients share a key (a meter keeps one invocation counter
    /// per key; two clients on one key would reuse GCM nonces).
    pub fn example_for_client(sap: u16) -> (Key, Key) {
        let mut ek = *Key::EXAMPLE_EK.expose();
        let mut ak = *Key::EXAMPLE_AK.expose();
        ek[0] ^= sap as u8;
        ak[0] ^= sap as u8;
        (Key(ek), Key(ak))
    }

    /// A long, non-reversible identity of this key (a GMAC of a fixed label),
    /// for telling keys apart without collisions; never printed (its first four
    /// digits are the [`Key::fingerprint`]).
    pub fn identity(&self) -> String {
        let tag = super::cipher::gmac_raw(self, &[0u8; 12], b"idis-harness key fingerprint");
        hex::encode_upper(tag)
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(#{})", self.fingerprint())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key #{}", self.fingerprint())
    }
}

/// Why a text is not a key. Never contains the text itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a key must be 32 hex digits (16 bytes); got {len} character(s){detail}")]
pub struct KeyParseError {
    pub len: usize,
    pub detail: &'static str,
}

impl FromStr for Key {
    type Err = KeyParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        let t = t.strip_prefix("0x").unwrap_or(&t);
        let v = hex::decode(t).map_err(|_| KeyParseError {
            len: t.len(),
            detail: ", not all hex digits",
        })?;
        Key::from_slice(&v).map_err(|_| KeyParseError {
            len: t.len(),
            detail: "",
        })
    }
}

/// An 8-byte system title (Green Book 4.3.4): in IDIS, 3 bytes FLAG manufacturer
/// id, a device type byte, and a function/serial number part.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SystemTitle(pub [u8; 8]);

impl SystemTitle {
    /// The Green Book example client system title 4D4D4D0000000001.
    pub const EXAMPLE_CLIENT: SystemTitle = SystemTitle([0x4D, 0x4D, 0x4D, 0, 0, 0, 0, 1]);
    /// The Green Book example server system title 4D4D4D0000BC614E.
    pub const EXAMPLE_SERVER: SystemTitle =
        SystemTitle([0x4D, 0x4D, 0x4D, 0x00, 0x00, 0xBC, 0x61, 0x4E]);

    pub fn from_slice(b: &[u8]) -> Option<Self> {
        Some(SystemTitle(b.try_into().ok()?))
    }
    /// The manufacturer FLAG id, when its three bytes are printable.
    pub fn manufacturer(&self) -> Option<String> {
        let m = &self.0[..3];
        m.iter()
            .all(|b| b.is_ascii_graphic())
            .then(|| String::from_utf8_lossy(m).into_owned())
    }
}

impl fmt::Display for SystemTitle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", hex::encode_upper(self.0))
    }
}

impl fmt::Debug for SystemTitle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SystemTitle({self})")
    }
}

impl FromStr for SystemTitle {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v = hex::decode(s.trim()).map_err(|e| format!("system title {s:?} is not hex: {e}"))?;
        SystemTitle::from_slice(&v)
            .ok_or_else(|| format!("a system title is 8 bytes (16 hex digits), got {}", v.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_debug_and_display_never_show_the_bytes() {
        let k = Key::EXAMPLE_AK;
        for s in [format!("{k:?}"), format!("{k}"), format!("{k:#?}")] {
            assert!(!s.to_uppercase().contains("D0D1"), "{s}");
            assert!(!s.contains("208"), "{s}"); // 0xD0 in decimal
        }
        assert_ne!(Key::EXAMPLE_AK.fingerprint(), Key::EXAMPLE_EK.fingerprint());
    }

    #[test]
    fn key_parse_errors_do_not_echo_the_input() {
        let e = "D0D1D2D3D4D5D6D7D8D9DADBDCDDDE".parse::<Key>().unwrap_err();
        assert!(!e.to_string().contains("D0D1"));
        assert_eq!(
            "d0d1d2d3 d4d5d6d7 d8d9dadb dcdddedf"
                .parse::<Key>()
                .unwrap(),
            Key::EXAMPLE_AK
        );
    }
}
