//! Response packing (CDKS 2020 `PackRLWEs`, ePrint 2020/015 Alg. 2, generalised to a stride as
//! in BumbleBee): the server merges `n = 2^k` switched responses whose needed coefficients sit
//! at the multiples of a power-of-two stride `S ≥ n` into one ciphertext at `q0`; member `j`'s
//! coefficient at `p` lands at `p + j·S/n` ([`crate::params::he::pack_offset`]). It runs after
//! the flood and the modulus switch, so it is public post-processing of flooded ciphertexts
//! (`docs/security.md`). Sizes, exponents and the noise bound: `crate::params::he`, section
//! "Response packing".
//!
//! Everything is at the kept prime `q0`, `R = Z_q0[X]/(X^N + 1)`, `τ_g(a)(X) = a(X^g)`.
//! * Galois key for `g`: `d = GALOIS_DIGITS` pairs `(k0_i, a_i) = (−a_i·s + e_i + 2^(b·i)·τ_g(s),
//!   a_i)`, `b = ⌈B0/d⌉`, `a_i` expanded from a seed, `e_i` fresh errors.
//! * Key switch of `(c0, c1)` decrypting under `τ_g(s)`: split `c1 = Σ 2^(b·i)·δ_i` into
//!   unsigned digits and return `(c0 + Σ δ_i·k0_i, Σ δ_i·a_i)`, which decrypts under `s` with the
//!   extra error `Σ δ_i·e_i`.
//! * Pack: scale every member by `n^{-1}`, then recursively `pack(v) = A + switch_g(τ_g(B))`
//!   with `E`, `O` the packs of the even and odd members, `s = S/|v|`, `g = N/s + 1`,
//!   `T = X^s·O`, `A = E + T`, `B = E − T`: `τ_g` fixes the even multiples of `s` and negates
//!   the odd ones, so at every multiple of `s` the sum is exactly `2E` (even) or `2T` (odd).

use std::fmt;
use std::sync::Arc;

use fhe_math::rq::traits::TryConvertFrom;
use fhe_math::rq::{Context, Poly, Representation, dot_product};
use fhe_math::zq::Modulus;
use rand::{CryptoRng, RngCore};

use super::wire::{BitReader, BitWriter};
use super::{ERROR_VARIANCE, HeError, Params, SecretKey, Switched, math};
use crate::params::he::{
    GALOIS_DIGITS, SEED_BYTES, galois_digit_bits, galois_key_bytes, pack_exponents,
};

/// One digit of a seeded Galois key: `k0_i` in power basis and the seed of `a_i`.
#[derive(Clone, PartialEq, Eq)]
struct SeededDigit {
    k0: Vec<u64>,
    seed: [u8; SEED_BYTES],
}

/// The client's Galois keys for a list of exponents, as sent: per exponent
/// [`GALOIS_DIGITS`] digits, each `k0_i` (power basis at `q0`) and the seed of `a_i`.
#[derive(Clone, PartialEq, Eq)]
pub struct SeededGaloisKeys {
    exponents: Vec<usize>,
    /// Exponent-major, [`GALOIS_DIGITS`] per exponent.
    digits: Vec<SeededDigit>,
}

impl fmt::Debug for SeededGaloisKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeededGaloisKeys")
            .field("exponents", &self.exponents)
            .finish_non_exhaustive()
    }
}

/// Rejects an exponent that is even or not below `2N`.
fn check_exponents(exponents: &[usize], degree: usize) -> Result<(), HeError> {
    match exponents.iter().find(|&&g| g % 2 == 0 || g >= 2 * degree) {
        Some(&exponent) => Err(HeError::GaloisExponent { exponent, degree }),
        None => Ok(()),
    }
}

/// The power-basis polynomial `Σ v_j·X^f(j)` (negacyclic: `X^N = −1`), for an `f` that permutes
/// the exponents modulo `N` (`τ_g` with `f(j) = j·g`, a shift by `X^s` with `f(j) = j + s`).
fn map_monomials(op: &Modulus, v: &[u64], f: impl Fn(usize) -> usize) -> Vec<u64> {
    let n = v.len();
    let mut out = vec![0u64; n];
    for (j, &c) in v.iter().enumerate() {
        let k = f(j) % (2 * n);
        if k < n {
            out[k] = c;
        } else {
            out[k - n] = op.neg(c);
        }
    }
    out
}

/// Overwrites secret-derived coefficients (best effort, like [`SecretKey`]'s drop).
fn wipe(v: &mut [u64]) {
    v.iter_mut().for_each(|c| *c = 0);
    std::hint::black_box(v);
}

impl SecretKey {
    /// Galois keys for `exponents` (odd, below `2N`), at the kept prime `q0`: they serve every
    /// plaintext modulus of the same `N` and `q0`.
    ///
    /// # Errors
    /// [`HeError::GaloisExponent`] for an even exponent or one not below `2N`.
    pub fn galois_keys<R: RngCore + CryptoRng>(
        &self,
        exponents: &[usize],
        rng: &mut R,
    ) -> Result<SeededGaloisKeys, HeError> {
        let p = &self.params;
        check_exponents(exponents, p.degree())?;
        let op = &p.kept.moduli_operators()[0];
        let bits = galois_digit_bits(p.he.moduli_bits[0]);
        let mut s = op.reduce_vec_i64(&self.coeffs);
        let mut digits = Vec::with_capacity(exponents.len() * GALOIS_DIGITS as usize);
        for &g in exponents {
            let mut s_g = map_monomials(op, &s, |j| j * g);
            for i in 0..GALOIS_DIGITS {
                let mut seed = [0u8; SEED_BYTES];
                rng.fill_bytes(&mut seed);
                let a = Poly::random_from_seed(&p.kept, Representation::Ntt, seed);
                let mut k0 = -&(&a * &self.kept_ntt);
                k0.change_representation(Representation::PowerBasis);
                k0 += &Poly::small(&p.kept, Representation::PowerBasis, ERROR_VARIANCE, rng)
                    .map_err(math)?;
                let mut k0 = Vec::<u64>::from(&k0);
                let gadget = op.reduce(1u64 << (bits * i));
                for (k, &sg) in k0.iter_mut().zip(&s_g) {
                    *k = op.add(*k, op.mul(sg, gadget));
                }
                digits.push(SeededDigit { k0, seed });
            }
            wipe(&mut s_g);
        }
        wipe(&mut s);
        Ok(SeededGaloisKeys {
            exponents: exponents.to_vec(),
            digits,
        })
    }
}

impl SeededGaloisKeys {
    /// The exponents, in the order of the keys.
    pub fn exponents(&self) -> &[usize] {
        &self.exponents
    }

    /// Wire encoding: for each exponent in order, for each digit, `k0_i` at `B0` bits per
    /// coefficient (padded to a byte), then its seed; [`galois_key_bytes`] per exponent.
    pub fn to_bytes(&self, params: &Params) -> Vec<u8> {
        let (n, b0) = (params.degree(), params.he.moduli_bits[0]);
        let mut bytes = Vec::with_capacity(self.exponents.len() * galois_key_bytes(n, b0));
        for digit in &self.digits {
            let mut w = BitWriter::with_capacity((n * b0 as usize).div_ceil(8));
            digit.k0.iter().for_each(|&c| w.put(c, b0));
            bytes.extend_from_slice(&w.finish());
            bytes.extend_from_slice(&digit.seed);
        }
        bytes
    }

    /// Decodes [`SeededGaloisKeys::to_bytes`] for keys of `exponents`.
    ///
    /// # Errors
    /// [`HeError::GaloisExponent`] for an invalid exponent, [`HeError::Length`] for a wrong
    /// size, [`HeError::Unreduced`] for a coefficient not below `q0` (its index counts every
    /// `k0` coefficient before it).
    pub fn from_bytes(params: &Params, exponents: &[usize], bytes: &[u8]) -> Result<Self, HeError> {
        let (n, b0, q0) = (params.degree(), params.he.moduli_bits[0], params.moduli[0]);
        check_exponents(exponents, n)?;
        let expected = exponents.len() * galois_key_bytes(n, b0);
        if bytes.len() != expected {
            return Err(HeError::Length {
                what: "Galois keys",
                expected,
                actual: bytes.len(),
            });
        }
        let k0_len = (n * b0 as usize).div_ceil(8);
        let digits = bytes
            .chunks_exact(k0_len + SEED_BYTES)
            .enumerate()
            .map(|(d, chunk)| {
                let mut r = BitReader::new(&chunk[..k0_len]);
                let k0 = (0..n)
                    .map(|j| match r.get(b0) {
                        c if c < q0 => Ok(c),
                        _ => Err(HeError::Unreduced {
                            what: "Galois keys",
                            index: d * n + j,
                        }),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let mut seed = [0u8; SEED_BYTES];
                seed.copy_from_slice(&chunk[k0_len..]);
                Ok(SeededDigit { k0, seed })
            })
            .collect::<Result<Vec<_>, HeError>>()?;
        Ok(SeededGaloisKeys {
            exponents: exponents.to_vec(),
            digits,
        })
    }
}

/// The key of one exponent, both halves of every digit in NTT form.
struct GaloisKey {
    exponent: usize,
    k0: Vec<Poly>,
    a: Vec<Poly>,
}

/// The server's form of the client's Galois keys: key polynomials expanded in NTT form at
/// `q0`, looked up by exponent. `Debug` prints the exponents only.
pub struct GaloisKeys {
    kept: Arc<Context>,
    degree: usize,
    digit_bits: u32,
    keys: Vec<GaloisKey>,
}

impl fmt::Debug for GaloisKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exponents: Vec<usize> = self.keys.iter().map(|k| k.exponent).collect();
        f.debug_struct("GaloisKeys")
            .field("exponents", &exponents)
            .finish_non_exhaustive()
    }
}

impl GaloisKeys {
    /// Expands received keys; they serve every plaintext modulus of the same `N` and `q0`.
    ///
    /// # Errors
    /// [`HeError::ParamsMismatch`] if the keys were decoded for another ring degree or prime.
    pub fn new(params: &Params, keys: &SeededGaloisKeys) -> Result<Self, HeError> {
        let (n, q0) = (params.degree(), params.moduli[0]);
        let foreign = |d: &SeededDigit| d.k0.len() != n || d.k0.iter().any(|&c| c >= q0);
        if keys.digits.iter().any(foreign) {
            return Err(HeError::ParamsMismatch);
        }
        let keys = keys
            .exponents
            .iter()
            .zip(keys.digits.chunks_exact(GALOIS_DIGITS as usize))
            .map(|(&exponent, digits)| {
                let k0 = digits
                    .iter()
                    .map(|d| {
                        let mut k0 = Poly::try_convert_from(
                            d.k0.clone(),
                            &params.kept,
                            false,
                            Representation::PowerBasis,
                        )
                        .map_err(math)?;
                        k0.change_representation(Representation::Ntt);
                        Ok(k0)
                    })
                    .collect::<Result<_, HeError>>()?;
                let a = digits
                    .iter()
                    .map(|d| Poly::random_from_seed(&params.kept, Representation::Ntt, d.seed))
                    .collect();
                Ok(GaloisKey { exponent, k0, a })
            })
            .collect::<Result<_, HeError>>()?;
        Ok(GaloisKeys {
            kept: params.kept.clone(),
            degree: n,
            digit_bits: galois_digit_bits(params.he.moduli_bits[0]),
            keys,
        })
    }

    fn get(&self, exponent: usize) -> Result<&GaloisKey, HeError> {
        self.keys
            .iter()
            .find(|k| k.exponent == exponent)
            .ok_or(HeError::MissingGaloisKey { exponent })
    }

    fn modulus(&self) -> &Modulus {
        &self.kept.moduli_operators()[0]
    }

    /// Switches `ct`, which decrypts under `τ_g(s)`, to decrypt under `s`: one forward NTT per
    /// digit of `c1`, two inverse NTTs.
    fn key_switch(&self, key: &GaloisKey, ct: Switched) -> Result<Switched, HeError> {
        let bits = self.digit_bits;
        let mask = (1u64 << bits) - 1;
        let digits = (0..GALOIS_DIGITS)
            .map(|i| {
                let digit: Vec<u64> = ct.c1.iter().map(|&c| (c >> (bits * i)) & mask).collect();
                let mut digit =
                    Poly::try_convert_from(digit, &self.kept, false, Representation::PowerBasis)
                        .map_err(math)?;
                digit.change_representation(Representation::Ntt);
                Ok(digit)
            })
            .collect::<Result<Vec<_>, HeError>>()?;
        let inner = |key: &[Poly]| -> Result<Vec<u64>, HeError> {
            let mut p = dot_product(digits.iter(), key.iter()).map_err(math)?;
            p.change_representation(Representation::PowerBasis);
            Ok(Vec::<u64>::from(&p))
        };
        let mut c0 = ct.c0;
        self.modulus().add_vec(&mut c0, &inner(&key.k0)?);
        Ok(Switched {
            c0,
            c1: inner(&key.a)?,
        })
    }
}

impl Switched {
    fn zero(degree: usize) -> Self {
        Switched {
            c0: vec![0; degree],
            c1: vec![0; degree],
        }
    }

    fn map_monomials(&self, op: &Modulus, f: impl Fn(usize) -> usize + Copy) -> Self {
        Switched {
            c0: map_monomials(op, &self.c0, f),
            c1: map_monomials(op, &self.c1, f),
        }
    }

    fn add_assign(&mut self, op: &Modulus, other: &Switched) {
        op.add_vec(&mut self.c0, &other.c0);
        op.add_vec(&mut self.c1, &other.c1);
    }

    fn sub_assign(&mut self, op: &Modulus, other: &Switched) {
        op.sub_vec(&mut self.c0, &other.c0);
        op.sub_vec(&mut self.c1, &other.c1);
    }
}

/// Packs `members` (`None`: the zero ciphertext, e.g. padding), each needed at the multiples of
/// `stride`, into one ciphertext: member `j`'s coefficient at a multiple `p` of `stride` lands
/// at `p + j·stride/members`, exactly, plus at most
/// [`crate::params::he::pack_noise`] of error. Needs the keys of
/// [`crate::params::he::pack_exponents`]. Sequential (callers run packs in parallel).
///
/// # Errors
/// [`HeError::PackShape`] unless `members.len()` and `stride` are powers of two with
/// `members.len() ≤ stride ≤ N`; [`HeError::MissingGaloisKey`] for a missing exponent;
/// [`HeError::ParamsMismatch`] for keys of another `N` or `q0`; [`HeError::Arity`] for a
/// member of another ring degree.
pub fn pack(
    params: &Params,
    keys: &GaloisKeys,
    mut members: Vec<Option<Switched>>,
    stride: usize,
) -> Result<Switched, HeError> {
    let (n, count) = (params.degree(), members.len());
    if !(count.is_power_of_two() && stride.is_power_of_two() && count <= stride && stride <= n) {
        return Err(HeError::PackShape {
            members: count,
            stride,
            degree: n,
        });
    }
    if keys.degree != n || keys.kept.moduli()[0] != params.moduli[0] {
        return Err(HeError::ParamsMismatch);
    }
    if let Some(m) = members.iter().flatten().find(|m| m.c0.len() != n) {
        return Err(HeError::Arity {
            what: "packed ciphertext",
            expected: n,
            actual: m.c0.len(),
        });
    }
    let levels = pack_exponents(n, stride, count)
        .into_iter()
        .map(|g| keys.get(g))
        .collect::<Result<Vec<_>, _>>()?;
    if count > 1 {
        let op = keys.modulus();
        let inv = op
            .inv(op.reduce(count as u64))
            .ok_or_else(|| HeError::Math("member count not invertible mod q0".into()))?;
        for m in members.iter_mut().flatten() {
            op.scalar_mul_vec(&mut m.c0, inv);
            op.scalar_mul_vec(&mut m.c1, inv);
        }
    }
    Ok(pack_tree(keys, &levels, members, stride)?.unwrap_or_else(|| Switched::zero(n)))
}

/// The recursion of [`pack`] on already scaled members; `levels[l]` is the key of the nodes
/// with `2^(l+1)` members. `None` when every member is.
fn pack_tree(
    keys: &GaloisKeys,
    levels: &[&GaloisKey],
    members: Vec<Option<Switched>>,
    stride: usize,
) -> Result<Option<Switched>, HeError> {
    let count = members.len();
    if count == 1 {
        return Ok(members.into_iter().next().flatten());
    }
    let (even, odd): (Vec<_>, Vec<_>) = members
        .into_iter()
        .enumerate()
        .partition(|(j, _)| j % 2 == 0);
    let strip = |v: Vec<(usize, Option<Switched>)>| v.into_iter().map(|(_, m)| m).collect();
    let even = pack_tree(keys, levels, strip(even), stride)?;
    let odd = pack_tree(keys, levels, strip(odd), stride)?;
    if even.is_none() && odd.is_none() {
        return Ok(None);
    }
    let op = keys.modulus();
    let n = keys.degree;
    let key = levels[count.trailing_zeros() as usize - 1];
    let shift = stride / count;
    let mut sum = even.unwrap_or_else(|| Switched::zero(n));
    let mut diff = sum.clone();
    if let Some(odd) = odd {
        let shifted = odd.map_monomials(op, |j| j + shift);
        sum.add_assign(op, &shifted);
        diff.sub_assign(op, &shifted);
    }
    let g = key.exponent;
    let switched = keys.key_switch(key, diff.map_monomials(op, |j| j * g))?;
    sum.add_assign(op, &switched);
    Ok(Some(sum))
}

#[cfg(test)]
mod tests {
    use super::super::{Accumulator, InputCt, Kernel, PublicKey};
    use super::*;
    use crate::params::he::{pack_noise, pack_offset};
    use crate::plan::HeParams;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha20Rng;

    fn params(n: usize, moduli: &[u32], l: u32) -> Arc<Params> {
        Params::new(&HeParams {
            degree: n,
            moduli_bits: moduli.to_vec(),
            plain_bits: l,
        })
        .expect("valid parameters")
    }

    /// The client's keys and the server's view of them.
    struct Keys {
        sk: SecretKey,
        pk: PublicKey,
        galois: GaloisKeys,
    }

    fn keys(p: &Arc<Params>, exponents: &[usize], rng: &mut ChaCha20Rng) -> Keys {
        let sk = SecretKey::generate(p, rng).expect("key");
        let pk = PublicKey::new(p, &sk.public_key(rng).expect("pk")).expect("pk");
        let seeded = sk.galois_keys(exponents, rng).expect("galois keys");
        let galois = GaloisKeys::new(p, &seeded).expect("expand");
        Keys { sk, pk, galois }
    }

    /// A switched response to `x ⊗ kernel` plus `Δ(plain)`, flooded at the multiples of
    /// `stride`.
    fn member(
        p: &Params,
        k: &Keys,
        x: &[u64],
        kernel: &[i64],
        plain: &[(usize, u64)],
        stride: usize,
        rng: &mut ChaCha20Rng,
    ) -> Switched {
        let budget = p.budget(p.he().plain_bits).expect("budget");
        let input = InputCt::new(p, &k.sk.encrypt(x, rng).expect("enc"), None).expect("input");
        let kernel = Kernel::new(p, kernel).expect("kernel");
        let positions: Vec<usize> = (0..p.degree()).step_by(stride).collect();
        Accumulator::sum_products(p, [(&input, &kernel)].into_iter())
            .expect("product")
            .sanitize(p, &k.pk, plain, &positions, &budget, rng)
            .expect("sanitize")
            .switch(p)
            .expect("switch")
    }

    /// `c0 + c1·s mod q0`, power basis.
    fn phase(sk: &SecretKey, ct: &Switched) -> Vec<u64> {
        let p = sk.params();
        let mut c1 =
            Poly::try_convert_from(ct.c1.clone(), &p.kept, false, Representation::PowerBasis)
                .expect("poly");
        c1.change_representation(Representation::Ntt);
        c1 *= &sk.kept_ntt;
        c1.change_representation(Representation::PowerBasis);
        let mut v = Vec::<u64>::from(&c1);
        p.kept.moduli_operators()[0].add_vec(&mut v, &ct.c0);
        v
    }

    /// Packs of 1 to 8 members at strides 8 and 16 (one member absent) decrypt, at the positions
    /// `p + pack_offset(j)` in member-major order, to every member's plaintext plus the server's
    /// `plain`, exactly.
    #[test]
    fn pack_round_trip() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        for (n, moduli, l, cases) in [
            (
                4096,
                &[60, 49][..],
                17,
                &[(1, 8), (2, 8), (4, 8), (8, 8), (2, 16), (4, 16), (8, 16)][..],
            ),
            (2048, &[54][..], 10, &[(4, 8)][..]),
        ] {
            let p = params(n, moduli, l);
            let t_mask = (1u64 << l) - 1;
            let mut exponents: Vec<usize> = cases
                .iter()
                .flat_map(|&(members, stride)| pack_exponents(n, stride, members))
                .collect();
            exponents.sort_unstable();
            exponents.dedup();
            let k = keys(&p, &exponents, &mut rng);
            let budget = p.budget(l).expect("budget");
            for &(members, stride) in cases {
                for absent in [None, Some(members - 1)].into_iter().take(members.min(2)) {
                    let plains: Vec<Vec<u64>> = (0..members)
                        .map(|_| (0..n).map(|_| rng.next_u64() & t_mask).collect())
                        .collect();
                    let server: Vec<(usize, u64)> = (0..n)
                        .step_by(stride)
                        .map(|pos| (pos, rng.next_u64() & t_mask))
                        .collect();
                    let cts = plains
                        .iter()
                        .enumerate()
                        .map(|(j, x)| {
                            (Some(j) != absent)
                                .then(|| member(&p, &k, x, &[1], &server, stride, &mut rng))
                        })
                        .collect();
                    let packed = pack(&p, &k.galois, cts, stride).expect("pack");
                    let mut positions = Vec::new();
                    let mut want = Vec::new();
                    for (j, x) in plains.iter().enumerate() {
                        for &(pos, v) in &server {
                            positions.push(pos + pack_offset(stride, members, j));
                            want.push(if Some(j) == absent {
                                0
                            } else {
                                (x[pos] + v) & t_mask
                            });
                        }
                    }
                    let resp = packed
                        .into_response(&p, &positions, &budget)
                        .expect("respond");
                    let got =
                        k.sk.decrypt(&resp, &positions, &budget, l)
                            .expect("decrypt");
                    assert_eq!(
                        got, want,
                        "N = {n}, {members} members at stride {stride}, absent {absent:?}"
                    );
                }
            }
        }
    }

    /// The error a pack adds at the packed positions stays within `pack_noise`, and the whole
    /// decryption error within the budget with packing, `(12/32)·2^(B0−dec)`.
    #[test]
    fn pack_noise_stays_inside_the_budget() {
        let mut rng = ChaCha20Rng::seed_from_u64(13);
        let (n, l, members, stride) = (4096, 17, 32, 32);
        let p = params(n, &[60, 49], l);
        let k = keys(&p, &pack_exponents(n, stride, members), &mut rng);
        let budget = p.budget(l).expect("budget");
        assert!(crate::params::he::pack_fits(&budget, members));
        let t_mask = (1u64 << l) - 1;
        let cts: Vec<Switched> = (0..members)
            .map(|_| {
                let x: Vec<u64> = (0..n).map(|_| rng.next_u64() & t_mask).collect();
                let w: Vec<i64> = (0..n).map(|_| rng.random_range(-128..128)).collect();
                member(&p, &k, &x, &w, &[], stride, &mut rng)
            })
            .collect();
        let phases: Vec<Vec<u64>> = cts.iter().map(|c| phase(&k.sk, c)).collect();
        let packed =
            pack(&p, &k.galois, cts.into_iter().map(Some).collect(), stride).expect("pack");
        let packed_phase = phase(&k.sk, &packed);
        let q0 = p.moduli()[0];
        let mut positions = Vec::new();
        let mut max_pack_err = 0u64;
        for (j, ph) in phases.iter().enumerate() {
            for pos in (0..n).step_by(stride) {
                let at = pos + pack_offset(stride, members, j);
                positions.push(at);
                let d = (packed_phase[at] + q0 - ph[pos]) % q0;
                max_pack_err = max_pack_err.max(d.min(q0 - d));
            }
        }
        let bound = pack_noise(n, 60, members);
        eprintln!(
            "pack of {members}: key-switch error 2^{:.1}, bound 2^{:.1}",
            (max_pack_err.max(1) as f64).log2(),
            (bound as f64).log2()
        );
        assert!(u128::from(max_pack_err) <= bound);
        // The whole error, read by decrypting at 2^60 as in `noise_stays_inside_the_margin`.
        let resp = packed
            .into_response(&p, &positions, &budget)
            .expect("respond");
        let guard = 60 - l;
        let fine =
            k.sk.decrypt(&resp, &positions, &budget, 60)
                .expect("decrypt");
        let coarse =
            k.sk.decrypt(&resp, &positions, &budget, l)
                .expect("decrypt");
        let step = 1i128 << guard;
        let max_err = fine
            .iter()
            .zip(&coarse)
            .map(|(&f, &c)| {
                let diff = (i128::from(f) - (i128::from(c) << guard)).rem_euclid(step << l);
                (if diff >= (step << l) / 2 {
                    diff - (step << l)
                } else {
                    diff
                })
                .abs()
            })
            .max()
            .unwrap_or(0);
        // (12/32)·2^(B0−dec) in units of q0/2^60 ≤ 16/15: at most 2/5 of a step.
        assert!(max_err * 5 <= step * 2, "error {max_err} of a step {step}");
        eprintln!(
            "packed response: max error 2^{:.1} of a step, margin {:.1} bits",
            (max_err.max(1) as f64 / step as f64).log2(),
            (step as f64 / 2.0 / max_err.max(1) as f64).log2()
        );
    }

    #[test]
    fn galois_keys_wire_round_trip_and_errors() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let p = params(2048, &[54], 10);
        let sk = SecretKey::generate(&p, &mut rng).expect("key");
        let exponents = [5, 2049];
        let keys = sk.galois_keys(&exponents, &mut rng).expect("keys");
        let bytes = keys.to_bytes(&p);
        assert_eq!(bytes.len(), 2 * galois_key_bytes(2048, 54));
        assert_eq!(
            SeededGaloisKeys::from_bytes(&p, &exponents, &bytes).expect("decode"),
            keys
        );
        assert_eq!(
            format!("{keys:?}"),
            "SeededGaloisKeys { exponents: [5, 2049], .. }"
        );
        let err = SeededGaloisKeys::from_bytes(&p, &exponents, &bytes[1..]).expect_err("short");
        assert!(
            matches!(err, HeError::Length { expected, actual, .. } if expected == bytes.len() && actual == bytes.len() - 1)
        );
        let err = SeededGaloisKeys::from_bytes(&p, &exponents[..1], &bytes).expect_err("long");
        assert!(matches!(err, HeError::Length { .. }));
        // Digit 1 of the first exponent starts after one k0 and one seed.
        let mut bad = bytes.clone();
        let digit = 2048 * 54 / 8 + SEED_BYTES;
        bad[digit..digit + 7].iter_mut().for_each(|b| *b = 0xff);
        assert!(matches!(
            SeededGaloisKeys::from_bytes(&p, &exponents, &bad),
            Err(HeError::Unreduced { index: 2048, .. })
        ));
        for bad in [4, 4097, 4096] {
            assert!(matches!(
                sk.galois_keys(&[3, bad], &mut rng),
                Err(HeError::GaloisExponent { exponent, degree: 2048 }) if exponent == bad
            ));
            assert!(matches!(
                SeededGaloisKeys::from_bytes(&p, &[bad], &bytes[..bytes.len() / 2]),
                Err(HeError::GaloisExponent { .. })
            ));
        }
        let galois = GaloisKeys::new(&p, &keys).expect("expand");
        assert_eq!(
            format!("{galois:?}"),
            "GaloisKeys { exponents: [5, 2049], .. }"
        );
        // Keys of another prime are refused.
        let other = params(2048, &[50], 10);
        assert!(matches!(
            GaloisKeys::new(&other, &keys),
            Err(HeError::ParamsMismatch)
        ));
        assert!(matches!(
            pack(&other, &galois, vec![None], 1),
            Err(HeError::ParamsMismatch)
        ));
    }

    #[test]
    fn pack_rejects_bad_shapes_and_missing_keys() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let p = params(2048, &[54], 10);
        // The keys of a pack of two at stride 8 only.
        let k = keys(&p, &pack_exponents(2048, 8, 2), &mut rng);
        assert_eq!(pack_exponents(2048, 8, 2), vec![513]);
        let zero = || vec![None; 4];
        let shape = |members: usize, stride: usize| {
            matches!(
                pack(&p, &k.galois, vec![None; members], stride),
                Err(HeError::PackShape { members: m, stride: s, degree: 2048 }) if m == members && s == stride
            )
        };
        assert!(shape(0, 8));
        assert!(shape(3, 8));
        assert!(shape(16, 8));
        assert!(shape(2, 12));
        assert!(shape(2, 4096));
        assert!(matches!(
            pack(&p, &k.galois, zero(), 8),
            Err(HeError::MissingGaloisKey { exponent: 1025 })
        ));
        assert!(matches!(
            pack(&p, &k.galois, vec![None; 2], 16),
            Err(HeError::MissingGaloisKey { exponent: 257 })
        ));
        // Absent members only: the zero ciphertext.
        let packed = pack(&p, &k.galois, vec![None; 2], 8).expect("pack");
        assert!(packed.c0.iter().chain(&packed.c1).all(|&c| c == 0));
    }
}
