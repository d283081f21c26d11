//! Verdicts mean what they say (issue 10, "phases"): a simulator fault that
//! breaks only a precondition of a case makes that case inconclusive
//! (ERROR, "precondition failed: ..."), never FAILED; only the case whose
//! point the fault is fails.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use idis_harness::runner::event::Verdict;
use idis_harness::runner::{CaseVerdicts, run_on_simulator, simulator_test_profile};
use idis_harness::sim::Quirks;
use idis_harness::suite::{self, ValidationContext};

fn run_with(quirk: &str) -> CaseVerdicts {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("suites");
    let (suites, errors) = suite::load_paths(&[root], &ValidationContext::default());
    assert!(errors.is_empty(), "suites do not load: {errors:?}");
    let quirks = Quirks::from_names(&[quirk]).expect("a known quirk");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run_on_simulator(
        Arc::new(suites),
        None,
        quirks,
        simulator_test_profile(),
    ))
}

fn failed(v: &CaseVerdicts) -> Vec<String> {
    v.iter()
        .filter(|(_, _, v)| matches!(v, Verdict::Failed(_)))
        .map(|(s, c, _)| format!("{s}::{c}"))
        .collect()
}

fn inconclusive(v: &CaseVerdicts) -> Vec<(String, String)> {
    v.iter()
        .filter_map(|(s, c, v)| match v {
            Verdict::Error(d) => Some((format!("{s}::{c}"), d.message.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_malformed_clock_fails_only_the_case_that_reads_the_clock() {
    let v = run_with("malformed-clock");
    assert_eq!(failed(&v), ["idis::IDIS_OBJECTS"]);
    assert_eq!(inconclusive(&v), []);
}

#[test]
fn a_refused_release_makes_the_cases_that_need_one_inconclusive() {
    let v = run_with("refuses-release");
    assert_eq!(failed(&v), ["association::APPL_REL_P1"]);
    let errors = inconclusive(&v);
    assert!(!errors.is_empty(), "no case needed a release on the way");
    for (case, message) in &errors {
        assert!(
            message.contains("(given release): precondition failed:"),
            "{case}: {message}"
        );
    }
    // The key-transfer cases release between their points.
    assert!(
        errors
            .iter()
            .any(|(c, _)| c == "key-transfer::SYMSEC_0_Key_Tx_P2"),
        "{errors:?}"
    );
}

/// A case over HDLC that is not about the link: the meter's link faults in
/// it go to MONITOR_HDLC_LINK, and the case is judged on its point. (Against
/// the in-process simulator only the hdlc suite's cases, tagged `link`, run
/// over HDLC, so the mutation matrix cannot show this monitor failing.)
const OVER_HDLC: &str = r#"
suite: over-hdlc
title: A long read over HDLC
requires: [hdlc]
cases:
  - id: LONG_READ
    title: The object list reads over HDLC with a small information field
    checks: Blue Book class 15 attribute 2
    client: public
    steps:
      - connect: {max-info-rx: 32}
      - given: {associate: {}}
      - get: {object: current-association, attr: 2, expect: {type: array}}
    teardown:
      - release: {}
"#;

fn run_source_with(quirks: &[&str]) -> CaseVerdicts {
    let s = suite::load_source(
        std::path::Path::new("over-hdlc.yaml"),
        OVER_HDLC.to_string(),
        &ValidationContext::default(),
    )
    .expect("the inline suite loads");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run_on_simulator(
        Arc::new(vec![s]),
        None,
        Quirks::from_names(quirks).expect("known quirks"),
        simulator_test_profile(),
    ))
}

fn verdict_of<'a>(v: &'a CaseVerdicts, case: &str) -> &'a Verdict {
    &v.iter()
        .find(|(_, c, _)| c == case)
        .unwrap_or_else(|| panic!("{case} did not run: {v:?}"))
        .2
}

#[test]
fn link_faults_outside_the_link_cases_fail_the_link_monitor_once() {
    let bad = run_source_with(&["no-segmentation"]);
    assert_eq!(verdict_of(&bad, "LONG_READ"), &Verdict::Passed);
    let Verdict::Failed(d) = verdict_of(&bad, "MONITOR_HDLC_LINK") else {
        panic!("{bad:?}")
    };
    assert!(d.message.contains("LONG_READ"), "{}", d.message);

    let good = run_source_with(&[]);
    assert_eq!(verdict_of(&good, "LONG_READ"), &Verdict::Passed);
    assert_eq!(verdict_of(&good, "MONITOR_HDLC_LINK"), &Verdict::Passed);
}

/// `idis-harness run` against `tcp://127.0.0.1:port` with a counter state file.
fn run_against(port: u16, state: &std::path::Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_idis-harness"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .args(["run", "-t", &format!("tcp://127.0.0.1:{port}")])
        .args([
            "--id",
            "SYMSEC_0_FraCount_1",
            "--id",
            "MONITOR_SERVER_NONCE",
            "--state",
        ])
        .arg(state)
        .arg("--junit")
        .arg(state.with_extension("xml"))
        .output()
        .expect("the harness runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_meter_that_comes_back_with_its_old_counters_fails_the_nonce_monitor_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("counters.yaml");
    // One long-lived meter: two runs, counters go on.
    let (sim, port) = common::Simulator::start(&[]);
    for _ in 0..2 {
        let out = run_against(port, &state);
        assert!(out.contains("PASS") && !out.contains("FAIL"), "{out}");
    }
    drop(sim);
    // The same meter (keys, system title) back without its memory: its own
    // counter starts again, under the same key, as the Gurux peer's does.
    let (_sim, port) = common::Simulator::start(&[]);
    let out = run_against(port, &state);
    let monitor = out
        .lines()
        .find(|l| l.contains("MONITOR_SERVER_NONCE"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(monitor.starts_with("FAIL"), "{out}");
    assert!(
        out.contains("an earlier run already saw counters up to"),
        "{out}"
    );
}
