//! Lowering: layer graph → [`Plan`]; the only code that builds plans.
//!
//! Every linear layer gets the Cheetah baseline protocol
//! ([`crate::optimize::baseline`], `protocols.md` §1.2, §1.4); the optimizer
//! ([`crate::optimize`]) then replaces it. The tiling heuristics of OpenCheetah live here.

use crate::error::{Error, Result};
use crate::ir::{LayerGraph, LayerOp, Linear, LinearShape, TensorId};
use crate::optimize::baseline;
use heq_runtime::plan::{
    self, AffineShape, ConvShape, GlobalProtocol, IoSpec, Layer, LayerId, LayerWeights,
    LinearLayer, MatMulShape, Op, OtBackend, Plan, PublicPlan, ServerWeights, TensorInfo, Tile,
};
use std::collections::HashMap;

/// OpenCheetah's convolution tile: the whole padded image when it fits, as many channels as fit
/// (`C_w = min(⌊N/HW⌋, C, ⌊N/h²⌋)`); otherwise one channel and a spatial tile of about
/// `√(N·H/W) × N/H_w`.
pub fn conv_tile(s: &ConvShape, n: usize) -> Tile {
    let hp = s.in_hw[0] + s.pads[0] + s.pads[2];
    let wp = s.in_hw[1] + s.pads[1] + s.pads[3];
    let k2 = (s.kernel[0] * s.kernel[1]).max(1);
    if hp * wp <= n {
        let c = (n / (hp * wp)).min(s.in_channels).min(n / k2).max(1);
        Tile {
            c,
            h: hp,
            w: wp,
            m: 1,
        }
    } else {
        let h = ((n as f64 * hp as f64 / wp as f64).sqrt() as usize)
            .clamp(s.kernel[0].max(1), hp)
            .min(n);
        let w = (n / h).min(wp).max(1);
        Tile { c: 1, h, w, m: 1 }
    }
}

/// OpenCheetah's matrix split: `d0·d1 ≤ N` minimising `⌈inner/d1⌉ + ⌈cols/d0⌉`, as the tile
/// `c = d1`, `m = d0`, `h = w = 1`.
pub fn matmul_tile(s: &MatMulShape, n: usize) -> Tile {
    let mut best = (
        usize::MAX,
        Tile {
            c: 1,
            h: 1,
            w: 1,
            m: 1,
        },
    );
    for d1 in 1..=s.inner.clamp(1, n) {
        let d0 = (n / d1).min(s.cols.max(1));
        let cost = s.inner.div_ceil(d1) + s.cols.div_ceil(d0);
        if cost < best.0 {
            best = (
                cost,
                Tile {
                    c: d1,
                    h: 1,
                    w: 1,
                    m: d0,
                },
            );
        }
    }
    best.1
}

/// Tile of a per-channel affine layer: whole channels per ciphertext while they fit.
pub fn affine_tile(s: &AffineShape, n: usize) -> Tile {
    let h = s.per_channel.clamp(1, n);
    Tile {
        c: (n / h).min(s.channels).max(1),
        h,
        w: 1,
        m: 1,
    }
}

/// The plan's linear layer of shape `shape` and its weights.
fn linear<S>(
    l: &Linear,
    shape: S,
    name: &str,
    tile: Tile,
) -> Result<(LinearLayer<S>, LayerWeights)> {
    let acc = l.acc.ok_or_else(|| Error::Invariant {
        pass: "lower",
        violations: vec![format!("'{name}': no accumulator width")],
    })?;
    let public = LinearLayer {
        shape,
        weight_ty: l.weight_ty,
        acc_bits: acc.sound,
        acc_bits_naive: acc.naive,
        requant: l.requant.clone(),
        protocol: baseline::protocol(tile),
    };
    let weights = LayerWeights {
        weights: l.weights.clone(),
        bias: l.bias.clone(),
    };
    Ok((public, weights))
}

/// Lowers an analysed graph to a plan (public part and server weights), then validates it.
///
/// # Errors
/// [`Error::Invariant`] when the graph was not analysed; [`Error::Plan`] when the plan breaks a
/// structural rule.
pub fn lower(g: &LayerGraph) -> Result<Plan> {
    let order = g.order().ok_or_else(|| Error::Invariant {
        pass: "lower",
        violations: vec!["cycle".into()],
    })?;
    let mut ids: HashMap<TensorId, TensorId> = HashMap::new();
    let mut tensors = Vec::new();
    let mut map = |t: TensorId, tensors: &mut Vec<TensorInfo>| -> TensorId {
        *ids.entry(t).or_insert_with(|| {
            tensors.push(g.tensor(t).clone());
            TensorId((tensors.len() - 1) as u32)
        })
    };
    let input = map(g.input.tensor, &mut tensors);
    let mut layers = Vec::with_capacity(order.len());
    let mut weights = Vec::new();
    for (i, n) in order.into_iter().enumerate() {
        let l = g.layer(n);
        let id = LayerId(i as u32);
        let inputs = l.inputs.iter().map(|t| map(*t, &mut tensors)).collect();
        let output = map(l.output, &mut tensors);
        let op = match &l.op {
            LayerOp::Linear(c) => {
                let (op, w) = match &c.shape {
                    LinearShape::Conv(s) => {
                        let tile = conv_tile(s, baseline::DEGREE);
                        let (p, w) = linear(c, s.clone(), &l.name, tile)?;
                        (Op::Conv(p), w)
                    }
                    LinearShape::MatMul(s) => {
                        let tile = matmul_tile(s, baseline::DEGREE);
                        let (p, w) = linear(c, s.clone(), &l.name, tile)?;
                        (Op::MatMul(p), w)
                    }
                    LinearShape::Affine(s) => {
                        let tile = affine_tile(s, baseline::DEGREE);
                        let (p, w) = linear(c, s.clone(), &l.name, tile)?;
                        (Op::Affine(p), w)
                    }
                };
                weights.push((id, w));
                op
            }
            LayerOp::Rescale(r) => Op::Rescale(r.clone()),
            LayerOp::Add(a) => Op::Add(a.clone()),
            LayerOp::MaxPool(p) => Op::MaxPool(p.clone()),
            LayerOp::AvgPool(a) => Op::AvgPool(a.clone()),
            LayerOp::Concat => Op::Concat,
            LayerOp::Reshape => Op::Reshape,
        };
        layers.push(Layer {
            id,
            name: l.name.clone(),
            op,
            inputs,
            output,
        });
    }
    let output = map(g.output.tensor, &mut tensors);
    let io = |name: &str, t: TensorId, tensors: &[TensorInfo]| IoSpec {
        name: name.to_string(),
        tensor: t,
        shape: tensors[t.0 as usize].shape.clone(),
    };
    let public = PublicPlan {
        model_name: g.name.clone(),
        input: io(&g.input.name, input, &tensors),
        output: io(&g.output.name, output, &tensors),
        layers,
        tensors,
        protocol: GlobalProtocol {
            ot: OtBackend::Silent,
            stat_bits: 40,
            profile: "cheetah".into(),
            precision: None,
        },
    };
    let plan = Plan {
        public,
        weights: Some(ServerWeights { layers: weights }),
    };
    plan::validate(&plan)?;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_tile_follows_opencheetah() {
        // 16×16 input padded to 18×18 = 324 ≤ 4096: C_w = min(4096/324 = 12, C, 4096/9).
        let s = ConvShape {
            in_channels: 8,
            in_hw: [16, 16],
            out_channels: 8,
            kernel: [3, 3],
            stride: [1, 1],
            pads: [1; 4],
            groups: 1,
        };
        assert_eq!(
            conv_tile(&s, 4096),
            Tile {
                c: 8,
                h: 18,
                w: 18,
                m: 1
            }
        );
        let s = ConvShape {
            in_channels: 32,
            ..s
        };
        assert_eq!(
            conv_tile(&s, 4096),
            Tile {
                c: 12,
                h: 18,
                w: 18,
                m: 1
            }
        );
        // 100×50 > 4096: H_w = ⌊√(4096·100/50)⌋ = 90, W_w = min(⌊4096/90⌋, 50) = 45.
        let s = ConvShape {
            in_channels: 3,
            in_hw: [100, 50],
            out_channels: 4,
            kernel: [3, 3],
            stride: [1, 1],
            pads: [0; 4],
            groups: 1,
        };
        assert_eq!(
            conv_tile(&s, 4096),
            Tile {
                c: 1,
                h: 90,
                w: 45,
                m: 1
            }
        );
    }

    #[test]
    fn matmul_tile_minimises_ciphertexts() {
        // 128 inputs, 10 outputs: d1 = 128 fits with d0 = 10 → 1 + 1 ciphertexts.
        assert_eq!(
            matmul_tile(
                &MatMulShape {
                    rows: 1,
                    inner: 128,
                    cols: 10
                },
                4096
            ),
            Tile {
                c: 128,
                h: 1,
                w: 1,
                m: 10
            }
        );
        // 8192 inputs: d1 = 4096, d0 = 1 → 2 + 10 = 12; d1 = 2048, d0 = 2 → 4 + 5 = 9 (best).
        let t = matmul_tile(
            &MatMulShape {
                rows: 1,
                inner: 8192,
                cols: 10,
            },
            4096,
        );
        assert_eq!(
            t,
            Tile {
                c: 2048,
                h: 1,
                w: 1,
                m: 2
            }
        );
    }
}
