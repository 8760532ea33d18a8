//! Random-OT throughput of the OT extension: both parties in one process over loopback QUIC
//! (`cryprot_net::testing::local_conn`), one batch of `n` ROTs with the server as sender, for
//! silent OT and IKNP at several batch sizes. Each party has one of the machine's cores to
//! itself when the machine has two, so the throughput criterion reports (elements per
//! second) is random OTs per second per party on one core. Prints the OT-extension bytes per
//! ROT beside it, the other side of the batch-size trade-off (`cost::ot_extension`).
//!
//! `cargo bench --bench ot` (criterion's options after `--`, e.g. `-- silent`).

use criterion::{BenchmarkId, Criterion, Throughput};
use cryprot_net::testing::local_conn;
use heq_runtime::cost::ot_extension::ot_extension_bytes;
use heq_runtime::ot::cryprot::CryprotOt;
use heq_runtime::ot::{OtSource, Side};
use heq_runtime::plan::OtBackend;

/// Batch sizes measured: those the compiler chooses from (`cost::plan::OT_BATCH_CHOICES`) and
/// 2^24 for comparison.
const BATCHES: [u32; 5] = [16, 18, 20, 22, 24];

/// One batch of `n` ROTs, server as sender, on fresh connections and OT sources per call of
/// `iters` batches (the base OTs are paid once per source, as in a session).
fn batches(
    rt: &tokio::runtime::Runtime,
    backend: OtBackend,
    n: usize,
    iters: u64,
) -> std::time::Duration {
    rt.block_on(async {
        let (mut sc, mut cc) = local_conn().await.expect("loopback QUIC");
        let mut server = CryprotOt::new(backend, Side::Server, &mut sc);
        let mut client = CryprotOt::new(backend, Side::Client, &mut cc);
        // Base OTs and connection warm-up outside the timing.
        tokio::try_join!(server.pads(128, 0), client.pads(0, 128)).expect("warm-up batch");
        let start = std::time::Instant::now();
        for _ in 0..iters {
            let (sent, received) =
                tokio::try_join!(server.pads(n, 0), client.pads(0, n)).expect("batch");
            assert_eq!((sent.remaining().0, received.remaining().1), (n, n));
        }
        start.elapsed()
    })
}

fn main() {
    // cryprot-ot's silent receiver blocks a rayon worker while it waits for the sender: with
    // both parties in one process the pool needs more threads than cores.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build_global();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!("OT-extension bytes per ROT (both directions of one batch, after the base OTs):");
    for log in BATCHES {
        let n = 1u64 << log;
        let bytes = |backend| {
            let (a, b) = ot_extension_bytes(backend, n, false);
            (a + b) as f64 / n as f64
        };
        println!(
            "  2^{log}: silent {:.3}, IKNP {:.3}",
            bytes(OtBackend::Silent),
            bytes(OtBackend::Iknp)
        );
    }
    let mut c = Criterion::default().sample_size(10).configure_from_args();
    let mut group = c.benchmark_group("random OTs per party");
    for (name, backend) in [("silent", OtBackend::Silent), ("iknp", OtBackend::Iknp)] {
        for log in BATCHES {
            let n = 1usize << log;
            group.throughput(Throughput::Elements(n as u64));
            group.bench_function(BenchmarkId::new(name, format!("2^{log}")), |b| {
                b.iter_custom(|iters| batches(&rt, backend, n, iters));
            });
        }
    }
    group.finish();
    c.final_summary();
}
