//! Hand-computed cases for every operation (expected values worked out on paper in the comments).

use super::testutil::{PlanBuilder, linear, requant, weights};
use super::*;
use crate::plan::{AddSpec, EpilogueOp, IntType, Requant, Rounding, TopKOutput};

const WIDE: (i64, i64) = (-1000, 1000);

fn conv_shape(
    c: usize,
    hw: [usize; 2],
    m: usize,
    k: [usize; 2],
    s: [usize; 2],
    pads: [usize; 4],
    groups: usize,
) -> ConvShape {
    ConvShape {
        in_channels: c,
        in_hw: hw,
        out_channels: m,
        kernel: k,
        stride: s,
        pads,
        groups,
    }
}

fn pool(c: usize, hw: [usize; 2], k: [usize; 2], s: [usize; 2], pads: [usize; 4]) -> PoolShape {
    PoolShape {
        channels: c,
        in_hw: hw,
        kernel: k,
        stride: s,
        pads,
    }
}

fn rescale(multipliers: &[i64], shift: u32, clamp: (i64, i64)) -> Op {
    Op::Rescale(Requant {
        multipliers: multipliers.to_vec(),
        shift,
        clamp,
        rounding: Rounding::HalfEven,
    })
}

/// One layer on a `[len]`-shaped input: run it and return the output.
fn run_one(
    op: Op,
    in_shape: &[usize],
    out_shape: &[usize],
    x: &[i64],
) -> Result<Vec<i64>, ExecError> {
    let mut b = PlanBuilder::new(in_shape, WIDE);
    let y = b.layer(op, &[b.input()], out_shape, WIDE);
    run(&b.build(y)?, x)
}

/// Input 1×3×3 = 1..9, 2×2 kernel [[1,2],[3,4]], stride 2, pads 1, bias 10, raw accumulators.
fn padded_conv_plan(acc_bits: u32) -> Plan {
    let mut b = PlanBuilder::new(&[1, 3, 3], WIDE);
    let s = conv_shape(1, [3, 3], 1, [2, 2], [2, 2], [1, 1, 1, 1], 1);
    let y = b.linear(
        Op::Conv(linear(s, acc_bits, None)),
        b.input(),
        weights(&[1, 2, 3, 4], &[10]),
        &[1, 2, 2],
        WIDE,
    );
    b.build(y).expect("valid plan")
}

#[test]
fn conv_stride_and_padding() {
    // Output (oy, ox) reads input (2·oy − 1 + ky, 2·ox − 1 + kx):
    // (0,0): only x[0,0]·w[1,1] = 1·4 → 14; (0,1): 2·3 + 3·4 = 18 → 28;
    // (1,0): 4·2 + 7·4 = 36 → 46; (1,1): 5·1 + 6·2 + 8·3 + 9·4 = 77 → 87.
    let plan = padded_conv_plan(8);
    let x = [1, 2, 3, 4, 5, 6, 7, 8, 9];
    assert_eq!(run(&plan, &x).unwrap(), vec![14, 28, 46, 87]);
    let trace = run_traced(&plan, &x).unwrap();
    assert_eq!(trace.accumulators, vec![(LayerId(0), vec![14, 28, 46, 87])]);
    assert_eq!(trace.tensors, vec![x.to_vec(), vec![14, 28, 46, 87]]);
}

#[test]
fn conv_accumulator_overflow_detected() {
    // 7 bits hold |acc| < 64: 14, 28 and 46 pass, 87 does not.
    let err = run(&padded_conv_plan(7), &[1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap_err();
    assert!(
        matches!(
            err,
            ExecError::AccOverflow {
                layer: LayerId(0),
                value: 87,
                bits: 7
            }
        ),
        "{err}"
    );
    // |acc| < 2^(bits−1) is strict: −64 fails 7 bits although it is a 7-bit two's complement.
    let mut plan = padded_conv_plan(7);
    plan.weights.as_mut().unwrap().layers[0].1 = weights(&[0, 0, 0, 0], &[-64]);
    let err = run(&plan, &[0; 9]).unwrap_err();
    assert!(
        matches!(
            err,
            ExecError::AccOverflow {
                value: -64,
                bits: 7,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn conv_groups() {
    // C = 4, M = 2, groups = 2, 1×1 kernel: filter 0 reads channels 0,1, filter 1 channels 2,3.
    // y0 = 1·1 + 2·10 = 21; y1 = 3·(−100) + 4·3 = −288.
    let mut b = PlanBuilder::new(&[4, 1, 1], WIDE);
    let s = conv_shape(4, [1, 1], 2, [1, 1], [1, 1], [0; 4], 2);
    let y = b.linear(
        Op::Conv(linear(s, 16, None)),
        b.input(),
        weights(&[1, 10, -100, 3], &[0, 0]),
        &[2, 1, 1],
        WIDE,
    );
    assert_eq!(
        run(&b.build(y).unwrap(), &[1, 2, 3, 4]).unwrap(),
        vec![21, -288]
    );
}

#[test]
fn conv_depthwise_with_requant() {
    // Channel 0 = 1..9 with kernel [[1,0],[0,1]]: x[oy][ox] + x[oy+1][ox+1] = 6, 8, 12, 14.
    // Channel 1 = all −1 with kernel of ones and bias 5: −4 + 5 = 1.
    // Requant m = [1, 3], k = 1, clamp [0, 6]: (6+1)>>1 = 3, (8+1)>>1 = 4, (12+1)>>1 = 6,
    // (14+1)>>1 = 7 → 6; channel 1: (3 + 1)>>1 = 2.
    let mut b = PlanBuilder::new(&[2, 3, 3], WIDE);
    let s = conv_shape(2, [3, 3], 2, [2, 2], [1, 1], [0; 4], 2);
    let lw = weights(&[1, 0, 0, 1, 1, 1, 1, 1], &[0, 5]);
    let op = Op::Conv(linear(s, 8, Some(requant(&[1, 3], 1, (0, 6)))));
    assert_eq!(op.kind(), "dwconv");
    let y = b.linear(op, b.input(), lw, &[2, 2, 2], (0, 6));
    let plan = b.build(y).unwrap();
    let x = [
        1, 2, 3, 4, 5, 6, 7, 8, 9, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    ];
    let trace = run_traced(&plan, &x).unwrap();
    assert_eq!(trace.accumulators[0].1, vec![6, 8, 12, 14, 1, 1, 1, 1]);
    assert_eq!(trace.tensors[1], vec![3, 4, 6, 6, 2, 2, 2, 2]);
}

/// X = [[1, 2], [3, −4]], W = [[1, −1], [2, 3]], bias [0, 1]:
/// acc = [[5, 6], [−5, −14]].
fn matmul_plan(multipliers: &[i64], shift: u32, clamp: (i64, i64)) -> Plan {
    let mut b = PlanBuilder::new(&[2, 2], WIDE);
    let s = MatMulShape {
        rows: 2,
        inner: 2,
        cols: 2,
    };
    let lw = weights(&[1, -1, 2, 3], &[0, 1]);
    let y = b.linear(
        Op::MatMul(linear(s, 8, Some(requant(multipliers, shift, clamp)))),
        b.input(),
        lw,
        &[2, 2],
        WIDE,
    );
    b.build(y).unwrap()
}

#[test]
fn matmul_requant_negative_multiplier_and_floor() {
    // m = [3, −1] by column, k = 2: 15/4 = 3.75 → 4; −6/4 = −1.5 → −2 (tie to even);
    // −15/4 = −3.75 → −4; 14/4 = 3.5 → 4 (tie to even).
    let plan = matmul_plan(&[3, -1], 2, WIDE);
    let trace = run_traced(&plan, &[1, 2, 3, -4]).unwrap();
    assert_eq!(trace.accumulators, vec![(LayerId(0), vec![5, 6, -5, -14])]);
    assert_eq!(trace.tensors[1], vec![4, -2, -4, 4]);
}

#[test]
fn matmul_clamp_is_fused_relu_and_clip() {
    // Same values clamped to [0, 3]: 4 → 3, −2 → 0, −4 → 0, 4 → 3.
    assert_eq!(
        run(&matmul_plan(&[3, -1], 2, (0, 3)), &[1, 2, 3, -4]).unwrap(),
        vec![3, 0, 0, 3]
    );
}

#[test]
fn affine_per_channel() {
    // a = [2, −3], bias = [1, 0]: [2·1 + 1, 2·2 + 1, −3·3, −3·4].
    let mut b = PlanBuilder::new(&[2, 2], WIDE);
    let s = AffineShape {
        channels: 2,
        per_channel: 2,
    };
    let y = b.linear(
        Op::Affine(linear(s, 8, None)),
        b.input(),
        weights(&[2, -3], &[1, 0]),
        &[2, 2],
        WIDE,
    );
    assert_eq!(
        run(&b.build(y).unwrap(), &[1, 2, 3, 4]).unwrap(),
        vec![3, 5, -9, -12]
    );
}

#[test]
fn rescale_rounds_ties_to_even() {
    // x / 2: −1.5 → −2, −1 → −1, −0.5 → 0, 0, 0.5 → 0, 1, 1.5 → 2.
    let y = run_one(
        rescale(&[1], 1, WIDE),
        &[7],
        &[7],
        &[-3, -2, -1, 0, 1, 2, 3],
    )
    .unwrap();
    assert_eq!(y, vec![-2, -1, 0, 0, 0, 1, 2]);
}

#[test]
fn rescale_shift_zero_has_no_rounding() {
    assert_eq!(
        run_one(rescale(&[2], 0, WIDE), &[2], &[2], &[-3, 5]).unwrap(),
        vec![-6, 10]
    );
}

#[test]
fn declared_tie_free_rescale_fails_on_a_tie() {
    let op = Op::Rescale(Requant {
        multipliers: vec![1],
        shift: 1,
        clamp: WIDE,
        rounding: Rounding::NoTies,
    });
    assert_eq!(
        run_one(op.clone(), &[2], &[2], &[2, -4]).unwrap(),
        vec![1, -2]
    );
    assert!(matches!(
        run_one(op, &[2], &[2], &[2, 3]),
        Err(ExecError::UnexpectedTie { layer: LayerId(0) })
    ));
}

#[test]
fn rescale_per_channel() {
    // Two channels of two elements: m = 1 for [1, 2], m = 3 for [3, 4].
    let y = run_one(rescale(&[1, 3], 0, WIDE), &[2, 2], &[2, 2], &[1, 2, 3, 4]).unwrap();
    assert_eq!(y, vec![1, 2, 9, 12]);
}

#[test]
fn add_aligns_scales_and_clamps() {
    // a = x = [1, 4, −3], b = −x = [−1, −4, 3], m_a = 3, m_b = −2, k = 1, clamp [−5, 5]:
    // 5/2 = 2.5 → 2 (tie to even); 20/2 = 10 → 5; −15/2 = −7.5 → −8 → −5.
    let mut b = PlanBuilder::new(&[3], WIDE);
    let neg = b.layer(rescale(&[-1], 0, WIDE), &[b.input()], &[3], WIDE);
    let op = Op::Add(AddSpec {
        m_a: 3,
        m_b: -2,
        shift: 1,
        clamp: (-5, 5),
        rounding: Rounding::HalfEven,
    });
    let y = b.layer(op, &[b.input(), neg], &[3], (-5, 5));
    assert_eq!(
        run(&b.build(y).unwrap(), &[1, 4, -3]).unwrap(),
        vec![2, 5, -5]
    );
}

#[test]
fn maxpool_padding_never_wins() {
    // x = −1..−9 (3×3), 2×2 windows, stride 2, pads 1: windows hold {−1}, {−2, −3}, {−4, −7},
    // {−5, −6, −8, −9}; a padded zero would win every one of them.
    let op = Op::MaxPool(pool(1, [3, 3], [2, 2], [2, 2], [1, 1, 1, 1]));
    let y = run_one(
        op,
        &[1, 3, 3],
        &[1, 2, 2],
        &[-1, -2, -3, -4, -5, -6, -7, -8, -9],
    )
    .unwrap();
    assert_eq!(y, vec![-1, -2, -4, -5]);
}

fn avgpool(count_include_pad: bool) -> Op {
    Op::AvgPool(AvgPoolSpec {
        pool: pool(1, [3, 3], [2, 2], [2, 2], [1, 1, 1, 1]),
        count_include_pad,
        // ≈ 256 / n for n = 1..4.
        requant: Requant {
            multipliers: vec![256, 128, 85, 64],
            shift: 8,
            clamp: WIDE,
            rounding: Rounding::HalfEven,
        },
        ceil_pads: [0, 0],
    })
}

#[test]
fn avgpool_border_counts() {
    // x = 1..9; windows: {1} n=1, {2,3} n=2, {4,7} n=2, {5,6,8,9} n=4:
    // 256/256 = 1; 5·128/256 = 2.5 → 2 (tie to even); 11·128/256 = 5.5 → 6 (tie to even);
    // 28·64/256 = 7.
    let x = [1, 2, 3, 4, 5, 6, 7, 8, 9];
    assert_eq!(
        run_one(avgpool(false), &[1, 3, 3], &[1, 2, 2], &x).unwrap(),
        vec![1, 2, 6, 7]
    );
}

#[test]
fn avgpool_count_include_pad() {
    // Every window divides by 4 (m = 64): 64/256 = 0.25 → 0; 320/256 = 1.25 → 1;
    // 704/256 = 2.75 → 3; 1792/256 = 7.
    let x = [1, 2, 3, 4, 5, 6, 7, 8, 9];
    assert_eq!(
        run_one(avgpool(true), &[1, 3, 3], &[1, 2, 2], &x).unwrap(),
        vec![0, 1, 3, 7]
    );
}

#[test]
fn avgpool_asymmetric_pads() {
    // x = [[1, 2], [3, 4]], 2×2 windows, stride 1, pads top 0, left 1, bottom 1, right 0:
    // windows {1, 3} n=2, {1, 2, 3, 4} n=4, {3} n=1, {3, 4} n=2;
    // 4·128/256 = 2; 10·64/256 = 2.5 → 2 (tie to even); 3·256/256 = 3; 7·128/256 = 3.5 → 4.
    let op = Op::AvgPool(AvgPoolSpec {
        pool: pool(1, [2, 2], [2, 2], [1, 1], [0, 1, 1, 0]),
        count_include_pad: false,
        requant: Requant {
            multipliers: vec![256, 128, 85, 64],
            shift: 8,
            clamp: WIDE,
            rounding: Rounding::HalfEven,
        },
        ceil_pads: [0, 0],
    });
    assert_eq!(
        run_one(op, &[1, 2, 2], &[1, 2, 2], &[1, 2, 3, 4]).unwrap(),
        vec![2, 2, 3, 4]
    );
}

/// ONNX `ceil_mode`: x = 1..16 (4×4), 3×3 windows, stride 2, pad 1 → 3×3 outputs (floor mode:
/// 2×2); the last row and column of windows reach one position past the padding
/// (`ceil_pads` = [1, 1]). Window rows (and columns) cover input rows {0, 1}, {1, 2, 3}, {3}.
/// Divisors per window (row-major): `count_include_pad` = 0 counts the in-bounds elements,
/// 4 6 2 / 6 9 3 / 2 3 1; = 1 counts the window clipped to the model's padding, 9 9 6 / 9 9 6 /
/// 6 6 4 (onnxruntime and PyTorch), never the ceil padding.
fn avgpool_ceil(count_include_pad: bool) -> Op {
    Op::AvgPool(AvgPoolSpec {
        pool: pool(1, [4, 4], [3, 3], [2, 2], [1, 1, 2, 2]),
        count_include_pad,
        // 36 / n: exact for every count that occurs (1, 2, 3, 4, 6, 9).
        requant: Requant {
            multipliers: (1..=9).map(|n| 36 / n).collect(),
            shift: 0,
            clamp: WIDE,
            rounding: Rounding::HalfEven,
        },
        ceil_pads: [1, 1],
    })
}

#[test]
fn avgpool_ceil_mode_divisors() {
    let x: Vec<i64> = (1..=16).collect();
    let sums = [14, 30, 12, 57, 99, 36, 27, 45, 16];
    let run = |cip| run_one(avgpool_ceil(cip), &[1, 4, 4], &[1, 3, 3], &x).unwrap();
    let scaled = |divisors: [i64; 9]| -> Vec<i64> {
        sums.iter()
            .zip(divisors)
            .map(|(s, n)| s * (36 / n))
            .collect()
    };
    assert_eq!(run(false), scaled([4, 6, 2, 6, 9, 3, 2, 3, 1]));
    assert_eq!(run(true), scaled([9, 9, 6, 9, 9, 6, 6, 6, 4]));
}

#[test]
fn concat_and_reshape() {
    let mut b = PlanBuilder::new(&[1, 2], WIDE);
    let doubled = b.layer(rescale(&[2], 0, WIDE), &[b.input()], &[1, 2], WIDE);
    let cat = b.layer(Op::Concat, &[b.input(), doubled, b.input()], &[3, 2], WIDE);
    let flat = b.layer(Op::Reshape, &[cat], &[6], WIDE);
    assert_eq!(
        run(&b.build(flat).unwrap(), &[1, -2]).unwrap(),
        vec![1, -2, 2, -4, 1, -2]
    );
}

#[test]
fn range_violations_detected() {
    let mut b = PlanBuilder::new(&[2], (-8, 8));
    let y = b.layer(rescale(&[1], 0, WIDE), &[b.input()], &[2], (-1, 1));
    let plan = b.build(y).unwrap();
    let err = run(&plan, &[0, 9]).unwrap_err();
    assert!(
        matches!(
            err,
            ExecError::OutOfRange {
                tensor: TensorId(0),
                value: 9,
                lo: -8,
                hi: 8
            }
        ),
        "{err}"
    );
    let err = run(&plan, &[1, 2]).unwrap_err();
    assert!(
        matches!(
            err,
            ExecError::OutOfRange {
                tensor: TensorId(1),
                value: 2,
                lo: -1,
                hi: 1
            }
        ),
        "{err}"
    );
    assert_eq!(run(&plan, &[1, -1]).unwrap(), vec![1, -1]);
}

#[test]
fn input_length_and_missing_weights() {
    let plan = padded_conv_plan(8);
    let err = run(&plan, &[1, 2]).unwrap_err();
    assert!(
        matches!(
            err,
            ExecError::InputShape {
                expected: 9,
                actual: 2,
                ..
            }
        ),
        "{err}"
    );
    let err = run(&plan.to_client(), &[0; 9]).unwrap_err();
    assert!(
        matches!(err, ExecError::MissingWeights(LayerId(0))),
        "{err}"
    );
}

#[test]
fn invalid_plan_is_an_error() {
    let mut plan = padded_conv_plan(8);
    plan.public.layers[0].output = TensorId(7);
    assert!(matches!(run(&plan, &[0; 9]), Err(ExecError::Plan(_))));
}

#[test]
fn overflow_beyond_128_bits_detected() {
    // a·m_a + b·m_b = 2^126 + 2^126 = 2^127 > i128::MAX.
    let full = (i64::MIN, i64::MAX);
    let mut b = PlanBuilder::new(&[1], full);
    let op = Op::Add(AddSpec {
        m_a: i64::MIN,
        m_b: i64::MIN,
        shift: 0,
        clamp: full,
        rounding: Rounding::HalfEven,
    });
    let y = b.layer(op, &[b.input(), b.input()], &[1], full);
    let err = run(&b.build(y).unwrap(), &[i64::MIN]).unwrap_err();
    assert!(
        matches!(err, ExecError::Overflow { layer: LayerId(0) }),
        "{err}"
    );
}

fn io_plan(ty: IntType, zero_point: i64, scale: f32) -> PublicPlan {
    let mut b = PlanBuilder::new(&[1], (-1000, 1000));
    let t = b.tensor_mut(b.input());
    (t.ty, t.zero_point, t.scale) = (ty, zero_point, scale);
    let input = b.input();
    b.build(input).unwrap().public
}

#[test]
fn quantize_rounds_half_to_even_and_saturates() {
    let p = io_plan(
        IntType {
            bits: 8,
            signed: true,
        },
        3,
        0.5,
    );
    // x/0.5 = 0.5 → 0, 1.5 → 2, −0.5 → −0, 2.5 → 2, 3 → 3; +3, then v = q − 3.
    // 200 + 3 saturates at 127 → 124; −200 + 3 at −128 → −131; NaN → 0.
    let x = [
        0.25,
        0.75,
        -0.25,
        1.25,
        1.5,
        100.0,
        -100.0,
        f32::NAN,
        f32::INFINITY,
    ];
    assert_eq!(
        quantize_input(&p, &x),
        vec![0, 2, 0, 2, 3, 124, -131, 0, 124]
    );
    let p = io_plan(
        IntType {
            bits: 8,
            signed: false,
        },
        128,
        1.0,
    );
    assert_eq!(
        quantize_input(&p, &[-200.0, -128.0, 127.0, 127.5, 300.0]),
        vec![-128, -128, 127, 127, 127]
    );
}

#[test]
fn quantize_divides_in_f32() {
    // 0.35f32 / 0.1f32 is exactly 3.5 in f32, a tie that goes to the even 4; the same inputs
    // divided in f64 give 3.4999999 and would round to 3.
    let p = io_plan(
        IntType {
            bits: 8,
            signed: true,
        },
        0,
        0.1,
    );
    assert_eq!(quantize_input(&p, &[0.3, 0.35, -0.25]), vec![3, 4, -2]);
}

#[test]
fn dequantize_is_scale_times_value() {
    let p = io_plan(
        IntType {
            bits: 8,
            signed: true,
        },
        3,
        0.5,
    );
    assert_eq!(dequantize_output(&p, &[-3, 4, 0]), vec![-1.5, 2.0, 0.0]);
}

#[test]
fn every_op_plan_on_zero_input() {
    // Zero input: conv acc = bias (1, −1) → (16 + 8)>>4 = 1, (−8 + 8)>>4 = 0; maxpool keeps
    // 1 / 0; avgpool windows of n = 4, 6, 6, 9 ones: (n·⌊256/n⌋ + 128)>>8 = 1 / 0;
    // add (1 + 1 + 1)>>1 = 1 / 0; affine 3·1 + 1 = 4, −2·0 − 1 = −1 → (4 + 2)>>2 = 1, 0;
    // matmul over the ones at 0..4 and 8..12 of the concatenation with W[i][j] =
    // (7(3i + j) mod 5) − 2: column sums −2, −1, 0 plus bias 1, 0, −1 → −1 each;
    // rescale (−1 + 2)>>2 = 0.
    let plan = testutil::every_op_plan();
    let trace = run_traced(&plan, &[0; 32]).unwrap();
    assert_eq!(trace.tensors[4], vec![1, 1, 1, 1, 0, 0, 0, 0]);
    let accs: Vec<_> = trace
        .accumulators
        .iter()
        .map(|(l, a)| (l.0, a.len()))
        .collect();
    assert_eq!(accs, vec![(0, 32), (4, 8), (7, 3)]);
    assert_eq!(trace.accumulators[1].1, vec![4, 4, 4, 4, -1, -1, -1, -1]);
    assert_eq!(trace.accumulators[2].1, vec![-1, -1, -1]);
    assert_eq!(trace.tensors[9], vec![0, 0, 0]);
    // The declared ranges hold at the extremes of the input range.
    for v in [-8, 8] {
        assert!(run(&plan, &[v; 32]).is_ok());
    }
}

#[test]
fn every_step_epilogue_on_zero_input() {
    // The output (0, 0, 0) dequantizes to zeros; 2·0 − 1 = −1 each; softmax 1/3 each; the two
    // largest: (1/3, 1/3); ArgMax with last index on ties: 1, as [1, 1].
    let mut plan = testutil::every_op_plan();
    plan.public.epilogue = testutil::every_step_epilogue();
    let y = run(&plan, &[0; 32]).unwrap();
    assert_eq!(y, vec![0, 0, 0]);
    let out = epilogue::finish(&plan.public, &y).unwrap();
    assert_eq!(out.shape, vec![1, 1]);
    assert_eq!(out.data, epilogue::OutputData::Index(vec![1]));
    // Output (2, −4, 1): 2·(1, −1, 2) − 1 = (1, −3, 3); the two largest are channels 2 and 0.
    plan.public.epilogue.steps.truncate(4);
    plan.public.epilogue.steps[3].op = EpilogueOp::TopK {
        axis: 1,
        k: 2,
        largest: true,
        output: TopKOutput::Indices,
    };
    let out = epilogue::finish(&plan.public, &[2, -4, 1]).unwrap();
    assert_eq!(out.shape, vec![1, 2]);
    assert_eq!(out.data, epilogue::OutputData::Index(vec![2, 0]));
    assert!(matches!(
        epilogue::finish(&plan.public, &[1, 2]),
        Err(ExecError::OutputLength {
            expected: 3,
            actual: 2
        })
    ));
}

/// The convolution formula of `docs/semantics.md`, written as directly as possible, as the
/// oracle for the executor's weight-stationary loops.
fn naive_conv(s: &ConvShape, w: &[i32], bias: &[i64], x: &[i64]) -> Vec<i64> {
    let [oh, ow] = s.out_hw();
    let (cg, mg) = (s.in_channels / s.groups, s.out_channels / s.groups);
    let mut y = Vec::new();
    for (m, &b) in bias.iter().enumerate() {
        let g0 = m / mg * cg;
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = b;
                for c in g0..g0 + cg {
                    for ky in 0..s.kernel[0] {
                        for kx in 0..s.kernel[1] {
                            let iy = (oy * s.stride[0] + ky) as i64 - s.pads[0] as i64;
                            let ix = (ox * s.stride[1] + kx) as i64 - s.pads[1] as i64;
                            if iy < 0
                                || ix < 0
                                || iy >= s.in_hw[0] as i64
                                || ix >= s.in_hw[1] as i64
                            {
                                continue;
                            }
                            let wi = ((m * cg + c - g0) * s.kernel[0] + ky) * s.kernel[1] + kx;
                            let xi = (c * s.in_hw[0] + iy as usize) * s.in_hw[1] + ix as usize;
                            acc += i64::from(w[wi]) * x[xi];
                        }
                    }
                }
                y.push(acc);
            }
        }
    }
    y
}

proptest::proptest! {
    #[test]
    fn conv_matches_the_direct_formula(
        groups in 1usize..4, cg in 1usize..3, mg in 1usize..3, h in 1usize..7, w in 1usize..7,
        kh in 1usize..4, kw in 1usize..4, sh in 1usize..4, sw in 1usize..4,
        pads in proptest::array::uniform4(0usize..3), seed in proptest::prelude::any::<u64>(),
    ) {
        let (c, m) = (groups * cg, groups * mg);
        let s = conv_shape(c, [h, w], m, [kh, kw], [sh, sw], pads, groups);
        proptest::prop_assume!(h + pads[0] + pads[2] >= kh && w + pads[1] + pads[3] >= kw);
        let mut state = seed | 1;
        let mut next = |range: i64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % (2 * range as u64 + 1)) as i64 - range
        };
        let weights_: Vec<i32> = (0..s.weight_len()).map(|_| next(127) as i32).collect();
        let bias: Vec<i64> = (0..m).map(|_| next(1000)).collect();
        let x: Vec<i64> = (0..c * h * w).map(|_| next(128)).collect();
        let want = naive_conv(&s, &weights_, &bias, &x);
        let [oh, ow] = s.out_hw();
        let mut b = PlanBuilder::new(&[c, h, w], (-128, 128));
        let y = b.linear(Op::Conv(linear(s, 32, None)), b.input(), weights(&weights_, &bias), &[m, oh, ow], (-(1 << 30), 1 << 30));
        proptest::prop_assert_eq!(run(&b.build(y).unwrap(), &x).unwrap(), want);
    }
}

#[test]
fn faithful_rescale_is_exact_in_run_and_floor_or_ceiling_when_simulated() {
    // y = x·3 / 2^3 for every x in [-100, 100]: run rounds to nearest (ties to even), the
    // simulation to ⌊3x / 8⌋ or ⌈3x / 8⌉, the ceiling about (3x mod 8) / 8 of the time.
    let mut b = PlanBuilder::new(&[201], WIDE);
    let op = Op::Rescale(Requant {
        multipliers: vec![3],
        shift: 3,
        clamp: WIDE,
        rounding: Rounding::Faithful,
    });
    let y = b.layer(op, &[b.input()], &[201], WIDE);
    let plan = b.build(y).expect("valid plan");
    let x: Vec<i64> = (-100..=100).collect();
    let exact = run(&plan, &x).expect("run");
    let nearest: Vec<i64> = x
        .iter()
        .map(|&v| ring::round_shift(i128::from(3 * v), 3).half_even() as i64)
        .collect();
    assert_eq!(exact, nearest);
    let simulated = run_simulated(&plan, &x, 7).expect("simulated");
    assert_eq!(run_simulated(&plan, &x, 7).expect("again"), simulated);
    assert_ne!(run_simulated(&plan, &x, 8).expect("other seed"), simulated);
    let mut ceilings = 0;
    for (&v, &y) in x.iter().zip(&simulated) {
        let (floor, rest) = ((3 * v) >> 3, (3 * v) & 7);
        assert!(y == floor || rest > 0 && y == floor + 1, "x {v}: {y}");
        ceilings += i64::from(y > floor);
    }
    // Σ (3x mod 8) / 8 over the inputs is 87.5 (the 3x that 8 divides give no ceiling).
    assert!((60..=115).contains(&ceilings), "{ceilings} ceilings");
}
