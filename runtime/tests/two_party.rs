//! Whole plans between the two parties (in-memory channel, ideal OT): the reconstructed output
//! equals the reference executor's exactly, and every layer's measured traffic equals the
//! prediction of `cost::plan`.

mod common;

use common::every_op_runnable;
use std::collections::BTreeMap;

use heq_runtime::cost::plan::{
    CHUNK_BATCHES, RECEIVER_PAD_BYTES, SENDER_PAD_BYTES, Traffic, pad_memory_bytes,
};
use heq_runtime::ot::{IdealOt, OtError, OtPads, PadSupply};
use heq_runtime::party::{
    DEFAULT_KERNEL_MEMORY, KernelStats, PartyError, Prepared, Report, ServerLayers, run_client,
    run_server,
};
use heq_runtime::plan::{CarryDepth, Encoding, LayerId, Op, PackDim, Packing, Plan};
use heq_runtime::reference;
use heq_runtime::reference::testutil::max_pool_plans;
use heq_runtime::schedule::StepKind;
use heq_runtime::transport::memory::pipe;
use heq_runtime::transport::{Counters, Exchange, TransportError};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Runs `plan` on `input` with both parties; returns the output and both reports.
fn run_both(plan: &Plan, input: &[i64], seed: u64) -> (Vec<i64>, Report, Report) {
    let prepared = Prepared::new(&plan.public).expect("schedulable");
    run_prepared(plan, &prepared, input, seed)
}

/// As [`run_both`] with a given schedule and OT batching.
fn run_prepared(
    plan: &Plan,
    prepared: &Prepared,
    input: &[i64],
    seed: u64,
) -> (Vec<i64>, Report, Report) {
    let layers = server_layers(plan, prepared, DEFAULT_KERNEL_MEMORY);
    let run = run_recorded(plan, prepared, &layers, input, seed);
    (run.output, run.server, run.client)
}

/// The server's layers of `plan` with `kernel_memory` bytes for kernels.
fn server_layers(plan: &Plan, prepared: &Prepared, kernel_memory: usize) -> ServerLayers {
    let weights = plan.weights.as_ref().expect("server plan");
    ServerLayers::new(&plan.public, prepared, weights, kernel_memory).expect("server layers")
}

/// An ideal OT supply that records the most pads its party's buffer could hold after a batch.
struct Recording {
    ot: IdealOt,
    /// Largest buffer capacity seen, (sender, receiver) ROTs.
    peak: (usize, usize),
}

impl PadSupply for Recording {
    fn batch(&mut self, send: usize, receive: usize, pads: &mut OtPads) -> Result<(), OtError> {
        self.ot.batch(send, receive, pads)?;
        let (s, r) = pads.capacity();
        self.peak = (self.peak.0.max(s), self.peak.1.max(r));
        Ok(())
    }
}

/// A channel end that keeps a copy of every message it sends.
struct Transcript<E> {
    inner: E,
    sent: Vec<Vec<u8>>,
}

impl<E: Exchange> Exchange for Transcript<E> {
    fn exchange(&mut self, out: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        self.sent.push(out.clone());
        self.inner.exchange(out)
    }

    fn counters(&self) -> Counters {
        self.inner.counters()
    }
}

/// One run of both parties, recorded.
struct Recorded {
    /// The client's output.
    output: Vec<i64>,
    /// The server's report.
    server: Report,
    /// The client's report.
    client: Report,
    /// Each party's (server, client) largest pad buffer.
    peaks: [(usize, usize); 2],
    /// Every message the server sent.
    server_sent: Vec<Vec<u8>>,
}

/// As [`run_prepared`] with the server's `layers`, recorded.
fn run_recorded(
    plan: &Plan,
    prepared: &Prepared,
    layers: &ServerLayers,
    input: &[i64],
    seed: u64,
) -> Recorded {
    let (so, co) = IdealOt::pair(seed);
    let (mut so, mut co) = (
        Recording {
            ot: so,
            peak: (0, 0),
        },
        Recording {
            ot: co,
            peak: (0, 0),
        },
    );
    let (se, mut ce) = pipe();
    let mut se = Transcript {
        inner: se,
        sent: Vec::new(),
    };
    let (output, server, client) = std::thread::scope(|scope| {
        let server = scope.spawn(|| {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            run_server(&plan.public, layers, prepared, &mut se, &mut so, &mut rng).expect("server")
        });
        let mut rng = ChaCha20Rng::seed_from_u64(seed + 1);
        let (y, client) =
            run_client(&plan.public, input, prepared, &mut ce, &mut co, &mut rng).expect("client");
        (y, server.join().expect("server thread"), client)
    });
    Recorded {
        output,
        server,
        client,
        peaks: [so.peak, co.peak],
        server_sent: se.sent,
    }
}

/// Both reports agree with each other and with the prediction on every row.
fn check_reports(server: &Report, client: &Report) {
    for (s, c) in server.rows.iter().zip(&client.rows) {
        assert_eq!(s.measured, s.predicted, "server {} {:?}", s.name, s.layer);
        assert_eq!(c.measured, c.predicted, "client {} {:?}", c.name, c.layer);
    }
    assert_eq!(server.rows.len(), client.rows.len());
}

#[test]
fn every_op_plan_is_bit_exact_with_predicted_traffic() {
    let plan = every_op_runnable();
    assert_bit_exact(&plan, "every op");
}

/// Every layer that computes carries at [`CarryDepth::Tree`]: the same outputs, the (other)
/// predicted traffic measured, in fewer rounds.
#[test]
fn every_op_plan_with_carry_trees_is_bit_exact_with_predicted_traffic() {
    let mut plan = every_op_runnable();
    let ripple = Prepared::new(&plan.public).expect("schedulable").cost;
    for l in &mut plan.public.layers {
        if l.op.computes_carries() {
            l.carry = CarryDepth::Tree;
        }
    }
    assert_bit_exact(&plan, "every op, trees");
    let tree = Prepared::new(&plan.public).expect("schedulable").cost;
    assert!(tree.channel().rounds < ripple.channel().rounds);
    for (label, mut plan) in max_pool_plans() {
        for l in &mut plan.public.layers {
            if l.op.computes_carries() {
                l.carry = CarryDepth::Tree;
            }
        }
        for input in [
            vec![8; 16],
            vec![-8; 16],
            (0..16).map(|i| (i * 7 % 17) - 8).collect(),
        ] {
            let want = reference::run(&plan, &input).expect("reference");
            let (got, server, client) = run_both(&plan, &input, 7);
            assert_eq!(got, want, "{label} trees, input {input:?}");
            check_reports(&server, &client);
        }
    }
}

/// Three inputs (a ramp and both extremes) through both parties: output == reference, measured
/// traffic == predicted.
fn assert_bit_exact(plan: &Plan, label: &str) {
    for (seed, input) in [
        (
            1u64,
            (0..32).map(|i| (i * 5 % 17) - 8).collect::<Vec<i64>>(),
        ),
        (2, vec![8; 32]),
        (3, vec![-8; 32]),
    ] {
        let want = reference::run(plan, &input).expect("reference");
        let (got, server, client) = run_both(plan, &input, seed);
        assert_eq!(got, want, "{label} seed {seed}");
        check_reports(&server, &client);
    }
}

/// The plans around max pools (unsigned and signed ranges, a range away from zero; pools
/// extending into a matmul's ring, an add's combination ring, the output) on inputs that put
/// each window's maximum at every position, and on both extremes: output == reference,
/// measured traffic == predicted, every ROT used.
#[test]
fn max_pools_are_bit_exact_with_predicted_traffic() {
    for (label, plan) in max_pool_plans() {
        let mut inputs: Vec<Vec<i64>> = vec![vec![8; 16], vec![-8; 16]];
        for shift in 0..4 {
            inputs.push((0..16).map(|i| ((i + shift) * 7 % 17) - 8).collect());
        }
        for (seed, input) in inputs.iter().enumerate() {
            let want = reference::run(&plan, input).expect("reference");
            let (got, server, client) = run_both(&plan, input, seed as u64);
            assert_eq!(got, want, "{label}, input {input:?}");
            check_reports(&server, &client);
        }
    }
}

/// With small OT batches and chunk bounds every layer whose ROTs exceed a chunk runs its
/// nonlinear protocols in several chunks: the output is unchanged, every layer's measured
/// traffic equals the (chunked) prediction, each party's pad buffers never hold more than the
/// batches of one chunk, and every ROT is used (the run fails otherwise). The chunk bound is
/// the plan's own: the default 16 batches, or one batch, or 4.
#[test]
fn layers_larger_than_a_chunk_run_in_chunks() {
    let input: Vec<i64> = (0..32).map(|i| (i * 5 % 17) - 8).collect();
    let plans = [
        ("every op", every_op_runnable()),
        ("packed", every_op_packed(2, PackDim::OutChannels)),
    ];
    for (label, plan) in plans {
        let want = reference::run(&plan, &input).expect("reference");
        let (_, whole, _) = run_both(&plan, &input, 9);
        let mut chunk_rounds = Vec::new();
        for (batch, chunk, at_least) in [(1, 16, 5), (4, 64, 3), (16, 256, 1), (1, 4, 5), (4, 4, 5)]
        {
            let mut plan = plan.clone();
            plan.public.protocol.ot_batch_rots = batch;
            plan.public.protocol.chunk_rots = chunk;
            let at = format!("{label} batch {batch} chunk {chunk}");
            let prepared = Prepared::new(&plan.public).expect("schedulable");
            let cost = &prepared.cost;
            let chunked = cost
                .layers
                .iter()
                .filter(|l| l.stages.iter().any(|s| s.chunks() > 1))
                .count();
            assert!(chunked >= at_least, "{at}: {chunked}");
            assert!(
                cost.ot_batches
                    .iter()
                    .all(|b| b.server_rots <= batch && b.client_rots <= batch),
                "{at}"
            );
            // The most batches produced at one chunk's start: all of one chunk's, at most
            // chunk / batch (CHUNK_BATCHES by default) where every unit fits a chunk.
            let mut at_chunk = BTreeMap::new();
            for b in &cost.ot_batches {
                *at_chunk.entry(b.first_chunk).or_insert(0u64) += 1;
            }
            let most = at_chunk.values().copied().max().unwrap_or(0);
            if chunk == 256 {
                assert_eq!(chunk / batch, CHUNK_BATCHES);
                assert!(most <= CHUNK_BATCHES, "{at}: {most}");
            }
            let layers = server_layers(&plan, &prepared, DEFAULT_KERNEL_MEMORY);
            let Recorded {
                output: got,
                server,
                client,
                peaks,
                ..
            } = run_recorded(&plan, &prepared, &layers, &input, 9);
            assert_eq!(got, want, "{at}");
            check_reports(&server, &client);
            for (s, c) in peaks {
                assert!(s.max(c) as u64 <= most * batch, "{at}: {peaks:?}");
            }
            // The driver's pads (the producer's next group aside) within the predicted pads.
            let pads = |(send, receive): (usize, usize)| {
                send as u64 * SENDER_PAD_BYTES + receive as u64 * RECEIVER_PAD_BYTES
            };
            let (server_pads, client_pads) = cost.pad_bytes();
            assert!(
                pads(peaks[0]) <= server_pads,
                "{at}: {peaks:?} {server_pads}"
            );
            assert!(
                pads(peaks[1]) <= client_pads,
                "{at}: {peaks:?} {client_pads}"
            );
            if chunk == 256 {
                // Every unit fits a chunk: within the chunk bound's pads.
                assert!(
                    server_pads.max(client_pads) <= pad_memory_bytes(chunk),
                    "{at}"
                );
            }
            // A chunked layer repeats its protocols' rounds; the others are unchanged.
            let rows = server.rows.iter().zip(&whole.rows).skip(1);
            for ((row, base), layer) in rows.zip(&cost.layers) {
                if layer.stages.iter().all(|s| s.chunks() == 1) {
                    assert_eq!(row.measured, base.measured, "{at} {:?}", row.layer);
                } else {
                    assert!(
                        row.measured.rounds > base.measured.rounds,
                        "{at} {:?}",
                        row.layer
                    );
                }
            }
            chunk_rounds.push((chunk, cost.channel().rounds));
        }
        // Larger chunks, fewer rounds: the chunk bound alone sets them, not the batch size.
        let rounds = |c: u64| chunk_rounds.iter().find(|r| r.0 == c).map(|r| r.1);
        let fours: Vec<_> = chunk_rounds.iter().filter(|r| r.0 == 4).collect();
        assert_eq!(
            fours[0], fours[1],
            "{label}: the batch size changes no rounds"
        );
        assert!(rounds(4) > rounds(16), "{label}: {chunk_rounds:?}");
        assert!(rounds(16) > rounds(64), "{label}: {chunk_rounds:?}");
        assert!(rounds(64) >= rounds(256), "{label}: {chunk_rounds:?}");
        assert!(whole.rows.iter().map(|r| r.measured.rounds).sum::<u64>() <= rounds(256).unwrap());
    }
}

/// [`every_op_runnable`] with HEQuant packing on every linear layer: `factor` fields of the
/// accumulator plus a guard bit along `dim`, rings and plaintext `factor·s` bits; the
/// convolution on 3×3 tiles so that spatial packing has several tiles to pack.
fn every_op_packed(factor: u32, dim: PackDim) -> Plan {
    let mut plan = every_op_runnable();
    for layer in &mut plan.public.layers {
        let (p, acc) = match &mut layer.op {
            Op::Conv(l) => {
                (l.protocol.tile.h, l.protocol.tile.w) = (3, 3);
                (&mut l.protocol, l.acc_bits)
            }
            Op::MatMul(l) => (&mut l.protocol, l.acc_bits),
            Op::Affine(l) => (&mut l.protocol, l.acc_bits),
            _ => continue,
        };
        p.packing = Packing {
            factor,
            field_bits: acc + 1,
            dim,
        };
        p.he.plain_bits = factor * (acc + 1);
        (p.in_ring_bits, p.out_ring_bits) = (p.he.plain_bits, p.he.plain_bits);
    }
    plan
}

#[test]
fn packed_layers_are_bit_exact_with_predicted_traffic() {
    for (factor, dim) in [
        (2, PackDim::Spatial),
        (3, PackDim::Spatial),
        (2, PackDim::OutChannels),
    ] {
        let plan = every_op_packed(factor, dim);
        let prepared = Prepared::new(&plan.public).expect("schedulable");
        let unpacks = prepared
            .schedule
            .steps
            .iter()
            .filter(|s| {
                matches!(
                    s.kind,
                    StepKind::Linear {
                        unpack: Some(_),
                        ..
                    }
                )
            })
            .count();
        assert_eq!(unpacks, 3, "every linear layer unpacks");
        assert_bit_exact(&plan, &format!("b {factor} {dim:?}"));
    }
}

/// [`every_op_runnable`] with the channel-interleaved encoding on every linear layer: one
/// filter per ciphertext, power-of-two channel tiles (wider than the layer) and `members`
/// responses packed per ciphertext (capped by the channel tile), in 24-bit rings so that the
/// packing's key-switching noise fits.
fn every_op_interleaved(members: usize) -> Plan {
    let mut plan = every_op_runnable();
    for layer in &mut plan.public.layers {
        let p = match &mut layer.op {
            Op::Conv(l) => {
                l.protocol.tile.c = 4;
                &mut l.protocol
            }
            Op::MatMul(l) => {
                l.protocol.tile.c = l.shape.inner.next_power_of_two();
                &mut l.protocol
            }
            Op::Affine(l) => {
                l.protocol.tile.c = l.shape.channels.next_power_of_two();
                &mut l.protocol
            }
            _ => continue,
        };
        p.tile.m = 1;
        p.encoding = Encoding::Interleaved {
            members: members.min(p.tile.c),
        };
        p.he.plain_bits = 24;
        (p.in_ring_bits, p.out_ring_bits) = (24, 24);
    }
    plan
}

#[test]
fn packed_responses_are_bit_exact_with_predicted_traffic() {
    for members in [1, 2, 4] {
        let plan = every_op_interleaved(members);
        let prepared = Prepared::new(&plan.public).expect("schedulable");
        let galois = &prepared.schedule.keys[0].galois;
        assert_eq!(galois.is_empty(), members == 1, "{galois:?}");
        assert_bit_exact(&plan, &format!("interleaved, {members} per response"));
    }
}

#[test]
fn predicted_traffic_of_every_op_plan() {
    let plan = every_op_runnable();
    let prepared = Prepared::new(&plan.public).expect("schedulable");
    let t = |bytes_up, bytes_down, rounds| Traffic {
        bytes_up,
        bytes_down,
        rounds,
    };
    let rows: Vec<Traffic> = prepared.cost.layers.iter().map(|l| l.traffic).collect();
    // Linear layers: one query and one response (2 rounds) plus their requantization; concat
    // and reshape are local; the convolution extends its result straight into the average
    // pool's combination ring (the max pool reduces it to its 5-bit comparison ring), and both
    // pools extend theirs straight into the add's, so the average pool and the add only
    // requantize.
    assert_eq!(
        rows,
        vec![
            t(56028, 52728, 22),
            t(40, 41, 13),
            t(27, 44, 12),
            t(6, 46, 5),
            t(55849, 26202, 8),
            t(0, 0, 0),
            t(0, 0, 0),
            t(55840, 26127, 2),
            t(20, 31, 16),
        ]
    );
    assert_eq!(prepared.cost.setup, t(55840, 0, 1));
    // Three outputs in the output's 8-bit ring.
    assert_eq!(prepared.cost.reveal, t(0, 3, 1));
}

#[test]
fn wrong_input_length_is_an_error() {
    let plan = every_op_runnable();
    let prepared = Prepared::new(&plan.public).expect("schedulable");
    let (_, mut ce) = pipe();
    let (_, mut co) = IdealOt::pair(1);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let err = run_client(&plan.public, &[0; 5], &prepared, &mut ce, &mut co, &mut rng)
        .expect_err("short input");
    assert!(
        matches!(
            err,
            PartyError::InputLength {
                expected: 32,
                actual: 5
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_short_public_key_message_is_rejected() {
    let plan = every_op_runnable();
    let prepared = Prepared::new(&plan.public).expect("schedulable");
    let (mut se, mut ce) = pipe();
    let peer = std::thread::spawn(move || {
        use heq_runtime::transport::Exchange;
        let _ = ce.exchange(vec![0; 10]);
    });
    let (mut so, _) = IdealOt::pair(1);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let layers = server_layers(&plan, &prepared, DEFAULT_KERNEL_MEMORY);
    let err = run_server(&plan.public, &layers, &prepared, &mut se, &mut so, &mut rng)
        .expect_err("tampered key");
    assert!(
        matches!(
            err,
            PartyError::MessageLength {
                what: "client keys",
                expected: 55840,
                actual: 10
            }
        ),
        "{err:?}"
    );
    peer.join().expect("peer");
}

/// The linear layers of `prepared`, in plan order.
fn linear_layers(prepared: &Prepared) -> Vec<LayerId> {
    prepared
        .schedule
        .steps
        .iter()
        .filter(|s| matches!(s.kind, StepKind::Linear { .. }))
        .map(|s| s.layer)
        .collect()
}

/// The kernel memory budget: 0 prepares no kernel, enough for all prepares all, and in between
/// the layers are prepared in plan order while their kernels fit what is left. Every budget
/// gives the same run bit for bit (same seeds: the same server messages, the same output).
#[test]
fn the_kernel_budget_prepares_in_plan_order_and_never_changes_a_run() {
    let plan = every_op_runnable();
    let prepared = Prepared::new(&plan.public).expect("schedulable");
    let input: Vec<i64> = (0..32).map(|i| (i * 5 % 17) - 8).collect();
    let want = reference::run(&plan, &input).expect("reference");
    let linear = linear_layers(&prepared);
    let all = server_layers(&plan, &prepared, usize::MAX);
    let bytes: Vec<usize> = linear
        .iter()
        .map(|&id| all.get(id).expect("linear layer").kernel_bytes())
        .collect();
    // Kernels of 64 KiB (`8·N` bytes per prime): two for the convolution, one for the matmul,
    // one for the affine layer.
    assert_eq!(bytes, vec![131072, 65536, 65536]);
    let total: usize = bytes.iter().sum();
    let baseline = run_recorded(&plan, &prepared, &all, &input, 5);
    assert_eq!(baseline.output, want);
    for (budget, expected) in [
        (0, [false, false, false]),
        (bytes[1] - 1, [false, false, false]),
        // The first layer does not fit, the second does; the rest is too small for the third.
        (bytes[0] - 1, [false, true, false]),
        (bytes[0], [true, false, false]),
        (total - 1, [true, true, false]),
        (total, [true, true, true]),
        (usize::MAX, [true, true, true]),
    ] {
        let layers = server_layers(&plan, &prepared, budget);
        let got: Vec<bool> = linear
            .iter()
            .map(|&id| layers.get(id).expect("linear layer").kernels_prepared())
            .collect();
        assert_eq!(got, expected, "budget {budget}");
        let prepared_bytes = bytes
            .iter()
            .zip(expected)
            .filter(|(_, p)| *p)
            .map(|(b, _)| b);
        let KernelStats {
            layers: n,
            prepared_layers,
            prepared_bytes: got_bytes,
            total_bytes,
            ..
        } = layers.stats();
        assert_eq!(
            (n, prepared_layers, got_bytes, total_bytes),
            (
                3,
                expected.iter().filter(|p| **p).count(),
                prepared_bytes.sum(),
                total
            ),
            "budget {budget}"
        );
        let run = run_recorded(&plan, &prepared, &layers, &input, 5);
        assert_eq!(run.output, want, "budget {budget}");
        assert!(run.server_sent == baseline.server_sent, "budget {budget}");
        check_reports(&run.server, &run.client);
    }
}

/// One preparation serves several inferences: different inputs through the same server
/// layers, each output equal to the reference's, with and without prepared kernels.
#[test]
fn prepared_layers_serve_several_inferences() {
    let plan = every_op_runnable();
    let prepared = Prepared::new(&plan.public).expect("schedulable");
    for budget in [0, usize::MAX] {
        let layers = server_layers(&plan, &prepared, budget);
        for (seed, input) in [
            (
                1u64,
                (0..32).map(|i| (i * 5 % 17) - 8).collect::<Vec<i64>>(),
            ),
            (2, vec![8; 32]),
            (3, vec![-8; 32]),
        ] {
            let want = reference::run(&plan, &input).expect("reference");
            let run = run_recorded(&plan, &prepared, &layers, &input, seed);
            assert_eq!(run.output, want, "budget {budget} seed {seed}");
            check_reports(&run.server, &run.client);
        }
    }
}
