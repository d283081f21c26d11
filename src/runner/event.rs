//! The events a run emits. The runner prints nothing; the console, JUnit and
//! trace writers in `report` consume these (the cargo-nextest pattern).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Where in a suite file something is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLocation {
    pub file: PathBuf,
    pub line: u32,
    pub column: u32,
}

impl std::fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// Why a case did not pass, for people: a one-line message and the full text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// One line, e.g. `step 3 (replay): expected exception-response invocation-counter-error, got get-response data`.
    pub message: String,
    /// The full, colourless explanation: expected, got, the YAML location with the
    /// source line and a caret. Goes into the JUnit body and the console.
    pub detail: String,
    /// The failing step's location in its suite file.
    pub location: Option<SourceLocation>,
}

/// The verdict of a case (DESIGN.md "Verdicts"; CTT PASSED/FAILED/INCONCLUSIVE/INAPPLICABLE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    /// The device did something the standard or the device profile does not allow.
    Failed(Diagnostic),
    /// The harness could not decide: transport down, timeout in setup, bad suite.
    Error(Diagnostic),
    /// Not applicable to this device profile; the reason.
    Skipped(String),
}

impl Verdict {
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Passed => "PASS",
            Verdict::Failed(_) => "FAIL",
            Verdict::Error(_) => "ERROR",
            Verdict::Skipped(_) => "SKIP",
        }
    }
}

/// Direction of a traffic record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Harness to device.
    Sent,
    /// Device to harness.
    Received,
    /// A remark by the harness (a step starting, a timeout, a decode failure).
    Note,
}

impl Direction {
    pub fn arrow(self) -> &'static str {
        match self {
            Direction::Sent => "->",
            Direction::Received => "<-",
            Direction::Note => "--",
        }
    }
}

/// One line of traffic: what went over the link, decoded and deciphered. Never holds key bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficRecord {
    /// Time since the case started.
    pub at: Duration,
    pub direction: Direction,
    /// `hdlc`, `wrapper`, `apdu`, `xdlms` (deciphered content), `note`.
    pub layer: &'static str,
    /// The bytes in hex (empty for notes).
    pub hex: String,
    /// A decoded description.
    pub decoded: String,
}

impl std::fmt::Display for TrafficRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.at.as_secs_f64();
        write!(
            f,
            "{secs:9.3}s {} {:<7} {}",
            self.direction.arrow(),
            self.layer,
            self.decoded
        )?;
        if !self.hex.is_empty() {
            write!(f, "\n{:>20}{}", "", self.hex)?;
        }
        Ok(())
    }
}

/// What identifies a case in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseInfo {
    pub suite_id: String,
    pub suite_title: String,
    pub suite_file: PathBuf,
    pub case_id: String,
    pub case_title: String,
    /// The clause or source checked.
    pub checks: String,
    pub tags: Vec<String>,
    /// Where the case starts in its suite file.
    pub location: Option<SourceLocation>,
    /// The target (device) name it ran against.
    pub target: String,
}

/// A target as reports describe it (JUnit properties).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInfo {
    /// Short name used in output, e.g. `sim` or `tcp://10.0.0.5:4059`.
    pub name: String,
    /// Device profile file, or `built-in defaults`.
    pub profile: String,
    /// Transport, e.g. `wrapper over TCP`, `HDLC over serial /dev/ttyUSB0 9600 8N1`.
    pub transport: String,
    /// Server system title, when known.
    pub system_title: Option<String>,
}

/// Counts at the end of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub errors: usize,
    pub skipped: usize,
    /// Cases selected but not run (fail-fast or interruption).
    pub not_run: usize,
    /// Cases not run because their target could not be tested: its pre-flight
    /// probe failed, or the fatal-failure policy stopped it (see [`Event::TargetStopped`]).
    pub not_tested: usize,
    pub duration: Duration,
}

/// Exit code: every case passed (skips allowed).
pub const EXIT_PASSED: u8 = 0;
/// Exit code: a failure or error of the device, or an interrupted run.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: usage, configuration or suite errors.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: could not test (a pre-flight probe failed, or the fatal-failure
/// policy stopped a target before its cases were decided).
pub const EXIT_COULD_NOT_TEST: u8 = 3;

impl Summary {
    /// Counts one case's verdict.
    pub fn count(&mut self, v: &Verdict) {
        match v {
            Verdict::Passed => self.passed += 1,
            Verdict::Failed(_) => self.failed += 1,
            Verdict::Error(_) => self.errors += 1,
            Verdict::Skipped(_) => self.skipped += 1,
        }
    }

    pub fn total(&self) -> usize {
        self.passed + self.failed + self.errors + self.skipped
    }
    pub fn success(&self) -> bool {
        self.failed == 0 && self.errors == 0 && self.not_run == 0 && self.not_tested == 0
    }
    /// The exit code of the run: a failure of the device wins (1), then a
    /// target that could not be tested (3), then errors or an interruption (1).
    pub fn exit_code(&self) -> u8 {
        if self.failed > 0 {
            EXIT_FAILED
        } else if self.not_tested > 0 {
            EXIT_COULD_NOT_TEST
        } else if self.success() {
            EXIT_PASSED
        } else {
            EXIT_FAILED
        }
    }
}

/// A key a client of the meter holds (or may hold) other than the device
/// profile's. Never the key itself: where it is escrowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyHeld {
    pub client: u16,
    /// `unicast`, `broadcast`, `authentication` or `master`.
    pub key: String,
    /// The escrow entry holding the key, when the harness generated it.
    pub entry: Option<String>,
    /// False when the meter may hold it (a key transfer whose outcome is unknown).
    pub certain: bool,
}

/// What a case did to the meter's keys, when it matters: it escrowed
/// generated keys, a restore failed, or the meter is left with other keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustodyNotice {
    /// The escrow key file (none when keys are escrowed in memory only).
    pub escrow_file: Option<PathBuf>,
    /// A teardown key transfer (restoring keys) failed.
    pub restore_failed: bool,
    /// The escrow entries of the keys this case generated.
    pub escrowed: Vec<String>,
    /// Keys the meter is left with other than the device profile's.
    pub left_changed: Vec<KeyHeld>,
    /// In words, for people.
    pub message: String,
}

impl CustodyNotice {
    /// A restore failed or the device is left changed: worth a loud line.
    pub fn is_alarm(&self) -> bool {
        self.restore_failed || !self.left_changed.is_empty()
    }
}

/// An event of a run, in order.
#[derive(Debug, Clone)]
pub enum Event {
    RunStarted {
        started: SystemTime,
        targets: Vec<TargetInfo>,
        /// Cases selected to run.
        cases: usize,
        harness_version: String,
    },
    CaseStarted {
        case: CaseInfo,
    },
    /// A step finished (pass or not), with its traffic.
    StepFinished {
        case: CaseInfo,
        index: usize,
        /// e.g. `get 8/0-0:1.0.0.255/2`
        description: String,
        ok: bool,
        traffic: Vec<TrafficRecord>,
    },
    /// What a case did to the meter's keys (sent before its `CaseFinished`).
    KeyCustody {
        case: CaseInfo,
        notice: CustodyNotice,
    },
    CaseFinished {
        case: CaseInfo,
        verdict: Verdict,
        duration: Duration,
        /// All traffic of the case, in order.
        traffic: Vec<TrafficRecord>,
    },
    /// A target stopped before all its cases ran: its pre-flight probe failed,
    /// or the fatal-failure policy ended it after cases in a row lost the
    /// meter. `not_run` lists the cases that were not run, with this reason.
    TargetStopped {
        target: String,
        /// One line, e.g. `could not test tcp://127.0.0.1:4059: nothing is listening there (connection refused)`.
        message: String,
        /// The full explanation: what was tried, the likely cause, what to do.
        detail: String,
        not_run: Vec<CaseInfo>,
        /// What the pre-flight probe exchanged (empty for a fatal-failure stop:
        /// the cases that lost the meter carry their own).
        traffic: Vec<TrafficRecord>,
    },
    RunFinished {
        summary: Summary,
        /// Stopped by Ctrl-C / SIGTERM or fail-fast before all cases ran.
        interrupted: bool,
    },
}
