//! Preconditions on lasting device state, so a suite can run twice against
//! one meter.
//!
//! A security policy raised with `security_activate` (class 64 method 1)
//! stays raised: the method cannot weaken it (Blue Book class 64, "activates
//! and strengthens"). A case with a `security-activate` step expected to
//! succeed therefore needs a meter whose policy is still below the one it
//! raises. Before such a case runs, the runner associates as the case's client
//! and reads the policy (attribute 2 of the step's Security Setup object); if
//! it is already at or above the policy of the case's first raise, the case is
//! skipped with the reason ("the policy of client 2 is already
//! authenticated-encrypted (3); this case needs a fresh meter"). If the policy
//! cannot be read, the case runs and its own steps tell what happens.

use super::{CaseRun, random_bytes, step_expect};
use crate::client::{AssociateOutcome, GetOutcome};
use crate::profile::Mechanism;
use crate::session::association::AssociationRequest;
use crate::suite::model::Step;
use crate::suite::vocab;
use crate::transport::link::LinkKind;
use crate::wire::apdu::AttributeDescriptor;
use crate::wire::axdr::Data;
use crate::wire::obis::Obis;

/// Whether `current` already imposes all of `wanted`: version 0 policies are
/// ordered (0 nothing .. 3 authenticated and encrypted); version 1 policies
/// are bit flags.
pub(super) fn already_raised(current: u8, wanted: u8, version: u8) -> bool {
    if version >= 1 {
        current & wanted == wanted
    } else {
        current >= wanted
    }
}

fn policy_name(p: u8, version: u8) -> String {
    if version >= 1 {
        return format!("{p:#04x}");
    }
    match vocab::SECURITY_POLICIES.iter().find(|(_, c)| *c == p) {
        Some((name, _)) => format!("{name} ({p})"),
        None => p.to_string(),
    }
}

impl CaseRun<'_> {
    /// The first policy raise of the case, expected to succeed: (client, Security Setup, policy).
    fn first_policy_raise(&self) -> Option<(u16, Obis, u8)> {
        let sap = self.default_client;
        self.case.steps.iter().find_map(|s| {
            // A raise that establishes a precondition counts as well.
            let step = match &s.value {
                Step::Given(inner) => inner.as_ref(),
                other => other,
            };
            self.policy_raise(sap, step)
        })
    }

    /// The policy a `security-activate` step expected to succeed raises to.
    fn policy_raise(&self, sap: u16, step: &Step) -> Option<(u16, Obis, u8)> {
        match step {
            Step::SecurityActivate(a) if step_expect(step).is_none() => {
                let obis = match &a.obis {
                    Some(o) => self.obis(o).ok()?,
                    None => self.t.profile.client(sap)?.security_setup,
                };
                let p = a.policy.resolve(&self.vars).ok()?;
                let code = vocab::code(vocab::SECURITY_POLICIES, &p).or_else(|| p.parse().ok())?;
                Some((sap, obis, code))
            }
            _ => None,
        }
    }

    /// `Some(reason)` when the case must be skipped: the meter's policy is
    /// already where the case would raise it.
    pub(super) async fn lasting_precondition(&mut self) -> Option<String> {
        let (sap, obis, wanted) = self.first_policy_raise()?;
        let current = match self.read_policy(sap, obis).await {
            Ok(p) => p,
            Err(e) => {
                self.note(format!(
                    "could not read the security policy of client {sap} before the case: {e}"
                ));
                return None;
            }
        };
        let version = self.t.profile.security_setup_version;
        self.note(format!(
            "precondition: the policy of client {sap} ({obis}) is {}; the case raises it to {}",
            policy_name(current, version),
            policy_name(wanted, version)
        ));
        already_raised(current, wanted, version).then(|| {
            format!(
                "the policy of client {sap} is already {}; this case needs a fresh meter",
                policy_name(current, version)
            )
        })
    }

    /// Associates as `sap` on a fresh link, reads the policy, releases.
    async fn read_policy(&mut self, sap: u16, obis: Obis) -> Result<u8, String> {
        let pc = self.t.profile.client(sap).cloned().ok_or_else(|| {
            format!(
                "client {sap} is not in the device profile {}",
                self.t.profile.name
            )
        })?;
        let hls = pc.mechanism == Mechanism::HlsGmac;
        let ciphered = pc.protection.is_ciphered() || hls;
        let ic = if ciphered {
            self.next_counter(sap).await
        } else {
            0
        };
        let req = AssociationRequest::from_profile(&pc, random_bytes(16), ic);
        let c = self.client(sap).await.map_err(|e| match e {
            super::StepError::Harness(m)
            | super::StepError::Fail { message: m, .. }
            | super::StepError::Precondition(m) => m,
        })?;
        let result = async {
            match c.associate(req, false).await.map_err(|e| e.to_string())? {
                AssociateOutcome::Associated => {}
                AssociateOutcome::Refused(_) => {
                    return Err(format!("client {sap} could not associate"));
                }
            }
            let r = c
                .get(AttributeDescriptor {
                    class_id: 64,
                    instance: obis,
                    attribute_id: 2,
                })
                .await
                .map_err(|e| e.to_string());
            let protected = c.assoc.as_ref().is_some_and(|a| a.ciphered());
            let _ = c.release(protected).await;
            match r? {
                GetOutcome::Data(Data::Enum(p)) | GetOutcome::Data(Data::Unsigned(p)) => Ok(p),
                GetOutcome::Data(d) => Err(format!("the policy reads as {d}, not an enum")),
                _ => Err("the meter refused to read the policy".into()),
            }
        }
        .await;
        if ciphered {
            let e = self.t.counters.entry(sap).or_insert(0);
            *e = (*e).max(ic.saturating_add(if hls { 3 } else { 1 }));
        }
        self.sync_counters();
        // The case starts on a fresh link.
        if let Some(mut c) = self.clients.remove(&sap) {
            if let Some(n) = c.ended_next_ic {
                let e = self.t.counters.entry(sap).or_insert(0);
                *e = (*e).max(n);
            }
            if c.link.kind() == LinkKind::Hdlc && c.link.is_connected() {
                let _ = c.link.disconnect().await;
            }
            c.link.shutdown().await;
            self.traffic.extend(c.link.trace.take());
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_0_policies_are_ordered_and_version_1_are_flags() {
        assert!(already_raised(3, 1, 0));
        assert!(already_raised(1, 1, 0));
        assert!(!already_raised(0, 1, 0));
        assert!(!already_raised(1, 3, 0));
        // Version 1: authenticated requests (0x04) is not implied by encrypted responses (0x20).
        assert!(!already_raised(0x20, 0x04, 1));
        assert!(already_raised(0x24, 0x04, 1));
    }
}
