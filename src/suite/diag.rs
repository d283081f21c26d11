//! Diagnostics for suite files, rendered the way rustc and hurl do (no colour, so
//! the same text goes to the console and into JUnit reports):
//!
//! ```text
//! error: unknown step `gett`
//!   --> suites/replay.yaml:12:9
//!    |
//! 12 |       - gett: {class: 8, obis: 0-0:1.0.0.255, attr: 2}
//!    |         ^^^^ did you mean `get`?
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

/// A problem with a suite file (or a vars file): where it is and the full rendered text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteError {
    /// The file, as the caller named it (relative paths stay relative).
    pub file: PathBuf,
    /// 1-based line, when the problem has a place in the file.
    pub line: Option<u32>,
    /// 1-based column in characters, when the problem has a place in the file.
    pub column: Option<u32>,
    /// One line, without the location: `unknown step `gett``.
    pub message: String,
    /// The full text: message, `--> file:line:column`, the source line and a caret.
    pub rendered: String,
}

impl fmt::Display for SuiteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rendered)
    }
}

impl std::error::Error for SuiteError {}

/// A place in a source text: 1-based line and column (characters) and how many
/// characters to underline (at least one caret is drawn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub line: u32,
    pub column: u32,
    pub len: u32,
}

/// Everything a diagnostic says; [`Diagnostic::render`] turns it into text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The headline, after `error: `.
    pub message: String,
    /// Where; `None` for problems with the file as a whole.
    pub span: Option<Span>,
    /// Text after the caret (may be empty).
    pub label: String,
    /// Extra lines shown as `= help: ...` / `= note: ...` under the snippet.
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// A diagnostic with a headline only.
    pub fn new(message: impl Into<String>) -> Self {
        Diagnostic {
            message: message.into(),
            span: None,
            label: String::new(),
            notes: Vec::new(),
        }
    }

    /// Set the place and the caret label.
    pub fn at(mut self, span: Span, label: impl Into<String>) -> Self {
        self.span = Some(span);
        self.label = label.into();
        self
    }

    /// Add a `= help: ...` line.
    pub fn help(mut self, text: impl Into<String>) -> Self {
        self.notes.push(format!("help: {}", text.into()));
        self
    }

    /// Add a `= note: ...` line.
    pub fn note(mut self, text: impl Into<String>) -> Self {
        self.notes.push(format!("note: {}", text.into()));
        self
    }

    /// Render against `source` (the file's text) as a [`SuiteError`] for `file`.
    pub fn into_error(self, file: &Path, source: &str) -> SuiteError {
        let rendered = self.render(file, source);
        SuiteError {
            file: file.to_path_buf(),
            line: self.span.map(|s| s.line),
            column: self.span.map(|s| s.column),
            message: self.message,
            rendered,
        }
    }

    /// The rustc-style text (no trailing newline).
    pub fn render(&self, file: &Path, source: &str) -> String {
        render_snippet(
            file,
            source,
            self.span,
            &self.message,
            &self.label,
            &self.notes,
        )
    }
}

/// Render `error: message`, the `-->` line, and when `span` is known the source line with
/// carets and `label`, then `= note` lines. Shared by the loader and the runner (whose
/// step failures point at the YAML too), so both look the same.
pub fn render_snippet(
    file: &Path,
    source: &str,
    span: Option<Span>,
    message: &str,
    label: &str,
    notes: &[String],
) -> String {
    let mut out = format!("error: {}", one_line(message));
    let file_name = display_path(file);
    let line_text = span.and_then(|s| source_line(source, s.line));
    let (span, text) = match (span, line_text) {
        (Some(s), Some(t)) => (s, t),
        (Some(s), None) => {
            // A place past the end of the text (an unexpected end of file): no snippet.
            out.push_str(&format!("\n --> {file_name}:{}:{}", s.line, s.column));
            push_notes(&mut out, 1, notes);
            return out;
        }
        _ => {
            out.push_str(&format!("\n --> {file_name}"));
            push_notes(&mut out, 1, notes);
            return out;
        }
    };
    let num = span.line.to_string();
    let w = num.len();
    let pad = " ".repeat(w);
    out.push_str(&format!(
        "\n{pad}--> {file_name}:{}:{}",
        span.line, span.column
    ));
    out.push_str(&format!("\n{pad} |"));
    let shown = sanitize_line(text);
    out.push_str(&format!("\n{num} | {shown}"));
    // Keep tabs in the caret indentation so the caret lines up under tabs too.
    let col0 = span.column.saturating_sub(1) as usize;
    let indent: String = shown
        .chars()
        .chain(std::iter::repeat(' '))
        .take(col0)
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let line_chars = shown.chars().count();
    let max_len = line_chars.saturating_sub(col0).max(1);
    let len = (span.len as usize).clamp(1, max_len);
    let carets = "^".repeat(len);
    let label = one_line(label);
    if label.is_empty() {
        out.push_str(&format!("\n{pad} | {indent}{carets}"));
    } else {
        out.push_str(&format!("\n{pad} | {indent}{carets} {label}"));
    }
    push_notes(&mut out, w, notes);
    out
}

fn push_notes(out: &mut String, w: usize, notes: &[String]) {
    let pad = " ".repeat(w);
    for n in notes {
        out.push_str(&format!("\n{pad} = {}", one_line(n)));
    }
}

/// Paths are shown with `/` on every platform, so golden files and JUnit reports match.
pub fn display_path(p: &Path) -> String {
    let s = p.to_string_lossy().into_owned();
    if std::path::MAIN_SEPARATOR == '\\' {
        s.replace('\\', "/")
    } else {
        s
    }
}

/// The text of 1-based line `line` (without its line break), if there is one.
pub fn source_line(source: &str, line: u32) -> Option<&str> {
    let idx = (line as usize).checked_sub(1)?;
    let l = source.split('\n').nth(idx)?;
    Some(l.strip_suffix('\r').unwrap_or(l))
}

/// Control characters other than tab would garble terminals and XML: show them escaped.
fn sanitize_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

/// Messages are one line: line breaks become spaces, other control characters are escaped.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\n' | '\r' => ' ',
            c if c.is_control() && c != '\t' => '\u{FFFD}',
            c => c,
        })
        .collect()
}

/// Compare names the way people mistype them: case and `_` vs `-` do not matter.
fn normalize(s: &str) -> String {
    s.to_lowercase().replace('_', "-")
}

/// The candidate closest to `word` when it is close enough to be a likely typo:
/// Damerau-Levenshtein distance (after ignoring case and `_`/`-`) at most a third of
/// the word (at least 1), ties broken by Jaro-Winkler similarity. A word that is the
/// first part of exactly one hyphenated name (`hls` for `hls-gmac`) suggests that name;
/// so does a word of 3 or more characters that begins exactly one name.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let w = normalize(word);
    if w.is_empty() {
        return None;
    }
    // `hls` for `hls-gmac`: the word is the first part of exactly one hyphenated name.
    let head = format!("{w}-");
    let mut heads = candidates
        .iter()
        .filter(|c| normalize(c).starts_with(&head));
    if let (Some(first), None) = (heads.next(), heads.next()) {
        return Some(first);
    }
    let limit = (w.chars().count() / 3).max(1);
    let mut best: Option<(usize, f64, &'a str)> = None;
    for &c in candidates {
        let n = normalize(c);
        let d = strsim::damerau_levenshtein(&w, &n);
        if d > limit || (d > 0 && d >= w.chars().count()) {
            continue;
        }
        let jw = strsim::jaro_winkler(&w, &n);
        let better = match best {
            None => true,
            Some((bd, bjw, _)) => d < bd || (d == bd && jw > bjw),
        };
        if better {
            best = Some((d, jw, c));
        }
    }
    if let Some((_, _, c)) = best {
        return Some(c);
    }
    if w.chars().count() >= 3 {
        let mut starts = candidates.iter().filter(|c| normalize(c).starts_with(&w));
        if let (Some(first), None) = (starts.next(), starts.next()) {
            return Some(first);
        }
    }
    None
}

/// `a`, `b` or `c`, each in backquotes.
pub fn one_of(candidates: &[&str]) -> String {
    let q: Vec<String> = candidates.iter().map(|c| format!("`{c}`")).collect();
    match q.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// Label and notes for an unknown `word` among `candidates`: `did you mean `x`?` at the
/// caret, or when nothing is close, a help line listing them all.
pub fn suggestion(word: &str, candidates: &[&str]) -> (String, Vec<String>) {
    match did_you_mean(word, candidates) {
        Some(c) => (format!("did you mean `{c}`?"), Vec::new()),
        None => (
            String::new(),
            vec![format!("help: expected {}", one_of(candidates))],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_rustc_layout() {
        let src = "a: 1\n\n\n\n\n\n\n\n\n\n\n      - gett: {class: 8}\n";
        let d = Diagnostic::new("unknown step `gett`").at(
            Span {
                line: 12,
                column: 9,
                len: 4,
            },
            "did you mean `get`?",
        );
        assert_eq!(
            d.render(Path::new("suites/replay.yaml"), src),
            "error: unknown step `gett`\n  --> suites/replay.yaml:12:9\n   |\n12 |       - gett: {class: 8}\n   |         ^^^^ did you mean `get`?"
        );
    }

    #[test]
    fn renders_without_a_place() {
        let d = Diagnostic::new("cannot read suite file: gone").note("x");
        assert_eq!(
            d.render(Path::new("a.yaml"), ""),
            "error: cannot read suite file: gone\n --> a.yaml\n  = note: x"
        );
    }

    #[test]
    fn carets_follow_tabs_and_stay_on_the_line() {
        let src = "\tkey: value";
        let d = Diagnostic::new("m").at(
            Span {
                line: 1,
                column: 7,
                len: 99,
            },
            "l",
        );
        assert_eq!(
            d.render(Path::new("f"), src),
            "error: m\n --> f:1:7\n  |\n1 | \tkey: value\n  | \t     ^^^^^ l"
        );
    }

    #[test]
    fn suggests_close_names_only() {
        let steps = crate::suite::vocab::STEPS;
        assert_eq!(did_you_mean("gett", steps), Some("get"));
        assert_eq!(did_you_mean("key_transfer", steps), Some("key-transfer"));
        assert_eq!(did_you_mean("Listen", steps), Some("listen"));
        assert_eq!(did_you_mean("frobnicate", steps), None);
        assert_eq!(
            did_you_mean("silense", crate::suite::vocab::OUTCOMES),
            Some("silence")
        );
        assert_eq!(
            did_you_mean("hls", crate::suite::vocab::MECHANISMS),
            Some("hls-gmac")
        );
        assert_eq!(did_you_mean("x", &["y"]), None);
        assert_eq!(did_you_mean("ab", &["xy"]), None);
    }

    #[test]
    fn lists_alternatives() {
        assert_eq!(one_of(&["a", "b", "c"]), "`a`, `b` or `c`");
        assert_eq!(one_of(&["a"]), "`a`");
    }
}
