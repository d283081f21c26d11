//! The `associate` step (AARQ built from the device profile and the step's
//! overrides, AARE judged), and the check of the server system title.

use super::{
    CaseRun, StepError, StepResult, encode_oid, harness, parse_hex, random_bytes, step_expect,
};
use crate::client::AssociateOutcome;
use crate::profile::{Ciphering, Mechanism, Protection};
use crate::runner::outcome::Observed;
use crate::security::Key;
use crate::session::association::{AssociationRequest, Refusal};
use crate::suite::model::{self as m, Outcome, Step};
use crate::suite::vocab::{self, CounterSpec};
use crate::wire::apdu::AppContext;

impl CaseRun<'_> {
    pub(super) async fn associate(&mut self, step: &Step, a: &m::AssociateStep) -> StepResult {
        let sap = match &a.client {
            Some(t) => self.sap_of(t)?,
            None => self.default_client,
        };
        let pc = self.profile_client(sap)?;
        let challenge = match &a.challenge {
            Some(h) => parse_hex(h, "challenge")?,
            None => random_bytes(16),
        };
        let ciphered_client = pc.protection.is_ciphered() || pc.mechanism == Mechanism::HlsGmac;
        let ic = if ciphered_client {
            self.next_counter(sap).await
        } else {
            0
        };
        let mut req = AssociationRequest::from_profile(&pc, challenge, ic);
        if let Some(m) = &a.mechanism {
            req.mechanism = Mechanism::parse(m)
                .ok_or_else(|| StepError::Harness(format!("unknown mechanism `{m}`")))?;
        }
        if let Some(s) = &a.security {
            req.protection = Protection::parse(s)
                .ok_or_else(|| StepError::Harness(format!("unknown security `{s}`")))?;
            req.context = if req.protection.is_ciphered() {
                AppContext::LnCipher
            } else {
                AppContext::LnNoCipher
            };
        }
        if let Some(c) = &a.ciphering {
            req.ciphering = Ciphering::parse(c)
                .ok_or_else(|| StepError::Harness(format!("unknown ciphering `{c}`")))?;
        }
        if let Some(p) = &a.password {
            req.password = Some(
                p.resolve(&self.vars)
                    .map_err(StepError::Harness)?
                    .into_bytes(),
            );
        }
        if let Some(ctx) = &a.context {
            req.context = match ctx.as_str() {
                "ln" => AppContext::LnNoCipher,
                "ln-ciphered" => AppContext::LnCipher,
                "sn" => AppContext::SnNoCipher,
                "sn-ciphered" => AppContext::SnCipher,
                oid => AppContext::Other(encode_oid(oid).map_err(StepError::Harness)?),
            };
        }
        if let Some(pv) = &a.protocol_version {
            req.protocol_version = Some(parse_hex(pv, "protocol-version")?);
        }
        if let Some(t) = &a.calling_ap_title {
            req.calling_ap_title = Some(parse_hex(
                &t.resolve(&self.vars).map_err(StepError::Harness)?,
                "calling-ap-title",
            )?);
        }
        if let Some(v) = a.dlms_version {
            req.dlms_version = v;
        }
        if let Some(v) = a.max_pdu_size {
            req.max_pdu_size = v;
        }
        if let Some(c) = &a.conformance {
            req.conformance = match c {
                m::Conformance::Names(n) => {
                    vocab::conformance_value(n).map_err(StepError::Harness)?
                }
                m::Conformance::Hex(h) => u32::from_str_radix(h.trim(), 16)
                    .map_err(|_| StepError::Harness(format!("conformance `{h}` is not hex")))?,
            };
        }
        if a.dedicated_key == Some(true) {
            req.dedicated_key = Some(
                Key::from_slice(&random_bytes(16))
                    .map_err(|e| StepError::Harness(e.to_string()))?,
            );
        }
        let mut skip_pass3 = false;
        if let Some(w) = &a.wrong {
            let original = self.t.original.client(sap).cloned();
            let pick = |k: &str, which: &str, orig: Option<Key>| -> Result<Key, StepError> {
                if k == "original" {
                    orig.ok_or_else(|| {
                        StepError::Harness(format!("the profile has no original {which} key"))
                    })
                } else {
                    k.parse()
                        .map_err(|e| StepError::Harness(format!("wrong.{which}-key: {e}")))
                }
            };
            if let Some(k) = &w.encryption_key {
                let orig = original.as_ref().and_then(|c| c.encryption_key.clone());
                req.encryption_key = Some(pick(k, "encryption", orig)?);
            }
            if let Some(k) = &w.authentication_key {
                let orig = original.as_ref().and_then(|c| c.authentication_key.clone());
                req.authentication_key = Some(pick(k, "authentication", orig)?);
            }
            if let Some(t) = &w.system_title {
                req.calling_ap_title = Some(parse_hex(t, "wrong.system-title")?);
            }
            req.wrong_challenge_reply = w.challenge_reply;
            skip_pass3 = w.skip_pass3;
            if let Some(c) = &w.initiate_counter {
                let text = c.resolve(&self.vars).map_err(StepError::Harness)?;
                let spec = vocab::parse_counter(&text).map_err(StepError::Harness)?;
                let last = self.last_initiate_ic.get(&sap).copied();
                req.initiate_counter = Some(match spec {
                    CounterSpec::Next => ic,
                    CounterSpec::Value(v) => v,
                    CounterSpec::Skip(n) => ic.saturating_add(n),
                    CounterSpec::Last(n) => match last {
                        Some(l) => l.saturating_sub(n),
                        None => {
                            return harness(
                                "wrong.initiate-counter `last`: no earlier association in this case",
                            );
                        }
                    },
                });
            }
        }
        // The meter's counters are judged over the whole run by the nonce monitor.
        req.check_server_counter = false;
        if req.protection.is_ciphered() && req.initiate_counter.is_none() {
            self.last_initiate_ic.insert(sap, ic);
        }
        let c = self.client(sap).await?;
        c.assoc = None;
        let observed = match c.associate(req, skip_pass3).await {
            Ok(AssociateOutcome::Associated) => Observed::Associated,
            Ok(AssociateOutcome::Refused(r)) => match r {
                Refusal::Rejected {
                    result,
                    diagnostic,
                    initiate_error,
                } => Observed::Rejected {
                    result,
                    diagnostic,
                    initiate_error: initiate_error.map(|e| e.value),
                },
                Refusal::InitiateError(e) => Observed::InitiateError(e.value),
                Refusal::Exception(e) => Observed::Exception {
                    state: e.state_error,
                    service: e.service_error,
                    counter: e.invocation_counter,
                },
                Refusal::Pass3Refused(r) => Observed::Pass3Refused(r),
            },
            Err(e) => self.observed_from_client(e)?,
        };
        // The attempt consumed counters even when refused: the glo-initiate, and
        // for HLS f(StoC) and the pass 3 APDU. A counter error names the one to use.
        if ciphered_client {
            let used = if pc.mechanism == Mechanism::HlsGmac {
                3
            } else {
                1
            };
            let mut next = ic.saturating_add(used);
            if let Observed::Exception {
                service: 6,
                counter: Some(c),
                ..
            } = observed
            {
                next = next.max(c);
            }
            let e = self.t.counters.entry(sap).or_insert(0);
            *e = (*e).max(next);
        }
        // A broken association is not kept (except an HLS one deliberately left pending).
        if let Some(c) = self.clients.get_mut(&sap)
            && !matches!(observed, Observed::Associated | Observed::Pass3Refused(_))
        {
            c.assoc = None;
        }
        let setup = step_expect(step).is_none();
        match (&observed, setup) {
            (Observed::Silence | Observed::Disconnect, true) => {
                harness(format!("association of client {sap}: {observed}"))
            }
            _ => {
                self.judge(step, &observed, &[Outcome::Success], None)?;
                self.check_server_title(sap)
            }
        }
    }

    /// The server system title of an association (the AARE's responding AP
    /// title) is the one the device profile declares; when the profile declares
    /// none, it becomes the case's `${server_system_title}`.
    pub(super) fn check_server_title(&mut self, sap: u16) -> StepResult {
        let Some(seen) = self
            .clients
            .get(&sap)
            .and_then(|c| c.assoc.as_ref())
            .and_then(|a| a.server_title)
        else {
            return Ok(());
        };
        match self.t.profile.server_system_title {
            Some(declared) if declared != seen => Err(StepError::Fail {
                message: format!(
                    "the AARE's responding AP title is {seen}; the device profile declares the server system title {declared}"
                ),
                label: format!("server system title {seen}"),
            }),
            Some(_) => Ok(()),
            None => {
                self.vars
                    .entry("server_system_title".into())
                    .or_insert_with(|| seen.to_string());
                Ok(())
            }
        }
    }
}
