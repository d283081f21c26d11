//! ACSE APDUs in BER (ISO/IEC 8650-1 / ITU-T X.227 as profiled by the Green Book,
//! DLMS UA 1000-2 "Abstract syntax of ACSE and COSEM APDUs"; IEC 62056-5-3):
//! AARQ, AARE, RLRQ and RLRE, with the DLMS application-context and mechanism
//! OIDs 2.16.756.5.8.1.x / 2.16.756.5.8.2.x (dlms-facts.md 2.1-2.3, 2.6).
//!
//! Decoding accepts the fields in any order; encoding writes the modelled
//! fields in tag order, with the unmodelled ones merged in by tag number. A field whose inner encoding is not the usual one (e.g. a calling-AP-title
//! that is not an OCTET STRING) and any field this module does not model is
//! kept in `unknown` as (tag, content), so every well-formed BER input
//! survives a decode/encode round trip apart from non-minimal lengths.

use std::fmt;

use super::Apdu;
use super::tags;
use crate::wire::axdr::{read_length, write_length};
use crate::wire::{Reader, WireError, WireResult};

/// The DLMS UA OID arc 2.16.756.5.8 in BER (`60 85 74 05 08`).
const DLMS_UA_ARC: [u8; 5] = [0x60, 0x85, 0x74, 0x05, 0x08];

/// Reads a BER definite length (short form, or 0x81..=0x84 long form) and checks
/// that that many bytes follow.
fn read_ber_length(r: &mut Reader<'_>, what: &'static str) -> WireResult<usize> {
    if r.peek_u8() == Some(0x80) {
        return Err(WireError::invalid(
            what,
            "indefinite length (0x80) is not allowed",
        ));
    }
    let len = read_length(r, what)?;
    if len > r.remaining() {
        return Err(WireError::Truncated {
            what,
            need: len,
            have: r.remaining(),
        });
    }
    Ok(len)
}

/// Reads one tag-length-value. Only single-byte tags are supported.
fn read_tlv<'a>(r: &mut Reader<'a>, what: &'static str) -> WireResult<(u8, &'a [u8])> {
    let tag = r.u8(what)?;
    if tag & 0x1F == 0x1F {
        return Err(WireError::invalid(
            what,
            format!("multi-byte BER tag 0x{tag:02X}.. is not supported"),
        ));
    }
    let len = read_ber_length(r, what)?;
    Ok((tag, r.take(len, what)?))
}

/// Encodes one tag-length-value (definite length, long form when needed).
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    write_length(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

/// The content of `content` when it is exactly one TLV with tag `inner`.
fn inner(content: &[u8], inner: u8) -> Option<&[u8]> {
    let mut r = Reader::new(content);
    let (tag, value) = read_tlv(&mut r, "inner").ok()?;
    (tag == inner && r.is_empty()).then_some(value)
}

/// A one-byte INTEGER `02 01 x` inside an explicit tag.
fn small_int(content: &[u8], what: &'static str) -> WireResult<u8> {
    match inner(content, 0x02) {
        Some([x]) => Ok(*x),
        _ => Err(WireError::invalid(
            what,
            format!(
                "expected a one-byte INTEGER (02 01 xx), got {}",
                hex::encode_upper(content)
            ),
        )),
    }
}

/// Stores `value` in an empty slot; reports whether it was taken.
fn put(slot: &mut Option<Vec<u8>>, value: Option<&[u8]>) -> bool {
    match (slot.is_none(), value) {
        (true, Some(v)) => {
            *slot = Some(v.to_vec());
            true
        }
        _ => false,
    }
}

/// Renders an OBJECT IDENTIFIER content in dotted form, or hex when it is malformed.
pub fn oid_to_string(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut v: u64 = 0;
    for (i, b) in oid.iter().enumerate() {
        if v > (u64::MAX >> 8) {
            return hex::encode_upper(oid);
        }
        v = (v << 7) | u64::from(b & 0x7F);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (v / 40).min(2);
                arcs.push(first);
                arcs.push(v - first * 40);
            } else {
                arcs.push(v);
            }
            v = 0;
        } else if i + 1 == oid.len() {
            return hex::encode_upper(oid);
        }
    }
    if arcs.is_empty() {
        return "(empty OID)".into();
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// The last arc of a DLMS UA OID `2.16.756.5.8.<group>.<x>`, when `oid` is one.
fn dlms_oid_id(oid: &[u8], group: u8) -> Option<u8> {
    match oid {
        [a, b, c, d, e, g, x]
            if [*a, *b, *c, *d, *e] == DLMS_UA_ARC && *g == group && *x < 0x80 =>
        {
            Some(*x)
        }
        _ => None,
    }
}

fn dlms_oid(group: u8, x: u8) -> Vec<u8> {
    let mut v = DLMS_UA_ARC.to_vec();
    v.push(group);
    v.push(x);
    v
}

/// Application-context-name, OID 2.16.756.5.8.1.x (dlms-facts.md 2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppContext {
    /// 1: logical name referencing, no ciphering.
    LnNoCipher,
    /// 2: short name referencing, no ciphering.
    SnNoCipher,
    /// 3: logical name referencing with ciphering.
    LnCipher,
    /// 4: short name referencing with ciphering.
    SnCipher,
    /// Any other OID; the raw OID content bytes.
    Other(Vec<u8>),
}

impl AppContext {
    /// Maps OID content bytes to a context.
    pub fn from_oid(oid: &[u8]) -> Self {
        match dlms_oid_id(oid, 1) {
            Some(1) => AppContext::LnNoCipher,
            Some(2) => AppContext::SnNoCipher,
            Some(3) => AppContext::LnCipher,
            Some(4) => AppContext::SnCipher,
            _ => AppContext::Other(oid.to_vec()),
        }
    }

    /// The OID content bytes (without the `06 len` header).
    pub fn oid(&self) -> Vec<u8> {
        match self {
            AppContext::LnNoCipher => dlms_oid(1, 1),
            AppContext::SnNoCipher => dlms_oid(1, 2),
            AppContext::LnCipher => dlms_oid(1, 3),
            AppContext::SnCipher => dlms_oid(1, 4),
            AppContext::Other(v) => v.clone(),
        }
    }

    /// Whether the context uses ciphering.
    pub fn ciphered(&self) -> bool {
        matches!(self, AppContext::LnCipher | AppContext::SnCipher)
    }
}

impl fmt::Display for AppContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppContext::LnNoCipher => write!(f, "LN"),
            AppContext::SnNoCipher => write!(f, "SN"),
            AppContext::LnCipher => write!(f, "LN-ciphered"),
            AppContext::SnCipher => write!(f, "SN-ciphered"),
            AppContext::Other(v) => write!(f, "context {}", oid_to_string(v)),
        }
    }
}

/// Authentication mechanism-name, OID 2.16.756.5.8.2.x (dlms-facts.md 2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    /// 0: lowest level security.
    None,
    /// 1: low level security (password).
    Lls,
    /// 2: high level security, manufacturer specific.
    Hls,
    /// 3: HLS with MD5.
    HlsMd5,
    /// 4: HLS with SHA-1.
    HlsSha1,
    /// 5: HLS with GMAC.
    HlsGmac,
    /// 6: HLS with SHA-256.
    HlsSha256,
    /// 7: HLS with ECDSA.
    HlsEcdsa,
    /// Any other OID; the raw OID content bytes.
    Other(Vec<u8>),
}

impl Mechanism {
    /// Maps OID content bytes to a mechanism.
    pub fn from_oid(oid: &[u8]) -> Self {
        match dlms_oid_id(oid, 2) {
            Some(0) => Mechanism::None,
            Some(1) => Mechanism::Lls,
            Some(2) => Mechanism::Hls,
            Some(3) => Mechanism::HlsMd5,
            Some(4) => Mechanism::HlsSha1,
            Some(5) => Mechanism::HlsGmac,
            Some(6) => Mechanism::HlsSha256,
            Some(7) => Mechanism::HlsEcdsa,
            _ => Mechanism::Other(oid.to_vec()),
        }
    }

    /// The mechanism id 0..=7, or `None` for [`Mechanism::Other`].
    pub fn id(&self) -> Option<u8> {
        Some(match self {
            Mechanism::None => 0,
            Mechanism::Lls => 1,
            Mechanism::Hls => 2,
            Mechanism::HlsMd5 => 3,
            Mechanism::HlsSha1 => 4,
            Mechanism::HlsGmac => 5,
            Mechanism::HlsSha256 => 6,
            Mechanism::HlsEcdsa => 7,
            Mechanism::Other(_) => return None,
        })
    }

    /// The OID content bytes (without a header).
    pub fn oid(&self) -> Vec<u8> {
        match (self, self.id()) {
            (Mechanism::Other(v), _) => v.clone(),
            (_, Some(id)) => dlms_oid(2, id),
            (_, None) => Vec::new(),
        }
    }

    /// Whether this is one of the HLS mechanisms (2..=7), whose authentication value is a challenge.
    pub fn is_hls(&self) -> bool {
        self.id().is_some_and(|id| id >= 2)
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Mechanism::None => "none",
            Mechanism::Lls => "LLS",
            Mechanism::Hls => "HLS",
            Mechanism::HlsMd5 => "HLS-MD5",
            Mechanism::HlsSha1 => "HLS-SHA1",
            Mechanism::HlsGmac => "HLS-GMAC",
            Mechanism::HlsSha256 => "HLS-SHA256",
            Mechanism::HlsEcdsa => "HLS-ECDSA",
            Mechanism::Other(v) => return write!(f, "{}", oid_to_string(v)),
        };
        write!(f, "{s}")
    }
}

/// AARE result-source-diagnostic values (X.227; dlms-facts.md 2.3).
pub mod diag {
    /// acse-service-user: null.
    pub const NULL: u8 = 0;
    /// acse-service-user / provider: no-reason-given.
    pub const NO_REASON_GIVEN: u8 = 1;
    /// acse-service-user: application-context-name-not-supported.
    pub const APPLICATION_CONTEXT_NAME_NOT_SUPPORTED: u8 = 2;
    /// acse-service-user: calling-AP-title-not-recognized.
    pub const CALLING_AP_TITLE_NOT_RECOGNIZED: u8 = 3;
    /// acse-service-user: authentication-mechanism-name-not-recognised.
    pub const AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED: u8 = 11;
    /// acse-service-user: authentication-mechanism-name-required.
    pub const AUTHENTICATION_MECHANISM_NAME_REQUIRED: u8 = 12;
    /// acse-service-user: authentication-failure.
    pub const AUTHENTICATION_FAILURE: u8 = 13;
    /// acse-service-user: authentication-required.
    pub const AUTHENTICATION_REQUIRED: u8 = 14;
    /// acse-service-provider: no-common-acse-version.
    pub const NO_COMMON_ACSE_VERSION: u8 = 2;

    /// The X.227 name of an acse-service-user diagnostic.
    pub fn user_name(code: u8) -> &'static str {
        match code {
            0 => "null",
            1 => "no-reason-given",
            2 => "application-context-name-not-supported",
            3 => "calling-AP-title-not-recognized",
            4 => "calling-AP-invocation-identifier-not-recognized",
            5 => "calling-AE-qualifier-not-recognized",
            6 => "calling-AE-invocation-identifier-not-recognized",
            7 => "called-AP-title-not-recognized",
            8 => "called-AP-invocation-identifier-not-recognized",
            9 => "called-AE-qualifier-not-recognized",
            10 => "called-AE-invocation-identifier-not-recognized",
            11 => "authentication-mechanism-name-not-recognised",
            12 => "authentication-mechanism-name-required",
            13 => "authentication-failure",
            14 => "authentication-required",
            _ => "unknown",
        }
    }

    /// The X.227 name of an acse-service-provider diagnostic.
    pub fn provider_name(code: u8) -> &'static str {
        match code {
            0 => "null",
            1 => "no-reason-given",
            2 => "no-common-acse-version",
            _ => "unknown",
        }
    }
}

/// The AARE result-source-diagnostic: `A3 05 A1|A2 03 02 01 x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcseDiagnostic {
    /// acse-service-user (A1); codes in [`diag`].
    User(u8),
    /// acse-service-provider (A2).
    Provider(u8),
}

impl AcseDiagnostic {
    /// The name of the diagnostic code.
    pub fn name(&self) -> &'static str {
        match self {
            AcseDiagnostic::User(c) => diag::user_name(*c),
            AcseDiagnostic::Provider(c) => diag::provider_name(*c),
        }
    }

    fn decode(content: &[u8]) -> WireResult<Self> {
        const WHAT: &str = "AARE result-source-diagnostic";
        let mut r = Reader::new(content);
        let (tag, value) = read_tlv(&mut r, WHAT)?;
        r.finish(WHAT)?;
        match tag {
            0xA1 => Ok(AcseDiagnostic::User(small_int(value, WHAT)?)),
            0xA2 => Ok(AcseDiagnostic::Provider(small_int(value, WHAT)?)),
            t => Err(WireError::invalid(
                WHAT,
                format!(
                    "expected A1 (acse-service-user) or A2 (acse-service-provider), got 0x{t:02X}"
                ),
            )),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let (tag, code) = match self {
            AcseDiagnostic::User(c) => (0xA1, *c),
            AcseDiagnostic::Provider(c) => (0xA2, *c),
        };
        tlv(tag, &tlv(0x02, &[code]))
    }
}

impl fmt::Display for AcseDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (side, code) = match self {
            AcseDiagnostic::User(c) => ("user", c),
            AcseDiagnostic::Provider(c) => ("provider", c),
        };
        write!(f, "{side} diagnostic {}({code})", self.name())
    }
}

/// AARE association-result values.
pub mod result {
    /// accepted.
    pub const ACCEPTED: u8 = 0;
    /// rejected-permanent.
    pub const REJECTED_PERMANENT: u8 = 1;
    /// rejected-transient.
    pub const REJECTED_TRANSIENT: u8 = 2;

    /// The name of an association-result.
    pub fn name(code: u8) -> &'static str {
        match code {
            0 => "accepted",
            1 => "rejected-permanent",
            2 => "rejected-transient",
            _ => "unknown-result",
        }
    }
}

/// Opens the outer `<tag> <len> <content>` of an ACSE APDU.
fn open<'a>(bytes: &'a [u8], tag: u8, what: &'static str) -> WireResult<&'a [u8]> {
    let mut r = Reader::new(bytes);
    let t = r.u8(what)?;
    if t != tag {
        return Err(WireError::invalid(
            what,
            format!("expected tag 0x{tag:02X}, got 0x{t:02X}"),
        ));
    }
    let len = read_ber_length(&mut r, what)?;
    let body = r.take(len, what)?;
    r.finish(what)?;
    Ok(body)
}

/// Writes `<tag> <len>` and the fields: the modelled ones (already in tag order)
/// merged with the unmodelled ones, which keep their relative order and each go
/// before the first modelled field with a higher tag number.
fn close(tag: u8, known: Vec<(u8, Vec<u8>)>, unknown: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut k = known.iter().peekable();
    let mut u = unknown.iter().peekable();
    loop {
        let next = match (k.peek(), u.peek()) {
            (Some(kf), Some(uf)) if uf.0 & 0x1F < kf.0 & 0x1F => u.next(),
            (Some(_), _) => k.next(),
            (None, Some(_)) => u.next(),
            (None, None) => break,
        };
        if let Some((t, c)) = next {
            body.extend_from_slice(&tlv(*t, c));
        }
    }
    tlv(tag, &body)
}

fn push_opt(fields: &mut Vec<(u8, Vec<u8>)>, tag: u8, value: &Option<Vec<u8>>) {
    if let Some(v) = value {
        fields.push((tag, v.clone()));
    }
}

fn push_wrapped(fields: &mut Vec<(u8, Vec<u8>)>, tag: u8, inner_tag: u8, value: &Option<Vec<u8>>) {
    if let Some(v) = value {
        fields.push((tag, tlv(inner_tag, v)));
    }
}

fn context_from(content: &[u8], what: &'static str) -> WireResult<AppContext> {
    inner(content, 0x06)
        .map(AppContext::from_oid)
        .ok_or_else(|| {
            WireError::invalid(
                what,
                format!(
                    "application-context-name is not an OBJECT IDENTIFIER (06 len oid): {}",
                    hex::encode_upper(content)
                ),
            )
        })
}

/// Writes the inner xDLMS APDU of a user-information field for a Display.
fn write_user_info(f: &mut fmt::Formatter<'_>, ui: &[u8]) -> fmt::Result {
    match Apdu::decode(ui) {
        // An ACSE APDU inside user-information is not expanded: its own
        // user-information could hold another, and so on, and a 64 KiB AARE
        // nested thousands deep overflowed the stack of whoever printed it.
        Ok(a @ (Apdu::Aarq(_) | Apdu::Aare(_) | Apdu::Rlrq(_) | Apdu::Rlre(_))) => write!(
            f,
            ", user-information {} byte(s): a nested {} (not expanded)",
            ui.len(),
            a.name()
        ),
        Ok(a) => write!(f, ", {a}"),
        Err(e) => write!(
            f,
            ", user-information {} byte(s), undecodable: {e}",
            ui.len()
        ),
    }
}

fn write_unknown(f: &mut fmt::Formatter<'_>, unknown: &[(u8, Vec<u8>)]) -> fmt::Result {
    for (t, c) in unknown {
        write!(f, ", field {t:02X} {}", hex::encode_upper(c))?;
    }
    Ok(())
}

fn user_info_apdu(ui: &Option<Vec<u8>>) -> Option<WireResult<Apdu>> {
    ui.as_deref().map(Apdu::decode)
}

/// AARQ (tag 0x60, dlms-facts.md 2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aarq {
    /// 80: raw BER BIT STRING content, e.g. `07 80` for version1.
    pub protocol_version: Option<Vec<u8>>,
    /// A1 (mandatory).
    pub application_context: AppContext,
    /// A2: OCTET STRING content.
    pub called_ap_title: Option<Vec<u8>>,
    /// A3: OCTET STRING content.
    pub called_ae_qualifier: Option<Vec<u8>>,
    /// A6 `04 len <bytes>`: the client system title; any length is kept.
    pub calling_ap_title: Option<Vec<u8>>,
    /// A7: OCTET STRING content (a certificate for ECDSA).
    pub calling_ae_qualifier: Option<Vec<u8>>,
    /// A8: INTEGER content.
    pub calling_ap_invocation_id: Option<Vec<u8>>,
    /// A9: INTEGER content (client user id).
    pub calling_ae_invocation_id: Option<Vec<u8>>,
    /// 8A: raw BIT STRING content, e.g. `07 80`.
    pub sender_acse_requirements: Option<Vec<u8>>,
    /// 8B.
    pub mechanism: Option<Mechanism>,
    /// AC `80 len <value>`: the LLS password or the HLS CtoS challenge, raw.
    pub calling_authentication_value: Option<Vec<u8>>,
    /// BD: raw content.
    pub implementation_information: Option<Vec<u8>>,
    /// BE `04 len <xDLMS APDU>`: the inner InitiateRequest or glo-initiate-request bytes.
    pub user_information: Option<Vec<u8>>,
    /// Fields not modelled above (or not in their usual form), as (tag, content), in order.
    pub unknown: Vec<(u8, Vec<u8>)>,
}

impl Aarq {
    /// An AARQ with only the application context set.
    pub fn new(application_context: AppContext) -> Self {
        Aarq {
            protocol_version: None,
            application_context,
            called_ap_title: None,
            called_ae_qualifier: None,
            calling_ap_title: None,
            calling_ae_qualifier: None,
            calling_ap_invocation_id: None,
            calling_ae_invocation_id: None,
            sender_acse_requirements: None,
            mechanism: None,
            calling_authentication_value: None,
            implementation_information: None,
            user_information: None,
            unknown: Vec::new(),
        }
    }

    /// Decodes a whole AARQ (`60 len ...`).
    pub fn decode(bytes: &[u8]) -> WireResult<Self> {
        const WHAT: &str = "AARQ";
        let body = open(bytes, tags::AARQ, WHAT)?;
        let mut r = Reader::new(body);
        let mut a = Aarq::new(AppContext::Other(Vec::new()));
        let mut context = None;
        while !r.is_empty() {
            let (tag, c) = read_tlv(&mut r, "AARQ field")?;
            let taken = match tag {
                0x80 => put(&mut a.protocol_version, Some(c)),
                0xA1 if context.is_none() => {
                    context = Some(context_from(c, WHAT)?);
                    true
                }
                0xA2 => put(&mut a.called_ap_title, inner(c, 0x04)),
                0xA3 => put(&mut a.called_ae_qualifier, inner(c, 0x04)),
                0xA6 => put(&mut a.calling_ap_title, inner(c, 0x04)),
                0xA7 => put(&mut a.calling_ae_qualifier, inner(c, 0x04)),
                0xA8 => put(&mut a.calling_ap_invocation_id, inner(c, 0x02)),
                0xA9 => put(&mut a.calling_ae_invocation_id, inner(c, 0x02)),
                0x8A => put(&mut a.sender_acse_requirements, Some(c)),
                0x8B if a.mechanism.is_none() => {
                    a.mechanism = Some(Mechanism::from_oid(c));
                    true
                }
                0xAC => put(&mut a.calling_authentication_value, inner(c, 0x80)),
                0xBD => put(&mut a.implementation_information, Some(c)),
                0xBE => put(&mut a.user_information, inner(c, 0x04)),
                _ => false,
            };
            if !taken {
                a.unknown.push((tag, c.to_vec()));
            }
        }
        a.application_context = context.ok_or_else(|| {
            WireError::invalid(WHAT, "mandatory application-context-name (A1) is missing")
        })?;
        Ok(a)
    }

    /// Encodes the AARQ with the fields in tag order; values are written as they are.
    pub fn encode(&self) -> Vec<u8> {
        let mut f = Vec::new();
        push_opt(&mut f, 0x80, &self.protocol_version);
        f.push((0xA1, tlv(0x06, &self.application_context.oid())));
        push_wrapped(&mut f, 0xA2, 0x04, &self.called_ap_title);
        push_wrapped(&mut f, 0xA3, 0x04, &self.called_ae_qualifier);
        push_wrapped(&mut f, 0xA6, 0x04, &self.calling_ap_title);
        push_wrapped(&mut f, 0xA7, 0x04, &self.calling_ae_qualifier);
        push_wrapped(&mut f, 0xA8, 0x02, &self.calling_ap_invocation_id);
        push_wrapped(&mut f, 0xA9, 0x02, &self.calling_ae_invocation_id);
        push_opt(&mut f, 0x8A, &self.sender_acse_requirements);
        if let Some(m) = &self.mechanism {
            f.push((0x8B, m.oid()));
        }
        push_wrapped(&mut f, 0xAC, 0x80, &self.calling_authentication_value);
        push_opt(&mut f, 0xBD, &self.implementation_information);
        push_wrapped(&mut f, 0xBE, 0x04, &self.user_information);
        close(tags::AARQ, f, &self.unknown)
    }

    /// The xDLMS APDU inside user-information, decoded, when present.
    pub fn user_information_apdu(&self) -> Option<WireResult<Apdu>> {
        user_info_apdu(&self.user_information)
    }
}

impl fmt::Display for Aarq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AARQ {}", self.application_context)?;
        if let Some(v) = &self.protocol_version {
            write!(f, ", protocol-version {}", hex::encode_upper(v))?;
        }
        let titles = [
            ("called-AP-title", &self.called_ap_title),
            ("called-AE-qualifier", &self.called_ae_qualifier),
            ("calling-AP-title", &self.calling_ap_title),
            ("calling-AE-qualifier", &self.calling_ae_qualifier),
            ("calling-AP-invocation-id", &self.calling_ap_invocation_id),
            ("calling-AE-invocation-id", &self.calling_ae_invocation_id),
            ("sender-acse-requirements", &self.sender_acse_requirements),
        ];
        for (name, v) in titles {
            if let Some(v) = v {
                write!(f, ", {name} {}", hex::encode_upper(v))?;
            }
        }
        if let Some(m) = &self.mechanism {
            write!(f, ", mechanism {m}")?;
        }
        if let Some(v) = &self.calling_authentication_value {
            // An LLS password (or a value under an unknown mechanism) is a secret:
            // only an HLS challenge is shown.
            if self.mechanism.as_ref().is_some_and(Mechanism::is_hls) {
                write!(f, ", CtoS {}", hex::encode_upper(v))?;
            } else {
                write!(f, ", calling-authentication-value <{} bytes>", v.len())?;
            }
        }
        if let Some(v) = &self.implementation_information {
            write!(f, ", implementation-information {}", hex::encode_upper(v))?;
        }
        if let Some(ui) = &self.user_information {
            write_user_info(f, ui)?;
        }
        write_unknown(f, &self.unknown)
    }
}

/// AARE (tag 0x61, dlms-facts.md 2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aare {
    /// 80: raw BER BIT STRING content.
    pub protocol_version: Option<Vec<u8>>,
    /// A1 (mandatory).
    pub application_context: AppContext,
    /// A2 `03 02 01 x` (mandatory): 0 accepted, 1 rejected-permanent, 2 rejected-transient; see [`result`].
    pub result: u8,
    /// A3 (mandatory).
    pub diagnostic: AcseDiagnostic,
    /// A4 `04 len <server system title>`.
    pub responding_ap_title: Option<Vec<u8>>,
    /// A5: OCTET STRING content.
    pub responding_ae_qualifier: Option<Vec<u8>>,
    /// A6: INTEGER content.
    pub responding_ap_invocation_id: Option<Vec<u8>>,
    /// A7: INTEGER content.
    pub responding_ae_invocation_id: Option<Vec<u8>>,
    /// 88: raw BIT STRING content, e.g. `07 80`.
    pub responder_acse_requirements: Option<Vec<u8>>,
    /// 89.
    pub mechanism: Option<Mechanism>,
    /// AA `80 len <StoC>`.
    pub responding_authentication_value: Option<Vec<u8>>,
    /// BD: raw content.
    pub implementation_information: Option<Vec<u8>>,
    /// BE `04 len <xDLMS APDU>`: InitiateResponse, glo-initiate-response or confirmed-service-error.
    pub user_information: Option<Vec<u8>>,
    /// Fields not modelled above (or not in their usual form), as (tag, content), in order.
    pub unknown: Vec<(u8, Vec<u8>)>,
}

impl Aare {
    /// An AARE with only the mandatory fields.
    pub fn new(application_context: AppContext, result: u8, diagnostic: AcseDiagnostic) -> Self {
        Aare {
            protocol_version: None,
            application_context,
            result,
            diagnostic,
            responding_ap_title: None,
            responding_ae_qualifier: None,
            responding_ap_invocation_id: None,
            responding_ae_invocation_id: None,
            responder_acse_requirements: None,
            mechanism: None,
            responding_authentication_value: None,
            implementation_information: None,
            user_information: None,
            unknown: Vec::new(),
        }
    }

    /// Decodes a whole AARE (`61 len ...`).
    pub fn decode(bytes: &[u8]) -> WireResult<Self> {
        const WHAT: &str = "AARE";
        let body = open(bytes, tags::AARE, WHAT)?;
        let mut r = Reader::new(body);
        let mut a = Aare::new(AppContext::Other(Vec::new()), 0, AcseDiagnostic::User(0));
        let (mut context, mut result, mut diagnostic) = (None, None, None);
        while !r.is_empty() {
            let (tag, c) = read_tlv(&mut r, "AARE field")?;
            let taken = match tag {
                0x80 => put(&mut a.protocol_version, Some(c)),
                0xA1 if context.is_none() => {
                    context = Some(context_from(c, WHAT)?);
                    true
                }
                0xA2 if result.is_none() => {
                    result = Some(small_int(c, "AARE result")?);
                    true
                }
                0xA3 if diagnostic.is_none() => {
                    diagnostic = Some(AcseDiagnostic::decode(c)?);
                    true
                }
                0xA4 => put(&mut a.responding_ap_title, inner(c, 0x04)),
                0xA5 => put(&mut a.responding_ae_qualifier, inner(c, 0x04)),
                0xA6 => put(&mut a.responding_ap_invocation_id, inner(c, 0x02)),
                0xA7 => put(&mut a.responding_ae_invocation_id, inner(c, 0x02)),
                0x88 => put(&mut a.responder_acse_requirements, Some(c)),
                0x89 if a.mechanism.is_none() => {
                    a.mechanism = Some(Mechanism::from_oid(c));
                    true
                }
                0xAA => put(&mut a.responding_authentication_value, inner(c, 0x80)),
                0xBD => put(&mut a.implementation_information, Some(c)),
                0xBE => put(&mut a.user_information, inner(c, 0x04)),
                _ => false,
            };
            if !taken {
                a.unknown.push((tag, c.to_vec()));
            }
        }
        a.application_context = context.ok_or_else(|| {
            WireError::invalid(WHAT, "mandatory application-context-name (A1) is missing")
        })?;
        a.result =
            result.ok_or_else(|| WireError::invalid(WHAT, "mandatory result (A2) is missing"))?;
        a.diagnostic = diagnostic.ok_or_else(|| {
            WireError::invalid(WHAT, "mandatory result-source-diagnostic (A3) is missing")
        })?;
        Ok(a)
    }

    /// Encodes the AARE with the fields in tag order; values are written as they are.
    pub fn encode(&self) -> Vec<u8> {
        let mut f = Vec::new();
        push_opt(&mut f, 0x80, &self.protocol_version);
        f.push((0xA1, tlv(0x06, &self.application_context.oid())));
        f.push((0xA2, tlv(0x02, &[self.result])));
        f.push((0xA3, self.diagnostic.encode()));
        push_wrapped(&mut f, 0xA4, 0x04, &self.responding_ap_title);
        push_wrapped(&mut f, 0xA5, 0x04, &self.responding_ae_qualifier);
        push_wrapped(&mut f, 0xA6, 0x02, &self.responding_ap_invocation_id);
        push_wrapped(&mut f, 0xA7, 0x02, &self.responding_ae_invocation_id);
        push_opt(&mut f, 0x88, &self.responder_acse_requirements);
        if let Some(m) = &self.mechanism {
            f.push((0x89, m.oid()));
        }
        push_wrapped(&mut f, 0xAA, 0x80, &self.responding_authentication_value);
        push_opt(&mut f, 0xBD, &self.implementation_information);
        push_wrapped(&mut f, 0xBE, 0x04, &self.user_information);
        close(tags::AARE, f, &self.unknown)
    }

    /// Whether the result is accepted (0).
    pub fn accepted(&self) -> bool {
        self.result == result::ACCEPTED
    }

    /// The xDLMS APDU inside user-information, decoded, when present.
    pub fn user_information_apdu(&self) -> Option<WireResult<Apdu>> {
        user_info_apdu(&self.user_information)
    }
}

impl fmt::Display for Aare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AARE {}", result::name(self.result))?;
        if result::name(self.result) == "unknown-result" {
            write!(f, "({})", self.result)?;
        }
        write!(f, ", {}", self.diagnostic)?;
        if self.application_context != AppContext::LnNoCipher {
            write!(f, ", {}", self.application_context)?;
        }
        if let Some(v) = &self.protocol_version {
            write!(f, ", protocol-version {}", hex::encode_upper(v))?;
        }
        let fields = [
            ("responding-AP-title", &self.responding_ap_title),
            ("responding-AE-qualifier", &self.responding_ae_qualifier),
            (
                "responding-AP-invocation-id",
                &self.responding_ap_invocation_id,
            ),
            (
                "responding-AE-invocation-id",
                &self.responding_ae_invocation_id,
            ),
            (
                "responder-acse-requirements",
                &self.responder_acse_requirements,
            ),
        ];
        for (name, v) in fields {
            if let Some(v) = v {
                write!(f, ", {name} {}", hex::encode_upper(v))?;
            }
        }
        if let Some(m) = &self.mechanism {
            write!(f, ", mechanism {m}")?;
        }
        if let Some(v) = &self.responding_authentication_value {
            write!(f, ", StoC {}", hex::encode_upper(v))?;
        }
        if let Some(v) = &self.implementation_information {
            write!(f, ", implementation-information {}", hex::encode_upper(v))?;
        }
        if let Some(ui) = &self.user_information {
            write_user_info(f, ui)?;
        }
        write_unknown(f, &self.unknown)
    }
}

/// Decodes the body of an RLRQ/RLRE: `[80 01 reason] [BE len 04 len <bytes>]`.
fn decode_release(
    bytes: &[u8],
    tag: u8,
    what: &'static str,
) -> WireResult<(Option<u8>, Option<Vec<u8>>)> {
    let body = open(bytes, tag, what)?;
    let mut r = Reader::new(body);
    let (mut reason, mut ui) = (None, None);
    while !r.is_empty() {
        let (t, c) = read_tlv(&mut r, what)?;
        match (t, c) {
            (0x80, [x]) if reason.is_none() => reason = Some(*x),
            (0xBE, _) if ui.is_none() => {
                ui = Some(
                    inner(c, 0x04)
                        .ok_or_else(|| {
                            WireError::invalid(
                                what,
                                "user-information is not an OCTET STRING (BE len 04 len ...)",
                            )
                        })?
                        .to_vec(),
                );
            }
            _ => {
                return Err(WireError::invalid(
                    what,
                    format!("unexpected field 0x{t:02X} {}", hex::encode_upper(c)),
                ));
            }
        }
    }
    Ok((reason, ui))
}

fn encode_release(tag: u8, reason: Option<u8>, ui: &Option<Vec<u8>>) -> Vec<u8> {
    let mut f = Vec::new();
    if let Some(x) = reason {
        f.push((0x80, vec![x]));
    }
    push_wrapped(&mut f, 0xBE, 0x04, ui);
    close(tag, f, &[])
}

/// RLRQ (tag 0x62): release-request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rlrq {
    /// 80 01 x: 0 normal, 1 urgent, 30 user-defined.
    pub reason: Option<u8>,
    /// BE: the inner xDLMS bytes (an InitiateRequest or its ciphered form).
    pub user_information: Option<Vec<u8>>,
}

impl Rlrq {
    /// Decodes a whole RLRQ.
    pub fn decode(bytes: &[u8]) -> WireResult<Self> {
        let (reason, user_information) = decode_release(bytes, tags::RLRQ, "RLRQ")?;
        Ok(Rlrq {
            reason,
            user_information,
        })
    }

    /// Encodes the RLRQ.
    pub fn encode(&self) -> Vec<u8> {
        encode_release(tags::RLRQ, self.reason, &self.user_information)
    }
}

/// RLRE (tag 0x63): release-response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rlre {
    /// 80 01 x: 0 normal, 1 not-finished, 30 user-defined.
    pub reason: Option<u8>,
    /// BE: the inner xDLMS bytes (an InitiateResponse or its ciphered form).
    pub user_information: Option<Vec<u8>>,
}

impl Rlre {
    /// Decodes a whole RLRE.
    pub fn decode(bytes: &[u8]) -> WireResult<Self> {
        let (reason, user_information) = decode_release(bytes, tags::RLRE, "RLRE")?;
        Ok(Rlre {
            reason,
            user_information,
        })
    }

    /// Encodes the RLRE.
    pub fn encode(&self) -> Vec<u8> {
        encode_release(tags::RLRE, self.reason, &self.user_information)
    }
}

fn write_release(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    reason: Option<u8>,
    reason_name: fn(u8) -> &'static str,
    ui: &Option<Vec<u8>>,
) -> fmt::Result {
    write!(f, "{name}")?;
    if let Some(r) = reason {
        write!(f, " reason {}({r})", reason_name(r))?;
    }
    if let Some(ui) = ui {
        write_user_info(f, ui)?;
    }
    Ok(())
}

impl fmt::Display for Rlrq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |r| match r {
            0 => "normal",
            1 => "urgent",
            30 => "user-defined",
            _ => "unknown",
        };
        write_release(f, "RLRQ", self.reason, names, &self.user_information)
    }
}

impl fmt::Display for Rlre {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |r| match r {
            0 => "normal",
            1 => "not-finished",
            30 => "user-defined",
            _ => "unknown",
        };
        write_release(f, "RLRE", self.reason, names, &self.user_information)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    /// Minimal LN AARQ without security: dlms-facts.md 2.2, from GXDLMSDirector
    /// Development/ConformanceTests/GXAppConformanceTests.cs (T_APPL_OPEN_12/14).
    const MINIMAL_AARQ: &str = "601DA109060760857405080101BE10040E01000000065F1F040060FE9FFFFF";

    #[test]
    fn minimal_aarq_round_trips_byte_identically() {
        let bytes = h(MINIMAL_AARQ);
        let a = Aarq::decode(&bytes).unwrap();
        assert_eq!(a.application_context, AppContext::LnNoCipher);
        assert_eq!(
            a.user_information.as_deref(),
            Some(&h("01000000065F1F040060FE9FFFFF")[..])
        );
        assert!(a.mechanism.is_none() && a.calling_ap_title.is_none() && a.unknown.is_empty());
        assert_eq!(a.encode(), bytes);
    }

    /// LLS AARQ as seen on the wire: dlms-facts.md 2.2, u9n/dlms-cosem issue #95,
    /// with a system title of our choice (4D4D4D0000000001) in A6.
    #[test]
    fn lls_aarq_round_trips_byte_identically() {
        let bytes = h(
            "6042A109060760857405080101A60A04084D4D4D00000000018A0207808B0760857405080201\
             AC0A80083132333435363738BE10040E01000000065F1F040000521D00EF",
        );
        let a = Aarq::decode(&bytes).unwrap();
        assert_eq!(a.calling_ap_title, Some(h("4D4D4D0000000001")));
        assert_eq!(a.sender_acse_requirements, Some(vec![0x07, 0x80]));
        assert_eq!(a.mechanism, Some(Mechanism::Lls));
        assert_eq!(a.calling_authentication_value, Some(b"12345678".to_vec()));
        assert_eq!(a.encode(), bytes);
        // The password never reaches a trace.
        let shown = a.to_string();
        assert!(
            !shown.contains("3132333435363738") && !shown.contains("12345678"),
            "{shown}"
        );
        assert!(
            shown.contains("calling-authentication-value <8 bytes>"),
            "{shown}"
        );
    }

    /// HLS-GMAC AARE in the layout of dlms-facts.md 2.3 (Gurux.NET GXAPDU.cs
    /// GenerateAARE) with the Green Book example server system title and StoC of 1.5.
    #[test]
    fn hls_aare_encodes_in_the_standard_layout() {
        let mut a = Aare::new(
            AppContext::LnCipher,
            result::ACCEPTED,
            AcseDiagnostic::User(diag::AUTHENTICATION_REQUIRED),
        );
        a.responding_ap_title = Some(h("4D4D4D0000BC614E"));
        a.responder_acse_requirements = Some(vec![0x07, 0x80]);
        a.mechanism = Some(Mechanism::HlsGmac);
        a.responding_authentication_value = Some(b"P6wRJ21F".to_vec());
        a.user_information = Some(h("0800065F1F040000501F04000007"));
        let want = h(
            "614EA109060760857405080103A203020100A305A10302010EA40A04084D4D4D0000BC614E\
             880207808907608574050802 05AA0A8008503677524A323146BE10040E0800065F1F040000501F04000007",
        );
        assert_eq!(a.encode(), want);
        assert_eq!(Aare::decode(&want).unwrap(), a);
        assert_eq!(
            a.to_string(),
            "AARE accepted, user diagnostic authentication-required(14), LN-ciphered, \
             responding-AP-title 4D4D4D0000BC614E, responder-acse-requirements 0780, \
             mechanism HLS-GMAC, StoC 503677524A323146, InitiateResponse v6 conformance 00501F pdu 1024"
        );
    }

    #[test]
    fn accepts_fields_in_any_order_and_encodes_in_tag_order() {
        // user-information before the application context.
        let bytes = h("601DBE10040E01000000065F1F040060FE9FFFFFA109060760857405080101");
        let a = Aarq::decode(&bytes).unwrap();
        assert_eq!(a.encode(), h(MINIMAL_AARQ));
    }

    #[test]
    fn accepts_long_form_lengths_and_encodes_them_when_needed() {
        // 81 1D instead of 1D.
        let mut bytes = h(MINIMAL_AARQ);
        bytes.splice(1..2, [0x81, 0x1D]);
        assert_eq!(Aarq::decode(&bytes).unwrap().encode(), h(MINIMAL_AARQ));
        // A 64-byte challenge plus user information needs a long-form outer length.
        let mut a = Aarq::decode(&h(MINIMAL_AARQ)).unwrap();
        a.mechanism = Some(Mechanism::HlsGmac);
        a.calling_authentication_value = Some(vec![0x41; 64]);
        a.calling_ap_title = Some(vec![1; 8]);
        // user-information: the Green Book glo-initiate-request (dlms-facts.md 1.5).
        a.user_information = Some(h(
            "213030012345678013 02FF8A7874133D414CED25B42534D28DB0047720606B175BD52211BE6841DB204D39EE6FDB8E356855",
        ));
        let enc = a.encode();
        assert_eq!(&enc[..2], &[0x60, 0x81]);
        assert_eq!(enc[2] as usize, enc.len() - 3);
        assert_eq!(Aarq::decode(&enc).unwrap(), a);
    }

    /// T_APPL_OPEN_6 sends 1- and 10-byte calling-AP-titles (dlms-facts.md 7.2);
    /// T_APPL_OPEN_5 sends an unknown context (…60857504070203 is not a DLMS UA OID).
    #[test]
    fn keeps_odd_titles_unknown_oids_and_unmodelled_fields() {
        let mut a = Aarq::new(AppContext::Other(h("60857504070203")));
        a.calling_ap_title = Some(vec![0x42]);
        a.mechanism = Some(Mechanism::Other(h("60857405080209")));
        a.unknown.push((0xA4, h("020101")));
        let enc = a.encode();
        let back = Aarq::decode(&enc).unwrap();
        assert_eq!(back, a);
        assert_eq!(back.calling_ap_title.as_deref(), Some(&[0x42][..]));
        let mut ten = a.clone();
        ten.calling_ap_title = Some(vec![7; 10]);
        assert_eq!(Aarq::decode(&ten.encode()).unwrap(), ten);
        let s = a.to_string();
        assert!(s.contains("AARQ context 2.16.757.4.7.2.3,"), "{s}");
        assert!(s.contains(", mechanism 2.16.756.5.8.2.9,"), "{s}");
    }

    #[test]
    fn keeps_a_calling_ap_title_in_an_unusual_form_as_unknown() {
        // A6 with a UTF8String inside: kept raw, not dropped.
        let bytes = h("6011A109060760857405080101A6040C024142");
        let a = Aarq::decode(&bytes).unwrap();
        assert_eq!(a.calling_ap_title, None);
        assert_eq!(a.unknown, vec![(0xA6, h("0C024142"))]);
        assert_eq!(a.encode(), bytes);
    }

    #[test]
    fn rejects_an_aarq_without_application_context() {
        let err = Aarq::decode(&h("6012BE10040E01000000065F1F040060FE9FFFFF")).unwrap_err();
        assert!(
            err.to_string().contains("application-context-name"),
            "{err}"
        );
    }

    #[test]
    fn rejects_truncated_and_malformed_acse() {
        let full = h(MINIMAL_AARQ);
        for n in 0..full.len() {
            assert!(Aarq::decode(&full[..n]).is_err(), "prefix {n}");
        }
        // Indefinite length.
        assert!(Aarq::decode(&h("6080A1090607608574050801010000")).is_err());
        // Trailing bytes after the AARQ.
        let mut t = full.clone();
        t.push(0);
        assert!(matches!(Aarq::decode(&t), Err(WireError::Trailing { .. })));
        // Wrong outer tag.
        assert!(Aarq::decode(&h("6103A10100")).is_err());
        // Multi-byte tag.
        assert!(Aarq::decode(&h("60035F1F00")).is_err());
        // Application context that is not an OID.
        assert!(Aarq::decode(&h("6004A1020400")).is_err());
    }

    #[test]
    fn rejects_an_aare_without_result_or_diagnostic() {
        let e = Aare::decode(&h("610CA203020100A305A103020100")).unwrap_err();
        assert!(e.to_string().contains("application-context-name"), "{e}");
        let e = Aare::decode(&h("6110A109060760857405080101A203020100")).unwrap_err();
        assert!(e.to_string().contains("result-source-diagnostic"), "{e}");
        let e = Aare::decode(&h("6112A109060760857405080101A305A103020100")).unwrap_err();
        assert!(e.to_string().contains("result (A2)"), "{e}");
    }

    #[test]
    fn rejected_aare_with_confirmed_service_error_displays_both() {
        // APPL_OPEN_12 expectation (dlms-facts.md 7.2): rejected-permanent with
        // confirmed-service-error initiate / dlms-version-too-low (0E 01 06 01).
        let mut a = Aare::new(AppContext::LnNoCipher, 1, AcseDiagnostic::User(1));
        a.user_information = Some(h("0E010601"));
        let back = Aare::decode(&a.encode()).unwrap();
        assert_eq!(back, a);
        assert_eq!(
            a.to_string(),
            "AARE rejected-permanent, user diagnostic no-reason-given(1), \
             confirmed-service-error initiateError/initiate dlms-version-too-low(1)"
        );
        let p = Aare::new(AppContext::LnNoCipher, 1, AcseDiagnostic::Provider(2));
        assert!(
            p.to_string()
                .contains("provider diagnostic no-common-acse-version(2)")
        );
    }

    #[test]
    fn release_apdus_round_trip() {
        let plain = Rlrq {
            reason: Some(0),
            user_information: None,
        };
        assert_eq!(plain.encode(), h("6203800100"));
        assert_eq!(Rlrq::decode(&h("6203800100")).unwrap(), plain);
        assert_eq!(Rlrq::decode(&h("6200")).unwrap().reason, None);
        let re = Rlre {
            reason: Some(0),
            user_information: Some(h("0800065F1F040000501F04000007")),
        };
        let enc = re.encode();
        assert_eq!(enc, h("6315800100BE10040E0800065F1F040000501F04000007"));
        assert_eq!(Rlre::decode(&enc).unwrap(), re);
        assert_eq!(plain.to_string(), "RLRQ reason normal(0)");
        assert!(Rlrq::decode(&h("6203810100")).is_err());
        assert!(Rlrq::decode(&h("6302800100")).is_err());
    }

    #[test]
    fn oid_rendering_handles_malformed_input() {
        assert_eq!(oid_to_string(&h("60857405080101")), "2.16.756.5.8.1.1");
        assert_eq!(oid_to_string(&h("6085")), "6085");
        assert_eq!(oid_to_string(&[]), "(empty OID)");
        assert_eq!(oid_to_string(&[0xFF; 12]), hex::encode_upper([0xFF; 12]));
    }
    #[test]
    fn accepts_deeply_nested_user_information_in_display() {
        // An AARQ whose user-information is an AARQ whose user-information is an
        // AARQ... (60 kB, 2600 deep) overflowed a 2 MiB stack when displayed,
        // aborting the process: a device could crash the harness through its
        // trace. Display now expands one level only.
        let mut inner = vec![
            0x01, 0x00, 0x00, 0x00, 0x06, 0x5F, 0x1F, 0x04, 0x00, 0x00, 0x1E, 0x1D, 0x04, 0x00,
        ];
        let mut levels = 0;
        while inner.len() < 60_000 {
            let mut a = Aarq::new(AppContext::LnNoCipher);
            a.user_information = Some(inner);
            inner = Apdu::from(a).encode();
            levels += 1;
        }
        assert!(levels > 2000);
        let text = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || Apdu::decode(&inner).unwrap().to_string())
            .unwrap()
            .join()
            .unwrap();
        assert!(text.contains("a nested AARQ (not expanded)"), "{text}");
    }
}
