//! The `idis-harness` command line: parses arguments, calls the library, maps
//! results to exit codes (0 all passed, 1 any failure or error, 2 usage,
//! configuration or suite errors, 3 could not test).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use idis_harness::client::CounterStore;
use idis_harness::profile::DeviceProfile;
use idis_harness::report::console::{ColorChoice, ConsoleOptions, ConsoleReporter};
use idis_harness::report::junit::JunitReporter;
use idis_harness::report::trace::TraceWriter;
use idis_harness::report::{Fanout, Reporter};
use idis_harness::runner::case::TargetState;
use idis_harness::runner::event::TargetInfo;
use idis_harness::runner::{self, RunOptions, Selection, Target};
use idis_harness::sim::server::SimHandle;
use idis_harness::sim::{Meter, MeterConfig, Quirks};
use idis_harness::suite::{self, VarOverrides};
use idis_harness::transport::target::{Endpoint, TargetSpec};

mod cli;

use cli::USAGE_ERROR;
use cli::out::Out;

const EXIT_CODES: &str = "Exit codes: 0 all passed (skips allowed); 1 a failure or error of the device, or an interrupted run; 2 usage, configuration or suite errors; 3 could not test (the pre-flight probe failed, or the fatal-failure policy stopped a target before its cases were decided).";

#[derive(Parser, Debug)]
#[command(
    name = "idis-harness",
    version,
    about = "IDIS / DLMS-COSEM conformance and interoperability test harness",
    long_about = "Runs YAML conformance suites against a meter (TCP/UDP wrapper, HDLC over TCP or serial, optical probe) or the built-in simulated IDIS meter, and writes JUnit reports.",
    after_help = EXIT_CODES
)]
struct Cli {
    /// When to use colour: auto, always, never (NO_COLOR is honoured).
    #[arg(long, global = true, default_value = "auto", env = "IDIS_COLOR")]
    color: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run suites against a target (default: every shipped suite against the built-in simulator).
    #[command(after_help = EXIT_CODES)]
    Run(Box<RunArgs>),
    /// List the cases of suites, with their tags.
    List(cli::list::ListArgs),
    /// Check suite files (and a device profile) without running them.
    Validate(cli::validate::ValidateArgs),
    /// Print the JSON schema of suite files (for editors).
    Schema,
    /// Associate with a meter, read attributes, print them decoded, release.
    Read(cli::read::ReadArgs),
    /// Serve the simulated IDIS meter (or a fleet of them) until stopped.
    Simulate(SimulateArgs),
}

#[derive(Args, Debug)]
struct SimulateArgs {
    /// Address to listen on; with --meters N, meter i listens on port + i.
    #[arg(long, default_value = "127.0.0.1:4059")]
    listen: std::net::SocketAddr,
    /// wrapper (TCP), hdlc (HDLC over TCP) or udp (UDP wrapper).
    #[arg(long, default_value = "wrapper")]
    transport: String,
    /// Serve HDLC on this serial port instead of listening.
    #[arg(long)]
    serial: Option<String>,
    /// Baud rate on the serial port.
    #[arg(long, default_value_t = 9600)]
    baud: u32,
    /// Answer an IEC 62056-21 mode E sign-on on the serial port first.
    #[arg(long)]
    mode_e: bool,
    /// Meter profile (fixtures/meters/*.yaml).
    #[arg(long)]
    profile: Option<PathBuf>,
    /// Switch on a deliberate fault (repeatable).
    #[arg(long)]
    quirk: Vec<String>,
    /// Print the quirks, one per line, and exit.
    #[arg(long)]
    list_quirks: bool,
    /// Serve this many meters on consecutive ports, keys derived from --seed.
    #[arg(long, default_value_t = 1)]
    meters: u32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the meters' keys to this key file (mode 0600).
    #[arg(long)]
    export_keys: Option<PathBuf>,
    /// Keep the meters' memory (counters, keys, policy) in this file across restarts.
    #[arg(long)]
    state: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
struct TargetArgs {
    /// Target: sim, sim?quirk=NAME, tcp://HOST:PORT, udp://HOST:PORT, hdlc+tcp://HOST:PORT,
    /// serial:///dev/ttyX?baud=9600, serial:///dev/ttyX?mode-e. Repeat to run against several.
    #[arg(long = "target", short = 't', env = "IDIS_TARGET")]
    targets: Vec<String>,
    /// Device profile (YAML): addresses, clients, keys, features, accepted outcomes.
    #[arg(long, short = 'd', env = "IDIS_DEVICE")]
    device: Option<PathBuf>,
    /// Switch on a simulator fault (repeatable; `idis-harness simulate --list-quirks`).
    #[arg(long)]
    quirk: Vec<String>,
    /// Meter profile for the built-in simulator (fixtures/meters/*.yaml).
    #[arg(long)]
    meter: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Suite files, folders or shipped suite names (default: suites/ when it
    /// exists here, else the suites built into the binary).
    #[arg(value_name = "SUITES")]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    target: TargetArgs,
    /// JUnit report file.
    #[arg(long, default_value = "reports/junit.xml", env = "IDIS_JUNIT")]
    junit: PathBuf,
    /// Also write one traffic trace per case into this folder.
    #[arg(long)]
    traces: Option<PathBuf>,
    /// Key file where generated keys are escrowed (mode 0600) before they are
    /// sent to the meter [default: escrow-keys.yaml beside the JUnit report].
    #[arg(long, value_name = "FILE", env = "IDIS_ESCROW")]
    escrow: Option<PathBuf>,
    /// Set a suite variable (repeatable): NAME=VALUE.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    vars: Vec<String>,
    /// A YAML file of suite variables.
    #[arg(long)]
    vars_file: Option<PathBuf>,
    /// Run only these cases (repeatable): an exact id, `APPL_OPEN_1` or
    /// `association::APPL_OPEN_1`, or a glob pattern, `'APPL_OPEN_*'`
    /// (`*` any text, `?` one character, `[...]` one of).
    #[arg(long = "id", short = 'k', value_name = "ID")]
    ids: Vec<String>,
    /// Run only cases with this tag (repeatable).
    #[arg(long)]
    tag: Vec<String>,
    /// Skip cases with this tag (repeatable).
    #[arg(long)]
    skip_tag: Vec<String>,
    /// Stop after the first failure or error.
    #[arg(long)]
    fail_fast: bool,
    /// Targets to run at once (each target runs one case at a time).
    #[arg(long, short = 'j', default_value_t = 1)]
    jobs: usize,
    /// Accept only the standard's outcome where meters may differ.
    #[arg(long)]
    strict: bool,
    /// Time limit per case.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    case_timeout: Duration,
    /// Do not probe the targets before the run (by default the public client,
    /// and the management client when a case needs it, associate and read the
    /// probe object; if that fails, nothing runs and the exit code is 3).
    #[arg(long)]
    no_preflight: bool,
    /// Fatal-failure policy: stop a target after this many cases in a row could
    /// not reach the meter; the rest are not run (exit code 3).
    #[arg(long, default_value_t = runner::DEFAULT_MAX_LOST as u64, value_parser = clap::value_parser!(u64).range(1..))]
    max_lost: u64,
    /// Print the traffic of failed cases.
    #[arg(long, short = 'v')]
    verbose: bool,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Keep invocation counters between runs in this file (default: the profile's state-file).
    #[arg(long)]
    state: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let color: ColorChoice = match cli.color.parse() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: --color: {e}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    match cli.command {
        Command::Run(a) => rt.block_on(cmd_run(*a, color)),
        Command::List(a) => cli::list::cmd_list(a),
        Command::Validate(a) => cli::validate::cmd_validate(a),
        Command::Schema => {
            let mut out = Out::new();
            out.line(suite::json_schema());
            cli::finish(out)
        }
        Command::Read(a) => rt.block_on(cli::read::cmd_read(a)),
        Command::Simulate(a) => rt.block_on(cmd_simulate(a)),
    }
}

fn load_profile(path: &Option<PathBuf>) -> Result<DeviceProfile, String> {
    match path {
        Some(p) => DeviceProfile::load(p).map_err(|e| e.to_string()),
        None => Ok(DeviceProfile::default()),
    }
}

/// Builds the targets: parses each, starts the simulator for `sim` targets.
fn build_targets(
    args: &TargetArgs,
    strict: bool,
    state: Option<&Path>,
) -> Result<Vec<Target>, String> {
    let profile = load_profile(&args.device)?;
    let texts: Vec<String> = if args.targets.is_empty() {
        vec![profile.target.clone().unwrap_or_else(|| "sim".into())]
    } else {
        args.targets.clone()
    };
    let mut out = Vec::new();
    for text in texts {
        let spec: TargetSpec = text
            .parse()
            .map_err(|e: idis_harness::transport::target::TargetError| e.to_string())?;
        let sim = match &spec.endpoint {
            Endpoint::Sim { quirks } => {
                let mut names = quirks.clone();
                names.extend(args.quirk.iter().cloned());
                let q = Quirks::from_names(&names).map_err(|e| e.to_string())?;
                let cfg = match &args.meter {
                    Some(p) => MeterConfig::load(p)?,
                    None => MeterConfig::default(),
                };
                Some(SimHandle::new(Meter::new(cfg, q)))
            }
            _ if !args.quirk.is_empty() => {
                return Err("--quirk applies to the simulator target only".into());
            }
            _ => None,
        };
        let store_path = state
            .map(Path::to_path_buf)
            .or_else(|| profile.state_file.clone());
        let store = match store_path {
            Some(p) => CounterStore::load(&p)?,
            None => CounterStore::memory(),
        };
        let info = TargetInfo {
            name: spec.text.clone(),
            profile: profile
                .source
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| profile.name.clone()),
            transport: spec.transport_description(),
            system_title: profile
                .server_system_title
                .map(|t| t.to_string())
                .or_else(|| {
                    sim.as_ref()
                        .map(|s| s.meter.lock().config.system_title.to_string())
                }),
        };
        // Without a device profile, the built-in simulator gets timeouts for an
        // in-process meter; a real target keeps the defaults for real meters.
        let target_profile = if sim.is_some() && args.device.is_none() {
            DeviceProfile::for_simulator()
        } else {
            profile.clone()
        };
        out.push(Target {
            state: TargetState::new(spec, target_profile, sim, strict, store),
            info,
        });
    }
    Ok(out)
}

async fn cmd_run(a: RunArgs, color: ColorChoice) -> ExitCode {
    let Some(suites) = cli::suites::load_or_report(&a.paths, &cli::validation_context()) else {
        return ExitCode::from(USAGE_ERROR);
    };
    let mut overrides = VarOverrides::new();
    for v in &a.vars {
        if let Err(e) = overrides.add_cli(v) {
            eprintln!("error: --var {v}: {e}");
            return ExitCode::from(USAGE_ERROR);
        }
    }
    if let Some(f) = &a.vars_file
        && let Err(e) = overrides.load_file(f)
    {
        eprintln!("{e}");
        return ExitCode::from(USAGE_ERROR);
    }
    let overrides = overrides.with_process_env();
    let unknown = overrides.unknown(&suites);
    if !unknown.is_empty() {
        for u in unknown {
            eprintln!("error: {u}");
        }
        return ExitCode::from(USAGE_ERROR);
    }
    let mut targets = match build_targets(&a.target, a.strict, a.state.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    // Generated keys are escrowed before they are sent; one file for the run.
    let escrow_path = a.escrow.clone().unwrap_or_else(|| {
        a.junit
            .parent()
            .unwrap_or(Path::new(""))
            .join("escrow-keys.yaml")
    });
    let escrow = Arc::new(idis_harness::keys::Escrow::file(escrow_path));
    for t in &mut targets {
        t.state.escrow = escrow.clone();
    }
    let selection = Selection {
        ids: a.ids.clone(),
        tags: a.tag.clone(),
        skip_tags: a.skip_tag.clone(),
    };
    let unmatched = selection.unmatched_ids(&suites);
    if !unmatched.is_empty() {
        for u in unmatched {
            eprintln!("error: {u}");
        }
        return ExitCode::from(USAGE_ERROR);
    }
    if runner::selected(&suites, &selection).is_empty() {
        eprintln!("error: no case matches the selection");
        return ExitCode::from(USAGE_ERROR);
    }
    let mut reporters = Fanout::new();
    reporters.push(Box::new(ConsoleReporter::stdout(ConsoleOptions {
        color,
        verbose: a.verbose,
        progress: !a.no_progress,
        fail_fast: a.fail_fast,
    })));
    reporters.push(Box::new(JunitReporter::new(
        a.junit.clone(),
        "idis-harness",
    )));
    if let Some(dir) = &a.traces {
        reporters.push(Box::new(TraceWriter::new(dir.clone())));
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        eprintln!(
            "\ninterrupted: finishing the running case's teardown, then writing the report (again to quit at once)"
        );
        let _ = cancel_tx.send(true);
        wait_for_signal().await;
        eprintln!("interrupted twice: quitting");
        std::process::exit(130);
    });
    let opts = RunOptions {
        strict: a.strict,
        fail_fast: a.fail_fast,
        jobs: a.jobs,
        case_timeout: a.case_timeout,
        preflight: !a.no_preflight,
        max_lost: usize::try_from(a.max_lost).unwrap_or(usize::MAX),
        ..RunOptions::default()
    };
    let suites = Arc::new(suites);
    let run = tokio::spawn(runner::run(
        suites,
        selection,
        Arc::new(overrides),
        targets,
        opts,
        tx,
        cancel_rx,
    ));
    let mut io_error = None;
    while let Some(ev) = rx.recv().await {
        if let Err(e) = reporters.on_event(&ev)
            && io_error.is_none()
        {
            io_error = Some(e);
        }
    }
    let (summary, targets) = match run.await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: the run stopped unexpectedly: {e}");
            return ExitCode::from(1);
        }
    };
    for t in &targets {
        if let Err(e) = t.state.store.save() {
            eprintln!("warning: {e}");
        }
    }
    if let Some(e) = io_error {
        eprintln!("error: writing a report failed: {e}");
        return ExitCode::from(USAGE_ERROR);
    }
    ExitCode::from(summary.exit_code())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn cmd_simulate(a: SimulateArgs) -> ExitCode {
    use idis_harness::sim::standalone::{SimTransport, SimulatorOptions, list_quirks, run};
    if a.list_quirks {
        let mut out = Out::new();
        out.print(&list_quirks());
        return cli::finish(out);
    }
    let transport: SimTransport = match a.transport.parse() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: --transport: {e}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let opts = SimulatorOptions {
        listen: a.listen,
        transport,
        serial: a.serial,
        serial_baud: a.baud,
        mode_e: a.mode_e,
        profile: a.profile,
        quirks: a.quirk,
        meters: a.meters,
        seed: a.seed,
        export_keys: a.export_keys,
        state: a.state,
    };
    let log = |line: String| eprintln!("{line}");
    match run(opts, log, wait_for_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(USAGE_ERROR)
        }
    }
}
