//! COSEM data values written in suites ([`DataSpec`]) turned into [`Data`], and
//! compared with what a device returned.

use std::collections::BTreeMap;

use crate::suite::model::DataSpec;
use crate::suite::vocab::parse_hex;
use crate::wire::axdr::{BitString, Data};

fn fixed<const N: usize>(hex: &str, what: &str) -> Result<[u8; N], String> {
    let v = parse_hex(hex).map_err(|e| format!("{what}: {e}"))?;
    v.as_slice().try_into().map_err(|_| {
        format!(
            "{what} is {N} bytes ({} hex digits), got {}",
            N * 2,
            v.len()
        )
    })
}

fn bits(s: &str) -> Result<BitString, String> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let mut bytes = vec![0u8; s.len().div_ceil(8)];
    for (i, c) in s.chars().enumerate() {
        match c {
            '1' => bytes[i / 8] |= 0x80 >> (i % 8),
            '0' => {}
            _ => return Err(format!("bit-string `{s}`: use only 0 and 1")),
        }
    }
    Ok(BitString {
        bits: s.len(),
        bytes,
    })
}

/// Builds the value a spec describes. `any` cannot be sent.
pub fn to_data(spec: &DataSpec, vars: &BTreeMap<String, String>) -> Result<Data, String> {
    use DataSpec as S;
    Ok(match spec {
        S::Null => Data::Null,
        S::Boolean(b) => Data::Boolean(*b),
        S::Integer(v) => Data::Integer(*v),
        S::Long(v) => Data::Long(*v),
        S::DoubleLong(v) => Data::DoubleLong(*v),
        S::Long64(v) => Data::Long64(*v),
        S::Unsigned(v) => Data::Unsigned(*v),
        S::LongUnsigned(v) => Data::LongUnsigned(*v),
        S::DoubleLongUnsigned(v) => Data::DoubleLongUnsigned(*v),
        S::Long64Unsigned(v) => Data::Long64Unsigned(*v),
        S::Enum(v) => Data::Enum(*v),
        S::Float32(v) => Data::Float32(*v),
        S::Float64(v) => Data::Float64(*v),
        S::OctetString(t) => Data::OctetString(
            parse_hex(&t.resolve(vars)?).map_err(|e| format!("octet-string: {e}"))?,
        ),
        S::OctetStringText(t) => Data::OctetString(t.as_bytes().to_vec()),
        S::VisibleString(t) => Data::VisibleString(t.as_bytes().to_vec()),
        S::Utf8String(t) => Data::Utf8String(t.as_bytes().to_vec()),
        S::BitString(b) => Data::BitString(bits(b)?),
        S::DateTime(h) => Data::DateTime(fixed::<12>(h, "date-time")?),
        S::Date(h) => Data::Date(fixed::<5>(h, "date")?),
        S::Time(h) => Data::Time(fixed::<4>(h, "time")?),
        S::Array(items) => Data::Array(
            items
                .iter()
                .map(|i| to_data(i, vars))
                .collect::<Result<_, _>>()?,
        ),
        S::Structure(items) => Data::Structure(
            items
                .iter()
                .map(|i| to_data(i, vars))
                .collect::<Result<_, _>>()?,
        ),
        S::Any => return Err("`any` matches a value in an expectation; it cannot be sent".into()),
    })
}

/// Does `d` equal the value `spec` describes (with `any` matching anything)?
pub fn data_matches(spec: &DataSpec, d: &Data, vars: &BTreeMap<String, String>) -> bool {
    match (spec, d) {
        (DataSpec::Any, _) => true,
        (DataSpec::Array(items), Data::Array(v))
        | (DataSpec::Structure(items), Data::Structure(v)) => {
            items.len() == v.len() && items.iter().zip(v).all(|(s, x)| data_matches(s, x, vars))
        }
        _ => to_data(spec, vars).is_ok_and(|want| &want == d),
    }
}

/// The text a `save:` stores: integers in decimal, strings as hex, other values in their display form.
pub fn saved_text(d: &Data) -> String {
    if let Some(i) = d.as_integer() {
        return i.to_string();
    }
    match d {
        Data::OctetString(v) | Data::VisibleString(v) | Data::Utf8String(v) => hex::encode_upper(v),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::model::Tpl;

    #[test]
    fn builds_and_matches_nested_values_with_wildcards() {
        let vars = BTreeMap::from([("ldn".to_string(), "4D4D4D".to_string())]);
        let spec = DataSpec::Structure(vec![
            DataSpec::LongUnsigned(8),
            DataSpec::OctetString(Tpl::Var("${ldn}".into())),
            DataSpec::Any,
        ]);
        let d = Data::Structure(vec![
            Data::LongUnsigned(8),
            Data::OctetString(b"MMM".to_vec()),
            Data::Integer(2),
        ]);
        assert!(data_matches(&spec, &d, &vars));
        assert!(to_data(&spec, &vars).is_err());
        assert!(!data_matches(
            &DataSpec::LongUnsigned(9),
            &Data::LongUnsigned(8),
            &vars
        ));
        assert_eq!(
            to_data(&DataSpec::BitString("101".into()), &vars).unwrap(),
            Data::BitString(BitString {
                bits: 3,
                bytes: vec![0xA0]
            })
        );
        assert!(to_data(&DataSpec::DateTime("00".into()), &vars).is_err());
    }

    #[test]
    fn saved_text_is_decimal_or_hex() {
        assert_eq!(saved_text(&Data::DoubleLongUnsigned(42)), "42");
        assert_eq!(saved_text(&Data::OctetString(vec![1, 0xAB])), "01AB");
    }
}
