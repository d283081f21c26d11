//! Serving the simulated meter over links (tokio): the wrapper over any byte
//! stream (TCP, or an in-process duplex for the `sim` target), HDLC over any
//! byte stream (TCP, serial, duplex), and the wrapper over UDP. One meter may
//! serve many connections at once; its state is shared behind a mutex held only
//! for the time of one request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

use crate::session::hdlc::{HdlcServer, ServerConfig, ServerEvent, ServerLinkFaults};
use crate::sim::{Connection, Meter, Quirk};
use crate::transport::link::{BoxStream, ByteStream};
use crate::wire::hdlc::{Address, LinkParams};
use crate::wire::wrapper::{WrapperDeframer, WrapperError, WrapperFrame};

/// A meter shared by the connections that serve it.
#[derive(Clone)]
pub struct SharedMeter {
    meter: Arc<Mutex<Meter>>,
    connections: Arc<AtomicU64>,
    /// Restarts so far: a connection from before a restart is dropped.
    restarts: Arc<AtomicU64>,
    /// Set when a quirk made the meter stop answering (it stays so until restarted).
    hung: Arc<AtomicBool>,
    /// Called with one line per association event, when set.
    log: Option<Arc<dyn Fn(String) + Send + Sync>>,
    /// Called after a request that changed the meter's memory ([`crate::sim::meter::MeterState`]), when set.
    on_change: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for SharedMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMeter")
            .field("connections", &self.connections.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl SharedMeter {
    pub fn new(meter: Meter) -> Self {
        SharedMeter {
            meter: Arc::new(Mutex::new(meter)),
            connections: Arc::new(AtomicU64::new(0)),
            restarts: Arc::new(AtomicU64::new(0)),
            hung: Arc::new(AtomicBool::new(false)),
            log: None,
            on_change: None,
        }
    }

    /// Calls `f` after each request that changed the meter's memory (keys,
    /// policies, counters, clock offset), e.g. to save it.
    pub fn with_on_change(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_change = Some(Arc::new(f));
        self
    }

    /// Logs association events through `f`.
    pub fn with_log(mut self, f: impl Fn(String) + Send + Sync + 'static) -> Self {
        self.log = Some(Arc::new(f));
        self
    }

    /// The meter, locked. A poisoned lock (a panic while serving) is taken over:
    /// the meter's state is plain data and stays usable.
    pub fn lock(&self) -> MutexGuard<'_, Meter> {
        self.meter.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Restarts the meter as a power cycle would: every link drops, and the
    /// meter comes back from its memory (see [`Meter::restart`]).
    pub fn restart(&self) {
        self.lock().restart();
        self.hung.store(false, Ordering::SeqCst);
        self.restarts.fetch_add(1, Ordering::SeqCst);
        if let Some(f) = &self.on_change {
            f();
        }
    }

    /// How many restarts so far.
    fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::SeqCst)
    }

    fn new_connection(&self) -> Connection {
        Connection::new(self.connections.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn log(&self, line: impl FnOnce() -> String) {
        if let Some(l) = &self.log {
            l(line());
        }
    }

    /// Whether the meter stopped answering (a quirk: a firmware that locks up).
    pub fn is_hung(&self) -> bool {
        self.hung.load(Ordering::Relaxed)
    }

    /// Handles one request and applies what waits for the response; returns the response.
    fn handle(&self, conn: &mut Connection, client: u16, request: &[u8]) -> Option<Vec<u8>> {
        if self.is_hung() {
            return None;
        }
        let before = conn.associated_client();
        let mut m = self.lock();
        let state_before = self.on_change.as_ref().map(|_| m.state.clone());
        let r = m.handle(conn, client, request, now_unix());
        m.after_response(conn);
        let changed = state_before.is_some_and(|b| b != m.state);
        drop(m);
        if changed && let Some(f) = &self.on_change {
            f();
        }
        let after = conn.associated_client();
        if before != after {
            self.log(|| match after {
                Some(c) => format!("client {c}: associated"),
                None => format!("client {client}: released"),
            });
        }
        r
    }
}

/// Serves the wrapper over a byte stream until it closes.
pub async fn serve_wrapper<S: ByteStream>(
    meter: SharedMeter,
    mut stream: S,
) -> std::io::Result<()> {
    let (wport, answer_unknown, any_version, by_segment, hangs_on_version) = {
        let m = meter.lock();
        (
            m.config.wport,
            m.quirks.has(Quirk::AnswersUnknownWport),
            m.quirks.has(Quirk::AcceptsWrongWrapperVersion),
            m.quirks.has(Quirk::FramesBySegment),
            m.quirks.has(Quirk::StopsAfterWrongWrapperVersion),
        )
    };
    let mut conn = meter.new_connection();
    let born = meter.restarts();
    let mut deframer = WrapperDeframer::new(65_535);
    // Faulty framings keep their own buffer: frames with any version, or one frame per read.
    let mut lax: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        let mut frames = Vec::new();
        if any_version {
            while let Some(f) = take_any_version(&mut lax) {
                frames.push(f);
            }
        } else if !by_segment {
            while let Some(frame) = deframer.next_frame() {
                match frame {
                    Ok(f) => frames.push(f),
                    Err(e) => {
                        if hangs_on_version && matches!(e, WrapperError::BadVersion(_)) {
                            meter.hung.store(true, Ordering::Relaxed);
                            meter.log(|| format!("{e}: the meter stops answering (quirk)"));
                        }
                        // The stream is out of step: drop the connection.
                        meter.log(|| format!("closing a wrapper connection: {e}"));
                        return Ok(());
                    }
                }
            }
        }
        for f in frames {
            if f.destination != wport && !answer_unknown {
                continue;
            }
            if let Some(resp) = meter.handle(&mut conn, f.source, &f.payload) {
                let out = WrapperFrame::new(f.destination, f.source, resp).encode();
                stream.write_all(&out).await?;
                stream.flush().await?;
            }
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 || meter.restarts() != born {
            // Closed, or the meter restarted since: the link is gone.
            return Ok(());
        }
        let data = &buf[..n];
        if by_segment {
            // The quirk: one read is one frame, whatever the length field says.
            if let (Some(h), Some(payload)) = (data.get(..8), data.get(8..)) {
                lax = vec![h[0], h[1], h[2], h[3], h[4], h[5]];
                lax.extend_from_slice(&(payload.len() as u16).to_be_bytes());
                lax.extend_from_slice(payload);
                if let Some(f) = take_any_version(&mut lax)
                    && (f.version == 1 || any_version)
                    && (f.destination == wport || answer_unknown)
                    && let Some(resp) = meter.handle(&mut conn, f.source, &f.payload)
                {
                    let out = WrapperFrame::new(f.destination, f.source, resp).encode();
                    stream.write_all(&out).await?;
                    stream.flush().await?;
                }
                lax.clear();
            }
        } else if any_version {
            lax.extend_from_slice(data);
        } else {
            deframer.push(data);
        }
    }
}

/// Takes one wrapper frame from `buf` without checking its version (for the quirk).
fn take_any_version(buf: &mut Vec<u8>) -> Option<WrapperFrame> {
    let h = buf.get(..8)?;
    let len = u16::from_be_bytes([h[6], h[7]]) as usize;
    let payload = buf.get(8..8 + len)?.to_vec();
    let f = WrapperFrame {
        version: u16::from_be_bytes([h[0], h[1]]),
        source: u16::from_be_bytes([h[2], h[3]]),
        destination: u16::from_be_bytes([h[4], h[5]]),
        payload,
    };
    buf.drain(..8 + len);
    Some(f)
}

/// The HDLC faults a meter's quirks switch on.
pub fn hdlc_faults(meter: &Meter) -> ServerLinkFaults {
    let q = |x| meter.quirks.has(x);
    ServerLinkFaults {
        accept_bad_checksums: q(Quirk::AnswersBadFcs),
        answer_any_address: q(Quirk::AnswersOtherAddress),
        answer_long_source: q(Quirk::AnswersLongSourceAddress),
        ignore_snrm_parameters: q(Quirk::IgnoresSnrmParameters),
        accept_oversized_frames: q(Quirk::AcceptsOversizedFrames),
        ignore_sequence_numbers: q(Quirk::IgnoresSequenceNumbers),
        answer_in_ndm: q(Quirk::AnswersInNdm),
        no_segmentation: q(Quirk::NoSegmentation),
        answer_malformed: crate::session::hdlc::MalformedAnswers {
            stray_bytes: q(Quirk::AnswersStrayBytes),
            too_short: q(Quirk::AnswersShortFrames),
            format_type: q(Quirk::AnswersBadFormatType),
            length: q(Quirk::AnswersWrongLength),
            address: q(Quirk::AnswersBadAddressLength),
        },
        ignore_unknown_commands: q(Quirk::IgnoresUnknownCommands),
    }
}

/// Serves HDLC over a byte stream until it closes.
pub async fn serve_hdlc<S: ByteStream>(meter: SharedMeter, mut stream: S) -> std::io::Result<()> {
    serve_hdlc_until(&meter, &mut stream, false)
        .await
        .map(|_| ())
}

/// Why an HDLC session on a serial line ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The line closed.
    Closed,
    /// The client sent DISC (answered UA, or DM when no link was up).
    Disconnected,
    /// No frame within the inactivity timeout (HDLC setup attribute 8).
    InactivityTimeout,
}

impl std::fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SessionEnd::Closed => "the line closed",
            SessionEnd::Disconnected => "DISC",
            SessionEnd::InactivityTimeout => "inactivity timeout",
        })
    }
}

/// Serves one HDLC session after an IEC 62056-21 mode E sign-on, as a meter
/// does: until a DISC (whether a link was up or not), or until no frame came
/// within the inactivity timeout (with a link up or not), or until the line
/// closes. Then the meter goes back to waiting for a sign-on.
pub async fn serve_hdlc_session<S: ByteStream>(
    meter: &SharedMeter,
    stream: &mut S,
) -> std::io::Result<SessionEnd> {
    serve_hdlc_until(meter, stream, true).await
}

async fn serve_hdlc_until<S: ByteStream>(
    meter: &SharedMeter,
    stream: &mut S,
    one_session: bool,
) -> std::io::Result<SessionEnd> {
    let (cfg, inactivity) = {
        let m = meter.lock();
        let inactivity = Duration::from_secs(m.config.hdlc_inactivity_timeout.into());
        let cfg = ServerConfig {
            address: Address::server(m.config.hdlc_logical, m.config.hdlc_physical),
            limits: LinkParams {
                max_info_tx: m.config.hdlc_max_info,
                max_info_rx: m.config.hdlc_max_info,
                window_tx: m.config.hdlc_window,
                window_rx: m.config.hdlc_window,
            },
            inactivity_timeout: Some(inactivity),
            any_address_form: m.config.hdlc_any_address_form,
            faults: hdlc_faults(&m),
        };
        (cfg, inactivity)
    };
    let mut link = HdlcServer::new(cfg);
    let mut conn = meter.new_connection();
    let born = meter.restarts();
    let mut buf = vec![0u8; 4096];
    // Until a sign-on session has seen a frame, the inactivity timeout runs from its start.
    let mut last_heard = Instant::now();
    loop {
        let mut ended = None;
        while let Some(ev) = link.poll_event() {
            match ev {
                ServerEvent::Apdu { client, apdu } => {
                    if let Some(resp) = meter.handle(&mut conn, client.upper(), &apdu) {
                        // Cannot fail: a client is connected when an APDU arrives.
                        let _ = link.send_apdu(&resp);
                    }
                }
                ServerEvent::Disconnected { client, reason } => {
                    conn.reset();
                    meter.log(|| format!("HDLC client {client}: disconnected ({reason})"));
                    ended = Some(if reason == "DISC" {
                        SessionEnd::Disconnected
                    } else {
                        SessionEnd::InactivityTimeout
                    });
                }
                ServerEvent::DiscWhileDisconnected { .. } => {
                    ended = Some(SessionEnd::Disconnected);
                }
                ServerEvent::Connected { .. } => conn.reset(),
                ServerEvent::Discarded(_) => {}
            }
        }
        while let Some(frame) = link.poll_transmit() {
            stream.write_all(&frame).await?;
        }
        stream.flush().await?;
        if one_session && let Some(end) = ended {
            return Ok(end);
        }
        let read = stream.read(&mut buf);
        // With a link up, the link's own timer; in a sign-on session without
        // one, the inactivity timeout since the last bytes heard.
        let deadline = match link.poll_timeout() {
            Some(d) => Some(d),
            None if one_session && !inactivity.is_zero() => Some(last_heard + inactivity),
            None => None,
        };
        let n = match deadline {
            Some(deadline) => {
                match tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), read).await
                {
                    Ok(r) => r?,
                    Err(_) => {
                        if one_session && !link.is_connected() {
                            return Ok(SessionEnd::InactivityTimeout);
                        }
                        link.handle_timeout(Instant::now());
                        continue;
                    }
                }
            }
            None => read.await?,
        };
        if n == 0 || meter.restarts() != born {
            // Closed, or the meter restarted since: the link is gone.
            return Ok(SessionEnd::Closed);
        }
        last_heard = Instant::now();
        link.handle_bytes(&buf[..n], last_heard);
    }
}

/// Serves the wrapper over UDP until the socket fails. One connection state per
/// peer address. A datagram that cannot be sent is lost, as UDP allows; an ICMP
/// error reported on receive does not stop the meter.
pub async fn serve_udp(meter: SharedMeter, socket: UdpSocket) -> std::io::Result<()> {
    let (wport, answer_unknown) = {
        let m = meter.lock();
        (m.config.wport, m.quirks.has(Quirk::AnswersUnknownWport))
    };
    let mut peers: HashMap<SocketAddr, Connection> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        let Ok(f) = WrapperFrame::decode_datagram(&buf[..n]) else {
            continue;
        };
        if f.destination != wport && !answer_unknown {
            continue;
        }
        if peers.len() > 10_000 && !peers.contains_key(&from) {
            peers.clear();
        }
        let conn = peers.entry(from).or_insert_with(|| meter.new_connection());
        if let Some(resp) = meter.handle(conn, f.source, &f.payload) {
            let out = WrapperFrame::new(f.destination, f.source, resp).encode();
            if let Err(e) = socket.send_to(&out, from).await {
                meter.log(|| format!("UDP reply to {from} lost: {e}"));
            }
        }
    }
}

/// The in-process simulator behind the `sim` target: each link gets a fresh
/// in-memory connection to the same meter.
#[derive(Debug, Clone)]
pub struct SimHandle {
    pub meter: SharedMeter,
    udp: Arc<tokio::sync::OnceCell<SocketAddr>>,
}

impl SimHandle {
    pub fn new(meter: Meter) -> Self {
        SimHandle {
            meter: SharedMeter::new(meter),
            udp: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    /// A byte stream to the meter, served with the wrapper or HDLC framing.
    pub fn open_stream(&self, hdlc: bool) -> BoxStream {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let meter = self.meter.clone();
        tokio::spawn(async move {
            let _ = if hdlc {
                serve_hdlc(meter, theirs).await
            } else {
                serve_wrapper(meter, theirs).await
            };
        });
        Box::new(ours)
    }

    /// The address of the meter's UDP socket on loopback (bound on first use).
    pub async fn udp_address(&self) -> std::io::Result<SocketAddr> {
        let meter = self.meter.clone();
        self.udp
            .get_or_try_init(|| async move {
                let socket = UdpSocket::bind("127.0.0.1:0").await?;
                let addr = socket.local_addr()?;
                tokio::spawn(async move {
                    let _ = serve_udp(meter, socket).await;
                });
                Ok::<_, std::io::Error>(addr)
            })
            .await
            .copied()
    }
}
