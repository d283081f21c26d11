//! Ciphered xDLMS APDUs (IEC 62056-5-3 / Green Book, DLMS UA 1000-2, xDLMS ASN.1
//! glo-/ded- OCTET STRING APDUs and General-Glo/Ded-Ciphering; dlms-facts.md 1.2).
//!
//! These types only frame the protected content `SC || IC || payload || [T]`;
//! [`crate::security`] protects and unprotects it.

use std::fmt;

use super::{read_octets, tags, write_octets};
use crate::wire::SecurityControl;
use crate::wire::{Reader, WireError, WireResult};

/// (plain, glo, ded, plain name, glo name, ded name), from dlms-facts.md 1.2
/// (Gurux.NET Enums/Command.cs) and the xDLMS-APDU CHOICE of the Green Book.
const CIPHER_TABLE: [(u8, u8, u8, &str, &str, &str); 16] = [
    (
        0x01,
        0x21,
        0x41,
        "initiate-request",
        "glo-initiate-request",
        "ded-initiate-request",
    ),
    (
        0x05,
        0x25,
        0x45,
        "read-request",
        "glo-read-request",
        "ded-read-request",
    ),
    (
        0x06,
        0x26,
        0x46,
        "write-request",
        "glo-write-request",
        "ded-write-request",
    ),
    (
        0x08,
        0x28,
        0x48,
        "initiate-response",
        "glo-initiate-response",
        "ded-initiate-response",
    ),
    (
        0x0C,
        0x2C,
        0x4C,
        "read-response",
        "glo-read-response",
        "ded-read-response",
    ),
    (
        0x0D,
        0x2D,
        0x4D,
        "write-response",
        "glo-write-response",
        "ded-write-response",
    ),
    (
        0x0E,
        0x2E,
        0x4E,
        "confirmed-service-error",
        "glo-confirmed-service-error",
        "ded-confirmed-service-error",
    ),
    (
        0x16,
        0x36,
        0x56,
        "unconfirmed-write-request",
        "glo-unconfirmed-write-request",
        "ded-unconfirmed-write-request",
    ),
    (
        0x18,
        0x38,
        0x58,
        "information-report-request",
        "glo-information-report-request",
        "ded-information-report-request",
    ),
    (
        0xC0,
        0xC8,
        0xD0,
        "get-request",
        "glo-get-request",
        "ded-get-request",
    ),
    (
        0xC1,
        0xC9,
        0xD1,
        "set-request",
        "glo-set-request",
        "ded-set-request",
    ),
    (
        0xC2,
        0xCA,
        0xD2,
        "event-notification-request",
        "glo-event-notification-request",
        "ded-event-notification-request",
    ),
    (
        0xC3,
        0xCB,
        0xD3,
        "action-request",
        "glo-action-request",
        "ded-action-request",
    ),
    (
        0xC4,
        0xCC,
        0xD4,
        "get-response",
        "glo-get-response",
        "ded-get-response",
    ),
    (
        0xC5,
        0xCD,
        0xD5,
        "set-response",
        "glo-set-response",
        "ded-set-response",
    ),
    (
        0xC7,
        0xCF,
        0xD7,
        "action-response",
        "glo-action-response",
        "ded-action-response",
    ),
];

/// The glo- (or, with `dedicated`, ded-) tag that carries a plain APDU tag.
pub fn ciphered_tag_for(plain_tag: u8, dedicated: bool) -> Option<u8> {
    CIPHER_TABLE
        .iter()
        .find(|row| row.0 == plain_tag)
        .map(|row| if dedicated { row.2 } else { row.1 })
}

/// The plain tag inside a glo-/ded- tag, and whether it is the dedicated form.
pub fn plain_tag_for(ciphered_tag: u8) -> Option<(u8, bool)> {
    CIPHER_TABLE.iter().find_map(|row| {
        if row.1 == ciphered_tag {
            Some((row.0, false))
        } else if row.2 == ciphered_tag {
            Some((row.0, true))
        } else {
            None
        }
    })
}

/// The name of a plain or glo-/ded- tag from the table, if it is one.
pub(super) fn cipher_table_name(tag: u8) -> Option<&'static str> {
    CIPHER_TABLE.iter().find_map(|row| {
        if row.0 == tag {
            Some(row.3)
        } else if row.1 == tag {
            Some(row.4)
        } else if row.2 == tag {
            Some(row.5)
        } else {
            None
        }
    })
}

fn sc_of(content: &[u8]) -> Option<SecurityControl> {
    content.first().map(|b| SecurityControl(*b))
}

fn ic_of(content: &[u8]) -> Option<u32> {
    let b: [u8; 4] = content.get(1..5)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// `SC 0x30 (authenticated+encrypted, suite 0), IC 19088743, 13 byte(s) ciphertext + 12-byte tag`.
fn write_protected(f: &mut fmt::Formatter<'_>, content: &[u8]) -> fmt::Result {
    let (Some(sc), Some(ic)) = (sc_of(content), ic_of(content)) else {
        return write!(f, " ({} byte(s), too short for SC and IC)", content.len());
    };
    let body = content.len().saturating_sub(5);
    write!(f, ", {sc}, IC {ic}")?;
    let tag = if sc.authenticated() { 12 } else { 0 };
    if body < tag {
        return write!(f, ", {body} byte(s), too short for the tag");
    }
    let what = if sc.encrypted() {
        "ciphertext"
    } else {
        "plaintext"
    };
    write!(f, ", {} byte(s) {what}", body - tag)?;
    if tag > 0 {
        write!(f, " + 12-byte tag")?;
    }
    Ok(())
}

/// A service-specific glo-/ded- ciphered APDU: `<tag> <A-XDR length> <content>`,
/// content = `SC || IC || ciphertext || [T]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CipheredApdu {
    /// The glo-/ded- tag.
    pub tag: u8,
    /// `SC || IC || ciphertext || [T]`.
    pub content: Vec<u8>,
}

impl CipheredApdu {
    /// Decodes a whole glo-/ded- APDU (any tag; the caller chose it).
    pub fn decode(bytes: &[u8]) -> WireResult<Self> {
        const WHAT: &str = "ciphered APDU";
        let mut r = Reader::new(bytes);
        let tag = r.u8(WHAT)?;
        let content = read_octets(&mut r, WHAT)?.to_vec();
        r.finish(WHAT)?;
        Ok(CipheredApdu { tag, content })
    }

    /// Encodes `<tag> <length> <content>`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.tag];
        write_octets(&mut out, &self.content);
        out
    }

    /// The security control byte, when the content has one.
    pub fn security_control(&self) -> Option<SecurityControl> {
        sc_of(&self.content)
    }

    /// The invocation counter, when the content is long enough.
    pub fn invocation_counter(&self) -> Option<u32> {
        ic_of(&self.content)
    }

    /// Whether the tag is a glo- tag (global key); false for ded- and unknown tags.
    pub fn is_global(&self) -> bool {
        matches!(plain_tag_for(self.tag), Some((_, false)))
    }

    /// The APDU name, e.g. "glo-get-request"; "ciphered-unknown" for other tags.
    pub fn kind(&self) -> &'static str {
        match plain_tag_for(self.tag) {
            Some(_) => cipher_table_name(self.tag).unwrap_or("ciphered-unknown"),
            None => "ciphered-unknown",
        }
    }
}

impl fmt::Display for CipheredApdu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind())?;
        write_protected(f, &self.content)
    }
}

/// General-Glo-Ciphering (0xDB) / General-Ded-Ciphering (0xDC):
/// system-title OCTET STRING, ciphered-content OCTET STRING (`SC || IC || ciphertext || [T]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneralCiphering {
    /// The sender's system title (any length is kept).
    pub system_title: Vec<u8>,
    /// ciphered-content: `SC || IC || ciphertext || [T]`.
    pub content: Vec<u8>,
}

impl GeneralCiphering {
    /// Decodes the body after the tag (DB or DC), checking the tag.
    pub fn decode(bytes: &[u8], tag: u8) -> WireResult<Self> {
        const WHAT: &str = "general-ciphering";
        if tag != tags::GENERAL_GLO_CIPHERING && tag != tags::GENERAL_DED_CIPHERING {
            return Err(WireError::invalid(
                WHAT,
                format!("0x{tag:02X} is not DB or DC"),
            ));
        }
        let mut r = Reader::new(bytes);
        let t = r.u8(WHAT)?;
        if t != tag {
            return Err(WireError::invalid(
                WHAT,
                format!("expected tag 0x{tag:02X}, got 0x{t:02X}"),
            ));
        }
        let system_title = read_octets(&mut r, "general-ciphering system-title")?.to_vec();
        let content = read_octets(&mut r, "general-ciphering ciphered-content")?.to_vec();
        r.finish(WHAT)?;
        Ok(GeneralCiphering {
            system_title,
            content,
        })
    }

    /// Encodes with the given tag (DB or DC; any byte is written as given).
    pub fn encode(&self, tag: u8) -> Vec<u8> {
        let mut out = vec![tag];
        write_octets(&mut out, &self.system_title);
        write_octets(&mut out, &self.content);
        out
    }

    /// The security control byte, when the content has one.
    pub fn security_control(&self) -> Option<SecurityControl> {
        sc_of(&self.content)
    }

    /// The invocation counter, when the content is long enough.
    pub fn invocation_counter(&self) -> Option<u32> {
        ic_of(&self.content)
    }

    pub(super) fn write_display(&self, f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
        write!(
            f,
            "{name} system-title {}",
            hex::encode_upper(&self.system_title)
        )?;
        write_protected(f, &self.content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn tag_maps_follow_the_facts_table() {
        // dlms-facts.md 1.2.
        let table = [
            (0x01, 0x21, 0x41),
            (0x08, 0x28, 0x48),
            (0x0E, 0x2E, 0x4E),
            (0xC0, 0xC8, 0xD0),
            (0xC1, 0xC9, 0xD1),
            (0xC2, 0xCA, 0xD2),
            (0xC3, 0xCB, 0xD3),
            (0xC4, 0xCC, 0xD4),
            (0xC5, 0xCD, 0xD5),
            (0xC7, 0xCF, 0xD7),
            (0x05, 0x25, 0x45),
            (0x0C, 0x2C, 0x4C),
            (0x06, 0x26, 0x46),
            (0x0D, 0x2D, 0x4D),
        ];
        for (p, g, d) in table {
            assert_eq!(ciphered_tag_for(p, false), Some(g));
            assert_eq!(ciphered_tag_for(p, true), Some(d));
            assert_eq!(plain_tag_for(g), Some((p, false)));
            assert_eq!(plain_tag_for(d), Some((p, true)));
        }
        assert_eq!(ciphered_tag_for(0xD8, false), None);
        assert_eq!(plain_tag_for(0xCE), None);
        assert_eq!(plain_tag_for(0xC0), None);
    }

    /// The three Green Book glo-get-request examples (dlms-facts.md 1.5; u9n
    /// test_security.py, jDLMS CipheringTest, EnergyICT SecurityContextTest).
    #[test]
    fn decodes_the_green_book_glo_get_requests() {
        let cases = [
            (
                "C8 1E 10 01234567 C0010000080000010000FF0200 06725D910F9221D263877516",
                0x10,
                "glo-get-request, SC 0x10 (authenticated, suite 0), IC 19088743, 13 byte(s) plaintext + 12-byte tag",
            ),
            (
                "C8 12 20 01234567 411312FF935A47566827C467BC",
                0x20,
                "glo-get-request, SC 0x20 (encrypted, suite 0), IC 19088743, 13 byte(s) ciphertext",
            ),
            (
                "C8 1E 30 01234567 411312FF935A47566827C467BC 7D825C3BE4A77C3FCC056B6B",
                0x30,
                "glo-get-request, SC 0x30 (authenticated+encrypted, suite 0), IC 19088743, 13 byte(s) ciphertext + 12-byte tag",
            ),
        ];
        for (hexs, sc, shown) in cases {
            let bytes = h(hexs);
            let c = CipheredApdu::decode(&bytes).unwrap();
            assert_eq!(c.tag, 0xC8);
            assert_eq!(c.security_control(), Some(SecurityControl(sc)));
            assert_eq!(c.invocation_counter(), Some(0x01234567));
            assert!(c.is_global());
            assert_eq!(c.kind(), "glo-get-request");
            assert_eq!(c.encode(), bytes);
            assert_eq!(c.to_string(), shown);
        }
    }

    /// The Green Book glo-initiate-request (dlms-facts.md 1.5; jDLMS CipheringTest
    /// testCipheringExampleFromStandard, Elster "GB ed.7 p.265").
    #[test]
    fn decodes_the_green_book_glo_initiate_request() {
        let bytes = h("21 30 30 01234567 \
             801302FF8A7874133D414CED25B42534D28DB0047720606B175BD52211BE68 \
             41DB204D39EE6FDB8E356855");
        let c = CipheredApdu::decode(&bytes).unwrap();
        assert_eq!(c.kind(), "glo-initiate-request");
        assert_eq!(c.security_control(), Some(SecurityControl::AUTH_ENC));
        assert_eq!(c.invocation_counter(), Some(0x01234567));
        assert_eq!(c.content.len(), 0x30);
        assert_eq!(c.encode(), bytes);
    }

    /// The u9n general-glo-ciphering push (dlms-facts.md 1.5, tests/test_general_global_cipher.py).
    #[test]
    fn decodes_the_u9n_general_glo_ciphering() {
        let bytes = h("DB 08 2F19229199164103 3B 30 000001E5 \
             025CE9D2271FD78BE8C204211A916A9D7F587E0A7A814CADEA89E9593F01F92EA8C087B5BDFDEFEAB6BE \
             CF282DFE49C08F5BE6DC8400");
        let g = GeneralCiphering::decode(&bytes, tags::GENERAL_GLO_CIPHERING).unwrap();
        assert_eq!(g.system_title, h("2F19229199164103"));
        assert_eq!(g.security_control(), Some(SecurityControl(0x30)));
        assert_eq!(g.invocation_counter(), Some(0x1E5));
        assert_eq!(g.content.len(), 1 + 4 + 42 + 12);
        assert_eq!(g.encode(tags::GENERAL_GLO_CIPHERING), bytes);
        assert!(GeneralCiphering::decode(&bytes, tags::GENERAL_DED_CIPHERING).is_err());
    }

    #[test]
    fn rejects_truncated_and_overlong_ciphered_apdus() {
        let bytes = h("C8 12 20 01234567 411312FF935A47566827C467BC");
        for n in 0..bytes.len() {
            assert!(CipheredApdu::decode(&bytes[..n]).is_err(), "prefix {n}");
        }
        let mut t = bytes.clone();
        t.push(0);
        assert!(matches!(
            CipheredApdu::decode(&t),
            Err(WireError::Trailing { .. })
        ));
        // A length claiming 4 GiB.
        assert!(CipheredApdu::decode(&h("C884FFFFFFFF00")).is_err());
        assert!(GeneralCiphering::decode(&h("DB08"), 0xDB).is_err());
    }

    #[test]
    fn short_content_has_no_counter_and_displays_safely() {
        let c = CipheredApdu {
            tag: 0xD0,
            content: vec![0x30, 1, 2],
        };
        assert_eq!(c.security_control(), Some(SecurityControl(0x30)));
        assert_eq!(c.invocation_counter(), None);
        assert!(!c.is_global());
        assert_eq!(c.kind(), "ded-get-request");
        assert!(c.to_string().contains("too short"));
        let e = CipheredApdu {
            tag: 0xC8,
            content: vec![],
        };
        assert_eq!(e.security_control(), None);
        assert_eq!(CipheredApdu::decode(&e.encode()).unwrap(), e);
    }
}
