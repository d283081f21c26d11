//! A device that misbehaves on the line: garbage, truncated frames, a wrong
//! FCS, no reply, a closed connection, a wrong wPort, endless noise, a device
//! that stops reading, and, in the middle of an association, FRMR, DM, lost,
//! repeated and corrupted frames.
//! Every client operation must end within the configured response timeout with
//! an error that names what happened, and the link's trace must show what was
//! received: never a hang, never a panic. Wrapper: IEC 62056-47 (dlms-facts.md
//! 6.3); HDLC: IEC 62056-46 (dlms-facts.md 6.1).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use idis_harness::client::{AssociateOutcome, Client, ClientError, GetOutcome};
use idis_harness::profile::{ClientProfile, DeviceProfile};
use idis_harness::runner::event::{Direction, TrafficRecord};
use idis_harness::session::association::AssociationRequest;
use idis_harness::sim::server::SimHandle;
use idis_harness::sim::{Meter, MeterConfig, Quirks};
use idis_harness::transport::link::{Link, LinkError};
use idis_harness::transport::open::open;
use idis_harness::transport::target::TargetSpec;
use idis_harness::wire::apdu::AttributeDescriptor;
use idis_harness::wire::axdr::Data;
use idis_harness::wire::hdlc::{
    Address, Control, DeframeEvent, Deframer, FrameRepr, LinkParams, MAX_FRAME_LEN,
};
use idis_harness::wire::obis::Obis;
use idis_harness::wire::wrapper::WrapperFrame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Mutex;

/// The response timeout every test configures.
const TIMEOUT: Duration = Duration::from_millis(300);
/// Every operation must end within the timeout plus this much.
const SLACK: Duration = Duration::from_millis(400);

/// Runs a test body under a 5 s bound: a hang fails the test instead of stalling CI.
async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .expect("the test hung (5 s bound)");
}

fn profile() -> DeviceProfile {
    let mut p = DeviceProfile::default();
    p.timeouts.response = TIMEOUT;
    p.timeouts.connect = Duration::from_secs(1);
    p
}

/// A fake device: accepts one TCP connection and runs `script` on it.
async fn device<F, Fut>(script: F) -> SocketAddr
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        if let Ok((stream, _)) = listener.accept().await {
            script(stream).await;
        }
    });
    addr
}

async fn link(target: String) -> Link {
    let spec: TargetSpec = target.parse().unwrap();
    open(&spec, &profile(), 16, None, None, Instant::now())
        .await
        .unwrap()
}

/// Runs `op`, checks it ends within the timeout (plus slack) and returns its result.
async fn timed<T>(op: impl Future<Output = T>) -> T {
    let t0 = Instant::now();
    let r = op.await;
    let took = t0.elapsed();
    assert!(
        took <= TIMEOUT + SLACK,
        "took {took:?}, the timeout is {TIMEOUT:?}"
    );
    r
}

fn public_aarq() -> AssociationRequest {
    AssociationRequest::from_profile(&ClientProfile::public(), vec![], 0)
}

async fn associate(client: &mut Client) -> Result<AssociateOutcome, ClientError> {
    timed(client.associate(public_aarq(), false)).await
}

fn assert_error(e: &impl std::fmt::Display, want: &str) {
    let text = e.to_string();
    assert!(text.contains(want), "error {text:?} does not say {want:?}");
}

/// The trace has a received record whose hex contains `bytes` and whose description contains `text`.
fn assert_traced(trace: &[TrafficRecord], bytes: &[u8], text: &str) {
    let hex = hex::encode_upper(bytes);
    assert!(
        trace.iter().any(|r| r.direction == Direction::Received
            && r.hex.contains(&hex)
            && r.decoded.contains(text)),
        "no received record with {hex} and {text:?} in\n{}",
        trace
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Reads until `n` bytes (or the end) arrived.
async fn read_some(s: &mut TcpStream, n: usize) {
    let mut buf = vec![0u8; n];
    let _ = s.read_exact(&mut buf).await;
}

/// Keeps the connection open without answering, until the client goes.
async fn hold(mut s: TcpStream) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

fn server_frame(control: Control, info: Vec<u8>) -> FrameRepr {
    FrameRepr {
        segmented: false,
        dest: Address::client(16),
        src: Address::server(1, 17),
        control,
        info,
    }
}

fn ua() -> Vec<u8> {
    server_frame(
        Control::Ua { poll_final: true },
        LinkParams::default().encode(),
    )
    .encode()
}

/// Reads HDLC frames from the client; `None` at the end of the stream.
struct FrameReader {
    deframer: Deframer,
}

impl FrameReader {
    fn new() -> Self {
        FrameReader {
            deframer: Deframer::new(),
        }
    }
    async fn next<R: AsyncReadExt + Unpin>(&mut self, s: &mut R) -> Option<FrameRepr> {
        let mut buf = [0u8; 4096];
        loop {
            while let Some(ev) = self.deframer.next_event() {
                if let DeframeEvent::Frame(f) = ev {
                    return Some(f);
                }
            }
            let n = s.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            self.deframer.push(&buf[..n]);
        }
    }
}

// ---------------------------------------------------------------------------
// TCP wrapper

#[tokio::test]
async fn wrapper_garbage_is_named_and_the_stream_stays_out_of_step() {
    bounded(async {
        let garbage = b"\x12\x34 this is not a wrapper frame".to_vec();
        let g = garbage.clone();
        let addr = device(move |mut s| async move {
            read_some(&mut s, 8).await;
            s.write_all(&g).await.unwrap();
            hold(s).await;
        })
        .await;
        let mut client = Client::new(link(format!("tcp://{addr}")).await);
        let e = associate(&mut client).await.unwrap_err();
        assert_error(&e, "wrapper version is 0x1234, expected 0x0001");
        // The wrapper has no delimiter: the rest of the stream cannot be trusted,
        // and the next read says so at once instead of parsing from mid-frame.
        let e = timed(client.link.recv_apdu(TIMEOUT)).await.unwrap_err();
        assert_error(&e, "out of step");
        assert_traced(&client.link.trace.take(), &garbage[..8], "wrapper version");
    })
    .await;
}

#[tokio::test]
async fn wrapper_truncated_frame_then_close() {
    bounded(async {
        // A header announcing 100 bytes, 10 of them, then the end.
        let mut partial = WrapperFrame::new(1, 16, vec![0x61; 100]).encode();
        partial.truncate(18);
        let p = partial.clone();
        let addr = device(move |mut s| async move {
            read_some(&mut s, 8).await;
            s.write_all(&p).await.unwrap();
            s.shutdown().await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        })
        .await;
        let mut client = Client::new(link(format!("tcp://{addr}")).await);
        let e = associate(&mut client).await.unwrap_err();
        assert_error(&e, "the device closed the connection");
        assert_traced(&client.link.trace.take(), &partial, "10 of 100");
    })
    .await;
}

#[tokio::test]
async fn wrapper_no_reply() {
    bounded(async {
        let addr = device(hold).await;
        let mut client = Client::new(link(format!("tcp://{addr}")).await);
        let t0 = Instant::now();
        let e = associate(&mut client).await.unwrap_err();
        assert!(t0.elapsed() >= TIMEOUT);
        assert_error(&e, "no reply within 300ms");
    })
    .await;
}

#[tokio::test]
async fn wrapper_accepts_then_closes() {
    bounded(async {
        let addr = device(|s| async move { drop(s) }).await;
        let mut client = Client::new(link(format!("tcp://{addr}")).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let e = associate(&mut client).await.unwrap_err();
        assert_error(&e, "the device closed the connection");
        // And the link stays closed.
        let e = timed(client.link.recv_apdu(TIMEOUT)).await.unwrap_err();
        assert_error(&e, "closed");
    })
    .await;
}

/// A device that accepts the connection and never reads: once the socket
/// buffers are full, the write must end with an error naming the stall, not
/// wait for ever.
#[tokio::test]
async fn wrapper_device_that_stops_reading() {
    bounded(async {
        let addr = device(|s| async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(s);
        })
        .await;
        let mut link = link(format!("tcp://{addr}")).await;
        // Not 64 MiB of hex in the trace.
        link.trace.set_enabled(false);
        // Far more than loopback TCP buffers hold (a few MiB each way).
        let flood = vec![0u8; 64 << 20];
        let t0 = Instant::now();
        let e = link
            .send_raw(&flood, "wrapper", "64 MiB nobody reads".into())
            .await
            .unwrap_err();
        assert!(matches!(e, LinkError::Stalled { .. }), "{e:?}");
        assert_error(&e, "did not take 67108864 byte(s) within 300ms");
        assert!(
            t0.elapsed() <= TIMEOUT + Duration::from_secs(2),
            "took {:?}",
            t0.elapsed()
        );
    })
    .await;
}

#[tokio::test]
async fn wrapper_reply_from_the_wrong_wport() {
    bounded(async {
        let addr = device(|mut s| async move {
            read_some(&mut s, 8).await;
            let f = WrapperFrame::new(5, 16, vec![0x61, 0x03, 0x80, 0x01, 0x00]);
            s.write_all(&f.encode()).await.unwrap();
            hold(s).await;
        })
        .await;
        let mut client = Client::new(link(format!("tcp://{addr}")).await);
        let e = associate(&mut client).await.unwrap_err();
        assert_error(&e, "wrapper frame from wPort 5 to 16 (expected 1 to 16)");
        assert_traced(&client.link.trace.take(), &[0x61, 0x03], "wrapper 5 -> 16");
    })
    .await;
}

#[tokio::test]
async fn wrapper_endless_garbage() {
    bounded(async {
        let addr = device(|mut s| async move {
            let junk = [0x55u8; 4096];
            while s.write_all(&junk).await.is_ok() {}
        })
        .await;
        let mut client = Client::new(link(format!("tcp://{addr}")).await);
        let e = associate(&mut client).await.unwrap_err();
        assert_error(&e, "wrapper version is 0x5555");
    })
    .await;
}

// ---------------------------------------------------------------------------
// UDP wrapper

#[tokio::test]
async fn udp_garbage_no_reply_and_a_flood_from_elsewhere() {
    bounded(async {
        let dev = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = dev.local_addr().unwrap();
        let mut client = Client::new(link(format!("udp://{addr}")).await);
        let dev = Arc::new(dev);
        let d = dev.clone();
        let script = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            // 1: garbage.
            let (_, from) = d.recv_from(&mut buf).await.unwrap();
            d.send_to(b"garbage!", from).await.unwrap();
            // 2: nothing at all.
            let _ = d.recv_from(&mut buf).await.unwrap();
            // 3: nothing from the device, while another host floods the client.
            let (_, from) = d.recv_from(&mut buf).await.unwrap();
            let other = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            loop {
                if other.send_to(&[0u8; 64], from).await.is_err() {
                    break;
                }
                tokio::task::yield_now().await;
            }
        });
        let e = associate(&mut client).await.unwrap_err();
        assert_error(&e, "wrapper version");
        assert_traced(&client.link.trace.take(), b"garbage!", "bad datagram");
        let e = associate(&mut client).await.unwrap_err();
        assert_error(&e, "no reply within 300ms");
        let e = associate(&mut client).await.unwrap_err();
        assert_error(&e, "300ms");
        script.abort();
    })
    .await;
}

// ---------------------------------------------------------------------------
// HDLC over TCP: the SNRM/UA exchange

async fn hdlc_connect_error(addr: SocketAddr) -> (LinkError, Vec<TrafficRecord>, Link) {
    let mut l = link(format!("hdlc+tcp://{addr}")).await;
    let e = timed(l.connect()).await.unwrap_err();
    let trace = l.trace.take();
    (e, trace, l)
}

#[tokio::test]
async fn hdlc_garbage_then_nothing() {
    bounded(async {
        // Noise with flags in it: neither a frame nor silence.
        let garbage: Vec<u8> = b"\x7E\x01\x02\x7E\x7E hello \x7E\xA0\x07\x99\x7E".to_vec();
        let g = garbage.clone();
        let addr = device(move |mut s| async move {
            read_some(&mut s, 9).await;
            s.write_all(&g).await.unwrap();
            hold(s).await;
        })
        .await;
        let (e, trace, _) = hdlc_connect_error(addr).await;
        assert_error(&e, "no valid reply within 300ms");
        assert_error(&e, "invalid frame");
        assert_traced(&trace, &garbage[..4], "invalid frame");
    })
    .await;
}

#[tokio::test]
async fn hdlc_truncated_frame_then_nothing() {
    bounded(async {
        let mut partial = ua();
        partial.truncate(6);
        let p = partial.clone();
        let addr = device(move |mut s| async move {
            read_some(&mut s, 9).await;
            s.write_all(&p).await.unwrap();
            hold(s).await;
        })
        .await;
        let (e, trace, _) = hdlc_connect_error(addr).await;
        assert_error(&e, "no valid reply within 300ms");
        assert_error(&e, "6 byte(s) of an incomplete frame");
        assert_traced(&trace, &partial, "incomplete frame");
    })
    .await;
}

#[tokio::test]
async fn hdlc_ua_with_a_wrong_fcs() {
    bounded(async {
        let mut bad = ua();
        let n = bad.len();
        bad[n - 2] ^= 0xFF;
        let b = bad.clone();
        let addr = device(move |mut s| async move {
            let mut r = FrameReader::new();
            // Every SNRM (the first and its retransmission) gets the broken UA.
            while r.next(&mut s).await.is_some() {
                if s.write_all(&b).await.is_err() {
                    break;
                }
            }
        })
        .await;
        let (e, trace, l) = hdlc_connect_error(addr).await;
        assert_error(&e, "no valid reply within 300ms");
        assert_error(&e, "2 invalid frames");
        assert_error(&e, "frame check sequence wrong");
        assert_traced(
            &trace,
            &bad,
            "invalid frame: HDLC frame check sequence wrong",
        );
        assert!(!l.is_connected());
    })
    .await;
}

#[tokio::test]
async fn hdlc_ua_with_malformed_parameters() {
    bounded(async {
        let bad = server_frame(
            Control::Ua { poll_final: true },
            vec![0x81, 0x80, 0x09, 0x05],
        )
        .encode();
        let addr = device(move |mut s| async move {
            read_some(&mut s, 9).await;
            s.write_all(&bad).await.unwrap();
            hold(s).await;
        })
        .await;
        let (e, _, l) = hdlc_connect_error(addr).await;
        assert_error(&e, "UA the link cannot use");
        assert_error(&e, "parameters");
        assert!(!l.is_connected());
    })
    .await;
}

#[tokio::test]
async fn hdlc_no_reply_retransmits_snrm_once() {
    bounded(async {
        let addr = device(hold).await;
        let (e, trace, l) = hdlc_connect_error(addr).await;
        assert_error(&e, "no reply within 300ms");
        let snrms = trace
            .iter()
            .filter(|r| r.direction == Direction::Sent && r.decoded.starts_with("SNRM"))
            .count();
        assert_eq!(snrms, 2, "SNRM and one retransmission");
        assert!(!l.is_connected());
    })
    .await;
}

#[tokio::test]
async fn hdlc_accepts_then_closes() {
    bounded(async {
        let addr = device(|s| async move { drop(s) }).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (e, _, _) = hdlc_connect_error(addr).await;
        assert_error(&e, "the device closed the connection");
    })
    .await;
}

#[tokio::test]
async fn hdlc_endless_garbage_is_bounded() {
    bounded(async {
        let addr = device(|mut s| async move {
            let junk = [0x55u8; 4096];
            while s.write_all(&junk).await.is_ok() {}
        })
        .await;
        let (e, trace, l) = hdlc_connect_error(addr).await;
        assert_error(&e, "no valid reply within 300ms");
        assert_error(&e, "line noise");
        let c = l.hdlc_client().unwrap();
        assert!(c.dropped_bytes() > 4096, "{}", c.dropped_bytes());
        assert!(c.buffered() <= 2 * MAX_FRAME_LEN, "{}", c.buffered());
        // The trace records some of the noise, not all of it.
        assert!(trace.len() < 64, "{} records", trace.len());
        assert_traced(&trace, &[0x55; 16], "line noise");
    })
    .await;
}

#[tokio::test]
async fn hdlc_endless_stream_of_frames_for_someone_else_is_bounded() {
    bounded(async {
        let addr = device(|mut s| async move {
            let other = FrameRepr {
                dest: Address::client(99),
                ..server_frame(
                    Control::Rr {
                        recv_seq: 0,
                        poll_final: true,
                    },
                    vec![],
                )
            }
            .encode();
            let junk = other.repeat(400);
            while s.write_all(&junk).await.is_ok() {}
        })
        .await;
        let (e, trace, _) = hdlc_connect_error(addr).await;
        assert_error(&e, "no valid reply within 300ms");
        assert_error(&e, "not for us");
        assert!(trace.len() < 200, "{} records", trace.len());
    })
    .await;
}

// ---------------------------------------------------------------------------
// HDLC in the middle of an association: a proxy in front of the simulator that
// drops, repeats, corrupts or replaces frames.

/// What the proxy does with one frame.
#[derive(Debug, Clone)]
enum Act {
    Pass,
    Drop,
    Twice,
    Corrupt,
    /// Answer the client with this frame instead of passing the client's frame on.
    Answer(Vec<u8>),
    /// Pass the frame on now, and again after this long (a late repeat).
    Again(Duration),
}

type Script = Arc<dyn Fn(usize, &FrameRepr) -> Act + Send + Sync>;

/// A TCP proxy to the simulator served with HDLC. `to_meter` decides on each
/// frame from the client (numbered from 0), `to_client` on each frame from the meter.
async fn proxy(to_meter: Script, to_client: Script) -> SocketAddr {
    let sim = SimHandle::new(Meter::new(MeterConfig::default(), Quirks::none()));
    device(move |client| async move {
        let meter = sim.open_stream(true);
        let (mut meter_rx, meter_tx) = tokio::io::split(meter);
        let (mut client_rx, client_tx) = client.into_split();
        let client_tx = Arc::new(Mutex::new(client_tx));
        let meter_tx = Arc::new(Mutex::new(meter_tx));
        let ctx = client_tx.clone();
        let down = tokio::spawn(async move {
            let mut r = FrameReader::new();
            let mut i = 0;
            while let Some(f) = r.next(&mut meter_rx).await {
                let bytes = f.encode();
                let out = match to_client(i, &f) {
                    Act::Pass => bytes,
                    Act::Drop => vec![],
                    Act::Twice => [bytes.clone(), bytes].concat(),
                    Act::Corrupt => {
                        let mut b = bytes;
                        let n = b.len();
                        b[n - 2] ^= 0xFF;
                        b
                    }
                    Act::Answer(b) => b,
                    Act::Again(after) => {
                        let (ctx, b) = (ctx.clone(), bytes.clone());
                        tokio::spawn(async move {
                            tokio::time::sleep(after).await;
                            let _ = ctx.lock().await.write_all(&b).await;
                        });
                        bytes
                    }
                };
                i += 1;
                if ctx.lock().await.write_all(&out).await.is_err() {
                    break;
                }
            }
        });
        let mut r = FrameReader::new();
        let mut i = 0;
        while let Some(f) = r.next(&mut client_rx).await {
            let act = to_meter(i, &f);
            i += 1;
            let bytes = f.encode();
            let res = match act {
                Act::Pass => meter_tx.lock().await.write_all(&bytes).await,
                Act::Drop => Ok(()),
                Act::Twice => {
                    meter_tx
                        .lock()
                        .await
                        .write_all(&[bytes.clone(), bytes].concat())
                        .await
                }
                Act::Corrupt => {
                    let mut b = bytes;
                    let n = b.len();
                    b[n - 2] ^= 0xFF;
                    meter_tx.lock().await.write_all(&b).await
                }
                Act::Answer(b) => client_tx.lock().await.write_all(&b).await,
                Act::Again(_) => unimplemented!("repeats toward the meter"),
            };
            if res.is_err() {
                break;
            }
        }
        down.abort();
    })
    .await
}

fn pass() -> Script {
    Arc::new(|_, _| Act::Pass)
}

fn is_i(f: &FrameRepr) -> bool {
    matches!(f.control, Control::I { .. })
}

async fn hdlc_client(addr: SocketAddr) -> Client {
    let mut l = link(format!("hdlc+tcp://{addr}")).await;
    timed(l.connect()).await.unwrap();
    Client::new(l)
}

async fn read_name(client: &mut Client) -> Result<GetOutcome, ClientError> {
    timed(client.get(AttributeDescriptor {
        class_id: 1,
        instance: Obis::LOGICAL_DEVICE_NAME,
        attribute_id: 2,
    }))
    .await
}

fn name() -> GetOutcome {
    GetOutcome::Data(Data::OctetString(b"MMM0000012345678".to_vec()))
}

fn sent_count(trace: &[TrafficRecord], prefix: &str) -> usize {
    trace
        .iter()
        .filter(|r| r.direction == Direction::Sent && r.layer == "hdlc")
        .filter(|r| r.decoded.starts_with(prefix))
        .count()
}

#[tokio::test]
async fn hdlc_frmr_mid_association_then_the_link_recovers() {
    bounded(async {
        let frmr =
            server_frame(Control::Frmr { poll_final: true }, vec![0x10, 0x00, 0x01]).encode();
        let f = frmr.clone();
        // The first I-frame (the AARQ) is rejected; everything after passes.
        let addr = proxy(
            Arc::new(move |i, fr| {
                if i == 1 && is_i(fr) {
                    Act::Answer(f.clone())
                } else {
                    Act::Pass
                }
            }),
            pass(),
        )
        .await;
        let mut client = hdlc_client(addr).await;
        let e = associate(&mut client).await.unwrap_err();
        assert_error(&e, "FRMR");
        assert_traced(&client.link.trace.take(), &frmr, "FRMR");
        // After FRMR the client resets the link; nothing stale is left behind.
        timed(client.link.connect()).await.unwrap();
        associate(&mut client).await.unwrap();
        assert_eq!(read_name(&mut client).await.unwrap(), name());
    })
    .await;
}

#[tokio::test]
async fn hdlc_dm_mid_association_then_the_link_recovers() {
    bounded(async {
        let dm = server_frame(Control::Dm { poll_final: true }, vec![]).encode();
        let d = dm.clone();
        let addr = proxy(
            Arc::new(move |i, fr| {
                if i == 1 && is_i(fr) {
                    Act::Answer(d.clone())
                } else {
                    Act::Pass
                }
            }),
            pass(),
        )
        .await;
        let mut client = hdlc_client(addr).await;
        let e = associate(&mut client).await.unwrap_err();
        assert_error(&e, "DM");
        assert!(!client.link.is_connected());
        assert_traced(&client.link.trace.take(), &dm, "DM");
        // A request on the dropped link fails at once with a clear reason.
        let e = timed(client.link.request(&[0x60, 0x00])).await.unwrap_err();
        assert_error(&e, "not connected");
        timed(client.link.connect()).await.unwrap();
        associate(&mut client).await.unwrap();
        assert_eq!(read_name(&mut client).await.unwrap(), name());
    })
    .await;
}

#[tokio::test]
async fn hdlc_lost_request_is_retransmitted() {
    bounded(async {
        // Frame 1 from the client is the AARQ: lost once.
        let addr = proxy(
            Arc::new(|i, _| if i == 1 { Act::Drop } else { Act::Pass }),
            pass(),
        )
        .await;
        let mut client = hdlc_client(addr).await;
        associate(&mut client).await.unwrap();
        assert_eq!(read_name(&mut client).await.unwrap(), name());
        assert_eq!(sent_count(&client.link.trace.take(), "I(S=0"), 2);
    })
    .await;
}

#[tokio::test]
async fn hdlc_lost_response_is_asked_for_again() {
    bounded(async {
        // Frame 1 from the meter is the AARE: lost once; the client repeats the
        // AARQ and the meter repeats its reply.
        let addr = proxy(
            pass(),
            Arc::new(|i, _| if i == 1 { Act::Drop } else { Act::Pass }),
        )
        .await;
        let mut client = hdlc_client(addr).await;
        associate(&mut client).await.unwrap();
        assert_eq!(read_name(&mut client).await.unwrap(), name());
    })
    .await;
}

#[tokio::test]
async fn hdlc_corrupted_response_is_asked_for_again() {
    bounded(async {
        let addr = proxy(
            pass(),
            Arc::new(|i, _| if i == 1 { Act::Corrupt } else { Act::Pass }),
        )
        .await;
        let mut client = hdlc_client(addr).await;
        associate(&mut client).await.unwrap();
        let trace = client.link.trace.take();
        assert!(
            trace
                .iter()
                .any(|r| r.decoded.contains("frame check sequence wrong")),
            "{trace:#?}"
        );
        assert_eq!(read_name(&mut client).await.unwrap(), name());
    })
    .await;
}

#[tokio::test]
async fn hdlc_repeated_response_does_not_disturb_the_next_request() {
    bounded(async {
        // The AARE arrives twice, the second time late (as after a crossed
        // retransmission), while the GET is under way; the response to the GET
        // is lost once, so the client must still be waiting for it, and send
        // the GET again, after it has read the stale repeat.
        let addr = proxy(
            pass(),
            Arc::new(|i, _| match i {
                1 => Act::Again(Duration::from_millis(50)),
                2 => Act::Drop,
                _ => Act::Pass,
            }),
        )
        .await;
        let mut client = hdlc_client(addr).await;
        associate(&mut client).await.unwrap();
        assert_eq!(read_name(&mut client).await.unwrap(), name());
    })
    .await;
}

#[tokio::test]
async fn hdlc_request_after_a_timeout_is_sent() {
    bounded(async {
        // The meter answers the SNRM, then its replies are all lost.
        let addr = proxy(
            pass(),
            Arc::new(|i, _| if i == 0 { Act::Pass } else { Act::Drop }),
        )
        .await;
        let mut client = hdlc_client(addr).await;
        let e = associate(&mut client).await.unwrap_err();
        assert_error(&e, "no reply within 300ms");
        // The link is not left "busy": the next request goes out and times out too.
        let e = timed(client.link.request(&[0x60, 0x00])).await.unwrap_err();
        assert_error(&e, "no reply within 300ms");
    })
    .await;
}

/// The public client over a proxy that drops meter frame `lost`, with 32-byte
/// information fields (segmentation both ways); returns the trace.
async fn segmented_with_a_loss(lost: usize) -> Vec<TrafficRecord> {
    let addr = proxy(
        pass(),
        Arc::new(move |i, _| if i == lost { Act::Drop } else { Act::Pass }),
    )
    .await;
    let mut p = profile();
    p.hdlc.max_info_rx = 32;
    p.hdlc.max_info_tx = 32;
    let spec: TargetSpec = format!("hdlc+tcp://{addr}").parse().unwrap();
    let mut l = open(&spec, &p, 16, None, None, Instant::now())
        .await
        .unwrap();
    timed(l.connect()).await.unwrap();
    let mut client = Client::new(l);
    associate(&mut client).await.unwrap();
    assert_eq!(read_name(&mut client).await.unwrap(), name());
    client.link.trace.take()
}

#[tokio::test]
async fn hdlc_lost_first_segment_of_a_reply_to_a_segmented_request() {
    bounded(async {
        // The AARQ goes out in two segments (the meter's frame 1 is the RR
        // between them) and the AARE comes back in two (frames 2 and 3).
        // Frame 2 is lost: the client sends its last AARQ segment again and the
        // meter repeats its reply.
        let trace = segmented_with_a_loss(2).await;
        assert_eq!(sent_count(&trace, "I(S=1,R=0"), 2, "{trace:#?}");
        assert_eq!(sent_count(&trace, "RR(R=1"), 1, "{trace:#?}");
    })
    .await;
}

#[tokio::test]
async fn hdlc_lost_segment_is_polled_again() {
    bounded(async {
        // Frame 3, the second AARE segment, is lost: the client's RR asks for it again.
        let trace = segmented_with_a_loss(3).await;
        assert_eq!(sent_count(&trace, "I(S=1,R=0"), 1, "{trace:#?}");
        assert_eq!(sent_count(&trace, "RR(R=1"), 2, "{trace:#?}");
    })
    .await;
}

#[tokio::test]
async fn hdlc_late_repeat_of_an_rr_during_a_segmented_request_is_ignored() {
    bounded(async {
        // The RR between the two AARQ segments (meter frame 1) comes again
        // 50 ms later, while the last segment waits for its answer, which
        // (frame 2) is lost: the stale RR must neither be taken as the answer
        // nor stop the client from sending the last segment again.
        let addr = proxy(
            pass(),
            Arc::new(|i, _| match i {
                1 => Act::Again(Duration::from_millis(50)),
                2 => Act::Drop,
                _ => Act::Pass,
            }),
        )
        .await;
        let mut p = profile();
        p.hdlc.max_info_rx = 32;
        p.hdlc.max_info_tx = 32;
        let spec: TargetSpec = format!("hdlc+tcp://{addr}").parse().unwrap();
        let mut l = open(&spec, &p, 16, None, None, Instant::now())
            .await
            .unwrap();
        timed(l.connect()).await.unwrap();
        let mut client = Client::new(l);
        associate(&mut client).await.unwrap();
        let trace = client.link.trace.take();
        assert_eq!(sent_count(&trace, "I(S=1,R=0"), 2, "{trace:#?}");
        assert!(
            trace
                .iter()
                .any(|r| r.decoded.contains("does not acknowledge")),
            "{trace:#?}"
        );
        assert_eq!(read_name(&mut client).await.unwrap(), name());
    })
    .await;
}

#[tokio::test]
async fn hdlc_response_sent_twice_at_once_is_ignored_the_second_time() {
    bounded(async {
        let addr = proxy(
            pass(),
            Arc::new(|i, _| if i == 1 { Act::Twice } else { Act::Pass }),
        )
        .await;
        let mut client = hdlc_client(addr).await;
        associate(&mut client).await.unwrap();
        assert_eq!(read_name(&mut client).await.unwrap(), name());
        let trace = client.link.trace.take();
        assert!(
            trace
                .iter()
                .any(|r| r.decoded.contains("ignored a repeated I-frame N(S)=0")),
            "{trace:#?}"
        );
    })
    .await;
}
