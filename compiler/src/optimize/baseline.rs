//! The Cheetah baseline (`--baseline cheetah`, `protocols.md` §1.2, §1.4): `N = 4096`, primes of
//! 60 and 49 bits, `t = 2^37` and share rings of 37 bits everywhere, no packing, OpenCheetah's
//! tiling heuristic ([`conv_tile`], [`matmul_tile`], [`affine_tile`]), except where the server's
//! flooding check (the plan's statistical slack) fails with its tile: there the cheapest tile at
//! the same parameters that passes. A normal plan the runtime can run.
//!
//! OpenCheetah's protocols are also where the optimizer starts: its probe plans keep their HE
//! parameters and tiles ([`crate::select`]).

use super::candidates::runnable_tile;
use heq_runtime::plan::{
    AffineShape, CarryDepth, ConvShape, Encoding, HeParams, LinearProtocol, MatMulShape, Op,
    Packing, Plan, PublicPlan, Tile,
};

/// Ring degree of the baseline.
pub const DEGREE: usize = 4096;
/// Ciphertext primes of the baseline.
pub const MODULI_BITS: [u32; 2] = [60, 49];
/// Plaintext and share ring width of the baseline.
pub const RING_BITS: u32 = 37;

/// The baseline protocol with `tile`.
pub fn protocol(tile: Tile) -> LinearProtocol {
    LinearProtocol {
        he: HeParams {
            degree: DEGREE,
            moduli_bits: MODULI_BITS.to_vec(),
            plain_bits: RING_BITS,
        },
        tile,
        packing: Packing::none(),
        encoding: Encoding::Cheetah,
        in_ring_bits: RING_BITS,
        out_ring_bits: RING_BITS,
    }
}

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

/// The baseline protocol of a linear op with OpenCheetah's tile, before the flooding check
/// (`None` for other ops).
pub fn layer_protocol(op: &Op) -> Option<LinearProtocol> {
    Some(protocol(match op {
        Op::Conv(l) => conv_tile(&l.shape, DEGREE),
        Op::MatMul(l) => matmul_tile(&l.shape, DEGREE),
        Op::Affine(l) => affine_tile(&l.shape, DEGREE),
        _ => return None,
    }))
}

/// `plan` with every linear layer on the baseline protocol (profile `"cheetah"`); with the
/// weights of a server plan, tiles whose flooding fails are replaced as the module says.
pub fn cheetah(plan: &Plan) -> Plan {
    Plan {
        public: cheetah_public(plan),
        weights: plan.weights.clone(),
    }
}

/// The public part of [`cheetah`] (what scheduling and pricing read; no copy of the weights),
/// with the plan's OT batch size (a runtime parameter, not a protocol: the comparison is of
/// protocols) and ripple carry chains in every layer.
pub fn cheetah_public(plan: &Plan) -> PublicPlan {
    let stat_bits = plan.public.protocol.stat_bits;
    let protocols: Vec<LinearProtocol> = plan
        .public
        .layers
        .iter()
        .filter_map(|l| {
            let proto = layer_protocol(&l.op)?;
            let weights = plan.weights.as_ref().and_then(|w| w.get(l.id));
            Some(
                weights
                    .and_then(|w| runnable_tile(&l.op, w, &proto, stat_bits))
                    .unwrap_or(proto),
            )
        })
        .collect();
    let mut public = super::public_with_protocols(&plan.public, &protocols, "cheetah");
    for l in &mut public.layers {
        l.carry = CarryDepth::Ripple;
    }
    public
}

#[cfg(test)]
mod tests {
    use super::*;
    use heq_runtime::he::Params;
    use heq_runtime::linear::{Layout, LinearServer};
    use heq_runtime::params::he::LinearOutput;
    use heq_runtime::plan::{IntType, LayerWeights, LinearLayer};

    /// ResNet-50's classifier at full 8-bit weight scale: OpenCheetah's tile (many filters per
    /// ciphertext) and every tile with few ciphertexts sum too much filter noise for the flood's
    /// slack, so the baseline takes a tile with fewer filters per ciphertext, which the
    /// server's own check (`LinearServer::new`) accepts.
    #[test]
    fn heavy_filters_get_a_tile_the_server_accepts() {
        let shape = MatMulShape {
            rows: 1,
            inner: 2048,
            cols: 1000,
        };
        let op = Op::MatMul(LinearLayer {
            protocol: protocol(matmul_tile(&shape, DEGREE)),
            shape,
            weight_ty: IntType {
                bits: 8,
                signed: true,
            },
            acc_bits: 27,
            acc_bits_naive: 27,
            requant: None,
        });
        let weights = LayerWeights {
            weights: vec![127; 2048 * 1000],
            bias: vec![0; 1000],
        };
        let stat_bits = 40;
        let server = |proto: &LinearProtocol| {
            let Op::MatMul(l) = &op else { unreachable!() };
            let layer = LinearLayer {
                protocol: proto.clone(),
                ..l.clone()
            };
            let layout = Layout::matmul(&layer, LinearOutput::Accumulator).unwrap();
            let params = Params::new(&proto.he).unwrap();
            LinearServer::new(&layout, params, &weights, stat_bits).map(drop)
        };
        let opencheetah = layer_protocol(&op).unwrap();
        assert!(server(&opencheetah).is_err());
        let fixed = runnable_tile(&op, &weights, &opencheetah, stat_bits).expect("a tile passes");
        assert_ne!(fixed.tile, opencheetah.tile);
        server(&fixed).expect("the server accepts the baseline's tile");
    }

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
