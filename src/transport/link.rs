//! A link to a device: the wrapper over a byte stream (TCP) or over UDP, or
//! HDLC over a byte stream (TCP, serial, or the in-process simulator). Every
//! read has a deadline; everything sent and received goes into the [`Trace`].

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;

use crate::runner::event::{Direction, TrafficRecord};
use crate::session::hdlc::{ClientConfig, ClientEvent, HdlcClient};
use crate::wire::apdu::Apdu;
use crate::wire::hdlc::{Address, FrameRepr, LinkParams};
use crate::wire::wrapper::{WrapperDeframer, WrapperFrame};

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
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("I/O error: {0}")]
    Io(String),
    #[error("the device sent a frame that does not decode: {0}")]
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
}

enum Inner {
    Wrapper {
        stream: BoxStream,
        deframer: WrapperDeframer,
    },
    Udp {
        socket: UdpSocket,
        peer: SocketAddr,
    },
    Hdlc {
        stream: BoxStream,
        client: Box<HdlcClient>,
    },
}

/// A link to a device.
pub struct Link {
    inner: Inner,
    settings: LinkSettings,
    pub trace: Trace,
    closed: bool,
    /// Description of where this link goes, for messages.
    pub description: String,
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
    /// A wrapper link over a byte stream.
    pub fn wrapper(
        stream: BoxStream,
        settings: LinkSettings,
        description: String,
        start: Instant,
    ) -> Self {
        let deframer = WrapperDeframer::new(settings.max_payload);
        Link {
            inner: Inner::Wrapper { stream, deframer },
            settings,
            trace: Trace::new(start),
            closed: false,
            description,
        }
    }

    /// A wrapper link over UDP.
    pub fn udp(
        socket: UdpSocket,
        peer: SocketAddr,
        settings: LinkSettings,
        description: String,
        start: Instant,
    ) -> Self {
        Link {
            inner: Inner::Udp { socket, peer },
            settings,
            trace: Trace::new(start),
            closed: false,
            description,
        }
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
        Link {
            inner: Inner::Hdlc {
                stream,
                client: Box::new(client),
            },
            settings,
            trace: Trace::new(start),
            closed: false,
            description,
        }
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

    /// Is the HDLC link up (always true for the wrapper)?
    pub fn is_connected(&self) -> bool {
        match &self.inner {
            Inner::Hdlc { client, .. } => client.is_connected(),
            _ => !self.closed,
        }
    }

    /// Opens the data link: SNRM/UA for HDLC; nothing for the wrapper.
    pub async fn connect(&mut self) -> Result<LinkParams, LinkError> {
        let timeout = self.settings.response_timeout;
        let Inner::Hdlc { client, .. } = &mut self.inner else {
            return Ok(LinkParams::default());
        };
        client.connect(Instant::now());
        let ev = self
            .drive_hdlc(timeout, |e, _| {
                matches!(
                    e,
                    ClientEvent::Connected(_)
                        | ClientEvent::ConnectRefused
                        | ClientEvent::FrameRejected(_)
                        | ClientEvent::Timeout(_)
                )
            })
            .await?;
        match ev {
            ClientEvent::Connected(p) => Ok(p),
            ClientEvent::ConnectRefused => {
                Err(LinkError::Hdlc("the device answered SNRM with DM".into()))
            }
            ClientEvent::FrameRejected(info) => Err(LinkError::Hdlc(format!(
                "the device answered SNRM with FRMR {}",
                hex::encode_upper(info)
            ))),
            ClientEvent::Timeout(what) => Err(LinkError::Hdlc(what.into())),
            other => Err(LinkError::Hdlc(format!("unexpected {other:?}"))),
        }
    }

    /// Closes the data link: DISC for HDLC (waits for UA or DM); nothing for the wrapper.
    pub async fn disconnect(&mut self) -> Result<(), LinkError> {
        let timeout = self.settings.response_timeout;
        let Inner::Hdlc { client, .. } = &mut self.inner else {
            return Ok(());
        };
        client.disconnect(Instant::now());
        let ev = self
            .drive_hdlc(timeout, |e, _| {
                matches!(
                    e,
                    ClientEvent::Disconnected { .. }
                        | ClientEvent::Timeout(_)
                        | ClientEvent::FrameRejected(_)
                )
            })
            .await?;
        match ev {
            ClientEvent::Disconnected { .. } => Ok(()),
            ClientEvent::Timeout(w) => Err(LinkError::Hdlc(w.into())),
            other => Err(LinkError::Hdlc(format!("unexpected {other:?} to DISC"))),
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
                stream.write_all(&bytes).await?;
                stream.flush().await?;
            }
            Inner::Udp { socket, peer } => {
                let f = WrapperFrame::new(client, wport, apdu.to_vec());
                self.trace.record(
                    Direction::Sent,
                    "apdu",
                    apdu,
                    format!("{} [{f}, UDP]", describe_apdu(apdu)),
                );
                socket.send_to(&f.encode(), *peer).await?;
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
            Reply::Silence => Err(LinkError::Timeout(timeout)),
            Reply::Closed => Err(LinkError::Closed),
            Reply::Frame(f) => Err(LinkError::Hdlc(format!("expected an APDU, got {f}"))),
            Reply::Wrapper(f) => Err(LinkError::Garbled(format!(
                "wrapper frame from wPort {} to {} (expected {} to {})",
                f.source, f.destination, self.settings.server_wport, self.settings.client
            ))),
        }
    }

    /// Waits up to `wait` for whatever the device sends next.
    pub async fn recv_any(&mut self, wait: Duration) -> Result<Reply, LinkError> {
        if self.closed {
            return Ok(Reply::Closed);
        }
        let deadline = tokio::time::Instant::now() + wait;
        let (client_sap, wport) = (self.settings.client, self.settings.server_wport);
        match &mut self.inner {
            Inner::Wrapper { stream, deframer } => loop {
                if let Some(r) = deframer.next_frame() {
                    return match r {
                        Ok(f) => {
                            let expected =
                                f.source == wport && f.destination == client_sap && f.version == 1;
                            if self.trace.is_enabled() {
                                self.trace.record(
                                    Direction::Received,
                                    "apdu",
                                    &f.payload,
                                    format!("{} [{f}]", describe_apdu(&f.payload)),
                                );
                            }
                            if expected {
                                Ok(Reply::Apdu(f.payload))
                            } else {
                                Ok(Reply::Wrapper(f))
                            }
                        }
                        Err(e) => {
                            deframer.reset();
                            self.trace.note(format!("garbled wrapper stream: {e}"));
                            Err(LinkError::Garbled(e.to_string()))
                        }
                    };
                }
                let mut buf = [0u8; 4096];
                let n = match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                    Err(_) => return Ok(Reply::Silence),
                    Ok(r) => r?,
                };
                if n == 0 {
                    self.closed = true;
                    if deframer.buffered() > 0 {
                        self.trace.note(format!(
                            "connection closed in the middle of a frame ({} bytes)",
                            deframer.buffered()
                        ));
                    }
                    self.trace.note("the device closed the connection");
                    return Ok(Reply::Closed);
                }
                deframer.push(&buf[..n]);
            },
            Inner::Udp { socket, peer } => {
                let mut buf = vec![0u8; 65_536];
                loop {
                    let (n, from) =
                        match tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await {
                            Err(_) => return Ok(Reply::Silence),
                            Ok(r) => r?,
                        };
                    if from != *peer {
                        self.trace.note(format!("ignored a datagram from {from}"));
                        continue;
                    }
                    let d = &buf[..n];
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
                                d,
                                format!("bad datagram: {e}"),
                            );
                            Err(LinkError::Garbled(e.to_string()))
                        }
                    };
                }
            }
            Inner::Hdlc { .. } => {
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
                            // While a segmented request is under way, RR is flow control, not an answer.
                            if !(matches!(f.control, crate::wire::hdlc::Control::I { .. })
                                || busy && matches!(f.control, crate::wire::hdlc::Control::Rr { .. })))
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
                    Ok(other) => Err(LinkError::Hdlc(format!("{other:?}"))),
                    Err(LinkError::Closed) => Ok(Reply::Closed),
                    Err(e) => Err(e),
                }
            }
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
        match &mut self.inner {
            Inner::Wrapper { stream, .. } | Inner::Hdlc { stream, .. } => {
                stream.write_all(bytes).await?;
                stream.flush().await?;
            }
            Inner::Udp { socket, peer } => {
                socket.send_to(bytes, *peer).await?;
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
        let Inner::Hdlc { stream, client } = &mut self.inner else {
            return Ok(());
        };
        while let Some(frame) = client.poll_transmit() {
            let desc = FrameRepr::decode(&frame)
                .map(|f| f.to_string())
                .unwrap_or_default();
            self.trace.record(Direction::Sent, "hdlc", &frame, desc);
            stream.write_all(&frame).await?;
        }
        stream.flush().await?;
        Ok(())
    }

    /// Runs the HDLC client until `done` accepts an event or `wait` passes.
    async fn drive_hdlc(
        &mut self,
        wait: Duration,
        done: impl Fn(&ClientEvent, bool) -> bool,
    ) -> Result<ClientEvent, LinkError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            self.flush_hdlc().await?;
            let Inner::Hdlc { stream, client } = &mut self.inner else {
                return Err(LinkError::Usage("not an HDLC link".into()));
            };
            while let Some(ev) = client.poll_event() {
                match &ev {
                    ClientEvent::FrameReceived(f) => {
                        self.trace
                            .record(Direction::Received, "hdlc", &f.encode(), f.to_string())
                    }
                    ClientEvent::InvalidFrame { bytes, error } => self.trace.record(
                        Direction::Received,
                        "hdlc",
                        bytes,
                        format!("invalid frame: {error}"),
                    ),
                    ClientEvent::Violation(v) => self
                        .trace
                        .note(format!("HDLC violation by the device: {v}")),
                    _ => {}
                }
                if done(&ev, client.busy()) {
                    return Ok(ev);
                }
            }
            let timer = client.poll_timeout().map(tokio::time::Instant::from_std);
            let wake = timer.map_or(deadline, |t| t.min(deadline));
            let mut buf = [0u8; 4096];
            match tokio::time::timeout_at(wake, stream.read(&mut buf)).await {
                Ok(Ok(0)) => {
                    self.closed = true;
                    self.trace.note("the device closed the connection");
                    return Err(LinkError::Closed);
                }
                Ok(Ok(n)) => client.handle_bytes(&buf[..n], Instant::now()),
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(LinkError::Timeout(wait));
                    }
                    client.handle_timeout(Instant::now());
                }
            }
        }
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

    #[test]
    fn accepts_switching_the_trace_off_and_on() {
        let mut t = Trace::new(Instant::now());
        assert!(t.is_enabled());
        t.record(Direction::Sent, "apdu", &[0xC0], "get-request".into());
        t.set_enabled(false);
        t.record(Direction::Sent, "apdu", &[0xC0], "get-request".into());
        t.note("not kept");
        assert_eq!(t.len(), 1);
        t.set_enabled(true);
        t.note("kept");
        let r = t.take();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].hex, "C0");
    }
}
