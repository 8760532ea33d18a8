//! Two-party runs of the nonlinear protocols over real transports: loopback QUIC with silent OT,
//! loopback TCP (protocol frames) with IKNP, and an in-memory duplex with 10^5-element vectors.
//! Every run reconstructs the output and compares it with a plaintext formula, and compares the
//! bytes on the channel with the cost functions.

use cryprot_net::testing::local_conn;
use heq_runtime::cost::nonlinear::{self as cost, Cost};
use heq_runtime::nonlinear::{Role, Session, relu, requant, run_async, run_with_pads, trunc};
use heq_runtime::ot::cryprot::CryprotOt;
use heq_runtime::ot::{IdealOt, OtSource, Side};
use heq_runtime::params::nonlinear::{RequantPlan, RescalePlan};
use heq_runtime::plan::{CarryDepth, OtBackend, Rounding};
use heq_runtime::ring::Ring;
use heq_runtime::transport::{FrameChannel, quic};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use tokio::io::{AsyncRead, AsyncWrite};

fn rayon_pool() {
    // cryprot-ot's PPRF receiver blocks a rayon worker while waiting for the peer.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(8)
        .build_global();
}

fn random_values(range: (i128, i128), n: usize, seed: u64) -> Vec<i128> {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let mut v: Vec<i128> = [range.0, range.1, 0, -1, 1]
        .into_iter()
        .filter(|x| (range.0..=range.1).contains(x))
        .collect();
    v.extend((v.len()..n).map(|_| rng.random_range(range.0..=range.1)));
    v
}

/// `x / 2^k` rounded to nearest, ties to even (the plan semantics).
fn round_even(x: i128, k: u32) -> i128 {
    let floor = x >> k;
    let rest = x - (floor << k);
    let half = 1i128 << (k - 1);
    match rest.cmp(&half) {
        std::cmp::Ordering::Less => floor,
        std::cmp::Ordering::Equal => floor + (floor & 1),
        std::cmp::Ordering::Greater => floor + 1,
    }
}

/// Puts ties `q·2^k + 2^(k−1)` for `q` in `−8..8` at indices 5..21 (inside every range used
/// here).
fn add_ties(v: &mut [i128], k: u32) {
    for (j, slot) in v.iter_mut().skip(5).take(16).enumerate() {
        *slot = ((j as i128 - 8) << k) + (1 << (k - 1));
    }
}

fn share(ring: Ring, v: &[i128], seed: u64) -> (Vec<u64>, Vec<u64>) {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let vals: Vec<u64> = v.iter().map(|&x| ring.reduce(x as u64)).collect();
    let mask: Vec<u64> = vals.iter().map(|_| ring.reduce(rng.random())).collect();
    ring.share_with_mask(&vals, &mask)
}

fn open(ring: Ring, a: &[u64], b: &[u64]) -> Vec<i128> {
    ring.add_vec(a, b)
        .into_iter()
        .map(|x| i128::from(ring.to_signed(x)))
        .collect()
}

/// Runs `f` as both parties over the given streams and OT sources; checks the payload bytes
/// against `cost`.
async fn both<S, O, F>(
    streams: (S, S),
    ots: (&mut O, &mut O),
    cost: Cost,
    inputs: (Vec<u64>, Vec<u64>),
    f: F,
) -> anyhow::Result<(Vec<u64>, Vec<u64>)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    O: OtSource,
    F: Fn(&mut Session<'_>, &[u64]) -> Result<Vec<u64>, heq_runtime::nonlinear::ProtocolError>
        + Send
        + Sync
        + Clone
        + 'static,
{
    let (xs, xc) = inputs;
    let (fs, fc) = (f.clone(), f);
    let (server, client) = tokio::try_join!(
        run_async(
            Role::Server,
            ots.0,
            FrameChannel::new(streams.0),
            &cost,
            move |s| fs(s, &xs)
        ),
        run_async(
            Role::Client,
            ots.1,
            FrameChannel::new(streams.1),
            &cost,
            move |s| fc(s, &xc)
        ),
    )?;
    assert_eq!(
        server.1.counters().bytes_sent,
        cost.server_bytes,
        "server payload bytes"
    );
    assert_eq!(
        client.1.counters().bytes_sent,
        cost.client_bytes,
        "client payload bytes"
    );
    assert_eq!(server.1.counters().frames_sent, cost.rounds, "rounds");
    Ok((server.0, client.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relu_37_over_quic_with_silent_ot() -> anyhow::Result<()> {
    rayon_pool();
    let (mut sc, mut cc) = local_conn().await?;
    let mut so = CryprotOt::new(OtBackend::Silent, Side::Server, &mut sc);
    let mut co = CryprotOt::new(OtBackend::Silent, Side::Client, &mut cc);
    let (ss, cs) = tokio::try_join!(quic::frame_channel(&mut sc), quic::frame_channel(&mut cc))?;
    let ring = Ring::new(37);
    let n = 10_000;
    let v = random_values((-(1 << 36), (1 << 36) - 1), n, 1);
    let (a, b) = both(
        (ss.into_inner(), cs.into_inner()),
        (&mut so, &mut co),
        cost::relu(n as u64, 37, CarryDepth::Ripple),
        share(ring, &v, 2),
        move |s, x| relu::relu(s, ring, x, CarryDepth::Ripple),
    )
    .await?;
    let got = open(ring, &a, &b);
    for i in 0..n {
        assert_eq!(got[i], v[i].max(0));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requant_over_tcp_with_iknp() -> anyhow::Result<()> {
    rayon_pool();
    let (mut sc, mut cc) = local_conn().await?;
    let mut so = CryprotOt::new(OtBackend::Iknp, Side::Server, &mut sc);
    let mut co = CryprotOt::new(OtBackend::Iknp, Side::Client, &mut cc);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (accepted, connected) =
        tokio::join!(listener.accept(), tokio::net::TcpStream::connect(addr));
    let range = (-(1i128 << 14) + 1, (1 << 14) - 513);
    let plan = RequantPlan::new(16, range, 10, (0, 15), 5, Rounding::HalfEven)?;
    let n = 10_000;
    let mut v = random_values(range, n, 3);
    add_ties(&mut v, 10);
    let (a, b) = both(
        (accepted?.0, connected?),
        (&mut so, &mut co),
        plan.cost(n as u64),
        share(Ring::new(16), &v, 4),
        move |s, x| requant::requant(s, &plan, x),
    )
    .await?;
    let got = open(Ring::new(5), &a, &b);
    for i in 0..n {
        assert_eq!(got[i], round_even(v[i], 10).clamp(0, 15));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_vectors_in_memory() -> anyhow::Result<()> {
    let n = 100_000;
    let (mut so, mut co) = IdealOt::pair(5);
    // Truncation at the Cheetah width, general (full-range) variant.
    let range = (-(1i128 << 36), (1 << 36) - (1 << 11) - 1);
    let plan = RescalePlan::new(37, range, 12, 37, Rounding::HalfEven)?;
    let mut v = random_values(range, n, 6);
    add_ties(&mut v, 12);
    let (a, b) = both(
        tokio::io::duplex(1 << 16),
        (&mut so, &mut co),
        plan.cost(n as u64),
        share(Ring::new(37), &v, 7),
        move |s, x| trunc::rescale(s, &plan, x),
    )
    .await?;
    let got = open(Ring::new(37), &a, &b);
    for i in 0..n {
        assert_eq!(got[i], round_even(v[i], 12));
    }
    // Requantization 45-bit accumulator to 8 bits with both clamp sides.
    let range = (-(1i128 << 42), 1i128 << 42);
    let plan = RequantPlan::new(45, range, 36, (-50, 50), 8, Rounding::HalfEven)?;
    let mut v = random_values(range, n, 8);
    add_ties(&mut v, 36);
    let (a, b) = both(
        tokio::io::duplex(1 << 16),
        (&mut so, &mut co),
        plan.cost(n as u64),
        share(Ring::new(45), &v, 9),
        move |s, x| requant::requant(s, &plan, x),
    )
    .await?;
    let got = open(Ring::new(8), &a, &b);
    for i in 0..n {
        assert_eq!(got[i], round_even(v[i], 36).clamp(-50, 50));
    }
    Ok(())
}

/// One silent-OT batch per direction serves two consecutive layers (ReLU at l = 37, then the
/// 16 → 4 requantization) on one QUIC stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ot_batch_serves_two_layers() -> anyhow::Result<()> {
    rayon_pool();
    let (mut sc, mut cc) = local_conn().await?;
    let mut so = CryprotOt::new(OtBackend::Silent, Side::Server, &mut sc);
    let mut co = CryprotOt::new(OtBackend::Silent, Side::Client, &mut cc);
    let (ss, cs) = tokio::try_join!(quic::frame_channel(&mut sc), quic::frame_channel(&mut cc))?;
    let n = 5000;
    let ring = Ring::new(37);
    let relu_cost = cost::relu(n as u64, 37, CarryDepth::Ripple);
    let range = (-(1i128 << 14) + 1, (1 << 14) - 513);
    let plan = RequantPlan::new(16, range, 10, (0, 15), 5, Rounding::NoTies)?;
    let rq_cost = plan.cost(n as u64);
    let total = relu_cost + rq_cost;
    let (sp, cp) = tokio::try_join!(
        so.pads(total.server_rots as usize, total.client_rots as usize),
        co.pads(total.client_rots as usize, total.server_rots as usize)
    )?;
    let v1 = random_values((-(1 << 36), (1 << 36) - 1), n, 11);
    let (x1s, x1c) = share(ring, &v1, 12);
    let v2 = random_values(range, n, 13);
    let (x2s, x2c) = share(Ring::new(16), &v2, 14);
    // Both layers on one batch of pads, one after the other; each party reports what is left.
    let layers = move |s: &mut Session<'_>, x1: &[u64], x2: &[u64]| {
        let y1 = relu::relu(s, ring, x1, CarryDepth::Ripple)?;
        let y2 = requant::requant(s, &plan, x2)?;
        Ok((y1, y2, s.pads().remaining()))
    };
    let ((a, ss), (b, cs)) = tokio::try_join!(
        run_with_pads(
            Role::Server,
            sp,
            FrameChannel::new(ss.into_inner()),
            move |s| layers(s, &x1s, &x2s)
        ),
        run_with_pads(
            Role::Client,
            cp,
            FrameChannel::new(cs.into_inner()),
            move |s| layers(s, &x1c, &x2c)
        ),
    )?;
    let got = open(ring, &a.0, &b.0);
    assert!((0..n).all(|i| got[i] == v1[i].max(0)));
    let got = open(Ring::new(5), &a.1, &b.1);
    assert!((0..n).all(|i| got[i] == ((v2[i] + 512) >> 10).clamp(0, 15)));
    assert_eq!(ss.counters().bytes_sent, total.server_bytes);
    assert_eq!(cs.counters().bytes_sent, total.client_bytes);
    assert_eq!((a.2, b.2), ((0, 0), (0, 0)));
    Ok(())
}
