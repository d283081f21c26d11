//! A-XDR encoding of COSEM data (IEC 62056-6-2 / Blue Book 4.1.5, Green Book 9.5).
//!
//! [`Data`] covers every data type of the Blue Book. Decoding is bounded: a
//! length can never ask for more bytes than are present, and nesting is limited
//! to [`MAX_DEPTH`] levels, so hostile input cannot exhaust memory or the stack.

use std::fmt;

use super::{Reader, WireError, WireResult};

/// Deepest nesting of arrays and structures the decoder accepts.
pub const MAX_DEPTH: usize = 32;

/// A-XDR type tags (Blue Book, Table "Data types").
pub mod tag {
    pub const NULL_DATA: u8 = 0;
    pub const ARRAY: u8 = 1;
    pub const STRUCTURE: u8 = 2;
    pub const BOOLEAN: u8 = 3;
    pub const BIT_STRING: u8 = 4;
    pub const DOUBLE_LONG: u8 = 5;
    pub const DOUBLE_LONG_UNSIGNED: u8 = 6;
    pub const OCTET_STRING: u8 = 9;
    pub const VISIBLE_STRING: u8 = 10;
    pub const UTF8_STRING: u8 = 12;
    pub const BCD: u8 = 13;
    pub const INTEGER: u8 = 15;
    pub const LONG: u8 = 16;
    pub const UNSIGNED: u8 = 17;
    pub const LONG_UNSIGNED: u8 = 18;
    pub const COMPACT_ARRAY: u8 = 19;
    pub const LONG64: u8 = 20;
    pub const LONG64_UNSIGNED: u8 = 21;
    pub const ENUM: u8 = 22;
    pub const FLOAT32: u8 = 23;
    pub const FLOAT64: u8 = 24;
    pub const DATE_TIME: u8 = 25;
    pub const DATE: u8 = 26;
    pub const TIME: u8 = 27;
    pub const DONT_CARE: u8 = 255;
}

/// A COSEM data value.
///
/// Strings keep their raw bytes: a meter may send a visible-string that is not
/// ASCII, and the harness must be able to report it rather than fail to decode.
/// Floats compare by bit pattern so that NaN round-trips compare equal.
#[derive(Debug, Clone)]
pub enum Data {
    Null,
    Array(Vec<Data>),
    Structure(Vec<Data>),
    Boolean(bool),
    BitString(BitString),
    DoubleLong(i32),
    DoubleLongUnsigned(u32),
    OctetString(Vec<u8>),
    VisibleString(Vec<u8>),
    Utf8String(Vec<u8>),
    Bcd(u8),
    Integer(i8),
    Long(i16),
    Unsigned(u8),
    LongUnsigned(u16),
    CompactArray(CompactArray),
    Long64(i64),
    Long64Unsigned(u64),
    Enum(u8),
    Float32(f32),
    Float64(f64),
    DateTime([u8; 12]),
    Date([u8; 5]),
    Time([u8; 4]),
    DontCare,
}

impl PartialEq for Data {
    fn eq(&self, other: &Self) -> bool {
        use Data::*;
        match (self, other) {
            (Float32(a), Float32(b)) => a.to_bits() == b.to_bits(),
            (Float64(a), Float64(b)) => a.to_bits() == b.to_bits(),
            (Null, Null) | (DontCare, DontCare) => true,
            (Array(a), Array(b)) | (Structure(a), Structure(b)) => a == b,
            (Boolean(a), Boolean(b)) => a == b,
            (BitString(a), BitString(b)) => a == b,
            (DoubleLong(a), DoubleLong(b)) => a == b,
            (DoubleLongUnsigned(a), DoubleLongUnsigned(b)) => a == b,
            (OctetString(a), OctetString(b))
            | (VisibleString(a), VisibleString(b))
            | (Utf8String(a), Utf8String(b)) => a == b,
            (Bcd(a), Bcd(b)) | (Unsigned(a), Unsigned(b)) | (Enum(a), Enum(b)) => a == b,
            (Integer(a), Integer(b)) => a == b,
            (Long(a), Long(b)) => a == b,
            (LongUnsigned(a), LongUnsigned(b)) => a == b,
            (CompactArray(a), CompactArray(b)) => a == b,
            (Long64(a), Long64(b)) => a == b,
            (Long64Unsigned(a), Long64Unsigned(b)) => a == b,
            (DateTime(a), DateTime(b)) => a == b,
            (Date(a), Date(b)) => a == b,
            (Time(a), Time(b)) => a == b,
            _ => false,
        }
    }
}

/// A bit-string: a bit count and ceil(count / 8) bytes, first bit in the MSB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitString {
    pub bits: usize,
    pub bytes: Vec<u8>,
}

impl BitString {
    /// A bit-string of `bits` bits from `bytes`; fails when the byte count does not fit.
    pub fn new(bits: usize, bytes: Vec<u8>) -> WireResult<Self> {
        if bytes.len() != bits.div_ceil(8) {
            return Err(WireError::invalid(
                "bit-string",
                format!(
                    "{bits} bits need {} byte(s), got {}",
                    bits.div_ceil(8),
                    bytes.len()
                ),
            ));
        }
        Ok(BitString { bits, bytes })
    }

    /// Bit `i`, counting from the MSB of the first byte.
    pub fn get(&self, i: usize) -> bool {
        i < self.bits
            && self
                .bytes
                .get(i / 8)
                .is_some_and(|b| b & (0x80 >> (i % 8)) != 0)
    }
}

/// The description of the elements of a compact-array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeDescription {
    /// A simple type, by its tag.
    Simple(u8),
    /// `count` elements of one type.
    Array {
        count: u16,
        element: Box<TypeDescription>,
    },
    /// A structure of the listed types.
    Structure(Vec<TypeDescription>),
}

/// A compact-array: a type description and the contents, kept raw so that any
/// value a device sends round-trips. [`CompactArray::elements`] decodes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactArray {
    pub description: TypeDescription,
    pub contents: Vec<u8>,
}

impl CompactArray {
    /// Decodes the contents as a list of values of the described type.
    ///
    /// A description with a part that takes no bytes (null-data, dont-care, an
    /// array of 0 elements, an empty structure, or anything made only of these) is
    /// refused: its values would cost nothing on the wire, so a few bytes could
    /// stand for endless values (found by fuzzing: `13 00 02 30 05` looped forever).
    pub fn elements(&self) -> WireResult<Vec<Data>> {
        min_untagged_size(&self.description, 1)?;
        let mut r = Reader::new(&self.contents);
        let mut out = Vec::new();
        while !r.is_empty() {
            out.push(decode_untagged(&mut r, &self.description, 1)?);
        }
        Ok(out)
    }
}

/// The fewest bytes a value of `d` takes in compact-array contents; an error when
/// `d`, or any part of it, takes none. Every value decoded from contents then
/// consumes at least one byte per level of nesting, which bounds the output.
fn min_untagged_size(d: &TypeDescription, depth: usize) -> WireResult<usize> {
    if depth > MAX_DEPTH {
        return Err(WireError::TooDeep {
            what: "compact-array type description",
            limit: MAX_DEPTH,
        });
    }
    let size = match d {
        // Variable-length simple types carry at least their length byte.
        TypeDescription::Simple(t) => fixed_size(*t).unwrap_or(1),
        TypeDescription::Array { count, element } => {
            usize::from(*count).saturating_mul(min_untagged_size(element, depth + 1)?)
        }
        TypeDescription::Structure(items) => items.iter().try_fold(0usize, |sum, i| {
            Ok::<_, WireError>(sum.saturating_add(min_untagged_size(i, depth + 1)?))
        })?,
    };
    if size == 0 {
        return Err(WireError::invalid(
            "compact-array type description",
            "a part of the described type takes no bytes (null-data, dont-care, \
             an empty array or structure), so the contents cannot be counted",
        ));
    }
    Ok(size)
}

/// Writes an A-XDR length: one byte below 0x80, otherwise 0x80 | n followed by n bytes.
pub fn write_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u64).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (8 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Reads an A-XDR length. Rejects the indefinite form and lengths over 4 bytes.
pub fn read_length(r: &mut Reader<'_>, what: &'static str) -> WireResult<usize> {
    let first = r.u8(what)?;
    if first < 0x80 {
        return Ok(first as usize);
    }
    let n = (first & 0x7F) as usize;
    if n == 0 || n > 4 {
        return Err(WireError::invalid(
            what,
            format!("length prefix 0x{first:02X} is not a definite length of 1..=4 bytes"),
        ));
    }
    let mut v: usize = 0;
    for b in r.take(n, what)? {
        v = (v << 8) | *b as usize;
    }
    Ok(v)
}

/// Reads a length that counts bytes still to come, checking they are present.
fn read_byte_length(r: &mut Reader<'_>, what: &'static str) -> WireResult<usize> {
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

impl Data {
    /// Decodes one value and requires that nothing follows.
    pub fn decode(bytes: &[u8]) -> WireResult<Data> {
        let mut r = Reader::new(bytes);
        let d = Data::read(&mut r)?;
        r.finish("data")?;
        Ok(d)
    }

    /// Decodes one value from the reader.
    pub fn read(r: &mut Reader<'_>) -> WireResult<Data> {
        read_at(r, 0)
    }

    /// Encodes to a new buffer.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }

    /// The A-XDR tag of this value.
    pub fn tag(&self) -> u8 {
        use Data::*;
        match self {
            Null => tag::NULL_DATA,
            Array(_) => tag::ARRAY,
            Structure(_) => tag::STRUCTURE,
            Boolean(_) => tag::BOOLEAN,
            BitString(_) => tag::BIT_STRING,
            DoubleLong(_) => tag::DOUBLE_LONG,
            DoubleLongUnsigned(_) => tag::DOUBLE_LONG_UNSIGNED,
            OctetString(_) => tag::OCTET_STRING,
            VisibleString(_) => tag::VISIBLE_STRING,
            Utf8String(_) => tag::UTF8_STRING,
            Bcd(_) => tag::BCD,
            Integer(_) => tag::INTEGER,
            Long(_) => tag::LONG,
            Unsigned(_) => tag::UNSIGNED,
            LongUnsigned(_) => tag::LONG_UNSIGNED,
            CompactArray(_) => tag::COMPACT_ARRAY,
            Long64(_) => tag::LONG64,
            Long64Unsigned(_) => tag::LONG64_UNSIGNED,
            Enum(_) => tag::ENUM,
            Float32(_) => tag::FLOAT32,
            Float64(_) => tag::FLOAT64,
            DateTime(_) => tag::DATE_TIME,
            Date(_) => tag::DATE,
            Time(_) => tag::TIME,
            DontCare => tag::DONT_CARE,
        }
    }

    /// The Blue Book name of this value's type.
    pub fn type_name(&self) -> &'static str {
        type_name(self.tag())
    }

    /// Appends the encoding to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(self.tag());
        self.write_untagged(out);
    }

    fn write_untagged(&self, out: &mut Vec<u8>) {
        use Data::*;
        match self {
            Null | DontCare => {}
            Array(items) | Structure(items) => {
                write_length(out, items.len());
                for i in items {
                    i.write(out);
                }
            }
            Boolean(b) => out.push(u8::from(*b)),
            BitString(b) => {
                write_length(out, b.bits);
                out.extend_from_slice(&b.bytes);
            }
            DoubleLong(v) => out.extend_from_slice(&v.to_be_bytes()),
            DoubleLongUnsigned(v) => out.extend_from_slice(&v.to_be_bytes()),
            OctetString(v) | VisibleString(v) | Utf8String(v) => {
                write_length(out, v.len());
                out.extend_from_slice(v);
            }
            Bcd(v) | Unsigned(v) | Enum(v) => out.push(*v),
            Integer(v) => out.push(*v as u8),
            Long(v) => out.extend_from_slice(&v.to_be_bytes()),
            LongUnsigned(v) => out.extend_from_slice(&v.to_be_bytes()),
            CompactArray(c) => {
                write_type_description(out, &c.description);
                write_length(out, c.contents.len());
                out.extend_from_slice(&c.contents);
            }
            Long64(v) => out.extend_from_slice(&v.to_be_bytes()),
            Long64Unsigned(v) => out.extend_from_slice(&v.to_be_bytes()),
            Float32(v) => out.extend_from_slice(&v.to_be_bytes()),
            Float64(v) => out.extend_from_slice(&v.to_be_bytes()),
            DateTime(v) => out.extend_from_slice(v),
            Date(v) => out.extend_from_slice(v),
            Time(v) => out.extend_from_slice(v),
        }
    }

    /// The elements of an array or structure.
    pub fn items(&self) -> Option<&[Data]> {
        match self {
            Data::Array(v) | Data::Structure(v) => Some(v),
            _ => None,
        }
    }

    /// The bytes of an octet-, visible- or utf8-string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Data::OctetString(v) | Data::VisibleString(v) | Data::Utf8String(v) => Some(v),
            _ => None,
        }
    }

    /// Any integer type (including enum and bcd) widened to i128.
    pub fn as_integer(&self) -> Option<i128> {
        use Data::*;
        Some(match self {
            DoubleLong(v) => *v as i128,
            DoubleLongUnsigned(v) => *v as i128,
            Bcd(v) | Unsigned(v) | Enum(v) => *v as i128,
            Integer(v) => *v as i128,
            Long(v) => *v as i128,
            LongUnsigned(v) => *v as i128,
            Long64(v) => *v as i128,
            Long64Unsigned(v) => *v as i128,
            _ => return None,
        })
    }
}

/// The Blue Book name of a data type tag.
pub fn type_name(t: u8) -> &'static str {
    match t {
        tag::NULL_DATA => "null-data",
        tag::ARRAY => "array",
        tag::STRUCTURE => "structure",
        tag::BOOLEAN => "boolean",
        tag::BIT_STRING => "bit-string",
        tag::DOUBLE_LONG => "double-long",
        tag::DOUBLE_LONG_UNSIGNED => "double-long-unsigned",
        tag::OCTET_STRING => "octet-string",
        tag::VISIBLE_STRING => "visible-string",
        tag::UTF8_STRING => "utf8-string",
        tag::BCD => "bcd",
        tag::INTEGER => "integer",
        tag::LONG => "long",
        tag::UNSIGNED => "unsigned",
        tag::LONG_UNSIGNED => "long-unsigned",
        tag::COMPACT_ARRAY => "compact-array",
        tag::LONG64 => "long64",
        tag::LONG64_UNSIGNED => "long64-unsigned",
        tag::ENUM => "enum",
        tag::FLOAT32 => "float32",
        tag::FLOAT64 => "float64",
        tag::DATE_TIME => "date-time",
        tag::DATE => "date",
        tag::TIME => "time",
        tag::DONT_CARE => "dont-care",
        _ => "unknown",
    }
}

fn write_type_description(out: &mut Vec<u8>, d: &TypeDescription) {
    match d {
        TypeDescription::Simple(t) => out.push(*t),
        TypeDescription::Array { count, element } => {
            out.push(tag::ARRAY);
            out.extend_from_slice(&count.to_be_bytes());
            write_type_description(out, element);
        }
        TypeDescription::Structure(items) => {
            out.push(tag::STRUCTURE);
            write_length(out, items.len());
            for i in items {
                write_type_description(out, i);
            }
        }
    }
}

fn read_type_description(r: &mut Reader<'_>, depth: usize) -> WireResult<TypeDescription> {
    if depth > MAX_DEPTH {
        return Err(WireError::TooDeep {
            what: "compact-array type description",
            limit: MAX_DEPTH,
        });
    }
    let t = r.u8("compact-array type description")?;
    Ok(match t {
        tag::ARRAY => {
            let count = r.u16("compact-array element count")?;
            TypeDescription::Array {
                count,
                element: Box::new(read_type_description(r, depth + 1)?),
            }
        }
        tag::STRUCTURE => {
            let n = read_byte_length(r, "compact-array structure description")?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(read_type_description(r, depth + 1)?);
            }
            TypeDescription::Structure(items)
        }
        tag::COMPACT_ARRAY => {
            return Err(WireError::invalid(
                "compact-array type description",
                "a compact-array cannot contain a compact-array",
            ));
        }
        t if fixed_size(t).is_some() || is_variable_simple(t) => TypeDescription::Simple(t),
        t => {
            return Err(WireError::invalid(
                "compact-array type description",
                format!("unknown type tag {t}"),
            ));
        }
    })
}

/// Size of the types with a fixed encoding, without their tag.
fn fixed_size(t: u8) -> Option<usize> {
    Some(match t {
        tag::NULL_DATA | tag::DONT_CARE => 0,
        tag::BOOLEAN | tag::BCD | tag::INTEGER | tag::UNSIGNED | tag::ENUM => 1,
        tag::LONG | tag::LONG_UNSIGNED => 2,
        tag::DOUBLE_LONG | tag::DOUBLE_LONG_UNSIGNED | tag::FLOAT32 | tag::TIME => 4,
        tag::DATE => 5,
        tag::LONG64 | tag::LONG64_UNSIGNED | tag::FLOAT64 => 8,
        tag::DATE_TIME => 12,
        _ => return None,
    })
}

fn is_variable_simple(t: u8) -> bool {
    matches!(
        t,
        tag::BIT_STRING | tag::OCTET_STRING | tag::VISIBLE_STRING | tag::UTF8_STRING
    )
}

fn read_at(r: &mut Reader<'_>, depth: usize) -> WireResult<Data> {
    let t = r.u8("data type tag")?;
    read_value(r, t, depth)
}

fn read_value(r: &mut Reader<'_>, t: u8, depth: usize) -> WireResult<Data> {
    Ok(match t {
        tag::NULL_DATA => Data::Null,
        tag::DONT_CARE => Data::DontCare,
        tag::ARRAY | tag::STRUCTURE => {
            if depth >= MAX_DEPTH {
                return Err(WireError::TooDeep {
                    what: type_name(t),
                    limit: MAX_DEPTH,
                });
            }
            // Every element takes at least one byte, so the count is bounded by the input.
            let n = read_byte_length(r, type_name(t))?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(read_at(r, depth + 1)?);
            }
            if t == tag::ARRAY {
                Data::Array(items)
            } else {
                Data::Structure(items)
            }
        }
        tag::BOOLEAN => Data::Boolean(r.u8("boolean")? != 0),
        tag::BIT_STRING => {
            let bits = read_length(r, "bit-string length")?;
            let bytes = r.take(bits.div_ceil(8), "bit-string")?.to_vec();
            Data::BitString(BitString { bits, bytes })
        }
        tag::DOUBLE_LONG => Data::DoubleLong(i32::from_be_bytes(r.array("double-long")?)),
        tag::DOUBLE_LONG_UNSIGNED => Data::DoubleLongUnsigned(r.u32("double-long-unsigned")?),
        tag::OCTET_STRING | tag::VISIBLE_STRING | tag::UTF8_STRING => {
            let n = read_byte_length(r, type_name(t))?;
            let v = r.take(n, type_name(t))?.to_vec();
            match t {
                tag::OCTET_STRING => Data::OctetString(v),
                tag::VISIBLE_STRING => Data::VisibleString(v),
                _ => Data::Utf8String(v),
            }
        }
        tag::BCD => Data::Bcd(r.u8("bcd")?),
        tag::INTEGER => Data::Integer(r.u8("integer")? as i8),
        tag::LONG => Data::Long(i16::from_be_bytes(r.array("long")?)),
        tag::UNSIGNED => Data::Unsigned(r.u8("unsigned")?),
        tag::LONG_UNSIGNED => Data::LongUnsigned(r.u16("long-unsigned")?),
        tag::COMPACT_ARRAY => {
            let description = read_type_description(r, depth + 1)?;
            let n = read_byte_length(r, "compact-array contents")?;
            let contents = r.take(n, "compact-array contents")?.to_vec();
            Data::CompactArray(CompactArray {
                description,
                contents,
            })
        }
        tag::LONG64 => Data::Long64(i64::from_be_bytes(r.array("long64")?)),
        tag::LONG64_UNSIGNED => Data::Long64Unsigned(r.u64("long64-unsigned")?),
        tag::ENUM => Data::Enum(r.u8("enum")?),
        tag::FLOAT32 => Data::Float32(f32::from_be_bytes(r.array("float32")?)),
        tag::FLOAT64 => Data::Float64(f64::from_be_bytes(r.array("float64")?)),
        tag::DATE_TIME => Data::DateTime(r.array("date-time")?),
        tag::DATE => Data::Date(r.array("date")?),
        tag::TIME => Data::Time(r.array("time")?),
        other => {
            return Err(WireError::invalid(
                "data",
                format!("unknown data type tag {other} (0x{other:02X})"),
            ));
        }
    })
}

/// Decodes one element of a compact-array, whose values carry no tag.
fn decode_untagged(r: &mut Reader<'_>, d: &TypeDescription, depth: usize) -> WireResult<Data> {
    if depth > MAX_DEPTH {
        return Err(WireError::TooDeep {
            what: "compact-array element",
            limit: MAX_DEPTH,
        });
    }
    match d {
        TypeDescription::Simple(t) => read_value(r, *t, depth),
        TypeDescription::Array { count, element } => {
            let mut items = Vec::new();
            for _ in 0..*count {
                if r.is_empty() {
                    return Err(WireError::Truncated {
                        what: "compact-array element",
                        need: 1,
                        have: 0,
                    });
                }
                items.push(decode_untagged(r, element, depth + 1)?);
            }
            Ok(Data::Array(items))
        }
        TypeDescription::Structure(items) => {
            let mut out = Vec::with_capacity(items.len());
            for i in items {
                out.push(decode_untagged(r, i, depth + 1)?);
            }
            Ok(Data::Structure(out))
        }
    }
}

fn write_bytes_text(f: &mut fmt::Formatter<'_>, v: &[u8]) -> fmt::Result {
    write!(f, "{}", hex::encode_upper(v))?;
    if !v.is_empty() && v.iter().all(|b| (0x20..0x7F).contains(b)) {
        write!(f, " \"{}\"", String::from_utf8_lossy(v))?;
    }
    Ok(())
}

/// A one-line rendering used in traces and verdicts, e.g.
/// `structure{long-unsigned 8, octet-string 0000010000FF}`.
impl fmt::Display for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Data::*;
        let name = self.type_name();
        match self {
            Null | DontCare => write!(f, "{name}"),
            Array(items) | Structure(items) => {
                write!(f, "{name}{{")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{item}")?;
                }
                write!(f, "}}")
            }
            Boolean(b) => write!(f, "{name} {b}"),
            BitString(b) => {
                write!(f, "{name} ")?;
                for i in 0..b.bits {
                    write!(f, "{}", u8::from(b.get(i)))?;
                }
                Ok(())
            }
            OctetString(v) | VisibleString(v) | Utf8String(v) => {
                write!(f, "{name} ")?;
                write_bytes_text(f, v)?;
                // COSEM date-times travel as octet-string(12) (class 8 `time`).
                match self.date_time() {
                    Some(dt) => write!(f, " (date-time {})", format_date_time(&dt)),
                    None => Ok(()),
                }
            }
            CompactArray(c) => write!(f, "{name} {}", hex::encode_upper(&c.contents)),
            Float32(v) => write!(f, "{name} {v}"),
            Float64(v) => write!(f, "{name} {v}"),
            DateTime(v) => write!(f, "{name} {}", format_date_time(v)),
            Date(v) => write!(f, "{name} {}", format_date(v)),
            Time(v) => write!(f, "{name} {}", format_time(v)),
            other => write!(f, "{name} {}", other.as_integer().unwrap_or_default()),
        }
    }
}

impl Data {
    /// The date-time this value carries: a `date-time`, or an octet-string of
    /// 12 bytes that is a valid COSEM date-time (Blue Book 4.1.6.1; the clock's
    /// `time` attribute, class 8, is one).
    pub fn date_time(&self) -> Option<[u8; 12]> {
        let v: [u8; 12] = match self {
            Data::DateTime(v) => *v,
            Data::OctetString(v) => <[u8; 12]>::try_from(v.as_slice()).ok()?,
            _ => return None,
        };
        is_date_time(&v).then_some(v)
    }

    /// The date this value carries: a `date`, or a valid octet-string(5).
    pub fn date(&self) -> Option<[u8; 5]> {
        let v: [u8; 5] = match self {
            Data::Date(v) => *v,
            Data::OctetString(v) => <[u8; 5]>::try_from(v.as_slice()).ok()?,
            _ => return None,
        };
        is_date(&v).then_some(v)
    }

    /// The time this value carries: a `time`, or a valid octet-string(4).
    pub fn time(&self) -> Option<[u8; 4]> {
        let v: [u8; 4] = match self {
            Data::Time(v) => *v,
            Data::OctetString(v) => <[u8; 4]>::try_from(v.as_slice()).ok()?,
            _ => return None,
        };
        is_time(&v).then_some(v)
    }
}

/// Whether 5 bytes are a valid COSEM date (Blue Book 4.1.6.1): year (any),
/// month 1-12, day 1-31, day of week 1-7, each also 0xFF "not specified";
/// month 0xFD/0xFE (daylight saving end/begin) and day 0xFD/0xFE (second
/// last / last day of month) allowed.
pub fn is_date(v: &[u8; 5]) -> bool {
    matches!(v[2], 1..=12 | 0xFD..=0xFF)
        && matches!(v[3], 1..=31 | 0xFD..=0xFF)
        && matches!(v[4], 1..=7 | 0xFF)
}

/// Whether 4 bytes are a valid COSEM time: hour 0-23, minute 0-59, second
/// 0-59, hundredths 0-99, each also 0xFF "not specified".
pub fn is_time(v: &[u8; 4]) -> bool {
    matches!(v[0], 0..=23 | 0xFF)
        && matches!(v[1], 0..=59 | 0xFF)
        && matches!(v[2], 0..=59 | 0xFF)
        && matches!(v[3], 0..=99 | 0xFF)
}

/// Whether 12 bytes are a valid COSEM date-time: a date, a time, a deviation
/// of -720..=720 minutes or 0x8000 "not specified", and a clock status.
pub fn is_date_time(v: &[u8; 12]) -> bool {
    let dev = i16::from_be_bytes([v[9], v[10]]);
    is_date(&[v[0], v[1], v[2], v[3], v[4]])
        && is_time(&[v[5], v[6], v[7], v[8]])
        && (dev == i16::MIN || (-720..=720).contains(&dev))
}

/// A date or time field: two digits, `**` for 0xFF "not specified".
fn date_field(b: u8) -> String {
    match b {
        0xFF => "**".into(),
        _ => format!("{b:02}"),
    }
}

/// A month, with its special values (Blue Book 4.1.6.1) by name.
fn month_field(b: u8) -> String {
    match b {
        0xFE => "dst-begin".into(),
        0xFD => "dst-end".into(),
        _ => date_field(b),
    }
}

/// A day of the month, with its special values by name.
fn day_field(b: u8) -> String {
    match b {
        0xFE => "last".into(),
        0xFD => "second-last".into(),
        _ => date_field(b),
    }
}

/// Renders a COSEM date (Blue Book 4.1.6.1) as `YYYY-MM-DD`, `*` for "not
/// specified" fields; an invalid date as its hex.
pub fn format_date(v: &[u8; 5]) -> String {
    if !is_date(v) {
        return hex::encode_upper(v);
    }
    let year = u16::from_be_bytes([v[0], v[1]]);
    let year = if year == 0xFFFF {
        "****".to_string()
    } else {
        format!("{year:04}")
    };
    format!("{year}-{}-{}", month_field(v[2]), day_field(v[3]))
}

/// Renders a COSEM time as `hh:mm:ss.cc`, `*` for "not specified" fields;
/// an invalid time as its hex.
pub fn format_time(v: &[u8; 4]) -> String {
    if !is_time(v) {
        return hex::encode_upper(v);
    }
    let f = date_field;
    format!("{}:{}:{}.{}", f(v[0]), f(v[1]), f(v[2]), f(v[3]))
}

/// Renders a COSEM date-time (Blue Book 4.1.6.1) as `YYYY-MM-DD hh:mm:ss.cc dev±m status`,
/// with `*` for "not specified" fields.
pub fn format_date_time(v: &[u8; 12]) -> String {
    let year = u16::from_be_bytes([v[0], v[1]]);
    let field = |b: u8, w: usize| {
        if b == 0xFF {
            "*".repeat(w)
        } else {
            format!("{b:0w$}")
        }
    };
    let year = if year == 0xFFFF {
        "****".to_string()
    } else {
        format!("{year:04}")
    };
    let dev = i16::from_be_bytes([v[9], v[10]]);
    let dev = if dev == i16::MIN {
        "dev *".to_string()
    } else {
        format!("dev {dev}")
    };
    format!(
        "{year}-{}-{} {}:{}:{}.{} {dev} status 0x{:02X}",
        field(v[2], 2),
        field(v[3], 2),
        field(v[5], 2),
        field(v[6], 2),
        field(v[7], 2),
        field(v[8], 2),
        v[11]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_clock_octet_string_is_shown_as_a_date_time() {
        // 2026-12-04 (Friday) 18:06:52.00, deviation 0, status 0: the simulator's clock.
        let clock = Data::OctetString(hex::decode("07EA0C040512063400000000").unwrap());
        assert_eq!(
            clock.to_string(),
            "octet-string 07EA0C040512063400000000 (date-time 2026-12-04 18:06:52.00 dev 0 status 0x00)"
        );
        assert!(clock.date_time().is_some());
        // Not specified fields and deviation are allowed.
        let wild = hex::decode("FFFFFFFFFFFFFFFFFF800000").unwrap();
        assert!(is_date_time(
            &<[u8; 12]>::try_from(wild.as_slice()).unwrap()
        ));
        // Twelve bytes that are no date-time: month 0, or a deviation of 1000 minutes.
        for bad in [
            "07EA00040512063400000000",
            "07EA0C04051206340003E800",
            "000000000000000000000000",
        ] {
            let d = Data::OctetString(hex::decode(bad).unwrap());
            assert!(d.date_time().is_none(), "{bad}");
            assert!(!d.to_string().contains("date-time"), "{bad}");
        }
        assert!(Data::OctetString(vec![0; 11]).date_time().is_none());
        assert!(
            Data::OctetString(hex::decode("07EA0C0405").unwrap())
                .date()
                .is_some()
        );
        assert!(
            Data::OctetString(hex::decode("12063400").unwrap())
                .time()
                .is_some()
        );
        assert!(
            Data::OctetString(hex::decode("18063400").unwrap())
                .time()
                .is_none()
        );
        assert_eq!(
            Data::Date([0x07, 0xEA, 0xFE, 0xFE, 0xFF]).to_string(),
            "date 2026-dst-begin-last"
        );
        assert_eq!(Data::Time([2, 30, 0, 0xFF]).to_string(), "time 02:30:00.**");
        assert_eq!(Data::Time([24, 0, 0, 0]).to_string(), "time 18000000");
    }

    #[test]
    fn length_encoding_matches_the_standard_forms() {
        let cases: &[(usize, &[u8])] = &[
            (0, &[0x00]),
            (0x7F, &[0x7F]),
            (0x80, &[0x81, 0x80]),
            (0xFF, &[0x81, 0xFF]),
            (0x100, &[0x82, 0x01, 0x00]),
            (0x1_0000, &[0x83, 0x01, 0x00, 0x00]),
        ];
        for (len, enc) in cases {
            let mut out = Vec::new();
            write_length(&mut out, *len);
            assert_eq!(&out, enc, "encode {len}");
            assert_eq!(read_length(&mut Reader::new(enc), "l").unwrap(), *len);
        }
    }

    #[test]
    fn rejects_indefinite_and_oversized_lengths() {
        assert!(read_length(&mut Reader::new(&[0x80]), "l").is_err());
        assert!(read_length(&mut Reader::new(&[0x85, 1, 2, 3, 4, 5]), "l").is_err());
    }

    #[test]
    fn decodes_the_clock_attribute_descriptor_structure() {
        // structure{long-unsigned 8, octet-string 0000010000FF, integer 2}: a capture-object entry.
        let bytes = hex::decode("020312000809060000010000FF0F02").unwrap();
        let d = Data::decode(&bytes).unwrap();
        assert_eq!(
            d,
            Data::Structure(vec![
                Data::LongUnsigned(8),
                Data::OctetString(vec![0, 0, 1, 0, 0, 255]),
                Data::Integer(2)
            ])
        );
        assert_eq!(d.encode(), bytes);
    }

    #[test]
    fn rejects_an_array_count_larger_than_the_input() {
        // array claiming 0x7FFFFFFF elements: must fail fast, not allocate.
        let bytes = [0x01, 0x84, 0x7F, 0xFF, 0xFF, 0xFF, 0x00];
        assert!(matches!(
            Data::decode(&bytes),
            Err(WireError::Truncated { .. })
        ));
    }

    #[test]
    fn rejects_nesting_beyond_the_limit() {
        let mut bytes = Vec::new();
        for _ in 0..(MAX_DEPTH + 1) {
            bytes.extend_from_slice(&[0x01, 0x01]);
        }
        bytes.push(0x00);
        assert!(matches!(
            Data::decode(&bytes),
            Err(WireError::TooDeep { .. })
        ));
        // One level less is fine.
        let ok = &bytes[2..];
        assert!(Data::decode(ok).is_ok());
    }

    #[test]
    fn rejects_unknown_tags_and_trailing_bytes() {
        assert!(Data::decode(&[0x07]).is_err());
        assert!(matches!(
            Data::decode(&[0x00, 0x00]),
            Err(WireError::Trailing { .. })
        ));
    }

    #[test]
    fn compact_array_elements_decode_by_description() {
        // compact-array of structure{long-unsigned, unsigned}: two elements.
        let c = CompactArray {
            description: TypeDescription::Structure(vec![
                TypeDescription::Simple(tag::LONG_UNSIGNED),
                TypeDescription::Simple(tag::UNSIGNED),
            ]),
            contents: vec![0x00, 0x01, 0x02, 0x00, 0x03, 0x04],
        };
        let d = Data::CompactArray(c.clone());
        let enc = d.encode();
        assert_eq!(
            enc,
            hex::decode("1302021211060001020003 04".replace(' ', "")).unwrap()
        );
        assert_eq!(Data::decode(&enc).unwrap(), d);
        assert_eq!(
            c.elements().unwrap(),
            vec![
                Data::Structure(vec![Data::LongUnsigned(1), Data::Unsigned(2)]),
                Data::Structure(vec![Data::LongUnsigned(3), Data::Unsigned(4)]),
            ]
        );
    }

    #[test]
    fn rejects_compact_array_of_types_that_take_no_bytes() {
        // Found by the `axdr` fuzz target (fuzz/regressions/axdr/): a compact-array
        // of null-data with two bytes of contents made `elements` loop forever,
        // allocating, as each null-data element consumed nothing.
        let d = Data::decode(&[0x13, 0x00, 0x02, 0x30, 0x05]).unwrap();
        let Data::CompactArray(c) = d else {
            panic!("{d:?}")
        };
        assert!(c.elements().is_err());
        // Arrays of arrays of nothing, and structures with a part that is nothing
        // (a few bytes standing for billions of values, or for 1000 values per byte).
        let nothing = |count| TypeDescription::Array {
            count,
            element: Box::new(TypeDescription::Array {
                count: 0xFFFF,
                element: Box::new(TypeDescription::Simple(tag::NULL_DATA)),
            }),
        };
        for description in [
            nothing(0xFFFF),
            TypeDescription::Array {
                count: 0,
                element: Box::new(TypeDescription::Simple(tag::UNSIGNED)),
            },
            TypeDescription::Structure(vec![]),
            TypeDescription::Structure(vec![
                TypeDescription::Simple(tag::UNSIGNED),
                TypeDescription::Simple(tag::DONT_CARE),
            ]),
        ] {
            let c = CompactArray {
                description,
                contents: vec![1, 2, 3],
            };
            assert!(c.elements().is_err(), "{:?}", c.description);
        }
    }

    #[test]
    fn accepts_compact_array_with_variable_length_elements() {
        // array of 2 octet-strings: each takes at least its length byte.
        let c = CompactArray {
            description: TypeDescription::Array {
                count: 2,
                element: Box::new(TypeDescription::Simple(tag::OCTET_STRING)),
            },
            contents: vec![0x00, 0x01, 0xAB],
        };
        assert_eq!(
            c.elements().unwrap(),
            vec![Data::Array(vec![
                Data::OctetString(vec![]),
                Data::OctetString(vec![0xAB])
            ])]
        );
    }

    #[test]
    fn displays_printable_octet_strings_as_text() {
        let d = Data::OctetString(b"GRX1".to_vec());
        assert_eq!(d.to_string(), "octet-string 47525831 \"GRX1\"");
    }

    pub(crate) fn arb_data() -> impl Strategy<Value = Data> {
        let leaf = prop_oneof![
            Just(Data::Null),
            Just(Data::DontCare),
            any::<bool>().prop_map(Data::Boolean),
            (0usize..40).prop_flat_map(|bits| {
                proptest::collection::vec(any::<u8>(), bits.div_ceil(8))
                    .prop_map(move |bytes| Data::BitString(BitString { bits, bytes }))
            }),
            any::<i32>().prop_map(Data::DoubleLong),
            any::<u32>().prop_map(Data::DoubleLongUnsigned),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Data::OctetString),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(Data::VisibleString),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(Data::Utf8String),
            any::<u8>().prop_map(Data::Bcd),
            any::<i8>().prop_map(Data::Integer),
            any::<i16>().prop_map(Data::Long),
            any::<u8>().prop_map(Data::Unsigned),
            any::<u16>().prop_map(Data::LongUnsigned),
            any::<i64>().prop_map(Data::Long64),
            any::<u64>().prop_map(Data::Long64Unsigned),
            any::<u8>().prop_map(Data::Enum),
            any::<u32>().prop_map(|b| Data::Float32(f32::from_bits(b))),
            any::<u64>().prop_map(|b| Data::Float64(f64::from_bits(b))),
            any::<[u8; 12]>().prop_map(Data::DateTime),
            any::<[u8; 5]>().prop_map(Data::Date),
            any::<[u8; 4]>().prop_map(Data::Time),
            proptest::collection::vec(any::<u8>(), 0..12).prop_map(|contents| {
                Data::CompactArray(CompactArray {
                    description: TypeDescription::Array {
                        count: 2,
                        element: Box::new(TypeDescription::Simple(tag::UNSIGNED)),
                    },
                    contents,
                })
            }),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Data::Array),
                proptest::collection::vec(inner, 0..8).prop_map(Data::Structure),
            ]
        })
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(d in arb_data()) {
            let enc = d.encode();
            prop_assert_eq!(Data::decode(&enc).unwrap(), d);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(d) = Data::decode(&bytes) {
                // Whatever decodes re-encodes to the same bytes, except for
                // non-canonical lengths (e.g. 0x81 0x05), which decode but encode shorter.
                let _ = d.encode();
            }
        }
    }
}
