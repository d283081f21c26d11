//! xDLMS initiate APDUs and the conformance block (IEC 62056-5-3 / Green Book,
//! DLMS UA 1000-2, xDLMS ASN.1: InitiateRequest, InitiateResponse,
//! ConfirmedServiceError, Conformance; dlms-facts.md 2.3-2.4).
//!
//! These are A-XDR encoded except the conformance block, which is a BER
//! `[APPLICATION 31] IMPLICIT BIT STRING (SIZE(24))`: `5F 1F 04 00 b1 b2 b3`.

use std::fmt;
use std::ops::{BitAnd, BitOr};

use super::{open_apdu, read_octets, read_presence, tags, write_octets};
use crate::wire::{Reader, WireError, WireResult};

/// The xDLMS conformance block: 24 bits, bit 0 is the MSB of the first byte
/// (dlms-facts.md 2.4). Only the low 24 bits of the `u32` are sent.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Conformance(pub u32);

const fn bit(n: u32) -> Conformance {
    Conformance(1 << (23 - n))
}

impl Conformance {
    /// Bit 0, reserved-zero.
    pub const RESERVED_ZERO: Conformance = bit(0);
    /// Bit 1, general-protection.
    pub const GENERAL_PROTECTION: Conformance = bit(1);
    /// Bit 2, general-block-transfer.
    pub const GENERAL_BLOCK_TRANSFER: Conformance = bit(2);
    /// Bit 3, read (SN).
    pub const READ: Conformance = bit(3);
    /// Bit 4, write (SN).
    pub const WRITE: Conformance = bit(4);
    /// Bit 5, unconfirmed-write (SN).
    pub const UNCONFIRMED_WRITE: Conformance = bit(5);
    /// Bit 6, delta-value-encoding (formerly reserved-six).
    pub const DELTA_VALUE_ENCODING: Conformance = bit(6);
    /// Bit 7, reserved-seven.
    pub const RESERVED_SEVEN: Conformance = bit(7);
    /// Bit 8, attribute0-supported-with-set.
    pub const ATTRIBUTE0_SUPPORTED_WITH_SET: Conformance = bit(8);
    /// Bit 9, priority-mgmt-supported.
    pub const PRIORITY_MGMT_SUPPORTED: Conformance = bit(9);
    /// Bit 10, attribute0-supported-with-get.
    pub const ATTRIBUTE0_SUPPORTED_WITH_GET: Conformance = bit(10);
    /// Bit 11, block-transfer-with-get-or-read.
    pub const BLOCK_TRANSFER_WITH_GET_OR_READ: Conformance = bit(11);
    /// Bit 12, block-transfer-with-set-or-write.
    pub const BLOCK_TRANSFER_WITH_SET_OR_WRITE: Conformance = bit(12);
    /// Bit 13, block-transfer-with-action.
    pub const BLOCK_TRANSFER_WITH_ACTION: Conformance = bit(13);
    /// Bit 14, multiple-references.
    pub const MULTIPLE_REFERENCES: Conformance = bit(14);
    /// Bit 15, information-report (SN).
    pub const INFORMATION_REPORT: Conformance = bit(15);
    /// Bit 16, data-notification.
    pub const DATA_NOTIFICATION: Conformance = bit(16);
    /// Bit 17, access.
    pub const ACCESS: Conformance = bit(17);
    /// Bit 18, parameterized-access (SN).
    pub const PARAMETERIZED_ACCESS: Conformance = bit(18);
    /// Bit 19, get.
    pub const GET: Conformance = bit(19);
    /// Bit 20, set.
    pub const SET: Conformance = bit(20);
    /// Bit 21, selective-access.
    pub const SELECTIVE_ACCESS: Conformance = bit(21);
    /// Bit 22, event-notification.
    pub const EVENT_NOTIFICATION: Conformance = bit(22);
    /// Bit 23, action.
    pub const ACTION: Conformance = bit(23);

    /// Every named bit with its Green Book name, in bit order.
    pub const NAMES: [(Conformance, &'static str); 24] = [
        (Self::RESERVED_ZERO, "reserved-zero"),
        (Self::GENERAL_PROTECTION, "general-protection"),
        (Self::GENERAL_BLOCK_TRANSFER, "general-block-transfer"),
        (Self::READ, "read"),
        (Self::WRITE, "write"),
        (Self::UNCONFIRMED_WRITE, "unconfirmed-write"),
        (Self::DELTA_VALUE_ENCODING, "delta-value-encoding"),
        (Self::RESERVED_SEVEN, "reserved-seven"),
        (
            Self::ATTRIBUTE0_SUPPORTED_WITH_SET,
            "attribute0-supported-with-set",
        ),
        (Self::PRIORITY_MGMT_SUPPORTED, "priority-mgmt-supported"),
        (
            Self::ATTRIBUTE0_SUPPORTED_WITH_GET,
            "attribute0-supported-with-get",
        ),
        (
            Self::BLOCK_TRANSFER_WITH_GET_OR_READ,
            "block-transfer-with-get-or-read",
        ),
        (
            Self::BLOCK_TRANSFER_WITH_SET_OR_WRITE,
            "block-transfer-with-set-or-write",
        ),
        (
            Self::BLOCK_TRANSFER_WITH_ACTION,
            "block-transfer-with-action",
        ),
        (Self::MULTIPLE_REFERENCES, "multiple-references"),
        (Self::INFORMATION_REPORT, "information-report"),
        (Self::DATA_NOTIFICATION, "data-notification"),
        (Self::ACCESS, "access"),
        (Self::PARAMETERIZED_ACCESS, "parameterized-access"),
        (Self::GET, "get"),
        (Self::SET, "set"),
        (Self::SELECTIVE_ACCESS, "selective-access"),
        (Self::EVENT_NOTIFICATION, "event-notification"),
        (Self::ACTION, "action"),
    ];

    /// Whether every bit of `other` is set in `self`.
    pub fn contains(self, other: Conformance) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether bit `n` (0 = MSB of the first byte) is set.
    pub fn bit(self, n: u32) -> bool {
        n < 24 && self.0 & (1 << (23 - n)) != 0
    }

    /// The names of the bits that are set, in bit order.
    pub fn names(self) -> Vec<&'static str> {
        Self::NAMES
            .iter()
            .filter(|(c, _)| self.contains(*c))
            .map(|(_, n)| *n)
            .collect()
    }

    /// The bit with this Green Book name.
    pub fn by_name(name: &str) -> Option<Conformance> {
        Self::NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(c, _)| *c)
    }

    /// The three bytes as sent.
    pub fn to_bytes(self) -> [u8; 3] {
        let [_, a, b, c] = self.0.to_be_bytes();
        [a, b, c]
    }

    /// From the three bytes as sent.
    pub fn from_bytes(b: [u8; 3]) -> Self {
        Conformance(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    /// Reads the BER encoding `5F 1F 04 00 b1 b2 b3`.
    pub(crate) fn read(r: &mut Reader<'_>, what: &'static str) -> WireResult<Self> {
        let head: [u8; 4] = r.array(what)?;
        if head != [0x5F, 0x1F, 0x04, 0x00] {
            return Err(WireError::invalid(
                what,
                format!(
                    "conformance must start 5F 1F 04 00 ([APPLICATION 31] BIT STRING of 24 bits), got {}",
                    hex::encode_upper(head)
                ),
            ));
        }
        Ok(Self::from_bytes(r.array(what)?))
    }

    /// Writes the BER encoding `5F 1F 04 00 b1 b2 b3`.
    pub(crate) fn write(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0x5F, 0x1F, 0x04, 0x00]);
        out.extend_from_slice(&self.to_bytes());
    }
}

impl BitOr for Conformance {
    type Output = Conformance;
    fn bitor(self, rhs: Self) -> Self {
        Conformance(self.0 | rhs.0)
    }
}

impl BitAnd for Conformance {
    type Output = Conformance;
    fn bitand(self, rhs: Self) -> Self {
        Conformance(self.0 & rhs.0)
    }
}

impl fmt::Debug for Conformance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Conformance(0x{:06X})", self.0)
    }
}

/// Lists the names of the bits set, e.g. `get|set|action`, or `(none)`.
impl fmt::Display for Conformance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self.names();
        if names.is_empty() {
            write!(f, "(none)")
        } else {
            write!(f, "{}", names.join("|"))
        }
    }
}

/// InitiateRequest (tag 0x01), carried in AARQ user-information (dlms-facts.md 2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitiateRequest {
    /// dedicated-key OCTET STRING OPTIONAL. Never displayed.
    pub dedicated_key: Option<Vec<u8>>,
    /// response-allowed BOOLEAN DEFAULT TRUE: `true` is sent as the default (00).
    pub response_allowed: bool,
    /// proposed-quality-of-service \[0\] IMPLICIT Integer8 OPTIONAL.
    pub proposed_quality_of_service: Option<u8>,
    /// proposed-dlms-version-number (6).
    pub proposed_dlms_version: u8,
    /// proposed-conformance.
    pub proposed_conformance: Conformance,
    /// client-max-receive-pdu-size.
    pub client_max_receive_pdu_size: u16,
}

impl InitiateRequest {
    /// Decodes a whole InitiateRequest (`01 ...`).
    pub fn decode(bytes: &[u8]) -> WireResult<Self> {
        const WHAT: &str = "InitiateRequest";
        let mut r = open_apdu(bytes, tags::INITIATE_REQUEST, WHAT)?;
        let dedicated_key = if read_presence(&mut r, "InitiateRequest dedicated-key")? {
            Some(read_octets(&mut r, "InitiateRequest dedicated-key")?.to_vec())
        } else {
            None
        };
        let response_allowed = if read_presence(&mut r, "InitiateRequest response-allowed")? {
            r.u8("InitiateRequest response-allowed")? != 0
        } else {
            true
        };
        let proposed_quality_of_service =
            if read_presence(&mut r, "InitiateRequest proposed-quality-of-service")? {
                Some(r.u8("InitiateRequest proposed-quality-of-service")?)
            } else {
                None
            };
        let proposed_dlms_version = r.u8("InitiateRequest proposed-dlms-version-number")?;
        let proposed_conformance =
            Conformance::read(&mut r, "InitiateRequest proposed-conformance")?;
        let client_max_receive_pdu_size = r.u16("InitiateRequest client-max-receive-pdu-size")?;
        r.finish(WHAT)?;
        Ok(InitiateRequest {
            dedicated_key,
            response_allowed,
            proposed_quality_of_service,
            proposed_dlms_version,
            proposed_conformance,
            client_max_receive_pdu_size,
        })
    }

    /// Encodes the InitiateRequest.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![tags::INITIATE_REQUEST];
        match &self.dedicated_key {
            Some(k) => {
                out.push(1);
                write_octets(&mut out, k);
            }
            None => out.push(0),
        }
        if self.response_allowed {
            out.push(0);
        } else {
            out.extend_from_slice(&[1, 0]);
        }
        match self.proposed_quality_of_service {
            Some(q) => out.extend_from_slice(&[1, q]),
            None => out.push(0),
        }
        out.push(self.proposed_dlms_version);
        self.proposed_conformance.write(&mut out);
        out.extend_from_slice(&self.client_max_receive_pdu_size.to_be_bytes());
        out
    }
}

impl fmt::Display for InitiateRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "InitiateRequest v{} conformance {:06X} pdu {}",
            self.proposed_dlms_version,
            self.proposed_conformance.0,
            self.client_max_receive_pdu_size
        )?;
        if let Some(k) = &self.dedicated_key {
            write!(f, " dedicated-key <{} bytes>", k.len())?;
        }
        if !self.response_allowed {
            write!(f, " response-allowed false")?;
        }
        if let Some(q) = self.proposed_quality_of_service {
            write!(f, " qos {q}")?;
        }
        Ok(())
    }
}

/// InitiateResponse (tag 0x08), carried in AARE user-information (dlms-facts.md 2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitiateResponse {
    /// negotiated-quality-of-service \[0\] IMPLICIT Integer8 OPTIONAL.
    pub negotiated_quality_of_service: Option<u8>,
    /// negotiated-dlms-version-number (6).
    pub negotiated_dlms_version: u8,
    /// negotiated-conformance.
    pub negotiated_conformance: Conformance,
    /// server-max-receive-pdu-size.
    pub server_max_receive_pdu_size: u16,
    /// vaa-name: 0x0007 for LN, 0xFA00 for SN.
    pub vaa_name: u16,
}

impl InitiateResponse {
    /// vaa-name of logical name referencing.
    pub const VAA_NAME_LN: u16 = 0x0007;
    /// vaa-name of short name referencing.
    pub const VAA_NAME_SN: u16 = 0xFA00;

    /// Decodes a whole InitiateResponse (`08 ...`).
    pub fn decode(bytes: &[u8]) -> WireResult<Self> {
        const WHAT: &str = "InitiateResponse";
        let mut r = open_apdu(bytes, tags::INITIATE_RESPONSE, WHAT)?;
        let negotiated_quality_of_service =
            if read_presence(&mut r, "InitiateResponse negotiated-quality-of-service")? {
                Some(r.u8("InitiateResponse negotiated-quality-of-service")?)
            } else {
                None
            };
        let negotiated_dlms_version = r.u8("InitiateResponse negotiated-dlms-version-number")?;
        let negotiated_conformance =
            Conformance::read(&mut r, "InitiateResponse negotiated-conformance")?;
        let server_max_receive_pdu_size = r.u16("InitiateResponse server-max-receive-pdu-size")?;
        let vaa_name = r.u16("InitiateResponse vaa-name")?;
        r.finish(WHAT)?;
        Ok(InitiateResponse {
            negotiated_quality_of_service,
            negotiated_dlms_version,
            negotiated_conformance,
            server_max_receive_pdu_size,
            vaa_name,
        })
    }

    /// Encodes the InitiateResponse.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![tags::INITIATE_RESPONSE];
        match self.negotiated_quality_of_service {
            Some(q) => out.extend_from_slice(&[1, q]),
            None => out.push(0),
        }
        out.push(self.negotiated_dlms_version);
        self.negotiated_conformance.write(&mut out);
        out.extend_from_slice(&self.server_max_receive_pdu_size.to_be_bytes());
        out.extend_from_slice(&self.vaa_name.to_be_bytes());
        out
    }
}

impl fmt::Display for InitiateResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "InitiateResponse v{} conformance {:06X} pdu {}",
            self.negotiated_dlms_version,
            self.negotiated_conformance.0,
            self.server_max_receive_pdu_size
        )?;
        if self.vaa_name != Self::VAA_NAME_LN {
            write!(f, " vaa-name 0x{:04X}", self.vaa_name)?;
        }
        if let Some(q) = self.negotiated_quality_of_service {
            write!(f, " qos {q}")?;
        }
        Ok(())
    }
}

/// ConfirmedServiceError (tag 0x0E): `0E <service> <error type> <value>`,
/// e.g. `0E 01 06 01` = initiateError / initiate / dlms-version-too-low.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfirmedServiceError {
    /// The ConfirmedServiceError CHOICE: 1 initiateError, 5 read, 6 write, ...
    pub service: u8,
    /// The ServiceError CHOICE: 0 application-reference ... 6 initiate ... 10 other.
    pub error_type: u8,
    /// The enumerated value within the error type.
    pub value: u8,
}

impl ConfirmedServiceError {
    /// ConfirmedServiceError choice initiateError.
    pub const INITIATE_ERROR: u8 = 1;
    /// ServiceError choice initiate.
    pub const ERROR_TYPE_INITIATE: u8 = 6;
    /// initiate: other.
    pub const INITIATE_OTHER: u8 = 0;
    /// initiate: dlms-version-too-low.
    pub const DLMS_VERSION_TOO_LOW: u8 = 1;
    /// initiate: incompatible-conformance.
    pub const INCOMPATIBLE_CONFORMANCE: u8 = 2;
    /// initiate: pdu-size-too-short.
    pub const PDU_SIZE_TOO_SHORT: u8 = 3;
    /// initiate: refused-by-the-VDE-Handler.
    pub const REFUSED_BY_THE_VDE_HANDLER: u8 = 4;

    /// An initiateError / initiate error with the given code (0..=4).
    pub fn initiate(code: u8) -> Self {
        ConfirmedServiceError {
            service: Self::INITIATE_ERROR,
            error_type: Self::ERROR_TYPE_INITIATE,
            value: code,
        }
    }

    /// The name of an initiate error code.
    pub fn initiate_name(code: u8) -> &'static str {
        match code {
            0 => "other",
            1 => "dlms-version-too-low",
            2 => "incompatible-conformance",
            3 => "pdu-size-too-short",
            4 => "refused-by-the-VDE-Handler",
            _ => "unknown",
        }
    }

    /// The name of the ConfirmedServiceError choice.
    pub fn service_name(&self) -> &'static str {
        match self.service {
            1 => "initiateError",
            2 => "getStatus",
            3 => "getNameList",
            4 => "getVariableAttribute",
            5 => "read",
            6 => "write",
            7 => "getDataSetAttribute",
            8 => "getTIAttribute",
            9 => "changeScope",
            10 => "start",
            11 => "stop",
            12 => "resume",
            13 => "makeUsable",
            14 => "initiateLoad",
            15 => "loadSegment",
            16 => "terminateLoad",
            17 => "initiateUpLoad",
            18 => "upLoadSegment",
            19 => "terminateUpLoad",
            _ => "unknown-service",
        }
    }

    /// The name of the ServiceError choice.
    pub fn error_type_name(&self) -> &'static str {
        match self.error_type {
            0 => "application-reference",
            1 => "hardware-resource",
            2 => "vde-state-error",
            3 => "service",
            4 => "definition",
            5 => "access",
            6 => "initiate",
            7 => "load-data-set",
            8 => "change-scope",
            9 => "task",
            10 => "other",
            _ => "unknown-error-type",
        }
    }

    /// The name of the value within its error type.
    pub fn value_name(&self) -> &'static str {
        let names: &[&str] = match self.error_type {
            0 => &[
                "other",
                "time-elapsed",
                "application-unreachable",
                "application-reference-invalid",
                "application-context-unsupported",
                "provider-communication-error",
                "deciphering-error",
            ],
            1 => &[
                "other",
                "memory-unavailable",
                "processor-resource-unavailable",
                "mass-storage-unavailable",
                "other-resource-unavailable",
            ],
            2 => &[
                "other",
                "no-dlms-context",
                "loading-data-set",
                "status-nochange",
                "status-inoperable",
            ],
            3 => &["other", "pdu-size", "service-unsupported"],
            4 => &[
                "other",
                "object-undefined",
                "object-class-inconsistent",
                "object-attribute-inconsistent",
            ],
            5 => &[
                "other",
                "scope-of-access-violated",
                "object-access-violated",
                "hardware-fault",
                "object-unavailable",
            ],
            6 => return Self::initiate_name(self.value),
            _ => &["other"],
        };
        names.get(self.value as usize).copied().unwrap_or("unknown")
    }

    /// Decodes a whole ConfirmedServiceError (`0E s t v`).
    pub fn decode(bytes: &[u8]) -> WireResult<Self> {
        const WHAT: &str = "confirmed-service-error";
        let mut r = open_apdu(bytes, tags::CONFIRMED_SERVICE_ERROR, WHAT)?;
        let e = ConfirmedServiceError {
            service: r.u8(WHAT)?,
            error_type: r.u8(WHAT)?,
            value: r.u8(WHAT)?,
        };
        r.finish(WHAT)?;
        Ok(e)
    }

    /// Encodes the ConfirmedServiceError.
    pub fn encode(&self) -> Vec<u8> {
        vec![
            tags::CONFIRMED_SERVICE_ERROR,
            self.service,
            self.error_type,
            self.value,
        ]
    }
}

impl fmt::Display for ConfirmedServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "confirmed-service-error {}/{} {}({})",
            self.service_name(),
            self.error_type_name(),
            self.value_name(),
            self.value
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn conformance_bits_follow_the_standard_example() {
        // 007E1F = bits 9-14 and 19-23 (dlms-facts.md 2.4, the Green Book example of 1.5).
        let c = Conformance(0x007E1F);
        let want = Conformance::PRIORITY_MGMT_SUPPORTED
            | Conformance::ATTRIBUTE0_SUPPORTED_WITH_GET
            | Conformance::BLOCK_TRANSFER_WITH_GET_OR_READ
            | Conformance::BLOCK_TRANSFER_WITH_SET_OR_WRITE
            | Conformance::BLOCK_TRANSFER_WITH_ACTION
            | Conformance::MULTIPLE_REFERENCES
            | Conformance::GET
            | Conformance::SET
            | Conformance::SELECTIVE_ACCESS
            | Conformance::EVENT_NOTIFICATION
            | Conformance::ACTION;
        assert_eq!(c, want);
        assert!(c.contains(Conformance::GET | Conformance::ACTION));
        assert!(!c.contains(Conformance::GENERAL_PROTECTION));
        assert!(c.bit(19) && !c.bit(0) && !c.bit(24));
        assert_eq!(c.to_bytes(), [0x00, 0x7E, 0x1F]);
        assert_eq!(
            Conformance::by_name("selective-access"),
            Some(Conformance::SELECTIVE_ACCESS)
        );
        assert_eq!(
            Conformance(0x00001D).to_string(),
            "get|set|selective-access|action"
        );
        assert_eq!(Conformance(0).to_string(), "(none)");
        assert_eq!(Conformance::NAMES.len(), 24);
    }

    /// The InitiateRequest inside the Green Book glo-initiate-request example
    /// (dlms-facts.md 1.5; jDLMS CipheringTest, Elster "GB ed.7 p.265").
    #[test]
    fn decodes_the_green_book_initiate_request_with_dedicated_key() {
        let bytes = h("01 01 10 00112233445566778899AABBCCDDEEFF 00 00 06 5F1F0400007E1F 04B0");
        let i = InitiateRequest::decode(&bytes).unwrap();
        assert_eq!(i.dedicated_key, Some(h("00112233445566778899AABBCCDDEEFF")));
        assert!(i.response_allowed);
        assert_eq!(i.proposed_quality_of_service, None);
        assert_eq!(i.proposed_dlms_version, 6);
        assert_eq!(i.proposed_conformance, Conformance(0x007E1F));
        assert_eq!(i.client_max_receive_pdu_size, 1200);
        assert_eq!(i.encode(), bytes);
        let s = i.to_string();
        assert_eq!(
            s,
            "InitiateRequest v6 conformance 007E1F pdu 1200 dedicated-key <16 bytes>"
        );
        assert!(!s.contains("0011223344"));
    }

    /// AARQ user-information of the minimal AARQ (dlms-facts.md 2.2, GXDLMSDirector):
    /// 01 | 00 no dedicated key | 00 response-allowed default | 00 no QoS | 06 |
    /// 5F1F 04 00 60FE9F | FFFF.
    #[test]
    fn decodes_the_minimal_aarq_initiate_request() {
        let bytes = h("01 00 00 00 06 5F1F040060FE9F FFFF");
        let i = InitiateRequest::decode(&bytes).unwrap();
        assert_eq!(
            i,
            InitiateRequest {
                dedicated_key: None,
                response_allowed: true,
                proposed_quality_of_service: None,
                proposed_dlms_version: 6,
                proposed_conformance: Conformance(0x60FE9F),
                client_max_receive_pdu_size: 0xFFFF,
            }
        );
        assert_eq!(i.encode(), bytes);
        // The u9n LLS AARQ: conformance 00521D, pdu 0x00EF.
        let lls = InitiateRequest::decode(&h("01000000065F1F040000521D00EF")).unwrap();
        assert_eq!(lls.proposed_conformance, Conformance(0x00521D));
        assert_eq!(lls.client_max_receive_pdu_size, 0xEF);
    }

    #[test]
    fn encodes_non_default_response_allowed_qos_and_broken_values_as_given() {
        // T_APPL_OPEN_12/14 send version 5 and PDU size 11 (dlms-facts.md 7.2).
        let i = InitiateRequest {
            dedicated_key: None,
            response_allowed: false,
            proposed_quality_of_service: Some(3),
            proposed_dlms_version: 5,
            proposed_conformance: Conformance(0x00101D),
            client_max_receive_pdu_size: 11,
        };
        let enc = i.encode();
        assert_eq!(enc, h("01 00 0100 0103 05 5F1F040000101D 000B"));
        assert_eq!(InitiateRequest::decode(&enc).unwrap(), i);
    }

    #[test]
    fn initiate_response_round_trips() {
        // Layout per dlms-facts.md 2.3 (Gurux.NET GXAPDU.cs GetUserInformation).
        let bytes = h("08 00 06 5F1F040000501F 0400 0007");
        let r = InitiateResponse::decode(&bytes).unwrap();
        assert_eq!(r.negotiated_conformance, Conformance(0x00501F));
        assert_eq!(r.server_max_receive_pdu_size, 1024);
        assert_eq!(r.vaa_name, InitiateResponse::VAA_NAME_LN);
        assert_eq!(r.encode(), bytes);
        assert_eq!(
            r.to_string(),
            "InitiateResponse v6 conformance 00501F pdu 1024"
        );
        let sn = InitiateResponse {
            negotiated_quality_of_service: Some(1),
            vaa_name: InitiateResponse::VAA_NAME_SN,
            ..r
        };
        assert_eq!(InitiateResponse::decode(&sn.encode()).unwrap(), sn);
        assert!(sn.to_string().ends_with("vaa-name 0xFA00 qos 1"));
    }

    #[test]
    fn confirmed_service_error_names_the_initiate_codes() {
        let e = ConfirmedServiceError::decode(&h("0E010601")).unwrap();
        assert_eq!(
            e,
            ConfirmedServiceError::initiate(ConfirmedServiceError::DLMS_VERSION_TOO_LOW)
        );
        assert_eq!(e.encode(), h("0E010601"));
        assert_eq!(
            e.to_string(),
            "confirmed-service-error initiateError/initiate dlms-version-too-low(1)"
        );
        assert_eq!(
            ConfirmedServiceError::initiate(3).value_name(),
            "pdu-size-too-short"
        );
        assert_eq!(ConfirmedServiceError::initiate(9).value_name(), "unknown");
    }

    #[test]
    fn rejects_malformed_initiate_apdus() {
        let good = h("01 01 10 00112233445566778899AABBCCDDEEFF 00 00 06 5F1F0400007E1F 04B0");
        for n in 0..good.len() {
            assert!(InitiateRequest::decode(&good[..n]).is_err(), "prefix {n}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(
            InitiateRequest::decode(&trailing),
            Err(WireError::Trailing { .. })
        ));
        // Presence flag 2, wrong conformance header, wrong tag.
        assert!(InitiateRequest::decode(&h("01020000065F1F040000521D00EF")).is_err());
        assert!(InitiateRequest::decode(&h("01000000065F1E040000521D00EF")).is_err());
        assert!(InitiateRequest::decode(&h("08000000065F1F040000521D00EF")).is_err());
        // A key length beyond the input.
        assert!(InitiateRequest::decode(&h("0101FF00")).is_err());
        assert!(InitiateResponse::decode(&h("0800065F1F040000501F0400")).is_err());
        assert!(ConfirmedServiceError::decode(&h("0E0106")).is_err());
        assert!(ConfirmedServiceError::decode(&h("0E01060100")).is_err());
    }
}
