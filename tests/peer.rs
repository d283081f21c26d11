//! Every shipped suite against an independent meter: the Gurux-based peer of
//! `../shared/peers/gx_server.py` (a meter we did not write), over the TCP
//! wrapper and over HDLC/TCP, with the device profile
//! `fixtures/devices/gurux-peer.yaml` written from the peer's README.
//!
//! Each case's verdict (passed, failed, error, skipped), and for a failure the
//! step it failed at, is compared with the checked-in table
//! `tests/peer/expected-verdicts.yaml`, per transport. The test fails on any
//! difference, on any non-pass without `reason:` and
//! `clause:`, on any entry still marked `UNTRIAGED`, and on any `error`
//! verdict (an error hides a verdict). The triage of every non-pass, with the
//! clause it rests on, is in that table.
//!
//! The peer runs with `--replay-check` (its README: replay protection is off
//! unless asked for, because the Gurux library has none; the point is a meter
//! that is as conformant as the library allows) and otherwise its defaults:
//! GCM tags of client 1 verified, conformance 007E1F (no general-protection).
//!
//! Re-bless after a change of the suites, the harness or the peer:
//!
//! ```sh
//! IDIS_PEER_BLESS=1 cargo test --test peer
//! ```
//!
//! rewrites the table from what was observed. Entries whose verdict did not
//! change keep their reason and clause; new or changed non-passes get
//! `reason: UNTRIAGED`, which fails the test until someone triages them
//! against the standard (a deviation of the meter, a case the profile should
//! skip, or a bug of ours to fix).
//!
//! The peer's Python is `target/peer-venv/bin/python`, which `.ci/run`
//! creates; `IDIS_PEER_PYTHON` names another (and `IDIS_PEER_SCRIPT` another
//! `gx_server.py`). Without them the test fails and
//! says so: it never passes without having run. The traffic of every case is
//! written under `target/tmp/peer-traces/` for reading a difference.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use idis_harness::client::CounterStore;
use idis_harness::profile::DeviceProfile;
use idis_harness::report::Reporter;
use idis_harness::report::trace::TraceWriter;
use idis_harness::runner::case::TargetState;
use idis_harness::runner::event::{Event, TargetInfo, Verdict};
use idis_harness::runner::{self, RunOptions, Selection, Target};
use idis_harness::suite::{self, ValidationContext, VarOverrides};
use idis_harness::transport::target::TargetSpec;
use serde::Deserialize;

/// The two ways the peer is run: table key, `gx_server.py --iface`, target scheme.
const TRANSPORTS: [(&str, &str, &str); 2] =
    [("wrapper", "wrapper", "tcp"), ("hdlc", "hdlc", "hdlc+tcp")];

/// Options of every peer process (see the module comment).
const PEER_OPTIONS: [&str; 1] = ["--replay-check"];

const UNTRIAGED: &str = "UNTRIAGED";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn table_path() -> PathBuf {
    root().join("tests/peer/expected-verdicts.yaml")
}

// ---------------------------------------------------------------------------
// The peer processes.

/// A running `gx_server.py`, killed when dropped.
struct Peer {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The peer's Python; the test fails, saying what to do, without it.
fn python() -> PathBuf {
    let (python, origin) = match std::env::var_os("IDIS_PEER_PYTHON") {
        Some(p) => (PathBuf::from(p), "IDIS_PEER_PYTHON"),
        None => (root().join("target/peer-venv/bin/python"), "the default"),
    };
    assert!(
        python.exists(),
        "the peer meter's Python ({origin}: {}) is missing: run .ci/run, which creates \
         target/peer-venv with ../shared/peers/requirements.txt, or set IDIS_PEER_PYTHON \
         to a Python that has them",
        python.display()
    );
    python
}

/// `../shared/peers/gx_server.py` (CI has shared/ beside the clone), or `IDIS_PEER_SCRIPT`.
fn script() -> PathBuf {
    let s = std::env::var_os("IDIS_PEER_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/peers/gx_server.py"));
    assert!(
        s.exists(),
        "the peer meter is expected at {} (shared/ beside the clone, or IDIS_PEER_SCRIPT)",
        s.display()
    );
    s
}

/// A loopback port nobody listens on now.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    l.local_addr().expect("the port just bound").port()
}

fn start_peer(python: &Path, iface: &str, logs: &Path) -> Peer {
    let port = free_port();
    let log = logs.join(format!("gx_server-{iface}.log"));
    let out = std::fs::File::create(&log).expect("the peer's log file");
    let err = out.try_clone().expect("the peer's log file, twice");
    let child = Command::new(python)
        .arg(script())
        .args(["--port", &port.to_string(), "--iface", iface])
        .args(PEER_OPTIONS)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut peer = Peer { child, addr, log };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            break;
        }
        if let Ok(Some(status)) = peer.child.try_wait() {
            panic!(
                "the peer meter ({iface}) exited with {status} before listening:\n{}",
                peer.log_text()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the peer meter ({iface}) did not listen on {addr} within 20 s:\n{}",
            peer.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    peer
}

// ---------------------------------------------------------------------------
// The table.

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    case: String,
    verdict: String,
    /// For a failure or an error: the step it happened at, e.g.
    /// `step 2 (key-transfer)`, so that a case failing for another reason is
    /// a difference too.
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    clause: Option<String>,
}

/// Transport -> entries in run order.
type Table = BTreeMap<String, Vec<Entry>>;

fn load_table(path: &Path) -> Result<Table, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_saphyr::from_str(&text).map_err(|e| format!("{} does not parse:\n{e}", path.display()))
}

/// One line of text, with single spaces (what survives a YAML folded scalar).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `key: >-` and the text folded at about 90 columns (folding joins lines
/// with a space, so one-line text survives a round trip).
fn folded(out: &mut String, key: &str, text: &str) {
    let text = one_line(text);
    // Short text that YAML reads as a plain scalar goes on the key's line.
    let plain = !text.is_empty()
        && text.len() <= 80
        && !text.contains(": ")
        && !text.contains(" #")
        && !text.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@`".contains(c));
    if plain {
        out.push_str(&format!("    {key}: {text}\n"));
        return;
    }
    out.push_str(&format!("    {key}: >-\n"));
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.len() + 1 + word.len() > 88 {
            out.push_str(&format!("      {line}\n"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&format!("      {line}\n"));
}

fn render_table(table: &Table, header: &str) -> String {
    let mut out = String::from(header);
    for (transport, _, _) in TRANSPORTS {
        let Some(entries) = table.get(transport) else {
            continue;
        };
        out.push_str(&format!("\n{transport}:\n"));
        for e in entries {
            out.push_str(&format!(
                "  - case: {}\n    verdict: {}\n",
                e.case, e.verdict
            ));
            if let Some(a) = &e.at {
                folded(&mut out, "at", a);
            }
            if let Some(r) = &e.reason {
                folded(&mut out, "reason", r);
            }
            if let Some(c) = &e.clause {
                folded(&mut out, "clause", c);
            }
        }
    }
    out
}

/// The comment block at the top of the table file (kept when re-blessing).
fn table_header(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let header: String = text
        .lines()
        .take_while(|l| l.starts_with('#') || l.trim().is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    if header.trim().is_empty() {
        "# Expected verdicts of the shipped suites against the Gurux-based peer meter\n\
         # (tests/peer.rs). Re-bless with IDIS_PEER_BLESS=1 cargo test --test peer.\n"
            .to_string()
    } else {
        header.trim_end().to_string() + "\n"
    }
}

/// Problems with the table itself: untriaged or unexplained non-passes, errors.
fn table_problems(table: &Table) -> Vec<String> {
    let mut out = Vec::new();
    for (transport, entries) in table {
        for e in entries {
            let at = format!("{transport} {}", e.case);
            if !["passed", "failed", "error", "skipped"].contains(&e.verdict.as_str()) {
                out.push(format!(
                    "{at}: verdict `{}` is not one of passed, failed, error, skipped",
                    e.verdict
                ));
            }
            if e.verdict == "passed" {
                continue;
            }
            if e.verdict == "error" {
                out.push(format!(
                    "{at}: an `error` verdict hides what the meter does; the acceptance allows none"
                ));
            }
            let fields = [("reason", &e.reason), ("clause", &e.clause)];
            for (field, v) in fields {
                if v.as_deref().is_none_or(|t| t.trim().is_empty()) {
                    out.push(format!("{at}: the {} has no `{field}:`", e.verdict));
                }
            }
            if fields.iter().any(|(_, v)| {
                v.as_deref()
                    .is_some_and(|t| t.trim().starts_with(UNTRIAGED))
            }) {
                out.push(format!(
                    "{at}: the {} is {UNTRIAGED}: triage it against the standard (a deviation \
                     of the meter, a case the profile should skip, or a bug of ours)",
                    e.verdict
                ));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Running.

/// What a case came to: the verdict word and the message.
#[derive(Debug, Clone)]
struct Observed {
    case: String,
    verdict: &'static str,
    message: String,
}

impl Observed {
    /// The step of a failure or error: `step 2 (key-transfer)` of
    /// `step 2 (key-transfer): expected ...`.
    fn at(&self) -> Option<String> {
        if !matches!(self.verdict, "failed" | "error") || !self.message.starts_with("step ") {
            return None;
        }
        let end = self.message.find("): ")?;
        self.message.get(..=end).map(one_line)
    }
}

fn observed(case: String, v: &Verdict) -> Observed {
    let (verdict, message) = match v {
        Verdict::Passed => ("passed", String::new()),
        Verdict::Failed(d) => ("failed", d.message.clone()),
        Verdict::Error(d) => ("error", d.message.clone()),
        Verdict::Skipped(r) => ("skipped", r.clone()),
    };
    Observed {
        case,
        verdict,
        message,
    }
}

/// Runs every shipped suite against each peer at once; transport -> cases in order.
fn run_suites(peers: &mut [(&'static str, &'static str, Peer)]) -> BTreeMap<String, Vec<Observed>> {
    let (suites, errors) =
        suite::load_paths(&[root().join("suites")], &ValidationContext::default());
    assert!(
        errors.is_empty(),
        "the shipped suites do not load:\n{}",
        errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n\n")
    );
    let profile_path = root().join("fixtures/devices/gurux-peer.yaml");
    let profile = DeviceProfile::load(&profile_path).unwrap_or_else(|e| panic!("{e}"));
    let mut targets = Vec::new();
    let mut names = BTreeMap::new();
    for (transport, scheme, peer) in peers.iter() {
        let text = format!("{scheme}://{}", peer.addr);
        let spec: TargetSpec = text
            .parse()
            .unwrap_or_else(|e| panic!("target {text}: {e}"));
        names.insert(text.clone(), transport.to_string());
        let info = TargetInfo {
            name: text,
            profile: profile_path.display().to_string(),
            transport: spec.transport_description(),
            system_title: profile.server_system_title.map(|t| t.to_string()),
        };
        let state = TargetState::new(spec, profile.clone(), None, false, CounterStore::memory());
        targets.push(Target { state, info });
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let opts = RunOptions {
        jobs: targets.len(),
        case_timeout: Duration::from_secs(30),
        ..RunOptions::default()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (_cancel_tx, cancel) = tokio::sync::watch::channel(false);
    rt.block_on(runner::run(
        Arc::new(suites),
        Selection::default(),
        Arc::new(VarOverrides::new()),
        targets,
        opts,
        tx,
        cancel,
    ));
    // A meter that died in the run would explain every difference at once: say so.
    for (transport, _, peer) in peers.iter_mut() {
        if let Ok(Some(status)) = peer.child.try_wait() {
            panic!(
                "the peer meter ({transport}) exited with {status} during the run:\n{}",
                peer.log_text()
            );
        }
    }
    let traces = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("peer-traces");
    let _ = std::fs::remove_dir_all(&traces);
    let mut writer = TraceWriter::new(traces);
    let mut out: BTreeMap<String, Vec<Observed>> = BTreeMap::new();
    while let Ok(ev) = rx.try_recv() {
        let _ = writer.on_event(&ev);
        if let Event::CaseFinished { case, verdict, .. } = ev {
            let transport = names
                .get(&case.target)
                .cloned()
                .unwrap_or_else(|| case.target.clone());
            out.entry(transport).or_default().push(observed(
                format!("{}::{}", case.suite_id, case.case_id),
                &verdict,
            ));
        }
    }
    out
}

/// Differences between the table and a run, one readable line each.
fn differences(table: &Table, got: &BTreeMap<String, Vec<Observed>>) -> Vec<String> {
    let mut out = Vec::new();
    for (transport, _, _) in TRANSPORTS {
        let expected: BTreeMap<&str, &Entry> = table
            .get(transport)
            .map(|v| v.iter().map(|e| (e.case.as_str(), e)).collect())
            .unwrap_or_default();
        let seen = got.get(transport).map(Vec::as_slice).unwrap_or_default();
        for o in seen {
            match expected.get(o.case.as_str()) {
                None => out.push(format!(
                    "{transport} {}: not in the table; got {}{}",
                    o.case,
                    o.verdict,
                    with_message(&o.message)
                )),
                Some(e) if e.verdict != o.verdict => out.push(format!(
                    "{transport} {}: expected {}, got {}{}",
                    o.case,
                    e.verdict,
                    o.verdict,
                    with_message(&o.message)
                )),
                Some(e) if e.at.is_some() && e.at != o.at() => out.push(format!(
                    "{transport} {}: expected {} at {}, got {} at {}{}",
                    o.case,
                    e.verdict,
                    e.at.as_deref().unwrap_or_default(),
                    o.verdict,
                    o.at().as_deref().unwrap_or("no step"),
                    with_message(&o.message)
                )),
                Some(_) => {}
            }
        }
        for case in expected.keys() {
            if !seen.iter().any(|o| o.case == *case) {
                out.push(format!(
                    "{transport} {case}: in the table, but the run had no such case"
                ));
            }
        }
    }
    out
}

fn with_message(m: &str) -> String {
    if m.is_empty() {
        String::new()
    } else {
        format!(" ({})", one_line(m))
    }
}

/// The table a bless writes: the run's verdicts, with the reasons of entries
/// whose verdict did not change.
fn blessed(old: &Table, got: &BTreeMap<String, Vec<Observed>>) -> Table {
    let mut new = Table::new();
    for (transport, seen) in got {
        let before: BTreeMap<&str, &Entry> = old
            .get(transport)
            .map(|v| v.iter().map(|e| (e.case.as_str(), e)).collect())
            .unwrap_or_default();
        let entries = seen
            .iter()
            .map(|o| {
                let mut e = Entry {
                    case: o.case.clone(),
                    verdict: o.verdict.to_string(),
                    at: o.at(),
                    reason: None,
                    clause: None,
                };
                if o.verdict == "passed" {
                    return e;
                }
                match before.get(o.case.as_str()) {
                    Some(b)
                        if b.verdict == o.verdict
                            && b.reason.is_some()
                            && (b.at.is_none() || b.at == e.at) =>
                    {
                        e.reason = b.reason.clone();
                        e.clause = b.clause.clone();
                    }
                    b => {
                        let was = match b {
                            Some(b) if b.verdict != "passed" => format!(
                                " (was {}{}: {})",
                                b.verdict,
                                b.at.as_deref()
                                    .map(|a| format!(" at {a}"))
                                    .unwrap_or_default(),
                                b.reason.as_deref().unwrap_or("no reason")
                            ),
                            Some(b) => format!(" (was {})", b.verdict),
                            None => String::new(),
                        };
                        e.reason = Some(format!(
                            "{UNTRIAGED}: the harness says: {}{was}",
                            one_line(&o.message)
                        ));
                        e.clause = Some(UNTRIAGED.to_string());
                    }
                }
                e
            })
            .collect();
        new.insert(transport.clone(), entries);
    }
    new
}

#[test]
fn every_suite_against_the_gurux_peer_matches_the_expected_verdicts() {
    let python = python();
    let logs = tempfile::tempdir().expect("a temporary directory");
    let mut peers: Vec<(&'static str, &'static str, Peer)> = TRANSPORTS
        .iter()
        .map(|(transport, iface, scheme)| {
            (*transport, *scheme, start_peer(&python, iface, logs.path()))
        })
        .collect();
    let got = run_suites(&mut peers);
    for (transport, _, peer) in &peers {
        let log = peer.log_text();
        // The peer patches its library at start; another library version makes it another meter.
        assert!(
            !log.contains("WARNING"),
            "the peer meter ({transport}) did not start as pinned (see \
             ../shared/peers/requirements.txt):\n{log}"
        );
    }
    for (transport, _, _) in TRANSPORTS {
        assert!(
            got.get(transport).is_some_and(|v| !v.is_empty()),
            "no case ran against the {transport} peer"
        );
    }
    let path = table_path();
    let bless = std::env::var_os("IDIS_PEER_BLESS").is_some_and(|v| !v.is_empty() && v != "0");
    let table = if bless {
        let old = load_table(&path).unwrap_or_default();
        let new = blessed(&old, &got);
        let text = render_table(&new, &table_header(&path));
        std::fs::create_dir_all(path.parent().expect("the table is in a folder"))
            .expect("the table's folder");
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        // What was written must read back as written.
        let back = load_table(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, new, "the blessed table does not read back as written");
        new
    } else {
        load_table(&path).unwrap_or_else(|e| panic!("{e}"))
    };
    let counts: Vec<String> = got
        .iter()
        .map(|(t, v)| {
            let n = |w: &str| v.iter().filter(|o| o.verdict == w).count();
            format!(
                "{t}: {} passed, {} failed, {} errors, {} skipped",
                n("passed"),
                n("failed"),
                n("error"),
                n("skipped")
            )
        })
        .collect();
    let mut problems = differences(&table, &got);
    if !problems.is_empty() {
        problems.insert(
            0,
            format!(
                "the verdicts against the Gurux peer differ from {} (the traffic of every case is \
                 under target/tmp/peer-traces; IDIS_PEER_BLESS=1 rewrites the table):",
                path.display()
            ),
        );
    }
    let table_issues = table_problems(&table);
    if !table_issues.is_empty() {
        problems.push(format!("{} is not triaged completely:", path.display()));
        problems.extend(table_issues);
    }
    assert!(
        problems.is_empty(),
        "{}\n\nthis run: {}",
        problems.join("\n  "),
        counts.join("; ")
    );
}

#[cfg(test)]
mod table_format {
    use super::*;

    fn entry(case: &str, verdict: &str, reason: Option<&str>) -> Entry {
        Entry {
            case: case.into(),
            verdict: verdict.into(),
            at: None,
            reason: reason.map(Into::into),
            clause: reason.map(|_| "Green Book 9.3.2".into()),
        }
    }

    fn seen(case: &str, verdict: &'static str, message: &str) -> Observed {
        Observed {
            case: case.into(),
            verdict,
            message: message.into(),
        }
    }

    #[test]
    fn a_rendered_table_reads_back_with_long_reasons_folded() {
        let long = "the meter answers: \"quoted\", #not-a-comment, key: value ".repeat(6);
        let mut short = entry("a::D", "failed", Some("- looks like a list: and a map #x"));
        short.at = Some("step 5 (get 17/0-0:41.0.0.255/2)".into());
        let mut t = Table::new();
        t.insert(
            "wrapper".into(),
            vec![
                entry("a::B", "passed", None),
                entry("a::C", "failed", Some(&long)),
                short,
            ],
        );
        let text = render_table(&t, "# header\n");
        let back: Table = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(
            back["wrapper"][1].reason.as_deref(),
            Some(one_line(&long).as_str())
        );
        assert_eq!(back["wrapper"][0], t["wrapper"][0]);
        assert_eq!(back["wrapper"][2], t["wrapper"][2]);
        assert!(
            text.contains("    at: step 5 (get 17/0-0:41.0.0.255/2)\n"),
            "{text}"
        );
    }

    #[test]
    fn untriaged_errors_and_unexplained_non_passes_are_problems() {
        let mut t = Table::new();
        t.insert(
            "hdlc".into(),
            vec![
                entry("a::P", "passed", None),
                entry("a::F", "failed", Some("a real deviation")),
                entry("a::U", "failed", Some("UNTRIAGED: the harness says: x")),
                entry("a::E", "error", Some("blocked on roles (lead)")),
                entry("a::S", "skipped", None),
            ],
        );
        let p = table_problems(&t);
        assert_eq!(p.len(), 4, "{p:#?}");
        assert!(p[0].contains("a::U") && p[0].contains(UNTRIAGED), "{p:#?}");
        assert!(p[1].contains("a::E") && p[1].contains("error"), "{p:#?}");
        assert!(
            p.iter().any(|m| m.contains("a::S") && m.contains("reason")),
            "{p:#?}"
        );
    }

    #[test]
    fn a_failure_at_another_step_is_a_difference() {
        let mut t = Table::new();
        let mut e = entry("a::F", "failed", Some("a real deviation"));
        e.at = Some("step 2 (key-transfer)".into());
        t.insert("wrapper".into(), vec![e]);
        let same = BTreeMap::from([(
            "wrapper".to_string(),
            vec![seen(
                "a::F",
                "failed",
                "step 2 (key-transfer): expected x, got y",
            )],
        )]);
        assert!(differences(&t, &same).is_empty());
        let moved = BTreeMap::from([(
            "wrapper".to_string(),
            vec![seen(
                "a::F",
                "failed",
                "step 3 (get 8/0-0:1.0.0.255/2): expected x, got y",
            )],
        )]);
        let d = differences(&t, &moved);
        assert_eq!(d.len(), 1, "{d:#?}");
        assert!(
            d[0].contains("expected failed at step 2 (key-transfer), got failed at step 3 (get 8/0-0:1.0.0.255/2)"),
            "{d:#?}"
        );
        // A bless does not carry the old reason over to the new step.
        let new = blessed(&t, &moved);
        let r = new["wrapper"][0].reason.as_deref().unwrap_or_default();
        assert!(
            r.starts_with(UNTRIAGED) && r.contains("was failed at step 2"),
            "{r}"
        );
    }

    #[test]
    fn a_bless_keeps_the_reasons_of_unchanged_verdicts_only() {
        let mut old = Table::new();
        old.insert(
            "wrapper".into(),
            vec![
                entry("a::Same", "failed", Some("kept")),
                entry("a::Changed", "failed", Some("old reason")),
            ],
        );
        let got = BTreeMap::from([(
            "wrapper".to_string(),
            vec![
                seen("a::Same", "failed", "x"),
                seen("a::Changed", "skipped", "not declared"),
                seen("a::New", "passed", ""),
            ],
        )]);
        let new = blessed(&old, &got);
        let w = &new["wrapper"];
        assert_eq!(w[0].reason.as_deref(), Some("kept"));
        let changed = w[1].reason.as_deref().unwrap_or_default();
        assert!(changed.starts_with(UNTRIAGED), "{changed}");
        assert!(changed.contains("was failed: old reason"), "{changed}");
        assert_eq!(w[2].reason, None);
        let d = differences(&old, &got);
        assert!(
            d.iter()
                .any(|l| l.contains("a::Changed: expected failed, got skipped (not declared)")),
            "{d:#?}"
        );
        assert!(
            d.iter().any(|l| l.contains("a::New: not in the table")),
            "{d:#?}"
        );
    }
}
