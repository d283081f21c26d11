//! Running one case against one target: steps in order, each observed and
//! judged against its accepted outcomes, then the teardown, which always runs.
//! Key custody (escrow, keys in doubt) is in [`custody`]; preconditions on
//! lasting device state (security policies) in [`lasting`].

mod custody;
mod lasting;

pub use custody::Custody;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::client::{AssociateOutcome, Client, ClientError, GetOutcome};
use crate::profile::{
    Ciphering, ClientProfile, CounterPolicy, DeviceProfile, Mechanism, Protection,
};
use crate::runner::data::{data_matches, saved_text, to_data};
use crate::runner::event::{Diagnostic as RunDiagnostic, Direction, SourceLocation, TrafficRecord};
use crate::runner::outcome::{Observed, describe_outcome, matches};
use crate::security::{Key, SecurityControl, wrap_key};
use crate::session::association::{AssociationRequest, Refusal, SessionError};
use crate::sim::server::SimHandle;
use crate::suite::diag::Diagnostic;
use crate::suite::model::{self as m, Case, Expect, Outcome, Step};
use crate::suite::roles::client_sap;
use crate::suite::vocab::{self, CounterSpec};
use crate::suite::{LoadedSuite, resolve};
use crate::transport::link::{Link, LinkError, LinkKind, Reply, describe_apdu};
use crate::transport::open;
use crate::transport::target::TargetSpec;
use crate::wire::apdu::{
    ActionResponse, Apdu, AppContext, AttributeDescriptor, GetDataResult, GetResponse,
    MethodDescriptor, SetResponse,
};
use crate::wire::axdr::Data;
use crate::wire::hdlc::{Control, FrameRepr, LLC_REQUEST, RawFrame};
use crate::wire::obis::Obis;
use crate::wire::wrapper::RawWrapper;

/// A target during a run: its profile (keys change with key transfers), and
/// the next invocation counter per client.
#[derive(Debug)]
pub struct TargetState {
    pub spec: TargetSpec,
    pub profile: DeviceProfile,
    /// The profile as loaded, for `original` keys.
    pub original: DeviceProfile,
    pub sim: Option<SimHandle>,
    pub strict: bool,
    /// Next invocation counter per client SAP, once known.
    pub counters: BTreeMap<u16, u32>,
    /// What the monitors have seen of this target so far in the run.
    pub monitors: crate::runner::monitor::Monitors,
    /// Counters kept between runs.
    pub store: crate::client::CounterStore,
    /// How the device is named in the counter store.
    pub device_id: String,
    /// The physical port of a single-link target, held open between cases
    /// (a mode E meter then signs on once per HDLC session, not per open).
    pub port: Option<crate::transport::port::SharedPort>,
    /// Where generated keys are escrowed before they are sent.
    pub escrow: std::sync::Arc<crate::keys::Escrow>,
    /// What the harness knows of the keys the meter holds.
    pub custody: Custody,
}

impl TargetState {
    pub fn new(
        spec: TargetSpec,
        profile: DeviceProfile,
        sim: Option<SimHandle>,
        strict: bool,
        store: crate::client::CounterStore,
    ) -> Self {
        let device_id = profile
            .server_system_title
            .map(|t| t.to_string())
            .unwrap_or_else(|| spec.text.clone());
        let earlier = if sim.is_none() {
            crate::runner::monitor::marks_from_store(&store)
        } else {
            Default::default()
        };
        TargetState {
            spec,
            original: profile.clone(),
            profile,
            sim,
            strict,
            counters: BTreeMap::new(),
            // The built-in simulator starts afresh every run: only a real
            // meter's counters carry over from earlier runs.
            monitors: crate::runner::monitor::Monitors::new().with_earlier(earlier),
            store,
            device_id,
            port: None,
            escrow: std::sync::Arc::new(crate::keys::Escrow::memory()),
            custody: Custody::default(),
        }
    }

    /// Escrows generated keys in `escrow` (the default keeps them in memory only).
    pub fn with_escrow(mut self, escrow: std::sync::Arc<crate::keys::Escrow>) -> Self {
        self.escrow = escrow;
        self
    }

    /// The link kind a case needing `requires` gets on this target, or why it cannot run.
    pub fn link_kind_for(&self, requires: &[String]) -> Result<LinkKind, String> {
        let wanted = [LinkKind::Hdlc, LinkKind::Udp, LinkKind::Wrapper]
            .into_iter()
            .find(|k| requires.iter().any(|r| r == k.feature()));
        match (open::native_kind(&self.spec), wanted) {
            (None, w) => Ok(w.unwrap_or(LinkKind::Wrapper)),
            (Some(native), None) => Ok(native),
            (Some(native), Some(w)) if native == w => Ok(native),
            (Some(native), Some(w)) => Err(format!(
                "needs a {} link; target {} gives a {} link",
                w.feature(),
                self.spec,
                native.feature()
            )),
        }
    }
}

/// The variables every case has from the device profile (see
/// [`crate::suite::vars::PROFILE_VARS`]); `server_system_title` only when the
/// profile declares it (otherwise the case learns it from the AARE).
fn profile_vars(t: &TargetState, sap: u16) -> Vec<(&'static str, String)> {
    use crate::wire::hdlc::Address;
    let profile = &t.profile;
    let mut out = Vec::new();
    if let Some(c) = profile.client(sap) {
        out.push(("client_system_title", c.system_title.to_string()));
        out.push(("security_setup_ln", hex::encode_upper(c.security_setup.0)));
    }
    let hex_of = |a: Address| {
        let mut v = Vec::new();
        a.encode(&mut v);
        hex::encode_upper(v)
    };
    let server = open::settings(&t.spec, profile, sap).server_address;
    let upper = server.upper();
    let lower = server.lower().unwrap_or(profile.hdlc.server_physical);
    let (other_form, unknown) = match server {
        Address::One(u) => (
            Address::server(upper, lower),
            Address::One(u.wrapping_add(1) & 0x7F),
        ),
        Address::Two { .. } | Address::Four { .. } => (
            Address::One(upper.min(0x7F) as u8),
            match server {
                Address::Four { .. } => Address::Four {
                    upper,
                    lower: lower.wrapping_add(1) & 0x3FFF,
                },
                _ => Address::Two {
                    upper: upper as u8,
                    lower: (lower.wrapping_add(1) & 0x7F) as u8,
                },
            },
        ),
    };
    out.push(("hdlc_server_address", hex_of(server)));
    out.push(("hdlc_server_address_other_form", hex_of(other_form)));
    out.push(("hdlc_server_address_unknown", hex_of(unknown)));
    let client = (sap.min(0x7F)) as u8;
    out.push(("hdlc_client_address", hex_of(Address::One(client))));
    out.push((
        "hdlc_client_address_two_bytes",
        hex_of(Address::Two {
            upper: client,
            lower: client,
        }),
    ));
    if let Some(t) = profile.server_system_title {
        out.push(("server_system_title", t.to_string()));
    }
    if let Some(o) = profile.object("probe", None) {
        let req = Apdu::GetRequest(crate::wire::apdu::GetRequest::Normal {
            invoke_id: 0xC1,
            attribute: AttributeDescriptor {
                class_id: o.class_id,
                instance: o.obis,
                attribute_id: 2,
            },
            access: None,
        });
        out.push(("probe_get", hex::encode_upper(req.encode())));
    }
    out
}

/// Why a step did not pass.
#[derive(Debug)]
enum StepError {
    /// The device did something not allowed: a FAIL.
    Fail { message: String, label: String },
    /// The harness could not decide: an ERROR.
    Harness(String),
    /// A step that establishes a precondition (`given:`) did not hold: the
    /// case is inconclusive (an ERROR), whatever the device did.
    Precondition(String),
}

type StepResult = Result<(), StepError>;

fn harness<T>(msg: impl Into<String>) -> Result<T, StepError> {
    Err(StepError::Harness(msg.into()))
}

/// The outcome of one case.
#[derive(Debug)]
pub struct CaseOutcome {
    pub verdict: crate::runner::event::Verdict,
    pub traffic: Vec<TrafficRecord>,
}

/// Executes one case.
pub struct CaseRun<'a> {
    t: &'a mut TargetState,
    suite: &'a LoadedSuite,
    case_index: usize,
    case: &'a Case,
    vars: BTreeMap<String, String>,
    /// Keys saved by key-transfer steps (never printed).
    secrets: BTreeMap<String, Key>,
    default_client: u16,
    kind: LinkKind,
    clients: BTreeMap<u16, Client>,
    start: Instant,
    traffic: Vec<TrafficRecord>,
    last_initiate_ic: BTreeMap<u16, u32>,
    in_teardown: bool,
    /// A key transfer sent and not answered yet (a cancelled step leaves it here).
    in_flight: Option<custody::InFlight>,
    /// Keys a client may hold after a key transfer whose outcome is unknown.
    uncertain: BTreeMap<u16, Vec<(u8, Key)>>,
    /// Teardown key transfers that failed: (client, why).
    restore_failures: Vec<(u16, String)>,
    /// Escrow entries of the keys this case generated.
    escrowed_here: Vec<String>,
    /// Clients whose association an interrupt cut: associated again before the teardown.
    reassociate: Vec<u16>,
}

impl std::fmt::Debug for CaseRun<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaseRun")
            .field("case", &self.case.id)
            .finish_non_exhaustive()
    }
}

/// A description of a step for events and messages.
pub fn step_label(step: &Step) -> String {
    match step {
        Step::Connect(_) => "connect".into(),
        Step::Disconnect(_) => "disconnect".into(),
        Step::Associate(a) => format!(
            "associate{}",
            a.mechanism
                .as_ref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        ),
        Step::Release(_) => "release".into(),
        Step::Get(g) => format!(
            "get {}/{}",
            object_label(&g.object, &g.of, g.class, &g.obis),
            g.attr
        ),
        Step::Set(s) => format!(
            "set {}/{}",
            object_label(&s.object, &s.of, s.class, &s.obis),
            s.attr
        ),
        Step::Action(a) => format!(
            "action {}/{}",
            object_label(&a.object, &a.of, a.class, &a.obis),
            a.method
        ),
        Step::Given(inner) => format!("given {}", step_label(inner)),
        Step::Restart(_) => "restart".into(),
        Step::Send(s) => {
            let what = if s.apdu.is_some() {
                "apdu"
            } else if s.protected.is_some() {
                "protected apdu"
            } else if s.hdlc.is_some() {
                "hdlc frame"
            } else if s.wrapper.is_some() {
                "wrapper frame"
            } else {
                "bytes"
            };
            format!("send {what}")
        }
        Step::Replay(_) => "replay".into(),
        Step::KeyTransfer(_) => "key-transfer".into(),
        Step::SecurityActivate(_) => "security-activate".into(),
        Step::ReadCounter(_) => "read-counter".into(),
        Step::Check(_) => "check".into(),
        Step::Wait(w) => format!("wait {w}"),
        Step::Listen(l) => format!("listen {}", l.r#for),
    }
}

/// `clock`, `security-setup of the spare client`, or `8/0-0:1.0.0.255`.
fn object_label(
    object: &Option<String>,
    of: &Option<m::Tpl<m::ClientName>>,
    class: Option<u16>,
    obis: &Option<m::Tpl<String>>,
) -> String {
    match (object, of) {
        (Some(o), Some(who)) => format!("{o} of {}", tpl_text(who)),
        (Some(o), None) => o.clone(),
        (None, _) => format!(
            "{}/{}",
            class.map(|c| c.to_string()).unwrap_or_default(),
            obis.as_ref().map(tpl_text).unwrap_or_default()
        ),
    }
}

fn tpl_text<T: std::fmt::Display>(t: &m::Tpl<T>) -> String {
    match t {
        m::Tpl::Lit(v) => v.to_string(),
        m::Tpl::Var(s) => s.clone(),
    }
}

pub(crate) fn step_expect(step: &Step) -> Option<&Expect> {
    match step {
        Step::Connect(s) => s.expect.as_ref(),
        Step::Disconnect(s) => s.expect.as_ref(),
        Step::Associate(s) => s.expect.as_ref(),
        Step::Release(s) => s.expect.as_ref(),
        Step::Get(s) => s.expect.as_ref(),
        Step::Set(s) => s.expect.as_ref(),
        Step::Action(s) => s.expect.as_ref(),
        Step::Send(s) => s.expect.as_ref(),
        Step::Replay(s) => s.expect.as_ref(),
        Step::KeyTransfer(s) => s.expect.as_ref(),
        Step::SecurityActivate(s) => s.expect.as_ref(),
        Step::Listen(s) => s.expect.as_ref(),
        Step::Given(inner) => step_expect(inner),
        Step::ReadCounter(_) | Step::Check(_) | Step::Wait(_) | Step::Restart(_) => None,
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    // The OS source cannot reasonably fail; fall back to a time-derived value if it does.
    if getrandom::fill(&mut v).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for (i, b) in v.iter_mut().enumerate() {
            *b = (t >> ((i % 16) * 8)) as u8 ^ i as u8;
        }
    }
    v
}

fn parse_hex(s: &str, what: &str) -> Result<Vec<u8>, StepError> {
    vocab::parse_hex(s).map_err(|e| StepError::Harness(format!("{what}: {e}")))
}

fn parse_duration(s: &str) -> Result<Duration, StepError> {
    humantime::parse_duration(s.trim())
        .map_err(|e| StepError::Harness(format!("`{s}` is not a duration: {e}")))
}

/// Maps a link failure during a step to what the device did.
fn observed_from_link(e: &LinkError) -> Option<Observed> {
    match e {
        LinkError::Timeout(_) => Some(Observed::Silence),
        LinkError::Closed => Some(Observed::Disconnect),
        LinkError::Garbled(why) => Some(Observed::Other(format!("garbled reply: {why}"))),
        LinkError::Hdlc(why) => Some(Observed::Other(format!("HDLC: {why}"))),
        LinkError::Stalled { .. } => Some(Observed::Other(e.to_string())),
        LinkError::Connect(_) | LinkError::Refused(_) | LinkError::Io(_) | LinkError::Usage(_) => {
            None
        }
    }
}

/// Maps a decoded reply APDU to an observation.
fn observed_from_apdu(apdu: &Apdu) -> Observed {
    match apdu {
        Apdu::GetResponse(GetResponse::Normal { result, .. }) => match result {
            GetDataResult::Data(d) => Observed::Data(d.clone()),
            GetDataResult::Error(e) => Observed::Access(*e),
        },
        Apdu::SetResponse(SetResponse::Normal { result, .. }) => Observed::Access(*result),
        Apdu::ActionResponse(ActionResponse::Normal { response, .. }) => Observed::Action(
            response.result,
            match &response.return_parameters {
                Some(GetDataResult::Data(d)) => Some(d.clone()),
                _ => None,
            },
        ),
        Apdu::ExceptionResponse(e) => Observed::Exception {
            state: e.state_error,
            service: e.service_error,
            counter: e.invocation_counter,
        },
        Apdu::Rlre(_) => Observed::Released,
        // A confirmed-service-error of the initiate service (Gurux answers a
        // GET without an association this way).
        Apdu::ConfirmedServiceError(e) if e.service == 1 => Observed::InitiateError(e.value),
        Apdu::Aare(a) if a.result != 0 => Observed::Rejected {
            result: a.result,
            diagnostic: a.diagnostic,
            initiate_error: None,
        },
        other => Observed::Other(other.to_string()),
    }
}

impl<'a> CaseRun<'a> {
    pub fn new(
        t: &'a mut TargetState,
        suite: &'a LoadedSuite,
        case_index: usize,
        vars: BTreeMap<String, String>,
        kind: LinkKind,
    ) -> Result<Self, String> {
        let case = &suite.suite.cases[case_index];
        let name = match &case.client {
            Some(c) => c.resolve(&vars)?,
            None => match vars.get("client") {
                Some(v) => v
                    .parse::<m::ClientName>()
                    .map_err(|e| format!("suite variable `client`: {e}"))?,
                None => m::ClientName::Role("management".into()),
            },
        };
        let default_client = client_sap(&t.profile, &name)?;
        let mut vars = vars;
        for (name, value) in profile_vars(t, default_client) {
            vars.insert(name.into(), value);
        }
        Ok(CaseRun {
            t,
            suite,
            case_index,
            case,
            vars,
            secrets: BTreeMap::new(),
            default_client,
            kind,
            clients: BTreeMap::new(),
            start: Instant::now(),
            traffic: Vec::new(),
            last_initiate_ic: BTreeMap::new(),
            in_teardown: false,
            in_flight: None,
            uncertain: BTreeMap::new(),
            restore_failures: Vec::new(),
            escrowed_here: Vec::new(),
            reassociate: Vec::new(),
        })
    }

    /// The SAP of a client named in a step (a role or a number, or a variable holding one).
    fn sap_of(&self, t: &m::Tpl<m::ClientName>) -> Result<u16, StepError> {
        let name = t.resolve(&self.vars).map_err(StepError::Harness)?;
        client_sap(&self.t.profile, &name).map_err(StepError::Harness)
    }

    /// The class and logical name of a step's object: by role (mapped by the
    /// device profile; a client object of `of`, default the case's client), or as written.
    fn object_of(
        &self,
        object: &Option<String>,
        of: &Option<m::Tpl<m::ClientName>>,
        class: Option<u16>,
        obis: &Option<m::Tpl<String>>,
    ) -> Result<(u16, Obis), StepError> {
        if let Some(role) = object {
            let sap = match of {
                Some(t) => self.sap_of(t)?,
                None => self.default_client,
            };
            let owner = self.t.profile.client(sap);
            return self
                .t
                .profile
                .object(role, owner)
                .map(|o| (o.class_id, o.obis))
                .ok_or_else(|| {
                    StepError::Harness(format!(
                        "the device profile `{}` maps no object to the role `{role}`",
                        self.t.profile.name
                    ))
                });
        }
        match (class, obis) {
            (Some(c), Some(o)) => Ok((c, self.obis(o)?)),
            _ => harness("the step names neither an `object` role nor `class` and `obis`"),
        }
    }

    fn profile_client(&self, sap: u16) -> Result<ClientProfile, StepError> {
        self.t.profile.client(sap).cloned().ok_or_else(|| {
            StepError::Harness(format!(
                "client {sap} is not in the device profile {}",
                self.t.profile.name
            ))
        })
    }

    /// A remark, stamped now and placed after the traffic so far (the links'
    /// records are collected first, so a note never precedes what it follows).
    fn note(&mut self, text: impl Into<String>) {
        self.collect_traffic();
        self.traffic.push(TrafficRecord {
            at: self.start.elapsed(),
            direction: Direction::Note,
            layer: "note",
            hex: String::new(),
            decoded: text.into(),
        });
    }

    /// Moves the links' traffic into the case's record, in time order, and
    /// shows it (with the clients' anomalies) to the run's monitors.
    fn collect_traffic(&mut self) -> usize {
        let before = self.traffic.len();
        for (sap, c) in self.clients.iter_mut() {
            let records = c.link.trace.take();
            let key = self
                .t
                .profile
                .client(*sap)
                .and_then(|p| p.encryption_key.as_ref())
                .map(|k| k.identity());
            for r in &records {
                self.t
                    .monitors
                    .record(&self.case.id, *sap, key.as_deref(), r);
            }
            for a in c.anomalies.drain(..) {
                self.t.monitors.anomaly(&self.case.id, &a);
            }
            self.traffic.extend(records);
        }
        self.traffic[before..].sort_by_key(|r| r.at);
        before
    }

    async fn open_link(&mut self, sap: u16) -> Result<Link, StepError> {
        self.free_port(Some(sap)).await;
        let link = open::open(
            &self.t.spec,
            &self.t.profile,
            sap,
            Some(self.kind),
            self.t.sim.as_ref(),
            self.start,
        )
        .await
        .map_err(|e| StepError::Harness(format!("cannot open a link for client {sap}: {e}")))?;
        self.hold_port(&link);
        Ok(link)
    }

    /// Keeps the physical port of a single-link target open between cases.
    fn hold_port(&mut self, link: &Link) {
        if self.t.port.is_none() {
            self.t.port = link.port();
        }
    }

    /// On a single-link target (a serial port, an optical probe, HDLC over
    /// TCP to a serial-to-IP converter) the meter has one HDLC connection at a
    /// time, so before another link opens, the other clients' links end here:
    /// their association is released, then DISC. Only `keep`'s link stays
    /// (`None`: none does). The port would disconnect a link still up by
    /// itself; ending it here also releases the association properly.
    async fn free_port(&mut self, keep: Option<u16>) {
        if !open::single_link(&self.t.spec, &self.t.profile) {
            return;
        }
        let others: Vec<u16> = self
            .clients
            .keys()
            .copied()
            .filter(|s| Some(*s) != keep)
            .collect();
        for sap in others {
            let up = self
                .clients
                .get(&sap)
                .is_some_and(|c| !c.link.lost_its_port() && c.link.is_connected());
            if up {
                self.note(format!(
                    "client {sap}'s link ends here: the meter has one HDLC link at a time on this port"
                ));
            }
            let mut notes = Vec::new();
            if let Some(c) = self.clients.get_mut(&sap)
                && up
            {
                if let Some(protected) = c.assoc.as_ref().map(|a| a.ciphered())
                    && let Err(e) = c.release(protected).await
                {
                    notes.push(format!("releasing client {sap}'s association: {e}"));
                }
                if let Err(e) = c.link.disconnect().await {
                    notes.push(format!("disconnecting client {sap}'s link: {e}"));
                }
            }
            // The counters the release consumed.
            self.sync_counters();
            if let Some(mut c) = self.clients.remove(&sap) {
                c.link.shutdown().await;
                self.traffic.extend(c.link.trace.take());
            }
            for n in notes {
                self.note(n);
            }
        }
    }

    /// The client on `sap`, opening its link (and connecting HDLC) when needed.
    async fn client(&mut self, sap: u16) -> Result<&mut Client, StepError> {
        self.ensure_link(sap, true).await
    }

    /// The client on `sap`; when its link must be opened, HDLC is connected
    /// only with `connect` (a hand-made frame may be the first thing sent).
    async fn ensure_link(&mut self, sap: u16, connect: bool) -> Result<&mut Client, StepError> {
        if self
            .clients
            .get(&sap)
            .is_some_and(|c| c.link.lost_its_port())
            && let Some(mut old) = self.clients.remove(&sap)
        {
            // Another link took the single-link port (see free_port): this one is gone.
            self.traffic.extend(old.link.trace.take());
            self.note(format!(
                "client {sap}'s link was ended when another link took the port: opening a new one"
            ));
        }
        if !self.clients.contains_key(&sap) {
            let mut link = self.open_link(sap).await?;
            if connect
                && link.kind() == LinkKind::Hdlc
                && let Err(e) = link.connect().await
            {
                self.traffic.extend(link.trace.take());
                return harness(format!("HDLC connect for client {sap} failed: {e}"));
            }
            self.clients.insert(sap, Client::new(link));
        }
        self.clients
            .get_mut(&sap)
            .ok_or_else(|| StepError::Harness("internal: client vanished".into()))
    }

    /// The next invocation counter for `sap`: synchronised once per run from the
    /// counter object, read by the public client (value + 1), and never lower
    /// than the stored one.
    async fn next_counter(&mut self, sap: u16) -> u32 {
        if let Some(n) = self.t.counters.get(&sap) {
            return *n;
        }
        let pc = self.t.profile.client(sap).cloned();
        let stored = pc
            .as_ref()
            .and_then(|c| {
                self.t
                    .store
                    .get(&crate::client::CounterStore::key(&self.t.device_id, c))
            })
            .unwrap_or(0);
        let read = match &pc {
            Some(c) => self.read_counter_object(c.counter_object).await.ok(),
            None => None,
        };
        let next = read.map_or(1, |v| v.saturating_add(1)).max(stored).max(1);
        self.t.counters.insert(sap, next);
        next
    }

    /// Reads an invocation counter object through the public client on its
    /// own link (on a single-link target, after the other links ended).
    async fn read_counter_object(&mut self, obis: Obis) -> Result<u32, String> {
        let public = self
            .t
            .profile
            .client_by_role("public")
            .cloned()
            .ok_or("the device profile has no client with the role `public`")?;
        self.free_port(None).await;
        let link = open::open(
            &self.t.spec,
            &self.t.profile,
            public.sap,
            Some(self.kind),
            self.t.sim.as_ref(),
            self.start,
        )
        .await
        .map_err(|e| e.to_string())?;
        self.hold_port(&link);
        let mut c = Client::new(link);
        let result = async {
            if c.link.kind() == LinkKind::Hdlc {
                c.link.connect().await.map_err(|e| e.to_string())?;
            }
            let req = AssociationRequest::from_profile(&public, vec![], 0);
            match c.associate(req, false).await.map_err(|e| e.to_string())? {
                AssociateOutcome::Associated => {}
                AssociateOutcome::Refused(r) => {
                    return Err(format!("public association refused: {r}"));
                }
            }
            let r = c
                .get(AttributeDescriptor {
                    class_id: 1,
                    instance: obis,
                    attribute_id: 2,
                })
                .await
                .map_err(|e| e.to_string())?;
            let _ = c.release(false).await;
            match r {
                GetOutcome::Data(d) => d
                    .as_integer()
                    .and_then(|i| u32::try_from(i).ok())
                    .ok_or_else(|| format!("counter object {obis} holds {d}, not a counter")),
                other => Err(format!("reading counter object {obis}: {other}")),
            }
        }
        .await;
        if c.link.kind() == LinkKind::Hdlc {
            let _ = c.link.disconnect().await;
        }
        c.link.shutdown().await;
        let mut t = c.link.trace.take();
        for r in &mut t {
            r.decoded = format!("[public client, counter sync] {}", r.decoded);
        }
        self.traffic.extend(t);
        result
    }

    /// A protocol violation the link saw during a step fails the step of a
    /// case about the link (tagged `link`); in any other case it goes to the
    /// run's link monitor (and the case's traffic), which fails once for it
    /// rather than every case whose exchange it happened in.
    fn check_violations(&mut self) -> StepResult {
        let mut all = Vec::new();
        for c in self.clients.values_mut() {
            all.extend(c.link.take_violations());
        }
        if all.is_empty() {
            return Ok(());
        }
        let about_the_link = self
            .suite
            .suite
            .tags
            .iter()
            .chain(&self.case.tags)
            .any(|t| t == "link");
        if about_the_link {
            return Err(StepError::Fail {
                message: format!("the device broke the link protocol: {}", all.join("; ")),
                label: all.first().cloned().unwrap_or_default(),
            });
        }
        for v in all {
            self.t.monitors.link_violation(&self.case.id, &v);
            self.note(format!(
                "link protocol violation, judged by {}: {v}",
                crate::runner::monitor::LINK.id
            ));
        }
        Ok(())
    }

    /// Keeps the counter book in step with the open associations.
    fn sync_counters(&mut self) {
        for (sap, c) in &self.clients {
            let live = c
                .assoc
                .as_ref()
                .and_then(|a| a.cipher.as_ref())
                .map(|x| x.next_ic);
            if let Some(next) = live.into_iter().chain(c.ended_next_ic).max() {
                let e = self.t.counters.entry(*sap).or_insert(0);
                *e = (*e).max(next);
            }
        }
    }

    fn save_counters(&mut self) {
        for (sap, next) in self.t.counters.clone() {
            if let Some(c) = self.t.profile.client(sap) {
                let key = crate::client::CounterStore::key(&self.t.device_id, c);
                self.t.store.advance(&key, next);
            }
        }
    }

    /// Runs the case: steps, then teardown, then closes the links.
    pub async fn run(
        mut self,
        case_timeout: Duration,
        cancel: &tokio::sync::watch::Receiver<bool>,
        on_step: &mut (dyn FnMut(usize, String, bool, Vec<TrafficRecord>) + Send),
    ) -> CaseOutcome {
        use crate::runner::event::Verdict;
        if let Some(reason) = self.custody_precondition() {
            self.note(reason.clone());
            return CaseOutcome {
                verdict: Verdict::Error(RunDiagnostic {
                    message: reason.clone(),
                    detail: format!("{reason}\nchecks: {}", self.case.checks),
                    location: None,
                }),
                traffic: self.traffic,
            };
        }
        if let Some(reason) = self.lasting_precondition().await {
            self.close_all().await;
            self.save_counters();
            self.collect_traffic();
            return CaseOutcome {
                verdict: Verdict::Skipped(reason),
                traffic: self.traffic,
            };
        }
        let mut verdict = Verdict::Passed;
        let steps = &self.case.steps;
        let deadline = tokio::time::Instant::now() + case_timeout;
        // Why a step was cut short (its reply may still be on its way).
        let mut cut: Option<&str> = None;
        for (i, step) in steps.iter().enumerate() {
            if *cancel.borrow() {
                verdict = Verdict::Error(self.diag(
                    i,
                    false,
                    "interrupted",
                    "the run was interrupted",
                    None,
                    String::new(),
                ));
                break;
            }
            let label = step_label(&step.value);
            let from = self.traffic.len();
            let mut cancel_rx = cancel.clone();
            let r = tokio::select! {
                r = tokio::time::timeout_at(deadline, self.step(&step.value)) => r.unwrap_or_else(|_| {
                    cut = Some("the case timed out");
                    Err(StepError::Harness(format!("the case timed out after {}", humantime::format_duration(case_timeout))))
                }),
                _ = cancel_rx.wait_for(|c| *c) => {
                    cut = Some("the run was interrupted");
                    Err(StepError::Harness("the run was interrupted".into()))
                }
            };
            self.sync_counters();
            let r = r.and_then(|()| self.check_violations());
            self.collect_traffic();
            let ok = r.is_ok();
            on_step(i, label.clone(), ok, self.traffic[from..].to_vec());
            match r {
                Ok(()) => {}
                Err(StepError::Fail {
                    message,
                    label: caret,
                }) => {
                    verdict = Verdict::Failed(self.diag(
                        i,
                        false,
                        &label,
                        &message,
                        Some(caret),
                        String::new(),
                    ));
                    break;
                }
                Err(StepError::Harness(message)) => {
                    verdict =
                        Verdict::Error(self.diag(i, false, &label, &message, None, String::new()));
                    break;
                }
                Err(StepError::Precondition(message)) => {
                    verdict = Verdict::Error(self.diag(
                        i,
                        false,
                        &label,
                        &format!("precondition failed: {message}"),
                        None,
                        String::new(),
                    ));
                    break;
                }
            }
        }
        // The teardown always runs, with its own time budget, on fresh links
        // after a step was cut short, and with the keys the meter holds.
        if let Some(why) = cut {
            self.abandon_links(why).await;
        }
        self.settle_before_teardown().await;
        self.collect_traffic();
        self.in_teardown = true;
        let teardown = &self.case.teardown;
        for (i, step) in teardown.iter().enumerate() {
            let label = step_label(&step.value);
            let from = self.traffic.len();
            let r = tokio::time::timeout(Duration::from_secs(20), self.step(&step.value))
                .await
                .unwrap_or_else(|_| Err(StepError::Harness("teardown step timed out".into())));
            self.sync_counters();
            self.collect_traffic();
            on_step(
                steps.len() + i,
                format!("teardown {label}"),
                r.is_ok(),
                self.traffic[from..].to_vec(),
            );
            if let Err(e) = r {
                let (msg, caret, fail) = match e {
                    StepError::Fail { message, label } => (message, Some(label), true),
                    StepError::Harness(m) | StepError::Precondition(m) => (m, None, false),
                };
                if matches!(step.value, Step::KeyTransfer(_)) {
                    self.restore_failures.push((
                        self.default_client,
                        format!("teardown step {} ({label}): {msg}", i + 1),
                    ));
                }
                let d = self.diag(
                    i,
                    true,
                    &format!("teardown {label}"),
                    &msg,
                    caret,
                    String::new(),
                );
                if verdict == Verdict::Passed {
                    verdict = if fail {
                        Verdict::Failed(d)
                    } else {
                        Verdict::Error(d)
                    };
                } else {
                    self.note(format!(
                        "teardown step {} ({label}) also failed: {msg}",
                        i + 1
                    ));
                }
            }
        }
        self.settle_after_teardown().await;
        self.close_all().await;
        self.save_counters();
        self.collect_traffic();
        // In time order across links and notes (a stable sort: records of the
        // same instant keep the order they were recorded in).
        self.traffic.sort_by_key(|r| r.at);
        CaseOutcome {
            verdict,
            traffic: self.traffic,
        }
    }

    async fn close_all(&mut self) {
        let clients = std::mem::take(&mut self.clients);
        for (_, mut c) in clients {
            if c.link.kind() == LinkKind::Hdlc && c.link.is_connected() {
                let _ = c.link.disconnect().await;
            }
            c.link.shutdown().await;
            self.traffic.extend(c.link.trace.take());
        }
    }

    /// A power cycle of the meter: links closed, then the simulator restarted,
    /// or the device profile's restart command run, then the wait.
    async fn restart(&mut self, r: &m::RestartStep) -> StepResult {
        self.collect_traffic();
        self.close_all().await;
        let wait = match &r.wait {
            Some(w) => parse_duration(w)?,
            None => self
                .t
                .profile
                .restart
                .as_ref()
                .map_or(Duration::ZERO, |x| x.wait),
        };
        if let Some(sim) = &self.t.sim {
            sim.meter.restart();
            self.note("the simulated meter restarted (from its memory)");
        } else if let Some(rs) = self.t.profile.restart.clone() {
            let run = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&rs.command)
                .kill_on_drop(true)
                .output();
            let out = match tokio::time::timeout(rs.timeout, run).await {
                Err(_) => {
                    return harness(format!(
                        "the restart command did not end within {}",
                        humantime::format_duration(rs.timeout)
                    ));
                }
                Ok(Err(e)) => return harness(format!("cannot run the restart command: {e}")),
                Ok(Ok(o)) => o,
            };
            if !out.status.success() {
                return harness(format!(
                    "the restart command failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            self.note("the device profile's restart command ran");
        } else {
            return harness(
                "the device profile gives no restart command (restart: {command: ...})",
            );
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }

    fn diag(
        &self,
        step: usize,
        teardown: bool,
        label: &str,
        message: &str,
        caret: Option<String>,
        extra: String,
    ) -> RunDiagnostic {
        let n = step + 1;
        let where_ = if teardown { "teardown step" } else { "step" };
        let headline = format!("{where_} {n} ({label}): {message}");
        let span = if caret.is_some() {
            self.suite.expect_span(self.case_index, teardown, step)
        } else {
            self.suite.step_span(self.case_index, teardown, step)
        };
        let mut d = Diagnostic::new(headline.clone());
        if let Some(s) = span {
            d = d.at(s, caret.unwrap_or_default());
        }
        d = d.note(format!("checks: {}", self.case.checks));
        let mut detail = self.suite.render(&d);
        if !extra.is_empty() {
            detail.push('\n');
            detail.push_str(&extra);
        }
        RunDiagnostic {
            message: headline,
            detail,
            location: span.map(|s| SourceLocation {
                file: self.suite.path.clone(),
                line: s.line,
                column: s.column,
            }),
        }
    }

    /// Judges an observation against the step's expectation (or the default).
    fn judge(
        &self,
        step: &Step,
        observed: &Observed,
        default: &[Outcome],
        assoc_next_ic: Option<u32>,
    ) -> StepResult {
        let expected: Vec<Outcome> = match step_expect(step) {
            Some(e) => e.outcomes().to_vec(),
            None => default.to_vec(),
        };
        let vars = &self.vars;
        let eq = |spec: &m::DataSpec, d: &Data| data_matches(spec, d, vars);
        let hit = expected
            .iter()
            .find(|o| matches(o, observed, &self.t.profile, self.t.strict, &eq));
        match hit {
            Some(_) => {
                // An invocation-counter-error must carry the lowest acceptable counter.
                if let (
                    Observed::Exception {
                        service: 6,
                        counter: Some(c),
                        ..
                    },
                    Some(next),
                ) = (observed, assoc_next_ic)
                    && *c != next
                    && *c != u32::MAX
                {
                    return Err(StepError::Fail {
                        message: format!(
                            "the invocation-counter-error carries counter {c}; the lowest acceptable counter is {next}"
                        ),
                        label: format!("expected counter {next}, got {c}"),
                    });
                }
                Ok(())
            }
            None => {
                let want = expected
                    .iter()
                    .map(describe_outcome)
                    .collect::<Vec<_>>()
                    .join(" or ");
                Err(StepError::Fail {
                    message: format!("expected {want}, got {observed}"),
                    // The headline already says what came; the caret only points.
                    label: "not met".into(),
                })
            }
        }
    }

    fn next_ic_of(&self, sap: u16) -> Option<u32> {
        self.clients
            .get(&sap)
            .and_then(|c| c.assoc.as_ref())
            .and_then(|a| a.cipher.as_ref())
            .map(|c| c.next_ic)
    }

    fn obis(&self, t: &m::Tpl<String>) -> Result<Obis, StepError> {
        let s = t.resolve(&self.vars).map_err(StepError::Harness)?;
        s.parse::<Obis>()
            .map_err(|e| StepError::Harness(e.to_string()))
    }

    /// Every accepted outcome is "no answer": then waiting the silence time is enough
    /// (a disconnect shows at once).
    fn expects_only_silence(step: &Step) -> bool {
        step_expect(step).is_some_and(|e| {
            e.outcomes()
                .iter()
                .all(|o| matches!(o, Outcome::Silence | Outcome::Disconnect))
        })
    }

    fn reply_wait(&self, step: &Step) -> Duration {
        if Self::expects_only_silence(step) {
            self.t.profile.timeouts.silence
        } else {
            self.t.profile.timeouts.response
        }
    }

    async fn step(&mut self, step: &Step) -> StepResult {
        let success = [Outcome::Success];
        match step {
            Step::Wait(w) => {
                tokio::time::sleep(parse_duration(w)?).await;
                Ok(())
            }
            Step::Check(c) => self.check(c),
            Step::Restart(r) => self.restart(r).await,
            Step::Given(inner) => match Box::pin(self.step(inner)).await {
                Ok(()) => Ok(()),
                Err(StepError::Fail { message, .. } | StepError::Harness(message))
                | Err(StepError::Precondition(message)) => Err(StepError::Precondition(message)),
            },
            Step::Connect(s) => {
                let sap = match &s.client {
                    Some(t) => self.sap_of(t)?,
                    None => self.default_client,
                };
                // A connect step opens a fresh link; for HDLC, with the proposed parameters.
                if let Some(mut old) = self.clients.remove(&sap) {
                    old.link.shutdown().await;
                    self.traffic.extend(old.link.trace.take());
                }
                let mut p = self.t.profile.clone();
                if let Some(v) = s.max_info_tx {
                    p.hdlc.max_info_tx = v;
                }
                if let Some(v) = s.max_info_rx {
                    p.hdlc.max_info_rx = v;
                }
                if let Some(v) = s.window_tx.or(s.window_rx) {
                    p.hdlc.window = v;
                }
                let mut l = open::open(
                    &self.t.spec,
                    &p,
                    sap,
                    Some(self.kind),
                    self.t.sim.as_ref(),
                    self.start,
                )
                .await
                .map_err(|e| StepError::Harness(format!("cannot open a link: {e}")))?;
                let observed = if l.kind() == LinkKind::Hdlc {
                    match l.connect().await {
                        Ok(params) => {
                            l.trace.note(format!(
                                "negotiated: max info tx {} rx {}, window tx {} rx {}",
                                params.max_info_tx,
                                params.max_info_rx,
                                params.window_tx,
                                params.window_rx
                            ));
                            self.vars
                                .insert("max_info_tx".into(), params.max_info_tx.to_string());
                            self.vars
                                .insert("max_info_rx".into(), params.max_info_rx.to_string());
                            self.vars
                                .insert("window_tx".into(), params.window_tx.to_string());
                            self.vars
                                .insert("window_rx".into(), params.window_rx.to_string());
                            Observed::Frame(Control::Ua { poll_final: true })
                        }
                        Err(LinkError::Hdlc(ref m)) if m.contains("DM") => {
                            Observed::Frame(Control::Dm { poll_final: true })
                        }
                        Err(LinkError::Hdlc(ref m)) if m.contains("FRMR") => {
                            Observed::Frame(Control::Frmr { poll_final: true })
                        }
                        Err(LinkError::Hdlc(_)) | Err(LinkError::Timeout(_)) => Observed::Silence,
                        Err(e) => match observed_from_link(&e) {
                            Some(o) => o,
                            None => return harness(e.to_string()),
                        },
                    }
                } else {
                    Observed::Frame(Control::Ua { poll_final: true })
                };
                self.clients.insert(sap, Client::new(l));
                self.judge(step, &observed, &success, None)
            }
            Step::Disconnect(_) => {
                let sap = self.default_client;
                let Some(mut c) = self.clients.remove(&sap) else {
                    return if self.in_teardown {
                        Ok(())
                    } else {
                        harness("disconnect: no link is open")
                    };
                };
                let observed = if c.link.kind() == LinkKind::Hdlc {
                    match c.link.disconnect().await {
                        Ok(()) => Observed::Frame(Control::Ua { poll_final: true }),
                        Err(LinkError::Hdlc(m)) if m.contains("DM") => {
                            Observed::Frame(Control::Dm { poll_final: true })
                        }
                        Err(e) => observed_from_link(&e).unwrap_or(Observed::Other(e.to_string())),
                    }
                } else {
                    Observed::Frame(Control::Ua { poll_final: true })
                };
                c.link.shutdown().await;
                self.traffic.extend(c.link.trace.take());
                let r = self.judge(step, &observed, &success, None);
                if matches!(observed, Observed::Frame(Control::Dm { .. }))
                    && step_expect(step).is_none()
                {
                    // DM to DISC means "already disconnected": acceptable.
                    return Ok(());
                }
                r
            }
            Step::Associate(a) => self.associate(step, a).await,
            Step::Release(r) => {
                let sap = self.default_client;
                let Some(c) = self.clients.get_mut(&sap) else {
                    return if self.in_teardown {
                        Ok(())
                    } else {
                        harness("release: no link is open")
                    };
                };
                let Some(assoc) = c.assoc.as_ref() else {
                    return if self.in_teardown {
                        Ok(())
                    } else {
                        harness("release: no association is open")
                    };
                };
                let protected = r.protected.unwrap_or(assoc.ciphered());
                let next = assoc.cipher.as_ref().map(|x| x.next_ic);
                let observed = match c.release(protected).await {
                    Ok(a) => observed_from_apdu(&a),
                    Err(ClientError::Link(e)) => match observed_from_link(&e) {
                        Some(o) => o,
                        None => return harness(e.to_string()),
                    },
                    Err(e) => Observed::Other(e.to_string()),
                };
                if self.in_teardown && step_expect(step).is_none() {
                    return Ok(());
                }
                self.judge(step, &observed, &success, next)
            }
            Step::Get(g) => {
                let (class_id, instance) = self.object_of(&g.object, &g.of, g.class, &g.obis)?;
                let attr = AttributeDescriptor {
                    class_id,
                    instance,
                    attribute_id: g.attr,
                };
                let observed = if g.unprotected || g.security.is_some() {
                    let plain = Apdu::GetRequest(crate::wire::apdu::GetRequest::Normal {
                        invoke_id: 0xC1,
                        attribute: attr,
                        access: None,
                    });
                    self.send_overridden(plain, g.unprotected, g.security.as_deref())
                        .await?
                } else {
                    let sap = self.default_client;
                    let c = self.client(sap).await?;
                    match c.get(attr).await {
                        Ok(GetOutcome::Data(d)) => Observed::Data(d),
                        Ok(GetOutcome::Error(e)) => Observed::Access(e),
                        Ok(GetOutcome::Exception(e)) => Observed::Exception {
                            state: e.state_error,
                            service: e.service_error,
                            counter: e.invocation_counter,
                        },
                        Ok(GetOutcome::Other(a)) => observed_from_apdu(&a),
                        Err(e) => self.observed_from_client(e)?,
                    }
                };
                if let (Some(name), Observed::Data(d)) = (&g.save, &observed) {
                    self.vars.insert(name.clone(), saved_text(d));
                }
                let next = self.next_ic_of(self.default_client);
                self.judge(step, &observed, &success, next)
            }
            Step::Set(s) => {
                let (class_id, instance) = self.object_of(&s.object, &s.of, s.class, &s.obis)?;
                let attr = AttributeDescriptor {
                    class_id,
                    instance,
                    attribute_id: s.attr,
                };
                let value = to_data(&s.value, &self.vars).map_err(StepError::Harness)?;
                let observed = if s.unprotected || s.security.is_some() {
                    let plain = Apdu::SetRequest(crate::wire::apdu::SetRequest::Normal {
                        invoke_id: 0xC1,
                        attribute: attr,
                        access: None,
                        value,
                    });
                    self.send_overridden(plain, s.unprotected, s.security.as_deref())
                        .await?
                } else {
                    let sap = self.default_client;
                    let c = self.client(sap).await?;
                    match c.set(attr, value).await {
                        Ok(a) => observed_from_apdu(&a),
                        Err(e) => self.observed_from_client(e)?,
                    }
                };
                let next = self.next_ic_of(self.default_client);
                self.judge(step, &observed, &success, next)
            }
            Step::Action(a) => {
                let (class_id, instance) = self.object_of(&a.object, &a.of, a.class, &a.obis)?;
                let method = MethodDescriptor {
                    class_id,
                    instance,
                    method_id: a.method,
                };
                let params = a
                    .params
                    .as_ref()
                    .map(|p| to_data(p, &self.vars))
                    .transpose()
                    .map_err(StepError::Harness)?;
                let observed = self
                    .action(method, params, a.unprotected, a.security.as_deref())
                    .await?;
                if let (Some(name), Observed::Action(_, Some(d))) = (&a.save, &observed) {
                    self.vars.insert(name.clone(), saved_text(d));
                }
                let next = self.next_ic_of(self.default_client);
                self.judge(step, &observed, &success, next)
            }
            Step::Send(s) => self.send(step, s).await,
            Step::Replay(_) => {
                let sap = self.default_client;
                let c = self.client(sap).await?;
                let Some(bytes) = c.last_protected.clone() else {
                    return harness("replay: no protected request has been sent in this case");
                };
                let wait = self.reply_wait(step);
                let c = self.client(sap).await?;
                c.link
                    .send_apdu(&bytes)
                    .await
                    .map_err(|e| StepError::Harness(e.to_string()))?;
                let observed = self.observe_reply(sap, wait).await?;
                let next = self.next_ic_of(sap);
                self.judge(
                    step,
                    &observed,
                    &[Outcome::Profile("replayed-counter".into())],
                    next,
                )
            }
            Step::KeyTransfer(k) => self.key_transfer(step, k).await,
            Step::SecurityActivate(s) => {
                let sap = self.default_client;
                let obis = match &s.obis {
                    Some(o) => self.obis(o)?,
                    None => self.profile_client(sap)?.security_setup,
                };
                let p = s.policy.resolve(&self.vars).map_err(StepError::Harness)?;
                let code = vocab::code(vocab::SECURITY_POLICIES, &p)
                    .or_else(|| p.parse().ok())
                    .ok_or_else(|| {
                        StepError::Harness(format!(
                            "security policy `{p}` is not a number or a policy name"
                        ))
                    })?;
                let method = MethodDescriptor {
                    class_id: 64,
                    instance: obis,
                    method_id: 1,
                };
                let observed = self
                    .action(method, Some(Data::Enum(code)), false, None)
                    .await?;
                let next = self.next_ic_of(sap);
                self.judge(step, &observed, &success, next)
            }
            Step::ReadCounter(r) => {
                let sap = match &r.client {
                    Some(t) => self.sap_of(t)?,
                    None => self.default_client,
                };
                let obis = self.profile_client(sap)?.counter_object;
                let v = self
                    .read_counter_object(obis)
                    .await
                    .map_err(|e| StepError::Fail {
                        message: format!("cannot read the invocation counter object {obis} as the public client: {e}"),
                        label: String::new(),
                    })?;
                self.vars.insert(r.save.clone(), v.to_string());
                Ok(())
            }
            Step::Listen(l) => {
                let wait = parse_duration(&l.r#for)?;
                let sap = self.default_client;
                self.client(sap).await?;
                let observed = self.observe_reply(sap, wait).await?;
                self.judge(step, &observed, &[Outcome::Silence], None)
            }
        }
    }

    fn observed_from_client(&self, e: ClientError) -> Result<Observed, StepError> {
        match e {
            ClientError::Link(l) => {
                observed_from_link(&l).ok_or_else(|| StepError::Harness(l.to_string()))
            }
            ClientError::NotAssociated => {
                harness("no association is open: add an `associate` step first")
            }
            ClientError::Session(SessionError::ServerAuthentication(why)) => {
                Ok(Observed::ServerAuthenticationFailed(why))
            }
            ClientError::Session(SessionError::MissingKey(k)) => {
                harness(format!("the device profile gives no {k}"))
            }
            ClientError::Session(e) => Ok(Observed::Other(format!("invalid reply: {e}"))),
            ClientError::Protocol(p) => Ok(Observed::Other(p)),
        }
    }

    /// Sends an action on the default client, optionally with protection overridden.
    async fn action(
        &mut self,
        method: MethodDescriptor,
        params: Option<Data>,
        unprotected: bool,
        security: Option<&str>,
    ) -> Result<Observed, StepError> {
        if unprotected || security.is_some() {
            let plain = Apdu::ActionRequest(crate::wire::apdu::ActionRequest::Normal {
                invoke_id: 0xC1,
                method,
                parameters: params,
            });
            return self.send_overridden(plain, unprotected, security).await;
        }
        let sap = self.default_client;
        let c = self.client(sap).await?;
        match c.action(method, params).await {
            Ok(a) => Ok(observed_from_apdu(&a)),
            Err(e) => self.observed_from_client(e),
        }
    }

    /// Sends a request plain or with a chosen protection on the open association.
    async fn send_overridden(
        &mut self,
        plain: Apdu,
        unprotected: bool,
        security: Option<&str>,
    ) -> Result<Observed, StepError> {
        let sap = self.default_client;
        let c = self.client(sap).await?;
        let plain_bytes = plain.encode();
        let wire = if unprotected {
            plain_bytes.clone()
        } else {
            let prot = security.and_then(Protection::parse).ok_or_else(|| {
                StepError::Harness(format!("unknown security `{}`", security.unwrap_or("")))
            })?;
            let Some(assoc) = c.assoc.as_mut() else {
                return harness("no association is open");
            };
            let Some(ctx) = assoc.cipher.as_mut() else {
                return harness("the association has no keys to protect with");
            };
            match prot.control(ctx.suite) {
                None => plain_bytes.clone(),
                Some(sc) => {
                    let ic = ctx
                        .take_ic()
                        .map_err(|e| StepError::Harness(e.to_string()))?;
                    ctx.protect_with(&plain_bytes, sc, ic, ctx.ciphering)
                        .map_err(|e| StepError::Harness(e.to_string()))?
                }
            }
        };
        c.link.trace.record(
            Direction::Sent,
            "xdlms",
            &plain_bytes,
            format!("plain: {}", describe_apdu(&plain_bytes)),
        );
        let wait = self.t.profile.timeouts.response;
        let c = self.client(sap).await?;
        c.link
            .send_apdu(&wire)
            .await
            .map_err(|e| StepError::Harness(e.to_string()))?;
        self.observe_reply(sap, wait).await
    }

    /// Waits for the reply on `sap`'s link and maps it to an observation.
    async fn observe_reply(&mut self, sap: u16, wait: Duration) -> Result<Observed, StepError> {
        let c = self.client(sap).await?;
        let reply = match c.link.recv_any(wait).await {
            Ok(r) => r,
            Err(e) => {
                return observed_from_link(&e).ok_or_else(|| StepError::Harness(e.to_string()));
            }
        };
        Ok(match reply {
            Reply::Apdu(bytes) => {
                if c.assoc.is_some() {
                    match c.receive(&bytes) {
                        Ok(r) => observed_from_apdu(&r.apdu),
                        Err(e) => Observed::Other(format!("invalid reply: {e}")),
                    }
                } else {
                    match Apdu::decode(&bytes) {
                        Ok(a) => observed_from_apdu(&a),
                        Err(e) => Observed::Other(format!("undecodable APDU: {e}")),
                    }
                }
            }
            Reply::Frame(f) => Observed::Frame(f.control),
            Reply::Wrapper(f) => Observed::Other(format!(
                "wrapper frame from wPort {} to {}",
                f.source, f.destination
            )),
            Reply::Closed => Observed::Disconnect,
            Reply::Silence => Observed::Silence,
        })
    }

    async fn associate(&mut self, step: &Step, a: &m::AssociateStep) -> StepResult {
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
    fn check_server_title(&mut self, sap: u16) -> StepResult {
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

    async fn send(&mut self, step: &Step, s: &m::SendStep) -> StepResult {
        let sap = self.default_client;
        let wait = self.reply_wait(step);
        if let Some(apdu) = &s.apdu {
            let bytes = parse_hex(
                &apdu.resolve(&self.vars).map_err(StepError::Harness)?,
                "apdu",
            )?;
            let c = self.client(sap).await?;
            c.link
                .send_apdu(&bytes)
                .await
                .map_err(|e| StepError::Harness(e.to_string()))?;
            let observed = self.observe_reply(sap, wait).await?;
            return self.judge(step, &observed, &[Outcome::Success], None);
        }
        if let Some(p) = &s.protected {
            let plain = parse_hex(
                &p.apdu.resolve(&self.vars).map_err(StepError::Harness)?,
                "protected.apdu",
            )?;
            let counter = match &p.counter {
                Some(c) => {
                    vocab::parse_counter(&c.resolve(&self.vars).map_err(StepError::Harness)?)
                        .map_err(StepError::Harness)?
                }
                None => CounterSpec::Next,
            };
            let c = self.client(sap).await?;
            let Some(ctx) = c.assoc.as_mut().and_then(|a| a.cipher.as_mut()) else {
                return harness("send protected: no ciphered association is open");
            };
            let ic = match counter {
                CounterSpec::Next => ctx
                    .take_ic()
                    .map_err(|e| StepError::Harness(e.to_string()))?,
                CounterSpec::Last(n) => ctx.next_ic.saturating_sub(1).saturating_sub(n),
                CounterSpec::Skip(n) => {
                    let v = ctx.next_ic.saturating_add(n);
                    ctx.next_ic = v.saturating_add(1);
                    v
                }
                CounterSpec::Value(v) => v,
            };
            let sc = match &p.security {
                Some(sec) => Protection::parse(sec)
                    .and_then(|x| x.control(ctx.suite))
                    .ok_or_else(|| {
                        StepError::Harness(format!("security `{sec}` cannot protect"))
                    })?,
                None => ctx.control(),
            };
            let ciphering = match &p.ciphering {
                Some(x) => Ciphering::parse(x)
                    .ok_or_else(|| StepError::Harness(format!("unknown ciphering `{x}`")))?,
                None => ctx.ciphering,
            };
            let mut wire = ctx
                .protect_with(&plain, sc, ic, ciphering)
                .map_err(|e| StepError::Harness(e.to_string()))?;
            if let Some(t) = &p.tamper {
                tamper(&mut wire, t, ciphering).map_err(StepError::Harness)?;
            }
            c.link.trace.record(
                Direction::Sent,
                "xdlms",
                &plain,
                format!(
                    "plain: {} (counter {ic}{})",
                    describe_apdu(&plain),
                    p.tamper
                        .as_ref()
                        .map(|t| format!(", tampered {t}"))
                        .unwrap_or_default()
                ),
            );
            c.last_protected = Some(wire.clone());
            c.link
                .send_apdu(&wire)
                .await
                .map_err(|e| StepError::Harness(e.to_string()))?;
            let observed = self.observe_reply(sap, wait).await?;
            let next = self.next_ic_of(sap);
            return self.judge(step, &observed, &[Outcome::Success], next);
        }
        if let Some(h) = &s.hdlc {
            let bytes = self.build_hdlc(sap, h).await?;
            let c = self.ensure_link(sap, false).await?;
            if c.link.kind() != LinkKind::Hdlc {
                return harness("send hdlc: the link is not HDLC");
            }
            let desc = FrameRepr::decode(&bytes)
                .map(|f| f.to_string())
                .unwrap_or_else(|e| format!("hand-made frame ({e})"));
            c.link
                .send_raw(&bytes, "hdlc", desc)
                .await
                .map_err(|e| StepError::Harness(e.to_string()))?;
            let observed = self.observe_reply(sap, wait).await?;
            return self.judge(step, &observed, &[Outcome::Success], None);
        }
        if let Some(w) = &s.wrapper {
            let payload = match &w.payload {
                Some(p) => parse_hex(
                    &p.resolve(&self.vars).map_err(StepError::Harness)?,
                    "wrapper.payload",
                )?,
                None => vec![],
            };
            let c = self.client(sap).await?;
            if !matches!(c.link.kind(), LinkKind::Wrapper | LinkKind::Udp) {
                return harness("send wrapper: the link is not a wrapper link");
            }
            let settings = c.link.settings().clone();
            let raw = RawWrapper {
                version: w.version.unwrap_or(1),
                source: w.source.unwrap_or(settings.client),
                destination: w.destination.unwrap_or(settings.server_wport),
                length: w.length,
                payload,
            };
            let one = raw.encode();
            let repeat = w.repeat.unwrap_or(1).max(1) as usize;
            let bytes: Vec<u8> = one
                .iter()
                .copied()
                .cycle()
                .take(one.len() * repeat)
                .collect();
            let desc = format!(
                "wrapper v{} {}->{} length {} x{repeat}",
                raw.version,
                raw.source,
                raw.destination,
                raw.length.map_or("(correct)".into(), |l| l.to_string())
            );
            match w.split {
                Some(n) if n > 1 => {
                    c.link
                        .send_raw_split(&bytes, n as usize, Duration::from_millis(30))
                        .await
                }
                _ => c.link.send_raw(&bytes, "wrapper", desc).await,
            }
            .map_err(|e| StepError::Harness(e.to_string()))?;
            let observed = if repeat > 1 {
                let mut got = 0;
                let mut last = Observed::Silence;
                for _ in 0..repeat {
                    last = self.observe_reply(sap, wait).await?;
                    if matches!(last, Observed::Silence | Observed::Disconnect) {
                        break;
                    }
                    got += 1;
                }
                if got == repeat {
                    Observed::Replies(got)
                } else {
                    last
                }
            } else {
                self.observe_reply(sap, wait).await?
            };
            return self.judge(step, &observed, &[Outcome::Success], None);
        }
        if let Some(b) = &s.bytes {
            let bytes = parse_hex(&b.resolve(&self.vars).map_err(StepError::Harness)?, "bytes")?;
            let c = self.client(sap).await?;
            c.link
                .send_raw(&bytes, "raw", format!("{} raw bytes", bytes.len()))
                .await
                .map_err(|e| StepError::Harness(e.to_string()))?;
            let observed = self.observe_reply(sap, wait).await?;
            return self.judge(step, &observed, &[Outcome::Silence], None);
        }
        harness("send: nothing to send")
    }

    async fn build_hdlc(&mut self, sap: u16, h: &m::HdlcFrameSpec) -> Result<Vec<u8>, StepError> {
        let vars = self.vars.clone();
        let c = self.ensure_link(sap, false).await?;
        let settings = c.link.settings().clone();
        let (vs, vr) = c.link.hdlc_client().map(|x| x.sequence()).unwrap_or((0, 0));
        let ns = h.send_seq.unwrap_or(vs) & 7;
        let nr = h.recv_seq.unwrap_or(vr) & 7;
        let kind = h.control.as_deref().unwrap_or("i");
        let control = match kind {
            "snrm" => Control::Snrm { poll_final: true }.to_byte(),
            "disc" => Control::Disc { poll_final: true }.to_byte(),
            "ui" => Control::Ui { poll_final: true }.to_byte(),
            "rr" => Control::Rr {
                recv_seq: nr,
                poll_final: true,
            }
            .to_byte(),
            "rnr" => Control::Rnr {
                recv_seq: nr,
                poll_final: true,
            }
            .to_byte(),
            "i" => Control::I {
                send_seq: ns,
                recv_seq: nr,
                poll_final: true,
            }
            .to_byte(),
            hexbyte => {
                let b = parse_hex(hexbyte, "hdlc.control")?;
                match b.as_slice() {
                    [x] => *x,
                    _ => return harness("hdlc.control: one byte in hex, or snrm/disc/ui/rr/rnr/i"),
                }
            }
        };
        let mut info = match &h.info {
            Some(t) => parse_hex(&t.resolve(&vars).map_err(StepError::Harness)?, "hdlc.info")?,
            None => vec![],
        };
        if kind == "i" && h.llc != Some(false) {
            let mut with = LLC_REQUEST.to_vec();
            with.extend_from_slice(&info);
            info = with;
        }
        let mut dest = Vec::new();
        settings.server_address.encode(&mut dest);
        let mut src = Vec::new();
        crate::wire::hdlc::Address::client(settings.client.min(0x7F) as u8).encode(&mut src);
        let raw = RawFrame {
            opening_flag: !h.no_opening_flag,
            closing_flag: !h.no_closing_flag,
            format_type: h.format_type.unwrap_or(0xA),
            segmented: h.segmented.unwrap_or(false),
            length: h.length,
            dest: match &h.dest {
                Some(d) => parse_hex(&d.resolve(&vars).map_err(StepError::Harness)?, "hdlc.dest")?,
                None => dest,
            },
            src: match &h.src {
                Some(d) => parse_hex(&d.resolve(&vars).map_err(StepError::Harness)?, "hdlc.src")?,
                None => src,
            },
            control,
            info,
            hcs: None,
            fcs: None,
            omit_hcs: false,
        };
        let mut bytes = raw.encode();
        let prefix = match &h.prefix {
            Some(p) => parse_hex(p, "hdlc.prefix")?,
            None => vec![],
        };
        // Checksums are patched on the encoded bytes, in wire order.
        let has_info = !raw.info.is_empty();
        let end = bytes.len() - usize::from(raw.closing_flag);
        let start = usize::from(raw.opening_flag);
        let hcs_at = start + 2 + raw.dest.len() + raw.src.len() + 1;
        let patch =
            |bytes: &mut Vec<u8>, at: usize, spec: &str, what: &str| -> Result<(), StepError> {
                let Some(slot) = bytes.get_mut(at..at + 2) else {
                    return harness(format!("{what}: the frame is too short to hold it"));
                };
                if spec == vocab::BAD_CHECKSUM {
                    slot[0] ^= 0xFF;
                    slot[1] ^= 0x5A;
                } else {
                    let v = vocab::parse_hex(spec)
                        .map_err(|e| StepError::Harness(format!("{what}: {e}")))?;
                    if v.len() != 2 {
                        return harness(format!("{what}: two bytes in hex, or `bad`"));
                    }
                    slot.copy_from_slice(&v);
                }
                Ok(())
            };
        if let Some(hcs) = &h.hcs {
            if !has_info {
                return harness("hdlc.hcs: a frame without information field has no HCS");
            }
            patch(&mut bytes, hcs_at, hcs, "hdlc.hcs")?;
        }
        if let Some(fcs) = &h.fcs {
            patch(&mut bytes, end.saturating_sub(2), fcs, "hdlc.fcs")?;
        }
        if !prefix.is_empty() {
            bytes.splice(0..0, prefix);
        }
        // A correct hand-made I-frame moves the link's send sequence on.
        if kind == "i"
            && h.send_seq.is_none()
            && h.recv_seq.is_none()
            && h.hcs.is_none()
            && h.fcs.is_none()
            && h.length.is_none()
            && h.dest.is_none()
        {
            let c = self.client(sap).await?;
            if let Some(x) = c.link.hdlc_client_mut() {
                x.note_raw_i_frame(ns);
            }
        }
        Ok(bytes)
    }

    async fn key_transfer(&mut self, step: &Step, k: &m::KeyTransferStep) -> StepResult {
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
    fn adopt_keys(&mut self, sap: u16, keys: &[(u8, Key)]) {
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

    fn check(&self, c: &m::CheckStep) -> StepResult {
        let l = resolve(&c.left, &self.vars).map_err(StepError::Harness)?;
        let r = resolve(&c.right, &self.vars).map_err(StepError::Harness)?;
        let ord = match (l.trim().parse::<i128>(), r.trim().parse::<i128>()) {
            (Ok(a), Ok(b)) => a.cmp(&b),
            _ => l.cmp(&r),
        };
        use std::cmp::Ordering::*;
        let ok = match c.op.as_str() {
            "eq" => ord == Equal,
            "ne" => ord != Equal,
            "gt" => ord == Greater,
            "ge" => ord != Less,
            "lt" => ord == Less,
            "le" => ord != Greater,
            // `right` is a regular expression the whole of `left` must match.
            "matches" => match regex::Regex::new(&format!("^(?:{r})$")) {
                Ok(re) => re.is_match(&l),
                Err(e) => return harness(format!("check: `{r}` is not a regular expression: {e}")),
            },
            other => return harness(format!("unknown check operator `{other}`")),
        };
        if ok {
            Ok(())
        } else {
            let why = c
                .message
                .clone()
                .unwrap_or_else(|| format!("`{}` {} `{}` does not hold", c.left, c.op, c.right));
            Err(StepError::Fail {
                message: format!("{why} ({l} {} {r})", c.op),
                label: format!("{l} vs {r}"),
            })
        }
    }
}

/// Corrupts one part of a protected APDU.
fn tamper(wire: &mut [u8], what: &str, ciphering: Ciphering) -> Result<(), String> {
    // Offset of SC: glo- APDU = tag, length; general-glo = tag, len(ST)=8, ST(8), length.
    let header = match ciphering {
        Ciphering::ServiceSpecific => 1 + length_len(wire.get(1..).unwrap_or_default()),
        Ciphering::General => 1 + 1 + 8 + length_len(wire.get(10..).unwrap_or_default()),
    };
    let n = wire.len();
    let at = match what {
        "tag" => n.checked_sub(1),
        // The second-to-last byte of the ciphertext (before a 12-byte tag): in a
        // GET request that is the attribute id, so the APDU still decodes and
        // only a tag check can tell.
        "ciphertext" => {
            let sc = wire.get(header).copied().unwrap_or(0);
            let tag = if sc & SecurityControl::AUTHENTICATION != 0 {
                12
            } else {
                0
            };
            n.checked_sub(tag + 2).filter(|i| *i >= header + 5)
        }
        "security-control" => Some(header),
        "counter" => Some(header + 4),
        other => return Err(format!("unknown tamper target `{other}`")),
    };
    match at.and_then(|i| wire.get_mut(i)) {
        Some(b) => {
            // For the security control, keep the protection bits: change the key-set bit.
            *b ^= if what == "security-control" {
                SecurityControl::BROADCAST_KEY
            } else {
                0x01
            };
            Ok(())
        }
        None => Err(format!(
            "the protected APDU is too short to tamper with its {what}"
        )),
    }
}

fn length_len(b: &[u8]) -> usize {
    match b.first() {
        Some(x) if *x < 0x80 => 1,
        Some(x) => 1 + (*x & 0x7F) as usize,
        None => 1,
    }
}

/// Encodes a dotted OID (e.g. `2.16.756.5.8.1.1`) as BER content bytes.
fn encode_oid(s: &str) -> Result<Vec<u8>, String> {
    let parts: Vec<u64> = s
        .split('.')
        .map(|p| {
            p.trim().parse::<u64>().map_err(|_| {
                format!("`{s}` is not an OID or one of ln, ln-ciphered, sn, sn-ciphered")
            })
        })
        .collect::<Result<_, _>>()?;
    if parts.len() < 2 || parts[0] > 2 {
        return Err(format!("`{s}` is not an OID"));
    }
    let mut out = Vec::new();
    let mut push = |mut v: u64| {
        let mut tmp = vec![(v & 0x7F) as u8];
        v >>= 7;
        while v > 0 {
            tmp.push(0x80 | (v & 0x7F) as u8);
            v >>= 7;
        }
        tmp.reverse();
        out.extend(tmp);
    };
    push(parts[0] * 40 + parts[1]);
    for p in &parts[2..] {
        push(*p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_dlms_context_oid() {
        // 2.16.756.5.8.1.1 = 60 85 74 05 08 01 01 (dlms-facts.md 2.1)
        assert_eq!(
            encode_oid("2.16.756.5.8.1.1").unwrap(),
            vec![0x60, 0x85, 0x74, 0x05, 0x08, 0x01, 0x01]
        );
        assert!(encode_oid("ln-x").is_err());
    }

    #[test]
    fn tampering_changes_exactly_one_byte() {
        let mut base = vec![0xC8, 0x1E, 0x30, 0, 0, 0, 1];
        base.extend_from_slice(&[0xAA; 13]); // ciphertext
        base.extend_from_slice(&[0x55; 12]); // tag
        for t in ["tag", "ciphertext", "security-control", "counter"] {
            let mut w = base.clone();
            tamper(&mut w, t, Ciphering::ServiceSpecific).unwrap();
            assert_eq!(
                w.iter().zip(&base).filter(|(a, b)| a != b).count(),
                1,
                "{t}"
            );
        }
    }
}
