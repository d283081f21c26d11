//! Running one case against one target: steps in order, each observed and
//! judged against its accepted outcomes, then the teardown, which always runs.
//! Key custody (escrow, keys in doubt) is in [`custody`]; preconditions on
//! lasting device state (security policies) in [`lasting`].

mod associate;
mod check;
mod custody;
mod key_transfer;
mod labels;
mod lasting;
mod observe;
mod restart;
mod send;

pub use custody::Custody;
pub(crate) use labels::step_expect;
pub use labels::step_label;
use observe::{observed_from_apdu, observed_from_link};

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::client::{AssociateOutcome, Client, ClientError, GetOutcome};
use crate::profile::{Ciphering, ClientProfile, DeviceProfile, Protection};
use crate::runner::data::{data_matches, saved_text, to_data};
use crate::runner::event::{Diagnostic as RunDiagnostic, Direction, SourceLocation, TrafficRecord};
use crate::runner::outcome::{Observed, describe_outcome, matches};
use crate::security::{Key, SecurityControl};
use crate::session::association::{AssociationRequest, SessionError};
use crate::sim::server::SimHandle;
use crate::suite::LoadedSuite;
use crate::suite::diag::Diagnostic;
use crate::suite::model::{self as m, Case, Outcome, Step};
use crate::suite::roles::client_sap;
use crate::suite::vocab;
use crate::transport::link::{Link, LinkError, LinkKind, Reply, describe_apdu};
use crate::transport::open;
use crate::transport::target::TargetSpec;
use crate::wire::apdu::{Apdu, AttributeDescriptor, MethodDescriptor};
use crate::wire::axdr::Data;
use crate::wire::hdlc::Control;
use crate::wire::obis::Obis;

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
