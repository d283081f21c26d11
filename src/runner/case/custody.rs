//! Key custody during a run: generated keys are escrowed before they are
//! sent, the harness keeps track of which keys each client of the meter holds,
//! and after a key transfer whose outcome it could not read (an undecipherable
//! reply, silence, an interrupt while the request was in flight) it finds out
//! by associating: the new key first, then the one it used before, then the
//! original. When a case ends with the meter holding keys other than the
//! device profile's, the device is "left changed": later cases use the keys
//! the meter holds, key-transfer cases are inconclusive, and the run's
//! reports name the escrow entry that holds the key.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::{CaseRun, StepError, random_bytes};
use crate::client::{AssociateOutcome, ClientError};
use crate::keys::{DepositRequest, key_id_name};
use crate::profile::{ClientProfile, Mechanism};
use crate::runner::event::{CustodyNotice, KeyHeld};
use crate::security::Key;
use crate::session::association::AssociationRequest;
use crate::suite::model::Step;
use crate::transport::link::LinkKind;

/// What the harness knows of the keys a meter holds, across the cases of a run.
#[derive(Debug, Default)]
pub struct Custody {
    /// The escrow entry of each key the harness generated and sent: (client, key id, key) → entry.
    entries: Vec<(u16, u8, Key, String)>,
    /// Clients left holding keys other than the device profile's, by the case that left them so.
    pub left_changed: BTreeMap<u16, (String, Vec<KeyHeld>)>,
    /// Notices of the case that just ran, for the run's events.
    pub notices: Vec<CustodyNotice>,
}

impl Custody {
    fn entry_of(&self, sap: u16, id: u8, key: &Key) -> Option<String> {
        self.entries
            .iter()
            .rev()
            .find(|(s, i, k, _)| *s == sap && *i == id && k == key)
            .map(|(.., e)| e.clone())
    }
}

/// A key transfer sent and not yet answered.
#[derive(Debug, Clone)]
pub(super) struct InFlight {
    pub sap: u16,
    pub keys: Vec<(u8, Key)>,
}

/// The key of kind `id` of a client profile.
fn key_of(pc: &ClientProfile, id: u8) -> Option<&Key> {
    match id {
        0 => pc.encryption_key.as_ref(),
        1 => pc.broadcast_key.as_ref(),
        2 => pc.authentication_key.as_ref(),
        3 => pc.master_key.as_ref(),
        _ => None,
    }
}

fn set_key(pc: &mut ClientProfile, id: u8, k: Key) {
    match id {
        0 => pc.encryption_key = Some(k),
        1 => pc.broadcast_key = Some(k),
        2 => pc.authentication_key = Some(k),
        3 => pc.master_key = Some(k),
        _ => {}
    }
}

impl CaseRun<'_> {
    fn case_name(&self) -> String {
        format!("{}::{}", self.suite.suite.suite, self.case.id)
    }

    /// Escrows the generated keys of a key transfer; only then may it be sent.
    pub(super) fn escrow_keys(
        &mut self,
        sap: u16,
        generated: &[(u8, Key)],
        note: Option<&str>,
    ) -> Result<(), StepError> {
        if generated.is_empty() {
            return Ok(());
        }
        let case = self.case_name();
        let target = self.t.spec.text.clone();
        let meter = self.meter_name(sap);
        let req = DepositRequest {
            meter: &meter,
            target: &target,
            client: sap,
            case: &case,
            keys: generated,
            note,
        };
        let names = self
            .t
            .escrow
            .deposit(&req, SystemTime::now())
            .map_err(|e| StepError::Harness(format!("{e}; the key transfer was not sent")))?;
        for ((id, key), entry) in generated.iter().zip(names) {
            self.note(format!(
                "generated {} {key} for client {sap} escrowed as {entry} in {}",
                key_id_name(*id),
                self.t.escrow.location()
            ));
            self.t
                .custody
                .entries
                .push((sap, *id, key.clone(), entry.clone()));
            self.escrowed_here.push(entry);
        }
        Ok(())
    }

    /// The meter as escrow entries name it: its system title (from the device
    /// profile, the open association or the simulator), else its target.
    fn meter_name(&self, sap: u16) -> String {
        self.t
            .profile
            .server_system_title
            .or_else(|| {
                self.clients
                    .get(&sap)
                    .and_then(|c| c.assoc.as_ref())
                    .and_then(|a| a.server_title)
            })
            .or_else(|| {
                self.t
                    .sim
                    .as_ref()
                    .map(|s| s.meter.lock().config.system_title)
            })
            .map(|t| t.to_string())
            .unwrap_or_else(|| self.t.spec.text.clone())
    }

    /// The keys of a transfer whose outcome is unknown: the meter may hold them.
    pub(super) fn mark_uncertain(&mut self, f: InFlight) {
        self.note(format!(
            "the outcome of the key transfer for client {} is unknown: the meter may hold the new key(s)",
            f.sap
        ));
        let u = self.uncertain.entry(f.sap).or_default();
        for (id, k) in f.keys {
            u.retain(|(i, _)| *i != id);
            u.push((id, k));
        }
    }

    /// A transfer of these key ids was answered: they are no longer in doubt.
    pub(super) fn settle_ids(&mut self, sap: u16, ids: &[u8]) {
        if let Some(u) = self.uncertain.get_mut(&sap) {
            u.retain(|(i, _)| !ids.contains(i));
            if u.is_empty() {
                self.uncertain.remove(&sap);
            }
        }
    }

    /// The case cannot run because an earlier case left the meter with other keys.
    pub(super) fn custody_precondition(&self) -> Option<String> {
        let touches_keys = self
            .case
            .steps
            .iter()
            .chain(self.case.teardown.iter())
            .any(|s| matches!(s.value, Step::KeyTransfer(_)));
        if !touches_keys || self.t.custody.left_changed.is_empty() {
            return None;
        }
        let (sap, (case, held)) = self.t.custody.left_changed.iter().next()?;
        Some(format!(
            "precondition failed: the previous case could not restore the keys ({case} left client {sap} with {}); this case is inconclusive",
            describe_held(held, &self.t.escrow.location())
        ))
    }

    /// Closes every link of the case without a word to the device: after an
    /// interrupted or timed-out step a reply may still be on its way, and must
    /// not be taken for the answer to the teardown's first request.
    /// Clients that had an association are associated again, with the keys
    /// the meter holds, before the teardown (see [`Self::settle_before_teardown`]).
    pub(super) async fn abandon_links(&mut self, why: &str) {
        let clients = std::mem::take(&mut self.clients);
        let n = clients.len();
        for (sap, mut c) in clients {
            if c.assoc.is_some() {
                self.reassociate.push(sap);
            }
            c.link.shutdown().await;
            self.traffic.extend(c.link.trace.take());
        }
        // The cut step may have used invocation counters the harness did not
        // see (an AARQ's glo-initiate and HLS pass 3, a request): skip ahead,
        // which a meter always accepts.
        for next in self.t.counters.values_mut() {
            *next = next.saturating_add(4);
        }
        if n > 0 {
            self.note(format!(
                "{why}: closed the case's link(s); the teardown starts on a fresh link"
            ));
        }
    }

    /// Before the teardown: a key transfer left in doubt is resolved, so the
    /// teardown associates with the keys the meter holds.
    pub(super) async fn settle_before_teardown(&mut self) {
        if let Some(f) = self.in_flight.take() {
            self.mark_uncertain(f);
        }
        let mut saps: Vec<u16> = self.uncertain.keys().copied().collect();
        for sap in std::mem::take(&mut self.reassociate) {
            if !saps.contains(&sap) {
                saps.push(sap);
            }
        }
        for sap in saps {
            self.find_keys(sap, true).await;
        }
    }

    /// After the teardown: settles what is still in doubt, and reports a
    /// failed restore or a meter left with other keys.
    pub(super) async fn settle_after_teardown(&mut self) {
        if let Some(f) = self.in_flight.take() {
            self.mark_uncertain(f);
        }
        let mut saps: Vec<u16> = self.uncertain.keys().copied().collect();
        for (sap, _) in &self.restore_failures {
            if !saps.contains(sap) {
                saps.push(*sap);
            }
        }
        let mut checked = Vec::new();
        for sap in saps {
            let found = self.find_keys(sap, false).await;
            checked.push((sap, found));
        }
        // What the meter is left with, client by client.
        let mut left = Vec::new();
        let saps: Vec<u16> = self.t.profile.clients.iter().map(|c| c.sap).collect();
        for sap in saps {
            let (Some(now), Some(orig)) = (self.t.profile.client(sap), self.t.original.client(sap))
            else {
                continue;
            };
            let mut held = Vec::new();
            for id in 0..4u8 {
                let maybe = self
                    .uncertain
                    .get(&sap)
                    .and_then(|u| u.iter().find(|(i, _)| *i == id))
                    .map(|(_, k)| k);
                let current = key_of(now, id);
                let differs = current != key_of(orig, id);
                let key = match (differs, maybe) {
                    (_, Some(k)) => Some((k, false)),
                    (true, None) => current.map(|k| (k, true)),
                    (false, None) => None,
                };
                if let Some((k, certain)) = key {
                    held.push(KeyHeld {
                        client: sap,
                        key: key_id_name(id).to_owned(),
                        entry: self.t.custody.entry_of(sap, id, k),
                        certain,
                    });
                }
            }
            let known = self
                .t
                .custody
                .left_changed
                .get(&sap)
                .is_some_and(|(_, h)| *h == held);
            if held.is_empty() {
                self.t.custody.left_changed.remove(&sap);
            } else if !known {
                // Reported once, by the case that left it so.
                left.extend(held.iter().cloned());
                self.t
                    .custody
                    .left_changed
                    .insert(sap, (self.case.id.clone(), held));
            }
        }
        if self.restore_failures.is_empty() && left.is_empty() && self.escrowed_here.is_empty() {
            return;
        }
        let location = self.t.escrow.location();
        let mut lines = Vec::new();
        for (sap, why) in &self.restore_failures {
            lines.push(format!("restoring the keys of client {sap} failed: {why}"));
        }
        for (sap, found) in &checked {
            match found {
                Some(what) => lines.push(format!(
                    "checked by associating: client {sap} holds {what}"
                )),
                None => lines.push(format!(
                    "client {sap}: no known key associates; the meter may hold a key from {location}"
                )),
            }
        }
        if !left.is_empty() {
            lines.push(format!(
                "the device is left changed: {}",
                describe_held(&left, &location)
            ));
        }
        for l in &lines {
            self.note(l.clone());
        }
        self.t.custody.notices.push(CustodyNotice {
            escrow_file: self.t.escrow.path().map(|p| p.to_path_buf()),
            restore_failed: !self.restore_failures.is_empty(),
            escrowed: self.escrowed_here.clone(),
            left_changed: left,
            message: lines.join("; "),
        });
    }

    /// Finds which of the candidate keys client `sap` holds by associating
    /// (the newest candidate first), adopts them, and keeps the association
    /// open when `keep`. Only the unicast and authentication keys can be told
    /// this way; a broadcast or master key in doubt stays in doubt. Returns
    /// what was found, in words, or `None` when no candidate associates.
    async fn find_keys(&mut self, sap: u16, keep: bool) -> Option<String> {
        let current = self.t.profile.client(sap)?.clone();
        let original = self.t.original.client(sap).cloned();
        let maybe: Vec<(u8, Key)> = self.uncertain.get(&sap).cloned().unwrap_or_default();
        let mut candidates: Vec<(String, ClientProfile)> = Vec::new();
        if maybe.iter().any(|(id, _)| matches!(id, 0 | 2)) {
            let mut pc = current.clone();
            for (id, k) in &maybe {
                set_key(&mut pc, *id, k.clone());
            }
            candidates.push(("the key(s) just transferred".into(), pc));
        }
        candidates.push(("the key(s) the harness used before".into(), current.clone()));
        if let Some(o) = &original {
            let mut pc = current.clone();
            pc.encryption_key = o.encryption_key.clone();
            pc.authentication_key = o.authentication_key.clone();
            candidates.push(("the original keys of the device profile".into(), pc));
        }
        // Keys escrowed earlier in the run for this client, newest first.
        for (s, id, k, entry) in self.t.custody.entries.iter().rev() {
            if *s == sap && matches!(id, 0 | 2) {
                let mut pc = current.clone();
                set_key(&mut pc, *id, k.clone());
                candidates.push((format!("the key in escrow entry {entry}"), pc));
            }
        }
        let mut tried: Vec<(Option<Key>, Option<Key>)> = Vec::new();
        for (what, pc) in candidates {
            let pair = (pc.encryption_key.clone(), pc.authentication_key.clone());
            if tried.contains(&pair) {
                continue;
            }
            tried.push(pair);
            match self.try_associate(sap, &pc, keep).await {
                Ok(true) => {
                    if let Some(p) = self.t.profile.client_mut(sap) {
                        p.encryption_key = pc.encryption_key.clone();
                        p.authentication_key = pc.authentication_key.clone();
                    }
                    if let Some(u) = self.uncertain.get_mut(&sap) {
                        u.retain(|(i, _)| !matches!(i, 0 | 2));
                        if u.is_empty() {
                            self.uncertain.remove(&sap);
                        }
                    }
                    self.note(format!(
                        "client {sap} associates with {what}: the harness uses them from now on"
                    ));
                    let is_original = original.as_ref().is_some_and(|o| {
                        o.encryption_key == pc.encryption_key
                            && o.authentication_key == pc.authentication_key
                    });
                    return Some(if is_original {
                        "the original keys".into()
                    } else {
                        what
                    });
                }
                Ok(false) => {}
                Err(e) => {
                    self.note(format!("checking the keys of client {sap}: {e}"));
                    return None;
                }
            }
        }
        self.note(format!("client {sap}: none of the known keys associates"));
        None
    }

    /// One association attempt with `pc`'s keys on a fresh link. `Ok(false)`
    /// when refused; `Err` when the device cannot be reached.
    async fn try_associate(
        &mut self,
        sap: u16,
        pc: &ClientProfile,
        keep: bool,
    ) -> Result<bool, String> {
        if let Some(mut old) = self.clients.remove(&sap) {
            old.link.shutdown().await;
            self.traffic.extend(old.link.trace.take());
        }
        let hls = pc.mechanism == Mechanism::HlsGmac;
        let ciphered = pc.protection.is_ciphered() || hls;
        let ic = if ciphered {
            self.next_counter(sap).await
        } else {
            0
        };
        let req = AssociationRequest::from_profile(pc, random_bytes(16), ic);
        let c = self.client(sap).await.map_err(|e| match e {
            StepError::Harness(m)
            | StepError::Fail { message: m, .. }
            | StepError::Precondition(m) => m,
        })?;
        let r = c.associate(req, false).await;
        if ciphered {
            let next = ic.saturating_add(if hls { 3 } else { 1 });
            let e = self.t.counters.entry(sap).or_insert(0);
            *e = (*e).max(next);
        }
        let ok = match r {
            Ok(AssociateOutcome::Associated) => true,
            Ok(AssociateOutcome::Refused(_)) => false,
            // A reply that does not decipher or authenticate: not these keys.
            Err(ClientError::Session(_)) | Err(ClientError::Protocol(_)) => false,
            Err(ClientError::Link(e)) => return Err(e.to_string()),
            Err(ClientError::NotAssociated) => false,
        };
        if (!ok || !keep)
            && let Some(mut c) = self.clients.remove(&sap)
        {
            if ok {
                let protected = c.assoc.as_ref().is_some_and(|a| a.ciphered());
                let _ = c.release(protected).await;
                if let Some(n) = c.ended_next_ic {
                    let e = self.t.counters.entry(sap).or_insert(0);
                    *e = (*e).max(n);
                }
            }
            if c.link.kind() == LinkKind::Hdlc && c.link.is_connected() {
                let _ = c.link.disconnect().await;
            }
            c.link.shutdown().await;
            self.traffic.extend(c.link.trace.take());
        }
        Ok(ok)
    }
}

/// `unicast key (escrow entry X)`, for people; never the key itself.
pub(crate) fn describe_held(held: &[KeyHeld], location: &str) -> String {
    let parts: Vec<String> = held
        .iter()
        .map(|h| {
            let may = if h.certain { "" } else { "possibly " };
            match &h.entry {
                Some(e) => format!(
                    "client {} {may}holds a generated {} key: escrow entry {e} in {location}",
                    h.client, h.key
                ),
                None => format!(
                    "client {} {may}holds a {} key other than the device profile's",
                    h.client, h.key
                ),
            }
        })
        .collect();
    parts.join("; ")
}
