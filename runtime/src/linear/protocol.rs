//! The client and server of one linear layer and their messages.

use std::sync::Arc;

use rand::{CryptoRng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;

use crate::he::{
    Accumulator, GaloisKeys, InputCt, Kernel, Params, PublicKey, ResponseCt, SecretKey, SeededCt,
    Switched, pack,
};
use crate::params::conv::ConvGeometry;
use crate::params::he::{ERROR_BOUND, LinearOutput, SHARE_NOISE_BOUND};
use crate::plan::{LayerWeights, LinearProtocol};

use super::LinearError;
use super::layout::{Layout, NO_ELEMENT, OutCt, ResponseLayout};

/// The client's query: one seeded ciphertext per request tile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    cts: Vec<SeededCt>,
}

impl Query {
    /// Request ciphertexts.
    pub fn ciphertexts(&self) -> usize {
        self.cts.len()
    }

    /// Wire encoding: the ciphertexts back to back (each `c0` then its seed).
    pub fn to_bytes(&self, params: &Params) -> Vec<u8> {
        self.cts.iter().flat_map(|ct| ct.to_bytes(params)).collect()
    }

    /// Decodes [`Query::to_bytes`] for `layout`.
    ///
    /// # Errors
    /// [`LinearError::Length`] if the size is not the layout's, [`LinearError::He`] for an
    /// unreduced coefficient.
    pub fn from_bytes(params: &Params, layout: &Layout, bytes: &[u8]) -> Result<Self, LinearError> {
        let per_ct = layout.budget.request_ct_bytes();
        let expected = per_ct * layout.inputs.len();
        if bytes.len() != expected {
            return Err(LinearError::Length {
                what: "query bytes",
                expected,
                actual: bytes.len(),
            });
        }
        let cts = bytes
            .chunks(per_ct)
            .map(|c| SeededCt::from_bytes(params, c))
            .collect::<Result<_, _>>()?;
        Ok(Query { cts })
    }
}

/// The server's response: one truncated ciphertext per response of the layout (an output
/// tile, or several packed into one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    cts: Vec<ResponseCt>,
}

impl Response {
    /// Response ciphertexts.
    pub fn ciphertexts(&self) -> usize {
        self.cts.len()
    }

    /// Wire encoding: the ciphertexts back to back.
    pub fn to_bytes(&self, layout: &Layout) -> Vec<u8> {
        self.cts
            .iter()
            .flat_map(|ct| ct.to_bytes(&layout.budget))
            .collect()
    }

    /// Decodes [`Response::to_bytes`] for `layout`.
    ///
    /// # Errors
    /// [`LinearError::Length`] if the size is not the layout's.
    pub fn from_bytes(layout: &Layout, bytes: &[u8]) -> Result<Self, LinearError> {
        let b = &layout.budget;
        let expected: usize = layout
            .responses
            .iter()
            .map(|r| b.response_ct_bytes(r.positions.len()))
            .sum();
        if bytes.len() != expected {
            return Err(LinearError::Length {
                what: "response bytes",
                expected,
                actual: bytes.len(),
            });
        }
        let mut rest = bytes;
        let mut cts = Vec::with_capacity(layout.responses.len());
        for r in &layout.responses {
            let (ct, tail) = rest.split_at(b.response_ct_bytes(r.positions.len()));
            cts.push(ResponseCt::from_bytes(b, r.positions.len(), ct)?);
            rest = tail;
        }
        Ok(Response { cts })
    }
}

/// The client's keys of one HE context as the server holds them.
#[derive(Debug)]
pub struct ServerKeys {
    /// The public key, which re-randomises every response.
    pub public: PublicKey,
    /// The Galois keys, which pack responses (`None` if no layer of the context packs).
    pub galois: Option<GaloisKeys>,
}

/// One independent generator per ciphertext, seeded from `rng`, so rayon can run them in
/// parallel and a seeded run stays reproducible.
fn fork_rngs<R: RngCore + CryptoRng>(rng: &mut R, count: usize) -> Vec<ChaCha20Rng> {
    (0..count)
        .map(|_| {
            let mut seed = [0u8; 32];
            rng.fill_bytes(&mut seed);
            ChaCha20Rng::from_seed(seed)
        })
        .collect()
}

/// The plaintext of request ciphertext `k`: the share's elements at their coefficients, packed
/// fields shifted by `j·s`, mod `t`.
fn encode_input(layout: &Layout, k: usize, share: &[u64]) -> Vec<u64> {
    let t_mask = (1u64 << layout.proto.he.plain_bits) - 1;
    let s = layout.geometry.field_bits;
    let mut m = vec![0u64; layout.proto.he.degree];
    for e in &layout.inputs[k] {
        let v = share[e.elem as usize].wrapping_shl(e.field * s);
        m[e.coef as usize] = m[e.coef as usize].wrapping_add(v) & t_mask;
    }
    m
}

fn check_share(layout: &Layout, share: &[u64]) -> Result<(), LinearError> {
    if share.len() != layout.in_len {
        return Err(LinearError::Length {
            what: "input share",
            expected: layout.in_len,
            actual: share.len(),
        });
    }
    Ok(())
}

/// Puts output words in the order the layer returns them: layer order without packing
/// (each element is the single field of one word), ciphertext order with packing.
fn order_words(layout: &Layout, words: Vec<u64>) -> Vec<u64> {
    if layout.geometry.factor > 1 {
        return words;
    }
    let mut out = vec![0u64; layout.out_len];
    for (w, &e) in words.into_iter().zip(&layout.fields) {
        if e != NO_ELEMENT {
            out[e as usize] = w;
        }
    }
    out
}

/// The client of one linear layer: holds the secret key.
#[derive(Debug)]
pub struct LinearClient {
    layout: Arc<Layout>,
    key: Arc<SecretKey>,
}

impl LinearClient {
    /// A client for `layout` with `key`.
    ///
    /// # Errors
    /// [`LinearError::KeyMismatch`] if the key is for other HE parameters.
    pub fn new(layout: Arc<Layout>, key: Arc<SecretKey>) -> Result<Self, LinearError> {
        if key.params().he() != &layout.proto.he {
            return Err(LinearError::KeyMismatch);
        }
        Ok(LinearClient { layout, key })
    }

    /// Encrypts the client's share `x` (input ring, layer order), or the plain input of the
    /// first layer (the server then passes no share).
    ///
    /// # Errors
    /// [`LinearError::Length`] for a share of the wrong length.
    pub fn query<R: RngCore + CryptoRng>(
        &self,
        x: &[u64],
        rng: &mut R,
    ) -> Result<Query, LinearError> {
        check_share(&self.layout, x)?;
        let rngs = fork_rngs(rng, self.layout.inputs.len());
        let cts = rngs
            .into_par_iter()
            .enumerate()
            .map(|(k, mut r)| self.key.encrypt(&encode_input(&self.layout, k, x), &mut r))
            .collect::<Result<_, _>>()?;
        Ok(Query { cts })
    }

    /// Decrypts the response into the client's output share (`output_words` values in
    /// `Z_{2^out_ring_bits}`).
    ///
    /// # Errors
    /// [`LinearError::Length`] for a response with the wrong number of ciphertexts.
    pub fn finish(&self, response: &Response) -> Result<Vec<u64>, LinearError> {
        let l = &*self.layout;
        if response.cts.len() != l.responses.len() {
            return Err(LinearError::Length {
                what: "response ciphertexts",
                expected: l.responses.len(),
                actual: response.cts.len(),
            });
        }
        let out_mask = (1u64 << l.proto.out_ring_bits) - 1;
        let decode_bits = l.output.decode_bits(l.proto.he.plain_bits);
        let decrypted: Vec<Vec<u64>> = response
            .cts
            .par_iter()
            .zip(&l.responses)
            .map(|(ct, r)| self.key.decrypt(ct, &r.positions, &l.budget, decode_bits))
            .collect::<Result<_, _>>()?;
        // Back to the output sums' word order: each response holds its members' words in turn.
        let mut words = vec![0u64; l.fields.len() / l.geometry.factor];
        for (r, values) in l.responses.iter().zip(decrypted) {
            let mut values = values.into_iter();
            for &k in &r.members {
                let o = &l.outputs[k];
                let dest = &mut words[o.first_word..o.first_word + o.positions.len()];
                dest.iter_mut()
                    .zip(values.by_ref())
                    .for_each(|(w, v)| *w = v & out_mask);
            }
        }
        Ok(order_words(l, words))
    }
}

/// The server of one linear layer: everything derived from the weights and the plan, none of
/// it from a client, so a server builds it once and answers every session's queries with it
/// (the client's public key comes with each [`LinearServer::respond`]).
///
/// [`LinearServer::new`] checks the flooding against the weights and computes the bias words;
/// the kernel polynomials in NTT form ([`LinearServer::kernel_bytes`] of memory) are built by
/// [`LinearServer::prepare_kernels`], or else by every response, one filter group at a time.
/// Both give the same response bit for bit. The layer's [`Layout`] (its index maps, as large
/// as the layer's tensors) is not kept: each call takes it, and it must be the layout the
/// server was made for.
pub struct LinearServer {
    /// The geometry, protocol and output of the layout the server was made for.
    geometry: ConvGeometry,
    proto: LinearProtocol,
    output: LinearOutput,
    params: Arc<Params>,
    weights: Vec<i32>,
    /// Factor of each filter's kernel: 1, or `2·m[c]` for a folded requantization.
    scale: Vec<i64>,
    /// Plaintext added to each output word before masking: bias plus field biases, mod `t`.
    bias_words: Vec<u64>,
    /// Kernels that are not all zero (each is one polynomial in NTT form when prepared).
    nonzero_kernels: usize,
    /// `kernels[mg][i]` for `layout.outputs` of filter group `mg`, input `i`; `None` until
    /// [`LinearServer::prepare_kernels`].
    kernels: Option<Vec<Vec<Option<Kernel>>>>,
}

impl std::fmt::Debug for LinearServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The weights are the server's secret: only the layout is printed.
        f.debug_struct("LinearServer")
            .field("geometry", &self.geometry)
            .field("kernels_prepared", &self.kernels_prepared())
            .finish_non_exhaustive()
    }
}

impl LinearServer {
    /// A server for `layout` with the layer's weights: computes the bias words and checks that
    /// the flooding hides the product noise with `stat_bits` bits of statistical slack per
    /// revealed coefficient. Builds no kernel ([`LinearServer::prepare_kernels`]).
    ///
    /// # Errors
    /// [`LinearError::Length`] for weights or biases of the wrong length,
    /// [`LinearError::Flooding`] when the moduli cannot flood this kernel,
    /// [`LinearError::KeyMismatch`] for parameters of another layer.
    pub fn new(
        layout: &Layout,
        params: Arc<Params>,
        weights: &LayerWeights,
        stat_bits: u32,
    ) -> Result<Self, LinearError> {
        let l = layout;
        if params.he() != &l.proto.he {
            return Err(LinearError::KeyMismatch);
        }
        let shape = &l.geometry.shape;
        if weights.weights.len() != shape.weight_len() {
            return Err(LinearError::Length {
                what: "weights",
                expected: shape.weight_len(),
                actual: weights.weights.len(),
            });
        }
        if weights.bias.len() != shape.out_channels {
            return Err(LinearError::Length {
                what: "bias",
                expected: shape.out_channels,
                actual: weights.bias.len(),
            });
        }
        let mut server = LinearServer {
            geometry: l.geometry.clone(),
            proto: l.proto.clone(),
            output: l.output,
            params,
            weights: weights.weights.clone(),
            scale: l.scale.clone(),
            bias_words: Vec::new(),
            nonzero_kernels: 0,
            kernels: None,
        };
        server.bias_words = server.bias_words(l, &weights.bias);
        let (max_l1, nonzero) = server.kernel_norms(l);
        server.nonzero_kernels = nonzero;
        let noise = product_noise(l, max_l1);
        let noise_bits = 64 - noise.saturating_sub(1).leading_zeros();
        let flood_bits = l.budget.flood_bits;
        if l.budget.flood_slack(noise_bits) < i64::from(stat_bits) {
            return Err(LinearError::Flooding {
                noise_bits,
                flood_bits,
                stat_bits,
            });
        }
        Ok(server)
    }

    /// The HE parameters of its queries and responses.
    pub fn params(&self) -> &Arc<Params> {
        &self.params
    }

    /// Memory the prepared kernels take (or would take): one polynomial of `N` words per prime
    /// for every kernel that is not all zero.
    pub fn kernel_bytes(&self) -> usize {
        let he = &self.proto.he;
        self.nonzero_kernels * 8 * he.degree * he.moduli_bits.len()
    }

    /// Whether the kernels are prepared (else each response builds them).
    pub fn kernels_prepared(&self) -> bool {
        self.kernels.is_some()
    }

    /// Builds every kernel in NTT form from `layout` and keeps them (filter groups in
    /// parallel), so that responses only multiply; does nothing if they are prepared already.
    ///
    /// # Errors
    /// [`LinearError::LayoutMismatch`] for another layer's layout, [`LinearError::He`] if a
    /// kernel cannot be built (not for a layout's own kernels).
    pub fn prepare_kernels(&mut self, layout: &Layout) -> Result<(), LinearError> {
        self.check_layout(layout)?;
        if self.kernels.is_none() {
            let kernels = (0..self.geometry.n_mg)
                .into_par_iter()
                .map(|mg| self.group_kernels(layout, mg))
                .collect::<Result<_, _>>()?;
            self.kernels = Some(kernels);
        }
        Ok(())
    }

    /// Whether `layout` is the one this server was made for (its geometry, protocol, output).
    fn check_layout(&self, layout: &Layout) -> Result<(), LinearError> {
        let same = (&layout.geometry, &layout.proto, layout.output)
            == (&self.geometry, &self.proto, self.output);
        if !same {
            return Err(LinearError::LayoutMismatch);
        }
        Ok(())
    }

    /// The centred coefficients of the kernel of filter group `mg` against channel tile `ci`
    /// (`None` if all zero), reduced to `(−t/2, t/2]`.
    fn kernel_coeffs(&self, l: &Layout, mg: usize, ci: usize) -> Option<Vec<i64>> {
        let g = &l.geometry;
        let s = &g.shape;
        let t = g.tile;
        let (m_per_group, c_per_group) = (s.out_channels / s.groups, s.in_channels / s.groups);
        let plain = l.proto.he.plain_bits;
        let mut coeffs = vec![0i128; l.proto.he.degree];
        let mut any = false;
        for (slot, field, m) in g.filters(mg) {
            let grp = m / m_per_group;
            for cl in 0..t.c {
                let c = ci * t.c + cl;
                if c >= s.in_channels || c / c_per_group != grp {
                    continue;
                }
                for r in 0..g.rows.kernel {
                    for q in 0..g.cols.kernel {
                        let w = l.conv_weight(&self.weights, m, c - grp * c_per_group, r, q);
                        let w = i128::from(w) * i128::from(self.scale[m]);
                        let (idx, negated) = g.kernel_coef(slot, cl, r, q);
                        let w = if negated { -w } else { w };
                        coeffs[idx] += w << (field as u32 * g.field_bits);
                        any = true;
                    }
                }
            }
        }
        // Centred reduction mod t = 2^plain (two's complement: a mask instead of a division).
        let half = 1i128 << (plain - 1);
        let mask = (1i128 << plain) - 1;
        any.then(|| {
            coeffs
                .iter()
                .map(|&c| (((c + half) & mask) - half) as i64)
                .collect()
        })
    }

    fn group_kernels(&self, l: &Layout, mg: usize) -> Result<Vec<Option<Kernel>>, LinearError> {
        (0..self.geometry.n_c)
            .map(|ci| {
                self.kernel_coeffs(l, mg, ci)
                    .map(|c| Kernel::new(&self.params, &c))
                    .transpose()
                    .map_err(Into::into)
            })
            .collect()
    }

    /// The largest `‖kernel‖₁` summed over a filter group's kernels, and the number of kernels
    /// that are not all zero.
    fn kernel_norms(&self, l: &Layout) -> (u64, usize) {
        let g = &self.geometry;
        (0..g.n_mg)
            .into_par_iter()
            .map(|mg| {
                (0..g.n_c)
                    .filter_map(|ci| self.kernel_coeffs(l, mg, ci))
                    .fold((0u64, 0usize), |(l1, n), c| {
                        (l1 + c.iter().map(|v| v.unsigned_abs()).sum::<u64>(), n + 1)
                    })
            })
            .reduce(|| (0, 0), |(a, m), (b, n)| (a.max(b), m + n))
    }

    fn bias_words(&self, l: &Layout, bias: &[i64]) -> Vec<u64> {
        let g = &l.geometry;
        let t_mask = (1u64 << l.proto.he.plain_bits) - 1;
        let s = g.field_bits;
        let channel = |e: u32| {
            let e = e as usize;
            match l.kind {
                super::Kind::MatMul { cols, .. } => e % cols,
                _ => e / (l.out_len / g.shape.out_channels),
            }
        };
        l.fields
            .chunks(g.factor)
            .map(|fields| {
                let mut v = 0u64;
                for (j, &e) in fields.iter().enumerate() {
                    // Every field of a packed word is biased, including empty ones and the
                    // partial sums of smaller edge tiles, so no borrow crosses fields.
                    let mut field = if g.factor > 1 { 1i64 << (s - 1) } else { 0 };
                    if e != NO_ELEMENT {
                        let c = channel(e);
                        field = field.wrapping_add(match l.output {
                            LinearOutput::Requantized { .. } => {
                                bias[c].wrapping_mul(self.scale[c]).wrapping_add(1)
                            }
                            LinearOutput::Accumulator => bias[c],
                        });
                    }
                    v = v.wrapping_add((field as u64).wrapping_shl(j as u32 * s));
                }
                v & t_mask
            })
            .collect()
    }

    /// Evaluates the layer on the query: adds the server's share `x` (input ring, layer order;
    /// `None` for the first layer, whose query encrypts the plain input), multiplies by the
    /// kernels, and masks each output word with a fresh uniform value, which is the server's
    /// output share (`output_words` values in `Z_{2^out_ring_bits}`). `layout` is the layer's
    /// layout, `keys` the client's keys: the public key re-randomises the responses, the
    /// Galois keys pack them (needed when the layout packs responses).
    ///
    /// # Errors
    /// [`LinearError::LayoutMismatch`] for another layer's layout, [`LinearError::Length`] for
    /// a query or share of the wrong size.
    pub fn respond<R: RngCore + CryptoRng>(
        &self,
        layout: &Layout,
        keys: &ServerKeys,
        query: &Query,
        x: Option<&[u64]>,
        rng: &mut R,
    ) -> Result<(Response, Vec<u64>), LinearError> {
        self.check_layout(layout)?;
        let l = layout;
        if query.cts.len() != l.inputs.len() {
            return Err(LinearError::Length {
                what: "query ciphertexts",
                expected: l.inputs.len(),
                actual: query.cts.len(),
            });
        }
        if let Some(x) = x {
            check_share(l, x)?;
        }
        let g = &l.geometry;
        if g.members() > 1 && keys.galois.is_none() {
            return Err(LinearError::MissingGaloisKeys);
        }
        let p = &*self.params;
        let inputs: Vec<InputCt> = query
            .cts
            .par_iter()
            .enumerate()
            .map(|(k, ct)| InputCt::new(p, ct, x.map(|x| encode_input(l, k, x)).as_deref()))
            .collect::<Result<_, _>>()?;
        let mut rngs = fork_rngs(rng, l.responses.len());
        // Blocks of `members` filter groups in parallel, and within a block its spatial groups:
        // the block's kernels serve every spatial group, whose sums pack into one response.
        // Only one response's sums are alive at a time per thread.
        let per_block: Vec<Vec<(ResponseCt, Vec<Vec<u64>>)>> = rngs
            .par_chunks_mut(g.n_sg)
            .zip(l.responses.par_chunks(g.n_sg))
            .enumerate()
            .map(|(b, (rngs, responses))| {
                let groups = b * g.members()..((b + 1) * g.members()).min(g.n_mg);
                let built: Vec<Vec<Option<Kernel>>>;
                let kernels: Vec<&[Option<Kernel>]> = match &self.kernels {
                    Some(k) => k[groups].iter().map(Vec::as_slice).collect(),
                    None => {
                        built = groups
                            .into_par_iter()
                            .map(|mg| self.group_kernels(l, mg))
                            .collect::<Result<_, _>>()?;
                        built.iter().map(Vec::as_slice).collect()
                    }
                };
                rngs.par_iter_mut()
                    .zip(responses)
                    .map(|(rng, r)| self.response(l, &inputs, &kernels, r, keys, rng))
                    .collect::<Result<Vec<_>, LinearError>>()
            })
            .collect::<Result<_, LinearError>>()?;
        // The masks are the server's share, in the output sums' word order.
        let out_mask = (1u64 << l.proto.out_ring_bits) - 1;
        let mut share = vec![0u64; l.fields.len() / g.factor];
        let mut cts = Vec::with_capacity(l.responses.len());
        for ((ct, masks), r) in per_block.into_iter().flatten().zip(&l.responses) {
            cts.push(ct);
            for (&k, mask) in r.members.iter().zip(masks) {
                let o = &l.outputs[k];
                share[o.first_word..o.first_word + mask.len()]
                    .iter_mut()
                    .zip(mask)
                    .for_each(|(w, m)| *w = m & out_mask);
            }
        }
        Ok((Response { cts }, order_words(l, share)))
    }

    /// One response ciphertext and the masks of its members: each member's output sum
    /// ([`LinearServer::output_sum`], `kernels[j]` those of member `j`'s filter group), packed
    /// into one ciphertext when the layout packs, then truncated.
    fn response<R: RngCore + CryptoRng>(
        &self,
        l: &Layout,
        inputs: &[InputCt],
        kernels: &[&[Option<Kernel>]],
        r: &ResponseLayout,
        keys: &ServerKeys,
        rng: &mut R,
    ) -> Result<(ResponseCt, Vec<Vec<u64>>), LinearError> {
        let g = &l.geometry;
        let p = &*self.params;
        let mut sums = Vec::with_capacity(g.members());
        let mut masks = Vec::with_capacity(r.members.len());
        for (&k, kernels) in r.members.iter().zip(kernels) {
            let (sum, mask) = self.output_sum(l, inputs, kernels, &l.outputs[k], keys, rng)?;
            sums.push(Some(sum));
            masks.push(mask);
        }
        let ct = match (&keys.galois, g.members()) {
            (_, 1) => sums.pop().flatten().ok_or(LinearError::LayoutMismatch)?,
            (Some(galois), members) => {
                sums.resize_with(members, || None);
                pack(p, galois, sums, g.output_stride())?
            }
            (None, _) => return Err(LinearError::MissingGaloisKeys),
        };
        Ok((ct.into_response(p, &r.positions, &l.budget)?, masks))
    }

    /// One output sum, made safe to reveal and switched to `q0`, and the server's mask of
    /// its words: `Σ input × kernel`, plus the bias words minus a fresh uniform mask (in the
    /// decoding ring, scaled up to the plaintext ring), re-randomised and flooded.
    fn output_sum<R: RngCore + CryptoRng>(
        &self,
        l: &Layout,
        inputs: &[InputCt],
        kernels: &[Option<Kernel>],
        o: &OutCt,
        keys: &ServerKeys,
        rng: &mut R,
    ) -> Result<(Switched, Vec<u64>), LinearError> {
        let p = &*self.params;
        let plain_bits = l.proto.he.plain_bits;
        let t_mask = (1u64 << plain_bits) - 1;
        let mask_shift = plain_bits - l.output.decode_bits(plain_bits);
        let pairs = o
            .inputs
            .iter()
            .filter_map(|&(k, ci)| kernels[ci].as_ref().map(|kernel| (&inputs[k], kernel)));
        let acc = Accumulator::sum_products(p, pairs)?;
        let mask: Vec<u64> = o
            .positions
            .iter()
            .map(|_| (rng.next_u64() & t_mask) >> mask_shift)
            .collect();
        let plain: Vec<(usize, u64)> = o
            .positions
            .iter()
            .zip(&mask)
            .enumerate()
            .map(|(i, (&pos, &r))| {
                let word = self.bias_words[o.first_word + i].wrapping_sub(r << mask_shift);
                (pos, word & t_mask)
            })
            .collect();
        let sum = acc
            .sanitize(p, &keys.public, &plain, &o.positions, &l.budget, rng)?
            .switch(p)?;
        Ok((sum, mask))
    }
}

/// Bound on the noise the flood must hide: the product noise `(B_e + 2)·max_l1 + 1`, where
/// `max_l1` is the largest `‖kernel‖₁` summed over a filter group (it depends on the weights),
/// plus the re-randomisation noise `2·B_e·N + B_e` (it depends on the server's ternary `u`,
/// which keeps `c1` pseudorandom).
fn product_noise(layout: &Layout, max_l1: u64) -> u64 {
    let rerandomise = 2 * ERROR_BOUND * layout.proto.he.degree as u64 + ERROR_BOUND;
    SHARE_NOISE_BOUND
        .saturating_mul(max_l1)
        .saturating_add(1 + rerandomise)
}
