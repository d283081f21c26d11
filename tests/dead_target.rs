//! A dead or misconfigured target ends in seconds with one clear cause and the
//! "could not test" exit code (3); a meter that stops answering after a case
//! is blamed on that case, not on the ones after it. Each run is bounded so
//! the test cannot hang (the bound is generous; timing is not asserted tightly).

mod common;

use common::{Simulator, free_port};
use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// No run here should come near this; a run that does is a hang.
const BOUND: Duration = Duration::from_secs(90);

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_idis-harness"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .env_remove("IDIS_TARGET")
        .env_remove("IDIS_DEVICE");
    c
}

/// Runs `cmd` to its end within [`BOUND`], killing it (and failing) otherwise.
fn run_bounded(mut cmd: Command) -> (Output, Duration) {
    let t0 = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the harness binary runs");
    // Drain the pipes while waiting, so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().expect("stdout is piped");
    let mut err = child.stderr.take().expect("stderr is piped");
    let so = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let se = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for the harness") {
            break s;
        }
        if t0.elapsed() > BOUND {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the run did not end within {BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = t0.elapsed();
    let output = Output {
        status,
        stdout: so.join().unwrap_or_default(),
        stderr: se.join().unwrap_or_default(),
    };
    (output, elapsed)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn xmllint(report: &Path) {
    // `shared/` beside the checkout, or beside an ancestor (a nested git worktree).
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rel = Path::new("shared/reference/junit-10.xsd");
    let schema = manifest
        .ancestors()
        .skip(1)
        .map(|a| a.join(rel))
        .find(|p| p.exists())
        .unwrap_or_else(|| manifest.join("..").join(rel));
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(schema)
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

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn a_port_that_accepts_and_never_answers_ends_in_seconds_with_one_message() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept every connection and hold it, never writing a byte.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let mut cmd = bin();
    cmd.args(["run", "--no-progress", "-t"])
        .arg(format!("tcp://127.0.0.1:{port}"))
        .arg("--junit")
        .arg(&junit);
    let (out, took) = run_bounded(cmd);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert_eq!(
        count(&all, "no reply"),
        1,
        "one message names the cause:\n{all}"
    );
    assert!(all.contains("wrong transport or address"), "{all}");
    assert!(
        !all.contains("FAIL"),
        "a dead target is no failure of the meter:\n{all}"
    );
    // Seconds, not minutes (the profile's 5 s response timeout, plus start-up).
    assert!(took < Duration::from_secs(30), "took {took:?}:\n{all}");
    // JUnit still lists every case, as not run, with the reason.
    xmllint(&junit);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<skipped message=\"not run: could not test tcp://127.0.0.1:"),
        "{xml}"
    );
    assert!(xml.contains("SYMSEC_0_FraCount_1"), "{xml}");
}

#[test]
fn nothing_listening_is_said_once_not_per_case() {
    let port = free_port();
    let mut cmd = bin();
    let dir = tempfile::tempdir().unwrap();
    cmd.args(["run", "--no-progress", "-t"])
        .arg(format!("tcp://127.0.0.1:{port}"))
        .arg("--junit")
        .arg(dir.path().join("junit.xml"));
    let (out, _) = run_bounded(cmd);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(all.contains("nothing is listening there"), "{all}");
    assert_eq!(count(&all, "connection refused"), 1, "{all}");
    assert!(!all.contains("ERROR"), "no per-case errors:\n{all}");
    assert!(all.contains("Not tested: 69 of 69"), "{all}");
}

#[test]
fn without_preflight_the_fatal_failure_policy_stops_a_dead_target() {
    let port = free_port();
    let mut cmd = bin();
    let dir = tempfile::tempdir().unwrap();
    cmd.args([
        "run",
        "--no-progress",
        "--no-preflight",
        "--max-lost",
        "2",
        "-t",
    ])
    .arg(format!("tcp://127.0.0.1:{port}"))
    .arg("--junit")
    .arg(dir.path().join("junit.xml"));
    let (out, _) = run_bounded(cmd);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert_eq!(
        count(&all, "\nERROR "),
        2,
        "two cases lost the meter, then it stopped:\n{all}"
    );
    assert!(all.contains("2 case(s) in a row lost the meter"), "{all}");
    assert!(all.contains("Not tested: 67 of 75"), "{all}");
    assert!(!all.contains("FAIL"), "{all}");
}

#[test]
fn without_preflight_a_silent_port_is_inconclusive_not_a_failure_of_the_meter() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("short.yaml");
    std::fs::write(
        &profile,
        "name: short timeouts\ntimeouts: {response: 1s, connect: 1s, silence: 100ms}\n",
    )
    .unwrap();
    let mut cmd = bin();
    cmd.args(["run", "--no-progress", "--no-preflight", "--max-lost", "2"])
        .arg("-t")
        .arg(format!("tcp://127.0.0.1:{port}"))
        .arg("--device")
        .arg(&profile)
        .arg("--junit")
        .arg(dir.path().join("junit.xml"));
    let (out, _) = run_bounded(cmd);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(
        !all.contains("FAIL"),
        "silence from a dead port fails no case:\n{all}"
    );
    assert!(
        all.contains("inconclusive: the meter answered nothing in this case"),
        "{all}"
    );
    assert!(all.contains("Not tested: 67 of 75"), "{all}");
}

#[test]
fn a_wrong_management_key_says_to_check_the_keys() {
    let (_sim, port) = Simulator::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("wrong-ek.yaml");
    std::fs::write(
        &profile,
        "name: simulator with a wrong management encryption key\n\
         timeouts: {response: 2s, connect: 2s, silence: 100ms}\n\
         clients:\n\
         \x20 - {sap: 16, name: public, mechanism: none}\n\
         \x20 - sap: 1\n\
         \x20   name: management\n\
         \x20   mechanism: hls-gmac\n\
         \x20   security: authenticated-encrypted\n\
         \x20   encryption-key: 00112233445566778899AABBCCDDEEFF\n\
         \x20   authentication-key: D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF\n",
    )
    .unwrap();
    let mut cmd = bin();
    cmd.args(["run", "suites/replay-rejection.yaml", "--no-progress", "-t"])
        .arg(format!("tcp://127.0.0.1:{port}"))
        .arg("--device")
        .arg(&profile)
        .arg("--junit")
        .arg(dir.path().join("junit.xml"));
    let (out, _) = run_bounded(cmd);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(all.contains("check the keys"), "{all}");
    assert!(all.contains("deciphering-error"), "{all}");
    assert!(all.contains("management client (SAP 1"), "{all}");
    assert!(!all.contains("FAIL"), "{all}");
    // The key itself never appears.
    assert!(!all.contains("00112233445566778899AABBCCDDEEFF"), "{all}");

    // With the right key, the same profile passes the pre-flight and the case runs.
    let right = std::fs::read_to_string(&profile).unwrap().replace(
        "00112233445566778899AABBCCDDEEFF",
        "000102030405060708090A0B0C0D0E0F",
    );
    std::fs::write(&profile, right).unwrap();
    let mut cmd = bin();
    cmd.args([
        "run",
        "suites/replay-rejection.yaml",
        "--id",
        "SYMSEC_0_FraCount_1",
        "--no-progress",
        "-t",
    ])
    .arg(format!("tcp://127.0.0.1:{port}"))
    .arg("--device")
    .arg(&profile)
    .arg("--junit")
    .arg(dir.path().join("right.xml"));
    let (out, _) = run_bounded(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn the_wrapper_at_an_hdlc_meter_gets_a_clear_cause_in_seconds() {
    let (_sim, port) = Simulator::start(&["--transport", "hdlc"]);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin();
    cmd.args(["run", "--no-progress", "-t"])
        .arg(format!("tcp://127.0.0.1:{port}"))
        .arg("--junit")
        .arg(dir.path().join("junit.xml"));
    let (out, took) = run_bounded(cmd);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert_eq!(count(&all, "no reply"), 1, "{all}");
    assert!(all.contains("use hdlc+tcp://"), "{all}");
    assert!(took < Duration::from_secs(30), "took {took:?}:\n{all}");
}

#[test]
fn a_meter_that_stops_answering_fails_the_case_that_broke_it_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let mut cmd = bin();
    cmd.args([
        "run",
        "suites/wrapper.yaml",
        "suites/association.yaml",
        "--no-progress",
        "-t",
        "sim?quirk=stops-after-wrong-wrapper-version",
        "--junit",
    ])
    .arg(&junit);
    let (out, _) = run_bounded(cmd);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    let failed: Vec<&str> = all.lines().filter(|l| l.starts_with("FAIL ")).collect();
    assert!(
        failed.iter().any(|l| l.contains("WRAPPER_VERSION")),
        "the case that broke the meter fails:\n{all}"
    );
    assert!(failed.len() <= 2, "at most one other case fails:\n{all}");
    assert!(
        all.contains("the meter stopped answering after this case"),
        "{all}"
    );
    assert!(all.contains("the case's own steps passed"), "{all}");
    assert!(all.contains("Not tested:"), "the run stopped: {all}");
    xmllint(&junit);

    // The same cases against the conformant simulator pass.
    let mut cmd = bin();
    cmd.args([
        "run",
        "suites/wrapper.yaml",
        "--no-progress",
        "-t",
        "sim",
        "--junit",
    ])
    .arg(dir.path().join("conformant.xml"));
    let (out, _) = run_bounded(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
