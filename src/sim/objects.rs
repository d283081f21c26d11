//! The COSEM objects of the simulated meter (Blue Book interface classes):
//! Association LN (15), Security Setup (64), invocation counter and other Data
//! objects (1), Clock (8), Registers (3), SAP assignment (17), IEC HDLC setup
//! (23) and TCP-UDP setup (41).

use crate::wire::axdr::{BitString, Data};
use crate::wire::obis::Obis;

/// What an object is, for the meter's dispatch.
#[derive(Debug, Clone, PartialEq)]
pub enum ObjectKind {
    /// Association LN of the current association (0-0:40.0.0.255).
    CurrentAssociation,
    /// Association LN instance of a client.
    Association(u16),
    /// Security Setup of a client.
    SecuritySetup(u16),
    /// Invocation counter object of a client (0-0:43.1.e.255): the last counter accepted from it.
    InvocationCounter(u16),
    LogicalDeviceName,
    Clock,
    /// A register: value, scaler and unit.
    Register {
        value: Data,
        scaler: i8,
        unit: u8,
    },
    /// A Data object with a fixed value.
    Value(Data),
    SapAssignment,
    HdlcSetup,
    TcpUdpSetup,
}

/// One object of the meter.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub class_id: u16,
    pub version: u8,
    pub obis: Obis,
    pub kind: ObjectKind,
    /// Attribute count (attribute 1 is the logical name).
    pub attributes: i8,
    /// Method count.
    pub methods: i8,
    /// Readable by clients without full access.
    pub public: bool,
}

impl Object {
    pub fn new(
        class_id: u16,
        version: u8,
        obis: Obis,
        kind: ObjectKind,
        attributes: i8,
        methods: i8,
        public: bool,
    ) -> Self {
        Object {
            class_id,
            version,
            obis,
            kind,
            attributes,
            methods,
            public,
        }
    }

    /// The object_list entry: structure{class_id, version, logical_name, access_rights}.
    pub fn list_entry(&self, full_access: bool) -> Data {
        let readable = full_access || self.public;
        let attr_access = (1..=self.attributes)
            .map(|a| {
                // 0 no access, 1 read, 3 read-write.
                let mode = match (readable, full_access && a > 1) {
                    (false, _) => 0,
                    (true, false) => 1,
                    (true, true) => 3,
                };
                Data::Structure(vec![Data::Integer(a), Data::Enum(mode), Data::Null])
            })
            .collect();
        let method_access = (1..=self.methods)
            .map(|m| Data::Structure(vec![Data::Integer(m), Data::Enum(u8::from(full_access))]))
            .collect();
        Data::Structure(vec![
            Data::LongUnsigned(self.class_id),
            Data::Unsigned(self.version),
            Data::OctetString(self.obis.0.to_vec()),
            Data::Structure(vec![Data::Array(attr_access), Data::Array(method_access)]),
        ])
    }
}

/// A 24-bit conformance block as an A-XDR bit-string.
pub fn conformance_bits(c: u32) -> Data {
    Data::BitString(BitString {
        bits: 24,
        bytes: c.to_be_bytes()[1..].to_vec(),
    })
}

/// Encodes a date-time (Blue Book 4.1.6.1) for a UTC time in seconds since the
/// Unix epoch: deviation 0, status 0, hundredths 0.
pub fn date_time(unix: i64) -> [u8; 12] {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    // 1970-01-01 was a Thursday; COSEM day of week: 1 = Monday .. 7 = Sunday.
    let dow = ((days + 3).rem_euclid(7) + 1) as u8;
    let year = (y.clamp(0, 0xFFFE)) as u16;
    [
        (year >> 8) as u8,
        year as u8,
        m as u8,
        d as u8,
        dow,
        (secs / 3600) as u8,
        (secs / 60 % 60) as u8,
        (secs % 60) as u8,
        0,
        0,
        0,
        0,
    ]
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Decodes the date and time fields of a COSEM date-time to Unix seconds
/// (UTC, deviation ignored); `None` when a field is "not specified" or out of range.
pub fn unix_from_date_time(v: &[u8; 12]) -> Option<i64> {
    let year = u16::from_be_bytes([v[0], v[1]]) as i64;
    let (m, d, h, mi, s) = (
        v[2] as i64,
        v[3] as i64,
        v[5] as i64,
        v[6] as i64,
        v[7] as i64,
    );
    if year == 0xFFFF
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
        || h > 23
        || mi > 59
        || s > 59
    {
        return None;
    }
    let (y, mm) = if m <= 2 {
        (year - 1, m + 9)
    } else {
        (year, m - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * mm + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_time_encodes_known_instants() {
        // 2026-11-21 19:27:14 UTC is a Saturday (6).
        let t = 1_795_289_234;
        let dt = date_time(t);
        assert_eq!(&dt[..8], &[0x07, 0xEA, 11, 21, 6, 19, 27, 14]);
        assert_eq!(unix_from_date_time(&dt), Some(t));
        assert_eq!(date_time(0)[..5], [0x07, 0xB2, 1, 1, 4]);
        let mut bad = dt;
        bad[2] = 13;
        assert_eq!(unix_from_date_time(&bad), None);
    }

    #[test]
    fn conformance_is_24_bits_msb_first() {
        assert_eq!(
            conformance_bits(0x007E1F).encode(),
            vec![0x04, 24, 0x00, 0x7E, 0x1F]
        );
    }
}
