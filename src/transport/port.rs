//! Physical ports that carry one HDLC link at a time: a serial line (direct,
//! or an optical probe behind the IEC 62056-21 mode E sign-on) and the TCP
//! connection to a serial-to-IP converter.
//!
//! A meter has one HDLC connection at a time on a physical port: the line has
//! one primary station, the meter's HDLC layer serves one client address at a
//! time (IEC 62056-46, normal response mode), and the operating system lets a
//! serial port be opened once. So such a port is opened once and handed out as
//! one logical link at a time, a [`PortLease`]. Switching client is: end the
//! previous link (the runner releases its association first; the port sends
//! HDLC DISC when that link sent anything since its last DISC), then, for mode
//! E, sign on again when the meter has returned to its sign-on, then the new
//! link's SNRM, all on the same open port. A lease that was superseded fails at
//! once with a clear error instead of reading another client's frames.
//!
//! Mode E, as meters do it: after the sign-on the meter speaks HDLC until the
//! link is disconnected (any DISC it answers) or its inactivity timeout passes,
//! then it waits for a new sign-on at 300 baud. The port signs on when it was
//! just opened, after a DISC was sent, and after the profile's inactivity
//! timeout without traffic; the link also signs on again, once, when an SNRM
//! goes unanswered (the meter may have timed out on its own). A sign-on that
//! gets no identification may meet a meter still in an HDLC session nobody
//! ended (a run that was killed): the port then sends SNRM and DISC at the
//! target's rate and signs on again.
//!
//! Ports are found by name in the registry of ports this process has open, so
//! every link to `/dev/ttyUSB0`, whoever opens it, goes through the one owner;
//! a port closes when its last lease and holder are dropped.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_serial::SerialStream;

use crate::transport::link::{Link, LinkError, LinkSettings, Trace};
use crate::transport::serial;
use crate::transport::target::SerialSettings;

/// Time allowed either side of the inactivity timeout: closer to it than
/// this, the meter may or may not have timed out yet, so the port waits.
const INACTIVITY_MARGIN: Duration = Duration::from_secs(1);

/// What a physical port is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSpec {
    /// A serial line, with or without the mode E sign-on.
    Serial(SerialSettings),
    /// A TCP connection to a serial-to-IP converter.
    Tcp { host: String, port: u16 },
}

impl PortSpec {
    /// The name the registry knows the port by (a serial path is resolved, so
    /// that a symbolic link and its target are one port).
    fn key(&self) -> String {
        match self {
            PortSpec::Serial(s) => {
                let path = std::fs::canonicalize(&s.path)
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| s.path.clone());
                format!("serial:{path}")
            }
            PortSpec::Tcp { host, port } => format!("tcp:{host}:{port}"),
        }
    }

    fn name(&self) -> String {
        match self {
            PortSpec::Serial(s) => s.path.clone(),
            PortSpec::Tcp { host, port } => format!("{host}:{port}"),
        }
    }

    fn mode_e(&self) -> Option<&SerialSettings> {
        match self {
            PortSpec::Serial(s) if s.mode_e => Some(s),
            _ => None,
        }
    }
}

/// How long the port may take to open and sign on, and how long the meter
/// keeps an idle link (the device profile's HDLC inactivity timeout; zero: no
/// timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortOptions {
    pub connect_timeout: Duration,
    pub inactivity_timeout: Duration,
}

/// The open line.
enum Line {
    Serial(Box<SerialStream>),
    Tcp(TcpStream),
}

impl Line {
    fn io(&mut self) -> Pin<&mut dyn AsyncReadWrite> {
        match self {
            Line::Serial(s) => Pin::new(s.as_mut()),
            Line::Tcp(t) => Pin::new(t),
        }
    }
}

trait AsyncReadWrite: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncReadWrite for T {}

#[derive(Default)]
struct PortState {
    line: Option<Line>,
    /// The lease that may use the line; every other one is superseded.
    lease: u64,
    /// Frames went out on the current lease since its last DISC: the meter
    /// may have a link up with it.
    dirty: bool,
    /// The settings of the current (or last) lease, to disconnect its link.
    previous: Option<LinkSettings>,
    /// Mode E: the meter is past its sign-on (it speaks HDLC).
    signed_on: bool,
    /// When bytes last went either way.
    last_activity: Option<Instant>,
    /// The line failed or closed: reopen it for the next lease.
    broken: bool,
}

struct PortInner {
    spec: PortSpec,
    name: String,
    /// Held while a lease is handed out or the line signs on.
    gate: tokio::sync::Mutex<()>,
    state: Mutex<PortState>,
}

impl PortInner {
    fn state(&self) -> MutexGuard<'_, PortState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The ports this process has open, by [`PortSpec::key`].
static PORTS: LazyLock<Mutex<HashMap<String, Weak<PortInner>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// A physical port that hands out one HDLC link at a time (see the module
/// documentation). Cloning shares the port; holding a clone keeps it open
/// between links.
#[derive(Clone)]
pub struct SharedPort(Arc<PortInner>);

impl std::fmt::Debug for SharedPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPort")
            .field("name", &self.0.name)
            .finish_non_exhaustive()
    }
}

impl SharedPort {
    /// The port for `spec`: the one this process has open, or a new one
    /// (opened by the first [`SharedPort::lease`]).
    pub fn get(spec: PortSpec) -> Result<SharedPort, LinkError> {
        let key = spec.key();
        let mut ports = PORTS.lock().unwrap_or_else(|p| p.into_inner());
        ports.retain(|_, p| p.strong_count() > 0);
        if let Some(p) = ports.get(&key).and_then(Weak::upgrade) {
            if p.spec != spec {
                return Err(LinkError::Usage(format!(
                    "{}: the port is already open with other line settings in this run",
                    p.name
                )));
            }
            return Ok(SharedPort(p));
        }
        let p = Arc::new(PortInner {
            name: spec.name(),
            spec,
            gate: tokio::sync::Mutex::new(()),
            state: Mutex::new(PortState::default()),
        });
        ports.insert(key, Arc::downgrade(&p));
        Ok(SharedPort(p))
    }

    /// The port's name (a device path, or host:port).
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Does the port sign on with IEC 62056-21 mode E?
    pub fn is_mode_e(&self) -> bool {
        self.0.spec.mode_e().is_some()
    }

    /// Hands out the port to a new link with `link`'s addresses: supersedes
    /// the current lease, opens the port if needed, disconnects the previous
    /// link if it may be up, and for mode E signs on when the meter waits for
    /// it. What the port sends and receives for this goes into `trace`.
    pub async fn lease(
        &self,
        link: &LinkSettings,
        opts: PortOptions,
        trace: &mut Trace,
    ) -> Result<PortLease, LinkError> {
        let inner = &self.0;
        let _gate = inner.gate.lock().await;
        let (open, previous, idle, signed_on) = {
            let mut st = inner.state();
            // From here on the current lease reads and writes nothing.
            st.lease += 1;
            if st.broken {
                st.line = None;
                st.broken = false;
            }
            let previous = if st.dirty { st.previous.clone() } else { None };
            let idle = st.last_activity.map(|t| t.elapsed());
            (st.line.is_none(), previous, idle, st.signed_on)
        };
        if open {
            let line = self.open_line(opts.connect_timeout).await?;
            let mut st = inner.state();
            st.line = Some(line);
            st.signed_on = false;
            st.dirty = false;
            st.previous = None;
            st.last_activity = Some(Instant::now());
        } else {
            let timeout = opts.inactivity_timeout;
            let timed_out = self.is_mode_e()
                && signed_on
                && !timeout.is_zero()
                && idle.is_some_and(|i| i.saturating_add(INACTIVITY_MARGIN) >= timeout);
            if timed_out {
                // The meter dropped the link itself and went back to its
                // sign-on, where a DISC would go unheard. Too close to call:
                // wait until it surely has.
                let surely = timeout.saturating_add(INACTIVITY_MARGIN);
                if let Some(wait) = idle.and_then(|i| surely.checked_sub(i)) {
                    tokio::time::sleep(wait).await;
                }
                trace.note(format!(
                    "{}: idle for longer than the meter's HDLC inactivity timeout ({}): the meter waits for a new sign-on",
                    inner.name,
                    humantime::format_duration(timeout),
                ));
                let mut st = inner.state();
                st.signed_on = false;
                st.dirty = false;
            } else if let Some(previous) = previous {
                // Without mode E, a DISC after the inactivity timeout is
                // answered DM, which does no harm.
                self.hand_over(previous, opts, trace).await;
            }
        }
        let signed_on = inner.state().signed_on;
        if let Some(s) = inner.spec.mode_e()
            && !signed_on
            && !self.try_sign_on(s, opts.connect_timeout, trace).await?
        {
            // The meter may still be in an HDLC session nobody ended (a run
            // that was killed): end it, then sign on again.
            trace.note(format!(
                "{}: no identification: the meter may still be in an HDLC session left open; ending it with SNRM and DISC at {} baud, then signing on again",
                inner.name, s.baud
            ));
            if !self.end_stale_session(s, link, opts, trace).await {
                // No session either: nothing answers on this line.
                return Err(serial::no_identification(s, opts.connect_timeout));
            }
            self.sign_on(s, opts.connect_timeout, trace).await?;
        }
        let mut st = inner.state();
        st.lease += 1;
        st.previous = Some(link.clone());
        st.dirty = false;
        Ok(PortLease {
            port: inner.clone(),
            id: st.lease,
            opts,
        })
    }

    async fn open_line(&self, timeout: Duration) -> Result<Line, LinkError> {
        match &self.0.spec {
            PortSpec::Serial(s) => Ok(Line::Serial(Box::new(serial::open_port(s)?))),
            PortSpec::Tcp { host, port } => {
                let addr = format!("{host}:{port}");
                let stream = tokio::time::timeout(timeout, TcpStream::connect(&addr))
                    .await
                    .map_err(|_| {
                        LinkError::Connect(format!(
                            "{addr}: no connection within {}",
                            humantime::format_duration(timeout)
                        ))
                    })?
                    .map_err(|e| LinkError::Connect(format!("{addr}: {e}")))?;
                let _ = stream.set_nodelay(true);
                Ok(Line::Tcp(stream))
            }
        }
    }

    /// Ends the link of the previous lease with DISC (UA or DM ends it; no
    /// answer is noted), on a lease of its own.
    async fn hand_over(&self, previous: LinkSettings, opts: PortOptions, trace: &mut Trace) {
        let lease = {
            let mut st = self.0.state();
            st.lease += 1;
            PortLease {
                port: self.0.clone(),
                id: st.lease,
                opts,
            }
        };
        trace.note(format!(
            "{}: disconnecting client {} first (a meter has one HDLC link at a time on a physical port)",
            self.0.name, previous.client
        ));
        let description = format!("{} (hand-over)", self.0.name);
        let mut link = Link::hdlc_on_port(lease, previous, description, Trace::new(trace.start()));
        link.trace.set_enabled(trace.is_enabled());
        let r = link.disconnect().await;
        trace.append(link.trace.take());
        if let Err(e) = r {
            trace.note(format!(
                "the DISC of the previous link was not answered: {e}"
            ));
        }
    }

    /// Signs on (mode E). Call with the gate held.
    async fn sign_on(
        &self,
        s: &SerialSettings,
        timeout: Duration,
        trace: &mut Trace,
    ) -> Result<(), LinkError> {
        if self.try_sign_on(s, timeout, trace).await? {
            Ok(())
        } else {
            Err(serial::no_identification(s, timeout))
        }
    }

    /// Signs on (mode E) with the line taken out of the state for the time of
    /// the handshake; `false` when no identification came. Call with the gate held.
    async fn try_sign_on(
        &self,
        s: &SerialSettings,
        timeout: Duration,
        trace: &mut Trace,
    ) -> Result<bool, LinkError> {
        let mut port = self.take_serial()?;
        let r = serial::try_sign_on(&mut port, s, timeout, Some(trace)).await;
        let mut st = self.0.state();
        st.line = Some(Line::Serial(port));
        st.last_activity = Some(Instant::now());
        st.signed_on = matches!(r, Ok(Some(_)));
        r.map(|signed| signed.is_some())
    }

    /// Takes the serial line out of the state (put it back when done).
    fn take_serial(&self) -> Result<Box<SerialStream>, LinkError> {
        let mut st = self.0.state();
        match st.line.take() {
            Some(Line::Serial(port)) => Ok(port),
            other => {
                st.line = other;
                Err(LinkError::Usage(format!(
                    "{}: mode E needs a serial port",
                    self.0.name
                )))
            }
        }
    }

    /// Ends an HDLC session the meter may still be in: at the target's rate,
    /// SNRM (which a meter accepts from a new client too) and, when answered,
    /// DISC, which sends a mode E meter back to its sign-on. True when a
    /// session was found and ended.
    async fn end_stale_session(
        &self,
        s: &SerialSettings,
        settings: &LinkSettings,
        opts: PortOptions,
        trace: &mut Trace,
    ) -> bool {
        match self.take_serial() {
            Ok(mut port) => {
                let r = serial::hdlc_line(&mut port, s);
                self.0.state().line = Some(Line::Serial(port));
                if let Err(e) = r {
                    trace.note(e.to_string());
                    return false;
                }
            }
            Err(_) => return false,
        }
        let lease = {
            let mut st = self.0.state();
            st.lease += 1;
            PortLease {
                port: self.0.clone(),
                id: st.lease,
                opts,
            }
        };
        let description = format!("{} (ending a stale session)", self.0.name);
        let mut link = Link::hdlc_on_port(
            lease,
            settings.clone(),
            description,
            Trace::new(trace.start()),
        );
        link.trace.set_enabled(trace.is_enabled());
        let found = link.connect_without_sign_on().await.is_ok();
        if found {
            let _ = link.disconnect().await;
        }
        trace.append(link.trace.take());
        found
    }
}

/// One logical link's use of a [`SharedPort`]: a byte stream that works
/// while this lease is the port's current one, and fails once another link
/// was handed the port.
#[derive(Clone)]
pub struct PortLease {
    port: Arc<PortInner>,
    id: u64,
    opts: PortOptions,
}

impl std::fmt::Debug for PortLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortLease")
            .field("port", &self.port.name)
            .field("current", &self.is_current())
            .finish()
    }
}

impl PortLease {
    /// The port this lease is on.
    pub fn port(&self) -> SharedPort {
        SharedPort(self.port.clone())
    }

    /// Is this lease still the port's current one?
    pub fn is_current(&self) -> bool {
        self.port.state().lease == self.id
    }

    /// Records that this link sent DISC: its link is down, and a mode E meter
    /// is back at its sign-on.
    pub fn disc_sent(&self) {
        let mut st = self.port.state();
        if st.lease == self.id {
            st.dirty = false;
            st.signed_on = false;
        }
    }

    /// Does the meter wait for a sign-on (mode E): after a DISC, or after
    /// surely more than its inactivity timeout without traffic?
    pub fn needs_sign_on(&self) -> bool {
        if self.port.spec.mode_e().is_none() {
            return false;
        }
        let st = self.port.state();
        let timeout = self.opts.inactivity_timeout;
        let idle = st.last_activity.map(|t| t.elapsed());
        !st.signed_on
            || (!timeout.is_zero()
                && idle.is_some_and(|i| i >= timeout.saturating_add(INACTIVITY_MARGIN)))
    }

    /// Signs on again (mode E only; `Ok(false)` for other ports): after a
    /// DISC on this link, or for an SNRM that went unanswered (the meter may
    /// be back at its sign-on).
    pub async fn sign_on_again(&self, trace: &mut Trace) -> Result<bool, LinkError> {
        let Some(s) = self.port.spec.mode_e() else {
            return Ok(false);
        };
        let port = self.port();
        let _gate = self.port.gate.lock().await;
        if !self.is_current() {
            return Err(self.superseded().into());
        }
        port.sign_on(s, self.opts.connect_timeout, trace).await?;
        Ok(true)
    }

    fn superseded(&self) -> io::Error {
        io::Error::other(format!(
            "{}: the port now carries another HDLC link (a meter has one link at a time on a physical port)",
            self.port.name
        ))
    }

    /// Runs `f` on the line when this lease is current.
    fn with_line<T>(
        &self,
        f: impl FnOnce(Pin<&mut dyn AsyncReadWrite>, &mut PortState) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let mut guard = self.port.state();
        let st = &mut *guard;
        if st.lease != self.id {
            return Poll::Ready(Err(self.superseded()));
        }
        let Some(mut line) = st.line.take() else {
            return Poll::Ready(Err(io::Error::other(format!(
                "{}: the port is not open",
                self.port.name
            ))));
        };
        let r = f(line.io(), st);
        st.line = Some(line);
        if matches!(r, Poll::Ready(Err(_))) {
            st.broken = true;
        }
        r
    }
}

impl AsyncRead for PortLease {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let wanted = buf.remaining() > 0;
        self.with_line(|line, st| {
            let r = line.poll_read(cx, buf);
            if let Poll::Ready(Ok(())) = r {
                if buf.filled().len() > before {
                    st.last_activity = Some(Instant::now());
                } else if wanted {
                    // The end of the stream: the line closed.
                    st.broken = true;
                }
            }
            r
        })
    }
}

impl AsyncWrite for PortLease {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.with_line(|line, st| {
            let r = line.poll_write(cx, buf);
            if let Poll::Ready(Ok(n)) = r
                && n > 0
            {
                st.dirty = true;
                st.last_activity = Some(Instant::now());
            }
            r
        })
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with_line(|line, _| line.poll_flush(cx))
    }

    /// Ends this link's use of the port; the port stays open for the next link.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serial(path: &str, mode_e: bool) -> PortSpec {
        PortSpec::Serial(SerialSettings {
            path: path.into(),
            baud: 9600,
            parity: crate::transport::target::Parity::None,
            data_bits: 8,
            stop_bits: 1,
            mode_e,
        })
    }

    #[test]
    fn one_port_per_path_while_it_is_held() {
        let a = SharedPort::get(serial("/nonexistent/idis-port-test-1", false)).unwrap();
        let b = SharedPort::get(serial("/nonexistent/idis-port-test-1", false)).unwrap();
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert!(!a.is_mode_e());
        // The same path with other line settings is not a second port.
        let e = SharedPort::get(serial("/nonexistent/idis-port-test-1", true)).unwrap_err();
        assert!(
            e.to_string()
                .contains("already open with other line settings"),
            "{e}"
        );
        drop((a, b));
        // Once nobody holds it, the path may be opened afresh, with any settings.
        let c = SharedPort::get(serial("/nonexistent/idis-port-test-1", true)).unwrap();
        assert!(c.is_mode_e());
        let tcp = SharedPort::get(PortSpec::Tcp {
            host: "127.0.0.1".into(),
            port: 1,
        })
        .unwrap();
        assert_eq!(tcp.name(), "127.0.0.1:1");
        assert!(!Arc::ptr_eq(&c.0, &tcp.0));
    }

    #[test]
    fn a_lease_that_is_not_current_says_the_port_carries_another_link() {
        let port = SharedPort::get(serial("/nonexistent/idis-port-test-2", false)).unwrap();
        let old = PortLease {
            port: port.0.clone(),
            id: 1,
            opts: PortOptions {
                connect_timeout: Duration::from_secs(1),
                inactivity_timeout: Duration::from_secs(120),
            },
        };
        port.0.state().lease = 2;
        assert!(!old.is_current());
        let e = old.superseded().to_string();
        assert!(e.contains("now carries another HDLC link"), "{e}");
        // It no longer changes what the port knows of the meter.
        port.0.state().signed_on = true;
        old.disc_sent();
        assert!(port.0.state().signed_on);
    }
}
