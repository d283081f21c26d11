//! Protected GET round trips per second on one association, over the TCP
//! wrapper on loopback, against the simulator served in-process.
//!
//! The server binds 127.0.0.1:0 and runs `sim::server::serve_wrapper` on each
//! accepted connection (with TCP_NODELAY, as the client side sets it). The
//! client opens a `Link` with `transport::open::open` (target
//! `tcp://127.0.0.1:PORT`), associates the management client with
//! `client::Client` (HLS-GMAC, authenticated and encrypted), then each
//! iteration is one `client.get(clock attribute 2)`: protect, send, the meter
//! deciphers and answers, receive, decipher, decode.
//!
//! For comparison, `tcp_ping_pong_64` is a bare 64-byte ping-pong over loopback
//! TCP on the same runtime: the floor the protocol stack adds to.
//!
//! Client and server share one current-thread tokio runtime (one core), which
//! avoids cross-thread wake-ups; `multi_thread` repeats the GET with the server
//! on a second worker. `untraced` switches the link's trace off
//! (`Trace::set_enabled(false)`): the trace records every APDU as hex and text,
//! which a conformance run wants and a load run does not.
//!
//! Run with `cargo bench --bench roundtrip`; figures in docs/fuzz-and-bench.md.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use idis_harness::client::{AssociateOutcome, Client, GetOutcome};
use idis_harness::profile::DeviceProfile;
use idis_harness::session::association::AssociationRequest;
use idis_harness::sim::server::{SharedMeter, serve_wrapper};
use idis_harness::sim::{Meter, MeterConfig, Quirks};
use idis_harness::transport::open::open;
use idis_harness::transport::target::TargetSpec;
use idis_harness::wire::apdu::AttributeDescriptor;
use idis_harness::wire::obis::Obis;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// Binds loopback and serves the simulated meter on every connection.
async fn start_meter() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("local address").port();
    let meter = SharedMeter::new(Meter::new(MeterConfig::default(), Quirks::none()));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve_wrapper(meter.clone(), stream));
        }
    });
    port
}

/// Opens a wrapper link and associates the management client (HLS-GMAC, AE).
async fn associated_client(port: u16) -> Client {
    let target: TargetSpec = format!("tcp://127.0.0.1:{port}")
        .parse()
        .expect("target syntax");
    let profile = DeviceProfile::default();
    let link = open(&target, &profile, 1, None, None, Instant::now())
        .await
        .expect("open link");
    let mut client = Client::new(link);
    let management = profile.client(1).expect("management client").clone();
    let req = AssociationRequest::from_profile(&management, b"K56iVagYP6wRJ21F".to_vec(), 1);
    match client.associate(req, false).await.expect("associate") {
        AssociateOutcome::Associated => {}
        AssociateOutcome::Refused(r) => panic!("association refused: {r:?}"),
    }
    assert!(client.assoc.as_ref().is_some_and(|a| a.authenticated));
    client
}

async fn get_clock(client: &mut Client) {
    let clock = AttributeDescriptor::new(8, Obis::CLOCK, 2);
    match client.get(clock).await.expect("get") {
        GetOutcome::Data(_) => {}
        other => panic!("expected the clock, got {other:?}"),
    }
}

/// A loopback echo server for `len`-byte messages.
async fn start_echo(len: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("local address").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; len];
                while s.read_exact(&mut buf).await.is_ok() {
                    if s.write_all(&buf).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

fn bench_get(c: &mut Criterion, name: &str, rt: &Runtime, traced: bool) {
    let mut client = rt.block_on(async {
        let port = start_meter().await;
        associated_client(port).await
    });
    client.link.trace.set_enabled(traced);
    let mut g = c.benchmark_group("roundtrip");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let took = rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    get_clock(&mut client).await;
                }
                t.elapsed()
            });
            // Keep the trace from growing across iterations (not timed).
            client.link.trace.take();
            took
        })
    });
    g.finish();
}

fn bench_roundtrip(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    bench_get(c, "protected_get_clock", &rt, true);
    bench_get(c, "protected_get_clock_untraced", &rt, false);

    // The bare TCP floor: 64 bytes there and back.
    let mut stream = rt.block_on(async {
        let port = start_echo(64).await;
        let s = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        s.set_nodelay(true).expect("nodelay");
        s
    });
    let mut g = c.benchmark_group("roundtrip");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("tcp_ping_pong_64", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let msg = [0x5Au8; 64];
                let mut back = [0u8; 64];
                let t = Instant::now();
                for _ in 0..iters {
                    stream.write_all(&msg).await.expect("write");
                    stream.read_exact(&mut back).await.expect("read");
                }
                t.elapsed()
            })
        })
    });
    g.finish();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    bench_get(c, "protected_get_clock_multi_thread", &rt, true);
}

criterion_group!(benches, bench_roundtrip);
criterion_main!(benches);
