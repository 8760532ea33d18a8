//! RLWE layer over fhe-math 0.1.1 (the only module that imports it): parameters, keys, seeded
//! symmetric encryption with exact plaintext scaling, centred weight polynomials in NTT form,
//! the server's response pipeline (re-randomise, flood, switch, optionally pack several
//! responses into one with the client's Galois keys, drop low bits) and the client's
//! decryption, with a fixed-size bit-packed wire format.
//!
//! Scheme (Cheetah, ePrint 2022/207; `protocols.md` §1.2, §1.5, §3.4): BFV-style RLWE over
//! `R_q = Z_q[X]/(X^N + 1)`, `q = q0·q1·…` (NTT-friendly primes, `q0` kept by the switch),
//! plaintext `Z_t`, `t = 2^ℓ`, coefficient encoding. A plaintext `m` scales to
//! `Δ(m) = ⌊q·m/t⌋` exactly (so a wrap of `x_C + x_S` past `t` costs no noise), the secret is
//! uniform ternary and errors are centred binomial with variance 10 (`|e| ≤ 20`).
//! Noise budget and widths: `crate::params::he` (crypto-free, shared with the compiler);
//! security argument: `docs/security.md`.

mod pack;
mod wire;

use std::fmt;
use std::sync::Arc;

use fhe_math::rq::traits::TryConvertFrom;
use fhe_math::rq::{Context, Poly, Representation, dot_product};
use fhe_math::zq::primes::generate_prime;
use rand::{CryptoRng, Rng, RngCore};

use crate::params::he::{ConfigError, ERROR_BOUND, HeBudget, SEED_BYTES, he_budget};
use crate::plan::HeParams;
use wire::{BitReader, BitWriter};

pub use pack::{GaloisKeys, SeededGaloisKeys, pack};

/// Variance of the centred binomial error distribution (`σ ≈ 3.16`, bound [`ERROR_BOUND`]).
const ERROR_VARIANCE: usize = (ERROR_BOUND / 2) as usize;

/// Errors of the RLWE layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeError {
    /// The parameters are rejected by the noise budget or the security table.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No NTT-friendly prime of this size close enough to `2^bits`.
    #[error("no {bits}-bit prime ≡ 1 mod 2N in [15/16·2^{bits}, 2^{bits}) for N = {degree}")]
    NoPrime {
        /// Prime size.
        bits: u32,
        /// Ring degree.
        degree: usize,
    },
    /// A message from the peer has the wrong size.
    #[error("{what}: expected {expected} bytes, got {actual}")]
    Length {
        /// What was being decoded.
        what: &'static str,
        /// Expected size.
        expected: usize,
        /// Actual size.
        actual: usize,
    },
    /// A coefficient from the peer is not reduced modulo its prime.
    #[error("{what}: coefficient {index} is not reduced modulo its prime")]
    Unreduced {
        /// What was being decoded.
        what: &'static str,
        /// Index of the coefficient.
        index: usize,
    },
    /// A caller-side vector has the wrong length.
    #[error("{what}: expected {expected} values, got {actual}")]
    Arity {
        /// What was being built.
        what: &'static str,
        /// Expected count.
        expected: usize,
        /// Actual count.
        actual: usize,
    },
    /// A coefficient position is not below `N`.
    #[error("position {position} is not below N = {degree}")]
    Position {
        /// The position.
        position: usize,
        /// Ring degree.
        degree: usize,
    },
    /// A Galois exponent is even or not below `2N`.
    #[error("Galois exponent {exponent}: must be odd and below 2N = {}", 2 * degree)]
    GaloisExponent {
        /// The exponent.
        exponent: usize,
        /// Ring degree.
        degree: usize,
    },
    /// A pack needs a Galois key the server does not hold.
    #[error("no Galois key for exponent {exponent}")]
    MissingGaloisKey {
        /// The exponent.
        exponent: usize,
    },
    /// A pack's member count or stride is invalid.
    #[error(
        "cannot pack {members} ciphertexts at stride {stride} for N = {degree}: \
         need powers of two with 1 ≤ members ≤ stride ≤ N"
    )]
    PackShape {
        /// Members given.
        members: usize,
        /// Stride of the members' needed positions.
        stride: usize,
        /// Ring degree.
        degree: usize,
    },
    /// A key was used with parameters of another ring or modulus chain.
    #[error("the key belongs to another ring degree or modulus chain")]
    ParamsMismatch,
    /// fhe-math refused an operation (a bug: parameters are validated before use).
    #[error("fhe-math: {0}")]
    Math(String),
}

fn math(e: fhe_math::Error) -> HeError {
    HeError::Math(e.to_string())
}

/// RLWE parameters of one linear layer: primes, contexts and scaling constants.
pub struct Params {
    he: HeParams,
    moduli: Vec<u64>,
    full: Arc<Context>,
    kept: Arc<Context>,
    /// `q mod t`.
    q_mod_t: u64,
    /// `t^{-1} mod q_i`.
    t_inv: Vec<u64>,
}

impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Params")
            .field("he", &self.he)
            .field("moduli", &self.moduli)
            .finish()
    }
}

impl Params {
    /// Builds the parameters of `he`: the largest primes `≡ 1 mod 2N` below `2^bits` for each
    /// size (distinct when sizes repeat).
    ///
    /// # Errors
    /// [`HeError::Config`] when the noise budget or the security bound rejects `he`,
    /// [`HeError::NoPrime`] when a prime size has no suitable prime.
    pub fn new(he: &HeParams) -> Result<Arc<Self>, HeError> {
        he_budget(he, he.plain_bits)?;
        let n = he.degree;
        let mut moduli: Vec<u64> = Vec::with_capacity(he.moduli_bits.len());
        for &bits in &he.moduli_bits {
            let top = 1u64 << bits;
            let upper = moduli
                .iter()
                .copied()
                .filter(|&p| p > top >> 1 && p < top)
                .min()
                .unwrap_or(top);
            let p = generate_prime(bits as usize, 2 * n as u64, upper)
                .filter(|&p| p >= top - (top >> 4))
                .ok_or(HeError::NoPrime { bits, degree: n })?;
            moduli.push(p);
        }
        let full = Context::new_arc(&moduli, n).map_err(math)?;
        let kept = full.context_at_level(moduli.len() - 1).map_err(math)?;
        let t_mask = (1u64 << he.plain_bits) - 1;
        let q_mod_t = moduli.iter().fold(1u64, |a, &p| a.wrapping_mul(p)) & t_mask;
        let t_inv = full
            .moduli_operators()
            .iter()
            .map(|op| {
                op.inv(op.reduce(1u64 << he.plain_bits))
                    .ok_or_else(|| HeError::Math("t not invertible".into()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Arc::new(Params {
            he: he.clone(),
            moduli,
            full,
            kept,
            q_mod_t,
            t_inv,
        }))
    }

    /// The plan parameters.
    pub fn he(&self) -> &HeParams {
        &self.he
    }

    /// Ring degree `N`.
    pub fn degree(&self) -> usize {
        self.he.degree
    }

    /// The primes, the kept one first.
    pub fn moduli(&self) -> &[u64] {
        &self.moduli
    }

    /// The noise budget when decrypting at `2^dec_bits`.
    ///
    /// # Errors
    /// [`HeError::Config`] when the moduli cannot support that width.
    pub fn budget(&self, dec_bits: u32) -> Result<HeBudget, HeError> {
        Ok(he_budget(&self.he, dec_bits)?)
    }

    /// `Δ(m) mod q_i = ⌊q·m/t⌋ mod q_i = −((q mod t)·m mod t)·t^{-1} mod q_i`, for `m < t`.
    fn delta(&self, i: usize, m: u64) -> u64 {
        let t_mask = (1u128 << self.he.plain_bits) - 1;
        let r = ((u128::from(self.q_mod_t) * u128::from(m)) & t_mask) as u64;
        let op = &self.full.moduli_operators()[i];
        op.neg(op.mul(op.reduce(r), self.t_inv[i]))
    }

    /// The RNS power-basis coefficients of `Δ(m)` for a plaintext given as `(position, m mod t)`
    /// pairs, added onto `rns` (`L·N` values, prime-major).
    fn add_scaled(&self, rns: &mut [u64], plain: impl Iterator<Item = (usize, u64)> + Clone) {
        let n = self.degree();
        for (i, op) in self.full.moduli_operators().iter().enumerate() {
            let row = &mut rns[i * n..(i + 1) * n];
            for (pos, m) in plain.clone() {
                row[pos] = op.add(row[pos], self.delta(i, m));
            }
        }
    }

    fn poly_from_rns(&self, rns: Vec<u64>) -> Result<Poly, HeError> {
        Poly::try_convert_from(rns, &self.full, false, Representation::PowerBasis).map_err(math)
    }
}

/// The client's secret key: a uniform ternary polynomial.
///
/// # Security
/// Never leaves the client; `Debug` prints nothing of it and the coefficients are overwritten
/// on drop.
pub struct SecretKey {
    params: Arc<Params>,
    coeffs: Vec<i64>,
    full_ntt: Poly,
    kept_ntt: Poly,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.coeffs.iter_mut().for_each(|c| *c = 0);
        std::hint::black_box(&self.coeffs);
    }
}

fn ternary<R: RngCore + CryptoRng>(n: usize, rng: &mut R) -> Vec<i64> {
    (0..n)
        .map(|_| i64::from(rng.random_range(0u8..3)) - 1)
        .collect()
}

fn signed_poly(ctx: &Arc<Context>, coeffs: &[i64], to: Representation) -> Result<Poly, HeError> {
    let mut p =
        Poly::try_convert_from(coeffs, ctx, false, Representation::PowerBasis).map_err(math)?;
    p.change_representation(to);
    Ok(p)
}

/// A seeded symmetric ciphertext: `c0` in power basis at the full modulus and the seed that
/// expands to `c1` (uniform, NTT form). Also the format of the public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeededCt {
    c0: Vec<u64>,
    seed: [u8; SEED_BYTES],
}

impl SeededCt {
    /// Wire encoding: `c0` prime by prime at `⌈log2 q_i⌉` bits per coefficient, then the seed.
    pub fn to_bytes(&self, params: &Params) -> Vec<u8> {
        let n = params.degree();
        let mut w = BitWriter::with_capacity(self.c0.len() * 8 + SEED_BYTES);
        for (i, &bits) in params.he.moduli_bits.iter().enumerate() {
            self.c0[i * n..(i + 1) * n]
                .iter()
                .for_each(|&c| w.put(c, bits));
        }
        let mut bytes = w.finish();
        bytes.extend_from_slice(&self.seed);
        bytes
    }

    /// Decodes [`SeededCt::to_bytes`].
    ///
    /// # Errors
    /// [`HeError::Length`] for a wrong size, [`HeError::Unreduced`] for a coefficient not
    /// below its prime.
    pub fn from_bytes(params: &Params, bytes: &[u8]) -> Result<Self, HeError> {
        let n = params.degree();
        let c0_len = (n * params.he.moduli_bits.iter().sum::<u32>() as usize).div_ceil(8);
        let expected = c0_len + SEED_BYTES;
        if bytes.len() != expected {
            return Err(HeError::Length {
                what: "seeded ciphertext",
                expected,
                actual: bytes.len(),
            });
        }
        let mut r = BitReader::new(&bytes[..c0_len]);
        let mut c0 = Vec::with_capacity(n * params.moduli.len());
        for (&bits, &q) in params.he.moduli_bits.iter().zip(&params.moduli) {
            for _ in 0..n {
                let c = r.get(bits);
                if c >= q {
                    return Err(HeError::Unreduced {
                        what: "seeded ciphertext",
                        index: c0.len(),
                    });
                }
                c0.push(c);
            }
        }
        let mut seed = [0u8; SEED_BYTES];
        seed.copy_from_slice(&bytes[c0_len..]);
        Ok(SeededCt { c0, seed })
    }

    fn c1(&self, params: &Params) -> Poly {
        Poly::random_from_seed(&params.full, Representation::Ntt, self.seed)
    }
}

impl SecretKey {
    /// A fresh key for `params`.
    ///
    /// # Errors
    /// [`HeError::Math`] only on an internal inconsistency.
    pub fn generate<R: RngCore + CryptoRng>(
        params: &Arc<Params>,
        rng: &mut R,
    ) -> Result<Self, HeError> {
        Self::from_coeffs(params, ternary(params.degree(), rng))
    }

    fn from_coeffs(params: &Arc<Params>, coeffs: Vec<i64>) -> Result<Self, HeError> {
        let full_ntt = signed_poly(&params.full, &coeffs, Representation::Ntt)?;
        let kept_ntt = signed_poly(&params.kept, &coeffs, Representation::Ntt)?;
        Ok(SecretKey {
            params: params.clone(),
            coeffs,
            full_ntt,
            kept_ntt,
        })
    }

    /// The same secret for other parameters with the same `N` and primes but another plaintext
    /// modulus, so one key (and one public key) serves every layer of an `(N, q)` context.
    ///
    /// # Errors
    /// [`HeError::ParamsMismatch`] if `N` or the primes differ.
    pub fn with_params(&self, params: &Arc<Params>) -> Result<Self, HeError> {
        if params.degree() != self.params.degree() || params.moduli != self.params.moduli {
            return Err(HeError::ParamsMismatch);
        }
        Self::from_coeffs(params, self.coeffs.clone())
    }

    /// The parameters of the key.
    pub fn params(&self) -> &Arc<Params> {
        &self.params
    }

    /// Encrypts the plaintext `m` (`N` values mod `t`, or fewer: the rest is zero):
    /// `c0 = −a·s + e + Δ(m)`, `c1 = a` expanded from a fresh seed.
    ///
    /// # Errors
    /// [`HeError::Arity`] if `m` has more than `N` values.
    pub fn encrypt<R: RngCore + CryptoRng>(
        &self,
        m: &[u64],
        rng: &mut R,
    ) -> Result<SeededCt, HeError> {
        let p = &self.params;
        let n = p.degree();
        if m.len() > n {
            return Err(HeError::Arity {
                what: "plaintext",
                expected: n,
                actual: m.len(),
            });
        }
        let mut seed = [0u8; SEED_BYTES];
        rng.fill_bytes(&mut seed);
        let a = Poly::random_from_seed(&p.full, Representation::Ntt, seed);
        let mut c0 = -&(&a * &self.full_ntt);
        c0.change_representation(Representation::PowerBasis);
        c0 +=
            &Poly::small(&p.full, Representation::PowerBasis, ERROR_VARIANCE, rng).map_err(math)?;
        let t_mask = (1u64 << p.he.plain_bits) - 1;
        let mut rns = vec![0u64; n * p.moduli.len()];
        p.add_scaled(
            &mut rns,
            m.iter().enumerate().map(|(i, &v)| (i, v & t_mask)),
        );
        c0 += &p.poly_from_rns(rns)?;
        Ok(SeededCt {
            c0: Vec::<u64>::from(&c0),
            seed,
        })
    }

    /// The public key: an encryption of zero, which the server uses to re-randomise responses.
    ///
    /// # Errors
    /// As [`SecretKey::encrypt`].
    pub fn public_key<R: RngCore + CryptoRng>(&self, rng: &mut R) -> Result<SeededCt, HeError> {
        self.encrypt(&[], rng)
    }

    /// Decrypts the needed coefficients of a response at `2^decode_bits` (≤ the budget's
    /// `dec_bits`), returning `round(2^decode_bits·v/q0) mod 2^decode_bits` for each position.
    ///
    /// # Errors
    /// [`HeError::Arity`] if `positions` does not match the response.
    pub fn decrypt(
        &self,
        ct: &ResponseCt,
        positions: &[usize],
        budget: &HeBudget,
        decode_bits: u32,
    ) -> Result<Vec<u64>, HeError> {
        let p = &self.params;
        if positions.len() != ct.c0.len() {
            return Err(HeError::Arity {
                what: "response positions",
                expected: ct.c0.len(),
                actual: positions.len(),
            });
        }
        let q0 = p.moduli[0];
        let lift = |c: u64, drop: u32| {
            if drop == 0 {
                c
            } else {
                (c << drop) + (1 << (drop - 1))
            }
        };
        let c1: Vec<u64> = ct
            .c1
            .iter()
            .map(|&c| lift(c, budget.c1_drop()) % q0)
            .collect();
        let mut c1 =
            Poly::try_convert_from(c1, &p.kept, false, Representation::PowerBasis).map_err(math)?;
        c1.change_representation(Representation::Ntt);
        c1 *= &self.kept_ntt;
        c1.change_representation(Representation::PowerBasis);
        let c1s = Vec::<u64>::from(&c1);
        let mask = (1u128 << decode_bits) - 1;
        Ok(positions
            .iter()
            .zip(&ct.c0)
            .map(|(&pos, &c)| {
                let v =
                    (u128::from(lift(c, budget.c0_drop())) + u128::from(c1s[pos])) % u128::from(q0);
                ((((v << decode_bits) + u128::from(q0 / 2)) / u128::from(q0)) & mask) as u64
            })
            .collect())
    }
}

/// The server's form of the client's public key `(p0, p1)`, both in NTT form.
pub struct PublicKey {
    p0: Poly,
    p1: Poly,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublicKey")
    }
}

impl PublicKey {
    /// Expands a received public key.
    ///
    /// # Errors
    /// [`HeError::Math`] only on an internal inconsistency.
    /// The public key serves every plaintext modulus of the same `N` and primes.
    pub fn new(params: &Params, key: &SeededCt) -> Result<Self, HeError> {
        let mut p0 = params.poly_from_rns(key.c0.clone())?;
        p0.change_representation(Representation::Ntt);
        Ok(PublicKey {
            p0,
            p1: key.c1(params),
        })
    }
}

/// A weight polynomial: centred signed coefficients, cached in NTT form.
pub struct Kernel(Poly);

impl fmt::Debug for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kernel")
    }
}

impl Kernel {
    /// Builds the kernel from `N` (or fewer) centred coefficients (not lifted to `[0, t)`:
    /// the product noise is then `≈ B_e·‖w‖₁`, `protocols.md` §3.4).
    ///
    /// # Errors
    /// [`HeError::Arity`] if there are more than `N` coefficients.
    pub fn new(params: &Params, coeffs: &[i64]) -> Result<Self, HeError> {
        if coeffs.len() > params.degree() {
            return Err(HeError::Arity {
                what: "kernel",
                expected: params.degree(),
                actual: coeffs.len(),
            });
        }
        Ok(Kernel(signed_poly(
            &params.full,
            coeffs,
            Representation::NttShoup,
        )?))
    }
}

/// A request ciphertext on the server, with the server's share added, in NTT form.
pub struct InputCt {
    c0: Poly,
    c1: Poly,
}

impl fmt::Debug for InputCt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InputCt")
    }
}

impl InputCt {
    /// Expands `ct` and adds the server's share `share` (values mod `t`, at most `N`).
    ///
    /// # Errors
    /// [`HeError::Arity`] if `share` has more than `N` values.
    pub fn new(params: &Params, ct: &SeededCt, share: Option<&[u64]>) -> Result<Self, HeError> {
        let n = params.degree();
        let mut rns = ct.c0.clone();
        if let Some(share) = share {
            if share.len() > n {
                return Err(HeError::Arity {
                    what: "server share",
                    expected: n,
                    actual: share.len(),
                });
            }
            let t_mask = (1u64 << params.he.plain_bits) - 1;
            params.add_scaled(
                &mut rns,
                share.iter().enumerate().map(|(i, &v)| (i, v & t_mask)),
            );
        }
        let mut c0 = params.poly_from_rns(rns)?;
        c0.change_representation(Representation::Ntt);
        Ok(InputCt {
            c0,
            c1: ct.c1(params),
        })
    }
}

/// A sum of ciphertext × kernel products, in NTT form.
pub struct Accumulator {
    c0: Poly,
    c1: Poly,
}

impl fmt::Debug for Accumulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Accumulator")
    }
}

impl Accumulator {
    /// `Σ ct_i ⊗ kernel_i` over `pairs`, with lazy modular reduction; the zero ciphertext if
    /// `pairs` is empty.
    ///
    /// # Errors
    /// [`HeError::Math`] only on an internal inconsistency.
    pub fn sum_products<'a, I>(params: &Params, pairs: I) -> Result<Self, HeError>
    where
        I: Iterator<Item = (&'a InputCt, &'a Kernel)> + Clone,
    {
        if pairs.clone().next().is_none() {
            return Ok(Accumulator {
                c0: Poly::zero(&params.full, Representation::Ntt),
                c1: Poly::zero(&params.full, Representation::Ntt),
            });
        }
        let kernels = pairs.clone().map(|(_, k)| &k.0);
        let c0 = dot_product(pairs.clone().map(|(c, _)| &c.c0), kernels.clone()).map_err(math)?;
        let c1 = dot_product(pairs.map(|(c, _)| &c.c1), kernels).map_err(math)?;
        Ok(Accumulator { c0, c1 })
    }

    /// Makes the sum safe to reveal at `positions` (circuit privacy, `docs/security.md`):
    /// 1. adds `Δ(plain)` (`(position, value mod t)`: bias minus the server's mask);
    /// 2. re-randomises with a fresh public-key encryption of zero (`u` ternary);
    /// 3. floods every needed `c0` coefficient with uniform noise on
    ///    `[−2^flood_bits, 2^flood_bits)`.
    ///
    /// # Errors
    /// [`HeError::Math`] only on an internal inconsistency.
    pub fn sanitize<R: RngCore + CryptoRng>(
        self,
        params: &Params,
        pk: &PublicKey,
        plain: &[(usize, u64)],
        positions: &[usize],
        budget: &HeBudget,
        rng: &mut R,
    ) -> Result<Sanitized, HeError> {
        let n = params.degree();
        let Accumulator { mut c0, mut c1 } = self;
        let u = signed_poly(&params.full, &ternary(n, rng), Representation::Ntt)?;
        c0 += &(&pk.p0 * &u);
        c1 += &(&pk.p1 * &u);
        c0.change_representation(Representation::PowerBasis);
        c1.change_representation(Representation::PowerBasis);
        c0 += &Poly::small(
            &params.full,
            Representation::PowerBasis,
            ERROR_VARIANCE,
            rng,
        )
        .map_err(math)?;
        c1 += &Poly::small(
            &params.full,
            Representation::PowerBasis,
            ERROR_VARIANCE,
            rng,
        )
        .map_err(math)?;
        let mut rns = vec![0u64; n * params.moduli.len()];
        let t_mask = (1u64 << params.he.plain_bits) - 1;
        params.add_scaled(&mut rns, plain.iter().map(|&(pos, v)| (pos, v & t_mask)));
        add_flood(params, &mut rns, positions, budget.flood_bits, rng);
        c0 += &params.poly_from_rns(rns)?;
        Ok(Sanitized { c0, c1 })
    }
}

/// A flooded, re-randomised ciphertext in power basis at the full modulus, ready to reveal.
pub struct Sanitized {
    c0: Poly,
    c1: Poly,
}

impl fmt::Debug for Sanitized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sanitized")
    }
}

impl Sanitized {
    /// Switches the modulus down to `q0`, both polynomials kept whole in power basis (public
    /// post-processing of the flooded ciphertext), ready for [`pack`] or
    /// [`Switched::into_response`].
    ///
    /// # Errors
    /// [`HeError::Math`] only on an internal inconsistency.
    pub fn switch(self, params: &Params) -> Result<Switched, HeError> {
        let Sanitized { mut c0, mut c1 } = self;
        for _ in 1..params.moduli.len() {
            c0.switch_down().map_err(math)?;
            c1.switch_down().map_err(math)?;
        }
        Ok(Switched {
            c0: Vec::<u64>::from(&c0),
            c1: Vec::<u64>::from(&c1),
        })
    }
}

/// A flooded ciphertext switched to `q0`: both polynomials whole, power basis (`N` values
/// each, reduced mod `q0`). Possibly the [`pack`] of several.
#[derive(Clone)]
pub struct Switched {
    c0: Vec<u64>,
    c1: Vec<u64>,
}

impl fmt::Debug for Switched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Switched")
    }
}

impl Switched {
    /// Keeps the `c0` coefficients at `positions`, in the given order, and all of `c1`,
    /// dropping their low bits.
    ///
    /// # Errors
    /// [`HeError::Position`] if a position is not below `N`, [`HeError::Arity`] if the
    /// ciphertext belongs to another ring degree.
    pub fn into_response(
        self,
        params: &Params,
        positions: &[usize],
        budget: &HeBudget,
    ) -> Result<ResponseCt, HeError> {
        let n = params.degree();
        if self.c0.len() != n {
            return Err(HeError::Arity {
                what: "switched ciphertext",
                expected: n,
                actual: self.c0.len(),
            });
        }
        if let Some(&bad) = positions.iter().find(|&&pos| pos >= n) {
            return Err(HeError::Position {
                position: bad,
                degree: n,
            });
        }
        Ok(ResponseCt {
            c0: positions
                .iter()
                .map(|&pos| self.c0[pos] >> budget.c0_drop())
                .collect(),
            c1: self.c1.iter().map(|&c| c >> budget.c1_drop()).collect(),
        })
    }
}

/// Adds uniform noise on `[−2^bits, 2^bits)` to the needed coefficients (RNS, every prime).
fn add_flood<R: RngCore + CryptoRng>(
    params: &Params,
    rns: &mut [u64],
    positions: &[usize],
    bits: u32,
    rng: &mut R,
) {
    let n = params.degree();
    let limbs = (bits as usize + 1).div_ceil(64);
    let top_bits = (bits + 1) as usize - 64 * (limbs - 1);
    let top_mask = if top_bits == 64 {
        u64::MAX
    } else {
        (1u64 << top_bits) - 1
    };
    let ops = params.full.moduli_operators();
    // 2^bits mod q_i, subtracted to centre the sample.
    let offset: Vec<u64> = ops
        .iter()
        .map(|op| (0..bits).fold(1u64, |a, _| op.add(a, a)))
        .collect();
    let mut x = vec![0u64; limbs];
    for &pos in positions {
        x.iter_mut().for_each(|l| *l = rng.next_u64());
        x[limbs - 1] &= top_mask;
        for (i, op) in ops.iter().enumerate() {
            let q = u128::from(**op);
            let r = x
                .iter()
                .rev()
                .fold(0u128, |r, &l| ((r << 64) | u128::from(l)) % q) as u64;
            let v = op.sub(r, offset[i]);
            rns[i * n + pos] = op.add(rns[i * n + pos], v);
        }
    }
}

/// A response ciphertext at `q0` after low-bit dropping: the needed `c0` coefficients at
/// `c0_bits` and all of `c1` at `c1_bits` ([`HeBudget`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseCt {
    c0: Vec<u64>,
    c1: Vec<u64>,
}

impl ResponseCt {
    /// Wire encoding: `c0` then `c1`, bit-packed, the last byte zero-padded.
    pub fn to_bytes(&self, budget: &HeBudget) -> Vec<u8> {
        let mut w = BitWriter::with_capacity(budget.response_ct_bytes(self.c0.len()));
        self.c0.iter().for_each(|&c| w.put(c, budget.c0_bits));
        self.c1.iter().for_each(|&c| w.put(c, budget.c1_bits));
        w.finish()
    }

    /// Decodes [`ResponseCt::to_bytes`] for a ciphertext with `useful` needed coefficients.
    ///
    /// # Errors
    /// [`HeError::Length`] for a wrong size.
    pub fn from_bytes(budget: &HeBudget, useful: usize, bytes: &[u8]) -> Result<Self, HeError> {
        let expected = budget.response_ct_bytes(useful);
        if bytes.len() != expected {
            return Err(HeError::Length {
                what: "response ciphertext",
                expected,
                actual: bytes.len(),
            });
        }
        let mut r = BitReader::new(bytes);
        let c0 = (0..useful).map(|_| r.get(budget.c0_bits)).collect();
        let c1 = (0..budget.degree).map(|_| r.get(budget.c1_bits)).collect();
        Ok(ResponseCt { c0, c1 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn params(n: usize, moduli: Vec<u32>, l: u32) -> Arc<Params> {
        Params::new(&HeParams {
            degree: n,
            moduli_bits: moduli,
            plain_bits: l,
        })
        .expect("valid parameters")
    }

    /// Encrypt, multiply by a centred kernel, respond, decrypt: the negacyclic product mod t.
    #[test]
    fn product_round_trip() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        for (n, moduli, l) in [
            (4096, vec![60, 49], 37),
            (2048, vec![54], 10),
            (8192, vec![50, 60, 60], 20),
        ] {
            let p = params(n, moduli, l);
            let t_mask = (1u64 << l) - 1;
            let sk = SecretKey::generate(&p, &mut rng).expect("key");
            let pk = PublicKey::new(&p, &sk.public_key(&mut rng).expect("pk")).expect("pk");
            let x: Vec<u64> = (0..n).map(|_| rng.next_u64() & t_mask).collect();
            let xs: Vec<u64> = (0..n).map(|_| rng.next_u64() & t_mask).collect();
            let w: Vec<i64> = (0..5).map(|i| i * 3 - 7).collect();
            let ct = sk.encrypt(&x, &mut rng).expect("enc");
            let bytes = ct.to_bytes(&p);
            let ct = SeededCt::from_bytes(&p, &bytes).expect("decode");
            let input = InputCt::new(&p, &ct, Some(&xs)).expect("input");
            let kernel = Kernel::new(&p, &w).expect("kernel");
            let acc =
                Accumulator::sum_products(&p, [(&input, &kernel)].into_iter()).expect("product");
            let budget = p.budget(l).expect("budget");
            let positions = [0usize, 5, n - 1];
            let plain = [(5usize, 3u64)];
            let resp = acc
                .sanitize(&p, &pk, &plain, &positions, &budget, &mut rng)
                .expect("sanitize")
                .switch(&p)
                .expect("switch")
                .into_response(&p, &positions, &budget)
                .expect("respond");
            let bytes = resp.to_bytes(&budget);
            assert_eq!(bytes.len(), budget.response_ct_bytes(3));
            let resp = ResponseCt::from_bytes(&budget, 3, &bytes).expect("decode");
            let got = sk.decrypt(&resp, &positions, &budget, l).expect("decrypt");
            let want: Vec<u64> = positions
                .iter()
                .map(|&i| {
                    let mut acc: i128 = if i == 5 { 3 } else { 0 };
                    for (j, &wj) in w.iter().enumerate() {
                        let xv = i128::from((x[(i + n - j) % n] + xs[(i + n - j) % n]) & t_mask);
                        acc += if j <= i {
                            xv * i128::from(wj)
                        } else {
                            -xv * i128::from(wj)
                        };
                    }
                    (acc as u64) & t_mask
                })
                .collect();
            assert_eq!(got, want, "N = {n}");
        }
    }

    /// The decryption error of a response stays within the budget's analytic bound
    /// `(5/16)·2^(B0−dec)` (and so below `q0/(2t)`), with a heavy kernel and many positions.
    #[test]
    fn noise_stays_inside_the_margin() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        for (n, moduli, l) in [
            (4096, vec![60, 49], 37),
            (4096, vec![34, 36], 16),
            (2048, vec![54], 12),
        ] {
            let p = params(n, moduli.clone(), l);
            let moduli: Vec<u32> = moduli;
            let t_mask = (1u64 << l) - 1;
            let sk = SecretKey::generate(&p, &mut rng).expect("key");
            let pk = PublicKey::new(&p, &sk.public_key(&mut rng).expect("pk")).expect("pk");
            let budget = p.budget(l).expect("budget");
            let x: Vec<u64> = (0..n).map(|_| rng.next_u64() & t_mask).collect();
            let w: Vec<i64> = (0..n).map(|_| rng.random_range(-128..128)).collect();
            let input =
                InputCt::new(&p, &sk.encrypt(&x, &mut rng).expect("enc"), Some(&x)).expect("input");
            let kernel = Kernel::new(&p, &w).expect("kernel");
            let acc =
                Accumulator::sum_products(&p, [(&input, &kernel)].into_iter()).expect("product");
            let positions: Vec<usize> = (0..n).collect();
            let resp = acc
                .sanitize(&p, &pk, &[], &positions, &budget, &mut rng)
                .expect("sanitize")
                .switch(&p)
                .expect("switch")
                .into_response(&p, &positions, &budget)
                .expect("respond");
            // Decrypt twice: at 2^dec (the message) and at 2^(dec+guard) to read the error.
            let guard = 60 - l;
            let fine = sk
                .decrypt(&resp, &positions, &budget, l + guard)
                .expect("decrypt");
            let coarse = sk.decrypt(&resp, &positions, &budget, l).expect("decrypt");
            let step = 1i64 << guard;
            let max_err = fine
                .iter()
                .zip(&coarse)
                .map(|(&f, &c)| {
                    let diff = (f as i64 - ((c as i64) << guard)).rem_euclid(step << l);
                    let diff = if diff >= (step << l) / 2 {
                        diff - (step << l)
                    } else {
                        diff
                    };
                    diff.abs()
                })
                .max()
                .unwrap_or(0);
            // The budget bounds the error by (5/16)·2^(B0−dec) ≤ (1/3) of a plaintext step.
            assert!(
                max_err * 3 < step,
                "N = {n}: error {max_err} of a step {step}"
            );
            let margin = (step as f64 / 2.0 / max_err.max(1) as f64).log2();
            eprintln!(
                "N = {n}, q = {moduli:?}, t = 2^{l}: max error 2^{:.1} of a step, margin {margin:.1} bits",
                (max_err.max(1) as f64 / step as f64).log2()
            );
        }
    }

    /// One secret and public key serve two plaintext moduli of the same `(N, q)`.
    #[test]
    fn key_serves_other_plaintext_moduli() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let p37 = params(4096, vec![60, 49], 37);
        let p12 = params(4096, vec![60, 49], 12);
        let sk37 = SecretKey::generate(&p37, &mut rng).expect("key");
        let pk_msg = sk37.public_key(&mut rng).expect("pk");
        let sk12 = sk37.with_params(&p12).expect("same ring");
        let pk12 = PublicKey::new(&p12, &pk_msg).expect("pk");
        let budget = p12.budget(12).expect("budget");
        let input = InputCt::new(
            &p12,
            &sk12.encrypt(&[4095, 7], &mut rng).expect("enc"),
            None,
        )
        .expect("input");
        let kernel = Kernel::new(&p12, &[3]).expect("kernel");
        let resp = Accumulator::sum_products(&p12, [(&input, &kernel)].into_iter())
            .expect("product")
            .sanitize(&p12, &pk12, &[], &[0, 1], &budget, &mut rng)
            .expect("sanitize")
            .switch(&p12)
            .expect("switch")
            .into_response(&p12, &[0, 1], &budget)
            .expect("respond");
        assert_eq!(
            sk12.decrypt(&resp, &[0, 1], &budget, 12).expect("decrypt"),
            vec![4093, 21]
        );
        let other = params(4096, vec![50, 49], 12);
        assert!(matches!(
            sk37.with_params(&other),
            Err(HeError::ParamsMismatch)
        ));
    }

    #[test]
    fn rejects_bad_lengths_and_unreduced() {
        let p = params(2048, vec![54], 10);
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let sk = SecretKey::generate(&p, &mut rng).expect("key");
        let bytes = sk.encrypt(&[1, 2, 3], &mut rng).expect("enc").to_bytes(&p);
        let err = SeededCt::from_bytes(&p, &bytes[1..]).expect_err("short");
        assert!(
            matches!(err, HeError::Length { expected, actual, .. } if expected == bytes.len() && actual == bytes.len() - 1)
        );
        let mut bad = bytes.clone();
        bad[..7].iter_mut().for_each(|b| *b = 0xff);
        assert!(matches!(
            SeededCt::from_bytes(&p, &bad),
            Err(HeError::Unreduced { index: 0, .. })
        ));
        assert_eq!(format!("{sk:?}"), "SecretKey(<redacted>)");
    }
}
