//! The names a suite file may use, in one place: the loader validates against
//! them and the runner maps them to protocol values.
//!
//! Codes and names come from `dlms-facts.md` (DLMS UA 1000-2 "Green Book",
//! IEC 62056-5-3 xDLMS, ISO/IEC 8650-1 ACSE, IEC 62056-46 HDLC); each table
//! names its section. Everything is kebab-case, as written in YAML.

/// Step names (the keys of `- get: {...}` and so on), in the order of [`crate::suite::model::Step`].
pub const STEPS: &[&str] = &[
    "connect",
    "disconnect",
    "associate",
    "release",
    "get",
    "set",
    "action",
    "send",
    "replay",
    "key-transfer",
    "security-activate",
    "read-counter",
    "check",
    "wait",
    "listen",
    "restart",
    "given",
];

/// Outcome names (`expect:`), in the order of [`crate::suite::model::Outcome`].
pub const OUTCOMES: &[&str] = &[
    "success",
    "value",
    "type",
    "result",
    "rejected",
    "initiate-error",
    "exception",
    "frame",
    "silence",
    "disconnect",
    "profile",
];

/// The keys of a `value:` / `params:` data spec, in the order of [`crate::suite::model::DataSpec`].
pub const DATA_SPECS: &[&str] = &[
    "null",
    "boolean",
    "integer",
    "long",
    "double-long",
    "long64",
    "unsigned",
    "long-unsigned",
    "double-long-unsigned",
    "long64-unsigned",
    "enum",
    "float32",
    "float64",
    "octet-string",
    "octet-string-text",
    "visible-string",
    "utf8-string",
    "bit-string",
    "date-time",
    "date",
    "time",
    "array",
    "structure",
    "any",
];

/// COSEM data type names for a `{type: ...}` outcome, with their A-XDR tags (the `Data`
/// CHOICE of IEC 62056-6-2, the same tags as `crate::wire::axdr::tag`).
pub const DATA_TYPES: &[(&str, u8)] = &[
    ("null", 0),
    ("array", 1),
    ("structure", 2),
    ("boolean", 3),
    ("bit-string", 4),
    ("double-long", 5),
    ("double-long-unsigned", 6),
    ("octet-string", 9),
    ("visible-string", 10),
    ("utf8-string", 12),
    ("bcd", 13),
    ("integer", 15),
    ("long", 16),
    ("unsigned", 17),
    ("long-unsigned", 18),
    ("compact-array", 19),
    ("long64", 20),
    ("long64-unsigned", 21),
    ("enum", 22),
    ("float32", 23),
    ("float64", 24),
    ("date-time", 25),
    ("date", 26),
    ("time", 27),
];

/// Authentication mechanisms for `associate.mechanism` (dlms-facts 2.1: mechanism-name 0, 1, 5).
pub const MECHANISMS: &[&str] = &["none", "lls", "hls-gmac"];

/// Security levels for `associate.security`, a step's `security:` and `protected.security`
/// (dlms-facts 1.1: security control bits authentication 0x10, encryption 0x20).
pub const SECURITY: &[&str] = &[
    "none",
    "authenticated",
    "encrypted",
    "authenticated-encrypted",
];

/// Ciphering kinds: `service-specific` (glo-/ded-) or `general` (general-glo-ciphering), dlms-facts 1.2.
pub const CIPHERING: &[&str] = &["service-specific", "general"];

/// Application context names for `associate.context` (dlms-facts 2.1, context ids 1..4);
/// a dotted OID is accepted too.
pub const APPLICATION_CONTEXTS: &[(&str, u8)] =
    &[("ln", 1), ("sn", 2), ("ln-ciphered", 3), ("sn-ciphered", 4)];

/// What `send.protected.tamper` may corrupt after protection.
pub const TAMPER: &[&str] = &["tag", "ciphertext", "security-control", "counter"];

/// Named invocation counter choices for `protected.counter`; see [`parse_counter`] for the full syntax.
pub const COUNTER_WORDS: &[&str] = &["next", "last"];

/// Key ids for `key-transfer.keys[].id`, with their key_id codes (dlms-facts 3.3:
/// 0 global unicast encryption key, 1 broadcast, 2 authentication, 3 master key / KEK).
pub const KEY_IDS: &[(&str, u8)] = &[
    ("unicast", 0),
    ("broadcast", 1),
    ("authentication", 2),
    ("master", 3),
];

/// Key values other than hex for `key-transfer.keys[].key`.
pub const KEY_WORDS: &[&str] = &["generate", "original"];

/// Security policy names for `security-activate.policy` (Security Setup version 0,
/// dlms-facts 3.2: 0 nothing .. 3 authenticated and encrypted).
pub const SECURITY_POLICIES: &[(&str, u8)] = &[
    ("nothing", 0),
    ("authenticated", 1),
    ("encrypted", 2),
    ("authenticated-encrypted", 3),
];

/// Comparison operators for `check.op`.
pub const CHECK_OPS: &[&str] = &["eq", "ne", "gt", "ge", "lt", "le", "matches"];

/// Names for `{result: ...}`: Data-Access-Result and Action-Result (IEC 62056-5-3), with codes.
/// dlms-facts 2.5 confirms read-write-denied (3) and other-reason (250); the other codes are
/// UNVERIFIED here (from the Green Book's enumeration as remembered). The `long-*` names at
/// 15..18 are get/set for data-access-result and action for action-result.
pub const RESULTS: &[(&str, u8)] = &[
    ("success", 0),
    ("hardware-fault", 1),
    ("temporary-failure", 2),
    ("read-write-denied", 3),
    ("object-undefined", 4),
    ("object-class-inconsistent", 9),
    ("object-unavailable", 11),
    ("type-unmatched", 12),
    ("scope-of-access-violated", 13),
    ("data-block-unavailable", 14),
    ("long-get-aborted", 15),
    ("no-long-get-in-progress", 16),
    ("long-set-aborted", 17),
    ("no-long-set-in-progress", 18),
    ("data-block-number-invalid", 19),
    ("long-action-aborted", 15),
    ("no-long-action-in-progress", 16),
    ("other-reason", 250),
];

/// Names for `{exception: ...}`: `any`, or an exception-response service-error
/// with its code (dlms-facts 4.3: 1 operation-not-possible .. 6 invocation-counter-error).
pub const EXCEPTIONS: &[(&str, u8)] = &[
    ("operation-not-possible", 1),
    ("service-not-supported", 2),
    ("other-reason", 3),
    ("pdu-too-long", 4),
    ("deciphering-error", 5),
    ("invocation-counter-error", 6),
];

/// The wildcard exception name: any exception-response passes.
pub const EXCEPTION_ANY: &str = "any";

/// Names for `{initiate-error: ...}`: confirmed-service-error initiate codes (dlms-facts 2.3).
pub const INITIATE_ERRORS: &[(&str, u8)] = &[
    ("other", 0),
    ("dlms-version-too-low", 1),
    ("incompatible-conformance", 2),
    ("pdu-size-too-short", 3),
    ("refused-by-the-vde-handler", 4),
];

/// `rejected.result` names (dlms-facts 2.3: AARE result 1 and 2).
pub const REJECT_RESULTS: &[(&str, u8)] = &[("rejected-permanent", 1), ("rejected-transient", 2)];

/// acse-service-user diagnostics for `rejected.diagnostic` (dlms-facts 2.3). Codes 0..3 and
/// 11..14 are in the facts file; 4..10 follow the ISO/IEC 8650-1 order (UNVERIFIED here).
pub const ACSE_USER_DIAGNOSTICS: &[(&str, u8)] = &[
    ("null", 0),
    ("no-reason-given", 1),
    ("application-context-name-not-supported", 2),
    ("calling-ap-title-not-recognized", 3),
    ("calling-ap-invocation-identifier-not-recognized", 4),
    ("calling-ae-qualifier-not-recognized", 5),
    ("calling-ae-invocation-identifier-not-recognized", 6),
    ("called-ap-title-not-recognized", 7),
    ("called-ap-invocation-identifier-not-recognized", 8),
    ("called-ae-qualifier-not-recognized", 9),
    ("called-ae-invocation-identifier-not-recognized", 10),
    ("authentication-mechanism-name-not-recognised", 11),
    ("authentication-mechanism-name-required", 12),
    ("authentication-failure", 13),
    ("authentication-required", 14),
];

/// acse-service-provider diagnostics accepted in `rejected.diagnostic` besides the user ones
/// (dlms-facts 2.3: provider 1 no-reason-given, 2 no-common-acse-version; `no-reason-given`
/// is written once and matches either source).
pub const ACSE_PROVIDER_DIAGNOSTICS: &[(&str, u8)] = &[("no-common-acse-version", 2)];

/// HDLC frame kinds for `{frame: ...}` (dlms-facts 6.1).
pub const FRAMES: &[&str] = &["ua", "dm", "frmr", "rr", "rnr", "i", "ui", "disc"];

/// HDLC frame kinds `send.hdlc.control` may name (or a control byte in hex).
pub const HDLC_CONTROLS: &[&str] = &["snrm", "disc", "ui", "rr", "rnr", "i"];

/// The value `hcs`/`fcs` take for a deliberately wrong check sequence (or hex).
pub const BAD_CHECKSUM: &str = "bad";

/// Conformance block bit names, indexed by bit number; bit 0 is the most significant bit of
/// the 24-bit string (dlms-facts 2.4; `reserved-six` is the older name of bit 6).
pub const CONFORMANCE_BITS: &[&str] = &[
    "reserved-zero",
    "general-protection",
    "general-block-transfer",
    "read",
    "write",
    "unconfirmed-write",
    "delta-value-encoding",
    "reserved-seven",
    "attribute0-supported-with-set",
    "priority-mgmt-supported",
    "attribute0-supported-with-get",
    "block-transfer-with-get-or-read",
    "block-transfer-with-set-or-write",
    "block-transfer-with-action",
    "multiple-references",
    "information-report",
    "data-notification",
    "access",
    "parameterized-access",
    "get",
    "set",
    "selective-access",
    "event-notification",
    "action",
];

/// The first item of each `(name, code)` pair, for did-you-mean lists.
pub fn names(table: &[(&'static str, u8)]) -> Vec<&'static str> {
    table.iter().map(|(n, _)| *n).collect()
}

/// The code of `name` in a `(name, code)` table.
pub fn code(table: &[(&str, u8)], name: &str) -> Option<u8> {
    table.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

/// The conformance block value (24 bits, bit 0 = MSB) of a list of bit names; the first
/// unknown name is the error.
pub fn conformance_value<S: AsRef<str>>(names: &[S]) -> Result<u32, String> {
    let mut v = 0u32;
    for n in names {
        let n = n.as_ref();
        let bit = if n == "reserved-six" {
            Some(6)
        } else {
            CONFORMANCE_BITS.iter().position(|b| *b == n)
        };
        match bit {
            Some(b) => v |= 1 << (23 - b),
            None => return Err(format!("unknown conformance bit `{n}`")),
        }
    }
    Ok(v)
}

/// A parsed `protected.counter` / `wrong.initiate-counter` value (after variables are resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterSpec {
    /// The next counter value (the default).
    Next,
    /// The previous counter value minus N (`last` is `last-0`).
    Last(u32),
    /// Skip ahead: the next value plus N (`+N`).
    Skip(u32),
    /// This exact value.
    Value(u32),
}

/// Parse `next`, `last`, `last-N`, `+N` or a number (decimal, or hex with `0x`).
pub fn parse_counter(s: &str) -> Result<CounterSpec, String> {
    let t = s.trim();
    let bad =
        || format!("invalid counter `{t}`: expected `next`, `last`, `last-N`, `+N` or a number");
    if t == "next" {
        return Ok(CounterSpec::Next);
    }
    if t == "last" {
        return Ok(CounterSpec::Last(0));
    }
    if let Some(n) = t.strip_prefix("last-") {
        return n.parse().map(CounterSpec::Last).map_err(|_| bad());
    }
    if let Some(n) = t.strip_prefix('+') {
        return n.parse().map(CounterSpec::Skip).map_err(|_| bad());
    }
    parse_u32(t).map(CounterSpec::Value).ok_or_else(bad)
}

fn parse_u32(t: &str) -> Option<u32> {
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()
    } else if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        t.parse().ok()
    } else {
        None
    }
}

/// Decode a hex string as suite files write it: pairs of hex digits, optionally separated
/// by whitespace (`C0 01 C1`), case-insensitive. The empty string is zero bytes.
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if let Some(pos) = digits.iter().position(|b| !b.is_ascii_hexdigit()) {
        let c = digits.get(pos).copied().map(char::from).unwrap_or('?');
        return Err(format!("`{c}` is not a hex digit"));
    }
    if !digits.len().is_multiple_of(2) {
        return Err(format!(
            "odd number of hex digits ({}): each byte takes two",
            digits.len()
        ));
    }
    hex::decode(&digits).map_err(|e| e.to_string())
}

/// Parse a `{type: ...}` outcome: a data type name, optionally with a length in
/// parentheses, e.g. `octet-string` or `octet-string(16)` (elements for arrays and
/// structures, bytes for strings, bits for bit-string). Parentheses, not brackets:
/// `[` would end a plain scalar inside a YAML flow map.
pub fn parse_type_spec(s: &str) -> Result<(&'static str, Option<usize>), String> {
    let t = s.trim();
    let (name, len) = match t.split_once('(') {
        Some((n, rest)) => {
            let num = rest.strip_suffix(')').ok_or_else(|| {
                format!("invalid type `{t}`: a length is written in parentheses, e.g. `octet-string(16)`")
            })?;
            let len = num
                .trim()
                .parse::<usize>()
                .map_err(|_| format!("invalid type `{t}`: the length `{num}` is not a number"))?;
            (n.trim(), Some(len))
        }
        None => (t, None),
    };
    match DATA_TYPES.iter().find(|(n, _)| *n == name) {
        Some((n, _)) => Ok((n, len)),
        None => Err(format!("unknown data type `{name}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// dlms-facts 2.4: `007E1F` = bits 9..14 and 19..23 (the Green Book example of §1.5,
    /// cross-checked against Gurux.NET Enums/Conformance.cs).
    #[test]
    fn conformance_names_give_the_green_book_example() {
        let names = [
            "priority-mgmt-supported",
            "attribute0-supported-with-get",
            "block-transfer-with-get-or-read",
            "block-transfer-with-set-or-write",
            "block-transfer-with-action",
            "multiple-references",
            "get",
            "set",
            "selective-access",
            "event-notification",
            "action",
        ];
        assert_eq!(conformance_value(&names).unwrap(), 0x00_7E1F);
        assert_eq!(CONFORMANCE_BITS.len(), 24);
        assert_eq!(
            conformance_value(&["general-protection"]).unwrap(),
            0x40_0000
        );
        assert!(conformance_value(&["gett"]).is_err());
    }

    #[test]
    fn accepts_counter_forms() {
        assert_eq!(parse_counter("next"), Ok(CounterSpec::Next));
        assert_eq!(parse_counter("last"), Ok(CounterSpec::Last(0)));
        assert_eq!(parse_counter("last-3"), Ok(CounterSpec::Last(3)));
        assert_eq!(parse_counter("+10"), Ok(CounterSpec::Skip(10)));
        assert_eq!(parse_counter("42"), Ok(CounterSpec::Value(42)));
        assert_eq!(
            parse_counter("0xFFFFFFFF"),
            Ok(CounterSpec::Value(u32::MAX))
        );
    }

    #[test]
    fn rejects_bad_counters() {
        for bad in ["", "nxt", "last-", "last-x", "+", "-1", "4294967296", "1.5"] {
            assert!(parse_counter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn accepts_hex_with_spaces() {
        assert_eq!(parse_hex("C0 01 c1").unwrap(), vec![0xC0, 0x01, 0xC1]);
        assert_eq!(parse_hex("").unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn rejects_bad_hex() {
        assert_eq!(
            parse_hex("C0 1").unwrap_err(),
            "odd number of hex digits (3): each byte takes two"
        );
        assert_eq!(parse_hex("0G").unwrap_err(), "`G` is not a hex digit");
    }

    #[test]
    fn parses_type_specs() {
        assert_eq!(parse_type_spec("octet-string"), Ok(("octet-string", None)));
        assert_eq!(parse_type_spec("array(3)"), Ok(("array", Some(3))));
        assert!(parse_type_spec("octet-strin").is_err());
        assert!(parse_type_spec("octet-string(x)").is_err());
        assert!(parse_type_spec("octet-string(3").is_err());
    }
}
