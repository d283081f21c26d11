//! Hand-written `Deserialize` and `JsonSchema` for the model's either-or values
//! ([`Tpl`], [`VarValue`], [`Conformance`], [`Expect`]).
//!
//! `#[serde(untagged)]` would buffer the value and, on failure, say only "data did not
//! match any variant"; these visitors look at the YAML node's shape (scalar, list or
//! map) and either go on with the real deserializer, so an error inside keeps its
//! exact line and column, or say what was expected.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserialize, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use super::model::{ClientName, Conformance, Expect, Outcome, Tpl, VarValue};

/// Literal types a [`Tpl`] can hold, and how to read one from YAML text.
pub trait TplScalar: Sized {
    /// What a literal looks like, for messages, e.g. `an integer from 0 to 65535`.
    const EXPECTING: &'static str;
    /// Take the YAML scalar as text exactly as written (no number inference).
    const TEXT: bool = false;
    /// Read a literal from its text.
    fn from_text(s: &str) -> Option<Self>;
}

impl TplScalar for String {
    const EXPECTING: &'static str = "a text";
    const TEXT: bool = true;
    fn from_text(s: &str) -> Option<Self> {
        Some(s.to_owned())
    }
}

impl TplScalar for bool {
    const EXPECTING: &'static str = "`true` or `false`";
    fn from_text(s: &str) -> Option<Self> {
        s.trim().parse().ok()
    }
}

macro_rules! tpl_int {
    ($($t:ty => $e:literal),* $(,)?) => {$(
        impl TplScalar for $t {
            const EXPECTING: &'static str = $e;
            fn from_text(s: &str) -> Option<Self> {
                let t = s.trim();
                match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                    Some(h) => <$t>::from_str_radix(h, 16).ok(),
                    None => t.parse().ok(),
                }
            }
        }
    )*};
}

tpl_int! {
    u8 => "an integer from 0 to 255",
    u16 => "an integer from 0 to 65535",
    u32 => "an integer from 0 to 4294967295",
    u64 => "an integer from 0 to 18446744073709551615",
    i8 => "an integer from -128 to 127",
    i16 => "an integer from -32768 to 32767",
    i32 => "an integer from -2147483648 to 2147483647",
    i64 => "an integer from -9223372036854775808 to 9223372036854775807",
}

impl TplScalar for ClientName {
    const EXPECTING: &'static str = "a client role (`public`, `management`, `lls`, `policy-test`, `spare`) or a client SAP number";
    fn from_text(s: &str) -> Option<Self> {
        let t = s.trim();
        if let Some(n) = u16::from_text(t) {
            return Some(ClientName::Sap(n));
        }
        crate::profile::roles::is_client_role(t).then(|| ClientName::Role(t.to_owned()))
    }
}

impl JsonSchema for ClientName {
    fn schema_name() -> Cow<'static, str> {
        "ClientName".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let roles: Vec<&str> = crate::profile::roles::CLIENT_ROLES
            .iter()
            .map(|(n, _)| *n)
            .collect();
        json_schema!({
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": 65535, "description": "A client SAP."},
                {"enum": roles, "description": "A client role, mapped to a SAP by the device profile."}
            ]
        })
    }
}

/// Whether a string is a template: it holds a `${name}` reference or a `$$` escape.
pub fn is_template(s: &str) -> bool {
    s.contains("${") || s.contains("$$")
}

impl<'de, T: TplScalar> Deserialize<'de> for Tpl<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<T: TplScalar> V<T> {
            fn lit<E: de::Error>(
                &self,
                text: &str,
                unexp: de::Unexpected<'_>,
            ) -> Result<Tpl<T>, E> {
                T::from_text(text)
                    .map(Tpl::Lit)
                    .ok_or_else(|| E::invalid_value(unexp, self))
            }
        }
        impl<'de, T: TplScalar> Visitor<'de> for V<T> {
            type Value = Tpl<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "{}, or a `${{name}}` variable", T::EXPECTING)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                if is_template(s) {
                    return Ok(Tpl::Var(s.to_owned()));
                }
                self.lit(s, de::Unexpected::Str(s))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                self.lit(&v.to_string(), de::Unexpected::Unsigned(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                self.lit(&v.to_string(), de::Unexpected::Signed(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                self.lit(&v.to_string(), de::Unexpected::Float(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                self.lit(&v.to_string(), de::Unexpected::Bool(v))
            }
        }
        if T::TEXT {
            d.deserialize_string(V(PhantomData))
        } else {
            d.deserialize_any(V(PhantomData))
        }
    }
}

impl<T: JsonSchema> JsonSchema for Tpl<T> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        format!("Tpl_{}", T::schema_name()).into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let lit = g.subschema_for::<T>();
        json_schema!({
            "anyOf": [
                lit,
                {
                    "type": "string",
                    "pattern": "\\$\\{",
                    "description": "A `${name}` reference to a suite variable or a saved value (`$$` is a literal `$`)."
                }
            ]
        })
    }
}

impl<'de> Deserialize<'de> for VarValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = VarValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a variable value: a text, a number or `true`/`false`")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<VarValue, E> {
                Ok(VarValue::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<VarValue, E> {
                Ok(VarValue::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<VarValue, E> {
                Ok(i64::try_from(v).map_or_else(|_| VarValue::Text(v.to_string()), VarValue::Int))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<VarValue, E> {
                Ok(VarValue::Text(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<VarValue, E> {
                Ok(VarValue::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for VarValue {
    fn schema_name() -> Cow<'static, str> {
        "VarValue".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A variable's default: a text, a number or a boolean.",
            "type": ["string", "integer", "number", "boolean"]
        })
    }
}

const CONFORMANCE_EXPECTING: &str =
    "a list of conformance bit names like `[get, set, action]`, or 6 hex digits like `007E1F`";

impl<'de> Deserialize<'de> for Conformance {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Conformance;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(CONFORMANCE_EXPECTING)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Conformance, A::Error> {
                let mut names = Vec::new();
                while let Some(n) = seq.next_element::<String>()? {
                    names.push(n);
                }
                Ok(Conformance::Names(names))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Conformance, E> {
                Ok(Conformance::Hex(v.to_owned()))
            }
            // Six decimal digits without a leading zero read as a YAML integer.
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Conformance, E> {
                Ok(Conformance::Hex(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Conformance {
    fn schema_name() -> Cow<'static, str> {
        "Conformance".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Proposed conformance: bit names (dlms-facts 2.4) or 6 hex digits.",
            "anyOf": [
                {
                    "type": "array",
                    "items": { "type": "string", "enum": super::vocab::CONFORMANCE_BITS }
                },
                { "type": "string", "pattern": "^[0-9A-Fa-f]{6}$" }
            ]
        })
    }
}

/// What `expect:` takes, for messages.
pub(crate) const EXPECT_EXPECTING: &str =
    "an outcome like `success` or `{exception: invocation-counter-error}`, or a list of them";

/// Outcomes written as a bare name; the others need a value (`{name: value}`).
const UNIT_OUTCOMES: &[&str] = &["success", "silence", "disconnect"];

impl<'de> Deserialize<'de> for Expect {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Expect;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(EXPECT_EXPECTING)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Expect, E> {
                if !UNIT_OUTCOMES.contains(&v) && super::vocab::OUTCOMES.contains(&v) {
                    return Err(E::custom(format!(
                        "outcome `{v}` needs a value: write it as a map, e.g. `{{{v}: {}}}`",
                        outcome_example(v)
                    )));
                }
                let de: de::value::StrDeserializer<'_, E> = v.into_deserializer();
                Outcome::deserialize(de).map(Expect::One)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Expect, A::Error> {
                let mut v = Vec::new();
                while let Some(o) = seq.next_element_seed(OutcomeSeed)? {
                    v.push(o);
                }
                if v.is_empty() {
                    return Err(de::Error::custom(
                        "an empty list of outcomes accepts nothing: list at least one, e.g. `[success]`",
                    ));
                }
                Ok(Expect::AnyOf(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Expect, A::Error> {
                Outcome::deserialize(MapAccessDeserializer::new(map)).map(Expect::One)
            }
        }
        d.deserialize_any(V)
    }
}

/// One outcome inside `expect: [...]`: a bare name goes through the same checks as
/// `expect: name`, a map through the derived `Outcome` deserializer.
struct OutcomeSeed;

impl<'de> de::DeserializeSeed<'de> for OutcomeSeed {
    type Value = Outcome;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Outcome, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Outcome;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an outcome like `success` or `{exception: invocation-counter-error}`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Outcome, E> {
                match Expect::deserialize(de::value::StrDeserializer::<E>::new(v))? {
                    Expect::One(o) => Ok(o),
                    Expect::AnyOf(_) => Err(E::custom("nested list of outcomes")),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Outcome, A::Error> {
                Outcome::deserialize(MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_any(V)
    }
}

fn outcome_example(name: &str) -> &'static str {
    match name {
        "value" => "{unsigned: 5}",
        "type" => "octet-string",
        "result" => "read-write-denied",
        "rejected" => "{diagnostic: authentication-failure}",
        "initiate-error" => "dlms-version-too-low",
        "exception" => "invocation-counter-error",
        "frame" => "ua",
        "profile" => "replayed-counter",
        _ => "...",
    }
}

impl JsonSchema for Expect {
    fn schema_name() -> Cow<'static, str> {
        "Expect".into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let one = g.subschema_for::<Outcome>();
        json_schema!({
            "description": "Accepted outcomes: one, or a list of which any one passes.",
            "anyOf": [
                one,
                { "type": "array", "items": one, "minItems": 1 }
            ]
        })
    }
}
