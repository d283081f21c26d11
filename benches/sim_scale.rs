//! The standalone simulator at scale: `--meters 10000` in one process, then
//! 10,000 concurrent associations to it over loopback, and what that costs.
//!
//! ```text
//! cargo bench --bench sim_scale
//! cargo bench --bench sim_scale -- --meters 10000 --connections 10000 --hls 500 --transport wrapper
//! cargo bench --bench sim_scale -- --transport udp
//! ```
//!
//! Options: `--meters N` (10000), `--connections N` (as many as meters),
//! `--hls N` (how many of them associate as the management client with
//! HLS-GMAC and ciphering, with the meter's derived keys; 200), `--transport
//! wrapper|hdlc|udp` (wrapper), `--port P` (first port, 20000: below the
//! ephemeral range, so client ports never collide), `--hold SECS` (2).
//!
//! The simulator runs in this process, started through the library
//! (`idis_harness::sim::standalone`), exactly as `idis-harness simulate
//! --meters N` does. The clients run in a child process (this same program,
//! re-run with `--client-worker`), so the memory figures are the simulator's
//! alone, and the two processes each have their own open-files limit. Only
//! loopback (127.0.0.1) is used. Figures printed: start time (meters built,
//! keys derived, every listener bound), time to associate every client, the
//! simulator's resident memory (VmRSS) after start and with every association
//! held, and its peak (VmHWM).
//!
//! Over TCP the simulator holds one listening socket per meter plus one socket
//! per connection: 10,000 meters and 10,000 connections need 20,000 descriptors
//! and a few more. The soft open-files limit is raised to the hard one; when
//! the hard limit is too low, the number of connections is lowered to fit and
//! the output says so.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use idis_harness::client::{AssociateOutcome, Client, GetOutcome};
use idis_harness::profile::{ClientProfile, DeviceProfile};
use idis_harness::session::association::AssociationRequest;
use idis_harness::sim::MeterConfig;
use idis_harness::sim::standalone::{self, SimTransport, SimulatorOptions};
use idis_harness::transport::open::open;
use idis_harness::transport::target::TargetSpec;
use idis_harness::wire::apdu::AttributeDescriptor;
use idis_harness::wire::obis::Obis;

const SEED: u64 = 7;

#[derive(Debug, Clone)]
struct Args {
    meters: u32,
    connections: Option<u32>,
    hls: u32,
    transport: SimTransport,
    port: u16,
    hold: u64,
    client_worker: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        meters: 10_000,
        connections: None,
        hls: 200,
        transport: SimTransport::Wrapper,
        port: 20_000,
        hold: 2,
        client_worker: false,
    };
    let mut it = std::env::args().skip(1);
    // `cargo test --all-targets` runs this without `--bench`: then a small smoke
    // run checks that it works, instead of the full 10,000-meter measurement.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args
        .iter()
        .any(|a| a == "--bench" || a == "--client-worker" || a.starts_with("--meters"))
    {
        a.meters = 20;
        a.hls = 5;
        a.hold = 0;
    }
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        let num = |name: &str, v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{name}: {v:?} is not a number"))
        };
        match arg.as_str() {
            "--meters" => a.meters = num("--meters", val("--meters")?)? as u32,
            "--connections" => {
                a.connections = Some(num("--connections", val("--connections")?)? as u32)
            }
            "--hls" => a.hls = num("--hls", val("--hls")?)? as u32,
            "--transport" => a.transport = val("--transport")?.parse()?,
            "--port" => a.port = num("--port", val("--port")?)? as u16,
            "--hold" => a.hold = num("--hold", val("--hold")?)?,
            "--client-worker" => a.client_worker = true,
            // What `cargo bench` passes to every bench target.
            "--bench" => {}
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(a)
}

/// Raises the soft open-files limit to the hard one; returns (soft, hard).
fn raise_nofile() -> (u64, u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read a plain struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return (0, 0);
        }
        if r.rlim_cur < r.rlim_max {
            let want = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                r.rlim_cur = r.rlim_max;
            }
        }
    }
    (r.rlim_cur, r.rlim_max)
}

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

/// (VmRSS, VmHWM) in KiB, from /proc/self/status.
fn memory_kib() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn scheme(t: SimTransport) -> &'static str {
    match t {
        SimTransport::Wrapper => "tcp",
        SimTransport::Hdlc => "hdlc+tcp",
        SimTransport::Udp => "udp",
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sim_scale: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let code = if args.client_worker {
        rt.block_on(client_worker(args))
    } else {
        rt.block_on(simulator(args))
    };
    std::process::exit(code);
}

// ---------------------------------------------------------------------------
// The simulator side (this process).

async fn simulator(args: Args) -> i32 {
    let (soft, hard) = raise_nofile();
    println!("sim_scale: the standalone simulator at scale (loopback only)");
    println!(
        "  open-files limit: soft {soft}, hard {hard} (soft raised to hard where it was lower)"
    );
    let (rss0, _) = memory_kib();
    let opts = SimulatorOptions {
        listen: SocketAddr::from(([127, 0, 0, 1], args.port)),
        transport: args.transport,
        meters: args.meters,
        seed: SEED,
        ..SimulatorOptions::default()
    };
    let t0 = Instant::now();
    let sim = match standalone::bind(opts).await {
        Ok(s) => s,
        Err(e) => {
            println!("  FAILED to start: {e}");
            return 1;
        }
    };
    let start_time = t0.elapsed();
    let (rss_started, _) = memory_kib();
    let fds_after_bind = open_fds();

    // Associations open now, counted from the simulator's own log lines.
    let open_assocs = Arc::new(AtomicI64::new(0));
    let counter = open_assocs.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sim.serve(
        move |line: String| {
            if line.ends_with(": associated") {
                counter.fetch_add(1, Ordering::Relaxed);
            } else if line.ends_with(": released") {
                counter.fetch_sub(1, Ordering::Relaxed);
            } else if !line.contains("closing a wrapper connection") {
                println!("  simulator: {line}");
            }
        },
        async move {
            let _ = stop_rx.await;
        },
    ));
    println!(
        "  started {} meters ({}) in {:.3} s: listeners bound on 127.0.0.1:{}..{}",
        args.meters,
        args.transport,
        start_time.as_secs_f64(),
        args.port,
        u32::from(args.port) + args.meters - 1
    );
    println!(
        "  simulator memory after start: VmRSS {} (runtime alone {}), {:.1} KiB per meter",
        mib(rss_started),
        mib(rss0),
        rss_started.saturating_sub(rss0) as f64 / f64::from(args.meters.max(1))
    );

    let wanted = args.connections.unwrap_or(args.meters);
    let mut connections = wanted;
    if args.transport != SimTransport::Udp {
        // One more descriptor per accepted connection, and a small margin.
        let room = hard.saturating_sub(fds_after_bind + 16);
        if u64::from(wanted) > room {
            connections = room as u32;
            println!(
                "  LIMITED: the hard open-files limit ({hard}) is too low and only a privileged process can raise it; \
                 {} descriptors are in use after binding {} listeners, so this process can accept only \
                 {connections} of the {wanted} connections asked for. With `ulimit -Hn` of at least {} \
                 the full number runs; `--transport udp` needs no socket per association.",
                fds_after_bind,
                args.meters,
                fds_after_bind + u64::from(wanted) + 16
            );
        }
    }
    let hls = args.hls.min(connections);

    let exe = std::env::current_exe().expect("the bench's own path");
    let mut child = match Command::new(exe)
        .args([
            "--client-worker",
            "--meters",
            &args.meters.to_string(),
            "--connections",
            &connections.to_string(),
            "--hls",
            &hls.to_string(),
            "--transport",
            args.transport.name(),
            "--port",
            &args.port.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            println!("  FAILED to start the client process: {e}");
            return 1;
        }
    };
    let mut to_child = child.stdin.take().expect("child stdin");
    let from_child = child.stdout.take().expect("child stdout");
    let lines = std::sync::Mutex::new(BufReader::new(from_child).lines());
    let lines = Arc::new(lines);
    let next_line = |lines: Arc<
        std::sync::Mutex<std::io::Lines<BufReader<std::process::ChildStdout>>>,
    >| async move {
        tokio::task::spawn_blocking(move || {
            lines
                .lock()
                .ok()
                .and_then(|mut l| l.next())
                .and_then(|r| r.ok())
        })
        .await
        .ok()
        .flatten()
    };

    println!(
        "  {connections} clients connecting ({} public, {hls} management with HLS-GMAC and ciphering)...",
        connections - hls
    );
    let ready = next_line(lines.clone()).await.unwrap_or_default();
    println!("  clients: {ready}");
    let held_by_server = open_assocs.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    let (rss_held, hwm) = memory_kib();
    let held_after_hold = open_assocs.load(Ordering::Relaxed);
    let fds_held = open_fds();

    // Every client reads once more over its held association.
    let _ = writeln!(to_child, "check");
    let _ = to_child.flush();
    let checked = next_line(lines.clone()).await.unwrap_or_default();
    println!("  clients: {checked}");
    let _ = writeln!(to_child, "close");
    let _ = to_child.flush();
    let closed = next_line(lines.clone()).await.unwrap_or_default();
    println!("  clients: {closed}");
    drop(to_child);
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    let _ = stop_tx.send(());
    let _ = server.await;

    let per_assoc = if held_after_hold > 0 {
        rss_held.saturating_sub(rss_started) as f64 / held_after_hold as f64
    } else {
        0.0
    };
    println!();
    println!("  == figures ==");
    println!("  meters                      {}", args.meters);
    println!("  transport                   {}", args.transport);
    println!(
        "  start time                  {:.3} s   (build {} meters with derived keys, bind every listener)",
        start_time.as_secs_f64(),
        args.meters
    );
    println!(
        "  associations held           {held_after_hold} (counted by the simulator; {held_by_server} when the clients were ready)"
    );
    println!("  simulator descriptors open  {fds_held}");
    println!("  simulator VmRSS after start {}", mib(rss_started));
    println!(
        "  simulator VmRSS, all held   {}   ({per_assoc:.1} KiB per association)",
        mib(rss_held)
    );
    println!("  simulator VmHWM (peak)      {}", mib(hwm));
    let ok_start = start_time < Duration::from_secs(5);
    let ok_mem = hwm < 1024 * 1024;
    let full = i64::from(wanted) == held_after_hold;
    println!(
        "  targets: start < 5 s: {}; peak < 1 GiB: {}; all {wanted} associations held: {}",
        if ok_start { "yes" } else { "NO" },
        if ok_mem { "yes" } else { "NO" },
        if full {
            "yes".to_string()
        } else {
            format!("NO ({held_after_hold}; see LIMITED above)")
        }
    );
    0
}

// ---------------------------------------------------------------------------
// The client side (the child process).

type Conn = (Client, usize);

async fn client_worker(args: Args) -> i32 {
    raise_nofile();
    let n = args.connections.unwrap_or(args.meters) as usize;
    let meters = args.meters.max(1) as usize;
    let mut profile = DeviceProfile::default();
    profile.timeouts.response = Duration::from_secs(60);
    profile.timeouts.connect = Duration::from_secs(60);
    let profile = Arc::new(profile);
    let t0 = Instant::now();
    // Bounded concurrency while connecting, so the listen backlogs never overflow.
    let gate = Arc::new(tokio::sync::Semaphore::new(512));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let meter = i % meters;
        let port = u32::from(args.port) + meter as u32;
        let target: TargetSpec = format!("{}://127.0.0.1:{port}", scheme(args.transport))
            .parse()
            .expect("a target");
        let hls = i < args.hls as usize;
        let profile = profile.clone();
        let gate = gate.clone();
        set.spawn(async move {
            let _permit = gate.acquire_owned().await.ok();
            let client_profile = if hls {
                let cfg = MeterConfig::default().derived(SEED, meter as u32);
                let c = cfg.client(1).expect("client 1");
                ClientProfile {
                    encryption_key: Some(c.encryption_key.clone()),
                    authentication_key: Some(c.authentication_key.clone()),
                    ..ClientProfile::management()
                }
            } else {
                ClientProfile::public()
            };
            let sap = client_profile.sap;
            let link = open(&target, &profile, sap, None, None, Instant::now())
                .await
                .map_err(|e| format!("{target}: {e}"))?;
            let mut c = Client::new(link);
            c.link
                .connect()
                .await
                .map_err(|e| format!("{target}: {e}"))?;
            let req =
                AssociationRequest::from_profile(&client_profile, b"0123456789ABCDEF".to_vec(), 1);
            match c.associate(req, false).await {
                Ok(AssociateOutcome::Associated) => {}
                Ok(AssociateOutcome::Refused(r)) => return Err(format!("{target}: refused {r:?}")),
                Err(e) => return Err(format!("{target}: {e}")),
            }
            read_ldn(&mut c)
                .await
                .map_err(|e| format!("{target}: {e}"))?;
            Ok::<Conn, String>((c, meter))
        });
    }
    let mut held: Vec<Conn> = Vec::with_capacity(n);
    let mut failed = 0usize;
    let mut first_error = None;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(c)) => held.push(c),
            Ok(Err(e)) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let took = t0.elapsed();
    let (rss, _) = memory_kib();
    println!(
        "{} associated and read the logical device name in {:.3} s, {failed} failed{}; client process VmRSS {}",
        held.len(),
        took.as_secs_f64(),
        first_error
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
        mib(rss)
    );
    let _ = std::io::stdout().flush();

    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        line.clear();
        let read = tokio::task::block_in_place(|| stdin.lock().read_line(&mut line));
        match (read, line.trim()) {
            (Ok(0), _) | (Err(_), _) | (_, "close") => break,
            (_, "check") => {
                let t = Instant::now();
                let mut set = tokio::task::JoinSet::new();
                for (mut c, m) in held.drain(..) {
                    set.spawn(async move {
                        let ok = read_ldn(&mut c).await.is_ok();
                        (c, m, ok)
                    });
                }
                let mut ok = 0usize;
                while let Some(Ok((c, m, good))) = set.join_next().await {
                    ok += usize::from(good);
                    held.push((c, m));
                }
                println!(
                    "{ok} of {} held associations read again in {:.3} s",
                    held.len(),
                    t.elapsed().as_secs_f64()
                );
                let _ = std::io::stdout().flush();
            }
            _ => {}
        }
    }
    let count = held.len();
    drop(held);
    println!("{count} connections closed");
    let _ = std::io::stdout().flush();
    0
}

async fn read_ldn(c: &mut Client) -> Result<(), String> {
    let attr = AttributeDescriptor {
        class_id: 1,
        instance: Obis::LOGICAL_DEVICE_NAME,
        attribute_id: 2,
    };
    match c.get(attr).await.map_err(|e| e.to_string())? {
        GetOutcome::Data(_) => Ok(()),
        other => Err(format!("logical device name: {other:?}")),
    }
}
