//! The command line as a user runs it: exit codes, the JUnit report of a full
//! run validated against the JUnit schema with xmllint, and an interrupted run
//! that still leaves a valid report.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_idis-harness"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1");
    c
}

fn schema() -> PathBuf {
    // `shared/` beside the checkout, or beside an ancestor (a nested git
    // worktree), as the JUnit unit tests look for it.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let rel = Path::new("shared/reference/junit-10.xsd");
    let p = root
        .ancestors()
        .skip(1)
        .map(|a| a.join(rel))
        .find(|p| p.exists())
        .unwrap_or_else(|| root.join("..").join(rel));
    assert!(
        p.exists(),
        "the JUnit schema is expected at {}",
        p.display()
    );
    p
}

fn xmllint(report: &Path) {
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(schema())
        .arg(report)
        .output()
        .expect("xmllint is needed for this test: apt-get install libxml2-utils (.ci/run does)");
    assert!(
        out.status.success(),
        "{} does not validate:\n{}",
        report.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn full_run_against_the_simulator_passes_and_its_junit_validates() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let out = bin()
        .args(["run", "--no-progress", "--junit"])
        .arg(&junit)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Summary:") && stdout.contains(" 0 failed"),
        "{stdout}"
    );
    xmllint(&junit);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("classname=\"replay-rejection\""));
    assert!(xml.contains("<system-out>"), "traffic goes into system-out");
    // Keys never reach the report.
    assert!(
        !xml.contains("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF"),
        "the authentication key leaked"
    );
    assert!(
        !xml.contains("000102030405060708090A0B0C0D0E0F"),
        "the encryption key leaked"
    );
}

#[test]
fn a_faulty_meter_fails_with_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let out = bin()
        .args([
            "run",
            "suites/replay-rejection.yaml",
            "--no-progress",
            "-t",
            "sim?quirk=accepts-replayed-counter",
            "--junit",
        ])
        .arg(&junit)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL") && stdout.contains("SYMSEC_0_FraCount_1"),
        "{stdout}"
    );
    xmllint(&junit);
    assert!(
        std::fs::read_to_string(&junit)
            .unwrap()
            .contains("<failure")
    );
}

#[test]
fn suite_and_usage_errors_exit_with_2() {
    let out = bin()
        .args(["validate", "fixtures/invalid-suites/misspelled-step.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean `get`?"));
    let out = bin().args(["run", "-t", "ftp://nowhere"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown scheme"));
    let out = bin()
        .args(["run", "--quirk", "accepts-replayed-countr"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("did you mean `accepts-replayed-counter`")
    );
    let out = bin()
        .args(["run", "--id", "NO_SUCH_CASE"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn list_and_validate_describe_the_shipped_suites() {
    let out = bin().arg("list").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        stdout.contains("SYMSEC_0_FraCount_1") && stdout.contains("requires: hls-gmac"),
        "{stdout}"
    );
    let out = bin().arg("validate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn schema_command_prints_the_checked_in_schema() {
    let out = bin().arg("schema").output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    let file =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("suites/schema.json"))
            .unwrap();
    assert_eq!(printed.trim(), file.trim());
}

#[cfg(unix)]
#[test]
fn sigint_stops_the_run_and_the_report_of_what_ran_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let child = bin()
        .args(["run", "fixtures/slow", "--no-progress", "--junit"])
        .arg(&junit)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let the first case finish and the slow one start.
    std::thread::sleep(Duration::from_millis(1500));
    let t0 = Instant::now();
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "the run did not stop promptly"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("PASS") && stdout.contains("FAST_1"),
        "{stdout}"
    );
    xmllint(&junit);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("FAST_1"), "the case that ran is reported");
    assert!(xml.contains("SLOW_2"), "the interrupted case is reported");
    assert!(
        !xml.contains("NEVER_3"),
        "a case that never started is not reported as run"
    );
}

#[test]
fn cases_needing_absent_features_are_skipped_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let out = bin()
        .args([
            "run",
            "suites/hdlc.yaml",
            "suites/key-transfer.yaml",
            "suites/wrapper.yaml",
            "--no-progress",
            "--device",
            "fixtures/devices/sim-without-options.yaml",
            "--junit",
        ])
        .arg(&junit)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("SKIP") && stdout.contains("does not declare `hdlc`"),
        "{stdout}"
    );
    assert!(
        stdout.contains("does not declare `key-transfer`"),
        "{stdout}"
    );
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(
        stdout.contains("PASS") && stdout.contains("WRAPPER_P1"),
        "{stdout}"
    );
    xmllint(&junit);
    assert!(
        std::fs::read_to_string(&junit)
            .unwrap()
            .contains("<skipped message=")
    );
}

#[test]
fn the_example_device_profile_loads_with_its_keys_from_env_and_file() {
    // The example meter has clients 16 and 1 only: the IDIS suite names no
    // other (validate --device reports the cases of other suites that do).
    let out = bin()
        .args([
            "validate",
            "--device",
            "fixtures/devices/example-idis-p2.yaml",
            "suites/idis.yaml",
        ])
        .env("IDIS_MGMT_EK", "000102030405060708090A0B0C0D0E0F")
        .env("IDIS_MGMT_AK", "D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = bin()
        .args([
            "validate",
            "--device",
            "fixtures/devices/example-idis-p2.yaml",
        ])
        .env_remove("IDIS_MGMT_EK")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("environment variable IDIS_MGMT_EK is not set"),
        "{err}"
    );
}
