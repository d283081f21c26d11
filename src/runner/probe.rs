//! The probe: does the meter answer a normal request? On a fresh link,
//! associate as a client the device profile names by role (`public`, and
//! `management` for the pre-flight of runs that need it), GET attribute 2 of
//! the profile's `probe` object, and close the link (which ends the
//! association; over UDP, release first).
//!
//! A failed probe says why in the domain's words, as one of a few causes a
//! person can act on: nothing listening, connected but no reply (wrong
//! transport or address), a reply that is not DLMS, the association refused,
//! or, for a ciphered client, "check the keys". Every wait is bounded by the
//! profile's connect and response timeouts, so a dead meter costs seconds.

use std::time::{Duration, Instant};

use crate::client::{AssociateOutcome, Client, ClientError, CounterStore, GetOutcome};
use crate::profile::{ClientProfile, Mechanism};
use crate::runner::case::TargetState;
use crate::runner::event::TrafficRecord;
use crate::security::SecurityError;
use crate::session::association::{AssociationRequest, Refusal, SessionError};
use crate::session::cipher::CipherError;
use crate::transport::link::{LinkError, LinkKind};
use crate::transport::open;
use crate::wire::apdu::{AttributeDescriptor, ExceptionResponse, diag};
use crate::wire::axdr::Data;
use crate::wire::obis::Obis;

/// Why a probe failed, in terms a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// The connection was refused: nothing listens at the address.
    NothingListening,
    /// No connection could be made (timeout, no route, the port cannot be opened).
    CannotConnect(String),
    /// Connected, but nothing came back within the response timeout.
    NoReply { waited: Duration, to: &'static str },
    /// The meter closed the connection instead of answering.
    Closed { to: &'static str },
    /// Something came back, but not a valid frame or APDU of this transport.
    Garbled(String),
    /// The HDLC layer refused the connection (DM, FRMR, or a UA that cannot be used).
    LinkRefused(String),
    /// The meter refused the association for a reason other than keys.
    AssociationRefused(String),
    /// The meter and the profile do not share keys: deciphering-error, a tag
    /// that does not verify, HLS refused.
    Keys(String),
    /// The meter refused the invocation counter.
    Counter(String),
    /// The association worked; reading the probe object did not.
    ReadFailed(String),
    /// The meter answered and served the probe, but broke the protocol on the
    /// way (a wrong invoke-id, a counter that repeats, a plain response to a
    /// protected request). It is alive; the cases about that fault judge it.
    Violation(String),
    /// The device profile cannot express the probe (a role it does not map).
    Profile(String),
}

/// A failed probe: which client, what was tried, why it failed, and the traffic.
#[derive(Debug, Clone)]
pub struct ProbeFailure {
    /// e.g. `the public client (SAP 16)`.
    pub client: String,
    /// e.g. `associate as the public client (SAP 16) and read class 1 0-0:42.0.0.255 attribute 2`.
    pub tried: String,
    pub cause: Cause,
    pub traffic: Vec<TrafficRecord>,
}

impl ProbeFailure {
    /// What went wrong, one line without the target: e.g.
    /// `nothing is listening there (connection refused)`.
    pub fn reason(&self) -> String {
        match &self.cause {
            Cause::NothingListening => "nothing is listening there (connection refused)".into(),
            Cause::CannotConnect(why) => format!("no connection: {why}"),
            Cause::NoReply { waited, to } => format!(
                "connected, but no reply to the {to} within {}",
                humantime::format_duration(*waited)
            ),
            Cause::Closed { to } => {
                format!(
                    "connected, but the meter closed the connection instead of answering the {to}"
                )
            }
            Cause::Garbled(why) => format!("the reply is not what this transport carries: {why}"),
            Cause::LinkRefused(why) => format!("the HDLC connection was refused: {why}"),
            Cause::AssociationRefused(why) => {
                format!(
                    "the meter refused the association of {}: {why}",
                    self.client
                )
            }
            Cause::Keys(why) => format!("{} could not associate: {why}", self.client),
            Cause::Counter(why) => {
                format!(
                    "the meter refused the invocation counter of {}: {why}",
                    self.client
                )
            }
            Cause::ReadFailed(why) => format!("{} associated, but {why}", self.client),
            Cause::Violation(why) => format!("the meter answered {}, but {why}", self.client),
            Cause::Profile(why) => why.clone(),
        }
    }

    /// The likely cause and what to check.
    pub fn hint(&self) -> &'static str {
        match &self.cause {
            Cause::NothingListening => {
                "the address or port is wrong, or the meter (or its TCP server) is off"
            }
            Cause::CannotConnect(_) => {
                "the host is unreachable or a firewall drops the connection, or the serial port \
                 does not exist, is in use or may not be opened by this user"
            }
            Cause::NoReply { to: "SNRM", .. } => {
                "wrong transport or address: HDLC at a meter that speaks the wrapper \
                 (use tcp://), a wrong HDLC server address or baud rate, \
                 or a port that accepts connections but is not the meter"
            }
            Cause::NoReply { .. } => {
                "wrong transport or address: tcp:// (the wrapper) at a meter that speaks HDLC \
                 (use hdlc+tcp://), a wrong wPort, \
                 or a port that accepts connections but is not the meter"
            }
            Cause::Closed { .. } => {
                "wrong transport (HDLC at a wrapper port or the reverse), a wrong wPort or address, \
                 or the meter serves another client and takes no second connection"
            }
            Cause::Garbled(_) => {
                "wrong transport (HDLC at a wrapper port or the reverse), or another protocol on that port"
            }
            Cause::LinkRefused(_) => {
                "a wrong HDLC server or client address in the device profile, or the meter is busy with another client"
            }
            Cause::AssociationRefused(_) => {
                "check the client's SAP, mechanism and password and the logical device (wPort or HDLC address) in the device profile"
            }
            Cause::Keys(_) => {
                "check the keys: the encryption and authentication keys (and the system title) \
                 of this client in the device profile do not match the meter's"
            }
            Cause::Counter(_) => {
                "the meter has seen a higher invocation counter for this key: keep counters between runs with --state, \
                 or let the public client read the counter object"
            }
            Cause::ReadFailed(_) => {
                "check the `probe` object role in the device profile: it must name an object every client may read"
            }
            Cause::Profile(_) => "complete the device profile",
            Cause::Violation(_) => "a fault of the meter: the cases about it say more",
        }
    }

    /// Whether the meter failed to serve the probe. A meter that served it with
    /// a protocol fault ([`Cause::Violation`]) is alive, and can be tested.
    pub fn not_served(&self) -> bool {
        !matches!(self.cause, Cause::Violation(_))
    }

    /// Whether the meter is lost: it did not serve the probe, and not because
    /// the device profile cannot express one.
    pub fn means_lost(&self) -> bool {
        self.not_served() && !matches!(self.cause, Cause::Profile(_))
    }

    /// The full message for a person: what failed, what was tried, the likely cause.
    pub fn explain(&self, target: &str) -> String {
        format!(
            "could not test {target}: {}\n  tried: {}\n  likely cause: {}",
            self.reason(),
            self.tried,
            self.hint()
        )
    }
}

/// A probe that passed.
#[derive(Debug, Clone)]
pub struct ProbeOk {
    /// The value of the probe object's attribute 2.
    pub value: Data,
    /// The value of an invocation counter object read on the same association, when asked and readable.
    pub counter: Option<u32>,
    pub traffic: Vec<TrafficRecord>,
}

fn describe_client(c: &ClientProfile) -> String {
    format!("the {} client (SAP {})", c.name, c.sap)
}

/// Names a client error of the stage `to` (the request that got no good answer).
fn cause_of(e: ClientError, to: &'static str, ciphered: bool) -> Cause {
    match e {
        ClientError::Link(l) => cause_of_link(l, to),
        ClientError::Session(SessionError::Cipher(CipherError::Security(
            SecurityError::TagMismatch,
        ))) if ciphered => Cause::Keys(format!(
            "the meter's reply to the {to} does not verify under the profile's keys"
        )),
        ClientError::Session(SessionError::MissingKey(which)) => Cause::Profile(format!(
            "the device profile gives no {which} for the client"
        )),
        ClientError::Session(s) => Cause::Violation(s.to_string()),
        ClientError::Protocol(p) => Cause::Violation(p),
        ClientError::NotAssociated => Cause::Violation("the association did not open".into()),
    }
}

fn cause_of_link(l: LinkError, to: &'static str) -> Cause {
    match l {
        LinkError::Refused(_) => Cause::NothingListening,
        LinkError::Connect(why) => Cause::CannotConnect(why),
        LinkError::Timeout(waited) => Cause::NoReply { waited, to },
        LinkError::Closed => Cause::Closed { to },
        // The device stopped taking what is sent: as good as no reply.
        LinkError::Stalled { limit, .. } => Cause::NoReply { waited: limit, to },
        LinkError::Garbled(why) => Cause::Garbled(why),
        LinkError::Hdlc(why) if to == "SNRM" => Cause::LinkRefused(why),
        LinkError::Hdlc(why) => Cause::Garbled(format!("HDLC: {why}")),
        LinkError::Io(why) => Cause::CannotConnect(why),
        LinkError::Usage(why) => Cause::Profile(why),
    }
}

/// Names a refused association.
fn cause_of_refusal(r: &Refusal, ciphered: bool) -> Cause {
    let text = describe_refusal(r);
    if !ciphered {
        return Cause::AssociationRefused(text);
    }
    match r {
        Refusal::Exception(e) if e.service_error == ExceptionResponse::DECIPHERING_ERROR => {
            Cause::Keys(format!("the meter could not decipher the AARQ ({text})"))
        }
        Refusal::Exception(e) if e.service_error == ExceptionResponse::INVOCATION_COUNTER_ERROR => {
            Cause::Counter(text)
        }
        Refusal::Pass3Refused(_) => {
            Cause::Keys(format!("the meter refused the HLS reply f(StoC) ({text})"))
        }
        Refusal::Rejected { diagnostic, .. }
            if diagnostic.name() == diag::user_name(diag::AUTHENTICATION_FAILURE) =>
        {
            Cause::Keys(format!("the meter refused the authentication ({text})"))
        }
        _ => Cause::AssociationRefused(text),
    }
}

/// A refusal in the domain's words.
pub fn describe_refusal(r: &Refusal) -> String {
    match r {
        Refusal::Rejected {
            result,
            diagnostic,
            initiate_error,
        } => {
            let mut s = format!(
                "AARE {}, {diagnostic}",
                crate::wire::apdu::result::name(*result)
            );
            if let Some(e) = initiate_error {
                s.push_str(&format!(", {e}"));
            }
            s
        }
        Refusal::InitiateError(e) => format!("AARE with {e}"),
        Refusal::Exception(e) => e.to_string(),
        Refusal::Pass3Refused(r) => format!("HLS pass 3 answered with action-result {r}"),
    }
}

/// The longest a probe may take: connecting, SNRM, AARQ, pass 3, two GETs,
/// RLRQ and DISC, each bounded by the response timeout (HDLC may send a
/// request twice). Only a guard: every wait has its own bound.
pub fn time_limit(t: &TargetState) -> Duration {
    let r = t.profile.timeouts.response;
    t.profile
        .timeouts
        .connect
        .saturating_add(r.saturating_mul(14))
        .saturating_add(Duration::from_secs(1))
}

/// Probes `t` as the client playing `role`, on a fresh link of `kind`. For a
/// ciphered client the invocation counter continues from what the run knows
/// (the target's counters, the counter store, `counter_hint`), and the target's
/// counters are advanced by what the probe used. With `read_counter_of`, the
/// probe also reads that client's invocation counter object (for the
/// management probe that follows). Trace times count from `start`.
pub async fn probe(
    t: &mut TargetState,
    role: &str,
    kind: LinkKind,
    counter_hint: Option<u32>,
    read_counter_of: Option<Obis>,
    start: Instant,
) -> Result<ProbeOk, ProbeFailure> {
    let Some(pc) = t.profile.client_by_role(role).cloned() else {
        return Err(ProbeFailure {
            client: format!("the {role} client"),
            tried: format!("find the client that plays the `{role}` role"),
            cause: Cause::Profile(format!(
                "the device profile `{}` maps no client to the `{role}` role",
                t.profile.name
            )),
            traffic: vec![],
        });
    };
    let client = describe_client(&pc);
    let Some(object) = t.profile.object("probe", None) else {
        return Err(ProbeFailure {
            client,
            tried: "find the `probe` object".into(),
            cause: Cause::Profile(format!(
                "the device profile `{}` maps no object to the `probe` role",
                t.profile.name
            )),
            traffic: vec![],
        });
    };
    let how = match pc.mechanism {
        Mechanism::None => "no authentication".to_owned(),
        m => m.name().to_owned(),
    };
    let tried = format!(
        "associate as the {} client (SAP {}, {how}) and read {object} attribute 2",
        pc.name, pc.sap
    );
    let ciphered = pc.protection.is_ciphered() || pc.mechanism == Mechanism::HlsGmac;
    let ic = if ciphered {
        let stored = t
            .store
            .get(&CounterStore::key(&t.device_id, &pc))
            .unwrap_or(0);
        let known = t.counters.get(&pc.sap).copied().unwrap_or(0);
        let hinted = counter_hint.map_or(0, |c| c.saturating_add(1));
        stored.max(known).max(hinted).max(1)
    } else {
        0
    };
    let limit = time_limit(t);
    let mut traffic = Vec::new();
    let session = session(
        t,
        &pc,
        kind,
        ic,
        object.class_id,
        object.obis,
        read_counter_of,
        start,
        &mut traffic,
    );
    let outcome = match tokio::time::timeout(limit, session).await {
        Ok(r) => r,
        Err(_) => Err(Cause::NoReply {
            waited: limit,
            to: "probe",
        }),
    };
    for r in &mut traffic {
        r.decoded = format!("[probe, {client}] {}", r.decoded);
    }
    match outcome {
        Ok((value, counter, next_ic)) => {
            if let Some(next) = next_ic {
                let e = t.counters.entry(pc.sap).or_insert(0);
                *e = (*e).max(next);
                t.store.advance(&CounterStore::key(&t.device_id, &pc), next);
            }
            Ok(ProbeOk {
                value,
                counter,
                traffic,
            })
        }
        Err(cause) => {
            // A failed attempt may have used counters up to the GET: skip them.
            if ciphered {
                let e = t.counters.entry(pc.sap).or_insert(0);
                *e = (*e).max(ic.saturating_add(4));
            }
            Err(ProbeFailure {
                client,
                tried,
                cause,
                traffic,
            })
        }
    }
}

type SessionResult = Result<(Data, Option<u32>, Option<u32>), Cause>;

#[allow(clippy::too_many_arguments)]
async fn session(
    t: &TargetState,
    pc: &ClientProfile,
    kind: LinkKind,
    ic: u32,
    class_id: u16,
    obis: Obis,
    read_counter_of: Option<Obis>,
    start: Instant,
    traffic: &mut Vec<TrafficRecord>,
) -> SessionResult {
    let ciphered = ic > 0;
    let link = open::open(
        &t.spec,
        &t.profile,
        pc.sap,
        Some(kind),
        t.sim.as_ref(),
        start,
    )
    .await
    .map_err(|e| cause_of_link(e, "connection"))?;
    let mut c = Client::new(link);
    let r = exchange(&mut c, pc, ic, class_id, obis, read_counter_of, ciphered).await;
    if c.link.kind() == LinkKind::Hdlc && c.link.is_connected() {
        let _ = c.link.disconnect().await;
    }
    c.link.shutdown().await;
    // Violations of the link protocol are the cases' business, not the probe's.
    let _ = c.link.take_violations();
    traffic.extend(c.link.trace.take());
    r
}

async fn exchange(
    c: &mut Client,
    pc: &ClientProfile,
    ic: u32,
    class_id: u16,
    obis: Obis,
    read_counter_of: Option<Obis>,
    ciphered: bool,
) -> SessionResult {
    if c.link.kind() == LinkKind::Hdlc {
        c.link
            .connect()
            .await
            .map_err(|e| cause_of_link(e, "SNRM"))?;
    }
    let mut challenge = vec![0u8; 16];
    if getrandom::fill(&mut challenge).is_err() {
        let nanos = Instant::now().elapsed().subsec_nanos().to_be_bytes();
        for (i, b) in challenge.iter_mut().enumerate() {
            *b = nanos.get(i % 4).copied().unwrap_or(0) ^ (i as u8);
        }
    }
    let req = AssociationRequest::from_profile(pc, challenge, ic);
    match c.associate(req, false).await {
        Ok(AssociateOutcome::Associated) => {}
        Ok(AssociateOutcome::Refused(r)) => {
            return Err(cause_of_refusal(&r, ciphered));
        }
        Err(e) => return Err(cause_of(e, "AARQ", ciphered)),
    }
    let value = match c
        .get(AttributeDescriptor {
            class_id,
            instance: obis,
            attribute_id: 2,
        })
        .await
    {
        Ok(GetOutcome::Data(d)) => d,
        Ok(GetOutcome::Error(e)) => {
            return Err(Cause::ReadFailed(format!(
                "reading class {class_id} {obis} attribute 2 gave {}",
                e.name()
            )));
        }
        Ok(GetOutcome::Exception(e)) => {
            let cause = if ciphered && e.service_error == ExceptionResponse::DECIPHERING_ERROR {
                Cause::Keys(format!("the meter could not decipher the GET ({e})"))
            } else {
                Cause::ReadFailed(format!(
                    "reading class {class_id} {obis} attribute 2 gave {e}"
                ))
            };
            return Err(cause);
        }
        Ok(GetOutcome::Other(a)) => {
            return Err(Cause::ReadFailed(format!(
                "reading class {class_id} {obis} attribute 2 gave {a}"
            )));
        }
        Err(e) => return Err(cause_of(e, "GET", ciphered)),
    };
    let counter = match read_counter_of {
        Some(o) => match c
            .get(AttributeDescriptor {
                class_id: 1,
                instance: o,
                attribute_id: 2,
            })
            .await
        {
            Ok(GetOutcome::Data(d)) => d.as_integer().and_then(|i| u32::try_from(i).ok()),
            _ => None,
        },
        None => None,
    };
    // Closing the TCP connection or the HDLC link ends the association
    // (Green Book: the AA goes with its supporting layer); over UDP nothing
    // does but a release. A release the meter does not answer does not make
    // it dead.
    let live_ic = c
        .assoc
        .as_ref()
        .and_then(|a| a.cipher.as_ref())
        .map(|x| x.next_ic);
    if c.link.kind() == LinkKind::Udp {
        let protected = c.assoc.as_ref().is_some_and(|a| a.ciphered());
        let _ = c.release(protected).await;
    }
    let next_ic = c.ended_next_ic.or(live_ic.map(|n| n.saturating_add(1)));
    Ok((value, counter, next_ic))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::server::SimHandle;
    use crate::sim::{Meter, MeterConfig, Quirk, Quirks};

    fn sim_target(quirks: Quirks, profile: crate::profile::DeviceProfile) -> TargetState {
        let sim = SimHandle::new(Meter::new(MeterConfig::default(), quirks));
        TargetState::new(
            "sim".parse().unwrap(),
            profile,
            Some(sim),
            false,
            CounterStore::memory(),
        )
    }

    fn tcp_target(port: u16, response: Duration) -> TargetState {
        let mut profile = crate::profile::DeviceProfile::default();
        profile.timeouts.response = response;
        profile.timeouts.connect = response;
        TargetState::new(
            format!("tcp://127.0.0.1:{port}").parse().unwrap(),
            profile,
            None,
            false,
            CounterStore::memory(),
        )
    }

    #[tokio::test]
    async fn the_conformant_simulator_serves_the_public_and_the_management_probe() {
        let mut t = sim_target(
            Quirks::none(),
            crate::profile::DeviceProfile::for_simulator(),
        );
        let counter_object = t.profile.client(1).map(|c| c.counter_object);
        let public = probe(
            &mut t,
            "public",
            LinkKind::Wrapper,
            None,
            counter_object,
            Instant::now(),
        )
        .await
        .unwrap();
        assert!(matches!(public.value, Data::OctetString(_)));
        let seen = public.counter.expect("the public client reads the counter");
        probe(
            &mut t,
            "management",
            LinkKind::Hdlc,
            Some(seen),
            None,
            Instant::now(),
        )
        .await
        .unwrap();
        // The counters the probe used are not used again.
        assert!(t.counters.get(&1).copied().unwrap_or(0) > seen.saturating_add(1));
    }

    #[tokio::test]
    async fn a_wrong_management_key_says_check_the_keys() {
        let mut profile = crate::profile::DeviceProfile::for_simulator();
        if let Some(c) = profile.client_mut(1) {
            c.encryption_key = Some("00112233445566778899AABBCCDDEEFF".parse().unwrap());
        }
        let mut t = sim_target(Quirks::none(), profile);
        let f = probe(
            &mut t,
            "management",
            LinkKind::Wrapper,
            None,
            None,
            Instant::now(),
        )
        .await
        .unwrap_err();
        assert!(matches!(f.cause, Cause::Keys(_)), "{f:?}");
        assert!(f.hint().starts_with("check the keys"));
        assert!(f.reason().contains("deciphering-error"), "{}", f.reason());
        assert!(f.not_served() && f.means_lost());
    }

    #[tokio::test]
    async fn a_protocol_fault_is_a_meter_that_answers() {
        let mut quirks = Quirks::none();
        quirks.insert(Quirk::WrongInvokeId);
        let mut t = sim_target(quirks, crate::profile::DeviceProfile::for_simulator());
        // A wrong invoke-id is noted for MONITOR_INVOKE_ID, not held against the probe.
        let ok = probe(
            &mut t,
            "public",
            LinkKind::Wrapper,
            None,
            None,
            Instant::now(),
        )
        .await;
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[tokio::test]
    async fn nothing_listening_is_named() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut t = tcp_target(port, Duration::from_secs(2));
        let f = probe(
            &mut t,
            "public",
            LinkKind::Wrapper,
            None,
            None,
            Instant::now(),
        )
        .await
        .unwrap_err();
        assert_eq!(f.cause, Cause::NothingListening);
        assert_eq!(
            f.explain("tcp://x").lines().next(),
            Some("could not test tcp://x: nothing is listening there (connection refused)")
        );
    }

    #[tokio::test]
    async fn a_port_that_never_answers_is_no_reply_to_the_aarq() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let mut t = tcp_target(port, Duration::from_millis(300));
        let f = tokio::time::timeout(
            Duration::from_secs(30),
            probe(
                &mut t,
                "public",
                LinkKind::Wrapper,
                None,
                None,
                Instant::now(),
            ),
        )
        .await
        .expect("the probe is bounded by the profile's timeouts")
        .unwrap_err();
        hold.abort();
        assert!(
            matches!(f.cause, Cause::NoReply { to: "AARQ", .. }),
            "{f:?}"
        );
        assert!(f.hint().contains("use hdlc+tcp://"));
    }

    #[test]
    fn refusals_of_a_ciphered_client_point_at_keys_or_counters() {
        let exc = |service| {
            Refusal::Exception(ExceptionResponse {
                state_error: 1,
                service_error: service,
                invocation_counter: None,
            })
        };
        assert!(matches!(cause_of_refusal(&exc(5), true), Cause::Keys(_)));
        assert!(matches!(cause_of_refusal(&exc(6), true), Cause::Counter(_)));
        assert!(matches!(
            cause_of_refusal(&exc(5), false),
            Cause::AssociationRefused(_)
        ));
        let rejected = Refusal::Rejected {
            result: 1,
            diagnostic: crate::wire::apdu::AcseDiagnostic::User(diag::AUTHENTICATION_FAILURE),
            initiate_error: None,
        };
        assert!(matches!(cause_of_refusal(&rejected, true), Cause::Keys(_)));
        assert_eq!(
            describe_refusal(&rejected),
            "AARE rejected-permanent, user diagnostic authentication-failure(13)"
        );
    }
}
