//! COSEM values rendered for people (the `read` command): an association's
//! object list (class 15 attribute 2) as a table of class, version, logical
//! name and access rights, and other structured values one element a line,
//! indented, with date-times decoded (the `Data` display does that).

use std::fmt::Write as _;

use crate::wire::axdr::Data;
use crate::wire::obis::Obis;

/// One object_list_element (Blue Book 4.4.3, class 15 attribute 2):
/// structure{class_id, version, logical_name, access_rights}.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub class_id: u16,
    pub version: u8,
    pub obis: Obis,
    /// (attribute id, access mode) in the order listed.
    pub attributes: Vec<(i8, u8)>,
    /// (method id, access mode): a boolean (version 0) as 0 or 1.
    pub methods: Vec<(i8, u8)>,
}

impl ListedObject {
    /// Reads one element; `None` when it is not shaped like one.
    pub fn from_data(d: &Data) -> Option<Self> {
        let [class, version, ln, rights] = d.items()? else {
            return None;
        };
        let (Data::LongUnsigned(class_id), Data::Unsigned(version), Data::OctetString(ln)) =
            (class, version, ln)
        else {
            return None;
        };
        let obis = Obis(<[u8; 6]>::try_from(ln.as_slice()).ok()?);
        let [attrs, methods] = rights.items()? else {
            return None;
        };
        let pairs = |list: &Data| -> Option<Vec<(i8, u8)>> {
            list.items()?
                .iter()
                .map(|item| {
                    let fields = item.items()?;
                    let id = match fields.first()? {
                        Data::Integer(i) => *i,
                        _ => return None,
                    };
                    let mode = match fields.get(1)? {
                        Data::Enum(m) => *m,
                        Data::Boolean(b) => u8::from(*b),
                        _ => return None,
                    };
                    Some((id, mode))
                })
                .collect()
        };
        Some(ListedObject {
            class_id: *class_id,
            version: *version,
            obis,
            attributes: pairs(attrs)?,
            methods: pairs(methods)?,
        })
    }
}

/// An attribute access mode in short: `-` no access, `r`, `w`, `rw`, and
/// with `a` for authenticated (Blue Book class 15 versions 1 and 2); others
/// as their number.
pub fn attribute_access(mode: u8) -> String {
    match mode {
        0 => "-".into(),
        1 => "r".into(),
        2 => "w".into(),
        3 => "rw".into(),
        4 => "ar".into(),
        5 => "aw".into(),
        6 => "arw".into(),
        n => format!("({n})"),
    }
}

/// A method access mode in short: `-` no access, `x` access, `ax`
/// authenticated access.
pub fn method_access(mode: u8) -> String {
    match mode {
        0 => "-".into(),
        1 => "x".into(),
        2 => "ax".into(),
        n => format!("({n})"),
    }
}

/// The legend printed under an object list table.
pub const ACCESS_LEGEND: &str =
    "access: r read, w write, rw read and write, a… authenticated, x invoke, - none";

/// An object list as a table, one object a line, then the legend. Elements
/// that are not object_list_elements are shown as they came.
pub fn object_list_table(items: &[Data]) -> String {
    let list = |v: &[(i8, u8)], f: fn(u8) -> String| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.iter()
                .map(|(id, m)| format!("{id}:{}", f(*m)))
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    // (class, version, logical name, attributes, methods), or the element as it came.
    let rows: Vec<Result<[String; 5], &Data>> = items
        .iter()
        .map(|d| {
            ListedObject::from_data(d)
                .map(|o| {
                    [
                        o.class_id.to_string(),
                        o.version.to_string(),
                        o.obis.to_string(),
                        list(&o.attributes, attribute_access),
                        list(&o.methods, method_access),
                    ]
                })
                .ok_or(d)
        })
        .collect();
    let width = |i: usize, header: &str| {
        rows.iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|r| r[i].chars().count())
            .chain([header.len()])
            .max()
            .unwrap_or(0)
    };
    let (wl, wa) = (width(2, "logical name"), width(3, "attributes"));
    let mut s = format!(
        "{:>5}  {:>3}  {:<wl$}  {:<wa$}  methods\n",
        "class", "ver", "logical name", "attributes"
    );
    for row in &rows {
        match row {
            Ok([class, version, ln, attrs, methods]) => {
                let _ = writeln!(
                    s,
                    "{class:>5}  {version:>3}  {ln:<wl$}  {attrs:<wa$}  {methods}"
                );
            }
            Err(d) => {
                let _ = writeln!(s, "    not an object list element: {d}");
            }
        }
    }
    let _ = writeln!(
        s,
        "{} {}; {ACCESS_LEGEND}",
        rows.len(),
        if rows.len() == 1 { "object" } else { "objects" }
    );
    s
}

/// Longest single line before a structured value is broken into lines.
const ONE_LINE: usize = 100;

/// A value for a person: short values on one line, longer arrays and
/// structures one element a line, indented by `indent` spaces per level.
pub fn pretty(d: &Data, indent: usize) -> String {
    let flat = d.to_string();
    match d.items() {
        Some(items) if flat.len() > ONE_LINE && !items.is_empty() => {
            let mut s = format!(
                "{} of {} {}",
                d.type_name(),
                items.len(),
                if items.len() == 1 {
                    "element"
                } else {
                    "elements"
                }
            );
            let pad = " ".repeat(indent + 2);
            for (i, item) in items.iter().enumerate() {
                let _ = write!(s, "\n{pad}[{i}] {}", pretty(item, indent + 2));
            }
            s
        }
        _ => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(class: u16, ln: [u8; 6], attrs: &[(i8, u8)], methods: Vec<Data>) -> Data {
        Data::Structure(vec![
            Data::LongUnsigned(class),
            Data::Unsigned(0),
            Data::OctetString(ln.to_vec()),
            Data::Structure(vec![
                Data::Array(
                    attrs
                        .iter()
                        .map(|(a, m)| {
                            Data::Structure(vec![Data::Integer(*a), Data::Enum(*m), Data::Null])
                        })
                        .collect(),
                ),
                Data::Array(methods),
            ]),
        ])
    }

    #[test]
    fn an_object_list_is_a_table_with_access_rights() {
        let clock = element(
            8,
            [0, 0, 1, 0, 0, 255],
            &[(1, 1), (2, 3), (3, 0)],
            vec![Data::Structure(vec![Data::Integer(1), Data::Enum(2)])],
        );
        let ldn = element(1, [0, 0, 42, 0, 0, 255], &[(1, 1), (2, 1)], vec![]);
        let table = object_list_table(&[clock, ldn, Data::Null]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "class  ver  logical name    attributes    methods"
        );
        assert_eq!(lines[1], "    8    0  0-0:1.0.0.255   1:r 2:rw 3:-  1:ax");
        assert_eq!(lines[2], "    1    0  0-0:42.0.0.255  1:r 2:r       none");
        assert_eq!(lines[3], "    not an object list element: null-data");
        assert!(
            lines[4].starts_with("3 objects; access: r read"),
            "{}",
            lines[4]
        );
    }

    #[test]
    fn version_0_method_access_is_a_boolean() {
        let d = element(
            15,
            [0, 0, 40, 0, 0, 255],
            &[],
            vec![Data::Structure(vec![Data::Integer(1), Data::Boolean(true)])],
        );
        assert_eq!(ListedObject::from_data(&d).unwrap().methods, vec![(1, 1)]);
        assert!(ListedObject::from_data(&Data::Structure(vec![])).is_none());
    }

    #[test]
    fn long_structures_break_into_lines_and_short_ones_do_not() {
        let short = Data::Structure(vec![Data::LongUnsigned(8), Data::Integer(2)]);
        assert_eq!(pretty(&short, 0), "structure{long-unsigned 8, integer 2}");
        let long = Data::Array(vec![Data::OctetString(vec![0xAB; 40]), short.clone()]);
        let text = pretty(&long, 0);
        assert!(
            text.starts_with("array of 2 elements\n  [0] octet-string ABAB"),
            "{text}"
        );
        assert!(
            text.ends_with("\n  [1] structure{long-unsigned 8, integer 2}"),
            "{text}"
        );
    }
}
