//! The LN xDLMS services in A-XDR (IEC 62056-5-3 / Green Book, DLMS UA 1000-2,
//! xDLMS ASN.1): GET, SET and ACTION requests and responses, exception-response
//! (dlms-facts.md 4.3), data-notification and event-notification-request.
//!
//! A-XDR rules used throughout: a CHOICE is one tag byte, OPTIONAL is a 00/01
//! presence byte, SEQUENCE OF is an A-XDR length followed by the elements,
//! Unsigned32 is 4 bytes big-endian, invoke-id-and-priority is one byte.

use std::fmt;
use std::str::FromStr;

use super::{
    InvokeId, ShortData, open_apdu, read_count, read_octets, read_presence, tags, write_octets,
};
use crate::wire::axdr::{Data, format_date_time, write_length};
use crate::wire::obis::Obis;
use crate::wire::{Reader, WireError, WireResult};

/// A name that is not one of the known result names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {name:?}")]
pub struct UnknownName {
    /// What was being parsed, e.g. "data-access-result".
    pub kind: &'static str,
    /// The text given.
    pub name: String,
}

macro_rules! result_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $kind:literal {
            $( $(#[$vmeta:meta])* $var:ident = $val:literal => $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $var, )*
            /// A value the standard does not define.
            Unknown(u8),
        }

        impl $name {
            /// From the wire value.
            pub fn from_u8(v: u8) -> Self {
                match v {
                    $( $val => $name::$var, )*
                    other => $name::Unknown(other),
                }
            }

            /// The wire value.
            pub fn to_u8(self) -> u8 {
                match self {
                    $( $name::$var => $val, )*
                    $name::Unknown(v) => v,
                }
            }

            /// The Blue Book name, e.g. "read-write-denied"; "unknown" for others.
            pub fn name(self) -> &'static str {
                match self {
                    $( $name::$var => $text, )*
                    $name::Unknown(_) => "unknown",
                }
            }
        }

        /// `name(value)`, e.g. `read-write-denied(3)`.
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", self.name(), self.to_u8())
            }
        }

        /// Parses a Blue Book name, or a decimal value.
        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                let t = s.trim();
                match t {
                    $( $text => Ok($name::$var), )*
                    _ => t.parse::<u8>().map($name::from_u8).map_err(|_| UnknownName {
                        kind: $kind,
                        name: s.to_owned(),
                    }),
                }
            }
        }
    };
}

result_enum! {
    /// Data-Access-Result (Green Book xDLMS ASN.1; dlms-cosem enumerations cross-checked).
    DataAccessResult, "data-access-result" {
        /// 0
        Success = 0 => "success",
        /// 1
        HardwareFault = 1 => "hardware-fault",
        /// 2
        TemporaryFailure = 2 => "temporary-failure",
        /// 3
        ReadWriteDenied = 3 => "read-write-denied",
        /// 4
        ObjectUndefined = 4 => "object-undefined",
        /// 9
        ObjectClassInconsistent = 9 => "object-class-inconsistent",
        /// 11
        ObjectUnavailable = 11 => "object-unavailable",
        /// 12
        TypeUnmatched = 12 => "type-unmatched",
        /// 13
        ScopeOfAccessViolated = 13 => "scope-of-access-violated",
        /// 14
        DataBlockUnavailable = 14 => "data-block-unavailable",
        /// 15
        LongGetAborted = 15 => "long-get-aborted",
        /// 16
        NoLongGetInProgress = 16 => "no-long-get-in-progress",
        /// 17
        LongSetAborted = 17 => "long-set-aborted",
        /// 18
        NoLongSetInProgress = 18 => "no-long-set-in-progress",
        /// 19
        DataBlockNumberInvalid = 19 => "data-block-number-invalid",
        /// 250
        OtherReason = 250 => "other-reason",
    }
}

result_enum! {
    /// Action-Result (Green Book xDLMS ASN.1; dlms-cosem enumerations cross-checked).
    ActionResult, "action-result" {
        /// 0
        Success = 0 => "success",
        /// 1
        HardwareFault = 1 => "hardware-fault",
        /// 2
        TemporaryFailure = 2 => "temporary-failure",
        /// 3
        ReadWriteDenied = 3 => "read-write-denied",
        /// 4
        ObjectUndefined = 4 => "object-undefined",
        /// 9
        ObjectClassInconsistent = 9 => "object-class-inconsistent",
        /// 11
        ObjectUnavailable = 11 => "object-unavailable",
        /// 12
        TypeUnmatched = 12 => "type-unmatched",
        /// 13
        ScopeOfAccessViolated = 13 => "scope-of-access-violated",
        /// 14
        DataBlockUnavailable = 14 => "data-block-unavailable",
        /// 15
        LongActionAborted = 15 => "long-action-aborted",
        /// 16
        NoLongActionInProgress = 16 => "no-long-action-in-progress",
        /// 250
        OtherReason = 250 => "other-reason",
    }
}

fn read_obis(r: &mut Reader<'_>, what: &'static str) -> WireResult<Obis> {
    Ok(Obis(r.array(what)?))
}

/// Cosem-Attribute-Descriptor: class-id u16, instance-id 6 bytes, attribute-id i8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttributeDescriptor {
    /// Interface class id.
    pub class_id: u16,
    /// Logical name of the object.
    pub instance: Obis,
    /// Attribute index.
    pub attribute_id: i8,
}

impl AttributeDescriptor {
    /// A descriptor from its parts.
    pub fn new(class_id: u16, instance: Obis, attribute_id: i8) -> Self {
        AttributeDescriptor {
            class_id,
            instance,
            attribute_id,
        }
    }

    /// Reads the 9 bytes.
    pub fn read(r: &mut Reader<'_>) -> WireResult<Self> {
        Ok(AttributeDescriptor {
            class_id: r.u16("attribute-descriptor class-id")?,
            instance: read_obis(r, "attribute-descriptor instance-id")?,
            attribute_id: r.u8("attribute-descriptor attribute-id")? as i8,
        })
    }

    /// Appends the 9 bytes.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.class_id.to_be_bytes());
        out.extend_from_slice(&self.instance.0);
        out.push(self.attribute_id as u8);
    }
}

/// `class/obis/attribute`, e.g. `8/0-0:1.0.0.255/2`.
impl fmt::Display for AttributeDescriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.class_id, self.instance, self.attribute_id
        )
    }
}

/// Cosem-Method-Descriptor: class-id u16, instance-id 6 bytes, method-id i8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MethodDescriptor {
    /// Interface class id.
    pub class_id: u16,
    /// Logical name of the object.
    pub instance: Obis,
    /// Method index.
    pub method_id: i8,
}

impl MethodDescriptor {
    /// A descriptor from its parts.
    pub fn new(class_id: u16, instance: Obis, method_id: i8) -> Self {
        MethodDescriptor {
            class_id,
            instance,
            method_id,
        }
    }

    /// Reads the 9 bytes.
    pub fn read(r: &mut Reader<'_>) -> WireResult<Self> {
        Ok(MethodDescriptor {
            class_id: r.u16("method-descriptor class-id")?,
            instance: read_obis(r, "method-descriptor instance-id")?,
            method_id: r.u8("method-descriptor method-id")? as i8,
        })
    }

    /// Appends the 9 bytes.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.class_id.to_be_bytes());
        out.extend_from_slice(&self.instance.0);
        out.push(self.method_id as u8);
    }
}

/// `class/obis/method`, e.g. `15/0-0:40.0.0.255/1`.
impl fmt::Display for MethodDescriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.class_id, self.instance, self.method_id)
    }
}

/// Selective-Access-Descriptor: access-selector u8, access-parameters Data.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectiveAccess {
    /// access-selector.
    pub selector: u8,
    /// access-parameters.
    pub parameters: Data,
}

fn read_opt_access(r: &mut Reader<'_>) -> WireResult<Option<SelectiveAccess>> {
    if read_presence(r, "access-selection")? {
        Ok(Some(SelectiveAccess {
            selector: r.u8("access-selector")?,
            parameters: Data::read(r)?,
        }))
    } else {
        Ok(None)
    }
}

fn write_opt_access(out: &mut Vec<u8>, a: &Option<SelectiveAccess>) {
    match a {
        Some(a) => {
            out.push(1);
            out.push(a.selector);
            a.parameters.write(out);
        }
        None => out.push(0),
    }
}

fn write_attr_with_access(
    f: &mut fmt::Formatter<'_>,
    attr: &AttributeDescriptor,
    access: &Option<SelectiveAccess>,
) -> fmt::Result {
    write!(f, "{attr}")?;
    if let Some(a) = access {
        write!(f, " selector {} {}", a.selector, ShortData(&a.parameters))?;
    }
    Ok(())
}

/// Reads a SEQUENCE OF with `read` for each element.
fn read_seq<'a, T>(
    r: &mut Reader<'a>,
    what: &'static str,
    mut read: impl FnMut(&mut Reader<'a>) -> WireResult<T>,
) -> WireResult<Vec<T>> {
    let n = read_count(r, what)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(read(r)?);
    }
    Ok(v)
}

fn write_seq<T>(out: &mut Vec<u8>, items: &[T], mut write: impl FnMut(&mut Vec<u8>, &T)) {
    write_length(out, items.len());
    for i in items {
        write(out, i);
    }
}

fn read_attr_list(
    r: &mut Reader<'_>,
) -> WireResult<Vec<(AttributeDescriptor, Option<SelectiveAccess>)>> {
    read_seq(r, "attribute-descriptor-list", |r| {
        Ok((AttributeDescriptor::read(r)?, read_opt_access(r)?))
    })
}

fn write_attr_list(out: &mut Vec<u8>, items: &[(AttributeDescriptor, Option<SelectiveAccess>)]) {
    write_seq(out, items, |out, (d, a)| {
        d.write(out);
        write_opt_access(out, a);
    });
}

fn write_list<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    write!(f, "[")?;
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            write!(f, ", ")?;
        }
        write!(f, "{x}")?;
    }
    write!(f, "]")
}

/// Get-Data-Result: CHOICE { data \[0\] Data, data-access-result \[1\] Data-Access-Result }.
#[derive(Debug, Clone, PartialEq)]
pub enum GetDataResult {
    /// \[0\] data.
    Data(Data),
    /// \[1\] data-access-result.
    Error(DataAccessResult),
}

impl GetDataResult {
    fn read(r: &mut Reader<'_>) -> WireResult<Self> {
        match r.u8("get-data-result choice")? {
            0 => Ok(GetDataResult::Data(Data::read(r)?)),
            1 => Ok(GetDataResult::Error(DataAccessResult::from_u8(
                r.u8("data-access-result")?,
            ))),
            c => Err(WireError::invalid(
                "get-data-result",
                format!("unknown choice {c} (0 data, 1 data-access-result)"),
            )),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            GetDataResult::Data(d) => {
                out.push(0);
                d.write(out);
            }
            GetDataResult::Error(e) => out.extend_from_slice(&[1, e.to_u8()]),
        }
    }
}

impl fmt::Display for GetDataResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetDataResult::Data(d) => write!(f, "{}", ShortData(d)),
            GetDataResult::Error(e) => write!(f, "error {e}"),
        }
    }
}

/// DataBlock-G: last-block BOOLEAN, block-number Unsigned32,
/// result CHOICE { raw-data \[0\] OCTET STRING, data-access-result \[1\] }.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataBlockG {
    /// last-block.
    pub last_block: bool,
    /// block-number.
    pub block_number: u32,
    /// raw-data (Ok) or data-access-result (Err).
    pub result: Result<Vec<u8>, DataAccessResult>,
}

impl DataBlockG {
    fn read(r: &mut Reader<'_>) -> WireResult<Self> {
        let last_block = r.u8("datablock last-block")? != 0;
        let block_number = r.u32("datablock block-number")?;
        let result = match r.u8("datablock result choice")? {
            0 => Ok(read_octets(r, "datablock raw-data")?.to_vec()),
            1 => Err(DataAccessResult::from_u8(r.u8("data-access-result")?)),
            c => {
                return Err(WireError::invalid(
                    "datablock",
                    format!("unknown result choice {c} (0 raw-data, 1 data-access-result)"),
                ));
            }
        };
        Ok(DataBlockG {
            last_block,
            block_number,
            result,
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.last_block));
        out.extend_from_slice(&self.block_number.to_be_bytes());
        match &self.result {
            Ok(raw) => {
                out.push(0);
                write_octets(out, raw);
            }
            Err(e) => out.extend_from_slice(&[1, e.to_u8()]),
        }
    }
}

impl fmt::Display for DataBlockG {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "block {}", self.block_number)?;
        if self.last_block {
            write!(f, " last")?;
        }
        match &self.result {
            Ok(raw) => write!(f, " raw-data {} byte(s)", raw.len()),
            Err(e) => write!(f, " error {e}"),
        }
    }
}

/// DataBlock-SA: last-block BOOLEAN, block-number Unsigned32, raw-data OCTET STRING.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataBlockSa {
    /// last-block.
    pub last_block: bool,
    /// block-number.
    pub block_number: u32,
    /// raw-data.
    pub raw_data: Vec<u8>,
}

impl DataBlockSa {
    fn read(r: &mut Reader<'_>) -> WireResult<Self> {
        Ok(DataBlockSa {
            last_block: r.u8("datablock last-block")? != 0,
            block_number: r.u32("datablock block-number")?,
            raw_data: read_octets(r, "datablock raw-data")?.to_vec(),
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.last_block));
        out.extend_from_slice(&self.block_number.to_be_bytes());
        write_octets(out, &self.raw_data);
    }
}

impl fmt::Display for DataBlockSa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "block {}", self.block_number)?;
        if self.last_block {
            write!(f, " last")?;
        }
        write!(f, " raw-data {} byte(s)", self.raw_data.len())
    }
}

/// An unknown request/response type CHOICE: the caller turns the whole APDU into `Apdu::Unknown`.
pub(super) fn unknown_choice(what: &'static str, c: u8) -> WireError {
    WireError::invalid(what, format!("unknown choice {c}"))
}

/// Get-Request (tag 0xC0).
#[derive(Debug, Clone, PartialEq)]
pub enum GetRequest {
    /// 1: get-request-normal.
    Normal {
        invoke_id: InvokeId,
        attribute: AttributeDescriptor,
        access: Option<SelectiveAccess>,
    },
    /// 2: get-request-next.
    Next {
        invoke_id: InvokeId,
        block_number: u32,
    },
    /// 3: get-request-with-list.
    WithList {
        invoke_id: InvokeId,
        items: Vec<(AttributeDescriptor, Option<SelectiveAccess>)>,
    },
}

impl GetRequest {
    /// Decodes a whole get-request (`C0 ...`).
    pub fn decode(bytes: &[u8]) -> WireResult<Self> {
        const WHAT: &str = "get-request";
        let mut r = open_apdu(bytes, tags::GET_REQUEST, WHAT)?;
        let choice = r.u8(WHAT)?;
        let invoke_id = r.u8("invoke-id-and-priority")?;
        let v = match choice {
            1 => GetRequest::Normal {
                invoke_id,
                attribute: AttributeDescriptor::read(&mut r)?,
                access: read_opt_access(&mut r)?,
            },
            2 => GetRequest::Next {
                invoke_id,
                block_number: r.u32("block-number")?,
            },
            3 => GetRequest::WithList {
                invoke_id,
                items: read_attr_list(&mut r)?,
            },
            c => return Err(unknown_choice(WHAT, c)),
        };
        r.finish(WHAT)?;
        Ok(v)
    }

    /// Encodes the get-request.
    pub fn encode(&self) -> Vec<u8> {
        // Room for a short request or response without regrowing (hot path).
        let mut out = Vec::with_capacity(32);
        out.push(tags::GET_REQUEST);
        match self {
            GetRequest::Normal {
                invoke_id,
                attribute,
                access,
            } => {
                out.extend_from_slice(&[1, *invoke_id]);
                attribute.write(&mut out);
                write_opt_access(&mut out, access);
            }
            GetRequest::Next {
                invoke_id,
                block_number,
            } => {
                out.extend_from_slice(&[2, *invoke_id]);
                out.extend_from_slice(&block_number.to_be_bytes());
            }
            GetRequest::WithList { invoke_id, items } => {
                out.extend_from_slice(&[3, *invoke_id]);
                write_attr_list(&mut out, items);
            }
        }
        out
    }

    /// The invoke-id-and-priority byte.
    pub fn invoke_id(&self) -> InvokeId {
        match self {
            GetRequest::Normal { invoke_id, .. }
            | GetRequest::Next { invoke_id, .. }
            | GetRequest::WithList { invoke_id, .. } => *invoke_id,
        }
    }
}

impl fmt::Display for GetRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetRequest::Normal {
                invoke_id,
                attribute,
                access,
            } => {
                write!(f, "get-request normal invoke 0x{invoke_id:02X} ")?;
                write_attr_with_access(f, attribute, access)
            }
            GetRequest::Next {
                invoke_id,
                block_number,
            } => write!(
                f,
                "get-request next invoke 0x{invoke_id:02X} block {block_number}"
            ),
            GetRequest::WithList { invoke_id, items } => {
                write!(f, "get-request with-list invoke 0x{invoke_id:02X} [")?;
                for (i, (d, a)) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write_attr_with_access(f, d, a)?;
                }
                write!(f, "]")
            }
        }
    }
}

/// Get-Response (tag 0xC4).
#[derive(Debug, Clone, PartialEq)]
pub enum GetResponse {
    /// 1: get-response-normal.
    Normal {
        invoke_id: InvokeId,
        result: GetDataResult,
    },
    /// 2: get-response-with-datablock.
    WithDatablock {
        invoke_id: InvokeId,
        block: DataBlockG,
    },
    /// 3: get-response-with-list.
    WithList {
        invoke_id: InvokeId,
        results: Vec<GetDataResult>,
    },
}

impl GetResponse {
    /// Decodes a whole get-response (`C4 ...`).
    pub fn decode(bytes: &[u8]) -> WireResult<Self> {
        const WHAT: &str = "get-response";
        let mut r = open_apdu(bytes, tags::GET_RESPONSE, WHAT)?;
        let choice = r.u8(WHAT)?;
        let invoke_id = r.u8("invoke-id-and-priority")?;
        let v = match choice {
            1 => GetResponse::Normal {
                invoke_id,
                result: GetDataResult::read(&mut r)?,
            },
            2 => GetResponse::WithDatablock {
                invoke_id,
                block: DataBlockG::read(&mut r)?,
            },
            3 => GetResponse::WithList {
                invoke_id,
                results: read_seq(&mut r, "get-response result list", GetDataResult::read)?,
            },
            c => return Err(unknown_choice(WHAT, c)),
        };
        r.finish(WHAT)?;
        Ok(v)
    }

    /// Encodes the get-response.
    pub fn encode(&self) -> Vec<u8> {
        // Room for a short request or response without regrowing (hot path).
        let mut out = Vec::with_capacity(32);
        out.push(tags::GET_RESPONSE);
        match self {
            GetResponse::Normal { invoke_id, result } => {
                out.extend_from_slice(&[1, *invoke_id]);
                result.write(&mut out);
            }
            GetResponse::WithDatablock { invoke_id, block } => {
                out.extend_from_slice(&[2, *invoke_id]);
                block.write(&mut out);
            }
            GetResponse::WithList { invoke_id, results } => {
                out.extend_from_slice(&[3, *invoke_id]);
                write_seq(&mut out, results, |o, x| x.write(o));
            }
        }
        out
    }

    /// The invoke-id-and-priority byte.
    pub fn invoke_id(&self) -> InvokeId {
        match self {
            GetResponse::Normal { invoke_id, .. }
            | GetResponse::WithDatablock { invoke_id, .. }
            | GetResponse::WithList { invoke_id, .. } => *invoke_id,
        }
    }
}

impl fmt::Display for GetResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetResponse::Normal { invoke_id, result } => {
                write!(f, "get-response normal invoke 0x{invoke_id:02X} {result}")
            }
            GetResponse::WithDatablock { invoke_id, block } => write!(
                f,
                "get-response with-datablock invoke 0x{invoke_id:02X} {block}"
            ),
            GetResponse::WithList { invoke_id, results } => {
                write!(f, "get-response with-list invoke 0x{invoke_id:02X} ")?;
                write_list(f, results)
            }
        }
    }
}

/// Set-Request (tag 0xC1).
#[derive(Debug, Clone, PartialEq)]
pub enum SetRequest {
    /// 1: set-request-normal.
    Normal {
        invoke_id: InvokeId,
        attribute: AttributeDescriptor,
        access: Option<SelectiveAccess>,
        value: Data,
    },
    /// 2: set-request-with-first-datablock.
    WithFirstDatablock {
        invoke_id: InvokeId,
        attribute: AttributeDescriptor,
        access: Option<SelectiveAccess>,
        block: DataBlockSa,
    },
    /// 3: set-request-with-datablock.
    WithDatablock {
        invoke_id: InvokeId,
        block: DataBlockSa,
    },
    /// 4: set-request-with-list.
    WithList {
        invoke_id: InvokeId,
        items: Vec<(AttributeDescriptor, Option<SelectiveAccess>)>,
        values: Vec<Data>,
    },
    /// 5: set-request-with-list-and-first-datablock.
    WithListAndFirstDatablock {
        invoke_id: InvokeId,
        items: Vec<(AttributeDescriptor, Option<SelectiveAccess>)>,
        block: DataBlockSa,
    },
}

impl SetRequest {
    /// Decodes a whole set-request (`C1 ...`).
    pub fn decode(bytes: &[u8]) -> WireResult<Self> {
        const WHAT: &str = "set-request";
        let mut r = open_apdu(bytes, tags::SET_REQUEST, WHAT)?;
        let choice = r.u8(WHAT)?;
        let invoke_id = r.u8("invoke-id-and-priority")?;
        let v = match choice {
            1 => SetRequest::Normal {
                invoke_id,
                attribute: AttributeDescriptor::read(&mut r)?,
                access: read_opt_access(&mut r)?,
                value: Data::read(&mut r)?,
            },
            2 => SetRequest::WithFirstDatablock {
                invoke_id,
                attribute: AttributeDescriptor::read(&mut r)?,
                access: read_opt_access(&mut r)?,
                block: DataBlockSa::read(&mut r)?,
            },
            3 => SetRequest::WithDatablock {
                invoke_id,
                block: DataBlockSa::read(&mut r)?,
            },
            4 => SetRequest::WithList {
                invoke_id,
                items: read_attr_list(&mut r)?,
                values: read_seq(&mut r, "set-request value list", Data::read)?,
            },
            5 => SetRequest::WithListAndFirstDatablock {
                invoke_id,
                items: read_attr_list(&mut r)?,
                block: DataBlockSa::read(&mut r)?,
            },
            c => return Err(unknown_choice(WHAT, c)),
        };
        r.finish(WHAT)?;
        Ok(v)
    }

    /// Encodes the set-request.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![tags::SET_REQUEST];
        match self {
            SetRequest::Normal {
                invoke_id,
                attribute,
                access,
                value,
            } => {
                out.extend_from_slice(&[1, *invoke_id]);
                attribute.write(&mut out);
                write_opt_access(&mut out, access);
                value.write(&mut out);
            }
            SetRequest::WithFirstDatablock {
                invoke_id,
                attribute,
                access,
                block,
            } => {
                out.extend_from_slice(&[2, *invoke_id]);
                attribute.write(&mut out);
                write_opt_access(&mut out, access);
                block.write(&mut out);
            }
            SetRequest::WithDatablock { invoke_id, block } => {
                out.extend_from_slice(&[3, *invoke_id]);
                block.write(&mut out);
            }
            SetRequest::WithList {
                invoke_id,
                items,
                values,
            } => {
                out.extend_from_slice(&[4, *invoke_id]);
                write_attr_list(&mut out, items);
                write_seq(&mut out, values, |o, d| d.write(o));
            }
            SetRequest::WithListAndFirstDatablock {
                invoke_id,
                items,
                block,
            } => {
                out.extend_from_slice(&[5, *invoke_id]);
                write_attr_list(&mut out, items);
                block.write(&mut out);
            }
        }
        out
    }

    /// The invoke-id-and-priority byte.
    pub fn invoke_id(&self) -> InvokeId {
        match self {
            SetRequest::Normal { invoke_id, .. }
            | SetRequest::WithFirstDatablock { invoke_id, .. }
            | SetRequest::WithDatablock { invoke_id, .. }
            | SetRequest::WithList { invoke_id, .. }
            | SetRequest::WithListAndFirstDatablock { invoke_id, .. } => *invoke_id,
        }
    }
}

fn write_attr_items(
    f: &mut fmt::Formatter<'_>,
    items: &[(AttributeDescriptor, Option<SelectiveAccess>)],
) -> fmt::Result {
    write!(f, "[")?;
    for (i, (d, a)) in items.iter().enumerate() {
        if i > 0 {
            write!(f, ", ")?;
        }
        write_attr_with_access(f, d, a)?;
    }
    write!(f, "]")
}

impl fmt::Display for SetRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetRequest::Normal {
                invoke_id,
                attribute,
                access,
                value,
            } => {
                write!(f, "set-request normal invoke 0x{invoke_id:02X} ")?;
                write_attr_with_access(f, attribute, access)?;
                write!(f, " = {}", ShortData(value))
            }
            SetRequest::WithFirstDatablock {
                invoke_id,
                attribute,
                access,
                block,
            } => {
                write!(
                    f,
                    "set-request with-first-datablock invoke 0x{invoke_id:02X} "
                )?;
                write_attr_with_access(f, attribute, access)?;
                write!(f, " {block}")
            }
            SetRequest::WithDatablock { invoke_id, block } => write!(
                f,
                "set-request with-datablock invoke 0x{invoke_id:02X} {block}"
            ),
            SetRequest::WithList {
                invoke_id,
                items,
                values,
            } => {
                write!(f, "set-request with-list invoke 0x{invoke_id:02X} ")?;
                write_attr_items(f, items)?;
                write!(f, " = [")?;
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{}", ShortData(v))?;
                }
                write!(f, "]")
            }
            SetRequest::WithListAndFirstDatablock {
                invoke_id,
                items,
                block,
            } => {
                write!(
                    f,
                    "set-request with-list-and-first-datablock invoke 0x{invoke_id:02X} "
                )?;
                write_attr_items(f, items)?;
                write!(f, " {block}")
            }
        }
    }
}

/// Set-Response (tag 0xC5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetResponse {
    /// 1: set-response-normal.
    Normal {
        invoke_id: InvokeId,
        result: DataAccessResult,
    },
    /// 2: set-response-datablock.
    Datablock {
        invoke_id: InvokeId,
        block_number: u32,
    },
    /// 3: set-response-last-datablock.
    LastDatablock {
        invoke_id: InvokeId,
        result: DataAccessResult,
        block_number: u32,
    },
    /// 4: set-response-last-datablock-with-list.
    LastDatablockWithList {
        invoke_id: InvokeId,
        results: Vec<DataAccessResult>,
        block_number: u32,
    },
    /// 5: set-response-with-list.
    WithList {
        invoke_id: InvokeId,
        results: Vec<DataAccessResult>,
    },
}

fn read_dar(r: &mut Reader<'_>) -> WireResult<DataAccessResult> {
    Ok(DataAccessResult::from_u8(r.u8("data-access-result")?))
}

impl SetResponse {
    /// Decodes a whole set-response (`C5 ...`).
    pub fn decode(bytes: &[u8]) -> WireResult<Self> {
        const WHAT: &str = "set-response";
        let mut r = open_apdu(bytes, tags::SET_RESPONSE, WHAT)?;
        let choice = r.u8(WHAT)?;
        let invoke_id = r.u8("invoke-id-and-priority")?;
        let v = match choice {
            1 => SetResponse::Normal {
                invoke_id,
                result: read_dar(&mut r)?,
            },
            2 => SetResponse::Datablock {
                invoke_id,
                block_number: r.u32("block-number")?,
            },
            3 => SetResponse::LastDatablock {
                invoke_id,
                result: read_dar(&mut r)?,
                block_number: r.u32("block-number")?,
            },
            4 => SetResponse::LastDatablockWithList {
                invoke_id,
                results: read_seq(&mut r, "set-response result list", read_dar)?,
                block_number: r.u32("block-number")?,
            },
            5 => SetResponse::WithList {
                invoke_id,
                results: read_seq(&mut r, "set-response result list", read_dar)?,
            },
            c => return Err(unknown_choice(WHAT, c)),
        };
        r.finish(WHAT)?;
        Ok(v)
    }

    /// Encodes the set-response.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![tags::SET_RESPONSE];
        let dar = |o: &mut Vec<u8>, x: &DataAccessResult| o.push(x.to_u8());
        match self {
            SetResponse::Normal { invoke_id, result } => {
                out.extend_from_slice(&[1, *invoke_id, result.to_u8()]);
            }
            SetResponse::Datablock {
                invoke_id,
                block_number,
            } => {
                out.extend_from_slice(&[2, *invoke_id]);
                out.extend_from_slice(&block_number.to_be_bytes());
            }
            SetResponse::LastDatablock {
                invoke_id,
                result,
                block_number,
            } => {
                out.extend_from_slice(&[3, *invoke_id, result.to_u8()]);
                out.extend_from_slice(&block_number.to_be_bytes());
            }
            SetResponse::LastDatablockWithList {
                invoke_id,
                results,
                block_number,
            } => {
                out.extend_from_slice(&[4, *invoke_id]);
                write_seq(&mut out, results, dar);
                out.extend_from_slice(&block_number.to_be_bytes());
            }
            SetResponse::WithList { invoke_id, results } => {
                out.extend_from_slice(&[5, *invoke_id]);
                write_seq(&mut out, results, dar);
            }
        }
        out
    }

    /// The invoke-id-and-priority byte.
    pub fn invoke_id(&self) -> InvokeId {
        match self {
            SetResponse::Normal { invoke_id, .. }
            | SetResponse::Datablock { invoke_id, .. }
            | SetResponse::LastDatablock { invoke_id, .. }
            | SetResponse::LastDatablockWithList { invoke_id, .. }
            | SetResponse::WithList { invoke_id, .. } => *invoke_id,
        }
    }
}

impl fmt::Display for SetResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetResponse::Normal { invoke_id, result } => {
                write!(f, "set-response normal invoke 0x{invoke_id:02X} {result}")
            }
            SetResponse::Datablock {
                invoke_id,
                block_number,
            } => write!(
                f,
                "set-response datablock invoke 0x{invoke_id:02X} block {block_number}"
            ),
            SetResponse::LastDatablock {
                invoke_id,
                result,
                block_number,
            } => write!(
                f,
                "set-response last-datablock invoke 0x{invoke_id:02X} block {block_number} {result}"
            ),
            SetResponse::LastDatablockWithList {
                invoke_id,
                results,
                block_number,
            } => {
                write!(
                    f,
                    "set-response last-datablock-with-list invoke 0x{invoke_id:02X} block {block_number} "
                )?;
                write_list(f, results)
            }
            SetResponse::WithList { invoke_id, results } => {
                write!(f, "set-response with-list invoke 0x{invoke_id:02X} ")?;
                write_list(f, results)
            }
        }
    }
}

/// Action-Request (tag 0xC3).
#[derive(Debug, Clone, PartialEq)]
pub enum ActionRequest {
    /// 1: action-request-normal.
    Normal {
        invoke_id: InvokeId,
        method: MethodDescriptor,
        parameters: Option<Data>,
    },
    /// 2: action-request-next-pblock.
    NextPblock {
        invoke_id: InvokeId,
        block_number: u32,
    },
    /// 3: action-request-with-list.
    WithList {
        invoke_id: InvokeId,
        methods: Vec<MethodDescriptor>,
        parameters: Vec<Data>,
    },
    /// 4: action-request-with-first-pblock.
    WithFirstPblock {
        invoke_id: InvokeId,
        method: MethodDescriptor,
        pblock: DataBlockSa,
    },
    /// 5: action-request-with-list-and-first-pblock.
    WithListAndFirstPblock {
        invoke_id: InvokeId,
        methods: Vec<MethodDescriptor>,
        pblock: DataBlockSa,
    },
    /// 6: action-request-with-pblock.
    WithPblock {
        invoke_id: InvokeId,
        pblock: DataBlockSa,
    },
}

impl ActionRequest {
    /// Decodes a whole action-request (`C3 ...`).
    pub fn decode(bytes: &[u8]) -> WireResult<Self> {
        const WHAT: &str = "action-request";
        let mut r = open_apdu(bytes, tags::ACTION_REQUEST, WHAT)?;
        let choice = r.u8(WHAT)?;
        let invoke_id = r.u8("invoke-id-and-priority")?;
        let v = match choice {
            1 => ActionRequest::Normal {
                invoke_id,
                method: MethodDescriptor::read(&mut r)?,
                parameters: if read_presence(&mut r, "method-invocation-parameters")? {
                    Some(Data::read(&mut r)?)
                } else {
                    None
                },
            },
            2 => ActionRequest::NextPblock {
                invoke_id,
                block_number: r.u32("block-number")?,
            },
            3 => ActionRequest::WithList {
                invoke_id,
                methods: read_seq(&mut r, "method-descriptor-list", MethodDescriptor::read)?,
                parameters: read_seq(&mut r, "method-invocation-parameters", Data::read)?,
            },
            4 => ActionRequest::WithFirstPblock {
                invoke_id,
                method: MethodDescriptor::read(&mut r)?,
                pblock: DataBlockSa::read(&mut r)?,
            },
            5 => ActionRequest::WithListAndFirstPblock {
                invoke_id,
                methods: read_seq(&mut r, "method-descriptor-list", MethodDescriptor::read)?,
                pblock: DataBlockSa::read(&mut r)?,
            },
            6 => ActionRequest::WithPblock {
                invoke_id,
                pblock: DataBlockSa::read(&mut r)?,
            },
            c => return Err(unknown_choice(WHAT, c)),
        };
        r.finish(WHAT)?;
        Ok(v)
    }

    /// Encodes the action-request.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![tags::ACTION_REQUEST];
        let md = |o: &mut Vec<u8>, m: &MethodDescriptor| m.write(o);
        match self {
            ActionRequest::Normal {
                invoke_id,
                method,
                parameters,
            } => {
                out.extend_from_slice(&[1, *invoke_id]);
                method.write(&mut out);
                match parameters {
                    Some(p) => {
                        out.push(1);
                        p.write(&mut out);
                    }
                    None => out.push(0),
                }
            }
            ActionRequest::NextPblock {
                invoke_id,
                block_number,
            } => {
                out.extend_from_slice(&[2, *invoke_id]);
                out.extend_from_slice(&block_number.to_be_bytes());
            }
            ActionRequest::WithList {
                invoke_id,
                methods,
                parameters,
            } => {
                out.extend_from_slice(&[3, *invoke_id]);
                write_seq(&mut out, methods, md);
                write_seq(&mut out, parameters, |o, d| d.write(o));
            }
            ActionRequest::WithFirstPblock {
                invoke_id,
                method,
                pblock,
            } => {
                out.extend_from_slice(&[4, *invoke_id]);
                method.write(&mut out);
                pblock.write(&mut out);
            }
            ActionRequest::WithListAndFirstPblock {
                invoke_id,
                methods,
                pblock,
            } => {
                out.extend_from_slice(&[5, *invoke_id]);
                write_seq(&mut out, methods, md);
                pblock.write(&mut out);
            }
            ActionRequest::WithPblock { invoke_id, pblock } => {
                out.extend_from_slice(&[6, *invoke_id]);
                pblock.write(&mut out);
            }
        }
        out
    }

    /// The invoke-id-and-priority byte.
    pub fn invoke_id(&self) -> InvokeId {
        match self {
            ActionRequest::Normal { invoke_id, .. }
            | ActionRequest::NextPblock { invoke_id, .. }
            | ActionRequest::WithList { invoke_id, .. }
            | ActionRequest::WithFirstPblock { invoke_id, .. }
            | ActionRequest::WithListAndFirstPblock { invoke_id, .. }
            | ActionRequest::WithPblock { invoke_id, .. } => *invoke_id,
        }
    }
}

impl fmt::Display for ActionRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActionRequest::Normal {
                invoke_id,
                method,
                parameters,
            } => {
                write!(f, "action-request normal invoke 0x{invoke_id:02X} {method}")?;
                match parameters {
                    Some(p) => write!(f, " ({})", ShortData(p)),
                    None => Ok(()),
                }
            }
            ActionRequest::NextPblock {
                invoke_id,
                block_number,
            } => write!(
                f,
                "action-request next-pblock invoke 0x{invoke_id:02X} block {block_number}"
            ),
            ActionRequest::WithList {
                invoke_id,
                methods,
                parameters,
            } => {
                write!(f, "action-request with-list invoke 0x{invoke_id:02X} ")?;
                write_list(f, methods)?;
                write!(f, " (")?;
                for (i, p) in parameters.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{}", ShortData(p))?;
                }
                write!(f, ")")
            }
            ActionRequest::WithFirstPblock {
                invoke_id,
                method,
                pblock,
            } => write!(
                f,
                "action-request with-first-pblock invoke 0x{invoke_id:02X} {method} {pblock}"
            ),
            ActionRequest::WithListAndFirstPblock {
                invoke_id,
                methods,
                pblock,
            } => {
                write!(
                    f,
                    "action-request with-list-and-first-pblock invoke 0x{invoke_id:02X} "
                )?;
                write_list(f, methods)?;
                write!(f, " {pblock}")
            }
            ActionRequest::WithPblock { invoke_id, pblock } => write!(
                f,
                "action-request with-pblock invoke 0x{invoke_id:02X} {pblock}"
            ),
        }
    }
}

/// Action-Response-With-Optional-Data: result, return-parameters Get-Data-Result OPTIONAL.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionResponseWithOptionalData {
    /// action-result.
    pub result: ActionResult,
    /// return-parameters.
    pub return_parameters: Option<GetDataResult>,
}

impl ActionResponseWithOptionalData {
    fn read(r: &mut Reader<'_>) -> WireResult<Self> {
        Ok(ActionResponseWithOptionalData {
            result: ActionResult::from_u8(r.u8("action-result")?),
            return_parameters: if read_presence(r, "return-parameters")? {
                Some(GetDataResult::read(r)?)
            } else {
                None
            },
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.push(self.result.to_u8());
        match &self.return_parameters {
            Some(p) => {
                out.push(1);
                p.write(out);
            }
            None => out.push(0),
        }
    }
}

impl fmt::Display for ActionResponseWithOptionalData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.result)?;
        match &self.return_parameters {
            Some(p) => write!(f, " {p}"),
            None => Ok(()),
        }
    }
}

/// Action-Response (tag 0xC7).
#[derive(Debug, Clone, PartialEq)]
pub enum ActionResponse {
    /// 1: action-response-normal.
    Normal {
        invoke_id: InvokeId,
        response: ActionResponseWithOptionalData,
    },
    /// 2: action-response-with-pblock.
    WithPblock {
        invoke_id: InvokeId,
        pblock: DataBlockSa,
    },
    /// 3: action-response-with-list.
    WithList {
        invoke_id: InvokeId,
        responses: Vec<ActionResponseWithOptionalData>,
    },
    /// 4: action-response-next-pblock.
    NextPblock {
        invoke_id: InvokeId,
        block_number: u32,
    },
}

impl ActionResponse {
    /// Decodes a whole action-response (`C7 ...`).
    pub fn decode(bytes: &[u8]) -> WireResult<Self> {
        const WHAT: &str = "action-response";
        let mut r = open_apdu(bytes, tags::ACTION_RESPONSE, WHAT)?;
        let choice = r.u8(WHAT)?;
        let invoke_id = r.u8("invoke-id-and-priority")?;
        let v = match choice {
            1 => ActionResponse::Normal {
                invoke_id,
                response: ActionResponseWithOptionalData::read(&mut r)?,
            },
            2 => ActionResponse::WithPblock {
                invoke_id,
                pblock: DataBlockSa::read(&mut r)?,
            },
            3 => ActionResponse::WithList {
                invoke_id,
                responses: read_seq(
                    &mut r,
                    "action-response list",
                    ActionResponseWithOptionalData::read,
                )?,
            },
            4 => ActionResponse::NextPblock {
                invoke_id,
                block_number: r.u32("block-number")?,
            },
            c => return Err(unknown_choice(WHAT, c)),
        };
        r.finish(WHAT)?;
        Ok(v)
    }

    /// Encodes the action-response.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![tags::ACTION_RESPONSE];
        match self {
            ActionResponse::Normal {
                invoke_id,
                response,
            } => {
                out.extend_from_slice(&[1, *invoke_id]);
                response.write(&mut out);
            }
            ActionResponse::WithPblock { invoke_id, pblock } => {
                out.extend_from_slice(&[2, *invoke_id]);
                pblock.write(&mut out);
            }
            ActionResponse::WithList {
                invoke_id,
                responses,
            } => {
                out.extend_from_slice(&[3, *invoke_id]);
                write_seq(&mut out, responses, |o, x| x.write(o));
            }
            ActionResponse::NextPblock {
                invoke_id,
                block_number,
            } => {
                out.extend_from_slice(&[4, *invoke_id]);
                out.extend_from_slice(&block_number.to_be_bytes());
            }
        }
        out
    }

    /// The invoke-id-and-priority byte.
    pub fn invoke_id(&self) -> InvokeId {
        match self {
            ActionResponse::Normal { invoke_id, .. }
            | ActionResponse::WithPblock { invoke_id, .. }
            | ActionResponse::WithList { invoke_id, .. }
            | ActionResponse::NextPblock { invoke_id, .. } => *invoke_id,
        }
    }
}

impl fmt::Display for ActionResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActionResponse::Normal {
                invoke_id,
                response,
            } => write!(
                f,
                "action-response normal invoke 0x{invoke_id:02X} {response}"
            ),
            ActionResponse::WithPblock { invoke_id, pblock } => write!(
                f,
                "action-response with-pblock invoke 0x{invoke_id:02X} {pblock}"
            ),
            ActionResponse::WithList {
                invoke_id,
                responses,
            } => {
                write!(f, "action-response with-list invoke 0x{invoke_id:02X} ")?;
                write_list(f, responses)
            }
            ActionResponse::NextPblock {
                invoke_id,
                block_number,
            } => write!(
                f,
                "action-response next-pblock invoke 0x{invoke_id:02X} block {block_number}"
            ),
        }
    }
}

/// ExceptionResponse (tag 0xD8): `D8 <state-error> <service-error> [Unsigned32]`
/// (dlms-facts.md 4.3). The invocation counter follows service-error 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExceptionResponse {
    /// state-error: 1 service-not-allowed, 2 service-unknown.
    pub state_error: u8,
    /// service-error CHOICE: 1..=6, see the associated constants.
    pub service_error: u8,
    /// The expected invocation counter of invocation-counter-error (6); written whenever `Some`.
    pub invocation_counter: Option<u32>,
}

impl ExceptionResponse {
    /// state-error: service-not-allowed.
    pub const SERVICE_NOT_ALLOWED: u8 = 1;
    /// state-error: service-unknown.
    pub const SERVICE_UNKNOWN: u8 = 2;
    /// service-error: operation-not-possible.
    pub const OPERATION_NOT_POSSIBLE: u8 = 1;
    /// service-error: service-not-supported.
    pub const SERVICE_NOT_SUPPORTED: u8 = 2;
    /// service-error: other-reason.
    pub const OTHER_REASON: u8 = 3;
    /// service-error: pdu-too-long.
    pub const PDU_TOO_LONG: u8 = 4;
    /// service-error: deciphering-error.
    pub const DECIPHERING_ERROR: u8 = 5;
    /// service-error: invocation-counter-error, followed by an Unsigned32.
    pub const INVOCATION_COUNTER_ERROR: u8 = 6;

    /// The name of a state-error value.
    pub fn state_error_name(v: u8) -> &'static str {
        match v {
            1 => "service-not-allowed",
            2 => "service-unknown",
            _ => "unknown",
        }
    }

    /// The name of a service-error value.
    pub fn service_error_name(v: u8) -> &'static str {
        match v {
            1 => "operation-not-possible",
            2 => "service-not-supported",
            3 => "other-reason",
            4 => "pdu-too-long",
            5 => "deciphering-error",
            6 => "invocation-counter-error",
            _ => "unknown",
        }
    }

    /// Decodes a whole exception-response. For service-error 6 the counter may
    /// be absent (some servers omit it); any other trailing bytes are an error.
    pub fn decode(bytes: &[u8]) -> WireResult<Self> {
        const WHAT: &str = "exception-response";
        let mut r = open_apdu(bytes, tags::EXCEPTION_RESPONSE, WHAT)?;
        let state_error = r.u8("exception-response state-error")?;
        let service_error = r.u8("exception-response service-error")?;
        let invocation_counter = if service_error == Self::INVOCATION_COUNTER_ERROR && !r.is_empty()
        {
            Some(r.u32("exception-response invocation-counter")?)
        } else {
            None
        };
        r.finish(WHAT)?;
        Ok(ExceptionResponse {
            state_error,
            service_error,
            invocation_counter,
        })
    }

    /// Encodes the exception-response.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![
            tags::EXCEPTION_RESPONSE,
            self.state_error,
            self.service_error,
        ];
        if let Some(ic) = self.invocation_counter {
            out.extend_from_slice(&ic.to_be_bytes());
        }
        out
    }
}

impl fmt::Display for ExceptionResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exception-response {}({}) {}({})",
            Self::state_error_name(self.state_error),
            self.state_error,
            Self::service_error_name(self.service_error),
            self.service_error
        )?;
        if let Some(ic) = self.invocation_counter {
            write!(f, " expected IC {ic}")?;
        }
        Ok(())
    }
}

fn write_time(f: &mut fmt::Formatter<'_>, t: &[u8]) -> fmt::Result {
    match <&[u8; 12]>::try_from(t) {
        Ok(dt) => write!(f, " at {}", format_date_time(dt)),
        Err(_) => write!(f, " at {}", hex::encode_upper(t)),
    }
}

/// Data-Notification (tag 0x0F): long-invoke-id-and-priority Unsigned32,
/// date-time OCTET STRING (A-XDR length + bytes; length 0 = no time),
/// notification-body Data.
///
/// The u9n vector of dlms-facts.md 1.5 (`0F 000001DB 00 09 22 ...`) has an
/// empty date-time (`00`) followed by an octet-string body.
#[derive(Debug, Clone, PartialEq)]
pub struct DataNotification {
    /// long-invoke-id-and-priority (all 32 bits).
    pub long_invoke_id: u32,
    /// `None` is sent as an empty octet string (00), which also decodes as `None`.
    pub date_time: Option<Vec<u8>>,
    /// notification-body.
    pub body: Data,
}

impl DataNotification {
    /// Decodes a whole data-notification.
    pub fn decode(bytes: &[u8]) -> WireResult<Self> {
        const WHAT: &str = "data-notification";
        let mut r = open_apdu(bytes, tags::DATA_NOTIFICATION, WHAT)?;
        let long_invoke_id = r.u32("long-invoke-id-and-priority")?;
        let dt = read_octets(&mut r, "data-notification date-time")?;
        let body = Data::read(&mut r)?;
        r.finish(WHAT)?;
        Ok(DataNotification {
            long_invoke_id,
            date_time: (!dt.is_empty()).then(|| dt.to_vec()),
            body,
        })
    }

    /// Encodes the data-notification.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![tags::DATA_NOTIFICATION];
        out.extend_from_slice(&self.long_invoke_id.to_be_bytes());
        write_octets(&mut out, self.date_time.as_deref().unwrap_or_default());
        self.body.write(&mut out);
        out
    }
}

impl fmt::Display for DataNotification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "data-notification long-invoke-id 0x{:08X}",
            self.long_invoke_id
        )?;
        if let Some(t) = &self.date_time {
            write_time(f, t)?;
        }
        write!(f, " {}", ShortData(&self.body))
    }
}

/// EventNotificationRequest (tag 0xC2): time OCTET STRING OPTIONAL,
/// cosem-attribute-descriptor, attribute-value Data.
#[derive(Debug, Clone, PartialEq)]
pub struct EventNotification {
    /// time (an OCTET STRING, normally a 12-byte date-time).
    pub time: Option<Vec<u8>>,
    /// cosem-attribute-descriptor.
    pub attribute: AttributeDescriptor,
    /// attribute-value.
    pub value: Data,
}

impl EventNotification {
    /// Decodes a whole event-notification-request.
    pub fn decode(bytes: &[u8]) -> WireResult<Self> {
        const WHAT: &str = "event-notification-request";
        let mut r = open_apdu(bytes, tags::EVENT_NOTIFICATION_REQUEST, WHAT)?;
        let time = if read_presence(&mut r, "event-notification time")? {
            Some(read_octets(&mut r, "event-notification time")?.to_vec())
        } else {
            None
        };
        let attribute = AttributeDescriptor::read(&mut r)?;
        let value = Data::read(&mut r)?;
        r.finish(WHAT)?;
        Ok(EventNotification {
            time,
            attribute,
            value,
        })
    }

    /// Encodes the event-notification-request.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![tags::EVENT_NOTIFICATION_REQUEST];
        match &self.time {
            Some(t) => {
                out.push(1);
                write_octets(&mut out, t);
            }
            None => out.push(0),
        }
        self.attribute.write(&mut out);
        self.value.write(&mut out);
        out
    }
}

impl fmt::Display for EventNotification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event-notification-request {}", self.attribute)?;
        if let Some(t) = &self.time {
            write_time(f, t)?;
        }
        write!(f, " = {}", ShortData(&self.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    /// The plaintext of the Green Book ciphering example (dlms-facts.md 1.5):
    /// get-request normal, Clock 0.0.1.0.0.255 attribute 2.
    #[test]
    fn decodes_the_green_book_get_request() {
        let bytes = h("C0 01 00 0008 0000010000FF 02 00");
        let g = GetRequest::decode(&bytes).unwrap();
        assert_eq!(
            g,
            GetRequest::Normal {
                invoke_id: 0x00,
                attribute: AttributeDescriptor::new(8, Obis::CLOCK, 2),
                access: None,
            }
        );
        assert_eq!(g.encode(), bytes);
        assert_eq!(
            g.to_string(),
            "get-request normal invoke 0x00 8/0-0:1.0.0.255/2"
        );
    }

    /// Kaifa HLS pass 3 (dlms-facts.md 2.5; xdom/jdlms CipheringTest testKaifaMessages):
    /// action-request method 1 of Association LN 0-0:40.0.0.255 with f(StoC).
    #[test]
    fn decodes_the_kaifa_hls_action_request_and_response() {
        let req = h("C3 01 C1 000F 0000280000FF 01 01 09 11 10 01234567 7D52391C407E3A45210F000E");
        let a = ActionRequest::decode(&req).unwrap();
        let f_stoc = h("10 01234567 7D52391C407E3A45210F000E");
        assert_eq!(
            a,
            ActionRequest::Normal {
                invoke_id: 0xC1,
                method: MethodDescriptor::new(15, Obis::CURRENT_ASSOCIATION, 1),
                parameters: Some(Data::OctetString(f_stoc)),
            }
        );
        assert_eq!(a.encode(), req);

        let resp = h("C7 01 C1 00 01 00 09 11 10 1A9190BC0A587217BCD2BCD4FDDB7143");
        let r = ActionResponse::decode(&resp).unwrap();
        let f_ctos = h("10 1A9190BC0A587217BCD2BCD4FDDB7143");
        assert_eq!(f_ctos.len(), 17);
        assert_eq!(
            r,
            ActionResponse::Normal {
                invoke_id: 0xC1,
                response: ActionResponseWithOptionalData {
                    result: ActionResult::Success,
                    return_parameters: Some(GetDataResult::Data(Data::OctetString(f_ctos))),
                },
            }
        );
        assert_eq!(r.encode(), resp);
        assert_eq!(
            r.to_string(),
            "action-response normal invoke 0xC1 success(0) octet-string 101A9190BC0A587217BCD2BCD4FDDB7143"
        );
    }

    /// Gurux C server reply to a replayed counter (dlms-facts.md 4.3):
    /// `D8 01 06 <expected IC>`, and `D8 01 05` for a deciphering error.
    #[test]
    fn decodes_exception_responses() {
        let e = ExceptionResponse::decode(&h("D8 01 06 0000002A")).unwrap();
        assert_eq!(
            e,
            ExceptionResponse {
                state_error: ExceptionResponse::SERVICE_NOT_ALLOWED,
                service_error: ExceptionResponse::INVOCATION_COUNTER_ERROR,
                invocation_counter: Some(42),
            }
        );
        assert_eq!(e.encode(), h("D801060000002A"));
        assert_eq!(
            e.to_string(),
            "exception-response service-not-allowed(1) invocation-counter-error(6) expected IC 42"
        );
        let d = ExceptionResponse::decode(&h("D80105")).unwrap();
        assert_eq!(d.invocation_counter, None);
        assert_eq!(d.encode(), h("D80105"));
        // IC omitted after service-error 6 is accepted as None.
        assert_eq!(
            ExceptionResponse::decode(&h("D80106"))
                .unwrap()
                .invocation_counter,
            None
        );
    }

    #[test]
    fn rejects_malformed_exception_responses() {
        assert!(ExceptionResponse::decode(&h("D801")).is_err());
        assert!(ExceptionResponse::decode(&h("D8010600")).is_err());
        assert!(matches!(
            ExceptionResponse::decode(&h("D80105 00")),
            Err(WireError::Trailing { .. })
        ));
    }

    /// The plaintext of the u9n general-glo-ciphering push vector (dlms-facts.md 1.5,
    /// u9n tests/test_general_global_cipher.py): long-invoke-id 000001DB, date-time
    /// empty (00), body octet-string of 0x22 bytes.
    #[test]
    fn decodes_the_u9n_data_notification() {
        let bytes = h("0F 000001DB 00 09 22 \
             125A8591360000000049000000110000000A5A8513D014800000000D0000000A0100");
        let n = DataNotification::decode(&bytes).unwrap();
        assert_eq!(n.long_invoke_id, 0x1DB);
        assert_eq!(n.date_time, None);
        assert_eq!(
            n.body,
            Data::OctetString(h(
                "125A8591360000000049000000110000000A5A8513D014800000000D0000000A0100"
            ))
        );
        assert_eq!(n.encode(), bytes);
        assert!(
            n.to_string()
                .starts_with("data-notification long-invoke-id 0x000001DB octet-string")
        );
    }

    #[test]
    fn data_notification_with_time_uses_a_length_prefix() {
        let dt = h("07E40A1B0112000000FF8880");
        let n = DataNotification {
            long_invoke_id: 0x4000_0001,
            date_time: Some(dt.clone()),
            body: Data::Structure(vec![Data::LongUnsigned(3)]),
        };
        let enc = n.encode();
        assert_eq!(
            enc,
            h("0F 40000001 0C 07E40A1B0112000000FF8880 02011200 03")
        );
        assert_eq!(DataNotification::decode(&enc).unwrap(), n);
        assert!(n.to_string().contains("at 2020-10-27 18:00:00.00"), "{n}");
    }

    #[test]
    fn event_notification_round_trips() {
        let e = EventNotification {
            time: Some(vec![0; 12]),
            attribute: AttributeDescriptor::new(1, Obis::new(0, 0, 96, 11, 0, 255), 2),
            value: Data::LongUnsigned(7),
        };
        let enc = e.encode();
        assert_eq!(
            enc,
            h("C2 01 0C 000000000000000000000000 0001 0000600B00FF 02 12 0007")
        );
        assert_eq!(EventNotification::decode(&enc).unwrap(), e);
        let bare = EventNotification { time: None, ..e };
        assert_eq!(bare.encode()[1], 0);
        assert_eq!(EventNotification::decode(&bare.encode()).unwrap(), bare);
    }

    #[test]
    fn get_with_selective_access_and_list_round_trip() {
        // Profile generic buffer, selector 2 (entry), structure{from, to, 1, 0}.
        let access = SelectiveAccess {
            selector: 2,
            parameters: Data::Structure(vec![
                Data::DoubleLongUnsigned(1),
                Data::DoubleLongUnsigned(10),
                Data::LongUnsigned(1),
                Data::LongUnsigned(0),
            ]),
        };
        let g = GetRequest::Normal {
            invoke_id: 0xC1,
            attribute: AttributeDescriptor::new(7, Obis::new(1, 0, 99, 1, 0, 255), 2),
            access: Some(access.clone()),
        };
        let enc = g.encode();
        assert_eq!(
            enc,
            h("C001C1 0007 0100630100FF 02 01 02 0204 0600000001 060000000A 120001 120000")
        );
        assert_eq!(GetRequest::decode(&enc).unwrap(), g);
        let l = GetRequest::WithList {
            invoke_id: 0xC2,
            items: vec![
                (AttributeDescriptor::new(8, Obis::CLOCK, 2), None),
                (
                    AttributeDescriptor::new(7, Obis::new(1, 0, 99, 1, 0, 255), 2),
                    Some(access),
                ),
            ],
        };
        assert_eq!(GetRequest::decode(&l.encode()).unwrap(), l);
        assert!(l.to_string().starts_with(
            "get-request with-list invoke 0xC2 [8/0-0:1.0.0.255/2, 7/1-0:99.1.0.255/2 selector 2"
        ));
    }

    #[test]
    fn get_response_forms_round_trip() {
        let cases = [
            (
                GetResponse::Normal {
                    invoke_id: 0xC1,
                    result: GetDataResult::Error(DataAccessResult::ReadWriteDenied),
                },
                "C401C10103",
            ),
            (
                GetResponse::WithDatablock {
                    invoke_id: 0xC1,
                    block: DataBlockG {
                        last_block: false,
                        block_number: 1,
                        result: Ok(vec![0xAA, 0xBB]),
                    },
                },
                "C402C1 00 00000001 00 02AABB",
            ),
            (
                GetResponse::WithDatablock {
                    invoke_id: 0xC1,
                    block: DataBlockG {
                        last_block: true,
                        block_number: 2,
                        result: Err(DataAccessResult::DataBlockNumberInvalid),
                    },
                },
                "C402C1 01 00000002 01 13",
            ),
            (
                GetResponse::WithList {
                    invoke_id: 0xC1,
                    results: vec![
                        GetDataResult::Data(Data::Unsigned(5)),
                        GetDataResult::Error(DataAccessResult::Unknown(77)),
                    ],
                },
                "C403C1 02 00 1105 01 4D",
            ),
        ];
        for (v, hexs) in cases {
            let enc = v.encode();
            assert_eq!(enc, h(hexs), "{v}");
            assert_eq!(GetResponse::decode(&enc).unwrap(), v);
        }
    }

    #[test]
    fn set_response_forms_round_trip() {
        let cases = [
            (
                SetResponse::Normal {
                    invoke_id: 0xC1,
                    result: DataAccessResult::Success,
                },
                "C501C100",
            ),
            (
                SetResponse::Datablock {
                    invoke_id: 0xC1,
                    block_number: 3,
                },
                "C502C100000003",
            ),
            (
                SetResponse::LastDatablock {
                    invoke_id: 0xC1,
                    result: DataAccessResult::OtherReason,
                    block_number: 4,
                },
                "C503C1FA00000004",
            ),
            (
                SetResponse::LastDatablockWithList {
                    invoke_id: 0xC1,
                    results: vec![DataAccessResult::Success, DataAccessResult::TypeUnmatched],
                    block_number: 5,
                },
                "C504C102000C00000005",
            ),
            (
                SetResponse::WithList {
                    invoke_id: 0xC1,
                    results: vec![DataAccessResult::ObjectUndefined],
                },
                "C505C10104",
            ),
        ];
        for (v, hexs) in cases {
            let enc = v.encode();
            assert_eq!(enc, h(hexs), "{v}");
            assert_eq!(SetResponse::decode(&enc).unwrap(), v);
        }
    }

    #[test]
    fn set_request_normal_matches_the_standard_layout() {
        // security_activate-style write: set 64/0-0:43.0.0.255/2 = enum 3.
        let s = SetRequest::Normal {
            invoke_id: 0xC1,
            attribute: AttributeDescriptor::new(64, Obis::SECURITY_SETUP, 2),
            access: None,
            value: Data::Enum(3),
        };
        let enc = s.encode();
        assert_eq!(enc, h("C101C1 0040 00002B0000FF 02 00 1603"));
        assert_eq!(SetRequest::decode(&enc).unwrap(), s);
        assert_eq!(
            s.to_string(),
            "set-request normal invoke 0xC1 64/0-0:43.0.0.255/2 = enum 3"
        );
    }

    #[test]
    fn result_enums_map_names_and_values() {
        for v in 0..=255u8 {
            let d = DataAccessResult::from_u8(v);
            assert_eq!(d.to_u8(), v);
            assert_eq!(
                d.name()
                    .parse::<DataAccessResult>()
                    .ok()
                    .filter(|_| d.name() != "unknown"),
                (d.name() != "unknown").then_some(d)
            );
            let a = ActionResult::from_u8(v);
            assert_eq!(a.to_u8(), v);
        }
        assert_eq!(
            "read-write-denied".parse(),
            Ok(DataAccessResult::ReadWriteDenied)
        );
        assert_eq!("250".parse(), Ok(ActionResult::OtherReason));
        assert_eq!(
            "no-long-action-in-progress".parse(),
            Ok(ActionResult::NoLongActionInProgress)
        );
        assert!("bogus".parse::<ActionResult>().is_err());
        assert_eq!(
            DataAccessResult::DataBlockNumberInvalid.to_string(),
            "data-block-number-invalid(19)"
        );
        assert_eq!(ActionResult::Unknown(99).to_string(), "unknown(99)");
    }

    #[test]
    fn rejects_truncated_and_malformed_service_apdus() {
        let good: &[&str] = &[
            "C0010000080000010000FF0200",
            "C3 01 C1 000F 0000280000FF 01 01 09 11 10 01234567 7D52391C407E3A45210F000E",
            "C7 01 C1 00 01 00 09 11 10 1A9190BC0A587217BCD2BCD4FDDB7143",
            "C101C1004000002B0000FF02001603",
        ];
        for g in good {
            let b = h(g);
            for n in 0..b.len() {
                let p = &b[..n];
                let r = match b[0] {
                    0xC0 => GetRequest::decode(p).map(drop),
                    0xC3 => ActionRequest::decode(p).map(drop),
                    0xC7 => ActionResponse::decode(p).map(drop),
                    _ => SetRequest::decode(p).map(drop),
                };
                assert!(r.is_err(), "{g} prefix {n}");
            }
        }
        // Presence flag 2 for the access selection.
        assert!(GetRequest::decode(&h("C0010000080000010000FF0202")).is_err());
        // Unknown Get-Data-Result choice.
        assert!(GetResponse::decode(&h("C401C10500")).is_err());
        // Unknown request type.
        assert!(GetRequest::decode(&h("C009C1")).is_err());
        // A list count far beyond the input fails without allocating it.
        assert!(GetRequest::decode(&h("C003C184FFFFFFFF")).is_err());
    }
}
