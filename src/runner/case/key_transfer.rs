//! The `key-transfer` step (class 64 method 2, keys wrapped with the KEK and
//! escrowed before they are sent), and adopting the new keys afterwards.

use super::{CaseRun, StepError, StepResult, custody, random_bytes};
use crate::profile::CounterPolicy;
use crate::runner::outcome::Observed;
use crate::security::{Key, wrap_key};
use crate::suite::model::{self as m, Outcome, Step};
use crate::suite::{resolve, vocab};
use crate::wire::apdu::MethodDescriptor;
use crate::wire::axdr::Data;

impl CaseRun<'_> {
    pub(super) async fn key_transfer(&mut self, step: &Step, k: &m::KeyTransferStep) -> StepResult {
        let sap = self.default_client;
        let pc = self.profile_client(sap)?;
        let obis = match &k.obis {
            Some(o) => self.obis(o)?,
            None => pc.security_setup,
        };
        let kek = match &k.wrap_with {
            Some(h) => h
                .parse::<Key>()
                .map_err(|e| StepError::Harness(format!("wrap-with: {e}")))?,
            None => pc.master_key.clone().ok_or_else(|| {
                StepError::Harness(format!(
                    "client {sap} has no master key (KEK) in the device profile"
                ))
            })?,
        };
        let original = self.t.original.client(sap).cloned();
        let mut new_keys = Vec::new();
        let mut generated = Vec::new();
        for spec in &k.keys {
            let id = vocab::code(vocab::KEY_IDS, &spec.id)
                .or_else(|| spec.id.parse().ok())
                .ok_or_else(|| StepError::Harness(format!("key id `{}`", spec.id)))?;
            let text = match &spec.key {
                m::Tpl::Lit(t) => t.clone(),
                m::Tpl::Var(v) => v.clone(),
            };
            let key = match text.as_str() {
                "generate" => {
                    let g = Key::from_slice(&random_bytes(16))
                        .map_err(|e| StepError::Harness(e.to_string()))?;
                    generated.push((id, g.clone()));
                    g
                }
                "original" => {
                    let o = original.as_ref();
                    let k = match id {
                        0 => o.and_then(|c| c.encryption_key.clone()),
                        1 => o.and_then(|c| c.broadcast_key.clone()),
                        2 => o.and_then(|c| c.authentication_key.clone()),
                        3 => o.and_then(|c| c.master_key.clone()),
                        _ => None,
                    };
                    k.ok_or_else(|| {
                        StepError::Harness(format!(
                            "the device profile has no original key for key id {id}"
                        ))
                    })?
                }
                t if t.contains("${") => {
                    let name = t.trim_start_matches("${").trim_end_matches('}');
                    match self.secrets.get(name) {
                        Some(k) => k.clone(),
                        None => resolve(t, &self.vars)
                            .map_err(StepError::Harness)?
                            .parse()
                            .map_err(|e| StepError::Harness(format!("key: {e}")))?,
                    }
                }
                t => t
                    .parse::<Key>()
                    .map_err(|e| StepError::Harness(format!("key: {e}")))?,
            };
            if let Some(name) = &spec.save {
                self.secrets.insert(name.clone(), key.clone());
            }
            new_keys.push((id, key));
        }
        let wrap_all = |kek: &Key| -> Vec<Data> {
            new_keys
                .iter()
                .map(|(id, key)| {
                    let mut wrapped = wrap_key(kek, key).to_vec();
                    if k.corrupt_wrap {
                        wrapped[7] ^= 0x01;
                    }
                    Data::Structure(vec![Data::Enum(*id), Data::OctetString(wrapped)])
                })
                .collect()
        };
        let method = MethodDescriptor {
            class_id: 64,
            instance: obis,
            method_id: 2,
        };
        // A key wrapped wrongly on purpose cannot be unwrapped into this key by
        // the meter; any other may be taken, so it is escrowed before it is sent.
        let may_take = !k.corrupt_wrap && k.wrap_with.is_none();
        let note = (!may_take).then_some("wrapped wrongly on purpose: the meter should refuse it");
        self.escrow_keys(sap, &generated, note)?;
        self.note(format!(
            "key transfer of {} key(s) on {obis}",
            new_keys.len()
        ));
        // When the master key is in doubt (a transfer of it was cut short), the
        // key the meter may hold wraps first, then the one the harness used.
        let mut keks = Vec::new();
        if k.wrap_with.is_none()
            && let Some(d) = self
                .uncertain
                .get(&sap)
                .and_then(|u| u.iter().find(|(i, _)| *i == 3))
                .map(|(_, m)| m.clone())
            && d != kek
        {
            keks.push(d);
        }
        keks.push(kek);
        let ids: Vec<u8> = new_keys.iter().map(|(id, _)| *id).collect();
        let mut observed = Observed::Silence;
        let mut sent = None;
        for (n, kek) in keks.iter().enumerate() {
            // Without an association nothing is sent (the action fails at once).
            let associated = self.clients.get(&sap).is_some_and(|c| c.assoc.is_some());
            if may_take && associated {
                self.in_flight = Some(custody::InFlight {
                    sap,
                    keys: new_keys.clone(),
                });
            }
            // A link error returns early and leaves the transfer in flight (in doubt).
            observed = self
                .action(method, Some(Data::Array(wrap_all(kek))), false, None)
                .await?;
            sent = self.in_flight.take();
            let success = matches!(
                observed,
                Observed::Action(crate::wire::apdu::ActionResult::Success, _)
            );
            if keks.len() == 2 && success {
                // The meter held this master key: no longer in doubt.
                self.settle_ids(sap, &[3]);
                if !ids.contains(&3) {
                    self.adopt_keys(sap, &[(3, kek.clone())]);
                }
            }
            if n + 1 < keks.len() && matches!(observed, Observed::Action(..)) && !success {
                self.note(
                    "refused under the master key the meter may hold; wrapping under the one used before",
                );
                continue;
            }
            break;
        }
        match &observed {
            Observed::Action(crate::wire::apdu::ActionResult::Success, _) if may_take => {
                self.settle_ids(sap, &ids);
                if k.adopt.unwrap_or(true) {
                    self.adopt_keys(sap, &new_keys);
                } else if let Some(f) = sent {
                    // The meter took the keys; the harness keeps the old ones on purpose.
                    self.mark_uncertain(f);
                }
            }
            // A refusal: the meter keeps the keys it had (which may still be in doubt).
            Observed::Action(..) | Observed::Exception { .. } => {}
            // No readable answer: the meter may have taken the keys.
            _ => {
                if let Some(f) = sent {
                    self.mark_uncertain(f);
                }
            }
        }
        let next = self.next_ic_of(sap);
        self.judge(step, &observed, &[Outcome::Success], next)
    }

    /// Uses new keys from now on: in the profile (later associations) and in the open association.
    pub(super) fn adopt_keys(&mut self, sap: u16, keys: &[(u8, Key)]) {
        // What came under the old keys is judged as such by the monitors.
        self.collect_traffic();
        let reset_guard = self.t.profile.counters_after_key_change != CounterPolicy::Continue;
        if let Some(pc) = self.t.profile.client_mut(sap) {
            for (id, k) in keys {
                match id {
                    0 => pc.encryption_key = Some(k.clone()),
                    1 => pc.broadcast_key = Some(k.clone()),
                    2 => pc.authentication_key = Some(k.clone()),
                    3 => pc.master_key = Some(k.clone()),
                    _ => {}
                }
            }
        }
        if let Some(ctx) = self
            .clients
            .get_mut(&sap)
            .and_then(|c| c.assoc.as_mut())
            .and_then(|a| a.cipher.as_mut())
        {
            for (id, k) in keys {
                match id {
                    0 => ctx.encryption_key = k.clone(),
                    2 => ctx.authentication_key = k.clone(),
                    _ => {}
                }
            }
            if reset_guard && keys.iter().any(|(id, _)| matches!(id, 0 | 2)) {
                ctx.peer_guard = crate::security::ReplayGuard::new();
            }
        }
        self.note(format!("client {sap} now uses the transferred key(s)"));
    }
}
