//! Runs cases against targets and emits [`event::Event`]s; prints nothing.
//!
//! Each target runs its cases one at a time (a meter has one link); with
//! `jobs > 1`, several targets run at once. A case whose required features the
//! device profile lacks, or that needs a link the target does not give, is
//! skipped with the reason. Interruption (Ctrl-C) stops between steps; the
//! teardown of the running case still runs, and the events of what ran are
//! complete, so reports are written.
//!
//! A dead or misconfigured target ends in seconds ([`guard`]): each target is
//! probed before its first case ([`probe`]) and stopped with one reason when
//! the probe fails; after a case that sends bad input the meter is probed
//! again, so a case that leaves it unable to answer is the one that fails;
//! and after [`RunOptions::max_lost`] cases in a row lose the meter, the
//! target stops and its remaining cases are not run.

pub mod case;
pub mod data;
pub mod event;
pub mod guard;
pub mod monitor;
pub mod outcome;
pub mod probe;
pub mod selection;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Mutex, mpsc, watch};

use crate::suite::{LoadedSuite, VarOverrides};
use crate::transport::link::LinkKind;
use case::{CaseRun, TargetState};
use event::{CaseInfo, Event, SourceLocation, Summary, TargetInfo, Verdict};
use guard::LostStreak;
pub use selection::Selection;

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub strict: bool,
    pub fail_fast: bool,
    /// Targets run at once.
    pub jobs: usize,
    /// Time limit of a case unless it sets its own.
    pub case_timeout: Duration,
    /// Probe each target before its first case, and stop it with one message
    /// when the probe fails.
    pub preflight: bool,
    /// The fatal-failure policy: stop a target after this many cases in a row
    /// lost the meter.
    pub max_lost: usize,
    /// The run monitors to report (all by default; `run` keeps those the selection names).
    pub monitors: Vec<monitor::MonitorDef>,
}

/// The default of [`RunOptions::max_lost`].
pub const DEFAULT_MAX_LOST: usize = 3;

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            strict: false,
            fail_fast: false,
            jobs: 1,
            case_timeout: Duration::from_secs(60),
            preflight: true,
            max_lost: DEFAULT_MAX_LOST,
            monitors: monitor::MONITORS.to_vec(),
        }
    }
}

/// A target to run against.
#[derive(Debug)]
pub struct Target {
    pub state: TargetState,
    pub info: TargetInfo,
}

/// The cases selected from the suites, in order.
pub fn selected(suites: &[LoadedSuite], sel: &Selection) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (si, s) in suites.iter().enumerate() {
        for (ci, c) in s.suite.cases.iter().enumerate() {
            if sel.selects(s, c) {
                out.push((si, ci));
            }
        }
    }
    out
}

fn case_info(suite: &LoadedSuite, ci: usize, target: &str) -> CaseInfo {
    let c = &suite.suite.cases[ci];
    let location = suite.step_span(ci, false, 0).map(|s| SourceLocation {
        file: suite.path.clone(),
        line: s.line.saturating_sub(1).max(1),
        column: 1,
    });
    let mut tags = suite.suite.tags.clone();
    tags.extend(c.tags.iter().cloned());
    CaseInfo {
        suite_id: suite.suite.suite.clone(),
        suite_title: suite.suite.title.clone(),
        suite_file: suite.path.clone(),
        case_id: c.id.clone(),
        case_title: c.title.clone(),
        checks: c.checks.clone(),
        tags,
        location,
        target: target.to_owned(),
    }
}

/// The device features a case needs: its suite's and its own.
pub fn case_requires(suite: &LoadedSuite, ci: usize) -> Vec<String> {
    let own = suite
        .suite
        .cases
        .get(ci)
        .map(|c| c.requires.as_slice())
        .unwrap_or_default();
    suite.suite.requires.iter().chain(own).cloned().collect()
}

/// The link a case runs on against this target, or why it is skipped: a
/// feature the profile does not declare, a role it does not map, or a link
/// the target does not give.
fn plan_case(
    t: &TargetState,
    suite: &LoadedSuite,
    ci: usize,
    vars: &BTreeMap<String, String>,
) -> Result<LinkKind, String> {
    let requires = case_requires(suite, ci);
    let missing: Vec<String> = requires
        .iter()
        .filter(|f| !t.profile.has_feature(f))
        .map(|f| format!("`{f}`"))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the device profile `{}` does not declare {}",
            t.profile.name,
            missing.join(", ")
        ));
    }
    if requires.iter().any(|r| r == "restart") && t.sim.is_none() && t.profile.restart.is_none() {
        return Err(format!(
            "the device profile `{}` gives no restart command (restart: {{command: ...}})",
            t.profile.name
        ));
    }
    let needed = crate::suite::roles::needed_roles(&suite.suite.cases[ci], vars);
    let unmapped = crate::suite::roles::unmapped(&needed, &t.profile);
    if !unmapped.is_empty() {
        return Err(format!(
            "the device profile `{}` cannot run it: {}",
            t.profile.name,
            unmapped.join("; ")
        ));
    }
    t.link_kind_for(&requires)
}

/// Runs the selected cases on every target, sending events. Returns the summary
/// (also sent as the last event).
pub async fn run(
    suites: Arc<Vec<LoadedSuite>>,
    selection: Selection,
    overrides: Arc<VarOverrides>,
    targets: Vec<Target>,
    opts: RunOptions,
    events: mpsc::UnboundedSender<Event>,
    cancel: watch::Receiver<bool>,
) -> (Summary, Vec<Target>) {
    let started = Instant::now();
    let picked = selected(&suites, &selection);
    let mut opts = opts;
    opts.monitors.retain(|m| selection.selects_monitor(m.id));
    let _ = events.send(Event::RunStarted {
        started: SystemTime::now(),
        targets: targets.iter().map(|t| t.info.clone()).collect(),
        cases: (picked.len() + opts.monitors.len()) * targets.len(),
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
    });
    let summary = Arc::new(Mutex::new(Summary::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let jobs = opts.jobs.max(1);
    let semaphore = Arc::new(tokio::sync::Semaphore::new(jobs));
    let mut handles = Vec::new();
    for target in targets {
        let (suites, picked, overrides, events, cancel, summary, stop, opts, sem) = (
            suites.clone(),
            picked.clone(),
            overrides.clone(),
            events.clone(),
            cancel.clone(),
            summary.clone(),
            stop.clone(),
            opts.clone(),
            semaphore.clone(),
        );
        handles.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            run_target(
                target, &suites, &picked, &overrides, &opts, &events, &cancel, &summary, &stop,
            )
            .await
        }));
    }
    let mut done = Vec::new();
    for h in handles {
        if let Ok(t) = h.await {
            done.push(t);
        }
    }
    let mut s = *summary.lock().await;
    s.duration = started.elapsed();
    let interrupted = *cancel.borrow() || s.not_run > 0;
    let _ = events.send(Event::RunFinished {
        summary: s,
        interrupted,
    });
    (s, done)
}

#[allow(clippy::too_many_arguments)]
async fn run_target(
    mut target: Target,
    suites: &[LoadedSuite],
    picked: &[(usize, usize)],
    overrides: &VarOverrides,
    opts: &RunOptions,
    events: &mpsc::UnboundedSender<Event>,
    cancel: &watch::Receiver<bool>,
    summary: &Mutex<Summary>,
    stop: &std::sync::atomic::AtomicBool,
) -> Target {
    let name = target.info.name.clone();
    let infos = |from: usize| -> Vec<CaseInfo> {
        picked
            .get(from..)
            .unwrap_or_default()
            .iter()
            .map(|(si, ci)| case_info(&suites[*si], *ci, &name))
            .collect()
    };
    if opts.preflight && !picked.is_empty() {
        let mut interrupt = cancel.clone();
        let checked = tokio::select! {
            r = guard::preflight(&mut target.state, suites, picked, overrides) => Some(r),
            _ = interrupt.wait_for(|c| *c) => None,
        };
        let failed = match checked {
            None => {
                summary.lock().await.not_run += picked.len();
                return target;
            }
            Some(r) => r.err(),
        };
        if let Some(f) = failed {
            let detail = format!(
                "{}\n  {} case(s) not run; --no-preflight runs them anyway",
                f.explain(&name),
                picked.len()
            );
            stop_target(
                events,
                summary,
                &name,
                format!("could not test {name}: {}", f.reason()),
                detail,
                infos(0),
                f.traffic,
            )
            .await;
            return target;
        }
    }
    let mut streak = LostStreak::new(opts.max_lost);
    for (n, (si, ci)) in picked.iter().enumerate() {
        if *cancel.borrow() || stop.load(std::sync::atomic::Ordering::Relaxed) {
            summary.lock().await.not_run += picked.len() - n;
            break;
        }
        let suite = &suites[*si];
        let info = case_info(suite, *ci, &name);
        let _ = events.send(Event::CaseStarted { case: info.clone() });
        let t0 = Instant::now();
        let vars = overrides.vars_for(&suite.suite);
        let (verdict, traffic) = match plan_case(&target.state, suite, *ci, &vars) {
            Err(reason) => (Verdict::Skipped(reason), vec![]),
            Ok(kind) => {
                guard::guarded_case(
                    &mut target.state,
                    suite,
                    *ci,
                    kind,
                    overrides,
                    opts,
                    events,
                    &info,
                    cancel,
                    &mut streak,
                )
                .await
            }
        };
        summary.lock().await.count(&verdict);
        let bad = matches!(verdict, Verdict::Failed(_) | Verdict::Error(_));
        let _ = events.send(Event::CaseFinished {
            case: info,
            verdict,
            duration: t0.elapsed(),
            traffic,
        });
        if bad && opts.fail_fast {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        if streak.exhausted() {
            let rest = infos(n + 1);
            if !rest.is_empty() {
                let (since, why) = streak.since().cloned().unwrap_or_default();
                let message = format!(
                    "stopped testing {name}: {} case(s) in a row lost the meter",
                    streak.count()
                );
                let detail = format!(
                    "{message} (the fatal-failure policy, --max-lost {})\n  \
                     the meter has not answered since {since}: {why}\n  \
                     {} case(s) not run",
                    opts.max_lost,
                    rest.len()
                );
                stop_target(events, summary, &name, message, detail, rest, vec![]).await;
            }
            break;
        }
    }
    report_monitors(&target, &opts.monitors, events, summary).await;
    if target.state.sim.is_none() {
        let marks = target.state.monitors.marks();
        monitor::marks_to_store(&marks, &mut target.state.store);
    }
    target
}

/// Each monitor's verdict over what ran against `target`, as a case of the suite `monitors`.
async fn report_monitors(
    target: &Target,
    selected: &[monitor::MonitorDef],
    events: &mpsc::UnboundedSender<Event>,
    summary: &Mutex<Summary>,
) {
    use monitor::MonitorVerdict;
    for (def, v) in target.state.monitors.verdicts() {
        if !selected.contains(&def) {
            continue;
        }
        let info = CaseInfo {
            suite_id: monitor::SUITE.into(),
            suite_title: "Monitors over all the traffic of the run".into(),
            suite_file: std::path::PathBuf::from("<built-in monitors>"),
            case_id: def.id.into(),
            case_title: def.title.into(),
            checks: def.checks.into(),
            tags: vec!["monitor".into()],
            location: None,
            target: target.info.name.clone(),
        };
        let verdict = match v {
            MonitorVerdict::Passed(_) => Verdict::Passed,
            MonitorVerdict::NothingSeen => {
                Verdict::Skipped("the run gave this monitor nothing to watch".into())
            }
            MonitorVerdict::Failed(lines) => {
                let message = lines.first().cloned().unwrap_or_default();
                let mut detail = format!("{}\n  checks: {}", lines.join("\n"), def.checks);
                if lines.len() > 1 {
                    detail = format!("{} finding(s):\n{detail}", lines.len());
                }
                Verdict::Failed(event::Diagnostic {
                    message,
                    detail,
                    location: None,
                })
            }
        };
        summary.lock().await.count(&verdict);
        let _ = events.send(Event::CaseStarted { case: info.clone() });
        let _ = events.send(Event::CaseFinished {
            case: info,
            verdict,
            duration: Duration::ZERO,
            traffic: vec![],
        });
    }
}

/// Reports that `target` stops, with the cases it does not run.
async fn stop_target(
    events: &mpsc::UnboundedSender<Event>,
    summary: &Mutex<Summary>,
    target: &str,
    message: String,
    detail: String,
    not_run: Vec<CaseInfo>,
    traffic: Vec<event::TrafficRecord>,
) {
    summary.lock().await.not_tested += not_run.len();
    let _ = events.send(Event::TargetStopped {
        target: target.to_owned(),
        message,
        detail,
        not_run,
        traffic,
    });
}

#[allow(clippy::too_many_arguments)]
async fn run_one(
    t: &mut TargetState,
    suite: &LoadedSuite,
    ci: usize,
    kind: LinkKind,
    overrides: &VarOverrides,
    opts: &RunOptions,
    events: &mpsc::UnboundedSender<Event>,
    info: &CaseInfo,
    cancel: &watch::Receiver<bool>,
) -> (Verdict, Vec<event::TrafficRecord>) {
    let c = &suite.suite.cases[ci];
    let vars: BTreeMap<String, String> = overrides.vars_for(&suite.suite);
    let timeout = match &c.timeout {
        Some(s) => humantime::parse_duration(s).unwrap_or(opts.case_timeout),
        None => opts.case_timeout,
    };
    let run = match CaseRun::new(t, suite, ci, vars, kind) {
        Ok(r) => r,
        Err(e) => {
            return (
                Verdict::Error(event::Diagnostic {
                    message: e.clone(),
                    detail: e,
                    location: info.location.clone(),
                }),
                vec![],
            );
        }
    };
    let mut on_step =
        |index: usize, description: String, ok: bool, traffic: Vec<event::TrafficRecord>| {
            let _ = events.send(Event::StepFinished {
                case: info.clone(),
                index,
                description,
                ok,
                traffic,
            });
        };
    let out = run.run(timeout, cancel, &mut on_step).await;
    // Failed restores and keys left changed go out before the case's verdict.
    for notice in std::mem::take(&mut t.custody.notices) {
        let _ = events.send(Event::KeyCustody {
            case: info.clone(),
            notice,
        });
    }
    (out.verdict, out.traffic)
}

/// The verdict of each case of a run: (suite id, case id, verdict).
pub type CaseVerdicts = Vec<(String, String, Verdict)>;

/// Runs `cases` (indexes into `suites`; all when `None`) against a fresh
/// built-in simulator with `quirks`, and returns each case's verdict. Used by the
/// project's own tests (every shipped case, and the mutation matrix).
pub async fn run_on_simulator(
    suites: Arc<Vec<LoadedSuite>>,
    only: Option<Vec<(usize, usize)>>,
    quirks: crate::sim::Quirks,
    profile: crate::profile::DeviceProfile,
) -> CaseVerdicts {
    use crate::sim::server::SimHandle;
    let spec: crate::transport::target::TargetSpec =
        "sim".parse().expect("`sim` is a valid target");
    let sim = SimHandle::new(crate::sim::Meter::new(
        crate::sim::MeterConfig::default(),
        quirks,
    ));
    let state = TargetState::new(
        spec,
        profile,
        Some(sim),
        false,
        crate::client::CounterStore::memory(),
    );
    let info = TargetInfo {
        name: "sim".into(),
        profile: "built-in".into(),
        transport: "built-in simulator".into(),
        system_title: None,
    };
    let mut target = Target { state, info };
    let picked = only.unwrap_or_else(|| selected(&suites, &Selection::default()));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (_cancel_tx, cancel) = watch::channel(false);
    let summary = Mutex::new(Summary::default());
    let stop = std::sync::atomic::AtomicBool::new(false);
    let overrides = VarOverrides::new();
    let opts = RunOptions::default();
    target = run_target(
        target, &suites, &picked, &overrides, &opts, &tx, &cancel, &summary, &stop,
    )
    .await;
    drop(target);
    drop(tx);
    let mut out = Vec::new();
    while let Some(ev) = rx.recv().await {
        if let Event::CaseFinished { case, verdict, .. } = ev {
            out.push((case.suite_id, case.case_id, verdict));
        }
    }
    out
}

/// The device profile the project's own tests use against the simulator: the
/// defaults, with timeouts short enough for an in-process meter.
pub fn simulator_test_profile() -> crate::profile::DeviceProfile {
    let mut p = crate::profile::DeviceProfile::for_simulator();
    // Each of these runs has a fresh simulator, so the opt-in cases can run too.
    p.features.extend(
        crate::profile::OPT_IN_FEATURES
            .iter()
            .map(|s| s.to_string()),
    );
    p
}
