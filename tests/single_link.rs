//! One link at a time on a physical port (src/transport/port.rs), against the
//! standalone simulator served on a socat pseudo-terminal pair, or HDLC over
//! TCP to a stand-in for a serial-to-IP converter:
//!
//! - switching client on a serial line disconnects the previous link on the
//!   same open port, and the superseded link says so;
//! - a mode E meter goes back to its IEC 62056-21 sign-on after each DISC and
//!   after its inactivity timeout, and the client signs on again each time;
//! - an SNRM that goes unanswered on a mode E port signs on again, once (the
//!   meter timed out sooner than the device profile said);
//! - `hdlc+tcp://...?single-link` keeps one TCP connection for every link.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{PtyPair, path_str};
use idis_harness::client::{AssociateOutcome, Client, GetOutcome};
use idis_harness::profile::{ClientProfile, DeviceProfile};
use idis_harness::runner::event::{Direction, TrafficRecord};
use idis_harness::session::association::AssociationRequest;
use idis_harness::sim::server::{SharedMeter, serve_hdlc};
use idis_harness::sim::standalone::{self, SimulatorOptions};
use idis_harness::sim::{Meter, MeterConfig, Quirks};
use idis_harness::transport::open::open;
use idis_harness::transport::target::TargetSpec;
use idis_harness::wire::apdu::AttributeDescriptor;
use idis_harness::wire::axdr::Data;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Every test body runs under this bound, so that a hang fails instead of stalling CI.
const BOUND: Duration = Duration::from_secs(30);

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("the test did not finish within its time bound");
}

/// The standalone simulator on the meter's end of a pty pair, in this runtime.
struct Sim {
    logs: Arc<Mutex<Vec<String>>>,
    stop: Option<oneshot::Sender<()>>,
    _profile: Option<tempfile::NamedTempFile>,
}

impl Sim {
    /// Serves HDLC on `pty.peer` (after mode E with `mode_e`); with
    /// `inactivity`, the meter's HDLC inactivity timeout in seconds.
    async fn start(pty: &PtyPair, mode_e: bool, inactivity: Option<u16>) -> Sim {
        let profile = inactivity.map(|s| {
            let f = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(
                f.path(),
                format!("name: quick to time out\nhdlc-inactivity-timeout: {s}\n"),
            )
            .unwrap();
            f
        });
        let sim = standalone::bind(SimulatorOptions {
            serial: Some(path_str(&pty.peer).to_owned()),
            mode_e,
            serial_baud: 9600,
            profile: profile.as_ref().map(|f| f.path().to_path_buf()),
            ..SimulatorOptions::default()
        })
        .await
        .expect("the simulator binds the pty");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let l = logs.clone();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(
            sim.serve(move |line| l.lock().unwrap().push(line), async move {
                let _ = rx.await;
            }),
        );
        Sim {
            logs,
            stop: Some(tx),
            _profile: profile,
        }
    }

    fn count(&self, needle: &str) -> usize {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    fn text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Waits up to `wait` for `n` log lines containing `needle`.
    async fn wait_for(&self, needle: &str, n: usize, wait: Duration) {
        let deadline = Instant::now() + wait;
        while self.count(needle) < n {
            assert!(
                Instant::now() < deadline,
                "the simulator did not log {needle:?} {n} time(s):\n{}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The default device profile with short timeouts.
fn profile() -> DeviceProfile {
    let mut p = DeviceProfile::default();
    p.timeouts.response = Duration::from_secs(1);
    p.timeouts.connect = Duration::from_secs(3);
    p
}

/// A link for `sap` on `target`, not yet connected.
async fn link(target: &str, profile: &DeviceProfile, sap: u16) -> Client {
    let spec: TargetSpec = target.parse().unwrap();
    let link = open(&spec, profile, sap, None, None, Instant::now())
        .await
        .unwrap_or_else(|e| panic!("open {target}: {e}"));
    Client::new(link)
}

/// Connects, associates as the public client and reads the logical device name.
async fn read_ldn(c: &mut Client) -> Vec<u8> {
    c.link.connect().await.expect("SNRM answered UA");
    let req = AssociationRequest::from_profile(&ClientProfile::public(), vec![], 0);
    assert!(matches!(
        c.associate(req, false).await.expect("AARE"),
        AssociateOutcome::Associated
    ));
    ldn(c).await
}

async fn ldn(c: &mut Client) -> Vec<u8> {
    let attr = AttributeDescriptor {
        class_id: 1,
        instance: "0-0:42.0.0.255".parse().unwrap(),
        attribute_id: 2,
    };
    match c.get(attr).await.expect("a get-response") {
        GetOutcome::Data(Data::OctetString(v)) => v,
        other => panic!("the logical device name: {other:?}"),
    }
}

fn records(c: &mut Client) -> Vec<TrafficRecord> {
    c.link.trace.take()
}

fn has(records: &[TrafficRecord], direction: Direction, layer: &str, text: &str) -> bool {
    records
        .iter()
        .any(|r| r.direction == direction && r.layer == layer && r.decoded.contains(text))
}

#[tokio::test]
async fn switching_client_on_a_serial_line_disconnects_the_previous_link_on_the_same_port() {
    bounded(async {
        let pty = PtyPair::new();
        let sim = Sim::start(&pty, false, None).await;
        let target = format!("serial://{}", path_str(&pty.dut));
        let p = profile();
        let mut public = link(&target, &p, 16).await;
        assert_eq!(read_ldn(&mut public).await, b"MMM0000012345678");
        // The management client's link, while the public one is up: the same
        // port, after a DISC for client 16 (a second open would fail to lock).
        let mut management = link(&target, &p, 1).await;
        let handed = records(&mut management);
        assert!(
            has(
                &handed,
                Direction::Note,
                "note",
                "disconnecting client 16 first"
            ),
            "{handed:#?}"
        );
        assert!(has(&handed, Direction::Sent, "hdlc", "DISC(P) 16 -> 1/17"));
        assert!(has(
            &handed,
            Direction::Received,
            "hdlc",
            "UA(F) 1/17 -> 16"
        ));
        management
            .link
            .connect()
            .await
            .expect("client 1's SNRM answered");
        sim.wait_for("HDLC client 16: disconnected (DISC)", 1, BOUND)
            .await;
        // The superseded link says why it cannot be used.
        let e = ldn_error(&mut public).await;
        assert!(e.contains("now carries another HDLC link"), "{e}");
        management.link.disconnect().await.unwrap();
        // And the public client comes back on the same port.
        let mut again = link(&target, &p, 16).await;
        assert_eq!(read_ldn(&mut again).await, b"MMM0000012345678");
    })
    .await;
}

async fn ldn_error(c: &mut Client) -> String {
    let attr = AttributeDescriptor {
        class_id: 1,
        instance: "0-0:42.0.0.255".parse().unwrap(),
        attribute_id: 2,
    };
    match c.get(attr).await {
        Err(e) => e.to_string(),
        Ok(other) => panic!("a superseded link still answered: {other:?}"),
    }
}

#[tokio::test]
async fn a_mode_e_meter_signs_on_again_after_each_disc() {
    bounded(async {
        let pty = PtyPair::new();
        let sim = Sim::start(&pty, true, None).await;
        let target = format!("serial://{}?mode-e", path_str(&pty.dut));
        let p = profile();
        let mut first = link(&target, &p, 16).await;
        let opened = records(&mut first);
        assert!(has(
            &opened,
            Direction::Sent,
            "iec62056-21",
            "sign-on request /?!"
        ));
        assert!(has(
            &opened,
            Direction::Received,
            "iec62056-21",
            "identification"
        ));
        assert_eq!(read_ldn(&mut first).await, b"MMM0000012345678");
        first.release(false).await.unwrap();
        first.link.disconnect().await.unwrap();
        sim.wait_for(
            "HDLC session ended (DISC); waiting for a mode E sign-on",
            1,
            BOUND,
        )
        .await;
        // The meter is back at 300 baud: the next link signs on first.
        let mut second = link(&target, &p, 16).await;
        let opened = records(&mut second);
        assert!(has(
            &opened,
            Direction::Sent,
            "iec62056-21",
            "sign-on request /?!"
        ));
        assert_eq!(read_ldn(&mut second).await, b"MMM0000012345678");
        // A third link while the second is up: DISC for it, then a sign-on.
        let mut third = link(&target, &p, 16).await;
        let opened = records(&mut third);
        assert!(has(&opened, Direction::Sent, "hdlc", "DISC(P) 16 -> 1/17"));
        assert!(has(
            &opened,
            Direction::Sent,
            "iec62056-21",
            "sign-on request /?!"
        ));
        assert_eq!(read_ldn(&mut third).await, b"MMM0000012345678");
        assert_eq!(
            sim.count("mode E sign-on, now HDLC at 9600 baud"),
            3,
            "{}",
            sim.text()
        );
    })
    .await;
}

#[tokio::test]
async fn the_same_link_signs_on_again_before_its_next_snrm_after_its_disc() {
    bounded(async {
        let pty = PtyPair::new();
        let sim = Sim::start(&pty, true, None).await;
        let target = format!("serial://{}?mode-e", path_str(&pty.dut));
        let p = profile();
        let mut c = link(&target, &p, 16).await;
        assert_eq!(read_ldn(&mut c).await, b"MMM0000012345678");
        c.link.disconnect().await.unwrap();
        records(&mut c);
        assert_eq!(read_ldn(&mut c).await, b"MMM0000012345678");
        let trace = records(&mut c);
        let first = trace.first().expect("traffic");
        assert_eq!(
            (first.layer, first.direction),
            ("iec62056-21", Direction::Sent)
        );
        // Signed on before the SNRM, not after one went unanswered.
        assert!(
            !has(&trace, Direction::Note, "note", "no answer to SNRM"),
            "{trace:#?}"
        );
        assert_eq!(sim.count("mode E sign-on, now HDLC at 9600 baud"), 2);
    })
    .await;
}

#[tokio::test]
async fn a_session_left_open_by_a_stopped_run_is_ended_before_the_sign_on() {
    bounded(async {
        let pty = PtyPair::new();
        let sim = Sim::start(&pty, true, None).await;
        let target = format!("serial://{}?mode-e", path_str(&pty.dut));
        let p = profile();
        let mut killed = link(&target, &p, 1).await;
        killed.link.connect().await.unwrap();
        // Gone without DISC, and the port with it: the meter stays in HDLC.
        drop(killed);
        let mut c = link(&target, &p, 16).await;
        let opened = records(&mut c);
        assert!(
            has(
                &opened,
                Direction::Note,
                "note",
                "the meter may still be in an HDLC session left open"
            ),
            "{opened:#?}"
        );
        assert!(has(&opened, Direction::Sent, "hdlc", "DISC(P) 16 -> 1/17"));
        assert!(has(
            &opened,
            Direction::Received,
            "iec62056-21",
            "identification"
        ));
        assert_eq!(read_ldn(&mut c).await, b"MMM0000012345678");
        assert_eq!(
            sim.count("mode E sign-on, now HDLC at 9600 baud"),
            2,
            "{}",
            sim.text()
        );
    })
    .await;
}

#[tokio::test]
async fn a_silent_mode_e_line_fails_with_the_sign_on_named() {
    bounded(async {
        let pty = PtyPair::new();
        // Nobody on the meter's end.
        let target = format!("serial://{}?mode-e", path_str(&pty.dut));
        let mut p = profile();
        p.timeouts.connect = Duration::from_millis(500);
        let spec: TargetSpec = target.parse().unwrap();
        let e = open(&spec, &p, 16, None, None, Instant::now())
            .await
            .expect_err("no meter, no link");
        let text = e.to_string();
        assert!(
            text.contains("mode E: no identification within 500ms"),
            "{text}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_mode_e_meter_returns_to_its_sign_on_after_the_inactivity_timeout() {
    bounded(async {
        let pty = PtyPair::new();
        let sim = Sim::start(&pty, true, Some(1)).await;
        let target = format!("serial://{}?mode-e", path_str(&pty.dut));
        let mut p = profile();
        p.hdlc.inactivity_timeout = Duration::from_secs(1);
        let mut first = link(&target, &p, 16).await;
        assert_eq!(read_ldn(&mut first).await, b"MMM0000012345678");
        sim.wait_for("HDLC session ended (inactivity timeout)", 1, BOUND)
            .await;
        // The client knows: the port signs on before the next link.
        let mut second = link(&target, &p, 16).await;
        let opened = records(&mut second);
        assert!(
            has(
                &opened,
                Direction::Note,
                "note",
                "idle for longer than the meter's HDLC inactivity timeout"
            ),
            "{opened:#?}"
        );
        assert!(has(
            &opened,
            Direction::Sent,
            "iec62056-21",
            "sign-on request /?!"
        ));
        assert!(
            !has(&opened, Direction::Sent, "hdlc", "DISC"),
            "{opened:#?}"
        );
        assert_eq!(read_ldn(&mut second).await, b"MMM0000012345678");
        // Without a link up, too: signed on, then nothing.
        let mut third = link(&target, &p, 16).await;
        third.link.connect().await.unwrap();
        third.link.disconnect().await.unwrap();
        sim.wait_for("HDLC session ended (DISC)", 1, BOUND).await;
        let fourth = link(&target, &p, 16).await;
        drop(fourth);
        sim.wait_for("HDLC session ended (inactivity timeout)", 2, BOUND)
            .await;
        assert_eq!(
            sim.count("mode E sign-on, now HDLC at 9600 baud"),
            4,
            "{}",
            sim.text()
        );
    })
    .await;
}

#[tokio::test]
async fn an_unanswered_snrm_on_a_mode_e_port_signs_on_again() {
    bounded(async {
        let pty = PtyPair::new();
        // The meter times out after 1 s; the profile says 120 s.
        let sim = Sim::start(&pty, true, Some(1)).await;
        let target = format!("serial://{}?mode-e", path_str(&pty.dut));
        let p = profile();
        let mut c = link(&target, &p, 16).await;
        assert_eq!(read_ldn(&mut c).await, b"MMM0000012345678");
        sim.wait_for("HDLC session ended (inactivity timeout)", 1, BOUND)
            .await;
        records(&mut c);
        assert_eq!(read_ldn(&mut c).await, b"MMM0000012345678");
        let trace = records(&mut c);
        assert!(
            has(
                &trace,
                Direction::Note,
                "note",
                "no answer to SNRM: signing on again"
            ),
            "{trace:#?}"
        );
        assert!(has(
            &trace,
            Direction::Sent,
            "iec62056-21",
            "sign-on request /?!"
        ));
        assert_eq!(sim.count("mode E sign-on, now HDLC at 9600 baud"), 2);
    })
    .await;
}

/// Serves HDLC on loopback TCP, counting the connections.
async fn converter() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let n = accepted.clone();
    let meter = SharedMeter::new(Meter::new(MeterConfig::default(), Quirks::none()));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            n.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve_hdlc(meter.clone(), stream));
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn hdlc_over_tcp_with_single_link_keeps_one_connection() {
    bounded(async {
        let p = profile();
        let (addr, accepted) = converter().await;
        let target = format!("hdlc+tcp://{addr}?single-link");
        let mut a = link(&target, &p, 16).await;
        assert_eq!(read_ldn(&mut a).await, b"MMM0000012345678");
        let mut b = link(&target, &p, 16).await;
        assert_eq!(read_ldn(&mut b).await, b"MMM0000012345678");
        assert!(ldn_error(&mut a).await.contains("another HDLC link"));
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        // Without it, each link has its own connection.
        let (addr, accepted) = converter().await;
        let target = format!("hdlc+tcp://{addr}");
        let mut a = link(&target, &p, 16).await;
        assert_eq!(read_ldn(&mut a).await, b"MMM0000012345678");
        let mut b = link(&target, &p, 16).await;
        assert_eq!(read_ldn(&mut b).await, b"MMM0000012345678");
        assert_eq!(ldn(&mut a).await, b"MMM0000012345678");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    })
    .await;
}
