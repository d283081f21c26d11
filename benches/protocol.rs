//! Codec and security throughput, in memory, on one core.
//!
//! * `glo_get_request/*`: the client builds a GetRequest for the clock
//!   (class 8, 0-0:1.0.0.255, attribute 2), encodes it and protects it
//!   (authenticated and encrypted, Green Book keys); the server decodes the
//!   glo-get-request and unprotects it (tag, counter check, inner decode).
//! * `glo_get_response/*`: the same for the response, a date-time octet-string.
//! * `glo_get_pair`: all four steps, one element = one protected request/response pair.
//! * `hdlc/*`: encoding a 128-byte I-frame and deframing it.
//!
//! Run with `cargo bench --bench protocol`; figures in docs/fuzz-and-bench.md.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use idis_harness::profile::{Ciphering, Protection};
use idis_harness::security::{Key, ReplayGuard, SystemTitle};
use idis_harness::session::cipher::CipherContext;
use idis_harness::wire::apdu::{Apdu, AttributeDescriptor, GetDataResult, GetRequest, GetResponse};
use idis_harness::wire::axdr::Data;
use idis_harness::wire::hdlc::{Address, Control, DeframeEvent, Deframer, FrameRepr};
use idis_harness::wire::obis::Obis;

/// 2026-11-21 19:27:14, Saturday, deviation 0, status 0.
const DATE_TIME: [u8; 12] = [0x07, 0xEA, 11, 21, 6, 19, 27, 14, 0, 0, 0, 0];

fn contexts() -> (CipherContext, CipherContext) {
    let ctx = |own, peer| {
        let mut c = CipherContext::new(
            own,
            Key::EXAMPLE_EK,
            Key::EXAMPLE_AK,
            Protection::AuthenticatedEncrypted,
            Ciphering::ServiceSpecific,
            1,
        );
        c.peer_title = Some(peer);
        c
    };
    (
        ctx(SystemTitle::EXAMPLE_CLIENT, SystemTitle::EXAMPLE_SERVER),
        ctx(SystemTitle::EXAMPLE_SERVER, SystemTitle::EXAMPLE_CLIENT),
    )
}

/// Client: build, encode and protect the clock GET.
fn client_request(client: &mut CipherContext, invoke_id: u8) -> Vec<u8> {
    let req = Apdu::GetRequest(GetRequest::Normal {
        invoke_id,
        attribute: AttributeDescriptor::new(8, Obis::CLOCK, 2),
        access: None,
    });
    client.protect(&req.encode()).expect("protect request")
}

/// Server: decode the glo-get-request and unprotect it; returns the invoke id.
fn server_request(server: &mut CipherContext, wire: &[u8]) -> u8 {
    let apdu = Apdu::decode(wire).expect("decode glo-get-request");
    let u = server.unprotect_owned(apdu).expect("unprotect request");
    match u.apdu {
        Apdu::GetRequest(GetRequest::Normal { invoke_id, .. }) => invoke_id,
        other => panic!("expected a get-request, got {other}"),
    }
}

/// Server: build, encode and protect the response.
fn server_response(server: &mut CipherContext, invoke_id: u8) -> Vec<u8> {
    let resp = Apdu::GetResponse(GetResponse::Normal {
        invoke_id,
        result: GetDataResult::Data(Data::OctetString(DATE_TIME.to_vec())),
    });
    server.protect(&resp.encode()).expect("protect response")
}

/// Client: decode the glo-get-response and unprotect it; returns the data length.
fn client_response(client: &mut CipherContext, wire: &[u8]) -> usize {
    let apdu = Apdu::decode(wire).expect("decode glo-get-response");
    let u = client.unprotect_owned(apdu).expect("unprotect response");
    match u.apdu {
        Apdu::GetResponse(GetResponse::Normal {
            result: GetDataResult::Data(Data::OctetString(v)),
            ..
        }) => v.len(),
        other => panic!("expected a date-time, got {other}"),
    }
}

fn bench_get(c: &mut Criterion) {
    let mut g = c.benchmark_group("glo_get_request");
    g.throughput(Throughput::Elements(1));
    let (mut client, mut server) = contexts();
    g.bench_function("client_encode_protect", |b| {
        b.iter(|| client_request(&mut client, black_box(0xC1)))
    });
    let wire = client_request(&mut client, 0xC1);
    g.bench_function("server_unprotect_decode", |b| {
        b.iter(|| {
            // The same request each time: forget the counter so it is not a replay.
            server.peer_guard = ReplayGuard::new();
            server_request(&mut server, black_box(&wire))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("glo_get_response");
    g.throughput(Throughput::Elements(1));
    let (mut client, mut server) = contexts();
    g.bench_function("server_encode_protect", |b| {
        b.iter(|| server_response(&mut server, black_box(0xC1)))
    });
    let wire = server_response(&mut server, 0xC1);
    g.bench_function("client_unprotect_decode", |b| {
        b.iter(|| {
            client.peer_guard = ReplayGuard::new();
            client_response(&mut client, black_box(&wire))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("glo_get_pair");
    g.throughput(Throughput::Elements(1));
    let (mut client, mut server) = contexts();
    g.bench_function("request_and_response", |b| {
        b.iter(|| {
            let req = client_request(&mut client, 0xC1);
            let id = server_request(&mut server, &req);
            let resp = server_response(&mut server, id);
            client_response(&mut client, &resp)
        })
    });
    g.finish();
}

fn bench_hdlc(c: &mut Criterion) {
    let frame = FrameRepr {
        segmented: false,
        dest: Address::server(1, 17),
        src: Address::client(16),
        control: Control::I {
            send_seq: 3,
            recv_seq: 5,
            poll_final: true,
        },
        info: (0..128u8).collect(),
    };
    let wire = frame.encode();
    let mut g = c.benchmark_group("hdlc");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_i_frame_128", |b| {
        b.iter(|| black_box(&frame).encode())
    });
    g.bench_function("deframe_i_frame_128", |b| {
        let mut d = Deframer::new();
        b.iter(|| {
            d.push(black_box(&wire));
            match d.next_event() {
                Some(DeframeEvent::Frame(f)) => f.info.len(),
                other => panic!("expected the frame, got {other:?}"),
            }
        })
    });
    g.bench_function("encode_and_deframe_i_frame_128", |b| {
        let mut d = Deframer::new();
        b.iter(|| {
            d.push(&black_box(&frame).encode());
            match d.next_event() {
                Some(DeframeEvent::Frame(f)) => f.info.len(),
                other => panic!("expected the frame, got {other:?}"),
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench_get, bench_hdlc);
criterion_main!(benches);
