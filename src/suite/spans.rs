//! A located YAML tree: the suite file parsed a second time without a schema,
//! keeping the line and column of every node (after aliases and merge keys are
//! applied), so semantic errors can point at the exact value.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

use super::diag::Span;

/// One step of a path into the tree: a map key or a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

impl From<&str> for Seg {
    fn from(s: &str) -> Self {
        Seg::Key(s.to_owned())
    }
}

impl From<usize> for Seg {
    fn from(i: usize) -> Self {
        Seg::Index(i)
    }
}

/// A node with where it is used (`at`) and where it is written (`defined`; differs
/// for values that come through an alias or a merge key).
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub at: Span,
    pub defined: Span,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Scalar(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

fn span_of(l: &Location) -> Span {
    Span {
        line: u32::try_from(l.line()).unwrap_or(u32::MAX),
        column: u32::try_from(l.column()).unwrap_or(u32::MAX),
        len: u32::try_from(l.span().len()).unwrap_or(0),
    }
}

impl Node {
    fn from_spanned(s: Spanned<Kind>) -> Node {
        Node {
            at: span_of(&s.referenced),
            defined: span_of(&s.defined),
            kind: s.value,
        }
    }

    /// The node at `path`, if every step exists.
    pub fn get(&self, path: &[Seg]) -> Option<&Node> {
        let mut n = self;
        for seg in path {
            n = match (&n.kind, seg) {
                (Kind::Map(entries), Seg::Key(k)) => {
                    entries.iter().find(|(key, _)| key == k).map(|(_, v)| v)?
                }
                (Kind::Seq(items), Seg::Index(i)) => items.get(*i)?,
                _ => return None,
            };
        }
        Some(n)
    }

    /// The deepest node on `path` that exists (a prefix of the path), and how deep it is.
    pub fn nearest(&self, path: &[Seg]) -> (&Node, usize) {
        let mut n = self;
        let mut depth = 0;
        for seg in path {
            let next = match (&n.kind, seg) {
                (Kind::Map(entries), Seg::Key(k)) => {
                    entries.iter().find(|(key, _)| key == k).map(|(_, v)| v)
                }
                (Kind::Seq(items), Seg::Index(i)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(x) => {
                    n = x;
                    depth += 1;
                }
                None => break,
            }
        }
        (n, depth)
    }

    /// The path of the innermost map that contains the place `(line, column)`, where
    /// "contains" means: starts at or before it and has an entry whose value starts at
    /// or after it on a later or the same line (a key of the map is there).
    pub fn enclosing_map(&self, line: u32, column: u32) -> Option<Vec<Seg>> {
        let pos = (line, column);
        let mut best: Option<Vec<Seg>> = None;
        let mut path = Vec::new();
        self.walk_maps(pos, &mut path, &mut best);
        best
    }

    fn walk_maps(&self, pos: (u32, u32), path: &mut Vec<Seg>, best: &mut Option<Vec<Seg>>) {
        match &self.kind {
            Kind::Scalar(_) => {}
            Kind::Seq(items) => {
                for (i, it) in items.iter().enumerate() {
                    path.push(Seg::Index(i));
                    it.walk_maps(pos, path, best);
                    path.pop();
                }
            }
            Kind::Map(entries) => {
                let start = (self.at.line, self.at.column);
                let end = entries
                    .iter()
                    .map(|(_, v)| (v.at.line, v.at.column))
                    .max()
                    .unwrap_or(start);
                if start <= pos && pos <= end {
                    *best = Some(path.clone());
                }
                for (k, v) in entries {
                    path.push(Seg::Key(k.clone()));
                    v.walk_maps(pos, path, best);
                    path.pop();
                }
            }
        }
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Kind;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Kind, E> {
                Ok(Kind::Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Kind, E> {
                Ok(Kind::Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Kind, E> {
                Ok(Kind::Scalar(v.to_string()))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Kind, E> {
                Ok(Kind::Scalar(v.to_string()))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Kind, E> {
                Ok(Kind::Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Kind, E> {
                Ok(Kind::Scalar(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Kind, E> {
                Ok(Kind::Scalar(v.to_owned()))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Kind, E> {
                Ok(Kind::Scalar(hex::encode(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Kind, E> {
                Ok(Kind::Scalar(String::new()))
            }
            fn visit_none<E: de::Error>(self) -> Result<Kind, E> {
                Ok(Kind::Scalar(String::new()))
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Kind, D2::Error> {
                Kind::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
                let mut items = Vec::new();
                while let Some(s) = seq.next_element::<Spanned<Kind>>()? {
                    items.push(Node::from_spanned(s));
                }
                Ok(Kind::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
                let mut entries = Vec::new();
                while let Some(k) = map.next_key::<KeyText>()? {
                    let v = map.next_value::<Spanned<Kind>>()?;
                    entries.push((k.0, Node::from_spanned(v)));
                }
                Ok(Kind::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// A map key as text, whatever its YAML type.
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Kind::deserialize(d)? {
            Kind::Scalar(s) => Ok(KeyText(s)),
            _ => Ok(KeyText(String::new())),
        }
    }
}

/// Parse `source` into a located tree with the loader's limits; `None` when it is not
/// valid YAML (the typed parse reports that).
pub(crate) fn parse(source: &str) -> Option<Node> {
    serde_saphyr::from_str_with_options::<Spanned<Kind>>(source, super::loader::yaml_options())
        .ok()
        .map(Node::from_spanned)
}

/// The YAML-level error (syntax, limits, duplicate keys) of `source`, if it has one.
pub(crate) fn parse_error(source: &str) -> Option<serde_saphyr::Error> {
    serde_saphyr::from_str_with_options::<Spanned<Kind>>(source, super::loader::yaml_options())
        .err()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_values_through_merge_keys() {
        let src = "t: &m {a: 1, b: x}\nu:\n  <<: *m\n  b: y\n";
        let root = parse(src).unwrap();
        let a = root.get(&["u".into(), "a".into()]).unwrap();
        assert_eq!((a.defined.line, a.defined.column), (1, 11));
        let b = root.get(&["u".into(), "b".into()]).unwrap();
        assert_eq!((b.at.line, b.at.column), (4, 6));
        assert!(matches!(&b.kind, Kind::Scalar(s) if s == "y"));
    }

    #[test]
    fn finds_the_enclosing_map() {
        let src = "s:\n  - get: {class: 8, attr: 2}\n";
        let root = parse(src).unwrap();
        let p = root.enclosing_map(2, 21).unwrap();
        assert_eq!(p, vec![Seg::from("s"), Seg::from(0), Seg::from("get")]);
    }
}
