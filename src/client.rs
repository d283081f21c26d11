//! A DLMS/COSEM client over a [`Link`]: associate (with HLS pass 3 and 4),
//! GET with block transfer, SET, ACTION, release. Used by the runner and by
//! `idis-harness read`. Deciphered APDUs go into the link's trace; keys never do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::profile::ClientProfile;
use crate::runner::event::Direction;
use crate::session::association::{
    self, AareOutcome, Associated, AssociationRequest, HlsOutcome, Received, Refusal, SessionError,
};
use crate::transport::link::{Link, LinkError, describe_apdu};
use crate::wire::apdu::{
    ActionRequest, ActionResponse, ActionResponseWithOptionalData, Apdu, AttributeDescriptor,
    DataAccessResult, ExceptionResponse, GetDataResult, GetRequest, GetResponse, MethodDescriptor,
    SetRequest, SetResponse,
};
use crate::wire::axdr::Data;

/// Most blocks a GET block transfer may take (at the smallest PDU, far more
/// than any attribute needs).
pub const MAX_BLOCKS: u32 = 100_000;

/// Why a client operation failed (the device's negative answers are not errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Link(#[from] LinkError),
    #[error("{0}")]
    Session(#[from] SessionError),
    #[error("no association is open")]
    NotAssociated,
    #[error("{0}")]
    Protocol(String),
}

/// Something the device did wrong that does not decide the step it happened
/// in: a run-wide monitor judges it (see `runner::monitor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnomalyKind {
    /// A protected request was answered in clear.
    UnprotectedResponse,
    /// A response carried another invoke-id than its request.
    InvokeIdMismatch,
}

/// An anomaly and what it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    pub text: String,
}

/// What an association attempt led to.
#[derive(Debug)]
pub enum AssociateOutcome {
    Associated,
    Refused(Refusal),
}

/// The outcome of a GET, as the device gave it.
#[derive(Debug, Clone, PartialEq)]
pub enum GetOutcome {
    Data(Data),
    Error(DataAccessResult),
    Exception(ExceptionResponse),
    /// Any other APDU.
    Other(Box<Apdu>),
}

impl std::fmt::Display for GetOutcome {
    /// In the standard's words: `data double-long-unsigned 7`, `refused:
    /// read-write-denied`, `exception-response ...`, `unexpected AARE ...`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GetOutcome::Data(d) => write!(f, "data {d}"),
            GetOutcome::Error(e) => write!(f, "refused: {}", e.name()),
            GetOutcome::Exception(e) => write!(f, "{e}"),
            GetOutcome::Other(a) => write!(f, "unexpected {a}"),
        }
    }
}

/// A client on a link.
#[derive(Debug)]
pub struct Client {
    pub link: Link,
    pub assoc: Option<Associated>,
    /// The last protected request sent, byte for byte (for replay steps).
    pub last_protected: Option<Vec<u8>>,
    /// The next invocation counter of the last association that ended, so a
    /// caller keeping counters sees what the release consumed.
    pub ended_next_ic: Option<u32>,
    /// Anomalies seen and not yet taken by the caller.
    pub anomalies: Vec<Anomaly>,
}

impl Client {
    pub fn new(link: Link) -> Self {
        Client {
            link,
            assoc: None,
            last_protected: None,
            ended_next_ic: None,
            anomalies: Vec::new(),
        }
    }

    fn note_plain(&mut self, dir: Direction, plain: &[u8]) {
        if !self.link.trace.is_enabled() {
            return;
        }
        self.link.trace.record(
            dir,
            "xdlms",
            plain,
            format!("deciphered: {}", describe_apdu(plain)),
        );
    }

    /// Sends an APDU the association protects, records the plain form, returns the reply decoded.
    pub async fn exchange(&mut self, plain: &[u8]) -> Result<Received, ClientError> {
        let assoc = self.assoc.as_mut().ok_or(ClientError::NotAssociated)?;
        let wire = assoc.wrap(plain)?;
        let ciphered = wire != plain;
        if ciphered {
            self.note_plain(Direction::Sent, plain);
            self.last_protected = Some(wire.clone());
        }
        let reply = self.link.request(&wire).await?;
        let r = self.receive(&reply)?;
        // A protected request gets a protected response (an exception-response
        // may come in clear). Noted, not fatal: the caller's monitors judge it once per run.
        if ciphered && r.protection.is_none() && !matches!(r.apdu, Apdu::ExceptionResponse(_)) {
            self.anomalies.push(Anomaly {
                kind: AnomalyKind::UnprotectedResponse,
                text: format!(
                    "the response to a protected request is not protected: {}",
                    r.apdu
                ),
            });
        }
        // The response carries the request's invoke-id.
        let sent = Apdu::decode(plain).ok().and_then(|a| a.invoke_id());
        if let (Some(sent), Some(got)) = (sent, r.apdu.invoke_id())
            && sent & 0x0F != got & 0x0F
        {
            self.anomalies.push(Anomaly {
                kind: AnomalyKind::InvokeIdMismatch,
                text: format!(
                    "the response has invoke-id {} but the request had {}",
                    got & 0x0F,
                    sent & 0x0F
                ),
            });
        }
        Ok(r)
    }

    /// Decodes and unprotects a reply on the open association, recording the plain form.
    pub fn receive(&mut self, reply: &[u8]) -> Result<Received, ClientError> {
        let assoc = self.assoc.as_mut().ok_or(ClientError::NotAssociated)?;
        let r = assoc.unwrap(reply)?;
        if r.protection.is_some() && self.link.trace.is_enabled() {
            let plain = r.apdu.encode();
            self.note_plain(Direction::Received, &plain);
        }
        Ok(r)
    }

    /// Runs an association attempt to its end (AARQ/AARE, and pass 3/4 for HLS).
    pub async fn associate(
        &mut self,
        req: AssociationRequest,
        skip_pass3: bool,
    ) -> Result<AssociateOutcome, ClientError> {
        self.assoc = None;
        let (expect, aarq) = association::start(req)?;
        let aare = self.link.request(&aarq.encode()).await?;
        self.note_user_information(&aare);
        match expect.handle(&aare)? {
            AareOutcome::Associated(a) => {
                self.assoc = Some(a);
                Ok(AssociateOutcome::Associated)
            }
            AareOutcome::Refused(r) => Ok(AssociateOutcome::Refused(r)),
            AareOutcome::Pass3 { next, request } => {
                if skip_pass3 {
                    self.assoc = Some(next.abandon());
                    return Ok(AssociateOutcome::Associated);
                }
                self.note_plain(Direction::Sent, next.plain_request());
                let reply = self.link.request(&request).await?;
                let (plain_reply, outcome) = next.handle_traced(&reply);
                if let Some(plain) = plain_reply {
                    self.note_plain(Direction::Received, &plain);
                }
                match outcome {
                    Ok(HlsOutcome::Associated(a)) => {
                        self.assoc = Some(a);
                        Ok(AssociateOutcome::Associated)
                    }
                    Ok(HlsOutcome::Refused(r, a)) => {
                        self.assoc = Some(a);
                        Ok(AssociateOutcome::Refused(r))
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    fn note_user_information(&mut self, aare: &[u8]) {
        if let Ok(Apdu::Aare(a)) = Apdu::decode(aare)
            && let Some(ui) = &a.user_information
        {
            self.link.trace.record(
                Direction::Received,
                "xdlms",
                ui,
                format!("AARE user-information: {}", describe_apdu(ui)),
            );
        }
    }

    /// The next invoke-id of the open association.
    fn next_invoke_id(&mut self) -> Result<u8, ClientError> {
        let assoc = self.assoc.as_mut().ok_or(ClientError::NotAssociated)?;
        Ok(assoc.next_invoke_id())
    }

    /// GET one attribute, following block transfer to the end.
    pub async fn get(&mut self, attribute: AttributeDescriptor) -> Result<GetOutcome, ClientError> {
        let invoke_id = self.next_invoke_id()?;
        let req = Apdu::GetRequest(GetRequest::Normal {
            invoke_id,
            attribute,
            access: None,
        });
        let mut r = self.exchange(&req.encode()).await?.apdu;
        let mut blocks: Vec<u8> = Vec::new();
        let mut expected_block = 1u32;
        loop {
            match r {
                Apdu::GetResponse(GetResponse::Normal { result, .. }) => {
                    return Ok(match result {
                        GetDataResult::Data(d) => GetOutcome::Data(d),
                        GetDataResult::Error(e) => GetOutcome::Error(e),
                    });
                }
                Apdu::GetResponse(GetResponse::WithDatablock { block, .. }) => {
                    if block.block_number != expected_block {
                        return Err(ClientError::Protocol(format!(
                            "block transfer: got block {}, expected {expected_block}",
                            block.block_number
                        )));
                    }
                    match block.result {
                        Err(e) => return Ok(GetOutcome::Error(e)),
                        Ok(raw) => blocks.extend_from_slice(&raw),
                    }
                    if blocks.len() > 16 * 1024 * 1024 {
                        return Err(ClientError::Protocol(
                            "block transfer: more than 16 MiB".into(),
                        ));
                    }
                    if block.last_block {
                        let d = Data::decode(&blocks).map_err(|e| {
                            ClientError::Protocol(format!(
                                "block transfer: the reassembled data does not decode: {e}"
                            ))
                        })?;
                        return Ok(GetOutcome::Data(d));
                    }
                    // A device sending empty blocks forever must not keep us looping.
                    if expected_block >= MAX_BLOCKS {
                        return Err(ClientError::Protocol(format!(
                            "block transfer: more than {MAX_BLOCKS} blocks"
                        )));
                    }
                    let next = Apdu::GetRequest(GetRequest::Next {
                        invoke_id,
                        block_number: block.block_number,
                    });
                    expected_block += 1;
                    r = self.exchange(&next.encode()).await?.apdu;
                }
                Apdu::ExceptionResponse(e) => return Ok(GetOutcome::Exception(e)),
                other => return Ok(GetOutcome::Other(Box::new(other))),
            }
        }
    }

    /// SET one attribute; returns the response APDU.
    pub async fn set(
        &mut self,
        attribute: AttributeDescriptor,
        value: Data,
    ) -> Result<Apdu, ClientError> {
        let invoke_id = self.next_invoke_id()?;
        let req = Apdu::SetRequest(SetRequest::Normal {
            invoke_id,
            attribute,
            access: None,
            value,
        });
        Ok(self.exchange(&req.encode()).await?.apdu)
    }

    /// ACTION; returns the response APDU.
    pub async fn action(
        &mut self,
        method: MethodDescriptor,
        parameters: Option<Data>,
    ) -> Result<Apdu, ClientError> {
        let invoke_id = self.next_invoke_id()?;
        let req = Apdu::ActionRequest(ActionRequest::Normal {
            invoke_id,
            method,
            parameters,
        });
        Ok(self.exchange(&req.encode()).await?.apdu)
    }

    /// Release with RLRQ; returns the reply APDU.
    pub async fn release(&mut self, protected: bool) -> Result<Apdu, ClientError> {
        let assoc = self.assoc.as_mut().ok_or(ClientError::NotAssociated)?;
        let rlrq = assoc.release_request(protected)?;
        let reply = self.link.request(&rlrq.encode()).await?;
        let apdu = Apdu::decode(&reply).map_err(SessionError::from)?;
        if matches!(apdu, Apdu::Rlre(_))
            && let Some(a) = self.assoc.take()
        {
            self.ended_next_ic = a.cipher.map(|c| c.next_ic);
        }
        Ok(apdu)
    }
}

/// Reads the result of an ACTION response.
pub fn action_result(apdu: &Apdu) -> Option<&ActionResponseWithOptionalData> {
    match apdu {
        Apdu::ActionResponse(ActionResponse::Normal { response, .. }) => Some(response),
        _ => None,
    }
}

/// Reads the result of a SET response.
pub fn set_result(apdu: &Apdu) -> Option<DataAccessResult> {
    match apdu {
        Apdu::SetResponse(SetResponse::Normal { result, .. }) => Some(*result),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Invocation counters kept between runs.

/// The next invocation counter per device, client and key, kept in a file so
/// that runs against a real meter never reuse a counter (which a meter rejects,
/// and which leaks the GCM authentication key). The key is named by its
/// fingerprint, never its bytes.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CounterStore {
    path: Option<PathBuf>,
    next: BTreeMap<String, u32>,
}

impl CounterStore {
    /// An in-memory store.
    pub fn memory() -> Self {
        CounterStore::default()
    }

    /// Loads the store from `path` (a missing file is an empty store).
    pub fn load(path: &Path) -> Result<Self, String> {
        let mut s = CounterStore {
            path: Some(path.to_owned()),
            next: BTreeMap::new(),
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                s.next = serde_saphyr::from_str(&text)
                    .map_err(|e| format!("counter state {}: {e}", path.display()))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("counter state {}: {e}", path.display())),
        }
        Ok(s)
    }

    pub fn key(device: &str, client: &ClientProfile) -> String {
        let k = client
            .encryption_key
            .as_ref()
            .map(|k| k.fingerprint())
            .unwrap_or_else(|| "none".into());
        format!("{device}/client-{}/key-{k}", client.sap)
    }

    pub fn get(&self, key: &str) -> Option<u32> {
        self.next.get(key).copied()
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, u32)> {
        self.next.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// Records that counters below `next` are used.
    pub fn advance(&mut self, key: &str, next: u32) {
        let e = self.next.entry(key.to_owned()).or_insert(0);
        *e = (*e).max(next);
    }

    /// Writes the store back, atomically.
    pub fn save(&self) -> Result<(), String> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut text = String::from(
            "# idis-harness invocation counters: next counter per device/client/key\n",
        );
        for (k, v) in &self.next {
            text.push_str(&format!("{k:?}: {v}\n"));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_store_round_trips_and_never_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/counters.yaml");
        let mut s = CounterStore::load(&path).unwrap();
        let k = CounterStore::key("4D4D4D0000BC614E", &ClientProfile::management());
        assert!(!k.contains("000102"), "key bytes must not appear: {k}");
        s.advance(&k, 10);
        s.advance(&k, 5);
        s.save().unwrap();
        let s2 = CounterStore::load(&path).unwrap();
        assert_eq!(s2.get(&k), Some(10));
    }
}
