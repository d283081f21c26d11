//! OBIS codes (IEC 62056-6-1): the six-byte logical names of COSEM objects.

use std::fmt;
use std::str::FromStr;

/// A logical name, `A-B:C.D.E.F`. Displayed in that form; parsed from it, from
/// the dotted form `A.B.C.D.E.F`, or from 12 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Obis(pub [u8; 6]);

impl Obis {
    pub const fn new(a: u8, b: u8, c: u8, d: u8, e: u8, f: u8) -> Self {
        Obis([a, b, c, d, e, f])
    }

    pub fn bytes(&self) -> [u8; 6] {
        self.0
    }

    /// Association LN of the current association (0-0:40.0.0.255).
    pub const CURRENT_ASSOCIATION: Obis = Obis::new(0, 0, 40, 0, 0, 255);
    /// Security setup of the first association (0-0:43.0.0.255).
    pub const SECURITY_SETUP: Obis = Obis::new(0, 0, 43, 0, 0, 255);
    /// Logical device name (0-0:42.0.0.255).
    pub const LOGICAL_DEVICE_NAME: Obis = Obis::new(0, 0, 42, 0, 0, 255);
    /// Clock (0-0:1.0.0.255).
    pub const CLOCK: Obis = Obis::new(0, 0, 1, 0, 0, 255);
}

impl fmt::Display for Obis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a}-{b}:{c}.{d}.{e}.{g}")
    }
}

impl fmt::Debug for Obis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Obis({self})")
    }
}

/// Why a text is not an OBIS code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid OBIS code {text:?}: expected A-B:C.D.E.F, A.B.C.D.E.F or 12 hex digits, each group 0..=255"
)]
pub struct ObisParseError {
    pub text: String,
}

impl FromStr for Obis {
    type Err = ObisParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ObisParseError { text: s.to_owned() };
        let t = s.trim();
        if t.len() == 12 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            let v = hex::decode(t).map_err(|_| err())?;
            let mut a = [0u8; 6];
            a.copy_from_slice(&v);
            return Ok(Obis(a));
        }
        let groups: Vec<&str> = if t.contains(':') || t.contains('-') {
            // A-B:C.D.E.F (the first separator may also be '.')
            let (ab, rest) = t.split_once(':').ok_or_else(err)?;
            let (a, b) = ab.split_once('-').ok_or_else(err)?;
            let mut g = vec![a, b];
            g.extend(rest.split('.'));
            g
        } else {
            t.split('.').collect()
        };
        if groups.len() != 6 {
            return Err(err());
        }
        let mut out = [0u8; 6];
        for (o, g) in out.iter_mut().zip(groups) {
            *o = g.trim().parse::<u8>().map_err(|_| err())?;
        }
        Ok(Obis(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_all_three_forms() {
        let want = Obis::new(0, 0, 43, 1, 0, 255);
        assert_eq!("0-0:43.1.0.255".parse::<Obis>().unwrap(), want);
        assert_eq!("0.0.43.1.0.255".parse::<Obis>().unwrap(), want);
        assert_eq!("00002B0100FF".parse::<Obis>().unwrap(), want);
        assert_eq!(want.to_string(), "0-0:43.1.0.255");
    }

    #[test]
    fn rejects_bad_codes() {
        for bad in [
            "",
            "0-0:43.1.0",
            "0-0:43.1.0.256",
            "1.2.3.4.5.6.7",
            "x-0:1.0.0.255",
        ] {
            assert!(bad.parse::<Obis>().is_err(), "{bad}");
        }
    }
}
