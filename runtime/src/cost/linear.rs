//! Exact bytes, ciphertext counts and rounds of the HE linear-layer protocols
//! (`protocols.md` §1.3–1.7, §3.5, §5.3–5.5), plus the crypto-free geometry they are computed
//! from: the noise budget that fixes the response widths, and the tiling of a layer into
//! ciphertexts.
//!
//! The protocol in `crate::linear` builds its index maps from the same [`ConvGeometry`], and
//! its tests assert that the messages it produces have exactly the sizes returned here.
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
//!
//! # Noise budget
//!
//! With `B0 = ⌈log2 q0⌉` (`q0 ≥ (15/16)·2^B0`), decryption at `t_dec = 2^dec` is correct when the
//! total error is below `q0/(2·t_dec) ≥ (15/32)·2^(B0−dec)`. The budget splits it into
//! `2^(B0−dec−3)` for the `c0` low-bit drop, `2^(B0−dec−3)` for the `c1` low-bit drop (times
//! `‖s‖₁ ≤ N`, ternary secret), and `2^(B0−dec−4)` for the switched flood, product and
//! re-randomisation noise plus the switching rounding. Total `≤ (5/16)·2^(B0−dec)`, at most
//! 2/3 of the threshold in the worst case (every rounding error aligned with the secret); the
//! measured errors are far smaller. See `docs/security.md`.

use crate::plan::{AffineShape, ConvShape, HeParams, LinearProtocol, MatMulShape, PackDim, Tile};

/// Ring degrees the protocol supports.
pub const DEGREES: [usize; 3] = [2048, 4096, 8192];

/// Bytes of the seed that stands for `c1` in a seeded ciphertext.
pub const SEED_BYTES: usize = 32;

/// Bound on a fresh error coefficient: centred binomial with variance 10 (`η = 20`).
pub const ERROR_BOUND: u64 = 20;

/// Per-coefficient error of a ciphertext after the server adds its share, before the product:
/// the fresh error plus the two flooring errors of the exact plaintext scaling.
pub const SHARE_NOISE_BOUND: u64 = ERROR_BOUND + 2;

/// Rounds of one linear layer: one query up, one response down.
pub const ROUNDS: u32 = 1;

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

/// Communication of one linear layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinearCost {
    /// Bytes client → server (the query).
    pub bytes_up: usize,
    /// Bytes server → client (the response).
    pub bytes_down: usize,
    /// Request ciphertexts.
    pub cts_up: usize,
    /// Response ciphertexts.
    pub cts_down: usize,
    /// `c0` coefficients revealed to the client (each flooded): the `n` of the per-layer
    /// statistical bound `n·2^(−stat_bits)` (`docs/security.md` §1.2).
    pub coeffs_down: usize,
    /// Round trips.
    pub rounds: u32,
}

impl LinearCost {
    /// Bytes in both directions.
    pub fn total_bytes(&self) -> usize {
        self.bytes_up + self.bytes_down
    }
}

/// Bytes of the client's public key for `he` (sent once per key and `(N, primes)`, shared by
/// every plaintext modulus; the server re-randomises responses with it).
///
/// # Errors
/// As [`he_budget`].
pub fn public_key_bytes(he: &HeParams) -> Result<usize, ConfigError> {
    Ok(he_budget(he, he.plain_bits)?.request_ct_bytes())
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

/// The matrix product `X (rows × inner) · W (inner × cols)` as the 1×1 convolution the protocol
/// runs: `inner` input channels over a `rows × 1` image, `cols` filters.
pub fn matmul_as_conv(shape: &MatMulShape) -> ConvShape {
    ConvShape {
        in_channels: shape.inner,
        in_hw: [shape.rows, 1],
        out_channels: shape.cols,
        kernel: [1, 1],
        stride: [1, 1],
        pads: [0; 4],
        groups: 1,
    }
}

/// The per-channel affine map as the depthwise 1×1 convolution the protocol runs.
pub fn affine_as_conv(shape: &AffineShape) -> ConvShape {
    ConvShape {
        in_channels: shape.channels,
        in_hw: [shape.per_channel, 1],
        out_channels: shape.channels,
        kernel: [1, 1],
        stride: [1, 1],
        pads: [0; 4],
        groups: shape.channels,
    }
}

/// One spatial dimension of a convolution after sub-sampling: a kernel of size 1 with stride
/// `s > 1` reads only every `s`-th padded row, so the encoder keeps only those (Cheetah's
/// strided 1×1 rule) and runs stride 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Axis {
    /// Input length before padding.
    pub len: usize,
    /// Padding before.
    pub pad: usize,
    /// Effective input length (padded, after sub-sampling).
    pub eff_len: usize,
    /// Effective kernel size.
    pub kernel: usize,
    /// Effective stride.
    pub stride: usize,
    /// Step between kept padded positions (the original stride if sub-sampled, else 1).
    pub step: usize,
    /// Output length.
    pub out: usize,
    /// Tile length (effective positions per ciphertext).
    pub tile: usize,
    /// Outputs per full tile.
    pub tile_out: usize,
    /// Number of tiles.
    pub n_tiles: usize,
}

impl Axis {
    fn new(
        len: usize,
        pads: (usize, usize),
        kernel: usize,
        stride: usize,
        tile: usize,
    ) -> Option<Self> {
        let padded = len + pads.0 + pads.1;
        if kernel == 0 || stride == 0 || padded < kernel || tile == 0 {
            return None;
        }
        let out = (padded - kernel) / stride + 1;
        let (eff_len, kernel_e, stride_e, step) = if kernel == 1 && stride > 1 {
            (out, 1, 1, stride)
        } else {
            (padded, kernel, stride, 1)
        };
        if tile < kernel_e {
            return None;
        }
        let tile_out = (tile - kernel_e) / stride_e + 1;
        Some(Axis {
            len,
            pad: pads.0,
            eff_len,
            kernel: kernel_e,
            stride: stride_e,
            step,
            out,
            tile,
            tile_out,
            n_tiles: out.div_ceil(tile_out),
        })
    }

    /// Outputs of tile `k`.
    pub fn outputs_of(&self, k: usize) -> usize {
        self.tile_out.min(self.out - k * self.tile_out)
    }

    /// The original input index of effective position `e` of tile `k`, or `None` for padding.
    pub fn input_index(&self, k: usize, e: usize) -> Option<usize> {
        let eff = k * self.tile_out * self.stride + e;
        if eff >= self.eff_len {
            return None;
        }
        (eff * self.step)
            .checked_sub(self.pad)
            .filter(|&i| i < self.len)
    }
}

/// How a (grouped) convolution maps onto ciphertexts for a given tile and packing.
///
/// Input ciphertext `ci·n_sg + sg` holds channel tile `ci` of the spatial tiles in spatial group
/// `sg` (one tile, or `factor` tiles in the fields of each coefficient when packing along
/// [`PackDim::Spatial`]). Output ciphertext `mg·n_sg + sg` holds filter group `mg` (`M_w` filter
/// slots, each with `factor` filters in its fields when packing along
/// [`PackDim::OutChannels`]) for the same spatial group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// The layer.
    pub shape: ConvShape,
    /// The tile.
    pub tile: Tile,
    /// Rows.
    pub rows: Axis,
    /// Columns.
    pub cols: Axis,
    /// Fields per coefficient.
    pub factor: usize,
    /// Bits per field.
    pub field_bits: u32,
    /// Packing dimension (meaningful when `factor > 1`).
    pub dim: PackDim,
    /// Channel tiles `⌈C / C_w⌉`.
    pub n_c: usize,
    /// Spatial groups `⌈n_H·n_W / b_spatial⌉`.
    pub n_sg: usize,
    /// Filter groups `⌈M / (M_w·b_channels)⌉`.
    pub n_mg: usize,
}

impl ConvGeometry {
    /// The geometry of `shape` under `proto`'s tile and packing.
    ///
    /// # Errors
    /// [`ConfigError::Shape`] for an inconsistent layer, [`ConfigError::Tile`] for a tile that
    /// is empty, smaller than the (effective) kernel or exceeds `N`.
    pub fn new(shape: &ConvShape, proto: &LinearProtocol) -> Result<Self, ConfigError> {
        let s = shape;
        if s.in_channels == 0 || s.out_channels == 0 || s.groups == 0 {
            return Err(ConfigError::Shape("empty channel dimension".into()));
        }
        if !s.in_channels.is_multiple_of(s.groups) || !s.out_channels.is_multiple_of(s.groups) {
            return Err(ConfigError::Shape(format!(
                "groups {} do not divide C = {} and M = {}",
                s.groups, s.in_channels, s.out_channels
            )));
        }
        if s.in_hw.contains(&0) {
            return Err(ConfigError::Shape("empty image".into()));
        }
        let t = proto.tile;
        let bad_tile = |kernel| ConfigError::Tile {
            tile: t,
            degree: proto.he.degree,
            kernel,
        };
        let rows = Axis::new(
            s.in_hw[0],
            (s.pads[0], s.pads[2]),
            s.kernel[0],
            s.stride[0],
            t.h,
        );
        let cols = Axis::new(
            s.in_hw[1],
            (s.pads[1], s.pads[3]),
            s.kernel[1],
            s.stride[1],
            t.w,
        );
        let (Some(rows), Some(cols)) = (rows, cols) else {
            return Err(bad_tile(s.kernel));
        };
        let cells = [t.m, t.c, t.h, t.w]
            .iter()
            .try_fold(1usize, |a, &x| a.checked_mul(x));
        if t.c == 0 || t.m == 0 || cells.is_none_or(|c| c > proto.he.degree) {
            return Err(bad_tile([rows.kernel, cols.kernel]));
        }
        let factor = proto.packing.factor.max(1) as usize;
        let (b_sp, b_ch) = match proto.packing.dim {
            PackDim::Spatial => (factor, 1),
            PackDim::OutChannels => (1, factor),
        };
        Ok(ConvGeometry {
            shape: s.clone(),
            tile: t,
            rows,
            cols,
            factor,
            field_bits: proto.packing.field_bits,
            dim: proto.packing.dim,
            n_c: s.in_channels.div_ceil(t.c),
            n_sg: (rows.n_tiles * cols.n_tiles).div_ceil(b_sp),
            n_mg: s.out_channels.div_ceil(t.m * b_ch),
        })
    }

    /// Spatial tiles per input ciphertext (fields along space).
    pub fn spatial_fields(&self) -> usize {
        if self.dim == PackDim::Spatial {
            self.factor
        } else {
            1
        }
    }

    /// Filters per filter slot (fields along output channels).
    pub fn channel_fields(&self) -> usize {
        if self.dim == PackDim::OutChannels {
            self.factor
        } else {
            1
        }
    }

    /// Request ciphertexts.
    pub fn input_cts(&self) -> usize {
        self.n_c * self.n_sg
    }

    /// Response ciphertexts.
    pub fn output_cts(&self) -> usize {
        self.n_mg * self.n_sg
    }

    /// The spatial tiles `(tile_row, tile_col)` of spatial group `sg`, field by field.
    pub fn spatial_tiles(&self, sg: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let b = self.spatial_fields();
        let total = self.rows.n_tiles * self.cols.n_tiles;
        (sg * b..((sg + 1) * b).min(total)).map(|k| (k / self.cols.n_tiles, k % self.cols.n_tiles))
    }

    /// Filters of filter group `mg`: `(slot, field, filter)` with `filter < M`.
    pub fn filters(&self, mg: usize) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        let b = self.channel_fields();
        let first = mg * self.tile.m * b;
        (first..(first + self.tile.m * b).min(self.shape.out_channels))
            .map(move |f| ((f - first) / b, (f - first) % b, f))
    }

    /// Filter slots used by filter group `mg`.
    pub fn slots(&self, mg: usize) -> usize {
        let b = self.channel_fields();
        let first = mg * self.tile.m * b;
        (self.shape.out_channels - first)
            .min(self.tile.m * b)
            .div_ceil(b)
    }

    /// Needed coefficients of one filter slot in spatial group `sg`: the union of the output
    /// rectangles of the group's tiles, all anchored at the slot's origin.
    pub fn positions_per_slot(&self, sg: usize) -> usize {
        let dims: Vec<(usize, usize)> = self
            .spatial_tiles(sg)
            .map(|(th, tw)| (self.rows.outputs_of(th), self.cols.outputs_of(tw)))
            .collect();
        let max_h = dims.iter().map(|d| d.0).max().unwrap_or(0);
        (0..max_h)
            .map(|r| {
                dims.iter()
                    .filter(|d| d.0 > r)
                    .map(|d| d.1)
                    .max()
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Needed (useful) coefficients of output ciphertext `(mg, sg)`.
    pub fn useful(&self, mg: usize, sg: usize) -> usize {
        self.slots(mg) * self.positions_per_slot(sg)
    }

    /// Coefficient offset `O_W` of the encoding (`protocols.md` §1.3, several filters).
    pub fn origin(&self) -> usize {
        let hw = self.tile.h * self.tile.w;
        hw * (self.tile.m * self.tile.c - 1)
            + self.tile.w * (self.rows.kernel - 1)
            + self.cols.kernel
            - 1
    }

    /// The exact communication of the layer with the noise budget `budget`.
    pub fn cost(&self, budget: &HeBudget) -> LinearCost {
        let per_slot: Vec<usize> = (0..self.n_sg)
            .map(|sg| self.positions_per_slot(sg))
            .collect();
        let slots_of: Vec<usize> = (0..self.n_mg).map(|mg| self.slots(mg)).collect();
        // Response ciphertexts grouped by their useful coefficients (few distinct values).
        let (slot_counts, position_counts) = (histogram(&slots_of), histogram(&per_slot));
        let bytes_down = slot_counts
            .iter()
            .flat_map(|&(a, ca)| {
                position_counts
                    .iter()
                    .map(move |&(p, cp)| ca * cp * budget.response_ct_bytes(a * p))
            })
            .sum();
        let slots: usize = slots_of.iter().sum();
        LinearCost {
            bytes_up: self.input_cts() * budget.request_ct_bytes(),
            bytes_down,
            cts_up: self.input_cts(),
            cts_down: self.output_cts(),
            coeffs_down: slots * per_slot.iter().sum::<usize>(),
            rounds: ROUNDS,
        }
    }
}

/// The distinct values of `v` with their counts.
fn histogram(v: &[usize]) -> Vec<(usize, usize)> {
    let mut sorted = v.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<(usize, usize)> = Vec::new();
    for x in sorted {
        match out.last_mut() {
            Some((y, c)) if *y == x => *c += 1,
            _ => out.push((x, 1)),
        }
    }
    out
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
    he_budget(&proto.he, output.budget_bits(proto.he.plain_bits))
}

/// Exact cost of a convolution (grouped and depthwise included).
///
/// # Errors
/// [`ConfigError`] when the configuration cannot run.
pub fn conv_cost(
    shape: &ConvShape,
    acc_bits: u32,
    proto: &LinearProtocol,
    output: LinearOutput,
) -> Result<LinearCost, ConfigError> {
    let budget = layer_budget(proto, acc_bits, output)?;
    Ok(ConvGeometry::new(shape, proto)?.cost(&budget))
}

/// Exact cost of a matrix product (FC when `rows = 1`).
///
/// # Errors
/// [`ConfigError`] when the configuration cannot run. The tile's `c` is the inner block, `h`
/// the row block, `m` the output block and `w` is 1.
pub fn matmul_cost(
    shape: &MatMulShape,
    acc_bits: u32,
    proto: &LinearProtocol,
    output: LinearOutput,
) -> Result<LinearCost, ConfigError> {
    conv_cost(&matmul_as_conv(shape), acc_bits, proto, output)
}

/// Exact cost of a per-channel affine map (stand-alone BatchNorm).
///
/// # Errors
/// [`ConfigError`] when the configuration cannot run.
pub fn affine_cost(
    shape: &AffineShape,
    acc_bits: u32,
    proto: &LinearProtocol,
    output: LinearOutput,
) -> Result<LinearCost, ConfigError> {
    conv_cost(&affine_as_conv(shape), acc_bits, proto, output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Packing;

    fn proto(n: usize, moduli: Vec<u32>, l: u32, tile: Tile) -> LinearProtocol {
        LinearProtocol {
            he: HeParams {
                degree: n,
                moduli_bits: moduli,
                plain_bits: l,
            },
            tile,
            packing: Packing::none(),
            in_ring_bits: l,
            out_ring_bits: l,
        }
    }

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
    fn resnet_conv_counts_match_reference_example() {
        // protocols.md §5.3: 64→64, 32×32, 3×3, pad 1, tile 3×34×34: 22 requests, 64 responses
        // with u = 1024.
        let shape = ConvShape {
            in_channels: 64,
            in_hw: [32, 32],
            out_channels: 64,
            kernel: [3, 3],
            stride: [1, 1],
            pads: [1; 4],
            groups: 1,
        };
        let p = proto(
            4096,
            vec![60, 49],
            37,
            Tile {
                c: 3,
                h: 34,
                w: 34,
                m: 1,
            },
        );
        let cost = conv_cost(&shape, 20, &p, LinearOutput::Accumulator).expect("valid");
        assert_eq!(
            (cost.cts_up, cost.cts_down, cost.coeffs_down),
            (22, 64, 64 * 1024)
        );
        assert_eq!(cost.bytes_up, 22 * (4096 * 109 / 8 + 32));
        assert_eq!(cost.bytes_down, 64 * ((1024 * 39 + 4096 * 51) / 8));
    }

    #[test]
    fn fc_counts_match_cheetah_blocking() {
        // protocols.md §1.6: ⌈n_i/d1⌉ requests, ⌈n_o/d0⌉ responses with d0 useful coefficients.
        let shape = MatMulShape {
            rows: 1,
            inner: 2048,
            cols: 1000,
        };
        let p = proto(
            4096,
            vec![60, 49],
            37,
            Tile {
                c: 512,
                h: 1,
                w: 1,
                m: 8,
            },
        );
        let b = layer_budget(&p, 20, LinearOutput::Accumulator).expect("valid");
        let cost = matmul_cost(&shape, 20, &p, LinearOutput::Accumulator).expect("valid");
        assert_eq!((cost.cts_up, cost.cts_down), (4, 125));
        assert_eq!(cost.bytes_down, 125 * b.response_ct_bytes(8));
    }

    #[test]
    fn strided_one_by_one_subsamples() {
        let shape = ConvShape {
            in_channels: 8,
            in_hw: [9, 9],
            out_channels: 4,
            kernel: [1, 1],
            stride: [2, 2],
            pads: [0; 4],
            groups: 1,
        };
        let p = proto(
            2048,
            vec![54],
            12,
            Tile {
                c: 8,
                h: 5,
                w: 5,
                m: 1,
            },
        );
        let g = ConvGeometry::new(&shape, &p).expect("valid");
        assert_eq!(
            (g.rows.eff_len, g.rows.n_tiles, g.n_c, g.n_sg, g.n_mg),
            (5, 1, 1, 1, 4)
        );
        assert_eq!(g.rows.input_index(0, 4), Some(8));
        assert_eq!(g.useful(0, 0), 25);
    }
}
