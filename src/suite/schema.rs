//! JSON Schema (draft 2020-12) of the suite format, for editors: with the YAML
//! language server, a suite file that starts with
//! `# yaml-language-server: $schema=../suites/schema.json` gets completion and
//! checks as you type. Generated from the model with schemars; the checked-in copy
//! is `suites/schema.json` (a test keeps it current).

use schemars::{Schema, SchemaGenerator, json_schema};

use super::model::Suite;
use super::vocab;

/// The suite format's JSON Schema, pretty-printed (no trailing newline).
pub fn json_schema() -> String {
    let mut schema = schemars::schema_for!(Suite);
    schema.insert(
        "$id".into(),
        "https://example.invalid/idis-harness/suites/schema.json".into(),
    );
    let mut value = schema.to_value();
    drop_null_defaults(&mut value);
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

/// `"default": null` on optional fields says nothing and makes editors offer `null`.
fn drop_null_defaults(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            if m.get("default").is_some_and(serde_json::Value::is_null) {
                m.remove("default");
            }
            m.values_mut().for_each(drop_null_defaults);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(drop_null_defaults),
        _ => {}
    }
}

fn names_of(table: &[(&'static str, u8)]) -> Vec<&'static str> {
    vocab::names(table)
}

fn one_of_names(names: &[&str]) -> Schema {
    json_schema!({ "type": "string", "enum": names })
}

/// A `${name}` template, accepted wherever a [`super::model::Tpl`] is.
fn template() -> serde_json::Value {
    serde_json::json!({ "type": "string", "pattern": "\\$\\{" })
}

pub(crate) fn object_role(_: &mut SchemaGenerator) -> Schema {
    one_of_names(&crate::profile::roles::object_role_names())
}

pub(crate) fn mechanism(_: &mut SchemaGenerator) -> Schema {
    one_of_names(vocab::MECHANISMS)
}

pub(crate) fn security(_: &mut SchemaGenerator) -> Schema {
    one_of_names(vocab::SECURITY)
}

pub(crate) fn ciphering(_: &mut SchemaGenerator) -> Schema {
    one_of_names(vocab::CIPHERING)
}

pub(crate) fn tamper(_: &mut SchemaGenerator) -> Schema {
    one_of_names(vocab::TAMPER)
}

pub(crate) fn check_op(_: &mut SchemaGenerator) -> Schema {
    one_of_names(vocab::CHECK_OPS)
}

pub(crate) fn frame(_: &mut SchemaGenerator) -> Schema {
    one_of_names(vocab::FRAMES)
}

pub(crate) fn result(_: &mut SchemaGenerator) -> Schema {
    one_of_names(&names_of(vocab::RESULTS))
}

pub(crate) fn exception(_: &mut SchemaGenerator) -> Schema {
    let mut n = vec![vocab::EXCEPTION_ANY];
    n.extend(names_of(vocab::EXCEPTIONS));
    one_of_names(&n)
}

pub(crate) fn initiate_error(_: &mut SchemaGenerator) -> Schema {
    one_of_names(&names_of(vocab::INITIATE_ERRORS))
}

pub(crate) fn reject_result(_: &mut SchemaGenerator) -> Schema {
    one_of_names(&names_of(vocab::REJECT_RESULTS))
}

pub(crate) fn diagnostic(_: &mut SchemaGenerator) -> Schema {
    let mut n = names_of(vocab::ACSE_USER_DIAGNOSTICS);
    n.extend(names_of(vocab::ACSE_PROVIDER_DIAGNOSTICS));
    json_schema!({
        "anyOf": [
            { "type": "string", "enum": n },
            { "type": "integer", "minimum": 0, "maximum": 255 },
            { "type": "string", "pattern": "^[0-9]+$" }
        ]
    })
}

pub(crate) fn context(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [
            { "type": "string", "enum": names_of(vocab::APPLICATION_CONTEXTS) },
            { "type": "string", "pattern": "^[0-9]+(\\.[0-9]+)+$" }
        ]
    })
}

pub(crate) fn key_id(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [
            { "type": "string", "enum": names_of(vocab::KEY_IDS) },
            { "type": "integer", "minimum": 0, "maximum": 255 }
        ]
    })
}

pub(crate) fn key_value(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [
            { "type": "string", "enum": vocab::KEY_WORDS },
            { "type": "string", "pattern": "^[0-9A-Fa-f\\s]*$" },
            template()
        ]
    })
}

pub(crate) fn policy(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [
            { "type": "string", "enum": names_of(vocab::SECURITY_POLICIES) },
            { "type": "integer", "minimum": 0, "maximum": 255 },
            template()
        ]
    })
}

pub(crate) fn counter(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [
            { "type": "string", "pattern": "^(next|last|last-[0-9]+|\\+[0-9]+|[0-9]+|0[xX][0-9A-Fa-f]+)$" },
            { "type": "integer", "minimum": 0, "maximum": 4294967295u32 },
            template()
        ]
    })
}

pub(crate) fn hdlc_control(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [
            { "type": "string", "enum": vocab::HDLC_CONTROLS },
            { "type": "string", "pattern": "^[0-9A-Fa-f]{2}$" }
        ]
    })
}

pub(crate) fn checksum(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [
            { "type": "string", "enum": [vocab::BAD_CHECKSUM] },
            { "type": "string", "pattern": "^[0-9A-Fa-f\\s]*$" }
        ]
    })
}

pub(crate) fn data_type(_: &mut SchemaGenerator) -> Schema {
    let names = names_of(vocab::DATA_TYPES);
    json_schema!({
        "type": "string",
        "pattern": format!("^({})(\\([0-9]+\\))?$", names.join("|")),
        "examples": ["octet-string", "octet-string(16)", "structure(3)"]
    })
}

pub(crate) fn duration(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "examples": ["200ms", "1s", "2m"] })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECKED_IN: &str = "suites/schema.json";

    #[test]
    fn checked_in_schema_is_current() {
        let want = format!("{}\n", json_schema());
        if std::env::var_os("UPDATE_SCHEMA").is_some_and(|v| v == "1") {
            std::fs::create_dir_all("suites").unwrap();
            std::fs::write(CHECKED_IN, &want).unwrap();
            return;
        }
        let have = std::fs::read_to_string(CHECKED_IN).unwrap_or_default();
        assert!(
            have == want,
            "{CHECKED_IN} is out of date: run `cargo run -- schema > suites/schema.json` \
             (or `UPDATE_SCHEMA=1 cargo test --lib schema`)"
        );
    }

    #[test]
    fn schema_names_the_vocabularies() {
        let s: serde_json::Value = serde_json::from_str(&json_schema()).unwrap();
        let text = s.to_string();
        for name in [
            "hls-gmac",
            "invocation-counter-error",
            "read-write-denied",
            "get",
            "octet-string",
        ] {
            assert!(text.contains(name), "{name}");
        }
        assert_eq!(s["title"], "Suite");
        assert!(s["required"].as_array().unwrap().contains(&"cases".into()));
    }
}
