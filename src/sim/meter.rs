//! The simulated meter's application layer: server associations (AARQ/AARE,
//! HLS-GMAC pass 3 and 4, release), ciphered services with replay protection,
//! GET/SET/ACTION on the COSEM objects with block transfer, security_activate
//! and key transfer. Synchronous and transport-agnostic: a transport hands in a
//! request APDU and gets the response APDU back.

use std::collections::BTreeMap;

use crate::profile::{Ciphering, Mechanism, Protection};
use crate::security::{
    CounterCheck, Key, ReplayGuard, SecurityControl, SystemTitle, hls_gmac, unprotect, unwrap_key,
    verify_hls_gmac,
};
use crate::session::cipher::{CipherContext, CipherError};
use crate::sim::config::{MeterConfig, SimClient};
use crate::sim::objects::{self, Object, ObjectKind};
use crate::sim::quirks::{Quirk, Quirks};
use crate::wire::apdu::{
    Aare, Aarq, AcseDiagnostic, ActionRequest, ActionResponse, ActionResponseWithOptionalData,
    ActionResult, Apdu, AppContext, AttributeDescriptor, ConfirmedServiceError, Conformance,
    DataAccessResult, DataBlockG, ExceptionResponse, GetDataResult, GetRequest, GetResponse,
    InitiateRequest, InitiateResponse, MethodDescriptor, Rlre, Rlrq, SetRequest, SetResponse,
};
use crate::wire::axdr::Data;
use crate::wire::obis::Obis;

/// Exception-response state errors (dlms-facts.md 4.3).
const SERVICE_NOT_ALLOWED: u8 = 1;
/// Exception-response service errors.
const OPERATION_NOT_POSSIBLE: u8 = 1;
const SERVICE_NOT_SUPPORTED: u8 = 2;
const DECIPHERING_ERROR: u8 = 5;
const INVOCATION_COUNTER_ERROR: u8 = 6;

/// ACSE service-user diagnostics (dlms-facts.md 2.3).
mod diag {
    pub const NO_REASON: u8 = 1;
    pub const CONTEXT_NOT_SUPPORTED: u8 = 2;
    pub const CALLING_AP_TITLE: u8 = 3;
    pub const MECHANISM_NOT_RECOGNISED: u8 = 11;
    pub const MECHANISM_REQUIRED: u8 = 12;
    pub const AUTHENTICATION_FAILURE: u8 = 13;
    pub const AUTHENTICATION_REQUIRED: u8 = 14;
}

/// Initiate error codes carried in a confirmed-service-error.
mod initiate {
    pub const OTHER: u8 = 0;
    pub const DLMS_VERSION_TOO_LOW: u8 = 1;
    pub const INCOMPATIBLE_CONFORMANCE: u8 = 2;
    pub const PDU_SIZE_TOO_SHORT: u8 = 3;
}

/// What the meter remembers of each client between associations (and, with
/// `--state`, between runs).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientState {
    pub encryption_key: Key,
    pub authentication_key: Key,
    pub broadcast_key: Key,
    pub master_key: Key,
    /// Keys replaced by a key transfer (kept only for the `old-key-still-valid` quirk).
    pub previous_keys: Option<(Key, Key)>,
    /// Security policy of the client's security setup.
    pub policy: u8,
    /// Lowest acceptable invocation counter from this client.
    pub client_guard: ReplayGuard,
    /// The counter of the meter's next protected APDU to this client.
    pub own_counter: u32,
}

/// The meter's memory: per client, keys, policy and counters.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterState {
    pub clients: BTreeMap<u16, ClientState>,
    /// Seconds added to the host clock (set by writing the clock).
    pub clock_offset: i64,
}

impl MeterState {
    pub fn new(config: &MeterConfig) -> Self {
        MeterState {
            clients: config
                .clients
                .iter()
                .map(|c| {
                    (
                        c.sap,
                        ClientState {
                            encryption_key: c.encryption_key.clone(),
                            authentication_key: c.authentication_key.clone(),
                            broadcast_key: c.broadcast_key.clone(),
                            master_key: c.master_key.clone(),
                            previous_keys: None,
                            policy: c.initial_policy,
                            client_guard: ReplayGuard::new(),
                            own_counter: config.initial_invocation_counter,
                        },
                    )
                })
                .collect(),
            clock_offset: 0,
        }
    }
}

/// A long GET response being sent in blocks.
#[derive(Debug, Clone)]
struct PendingBlocks {
    invoke_id: u8,
    data: Vec<u8>,
    block_size: usize,
    next_block: u32,
}

#[derive(Debug)]
enum AssocState {
    Idle,
    Open(ServerAssociation),
}

#[derive(Debug)]
struct ServerAssociation {
    client: u16,
    ciphered: bool,
    ctx: Option<CipherContext>,
    /// HLS pass 3 still expected; holds the server challenge StoC.
    pending_hls: Option<Vec<u8>>,
    /// CtoS, for f(CtoS).
    ctos: Vec<u8>,
    conformance: u32,
    client_max_pdu: u16,
    blocks: Option<PendingBlocks>,
}

/// Per-connection state: the association open on this connection and work to do
/// after the response has gone out.
#[derive(Debug)]
pub struct Connection {
    assoc: AssocState,
    /// Key changes that take effect once the response is sent: (client, key id, key).
    pending_keys: Vec<(u16, u8, Key)>,
    /// A challenge source: a counter mixed into a per-connection seed.
    challenge_seed: u64,
    challenges: u64,
}

impl Connection {
    /// A new connection; `seed` makes its server challenges unique.
    pub fn new(seed: u64) -> Self {
        Connection {
            assoc: AssocState::Idle,
            pending_keys: vec![],
            challenge_seed: seed,
            challenges: 0,
        }
    }

    /// The client associated on this connection, if any.
    pub fn associated_client(&self) -> Option<u16> {
        match &self.assoc {
            AssocState::Open(a) => Some(a.client),
            AssocState::Idle => None,
        }
    }

    /// Drops the association (link closed or disconnected).
    pub fn reset(&mut self) {
        self.assoc = AssocState::Idle;
    }
}

/// The simulated meter.
#[derive(Debug)]
pub struct Meter {
    pub config: MeterConfig,
    pub quirks: Quirks,
    pub state: MeterState,
    objects: Vec<Object>,
    /// Associations opened so far (for the `changes-system-title` quirk).
    associations: u64,
    /// A key transfer was refused (for the `counter-back-after-refused-key-transfer` quirk).
    refused_key_transfer: bool,
}

fn exc(state: u8, service: u8, ic: Option<u32>) -> ExceptionResponse {
    ExceptionResponse {
        state_error: state,
        service_error: service,
        invocation_counter: ic,
    }
}

fn exception(state: u8, service: u8, ic: Option<u32>) -> Apdu {
    Apdu::ExceptionResponse(exc(state, service, ic))
}

fn aare_reject(context: AppContext, diagnostic: AcseDiagnostic, user: Option<Vec<u8>>) -> Apdu {
    Apdu::from(Aare {
        user_information: user,
        ..Aare::new(context, 1, diagnostic)
    })
}

fn initiate_error(code: u8) -> Vec<u8> {
    Apdu::ConfirmedServiceError(ConfirmedServiceError {
        service: 1,
        error_type: 6,
        value: code,
    })
    .encode()
}

impl Meter {
    pub fn new(config: MeterConfig, quirks: Quirks) -> Self {
        let state = MeterState::new(&config);
        let objects = build_objects(&config);
        Meter {
            config,
            quirks,
            state,
            objects,
            associations: 0,
            refused_key_transfer: false,
        }
    }

    fn q(&self, q: Quirk) -> bool {
        self.quirks.has(q)
    }

    /// A power cycle: what lives only in RAM is gone (the links, handled by
    /// the server; a pending refusal); keys, counters, policies and the clock
    /// offset are the meter's memory and stay, unless the
    /// `forgets-state-on-restart` quirk is on.
    pub fn restart(&mut self) {
        self.refused_key_transfer = false;
        if self.q(Quirk::ForgetsStateOnRestart) {
            self.state = MeterState::new(&self.config);
        }
    }

    /// The system title of the current association: the configured one, or
    /// with the `changes-system-title` quirk another one every second time.
    fn own_title(&self) -> SystemTitle {
        let mut t = self.config.system_title;
        if self.q(Quirk::ChangesSystemTitle) && self.associations.is_multiple_of(2) {
            t.0[7] ^= 0x01;
        }
        t
    }

    pub fn objects(&self) -> &[Object] {
        &self.objects
    }

    /// Handles one request APDU from `client_sap` on `conn`; returns the
    /// response, or `None` when the meter stays silent. Call
    /// [`Meter::after_response`] once the response has been sent.
    pub fn handle(
        &mut self,
        conn: &mut Connection,
        client_sap: u16,
        request: &[u8],
        now_unix: i64,
    ) -> Option<Vec<u8>> {
        let apdu = match Apdu::decode(request) {
            Ok(a) => a,
            // Undecodable: service-not-supported (APPL_DATA_LN_N1, malformed APDU).
            Err(_) => {
                return Some(exception(SERVICE_NOT_ALLOWED, SERVICE_NOT_SUPPORTED, None).encode());
            }
        };
        match apdu {
            Apdu::Aarq(aarq) => Some(self.handle_aarq(conn, client_sap, *aarq)),
            Apdu::Rlrq(rlrq) => self.handle_rlrq(conn, rlrq),
            other => Some(self.handle_service(conn, client_sap, other, now_unix)),
        }
    }

    /// Applies what waits for the response to be sent: new keys (Green Book:
    /// they take effect after the key transfer response).
    pub fn after_response(&mut self, conn: &mut Connection) {
        for (client, id, key) in std::mem::take(&mut conn.pending_keys) {
            self.install_key(conn, client, id, key);
        }
    }

    fn install_key(&mut self, conn: &mut Connection, client: u16, id: u8, key: Key) {
        let Some(st) = self.state.clients.get_mut(&client) else {
            return;
        };
        if matches!(id, 0 | 2) {
            st.previous_keys = Some((st.encryption_key.clone(), st.authentication_key.clone()));
            // Invocation counters belong to a key: a new key starts a new count
            // (dlms-facts.md 3.5 leaves this to the device; the profile says which).
            st.client_guard = ReplayGuard::new();
        }
        match id {
            0 => st.encryption_key = key.clone(),
            1 => st.broadcast_key = key.clone(),
            2 => st.authentication_key = key.clone(),
            3 => st.master_key = key.clone(),
            _ => {}
        }
        // The live association continues with the new keys.
        if let AssocState::Open(a) = &mut conn.assoc
            && a.client == client
            && let Some(ctx) = &mut a.ctx
        {
            match id {
                0 => ctx.encryption_key = key,
                2 => ctx.authentication_key = key,
                _ => {}
            }
            if matches!(id, 0 | 2) {
                ctx.peer_guard = ReplayGuard::new();
            }
        }
    }

    /// The server-to-client challenge StoC: 16 random bytes, as a real meter's
    /// would be (a predictable challenge would let a recorded f(StoC) be reused).
    /// Should the OS random source fail, a per-connection derivation stands in.
    fn next_challenge(&self, conn: &mut Connection) -> Vec<u8> {
        if self.q(Quirk::RepeatsHlsChallenge) {
            return b"fixed-challenge!".to_vec();
        }
        let mut random = vec![0u8; 16];
        if getrandom::fill(&mut random).is_ok() {
            return random;
        }
        conn.challenges += 1;
        let mut label = conn.challenge_seed.to_be_bytes().to_vec();
        label.extend_from_slice(&conn.challenges.to_be_bytes());
        let base = Key::new(*b"idis-sim-challng");
        let t = hls_gmac(
            SecurityControl::AUTH,
            &self.config.system_title,
            conn.challenges as u32,
            &base,
            &base,
            &label,
        );
        let mut out = t[5..].to_vec();
        out.extend_from_slice(&t[1..5]);
        out
    }

    // -----------------------------------------------------------------
    // Association

    fn handle_aarq(&mut self, conn: &mut Connection, client_sap: u16, aarq: Aarq) -> Vec<u8> {
        // A new AARQ replaces any association on this connection.
        conn.assoc = AssocState::Idle;
        let ctx_name = aarq.application_context.clone();
        let user = |d: u8| AcseDiagnostic::User(d);
        let Some(client) = self.config.client(client_sap).cloned() else {
            return aare_reject(ctx_name, user(diag::NO_REASON), None).encode();
        };
        // protocol-version: version1 (the first bit) must be offered (APPL_OPEN_4).
        if let Some(pv) = &aarq.protocol_version {
            let version1 = pv.get(1).is_some_and(|b| b & 0x80 != 0);
            if !version1 || self.q(Quirk::RejectsProtocolVersion) {
                return aare_reject(ctx_name, AcseDiagnostic::Provider(2), None).encode();
            }
        }
        let expected_ctx = if client.ciphered {
            AppContext::LnCipher
        } else {
            AppContext::LnNoCipher
        };
        if aarq.application_context != expected_ctx && !self.q(Quirk::AcceptsUnknownContext) {
            return aare_reject(expected_ctx, user(diag::CONTEXT_NOT_SUPPORTED), None).encode();
        }
        let needs_title = client.ciphered || client.mechanism == Mechanism::HlsGmac;
        let client_title = match &aarq.calling_ap_title {
            Some(t) => match SystemTitle::from_slice(t) {
                Some(st) => Some(st),
                None if self.q(Quirk::AcceptsBadApTitle) => {
                    let mut st = [0u8; 8];
                    for (d, s) in st.iter_mut().zip(t.iter()) {
                        *d = *s;
                    }
                    Some(SystemTitle(st))
                }
                None => return aare_reject(ctx_name, user(diag::CALLING_AP_TITLE), None).encode(),
            },
            None if needs_title => {
                return aare_reject(ctx_name, user(diag::CALLING_AP_TITLE), None).encode();
            }
            None => None,
        };
        // Mechanism.
        use crate::wire::apdu::Mechanism as M;
        let offered = match &aarq.mechanism {
            None => Mechanism::None,
            Some(M::Lls) => Mechanism::Lls,
            Some(M::HlsGmac) => Mechanism::HlsGmac,
            Some(_) => {
                return aare_reject(ctx_name, user(diag::MECHANISM_NOT_RECOGNISED), None).encode();
            }
        };
        let lower_ok = offered == Mechanism::None && self.q(Quirk::AcceptsLowerMechanism);
        if offered != client.mechanism && !lower_ok {
            let d = if offered == Mechanism::None {
                diag::MECHANISM_REQUIRED
            } else {
                diag::MECHANISM_NOT_RECOGNISED
            };
            return aare_reject(ctx_name, user(d), None).encode();
        }
        match offered {
            Mechanism::Lls => {
                let Some(pw) = &aarq.calling_authentication_value else {
                    return aare_reject(ctx_name, user(diag::AUTHENTICATION_REQUIRED), None)
                        .encode();
                };
                if client.password.as_deref() != Some(pw.as_slice())
                    && !self.q(Quirk::AcceptsWrongPassword)
                {
                    return aare_reject(ctx_name, user(diag::AUTHENTICATION_FAILURE), None)
                        .encode();
                }
            }
            Mechanism::HlsGmac => match &aarq.calling_authentication_value {
                Some(c) if c.len() != 16 && self.q(Quirk::FixedChallengeLength) => {
                    return aare_reject(ctx_name, user(diag::AUTHENTICATION_FAILURE), None)
                        .encode();
                }
                Some(c) if (8..=64).contains(&c.len()) => {}
                Some(_) => {
                    return aare_reject(ctx_name, user(diag::AUTHENTICATION_FAILURE), None)
                        .encode();
                }
                None => {
                    return aare_reject(ctx_name, user(diag::AUTHENTICATION_REQUIRED), None)
                        .encode();
                }
            },
            Mechanism::None => {}
        }
        // The cipher context for this association, from the client's current keys and counters.
        let st = self.state.clients.get(&client_sap).cloned();
        let Some(st) = st else {
            return aare_reject(ctx_name, user(diag::NO_REASON), None).encode();
        };
        self.associations += 1;
        let own_title = self.own_title();
        let mut ctx = if needs_title {
            let mut c = CipherContext::new(
                own_title,
                st.encryption_key.clone(),
                st.authentication_key.clone(),
                Protection::AuthenticatedEncrypted,
                Ciphering::ServiceSpecific,
                if self.q(Quirk::RestartsOwnCounter) {
                    self.config.initial_invocation_counter
                } else {
                    st.own_counter
                },
            );
            c.peer_title = client_title;
            c.peer_guard = if self.q(Quirk::ForgetsCounterOnReassociation) {
                ReplayGuard::new()
            } else {
                st.client_guard.clone()
            };
            Some(c)
        } else {
            None
        };
        // User information: the InitiateRequest, ciphered in the ciphered context.
        let Some(ui) = &aarq.user_information else {
            return aare_reject(ctx_name, user(diag::NO_REASON), None).encode();
        };
        let (init, init_sc) = match Apdu::decode(ui) {
            Ok(Apdu::InitiateRequest(r)) => (r, None),
            Ok(ref c @ Apdu::Ciphered(ref ca)) if ca.tag == 0x21 => {
                let Some(ctx) = ctx.as_mut() else {
                    return aare_reject(ctx_name, user(diag::NO_REASON), None).encode();
                };
                match self.open_request(ctx, c, !self.q(Quirk::AcceptsReplayedInitiate), true) {
                    Ok((Apdu::InitiateRequest(r), sc)) => (r, Some(sc)),
                    Ok(_) => return aare_reject(ctx_name, user(diag::NO_REASON), None).encode(),
                    // The quirk: what does not decipher is taken as a default InitiateRequest.
                    Err(e)
                        if e.service_error == DECIPHERING_ERROR
                            && self.q(Quirk::AcceptsUndecipherableInitiate) =>
                    {
                        (
                            InitiateRequest {
                                dedicated_key: None,
                                response_allowed: true,
                                proposed_quality_of_service: None,
                                proposed_dlms_version: 6,
                                proposed_conformance: Conformance(self.config.conformance),
                                client_max_receive_pdu_size: self.config.max_pdu_size,
                            },
                            Some(SecurityControl::new(true, true, 0)),
                        )
                    }
                    // Gurux answers a bad glo-initiate with an exception-response (dlms-facts.md 4.3).
                    Err(reply) => return Apdu::ExceptionResponse(reply).encode(),
                }
            }
            _ => return aare_reject(ctx_name, user(diag::NO_REASON), None).encode(),
        };
        if client.ciphered && init_sc.is_none() {
            let policy =
                SimClient::required_protection(st.policy, self.config.security_setup_version);
            if policy != Protection::None {
                return aare_reject(ctx_name, user(diag::NO_REASON), None).encode();
            }
        }
        if let Some(code) = self.check_initiate(&init, client.ciphered) {
            return aare_reject(ctx_name, user(diag::NO_REASON), Some(initiate_error(code)))
                .encode();
        }
        let conformance = if self.q(Quirk::IgnoresProposedConformance) {
            self.config.conformance
        } else {
            self.config.conformance & init.proposed_conformance.0
        };
        if conformance == 0 {
            return aare_reject(
                ctx_name,
                user(diag::NO_REASON),
                Some(initiate_error(initiate::INCOMPATIBLE_CONFORMANCE)),
            )
            .encode();
        }
        let response = Apdu::InitiateResponse(InitiateResponse {
            negotiated_quality_of_service: None,
            negotiated_dlms_version: 6,
            negotiated_conformance: Conformance(conformance),
            server_max_receive_pdu_size: self.config.max_pdu_size,
            vaa_name: 0x0007,
        })
        .encode();
        let user_information = match (&mut ctx, init_sc) {
            (Some(c), Some(sc)) => match self.protect(c, &response, sc, Ciphering::ServiceSpecific)
            {
                Some(b) => b,
                None => {
                    return exception(SERVICE_NOT_ALLOWED, OPERATION_NOT_POSSIBLE, None).encode();
                }
            },
            _ => response,
        };
        let hls = offered == Mechanism::HlsGmac;
        let stoc = hls.then(|| self.next_challenge(conn));
        let aare = Apdu::from(Aare {
            protocol_version: None,
            application_context: aarq.application_context.clone(),
            result: 0,
            diagnostic: AcseDiagnostic::User(if hls {
                diag::AUTHENTICATION_REQUIRED
            } else {
                0
            }),
            responding_ap_title: needs_title.then(|| own_title.0.to_vec()),
            responding_ae_qualifier: None,
            responding_ap_invocation_id: None,
            responding_ae_invocation_id: None,
            responder_acse_requirements: (offered != Mechanism::None).then(|| vec![0x07, 0x80]),
            mechanism: crate::session::association::mechanism_name(offered),
            responding_authentication_value: stoc.clone(),
            implementation_information: None,
            user_information: Some(user_information),
            unknown: vec![],
        });
        if let Some(c) = &ctx {
            self.save_counters(client_sap, c);
        }
        conn.assoc = AssocState::Open(ServerAssociation {
            client: client_sap,
            ciphered: client.ciphered,
            ctx,
            pending_hls: stoc,
            ctos: aarq
                .calling_authentication_value
                .clone()
                .unwrap_or_default(),
            conformance,
            client_max_pdu: init.client_max_receive_pdu_size,
            blocks: None,
        });
        aare.encode()
    }

    /// Checks an InitiateRequest; returns an initiate error code when refused.
    fn check_initiate(&self, init: &InitiateRequest, ciphered: bool) -> Option<u8> {
        if init.proposed_dlms_version < 6 && !self.q(Quirk::AcceptsOldDlmsVersion) {
            return Some(initiate::DLMS_VERSION_TOO_LOW);
        }
        if init.client_max_receive_pdu_size < self.config.min_client_pdu_size
            && init.client_max_receive_pdu_size != 0
            && !self.q(Quirk::AcceptsTinyPdu)
        {
            return Some(initiate::PDU_SIZE_TOO_SHORT);
        }
        // A dedicated key only makes sense in a ciphered context (APPL_OPEN_9).
        if init.dedicated_key.is_some() && !ciphered {
            return Some(initiate::OTHER);
        }
        None
    }

    fn save_counters(&mut self, client: u16, ctx: &CipherContext) {
        if let Some(st) = self.state.clients.get_mut(&client) {
            st.own_counter = st.own_counter.max(ctx.next_ic);
            if ctx.peer_guard.lowest_acceptable() > st.client_guard.lowest_acceptable()
                || ctx.peer_guard.lowest_acceptable().is_none()
            {
                st.client_guard = ctx.peer_guard.clone();
            }
        }
    }

    /// Deciphers a protected request and checks its counter. On failure, the
    /// exception-response to send.
    /// `initiate`: the glo-initiate-request of an AARQ (rather than a service request).
    fn open_request(
        &mut self,
        ctx: &mut CipherContext,
        apdu: &Apdu,
        check_counter: bool,
        initiate: bool,
    ) -> Result<(Apdu, SecurityControl), ExceptionResponse> {
        let ignore_tag = if initiate {
            self.q(Quirk::IgnoresInitiateTag)
        } else {
            self.q(Quirk::IgnoresGcmTag)
        };
        let opened = match ctx.open(apdu) {
            Ok(u) => Ok(u),
            Err(CipherError::Security(crate::security::SecurityError::TagMismatch))
                if ignore_tag =>
            {
                self.open_ignoring_tag(ctx, apdu).ok_or(())
            }
            Err(_) => Err(()),
        };
        let u = match opened {
            Ok(u) => u,
            Err(()) => {
                // The old keys, for a meter that keeps accepting them.
                let retry = self.try_previous_keys(ctx, apdu);
                match retry {
                    Some(u) => u,
                    None => return Err(exc(SERVICE_NOT_ALLOWED, DECIPHERING_ERROR, None)),
                }
            }
        };
        if check_counter && !self.q(Quirk::IgnoresInvocationCounter) {
            let check = ctx.peer_guard.peek(u.ic);
            let equal_replay = ctx.peer_guard.lowest_acceptable() == Some(u.ic.wrapping_add(1));
            let wrap_ok = self.q(Quirk::WrapsCounter) && matches!(check, CounterCheck::Exhausted);
            match check {
                CounterCheck::Accepted => {}
                CounterCheck::Replayed { .. }
                    if equal_replay && self.q(Quirk::AcceptsReplayedCounter) => {}
                _ if wrap_ok => ctx.peer_guard = ReplayGuard::new(),
                CounterCheck::Replayed { lowest_acceptable } => {
                    let reported = if self.q(Quirk::WrongCounterInException) {
                        u.ic
                    } else {
                        lowest_acceptable
                    };
                    return Err(exc(
                        SERVICE_NOT_ALLOWED,
                        INVOCATION_COUNTER_ERROR,
                        Some(reported),
                    ));
                }
                CounterCheck::Exhausted => {
                    return Err(exc(
                        SERVICE_NOT_ALLOWED,
                        INVOCATION_COUNTER_ERROR,
                        Some(u32::MAX),
                    ));
                }
            }
        }
        ctx.peer_guard.force(u.ic);
        Ok((u.apdu, u.sc))
    }

    fn try_previous_keys(
        &self,
        ctx: &CipherContext,
        apdu: &Apdu,
    ) -> Option<crate::session::cipher::Unprotected> {
        if !self.q(Quirk::OldKeyStillValid) {
            return None;
        }
        let client = self.state.clients.values().find(|c| {
            c.encryption_key == ctx.encryption_key && c.authentication_key == ctx.authentication_key
        })?;
        let (ek, ak) = client.previous_keys.clone()?;
        let mut old = ctx.clone();
        old.encryption_key = ek;
        old.authentication_key = ak;
        old.open(apdu).ok()
    }

    /// Deciphers without verifying the tag (the `ignores-gcm-tag` quirk).
    fn open_ignoring_tag(
        &self,
        ctx: &CipherContext,
        apdu: &Apdu,
    ) -> Option<crate::session::cipher::Unprotected> {
        let (content, title) = match apdu {
            Apdu::Ciphered(c) => (c.content.clone(), ctx.peer_title?),
            Apdu::GeneralGloCiphering(g) => {
                (g.content.clone(), SystemTitle::from_slice(&g.system_title)?)
            }
            _ => return None,
        };
        let sc = SecurityControl(*content.first()?);
        let ic_bytes = content.get(1..5)?;
        let body = content.get(5..)?;
        let payload = if sc.authenticated() {
            body.get(..body.len().checked_sub(12)?)?
        } else {
            body
        };
        let plain = if sc.encrypted() {
            let mut c = vec![SecurityControl::new(false, true, sc.suite()).0];
            c.extend_from_slice(ic_bytes);
            c.extend_from_slice(payload);
            unprotect(&c, &title, &ctx.encryption_key, &ctx.authentication_key)
                .ok()?
                .apdu
        } else {
            payload.to_vec()
        };
        Some(crate::session::cipher::Unprotected {
            apdu: Apdu::decode(&plain).ok()?,
            plain,
            sc,
            ic: u32::from_be_bytes(ic_bytes.try_into().ok()?),
            carrier: "ciphered",
            system_title: None,
        })
    }

    /// Protects a response with the request's security control.
    fn protect(
        &mut self,
        ctx: &mut CipherContext,
        plain: &[u8],
        sc: SecurityControl,
        ciphering: Ciphering,
    ) -> Option<Vec<u8>> {
        if std::mem::take(&mut self.refused_key_transfer)
            && self.q(Quirk::CounterBackAfterRefusedKeyTransfer)
        {
            ctx.next_ic = ctx.next_ic.saturating_sub(2);
        }
        let ic = ctx.take_ic().ok()?;
        if self.q(Quirk::RepeatsOwnCounter) {
            ctx.next_ic = ic;
        }
        ctx.protect_with(plain, sc, ic, ciphering).ok()
    }

    fn handle_rlrq(&mut self, conn: &mut Connection, rlrq: Rlrq) -> Option<Vec<u8>> {
        if self.q(Quirk::NoReleaseResponse) {
            conn.assoc = AssocState::Idle;
            return None;
        }
        if self.q(Quirk::RefusesRelease) && matches!(conn.assoc, AssocState::Open(_)) {
            return Some(exception(SERVICE_NOT_ALLOWED, OPERATION_NOT_POSSIBLE, None).encode());
        }
        let AssocState::Open(a) = &mut conn.assoc else {
            return Some(
                Apdu::Rlre(Rlre {
                    reason: Some(0),
                    user_information: None,
                })
                .encode(),
            );
        };
        // A ciphered association is released only by an RLRQ whose user-information
        // is a protected InitiateRequest (SYMSEC_REL_N1).
        let mut user_information = None;
        if a.ciphered {
            let protected_ok = match (&rlrq.user_information, a.ctx.as_mut()) {
                (Some(ui), Some(ctx)) => match Apdu::decode(ui) {
                    Ok(c @ Apdu::Ciphered(_)) => {
                        let mut ctx2 = ctx.clone();
                        match self.open_request(&mut ctx2, &c, true, false) {
                            Ok((Apdu::InitiateRequest(_), sc)) => {
                                *ctx = ctx2;
                                let resp = Apdu::InitiateResponse(InitiateResponse {
                                    negotiated_quality_of_service: None,
                                    negotiated_dlms_version: 6,
                                    negotiated_conformance: Conformance(a.conformance),
                                    server_max_receive_pdu_size: self.config.max_pdu_size,
                                    vaa_name: 0x0007,
                                })
                                .encode();
                                let mut c2 = ctx.clone();
                                user_information =
                                    self.protect(&mut c2, &resp, sc, Ciphering::ServiceSpecific);
                                *ctx = c2;
                                true
                            }
                            _ => false,
                        }
                    }
                    _ => false,
                },
                _ => false,
            };
            if !protected_ok && !self.q(Quirk::AcceptsUnprotectedRelease) {
                return Some(exception(SERVICE_NOT_ALLOWED, OPERATION_NOT_POSSIBLE, None).encode());
            }
            if let Some(ctx) = &a.ctx {
                let (client, ctx) = (a.client, ctx.clone());
                self.save_counters(client, &ctx);
            }
        }
        conn.assoc = AssocState::Idle;
        Some(
            Apdu::Rlre(Rlre {
                reason: Some(0),
                user_information,
            })
            .encode(),
        )
    }

    // -----------------------------------------------------------------
    // Services

    fn handle_service(
        &mut self,
        conn: &mut Connection,
        client_sap: u16,
        apdu: Apdu,
        now: i64,
    ) -> Vec<u8> {
        let ciphered_request = matches!(
            apdu,
            Apdu::Ciphered(_) | Apdu::GeneralGloCiphering(_) | Apdu::GeneralDedCiphering(_)
        );
        let AssocState::Open(assoc) = &mut conn.assoc else {
            // APPL_IDLE_N1: no association.
            if self.q(Quirk::AnswersWithoutAssociation) && !ciphered_request {
                let mut tmp = ServerAssociation {
                    client: 16,
                    ciphered: false,
                    ctx: None,
                    pending_hls: None,
                    ctos: vec![],
                    conformance: self.config.conformance,
                    client_max_pdu: 0xFFFF,
                    blocks: None,
                };
                let resp = self.serve(&mut tmp, &apdu, now, &mut Vec::new());
                return resp
                    .unwrap_or_else(|| exception(SERVICE_NOT_ALLOWED, SERVICE_NOT_SUPPORTED, None))
                    .encode();
            }
            return exception(SERVICE_NOT_ALLOWED, SERVICE_NOT_SUPPORTED, None).encode();
        };
        if assoc.client != client_sap {
            return exception(SERVICE_NOT_ALLOWED, OPERATION_NOT_POSSIBLE, None).encode();
        }
        let policy = self
            .state
            .clients
            .get(&assoc.client)
            .map(|c| SimClient::required_protection(c.policy, self.config.security_setup_version))
            .unwrap_or(Protection::None);
        // Unprotect.
        let (plain, sc, ciphering) = if ciphered_request {
            let general = !matches!(apdu, Apdu::Ciphered(_));
            if general && self.q(Quirk::NoGeneralCiphering) {
                return exception(SERVICE_NOT_ALLOWED, SERVICE_NOT_SUPPORTED, None).encode();
            }
            let Some(ctx) = assoc.ctx.as_mut() else {
                return exception(SERVICE_NOT_ALLOWED, DECIPHERING_ERROR, None).encode();
            };
            let mut work = ctx.clone();
            let opened = self.open_request(&mut work, &apdu, true, false);
            if opened.is_err() && self.q(Quirk::CountsRefusedRequests) {
                // The quirk: a refused request still moves the lowest acceptable counter.
                let ic = match &apdu {
                    Apdu::Ciphered(c) => c.invocation_counter(),
                    Apdu::GeneralGloCiphering(g) | Apdu::GeneralDedCiphering(g) => {
                        g.invocation_counter()
                    }
                    _ => None,
                };
                if let Some(ic) = ic {
                    ctx.peer_guard.force(ic);
                    let ctx = ctx.clone();
                    self.save_counters(assoc.client, &ctx);
                }
            }
            match opened {
                Ok((p, sc)) => {
                    *ctx = work;
                    let ctx = ctx.clone();
                    self.save_counters(assoc.client, &ctx);
                    let c = if general {
                        Ciphering::General
                    } else {
                        Ciphering::ServiceSpecific
                    };
                    (p, Some(sc), c)
                }
                Err(reply) => return Apdu::ExceptionResponse(reply).encode(),
            }
        } else {
            (apdu, None, Ciphering::ServiceSpecific)
        };
        // Security policy.
        let weak = match sc {
            Some(sc) => CipherContext::meets(sc, policy).is_err(),
            None => {
                policy != Protection::None
                    || (assoc.ciphered && !self.policy_allows_plain(assoc.client))
            }
        };
        if weak && !self.q(Quirk::IgnoresSecurityPolicy) {
            let tolerated = match sc {
                Some(_) => self.q(Quirk::AcceptsWeakerProtection),
                None => self.q(Quirk::AcceptsUnprotectedRequests),
            };
            if !tolerated {
                return exception(SERVICE_NOT_ALLOWED, OPERATION_NOT_POSSIBLE, None).encode();
            }
        }
        // Before HLS completes, only reply_to_HLS_authentication is served.
        let is_pass3 = matches!(&plain, Apdu::ActionRequest(ActionRequest::Normal { method, .. })
            if method.class_id == 15 && method.method_id == 1
                && (method.instance == Obis::CURRENT_ASSOCIATION));
        if assoc.pending_hls.is_some() && !is_pass3 && !self.q(Quirk::ServesBeforeHls) {
            return exception(SERVICE_NOT_ALLOWED, OPERATION_NOT_POSSIBLE, None).encode();
        }
        let mut pending_keys = Vec::new();
        let response = self.serve(assoc, &plain, now, &mut pending_keys);
        let Some(response) = response else {
            return exception(SERVICE_NOT_ALLOWED, SERVICE_NOT_SUPPORTED, None).encode();
        };
        let client = assoc.client;
        // Keys: after the response, unless the meter applies them before.
        // The quirk: a new unicast (encryption) key goes to work at once.
        for (id, key) in pending_keys {
            if id == 0 && self.q(Quirk::AppliesKeyBeforeResponse) {
                self.install_key(conn, client, id, key);
            } else {
                conn.pending_keys.push((client, id, key));
            }
        }
        let AssocState::Open(assoc) = &mut conn.assoc else {
            return response.encode();
        };
        let plain_response = response.encode();
        match (sc, assoc.ctx.as_mut()) {
            (Some(sc), Some(ctx)) if !self.q(Quirk::UnprotectedResponses) => {
                let mut work = ctx.clone();
                let out = self.protect(&mut work, &plain_response, sc, ciphering);
                *ctx = work.clone();
                self.save_counters(client, &work);
                out.unwrap_or_else(|| {
                    exception(SERVICE_NOT_ALLOWED, OPERATION_NOT_POSSIBLE, None).encode()
                })
            }
            _ => plain_response,
        }
    }

    fn policy_allows_plain(&self, client: u16) -> bool {
        self.state.clients.get(&client).is_some_and(|c| {
            SimClient::required_protection(c.policy, self.config.security_setup_version)
                == Protection::None
        })
    }

    /// Serves a plain xDLMS request on an association. `None` for unsupported services.
    fn serve(
        &mut self,
        a: &mut ServerAssociation,
        apdu: &Apdu,
        now: i64,
        keys: &mut Vec<(u8, Key)>,
    ) -> Option<Apdu> {
        let flip = self.q(Quirk::WrongInvokeId);
        let invoke = move |id: u8| if flip { id ^ 0x01 } else { id };
        Some(match apdu {
            Apdu::GetRequest(GetRequest::Normal {
                invoke_id,
                attribute,
                ..
            }) => {
                if a.conformance & conf::GET == 0 {
                    return None;
                }
                let result = self.get(a, attribute, now);
                let id = invoke(*invoke_id);
                match result {
                    GetDataResult::Data(d) => {
                        let bytes = d.encode();
                        // Fits in the client's PDU? Leave room for the response header.
                        let limit = (a.client_max_pdu as usize).saturating_sub(16).max(16);
                        if bytes.len() > limit && a.conformance & conf::BLOCK_TRANSFER_GET != 0 {
                            let mut p = PendingBlocks {
                                invoke_id: id,
                                data: bytes,
                                block_size: limit,
                                next_block: 1,
                            };
                            let r = next_block(&mut p);
                            a.blocks = Some(p);
                            r
                        } else {
                            Apdu::GetResponse(GetResponse::Normal {
                                invoke_id: id,
                                result: GetDataResult::Data(d),
                            })
                        }
                    }
                    e => Apdu::GetResponse(GetResponse::Normal {
                        invoke_id: id,
                        result: e,
                    }),
                }
            }
            Apdu::GetRequest(GetRequest::Next {
                invoke_id,
                block_number,
            }) => {
                let id = invoke(*invoke_id);
                match &mut a.blocks {
                    Some(p) if block_number.checked_add(1) == Some(p.next_block) => {
                        let r = next_block(p);
                        if p.data.is_empty() {
                            a.blocks = None;
                        }
                        r
                    }
                    Some(_) => {
                        a.blocks = None;
                        Apdu::GetResponse(GetResponse::WithDatablock {
                            invoke_id: id,
                            block: DataBlockG {
                                last_block: true,
                                block_number: *block_number,
                                result: Err(DataAccessResult::DataBlockNumberInvalid),
                            },
                        })
                    }
                    None => Apdu::GetResponse(GetResponse::WithDatablock {
                        invoke_id: id,
                        block: DataBlockG {
                            last_block: true,
                            block_number: *block_number,
                            result: Err(DataAccessResult::NoLongGetInProgress),
                        },
                    }),
                }
            }
            Apdu::GetRequest(GetRequest::WithList { invoke_id, items }) => {
                if a.conformance & conf::MULTIPLE_REFERENCES == 0 {
                    return None;
                }
                let results = items
                    .iter()
                    .map(|(attr, _)| self.get(a, attr, now))
                    .collect();
                Apdu::GetResponse(GetResponse::WithList {
                    invoke_id: invoke(*invoke_id),
                    results,
                })
            }
            Apdu::SetRequest(SetRequest::Normal {
                invoke_id,
                attribute,
                value,
                ..
            }) => {
                if a.conformance & conf::SET == 0 {
                    return None;
                }
                let result = self.set(a, attribute, value, now);
                Apdu::SetResponse(SetResponse::Normal {
                    invoke_id: invoke(*invoke_id),
                    result,
                })
            }
            Apdu::SetRequest(SetRequest::WithList {
                invoke_id,
                items,
                values,
            }) => {
                let results = items
                    .iter()
                    .zip(values.iter())
                    .map(|((attr, _), v)| self.set(a, attr, v, now))
                    .collect();
                Apdu::SetResponse(SetResponse::WithList {
                    invoke_id: invoke(*invoke_id),
                    results,
                })
            }
            Apdu::ActionRequest(ActionRequest::Normal {
                invoke_id,
                method,
                parameters,
            }) => {
                if a.conformance & conf::ACTION == 0 {
                    return None;
                }
                let response = self.action(a, method, parameters.as_ref(), keys);
                Apdu::ActionResponse(ActionResponse::Normal {
                    invoke_id: invoke(*invoke_id),
                    response,
                })
            }
            _ => return None,
        })
    }

    fn find(&self, class_id: u16, obis: Obis) -> Result<&Object, DataAccessResult> {
        let o = self
            .objects
            .iter()
            .find(|o| o.obis == obis)
            .ok_or(DataAccessResult::ObjectUndefined)?;
        if o.class_id != class_id {
            return Err(DataAccessResult::ObjectClassInconsistent);
        }
        Ok(o)
    }

    fn full_access(&self, client: u16) -> bool {
        self.config.client(client).is_some_and(|c| c.full_access)
    }

    fn get(&self, a: &ServerAssociation, d: &AttributeDescriptor, now: i64) -> GetDataResult {
        match self.get_inner(a, d, now) {
            Ok(v) => GetDataResult::Data(v),
            Err(e) => GetDataResult::Error(e),
        }
    }

    fn get_inner(
        &self,
        a: &ServerAssociation,
        d: &AttributeDescriptor,
        now: i64,
    ) -> Result<Data, DataAccessResult> {
        let o = match self.find(d.class_id, d.instance) {
            Err(DataAccessResult::ObjectUndefined) if self.q(Quirk::ServesUndefinedObject) => {
                return Ok(Data::Null);
            }
            r => r?,
        };
        if d.attribute_id < 1 || d.attribute_id > o.attributes {
            return Err(DataAccessResult::ObjectUndefined);
        }
        let full = self.full_access(a.client);
        if !full && !o.public {
            return Err(DataAccessResult::ReadWriteDenied);
        }
        if d.attribute_id == 1 {
            return Ok(Data::OctetString(o.obis.0.to_vec()));
        }
        let attr = d.attribute_id;
        let cfg = &self.config;
        let v1 = cfg.security_setup_version >= 1;
        Ok(match &o.kind {
            ObjectKind::CurrentAssociation => {
                self.association_attr(a.client, Some(a), attr, full)?
            }
            ObjectKind::Association(sap) => self.association_attr(*sap, None, attr, full)?,
            ObjectKind::SecuritySetup(sap) => {
                let st = self
                    .state
                    .clients
                    .get(sap)
                    .ok_or(DataAccessResult::ObjectUnavailable)?;
                match attr {
                    2 if self.q(Quirk::SecuritySetupWrongTypes) => Data::Unsigned(st.policy),
                    2 if v1 => Data::Enum(st.policy),
                    2 => Data::Enum(st.policy),
                    3 => Data::Enum(0),
                    4 => {
                        let title =
                            match (a.client == *sap, a.ctx.as_ref().and_then(|c| c.peer_title)) {
                                (true, Some(t)) => t,
                                _ => cfg
                                    .client(*sap)
                                    .map(|c| c.system_title)
                                    .unwrap_or(SystemTitle([0; 8])),
                            };
                        Data::OctetString(title.0.to_vec())
                    }
                    5 => Data::OctetString(cfg.system_title.0.to_vec()),
                    6 => Data::Array(vec![]),
                    _ => return Err(DataAccessResult::ObjectUndefined),
                }
            }
            ObjectKind::InvocationCounter(sap) => {
                if !full && self.q(Quirk::CounterObjectPrivate) {
                    return Err(DataAccessResult::ReadWriteDenied);
                }
                let st = self
                    .state
                    .clients
                    .get(sap)
                    .ok_or(DataAccessResult::ObjectUnavailable)?;
                let last = st
                    .client_guard
                    .lowest_acceptable()
                    .map_or(u32::MAX, |l| l.saturating_sub(1));
                if self.q(Quirk::StaleCounterObject) {
                    return Ok(Data::DoubleLongUnsigned(
                        self.config.initial_invocation_counter,
                    ));
                }
                Data::DoubleLongUnsigned(last)
            }
            ObjectKind::LogicalDeviceName => {
                if self.q(Quirk::BadLogicalDeviceName) {
                    Data::OctetString(b"1234567890".to_vec())
                } else {
                    Data::OctetString(cfg.logical_device_name.clone())
                }
            }
            ObjectKind::Clock => match attr {
                2 => {
                    let mut v = objects::date_time(now + self.state.clock_offset).to_vec();
                    if self.q(Quirk::MalformedClock) {
                        v.extend_from_slice(&[0xAA; 18]);
                    }
                    Data::OctetString(v)
                }
                3 => Data::Long(0),
                4 => Data::Unsigned(0),
                5 => Data::OctetString(vec![0xFF, 0xFF, 3, 0xFE, 7, 2, 0, 0, 0, 0x80, 0, 0]),
                6 => Data::OctetString(vec![0xFF, 0xFF, 10, 0xFE, 7, 3, 0, 0, 0, 0x80, 0, 0]),
                7 => Data::Integer(60),
                8 => Data::Boolean(false),
                9 => Data::Enum(1),
                _ => return Err(DataAccessResult::ObjectUndefined),
            },
            ObjectKind::Register {
                value,
                scaler,
                unit,
            } => match attr {
                2 => value.clone(),
                3 => Data::Structure(vec![Data::Integer(*scaler), Data::Enum(*unit)]),
                _ => return Err(DataAccessResult::ObjectUndefined),
            },
            ObjectKind::Value(v) => v.clone(),
            ObjectKind::SapAssignment => Data::Array(vec![Data::Structure(vec![
                Data::LongUnsigned(cfg.hdlc_logical),
                Data::OctetString(cfg.logical_device_name.clone()),
            ])]),
            ObjectKind::HdlcSetup => match attr {
                2 => Data::Enum(5),
                3 | 4 => Data::Unsigned(cfg.hdlc_window.min(7) as u8),
                5 | 6 => Data::LongUnsigned(cfg.hdlc_max_info),
                7 => Data::LongUnsigned(25),
                8 => Data::LongUnsigned(cfg.hdlc_inactivity_timeout),
                9 => Data::LongUnsigned(cfg.hdlc_physical),
                _ => return Err(DataAccessResult::ObjectUndefined),
            },
            ObjectKind::TcpUdpSetup => match attr {
                2 => Data::LongUnsigned(4059),
                3 => Data::OctetString(vec![0, 0, 25, 1, 0, 255]),
                4 => Data::LongUnsigned(1460),
                5 => Data::Unsigned(16),
                6 => Data::LongUnsigned(180),
                _ => return Err(DataAccessResult::ObjectUndefined),
            },
        })
    }

    fn association_attr(
        &self,
        sap: u16,
        current: Option<&ServerAssociation>,
        attr: i8,
        full: bool,
    ) -> Result<Data, DataAccessResult> {
        let client = self
            .config
            .client(sap)
            .ok_or(DataAccessResult::ObjectUnavailable)?;
        Ok(match attr {
            2 => Data::Array(
                self.objects
                    .iter()
                    .filter(|o| full || o.public)
                    .map(|o| o.list_entry(self.full_access(sap)))
                    .collect(),
            ),
            3 => Data::Structure(vec![
                Data::Integer(sap as i8),
                Data::LongUnsigned(self.config.hdlc_logical),
            ]),
            4 => Data::OctetString(vec![
                0x60,
                0x85,
                0x74,
                0x05,
                0x08,
                0x01,
                if client.ciphered { 3 } else { 1 },
            ]),
            5 => Data::Structure(vec![
                objects::conformance_bits(
                    current.map_or(self.config.conformance, |a| a.conformance),
                ),
                Data::LongUnsigned(self.config.max_pdu_size),
                Data::LongUnsigned(current.map_or(self.config.max_pdu_size, |a| a.client_max_pdu)),
                Data::Unsigned(6),
                Data::Integer(0),
                Data::OctetString(vec![]),
            ]),
            6 => {
                let m = match client.mechanism {
                    Mechanism::None => 0,
                    Mechanism::Lls => 1,
                    Mechanism::HlsGmac => 5,
                };
                Data::OctetString(vec![0x60, 0x85, 0x74, 0x05, 0x08, 0x02, m])
            }
            7 => return Err(DataAccessResult::ReadWriteDenied),
            8 => Data::Enum(match current {
                Some(a) if a.pending_hls.is_some() => 1,
                Some(_) => 2,
                None => 0,
            }),
            9 => Data::OctetString(client.security_setup.0.to_vec()),
            _ => return Err(DataAccessResult::ObjectUndefined),
        })
    }

    fn set(
        &mut self,
        a: &ServerAssociation,
        d: &AttributeDescriptor,
        value: &Data,
        _now: i64,
    ) -> DataAccessResult {
        let o = match self.find(d.class_id, d.instance) {
            Ok(o) => o.clone(),
            Err(e) => return e,
        };
        if d.attribute_id < 1 || d.attribute_id > o.attributes {
            return DataAccessResult::ObjectUndefined;
        }
        if !self.full_access(a.client) || d.attribute_id == 1 {
            return DataAccessResult::ReadWriteDenied;
        }
        match (&o.kind, d.attribute_id) {
            (ObjectKind::Clock, 2) => match value {
                Data::OctetString(v) if v.len() == 12 => {
                    let mut b = [0u8; 12];
                    b.copy_from_slice(v);
                    match objects::unix_from_date_time(&b) {
                        Some(t) => {
                            self.state.clock_offset = t - _now;
                            DataAccessResult::Success
                        }
                        None => DataAccessResult::TypeUnmatched,
                    }
                }
                _ => DataAccessResult::TypeUnmatched,
            },
            (ObjectKind::Value(_), 2) => {
                if let Some(obj) = self.objects.iter_mut().find(|x| x.obis == o.obis) {
                    obj.kind = ObjectKind::Value(value.clone());
                }
                DataAccessResult::Success
            }
            _ => DataAccessResult::ReadWriteDenied,
        }
    }

    fn action(
        &mut self,
        a: &mut ServerAssociation,
        m: &MethodDescriptor,
        params: Option<&Data>,
        keys: &mut Vec<(u8, Key)>,
    ) -> ActionResponseWithOptionalData {
        let result = |r: ActionResult| ActionResponseWithOptionalData {
            result: r,
            return_parameters: None,
        };
        let o = match self.find(m.class_id, m.instance) {
            Ok(o) => o.clone(),
            Err(DataAccessResult::ObjectClassInconsistent) => {
                return result(ActionResult::ObjectClassInconsistent);
            }
            Err(_) => return result(ActionResult::ObjectUndefined),
        };
        if m.method_id < 1 || m.method_id > o.methods {
            return result(ActionResult::ObjectUndefined);
        }
        match (&o.kind, m.method_id) {
            (ObjectKind::CurrentAssociation, 1) => self.reply_to_hls(a, params),
            (ObjectKind::SecuritySetup(sap), _)
                if *sap != a.client || !self.full_access(a.client) =>
            {
                result(ActionResult::ReadWriteDenied)
            }
            (ObjectKind::SecuritySetup(sap), 1) => {
                let new = match params {
                    Some(Data::Enum(p)) => *p,
                    _ => return result(ActionResult::TypeUnmatched),
                };
                let version = self.config.security_setup_version;
                if version == 0 && new > 3 {
                    return result(ActionResult::TypeUnmatched);
                }
                let Some(st) = self.state.clients.get_mut(sap) else {
                    return result(ActionResult::ObjectUnavailable);
                };
                // "Activates and strengthens": every requirement of the old policy stays.
                let strengthens = new & st.policy == st.policy;
                if !strengthens && !self.quirks.has(Quirk::WeakensPolicy) {
                    return result(ActionResult::OtherReason);
                }
                st.policy = new;
                result(ActionResult::Success)
            }
            (ObjectKind::SecuritySetup(sap), 2) => {
                let items = match params {
                    Some(Data::Array(items)) if !items.is_empty() => items.clone(),
                    _ => return result(ActionResult::TypeUnmatched),
                };
                let Some(kek) = self.state.clients.get(sap).map(|c| c.master_key.clone()) else {
                    return result(ActionResult::ObjectUnavailable);
                };
                let mut new_keys = Vec::new();
                for item in &items {
                    let (id, wrapped) = match item {
                        Data::Structure(f) => match f.as_slice() {
                            [Data::Enum(id), Data::OctetString(w)] => (*id, w.clone()),
                            _ => return result(ActionResult::TypeUnmatched),
                        },
                        _ => return result(ActionResult::TypeUnmatched),
                    };
                    if id > 3 {
                        if self.q(Quirk::AcceptsUnknownKeyId) {
                            continue;
                        }
                        self.refused_key_transfer = true;
                        return result(ActionResult::ObjectClassInconsistent);
                    }
                    match unwrap_key(&kek, &wrapped) {
                        Ok(k) => new_keys.push((id, k)),
                        Err(_) if self.q(Quirk::AcceptsBadKeyWrap) => {}
                        // Gurux answers object-class-inconsistent (dlms-facts.md 3.4).
                        Err(_) => {
                            self.refused_key_transfer = true;
                            return result(ActionResult::ObjectClassInconsistent);
                        }
                    }
                }
                if !self.q(Quirk::KeepsOldKey) {
                    keys.extend(new_keys);
                }
                result(ActionResult::Success)
            }
            _ => result(ActionResult::ReadWriteDenied),
        }
    }

    /// HLS pass 3 and 4: verify f(StoC), answer f(CtoS).
    fn reply_to_hls(
        &mut self,
        a: &mut ServerAssociation,
        params: Option<&Data>,
    ) -> ActionResponseWithOptionalData {
        let refuse = |r: ActionResult| ActionResponseWithOptionalData {
            result: r,
            return_parameters: None,
        };
        let Some(stoc) = a.pending_hls.clone() else {
            return refuse(ActionResult::ReadWriteDenied);
        };
        let (Some(ctx), Some(Data::OctetString(reply))) = (a.ctx.as_mut(), params) else {
            return refuse(ActionResult::TypeUnmatched);
        };
        let Some(client_title) = ctx.peer_title else {
            return refuse(ActionResult::ReadWriteDenied);
        };
        let ok = verify_hls_gmac(
            reply,
            &client_title,
            &ctx.encryption_key,
            &ctx.authentication_key,
            &stoc,
        )
        .is_ok();
        if !ok && !self.quirks.has(Quirk::AcceptsWrongHlsReply) {
            // Gurux answers read-write-denied and stays non-associated (dlms-facts.md 2.5).
            return refuse(ActionResult::ReadWriteDenied);
        }
        a.pending_hls = None;
        let Ok(ic) = ctx.take_ic() else {
            return refuse(ActionResult::OtherReason);
        };
        let mut f = hls_gmac(
            SecurityControl::new(true, false, ctx.suite),
            &ctx.own_title,
            ic,
            &ctx.encryption_key,
            &ctx.authentication_key,
            &a.ctos,
        );
        if self.quirks.has(Quirk::SendsWrongFCtoS) {
            f[16] ^= 0x5A;
        }
        ActionResponseWithOptionalData {
            result: ActionResult::Success,
            return_parameters: Some(GetDataResult::Data(Data::OctetString(f.to_vec()))),
        }
    }
}

fn next_block(p: &mut PendingBlocks) -> Apdu {
    let n = p.block_size.min(p.data.len());
    let chunk: Vec<u8> = p.data.drain(..n).collect();
    let r = Apdu::GetResponse(GetResponse::WithDatablock {
        invoke_id: p.invoke_id,
        block: DataBlockG {
            last_block: p.data.is_empty(),
            block_number: p.next_block,
            result: Ok(chunk),
        },
    });
    p.next_block = p.next_block.saturating_add(1);
    r
}

/// Conformance bits (dlms-facts.md 2.4; bit 0 = 0x800000).
pub mod conf {
    pub const GENERAL_PROTECTION: u32 = 0x40_0000;
    pub const BLOCK_TRANSFER_GET: u32 = 0x00_1000;
    pub const MULTIPLE_REFERENCES: u32 = 0x00_0200;
    pub const GET: u32 = 0x00_0010;
    pub const SET: u32 = 0x00_0008;
    pub const SELECTIVE_ACCESS: u32 = 0x00_0004;
    pub const ACTION: u32 = 0x00_0001;
}

/// The object list of a meter.
fn build_objects(c: &MeterConfig) -> Vec<Object> {
    let mut v = vec![Object::new(
        15,
        1,
        Obis::CURRENT_ASSOCIATION,
        ObjectKind::CurrentAssociation,
        9,
        4,
        true,
    )];
    for (i, cl) in c.clients.iter().enumerate() {
        v.push(Object::new(
            15,
            1,
            Obis::new(0, 0, 40, 0, (i + 1) as u8, 255),
            ObjectKind::Association(cl.sap),
            9,
            4,
            false,
        ));
    }
    for cl in &c.clients {
        if cl.ciphered || cl.mechanism == Mechanism::HlsGmac {
            let (attrs, methods) = if c.security_setup_version == 0 {
                (5, 2)
            } else {
                (6, 8)
            };
            v.push(Object::new(
                64,
                c.security_setup_version,
                cl.security_setup,
                ObjectKind::SecuritySetup(cl.sap),
                attrs,
                methods,
                false,
            ));
        }
        v.push(Object::new(
            1,
            0,
            cl.counter_object,
            ObjectKind::InvocationCounter(cl.sap),
            2,
            0,
            true,
        ));
    }
    v.extend([
        Object::new(
            1,
            0,
            Obis::LOGICAL_DEVICE_NAME,
            ObjectKind::LogicalDeviceName,
            2,
            0,
            true,
        ),
        Object::new(
            1,
            0,
            Obis::new(0, 0, 96, 1, 0, 255),
            ObjectKind::Value(Data::VisibleString(c.serial_number.clone().into_bytes())),
            2,
            0,
            true,
        ),
        Object::new(
            1,
            0,
            Obis::new(1, 0, 0, 2, 0, 255),
            ObjectKind::Value(Data::VisibleString(b"IDIS-SIM 0.1".to_vec())),
            2,
            0,
            true,
        ),
        Object::new(8, 0, Obis::CLOCK, ObjectKind::Clock, 9, 6, true),
        Object::new(
            3,
            0,
            Obis::new(1, 0, 1, 8, 0, 255),
            ObjectKind::Register {
                value: Data::DoubleLongUnsigned(1_234_567),
                scaler: 0,
                unit: 30,
            },
            3,
            1,
            true,
        ),
        Object::new(
            3,
            0,
            Obis::new(1, 0, 2, 8, 0, 255),
            ObjectKind::Register {
                value: Data::DoubleLongUnsigned(89_012),
                scaler: 0,
                unit: 30,
            },
            3,
            1,
            true,
        ),
        Object::new(
            3,
            0,
            Obis::new(1, 0, 32, 7, 0, 255),
            ObjectKind::Register {
                value: Data::LongUnsigned(2301),
                scaler: -1,
                unit: 35,
            },
            3,
            1,
            true,
        ),
        Object::new(
            17,
            0,
            Obis::new(0, 0, 41, 0, 0, 255),
            ObjectKind::SapAssignment,
            2,
            1,
            true,
        ),
        Object::new(
            23,
            1,
            Obis::new(0, 0, 22, 0, 0, 255),
            ObjectKind::HdlcSetup,
            9,
            0,
            true,
        ),
        Object::new(
            41,
            0,
            Obis::new(0, 0, 25, 0, 0, 255),
            ObjectKind::TcpUdpSetup,
            6,
            0,
            true,
        ),
    ]);
    v
}
