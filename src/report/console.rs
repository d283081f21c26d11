//! Human-readable console output of a run (harness-conventions.md section 4:
//! results and summary on stdout, the progress bar on stderr, colour by
//! `--color auto|always|never` with `NO_COLOR` / `CLICOLOR` / `CLICOLOR_FORCE`).
//! Verdict words follow DESIGN.md "Verdicts" (PASS / FAIL / ERROR / SKIP).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};
use std::str::FromStr;
use std::time::Duration;

use anstyle::{AnsiColor, Style};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Reporter, one_line, sanitize};
use crate::runner::event::{
    CaseInfo, CustodyNotice, Diagnostic, Event, SourceLocation, Summary, Verdict,
};

/// A progress bar is drawn only for runs with more cases than this.
pub const PROGRESS_MIN_CASES: usize = 20;

/// When to colour the output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ColorChoice {
    /// Colour when the stream is a terminal, unless the environment says otherwise.
    #[default]
    Auto,
    /// Always colour (an explicit `--color always` wins over `NO_COLOR`).
    Always,
    /// Never colour.
    Never,
}

impl FromStr for ColorChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(ColorChoice::Auto),
            "always" => Ok(ColorChoice::Always),
            "never" => Ok(ColorChoice::Never),
            other => Err(format!(
                "invalid colour choice `{other}` (auto, always, never)"
            )),
        }
    }
}

impl ColorChoice {
    /// Whether to colour a stream, given whether it is a terminal and the
    /// process environment.
    pub fn enabled(self, is_terminal: bool) -> bool {
        self.enabled_with_env(is_terminal, |k| std::env::var_os(k))
    }

    /// The decision of [`ColorChoice::enabled`] with an explicit environment.
    ///
    /// `Auto` follows the order anstream/anstyle-query use (harness-conventions
    /// 4): `NO_COLOR` non-empty → off; `CLICOLOR_FORCE` non-empty and not `0`
    /// → on even without a terminal; `CLICOLOR=0` → off; otherwise on only for
    /// a terminal whose `TERM` is set and not `dumb` (or with `CLICOLOR` set
    /// non-zero).
    pub fn enabled_with_env(
        self,
        is_terminal: bool,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                if env("NO_COLOR").is_some_and(|v| !v.is_empty()) {
                    return false;
                }
                if env("CLICOLOR_FORCE").is_some_and(|v| !v.is_empty() && v != "0") {
                    return true;
                }
                let clicolor = env("CLICOLOR");
                if clicolor.as_ref().is_some_and(|v| v == "0") {
                    return false;
                }
                let term_ok = env("TERM").is_some_and(|t| t != "dumb");
                is_terminal && (term_ok || clicolor.is_some_and(|v| !v.is_empty()))
            }
        }
    }
}

/// What the console shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleOptions {
    /// Colour choice for the output stream.
    pub color: ColorChoice,
    /// Also print the traffic of failed and errored cases.
    pub verbose: bool,
    /// Allow a progress bar on stderr (drawn only when stderr is a terminal
    /// and the run has more than [`PROGRESS_MIN_CASES`] cases).
    pub progress: bool,
    /// The run stops after the first failure or error (`--fail-fast`): a run
    /// that ends early after one says so instead of "interrupted".
    pub fail_fast: bool,
}

impl Default for ConsoleOptions {
    fn default() -> Self {
        ConsoleOptions {
            color: ColorChoice::Auto,
            verbose: false,
            progress: true,
            fail_fast: false,
        }
    }
}

/// A failed or errored case, for the list after the summary.
#[derive(Debug)]
struct Problem {
    label: &'static str,
    case: CaseInfo,
    location: Option<SourceLocation>,
}

/// Prints one line per finished case and a summary to a writer (stdout in
/// the CLI).
pub struct ConsoleReporter<W: Write> {
    out: W,
    color: bool,
    verbose: bool,
    progress: bool,
    fail_fast: bool,
    /// The reader of the output went away (`run | head`): print nothing more,
    /// and let the run finish and its reports be written.
    closed: bool,
    bar: Option<ProgressBar>,
    multi_target: bool,
    problems: Vec<Problem>,
    /// Cases started and not yet finished.
    running: Vec<CaseInfo>,
    /// Why targets stopped before their cases ran (shown in the summary).
    stopped: Vec<String>,
    /// Failed restores and devices left changed, repeated after the summary.
    key_alarms: Vec<(CaseInfo, CustodyNotice)>,
}

impl<W: Write> std::fmt::Debug for ConsoleReporter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleReporter")
            .field("color", &self.color)
            .field("verbose", &self.verbose)
            .field("progress", &self.bar.is_some())
            .finish_non_exhaustive()
    }
}

impl ConsoleReporter<io::Stdout> {
    /// A reporter on stdout; `Auto` colour checks whether stdout is a terminal.
    pub fn stdout(options: ConsoleOptions) -> Self {
        let tty = io::stdout().is_terminal();
        Self::with_terminal(io::stdout(), options, tty)
    }
}

impl<W: Write> ConsoleReporter<W> {
    /// A reporter on any writer, treated as not a terminal (so `Auto` means
    /// no colour unless `CLICOLOR_FORCE` is set).
    pub fn new(out: W, options: ConsoleOptions) -> Self {
        Self::with_terminal(out, options, false)
    }

    /// A reporter on a writer that is (or is not) a terminal.
    pub fn with_terminal(out: W, options: ConsoleOptions, out_is_terminal: bool) -> Self {
        ConsoleReporter {
            out,
            color: options.color.enabled(out_is_terminal),
            verbose: options.verbose,
            progress: options.progress,
            fail_fast: options.fail_fast,
            closed: false,
            bar: None,
            multi_target: false,
            problems: Vec::new(),
            running: Vec::new(),
            stopped: Vec::new(),
            key_alarms: Vec::new(),
        }
    }

    /// Gives the writer back (tests read the `Vec<u8>`).
    pub fn into_inner(self) -> W {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        self.out
    }

    fn paint(&self, style: Style, text: &str) -> String {
        if self.color {
            format!("{}{text}{}", style.render(), style.render_reset())
        } else {
            text.to_owned()
        }
    }

    /// Writes `text` without garbling the progress bar: the bar is cleared
    /// while the text goes out and redrawn after.
    /// A closed pipe ends the console output quietly.
    fn emit(&mut self, text: &str) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        let out = &mut self.out;
        let mut write = || {
            out.write_all(text.as_bytes())?;
            out.flush()
        };
        let r = match &self.bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        };
        match r {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            other => other,
        }
    }

    fn case_ref(&self, case: &CaseInfo) -> String {
        let mut s = format!(
            "{} {}",
            sanitize(&case.suite_id),
            self.paint(Style::new().bold(), &sanitize(&case.case_id))
        );
        if self.multi_target {
            let _ = write!(s, " @ {}", sanitize(&case.target));
        }
        s
    }

    fn run_started(
        &mut self,
        targets: &[crate::runner::event::TargetInfo],
        cases: usize,
    ) -> String {
        self.multi_target = targets.len() > 1;
        let noun = if cases == 1 { "case" } else { "cases" };
        let describe = |t: &crate::runner::event::TargetInfo| {
            format!("{} ({})", sanitize(&t.name), sanitize(&t.transport))
        };
        let against = match targets {
            [] => String::new(),
            [t] => format!(" against {}", describe(t)),
            many => format!(
                " against {} targets: {}",
                many.len(),
                many.iter().map(describe).collect::<Vec<_>>().join(", ")
            ),
        };
        if self.progress && cases > PROGRESS_MIN_CASES && io::stderr().is_terminal() {
            let bar =
                ProgressBar::with_draw_target(Some(cases as u64), ProgressDrawTarget::stderr());
            if let Ok(style) =
                ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {wide_msg}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            self.bar = Some(bar);
        }
        format!(
            "{} {cases} {noun}{against}\n",
            self.paint(Style::new().bold(), "Running")
        )
    }

    fn case_finished(
        &mut self,
        case: &CaseInfo,
        verdict: &Verdict,
        duration: Duration,
        traffic: &[crate::runner::event::TrafficRecord],
    ) -> String {
        let style = match verdict {
            Verdict::Passed => AnsiColor::Green.on_default().bold(),
            Verdict::Failed(_) => AnsiColor::Red.on_default().bold(),
            Verdict::Error(_) => AnsiColor::Magenta.on_default().bold(),
            Verdict::Skipped(_) => AnsiColor::Yellow.on_default().bold(),
        };
        let label = format!("{:<5}", verdict.label());
        let mut s = format!(
            "{} [{:>7.3}s] {}",
            self.paint(style, &label),
            duration.as_secs_f64(),
            self.case_ref(case)
        );
        let title = one_line(&case.case_title);
        if !title.is_empty() {
            let _ = write!(s, "  {title}");
        }
        s.push('\n');
        match verdict {
            Verdict::Passed => {}
            Verdict::Skipped(reason) => {
                let _ = writeln!(s, "    reason: {}", one_line(reason));
            }
            Verdict::Failed(d) | Verdict::Error(d) => {
                s.push_str(&diagnostic_block(case, d));
                self.problems.push(Problem {
                    label: verdict.label(),
                    case: case.clone(),
                    location: d.location.clone().or_else(|| case.location.clone()),
                });
                if self.verbose && !traffic.is_empty() {
                    s.push_str("    traffic:\n");
                    for rec in traffic {
                        for line in sanitize(&rec.to_string()).lines() {
                            let _ = writeln!(s, "    {line}");
                        }
                    }
                }
            }
        }
        s
    }

    fn run_finished(&mut self, summary: &Summary, interrupted: bool) -> String {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let mut s = String::from("------------\n");
        let total = summary.total();
        let _ = writeln!(
            s,
            "{} {total} {}, {} passed, {} failed, {} {}, {} skipped in {:.3}s",
            self.paint(Style::new().bold(), "Summary:"),
            plural(total, "case", "cases"),
            summary.passed,
            summary.failed,
            summary.errors,
            plural(summary.errors, "error", "errors"),
            summary.skipped,
            summary.duration.as_secs_f64()
        );
        if summary.not_tested > 0 {
            let selected = summary.total() + summary.not_run + summary.not_tested;
            let _ = writeln!(
                s,
                "{} {} of {selected} selected cases not run",
                self.paint(AnsiColor::Yellow.on_default().bold(), "Not tested:"),
                summary.not_tested
            );
            for detail in std::mem::take(&mut self.stopped) {
                for line in sanitize(&detail).trim_end().lines() {
                    let _ = writeln!(s, "    {line}");
                }
            }
        }
        if interrupted || summary.not_run > 0 {
            let selected = summary.total() + summary.not_run + summary.not_tested;
            let not_run = format!(
                "{} of {selected} selected {} not run",
                summary.not_run,
                plural(selected, "case", "cases")
            );
            let yellow = AnsiColor::Yellow.on_default().bold();
            if self.fail_fast && summary.failed + summary.errors > 0 {
                let _ = writeln!(
                    s,
                    "{} after the first failure (--fail-fast), {not_run}",
                    self.paint(yellow, "Stopped:")
                );
            } else {
                let _ = writeln!(
                    s,
                    "{} run stopped early, {not_run}",
                    self.paint(yellow, "Interrupted:")
                );
            }
        }
        let problems = std::mem::take(&mut self.problems);
        for p in &problems {
            let style = if p.label == "FAIL" {
                AnsiColor::Red.on_default().bold()
            } else {
                AnsiColor::Magenta.on_default().bold()
            };
            let _ = write!(
                s,
                "    {} {}",
                self.paint(style, p.label),
                self.case_ref(&p.case)
            );
            if let Some(loc) = &p.location {
                let _ = write!(s, " at {}", sanitize(&loc.to_string()));
            }
            s.push('\n');
        }
        for (case, notice) in std::mem::take(&mut self.key_alarms) {
            s.push_str(&self.key_alarm(&case, &notice));
        }
        for case in std::mem::take(&mut self.running) {
            let _ = write!(
                s,
                "    {} {} (was running)",
                self.paint(AnsiColor::Yellow.on_default().bold(), "STOPPED"),
                self.case_ref(&case)
            );
            if let Some(loc) = &case.location {
                let _ = write!(s, " at {}", sanitize(&loc.to_string()));
            }
            s.push('\n');
        }
        s
    }
}

/// `one` for 1, `many` otherwise.
fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

/// The lines of a diagnostic's detail that do not repeat its message: a
/// rendered suite diagnostic starts with `error: <message>`.
pub(crate) fn detail_lines<'a>(d: &Diagnostic, detail: &'a str) -> Vec<&'a str> {
    let message = one_line(&d.message);
    let mut lines: Vec<&str> = detail.trim_end().lines().collect();
    if lines
        .first()
        .is_some_and(|l| l.trim().strip_prefix("error: ").unwrap_or(l.trim()) == message)
    {
        lines.remove(0);
    }
    lines
}

impl<W: Write> ConsoleReporter<W> {
    /// The loud lines of a failed restore or a device left changed: what
    /// happened, and the escrow file that holds the generated keys.
    fn key_alarm(&self, case: &CaseInfo, n: &CustodyNotice) -> String {
        let style = AnsiColor::Red.on_default().bold();
        let what = if n.left_changed.is_empty() {
            "restoring the keys failed"
        } else {
            "the device is left with keys other than the device profile's"
        };
        let mut s = format!(
            "    {} {}: {what}\n",
            self.paint(style, "KEYS"),
            self.case_ref(case)
        );
        let _ = writeln!(s, "      {}", one_line(&n.message));
        let held: Vec<&String> = n
            .left_changed
            .iter()
            .filter_map(|h| h.entry.as_ref())
            .collect();
        let entries = if held.is_empty() {
            n.escrowed.iter().collect()
        } else {
            held
        };
        for e in entries {
            let _ = writeln!(s, "      escrow entry: {}", one_line(e));
        }
        match &n.escrow_file {
            Some(f) => {
                let _ = writeln!(
                    s,
                    "      escrow file: {} (name an entry in a device profile as {{file: ..., entry: ...}})",
                    sanitize(&f.display().to_string())
                );
            }
            None => s.push_str("      the generated keys were escrowed in memory only\n"),
        }
        s
    }
}

/// The indented explanation under a FAIL/ERROR line: the one-line message
/// (once), the rest of the detail, the location if the detail lacks it, the
/// checked clause unless the detail names it.
fn diagnostic_block(case: &CaseInfo, d: &Diagnostic) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "    {}", one_line(&d.message));
    let detail = sanitize(&d.detail);
    for line in detail_lines(d, &detail) {
        let _ = writeln!(s, "      {line}");
    }
    if let Some(loc) = &d.location {
        let loc = loc.to_string();
        if !detail.contains(&loc) {
            let _ = writeln!(s, "      at {}", sanitize(&loc));
        }
    }
    let checks = one_line(&case.checks);
    if !checks.is_empty() && !detail.contains(&format!("checks: {checks}")) {
        let _ = writeln!(s, "      checks: {checks}");
    }
    s
}

impl<W: Write> Reporter for ConsoleReporter<W> {
    fn on_event(&mut self, event: &Event) -> io::Result<()> {
        let text = match event {
            Event::RunStarted { targets, cases, .. } => self.run_started(targets, *cases),
            Event::CaseStarted { case } => {
                self.running.push(case.clone());
                if let Some(bar) = &self.bar {
                    bar.set_message(format!(
                        "{} {}",
                        one_line(&case.suite_id),
                        one_line(&case.case_id)
                    ));
                }
                return Ok(());
            }
            Event::StepFinished { .. } => return Ok(()),
            Event::KeyCustody { case, notice } => {
                if !notice.is_alarm() {
                    return Ok(());
                }
                self.key_alarms.push((case.clone(), notice.clone()));
                self.key_alarm(case, notice)
            }
            Event::CaseFinished {
                case,
                verdict,
                duration,
                traffic,
            } => {
                if let Some(i) = self.running.iter().position(|c| c == case) {
                    self.running.remove(i);
                }
                let text = self.case_finished(case, verdict, *duration, traffic);
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                }
                text
            }
            // Said once, in the summary: the cases it did not run are not listed.
            Event::TargetStopped {
                detail,
                not_run,
                traffic,
                ..
            } => {
                if let Some(bar) = &self.bar {
                    bar.inc(not_run.len() as u64);
                }
                let mut text = detail.trim_end().to_owned();
                if self.verbose && !traffic.is_empty() {
                    text.push_str("\n  traffic:");
                    for rec in traffic {
                        for line in rec.to_string().lines() {
                            text.push_str("\n  ");
                            text.push_str(line);
                        }
                    }
                }
                self.stopped.push(text);
                return Ok(());
            }
            Event::RunFinished {
                summary,
                interrupted,
            } => self.run_finished(summary, *interrupted),
        };
        self.emit(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures;

    fn render(events: &[Event], color: ColorChoice, verbose: bool) -> String {
        let opts = ConsoleOptions {
            color,
            verbose,
            progress: true,
            fail_fast: false,
        };
        let mut r = ConsoleReporter::new(Vec::new(), opts);
        for e in events {
            r.on_event(e).unwrap();
        }
        String::from_utf8(r.into_inner()).unwrap()
    }

    const GOLDEN_FULL: &str = "\
Running 6 cases against 2 targets: sim (wrapper over in-memory link), tcp://127.0.0.1:4059 (wrapper over TCP)
FAIL  [  0.012s] replay-rejection SYMSEC_0_FraCount_1 @ sim  An exact replay is rejected
    step 3 (replay): expected exception-response invocation-counter-error, got get-response data
      expected: exception-response invocation-counter-error
      got:      get-response data ]]>000102030405060708090A0B0C0D0E0F
      --> suites/replay.yaml:40:9
         |
      40 |         expect: invocation-counter-error
         |         ^^^^^^
      checks: IDIS P2 SYMSEC_0_FraCount_1
PASS  [  0.008s] replay-rejection SYMSEC_0_FraCount_2 @ sim  A lower counter is rejected
PASS  [  0.005s] clock CLOCK_1 @ sim  Clock time is readable
ERROR [  2.000s] clock CLOCK_2 @ sim  Clock set needs HLS
    transport: no reply within 2.000s
      no reply within 2.000s to set-request normal 8/0-0:1.0.0.255/2
      checks: IDIS P2 CLOCK_2
SKIP  [  0.000s] clock CLOCK_3 @ sim  Daylight saving deviation
    reason: profile declares no DST support
PASS  [  0.040s] replay-rejection SYMSEC_0_FraCount_1 @ tcp://127.0.0.1:4059  An exact replay is rejected
------------
Summary: 6 cases, 3 passed, 1 failed, 1 error, 1 skipped in 2.345s
    FAIL replay-rejection SYMSEC_0_FraCount_1 @ sim at suites/replay.yaml:40:9
    ERROR clock CLOCK_2 @ sim at suites/clock.yaml:20:3
";

    #[test]
    fn golden_output_without_colour() {
        let got = render(&fixtures::full_run(), ColorChoice::Never, false);
        assert_eq!(got, GOLDEN_FULL, "actual:\n{got}");
    }

    const GOLDEN_INTERRUPTED: &str = "\
Running 4 cases against sim (wrapper over in-memory link)
PASS  [  0.005s] clock CLOCK_1  Clock time is readable
------------
Summary: 1 case, 1 passed, 0 failed, 0 errors, 0 skipped in 1.500s
Interrupted: run stopped early, 3 of 4 selected cases not run
    STOPPED replay-rejection SYMSEC_0_FraCount_1 (was running) at suites/replay.yaml:30:3
";

    #[test]
    fn golden_output_of_an_interrupted_run() {
        let got = render(&fixtures::interrupted_run(), ColorChoice::Never, false);
        assert_eq!(got, GOLDEN_INTERRUPTED, "actual:\n{got}");
    }

    #[test]
    fn a_stopped_target_is_explained_once_in_the_summary() {
        let got = render(&fixtures::stopped_run(), ColorChoice::Never, false);
        assert_eq!(got.matches("connection refused").count(), 1, "{got}");
        assert!(
            got.contains("Not tested: 3 of 3 selected cases not run"),
            "{got}"
        );
        assert!(
            got.contains("      tried: associate as the public client"),
            "{got}"
        );
        assert!(!got.contains("SKIP") && !got.contains("ERROR"), "{got}");
        assert!(!got.contains("Interrupted"), "{got}");
    }

    #[test]
    fn verbose_adds_traffic_of_failed_cases_only() {
        let quiet = render(&fixtures::full_run(), ColorChoice::Never, false);
        let loud = render(&fixtures::full_run(), ColorChoice::Never, true);
        assert!(!quiet.contains("traffic:"));
        assert_eq!(loud.matches("    traffic:\n").count(), 2, "{loud}");
        assert!(loud.contains("<- xdlms   get-response normal data octet-string(12)"));
    }

    #[test]
    fn colour_always_has_ansi_and_never_has_none() {
        let coloured = render(&fixtures::full_run(), ColorChoice::Always, true);
        assert!(coloured.contains("\x1b["), "{coloured}");
        // The green PASS label, reset after.
        assert!(
            coloured.contains("\x1b[1m\x1b[32mPASS \x1b[0m"),
            "{coloured:?}"
        );
        assert!(coloured.contains("\x1b[1m\x1b[31mFAIL \x1b[0m"));
        assert!(coloured.contains("\x1b[1m\x1b[35mERROR\x1b[0m"));
        assert!(coloured.contains("\x1b[1m\x1b[33mSKIP \x1b[0m"));
        // Device-supplied escapes are still stripped: the only ESC sequences
        // are our own SGR ones.
        assert!(!coloured.contains("\x1b[31m]]>"));
        let plain = render(&fixtures::full_run(), ColorChoice::Never, true);
        assert!(!plain.contains('\x1b'));
        // And no other control character: the device-supplied ANSI and NUL
        // in the diagnostic are gone.
        assert!(
            !plain.chars().any(|c| c.is_control() && c != '\n'),
            "{plain:?}"
        );
    }

    #[test]
    fn colour_choice_follows_the_environment_conventions() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| OsString::from(*v))
            }
        };
        let auto = ColorChoice::Auto;
        assert!(auto.enabled_with_env(true, env(&[("TERM", "xterm")])));
        assert!(!auto.enabled_with_env(false, env(&[("TERM", "xterm")])));
        assert!(!auto.enabled_with_env(true, env(&[("TERM", "dumb")])));
        assert!(!auto.enabled_with_env(true, env(&[])));
        assert!(!auto.enabled_with_env(true, env(&[("TERM", "xterm"), ("NO_COLOR", "1")])));
        // NO_COLOR set but empty does not disable (no-color.org).
        assert!(auto.enabled_with_env(true, env(&[("TERM", "xterm"), ("NO_COLOR", "")])));
        assert!(auto.enabled_with_env(false, env(&[("CLICOLOR_FORCE", "1")])));
        assert!(!auto.enabled_with_env(false, env(&[("CLICOLOR_FORCE", "0")])));
        assert!(!auto.enabled_with_env(false, env(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")])));
        assert!(!auto.enabled_with_env(true, env(&[("TERM", "xterm"), ("CLICOLOR", "0")])));
        // Explicit choices win over the environment.
        assert!(ColorChoice::Always.enabled_with_env(false, env(&[("NO_COLOR", "1")])));
        assert!(!ColorChoice::Never.enabled_with_env(true, env(&[("CLICOLOR_FORCE", "1")])));
        assert_eq!("never".parse::<ColorChoice>(), Ok(ColorChoice::Never));
        assert!("sometimes".parse::<ColorChoice>().is_err());
    }

    /// A case that failed the way the runner reports it: the detail is the
    /// rendered suite diagnostic, which starts with `error: <message>` and
    /// ends with the checked clause.
    fn failed_case() -> (CaseInfo, Verdict) {
        let case = fixtures::case(
            "replay-rejection",
            "SYMSEC_0_FraCount_1",
            "Replay",
            "sim",
            30,
        );
        let message = "step 3 (replay): expected exception-response invocation-counter-error, got data unsigned 3";
        let d = Diagnostic {
            message: message.into(),
            detail: format!(
                "error: {message}\n  --> suites/replay.yaml:40:9\n   |\n40 |         expect: invocation-counter-error\n   |         ^^^^^^ not met\n   = note: checks: IDIS P2 SYMSEC_0_FraCount_1"
            ),
            location: None,
        };
        (case, Verdict::Failed(d))
    }

    #[test]
    fn a_failure_says_its_message_and_clause_once() {
        let (case, verdict) = failed_case();
        let mut r = ConsoleReporter::new(Vec::new(), ConsoleOptions::default());
        let text = r.case_finished(&case, &verdict, Duration::from_millis(3), &[]);
        assert_eq!(
            text.matches("expected exception-response").count(),
            1,
            "{text}"
        );
        assert_eq!(text.matches("checks: IDIS P2").count(), 1, "{text}");
        assert!(
            text.contains("      --> suites/replay.yaml:40:9\n"),
            "{text}"
        );
    }

    fn stopped_run(fail_fast: bool) -> String {
        let (case, verdict) = failed_case();
        let opts = ConsoleOptions {
            color: ColorChoice::Never,
            fail_fast,
            ..ConsoleOptions::default()
        };
        let mut r = ConsoleReporter::new(Vec::new(), opts);
        let events = [
            Event::RunStarted {
                started: fixtures::t0(),
                targets: vec![fixtures::sim()],
                cases: 3,
                harness_version: "0.1.0".into(),
            },
            Event::CaseStarted { case: case.clone() },
            Event::CaseFinished {
                case,
                verdict,
                duration: Duration::from_millis(3),
                traffic: vec![],
            },
            Event::RunFinished {
                summary: Summary {
                    failed: 1,
                    not_run: 2,
                    duration: Duration::from_millis(5),
                    ..Summary::default()
                },
                interrupted: true,
            },
        ];
        for e in &events {
            r.on_event(e).unwrap();
        }
        String::from_utf8(r.into_inner()).unwrap()
    }

    #[test]
    fn fail_fast_says_it_stopped_after_the_first_failure() {
        let text = stopped_run(true);
        assert!(
            text.contains("Summary: 1 case, 0 passed, 1 failed, 0 errors, 0 skipped"),
            "{text}"
        );
        assert!(
            text.contains(
                "Stopped: after the first failure (--fail-fast), 2 of 3 selected cases not run\n"
            ),
            "{text}"
        );
        assert!(!text.contains("Interrupted"), "{text}");
        // Without --fail-fast the same end is an interruption (Ctrl-C).
        assert!(stopped_run(false).contains("Interrupted: run stopped early, 2 of 3"));
    }

    /// A reader that has gone away.
    struct ClosedPipe;
    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
    }

    #[test]
    fn a_closed_pipe_ends_the_output_quietly() {
        let mut r = ConsoleReporter::new(ClosedPipe, ConsoleOptions::default());
        for e in fixtures::full_run() {
            r.on_event(&e).unwrap();
        }
        assert!(r.closed);
    }

    #[test]
    fn no_progress_bar_when_stderr_is_not_a_terminal_or_run_is_small() {
        let mut r = ConsoleReporter::new(Vec::new(), ConsoleOptions::default());
        r.on_event(&Event::RunStarted {
            started: fixtures::t0(),
            targets: vec![fixtures::sim()],
            cases: 3,
            harness_version: "0.1.0".into(),
        })
        .unwrap();
        assert!(r.bar.is_none());
        let text = String::from_utf8(r.into_inner()).unwrap();
        assert_eq!(
            text,
            "Running 3 cases against sim (wrapper over in-memory link)\n"
        );
    }
}
