//! Parameters of the HE linear layers (`protocols.md` §1.3–1.7, §3.5): the supported ring
//! degrees and moduli, the noise budget that fixes the widths of every ciphertext on the wire,
//! and the rules by which a layer's share rings, plaintext modulus, packing and output fit
//! together. Crypto-free: the compiler checks candidate parameters with it, `crate::he` and
//! `crate::linear` run with it, and [`crate::cost::linear`] prices it.
//!
//! # Wire sizes
//!
//! * Request ciphertext (seeded symmetric RLWE): `c0` with every coefficient of prime `q_i` at
//!   `⌈log2 q_i⌉` bits, padded to a byte, plus a 32-byte seed for `c1`.
//! * Response ciphertext (after the modulus switch to `q0`): the `u` needed `c0` coefficients at
//!   [`HeBudget::c0_bits`] bits and all `N` coefficients of `c1` at [`HeBudget::c1_bits`] bits,
//!   padded to a byte.
//! * Public key (once per client key and `(N, primes)`, whatever the plaintext modulus): same
//!   format as a request ciphertext.
//! * Galois key of one exponent (response packing, once per client key, `N` and `q0`):
//!   [`GALOIS_DIGITS`] times a `k0` at `B0` bits per coefficient, padded to a byte, plus a seed
//!   ([`galois_key_bytes`]).
//!   A packed response ciphertext has the format of any response, its needed coefficients
//!   being those of all its members.
//!
//! # Noise budget
//!
//! With `B0 = ⌈log2 q0⌉` (`q0 ≥ (15/16)·2^B0`), decryption at `t_dec = 2^dec` is correct when the
//! total error is below `q0/(2·t_dec) ≥ (15/32)·2^(B0−dec)`. The budget splits it into
//! `2^(B0−dec−3)` for the `c0` low-bit drop, `2^(B0−dec−3)` for the `c1` low-bit drop (times
//! `‖s‖₁ ≤ N`, ternary secret), `2^(B0−dec−4)` for the switched flood, product and
//! re-randomisation noise plus the switching rounding, and `2^(B0−dec−4)` for the key switches
//! of response packing ([`pack_fits`]). Total `≤ (5/16)·2^(B0−dec)`, `(3/8)·2^(B0−dec)` with
//! packing: at most 2/3 (4/5) of the threshold in the worst case (every rounding error aligned
//! with the secret); the measured errors are far smaller. See `docs/security.md`.

use crate::plan::{HeParams, LinearProtocol, Tile};

/// Ring degrees the protocol supports.
pub const DEGREES: [usize; 3] = [2048, 4096, 8192];

/// Bytes of the seed that stands for `c1` in a seeded ciphertext.
pub const SEED_BYTES: usize = 32;

/// Bound on a fresh error coefficient: centred binomial with variance 10 (`η = 20`).
pub const ERROR_BOUND: u64 = 20;

/// Per-coefficient error of a ciphertext after the server adds its share, before the product:
/// the fresh error plus the two flooring errors of the exact plaintext scaling.
pub const SHARE_NOISE_BOUND: u64 = ERROR_BOUND + 2;

/// Why a linear layer configuration cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `N` is not one of [`DEGREES`].
    #[error("ring degree N = {degree} is not supported (2048, 4096 or 8192)")]
    Degree {
        /// The degree asked for.
        degree: usize,
    },
    /// A prime size is outside what the NTT supports.
    #[error("prime of {bits} bits: every modulus must have 20 to 61 bits")]
    PrimeBits {
        /// The size asked for.
        bits: u32,
    },
    /// No prime at all.
    #[error("no ciphertext modulus given")]
    NoModuli,
    /// `log2 q` exceeds the 128-bit HE-standard bound for `N` (ternary secret).
    #[error("log2 q = {log_q} bits exceeds the 128-bit security bound {max} for N = {degree}")]
    Insecure {
        /// Ring degree.
        degree: usize,
        /// Total modulus bits.
        log_q: u32,
        /// Largest secure `log2 q`.
        max: u32,
    },
    /// The plaintext modulus `2^bits` is outside `2^2 ..= 2^45`.
    #[error("plaintext modulus 2^{bits}: the exponent must be in 2..=45")]
    PlainBits {
        /// The exponent asked for.
        bits: u32,
    },
    /// The moduli leave no room for correct decryption at this plaintext width.
    #[error(
        "moduli {moduli_bits:?} too small for decryption at 2^{dec_bits} with N = {degree}: \
         need {need} bits, have {have}"
    )]
    NoiseBudget {
        /// Prime sizes.
        moduli_bits: Vec<u32>,
        /// Decryption width.
        dec_bits: u32,
        /// Ring degree.
        degree: usize,
        /// Bits the failing condition needs.
        need: u32,
        /// Bits available.
        have: u32,
    },
    /// The share rings and the plaintext modulus are inconsistent.
    #[error(
        "rings: input 2^{in_bits}, plaintext 2^{plain_bits}, output 2^{out_bits} \
         (need input ≥ plaintext ≥ output, and output = plaintext when packing)"
    )]
    Rings {
        /// Input ring bits.
        in_bits: u32,
        /// Plaintext bits.
        plain_bits: u32,
        /// Output ring bits.
        out_bits: u32,
    },
    /// The packing does not fit the plaintext or cannot hold the accumulator.
    #[error(
        "packing {factor} × {field_bits} bits: needs factor ≥ 1, field ≥ accumulator \
         ({acc_bits} bits) and factor·field ≤ plaintext ({plain_bits} bits)"
    )]
    Packing {
        /// Fields per coefficient.
        factor: u32,
        /// Bits per field.
        field_bits: u32,
        /// Accumulator bits of the layer.
        acc_bits: u32,
        /// Plaintext bits.
        plain_bits: u32,
    },
    /// The tile is empty, too large for `N`, or smaller than the kernel.
    #[error("tile {tile:?} invalid for N = {degree} and kernel {kernel:?}")]
    Tile {
        /// The tile.
        tile: Tile,
        /// Ring degree.
        degree: usize,
        /// Effective kernel.
        kernel: [usize; 2],
    },
    /// The layer shape itself is inconsistent.
    #[error("layer shape: {0}")]
    Shape(String),
    /// The coefficient encoding cannot run with this tile, or its response packing does not fit
    /// the noise budget.
    #[error("encoding: {0}")]
    Encoding(String),
}

/// Largest `log2 q` at 128-bit classical security for a ternary secret (HE standard, Table 1).
pub fn max_log_q(degree: usize) -> Option<u32> {
    match degree {
        2048 => Some(54),
        4096 => Some(109),
        8192 => Some(218),
        _ => None,
    }
}

/// What the noise budget fixes for one parameter set and decryption width.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeBudget {
    /// Ring degree `N`.
    pub degree: usize,
    /// `log2 N`.
    pub log_n: u32,
    /// Prime sizes, the one kept after the modulus switch first.
    pub moduli_bits: Vec<u32>,
    /// Decryption width: the client rounds at `2^dec_bits`.
    pub dec_bits: u32,
    /// Bits kept of each needed response `c0` coefficient (`min(B0, dec + 2)`).
    pub c0_bits: u32,
    /// Bits kept of each response `c1` coefficient (`min(B0, dec + 2 + log2 N)`).
    pub c1_bits: u32,
    /// Flooding noise is uniform on `[−2^flood_bits, 2^flood_bits]` at the full modulus.
    pub flood_bits: u32,
}

impl HeBudget {
    /// Low bits dropped from response `c0` coefficients.
    pub fn c0_drop(&self) -> u32 {
        self.moduli_bits[0] - self.c0_bits
    }

    /// Low bits dropped from response `c1` coefficients.
    pub fn c1_drop(&self) -> u32 {
        self.moduli_bits[0] - self.c1_bits
    }

    /// Bits of one request (or public-key) ciphertext on the wire, without the seed.
    pub fn request_c0_bytes(&self) -> usize {
        (self.degree * self.moduli_bits.iter().sum::<u32>() as usize).div_ceil(8)
    }

    /// Bytes of one request ciphertext: `c0` plus the seed.
    pub fn request_ct_bytes(&self) -> usize {
        self.request_c0_bytes() + SEED_BYTES
    }

    /// Bytes of one response ciphertext carrying `useful` needed coefficients.
    pub fn response_ct_bytes(&self, useful: usize) -> usize {
        (useful * self.c0_bits as usize + self.degree * self.c1_bits as usize).div_ceil(8)
    }

    /// Statistical slack of the flooding, per revealed coefficient, for a product noise bound
    /// `2^noise_bits`: `flood_bits − noise_bits`.
    pub fn flood_slack(&self, noise_bits: u32) -> i64 {
        i64::from(self.flood_bits) - i64::from(noise_bits)
    }
}

/// The noise budget of `he` when the client decrypts at `2^dec_bits`.
///
/// # Errors
/// [`ConfigError`] when `N`, the primes or the plaintext width are unsupported, `q` is above the
/// 128-bit bound, or the moduli cannot hold the flooding and the switching errors.
pub fn he_budget(he: &HeParams, dec_bits: u32) -> Result<HeBudget, ConfigError> {
    let degree = he.degree;
    if !DEGREES.contains(&degree) {
        return Err(ConfigError::Degree { degree });
    }
    let max = max_log_q(degree).ok_or(ConfigError::Degree { degree })?;
    let bits = &he.moduli_bits;
    let b0 = *bits.first().ok_or(ConfigError::NoModuli)?;
    if let Some(&bad) = bits.iter().find(|&&b| !(20..=61).contains(&b)) {
        return Err(ConfigError::PrimeBits { bits: bad });
    }
    let log_q: u32 = bits.iter().sum();
    if log_q > max {
        return Err(ConfigError::Insecure { degree, log_q, max });
    }
    if !(2..=45).contains(&he.plain_bits) {
        return Err(ConfigError::PlainBits {
            bits: he.plain_bits,
        });
    }
    let log_n = degree.trailing_zeros();
    let budget_err = |need: u32, have: u32| ConfigError::NoiseBudget {
        moduli_bits: bits.clone(),
        dec_bits,
        degree,
        need,
        have,
    };
    // Switching rounding ≤ N + 1 ≤ 2^(B0 − dec − 5) when a prime is dropped; the flood itself
    // needs B0 − dec − 6 ≥ 0 at the kept level.
    let need_b0 = dec_bits + 6 + if bits.len() > 1 { log_n } else { 0 };
    if b0 < need_b0 {
        return Err(budget_err(need_b0, b0));
    }
    let flood_bits = b0 - dec_bits - 6 + bits[1..].iter().map(|b| b - 1).sum::<u32>();
    // The re-randomisation noise (≤ 40N + 20) must stay below half the flood.
    let need_flood = log_n + 7;
    if flood_bits < need_flood {
        return Err(budget_err(need_flood, flood_bits));
    }
    Ok(HeBudget {
        degree,
        log_n,
        moduli_bits: bits.clone(),
        dec_bits,
        c0_bits: b0.min(dec_bits + 2),
        c1_bits: b0.min(dec_bits + 2 + log_n),
        flood_bits,
    })
}

/// What a linear layer outputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LinearOutput {
    /// Shares of the accumulator `acc = bias + Σ w·x` mod `2^out_ring_bits` (or packed words).
    #[default]
    Accumulator,
    /// Shares of the requantized value `⌊(acc·m[c] + 2^(k−1)) / 2^k⌋ mod 2^out_ring_bits`
    /// (`k = shift ≥ 1`, `m[c]` the server-private multipliers), computed exactly inside the
    /// HE layer: the server encrypts `2·acc·m[c] + 1` (kernel and bias scaled by `2·m[c]`, plus
    /// one) and the client decrypts at `t' = t / 2^(k+1)`; since
    /// `round((2V+1)/2^(k+1)) = ⌊(V + 2^(k−1))/2^k⌋` and `(2V+1)/2^(k+1)` is never a rounding
    /// tie, the noise margin is `q0/t` (decryption width `plain_bits − 1`). Needs
    /// `out_ring_bits ≤ plain_bits − k − 1` and no packing. The clamp stays with the
    /// nonlinear layer.
    Requantized {
        /// Right shift `k` of the requantization.
        shift: u32,
    },
}

impl LinearOutput {
    /// Width at which the client rounds: `plain_bits` for the accumulator,
    /// `plain_bits − shift − 1` for a folded requantization.
    pub fn decode_bits(self, plain_bits: u32) -> u32 {
        match self {
            LinearOutput::Accumulator => plain_bits,
            LinearOutput::Requantized { shift } => plain_bits.saturating_sub(shift + 1),
        }
    }

    /// Width of the noise budget: the decoding width without folding, `plain_bits − 1` with it
    /// (the rounding boundary is `2^−(k+1)` of a step at `t'`, i.e. half a step at `t/2`).
    pub fn budget_bits(self, plain_bits: u32) -> u32 {
        match self {
            LinearOutput::Accumulator => plain_bits,
            LinearOutput::Requantized { .. } => plain_bits - 1,
        }
    }
}

/// How a linear layer's share rings, plaintext, packing and output fit together.
///
/// Rules: `in_ring_bits ≥ plain_bits ≥ out_ring_bits` (input shares reduce mod `t`, outputs are
/// the accumulator mod `2^out`); with packing (`factor > 1`) the output is the packed word, so
/// `out_ring_bits = plain_bits ≥ factor·field_bits` and `field_bits ≥ acc_bits`; a folded
/// requantization ([`LinearOutput::Requantized`]) needs `shift ≥ 1`, no packing and
/// `out_ring_bits ≤ plain_bits − shift − 1`.
///
/// # Errors
/// [`ConfigError::Rings`] or [`ConfigError::Packing`].
pub fn check_rings(
    proto: &LinearProtocol,
    acc_bits: u32,
    output: LinearOutput,
) -> Result<(), ConfigError> {
    let (in_bits, plain_bits, out_bits) =
        (proto.in_ring_bits, proto.he.plain_bits, proto.out_ring_bits);
    let p = &proto.packing;
    let rings_err = ConfigError::Rings {
        in_bits,
        plain_bits,
        out_bits,
    };
    if in_bits < plain_bits || plain_bits < out_bits || out_bits == 0 || in_bits > 64 {
        return Err(rings_err);
    }
    if p.factor == 0 {
        return Err(packing_err(proto, acc_bits));
    }
    if let LinearOutput::Requantized { shift } = output {
        if p.factor > 1 {
            return Err(packing_err(proto, acc_bits));
        }
        if shift == 0 || u64::from(out_bits) + u64::from(shift) + 1 > u64::from(plain_bits) {
            return Err(rings_err);
        }
    }
    if p.factor > 1 {
        if out_bits != plain_bits {
            return Err(rings_err);
        }
        let fits = u64::from(p.factor) * u64::from(p.field_bits) <= u64::from(plain_bits);
        if !fits || p.field_bits < acc_bits || p.field_bits == 0 {
            return Err(packing_err(proto, acc_bits));
        }
    }
    Ok(())
}

fn packing_err(proto: &LinearProtocol, acc_bits: u32) -> ConfigError {
    ConfigError::Packing {
        factor: proto.packing.factor,
        field_bits: proto.packing.field_bits,
        acc_bits,
        plain_bits: proto.he.plain_bits,
    }
}

/// The noise budget of a layer's protocol.
///
/// # Errors
/// As [`he_budget`] and [`check_rings`].
pub fn layer_budget(
    proto: &LinearProtocol,
    acc_bits: u32,
    output: LinearOutput,
) -> Result<HeBudget, ConfigError> {
    check_rings(proto, acc_bits, output)?;
    let budget = he_budget(&proto.he, output.budget_bits(proto.he.plain_bits))?;
    let members = proto.encoding.members();
    if members > 1 && !pack_fits(&budget, members) {
        return Err(ConfigError::Encoding(format!(
            "packing {members} responses adds key-switching noise beyond the budget of \
             q0 = 2^{} at 2^{}",
            budget.moduli_bits[0], budget.dec_bits
        )));
    }
    Ok(budget)
}

// Response packing

/// Digits of the gadget decomposition of a Galois key: a key switch splits `c1` into this many
/// unsigned digits of [`galois_digit_bits`] bits each.
pub const GALOIS_DIGITS: u32 = 6;

/// Bits of one gadget digit for a kept prime of `b0` bits: `⌈b0 / GALOIS_DIGITS⌉`, so the
/// digits cover every coefficient below `q0 < 2^b0`.
pub fn galois_digit_bits(b0: u32) -> u32 {
    b0.div_ceil(GALOIS_DIGITS)
}

/// Bound on the error one key switch adds to a coefficient: `Σ_i δ_i·e_i` with
/// [`GALOIS_DIGITS`] digits `δ_i < 2^b` and key errors `|e_i| ≤ ERROR_BOUND`, each a negacyclic
/// product of `N` terms: `d·N·(2^b − 1)·ERROR_BOUND`.
pub fn key_switch_noise(degree: usize, b0: u32) -> u128 {
    let digit_max = (1u128 << galois_digit_bits(b0)) - 1;
    u128::from(GALOIS_DIGITS) * degree as u128 * digit_max * u128::from(ERROR_BOUND)
}

/// Bound on the error a pack of `members` ciphertexts adds at a packed position: each of the
/// `members − 1` tree nodes adds one key switch, doubled by every level above it, and a packed
/// position sees one node per level: `(members − 1)·key_switch_noise` (zero for one member).
pub fn pack_noise(degree: usize, b0: u32, members: usize) -> u128 {
    members.saturating_sub(1) as u128 * key_switch_noise(degree, b0)
}

/// Galois exponents a pack of `members` (a power of two) ciphertexts at `stride` uses, one per
/// tree level from the leaves up: `g = n'·N/stride + 1` for `n' = 2, 4, …, members`.
pub fn pack_exponents(degree: usize, stride: usize, members: usize) -> Vec<usize> {
    std::iter::successors(Some(2usize), |&m| m.checked_mul(2))
        .take_while(|&m| m <= members)
        .map(|m| m * degree / stride + 1)
        .collect()
}

/// Bytes of one exponent's Galois key on the wire: per digit, `k0` at `B0` bits per coefficient
/// (padded to a byte) and the seed of its uniform part.
pub fn galois_key_bytes(degree: usize, b0: u32) -> usize {
    GALOIS_DIGITS as usize * ((degree * b0 as usize).div_ceil(8) + SEED_BYTES)
}

/// Where member `j` of a pack of `members` at `stride` lands: its value at a position `p`
/// (a multiple of `stride`) moves to `p + j·stride/members`.
pub fn pack_offset(stride: usize, members: usize, j: usize) -> usize {
    j * stride / members
}

/// Whether a pack of `members` ciphertexts fits the budget: [`pack_noise`] within its share
/// `2^(B0 − dec − 4)` of the error (the table of the module doc then totals
/// `(12/32)·2^(B0−dec)`, below the threshold `(15/32)·2^(B0−dec)`).
pub fn pack_fits(budget: &HeBudget, members: usize) -> bool {
    let b0 = budget.moduli_bits[0];
    pack_noise(budget.degree, b0, members) <= 1u128 << (b0 - budget.dec_bits - 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cheetah_budget_matches_reference_widths() {
        let b = he_budget(
            &HeParams {
                degree: 4096,
                moduli_bits: vec![60, 49],
                plain_bits: 37,
            },
            37,
        )
        .expect("valid");
        // protocols.md §1.5: c0 keeps ℓ + 2 = 39 bits, c1 keeps ℓ + 1 + n_var = 51 bits.
        assert_eq!((b.c0_bits, b.c1_bits), (39, 51));
        assert_eq!(b.flood_bits, 60 - 37 - 6 + 48);
        assert_eq!(b.request_ct_bytes(), 4096 * 109 / 8 + 32);
    }

    #[test]
    fn rejects_insecure_and_tight_moduli() {
        let he = HeParams {
            degree: 4096,
            moduli_bits: vec![60, 50],
            plain_bits: 37,
        };
        assert_eq!(
            he_budget(&he, 37),
            Err(ConfigError::Insecure {
                degree: 4096,
                log_q: 110,
                max: 109
            })
        );
        let he = HeParams {
            degree: 4096,
            moduli_bits: vec![50, 49],
            plain_bits: 37,
        };
        assert!(matches!(
            he_budget(&he, 37),
            Err(ConfigError::NoiseBudget {
                need: 55,
                have: 50,
                ..
            })
        ));
    }

    #[test]
    fn packing_bounds_and_sizes() {
        assert_eq!(galois_digit_bits(60), 10);
        assert_eq!(galois_digit_bits(61), 11);
        assert_eq!(galois_digit_bits(34), 6);
        assert_eq!(key_switch_noise(4096, 60), 6 * 4096 * 1023 * 20);
        assert_eq!(key_switch_noise(4096, 60), 502_824_960);
        assert_eq!(pack_noise(4096, 60, 1), 0);
        assert_eq!(pack_noise(4096, 60, 8), 7 * 502_824_960);
        assert_eq!(galois_key_bytes(4096, 60), 6 * (30_720 + 32));
        assert_eq!(galois_key_bytes(2048, 54), 6 * (13_824 + 32));
        assert_eq!(pack_exponents(4096, 16, 1), Vec::<usize>::new());
        assert_eq!(pack_exponents(4096, 16, 8), vec![513, 1025, 2049]);
        assert_eq!(pack_exponents(4096, 4096, 4096).last(), Some(&4097));
        assert_eq!(pack_exponents(4096, 4096, 4096).len(), 12);
        assert_eq!(
            (0..4).map(|j| pack_offset(16, 4, j)).collect::<Vec<_>>(),
            vec![0, 4, 8, 12]
        );
        assert_eq!(pack_offset(8, 1, 0), 0);
    }

    #[test]
    fn pack_fits_its_share_of_the_budget() {
        let he = HeParams {
            degree: 4096,
            moduli_bits: vec![60, 49],
            plain_bits: 17,
        };
        // 2^(60 − 17 − 4) = 2^39 over 502 824 960 per switch: 1093 switches fit.
        let b = he_budget(&he, 17).expect("valid");
        assert!(pack_fits(&b, 1));
        assert!(pack_fits(&b, 1094));
        assert!(!pack_fits(&b, 1095));
        // At ℓ = 37 the share is 2^19, below a single switch: only one member fits.
        let b = he_budget(
            &HeParams {
                plain_bits: 37,
                ..he
            },
            37,
        )
        .expect("valid");
        assert!(pack_fits(&b, 1));
        assert!(!pack_fits(&b, 2));
    }
}
