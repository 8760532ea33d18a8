//! Builders for small hand-made plans, for tests and examples.
//!
//! A [`PlanBuilder`] starts from the input tensor `t0` and appends layers, each with a fresh
//! output tensor (`t1`, `t2`, …). Every tensor is `i32` with zero point 0 and scale 1 unless
//! changed through [`PlanBuilder::tensor_mut`]; linear layers get [`default_protocol`]. The
//! builder checks nothing itself: [`PlanBuilder::build`] runs [`crate::plan::validate`].
//!
//! ```
//! use heq_runtime::plan::{Op, Requant, Rounding};
//! use heq_runtime::reference::{self, testutil::PlanBuilder};
//!
//! let mut b = PlanBuilder::new(&[4], (-8, 8));
//! let rounding = Rounding::HalfEven;
//! let half = Op::Rescale(Requant { multipliers: vec![1], shift: 1, clamp: (-4, 4), rounding });
//! let y = b.layer(half, &[b.input()], &[4], (-4, 4));
//! let plan = b.build(y).unwrap();
//! // −1.5, −0.5, 0.5 and 4: ties go to the even neighbour.
//! assert_eq!(reference::run(&plan, &[-3, -1, 1, 8]).unwrap(), vec![-2, 0, 0, 4]);
//! ```

use crate::error::PlanError;
use crate::plan::{
    AddSpec, AffineShape, AvgPoolSpec, CarryDepth, ChannelScales, ConvShape, Encoding, Epilogue,
    EpilogueOp, EpilogueStep, GlobalProtocol, HeParams, IntType, IoSpec, Layer, LayerId,
    LayerWeights, LinearLayer, LinearProtocol, MatMulShape, Op, OtBackend, Packing, Plan,
    PoolShape, PublicPlan, Requant, Rounding, ServerWeights, TensorId, TensorInfo, Tile,
    TopKOutput,
};

/// Builds a plan layer by layer.
#[derive(Clone, Debug)]
pub struct PlanBuilder {
    plan: Plan,
}

impl PlanBuilder {
    /// A plan with one tensor, the input `t0`, of the given shape and centred range.
    pub fn new(input_shape: &[usize], range: (i64, i64)) -> Self {
        let io = |name: &str| IoSpec {
            name: name.into(),
            tensor: TensorId(0),
            shape: input_shape.to_vec(),
        };
        let public = PublicPlan {
            model_name: "testutil".into(),
            input: io("input"),
            output: io("output"),
            tensors: vec![],
            layers: vec![],
            protocol: GlobalProtocol {
                ot: OtBackend::Silent,
                ot_batch_rots: crate::cost::plan::DEFAULT_OT_BATCH_ROTS,
                chunk_rots: crate::cost::plan::default_chunk_rots(
                    crate::cost::plan::DEFAULT_OT_BATCH_ROTS,
                ),
                stat_bits: 40,
                profile: "default".into(),
                precision: None,
            },
            epilogue: Epilogue::default(),
        };
        let mut b = PlanBuilder {
            plan: Plan {
                public,
                weights: Some(ServerWeights::default()),
            },
        };
        b.add_tensor(input_shape, range);
        b
    }

    /// The input tensor.
    pub fn input(&self) -> TensorId {
        self.plan.public.input.tensor
    }

    /// Appends a layer without weights whose output is a new tensor of the given shape and
    /// range; returns that tensor.
    pub fn layer(
        &mut self,
        op: Op,
        inputs: &[TensorId],
        shape: &[usize],
        range: (i64, i64),
    ) -> TensorId {
        let output = self.add_tensor(shape, range);
        let id = LayerId(self.plan.public.layers.len() as u32);
        self.plan.public.layers.push(Layer {
            id,
            name: id.to_string(),
            op,
            inputs: inputs.to_vec(),
            output,
            carry: CarryDepth::Ripple,
        });
        output
    }

    /// Appends a linear layer (`op` is `Conv`, `MatMul` or `Affine`) with its weights, like
    /// [`PlanBuilder::layer`].
    pub fn linear(
        &mut self,
        op: Op,
        input: TensorId,
        weights: LayerWeights,
        shape: &[usize],
        range: (i64, i64),
    ) -> TensorId {
        let id = LayerId(self.plan.public.layers.len() as u32);
        if let Some(w) = &mut self.plan.weights {
            w.layers.push((id, weights));
        }
        self.layer(op, &[input], shape, range)
    }

    /// The description of a tensor, to change its element type, zero point or scale.
    ///
    /// # Panics
    /// If the tensor does not exist.
    pub fn tensor_mut(&mut self, t: TensorId) -> &mut TensorInfo {
        &mut self.plan.public.tensors[t.0 as usize]
    }

    /// Makes `output` the model output and validates the plan.
    ///
    /// # Errors
    /// Whatever [`crate::plan::validate`] reports.
    pub fn build(mut self, output: TensorId) -> Result<Plan, PlanError> {
        let p = &mut self.plan.public;
        p.output.tensor = output;
        p.output.shape = p
            .tensors
            .get(output.0 as usize)
            .map(|t| t.shape.clone())
            .unwrap_or_default();
        crate::plan::validate(&self.plan)?;
        Ok(self.plan)
    }

    fn add_tensor(&mut self, shape: &[usize], range: (i64, i64)) -> TensorId {
        let id = TensorId(self.plan.public.tensors.len() as u32);
        self.plan.public.tensors.push(TensorInfo {
            name: id.to_string(),
            shape: shape.to_vec(),
            ty: IntType {
                bits: 32,
                signed: true,
            },
            zero_point: 0,
            scale: 1.0,
            range,
        });
        id
    }
}

/// A linear layer of the given shape with `i8` weights, accumulator width `acc_bits` (also
/// used as the naive width) and [`default_protocol`].
pub fn linear<S>(shape: S, acc_bits: u32, requant: Option<Requant>) -> LinearLayer<S> {
    LinearLayer {
        shape,
        weight_ty: IntType {
            bits: 8,
            signed: true,
        },
        acc_bits,
        acc_bits_naive: acc_bits,
        requant,
        protocol: default_protocol(),
    }
}

/// A requantization with per-channel multipliers, shift `k` and the given clamp, ties to even.
pub fn requant(multipliers: &[i64], shift: u32, clamp: (i64, i64)) -> Requant {
    Requant {
        shift,
        clamp,
        rounding: Rounding::HalfEven,
        multipliers: multipliers.to_vec(),
    }
}

/// Weights and biases of one linear layer.
pub fn weights(weights: &[i32], bias: &[i64]) -> LayerWeights {
    LayerWeights {
        weights: weights.to_vec(),
        bias: bias.to_vec(),
    }
}

/// Cheetah's default linear-layer protocol: N = 4096, 37-bit rings, 1×1×1×1 tile, no packing.
pub fn default_protocol() -> LinearProtocol {
    LinearProtocol {
        he: HeParams {
            degree: 4096,
            moduli_bits: vec![60, 49],
            plain_bits: 37,
        },
        tile: Tile {
            c: 1,
            h: 1,
            w: 1,
            m: 1,
        },
        packing: Packing::none(),
        encoding: Encoding::Cheetah,
        in_ring_bits: 37,
        out_ring_bits: 37,
    }
}

/// A small valid plan that uses every operation once, with sound ranges for every input in
/// `[−8, 8]` (shape `[2, 4, 4]`, output `[1, 3]`):
///
/// `conv 3×3 pad 1 (requant, ReLU) → maxpool 2×2 ‖ avgpool 3×3 s2 pad 1 → add → affine →
/// concat(add, affine) → reshape → matmul (raw accumulators) → rescale`.
pub fn every_op_plan() -> Plan {
    // Deterministic small weights in [−2, 2].
    let w = |n: usize| (0..n).map(|i| (i * 7 % 5) as i32 - 2).collect::<Vec<_>>();
    let pool = |kernel, stride, pads| PoolShape {
        channels: 2,
        in_hw: [4, 4],
        kernel,
        stride,
        pads,
    };
    let mut b = PlanBuilder::new(&[2, 4, 4], (-8, 8));
    // |acc| ≤ 8 · 18 · 2 + 1 < 2^9.
    let conv = ConvShape {
        in_channels: 2,
        in_hw: [4, 4],
        out_channels: 2,
        kernel: [3, 3],
        stride: [1, 1],
        pads: [1, 1, 1, 1],
        groups: 1,
    };
    let conv = Op::Conv(linear(conv, 10, Some(requant(&[16, 8], 4, (0, 15)))));
    let t1 = b.linear(
        conv,
        b.input(),
        weights(&w(36), &[1, -1]),
        &[2, 4, 4],
        (0, 15),
    );
    let t2 = b.layer(
        Op::MaxPool(pool([2, 2], [2, 2], [0; 4])),
        &[t1],
        &[2, 2, 2],
        (0, 15),
    );
    let avg = AvgPoolSpec {
        pool: pool([3, 3], [2, 2], [1, 1, 1, 1]),
        count_include_pad: false,
        requant: Requant {
            multipliers: (1..=9).map(|n| 256 / n).collect(),
            shift: 8,
            clamp: (0, 15),
            rounding: Rounding::HalfEven,
        },
        ceil_pads: [0, 0],
    };
    let t3 = b.layer(Op::AvgPool(avg), &[t1], &[2, 2, 2], (0, 15));
    let add = Op::Add(AddSpec {
        m_a: 1,
        m_b: 1,
        shift: 1,
        clamp: (0, 15),
        rounding: Rounding::HalfEven,
    });
    let t4 = b.layer(add, &[t2, t3], &[2, 2, 2], (0, 15));
    // |acc| ≤ 3 · 15 + 1 < 2^6.
    let affine = Op::Affine(linear(
        AffineShape {
            channels: 2,
            per_channel: 4,
        },
        7,
        Some(requant(&[1, 1], 2, (-16, 16))),
    ));
    let t5 = b.linear(
        affine,
        t4,
        weights(&[3, -2], &[1, -1]),
        &[2, 2, 2],
        (-16, 16),
    );
    let t6 = b.layer(Op::Concat, &[t4, t5], &[4, 2, 2], (-16, 16));
    let t7 = b.layer(Op::Reshape, &[t6], &[1, 16], (-16, 16));
    // |acc| ≤ 16 · 16 · 2 + 1 < 2^10.
    let matmul = Op::MatMul(linear(
        MatMulShape {
            rows: 1,
            inner: 16,
            cols: 3,
        },
        11,
        None,
    ));
    let t8 = b.linear(
        matmul,
        t7,
        weights(&w(48), &[1, 0, -1]),
        &[1, 3],
        (-1023, 1023),
    );
    let rescale = Op::Rescale(Requant {
        multipliers: vec![1],
        shift: 2,
        clamp: (-128, 127),
        rounding: Rounding::HalfEven,
    });
    let t9 = b.layer(rescale, &[t8], &[1, 3], (-128, 127));
    b.build(t9).expect("every_op_plan is valid")
}

/// Small valid plans around max pools, one per ring situation, on a `[1, 4, 4]` input with
/// values in `[−8, 8]` (sound ranges), each named:
///
/// - `"unsigned chain"`: `rescale (clamp [0, 15]) → maxpool 2×2 → maxpool 1×2 → reshape →
///   matmul` (raw accumulators): the pools compare in 5 bits, the second extends its outputs
///   into the matmul's 37-bit input ring;
/// - `"signed into combinations"`: `rescale (clamp [−8, 7])`, read by a `maxpool 2×2` and an
///   `avgpool 2×2`, whose outputs an `add` combines: the rescale extends straight into the
///   average pool's combination ring, the max pool into the add's;
/// - `"offset range"`: `rescale (×16, clamp [100, 115]) → maxpool 2×2` as the output: the pool
///   compares in 5 bits values that need 8.
pub fn max_pool_plans() -> Vec<(&'static str, Plan)> {
    let pool = |kernel: [usize; 2], in_hw| PoolShape {
        channels: 1,
        in_hw,
        kernel,
        stride: kernel,
        pads: [0; 4],
    };
    let rescale = |multiplier, shift, clamp| {
        Op::Rescale(Requant {
            multipliers: vec![multiplier],
            shift,
            clamp,
            rounding: Rounding::HalfEven,
        })
    };
    let mut b = PlanBuilder::new(&[1, 4, 4], (-8, 8));
    let t1 = b.layer(rescale(3, 1, (0, 15)), &[b.input()], &[1, 4, 4], (0, 15));
    let t2 = b.layer(
        Op::MaxPool(pool([2, 2], [4, 4])),
        &[t1],
        &[1, 2, 2],
        (0, 15),
    );
    let t3 = b.layer(
        Op::MaxPool(pool([1, 2], [2, 2])),
        &[t2],
        &[1, 2, 1],
        (0, 15),
    );
    let t4 = b.layer(Op::Reshape, &[t3], &[1, 2], (0, 15));
    let shape = MatMulShape {
        rows: 1,
        inner: 2,
        cols: 2,
    };
    let mut matmul = linear(shape, 8, None);
    (matmul.protocol.tile.c, matmul.protocol.tile.m) = (2, 2);
    let t5 = b.linear(
        Op::MatMul(matmul),
        t4,
        weights(&[1, 1, 1, 1], &[0, 0]),
        &[1, 2],
        (0, 30),
    );
    let unsigned = b.build(t5).expect("unsigned chain is valid");

    let mut b = PlanBuilder::new(&[1, 4, 4], (-8, 8));
    let t1 = b.layer(rescale(3, 1, (-8, 7)), &[b.input()], &[1, 4, 4], (-8, 7));
    let t2 = b.layer(
        Op::MaxPool(pool([2, 2], [4, 4])),
        &[t1],
        &[1, 2, 2],
        (-8, 7),
    );
    let avg = AvgPoolSpec {
        pool: pool([2, 2], [4, 4]),
        count_include_pad: false,
        requant: Requant {
            multipliers: (1..=4).map(|n| 256 / n).collect(),
            shift: 8,
            clamp: (-8, 7),
            rounding: Rounding::HalfEven,
        },
        ceil_pads: [0, 0],
    };
    let t3 = b.layer(Op::AvgPool(avg), &[t1], &[1, 2, 2], (-8, 7));
    let add = Op::Add(AddSpec {
        m_a: 1,
        m_b: 1,
        shift: 1,
        clamp: (-8, 7),
        rounding: Rounding::HalfEven,
    });
    let t4 = b.layer(add, &[t2, t3], &[1, 2, 2], (-8, 7));
    let signed = b.build(t4).expect("signed into combinations is valid");

    let mut b = PlanBuilder::new(&[1, 4, 4], (-8, 8));
    let t1 = b.layer(
        rescale(16, 0, (100, 115)),
        &[b.input()],
        &[1, 4, 4],
        (100, 115),
    );
    let t2 = b.layer(
        Op::MaxPool(pool([2, 2], [4, 4])),
        &[t1],
        &[1, 2, 2],
        (100, 115),
    );
    let offset = b.build(t2).expect("offset range is valid");
    vec![
        ("unsigned chain", unsigned),
        ("signed into combinations", signed),
        ("offset range", offset),
    ]
}

/// An epilogue with every kind of step for a `[1, 3]` output (that of [`every_op_plan`]):
/// per-channel dequantization by (0.5, 0.25, 2), `Mul(2)`, `Add(−1)`, Softmax along the
/// channels, the two largest values, a reshape to `[2]`, ArgMax (last index on ties, dimension
/// kept), a reshape of the index to `[1, 1]`.
pub fn every_step_epilogue() -> Epilogue {
    let step = |name: &str, op| EpilogueStep {
        name: name.into(),
        op,
    };
    Epilogue {
        dequantize: Some(ChannelScales {
            axis: 1,
            scales: vec![0.5, 0.25, 2.0],
        }),
        steps: vec![
            step("mul", EpilogueOp::Mul(2.0)),
            step("add", EpilogueOp::Add(-1.0)),
            step("softmax", EpilogueOp::Softmax { axis: 1 }),
            step(
                "topk",
                EpilogueOp::TopK {
                    axis: 1,
                    k: 2,
                    largest: true,
                    output: TopKOutput::Values,
                },
            ),
            step("flatten", EpilogueOp::Reshape(vec![2])),
            step(
                "argmax",
                EpilogueOp::ArgMax {
                    axis: 0,
                    keep_dims: true,
                    last_index: true,
                },
            ),
            step("reshape", EpilogueOp::Reshape(vec![1, 1])),
        ],
    }
}
