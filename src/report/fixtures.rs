//! Synthetic event streams shared by the reporter tests (no clause: test data).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::runner::event::*;

/// 2026-01-02T03:04:05Z, fixed so outputs are reproducible.
pub(crate) fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_323_045)
}

/// A key-looking hex string that must come through every report unmangled.
pub(crate) const KEY_HEX: &str = "000102030405060708090A0B0C0D0E0F";

pub(crate) fn sim() -> TargetInfo {
    TargetInfo {
        name: "sim".into(),
        profile: "built-in defaults".into(),
        transport: "wrapper over in-memory link".into(),
        system_title: Some("4D4D4D0000BC614E".into()),
    }
}

pub(crate) fn tcp() -> TargetInfo {
    TargetInfo {
        name: "tcp://127.0.0.1:4059".into(),
        profile: "profiles/acme.yaml".into(),
        transport: "wrapper over TCP".into(),
        system_title: None,
    }
}

pub(crate) fn case(suite: &str, id: &str, title: &str, target: &str, line: u32) -> CaseInfo {
    let (suite_title, file) = match suite {
        "replay-rejection" => ("Replay rejection", "suites/replay.yaml"),
        _ => ("Clock", "suites/clock.yaml"),
    };
    CaseInfo {
        suite_id: suite.into(),
        suite_title: suite_title.into(),
        suite_file: PathBuf::from(file),
        case_id: id.into(),
        case_title: title.into(),
        checks: format!("IDIS P2 {id}"),
        tags: vec!["security".into()],
        location: Some(SourceLocation {
            file: PathBuf::from(file),
            line,
            column: 3,
        }),
        target: target.into(),
    }
}

fn rec(
    ms: u64,
    direction: Direction,
    layer: &'static str,
    hex: &str,
    decoded: &str,
) -> TrafficRecord {
    TrafficRecord {
        at: Duration::from_millis(ms),
        direction,
        layer,
        hex: hex.into(),
        decoded: decoded.into(),
    }
}

pub(crate) fn replay_traffic() -> Vec<TrafficRecord> {
    vec![
        rec(
            0,
            Direction::Note,
            "note",
            "",
            "step 1 (get): get 8/0-0:1.0.0.255/2",
        ),
        rec(
            1,
            Direction::Sent,
            "xdlms",
            "C001C1000800000100 00FF0200",
            "get-request normal invoke-id 1 8/0-0:1.0.0.255/2",
        ),
        rec(
            11,
            Direction::Received,
            "xdlms",
            "C401C100090C07EA0102050304050000800000",
            "get-response normal data octet-string(12)",
        ),
    ]
}

/// The failing case's diagnostic: multi-line, with ANSI colour, `]]>`, a NUL
/// and a key-looking hex string, as a careless or hostile device could cause.
pub(crate) fn replay_diagnostic() -> Diagnostic {
    Diagnostic {
        message: "step 3 (replay): expected exception-response invocation-counter-error,\n got get-response data".into(),
        detail: format!(
            "expected: exception-response invocation-counter-error\n\
             got:      get-response data \x1b[31m]]>\x00{KEY_HEX}\x1b[0m\n\
             --> suites/replay.yaml:40:9\n   |\n40 |         expect: invocation-counter-error\n   |         ^^^^^^"
        ),
        location: Some(SourceLocation {
            file: PathBuf::from("suites/replay.yaml"),
            line: 40,
            column: 9,
        }),
    }
}

fn finished(case: CaseInfo, verdict: Verdict, ms: u64, traffic: Vec<TrafficRecord>) -> [Event; 2] {
    [
        Event::CaseStarted { case: case.clone() },
        Event::CaseFinished {
            case,
            verdict,
            duration: Duration::from_millis(ms),
            traffic,
        },
    ]
}

/// A complete run over two targets: pass, fail, error, skip, and the same
/// case id against both targets.
pub(crate) fn full_run() -> Vec<Event> {
    let mut ev = vec![Event::RunStarted {
        started: t0(),
        targets: vec![sim(), tcp()],
        cases: 6,
        harness_version: "0.1.0".into(),
    }];
    let c1 = case(
        "replay-rejection",
        "SYMSEC_0_FraCount_1",
        "An exact replay is rejected",
        "sim",
        30,
    );
    ev.push(Event::CaseStarted { case: c1.clone() });
    ev.push(Event::StepFinished {
        case: c1.clone(),
        index: 0,
        description: "get 8/0-0:1.0.0.255/2".into(),
        ok: false,
        traffic: replay_traffic(),
    });
    ev.push(Event::CaseFinished {
        case: c1,
        verdict: Verdict::Failed(replay_diagnostic()),
        duration: Duration::from_millis(12),
        traffic: replay_traffic(),
    });
    ev.extend(finished(
        case(
            "replay-rejection",
            "SYMSEC_0_FraCount_2",
            "A lower counter is rejected",
            "sim",
            50,
        ),
        Verdict::Passed,
        8,
        replay_traffic(),
    ));
    ev.extend(finished(
        case("clock", "CLOCK_1", "Clock time is readable", "sim", 5),
        Verdict::Passed,
        5,
        vec![],
    ));
    ev.extend(finished(
        case("clock", "CLOCK_2", "Clock set needs HLS", "sim", 20),
        Verdict::Error(Diagnostic {
            message: "transport: no reply within 2.000s".into(),
            detail: "no reply within 2.000s to set-request normal 8/0-0:1.0.0.255/2".into(),
            location: None,
        }),
        2000,
        vec![rec(
            2000,
            Direction::Note,
            "note",
            "",
            "timeout after 2.000s",
        )],
    ));
    ev.extend(finished(
        case("clock", "CLOCK_3", "Daylight saving deviation", "sim", 40),
        Verdict::Skipped("profile declares no DST support".into()),
        0,
        vec![],
    ));
    ev.extend(finished(
        case(
            "replay-rejection",
            "SYMSEC_0_FraCount_1",
            "An exact replay is rejected",
            "tcp://127.0.0.1:4059",
            30,
        ),
        Verdict::Passed,
        40,
        replay_traffic(),
    ));
    ev.push(Event::RunFinished {
        summary: Summary {
            passed: 3,
            failed: 1,
            errors: 1,
            skipped: 1,
            not_run: 0,
            not_tested: 0,
            duration: Duration::from_millis(2345),
        },
        interrupted: false,
    });
    ev
}

/// A single-target run of 4 selected cases, interrupted while the second
/// was running (it started and finished one step, never finished).
pub(crate) fn interrupted_run() -> Vec<Event> {
    let mut ev = vec![Event::RunStarted {
        started: t0(),
        targets: vec![sim()],
        cases: 4,
        harness_version: "0.1.0".into(),
    }];
    ev.extend(finished(
        case("clock", "CLOCK_1", "Clock time is readable", "sim", 5),
        Verdict::Passed,
        5,
        replay_traffic(),
    ));
    let c2 = case(
        "replay-rejection",
        "SYMSEC_0_FraCount_1",
        "An exact replay is rejected",
        "sim",
        30,
    );
    ev.push(Event::CaseStarted { case: c2.clone() });
    ev.push(Event::StepFinished {
        case: c2,
        index: 0,
        description: "get 8/0-0:1.0.0.255/2".into(),
        ok: true,
        traffic: replay_traffic(),
    });
    ev.push(Event::RunFinished {
        summary: Summary {
            passed: 1,
            failed: 0,
            errors: 0,
            skipped: 0,
            not_run: 3,
            not_tested: 0,
            duration: Duration::from_millis(1500),
        },
        interrupted: true,
    });
    ev
}

/// A run whose only target failed its pre-flight: nothing ran, three cases
/// are not run, with one reason.
pub(crate) fn stopped_run() -> Vec<Event> {
    let tcp = tcp();
    let not_run = vec![
        case("clock", "CLOCK_1", "Clock time is readable", &tcp.name, 5),
        case("clock", "CLOCK_2", "Clock set needs HLS", &tcp.name, 12),
        case(
            "replay-rejection",
            "SYMSEC_0_FraCount_1",
            "An exact replay is rejected",
            &tcp.name,
            30,
        ),
    ];
    let message = format!(
        "could not test {}: nothing is listening there (connection refused)",
        tcp.name
    );
    vec![
        Event::RunStarted {
            started: t0(),
            targets: vec![tcp.clone()],
            cases: 3,
            harness_version: "0.1.0".into(),
        },
        Event::TargetStopped {
            target: tcp.name.clone(),
            detail: format!(
                "{message}\n  tried: associate as the public client (SAP 16, no authentication) \
                 and read class 1 0-0:42.0.0.255 attribute 2\n  \
                 likely cause: the address or port is wrong"
            ),
            message,
            not_run,
            traffic: vec![],
        },
        Event::RunFinished {
            summary: Summary {
                not_tested: 3,
                duration: Duration::from_millis(20),
                ..Summary::default()
            },
            interrupted: false,
        },
    ]
}
