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

use crate::profile::DeviceProfile;
use crate::runner::case::step_expect;
use crate::suite::LoadedSuite;
use crate::suite::model::{Case, Outcome, Step};

/// Whether `case` sends malformed or refused input on purpose: a hand-made
/// frame or APDU, a replay, a deliberately wrong association or key wrap, or a
/// step that expects anything but success.
pub fn sends_bad_input(case: &Case) -> bool {
    case.steps.iter().any(|s| step_sends_bad_input(&s.value))
}

fn step_sends_bad_input(step: &Step) -> bool {
    let forced = match step {
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

/// Whether the selected case uses the management client: its default client
/// (the case's `client`, else the suite variable `client`, else 1) or the
/// client of one of its `associate` steps is the client the profile gives the
/// `management` role.
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
    let default = match &case.client {
        Some(t) => t.resolve(vars).ok(),
        None => match vars.get("client") {
            Some(v) => v.parse().ok(),
            None => Some(1),
        },
    };
    if default == Some(management) {
        return true;
    }
    case.steps
        .iter()
        .chain(case.teardown.iter())
        .any(|s| match &s.value {
            Step::Associate(a) => a
                .client
                .as_ref()
                .and_then(|t| t.resolve(vars).ok())
                .is_some_and(|sap| sap == management),
            _ => false,
        })
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
