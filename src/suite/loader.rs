//! Loading suite files: read with size limits, parse with serde-saphyr (YAML 1.2,
//! anchors, aliases and `<<` merge keys), turn parse errors into located
//! diagnostics with did-you-mean hints, then run the semantic checks of
//! [`super::validate`].

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_saphyr::budget::BudgetBreach;
use serde_saphyr::{DefaultMessageFormatter, Error as YamlError, MessageFormatter};

use super::diag::{Diagnostic, Span, SuiteError, display_path, source_line, suggestion};
use super::model::Suite;
use super::spans::{self, Kind, Seg};
use super::validate::{ValidationContext, validate_suite};
use super::vocab;

/// A suite file that parsed and passed validation.
#[derive(Debug, Clone)]
pub struct LoadedSuite {
    /// The file as the caller named it.
    pub path: PathBuf,
    /// Its text, for diagnostics that quote it later (the runner's step failures).
    pub source: String,
    /// The parsed suite.
    pub suite: Suite,
}

impl LoadedSuite {
    /// Where step `step` of case `case` is (its name, e.g. `get`), for runtime
    /// diagnostics; `teardown` selects the teardown list. Parses the text again
    /// (suite files are small), so call it when reporting, not per step.
    pub fn step_span(&self, case: usize, teardown: bool, step: usize) -> Option<Span> {
        let tree = spans::parse(&self.source)?;
        let node = tree.get(&step_path(case, teardown, step))?;
        Some(self.with_token_len(node.at))
    }

    /// Where the `expect:` value of a step is (falling back to the step itself when it
    /// has none), for "expected ..., got ..." failures.
    pub fn expect_span(&self, case: usize, teardown: bool, step: usize) -> Option<Span> {
        let tree = spans::parse(&self.source)?;
        let step_node = tree.get(&step_path(case, teardown, step))?;
        let at = match &step_node.kind {
            Kind::Map(entries) => entries
                .first()
                .and_then(|(_, body)| body.get(&[Seg::from("expect")]))
                .map_or(step_node.at, |n| n.at),
            _ => step_node.at,
        };
        Some(self.with_token_len(at))
    }

    /// Render `d` against this suite's file and text.
    pub fn render(&self, d: &Diagnostic) -> String {
        d.render(&self.path, &self.source)
    }

    fn with_token_len(&self, at: Span) -> Span {
        let chars = line_chars(&self.source, at.line);
        let len = token_len(&chars, at.column.saturating_sub(1) as usize) as u32;
        Span { len, ..at }
    }
}

fn step_path(case: usize, teardown: bool, step: usize) -> [Seg; 4] {
    [
        Seg::from("cases"),
        Seg::Index(case),
        Seg::from(if teardown { "teardown" } else { "steps" }),
        Seg::Index(step),
    ]
}

/// Largest suite (or vars) file the loader reads: 1 MiB. Suite files are a few kB.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// Most parser events (scalars, collection starts and ends, aliases) in one file.
pub const MAX_EVENTS: usize = 200_000;
/// Most nodes (scalars, lists, maps) in one file.
pub const MAX_NODES: usize = 100_000;
/// Deepest nesting of lists and maps.
pub const MAX_DEPTH: usize = 40;
/// Most aliases (`*name`) and most anchors (`&name`) in one file.
pub const MAX_ALIASES: usize = 2_000;
/// Most anchors in one file.
pub const MAX_ANCHORS: usize = 2_000;
/// Most merge keys (`<<`) in one file.
pub const MAX_MERGE_KEYS: usize = 2_000;
/// Most events replayed from aliases in one file (what stops a billion laughs).
pub const MAX_REPLAYED_EVENTS: usize = 100_000;
/// Deepest alias-inside-alias replay.
pub const MAX_REPLAY_DEPTH: usize = 16;

/// The serde-saphyr options for suite and vars files.
///
/// Suite files are small, hand-written YAML, so the limits are tight and explicit
/// rather than the library's generous defaults: at most [`MAX_FILE_BYTES`] of input
/// (checked before parsing), [`MAX_EVENTS`] parser events, [`MAX_NODES`] nodes,
/// nesting depth [`MAX_DEPTH`], [`MAX_ALIASES`] aliases, [`MAX_ANCHORS`] anchors,
/// [`MAX_MERGE_KEYS`] merge keys, one document, 1 MiB of scalar text, and at most
/// [`MAX_REPLAYED_EVENTS`] events replayed through aliases (nested at most
/// [`MAX_REPLAY_DEPTH`] deep). A YAML bomb ("billion laughs") trips the replay limit
/// and is reported with the location of the alias that went over it. The library's
/// alias/anchor ratio heuristic is off: one template anchor merged into hundreds of
/// steps is normal here, and the replay limit bounds the cost anyway.
///
/// Other choices: YAML 1.2 booleans only (`true`/`false`; `yes`/`no`/`on`/`off` are
/// text, never booleans); numbers with leading zeros such as `0102` stay text where
/// the type is open (variable values, conformance); duplicate keys are an error;
/// merge keys are expanded.
pub(crate) fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: Some(MAX_FILE_BYTES as usize),
            max_events: MAX_EVENTS,
            max_nodes: MAX_NODES,
            max_depth: MAX_DEPTH,
            max_aliases: MAX_ALIASES,
            max_anchors: MAX_ANCHORS,
            max_merge_keys: MAX_MERGE_KEYS,
            max_documents: 1,
            max_total_scalar_bytes: MAX_FILE_BYTES as usize,
            max_inclusion_depth: 0,
            enforce_alias_anchor_ratio: false,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_REPLAYED_EVENTS,
            max_replay_stack_depth: MAX_REPLAY_DEPTH,
        },
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        with_snippet: false,
    }
}

/// Load and validate one suite file; the first problem is the error.
/// Use [`load_file_all_errors`] (or [`load_paths`]) to get every problem.
pub fn load_file(path: &Path, ctx: &ValidationContext) -> Result<LoadedSuite, SuiteError> {
    load_file_all_errors(path, ctx).map_err(first_error)
}

/// Load and validate one suite file, reporting every semantic problem (a YAML or
/// type error stops the parse, so there is one of those at most).
pub fn load_file_all_errors(
    path: &Path,
    ctx: &ValidationContext,
) -> Result<LoadedSuite, Vec<SuiteError>> {
    let source = read_source(path, "suite file").map_err(|e| vec![e])?;
    load_source(path, source, ctx)
}

/// Parse and validate suite text that came from `path` (named in diagnostics only).
pub fn load_source(
    path: &Path,
    source: String,
    ctx: &ValidationContext,
) -> Result<LoadedSuite, Vec<SuiteError>> {
    let suite: Suite = match serde_saphyr::from_str_with_options(&source, yaml_options()) {
        Ok(s) => s,
        Err(e) => {
            // serde stops at the first type error, which can be a symptom of a YAML
            // problem further on (a mis-indented key closes a map early): when the file
            // is not valid YAML at all, that is the error to show.
            let e = spans::parse_error(&source).unwrap_or(e);
            return Err(vec![yaml_error(&e, &source).into_error(path, &source)]);
        }
    };
    let tree = spans::parse(&source);
    let diags = validate_suite(&suite, tree.as_ref(), &source, ctx);
    if diags.is_empty() {
        Ok(LoadedSuite {
            path: path.to_path_buf(),
            source,
            suite,
        })
    } else {
        Err(diags
            .into_iter()
            .map(|d| d.into_error(path, &source))
            .collect())
    }
}

/// Load every suite under `paths`: a file is loaded whatever its name; a directory is
/// searched recursively for `*.yaml` / `*.yml`, in sorted order, skipping names that
/// start with `.`. A file named twice is loaded once. Every problem in every file is
/// collected; suites with problems are left out of the first list. Suite ids must be
/// unique across the files (they name JUnit test suites).
pub fn load_paths(
    paths: &[PathBuf],
    ctx: &ValidationContext,
) -> (Vec<LoadedSuite>, Vec<SuiteError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        collect_files(p, true, &mut files, &mut errors);
    }
    let mut seen = std::collections::HashSet::new();
    let mut loaded: Vec<LoadedSuite> = Vec::new();
    let mut ids: BTreeMap<String, (PathBuf, Option<Span>)> = BTreeMap::new();
    for f in files {
        let key = fs::canonicalize(&f).unwrap_or_else(|_| f.clone());
        if !seen.insert(key) {
            continue;
        }
        match load_file_all_errors(&f, ctx) {
            Ok(s) => {
                let here = spans::parse(&s.source)
                    .and_then(|t| t.get(&[Seg::from("suite")]).map(|n| n.at));
                if let Some((other, other_at)) = ids.get(&s.suite.suite) {
                    let mut d = Diagnostic::new(format!("duplicate suite id `{}`", s.suite.suite));
                    if let Some(sp) = here {
                        d = d.at(sp, "already used by another file");
                    }
                    let first = match other_at {
                        Some(a) => format!("{}:{}:{}", display_path(other), a.line, a.column),
                        None => display_path(other),
                    };
                    d = d.note(format!("first used in {first}; suite ids name the JUnit test suites, so each must be unique"));
                    errors.push(d.into_error(&s.path, &s.source));
                } else {
                    ids.insert(s.suite.suite.clone(), (s.path.clone(), here));
                    loaded.push(s);
                }
            }
            Err(es) => errors.extend(es),
        }
    }
    (loaded, errors)
}

fn collect_files(p: &Path, top: bool, files: &mut Vec<PathBuf>, errors: &mut Vec<SuiteError>) {
    let meta = match fs::metadata(p) {
        Ok(m) => m,
        Err(e) => {
            let what = if top { "suite path" } else { "suite file" };
            errors.push(Diagnostic::new(format!("cannot read {what}: {e}")).into_error(p, ""));
            return;
        }
    };
    if !meta.is_dir() {
        files.push(p.to_path_buf());
        return;
    }
    let entries = match fs::read_dir(p) {
        Ok(rd) => rd,
        Err(e) => {
            errors.push(Diagnostic::new(format!("cannot read directory: {e}")).into_error(p, ""));
            return;
        }
    };
    let mut names: Vec<(std::ffi::OsString, PathBuf)> = Vec::new();
    for entry in entries {
        match entry {
            Ok(en) => names.push((en.file_name(), en.path())),
            Err(e) => errors
                .push(Diagnostic::new(format!("cannot read directory: {e}")).into_error(p, "")),
        }
    }
    names.sort();
    for (name, path) in names {
        let n = name.to_string_lossy();
        if n.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect_files(&path, false, files, errors);
        } else if n != "schema.json" && (n.ends_with(".yaml") || n.ends_with(".yml")) {
            files.push(path);
        }
    }
}

fn first_error(mut v: Vec<SuiteError>) -> SuiteError {
    if v.is_empty() {
        // Not reached: the loader never reports an empty error list.
        return SuiteError {
            file: PathBuf::new(),
            line: None,
            column: None,
            message: "unknown error".into(),
            rendered: "error: unknown error".into(),
        };
    }
    v.swap_remove(0)
}

/// Read a YAML file of at most [`MAX_FILE_BYTES`] as UTF-8 text; `what` names it in errors.
pub(crate) fn read_source(path: &Path, what: &str) -> Result<String, SuiteError> {
    let fail = |msg: String| Diagnostic::new(msg).into_error(path, "");
    let meta = fs::metadata(path).map_err(|e| fail(format!("cannot read {what}: {e}")))?;
    if meta.is_dir() {
        return Err(fail(format!("cannot read {what}: it is a directory")));
    }
    let too_big = |n: u64| {
        fail(format!(
            "{what} is too large: {n} bytes, the limit is {MAX_FILE_BYTES} (1 MiB)"
        ))
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_big(meta.len()));
    }
    let file = fs::File::open(path).map_err(|e| fail(format!("cannot read {what}: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read {what}: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        let good = e.utf8_error().valid_up_to();
        let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
        let before = e.as_bytes().get(..good).unwrap_or_default();
        let line = before.iter().filter(|b| **b == b'\n').count() as u32 + 1;
        let col_start = before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(before.get(col_start..).unwrap_or_default())
            .chars()
            .count() as u32
            + 1;
        Diagnostic::new(format!("{what} is not valid UTF-8"))
            .at(
                Span {
                    line,
                    column,
                    len: 1,
                },
                "this byte",
            )
            .help("save the file as UTF-8")
            .into_error(path, &text)
    })
}

// ---------------------------------------------------------------------------
// Parse errors

/// The text of line `line` as characters (empty when out of range).
fn line_chars(source: &str, line: u32) -> Vec<char> {
    source_line(source, line).unwrap_or("").chars().collect()
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// How many characters the YAML token starting at `col0` spans: a quoted scalar to its
/// closing quote, a plain scalar up to a flow indicator, `: `, ` #` or the line end,
/// one character for `[`, `{`, `-` and the like.
pub(crate) fn token_len(line: &[char], col0: usize) -> usize {
    let Some(&first) = line.get(col0) else {
        return 1;
    };
    if first == '"' || first == '\'' {
        let mut i = col0 + 1;
        while let Some(&c) = line.get(i) {
            if c == '\\' && first == '"' {
                i += 2;
                continue;
            }
            if c == first {
                return i + 1 - col0;
            }
            i += 1;
        }
        return line.len() - col0;
    }
    if matches!(
        first,
        '[' | ']' | '{' | '}' | ',' | '-' | '*' | '&' | '!' | '|' | '>'
    ) {
        let next = line.get(col0 + 1).copied().unwrap_or(' ');
        if first != '-' || next == ' ' {
            if first == '*' || first == '&' {
                let n = line
                    .get(col0 + 1..)
                    .unwrap_or_default()
                    .iter()
                    .take_while(|c| is_word(**c))
                    .count();
                return n + 1;
            }
            return 1;
        }
    }
    let mut i = col0;
    let mut braces = 0usize;
    while let Some(&c) = line.get(i) {
        let next = line.get(i + 1).copied();
        if c == '$' && next == Some('{') {
            braces += 1;
        } else if c == '}' && braces > 0 {
            braces -= 1;
        } else if braces == 0 {
            if matches!(c, ',' | ']' | '}' | '[' | '{') {
                break;
            }
            if c == ':' && next.is_none_or(|n| n == ' ') {
                break;
            }
            if c == ' ' && next == Some('#') {
                break;
            }
        }
        i += 1;
    }
    let s: String = line.get(col0..i).unwrap_or_default().iter().collect();
    s.trim_end().chars().count().max(1)
}

/// If a map key starts at `col0`, the key and where its value starts on the same line.
fn key_at(line: &[char], col0: usize) -> Option<(String, Option<usize>)> {
    let mut i = col0;
    let quote = line.get(i).copied().filter(|c| *c == '"' || *c == '\'');
    let key: String = if let Some(q) = quote {
        i += 1;
        let start = i;
        while line.get(i).is_some_and(|c| *c != q) {
            i += 1;
        }
        let k = line.get(start..i)?.iter().collect();
        i += 1;
        k
    } else {
        let start = i;
        while line.get(i).is_some_and(|c| is_word(*c)) {
            i += 1;
        }
        line.get(start..i)?.iter().collect()
    };
    if key.is_empty() {
        return None;
    }
    while line.get(i) == Some(&' ') {
        i += 1;
    }
    if line.get(i) != Some(&':') {
        return None;
    }
    i += 1;
    if line.get(i).is_some_and(|c| *c != ' ') {
        return None;
    }
    while line.get(i) == Some(&' ') {
        i += 1;
    }
    match line.get(i) {
        None | Some('#') => Some((key, None)),
        Some(_) => Some((key, Some(i))),
    }
}

/// The key whose value starts at `col0` on this line (`key: value`), if any. A place at
/// the `:` itself (serde-saphyr puts empty values there) counts too.
fn key_before(line: &[char], col0: usize) -> Option<String> {
    let col0 = if line.get(col0) == Some(&':') {
        col0 + 1
    } else {
        col0
    };
    let before: String = line.get(..col0)?.iter().collect();
    let t = before.trim_end().strip_suffix(':')?;
    let t = t.trim_end();
    let key: String = if let Some(q) = t.chars().last().filter(|c| *c == '"' || *c == '\'') {
        let inner = t.strip_suffix(q)?;
        let start = inner.rfind(q)?;
        inner.get(start + 1..)?.to_owned()
    } else {
        let rev: String = t.chars().rev().take_while(|c| is_word(*c)).collect();
        rev.chars().rev().collect()
    };
    (!key.is_empty()).then_some(key)
}

/// What the node at a place looks like, for "found ..." in messages.
fn found_at(line: &[char], col0: usize) -> String {
    if line.get(col0) == Some(&':') {
        let rest = line.get(col0 + 1..).unwrap_or_default();
        let skip = rest.iter().take_while(|c| **c == ' ').count();
        return found_at(line, col0 + 1 + skip);
    }
    match line.get(col0) {
        None | Some('#') => "nothing".into(),
        Some('[') => "a list".into(),
        Some('{') => "a map".into(),
        Some('-') if line.get(col0 + 1).is_none_or(|c| *c == ' ') => "a list".into(),
        Some(_) => {
            if key_at(line, col0).is_some() {
                return "a map".into();
            }
            let t: String = line
                .get(col0..col0 + token_len(line, col0))
                .unwrap_or_default()
                .iter()
                .collect();
            format!("`{t}`")
        }
    }
}

/// A readable name for a Rust scalar type in serde-saphyr's `invalid <ty>` errors.
fn describe_type(ty: &str) -> String {
    match ty {
        "u8" | "u16" | "u32" | "u64" | "i8" | "i16" | "i32" | "i64" => {
            let e = match ty {
                "u8" => <u8 as super::TplScalar>::EXPECTING,
                "u16" => <u16 as super::TplScalar>::EXPECTING,
                "u32" => <u32 as super::TplScalar>::EXPECTING,
                "u64" => <u64 as super::TplScalar>::EXPECTING,
                "i8" => <i8 as super::TplScalar>::EXPECTING,
                "i16" => <i16 as super::TplScalar>::EXPECTING,
                "i32" => <i32 as super::TplScalar>::EXPECTING,
                _ => <i64 as super::TplScalar>::EXPECTING,
            };
            e.to_owned()
        }
        "bool" | "boolean" => "`true` or `false`".into(),
        "f32" | "f64" | "floating point" => "a number".into(),
        "char" => "a single character".into(),
        other => other.to_owned(),
    }
}

/// Readable wording for serde's and serde-saphyr's "expected" texts.
fn describe_expected(e: &str) -> String {
    match e {
        "string scalar" | "a string" | "string" => "a text".into(),
        "scalar" => "a single value".into(),
        "sequence start" | "a sequence" | "sequence" => "a list".into(),
        "mapping start" | "map" | "a map" => "a map (`key: value`)".into(),
        "empty mapping start" => "an empty map `{}`".into(),
        "a boolean" => "`true` or `false`".into(),
        "unit" => "nothing".into(),
        other => {
            if let Some(stripped) = other.strip_prefix("struct ") {
                return format!("a map of {} settings", stripped.to_lowercase());
            }
            if other.starts_with("enum ") || other.starts_with("variant identifier") {
                return "a one-key map naming the kind, e.g. `get: {...}`".into();
            }
            other.to_owned()
        }
    }
}

/// Which vocabulary an unknown-variant error is about, from serde's list of expected names.
fn variant_kind(expected: &[&str]) -> (&'static str, &'static [&'static str]) {
    if expected == vocab::STEPS {
        ("step", vocab::STEPS)
    } else if expected == vocab::OUTCOMES {
        ("outcome", vocab::OUTCOMES)
    } else if expected == vocab::DATA_SPECS {
        ("data type", vocab::DATA_SPECS)
    } else {
        ("name", &[])
    }
}

/// The place a located serde-saphyr error points at, as a [`Span`] of the source.
fn span_from(loc: &serde_saphyr::Location, source: &str) -> Option<Span> {
    let line = u32::try_from(loc.line()).ok().filter(|l| *l > 0)?;
    let column = u32::try_from(loc.column()).ok().filter(|c| *c > 0)?;
    let chars = line_chars(source, line);
    let col0 = column.saturating_sub(1) as usize;
    let reported = loc.span().len() as usize;
    let len = if reported > 0 && col0 + reported <= chars.len() {
        reported
    } else {
        token_len(&chars, col0)
    };
    Some(Span {
        line,
        column,
        len: len as u32,
    })
}

/// For errors that serde reports at the key of a `key: value` entry (a visitor's own
/// errors and type mismatches), move the caret to the value when it is on that line.
fn key_to_value(span: Span, source: &str) -> (Span, Option<String>) {
    let chars = line_chars(source, span.line);
    let col0 = span.column.saturating_sub(1) as usize;
    if let Some((key, Some(v))) = key_at(&chars, col0) {
        let s = Span {
            line: span.line,
            column: v as u32 + 1,
            len: token_len(&chars, v) as u32,
        };
        return (s, Some(key));
    }
    if let Some((key, None)) = key_at(&chars, col0) {
        return (span, Some(key));
    }
    let key = key_before(&chars, col0);
    (span, key)
}

/// Turn a serde-saphyr error into a diagnostic with our wording, did-you-mean hints and
/// the most precise place we can find.
pub(crate) fn yaml_error(err: &YamlError, source: &str) -> Diagnostic {
    let outer = err.without_snippet();
    let (inner, alias_at) = match outer {
        YamlError::AliasError {
            error, locations, ..
        } => (
            error.as_ref().without_snippet(),
            Some(locations.reference_location),
        ),
        e => (e, None),
    };
    let inner_loc = inner.location();
    let is_limit = matches!(
        inner,
        YamlError::Budget { .. }
            | YamlError::AliasReplayLimitExceeded { .. }
            | YamlError::AliasExpansionLimitExceeded { .. }
            | YamlError::AliasReplayStackDepthExceeded { .. }
            | YamlError::AliasReplayCounterOverflow { .. }
    );
    // Limits point at the alias that went over; other errors at their own place, with
    // the alias that brought the value there as a note.
    let primary = if is_limit {
        alias_at.or(inner_loc)
    } else {
        inner_loc.or(alias_at)
    };
    let mut span = primary
        .as_ref()
        .and_then(|l| span_from(l, source))
        .map(|s| back_to_token(s, source));
    let mut notes = Vec::new();
    let chars = span.map(|s| line_chars(source, s.line)).unwrap_or_default();
    let col0 = span.map_or(0, |s| s.column.saturating_sub(1) as usize);
    let token: String = span
        .map(|s| {
            chars
                .get(col0..(col0 + s.len as usize).min(chars.len()))
                .unwrap_or_default()
                .iter()
                .collect()
        })
        .unwrap_or_default();

    let (message, label): (String, String) = match inner {
        YamlError::SerdeUnknownField {
            field, expected, ..
        } => {
            let (label, more) = suggestion(field, expected);
            notes.extend(more);
            if expected.is_empty() {
                (
                    format!("unknown key `{field}`"),
                    "no keys are allowed here".into(),
                )
            } else {
                (format!("unknown key `{field}`"), label)
            }
        }
        YamlError::SerdeUnknownVariant {
            variant, expected, ..
        } => {
            if let Some(s) = span
                && token != *variant
            {
                let (s2, _) = key_to_value(s, source);
                span = Some(s2);
            }
            let (kind, _) = variant_kind(expected);
            let (label, more) = suggestion(variant, expected);
            notes.extend(more);
            let bare_value =
                variant.parse::<f64>().is_ok() || variant == "true" || variant == "false";
            if kind == "data type" && bare_value {
                notes.retain(|n| !n.starts_with("help: expected"));
                notes.push("help: a data value names its type, e.g. `{long-unsigned: 7}`, `{octet-string: 0102}` or `{structure: [...]}`".into());
                (
                    format!(
                        "expected a typed value like `{{unsigned: {variant}}}`, found `{variant}`"
                    ),
                    "the type is missing".into(),
                )
            } else {
                (format!("unknown {kind} `{variant}`"), label)
            }
        }
        YamlError::SerdeMissingField { field, .. } => {
            let (s, label) = missing_field_place(span, source, field);
            span = s;
            (format!("missing key `{field}`"), label)
        }
        YamlError::InvalidScalar { ty, .. } => {
            let key = span.and_then(|_| key_before(&chars, col0));
            let want = describe_type(ty);
            let msg = match key {
                Some(k) => format!("invalid value for `{k}`: expected {want}, found `{token}`"),
                None => format!("invalid value: expected {want}, found `{token}`"),
            };
            (msg, format!("not {want}"))
        }
        YamlError::InvalidBooleanStrict { .. } => {
            let key = span.and_then(|_| key_before(&chars, col0));
            let msg = match key {
                Some(k) => {
                    format!("invalid value for `{k}`: expected `true` or `false`, found `{token}`")
                }
                None => format!("expected `true` or `false`, found `{token}`"),
            };
            (msg, "not a boolean".into())
        }
        YamlError::SerdeInvalidType {
            unexpected,
            expected,
            ..
        }
        | YamlError::SerdeInvalidValue {
            unexpected,
            expected,
            ..
        } => {
            let mut key = None;
            if let Some(s) = span {
                let (s2, k) = key_to_value(s, source);
                span = Some(s2);
                key = k;
            }
            let found = describe_unexpected(unexpected);
            let want = describe_expected(expected);
            let msg = match key {
                Some(k) => format!("invalid value for `{k}`: expected {want}, found {found}"),
                None if matches!(inner, YamlError::SerdeInvalidValue { .. }) => {
                    format!("invalid value {found}: expected {want}")
                }
                None => format!("expected {want}, found {found}"),
            };
            (msg, String::new())
        }
        YamlError::SerdeInvalidLength { len, expected, .. } => (
            format!(
                "expected {}, found {len} items",
                describe_expected(expected)
            ),
            String::new(),
        ),
        YamlError::Unexpected { expected, .. } if *expected == "mapping end" => second_key(&token),
        YamlError::Unexpected { expected, .. } => {
            let key = span.and_then(|_| key_before(&chars, col0));
            // An empty value: underline the key instead of the colon.
            span = span.map(|s| colon_to_key(s, &chars));
            let found = found_at(&chars, col0);
            let want = describe_expected(expected);
            let msg = match key {
                Some(k) => format!("invalid value for `{k}`: expected {want}, found {found}"),
                None => format!("expected {want}, found {found}"),
            };
            let label = if *expected == "mapping start" && vocab::STEPS.contains(&token.as_str()) {
                format!("a step is a map: write `{token}: {{}}`")
            } else {
                String::new()
            };
            (msg, label)
        }
        YamlError::NullIntoString { .. } => {
            let key = span.and_then(|_| key_before(&chars, col0));
            span = span.map(|s| colon_to_key(s, &chars));
            match key {
                Some(k) => (
                    format!("`{k}` needs a value"),
                    "nothing after the colon".to_string(),
                ),
                None => ("expected a text, found nothing".into(), String::new()),
            }
        }
        YamlError::ExternallyTaggedEnumExpectedScalarOrMapping { .. }
        | YamlError::ExpectedStringKeyForExternallyTaggedEnum { .. } => (
            format!(
                "expected a one-key map naming the kind, e.g. `get: {{...}}`, found {}",
                found_at(&chars, col0)
            ),
            String::new(),
        ),
        YamlError::ExpectedMappingEndAfterEnumVariantValue { .. } => second_key(&token),
        YamlError::UnexpectedValueForUnit { .. }
        | YamlError::UnexpectedValueForUnitEnumVariant { .. } => (
            "this name takes no value: write it alone, e.g. `silence` rather than `{silence: ...}`"
                .into(),
            String::new(),
        ),
        YamlError::DuplicateMappingKey { key, .. } => match key {
            Some(k) => (
                format!("duplicate key `{k}`"),
                format!("`{k}` is already set above in this map"),
            ),
            None => (
                "duplicate key".into(),
                "already set above in this map".into(),
            ),
        },
        YamlError::Budget {
            breach: BudgetBreach::Documents { .. },
            ..
        }
        | YamlError::MultipleDocuments { .. } => (
            "a suite file holds one YAML document: remove the second `---` or split the file"
                .into(),
            "second document starts here".into(),
        ),
        YamlError::Budget { breach, .. } => {
            notes.push("note: suite files are small; limits stop YAML bombs (billion laughs) and runaway files".into());
            (
                format!(
                    "suite file exceeds the loader's limits: {}",
                    describe_breach(breach)
                ),
                "limit reached here".into(),
            )
        }
        YamlError::AliasReplayLimitExceeded { .. }
        | YamlError::AliasReplayCounterOverflow { .. } => {
            notes.push("note: suite files are small; limits stop YAML bombs (billion laughs) and runaway files".into());
            (
                format!(
                    "suite file exceeds the loader's limits: aliases expand to more than {MAX_REPLAYED_EVENTS} YAML events; is this a YAML bomb?"
                ),
                "the limit was reached expanding this alias".into(),
            )
        }
        YamlError::AliasExpansionLimitExceeded { .. } => {
            notes.push("note: suite files are small; limits stop YAML bombs (billion laughs) and runaway files".into());
            ("suite file exceeds the loader's limits: one anchor is expanded too many times; is this a YAML bomb?".into(), "the limit was reached expanding this alias".into())
        }
        YamlError::AliasReplayStackDepthExceeded { .. } => {
            notes.push("note: suite files are small; limits stop YAML bombs (billion laughs) and runaway files".into());
            (
                format!(
                    "suite file exceeds the loader's limits: aliases nested more than {MAX_REPLAY_DEPTH} deep; is this a YAML bomb?"
                ),
                "the limit was reached expanding this alias".into(),
            )
        }
        YamlError::UnknownAnchor { .. } => {
            let token: String = {
                let n = token_len(&chars, col0);
                if let Some(s) = span {
                    span = Some(Span { len: n as u32, ..s });
                }
                chars
                    .get(col0..col0 + n)
                    .unwrap_or_default()
                    .iter()
                    .collect()
            };
            (
                format!(
                    "unknown anchor `{token}`: an alias must refer to an anchor (`&name`) defined above it"
                ),
                "no such anchor".into(),
            )
        }
        YamlError::MergeValueNotMapOrSeqOfMaps { .. } => (
            "a merge key `<<` takes a map or a list of maps, e.g. `<<: *template`".into(),
            String::new(),
        ),
        YamlError::Eof { .. } if is_blank(source) => {
            span = None;
            (
                "the suite file is empty: a suite is a map with `suite`, `title` and `cases`"
                    .into(),
                String::new(),
            )
        }
        YamlError::Eof { .. } => ("unexpected end of file".into(), String::new()),
        YamlError::ExternalMessage { msg, .. } => {
            if (msg.contains("flow mapping") || msg.contains("flow sequence"))
                && let Some(s) = span
                && let Some((l, c, b)) = unclosed_flow(source, s.line, s.column)
                && l < s.line
            {
                let close = if b == '[' { ']' } else { '}' };
                notes.push(format!(
                    "note: the `{b}` at line {l}, column {c} is not closed: a missing `{close}`?"
                ));
            }
            (format!("YAML syntax error: {msg}"), String::new())
        }
        YamlError::Message { msg, .. } => {
            if let Some(s) = span {
                let (s2, _) = key_to_value(s, source);
                span = Some(s2);
            }
            (msg.clone(), String::new())
        }
        other => (
            DefaultMessageFormatter.format_message(other).into_owned(),
            String::new(),
        ),
    };
    if !is_limit
        && let (Some(a), Some(_)) = (alias_at, inner_loc)
        && let Some(s) = span_from(&a, source)
        && Some((s.line, s.column)) != span.map(|p| (p.line, p.column))
    {
        notes.push(format!(
            "note: the value comes through the alias at line {}, column {}",
            s.line, s.column
        ));
    }
    let mut d = Diagnostic::new(message);
    if let Some(s) = span {
        d = d.at(s, label);
    }
    d.notes = notes;
    d
}

/// For a place at the `:` of `key:` (where serde-saphyr puts empty values), underline the key.
fn colon_to_key(span: Span, chars: &[char]) -> Span {
    let col0 = span.column.saturating_sub(1) as usize;
    if chars.get(col0) != Some(&':') {
        return span;
    }
    let n = chars
        .get(..col0)
        .unwrap_or_default()
        .iter()
        .rev()
        .take_while(|c| is_word(**c))
        .count();
    if n == 0 {
        return span;
    }
    Span {
        column: span.column.saturating_sub(n as u32),
        len: n as u32,
        ..span
    }
}

/// The innermost `[` or `{` still open at `(line, column)`, skipping quoted text and
/// comments: where a "did not find expected ',' or '}'" really starts.
fn unclosed_flow(source: &str, line: u32, column: u32) -> Option<(u32, u32, char)> {
    let mut stack: Vec<(u32, u32, char)> = Vec::new();
    for (i, l) in source.split('\n').enumerate() {
        let ln = i as u32 + 1;
        if ln > line {
            break;
        }
        let chars: Vec<char> = l.chars().collect();
        let mut j = 0;
        while let Some(&c) = chars.get(j) {
            if ln == line && j as u32 + 1 >= column {
                break;
            }
            match c {
                '#' if j == 0 || chars.get(j - 1).is_some_and(|p| p.is_whitespace()) => break,
                '\'' | '"' => {
                    j += 1;
                    while let Some(&q) = chars.get(j) {
                        if q == '\\' && c == '"' {
                            j += 1;
                        } else if q == c {
                            break;
                        }
                        j += 1;
                    }
                }
                '[' | '{' => stack.push((ln, j as u32 + 1, c)),
                ']' | '}' => {
                    stack.pop();
                }
                _ => {}
            }
            j += 1;
        }
    }
    stack.pop()
}

/// Whether a text has no YAML content (only whitespace and comments).
fn is_blank(source: &str) -> bool {
    source
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
}

/// When serde-saphyr places an error where nothing is (past the end of a line or on an
/// empty line, as for a value that ended early), move it back to the last token before.
fn back_to_token(span: Span, source: &str) -> Span {
    let chars = line_chars(source, span.line);
    let col0 = span.column.saturating_sub(1) as usize;
    let rest_blank = chars
        .get(col0..)
        .unwrap_or_default()
        .iter()
        .all(|c| c.is_whitespace());
    if !rest_blank {
        return span;
    }
    let mut line = span.line;
    let mut upto = col0.min(chars.len());
    loop {
        let l = line_chars(source, line);
        let end = upto.min(l.len());
        let text = l.get(..end).unwrap_or_default();
        let content = text.iter().rposition(|c| !c.is_whitespace());
        if let Some(last) = content
            && text.iter().find(|c| !c.is_whitespace()) != Some(&'#')
        {
            let start = text
                .get(..=last)
                .unwrap_or_default()
                .iter()
                .rposition(|c| c.is_whitespace())
                .map_or(0, |p| p + 1);
            return Span {
                line,
                column: start as u32 + 1,
                len: (last + 1 - start) as u32,
            };
        }
        if line <= 1 {
            return span;
        }
        line -= 1;
        upto = usize::MAX;
    }
}

/// A second key in a map that must have one (a step, an outcome, a data value).
fn second_key(token: &str) -> (String, String) {
    let key = token.trim_end_matches(':');
    (
        format!(
            "unexpected second key `{key}`: a step, an outcome or a data value is a map with one key"
        ),
        "start a new list item for this one".into(),
    )
}

/// serde's "unexpected" texts (`integer `5``, `sequence`, `string "x"`) in our words.
fn describe_unexpected(u: &str) -> String {
    match u {
        "sequence" => "a list".into(),
        "map" => "a map".into(),
        "unit" | "unit value" | "null" => "nothing".into(),
        "boolean `true`" => "`true`".into(),
        "boolean `false`" => "`false`".into(),
        other => {
            for p in ["string ", "integer ", "floating point "] {
                if let Some(rest) = other.strip_prefix(p) {
                    let v = rest.trim_matches('"').trim_matches('`');
                    return format!("`{v}`");
                }
            }
            other.to_owned()
        }
    }
}

/// serde reports a missing field at the map's last key. Point at the map instead: at the
/// name of the step, outcome or data spec it belongs to when it is one, else at its start.
fn missing_field_place(span: Option<Span>, source: &str, field: &str) -> (Option<Span>, String) {
    let Some(s) = span else {
        return (None, String::new());
    };
    let Some(tree) = spans::parse(source) else {
        return (span, format!("`{field}` is required here"));
    };
    let Some(path) = tree.enclosing_map(s.line, s.column) else {
        return (span, format!("`{field}` is required here"));
    };
    // A one-key map around it (a step, an outcome, a variant): name it.
    if let Some((Seg::Key(owner), parent_path)) = path.split_last()
        && let Some(parent) = tree.get(parent_path)
        && let Kind::Map(entries) = &parent.kind
        && entries.len() == 1
    {
        let at = parent.at;
        let chars = line_chars(source, at.line);
        let len = token_len(&chars, at.column.saturating_sub(1) as usize) as u32;
        return (
            Some(Span { len, ..at }),
            format!("`{owner}` needs `{field}`"),
        );
    }
    match tree.get(&path) {
        Some(node) => {
            let chars = line_chars(source, node.at.line);
            let len = token_len(&chars, node.at.column.saturating_sub(1) as usize) as u32;
            let what = if path.is_empty() {
                "the suite"
            } else {
                "this map"
            };
            (
                Some(Span { len, ..node.at }),
                format!("{what} needs `{field}`"),
            )
        }
        None => (span, format!("`{field}` is required here")),
    }
}

fn describe_breach(b: &BudgetBreach) -> String {
    match b {
        BudgetBreach::Events { .. } => format!("more than {MAX_EVENTS} YAML events"),
        BudgetBreach::Aliases { .. } => format!("more than {MAX_ALIASES} aliases"),
        BudgetBreach::Anchors { .. } => format!("more than {MAX_ANCHORS} anchors"),
        BudgetBreach::Depth { .. } => format!("lists and maps nested more than {MAX_DEPTH} deep"),
        BudgetBreach::Documents { .. } => "more than one YAML document".into(),
        BudgetBreach::Nodes { .. } => format!("more than {MAX_NODES} values"),
        BudgetBreach::ScalarBytes { .. } => {
            format!("more than {MAX_FILE_BYTES} bytes of text in values")
        }
        BudgetBreach::MergeKeys { .. } => format!("more than {MAX_MERGE_KEYS} merge keys"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[test]
    fn measures_tokens() {
        let l = chars("  - get: {class: 8, obis: '0-0:1.0.0.255', attr: ${a}x}");
        assert_eq!(token_len(&l, 4), 3); // get
        assert_eq!(token_len(&l, 9), 1); // {
        assert_eq!(token_len(&l, 10), 5); // class
        assert_eq!(token_len(&l, 17), 1); // 8
        assert_eq!(token_len(&l, 26), 15); // '0-0:1.0.0.255'
        assert_eq!(token_len(&l, 49), 5); // ${a}x
    }

    #[test]
    fn finds_keys_and_values() {
        let l = chars("    expect: silense  # c");
        assert_eq!(key_at(&l, 4), Some(("expect".into(), Some(12))));
        assert_eq!(key_before(&l, 12), Some("expect".into()));
        let l = chars("    steps:");
        assert_eq!(key_at(&l, 4), Some(("steps".into(), None)));
        let l = chars("obis: 0-0:1.0.0.255");
        assert_eq!(key_at(&l, 6), None);
    }
}
