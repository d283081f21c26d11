//! Keys are never lost, and suites run twice against one meter (issue 11
//! items 4 and 5, issue 16 item 1), against `idis-harness simulate` in a
//! child process over the TCP wrapper:
//!
//! * two full runs of every shipped suite in a row against one simulator both
//!   pass (the SecPol cases are skipped the second time, with the reason);
//! * with the restore-breaking quirk `applies-key-before-response` the summary
//!   says the restore failed and names the escrow file and entry, the JUnit
//!   report carries it as properties, and no key is in clear on the console
//!   or in the report;
//! * a meter left with a generated key is recovered through a device profile
//!   that names the escrow entry.
//!
//! The in-process interrupt test is in `tests/escrow_interrupt.rs`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use idis_harness::profile::load_key_file;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_idis-harness"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .env_remove("IDIS_ESCROW")
        .env_remove("IDIS_JUNIT")
        .env_remove("IDIS_DEVICE");
    c
}

/// `idis-harness simulate` on a free port; killed on drop.
struct Simulator {
    child: Child,
    target: String,
}

impl Simulator {
    fn start(quirks: &[&str]) -> Simulator {
        let mut cmd = bin();
        cmd.args(["simulate", "--listen", "127.0.0.1:0"]);
        for q in quirks {
            cmd.args(["--quirk", q]);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start idis-harness simulate");
        // It logs on stderr, the first line being where it listens.
        let log = child.stderr.take().expect("piped stderr");
        let mut reader = BufReader::new(log);
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .expect("read the simulator's first line");
        // Keep reading its log, so it never writes into a full or closed pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        // "listening on 127.0.0.1:PORT (wrapper), ..."
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line from simulate: {line:?}"))
            .to_owned();
        Simulator {
            child,
            target: format!("tcp://{addr}"),
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str], dir: &Path, name: &str) -> (Output, String) {
    let junit = dir.join(format!("{name}.xml"));
    let out = bin()
        .arg("run")
        .args(args)
        .args(["--no-progress", "--junit"])
        .arg(&junit)
        .arg("--escrow")
        .arg(dir.join("escrow-keys.yaml"))
        .output()
        .expect("run idis-harness");
    let xml = std::fs::read_to_string(&junit).unwrap_or_default();
    (out, xml)
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every key in the escrow file, in hex.
fn escrowed_keys(path: &Path) -> Vec<String> {
    load_key_file(path)
        .expect("the escrow file loads as a key file")
        .into_iter()
        .filter(|(name, _)| {
            ["unicast", "broadcast", "authentication", "master"]
                .iter()
                .any(|k| name.ends_with(&format!("/{k}")))
        })
        .map(|(_, v)| v)
        .collect()
}

fn assert_no_key_in_clear(keys: &[String], outputs: &[(&str, &str)]) {
    assert!(!keys.is_empty(), "keys were escrowed");
    for k in keys {
        assert_eq!(k.len(), 32, "a 16-byte key in hex: {k}");
        for (what, text) in outputs {
            assert!(
                !text.to_uppercase().contains(k),
                "an escrowed key appears in clear in the {what}"
            );
        }
    }
}

#[test]
fn two_full_runs_against_one_simulator_both_pass() {
    let sim = Simulator::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    for (n, name) in ["first", "second"].iter().enumerate() {
        let (out, xml) = run(&["-t", &sim.target], dir.path(), name);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(0), "{name} run:\n{t}");
        assert!(t.contains(" 0 failed, 0 errors"), "{name} run:\n{t}");
        assert!(!xml.contains("device.left-changed"), "{name} run: {xml}");
        if n == 1 {
            // The first run raised the policy of the policy-test client for good.
            assert!(
                t.contains("the policy of client 2 is already authenticated-encrypted (3); this case needs a fresh meter"),
                "{t}"
            );
        }
    }
    // Every generated key went through the escrow file, which only its owner reads.
    let escrow = dir.path().join("escrow-keys.yaml");
    let keys = escrowed_keys(&escrow);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&escrow).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let first = std::fs::read_to_string(dir.path().join("first.xml")).unwrap();
    let second = std::fs::read_to_string(dir.path().join("second.xml")).unwrap();
    assert_no_key_in_clear(
        &keys,
        &[("first report", &first), ("second report", &second)],
    );
    assert!(first.contains("name=\"escrow.file\""), "{first}");
}

#[test]
fn a_failed_restore_is_reported_with_the_escrow_entry_and_no_key_in_clear() {
    let sim = Simulator::start(&["applies-key-before-response"]);
    let dir = tempfile::tempdir().unwrap();
    let escrow = dir.path().join("escrow-keys.yaml");
    let (out, xml) = run(
        &["suites/key-transfer.yaml", "-t", &sim.target],
        dir.path(),
        "quirk",
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "the quirk is detected:\n{t}");
    let summary = t.split("Summary:").nth(1).expect("a summary");
    assert!(
        summary.contains("KEYS key-transfer SYMSEC_0_Key_Tx_P1: restoring the keys failed"),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("escrow file: {}", escrow.display())),
        "{summary}"
    );
    // The entry named is in the file and holds a key.
    let entry = summary
        .lines()
        .find_map(|l| l.trim().strip_prefix("escrow entry: "))
        .expect("an escrow entry in the summary");
    let entries = load_key_file(&escrow).unwrap();
    assert!(
        entries.contains_key(entry),
        "{entry} is not in the escrow file"
    );
    assert!(entry.ends_with("/unicast"), "{entry}");
    assert!(
        xml.contains(&format!(
            "<property name=\"escrow.file\" value=\"{}\"/>",
            escrow.display()
        )),
        "{xml}"
    );
    assert!(
        xml.contains("<property name=\"keys.restore-failed\" value=\"SYMSEC_0_Key_Tx_P1"),
        "{xml}"
    );
    // The harness found the keys the meter holds after each failed restore:
    // the original ones; the later cases were not blamed for it.
    assert!(
        summary.contains("client 1 holds the original keys"),
        "{summary}"
    );
    assert!(!xml.contains("device.left-changed"), "{xml}");
    assert!(
        t.contains("PASS  ") && t.contains("SYMSEC_0_Key_Tx_N2"),
        "{t}"
    );
    assert!(!t.contains("ERROR"), "{t}");
    assert_no_key_in_clear(
        &escrowed_keys(&escrow),
        &[("console", &t), ("JUnit report", &xml)],
    );
    // And the meter still answers the management client with the example keys.
    let read = bin()
        .args([
            "read",
            "-t",
            &sim.target,
            "--client",
            "1",
            "0-0:1.0.0.255:2",
        ])
        .output()
        .unwrap();
    assert!(read.status.success(), "{}", text(&read));
}

#[test]
fn a_meter_left_with_a_generated_key_is_recovered_from_the_escrow_file() {
    let sim = Simulator::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let escrow = dir.path().join("escrow-keys.yaml");
    let (out, xml) = run(
        &["fixtures/escrow/leave-new-key.yaml", "-t", &sim.target],
        dir.path(),
        "leave",
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let summary = t.split("Summary:").nth(1).expect("a summary");
    assert!(
        summary.contains(
            "KEYS escrow-leave-new-key LEAVE_NEW_KEY: the device is left with keys other than the device profile's"
        ),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("escrow file: {}", escrow.display())),
        "{summary}"
    );
    let entry = summary
        .lines()
        .find_map(|l| l.trim().strip_prefix("escrow entry: "))
        .expect("an escrow entry in the summary")
        .to_owned();
    assert!(
        entry.starts_with("4D4D4D0000BC614E/client-1/") && entry.ends_with("/unicast"),
        "entries are named METER/client-N/TIME/KEY: {entry}"
    );
    assert!(
        xml.contains("<property name=\"device.left-changed\""),
        "{xml}"
    );
    assert!(
        xml.contains(&format!(
            "<property name=\"escrow.entries\" value=\"{entry}\"/>"
        )),
        "{xml}"
    );
    assert_no_key_in_clear(
        &escrowed_keys(&escrow),
        &[("console", &t), ("JUnit report", &xml)],
    );
    // The example keys no longer open the management client...
    let read = |device: Option<&Path>| {
        let mut c = bin();
        c.args([
            "read",
            "-t",
            &sim.target,
            "--client",
            "1",
            "0-0:1.0.0.255:2",
        ]);
        if let Some(d) = device {
            c.arg("--device").arg(d);
        }
        c.output().unwrap()
    };
    assert!(!read(None).status.success(), "the meter holds another key");
    // ...the escrowed one does, named in a device profile.
    let profile = dir.path().join("recover.yaml");
    std::fs::write(
        &profile,
        format!(
            "name: recover from escrow\n\
             clients:\n\
             \x20 - sap: 16\n\
             \x20   mechanism: none\n\
             \x20 - sap: 1\n\
             \x20   mechanism: hls-gmac\n\
             \x20   security: authenticated-encrypted\n\
             \x20   system-title: 4D4D4D0000000001\n\
             \x20   encryption-key: {{file: escrow-keys.yaml, entry: {entry}}}\n\
             \x20   authentication-key: D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF\n\
             \x20   master-key: 000102030405060708090A0B0C0D0E0F\n"
        ),
    )
    .unwrap();
    let r = read(Some(&profile));
    assert!(r.status.success(), "{}", text(&r));
    // Put the example key back with it; then the example keys work again.
    let mut c = bin();
    let restore = c
        .args([
            "run",
            "fixtures/escrow/restore-example-key.yaml",
            "-t",
            &sim.target,
        ])
        .arg("--device")
        .arg(&profile)
        .args(["--no-progress", "--junit"])
        .arg(dir.path().join("restore.xml"))
        .arg("--escrow")
        .arg(&escrow)
        .output()
        .unwrap();
    assert_eq!(restore.status.code(), Some(0), "{}", text(&restore));
    let r = read(None);
    assert!(r.status.success(), "{}", text(&r));
}

#[test]
fn after_a_case_leaves_a_key_later_cases_use_it_and_key_cases_are_inconclusive() {
    let dir = tempfile::tempdir().unwrap();
    let (out, xml) = run(
        &[
            "fixtures/escrow/leave-new-key.yaml",
            "suites/key-transfer.yaml",
            "suites/association.yaml",
        ],
        dir.path(),
        "after",
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    // Every key-transfer case is inconclusive, for the one reason.
    let precondition = "precondition failed: the previous case could not restore the keys (LEAVE_NEW_KEY left client 1 with";
    for id in ["SYMSEC_0_Key_Tx_P1", "SYMSEC_0_Key_Tx_N2", "KEY_TX_MASTER"] {
        let line = t
            .lines()
            .find(|l| l.contains(&format!("key-transfer {id} ")))
            .unwrap_or_else(|| panic!("{id} not reported:\n{t}"));
        assert!(line.starts_with("ERROR"), "{line}");
    }
    assert!(t.contains(precondition), "{t}");
    assert!(!t.contains("FAIL  "), "no case is failed for it:\n{t}");
    // The association suite runs with the key the meter holds, and passes.
    assert!(
        t.lines()
            .any(|l| l.starts_with("PASS") && l.contains("association APPL_OPEN_1 ")),
        "{t}"
    );
    assert!(xml.contains("device.left-changed"), "{xml}");
    // Said once, by the case that left the key, not again by every later case.
    let summary = t.split("Summary:").nth(1).expect("a summary");
    assert_eq!(summary.matches("    KEYS ").count(), 1, "{summary}");
}
