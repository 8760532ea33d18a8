//! Compute-time model: how long the parties compute, per operation, on a given machine.
//!
//! A [`ComputeProfile`] holds per-ciphertext HE times for a few measured HE contexts (client:
//! encrypt, decrypt; server: absorb the input and its share, ciphertext × plaintext product,
//! re-randomise + flood, modulus switch) and per-ROT times of the nonlinear layers (the
//! protocol logic, and the OT extension producing the ROTs, per backend). `heq-run calibrate`
//! measures them on this machine and writes the JSON form; [`ComputeProfile::builtin`] is the
//! profile shipped in `runtime/profiles/default.json`, made the same way.
//!
//! Predicted time of a layer = [`ComputeProfile::layer_ms`] (compute) + bytes / bandwidth +
//! rounds · RTT ([`Network::transfer_ms`]). A layer's compute is the longer of its driver's
//! work (HE, then the protocol logic per ROT) and the OT extension producing its ROTs, which
//! runs on its own thread ahead of the driver.
//!
//! Building the server's kernels (the weight polynomials in NTT form) is not priced: the
//! server prepares them once, before its first client ([`crate::party::ServerLayers`]), so
//! they are no part of an inference. A plan does not know the server's `--kernel-memory`: a
//! layer whose kernels do not fit builds them during every inference, server time that the
//! prediction leaves out.

use crate::cost::linear::LinearCost;
use crate::cost::nonlinear::Cost;
use crate::cost::plan::PlanCost;
use crate::params::conv::{ConvGeometry, affine_as_conv, matmul_as_conv};
use crate::plan::{HeParams, LinearProtocol, Op, OtBackend, PublicPlan};
use serde::{Deserialize, Serialize};

/// Per-ciphertext times of one HE context, in milliseconds (one thread).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeTimes {
    /// Ring degree `N`.
    pub degree: usize,
    /// Prime sizes in bits.
    pub moduli_bits: Vec<u32>,
    /// Client: one seeded symmetric encryption.
    pub encrypt_ms: f64,
    /// Server: absorb one input ciphertext and its share (NTT).
    pub absorb_ms: f64,
    /// Server: one ciphertext × plaintext product.
    pub product_ms: f64,
    /// Server: re-randomise and flood one response.
    pub sanitize_ms: f64,
    /// Server: modulus switch, mask and drop of one response.
    pub switch_ms: f64,
    /// Client: decrypt one response.
    pub decrypt_ms: f64,
    /// Server: one key switch of a response pack (a pack of `n` responses takes `n − 1`), at
    /// `q0` only. Zero in profiles measured before packing.
    #[serde(default)]
    pub key_switch_ms: f64,
}

impl HeTimes {
    /// These times scaled by `factor` (another context of `factor` times the work); the key
    /// switch, which runs at `q0` alone, by the ratio of the degrees.
    fn scaled(&self, he: &HeParams, factor: f64) -> HeTimes {
        HeTimes {
            degree: he.degree,
            moduli_bits: he.moduli_bits.clone(),
            encrypt_ms: self.encrypt_ms * factor,
            absorb_ms: self.absorb_ms * factor,
            product_ms: self.product_ms * factor,
            sanitize_ms: self.sanitize_ms * factor,
            switch_ms: self.switch_ms * factor,
            decrypt_ms: self.decrypt_ms * factor,
            key_switch_ms: self.key_switch_ms * he.degree as f64 / self.degree as f64,
        }
    }

    /// Work units of a context: `N` times the number of primes.
    fn work(degree: usize, primes: usize) -> f64 {
        (degree * primes.max(1)) as f64
    }
}

/// HE operation counts of one linear layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeOps {
    /// Request ciphertexts (encrypted by the client, absorbed by the server).
    pub requests: usize,
    /// Ciphertext × plaintext products.
    pub products: usize,
    /// Output sums (sanitized and switched by the server).
    pub sums: usize,
    /// Key switches of the response packing (server).
    pub key_switches: usize,
    /// Response ciphertexts (decrypted by the client).
    pub responses: usize,
}

impl HeOps {
    /// The counts of a linear layer with exact HE cost `cost` and `products` products.
    pub fn new(cost: &LinearCost, products: usize) -> Self {
        HeOps {
            requests: cost.cts_up,
            products,
            sums: cost.sums,
            key_switches: cost.key_switches,
            responses: cost.cts_down,
        }
    }

    /// The counts of a plan's linear layer `op` (`None` for other layers or an invalid tile).
    pub fn of(op: &Op, cost: &LinearCost) -> Option<Self> {
        let products = |shape, proto: &LinearProtocol| {
            ConvGeometry::new(shape, proto)
                .ok()
                .map(|g| g.n_c * g.n_sg * g.n_mg)
        };
        let n = match op {
            Op::Conv(l) => products(&l.shape, &l.protocol)?,
            Op::MatMul(l) => products(&matmul_as_conv(&l.shape), &l.protocol)?,
            Op::Affine(l) => products(&affine_as_conv(&l.shape), &l.protocol)?,
            _ => return None,
        };
        Some(HeOps::new(cost, n))
    }
}

/// Per-operation compute times of one machine (`heq-run calibrate`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComputeProfile {
    /// Where the profile was measured (host name, CPU), for the record.
    pub machine: String,
    /// Threads available when it was measured.
    pub threads: usize,
    /// Measured HE contexts (at least one).
    pub he: Vec<HeTimes>,
    /// Nonlinear protocol logic (both parties), nanoseconds per ROT consumed.
    pub protocol_ns_per_rot: f64,
    /// Silent OT extension (both parties), nanoseconds per ROT produced in batches of
    /// [`crate::cost::plan::DEFAULT_OT_BATCH_ROTS`]; at every batch size where
    /// [`Self::silent_ns_per_rot_by_batch`] is empty (profiles measured before it).
    pub silent_ns_per_rot: f64,
    /// Silent OT extension (both parties) per batch size: the encoder is fastest where its
    /// buffers fit the caches. Sorted by batch size.
    #[serde(default)]
    pub silent_ns_per_rot_by_batch: Vec<OtRate>,
    /// IKNP OT extension (both parties), nanoseconds per ROT produced.
    pub iknp_ns_per_rot: f64,
}

/// The OT extension's speed at one batch size.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OtRate {
    /// ROTs per direction in the batch.
    pub batch_rots: u64,
    /// Nanoseconds per ROT produced (both parties).
    pub ns_per_rot: f64,
}

/// Errors of a profile file.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Not the JSON form of a profile (the message includes serde's, so it is not also the
    /// error's source: a chain printed with `{:#}` says it once).
    #[error("not a compute profile: {0}")]
    Json(serde_json::Error),
    /// A profile without HE contexts or with a negative or non-finite time.
    #[error("invalid compute profile: {0}")]
    Invalid(String),
}

/// The profile shipped with heq-run (made by `heq-run calibrate` on the development machine).
const BUILTIN: &str = include_str!("../../profiles/default.json");

impl ComputeProfile {
    /// The shipped profile (`runtime/profiles/default.json`, parsed once).
    pub fn builtin() -> Self {
        static PARSED: std::sync::LazyLock<ComputeProfile> = std::sync::LazyLock::new(|| {
            ComputeProfile::from_json(BUILTIN).expect("the shipped profile is valid (tested)")
        });
        PARSED.clone()
    }

    /// Parses and checks the JSON form.
    ///
    /// # Errors
    /// [`ProfileError`] for malformed JSON, no HE context or a negative or non-finite time.
    pub fn from_json(s: &str) -> Result<Self, ProfileError> {
        let p: ComputeProfile = serde_json::from_str(s).map_err(ProfileError::Json)?;
        if p.he.is_empty() {
            return Err(ProfileError::Invalid("no HE context".into()));
        }
        let times =
            p.he.iter()
                .flat_map(|h| {
                    [
                        h.encrypt_ms,
                        h.absorb_ms,
                        h.product_ms,
                        h.sanitize_ms,
                        h.switch_ms,
                        h.decrypt_ms,
                    ]
                })
                .chain([
                    p.protocol_ns_per_rot,
                    p.silent_ns_per_rot,
                    p.iknp_ns_per_rot,
                ])
                .chain(p.silent_ns_per_rot_by_batch.iter().map(|r| r.ns_per_rot));
        for t in times {
            if !(t.is_finite() && t >= 0.0) {
                return Err(ProfileError::Invalid(format!("time {t}")));
            }
        }
        if p.he
            .iter()
            .any(|h| h.degree == 0 || h.moduli_bits.is_empty())
        {
            return Err(ProfileError::Invalid("empty HE context".into()));
        }
        let sizes = &p.silent_ns_per_rot_by_batch;
        if sizes.windows(2).any(|w| w[0].batch_rots >= w[1].batch_rots)
            || sizes.iter().any(|r| r.batch_rots == 0)
        {
            return Err(ProfileError::Invalid(
                "OT batch sizes not increasing from 1".into(),
            ));
        }
        Ok(p)
    }

    /// The pretty JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a profile always serialises") + "\n"
    }

    /// Per-ciphertext times of `he`: the measured context with the same degree and number of
    /// primes, else the nearest measured one scaled linearly by `N` × primes.
    pub fn he_times(&self, he: &HeParams) -> HeTimes {
        let primes = he.moduli_bits.len();
        let want = HeTimes::work(he.degree, primes);
        let nearest = self
            .he
            .iter()
            .min_by(|a, b| {
                let d = |h: &HeTimes| {
                    let w = HeTimes::work(h.degree, h.moduli_bits.len());
                    let same = h.degree == he.degree && h.moduli_bits.len() == primes;
                    (!same, (w.ln() - want.ln()).abs())
                };
                let (x, y) = (d(a), d(b));
                x.0.cmp(&y.0).then(x.1.total_cmp(&y.1))
            })
            .expect("a checked profile has an HE context");
        let have = HeTimes::work(nearest.degree, nearest.moduli_bits.len());
        nearest.scaled(he, want / have)
    }

    /// Compute milliseconds of a linear layer's HE part in context `he` (both parties).
    pub fn he_ms(&self, he: &HeParams, ops: HeOps) -> f64 {
        let t = self.he_times(he);
        ops.requests as f64 * (t.encrypt_ms + t.absorb_ms)
            + ops.products as f64 * t.product_ms
            + ops.sums as f64 * (t.sanitize_ms + t.switch_ms)
            + ops.key_switches as f64 * t.key_switch_ms
            + ops.responses as f64 * t.decrypt_ms
    }

    /// Nanoseconds per ROT the OT extension `backend` takes in a batch of `batch_rots` ROTs per
    /// direction: silent OT interpolated between the measured batch sizes (linearly in
    /// `log2` of the size) and held constant beyond them; IKNP does not depend on the size.
    pub fn ot_ns_per_rot(&self, backend: OtBackend, batch_rots: u64) -> f64 {
        let rates = &self.silent_ns_per_rot_by_batch;
        match (backend, rates.first(), rates.last()) {
            (OtBackend::Iknp, ..) => self.iknp_ns_per_rot,
            (OtBackend::Silent, Some(first), Some(last)) => {
                if batch_rots <= first.batch_rots {
                    return first.ns_per_rot;
                }
                if batch_rots >= last.batch_rots {
                    return last.ns_per_rot;
                }
                let at = rates.partition_point(|r| r.batch_rots < batch_rots);
                let (a, b) = (rates[at - 1], rates[at]);
                let log = |n: u64| (n as f64).log2();
                let t =
                    (log(batch_rots) - log(a.batch_rots)) / (log(b.batch_rots) - log(a.batch_rots));
                a.ns_per_rot + t * (b.ns_per_rot - a.ns_per_rot)
            }
            (OtBackend::Silent, ..) => self.silent_ns_per_rot,
        }
    }

    /// Compute milliseconds of a layer with `he_ms` of HE work and the nonlinear protocol runs
    /// `cost`, whose ROTs the OT extension produces at `ot_ns_per_rot` ([`Self::ot_ns_per_rot`]).
    /// The OT extension runs on its own thread one chunk ahead of the protocols
    /// ([`crate::ot::with_prefetch`]), so it overlaps the HE work and the protocol logic: the
    /// layer takes the longer of the two.
    pub fn layer_compute_ms(&self, he_ms: f64, cost: &Cost, ot_ns_per_rot: f64) -> f64 {
        let rots = (cost.server_rots + cost.client_rots) as f64;
        let driver = he_ms + rots * self.protocol_ns_per_rot * 1e-6;
        driver.max(rots * ot_ns_per_rot * 1e-6)
    }

    /// Compute milliseconds of every layer of a priced plan, in plan order; a layer's ROTs are
    /// produced at the speed of the OT batch that holds its first chunk.
    pub fn layer_ms(&self, plan: &PublicPlan, cost: &PlanCost) -> Vec<f64> {
        let backend = plan.protocol.ot;
        let mut first_chunk = 0;
        cost.layers
            .iter()
            .map(|l| {
                let batch = cost
                    .ot_batches
                    .iter()
                    .rfind(|b| b.first_chunk <= first_chunk)
                    .map_or(0, |b| b.server_rots.max(b.client_rots));
                first_chunk += l.stages.iter().map(|s| s.chunks() as usize).sum::<usize>();
                let ot_ns = self.ot_ns_per_rot(backend, batch);
                let he = plan
                    .layers
                    .get(l.layer.0 as usize)
                    .zip(l.he)
                    .and_then(|(layer, he)| {
                        let ops = HeOps::of(&layer.op, &he)?;
                        let (proto, _) = crate::schedule::linear_protocol(&layer.op)?;
                        Some(self.he_ms(&proto.he, ops))
                    })
                    .unwrap_or(0.0);
                self.layer_compute_ms(he, &l.nonlinear, ot_ns)
            })
            .collect()
    }
}

/// A network: bandwidth and round-trip time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Network {
    /// Bits per second, each direction.
    pub bits_per_second: f64,
    /// Round-trip time in milliseconds.
    pub rtt_ms: f64,
}

impl Network {
    /// Milliseconds to move `bytes` in `rounds` rounds.
    pub fn transfer_ms(&self, bytes: u64, rounds: u64) -> f64 {
        bytes as f64 * 8.0 / self.bits_per_second * 1e3 + rounds as f64 * self.rtt_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn he(degree: usize, moduli_bits: Vec<u32>) -> HeParams {
        HeParams {
            degree,
            moduli_bits,
            plain_bits: 20,
        }
    }

    #[test]
    fn builtin_profile_parses_and_round_trips() {
        let p = ComputeProfile::builtin();
        assert!(!p.he.is_empty());
        assert_eq!(ComputeProfile::from_json(&p.to_json()).unwrap(), p);
    }

    #[test]
    fn invalid_profiles_are_rejected() {
        let mut p = ComputeProfile::builtin();
        p.he.clear();
        assert!(matches!(
            ComputeProfile::from_json(&p.to_json()),
            Err(ProfileError::Invalid(_))
        ));
        let mut p = ComputeProfile::builtin();
        p.silent_ns_per_rot = -1.0;
        assert!(ComputeProfile::from_json(&p.to_json()).is_err());
        assert!(matches!(
            ComputeProfile::from_json("{"),
            Err(ProfileError::Json(_))
        ));
    }

    #[test]
    fn a_missing_field_is_named_once() {
        let err = ComputeProfile::from_json("{}").expect_err("not a profile");
        let chain = anyhow::Error::from(err);
        let text = format!("{chain:#}");
        assert_eq!(
            text,
            "not a compute profile: missing field `machine` at line 1 column 2"
        );
    }

    #[test]
    fn he_times_pick_the_same_context_else_scale() {
        let mut p = ComputeProfile::builtin();
        let base = HeTimes {
            degree: 4096,
            moduli_bits: vec![60, 49],
            encrypt_ms: 1.0,
            absorb_ms: 2.0,
            product_ms: 3.0,
            sanitize_ms: 4.0,
            switch_ms: 5.0,
            decrypt_ms: 6.0,
            key_switch_ms: 7.0,
        };
        p.he = vec![base.clone()];
        // Same degree and prime count: the measured times (other prime sizes).
        assert_eq!(p.he_times(&he(4096, vec![36, 30])).encrypt_ms, 1.0);
        // Twice N, three primes: three times the work.
        let t = p.he_times(&he(8192, vec![60, 60, 60]));
        assert_eq!((t.encrypt_ms, t.decrypt_ms), (3.0, 18.0));
        assert_eq!(t.key_switch_ms, 14.0);
        let ops = HeOps {
            requests: 2,
            products: 3,
            sums: 4,
            key_switches: 3,
            responses: 1,
        };
        assert_eq!(
            p.he_ms(&he(4096, vec![60, 49]), ops),
            2.0 * 3.0 + 3.0 * 3.0 + 4.0 * (4.0 + 5.0) + 3.0 * 7.0 + 6.0
        );
    }

    #[test]
    fn layer_time_overlaps_the_ot_extension_with_the_driver() {
        let mut p = ComputeProfile::builtin();
        (
            p.protocol_ns_per_rot,
            p.silent_ns_per_rot,
            p.iknp_ns_per_rot,
        ) = (10.0, 20.0, 40.0);
        let c = Cost {
            server_rots: 600,
            client_rots: 400,
            ..Cost::default()
        };
        p.silent_ns_per_rot_by_batch.clear();
        let ns = |backend| p.ot_ns_per_rot(backend, 1 << 20);
        // Without HE work the OT extension (1000 ROTs × 20 or 40 ns) outlasts the protocol
        // logic (1000 × 10 ns); with 1 ms of HE work the protocol logic follows it and the OT
        // extension is hidden.
        let ms = |he, backend| p.layer_compute_ms(he, &c, ns(backend));
        assert!((ms(0.0, OtBackend::Silent) - 0.02).abs() < 1e-12);
        assert!((ms(0.0, OtBackend::Iknp) - 0.04).abs() < 1e-12);
        assert!((ms(1.0, OtBackend::Iknp) - 1.01).abs() < 1e-12);
        assert!((ms(0.035, OtBackend::Iknp) - 0.045).abs() < 1e-12);
    }

    #[test]
    fn silent_ot_speed_is_interpolated_between_batch_sizes() {
        let mut p = ComputeProfile::builtin();
        p.silent_ns_per_rot_by_batch = vec![
            OtRate {
                batch_rots: 1 << 16,
                ns_per_rot: 100.0,
            },
            OtRate {
                batch_rots: 1 << 20,
                ns_per_rot: 200.0,
            },
        ];
        p.iknp_ns_per_rot = 7.0;
        let at = |n: u64| p.ot_ns_per_rot(OtBackend::Silent, n);
        assert_eq!((at(1), at(1 << 16), at(1 << 18)), (100.0, 100.0, 150.0));
        assert_eq!((at(1 << 20), at(1 << 24)), (200.0, 200.0));
        assert_eq!(p.ot_ns_per_rot(OtBackend::Iknp, 1 << 18), 7.0);
        p.silent_ns_per_rot_by_batch.swap(0, 1);
        assert!(ComputeProfile::from_json(&p.to_json()).is_err());
    }

    #[test]
    fn transfer_time_is_bandwidth_plus_rounds() {
        let wan = Network {
            bits_per_second: 400e6,
            rtt_ms: 40.0,
        };
        assert!((wan.transfer_ms(50_000_000, 3) - (1000.0 + 120.0)).abs() < 1e-9);
    }
}
