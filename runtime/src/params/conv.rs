//! How a linear layer maps onto ciphertexts: every layer kind is run as a (grouped)
//! convolution ([`matmul_as_conv`], [`affine_as_conv`]), tiled and packed into ciphertexts by a
//! [`ConvGeometry`] (`protocols.md` §1.3, §1.6, §3.5).
//!
//! The protocol in `crate::linear` builds its index maps from this geometry, and
//! [`crate::cost::linear`] counts its ciphertexts and revealed coefficients from the same one.

use crate::params::he::ConfigError;
use crate::plan::{AffineShape, ConvShape, Encoding, LinearProtocol, MatMulShape, PackDim, Tile};

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
    /// Coefficient layout and response packing.
    pub encoding: Encoding,
    /// Ring degree `N`.
    pub degree: usize,
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
        if let Encoding::Interleaved { members } = proto.encoding {
            let fits =
                t.m == 1 && t.c.is_power_of_two() && members.is_power_of_two() && members <= t.c;
            if !fits {
                return Err(ConfigError::Encoding(format!(
                    "interleaved tile {}x{}x{}/{} with {members} responses per ciphertext: needs \
                     one filter per ciphertext, a power-of-two channel tile and a power-of-two \
                     number of responses at most the channel tile",
                    t.c, t.h, t.w, t.m
                )));
            }
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
            encoding: proto.encoding,
            degree: proto.he.degree,
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

    /// Output sums: one per filter group and spatial group (`mg·n_sg + sg`), each sanitized
    /// and switched by the server.
    pub fn output_cts(&self) -> usize {
        self.n_mg * self.n_sg
    }

    /// Output sums packed into one response ciphertext.
    pub fn members(&self) -> usize {
        self.encoding.members()
    }

    /// Response ciphertexts on the wire: `⌈n_mg / members⌉` per spatial group.
    pub fn response_cts(&self) -> usize {
        self.n_mg.div_ceil(self.members()) * self.n_sg
    }

    /// The output sums (indices `mg·n_sg + sg`) packed into response `r = block·n_sg + sg`:
    /// the filter groups `block·members ..` of spatial group `sg`, in order.
    pub fn pack_members(&self, r: usize) -> impl Iterator<Item = usize> + '_ {
        let (block, sg) = (r / self.n_sg, r % self.n_sg);
        let n = self.members();
        (block * n..((block + 1) * n).min(self.n_mg)).map(move |mg| mg * self.n_sg + sg)
    }

    /// Key switches of the packing: `members − 1` per response ciphertext (the last block of
    /// a spatial group is padded with zero ciphertexts).
    pub fn key_switches(&self) -> usize {
        (self.members() - 1) * self.response_cts()
    }

    /// Stride of the output coefficients: every output of an interleaved encoding sits at a
    /// multiple of `C_w` (1 for Cheetah's).
    pub fn output_stride(&self) -> usize {
        match self.encoding {
            Encoding::Cheetah => 1,
            Encoding::Interleaved { .. } => self.tile.c,
        }
    }

    /// Coefficient of input element `(cl, i, j)` (channel, row, column within the tile).
    pub fn input_coef(&self, cl: usize, i: usize, j: usize) -> usize {
        let t = self.tile;
        match self.encoding {
            Encoding::Cheetah => cl * t.h * t.w + i * t.w + j,
            Encoding::Interleaved { .. } => (i * t.w + j) * t.c + cl,
        }
    }

    /// Coefficient of kernel tap `(r, q)` of channel `cl` for filter slot `slot`, and whether
    /// the weight enters negated (the interleaved encoding puts taps at negative exponents,
    /// `X^{−a} = −X^{N−a}`).
    pub fn kernel_coef(&self, slot: usize, cl: usize, r: usize, q: usize) -> (usize, bool) {
        let t = self.tile;
        match self.encoding {
            Encoding::Cheetah => (
                self.origin() - slot * t.c * t.h * t.w - cl * t.h * t.w - r * t.w - q,
                false,
            ),
            Encoding::Interleaved { .. } => match (r * t.w + q) * t.c + cl {
                0 => (0, false),
                a => (self.degree - a, true),
            },
        }
    }

    /// Coefficient of output `(oi, oj)` (within the tile) of filter slot `slot`.
    pub fn output_coef(&self, slot: usize, oi: usize, oj: usize) -> usize {
        let t = self.tile;
        let offset = oi * self.rows.stride * t.w + oj * self.cols.stride;
        match self.encoding {
            Encoding::Cheetah => self.origin() - slot * t.c * t.h * t.w + offset,
            Encoding::Interleaved { .. } => offset * t.c,
        }
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

    /// Coefficient offset `O_W` of Cheetah's encoding (`protocols.md` §1.3, several filters).
    fn origin(&self) -> usize {
        let hw = self.tile.h * self.tile.w;
        hw * (self.tile.m * self.tile.c - 1)
            + self.tile.w * (self.rows.kernel - 1)
            + self.cols.kernel
            - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::testutil::default_protocol;

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
        let p = LinearProtocol {
            tile: Tile {
                c: 8,
                h: 5,
                w: 5,
                m: 1,
            },
            ..default_protocol()
        };
        let g = ConvGeometry::new(&shape, &p).expect("valid");
        assert_eq!(
            (g.rows.eff_len, g.rows.n_tiles, g.n_c, g.n_sg, g.n_mg),
            (5, 1, 1, 1, 4)
        );
        assert_eq!(g.rows.input_index(0, 4), Some(8));
        assert_eq!(g.useful(0, 0), 25);
    }
}
