//! Nonlinear protocol costs: prints bits per element and elements per second for ReLU and
//! truncation at the Cheetah width (l = 37) and for the fused requantize+ReLU from a 16-bit
//! accumulator to a 4-bit activation, with silent OT and with IKNP (both parties in one process
//! over loopback QUIC, sharing the machine's cores), then times the protocol logic alone
//! (ideal OT, in-memory channel) with criterion. Guards the per-element communication targets:
//! ReLU(37) ≤ 13·37 bits and requant 16→4 + ReLU ≤ 13·37/5 bits with silent OT.

use std::time::Instant;

use criterion::{BenchmarkId, Criterion};
use cryprot_net::metrics::new_comm_layer;
use cryprot_net::testing::local_conn;
use heq_runtime::cost::nonlinear::{self as cost, Cost};
use heq_runtime::cost::ot_extension::ot_extension_bytes;
use heq_runtime::nonlinear::{ProtocolError, Role, Session, relu, requant, run_async, trunc};
use heq_runtime::ot::cryprot::CryprotOt;
use heq_runtime::ot::{IdealOt, Side};
use heq_runtime::params::nonlinear::{RequantPlan, RescalePlan};
use heq_runtime::plan::{CarryDepth, OtBackend, Rounding};
use heq_runtime::ring::Ring;
use heq_runtime::transport::{memory, quic};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use tracing::{Instrument, Level};
use tracing_subscriber::layer::SubscriberExt;

type Proto = fn(&mut Session<'_>, &[u64]) -> Result<Vec<u64>, ProtocolError>;

struct Case {
    name: &'static str,
    ring: Ring,
    range: (i128, i128),
    cost: fn(u64) -> Cost,
    run: Proto,
}

const REQUANT_RANGE: (i128, i128) = (-(1 << 14) + 1, (1 << 14) - 513);
const TRUNC_RANGE: (i128, i128) = (-(1 << 36), (1 << 36) - (1 << 11) - 1);
const TRUNC_MSB_RANGE: (i128, i128) = (-(1 << 34), 1 << 34);

fn requant_plan() -> RequantPlan {
    RequantPlan::new(16, REQUANT_RANGE, 10, (0, 15), 5, Rounding::NoTies).expect("valid plan")
}

fn requant_even_plan() -> RequantPlan {
    RequantPlan::new(16, REQUANT_RANGE, 10, (0, 15), 5, Rounding::HalfEven).expect("valid plan")
}

fn trunc_plan() -> RescalePlan {
    RescalePlan::new(37, TRUNC_RANGE, 12, 37, Rounding::NoTies).expect("valid plan")
}

fn trunc_msb_plan() -> RescalePlan {
    RescalePlan::new(37, TRUNC_MSB_RANGE, 12, 37, Rounding::NoTies).expect("valid plan")
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "relu l=37",
            ring: Ring::new(37),
            range: (-(1 << 36), (1 << 36) - 1),
            cost: |n| cost::relu(n, 37, CarryDepth::Ripple),
            run: |s, x| relu::relu(s, Ring::new(37), x, CarryDepth::Ripple),
        },
        Case {
            name: "relu l=37 carry tree",
            ring: Ring::new(37),
            range: (-(1 << 36), (1 << 36) - 1),
            cost: |n| cost::relu(n, 37, CarryDepth::Tree),
            run: |s, x| relu::relu(s, Ring::new(37), x, CarryDepth::Tree),
        },
        Case {
            name: "trunc l=37 k=12 general",
            ring: Ring::new(37),
            range: TRUNC_RANGE,
            cost: |n| trunc_plan().cost(n),
            run: |s, x| trunc::rescale(s, &trunc_plan(), x),
        },
        Case {
            name: "trunc l=37 k=12 known MSB",
            ring: Ring::new(37),
            range: TRUNC_MSB_RANGE,
            cost: |n| trunc_msb_plan().cost(n),
            run: |s, x| trunc::rescale(s, &trunc_msb_plan(), x),
        },
        Case {
            name: "requant 16->4 + relu NoTies",
            ring: Ring::new(16),
            range: REQUANT_RANGE,
            cost: |n| requant_plan().cost(n),
            run: |s, x| requant::requant(s, &requant_plan(), x),
        },
        Case {
            name: "requant 16->4 + relu HalfEven",
            ring: Ring::new(16),
            range: REQUANT_RANGE,
            cost: |n| requant_even_plan().cost(n),
            run: |s, x| requant::requant(s, &requant_even_plan(), x),
        },
    ]
}

fn shares(case: &Case, n: usize) -> (Vec<u64>, Vec<u64>) {
    let mut rng = ChaCha12Rng::seed_from_u64(1);
    let vals: Vec<u64> = (0..n)
        .map(|_| {
            case.ring
                .reduce(rng.random_range(case.range.0..=case.range.1) as u64)
        })
        .collect();
    let mask: Vec<u64> = (0..n).map(|_| case.ring.reduce(rng.random())).collect();
    case.ring.share_with_mask(&vals, &mask)
}

/// One two-party run over loopback QUIC; returns (protocol bytes, OT-extension bytes, seconds).
async fn network_run(
    case: &Case,
    backend: OtBackend,
    n: usize,
    data: &cryprot_net::metrics::CommLayerData,
) -> (u64, u64, f64) {
    let (mut sc, mut cc) = local_conn().await.expect("loopback QUIC");
    let mut so = CryprotOt::new(backend, Side::Server, &mut sc);
    let mut co = CryprotOt::new(backend, Side::Client, &mut cc);
    let (ss, cs) = tokio::try_join!(quic::frame_channel(&mut sc), quic::frame_channel(&mut cc))
        .expect("streams");
    let c = (case.cost)(n as u64);
    let (xs, xc) = shares(case, n);
    let f = case.run;
    data.reset();
    let start = Instant::now();
    let s_span =
        tracing::span!(target: "cryprot_metrics", Level::TRACE, "server", phase = "server");
    let c_span =
        tracing::span!(target: "cryprot_metrics", Level::TRACE, "client", phase = "client");
    let (server, client) = tokio::try_join!(
        run_async(Role::Server, &mut so, ss, &c, move |s| f(s, &xs)).instrument(s_span),
        run_async(Role::Client, &mut co, cs, &c, move |s| f(s, &xc)).instrument(c_span),
    )
    .expect("protocol run");
    let secs = start.elapsed().as_secs_f64();
    let protocol = server.1.counters().bytes_sent + client.1.counters().bytes_sent;
    assert_eq!(
        protocol,
        c.total_bytes(),
        "protocol bytes equal the cost function"
    );
    let comm = data.comm_data();
    // The protocol frames travel on a cryprot-net stream opened before the spans, so the
    // metrics inside the spans are the OT extension alone.
    let ot: u64 = ["server", "client"]
        .iter()
        .map(|p| comm.get(p).map_or(0, |d| d.write.bytes_with_sub_comm))
        .sum();
    let (s2c, c2s) = (
        ot_extension_bytes(backend, c.server_rots, true),
        ot_extension_bytes(backend, c.client_rots, true),
    );
    assert_eq!(
        ot,
        s2c.0 + s2c.1 + c2s.0 + c2s.1,
        "OT bytes equal the model"
    );
    (protocol, ot, secs)
}

fn print_table(n: usize) {
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(8)
        .build_global();
    let (layer, data) = new_comm_layer();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
        .expect("one subscriber");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "\nnonlinear protocols, n = {n} elements, both parties on this machine (loopback QUIC)"
    );
    println!(
        "{:<30} {:<7} {:>10} {:>10} {:>10} {:>14} {:>7} {:>8} {:>12}",
        "protocol",
        "OT",
        "proto b/el",
        "OT b/el",
        "total b/el",
        "total@2^24OT",
        "rounds",
        "ROT/el",
        "elements/s"
    );
    for case in cases() {
        for backend in [OtBackend::Silent, OtBackend::Iknp] {
            let (p, o, secs) = rt.block_on(network_run(&case, backend, n, &data));
            let c = (case.cost)(n as u64);
            let per = |b: u64| (b * 8) as f64 / n as f64;
            // The same protocol with its OTs drawn from 2^24-OT batches per direction (the exact
            // model of the backend's traffic, amortized): what a whole-network OT pass costs.
            let big = 1u64 << 24;
            let (bs, br) = ot_extension_bytes(backend, big, false);
            let per_ot_bits = ((bs + br) * 8) as f64 / big as f64;
            let amortized =
                per(p) + per_ot_bits * (c.server_rots + c.client_rots) as f64 / n as f64;
            println!(
                "{:<30} {:<7} {:>10.1} {:>10.1} {:>10.1} {:>14.1} {:>7} {:>8.1} {:>12.0}",
                case.name,
                format!("{backend:?}"),
                per(p),
                per(o),
                per(p + o),
                amortized,
                c.rounds,
                (c.server_rots + c.client_rots) as f64 / n as f64,
                n as f64 / secs
            );
        }
    }
    println!(
        "targets (silent OT): relu l=37 <= {} bits/el; requant 16->4 + relu <= {:.1} bits/el",
        13 * 37,
        13.0 * 37.0 / 5.0
    );
    println!("trunc rows round half up (plan Rounding::NoTies)");
    println!(
        "b/el = bits per element, both directions, payload on the streams (QUIC framing excluded)\n"
    );
}

fn bench_logic(c: &mut Criterion) {
    let n = 1 << 14;
    let mut group = c.benchmark_group("nonlinear_ideal_ot");
    group.sample_size(10);
    for case in cases() {
        let cost = (case.cost)(n as u64);
        let (xs, xc) = shares(&case, n);
        group.bench_with_input(
            BenchmarkId::new(case.name, format!("n={n}")),
            &case,
            |b, case| {
                b.iter(|| {
                    let (mut so, mut co) = IdealOt::pair(3);
                    let mut sp = so.pads_now(cost.server_rots as usize, cost.client_rots as usize);
                    let mut cp = co.pads_now(cost.client_rots as usize, cost.server_rots as usize);
                    let (mut se, mut ce) = memory::pipe();
                    let (f, xc) = (case.run, xc.clone());
                    let client = std::thread::spawn(move || {
                        f(&mut Session::new(Role::Client, &mut cp, &mut ce), &xc).expect("client")
                    });
                    let out = (case.run)(&mut Session::new(Role::Server, &mut sp, &mut se), &xs)
                        .expect("server");
                    (out, client.join().expect("client thread"))
                })
            },
        );
    }
    group.finish();
}

fn main() {
    let n = std::env::var("HEQ_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 17);
    print_table(n);
    let mut c = Criterion::default().configure_from_args();
    bench_logic(&mut c);
    c.final_summary();
}
