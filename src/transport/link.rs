//! A link to a device: the wrapper over a byte stream (TCP) or over UDP, or
//! HDLC over a byte stream (TCP, serial, or the in-process simulator). Every
//! read has a deadline; everything sent and received goes into the [`Trace`].

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;

use crate::runner::event::{Direction, TrafficRecord};
use crate::session::hdlc::{ClientConfig, ClientEvent, HdlcClient};
use crate::transport::port::{PortLease, SharedPort};
use crate::wire::apdu::Apdu;
use crate::wire::hdlc::{Address, Control, FLAG, FrameRepr, LinkParams, MAX_FRAME_LEN};
use crate::wire::wrapper::{HEADER_LEN, WrapperDeframer, WrapperFrame};

/// Any byte stream a link can run over.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for T {}

/// A boxed byte stream.
pub type BoxStream = Box<dyn ByteStream>;

/// Why a link operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("no reply within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("the device closed the connection")]
    Closed,
    /// A write did not complete in time: the device stopped reading.
    #[error(
        "the device did not take {len} byte(s) within {} (it stopped reading, or flow control held the line)",
        humantime::format_duration(*limit)
    )]
    Stalled { len: usize, limit: Duration },
    #[error("cannot connect: {0}")]
    Connect(String),
    /// Nothing listens at the address: the connection was refused.
    #[error("nothing is listening at {0} (connection refused)")]
    Refused(String),
    #[error("I/O error: {0}")]
    Io(String),
    /// The device sent something, but nothing valid: the text says what.
    #[error("{0}")]
    Garbled(String),
    #[error("HDLC: {0}")]
    Hdlc(String),
    #[error("{0}")]
    Usage(String),
}

impl From<std::io::Error> for LinkError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionAborted => LinkError::Closed,
            _ => LinkError::Io(e.to_string()),
        }
    }
}

/// The kind of link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkKind {
    Wrapper,
    Udp,
    Hdlc,
}

impl LinkKind {
    /// The device feature a case requires to run on this kind of link.
    pub fn feature(self) -> &'static str {
        match self {
            LinkKind::Wrapper => "wrapper",
            LinkKind::Udp => "udp",
            LinkKind::Hdlc => "hdlc",
        }
    }
}

/// What came back, for steps that do not know what to expect.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A complete APDU.
    Apdu(Vec<u8>),
    /// An HDLC frame other than an I-frame carrying an APDU (UA, DM, FRMR, RR, ...).
    Frame(FrameRepr),
    /// A wrapper frame from an unexpected wPort, or with a wrong version.
    Wrapper(WrapperFrame),
    /// The device closed the connection.
    Closed,
    /// Nothing within the wait.
    Silence,
}

/// The traffic of a link, recorded as it happens.
#[derive(Debug)]
pub struct Trace {
    start: Instant,
    records: Vec<TrafficRecord>,
    enabled: bool,
}

impl Trace {
    pub fn new(start: Instant) -> Self {
        Trace {
            start,
            records: Vec::new(),
            enabled: true,
        }
    }
    /// Switches recording on (the default) or off. Off, nothing is recorded and
    /// the links skip describing what they send and receive: for load and
    /// throughput runs, where the trace would cost more than the protocol.
    pub fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
    }
    /// Whether records are kept.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }
    pub fn record(
        &mut self,
        direction: Direction,
        layer: &'static str,
        bytes: &[u8],
        decoded: String,
    ) {
        if !self.enabled {
            return;
        }
        self.records.push(TrafficRecord {
            at: self.start.elapsed(),
            direction,
            layer,
            hex: hex::encode_upper(bytes),
            decoded,
        });
    }
    pub fn note(&mut self, text: impl Into<String>) {
        self.record(Direction::Note, "note", &[], text.into());
    }
    /// When the trace started (its records' times count from here).
    pub fn start(&self) -> Instant {
        self.start
    }
    /// Adds records taken from another trace with the same start.
    pub fn append(&mut self, records: Vec<TrafficRecord>) {
        if self.enabled {
            self.records.extend(records);
        }
    }
    /// Takes the records so far.
    pub fn take(&mut self) -> Vec<TrafficRecord> {
        std::mem::take(&mut self.records)
    }
    pub fn len(&self) -> usize {
        self.records.len()
    }
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// Describes an APDU for the trace (ciphered APDUs show only their envelope here).
pub fn describe_apdu(bytes: &[u8]) -> String {
    match Apdu::decode(bytes) {
        Ok(a) => a.to_string(),
        Err(e) => format!("undecodable APDU: {e}"),
    }
}

/// Records of unusual traffic (invalid frames, noise, frames for someone else)
/// kept in the trace per wait; the rest is only counted, so that a device
/// flooding the line cannot grow the trace without bound.
const TRACE_QUOTA: usize = 16;
/// Bytes of an invalid frame or of noise shown in one trace record.
const SHOW: usize = 256;
/// Received HDLC bytes remembered, to show the incomplete frame the deframer
/// holds (it holds at most about two maximum frames).
const TAIL_KEEP: usize = 3 * MAX_FRAME_LEN;

/// What arrived during one wait that was no valid answer: named in the error
/// when the wait ends without one.
#[derive(Debug, Clone, Default)]
struct Heard {
    invalid: usize,
    first_invalid: Option<String>,
    noise: u64,
    foreign: usize,
    first_foreign: Option<String>,
    incomplete: usize,
    quota: usize,
    unrecorded: usize,
}

impl Heard {
    fn new() -> Self {
        Heard {
            quota: TRACE_QUOTA,
            ..Heard::default()
        }
    }

    fn is_empty(&self) -> bool {
        self.invalid == 0 && self.noise == 0 && self.foreign == 0 && self.incomplete == 0
    }

    /// Takes a place in the trace; false once this wait's quota is spent.
    fn slot(&mut self) -> bool {
        if self.quota > 0 {
            self.quota -= 1;
            true
        } else {
            self.unrecorded = self.unrecorded.saturating_add(1);
            false
        }
    }

    fn invalid(&mut self, what: String) {
        self.invalid = self.invalid.saturating_add(1);
        self.first_invalid.get_or_insert(what);
    }

    fn foreign(&mut self, what: String) {
        self.foreign = self.foreign.saturating_add(1);
        self.first_foreign.get_or_insert(what);
    }

    fn describe(&self) -> String {
        fn counted(n: usize, one: &str, many: &str, first: &Option<String>) -> String {
            let first = first.as_deref().unwrap_or("?");
            if n == 1 {
                format!("1 {one} ({first})")
            } else {
                format!("{n} {many} (the first: {first})")
            }
        }
        let mut parts = Vec::new();
        if self.invalid > 0 {
            parts.push(counted(
                self.invalid,
                "invalid frame",
                "invalid frames",
                &self.first_invalid,
            ));
        }
        if self.foreign > 0 {
            parts.push(counted(
                self.foreign,
                "frame not for us",
                "frames not for us",
                &self.first_foreign,
            ));
        }
        if self.noise > 0 {
            parts.push(format!(
                "{} byte(s) of line noise outside any frame",
                self.noise
            ));
        }
        if self.incomplete > 0 {
            parts.push(format!(
                "{} byte(s) of an incomplete frame",
                self.incomplete
            ));
        }
        parts.join(", ")
    }
}

/// Describes the start of a wrapper frame that never completed.
fn wrapper_partial(raw: &[u8]) -> String {
    match raw.get(6..8) {
        Some(&[a, b]) => format!(
            "{} of {} payload byte(s)",
            raw.len().saturating_sub(HEADER_LEN),
            u16::from_be_bytes([a, b])
        ),
        _ => format!("{} of the {HEADER_LEN} header bytes", raw.len()),
    }
}

fn shown(bytes: &[u8]) -> &[u8] {
    bytes.get(..SHOW).unwrap_or(bytes)
}

/// Records the incomplete frame the HDLC deframer holds, if any (a lone flag,
/// the closing flag of the last frame, is not one).
fn note_incomplete(trace: &mut Trace, heard: &mut Heard, tail: &[u8], held: usize, when: &str) {
    let held_bytes = tail
        .get(tail.len().saturating_sub(held)..)
        .unwrap_or_default();
    if held_bytes.iter().all(|&b| b == FLAG) {
        return;
    }
    heard.incomplete = held;
    trace.record(
        Direction::Received,
        "hdlc",
        shown(held_bytes),
        format!("incomplete frame: {held} byte(s), {when}"),
    );
}

/// Addresses and timing of a link.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    /// Client SAP: HDLC source address, wrapper source wPort.
    pub client: u16,
    /// Wrapper destination wPort.
    pub server_wport: u16,
    /// HDLC server address.
    pub server_address: Address,
    /// Proposed HDLC parameters.
    pub hdlc_proposal: Option<LinkParams>,
    /// Longest wait for a reply.
    pub response_timeout: Duration,
    /// Largest wrapper payload accepted.
    pub max_payload: usize,
    /// For a serial line, the bytes it carries a second at its slowest rate:
    /// a write may take that long on top of the response timeout before it
    /// counts as stalled.
    pub line_bytes_per_second: Option<u32>,
}

impl LinkSettings {
    /// How long writing `len` bytes may take: the response timeout, plus the
    /// time the bytes take on a serial line.
    pub fn write_limit(&self, len: usize) -> Duration {
        let on_line = match self.line_bytes_per_second {
            Some(rate) => Duration::from_secs_f64(len as f64 / f64::from(rate.max(1))),
            None => Duration::ZERO,
        };
        self.response_timeout.saturating_add(on_line)
    }
}

enum Inner {
    Wrapper {
        stream: BoxStream,
        deframer: WrapperDeframer,
        /// The bytes the deframer holds (a frame not yet complete), for the trace.
        raw: Vec<u8>,
        /// Set when a frame did not decode: the stream has no delimiter to
        /// resynchronise on, so nothing after it can be trusted.
        out_of_step: Option<String>,
    },
    Udp {
        socket: UdpSocket,
        peer: SocketAddr,
    },
    Hdlc {
        stream: BoxStream,
        client: Box<HdlcClient>,
        /// The last bytes received, to show an incomplete frame in the trace.
        tail: Vec<u8>,
        /// The shared physical port this link runs on, when it has one.
        port: Option<PortLease>,
    },
}

/// Writes `bytes` and flushes, within `limit`: a device that stops reading
/// (its TCP receive window full, or flow control held on a serial line) would
/// otherwise stall the write, and the harness, for ever.
async fn write_within(
    stream: &mut BoxStream,
    bytes: &[u8],
    limit: Duration,
) -> Result<(), LinkError> {
    let write = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    match tokio::time::timeout(limit, write).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(LinkError::Stalled {
            len: bytes.len(),
            limit,
        }),
    }
}

/// Sends one datagram within `limit`.
async fn send_within(
    socket: &UdpSocket,
    bytes: &[u8],
    peer: SocketAddr,
    limit: Duration,
) -> Result<(), LinkError> {
    match tokio::time::timeout(limit, socket.send_to(bytes, peer)).await {
        Ok(r) => r.map(|_| ()).map_err(LinkError::from),
        Err(_) => Err(LinkError::Stalled {
            len: bytes.len(),
            limit,
        }),
    }
}

/// A link to a device.
pub struct Link {
    inner: Inner,
    settings: LinkSettings,
    pub trace: Trace,
    closed: bool,
    /// What the current (or last) wait received besides a valid answer.
    heard: Heard,
    /// Description of where this link goes, for messages.
    pub description: String,
    /// Protocol violations by the device seen on this link, not yet taken.
    violations: Vec<String>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("kind", &self.kind())
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

impl Link {
    /// A link over `inner`, with nothing heard or traced yet.
    fn new(inner: Inner, settings: LinkSettings, description: String, start: Instant) -> Self {
        Link {
            inner,
            settings,
            trace: Trace::new(start),
            closed: false,
            heard: Heard::new(),
            description,
            violations: Vec::new(),
        }
    }

    /// A wrapper link over a byte stream.
    pub fn wrapper(
        stream: BoxStream,
        settings: LinkSettings,
        description: String,
        start: Instant,
    ) -> Self {
        let deframer = WrapperDeframer::new(settings.max_payload);
        let inner = Inner::Wrapper {
            stream,
            deframer,
            raw: Vec::new(),
            out_of_step: None,
        };
        Link::new(inner, settings, description, start)
    }

    /// A wrapper link over UDP.
    pub fn udp(
        socket: UdpSocket,
        peer: SocketAddr,
        settings: LinkSettings,
        description: String,
        start: Instant,
    ) -> Self {
        Link::new(Inner::Udp { socket, peer }, settings, description, start)
    }

    /// An HDLC link over a byte stream (not yet connected: call [`Link::connect`]).
    pub fn hdlc(
        stream: BoxStream,
        settings: LinkSettings,
        description: String,
        start: Instant,
    ) -> Self {
        let per_try = (settings.response_timeout / 2).max(Duration::from_millis(50));
        let client = HdlcClient::new(ClientConfig {
            client: Address::client(settings.client.min(0x7F) as u8),
            server: settings.server_address,
            proposal: settings.hdlc_proposal,
            response_timeout: per_try,
            retries: 1,
        });
        let inner = Inner::Hdlc {
            stream,
            client: Box::new(client),
            tail: Vec::new(),
            port: None,
        };
        Link::new(inner, settings, description, start)
    }

    /// An HDLC link on a shared physical port ([`crate::transport::port`]),
    /// keeping `trace` (what the port did to hand this link the line).
    pub fn hdlc_on_port(
        lease: PortLease,
        settings: LinkSettings,
        description: String,
        trace: Trace,
    ) -> Self {
        let mut link = Link::hdlc(
            Box::new(lease.clone()),
            settings,
            description,
            trace.start(),
        );
        link.trace = trace;
        if let Inner::Hdlc { port, .. } = &mut link.inner {
            *port = Some(lease);
        }
        link
    }

    /// The shared physical port this link runs on, if any.
    pub fn port(&self) -> Option<SharedPort> {
        match &self.inner {
            Inner::Hdlc { port: Some(p), .. } => Some(p.port()),
            _ => None,
        }
    }

    /// Was this link's physical port handed to another link since?
    pub fn lost_its_port(&self) -> bool {
        matches!(&self.inner, Inner::Hdlc { port: Some(p), .. } if !p.is_current())
    }

    pub fn kind(&self) -> LinkKind {
        match self.inner {
            Inner::Wrapper { .. } => LinkKind::Wrapper,
            Inner::Udp { .. } => LinkKind::Udp,
            Inner::Hdlc { .. } => LinkKind::Hdlc,
        }
    }

    pub fn settings(&self) -> &LinkSettings {
        &self.settings
    }

    /// The HDLC client state machine, for hand-made frames.
    pub fn hdlc_client(&self) -> Option<&HdlcClient> {
        match &self.inner {
            Inner::Hdlc { client, .. } => Some(client),
            _ => None,
        }
    }

    /// The HDLC client state machine, mutable (to record hand-made frames).
    pub fn hdlc_client_mut(&mut self) -> Option<&mut HdlcClient> {
        match &mut self.inner {
            Inner::Hdlc { client, .. } => Some(client),
            _ => None,
        }
    }

    /// Is the HDLC link up (always true for the wrapper)?
    pub fn is_connected(&self) -> bool {
        match &self.inner {
            Inner::Hdlc { client, .. } => !self.closed && client.is_connected(),
            _ => !self.closed,
        }
    }

    /// Opens the data link: SNRM/UA for HDLC; nothing for the wrapper. On a
    /// mode E port, the link signs on first when the meter waits for it (this
    /// link sent DISC, or sat idle past the inactivity timeout), and an SNRM
    /// that goes unanswered is tried once more after a new sign-on: the meter
    /// may have gone back to it on its own.
    pub async fn connect(&mut self) -> Result<LinkParams, LinkError> {
        let lease = match &self.inner {
            Inner::Hdlc { port: Some(p), .. } => p.clone(),
            _ => return self.connect_once().await,
        };
        if lease.needs_sign_on() {
            // This link sent DISC, or sat idle past the inactivity timeout.
            lease.sign_on_again(&mut self.trace).await?;
        }
        let first = self.connect_once().await;
        match first {
            Err(LinkError::Timeout(_) | LinkError::Garbled(_)) if lease.port().is_mode_e() => {
                self.trace.note(
                    "no answer to SNRM: signing on again (the meter may be back at its IEC 62056-21 sign-on)",
                );
                lease.sign_on_again(&mut self.trace).await?;
                self.connect_once().await
            }
            other => other,
        }
    }

    /// SNRM/UA without the mode E sign-on (for the port's own use, while it
    /// hands the line over).
    pub(crate) async fn connect_without_sign_on(&mut self) -> Result<LinkParams, LinkError> {
        self.connect_once().await
    }

    async fn connect_once(&mut self) -> Result<LinkParams, LinkError> {
        let timeout = self.settings.response_timeout;
        let Inner::Hdlc { client, .. } = &mut self.inner else {
            return Ok(LinkParams::default());
        };
        client.connect(Instant::now());
        self.heard = Heard::new();
        let ev = self
            .drive_hdlc(timeout, |e, busy| {
                matches!(
                    e,
                    ClientEvent::Connected(_)
                        | ClientEvent::ConnectRefused
                        | ClientEvent::FrameRejected(_)
                        | ClientEvent::Timeout(_)
                ) || (!busy && matches!(e, ClientEvent::Violation(_)))
            })
            .await;
        self.note_unrecorded();
        match ev {
            Ok(ClientEvent::Connected(p)) => Ok(p),
            Ok(ClientEvent::ConnectRefused) => {
                Err(LinkError::Hdlc("the device answered SNRM with DM".into()))
            }
            Ok(ClientEvent::FrameRejected(info)) => Err(LinkError::Hdlc(format!(
                "the device answered SNRM with FRMR {}",
                hex::encode_upper(info)
            ))),
            // A violation that ended the SNRM exchange: a UA the client cannot use.
            Ok(ClientEvent::Violation(v)) => Err(LinkError::Hdlc(format!(
                "the device answered SNRM with a UA the link cannot use: {v}"
            ))),
            Ok(ClientEvent::Timeout(_)) | Err(LinkError::Timeout(_)) => {
                Err(self.silence_error(timeout))
            }
            Ok(other) => Err(LinkError::Hdlc(format!("unexpected {other}"))),
            Err(e) => Err(e),
        }
    }

    /// Closes the data link: DISC for HDLC (waits for UA or DM); nothing for the wrapper.
    pub async fn disconnect(&mut self) -> Result<(), LinkError> {
        let timeout = self.settings.response_timeout;
        let Inner::Hdlc { client, .. } = &mut self.inner else {
            return Ok(());
        };
        client.disconnect(Instant::now());
        self.heard = Heard::new();
        let ev = self
            .drive_hdlc(timeout, |e, _| {
                matches!(
                    e,
                    ClientEvent::Disconnected { .. }
                        | ClientEvent::Timeout(_)
                        | ClientEvent::FrameRejected(_)
                )
            })
            .await;
        if let Inner::Hdlc { port: Some(p), .. } = &self.inner {
            // Whatever the answer, a mode E meter that got it is back at its sign-on.
            p.disc_sent();
        }
        self.note_unrecorded();
        match ev {
            Ok(ClientEvent::Disconnected { .. }) => Ok(()),
            Ok(ClientEvent::Timeout(_)) | Err(LinkError::Timeout(_)) => {
                Err(self.silence_error(timeout))
            }
            Ok(other) => Err(LinkError::Hdlc(format!("unexpected {other} to DISC"))),
            Err(e) => Err(e),
        }
    }

    /// The error for a wait that ended without a valid answer: silence, or
    /// what came instead.
    fn silence_error(&self, wait: Duration) -> LinkError {
        if self.heard.is_empty() {
            LinkError::Timeout(wait)
        } else {
            LinkError::Garbled(format!(
                "no valid reply within {}; received {}",
                humantime::format_duration(wait),
                self.heard.describe()
            ))
        }
    }

    /// Notes in the trace how much unusual traffic the last wait did not record.
    fn note_unrecorded(&mut self) {
        let n = std::mem::take(&mut self.heard.unrecorded);
        if n > 0 {
            self.trace.note(format!(
                "{n} more invalid frame(s), noise or frame(s) not for us were received but not recorded"
            ));
        }
    }

    /// Sends an APDU and waits for the response APDU.
    pub async fn request(&mut self, apdu: &[u8]) -> Result<Vec<u8>, LinkError> {
        self.send_apdu(apdu).await?;
        let t = self.settings.response_timeout;
        self.recv_apdu(t).await
    }

    /// Sends an APDU.
    pub async fn send_apdu(&mut self, apdu: &[u8]) -> Result<(), LinkError> {
        if self.closed {
            return Err(LinkError::Closed);
        }
        let (client, wport) = (self.settings.client, self.settings.server_wport);
        let settings = &self.settings;
        match &mut self.inner {
            Inner::Wrapper { stream, .. } => {
                let f = WrapperFrame::new(client, wport, apdu.to_vec());
                let bytes = f.encode();
                if self.trace.is_enabled() {
                    self.trace.record(
                        Direction::Sent,
                        "apdu",
                        apdu,
                        format!("{} [{f}]", describe_apdu(apdu)),
                    );
                }
                write_within(stream, &bytes, settings.write_limit(bytes.len())).await?;
            }
            Inner::Udp { socket, peer } => {
                let f = WrapperFrame::new(client, wport, apdu.to_vec());
                self.trace.record(
                    Direction::Sent,
                    "apdu",
                    apdu,
                    format!("{} [{f}, UDP]", describe_apdu(apdu)),
                );
                let bytes = f.encode();
                send_within(socket, &bytes, *peer, settings.write_limit(bytes.len())).await?;
            }
            Inner::Hdlc { client, .. } => {
                client
                    .send_apdu(apdu, Instant::now())
                    .map_err(|e| LinkError::Hdlc(e.to_string()))?;
                self.trace
                    .record(Direction::Sent, "apdu", apdu, describe_apdu(apdu));
                self.flush_hdlc().await?;
            }
        }
        Ok(())
    }

    /// Waits for the next APDU.
    pub async fn recv_apdu(&mut self, timeout: Duration) -> Result<Vec<u8>, LinkError> {
        match self.recv_any(timeout).await? {
            Reply::Apdu(a) => Ok(a),
            Reply::Silence => Err(self.silence_error(timeout)),
            Reply::Closed => Err(LinkError::Closed),
            Reply::Frame(f) => Err(LinkError::Hdlc(match f.control {
                Control::Dm { .. } => {
                    format!("the device answered DM: the HDLC link is down (got {f})")
                }
                Control::Frmr { .. } => format!(
                    "the device rejected our frame with FRMR {} (got {f})",
                    hex::encode_upper(&f.info)
                ),
                _ => format!("expected an APDU, got {f}"),
            })),
            Reply::Wrapper(f) => Err(LinkError::Garbled(format!(
                "the device sent a wrapper frame from wPort {} to {} (expected {} to {})",
                f.source, f.destination, self.settings.server_wport, self.settings.client
            ))),
        }
    }

    /// Waits up to `wait` for whatever the device sends next.
    pub async fn recv_any(&mut self, wait: Duration) -> Result<Reply, LinkError> {
        if self.closed {
            return Ok(Reply::Closed);
        }
        self.heard = Heard::new();
        let r = match self.kind() {
            LinkKind::Wrapper => self.recv_wrapper(wait).await,
            LinkKind::Udp => self.recv_udp(wait).await,
            LinkKind::Hdlc => self.recv_hdlc(wait).await,
        };
        self.note_unrecorded();
        r
    }

    async fn recv_wrapper(&mut self, wait: Duration) -> Result<Reply, LinkError> {
        let deadline = tokio::time::Instant::now() + wait;
        let (client_sap, wport) = (self.settings.client, self.settings.server_wport);
        let Inner::Wrapper {
            stream,
            deframer,
            raw,
            out_of_step,
        } = &mut self.inner
        else {
            return Err(LinkError::Usage("not a wrapper link".into()));
        };
        if let Some(e) = out_of_step {
            return Err(LinkError::Garbled(format!(
                "the wrapper stream is out of step since a frame that did not decode ({e}); reconnect"
            )));
        }
        loop {
            match deframer.next_frame() {
                Some(Ok(f)) => {
                    raw.drain(..HEADER_LEN.saturating_add(f.payload.len()).min(raw.len()));
                    if self.trace.is_enabled() {
                        self.trace.record(
                            Direction::Received,
                            "apdu",
                            &f.payload,
                            format!("{} [{f}]", describe_apdu(&f.payload)),
                        );
                    }
                    return if f.source == wport && f.destination == client_sap {
                        Ok(Reply::Apdu(f.payload))
                    } else {
                        Ok(Reply::Wrapper(f))
                    };
                }
                Some(Err(e)) => {
                    // No delimiter to resynchronise on: the deframer keeps the error
                    // and every later read fails the same way (until a reconnect).
                    self.trace.record(
                        Direction::Received,
                        "wrapper",
                        shown(raw),
                        format!("garbled wrapper stream: {e}; what follows cannot be framed"),
                    );
                    raw.clear();
                    *out_of_step = Some(e.to_string());
                    return Err(LinkError::Garbled(format!(
                        "the device sent a wrapper frame that does not decode: {e}"
                    )));
                }
                None => {}
            }
            let mut buf = [0u8; 4096];
            // The deadline is checked before each read, so a device that never
            // stops sending cannot keep the wait going.
            let read = if tokio::time::Instant::now() >= deadline {
                None
            } else {
                tokio::time::timeout_at(deadline, stream.read(&mut buf))
                    .await
                    .ok()
            };
            let n = match read {
                None => {
                    if !raw.is_empty() {
                        self.heard.incomplete = raw.len();
                        self.trace.record(
                            Direction::Received,
                            "wrapper",
                            shown(raw),
                            format!(
                                "incomplete wrapper frame: {} when the wait ended",
                                wrapper_partial(raw)
                            ),
                        );
                    }
                    return Ok(Reply::Silence);
                }
                Some(r) => r?,
            };
            if n == 0 {
                self.closed = true;
                if !raw.is_empty() {
                    self.trace.record(
                        Direction::Received,
                        "wrapper",
                        shown(raw),
                        format!(
                            "truncated wrapper frame: {}, then the connection closed",
                            wrapper_partial(raw)
                        ),
                    );
                }
                self.trace.note("the device closed the connection");
                return Ok(Reply::Closed);
            }
            let chunk = buf.get(..n).unwrap_or_default();
            deframer.push(chunk);
            raw.extend_from_slice(chunk);
        }
    }

    async fn recv_udp(&mut self, wait: Duration) -> Result<Reply, LinkError> {
        let deadline = tokio::time::Instant::now() + wait;
        let (client_sap, wport) = (self.settings.client, self.settings.server_wport);
        let Inner::Udp { socket, peer } = &mut self.inner else {
            return Err(LinkError::Usage("not a UDP link".into()));
        };
        let mut buf = vec![0u8; 65_536];
        loop {
            if tokio::time::Instant::now() >= deadline {
                return Ok(Reply::Silence);
            }
            let (n, from) =
                match tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await {
                    Err(_) => return Ok(Reply::Silence),
                    Ok(r) => r?,
                };
            if from != *peer {
                self.heard.foreign(format!("a datagram from {from}"));
                if self.heard.slot() {
                    self.trace.note(format!("ignored a datagram from {from}"));
                }
                continue;
            }
            let d = buf.get(..n).unwrap_or_default();
            return match WrapperFrame::decode_datagram(d) {
                Ok(f) => {
                    self.trace.record(
                        Direction::Received,
                        "apdu",
                        &f.payload,
                        format!("{} [{f}, UDP]", describe_apdu(&f.payload)),
                    );
                    if f.source == wport && f.destination == client_sap {
                        Ok(Reply::Apdu(f.payload))
                    } else {
                        Ok(Reply::Wrapper(f))
                    }
                }
                Err(e) => {
                    self.trace.record(
                        Direction::Received,
                        "wrapper",
                        shown(d),
                        format!("bad datagram: {e}"),
                    );
                    Err(LinkError::Garbled(format!(
                        "the device sent a datagram that does not decode: {e}"
                    )))
                }
            };
        }
    }

    async fn recv_hdlc(&mut self, wait: Duration) -> Result<Reply, LinkError> {
        let ev = self
            .drive_hdlc(wait, |e, busy| {
                matches!(
                    e,
                    ClientEvent::Apdu(_)
                        | ClientEvent::Disconnected { .. }
                        | ClientEvent::FrameRejected(_)
                        | ClientEvent::Timeout(_)
                        | ClientEvent::ConnectRefused
                        | ClientEvent::Connected(_)
                ) || matches!(e, ClientEvent::FrameReceived(f)
                    // I-frames end in an Apdu event; while a segmented request is
                    // under way, RR is flow control, not an answer.
                    if !(matches!(f.control, Control::I { .. })
                        || busy && matches!(f.control, Control::Rr { .. })))
            })
            .await;
        match ev {
            Ok(ClientEvent::Apdu(a)) => {
                self.trace
                    .record(Direction::Received, "apdu", &a, describe_apdu(&a));
                Ok(Reply::Apdu(a))
            }
            Ok(ClientEvent::FrameReceived(f)) => Ok(Reply::Frame(f)),
            Ok(ClientEvent::Disconnected { .. }) => Ok(Reply::Closed),
            Ok(ClientEvent::Timeout(_)) | Err(LinkError::Timeout(_)) => Ok(Reply::Silence),
            Ok(other) => Err(LinkError::Hdlc(other.to_string())),
            Err(LinkError::Closed) => Ok(Reply::Closed),
            Err(e) => Err(e),
        }
    }

    /// Writes raw bytes onto the link (a hand-made frame); for UDP, one datagram.
    pub async fn send_raw(
        &mut self,
        bytes: &[u8],
        layer: &'static str,
        decoded: String,
    ) -> Result<(), LinkError> {
        if self.closed {
            return Err(LinkError::Closed);
        }
        self.trace.record(Direction::Sent, layer, bytes, decoded);
        // A hand-made frame that polls the device: its answer is polled for.
        if let Inner::Hdlc { client, .. } = &mut self.inner
            && let Ok(f) = FrameRepr::decode(bytes)
            && f.control.poll_final()
            && f.dest == client.config().server
        {
            client.note_raw_poll();
        }
        let limit = self.settings.write_limit(bytes.len());
        match &mut self.inner {
            Inner::Wrapper { stream, .. } | Inner::Hdlc { stream, .. } => {
                write_within(stream, bytes, limit).await?;
            }
            Inner::Udp { socket, peer } => {
                send_within(socket, bytes, *peer, limit).await?;
            }
        }
        Ok(())
    }

    /// Writes raw bytes in several writes with a pause between them (one APDU split across TCP segments).
    pub async fn send_raw_split(
        &mut self,
        bytes: &[u8],
        parts: usize,
        pause: Duration,
    ) -> Result<(), LinkError> {
        let parts = parts.clamp(1, bytes.len().max(1));
        let size = bytes.len().div_ceil(parts).max(1);
        for (i, chunk) in bytes.chunks(size).enumerate() {
            if i > 0 {
                tokio::time::sleep(pause).await;
            }
            self.send_raw(chunk, "wrapper", format!("part {} of {parts}", i + 1))
                .await?;
        }
        Ok(())
    }

    async fn flush_hdlc(&mut self) -> Result<(), LinkError> {
        let settings = &self.settings;
        let Inner::Hdlc { stream, client, .. } = &mut self.inner else {
            return Ok(());
        };
        while let Some(frame) = client.poll_transmit() {
            let desc = FrameRepr::decode(&frame)
                .map(|f| f.to_string())
                .unwrap_or_default();
            self.trace.record(Direction::Sent, "hdlc", &frame, desc);
            write_within(stream, &frame, settings.write_limit(frame.len())).await?;
        }
        Ok(())
    }

    /// Runs the HDLC client until `done` accepts an event or `wait` passes.
    /// `done` gets each event and whether an exchange is still under way.
    /// On the deadline the exchange under way is abandoned, so the next
    /// request can go out.
    async fn drive_hdlc(
        &mut self,
        wait: Duration,
        done: impl Fn(&ClientEvent, bool) -> bool,
    ) -> Result<ClientEvent, LinkError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            self.flush_hdlc().await?;
            let Link {
                inner,
                trace,
                heard,
                violations,
                ..
            } = self;
            let Inner::Hdlc {
                stream,
                client,
                tail,
                ..
            } = inner
            else {
                return Err(LinkError::Usage("not an HDLC link".into()));
            };
            let (us, peer) = (client.config().client, client.config().server);
            // Whether the last frame was not for us.
            let mut foreign = false;
            while let Some(ev) = client.poll_event() {
                match &ev {
                    ClientEvent::FrameReceived(f) => {
                        foreign = f.dest != us || f.src != peer;
                        if !foreign {
                            trace.record(Direction::Received, "hdlc", &f.encode(), f.to_string());
                        } else {
                            heard.foreign(f.to_string());
                            if heard.slot() {
                                trace.record(
                                    Direction::Received,
                                    "hdlc",
                                    &f.encode(),
                                    format!("{f}: not for us (we are {us}, the device {peer})"),
                                );
                            }
                        }
                    }
                    ClientEvent::InvalidFrame { bytes, error } => {
                        foreign = false;
                        heard.invalid(error.to_string());
                        if heard.slot() {
                            trace.record(
                                Direction::Received,
                                "hdlc",
                                shown(bytes),
                                format!("invalid frame: {error}"),
                            );
                        }
                    }
                    // (A frame not for us has had its record; its violation adds nothing.)
                    ClientEvent::Violation(v) if !foreign => {
                        violations.push(v.clone());
                        if heard.slot() {
                            trace.note(format!("HDLC violation by the device: {v}"));
                        }
                    }
                    ClientEvent::Discarded(d) if heard.slot() => {
                        trace.note(format!("HDLC: ignored a {d}"));
                    }
                    _ => {}
                }
                if done(&ev, client.busy()) {
                    // Events the same frame caused are answered by this one: drop
                    // them, lest the next wait take them for a new answer.
                    while let Some(
                        ClientEvent::Violation(_)
                        | ClientEvent::Discarded(_)
                        | ClientEvent::FrameRejected(_)
                        | ClientEvent::Disconnected { .. },
                    ) = client.peek_event()
                    {
                        if let Some(ClientEvent::Violation(v) | ClientEvent::Discarded(v)) =
                            client.poll_event()
                        {
                            trace.note(format!("HDLC: {v}"));
                        }
                    }
                    return Ok(ev);
                }
            }
            let now = tokio::time::Instant::now();
            let timer = client.poll_timeout().map(tokio::time::Instant::from_std);
            if now >= deadline {
                client.abandon();
                note_incomplete(trace, heard, tail, client.buffered(), "when the wait ended");
                return Err(LinkError::Timeout(wait));
            }
            if timer.is_some_and(|t| t <= now) {
                // Checked here too, so that a device that never stops sending
                // cannot hold back retransmissions.
                client.handle_timeout(now.into_std());
                continue;
            }
            let wake = timer.map_or(deadline, |t| t.min(deadline));
            let mut buf = [0u8; 4096];
            match tokio::time::timeout_at(wake, stream.read(&mut buf)).await {
                Ok(Ok(0)) => {
                    self.closed = true;
                    note_incomplete(
                        trace,
                        heard,
                        tail,
                        client.buffered(),
                        "then the connection closed",
                    );
                    trace.note("the device closed the connection");
                    return Err(LinkError::Closed);
                }
                Ok(Ok(n)) => {
                    let chunk = buf.get(..n).unwrap_or_default();
                    tail.extend_from_slice(chunk);
                    if tail.len() > TAIL_KEEP {
                        let cut = tail.len() - TAIL_KEEP;
                        tail.drain(..cut);
                    }
                    let dropped = client.dropped_bytes();
                    client.handle_bytes(chunk, Instant::now());
                    let noise = client.dropped_bytes().saturating_sub(dropped);
                    if noise > 0 {
                        heard.noise = heard.noise.saturating_add(noise);
                        if heard.slot() {
                            trace.record(
                                Direction::Received,
                                "hdlc",
                                shown(chunk),
                                format!(
                                    "line noise: {noise} of these {n} byte(s) are outside any frame (dropped)"
                                ),
                            );
                        }
                    }
                }
                Ok(Err(e)) => return Err(e.into()),
                // The timer or the deadline: both are handled at the top of the loop.
                Err(_) => {}
            }
        }
    }

    /// Takes the protocol violations seen since the last call.
    pub fn take_violations(&mut self) -> Vec<String> {
        std::mem::take(&mut self.violations)
    }

    /// Closes the connection (TCP shutdown); for HDLC, without DISC.
    pub async fn shutdown(&mut self) {
        if let Inner::Wrapper { stream, .. } | Inner::Hdlc { stream, .. } = &mut self.inner {
            let _ = tokio::time::timeout(Duration::from_millis(200), stream.shutdown()).await;
        }
        self.closed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A line that never stops sending noise and is always ready: it takes no
    /// part in tokio's cooperative budget, so only the link's own deadline
    /// check can end a wait on it.
    struct EndlessNoise;

    impl AsyncRead for EndlessNoise {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let n = buf.remaining().min(512);
            buf.put_slice(&[0x55; 512][..n]);
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for EndlessNoise {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Poll::Ready(Ok(b.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn settings(timeout: Duration) -> LinkSettings {
        LinkSettings {
            client: 16,
            server_wport: 1,
            server_address: Address::server(1, 17),
            hdlc_proposal: None,
            response_timeout: timeout,
            max_payload: 65_535,
            line_bytes_per_second: None,
        }
    }

    #[tokio::test]
    async fn rejects_endless_noise_within_the_timeout() {
        let wait = Duration::from_millis(400);
        let mut link = Link::hdlc(
            Box::new(EndlessNoise),
            settings(wait),
            "noise".into(),
            Instant::now(),
        );
        let t0 = Instant::now();
        let e = tokio::time::timeout(Duration::from_secs(5), link.connect())
            .await
            .expect("the wait on an endless stream must end")
            .unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        let text = e.to_string();
        assert!(text.contains("no valid reply within 400ms"), "{text}");
        assert!(text.contains("line noise outside any frame"), "{text}");
        // The SNRM was sent again halfway, although bytes never stopped coming.
        let trace = link.trace.take();
        let snrms = trace
            .iter()
            .filter(|r| r.direction == Direction::Sent)
            .count();
        assert_eq!(snrms, 2);
        let c = link.hdlc_client().unwrap();
        assert!(c.buffered() <= 2 * MAX_FRAME_LEN, "{}", c.buffered());
    }

    #[test]
    fn describes_what_was_heard() {
        let mut h = Heard::new();
        assert!(h.is_empty());
        h.invalid("bad FCS".into());
        assert_eq!(h.describe(), "1 invalid frame (bad FCS)");
        h.invalid("bad HCS".into());
        h.noise = 7;
        h.incomplete = 5;
        assert_eq!(
            h.describe(),
            "2 invalid frames (the first: bad FCS), 7 byte(s) of line noise outside any frame, \
             5 byte(s) of an incomplete frame"
        );
        for _ in 0..TRACE_QUOTA {
            assert!(h.slot());
        }
        assert!(!h.slot());
        assert_eq!(h.unrecorded, 1);
    }

    #[test]
    fn describes_a_partial_wrapper_frame() {
        assert_eq!(wrapper_partial(&[0, 1, 0, 1]), "4 of the 8 header bytes");
        assert_eq!(
            wrapper_partial(&[0, 1, 0, 1, 0, 16, 0, 100, 1, 2]),
            "2 of 100 payload byte(s)"
        );
    }
}
