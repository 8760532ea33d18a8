//! `heq-run calibrate`: measures this machine's [`ComputeProfile`].
//!
//! - HE, per context of [`CONTEXTS`]: the mean time per ciphertext of each step of the linear
//!   protocol, one thread (encrypt, absorb input + share, ct × pt, re-randomise + flood, switch,
//!   decrypt), and of one key switch of a response pack;
//! - nonlinear protocol logic: a requantization (16-bit accumulator → 4-bit ReLU output) of
//!   [`NONLINEAR_ELEMENTS`] elements between both parties in this process with ideal OT, per ROT
//!   consumed;
//! - OT extension: batches of [`OT_BATCH_CHOICES`] ROTs by silent OT and [`OT_COUNT`] by IKNP
//!   over a loopback QUIC connection ([`crate::transport::net::loopback`]), per ROT, after the
//!   base OTs (paid once per session).

use crate::cost::compute::{ComputeProfile, HeTimes, OtRate};
use crate::cost::plan::{DEFAULT_OT_BATCH_ROTS, OT_BATCH_CHOICES};
use crate::he::{Accumulator, GaloisKeys, InputCt, Kernel, Params, PublicKey, SecretKey, pack};
use crate::nonlinear::{Role, Session, requant};
use crate::ot::cryprot::CryprotOt;
use crate::ot::{IdealOt, OtSource, Side};
use crate::params::he::pack_exponents;
use crate::params::nonlinear::RequantPlan;
use crate::plan::{HeParams, OtBackend, Rounding};
use crate::ring::Ring;
use crate::transport::memory::pipe;
use crate::transport::net::loopback;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::time::Instant;

/// HE contexts measured: `(N, prime bits, plaintext bits)`.
pub const CONTEXTS: [(usize, &[u32], u32); 3] = [
    (4096, &[60, 49], 37),
    (8192, &[60, 49], 37),
    (8192, &[60, 60, 60], 37),
];

/// Elements of the timed nonlinear protocol run.
pub const NONLINEAR_ELEMENTS: usize = 1 << 14;

/// ROTs of the timed IKNP run.
pub const OT_COUNT: usize = 1 << 20;

/// Least ROTs timed per batch size: small batches are repeated up to it.
const OT_TIMED_ROTS: u64 = 1 << 22;

/// Least batches timed per batch size; the median batch counts (the machine may be shared).
const OT_MIN_BATCHES: u64 = 3;

/// Why calibration failed.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    /// An HE step failed.
    #[error("HE: {0}")]
    He(#[from] crate::he::HeError),
    /// The nonlinear protocol failed.
    #[error("nonlinear protocol: {0}")]
    Protocol(String),
    /// The loopback connection or the OT extension failed.
    #[error("OT extension: {0}")]
    Ot(String),
}

fn ms_since(t: Instant, n: usize) -> f64 {
    t.elapsed().as_secs_f64() * 1e3 / n.max(1) as f64
}

/// Mean per-ciphertext times of one HE context over `iters` ciphertexts.
///
/// # Errors
/// [`CalibrateError::He`] for invalid parameters (the [`CONTEXTS`] are valid).
pub fn measure_he(
    he: &HeParams,
    iters: usize,
    rng: &mut ChaCha20Rng,
) -> Result<HeTimes, CalibrateError> {
    let (n, l) = (he.degree, he.plain_bits);
    let p = Params::new(he)?;
    let budget = p.budget(l)?;
    let sk = SecretKey::generate(&p, rng)?;
    let pk = PublicKey::new(&p, &sk.public_key(rng)?)?;
    let m: Vec<u64> = (0..n).map(|_| rng.next_u64() & ((1 << l) - 1)).collect();
    let w: Vec<i64> = (0..n).map(|_| rng.random_range(-8..8)).collect();
    let kernel = Kernel::new(&p, &w)?;
    // A dense response: a quarter of the coefficients revealed.
    let positions: Vec<usize> = (0..n / 4).collect();
    sk.encrypt(&m, rng)?;
    let t = Instant::now();
    let cts = (0..iters)
        .map(|_| sk.encrypt(&m, rng))
        .collect::<Result<Vec<_>, _>>()?;
    let encrypt_ms = ms_since(t, iters);
    let t = Instant::now();
    let inputs = cts
        .iter()
        .map(|ct| InputCt::new(&p, ct, Some(&m)))
        .collect::<Result<Vec<_>, _>>()?;
    let absorb_ms = ms_since(t, iters);
    let t = Instant::now();
    let accs = inputs
        .iter()
        .map(|i| Accumulator::sum_products(&p, [(i, &kernel)].into_iter()))
        .collect::<Result<Vec<_>, _>>()?;
    let product_ms = ms_since(t, iters);
    let t = Instant::now();
    let sanitized = accs
        .into_iter()
        .map(|a| a.sanitize(&p, &pk, &[], &positions, &budget, rng))
        .collect::<Result<Vec<_>, _>>()?;
    let sanitize_ms = ms_since(t, iters);
    let t = Instant::now();
    let switched = sanitized
        .into_iter()
        .map(|s| s.switch(&p))
        .collect::<Result<Vec<_>, _>>()?;
    let switch_only = t.elapsed();
    // One key switch: a pack of two responses at stride 2.
    let galois = GaloisKeys::new(&p, &sk.galois_keys(&pack_exponents(n, 2, 2), rng)?)?;
    let pairs: Vec<_> = (0..iters)
        .map(|i| {
            vec![
                Some(switched[i].clone()),
                Some(switched[(i + 1) % iters].clone()),
            ]
        })
        .collect();
    let t = Instant::now();
    for pair in pairs {
        pack(&p, &galois, pair, 2)?;
    }
    let key_switch_ms = ms_since(t, iters);
    let t = Instant::now();
    let responses = switched
        .into_iter()
        .map(|s| s.into_response(&p, &positions, &budget))
        .collect::<Result<Vec<_>, _>>()?;
    let switch_ms = (switch_only + t.elapsed()).as_secs_f64() * 1e3 / iters.max(1) as f64;
    let t = Instant::now();
    for r in &responses {
        sk.decrypt(r, &positions, &budget, l)?;
    }
    let decrypt_ms = ms_since(t, iters);
    Ok(HeTimes {
        degree: n,
        moduli_bits: he.moduli_bits.clone(),
        encrypt_ms,
        absorb_ms,
        product_ms,
        sanitize_ms,
        switch_ms,
        decrypt_ms,
        key_switch_ms,
    })
}

/// Nanoseconds of nonlinear protocol logic per ROT consumed: a requantization of `n` elements,
/// both parties on two threads of this process, ideal OT, in-memory channel.
///
/// # Errors
/// [`CalibrateError::Protocol`] if the protocol fails (it does not on valid shares).
pub fn measure_protocol(n: usize, rng: &mut ChaCha20Rng) -> Result<f64, CalibrateError> {
    let range = (-(1i128 << 14) + 1, (1i128 << 14) - 513);
    let plan = RequantPlan::new(16, range, 10, (0, 15), 5, Rounding::NoTies)
        .map_err(|e| CalibrateError::Protocol(e.to_string()))?;
    let ring = Ring::new(16);
    let values: Vec<u64> = (0..n)
        .map(|_| ring.reduce(rng.random_range(range.0..=range.1) as u64))
        .collect();
    let mask: Vec<u64> = (0..n).map(|_| ring.reduce(rng.random())).collect();
    let (xs, xc) = ring.share_with_mask(&values, &mask);
    let cost = plan.cost(n as u64);
    let (mut so, mut co) = IdealOt::pair(rng.random());
    let mut sp = so.pads_now(cost.server_rots as usize, cost.client_rots as usize);
    let mut cp = co.pads_now(cost.client_rots as usize, cost.server_rots as usize);
    let (mut se, mut ce) = pipe();
    let t = Instant::now();
    let (server, client) = std::thread::scope(|scope| {
        let plan = &plan;
        let client = scope.spawn(move || {
            requant::requant(&mut Session::new(Role::Client, &mut cp, &mut ce), plan, &xc)
        });
        let server = requant::requant(&mut Session::new(Role::Server, &mut sp, &mut se), plan, &xs);
        (server, client.join())
    });
    let secs = t.elapsed().as_secs_f64();
    let err = |e: String| CalibrateError::Protocol(e);
    server.map_err(|e| err(e.to_string()))?;
    client
        .map_err(|_| err("the client thread panicked".into()))?
        .map_err(|e| err(e.to_string()))?;
    let rots = (cost.server_rots + cost.client_rots).max(1);
    Ok(secs * 1e9 / rots as f64)
}

/// Nanoseconds per ROT by `backend` (server as sender) over loopback QUIC, per batch size of
/// `batches`: the median of at least [`OT_MIN_BATCHES`] batches and [`OT_TIMED_ROTS`] ROTs,
/// after one small batch that pays the base OTs.
///
/// # Errors
/// [`CalibrateError::Ot`] if the connection or the extension fails.
pub fn measure_ot(backend: OtBackend, batches: &[u64]) -> Result<Vec<OtRate>, CalibrateError> {
    let err = |e: String| CalibrateError::Ot(e);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| err(e.to_string()))?;
    rt.block_on(async {
        let mut connection = loopback()
            .await
            .map_err(|e| err(format!("loopback connection: {e}")))?;
        let mut so = CryprotOt::new(backend, Side::Server, &mut connection.server.conn);
        let mut co = CryprotOt::new(backend, Side::Client, &mut connection.client.conn);
        tokio::try_join!(so.pads(128, 0), co.pads(0, 128)).map_err(|e| err(e.to_string()))?;
        let mut rates = Vec::with_capacity(batches.len());
        for &n in batches {
            let repeats = OT_TIMED_ROTS.div_ceil(n.max(1)).max(OT_MIN_BATCHES);
            let mut times = Vec::with_capacity(repeats as usize);
            for _ in 0..repeats {
                let t = Instant::now();
                let count = n as usize;
                tokio::try_join!(so.pads(count, 0), co.pads(0, count))
                    .map_err(|e| err(e.to_string()))?;
                times.push(t.elapsed().as_secs_f64());
            }
            times.sort_by(f64::total_cmp);
            rates.push(OtRate {
                batch_rots: n,
                ns_per_rot: times[times.len() / 2] * 1e9 / n.max(1) as f64,
            });
        }
        Ok(rates)
    })
}

/// Measures the whole profile; `iters` ciphertexts per HE step and context.
///
/// # Errors
/// As the measurements.
pub fn calibrate(iters: usize, seed: u64) -> Result<ComputeProfile, CalibrateError> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let he = CONTEXTS
        .iter()
        .map(|&(degree, moduli, plain_bits)| {
            let he = HeParams {
                degree,
                moduli_bits: moduli.to_vec(),
                plain_bits,
            };
            measure_he(&he, iters, &mut rng)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let silent = measure_ot(OtBackend::Silent, &OT_BATCH_CHOICES)?;
    Ok(ComputeProfile {
        machine: machine(),
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        he,
        protocol_ns_per_rot: measure_protocol(NONLINEAR_ELEMENTS, &mut rng)?,
        silent_ns_per_rot: silent
            .iter()
            .find(|r| r.batch_rots == DEFAULT_OT_BATCH_ROTS)
            .map_or(0.0, |r| r.ns_per_rot),
        silent_ns_per_rot_by_batch: silent,
        iknp_ns_per_rot: measure_ot(OtBackend::Iknp, &[OT_COUNT as u64])?[0].ns_per_rot,
    })
}

/// The CPU model name (Linux), else the target architecture.
fn machine() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurements_are_positive() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let (degree, moduli, plain_bits) = CONTEXTS[0];
        let he = HeParams {
            degree,
            moduli_bits: moduli.to_vec(),
            plain_bits,
        };
        let t = measure_he(&he, 2, &mut rng).unwrap();
        assert_eq!(t.degree, 4096);
        assert!(t.encrypt_ms > 0.0 && t.product_ms > 0.0 && t.decrypt_ms > 0.0);
        assert!(t.key_switch_ms > 0.0);
        assert!(measure_protocol(1 << 10, &mut rng).unwrap() > 0.0);
    }

    /// The HE times of every context, printed: `cargo test --workspace --locked --lib
    /// print_he_times -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing only, asserts nothing"]
    fn print_he_times() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        for (degree, moduli, plain_bits) in CONTEXTS {
            let he = HeParams {
                degree,
                moduli_bits: moduli.to_vec(),
                plain_bits,
            };
            eprintln!("{:?}", measure_he(&he, 20, &mut rng).unwrap());
        }
    }
}
