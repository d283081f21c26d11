//! The standalone simulator (`idis-harness simulate`): one simulated IDIS meter,
//! or a fleet of them with keys and system titles derived from a seed, served
//! over the TCP wrapper (IEC 62056-47), HDLC over TCP (IEC 62056-46), the UDP
//! wrapper, or HDLC on a serial port after an optional IEC 62056-21 mode E
//! sign-on (to which the meter returns after each DISC and after its HDLC
//! inactivity timeout). Meter `i` of a fleet listens on the first port plus `i`.
//!
//! Each meter is one [`SharedMeter`] shared by its connections, so its memory
//! (keys, security policies, invocation counters, clock) survives reconnects
//! as a real meter's would; with a state file it survives restarts too
//! ([`crate::sim::state`]). Connections are independent tasks: garbage or a
//! disconnect in the middle of a frame ends only that connection.
//!
//! ```no_run
//! # async fn f() -> Result<(), String> {
//! use idis_harness::sim::standalone::{self, SimulatorOptions};
//! let opts = SimulatorOptions { meters: 3, seed: 42, ..SimulatorOptions::default() };
//! let sim = standalone::bind(opts).await?;
//! for m in sim.meters() {
//!     println!("meter {} on {:?}", m.index, m.address);
//! }
//! sim.serve(|line| eprintln!("{line}"), async { let _ = tokio::signal::ctrl_c().await; })
//!     .await
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::profile::Mechanism;
use crate::security::SystemTitle;
use crate::sim::quirks::{Quirk, Quirks};
use crate::sim::server::{
    SessionEnd, SharedMeter, serve_hdlc, serve_hdlc_session, serve_udp, serve_wrapper,
};
use crate::sim::state::{StateFile, write_secret_file};
use crate::sim::{Meter, MeterConfig};

/// How the meters are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SimTransport {
    /// The wrapper over TCP (IEC 62056-47), the IDIS default on port 4059.
    #[default]
    Wrapper,
    /// HDLC frames over TCP (as behind a serial-to-IP converter).
    Hdlc,
    /// The wrapper over UDP.
    Udp,
}

impl SimTransport {
    /// Every transport, in the order of `--help`.
    pub const ALL: [SimTransport; 3] =
        [SimTransport::Wrapper, SimTransport::Hdlc, SimTransport::Udp];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SimTransport::Wrapper => "wrapper",
            SimTransport::Hdlc => "hdlc",
            SimTransport::Udp => "udp",
        }
    }
}

impl fmt::Display for SimTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SimTransport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SimTransport::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown transport {s:?}: use wrapper, hdlc or udp"))
    }
}

/// What `idis-harness simulate` serves, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulatorOptions {
    /// Address of meter 0; meter `i` listens on this port plus `i`. Port 0 lets
    /// the system choose a free port for each meter (not consecutive then).
    pub listen: SocketAddr,
    pub transport: SimTransport,
    /// Serve HDLC on this serial port instead of listening (one meter only).
    pub serial: Option<String>,
    /// Baud rate on the serial port (after mode E, the rate the client acknowledged).
    pub serial_baud: u32,
    /// Answer an IEC 62056-21 mode E sign-on at 300 baud before HDLC on the serial port.
    pub mode_e: bool,
    /// Meter profile ([`MeterConfig::load`]); the built-in meter when `None`.
    pub profile: Option<PathBuf>,
    /// Quirk names ([`list_quirks`]).
    pub quirks: Vec<String>,
    /// Number of meters (at least 1).
    pub meters: u32,
    /// Seed of the derived keys and system titles when `meters > 1`
    /// ([`MeterConfig::derived`]); with one meter the profile's own keys are used.
    pub seed: u64,
    /// Write the meters' keys, system titles and addresses to this key file
    /// (YAML, readable by [`crate::profile::load_key_file`]; mode 0600).
    pub export_keys: Option<PathBuf>,
    /// Keep the meters' memory in this file across restarts (mode 0600; it
    /// holds keys: protect it like a key file).
    pub state: Option<PathBuf>,
}

impl Default for SimulatorOptions {
    fn default() -> Self {
        SimulatorOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 4059)),
            transport: SimTransport::Wrapper,
            serial: None,
            serial_baud: 9600,
            mode_e: false,
            profile: None,
            quirks: vec![],
            meters: 1,
            seed: 0,
            export_keys: None,
            state: None,
        }
    }
}

/// One line per quirk, `name  description`, for `--list-quirks`.
pub fn list_quirks() -> String {
    let width = Quirk::ALL.iter().map(|q| q.name().len()).max().unwrap_or(0);
    Quirk::ALL
        .iter()
        .map(|q| format!("{:width$}  {}\n", q.name(), q.description()))
        .collect()
}

/// What a bound meter is and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterInfo {
    /// Index in the fleet (0 for a single meter).
    pub index: u32,
    /// The bound address (`None` on a serial port).
    pub address: Option<SocketAddr>,
    pub system_title: SystemTitle,
    /// The logical device name as text (it is ASCII in the built-in profiles).
    pub logical_device_name: String,
}

enum Endpoint {
    Tcp(TcpListener),
    Udp(UdpSocket),
    Serial(Box<tokio_serial::SerialStream>),
}

/// Meters with their listeners bound, ready to serve.
pub struct Simulator {
    opts: SimulatorOptions,
    meters: Vec<SharedMeter>,
    info: Vec<MeterInfo>,
    endpoints: Vec<Endpoint>,
    /// Lines to log once serving starts (state file notes).
    notes: Vec<String>,
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("meters", &self.meters.len())
            .field("transport", &self.opts.transport)
            .finish_non_exhaustive()
    }
}

fn io_hint(e: &std::io::Error) -> &'static str {
    if e.raw_os_error() == Some(24) {
        " (too many open files: each meter needs one socket and each connection another; raise `ulimit -n`)"
    } else {
        ""
    }
}

/// Builds the meters, loads the state file, binds every listener (a port in use
/// fails here, naming it) and writes the key file. Nothing is served yet.
pub async fn bind(opts: SimulatorOptions) -> Result<Simulator, String> {
    if opts.meters == 0 {
        return Err("--meters must be at least 1".into());
    }
    if opts.serial.is_some() && opts.meters != 1 {
        return Err(
            "a serial port serves one meter: --serial and --meters cannot be combined".into(),
        );
    }
    if opts.serial.is_some() && opts.transport == SimTransport::Udp {
        return Err("a serial port speaks HDLC, not the UDP wrapper".into());
    }
    let quirks = Quirks::from_names(&opts.quirks).map_err(|e| e.to_string())?;
    let base = match &opts.profile {
        Some(p) => MeterConfig::load(p)?,
        None => MeterConfig::default(),
    };
    let first_port = opts.listen.port();
    if opts.serial.is_none()
        && first_port != 0
        && u32::from(first_port) + (opts.meters - 1) > u32::from(u16::MAX)
    {
        return Err(format!(
            "{} meters from port {first_port} need ports up to {}, above 65535",
            opts.meters,
            u32::from(first_port) + opts.meters - 1
        ));
    }
    let saved = match &opts.state {
        Some(p) => Some(StateFile::load(p)?),
        None => None,
    };
    let mut notes = Vec::new();
    if let (Some(p), Some(s)) = (&opts.state, &saved) {
        notes.push(if s.meters.is_empty() {
            format!("state file {}: new (mode 0600; it holds keys)", p.display())
        } else {
            format!(
                "state file {}: loaded the memory of {} meter(s)",
                p.display(),
                s.meters.len()
            )
        });
    }
    let configs = fleet_configs(&base, opts.meters, opts.seed);
    let mut meters = Vec::with_capacity(configs.len());
    let mut info = Vec::with_capacity(configs.len());
    for (i, cfg) in configs.into_iter().enumerate() {
        let index = i as u32;
        let mut meter = Meter::new(cfg, quirks.clone());
        if let Some(s) = &saved
            && let Some(warning) = s.apply(index, &mut meter)
        {
            notes.push(warning);
        }
        info.push(MeterInfo {
            index,
            address: None,
            system_title: meter.config.system_title,
            logical_device_name: String::from_utf8_lossy(&meter.config.logical_device_name)
                .into_owned(),
        });
        meters.push(SharedMeter::new(meter));
    }
    let mut endpoints = Vec::with_capacity(meters.len());
    if let Some(path) = &opts.serial {
        if opts.mode_e && mode_e_char(opts.serial_baud).is_none() {
            return Err(format!(
                "mode E needs a baud rate of 300, 600, 1200, 2400, 4800, 9600 or 19200, not {}",
                opts.serial_baud
            ));
        }
        let port = open_serial(
            path,
            if opts.mode_e { 300 } else { opts.serial_baud },
            opts.mode_e,
        )?;
        endpoints.push(Endpoint::Serial(Box::new(port)));
    } else {
        let many = opts.meters > 1;
        for (i, inf) in info.iter_mut().enumerate() {
            let port = if first_port == 0 {
                0
            } else {
                first_port + i as u16
            };
            let addr = SocketAddr::new(opts.listen.ip(), port);
            let which = if many {
                format!(" (meter {i} of {})", opts.meters)
            } else {
                String::new()
            };
            let fail =
                |e: std::io::Error| format!("cannot listen on {addr}{which}: {e}{}", io_hint(&e));
            let (ep, bound) = match opts.transport {
                SimTransport::Udp => {
                    let s = UdpSocket::bind(addr).await.map_err(fail)?;
                    let a = s.local_addr().map_err(fail)?;
                    (Endpoint::Udp(s), a)
                }
                SimTransport::Wrapper | SimTransport::Hdlc => {
                    let l = TcpListener::bind(addr).await.map_err(fail)?;
                    let a = l.local_addr().map_err(fail)?;
                    (Endpoint::Tcp(l), a)
                }
            };
            inf.address = Some(bound);
            endpoints.push(ep);
        }
    }
    let mut sim = Simulator {
        opts,
        meters,
        info,
        endpoints,
        notes,
    };
    if let Some(path) = sim.opts.export_keys.clone() {
        write_secret_file(&path, &sim.key_file())?;
        sim.notes.push(format!(
            "key file {}: keys of {} meter(s) written (mode 0600)",
            path.display(),
            sim.meters.len()
        ));
    }
    Ok(sim)
}

/// Binds, then serves until `shutdown` resolves (see [`Simulator::serve`]).
pub async fn run(
    opts: SimulatorOptions,
    log: impl Fn(String) + Send + Sync + Clone + 'static,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    bind(opts).await?.serve(log, shutdown).await
}

/// The configurations of a fleet: the profile itself for one meter, else
/// meters derived from the seed (key derivation spread over the cores).
fn fleet_configs(base: &MeterConfig, meters: u32, seed: u64) -> Vec<MeterConfig> {
    if meters == 1 {
        return vec![base.clone()];
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8) as u32;
    let chunk = meters.div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let from = t * chunk;
                let to = ((t + 1) * chunk).min(meters);
                s.spawn(move || {
                    (from..to)
                        .map(|i| base.derived(seed, i))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

fn mode_e_char(baud: u32) -> Option<u8> {
    (b'0'..=b'6').find(|z| crate::transport::serial::baud_of(*z) == Some(baud))
}

fn open_serial(
    path: &str,
    baud: u32,
    seven_e1: bool,
) -> Result<tokio_serial::SerialStream, String> {
    use tokio_serial::SerialPortBuilderExt;
    let (parity, bits) = if seven_e1 {
        (tokio_serial::Parity::Even, tokio_serial::DataBits::Seven)
    } else {
        (tokio_serial::Parity::None, tokio_serial::DataBits::Eight)
    };
    tokio_serial::new(path, baud)
        .parity(parity)
        .data_bits(bits)
        .stop_bits(tokio_serial::StopBits::One)
        .open_native_async()
        .map_err(|e| format!("cannot open serial port {path}: {e}"))
}

/// The line of the IEC 62056-21 sign-on: 300 baud 7E1.
fn set_sign_on_line(port: &mut tokio_serial::SerialStream) -> Result<(), String> {
    use tokio_serial::SerialPort;
    port.set_baud_rate(300)
        .and_then(|_| port.set_parity(tokio_serial::Parity::Even))
        .and_then(|_| port.set_data_bits(tokio_serial::DataBits::Seven))
        .map_err(|e| format!("cannot switch the serial port to 300 baud 7E1: {e}"))
}

fn set_line(port: &mut tokio_serial::SerialStream, baud: u32) -> Result<(), String> {
    use tokio_serial::SerialPort;
    port.set_baud_rate(baud)
        .and_then(|_| port.set_parity(tokio_serial::Parity::None))
        .and_then(|_| port.set_data_bits(tokio_serial::DataBits::Eight))
        .map_err(|e| format!("cannot switch the serial port to {baud} baud 8N1: {e}"))
}

impl Simulator {
    /// The bound meters, by index.
    pub fn meters(&self) -> &[MeterInfo] {
        &self.info
    }

    /// The shared state of meter `index`, for inspection.
    pub fn meter(&self, index: u32) -> Option<&SharedMeter> {
        self.meters.get(index as usize)
    }

    fn label(&self, index: usize) -> String {
        let place = match (
            &self.opts.serial,
            self.info.get(index).and_then(|i| i.address),
        ) {
            (Some(p), _) => p.clone(),
            (None, Some(a)) => a.to_string(),
            (None, None) => "?".into(),
        };
        if self.meters.len() == 1 {
            place
        } else {
            format!("meter {index} ({place})")
        }
    }

    /// The key file text: per meter, its address, system title and the keys of
    /// each client that uses them (entries like `meter-0007/client-1/encryption-key`).
    pub fn key_file(&self) -> String {
        use std::fmt::Write;
        let n = self.meters.len();
        let width = (n.saturating_sub(1)).to_string().len().max(4);
        let mut s = format!(
            "# idis-harness simulator key file: {n} meter(s), {} transport{}.\n\
             # SECRET: these are the meters' keys. Protect this file.\n\
             # Entries flatten to names like meter-{:0width$}/client-1/encryption-key.\n",
            if self.opts.serial.is_some() {
                "serial HDLC".to_string()
            } else {
                self.opts.transport.to_string()
            },
            if n > 1 {
                format!(", keys derived from seed {}", self.opts.seed)
            } else {
                String::new()
            },
            0
        );
        for (i, (meter, inf)) in self.meters.iter().zip(&self.info).enumerate() {
            let m = meter.lock();
            let _ = writeln!(s, "meter-{i:0width$}:");
            match (&self.opts.serial, inf.address) {
                (Some(p), _) => {
                    let _ = writeln!(s, "  serial: {p:?}");
                }
                (None, Some(a)) => {
                    let _ = writeln!(s, "  address: \"{a}\"");
                    let _ = writeln!(s, "  port: {}", a.port());
                }
                (None, None) => {}
            }
            let _ = writeln!(
                s,
                "  system-title: \"{}\"",
                hex::encode_upper(m.config.system_title.0)
            );
            let _ = writeln!(s, "  logical-device-name: {:?}", inf.logical_device_name);
            for c in &m.config.clients {
                if !(c.ciphered || c.mechanism == Mechanism::HlsGmac) {
                    continue;
                }
                let Some(st) = m.state.clients.get(&c.sap) else {
                    continue;
                };
                let h = |k: &crate::security::Key| hex::encode_upper(k.expose());
                let _ = writeln!(s, "  client-{}:", c.sap);
                let _ = writeln!(s, "    encryption-key: \"{}\"", h(&st.encryption_key));
                let _ = writeln!(
                    s,
                    "    authentication-key: \"{}\"",
                    h(&st.authentication_key)
                );
                let _ = writeln!(s, "    broadcast-key: \"{}\"", h(&st.broadcast_key));
                let _ = writeln!(s, "    master-key: \"{}\"", h(&st.master_key));
            }
        }
        s
    }

    fn snapshot(meters: &[SharedMeter], titles: &[SystemTitle]) -> StateFile {
        let mut f = StateFile::default();
        for (i, (m, t)) in meters.iter().zip(titles).enumerate() {
            f.meters.insert(
                i as u32,
                crate::sim::state::SavedMeter {
                    system_title: *t,
                    state: m.lock().state.clone(),
                },
            );
        }
        f
    }

    /// Serves every meter until `shutdown` resolves, then stops the listeners
    /// and connections and saves the state file. Logs through `log`: where each
    /// meter listens (a summary line for more than 10 meters), each connection,
    /// each association and release, and every per-connection error (which
    /// never stops the server).
    pub async fn serve(
        self,
        log: impl Fn(String) + Send + Sync + Clone + 'static,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), String> {
        let n = self.meters.len();
        let labels: Vec<String> = (0..n).map(|i| self.label(i)).collect();
        let what = if self.opts.serial.is_some() {
            if self.opts.mode_e {
                "HDLC after IEC 62056-21 mode E".to_string()
            } else {
                format!("HDLC at {} baud", self.opts.serial_baud)
            }
        } else {
            self.opts.transport.to_string()
        };
        if n <= 10 {
            for (i, inf) in self.info.iter().enumerate() {
                let place = match (&self.opts.serial, inf.address) {
                    (Some(p), _) => p.clone(),
                    (None, Some(a)) => a.to_string(),
                    (None, None) => "?".into(),
                };
                let who = if n == 1 {
                    String::new()
                } else {
                    format!("meter {i}: ")
                };
                log(format!(
                    "{who}listening on {place} ({what}), system title {}, logical device name {}",
                    hex::encode_upper(inf.system_title.0),
                    inf.logical_device_name
                ));
            }
        } else {
            let first = self.info.first().and_then(|i| i.address);
            let last = self.info.last().and_then(|i| i.address);
            let range = match (first, last) {
                (Some(a), Some(b)) if self.opts.listen.port() != 0 => {
                    format!("{a} to port {}", b.port())
                }
                _ => format!("{} (ports chosen by the system)", self.opts.listen.ip()),
            };
            log(format!(
                "{n} meters listening on {range} ({what}), keys and system titles derived from seed {}",
                self.opts.seed
            ));
        }
        let q = Quirks::from_names(&self.opts.quirks).map_err(|e| e.to_string())?;
        if !q.is_empty() {
            let names: Vec<_> = q.iter().map(|q| q.name()).collect();
            log(format!("quirks switched on: {}", names.join(", ")));
        }
        for note in &self.notes {
            log(note.clone());
        }

        let (stop_tx, stop_rx) = watch::channel(false);
        let dirty = Arc::new(Notify::new());
        let meters: Vec<SharedMeter> = self
            .meters
            .iter()
            .zip(&labels)
            .map(|(m, label)| {
                let l = log.clone();
                let label = label.clone();
                let mut m = m
                    .clone()
                    .with_log(move |line| l(format!("{label}: {line}")));
                if self.opts.state.is_some() {
                    let d = dirty.clone();
                    m = m.with_on_change(move || d.notify_one());
                }
                m
            })
            .collect();
        let titles: Vec<SystemTitle> = self.info.iter().map(|i| i.system_title).collect();
        let meters = Arc::new(meters);

        let mut tasks = JoinSet::new();
        for (i, ep) in self.endpoints.into_iter().enumerate() {
            let Some(meter) = meters.get(i).cloned() else {
                continue;
            };
            let label = labels.get(i).cloned().unwrap_or_default();
            let log = log.clone();
            let stop = stop_rx.clone();
            match ep {
                Endpoint::Tcp(l) => {
                    let hdlc = self.opts.transport == SimTransport::Hdlc;
                    tasks.spawn(accept_loop(l, meter, hdlc, label, log, stop));
                }
                Endpoint::Udp(s) => {
                    tasks.spawn(async move {
                        let mut stop = stop;
                        tokio::select! {
                            r = serve_udp(meter, s) => {
                                if let Err(e) = r {
                                    log(format!("{label}: UDP socket failed, this meter stops serving: {e}"));
                                }
                            }
                            _ = stop.changed() => {}
                        }
                    });
                }
                Endpoint::Serial(port) => {
                    let opts = self.opts.clone();
                    tasks.spawn(serial_loop(*port, opts, meter, label, log, stop));
                }
            }
        }
        let saver = self.opts.state.clone().map(|path| {
            let meters = meters.clone();
            let titles = titles.clone();
            let dirty = dirty.clone();
            let log = log.clone();
            tokio::spawn(async move {
                loop {
                    dirty.notified().await;
                    let snap = Simulator::snapshot(&meters, &titles);
                    let p = path.clone();
                    let r = tokio::task::spawn_blocking(move || snap.save(&p)).await;
                    match r {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => log(format!("cannot save the state: {e}")),
                        Err(e) => log(format!("cannot save the state: {e}")),
                    }
                    // Coalesce: at most one write per 200 ms.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        });

        shutdown.await;
        let _ = stop_tx.send(true);
        if let Some(s) = saver {
            s.abort();
            let _ = s.await;
        }
        while tasks.join_next().await.is_some() {}
        if let Some(path) = &self.opts.state {
            let snap = Simulator::snapshot(&meters, &titles);
            snap.save(path)?;
            log(format!("state saved to {}", path.display()));
        }
        log("stopped".into());
        Ok(())
    }
}

async fn accept_loop<L: Fn(String) + Send + Sync + Clone + 'static>(
    listener: TcpListener,
    meter: SharedMeter,
    hdlc: bool,
    label: String,
    log: L,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                log(format!("{label}: accept failed: {e}{}", io_hint(&e)));
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    _ = stop.changed() => return,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let meter = meter.clone();
        let label = label.clone();
        let log = log.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let served = async {
                if hdlc {
                    serve_hdlc(meter, stream).await
                } else {
                    serve_wrapper(meter, stream).await
                }
            };
            tokio::select! {
                r = served => {
                    if let Err(e) = r {
                        log(format!("{label}: connection from {peer} ended: {e}"));
                    }
                }
                _ = stop.changed() => {}
            }
        });
    }
}

/// Serves the meter on its serial port, which stays open throughout (it is
/// reopened, after a pause, only when it fails). Plain HDLC: one session for
/// as long as the line lasts. Mode E, as meters do it: wait for a sign-on at
/// 300 baud 7E1, answer it, switch to the acknowledged rate at 8N1, serve HDLC
/// until a DISC or the inactivity timeout, then go back to 300 baud 7E1 and
/// wait for the next sign-on.
async fn serial_loop<L: Fn(String) + Send + Sync + Clone + 'static>(
    first: tokio_serial::SerialStream,
    opts: SimulatorOptions,
    meter: SharedMeter,
    label: String,
    log: L,
    mut stop: watch::Receiver<bool>,
) {
    let path = opts.serial.clone().unwrap_or_default();
    let mut port = Some(first);
    loop {
        let p = match port.as_mut() {
            Some(p) => p,
            None => {
                match open_serial(
                    &path,
                    if opts.mode_e { 300 } else { opts.serial_baud },
                    opts.mode_e,
                ) {
                    Ok(p) => port.insert(p),
                    Err(e) => {
                        log(format!("{label}: {e}"));
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                            _ = stop.changed() => return,
                        }
                    }
                }
            }
        };
        let r = tokio::select! {
            r = serial_session(p, &opts, &meter, &label, &log) => r,
            _ = stop.changed() => return,
        };
        match r {
            Ok(end @ (SessionEnd::Disconnected | SessionEnd::InactivityTimeout)) => {
                log(format!(
                    "{label}: HDLC session ended ({end}); waiting for a mode E sign-on"
                ));
                continue;
            }
            Ok(SessionEnd::Closed) => log(format!("{label}: serial session ended")),
            Err(e) => log(format!("{label}: serial session ended: {e}")),
        }
        port = None;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One session on the serial port: for mode E, the sign-on first, and HDLC
/// until the meter returns to the sign-on; otherwise HDLC until the line closes.
async fn serial_session<L: Fn(String)>(
    p: &mut tokio_serial::SerialStream,
    opts: &SimulatorOptions,
    meter: &SharedMeter,
    label: &str,
    log: &L,
) -> Result<SessionEnd, String> {
    if !opts.mode_e {
        serve_hdlc(meter.clone(), p)
            .await
            .map_err(|e| e.to_string())?;
        return Ok(SessionEnd::Closed);
    }
    set_sign_on_line(p)?;
    let ldn = meter.lock().config.logical_device_name.clone();
    let flag = match ldn.get(..3) {
        Some(f) if f.iter().all(u8::is_ascii_alphabetic) => String::from_utf8_lossy(f).into_owned(),
        _ => "SIM".to_string(),
    };
    let z = mode_e_char(opts.serial_baud).unwrap_or(b'5');
    let baud = crate::transport::serial::mode_e_answer(p, &flag, z)
        .await
        .map_err(|e| e.to_string())?;
    // The acknowledgement has arrived, so the line is quiet: switch now, before
    // the client's first frame.
    set_line(p, baud)?;
    log(format!("{label}: mode E sign-on, now HDLC at {baud} baud"));
    serve_hdlc_session(meter, p)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_parse_by_name() {
        for t in SimTransport::ALL {
            assert_eq!(t.name().parse::<SimTransport>(), Ok(t));
        }
        assert!(
            "tcp"
                .parse::<SimTransport>()
                .unwrap_err()
                .contains("wrapper, hdlc or udp")
        );
    }

    #[test]
    fn lists_every_quirk_on_its_own_line() {
        let text = list_quirks();
        assert_eq!(text.lines().count(), Quirk::ALL.len());
        let line = text
            .lines()
            .find(|l| l.starts_with("keeps-old-key "))
            .unwrap();
        assert!(line.contains("keeps using the old key"), "{line}");
    }

    #[test]
    fn fleet_configs_match_derived_in_order() {
        let base = MeterConfig::default();
        let v = fleet_configs(&base, 5, 9);
        assert_eq!(v.len(), 5);
        for (i, c) in v.iter().enumerate() {
            assert_eq!(*c, base.derived(9, i as u32));
        }
        assert_eq!(fleet_configs(&base, 1, 9), vec![base]);
    }

    #[tokio::test]
    async fn rejects_bad_options_before_binding() {
        let e = bind(SimulatorOptions {
            quirks: vec!["keeps-old-kye".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
        assert!(e.contains("did you mean `keeps-old-key`"), "{e}");
        let e = bind(SimulatorOptions {
            meters: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
        assert!(e.contains("at least 1"), "{e}");
        let e = bind(SimulatorOptions {
            listen: "127.0.0.1:65000".parse().unwrap(),
            meters: 1000,
            ..Default::default()
        })
        .await
        .unwrap_err();
        assert!(e.contains("above 65535"), "{e}");
        let e = bind(SimulatorOptions {
            serial: Some("/dev/null".into()),
            meters: 2,
            ..Default::default()
        })
        .await
        .unwrap_err();
        assert!(e.contains("one meter"), "{e}");
    }

    #[tokio::test]
    async fn rejects_a_port_in_use_naming_it() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let e = bind(SimulatorOptions {
            listen: addr,
            ..Default::default()
        })
        .await
        .unwrap_err();
        assert!(e.contains(&format!("cannot listen on {addr}: ")), "{e}");
    }

    #[tokio::test]
    async fn rejects_a_fleet_port_in_use_naming_the_meter() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        // Meter 1 of 2 would take `port` when meter 0 starts one below it.
        let Some(start) = port.checked_sub(1) else {
            return;
        };
        let r = bind(SimulatorOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], start)),
            meters: 2,
            ..Default::default()
        })
        .await;
        match r {
            Err(e) => assert!(e.contains("cannot listen on 127.0.0.1:"), "{e}"),
            Ok(_) => panic!("port {port} is taken"),
        }
    }
}
