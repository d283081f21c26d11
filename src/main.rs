//! The `idis-harness` command line: parses arguments, calls the library, maps
//! results to exit codes (0 all passed, 1 any failure or error, 2 usage,
//! configuration or suite errors).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use idis_harness::client::{AssociateOutcome, Client, CounterStore, GetOutcome};
use idis_harness::profile::{DeviceProfile, KNOWN_FEATURES};
use idis_harness::report::console::{ColorChoice, ConsoleOptions, ConsoleReporter};
use idis_harness::report::junit::JunitReporter;
use idis_harness::report::trace::TraceWriter;
use idis_harness::report::{Fanout, Reporter};
use idis_harness::runner::case::TargetState;
use idis_harness::runner::event::TargetInfo;
use idis_harness::runner::{self, RunOptions, Selection, Target};
use idis_harness::session::association::AssociationRequest;
use idis_harness::sim::server::SimHandle;
use idis_harness::sim::{Meter, MeterConfig, Quirk, Quirks};
use idis_harness::suite::{self, LoadedSuite, ValidationContext, VarOverrides};
use idis_harness::transport::link::LinkKind;
use idis_harness::transport::open;
use idis_harness::transport::target::{Endpoint, TargetSpec};
use idis_harness::wire::apdu::AttributeDescriptor;
use idis_harness::wire::axdr::Data;
use idis_harness::wire::obis::Obis;

const USAGE_ERROR: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "idis-harness",
    version,
    about = "IDIS / DLMS-COSEM conformance and interoperability test harness",
    long_about = "Runs YAML conformance suites against a meter (TCP/UDP wrapper, HDLC over TCP or serial, optical probe) or the built-in simulated IDIS meter, and writes JUnit reports."
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
    /// Run suites against a target (default: every suite in suites/ against the built-in simulator).
    Run(Box<RunArgs>),
    /// List the cases of suites, with their tags.
    List(ListArgs),
    /// Check suite files (and a device profile) without running them.
    Validate(ValidateArgs),
    /// Print the JSON schema of suite files (for editors).
    Schema,
    /// Associate with a meter, read attributes, print them decoded, release.
    Read(ReadArgs),
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
    /// Suite files or folders.
    #[arg(default_value = "suites")]
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
    /// Run only cases whose id contains this text (repeatable).
    #[arg(long = "id", short = 'k')]
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

#[derive(Args, Debug)]
struct ListArgs {
    #[arg(default_value = "suites")]
    paths: Vec<PathBuf>,
    /// Only cases with this tag.
    #[arg(long)]
    tag: Vec<String>,
}

#[derive(Args, Debug)]
struct ValidateArgs {
    #[arg(default_value = "suites")]
    paths: Vec<PathBuf>,
    /// Also check this device profile.
    #[arg(long, short = 'd')]
    device: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ReadArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Client SAP (default 16, the public client).
    #[arg(long, default_value_t = 16)]
    client: u16,
    /// What to read: LN:ATTR (class looked up in the object list), CLASS/LN/ATTR, or LN (attribute 2).
    #[arg(required = true)]
    objects: Vec<String>,
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
        Command::List(a) => cmd_list(a),
        Command::Validate(a) => cmd_validate(a),
        Command::Schema => {
            println!("{}", suite::json_schema());
            ExitCode::SUCCESS
        }
        Command::Read(a) => rt.block_on(cmd_read(a)),
        Command::Simulate(a) => rt.block_on(cmd_simulate(a)),
    }
}

fn validation_context() -> ValidationContext {
    ValidationContext {
        known_features: KNOWN_FEATURES.iter().map(|s| s.to_string()).collect(),
        known_quirks: Quirk::ALL.iter().map(|q| q.name().to_string()).collect(),
        known_outcome_profiles: runner::outcome::variation_point_names(),
    }
}

/// Loads suites; prints every error and returns `None` when there was one.
fn load_suites(paths: &[PathBuf]) -> Option<Vec<LoadedSuite>> {
    let (suites, errors) = suite::load_paths(paths, &validation_context());
    for e in &errors {
        eprintln!("{e}\n");
    }
    if !errors.is_empty() {
        eprintln!(
            "error: {} problem(s) in suite files; nothing was run",
            errors.len()
        );
        return None;
    }
    if suites.is_empty() {
        eprintln!(
            "error: no suite files (*.yaml) under {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return None;
    }
    Some(suites)
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
    let Some(suites) = load_suites(&a.paths) else {
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
    if runner::selected(&suites, &selection).is_empty() {
        eprintln!("error: no case matches the selection");
        return ExitCode::from(USAGE_ERROR);
    }
    let mut reporters = Fanout::new();
    reporters.push(Box::new(ConsoleReporter::stdout(ConsoleOptions {
        color,
        verbose: a.verbose,
        progress: !a.no_progress,
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
    if summary.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
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

fn cmd_list(a: ListArgs) -> ExitCode {
    let Some(suites) = load_suites(&a.paths) else {
        return ExitCode::from(USAGE_ERROR);
    };
    let sel = Selection {
        tags: a.tag,
        ..Default::default()
    };
    let mut n = 0;
    for s in &suites {
        let cases: Vec<_> = s
            .suite
            .cases
            .iter()
            .enumerate()
            .filter(|(_, c)| sel.selects(s, c))
            .collect();
        if cases.is_empty() {
            continue;
        }
        println!(
            "{}  {}  ({})",
            s.suite.suite,
            s.suite.title,
            s.path.display()
        );
        for (ci, c) in cases {
            n += 1;
            let mut tags: Vec<&str> = s
                .suite
                .tags
                .iter()
                .chain(c.tags.iter())
                .map(String::as_str)
                .collect();
            tags.dedup();
            let req = runner::case_requires(s, ci);
            print!("    {:<28} {}", c.id, c.title);
            if !tags.is_empty() {
                print!("  [{}]", tags.join(", "));
            }
            if !req.is_empty() {
                print!("  requires: {}", req.join(", "));
            }
            println!();
        }
    }
    println!("{n} case(s) in {} suite(s)", suites.len());
    ExitCode::SUCCESS
}

fn cmd_validate(a: ValidateArgs) -> ExitCode {
    let mut ok = true;
    if let Some(p) = &a.device {
        match DeviceProfile::load(p) {
            Ok(d) => println!(
                "device profile {}: ok ({} clients)",
                p.display(),
                d.clients.len()
            ),
            Err(e) => {
                eprintln!("error: {e}");
                ok = false;
            }
        }
    }
    let (suites, errors) = suite::load_paths(&a.paths, &validation_context());
    for e in &errors {
        eprintln!("{e}\n");
    }
    let cases: usize = suites.iter().map(|s| s.suite.cases.len()).sum();
    if errors.is_empty() {
        println!("{} suite(s), {cases} case(s): ok", suites.len());
    } else {
        eprintln!("{} problem(s) found", errors.len());
        ok = false;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(USAGE_ERROR)
    }
}

/// What `read` reads: a class (maybe to look up), a logical name and an attribute.
fn parse_object(s: &str) -> Result<(Option<u16>, Obis, i8), String> {
    let bad = || {
        format!(
            "`{s}`: write LN:ATTR (e.g. 0-0:42.0.0.255:2), CLASS/LN/ATTR (e.g. 1/0-0:42.0.0.255/2) or LN"
        )
    };
    let parts: Vec<&str> = s.split('/').collect();
    if parts.len() == 3 {
        let class = parts[0].parse().map_err(|_| bad())?;
        let obis = parts[1].parse().map_err(|_| bad())?;
        let attr = parts[2].parse().map_err(|_| bad())?;
        return Ok((Some(class), obis, attr));
    }
    if let Ok(obis) = s.parse::<Obis>() {
        return Ok((None, obis, 2));
    }
    let (ln, attr) = s.rsplit_once(':').ok_or_else(bad)?;
    Ok((
        None,
        ln.parse().map_err(|_| bad())?,
        attr.parse().map_err(|_| bad())?,
    ))
}

async fn cmd_read(a: ReadArgs) -> ExitCode {
    let objects: Vec<_> = match a
        .objects
        .iter()
        .map(|o| parse_object(o))
        .collect::<Result<_, _>>()
    {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let mut targets = match build_targets(&a.target, false, None) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    if targets.len() != 1 {
        eprintln!("error: read takes one target");
        return ExitCode::from(USAGE_ERROR);
    }
    let t = targets.remove(0).state;
    match read(&t, a.client, &objects).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn read(
    t: &TargetState,
    sap: u16,
    objects: &[(Option<u16>, Obis, i8)],
) -> Result<(), String> {
    let start = Instant::now();
    let pc = t.profile.client(sap).cloned().ok_or_else(|| {
        format!(
            "client {sap} is not in the device profile `{}`",
            t.profile.name
        )
    })?;
    let kind = open::native_kind(&t.spec).unwrap_or(LinkKind::Wrapper);
    let ciphered =
        pc.protection.is_ciphered() || pc.mechanism == idis_harness::profile::Mechanism::HlsGmac;
    // A ciphered client continues from the meter's counter object (read as the public client).
    let ic = if ciphered {
        let public = t
            .profile
            .client(16)
            .cloned()
            .ok_or("step 1 (counter sync): the profile has no public client (16)")?;
        let mut c = connect(t, 16, kind, start, "step 1 (counter sync)").await?;
        associate(
            &mut c,
            AssociationRequest::from_profile(&public, vec![], 0),
            "step 1 (counter sync)",
        )
        .await?;
        let v = match c
            .get(AttributeDescriptor {
                class_id: 1,
                instance: pc.counter_object,
                attribute_id: 2,
            })
            .await
            .map_err(|e| format!("step 1 (counter sync): reading {}: {e}", pc.counter_object))?
        {
            GetOutcome::Data(d) => d
                .as_integer()
                .and_then(|i| u32::try_from(i).ok())
                .unwrap_or(0),
            other => {
                return Err(format!(
                    "step 1 (counter sync): reading {}: {other:?}",
                    pc.counter_object
                ));
            }
        };
        let _ = c.release(false).await;
        close(c).await;
        println!(
            "invocation counter of client {sap}: {v} (continuing at {})",
            v + 1
        );
        v + 1
    } else {
        0
    };
    let mut c = connect(t, sap, kind, start, "step 2 (link)").await?;
    let mut challenge = vec![0u8; 16];
    let _ = getrandom::fill(&mut challenge);
    associate(
        &mut c,
        AssociationRequest::from_profile(&pc, challenge, ic),
        &format!(
            "step 3 (associate as client {sap}, {})",
            pc.mechanism.name()
        ),
    )
    .await?;
    let mut object_list: Option<Vec<Data>> = None;
    let mut failed = 0;
    for (class, obis, attr) in objects {
        let class = match class {
            Some(c) => *c,
            None => {
                if object_list.is_none() {
                    let r = c
                        .get(AttributeDescriptor {
                            class_id: 15,
                            instance: Obis::CURRENT_ASSOCIATION,
                            attribute_id: 2,
                        })
                        .await
                        .map_err(|e| format!("step 4 (object list): {e}"))?;
                    object_list = match r {
                        GetOutcome::Data(Data::Array(v)) => Some(v),
                        other => {
                            return Err(format!(
                                "step 4 (object list, to find the class of {obis}): {other:?}; give CLASS/LN/ATTR instead"
                            ));
                        }
                    };
                }
                find_class(object_list.as_deref().unwrap_or_default(), obis)
                    .ok_or_else(|| format!("{obis} is not in the object list of client {sap}"))?
            }
        };
        let r = c
            .get(AttributeDescriptor {
                class_id: class,
                instance: *obis,
                attribute_id: *attr,
            })
            .await
            .map_err(|e| format!("step 5 (get {class}/{obis}/{attr}): {e}"))?;
        match r {
            GetOutcome::Data(d) => {
                // Clock time and DST begin/end are date-times carried in an octet-string.
                let when = match (&d, class, attr) {
                    (Data::OctetString(v), 8, 2 | 5 | 6) => {
                        <[u8; 12]>::try_from(v.as_slice()).ok().map(|dt| {
                            format!(" ({})", idis_harness::wire::axdr::format_date_time(&dt))
                        })
                    }
                    _ => None,
                };
                println!("{class}/{obis}/{attr}: {d}{}", when.unwrap_or_default())
            }
            GetOutcome::Error(e) => {
                failed += 1;
                println!("{class}/{obis}/{attr}: refused: {}", e.name())
            }
            GetOutcome::Exception(e) => {
                failed += 1;
                println!("{class}/{obis}/{attr}: exception-response {e:?}")
            }
            GetOutcome::Other(a) => {
                failed += 1;
                println!("{class}/{obis}/{attr}: unexpected {a}")
            }
        }
    }
    let _ = c
        .release(c.assoc.as_ref().is_some_and(|a| a.ciphered()))
        .await;
    close(c).await;
    if failed > 0 {
        Err(format!("{failed} of {} read(s) refused", objects.len()))
    } else {
        Ok(())
    }
}

fn find_class(list: &[Data], obis: &Obis) -> Option<u16> {
    list.iter().find_map(|e| match e.items()? {
        [Data::LongUnsigned(class), _, Data::OctetString(ln), ..] if ln.as_slice() == obis.0 => {
            Some(*class)
        }
        _ => None,
    })
}

async fn connect(
    t: &TargetState,
    sap: u16,
    kind: LinkKind,
    start: Instant,
    step: &str,
) -> Result<Client, String> {
    let mut link = open::open(&t.spec, &t.profile, sap, Some(kind), t.sim.as_ref(), start)
        .await
        .map_err(|e| format!("{step}: {e}"))?;
    if link.kind() == LinkKind::Hdlc {
        link.connect()
            .await
            .map_err(|e| format!("{step}: HDLC connect: {e}"))?;
    }
    Ok(Client::new(link))
}

async fn associate(c: &mut Client, req: AssociationRequest, step: &str) -> Result<(), String> {
    match c
        .associate(req, false)
        .await
        .map_err(|e| format!("{step}: {e}"))?
    {
        AssociateOutcome::Associated => Ok(()),
        AssociateOutcome::Refused(r) => Err(format!("{step}: refused: {r:?}")),
    }
}

async fn close(mut c: Client) {
    if c.link.kind() == LinkKind::Hdlc {
        let _ = c.link.disconnect().await;
    }
    c.link.shutdown().await;
}

async fn cmd_simulate(a: SimulateArgs) -> ExitCode {
    use idis_harness::sim::standalone::{SimTransport, SimulatorOptions, list_quirks, run};
    if a.list_quirks {
        print!("{}", list_quirks());
        return ExitCode::SUCCESS;
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
