//! Index maps of the coefficient encoding (`protocols.md` §1.3, §1.6, §3.5): which input
//! element goes to which coefficient of which request ciphertext, which response coefficients
//! the client needs, and which output elements their fields hold.
//!
//! Every layer kind is a grouped convolution ([`ConvGeometry`]); a matrix product and a
//! per-channel affine map only permute the input and output elements.

use crate::params::conv::{ConvGeometry, affine_as_conv, matmul_as_conv};
use crate::params::he::{HeBudget, LinearOutput, layer_budget, pack_offset};
use crate::plan::{AffineShape, ConvShape, LinearLayer, LinearProtocol, MatMulShape};

use super::LinearError;

/// Marks an empty field of an output word.
pub const NO_ELEMENT: u32 = u32::MAX;

/// The layer kind, which fixes how elements and weights are ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Convolution: input `[C, H, W]`, weights `[M, C/groups, h, w]`, output `[M, H', W']`.
    Conv,
    /// `Y = X·W`: input `[rows, inner]`, weights `[inner, cols]`, output `[rows, cols]`.
    MatMul {
        /// Rows of `X`.
        rows: usize,
        /// Shared dimension.
        inner: usize,
        /// Columns of `W`.
        cols: usize,
    },
    /// Per-channel affine map: input and output `[C, per_channel]`, weights `[C]`.
    Affine,
}

/// One input element placed in a request ciphertext.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InEntry {
    /// Coefficient index.
    pub coef: u32,
    /// Input element (layer order).
    pub elem: u32,
    /// Field (spatial packing), 0 otherwise.
    pub field: u32,
}

/// One response ciphertext: the needed coefficients and where its products come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OutCt {
    /// Filter group.
    pub mg: usize,
    /// Needed coefficients, increasing.
    pub positions: Vec<usize>,
    /// Request ciphertexts (channel tiles) whose products it sums, with their channel tile.
    pub inputs: Vec<(usize, usize)>,
    /// First word of this ciphertext in the output word list.
    pub first_word: usize,
}

/// One response ciphertext on the wire: the output sums it packs and the coefficients the
/// client decrypts, member by member (each member's positions in order, moved by its pack
/// offset), so the decrypted words come out in the members' word order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ResponseLayout {
    /// Output sums (indices into `Layout::outputs`), in pack order.
    pub members: Vec<usize>,
    /// Coefficients of the packed ciphertext the client decrypts.
    pub positions: Vec<usize>,
}

/// The public index maps of one linear layer: what both parties derive from the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub(crate) kind: Kind,
    pub(crate) geometry: ConvGeometry,
    pub(crate) proto: LinearProtocol,
    pub(crate) output: LinearOutput,
    /// Per-output-channel factor the server folds into the kernel and bias: 1 for the
    /// accumulator, `2·m[c]` for a folded requantization.
    pub(crate) scale: Vec<i64>,
    pub(crate) budget: HeBudget,
    pub(crate) in_len: usize,
    pub(crate) out_len: usize,
    pub(crate) inputs: Vec<Vec<InEntry>>,
    pub(crate) outputs: Vec<OutCt>,
    /// The response ciphertexts on the wire: which output sums each packs.
    pub(crate) responses: Vec<ResponseLayout>,
    /// `words · factor` entries: the output element in each field ([`NO_ELEMENT`] if empty).
    pub(crate) fields: Vec<u32>,
}

impl Layout {
    /// The layout of a convolution layer (grouped and depthwise included), producing `output`.
    ///
    /// # Errors
    /// [`LinearError::Config`] when the protocol configuration cannot run.
    pub fn conv(layer: &LinearLayer<ConvShape>, output: LinearOutput) -> Result<Self, LinearError> {
        Self::build(Kind::Conv, &layer.shape, layer, output)
    }

    /// The layout of a matrix product (tile: `c` = inner block, `h` = row block, `w` = 1,
    /// `m` = output block).
    ///
    /// # Errors
    /// [`LinearError::Config`] when the protocol configuration cannot run.
    pub fn matmul(
        layer: &LinearLayer<MatMulShape>,
        output: LinearOutput,
    ) -> Result<Self, LinearError> {
        let s = &layer.shape;
        let kind = Kind::MatMul {
            rows: s.rows,
            inner: s.inner,
            cols: s.cols,
        };
        Self::build(kind, &matmul_as_conv(s), layer, output)
    }

    /// The layout of a per-channel affine map (a depthwise 1×1 convolution; tile `c = m`
    /// channels, `h` elements per channel, `w = 1`).
    ///
    /// # Errors
    /// [`LinearError::Config`] when the protocol configuration cannot run.
    pub fn affine(
        layer: &LinearLayer<AffineShape>,
        output: LinearOutput,
    ) -> Result<Self, LinearError> {
        Self::build(Kind::Affine, &affine_as_conv(&layer.shape), layer, output)
    }

    fn build<S>(
        kind: Kind,
        shape: &ConvShape,
        layer: &LinearLayer<S>,
        output: LinearOutput,
    ) -> Result<Self, LinearError> {
        let (acc_bits, proto) = (layer.acc_bits, &layer.protocol);
        let budget = layer_budget(proto, acc_bits, output)?;
        let scale = match output {
            LinearOutput::Accumulator => vec![1; shape.out_channels],
            LinearOutput::Requantized { .. } => {
                let multipliers = layer.requant.as_ref().map_or(&[][..], |r| &r.multipliers);
                if multipliers.len() != shape.out_channels {
                    return Err(LinearError::Length {
                        what: "multipliers",
                        expected: shape.out_channels,
                        actual: multipliers.len(),
                    });
                }
                multipliers.iter().map(|m| m.wrapping_mul(2)).collect()
            }
        };
        let g = ConvGeometry::new(shape, proto)?;
        let [h, w] = shape.in_hw;
        let [ho, wo] = shape.out_hw();
        let in_len = shape.in_channels * h * w;
        let out_len = shape.out_channels * ho * wo;
        let in_map = |e: usize| match kind {
            Kind::MatMul { rows, inner, .. } => (e % rows) * inner + e / rows,
            _ => e,
        };
        let out_map = |e: usize| match kind {
            Kind::MatMul { rows, cols, .. } => (e % rows) * cols + e / rows,
            _ => e,
        };
        let t = g.tile;
        let mut inputs = Vec::with_capacity(g.input_cts());
        for ci in 0..g.n_c {
            let channels = ci * t.c..((ci + 1) * t.c).min(shape.in_channels);
            for sg in 0..g.n_sg {
                let mut entries = Vec::new();
                for (field, (th, tw)) in g.spatial_tiles(sg).enumerate() {
                    for (cl, c) in channels.clone().enumerate() {
                        for i in 0..t.h {
                            let Some(r) = g.rows.input_index(th, i) else {
                                continue;
                            };
                            for j in 0..t.w {
                                let Some(col) = g.cols.input_index(tw, j) else {
                                    continue;
                                };
                                entries.push(InEntry {
                                    coef: g.input_coef(cl, i, j) as u32,
                                    elem: in_map((c * h + r) * w + col) as u32,
                                    field: field as u32,
                                });
                            }
                        }
                    }
                }
                inputs.push(entries);
            }
        }
        let factor = g.factor;
        let (m_per_group, c_per_group) = (
            shape.out_channels / shape.groups,
            shape.in_channels / shape.groups,
        );
        let mut outputs = Vec::with_capacity(g.output_cts());
        let mut fields = Vec::new();
        for mg in 0..g.n_mg {
            let filters: Vec<(usize, usize, usize)> = g.filters(mg).collect();
            // Channel tiles that meet the groups of this filter group.
            let deps: Vec<usize> = (0..g.n_c)
                .filter(|&ci| {
                    let (lo, hi) = (ci * t.c, ((ci + 1) * t.c).min(shape.in_channels));
                    filters.iter().any(|&(_, _, m)| {
                        let grp = m / m_per_group;
                        lo < (grp + 1) * c_per_group && grp * c_per_group < hi
                    })
                })
                .collect();
            for sg in 0..g.n_sg {
                let mut words: std::collections::BTreeMap<usize, Vec<u32>> = Default::default();
                for (sfield, (th, tw)) in g.spatial_tiles(sg).enumerate() {
                    for &(slot, cfield, m) in &filters {
                        let field = sfield + cfield;
                        for oi in 0..g.rows.outputs_of(th) {
                            for oj in 0..g.cols.outputs_of(tw) {
                                let pos = g.output_coef(slot, oi, oj);
                                let (yi, yj) =
                                    (th * g.rows.tile_out + oi, tw * g.cols.tile_out + oj);
                                let elem = out_map((m * ho + yi) * wo + yj) as u32;
                                words.entry(pos).or_insert_with(|| vec![NO_ELEMENT; factor])
                                    [field] = elem;
                            }
                        }
                    }
                }
                let first_word = fields.len() / factor;
                let positions = words.keys().copied().collect();
                words.into_values().for_each(|f| fields.extend(f));
                outputs.push(OutCt {
                    mg,
                    positions,
                    inputs: deps.iter().map(|&ci| (ci * g.n_sg + sg, ci)).collect(),
                    first_word,
                });
            }
        }
        let responses = (0..g.response_cts())
            .map(|r| {
                let members: Vec<usize> = g.pack_members(r).collect();
                let positions = members
                    .iter()
                    .enumerate()
                    .flat_map(|(j, &k)| {
                        let offset = pack_offset(g.output_stride(), g.members(), j);
                        outputs[k].positions.iter().map(move |&p| p + offset)
                    })
                    .collect();
                ResponseLayout { members, positions }
            })
            .collect();
        Ok(Layout {
            kind,
            geometry: g,
            proto: proto.clone(),
            output,
            scale,
            budget,
            in_len,
            out_len,
            inputs,
            outputs,
            responses,
            fields,
        })
    }

    /// Elements of the input tensor (one share vector).
    pub fn input_len(&self) -> usize {
        self.in_len
    }

    /// Elements of the output tensor.
    pub fn output_len(&self) -> usize {
        self.out_len
    }

    /// Output words the protocol returns: the output elements in layer order without packing,
    /// packed words in ciphertext order with packing (see [`Layout::word_fields`]).
    pub fn output_words(&self) -> usize {
        if self.geometry.factor == 1 {
            self.out_len
        } else {
            self.fields.len() / self.geometry.factor
        }
    }

    /// The output element in each field of each output word, in ciphertext order
    /// (`words × factor`, row-major; [`NO_ELEMENT`] for an empty field). With packing the
    /// protocol returns exactly these words; without packing it returns the elements already
    /// scattered to layer order.
    pub fn word_fields(&self) -> &[u32] {
        &self.fields
    }

    /// The protocol configuration.
    pub fn protocol(&self) -> &LinearProtocol {
        &self.proto
    }

    /// What the layer outputs.
    pub fn output(&self) -> LinearOutput {
        self.output
    }

    /// The noise budget and response widths.
    pub fn budget(&self) -> &HeBudget {
        &self.budget
    }

    /// The tiling.
    pub fn geometry(&self) -> &ConvGeometry {
        &self.geometry
    }

    /// The kind of layer.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The weights in convolution order `[M, C/groups, h, w]` (a matrix product's `W` is
    /// transposed; the others are already in that order).
    pub(crate) fn conv_weight(
        &self,
        weights: &[i32],
        m: usize,
        cg: usize,
        l: usize,
        l2: usize,
    ) -> i64 {
        let s = &self.geometry.shape;
        let idx = match self.kind {
            Kind::MatMul { cols, .. } => cg * cols + m,
            _ => ((m * (s.in_channels / s.groups) + cg) * s.kernel[0] + l) * s.kernel[1] + l2,
        };
        i64::from(weights[idx])
    }
}
