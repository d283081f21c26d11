//! Per-case traffic traces, one text file per case in the manner of the DLMS UA
//! CTT `_Traffic` logs: a header (case, target, verdict in CTT words per
//! DESIGN.md "Verdicts", checked clause) then the decoded traffic lines.
//! Layout: `<dir>/<suite>/<case>.log` (`<case>@<target>.log` when the run has
//! several targets), every path component sanitised.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Reporter, one_line, sanitize, write_atomic};
use crate::runner::event::{CaseInfo, Event, TrafficRecord, Verdict};

/// Longest file-name component the writer produces, in bytes.
const MAX_COMPONENT: usize = 120;

/// Writes one `.log` file per finished case under a directory.
#[derive(Debug)]
pub struct TraceWriter {
    dir: PathBuf,
    multi_target: bool,
    written: HashSet<PathBuf>,
    /// Cases started and not finished, with the step traffic seen so far.
    running: Vec<(CaseInfo, Vec<TrafficRecord>)>,
}

impl TraceWriter {
    /// Traces go under `dir` (e.g. `reports/traces`), created as needed.
    pub fn new(dir: PathBuf) -> Self {
        TraceWriter {
            dir,
            multi_target: false,
            written: HashSet::new(),
            running: Vec::new(),
        }
    }

    /// The directory traces go under.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the trace of `case` goes (before collision handling).
    pub fn path_for(&self, case: &CaseInfo) -> PathBuf {
        let mut stem = case.case_id.clone();
        if self.multi_target {
            stem.push('@');
            stem.push_str(&case.target);
        }
        self.dir
            .join(sanitize_component(&case.suite_id))
            .join(format!("{}.log", sanitize_component(&stem)))
    }

    fn unique_path(&mut self, case: &CaseInfo) -> PathBuf {
        let base = self.path_for(case);
        let mut path = base.clone();
        let mut n = 2;
        while self.written.contains(&path) {
            let stem = base.file_stem().and_then(|s| s.to_str()).unwrap_or("case");
            path = base.with_file_name(format!("{stem}-{n}.log"));
            n += 1;
        }
        self.written.insert(path.clone());
        path
    }

    fn write_case(
        &mut self,
        case: &CaseInfo,
        verdict: Option<&Verdict>,
        duration: Option<Duration>,
        traffic: &[TrafficRecord],
    ) -> io::Result<()> {
        let text = render(case, verdict, duration, traffic);
        let path = self.unique_path(case);
        write_atomic(&path, text.as_bytes())
    }
}

/// CTT's verdict words (DESIGN.md "Verdicts").
fn ctt_verdict(v: Option<&Verdict>) -> &'static str {
    match v {
        Some(Verdict::Passed) => "PASSED",
        Some(Verdict::Failed(_)) => "FAILED",
        Some(Verdict::Error(_)) => "INCONCLUSIVE",
        Some(Verdict::Skipped(_)) => "INAPPLICABLE",
        None => "INTERRUPTED",
    }
}

fn render(
    case: &CaseInfo,
    verdict: Option<&Verdict>,
    duration: Option<Duration>,
    traffic: &[TrafficRecord],
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Case:     {}  {}",
        one_line(&case.case_id),
        one_line(&case.case_title)
    );
    let _ = write!(
        s,
        "Suite:    {}  {} ({}",
        one_line(&case.suite_id),
        one_line(&case.suite_title),
        one_line(&case.suite_file.display().to_string())
    );
    if let Some(loc) = &case.location {
        let _ = write!(s, ":{}:{}", loc.line, loc.column);
    }
    s.push_str(")\n");
    let _ = writeln!(s, "Target:   {}", one_line(&case.target));
    let label = verdict.map_or("-", Verdict::label);
    let _ = writeln!(s, "Verdict:  {} ({label})", ctt_verdict(verdict));
    let _ = writeln!(s, "Checks:   {}", one_line(&case.checks));
    if let Some(d) = duration {
        let _ = writeln!(s, "Duration: {:.3}s", d.as_secs_f64());
    }
    match verdict {
        Some(Verdict::Failed(d)) | Some(Verdict::Error(d)) => {
            let _ = writeln!(s, "Message:  {}", one_line(&d.message));
            if let Some(loc) = &d.location {
                let _ = writeln!(s, "At:       {}", one_line(&loc.to_string()));
            }
            // The detail without its first line when that repeats the message.
            let detail = sanitize(&d.detail);
            let lines = super::console::detail_lines(d, &detail);
            if !lines.is_empty() {
                s.push_str("Detail:\n");
            }
            for line in lines {
                let _ = writeln!(s, "  {line}");
            }
        }
        Some(Verdict::Skipped(reason)) => {
            let _ = writeln!(s, "Reason:   {}", one_line(reason));
        }
        Some(Verdict::Passed) => {}
        None => s.push_str("Reason:   the run was interrupted while this case was running\n"),
    }
    s.push_str(&"-".repeat(72));
    s.push('\n');
    for rec in traffic {
        s.push_str(&sanitize(&rec.to_string()));
        s.push('\n');
    }
    s
}

/// A safe single path component: ASCII letters, digits, `.`, `_`, `-` and
/// `@` kept, anything else (separators, `:`, spaces, controls) becomes `_`;
/// no leading dot (so never `.` or `..`), never empty, at most
/// [`MAX_COMPONENT`] bytes.
pub fn sanitize_component(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@') {
                c
            } else {
                '_'
            }
        })
        .collect();
    while s.starts_with('.') {
        s.replace_range(..1, "_");
    }
    s.truncate(MAX_COMPONENT);
    if s.is_empty() {
        s.push('_');
    }
    s
}

impl Reporter for TraceWriter {
    fn on_event(&mut self, event: &Event) -> io::Result<()> {
        match event {
            Event::RunStarted { targets, .. } => {
                self.multi_target = targets.len() > 1;
            }
            Event::CaseStarted { case } => {
                self.running.push((case.clone(), Vec::new()));
            }
            // Its notes are in the case's traffic already.
            Event::KeyCustody { .. } => {}
            Event::StepFinished { case, traffic, .. } => {
                if let Some((_, t)) = self.running.iter_mut().rev().find(|(c, _)| c == case) {
                    t.extend(traffic.iter().cloned());
                }
            }
            Event::CaseFinished {
                case,
                verdict,
                duration,
                traffic,
            } => {
                if let Some(i) = self.running.iter().position(|(c, _)| c == case) {
                    self.running.remove(i);
                }
                self.write_case(case, Some(verdict), Some(*duration), traffic)?;
            }
            // The cases a stopped target did not run exchanged nothing.
            Event::TargetStopped { .. } => {}
            Event::RunFinished { .. } => {
                // Cases caught running: keep what they exchanged.
                let mut first_err = None;
                for (case, traffic) in std::mem::take(&mut self.running) {
                    if let Err(e) = self.write_case(&case, None, None, &traffic) {
                        first_err.get_or_insert(e);
                    }
                }
                if let Some(e) = first_err {
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::{self, KEY_HEX};

    fn run(events: &[Event]) -> (tempfile::TempDir, TraceWriter) {
        let dir = tempfile::tempdir().unwrap();
        let mut w = TraceWriter::new(dir.path().join("traces"));
        for e in events {
            w.on_event(e).unwrap();
        }
        (dir, w)
    }

    fn files(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for suite in std::fs::read_dir(root).unwrap() {
            let suite = suite.unwrap();
            for f in std::fs::read_dir(suite.path()).unwrap() {
                let f = f.unwrap();
                out.push(format!(
                    "{}/{}",
                    suite.file_name().to_string_lossy(),
                    f.file_name().to_string_lossy()
                ));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn one_file_per_case_with_sanitised_names() {
        let (_d, w) = run(&fixtures::full_run());
        assert_eq!(
            files(w.dir()),
            [
                "clock/CLOCK_1@sim.log",
                "clock/CLOCK_2@sim.log",
                "clock/CLOCK_3@sim.log",
                "replay-rejection/SYMSEC_0_FraCount_1@sim.log",
                "replay-rejection/SYMSEC_0_FraCount_1@tcp___127.0.0.1_4059.log",
                "replay-rejection/SYMSEC_0_FraCount_2@sim.log",
            ]
        );
    }

    #[test]
    fn failed_trace_has_header_and_traffic() {
        let (_d, w) = run(&fixtures::full_run());
        let text =
            std::fs::read_to_string(w.dir().join("replay-rejection/SYMSEC_0_FraCount_1@sim.log"))
                .unwrap();
        let expected = format!(
            "Case:     SYMSEC_0_FraCount_1  An exact replay is rejected\n\
             Suite:    replay-rejection  Replay rejection (suites/replay.yaml:30:3)\n\
             Target:   sim\n\
             Verdict:  FAILED (FAIL)\n\
             Checks:   IDIS P2 SYMSEC_0_FraCount_1\n\
             Duration: 0.012s\n\
             Message:  step 3 (replay): expected exception-response invocation-counter-error, got get-response data\n\
             At:       suites/replay.yaml:40:9\n\
             Detail:\n\
             \x20 expected: exception-response invocation-counter-error\n\
             \x20 got:      get-response data ]]>{KEY_HEX}\n\
             \x20 --> suites/replay.yaml:40:9\n\
             \x20    |\n\
             \x20 40 |         expect: invocation-counter-error\n\
             \x20    |         ^^^^^^\n\
             {}\n\
             \x20   0.000s -- note    step 1 (get): get 8/0-0:1.0.0.255/2\n\
             \x20   0.001s -> xdlms   get-request normal invoke-id 1 8/0-0:1.0.0.255/2\n\
             \x20                   C001C1000800000100 00FF0200\n\
             \x20   0.011s <- xdlms   get-response normal data octet-string(12)\n\
             \x20                   C401C100090C07EA0102050304050000800000\n",
            "-".repeat(72)
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn interrupted_case_gets_a_trace_from_its_steps() {
        let (_d, w) = run(&fixtures::interrupted_run());
        let text =
            std::fs::read_to_string(w.dir().join("replay-rejection/SYMSEC_0_FraCount_1.log"))
                .unwrap();
        assert!(text.contains("Verdict:  INTERRUPTED (-)\n"), "{text}");
        assert!(text.contains("get-request normal invoke-id 1"));
        assert!(w.dir().join("clock/CLOCK_1.log").exists());
    }

    #[test]
    fn repeated_case_does_not_overwrite() {
        let mut events = fixtures::interrupted_run();
        let first = events[1..3].to_vec();
        events.splice(3..3, first);
        let (_d, w) = run(&events);
        assert!(w.dir().join("clock/CLOCK_1.log").exists());
        assert!(w.dir().join("clock/CLOCK_1-2.log").exists());
    }

    #[test]
    fn rejects_path_tricks_in_names() {
        assert_eq!(sanitize_component("../../etc/passwd"), "_._.._etc_passwd");
        assert_eq!(sanitize_component(".."), "_.");
        assert_eq!(sanitize_component(""), "_");
        assert_eq!(sanitize_component("a\0b/c\\d:e f"), "a_b_c_d_e_f");
        assert_eq!(sanitize_component(&"x".repeat(500)).len(), MAX_COMPONENT);
        assert_eq!(sanitize_component("é"), "_");
    }
}
