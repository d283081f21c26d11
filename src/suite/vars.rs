//! Suite variables: `${name}` templates and their values.
//!
//! A suite declares its variables with defaults under `vars:`. A run may override
//! them, with this precedence (highest first): `--var name=value` on the command
//! line, a vars file (a YAML map), environment variables `IDIS_VAR_<NAME>`, the
//! suite's default. In the environment, `<NAME>` is the variable's name in upper
//! case with `-` written as `_` (`IDIS_VAR_CLIENT_SAP` sets `client-sap` or
//! `client_sap`). Overriding a name that no loaded suite declares is an error,
//! so a typo never goes unnoticed.
//!
//! In templates, `${name}` is replaced by the value and `$$` is a literal `$`; a `$`
//! followed by anything else is kept as is.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::diag::{SuiteError, did_you_mean};
use super::loader::{LoadedSuite, read_source, yaml_error, yaml_options};
use super::model::{Suite, Tpl, VarValue};

/// The environment variable prefix for overrides.
pub const ENV_PREFIX: &str = "IDIS_VAR_";

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part<'a> {
    /// Literal text.
    Lit(&'a str),
    /// `$$`: a literal `$`.
    Dollar,
    /// `${name}`, with the byte offset of the `$` in the template.
    Var(&'a str, usize),
}

/// Why a template cannot be read: the message and the byte offset it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateError {
    pub message: String,
    pub offset: usize,
}

/// Whether `name` can be a variable name: a letter or `_`, then letters, digits, `_` or `-`.
pub fn is_valid_name(name: &str) -> bool {
    let mut cs = name.chars();
    cs.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Split a template into literal text, `$$` escapes and `${name}` references.
pub(crate) fn parse_template(s: &str) -> Result<Vec<Part<'_>>, TemplateError> {
    let mut parts = Vec::new();
    let mut lit_start = 0;
    let mut i = 0;
    let bytes = s.as_bytes();
    while let Some(&b) = bytes.get(i) {
        if b != b'$' {
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'$') => {
                if let Some(l) = s.get(lit_start..i).filter(|l| !l.is_empty()) {
                    parts.push(Part::Lit(l));
                }
                parts.push(Part::Dollar);
                i += 2;
                lit_start = i;
            }
            Some(b'{') => {
                if let Some(l) = s.get(lit_start..i).filter(|l| !l.is_empty()) {
                    parts.push(Part::Lit(l));
                }
                let rest = s.get(i + 2..).unwrap_or("");
                let Some(end) = rest.find('}') else {
                    return Err(TemplateError {
                        message: "unterminated `${`: a variable is written `${name}`".into(),
                        offset: i,
                    });
                };
                let name = rest.get(..end).unwrap_or("");
                if !is_valid_name(name) {
                    return Err(TemplateError {
                        message: format!(
                            "invalid variable name `{name}`: use a letter or `_`, then letters, digits, `_` or `-`"
                        ),
                        offset: i,
                    });
                }
                parts.push(Part::Var(name, i));
                i += 2 + end + 1;
                lit_start = i;
            }
            _ => i += 1,
        }
    }
    if let Some(l) = s.get(lit_start..).filter(|l| !l.is_empty()) {
        parts.push(Part::Lit(l));
    }
    Ok(parts)
}

/// Variables every case has, from the device profile, without declaring them.
pub const PROFILE_VARS: &[(&str, &str)] = &[
    (
        "client_system_title",
        "the system title of the case's client, as the device profile gives it (hex)",
    ),
    (
        "server_system_title",
        "the meter's system title: the device profile's, else the one the AARE of this case carried (hex)",
    ),
    (
        "security_setup_ln",
        "the logical name of the case client's security setup object (12 hex digits)",
    ),
    (
        "hdlc_server_address",
        "the meter's HDLC address as the device profile gives it (hex, 1, 2 or 4 bytes)",
    ),
    (
        "hdlc_server_address_other_form",
        "the same HDLC address in another size than the meter's (hex)",
    ),
    (
        "hdlc_server_address_unknown",
        "an HDLC server address in the meter's size with another physical (or logical) address (hex)",
    ),
    (
        "hdlc_client_address",
        "the case client's HDLC address (hex, one byte)",
    ),
    (
        "hdlc_client_address_two_bytes",
        "a two-byte source address, which no client has (hex)",
    ),
    (
        "probe_get",
        "a plain get-request (invoke-id C1) for attribute 2 of the profile's `probe` object (hex)",
    ),
];

/// Replace each `${name}` in `template` by its value in `vars`; `$$` gives `$`.
/// An unknown name or a malformed reference is an error (with a did-you-mean hint).
pub fn resolve(template: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let parts = parse_template(template).map_err(|e| e.message)?;
    let mut out = String::with_capacity(template.len());
    for p in parts {
        match p {
            Part::Lit(l) => out.push_str(l),
            Part::Dollar => out.push('$'),
            Part::Var(name, _) => match vars.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    let names: Vec<&str> = vars.keys().map(String::as_str).collect();
                    let hint = did_you_mean(name, &names)
                        .map(|n| format!("; did you mean `{n}`?"))
                        .unwrap_or_default();
                    return Err(format!("undefined variable `{name}`{hint}"));
                }
            },
        }
    }
    Ok(out)
}

impl<T: FromStr + Clone> Tpl<T>
where
    T::Err: fmt::Display,
{
    /// The value: the literal, or the template resolved against `vars` and parsed as `T`
    /// (for `Tpl<String>` the resolved text itself).
    pub fn resolve(&self, vars: &BTreeMap<String, String>) -> Result<T, String> {
        match self {
            Tpl::Lit(v) => Ok(v.clone()),
            Tpl::Var(t) => {
                let s = resolve(t, vars)?;
                s.parse::<T>()
                    .map_err(|e| format!("`{t}` resolves to `{s}`, which is not valid here: {e}"))
            }
        }
    }
}

/// Where a variable's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarSource {
    /// `--var name=value`.
    Cli,
    /// The vars file.
    File,
    /// An `IDIS_VAR_<NAME>` environment variable.
    Env,
    /// The suite's `vars:` default.
    Default,
}

/// Overrides for suite variables from the command line, a vars file and the environment.
#[derive(Debug, Clone, Default)]
pub struct VarOverrides {
    cli: BTreeMap<String, String>,
    file: BTreeMap<String, String>,
    file_path: Option<PathBuf>,
    /// Keyed by the part after [`ENV_PREFIX`], as written.
    env: BTreeMap<String, String>,
}

impl VarOverrides {
    /// No overrides.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add one `--var name=value` (a later one for the same name wins).
    pub fn add_cli(&mut self, arg: &str) -> Result<(), String> {
        let Some((k, v)) = arg.split_once('=') else {
            return Err(format!("`--var {arg}`: expected `name=value`"));
        };
        let k = k.trim();
        if !is_valid_name(k) {
            return Err(format!(
                "`--var {arg}`: `{k}` is not a variable name (a letter or `_`, then letters, digits, `_` or `-`)"
            ));
        }
        self.cli.insert(k.to_owned(), v.to_owned());
        Ok(())
    }

    /// Add several `--var name=value` arguments.
    pub fn with_cli<I, S>(mut self, args: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for a in args {
            self.add_cli(a.as_ref())?;
        }
        Ok(self)
    }

    /// Read a vars file: a YAML map of names to text, numbers or booleans. Errors are
    /// located like suite errors.
    pub fn load_file(&mut self, path: &Path) -> Result<(), SuiteError> {
        let source = read_source(path, "vars file")?;
        let map: BTreeMap<String, VarValue> =
            serde_saphyr::from_str_with_options(&source, yaml_options())
                .map_err(|e| yaml_error(&e, &source).into_error(path, &source))?;
        for (k, v) in map {
            if !is_valid_name(&k) {
                return Err(super::diag::Diagnostic::new(format!(
                    "`{k}` is not a variable name (a letter or `_`, then letters, digits, `_` or `-`)"
                ))
                .into_error(path, &source));
            }
            self.file.insert(k, v.to_string());
        }
        self.file_path = Some(path.to_path_buf());
        Ok(())
    }

    /// Take the `IDIS_VAR_*` entries of an environment (other entries are ignored).
    pub fn add_env<I, K, V>(&mut self, vars: I)
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        for (k, v) in vars {
            if let Some(name) = k.as_ref().strip_prefix(ENV_PREFIX)
                && !name.is_empty()
            {
                self.env.insert(name.to_owned(), v.into());
            }
        }
    }

    /// Take the `IDIS_VAR_*` variables of this process's environment (non-UTF-8 ones are skipped).
    pub fn with_process_env(mut self) -> Self {
        self.add_env(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        );
        self
    }

    fn env_for(&self, name: &str) -> Option<&String> {
        self.env.get(name).or_else(|| self.env.get(&env_name(name)))
    }

    /// The value of `name` for `suite` and where it came from; `None` if the suite does
    /// not declare it.
    pub fn lookup(&self, suite: &Suite, name: &str) -> Option<(String, VarSource)> {
        let default = suite.vars.get(name)?;
        if let Some(v) = self.cli.get(name) {
            return Some((v.clone(), VarSource::Cli));
        }
        if let Some(v) = self.file.get(name) {
            return Some((v.clone(), VarSource::File));
        }
        if let Some(v) = self.env_for(name) {
            return Some((v.clone(), VarSource::Env));
        }
        Some((default.to_string(), VarSource::Default))
    }

    /// Every variable `suite` declares, with its effective value.
    pub fn vars_for(&self, suite: &Suite) -> BTreeMap<String, String> {
        suite
            .vars
            .keys()
            .filter_map(|k| self.lookup(suite, k).map(|(v, _)| (k.clone(), v)))
            .collect()
    }

    /// Overrides that no loaded suite declares, one message each (naming where the
    /// override came from, with a did-you-mean hint). Empty when all are known.
    pub fn unknown(&self, suites: &[LoadedSuite]) -> Vec<String> {
        let declared: std::collections::BTreeSet<&str> = suites
            .iter()
            .flat_map(|s| s.suite.vars.keys().map(String::as_str))
            .collect();
        let names: Vec<&str> = declared.iter().copied().collect();
        let hint = |n: &str| {
            did_you_mean(n, &names)
                .map(|m| format!("; did you mean `{m}`?"))
                .unwrap_or_default()
        };
        let mut out = Vec::new();
        for k in self.cli.keys() {
            if !declared.contains(k.as_str()) {
                out.push(format!(
                    "`--var {k}=...`: no loaded suite declares a variable `{k}`{}",
                    hint(k)
                ));
            }
        }
        let file = self
            .file_path
            .as_deref()
            .map(super::diag::display_path)
            .unwrap_or_else(|| "vars file".into());
        for k in self.file.keys() {
            if !declared.contains(k.as_str()) {
                out.push(format!(
                    "{file}: no loaded suite declares a variable `{k}`{}",
                    hint(k)
                ));
            }
        }
        for k in self.env.keys() {
            let known = declared.iter().any(|d| *d == k || env_name(d) == *k);
            if !known {
                let guess: String = k.to_lowercase().replace('_', "-");
                out.push(format!(
                    "environment variable `{ENV_PREFIX}{k}`: no loaded suite declares a variable `{k}`{}",
                    hint(&guess)
                ));
            }
        }
        out
    }
}

/// The `<NAME>` part of the environment variable for suite variable `name`.
pub fn env_name(name: &str) -> String {
    name.to_uppercase().replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::loader::load_source;
    use crate::suite::validate::ValidationContext;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn resolves_templates() {
        let v = vars(&[("a", "1"), ("b-c", "x")]);
        assert_eq!(resolve("${a}-${b-c}", &v).unwrap(), "1-x");
        assert_eq!(resolve("$$${a}$x$", &v).unwrap(), "$1$x$");
        assert_eq!(resolve("plain", &v).unwrap(), "plain");
        assert_eq!(resolve("", &v).unwrap(), "");
    }

    #[test]
    fn rejects_bad_templates() {
        let v = vars(&[("client", "1")]);
        assert_eq!(
            resolve("${clinet}", &v).unwrap_err(),
            "undefined variable `clinet`; did you mean `client`?"
        );
        assert!(resolve("${a", &v).unwrap_err().contains("unterminated"));
        assert!(
            resolve("${1a}", &v)
                .unwrap_err()
                .contains("invalid variable name")
        );
        assert!(resolve("${}", &v).is_err());
    }

    #[test]
    fn resolves_tpl_values() {
        let v = vars(&[("c", "16"), ("t", "0102")]);
        assert_eq!(Tpl::<u16>::Lit(1).resolve(&v), Ok(1));
        assert_eq!(Tpl::<u16>::Var("${c}".into()).resolve(&v), Ok(16));
        assert!(Tpl::<u16>::Var("${t}x".into()).resolve(&v).is_err());
        assert_eq!(
            Tpl::<String>::Var("AA${t}".into()).resolve(&v),
            Ok("AA0102".into())
        );
    }

    fn suite(vars_yaml: &str) -> LoadedSuite {
        let src = format!(
            "suite: s\ntitle: t\nvars:\n{vars_yaml}cases:\n  - id: a\n    title: t\n    checks: c\n    steps:\n      - wait: 1ms\n"
        );
        load_source(Path::new("s.yaml"), src, &ValidationContext::default()).unwrap()
    }

    #[test]
    fn overrides_follow_the_precedence() {
        let s = suite("  client: 1\n  key-id: 0\n  flag: true\n  text: '007'\n");
        let mut o = VarOverrides::new().with_cli(["client=16"]).unwrap();
        o.file.insert("client".into(), "32".into());
        o.file.insert("key-id".into(), "2".into());
        o.add_env([
            ("IDIS_VAR_CLIENT", "48"),
            ("IDIS_VAR_KEY_ID", "3"),
            ("IDIS_VAR_FLAG", "false"),
            ("PATH", "/bin"),
        ]);
        let v = o.vars_for(&s.suite);
        assert_eq!(
            v,
            vars(&[
                ("client", "16"),
                ("key-id", "2"),
                ("flag", "false"),
                ("text", "007")
            ])
        );
        assert_eq!(
            o.lookup(&s.suite, "text"),
            Some(("007".into(), VarSource::Default))
        );
        assert_eq!(
            o.lookup(&s.suite, "flag"),
            Some(("false".into(), VarSource::Env))
        );
        assert!(o.unknown(std::slice::from_ref(&s)).is_empty());
    }

    #[test]
    fn reports_unknown_overrides() {
        let s = suite("  client: 1\n");
        let mut o = VarOverrides::new().with_cli(["clinet=16"]).unwrap();
        o.add_env([("IDIS_VAR_NOPE", "1")]);
        assert_eq!(
            o.unknown(std::slice::from_ref(&s)),
            vec![
                "`--var clinet=...`: no loaded suite declares a variable `clinet`; did you mean `client`?".to_string(),
                "environment variable `IDIS_VAR_NOPE`: no loaded suite declares a variable `NOPE`".to_string(),
            ]
        );
        assert!(VarOverrides::new().add_cli("novalue").is_err());
        assert!(VarOverrides::new().add_cli("9x=1").is_err());
    }

    #[test]
    fn reads_a_vars_file() {
        let dir = std::env::temp_dir().join(format!("idis-vars-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.yaml");
        std::fs::write(&good, "client: 16\npassword: '00112233'\nverbose: true\n").unwrap();
        let mut o = VarOverrides::new();
        o.load_file(&good).unwrap();
        assert_eq!(o.file.get("client").map(String::as_str), Some("16"));
        assert_eq!(o.file.get("password").map(String::as_str), Some("00112233"));
        assert_eq!(o.file.get("verbose").map(String::as_str), Some("true"));
        let bad = dir.join("bad.yaml");
        std::fs::write(&bad, "client: [1, 2]\n").unwrap();
        let e = VarOverrides::new().load_file(&bad).unwrap_err();
        assert_eq!(e.line, Some(1));
        assert!(e.rendered.contains("expected a variable value"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
