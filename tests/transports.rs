//! The client over every transport against the simulated meter served on real
//! sockets and serial lines: the TCP wrapper and the UDP wrapper (IEC 62056-47),
//! HDLC over TCP and over serial ports (IEC 62056-46), and the IEC 62056-21
//! mode E sign-on before HDLC (dlms-facts.md 6.1 to 6.3).
//!
//! Each transport runs the same sessions: the public client reads the logical
//! device name; the management client (HLS-GMAC, authenticated and encrypted,
//! with service-specific and then general ciphering) reads the clock and the
//! association object list (long enough to need block transfer with a small
//! client PDU, and HDLC segmentation both ways with small information fields),
//! then releases; HDLC links then disconnect.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::PtyPair;

use idis_harness::client::{AssociateOutcome, Client, GetOutcome};
use idis_harness::profile::{Ciphering, ClientProfile, DeviceProfile};
use idis_harness::runner::event::Direction;
use idis_harness::session::association::AssociationRequest;
use idis_harness::sim::server::{SharedMeter, serve_hdlc, serve_udp, serve_wrapper};
use idis_harness::sim::{Meter, MeterConfig, Quirks};
use idis_harness::transport::link::{Link, LinkKind};
use idis_harness::transport::open::{open, settings};
use idis_harness::transport::serial::mode_e_answer;
use idis_harness::transport::target::TargetSpec;
use idis_harness::wire::apdu::{Apdu, AttributeDescriptor};
use idis_harness::wire::axdr::Data;
use idis_harness::wire::obis::Obis;
use tokio::net::{TcpListener, UdpSocket};
use tokio_serial::{DataBits, Parity, SerialPort, SerialStream, StopBits};

/// Every test body runs under this bound, so that a hang fails instead of stalling CI.
const BOUND: Duration = Duration::from_secs(10);

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("the test did not finish within its time bound");
}

fn meter() -> SharedMeter {
    SharedMeter::new(Meter::new(MeterConfig::default(), Quirks::none()))
}

/// The default device profile with a response timeout short enough to fail fast.
fn profile() -> DeviceProfile {
    let mut p = DeviceProfile::default();
    p.timeouts.response = Duration::from_secs(2);
    p.timeouts.connect = Duration::from_secs(2);
    p
}

/// A profile with small HDLC information fields (segmentation both ways).
fn small_hdlc_profile() -> DeviceProfile {
    let mut p = profile();
    p.hdlc.max_info_rx = 32;
    p.hdlc.max_info_tx = 32;
    p
}

/// Serves the meter on a loopback TCP port, with the wrapper or HDLC framing.
async fn serve_tcp(meter: SharedMeter, hdlc: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let m = meter.clone();
            tokio::spawn(async move {
                let _ = if hdlc {
                    serve_hdlc(m, stream).await
                } else {
                    serve_wrapper(m, stream).await
                };
            });
        }
    });
    addr
}

async fn serve_udp_on_loopback(meter: SharedMeter) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = serve_udp(meter, socket).await;
    });
    addr
}

/// Opens `target` for client `sap` through `transport::open`, and connects the data link.
async fn open_client(target: &str, profile: &DeviceProfile, sap: u16) -> Client {
    let spec: TargetSpec = target.parse().unwrap();
    let mut link = open(&spec, profile, sap, None, None, Instant::now())
        .await
        .unwrap_or_else(|e| panic!("open {target}: {e}"));
    link.connect()
        .await
        .unwrap_or_else(|e| panic!("connect {target}: {e}"));
    Client::new(link)
}

fn attribute(class_id: u16, instance: Obis, attribute_id: i8) -> AttributeDescriptor {
    AttributeDescriptor {
        class_id,
        instance,
        attribute_id,
    }
}

/// Received trace records whose description contains `text`.
fn received(link: &mut Link, layer: &str, text: &str) -> usize {
    let records = link.trace.take();
    records
        .iter()
        .filter(|r| r.direction == Direction::Received && r.layer == layer)
        .filter(|r| r.decoded.contains(text))
        .count()
}

fn sent(records: &[idis_harness::runner::event::TrafficRecord], layer: &str, text: &str) -> usize {
    records
        .iter()
        .filter(|r| r.direction == Direction::Sent && r.layer == layer)
        .filter(|r| r.decoded.contains(text))
        .count()
}

/// The public client reads the logical device name, then releases.
async fn public_session(client: &mut Client) {
    let req = AssociationRequest::from_profile(&ClientProfile::public(), vec![], 0);
    let outcome = client.associate(req, false).await.unwrap();
    assert!(
        matches!(outcome, AssociateOutcome::Associated),
        "{outcome:?}"
    );
    let name = client
        .get(attribute(1, Obis::LOGICAL_DEVICE_NAME, 2))
        .await
        .unwrap();
    assert_eq!(
        name,
        GetOutcome::Data(Data::OctetString(b"MMM0000012345678".to_vec()))
    );
    let rlre = client.release(false).await.unwrap();
    assert!(matches!(rlre, Apdu::Rlre(_)), "{rlre}");
    assert!(client.assoc.is_none());
}

/// The management client (HLS-GMAC, authenticated and encrypted) reads the
/// clock and the association object list, then releases. Returns how many
/// get-response-with-datablock APDUs the read of the object list took.
async fn management_session(
    client: &mut Client,
    ciphering: Ciphering,
    invocation_counter: u32,
    max_pdu_size: u16,
) -> usize {
    let mut c = ClientProfile::management();
    c.ciphering = ciphering;
    c.max_pdu_size = max_pdu_size;
    let req =
        AssociationRequest::from_profile(&c, b"0123456789ABCDEF".to_vec(), invocation_counter);
    let outcome = client.associate(req, false).await.unwrap();
    assert!(
        matches!(outcome, AssociateOutcome::Associated),
        "{outcome:?}"
    );
    let assoc = client.assoc.as_ref().unwrap();
    assert!(assoc.authenticated && assoc.ciphered());
    let clock = client.get(attribute(8, Obis::CLOCK, 2)).await.unwrap();
    assert!(
        matches!(&clock, GetOutcome::Data(Data::OctetString(v)) if v.len() == 12),
        "{clock:?}"
    );
    client.link.trace.take();
    let list = client
        .get(attribute(15, Obis::CURRENT_ASSOCIATION, 2))
        .await
        .unwrap();
    let GetOutcome::Data(Data::Array(objects)) = &list else {
        panic!("object list: {list:?}");
    };
    assert!(objects.len() > 10, "only {} objects", objects.len());
    // The deciphered APDUs are in the trace as "xdlms" records.
    let blocks = received(&mut client.link, "xdlms", "get-response with-datablock");
    let rlre = client.release(true).await.unwrap();
    assert!(matches!(rlre, Apdu::Rlre(_)), "{rlre}");
    assert!(client.assoc.is_none());
    blocks
}

/// Both management sessions on one link: service-specific, then general ciphering.
/// With a small client PDU the object list must come in blocks.
async fn management_sessions(client: &mut Client) {
    let large = management_session(client, Ciphering::ServiceSpecific, 1, 1024).await;
    let small = management_session(client, Ciphering::General, 1000, 64).await;
    assert!(
        small > 3 && small > 4 * large.max(1),
        "{small} blocks with a 64-byte client PDU, {large} with 1024"
    );
}

#[tokio::test]
async fn tcp_wrapper_public_and_management() {
    bounded(async {
        let addr = serve_tcp(meter(), false).await;
        let target = format!("tcp://{addr}");
        let mut public = open_client(&target, &profile(), 16).await;
        assert_eq!(public.link.kind(), LinkKind::Wrapper);
        public_session(&mut public).await;
        let mut mgmt = open_client(&target, &profile(), 1).await;
        management_sessions(&mut mgmt).await;
        mgmt.link.shutdown().await;
    })
    .await;
}

#[test]
fn tcp_wrapper_default_port_is_4059() {
    let spec: TargetSpec = "tcp://127.0.0.1".parse().unwrap();
    let s = settings(&spec, &DeviceProfile::default(), 16);
    assert_eq!(s.server_wport, 1);
    assert_eq!(
        spec.endpoint,
        idis_harness::transport::target::Endpoint::TcpWrapper {
            host: "127.0.0.1".into(),
            port: 4059
        }
    );
}

#[tokio::test]
async fn udp_wrapper_public_and_management() {
    bounded(async {
        let addr = serve_udp_on_loopback(meter()).await;
        let target = format!("udp://{addr}");
        let mut public = open_client(&target, &profile(), 16).await;
        assert_eq!(public.link.kind(), LinkKind::Udp);
        public_session(&mut public).await;
        let mut mgmt = open_client(&target, &profile(), 1).await;
        management_sessions(&mut mgmt).await;
    })
    .await;
}

/// Public and management sessions over an HDLC link, then DISC.
async fn hdlc_sessions(target: &str, profile: &DeviceProfile) {
    let mut public = open_client(target, profile, 16).await;
    assert_eq!(public.link.kind(), LinkKind::Hdlc);
    public_session(&mut public).await;
    public.link.disconnect().await.unwrap();
    assert!(!public.link.is_connected());

    let mut mgmt = open_client(target, profile, 1).await;
    management_sessions(&mut mgmt).await;
    mgmt.link.disconnect().await.unwrap();
    assert!(!mgmt.link.is_connected());
}

#[tokio::test]
async fn hdlc_over_tcp_public_and_management() {
    bounded(async {
        let addr = serve_tcp(meter(), true).await;
        hdlc_sessions(&format!("hdlc+tcp://{addr}"), &profile()).await;
    })
    .await;
}

#[tokio::test]
async fn hdlc_over_tcp_segments_both_ways_with_small_information_fields() {
    bounded(async {
        let addr = serve_tcp(meter(), true).await;
        let target = format!("hdlc+tcp://{addr}");
        let p = small_hdlc_profile();
        let mut mgmt = open_client(&target, &p, 1).await;
        let params = mgmt.link.hdlc_client().unwrap().params();
        assert_eq!((params.max_info_tx, params.max_info_rx), (32, 32));
        let mut c = ClientProfile::management();
        c.max_pdu_size = 64;
        let req = AssociationRequest::from_profile(&c, b"0123456789ABCDEF".to_vec(), 1);
        // The ciphered AARQ is longer than 32 bytes: it leaves in segments,
        // each acknowledged by RR; the AARE comes back in segments polled by RR.
        assert!(matches!(
            mgmt.associate(req, false).await.unwrap(),
            AssociateOutcome::Associated
        ));
        let records = mgmt.link.trace.take();
        assert!(sent(&records, "hdlc", "segmented") >= 2, "{records:#?}");
        assert!(sent(&records, "hdlc", "RR(") >= 1, "{records:#?}");
        let got_segments = records
            .iter()
            .filter(|r| r.direction == Direction::Received && r.layer == "hdlc")
            .filter(|r| r.decoded.contains("segmented"))
            .count();
        assert!(got_segments >= 1, "{records:#?}");
        let list = mgmt
            .get(attribute(15, Obis::CURRENT_ASSOCIATION, 2))
            .await
            .unwrap();
        assert!(
            matches!(&list, GetOutcome::Data(Data::Array(v)) if v.len() > 10),
            "{list:?}"
        );
        let blocks = received(&mut mgmt.link, "xdlms", "get-response with-datablock");
        assert!(blocks > 3, "{blocks}");
        assert!(matches!(mgmt.release(true).await.unwrap(), Apdu::Rlre(_)));
        mgmt.link.disconnect().await.unwrap();

        // And the full set of sessions with the small fields (a fresh meter:
        // the invocation counters above are spent).
        let addr = serve_tcp(meter(), true).await;
        hdlc_sessions(&format!("hdlc+tcp://{addr}"), &p).await;
    })
    .await;
}

// ---------------------------------------------------------------------------
// Serial

/// Sets a serial port's line settings (a pty may ignore baud and parity).
fn line(port: &mut SerialStream, baud: u32, parity: Parity, bits: DataBits) {
    port.set_baud_rate(baud).unwrap();
    port.set_parity(parity).unwrap();
    port.set_data_bits(bits).unwrap();
    port.set_stop_bits(StopBits::One).unwrap();
}

#[tokio::test]
async fn hdlc_over_a_serial_pair() {
    bounded(async {
        let m = meter();
        for (sap, small) in [(16u16, false), (1, false), (1, true)] {
            let (ours, theirs) = SerialStream::pair().unwrap();
            let server = tokio::spawn(serve_hdlc(m.clone(), theirs));
            let spec: TargetSpec = "serial:///dev/null".parse().unwrap();
            let p = if small {
                small_hdlc_profile()
            } else {
                profile()
            };
            let s = settings(&spec, &p, sap);
            let mut link = Link::hdlc(Box::new(ours), s, "pty pair".into(), Instant::now());
            link.connect().await.unwrap();
            let mut client = Client::new(link);
            if sap == 16 {
                public_session(&mut client).await;
            } else {
                let ic = if small { 5000 } else { 1 };
                management_session(&mut client, Ciphering::General, ic, 64).await;
            }
            client.link.disconnect().await.unwrap();
            drop(client);
            // The server ends when its line closes (or errors: a pty master reads EIO then).
            let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
        }
    })
    .await;
}

#[tokio::test]
async fn hdlc_over_a_socat_pty_pair() {
    bounded(async {
        let pty = PtyPair::new();
        let m = meter();
        let mut peer = pty.open_peer(9600);
        line(&mut peer, 9600, Parity::None, DataBits::Eight);
        let server = tokio::spawn(serve_hdlc(m, peer));
        let target = format!("serial://{}?baud=9600", pty.dut.display());
        let mut client = open_client(&target, &profile(), 1).await;
        management_session(&mut client, Ciphering::ServiceSpecific, 1, 64).await;
        client.link.disconnect().await.unwrap();
        drop(client);
        server.abort();
    })
    .await;
}

#[tokio::test]
async fn hdlc_over_a_socat_pty_pair_with_even_parity() {
    bounded(async {
        let pty = PtyPair::new();
        let mut peer = pty.open_peer(19200);
        line(&mut peer, 19200, Parity::Even, DataBits::Eight);
        let server = tokio::spawn(serve_hdlc(meter(), peer));
        let target = format!(
            "serial://{}?baud=19200&parity=even&stop-bits=1",
            pty.dut.display()
        );
        let mut client = open_client(&target, &profile(), 16).await;
        public_session(&mut client).await;
        client.link.disconnect().await.unwrap();
        server.abort();
    })
    .await;
}

#[tokio::test]
async fn mode_e_then_hdlc_over_a_socat_pty_pair() {
    bounded(async {
        let pty = PtyPair::new();
        let mut peer = pty.open_peer(300);
        line(&mut peer, 300, Parity::Even, DataBits::Seven);
        let m = meter();
        let meter_side = tokio::spawn(async move {
            // The meter announces 9600 baud ('5'), then switches to it at 8N1.
            let baud = mode_e_answer(&mut peer, "MMM5IDIS", b'5').await?;
            line(&mut peer, baud, Parity::None, DataBits::Eight);
            let _ = serve_hdlc(m, peer).await;
            Ok::<u32, idis_harness::transport::link::LinkError>(baud)
        });
        let target = format!("serial://{}?mode-e", pty.dut.display());
        let spec: TargetSpec = target.parse().unwrap();
        assert!(spec.transport_description().contains("mode E"));
        let mut client = open_client(&target, &profile(), 16).await;
        public_session(&mut client).await;
        client.link.disconnect().await.unwrap();
        drop(client);
        drop(pty);
        // The meter side saw the acknowledgement of 9600 baud.
        let baud = tokio::time::timeout(Duration::from_secs(2), meter_side)
            .await
            .expect("the meter side ends when the line goes")
            .unwrap()
            .unwrap();
        assert_eq!(baud, 9600);
    })
    .await;
}
