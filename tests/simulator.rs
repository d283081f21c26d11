//! The standalone simulator (`idis-harness simulate`) against the harness's own
//! client over real loopback sockets: the TCP wrapper, HDLC over TCP and the
//! UDP wrapper; fleets with derived keys and their key file; the state file
//! across restarts; hostile connections beside a working one.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use idis_harness::client::{AssociateOutcome, Client, GetOutcome, action_result};
use idis_harness::profile::{ClientProfile, DeviceProfile, load_key_file};
use idis_harness::security::{Key, wrap_key};
use idis_harness::session::association::{AssociationRequest, Refusal};
use idis_harness::sim::MeterConfig;
use idis_harness::sim::standalone::{self, MeterInfo, SimTransport, SimulatorOptions, list_quirks};
use idis_harness::transport::open::open;
use idis_harness::transport::target::TargetSpec;
use idis_harness::wire::apdu::{ActionResult, AttributeDescriptor, MethodDescriptor};
use idis_harness::wire::axdr::Data;
use idis_harness::wire::obis::Obis;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const CHALLENGE: &[u8] = b"0123456789ABCDEF";

/// A simulator running in the test's runtime.
struct Running {
    meters: Vec<MeterInfo>,
    logs: Arc<Mutex<Vec<String>>>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), String>>,
}

impl Running {
    async fn start(opts: SimulatorOptions) -> Running {
        let sim = standalone::bind(opts).await.expect("bind");
        let meters = sim.meters().to_vec();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let l = logs.clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(
            sim.serve(move |line| l.lock().unwrap().push(line), async move {
                let _ = rx.await;
            }),
        );
        // Serving has started once the listening lines are out.
        for _ in 0..500 {
            if logs
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("listening on"))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Running {
            meters,
            logs,
            stop: Some(tx),
            task,
        }
    }

    fn addr(&self, i: usize) -> SocketAddr {
        self.meters[i].address.expect("a bound address")
    }

    fn logged(&self, needle: &str) -> bool {
        self.logs.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the simulator stops")
            .expect("no panic")
            .expect("clean stop");
    }
}

fn local(transport: SimTransport) -> SimulatorOptions {
    SimulatorOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        transport,
        ..SimulatorOptions::default()
    }
}

fn scheme(t: SimTransport) -> &'static str {
    match t {
        SimTransport::Wrapper => "tcp",
        SimTransport::Hdlc => "hdlc+tcp",
        SimTransport::Udp => "udp",
    }
}

async fn connect_to(target: &str, sap: u16) -> Client {
    let target: TargetSpec = target.parse().unwrap();
    let mut profile = DeviceProfile::default();
    profile.timeouts.response = Duration::from_secs(5);
    let link = open(&target, &profile, sap, None, None, Instant::now())
        .await
        .expect("open a link");
    let mut c = Client::new(link);
    c.link.connect().await.expect("link connect");
    c
}

async fn connect(t: SimTransport, addr: SocketAddr, sap: u16) -> Client {
    connect_to(&format!("{}://{addr}", scheme(t)), sap).await
}

async fn associate(c: &mut Client, profile: &ClientProfile, ic: u32) -> AssociateOutcome {
    c.associate(
        AssociationRequest::from_profile(profile, CHALLENGE.to_vec(), ic),
        false,
    )
    .await
    .expect("association exchange")
}

fn attr(class_id: u16, instance: Obis, attribute_id: i8) -> AttributeDescriptor {
    AttributeDescriptor {
        class_id,
        instance,
        attribute_id,
    }
}

async fn read_ldn(c: &mut Client) -> Vec<u8> {
    match c.get(attr(1, Obis::LOGICAL_DEVICE_NAME, 2)).await.unwrap() {
        GetOutcome::Data(Data::OctetString(v)) => v,
        other => panic!("logical device name: {other:?}"),
    }
}

async fn read_clock(c: &mut Client) -> Vec<u8> {
    match c.get(attr(8, Obis::CLOCK, 2)).await.unwrap() {
        GetOutcome::Data(Data::OctetString(v)) => v,
        other => panic!("clock: {other:?}"),
    }
}

fn management_with(
    keys: &std::collections::BTreeMap<String, String>,
    meter: &str,
) -> ClientProfile {
    let k = |name: &str| -> Key {
        keys.get(&format!("{meter}/client-1/{name}"))
            .unwrap_or_else(|| panic!("key file entry {meter}/client-1/{name}"))
            .parse()
            .unwrap()
    };
    ClientProfile {
        encryption_key: Some(k("encryption-key")),
        authentication_key: Some(k("authentication-key")),
        broadcast_key: Some(k("broadcast-key")),
        master_key: Some(k("master-key")),
        ..ClientProfile::management()
    }
}

#[tokio::test]
async fn public_client_reads_the_logical_device_name_over_each_transport() {
    for t in [SimTransport::Wrapper, SimTransport::Hdlc, SimTransport::Udp] {
        let sim = Running::start(local(t)).await;
        let mut c = connect(t, sim.addr(0), 16).await;
        assert!(matches!(
            associate(&mut c, &ClientProfile::public(), 0).await,
            AssociateOutcome::Associated
        ));
        assert_eq!(read_ldn(&mut c).await, b"MMM0000012345678", "{t}");
        c.release(false).await.unwrap();
        c.link.disconnect().await.unwrap();
        sim.stop().await;
    }
}

#[tokio::test]
async fn logs_where_it_listens_and_each_association() {
    let sim = Running::start(local(SimTransport::Wrapper)).await;
    let addr = sim.addr(0);
    let mut c = connect(SimTransport::Wrapper, addr, 16).await;
    associate(&mut c, &ClientProfile::public(), 0).await;
    c.release(false).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let text = sim.log_text();
    assert!(
        text.contains(&format!(
            "listening on {addr} (wrapper), system title 4D4D4D0000BC614E"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("{addr}: client 16: associated")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{addr}: client 16: released")),
        "{text}"
    );
    sim.stop().await;
}

#[tokio::test]
async fn management_client_reads_the_clock_with_hls_gmac() {
    let sim = Running::start(local(SimTransport::Wrapper)).await;
    let mut c = connect(SimTransport::Wrapper, sim.addr(0), 1).await;
    assert!(matches!(
        associate(&mut c, &ClientProfile::management(), 1).await,
        AssociateOutcome::Associated
    ));
    assert!(c.assoc.as_ref().unwrap().authenticated);
    assert_eq!(read_clock(&mut c).await.len(), 12);
    sim.stop().await;
}

#[tokio::test]
async fn a_fleet_of_three_accepts_only_each_meters_own_keys() {
    let dir = tempfile::tempdir().unwrap();
    let keyfile = dir.path().join("keys.yaml");
    let sim = Running::start(SimulatorOptions {
        meters: 3,
        seed: 42,
        export_keys: Some(keyfile.clone()),
        ..local(SimTransport::Wrapper)
    })
    .await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&keyfile).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let keys = load_key_file(&keyfile).unwrap();
    // The key file round-trips: what it says is what the meters have.
    for i in 0..3u32 {
        let name = format!("meter-{i:04}");
        let cfg = MeterConfig::default().derived(42, i);
        let c1 = cfg.client(1).unwrap();
        assert_eq!(
            keys[&format!("{name}/client-1/encryption-key")]
                .parse::<Key>()
                .unwrap(),
            c1.encryption_key
        );
        assert_eq!(
            keys[&format!("{name}/system-title")],
            hex::encode_upper(cfg.system_title.0)
        );
        assert_eq!(
            keys[&format!("{name}/port")],
            sim.addr(i as usize).port().to_string()
        );
        assert!(keys.contains_key(&format!("{name}/client-2/master-key")));
        assert!(!keys.contains_key(&format!("{name}/client-16/encryption-key")));
    }
    assert!(
        sim.logged("meter 2: listening on 127.0.0.1:"),
        "{}",
        sim.log_text()
    );
    let titles: std::collections::BTreeSet<_> =
        sim.meters.iter().map(|m| m.system_title.0).collect();
    assert_eq!(titles.len(), 3);
    for i in 0..3 {
        for j in 0..3 {
            let profile = management_with(&keys, &format!("meter-{j:04}"));
            let mut c = connect(SimTransport::Wrapper, sim.addr(i), 1).await;
            let out = associate(&mut c, &profile, 1).await;
            if i == j {
                assert!(matches!(out, AssociateOutcome::Associated), "meter {i}");
                assert_eq!(read_clock(&mut c).await.len(), 12);
            } else {
                // The glo-initiate-request does not decipher under another meter's key.
                assert!(
                    matches!(out, AssociateOutcome::Refused(Refusal::Exception(ref e)) if e.service_error == 5),
                    "meter {i} with the keys of meter {j}: {out:?}"
                );
            }
        }
    }
    assert!(
        sim.logged(&format!("meter 1 ({}): client 1: associated", sim.addr(1))),
        "{}",
        sim.log_text()
    );
    // The Green Book example keys open none of them.
    let mut c = connect(SimTransport::Wrapper, sim.addr(0), 1).await;
    assert!(matches!(
        associate(&mut c, &ClientProfile::management(), 1).await,
        AssociateOutcome::Refused(_)
    ));
    sim.stop().await;
}

fn refused_for_counter(out: &AssociateOutcome) -> bool {
    matches!(out, AssociateOutcome::Refused(Refusal::Exception(e)) if e.service_error == 6)
}

/// Transfers a new global encryption key for the associated client (security setup method 2).
async fn transfer_encryption_key(c: &mut Client, kek: &Key, new: &Key) -> ActionResult {
    let wrapped = wrap_key(kek, new).to_vec();
    let r = c
        .action(
            MethodDescriptor {
                class_id: 64,
                instance: Obis::SECURITY_SETUP,
                method_id: 2,
            },
            Some(Data::Array(vec![Data::Structure(vec![
                Data::Enum(0),
                Data::OctetString(wrapped),
            ])])),
        )
        .await
        .unwrap();
    action_result(&r).expect("an action response").result
}

#[tokio::test]
async fn memory_survives_reconnects_and_with_a_state_file_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("meter-state.yaml");
    let opts = SimulatorOptions {
        state: Some(state.clone()),
        ..local(SimTransport::Wrapper)
    };
    let new_ek: Key = "00112233445566778899AABBCCDDEEFF".parse().unwrap();
    let sim = Running::start(opts.clone()).await;
    let mut c = connect(SimTransport::Wrapper, sim.addr(0), 1).await;
    assert!(matches!(
        associate(&mut c, &ClientProfile::management(), 1).await,
        AssociateOutcome::Associated
    ));
    read_clock(&mut c).await;
    drop(c);
    // A new connection to the same meter: the counters are remembered.
    let mut c = connect(SimTransport::Wrapper, sim.addr(0), 1).await;
    assert!(refused_for_counter(
        &associate(&mut c, &ClientProfile::management(), 1).await
    ));
    let mut c = connect(SimTransport::Wrapper, sim.addr(0), 1).await;
    assert!(matches!(
        associate(&mut c, &ClientProfile::management(), 10).await,
        AssociateOutcome::Associated
    ));
    assert_eq!(
        transfer_encryption_key(&mut c, &Key::EXAMPLE_KEK, &new_ek).await,
        ActionResult::Success
    );
    drop(c);
    // A new key starts a new count: use counter 50 under it before the restart.
    let mut new_key_client = ClientProfile::management();
    new_key_client.encryption_key = Some(new_ek.clone());
    let mut c = connect(SimTransport::Wrapper, sim.addr(0), 1).await;
    assert!(matches!(
        associate(&mut c, &new_key_client, 50).await,
        AssociateOutcome::Associated
    ));
    drop(c);
    // The saver writes the change soon after (coalesced to one write per 200 ms).
    let mut saved = String::new();
    for _ in 0..100 {
        saved = std::fs::read_to_string(&state).unwrap_or_default();
        if saved.contains("00112233445566778899AABBCCDDEEFF") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        saved.contains("00112233445566778899AABBCCDDEEFF"),
        "{saved}"
    );
    sim.stop().await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Restart from the state file.
    let sim = Running::start(opts).await;
    assert!(
        sim.logged("loaded the memory of 1 meter"),
        "{}",
        sim.log_text()
    );
    let mut with_new_key = ClientProfile::management();
    with_new_key.encryption_key = Some(new_ek.clone());
    // The old key is gone.
    let mut c = connect(SimTransport::Wrapper, sim.addr(0), 1).await;
    assert!(matches!(
        associate(&mut c, &ClientProfile::management(), 100).await,
        AssociateOutcome::Refused(Refusal::Exception(ref e)) if e.service_error == 5
    ));
    // A counter below one used before the restart is still a replay.
    let mut c = connect(SimTransport::Wrapper, sim.addr(0), 1).await;
    assert!(refused_for_counter(
        &associate(&mut c, &with_new_key, 5).await
    ));
    let mut c = connect(SimTransport::Wrapper, sim.addr(0), 1).await;
    assert!(matches!(
        associate(&mut c, &with_new_key, 100).await,
        AssociateOutcome::Associated
    ));
    read_clock(&mut c).await;
    sim.stop().await;

    // Without the state file a restarted meter starts afresh (the control).
    let sim = Running::start(local(SimTransport::Wrapper)).await;
    let mut c = connect(SimTransport::Wrapper, sim.addr(0), 1).await;
    assert!(matches!(
        associate(&mut c, &ClientProfile::management(), 1).await,
        AssociateOutcome::Associated
    ));
    sim.stop().await;
}

/// Sends `bytes` on a fresh TCP connection, then closes it (a peer vanishing mid-frame).
async fn send_and_vanish(addr: SocketAddr, bytes: &[u8]) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s.flush().await.unwrap();
    drop(s);
}

/// Sends garbage and waits until the meter closes the connection (or gives up after a while).
async fn send_garbage(addr: SocketAddr, bytes: &[u8]) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut buf = [0u8; 256];
    let _ = tokio::time::timeout(Duration::from_millis(300), async {
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn hostile_connections_do_not_disturb_a_working_association() {
    for t in [SimTransport::Wrapper, SimTransport::Hdlc, SimTransport::Udp] {
        let sim = Running::start(local(t)).await;
        let addr = sim.addr(0);
        let mut good = connect(t, addr, 1).await;
        assert!(matches!(
            associate(&mut good, &ClientProfile::management(), 1).await,
            AssociateOutcome::Associated
        ));
        read_clock(&mut good).await;
        match t {
            SimTransport::Udp => {
                let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                for d in [
                    &b"\xFF\xFF garbage"[..],
                    b"",
                    b"\x00\x01\x00\x10\x00\x01\x00\x40\x60",
                ] {
                    s.send_to(d, addr).await.unwrap();
                }
            }
            _ => {
                // Garbage: a wrong wrapper version, random bytes between HDLC flags.
                send_garbage(addr, b"\x00\x07\x00\x10\x00\x01\x00\x03abc").await;
                send_garbage(
                    addr,
                    b"\x7E\xA0\x07\x03\x21\x93\x00\x00\x7E\x7E\x7E\x01\x02",
                )
                .await;
                send_garbage(addr, &[0x55; 5000]).await;
                // Mid-frame: a header announcing 100 bytes, 3 sent; half an HDLC frame.
                send_and_vanish(addr, b"\x00\x01\x00\x10\x00\x01\x00\x64\x60\x1D\xA1").await;
                send_and_vanish(addr, b"\x7E\xA0\x2D\x03\x21\x93\x00").await;
                // A huge declared wrapper length.
                send_and_vanish(addr, b"\x00\x01\x00\x10\x00\x01\xFF\xFF").await;
            }
        }
        // The good association carries on, and a new one opens.
        assert_eq!(read_clock(&mut good).await.len(), 12, "{t}");
        let mut other = connect(t, addr, 16).await;
        associate(&mut other, &ClientProfile::public(), 0).await;
        assert_eq!(read_ldn(&mut other).await, b"MMM0000012345678");
        assert_eq!(read_clock(&mut good).await.len(), 12, "{t}");
        if t == SimTransport::Wrapper {
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(
                sim.logged("closing a wrapper connection"),
                "{}",
                sim.log_text()
            );
        }
        sim.stop().await;
    }
}

#[tokio::test]
async fn unknown_quirk_is_an_error_with_a_hint() {
    let e = standalone::run(
        SimulatorOptions {
            quirks: vec!["acepts-replayed-counter".into()],
            ..local(SimTransport::Wrapper)
        },
        |_| {},
        async {},
    )
    .await
    .unwrap_err();
    assert!(
        e.contains(
            "unknown quirk \"acepts-replayed-counter\"; did you mean `accepts-replayed-counter`?"
        ),
        "{e}"
    );
    let e = standalone::bind(SimulatorOptions {
        quirks: vec!["zzz".into()],
        ..local(SimTransport::Wrapper)
    })
    .await
    .unwrap_err();
    assert!(e.contains("--list-quirks"), "{e}");
    assert!(list_quirks().contains("accepts-replayed-counter  "));
}

#[tokio::test]
async fn a_quirk_changes_the_served_meter() {
    let sim = Running::start(SimulatorOptions {
        quirks: vec!["bad-logical-device-name".into()],
        ..local(SimTransport::Wrapper)
    })
    .await;
    assert!(sim.logged("quirks switched on: bad-logical-device-name"));
    let mut c = connect(SimTransport::Wrapper, sim.addr(0), 16).await;
    associate(&mut c, &ClientProfile::public(), 0).await;
    assert_eq!(read_ldn(&mut c).await, b"1234567890");
    sim.stop().await;
}

#[tokio::test]
async fn a_stopped_simulator_frees_its_ports() {
    let sim = Running::start(local(SimTransport::Wrapper)).await;
    let addr = sim.addr(0);
    sim.stop().await;
    assert!(TcpStream::connect(addr).await.is_err());
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/meters")
        .join(name)
}

#[test]
fn the_example_p2_profile_is_the_built_in_meter() {
    let cfg = MeterConfig::load(&fixture("idis-p2.yaml")).unwrap();
    assert_eq!(
        cfg,
        MeterConfig {
            name: cfg.name.clone(),
            ..MeterConfig::default()
        }
    );
}

#[tokio::test]
async fn the_strict_v1_profile_serves_its_own_identity_and_keys() {
    let path = fixture("strict-v1.yaml");
    let cfg = MeterConfig::load(&path).unwrap();
    assert_eq!(cfg.security_setup_version, 1);
    let sim = Running::start(SimulatorOptions {
        profile: Some(path.clone()),
        ..local(SimTransport::Hdlc)
    })
    .await;
    let target = format!("hdlc+tcp://{}?logical=16&physical=42", sim.addr(0));
    let mut c = connect_to(&target, 16).await;
    associate(&mut c, &ClientProfile::public(), 0).await;
    assert_eq!(read_ldn(&mut c).await, b"XYZ0000000000042");
    c.release(false).await.unwrap();
    c.link.disconnect().await.unwrap();

    let m = cfg.client(1).unwrap();
    let profile = ClientProfile {
        encryption_key: Some(m.encryption_key.clone()),
        authentication_key: Some(m.authentication_key.clone()),
        master_key: Some(m.master_key.clone()),
        ..ClientProfile::management()
    };
    let mut c = connect_to(&target, 1).await;
    assert!(matches!(
        associate(&mut c, &profile, 1).await,
        AssociateOutcome::Associated
    ));
    assert_eq!(read_clock(&mut c).await.len(), 12);
    // The example keys do not open it.
    let mut c = connect_to(&target, 1).await;
    assert!(matches!(
        associate(&mut c, &ClientProfile::management(), 2).await,
        AssociateOutcome::Refused(_)
    ));
    sim.stop().await;
}

#[tokio::test]
async fn serves_hdlc_on_a_serial_port_after_a_mode_e_sign_on() {
    use tokio_serial::SerialPort;
    // A pseudo terminal stands in for the optical probe's serial line.
    let Ok((mut probe, line)) = tokio_serial::SerialStream::pair() else {
        eprintln!("no pseudo terminals here: skipped");
        return;
    };
    let path = line.name().expect("the pty's path");
    let sim = Running::start(SimulatorOptions {
        serial: Some(path.clone()),
        mode_e: true,
        serial_baud: 9600,
        ..SimulatorOptions::default()
    })
    .await;
    assert!(
        sim.logged(&format!(
            "listening on {path} (HDLC after IEC 62056-21 mode E)"
        )),
        "{}",
        sim.log_text()
    );
    let baud = idis_harness::transport::serial::mode_e_handshake(&mut probe)
        .await
        .unwrap();
    assert_eq!(baud, 9600);
    // The meter switches to the acknowledged rate after the acknowledgement.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let target: TargetSpec = format!("serial://{path}").parse().unwrap();
    let settings = idis_harness::transport::open::settings(&target, &DeviceProfile::default(), 16);
    let link = idis_harness::transport::link::Link::hdlc(
        Box::new(probe),
        settings,
        "pty".into(),
        Instant::now(),
    );
    let mut c = Client::new(link);
    c.link.connect().await.unwrap();
    associate(&mut c, &ClientProfile::public(), 0).await;
    assert_eq!(read_ldn(&mut c).await, b"MMM0000012345678");
    assert!(sim.logged("mode E sign-on, now HDLC at 9600 baud"));
    drop(line);
    sim.stop().await;
}

#[tokio::test]
async fn a_large_fleet_logs_one_summary_line() {
    let sim = Running::start(SimulatorOptions {
        meters: 11,
        seed: 3,
        ..local(SimTransport::Udp)
    })
    .await;
    let text = sim.log_text();
    assert!(
        text.contains("11 meters listening on 127.0.0.1 (ports chosen by the system) (udp)"),
        "{text}"
    );
    assert_eq!(text.matches("listening on").count(), 1, "{text}");
    let mut c = connect(SimTransport::Udp, sim.addr(10), 16).await;
    associate(&mut c, &ClientProfile::public(), 0).await;
    assert_eq!(read_ldn(&mut c).await, b"MMM0000000000010");
    sim.stop().await;
}
