//! Guarding a run against a dead or broken meter (DESIGN.md "Verdicts": a case
//! that leaves the meter unable to answer is the one that fails).
//!
//! * Pre-flight: before the first case, the target is probed with the public
//!   client, and with the management client when the selection needs it. A
//!   failure stops the target with one message; its cases are not run.
//! * Liveness: after a case that sends malformed or refused input, or that did
//!   not pass, the meter is probed on a fresh link. A case that ran and left
//!   the meter unable to answer fails with "the meter stopped answering after
//!   this case"; the cases after it are not blamed.
//! * Fatal-failure policy (as the CTT's): once the meter is lost, each further
//!   case first probes it; a case that cannot reach the meter is inconclusive
//!   and not run, and after `max_lost` such cases in a row the target stops.

use std::collections::BTreeMap;
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use super::event::{self, CaseInfo, Diagnostic, Event, Verdict};
use super::probe::{self, ProbeFailure};
use super::{RunOptions, plan_case, run_one};
use crate::profile::DeviceProfile;
use crate::runner::case::{TargetState, step_expect};
use crate::suite::model::{Case, Outcome, Step};
use crate::suite::{LoadedSuite, VarOverrides};
use crate::transport::link::LinkKind;
use crate::transport::open;

/// Whether `case` sends malformed or refused input on purpose: a hand-made
/// frame or APDU, a replay, a deliberately wrong association or key wrap, or a
/// step that expects anything but success.
pub fn sends_bad_input(case: &Case) -> bool {
    case.steps.iter().any(|s| step_sends_bad_input(&s.value))
}

fn step_sends_bad_input(step: &Step) -> bool {
    let forced = match step {
        Step::Given(inner) => return step_sends_bad_input(inner),
        Step::Send(_) | Step::Replay(_) => true,
        Step::Associate(a) => a.wrong.is_some(),
        Step::KeyTransfer(k) => k.wrap_with.is_some() || k.corrupt_wrap,
        _ => false,
    };
    forced || step_expect(step).is_some_and(|e| e.outcomes().iter().any(|o| !is_normal_answer(o)))
}

/// An outcome a meter gives to a normal request.
fn is_normal_answer(o: &Outcome) -> bool {
    match o {
        Outcome::Success | Outcome::Value(_) | Outcome::Type(_) => true,
        Outcome::Result(r) => r == "success",
        Outcome::Frame(f) => matches!(f.as_str(), "ua" | "i" | "rr"),
        _ => false,
    }
}

/// Whether the selected case uses the management client: any client it
/// names (by role or SAP, its default included) is the one the profile gives
/// the `management` role.
pub fn uses_management(
    suite: &LoadedSuite,
    ci: usize,
    vars: &BTreeMap<String, String>,
    profile: &DeviceProfile,
) -> bool {
    let Some(management) = profile.client_by_role("management").map(|c| c.sap) else {
        return false;
    };
    let Some(case) = suite.suite.cases.get(ci) else {
        return false;
    };
    crate::suite::roles::needed_roles(case, vars)
        .clients
        .iter()
        .any(|k| crate::suite::roles::client_sap(profile, &k.name()).ok() == Some(management))
}

/// The fatal-failure policy's count of cases that lost the meter in a row.
#[derive(Debug, Clone)]
pub struct LostStreak {
    max: usize,
    count: usize,
    /// Since which case, and why the meter is lost (while it is).
    lost: Option<(String, String)>,
}

impl LostStreak {
    pub fn new(max: usize) -> Self {
        LostStreak {
            max: max.max(1),
            count: 0,
            lost: None,
        }
    }

    /// The meter answered the probe.
    pub fn alive(&mut self) {
        self.count = 0;
        self.lost = None;
    }

    /// Another case lost the meter (`case` is the first one, kept while it stays lost).
    pub fn lost(&mut self, case: &str, why: &str) {
        self.count = self.count.saturating_add(1);
        if self.lost.is_none() {
            self.lost = Some((case.to_owned(), why.to_owned()));
        }
    }

    /// Since which case, and why, the meter does not answer; `None` while it does.
    pub fn since(&self) -> Option<&(String, String)> {
        self.lost.as_ref()
    }

    /// The policy says stop.
    pub fn exhausted(&self) -> bool {
        self.count >= self.max
    }

    pub fn count(&self) -> usize {
        self.count
    }
}

/// The pre-flight: the public client reads the probe object; when a selected
/// case uses the management client, it associates and reads as well.
pub(super) async fn preflight(
    t: &mut TargetState,
    suites: &[LoadedSuite],
    picked: &[(usize, usize)],
    overrides: &VarOverrides,
) -> Result<(), ProbeFailure> {
    let kind = open::native_kind(&t.spec).unwrap_or(LinkKind::Wrapper);
    let needs_management = picked.iter().any(|(si, ci)| {
        let s = &suites[*si];
        let vars = overrides.vars_for(&s.suite);
        plan_case(t, s, *ci, &vars).is_ok() && uses_management(s, *ci, &vars, &t.profile)
    });
    let counter_object = if needs_management {
        t.profile
            .client_by_role("management")
            .map(|c| c.counter_object)
    } else {
        None
    };
    let start = Instant::now();
    // A meter that serves the probe with a protocol fault can be tested: the
    // cases about that fault judge it.
    let counter = match probe::probe(t, "public", kind, None, counter_object, start).await {
        Ok(ok) => ok.counter,
        Err(f) if f.not_served() => return Err(f),
        Err(_) => None,
    };
    if needs_management {
        match probe::probe(t, "management", kind, counter, None, start).await {
            Err(f) if f.not_served() => return Err(f),
            _ => {}
        }
    }
    Ok(())
}

/// Runs one case with the liveness check around it: when the meter was lost
/// after an earlier case, it is probed first (and the case is not run if it
/// still does not answer); after a case that sent malformed or refused input,
/// or did not pass, the meter is probed on a fresh link.
#[allow(clippy::too_many_arguments)]
pub(super) async fn guarded_case(
    t: &mut TargetState,
    suite: &LoadedSuite,
    ci: usize,
    kind: LinkKind,
    overrides: &VarOverrides,
    opts: &RunOptions,
    events: &mpsc::UnboundedSender<Event>,
    info: &CaseInfo,
    cancel: &watch::Receiver<bool>,
    streak: &mut LostStreak,
) -> (Verdict, Vec<event::TrafficRecord>) {
    let start = Instant::now();
    if let Some((since, _)) = streak.since().cloned() {
        match probe_public(t, kind, start, cancel).await {
            // Interrupted: the case sees it at once and says so.
            None => {}
            Some(Err(f)) if f.means_lost() => {
                streak.lost(&info.case_id, &f.reason());
                let message = format!(
                    "not run: the meter has not answered since {since}: {}",
                    f.reason()
                );
                let detail = format!(
                    "tried first: {}\nthis case is inconclusive: the meter was lost before it started",
                    f.tried
                );
                let d = Diagnostic {
                    message,
                    detail,
                    location: info.location.clone(),
                };
                return (Verdict::Error(d), f.traffic);
            }
            Some(_) => streak.alive(),
        }
    }
    let (verdict, mut traffic) =
        run_one(t, suite, ci, kind, overrides, opts, events, info, cancel).await;
    let bad_input = suite.suite.cases.get(ci).is_some_and(sends_bad_input);
    let undecided = matches!(verdict, Verdict::Failed(_) | Verdict::Error(_));
    if !(bad_input || undecided) || *cancel.borrow() {
        return (verdict, traffic);
    }
    match probe_public(t, kind, start, cancel).await {
        None => (verdict, traffic),
        Some(Err(f)) if f.means_lost() => {
            let answered = traffic
                .iter()
                .any(|r| r.direction == event::Direction::Received);
            traffic.extend(f.traffic.iter().cloned());
            streak.lost(&info.case_id, &f.reason());
            (
                liveness_verdict(verdict, bad_input, answered, &f, info),
                traffic,
            )
        }
        Some(_) => {
            streak.alive();
            traffic.push(event::TrafficRecord {
                at: start.elapsed(),
                direction: event::Direction::Note,
                layer: "note",
                hex: String::new(),
                decoded: "liveness: the meter still answers the probe on a fresh link".into(),
            });
            (verdict, traffic)
        }
    }
}

/// The public probe, unless the run is interrupted first (`None`).
async fn probe_public(
    t: &mut TargetState,
    kind: LinkKind,
    start: Instant,
    cancel: &watch::Receiver<bool>,
) -> Option<Result<probe::ProbeOk, ProbeFailure>> {
    let mut cancel = cancel.clone();
    tokio::select! {
        r = probe::probe(t, "public", kind, None, None, start) => Some(r),
        _ = cancel.wait_for(|c| *c) => None,
    }
}

/// The verdict of a case after which the meter no longer answers. A case that
/// sent bad input and reached the meter is the one that broke it: it fails,
/// even if its own steps passed (or its teardown found the meter gone). A case
/// in which the meter never `answered`
/// found it dead already: it is inconclusive, whatever its steps concluded
/// from the silence. A case that could not decide stays inconclusive; the loss
/// is added to its explanation.
fn liveness_verdict(
    verdict: Verdict,
    bad_input: bool,
    answered: bool,
    f: &ProbeFailure,
    info: &CaseInfo,
) -> Verdict {
    let lost = format!(
        "the meter stopped answering after this case: {}",
        f.reason()
    );
    let probe = format!("probe on a fresh link: {}", f.tried);
    if !answered {
        let (own, location) = match &verdict {
            Verdict::Failed(d) | Verdict::Error(d) => (
                format!("\nthe case's own steps: {}", d.message),
                d.location.clone(),
            ),
            _ => (String::new(), None),
        };
        return Verdict::Error(Diagnostic {
            message: format!(
                "inconclusive: the meter answered nothing in this case, nor the probe after it: {}",
                f.reason()
            ),
            detail: format!("{probe}{own}"),
            location: location.or_else(|| info.location.clone()),
        });
    }
    if bad_input {
        let (own, location) = match verdict {
            Verdict::Failed(d) => (
                format!(
                    "the case's own steps failed first: {}\n{}",
                    d.message, d.detail
                ),
                d.location,
            ),
            Verdict::Error(d) => (
                format!(
                    "the case's own steps could not decide: {}\n{}",
                    d.message, d.detail
                ),
                d.location,
            ),
            _ => ("the case's own steps passed".to_owned(), None),
        };
        return Verdict::Failed(Diagnostic {
            message: lost,
            detail: format!("{probe}\n{own}"),
            location: location.or_else(|| info.location.clone()),
        });
    }
    match verdict {
        Verdict::Failed(mut d) => {
            d.detail = format!("{}\n{lost}\n{probe}", d.detail);
            Verdict::Failed(d)
        }
        Verdict::Error(mut d) => {
            d.detail = format!("{}\n{lost}\n{probe}", d.detail);
            Verdict::Error(d)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::{ValidationContext, load_paths};

    fn shipped(suite: &str, case: &str) -> (LoadedSuite, usize) {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("suites")
            .join(format!("{suite}.yaml"));
        let (mut suites, errors) = load_paths(&[root], &ValidationContext::default());
        assert!(errors.is_empty(), "{errors:?}");
        let s = suites.remove(0);
        let ci = s
            .suite
            .cases
            .iter()
            .position(|c| c.id == case)
            .unwrap_or_else(|| panic!("no case {case}"));
        (s, ci)
    }

    #[test]
    fn negative_cases_are_told_from_positive_ones() {
        for (suite, case, negative) in [
            ("wrapper", "WRAPPER_P1", false),
            ("wrapper", "WRAPPER_VERSION", true),
            ("wrapper", "WRAPPER_WPORT", true),
            ("replay-rejection", "SYMSEC_0_FraCount_1", true),
            ("association", "APPL_OPEN_1", false),
        ] {
            let (s, ci) = shipped(suite, case);
            assert_eq!(
                sends_bad_input(&s.suite.cases[ci]),
                negative,
                "{suite}::{case}"
            );
        }
    }

    #[test]
    fn the_management_client_is_needed_by_default_and_not_by_public_suites() {
        let profile = DeviceProfile::default();
        let (s, ci) = shipped("replay-rejection", "SYMSEC_0_FraCount_1");
        let vars = crate::suite::VarOverrides::new().vars_for(&s.suite);
        assert!(uses_management(&s, ci, &vars, &profile));
        let (s, ci) = shipped("wrapper", "WRAPPER_P1");
        let vars = crate::suite::VarOverrides::new().vars_for(&s.suite);
        assert!(!uses_management(&s, ci, &vars, &profile));
    }

    fn lost_probe() -> ProbeFailure {
        ProbeFailure {
            client: "the public client (SAP 16)".into(),
            tried: "associate as the public client".into(),
            cause: probe::Cause::NoReply {
                waited: std::time::Duration::from_secs(2),
                to: "AARQ",
            },
            traffic: vec![],
        }
    }

    fn info() -> CaseInfo {
        CaseInfo {
            suite_id: "wrapper".into(),
            suite_title: String::new(),
            suite_file: "suites/wrapper.yaml".into(),
            case_id: "WRAPPER_VERSION".into(),
            case_title: String::new(),
            checks: String::new(),
            tags: vec![],
            location: None,
            target: "sim".into(),
        }
    }

    #[test]
    fn the_case_that_left_the_meter_unable_to_answer_is_the_one_that_fails() {
        let f = lost_probe();
        // Bad input, the meter answered during the case, then not: it broke it.
        match liveness_verdict(Verdict::Passed, true, true, &f, &info()) {
            Verdict::Failed(d) => assert!(
                d.message.starts_with(
                    "the meter stopped answering after this case: connected, but no reply"
                ),
                "{d:?}"
            ),
            other => panic!("{other:?}"),
        }
        // A normal case that passed is not probed, and keeps its verdict here.
        assert_eq!(
            liveness_verdict(Verdict::Passed, false, true, &f, &info()),
            Verdict::Passed
        );
        // The meter answered nothing in the case: it was dead already.
        let failed = Verdict::Failed(Diagnostic {
            message: "step 1 (associate): expected success, got silence".into(),
            detail: String::new(),
            location: None,
        });
        match liveness_verdict(failed, true, false, &f, &info()) {
            Verdict::Error(d) => assert!(d.message.starts_with("inconclusive:"), "{d:?}"),
            other => panic!("{other:?}"),
        }
        // Bad input, an answer, then a teardown that found the meter gone: it broke it.
        let teardown = Verdict::Error(Diagnostic {
            message: "teardown step 1 (release): no reply within 2s".into(),
            detail: String::new(),
            location: None,
        });
        match liveness_verdict(teardown, true, true, &f, &info()) {
            Verdict::Failed(d) => {
                assert!(
                    d.message.starts_with("the meter stopped answering"),
                    "{d:?}"
                );
                assert!(
                    d.detail.contains("could not decide: teardown step 1"),
                    "{d:?}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_streak_stops_after_max_and_a_live_meter_resets_it() {
        let mut s = LostStreak::new(3);
        s.lost("A", "no reply");
        s.lost("B", "no reply");
        assert!(!s.exhausted());
        assert_eq!(s.since().map(|x| x.0.as_str()), Some("A"));
        s.alive();
        assert_eq!(s.count(), 0);
        assert!(s.since().is_none());
        for c in ["C", "D", "E"] {
            s.lost(c, "no reply");
        }
        assert!(s.exhausted());
    }
}
