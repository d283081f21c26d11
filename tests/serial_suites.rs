//! Every shipped suite against `idis-harness simulate --serial` over a socat
//! pseudo-terminal pair, as a user runs it from the README: once with plain
//! HDLC, once behind the IEC 62056-21 mode E sign-on. A serial line carries
//! one HDLC link at a time, so every case that switches client (IDIS_CLIENTS,
//! the counter reads of REPLAY_COUNTER_OBJECT, every first association of a
//! ciphered client) does it on the one open port; with mode E the meter goes
//! back to its sign-on after each DISC. Every case passes, except the ones the
//! default device profile skips (features it does not declare, a restart it
//! gives no command for, links a serial port does not give), and exactly those
//! are skipped.
//!
//! Both programs are the built binary. Each run is bounded; its wall time is
//! printed (`cargo test --test serial_suites -- --nocapture`), not asserted.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{PtyPair, path_str};
use idis_harness::profile::DeviceProfile;
use idis_harness::runner::case_requires;
use idis_harness::suite::{self, ValidationContext};
use quick_xml::events::Event;

/// A full run takes seconds (tens with mode E's 300-baud sign-ons in a debug
/// build); this bound only stops a hang.
const RUN_BOUND: Duration = Duration::from_secs(400);

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_idis-harness")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `idis-harness simulate` on the meter's end of the pair and waits
/// for it to listen.
fn simulate(pty: &PtyPair, mode_e: bool) -> Process {
    let mut cmd = Command::new(bin());
    cmd.args([
        "simulate",
        "--color",
        "never",
        "--serial",
        path_str(&pty.peer),
    ]);
    if mode_e {
        cmd.arg("--mode-e");
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start idis-harness simulate");
    let (tx, rx) = mpsc::channel();
    for out in [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let process = Process(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("listening on") => break,
            Ok(line) => seen.push(line),
            Err(_) => panic!(
                "the simulator did not start listening within 20s:\n{}",
                seen.join("\n")
            ),
        }
    }
    // Keep draining its output so that it never blocks on a full pipe.
    std::thread::spawn(move || while rx.recv().is_ok() {});
    process
}

/// Runs every shipped suite against `target`; returns the exit code, the
/// console output, the JUnit report and the wall time.
fn run_all(target: &str, dir: &Path) -> (Option<i32>, String, String, Duration) {
    let junit = dir.join("junit.xml");
    let console = dir.join("console.txt");
    let out = std::fs::File::create(&console).unwrap();
    let err = out.try_clone().unwrap();
    let started = Instant::now();
    let mut child = Process(
        Command::new(bin())
            .current_dir(root())
            .args(["run", "-t", target, "--color", "never", "--no-progress"])
            .arg("--junit")
            .arg(&junit)
            .arg("--state")
            .arg(dir.join("counters.yaml"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start idis-harness run"),
    );
    let code = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status.code();
        }
        if started.elapsed() > RUN_BOUND {
            let text = std::fs::read_to_string(&console).unwrap_or_default();
            panic!("the run against {target} did not end within {RUN_BOUND:?}:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let wall = started.elapsed();
    let text = std::fs::read_to_string(&console).unwrap_or_default();
    let report = std::fs::read_to_string(&junit)
        .unwrap_or_else(|e| panic!("no JUnit report ({e}); console:\n{text}"));
    (code, text, report, wall)
}

/// How a case ended, from the JUnit report.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Passed,
    Failed(String),
    Error(String),
    Skipped(String),
}

/// `suite::CASE_ID` -> status, from `<testcase name="CASE_ID: title" classname="SUITE">`.
fn statuses(report: &str) -> BTreeMap<String, Status> {
    let mut reader = quick_xml::Reader::from_str(report);
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    loop {
        let ev = reader
            .read_event()
            .expect("the JUnit report is well-formed");
        let (start, empty) = match &ev {
            Event::Start(e) => (Some(e.clone()), false),
            Event::Empty(e) => (Some(e.clone()), true),
            Event::End(e) if e.name().as_ref() == b"testcase" => {
                current = None;
                (None, false)
            }
            Event::Eof => break,
            _ => (None, false),
        };
        let Some(e) = start else { continue };
        let attr = |k: &[u8]| {
            e.attributes()
                .flatten()
                .find(|a| a.key.as_ref() == k)
                .map(|a| String::from_utf8_lossy(&a.value).into_owned())
                .unwrap_or_default()
        };
        match e.name().as_ref() {
            b"testcase" => {
                let name = attr(b"name");
                let id = name.split(':').next().unwrap_or_default().to_owned();
                let key = format!("{}::{id}", attr(b"classname"));
                out.insert(key.clone(), Status::Passed);
                if !empty {
                    current = Some(key);
                }
            }
            kind @ (b"failure" | b"error" | b"skipped") => {
                if let Some(key) = &current {
                    let message = attr(b"message");
                    let status = match kind {
                        b"failure" => Status::Failed(message),
                        b"error" => Status::Error(message),
                        _ => Status::Skipped(message),
                    };
                    out.insert(key.clone(), status);
                }
            }
            _ => {}
        }
    }
    out
}

/// The cases the default device profile skips on a serial target: those that
/// need a feature it does not declare, a restart it gives no command for, or a
/// wrapper or UDP link.
fn expected_skips() -> BTreeSet<String> {
    let (suites, errors) =
        suite::load_paths(&[root().join("suites")], &ValidationContext::default());
    assert!(errors.is_empty(), "the shipped suites load");
    let profile = DeviceProfile::default();
    let mut out = BTreeSet::new();
    for s in &suites {
        for (ci, c) in s.suite.cases.iter().enumerate() {
            let requires = case_requires(s, ci);
            let undeclared = requires.iter().any(|f| !profile.has_feature(f));
            let other_link = requires.iter().any(|f| f == "wrapper" || f == "udp");
            let no_restart = requires.iter().any(|f| f == "restart") && profile.restart.is_none();
            if undeclared || other_link || no_restart {
                out.insert(format!("{}::{}", s.suite.suite, c.id));
            }
        }
    }
    out
}

fn every_suite_passes(mode_e: bool) {
    let pty = PtyPair::new();
    let _sim = simulate(&pty, mode_e);
    let dir = tempfile::tempdir().unwrap();
    let target = format!(
        "serial://{}{}",
        path_str(&pty.dut),
        if mode_e { "?mode-e" } else { "" }
    );
    let (code, console, report, wall) = run_all(&target, dir.path());
    let statuses = statuses(&report);
    let bad: Vec<String> = statuses
        .iter()
        .filter(|(_, s)| matches!(s, Status::Failed(_) | Status::Error(_)))
        .map(|(k, s)| format!("{k}: {s:?}"))
        .collect();
    assert!(
        bad.is_empty(),
        "cases that did not pass against {target}:\n{}\n\nconsole:\n{console}",
        bad.join("\n")
    );
    let skipped: BTreeSet<String> = statuses
        .iter()
        .filter(|(_, s)| matches!(s, Status::Skipped(_)))
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(
        skipped,
        expected_skips(),
        "the skipped cases are not the ones the profile declares"
    );
    let passed = statuses.values().filter(|s| **s == Status::Passed).count();
    assert!(passed >= 50, "only {passed} cases passed:\n{console}");
    assert_eq!(code, Some(0), "{console}");
    // The cases that talk to two clients ran on the one port.
    for case in [
        "idis::IDIS_CLIENTS",
        "replay-rejection::REPLAY_COUNTER_OBJECT",
    ] {
        assert_eq!(statuses.get(case), Some(&Status::Passed), "{case}");
    }
    eprintln!(
        "every shipped suite over {target}: {passed} passed, {} skipped, wall time {:.1}s",
        skipped.len(),
        wall.as_secs_f64()
    );
}

#[test]
fn every_shipped_suite_passes_over_a_pty_pair_with_plain_hdlc() {
    every_suite_passes(false);
}

#[test]
fn every_shipped_suite_passes_over_a_pty_pair_with_mode_e() {
    every_suite_passes(true);
}
