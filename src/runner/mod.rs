//! Runs cases against targets and emits [`event::Event`]s; prints nothing.
//!
//! Each target runs its cases one at a time (a meter has one link); with
//! `jobs > 1`, several targets run at once. A case whose required features the
//! device profile lacks, or that needs a link the target does not give, is
//! skipped with the reason. Interruption (Ctrl-C) stops between steps; the
//! teardown of the running case still runs, and the events of what ran are
//! complete, so reports are written.

pub mod case;
pub mod data;
pub mod event;
pub mod outcome;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Mutex, mpsc, watch};

use crate::suite::{LoadedSuite, VarOverrides};
use crate::transport::link::LinkKind;
use case::{CaseRun, TargetState};
use event::{CaseInfo, Event, SourceLocation, Summary, TargetInfo, Verdict};

/// Which cases to run.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Case id substrings; empty = all.
    pub ids: Vec<String>,
    /// Run only cases carrying one of these tags (empty = no restriction).
    pub tags: Vec<String>,
    /// Do not run cases carrying one of these tags.
    pub skip_tags: Vec<String>,
}

impl Selection {
    pub fn selects(&self, suite: &LoadedSuite, case: &crate::suite::model::Case) -> bool {
        let tags: Vec<&String> = suite.suite.tags.iter().chain(case.tags.iter()).collect();
        let id_ok = self.ids.is_empty()
            || self.ids.iter().any(|s| {
                case.id.contains(s.as_str())
                    || format!("{}::{}", suite.suite.suite, case.id).contains(s.as_str())
            });
        let tag_ok = self.tags.is_empty() || self.tags.iter().any(|t| tags.contains(&t));
        let skip = self.skip_tags.iter().any(|t| tags.contains(&t));
        id_ok && tag_ok && !skip
    }
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub strict: bool,
    pub fail_fast: bool,
    /// Targets run at once.
    pub jobs: usize,
    /// Time limit of a case unless it sets its own.
    pub case_timeout: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            strict: false,
            fail_fast: false,
            jobs: 1,
            case_timeout: Duration::from_secs(60),
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

/// The link a case runs on against this target, or why it is skipped.
fn plan_case(t: &TargetState, suite: &LoadedSuite, ci: usize) -> Result<LinkKind, String> {
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
    let _ = events.send(Event::RunStarted {
        started: SystemTime::now(),
        targets: targets.iter().map(|t| t.info.clone()).collect(),
        cases: picked.len() * targets.len(),
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
    for (n, (si, ci)) in picked.iter().enumerate() {
        if *cancel.borrow() || stop.load(std::sync::atomic::Ordering::Relaxed) {
            summary.lock().await.not_run += picked.len() - n;
            break;
        }
        let suite = &suites[*si];
        let info = case_info(suite, *ci, &name);
        let _ = events.send(Event::CaseStarted { case: info.clone() });
        let t0 = Instant::now();
        let (verdict, traffic) = match plan_case(&target.state, suite, *ci) {
            Err(reason) => (Verdict::Skipped(reason), vec![]),
            Ok(kind) => {
                run_one(
                    &mut target.state,
                    suite,
                    *ci,
                    kind,
                    overrides,
                    opts,
                    events,
                    &info,
                    cancel,
                )
                .await
            }
        };
        {
            let mut s = summary.lock().await;
            match &verdict {
                Verdict::Passed => s.passed += 1,
                Verdict::Failed(_) => s.failed += 1,
                Verdict::Error(_) => s.errors += 1,
                Verdict::Skipped(_) => s.skipped += 1,
            }
        }
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
    }
    target
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
