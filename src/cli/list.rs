//! `idis-harness list`: the cases of suites with their tags and requirements.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use idis_harness::runner::{self, Selection};

use super::out::Out;
use super::{USAGE_ERROR, suites, validation_context};

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Suite files, folders or shipped suite names (default: suites/ when it
    /// exists here, else the suites built into the binary).
    #[arg(value_name = "SUITES")]
    pub paths: Vec<PathBuf>,
    /// Only cases with this tag (repeatable).
    #[arg(long)]
    pub tag: Vec<String>,
    /// Only these cases: an exact id (`APPL_OPEN_1` or `association::APPL_OPEN_1`)
    /// or a glob pattern (`'APPL_OPEN_*'`); repeatable.
    #[arg(long = "id", short = 'k', value_name = "ID")]
    pub ids: Vec<String>,
}

pub fn cmd_list(a: ListArgs) -> ExitCode {
    let Some(suites) = suites::load_or_report(&a.paths, &validation_context()) else {
        return ExitCode::from(USAGE_ERROR);
    };
    let sel = Selection {
        tags: a.tag,
        ids: a.ids,
        ..Default::default()
    };
    let unmatched = sel.unmatched_ids(&suites);
    if !unmatched.is_empty() {
        for u in unmatched {
            eprintln!("error: {u}");
        }
        return ExitCode::from(USAGE_ERROR);
    }
    let mut out = Out::new();
    let mut n = 0;
    let mut shown = 0;
    for s in &suites {
        let cases: Vec<_> = s
            .suite
            .cases
            .iter()
            .enumerate()
            .filter(|(_, c)| sel.selects(s, c))
            .collect();
        if cases.is_empty() {
            continue;
        }
        shown += 1;
        out.line(format!(
            "{}  {}  ({})",
            s.suite.suite,
            s.suite.title,
            s.path.display()
        ));
        for (ci, c) in cases {
            n += 1;
            let mut tags: Vec<&str> = s
                .suite
                .tags
                .iter()
                .chain(c.tags.iter())
                .map(String::as_str)
                .collect();
            tags.dedup();
            let req = runner::case_requires(s, ci);
            let mut line = format!("    {:<28} {}", c.id, c.title);
            if !tags.is_empty() {
                line.push_str(&format!("  [{}]", tags.join(", ")));
            }
            if !req.is_empty() {
                line.push_str(&format!("  requires: {}", req.join(", ")));
            }
            out.line(line);
        }
        if out.is_closed() {
            break;
        }
    }
    out.line(format!(
        "{n} {} in {shown} {}",
        plural(n, "case", "cases"),
        plural(shown, "suite", "suites")
    ));
    super::finish(out)
}

/// `one` for 1, `many` otherwise.
pub fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}
