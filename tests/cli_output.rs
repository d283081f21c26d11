//! What a new user sees of the command line: quiet broken pipes, exact
//! `--id`, suites that work from any directory, `read` output, messages in
//! the domain's words (never Rust `Debug` text), traces in time order,
//! date-times decoded, `validate --device` checking clients, and the summary's
//! wording.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use idis_harness::report::rust_debug_text;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_idis-harness"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1");
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn run(c: &mut Command) -> (Option<i32>, String, String) {
    let out: Output = c.output().unwrap();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn every_command_ends_quietly_when_its_reader_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let junit = junit.to_str().unwrap();
    let commands: &[&[&str]] = &[
        &["list"],
        &["list", "--id", "APPL_OPEN_*"],
        &["validate"],
        &["schema"],
        &["simulate", "--list-quirks"],
        &["read", "0-0:40.0.0.255:2", "0-0:1.0.0.255:2"],
        &[
            "run",
            "suites/wrapper.yaml",
            "--no-progress",
            "--junit",
            junit,
        ],
        &["--help"],
    ];
    for args in commands {
        // A pipe whose reader is gone before the command writes anything:
        // every write fails with a broken pipe, deterministically.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = bin()
            .args(*args)
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("Broken pipe"), "{args:?}: {err}");
    }
    // The run still wrote its report.
    assert!(
        std::fs::read_to_string(junit)
            .unwrap()
            .contains("WRAPPER_P1")
    );
}

#[test]
fn id_is_exact_and_a_pattern_selects_several() {
    let (code, out, err) = run(bin().args(["list", "--id", "APPL_OPEN_1"]));
    assert_eq!(code, Some(0), "{err}");
    let cases: Vec<&str> = out.lines().filter(|l| l.starts_with("    ")).collect();
    assert_eq!(cases.len(), 1, "{out}");
    assert!(cases[0].trim_start().starts_with("APPL_OPEN_1 "), "{out}");
    assert!(out.ends_with("1 case in 1 suite\n"), "{out}");

    let (_, out, _) = run(bin().args(["list", "--id", "association::APPL_OPEN_1"]));
    assert!(out.ends_with("1 case in 1 suite\n"), "{out}");

    let (code, out, err) = run(bin().args(["list", "--id", "APPL_OPEN_*"]));
    assert_eq!(code, Some(0), "{err}");
    let ids: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("    "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(ids.len() > 3, "{out}");
    assert!(ids.contains(&"APPL_OPEN_1") && ids.contains(&"APPL_OPEN_12"));
    assert!(ids.iter().all(|i| i.starts_with("APPL_OPEN_")), "{ids:?}");

    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(bin()
        .args(["run", "--no-progress", "--id", "APPL_OPEN_1", "--junit"])
        .arg(dir.path().join("j.xml")));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("Running 1 case against"), "{out}");
    assert!(out.contains("Summary: 1 case, 1 passed"), "{out}");

    let (code, _, err) = run(bin().args(["run", "--id", "APPL_OPN_1"]));
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--id `APPL_OPN_1` names no case; did you mean `APPL_OPEN_1`"),
        "{err}"
    );
    let (code, _, err) = run(bin().args(["list", "--id", "APPL_OPEN"]));
    assert_eq!(code, Some(2));
    assert!(err.contains("`--id '*APPL_OPEN*'` selects"), "{err}");
}

#[test]
fn shipped_suites_work_from_any_directory() {
    let elsewhere = tempfile::tempdir().unwrap();
    let here = |c: &mut Command| {
        c.current_dir(elsewhere.path());
    };
    let mut c = bin();
    here(&mut c);
    let (code, out, err) = run(c.arg("list"));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("(<built-in>/association.yaml)"), "{out}");
    assert!(out.contains("(<built-in>/replay-rejection.yaml)"), "{out}");

    let mut c = bin();
    here(&mut c);
    let (code, out, err) = run(c.args([
        "run",
        "association",
        "--no-progress",
        "--junit",
        "j.xml",
        "--id",
        "APPL_OPEN_*",
    ]));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("PASS") && out.contains("APPL_OPEN_1"), "{out}");
    let xml = std::fs::read_to_string(elsewhere.path().join("j.xml")).unwrap();
    assert!(
        xml.contains("<built-in>/association.yaml")
            || xml.contains("&lt;built-in&gt;/association.yaml"),
        "{xml}"
    );

    // In the checkout, a name is the file on disk.
    let (code, out, _) = run(bin().args(["list", "association"]));
    assert_eq!(code, Some(0));
    assert!(out.contains("(suites/association.yaml)"), "{out}");

    let mut c = bin();
    here(&mut c);
    let (code, _, err) = run(c.args(["validate", "asociation"]));
    assert_eq!(code, Some(2));
    assert!(err.contains("did you mean `association`?"), "{err}");
}

#[test]
fn read_names_its_target_and_prints_an_object_list_as_a_table() {
    let (code, out, err) = run(bin().args([
        "read",
        "0-0:40.0.0.255:2",
        "0-0:1.0.0.255:2",
        "1/0-0:99.99.0.255/2",
    ]));
    assert_eq!(code, Some(1), "one read is refused: {out}{err}");
    assert_eq!(
        err.lines().next(),
        Some("reading sim (built-in simulator; no --target given)"),
        "{err}"
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "15/0-0:40.0.0.255/2: object list");
    assert!(lines[1].starts_with("class  ver  logical name"), "{out}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("    8    0  0-0:1.0.0.255 ") && l.contains("2:r")),
        "{out}"
    );
    assert!(lines.iter().all(|l| l.len() < 200), "{out}");
    assert!(
        out.contains("8/0-0:1.0.0.255/2: octet-string ") && out.contains("(date-time 20"),
        "{out}"
    );
    assert!(
        out.contains("1/0-0:99.99.0.255/2: refused: object-undefined"),
        "{out}"
    );
    assert!(err.contains("error: 1 of 3 read(s) refused"), "{err}");

    let (_, _, err) = run(bin().args([
        "read",
        "-t",
        "sim?quirk=wrong-invoke-id",
        "0-0:42.0.0.255:2",
    ]));
    assert!(
        err.starts_with("reading sim?quirk=wrong-invoke-id (built-in simulator"),
        "{err}"
    );
}

#[test]
fn validate_device_reports_the_clients_the_profile_lacks() {
    let profile = |c: &mut Command| {
        c.env("IDIS_MGMT_EK", "000102030405060708090A0B0C0D0E0F")
            .env("IDIS_MGMT_AK", "D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF");
    };
    // A role the profile does not map: the case will be skipped, and says so.
    let mut c = bin();
    profile(&mut c);
    let (code, out, err) = run(c.args([
        "validate",
        "--device",
        "fixtures/devices/example-idis-p2.yaml",
        "suites/association.yaml",
    ]));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("3 cases will be skipped with this device profile:"),
        "{out}"
    );
    assert!(
        out.contains("association::APPL_OPEN_13: no client plays the role `lls`"),
        "{out}"
    );
    // A client SAP the profile does not have is an error, with its place.
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("by-sap.yaml");
    std::fs::write(
        &suite,
        "suite: by-sap\ntitle: t\ncases:\n  - id: BY_SAP\n    title: t\n    checks: c\n    client: 3\n    steps:\n      - associate: {}\n",
    )
    .unwrap();
    let mut c = bin();
    profile(&mut c);
    let (code, out, err) = run(c
        .args([
            "validate",
            "--device",
            "fixtures/devices/example-idis-p2.yaml",
        ])
        .arg(&suite));
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        err.contains("case `BY_SAP` uses client 3, which the device profile `fixtures/devices/example-idis-p2.yaml` does not have"),
        "{err}"
    );
    assert!(err.contains("the profile's clients are 16, 1"), "{err}");
}

/// Traffic lines of a trace: (seconds, arrow, rest of the line).
fn traffic(trace: &str) -> Vec<(f64, String, String)> {
    trace
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let (t, rest) = l.split_once("s ")?;
            let t: f64 = t.parse().ok()?;
            let (arrow, rest) = rest.split_once(' ')?;
            matches!(arrow, "->" | "<-" | "--").then(|| (t, arrow.to_owned(), rest.to_owned()))
        })
        .collect()
}

#[test]
fn a_failure_reads_once_and_fail_fast_says_why_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(bin()
        .args([
            "run",
            "suites/replay-rejection.yaml",
            "--no-progress",
            "--fail-fast",
            "-t",
            "sim?quirk=accepts-replayed-counter",
            "--traces",
        ])
        .arg(dir.path().join("traces"))
        .arg("--junit")
        .arg(dir.path().join("j.xml")));
    assert_eq!(code, Some(1), "{out}{err}");
    // The first case fails; the run monitors still judge the traffic it had.
    assert_eq!(
        out.matches("\nFAIL ").count() + usize::from(out.starts_with("FAIL ")),
        1,
        "{out}"
    );
    assert!(out.contains(" 1 failed, 0 errors"), "{out}");
    assert!(
        out.contains(
            "Stopped: after the first failure (--fail-fast), 5 of 12 selected cases not run"
        ),
        "{out}"
    );
    assert!(!out.contains("Interrupted"), "{out}");
    let headline = "expected the accepted outcomes of `replayed-counter`, got data octet-string";
    assert_eq!(out.matches(headline).count(), 1, "{out}");
    let trace = std::fs::read_to_string(
        dir.path()
            .join("traces/replay-rejection/SYMSEC_0_FraCount_1.log"),
    )
    .unwrap();
    assert_eq!(trace.matches(headline).count(), 1, "{trace}");
    assert!(trace.contains("deciphered: get-response normal"), "{trace}");
}

#[test]
fn a_clock_read_shows_its_date_time_decoded_in_the_trace() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(bin()
        .args(["run", "--no-progress", "--id", "IDIS_OBJECTS", "--traces"])
        .arg(dir.path().join("traces"))
        .arg("--junit")
        .arg(dir.path().join("j.xml")));
    assert_eq!(code, Some(0), "{out}{err}");
    let trace = std::fs::read_to_string(dir.path().join("traces/idis/IDIS_OBJECTS.log")).unwrap();
    assert!(trace.contains("(date-time 20"), "{trace}");
}

#[test]
fn traces_are_in_time_order_and_a_key_adoption_follows_its_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(bin()
        .args([
            "run",
            "suites/key-transfer.yaml",
            "--no-progress",
            "--id",
            "SYMSEC_0_Key_Tx_P1",
            "--traces",
        ])
        .arg(dir.path().join("traces"))
        .arg("--junit")
        .arg(dir.path().join("j.xml")));
    assert_eq!(code, Some(0), "{out}{err}");
    let trace = std::fs::read_to_string(
        dir.path()
            .join("traces/key-transfer/SYMSEC_0_Key_Tx_P1.log"),
    )
    .unwrap();
    let lines = traffic(&trace);
    assert!(lines.len() > 10, "{trace}");
    for w in lines.windows(2) {
        assert!(
            w[0].0 <= w[1].0,
            "time goes back at {:?} -> {:?}\n{trace}",
            w[0],
            w[1]
        );
    }
    let transfer = lines
        .iter()
        .position(|(_, _, l)| l.contains("key transfer of 1 key(s)"))
        .expect("the key transfer note");
    let adopted = lines
        .iter()
        .position(|(_, _, l)| l.contains("now uses the transferred key(s)"))
        .expect("the adoption note");
    let answer = lines[transfer..]
        .iter()
        .position(|(_, a, l)| a == "<-" && l.contains("action-response"))
        .map(|i| i + transfer)
        .expect("the action-response to the key transfer");
    assert!(
        transfer < answer && answer < adopted,
        "note {transfer}, response {answer}, adoption {adopted}\n{trace}"
    );
}

#[test]
fn type_date_time_matches_a_conformant_clock() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("clock.yaml");
    std::fs::write(
        &suite,
        "suite: clock\ntitle: Clock\ncases:\n  - id: CLOCK_TYPE\n    title: The clock is a date-time\n    checks: Blue Book class 8 attribute 2\n    client: 16\n    steps:\n      - associate: {}\n      - get: {class: 8, obis: 0-0:1.0.0.255, attr: 2, expect: {type: date-time}}\n      - release: {}\n",
    )
    .unwrap();
    let (code, out, err) = run(bin()
        .args(["run", "--no-progress", "--junit"])
        .arg(dir.path().join("j.xml"))
        .arg(&suite));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("PASS") && out.contains("CLOCK_TYPE"), "{out}");
}

/// Every text a run writes for people: console, JUnit, traces.
fn collect_texts(dir: &Path, out: &str, err: &str) -> Vec<(String, String)> {
    let mut texts = vec![
        ("stdout".to_owned(), out.to_owned()),
        ("stderr".to_owned(), err.to_owned()),
    ];
    let junit = dir.join("j.xml");
    texts.push((
        junit.display().to_string(),
        std::fs::read_to_string(&junit)
            .unwrap()
            .replace("&quot;", "\""),
    ));
    let mut stack: Vec<PathBuf> = vec![dir.join("traces")];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let e = e.unwrap().path();
            if e.is_dir() {
                stack.push(e);
            } else {
                texts.push((
                    e.display().to_string(),
                    std::fs::read_to_string(&e).unwrap(),
                ));
            }
        }
    }
    texts
}

#[test]
fn no_rust_debug_text_anywhere_a_user_reads() {
    // Quirks that make many kinds of step fail: exceptions, refusals,
    // HDLC and wrapper faults, HLS, keys, counters, data types and values.
    // (Not no-release-response: each of its cases waits out a timeout.)
    let quirks = [
        "accepts-replayed-counter",
        "wrong-counter-in-exception",
        "ignores-gcm-tag",
        "unprotected-responses",
        "no-general-ciphering",
        "sends-wrong-fctos",
        "accepts-wrong-password",
        "rejects-protocol-version",
        "applies-key-before-response",
        "keeps-old-key",
        "security-setup-wrong-types",
        "counter-object-private",
        "answers-stray-bytes",
        "ignores-unknown-commands",
        "frames-by-segment",
        "wrong-invoke-id",
        "answers-without-association",
        "bad-logical-device-name",
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut c = bin();
    c.args(["run", "--no-progress", "--jobs", "2", "--traces"])
        .arg(dir.path().join("traces"))
        .arg("--junit")
        .arg(dir.path().join("j.xml"));
    for q in quirks {
        c.arg("-t").arg(format!("sim?quirk={q}"));
    }
    let (code, out, err) = run(&mut c);
    assert_eq!(code, Some(1), "the faults are found: {err}");
    assert!(out.matches("FAIL ").count() > quirks.len(), "{out}");
    // And the messages of read and of refused commands.
    let (_, rout, rerr) = run(bin().args([
        "read",
        "-t",
        "sim?quirk=counter-object-private",
        "--client",
        "1",
        "0-0:1.0.0.255:2",
    ]));
    let (_, vout, verr) = run(bin()
        .args([
            "validate",
            "--device",
            "fixtures/devices/example-idis-p2.yaml",
        ])
        .env("IDIS_MGMT_EK", "000102030405060708090A0B0C0D0E0F")
        .env("IDIS_MGMT_AK", "D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF"));
    let mut texts = collect_texts(dir.path(), &out, &err);
    texts.push(("read".into(), rout + &rerr));
    texts.push(("validate".into(), vout + &verr));
    assert!(texts.len() > 100, "traces were written");
    let mut hits = Vec::new();
    for (name, t) in &texts {
        for h in rust_debug_text(t) {
            hits.push(format!("{name}: …{h}…"));
        }
    }
    assert!(
        hits.is_empty(),
        "Rust Debug text in output:\n{}",
        hits.join("\n")
    );
}
