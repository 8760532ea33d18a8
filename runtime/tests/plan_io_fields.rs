//! Field-level mutations of a valid plan: `validate` must reject or accept every combination of
//! hostile numbers (zero, huge, negative, out of range) without panicking, and the reference
//! executor must run every accepted plan without panicking.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]

use heq_runtime::error::ExecError;
use heq_runtime::plan::{EpilogueOp, Op, Plan, PoolShape, validate};
use heq_runtime::reference::testutil::{every_op_plan, every_step_epilogue};
use heq_runtime::reference::{self, epilogue};

/// Fields [`mutate`] can edit.
const FIELDS: usize = 41;

/// `every_op_plan` with an epilogue of every step.
fn sample_plan() -> Plan {
    let mut plan = every_op_plan();
    plan.public.epilogue = every_step_epilogue();
    plan
}
use proptest::prelude::*;

/// Interesting sizes: small, boundary, the validation limits, overflowing.
const SIZES: [usize; 16] = [
    0,
    1,
    2,
    3,
    4,
    5,
    8,
    9,
    16,
    255,
    1 << 26,
    (1 << 26) + 1,
    1 << 32,
    1 << 62,
    usize::MAX - 1,
    usize::MAX,
];

/// Interesting signed values for ranges, clamps, biases and multipliers.
const VALUES: [i64; 12] = [
    i64::MIN,
    i64::MIN + 1,
    -(1 << 40),
    -129,
    -1,
    0,
    1,
    15,
    127,
    1 << 40,
    i64::MAX - 1,
    i64::MAX,
];

fn pool(p: &mut Plan, layer: usize) -> &mut PoolShape {
    match &mut p.public.layers[layer].op {
        Op::MaxPool(s) => s,
        Op::AvgPool(a) => &mut a.pool,
        _ => unreachable!("l1 and l2 of every_op_plan are pools"),
    }
}

/// Sets one field, chosen by `field`, to a size or value chosen by `pick`.
fn mutate(p: &mut Plan, field: usize, pick: usize) {
    let size = SIZES[pick % SIZES.len()];
    let value = VALUES[pick % VALUES.len()];
    let small = (pick % 70) as u32;
    let layers = &mut p.public.layers;
    match field {
        0..=14 => {
            let Op::Conv(l) = &mut layers[0].op else {
                unreachable!()
            };
            let s = &mut l.shape;
            match field {
                0 => s.in_channels = size,
                1 => s.in_hw[0] = size,
                2 => s.in_hw[1] = size,
                3 => s.out_channels = size,
                4 => s.kernel[0] = size,
                5 => s.kernel[1] = size,
                6 => s.stride[0] = size,
                7 => s.stride[1] = size,
                8..=11 => s.pads[field - 8] = size,
                12 => s.groups = size,
                13 => l.acc_bits = small,
                _ => l.requant.as_mut().unwrap().shift = small,
            }
        }
        15..=24 => {
            let s = pool(p, 1 + field % 2);
            match field {
                15 | 16 => s.channels = size,
                17 | 18 => s.kernel[field % 2] = size,
                19 | 20 => s.stride[field % 2] = size,
                _ => s.pads[field - 21] = size,
            }
        }
        25 => {
            let Op::MatMul(l) = &mut layers[7].op else {
                unreachable!()
            };
            l.shape.inner = size;
        }
        26 => {
            let Op::Affine(l) = &mut layers[4].op else {
                unreachable!()
            };
            l.shape.per_channel = size;
        }
        27 => {
            let Op::AvgPool(a) = &mut layers[2].op else {
                unreachable!()
            };
            a.requant.multipliers[pick % 9] = value;
        }
        28 => {
            let Op::Add(a) = &mut layers[3].op else {
                unreachable!()
            };
            (a.m_a, a.shift) = (value, small);
        }
        29 => {
            let Op::Rescale(r) = &mut layers[8].op else {
                unreachable!()
            };
            r.multipliers = vec![value; pick % 4];
        }
        30 => {
            let t = pick % p.public.tensors.len();
            let dims = p.public.tensors[t].shape.len();
            p.public.tensors[t].shape[pick % dims] = size;
        }
        31 => {
            let t = pick % p.public.tensors.len();
            p.public.tensors[t].range.0 = value;
        }
        32 => {
            let t = pick % p.public.tensors.len();
            p.public.tensors[t].range.1 = value;
        }
        33 => {
            let w = p.weights.as_mut().unwrap();
            let n = w.layers.len();
            let lw = &mut w.layers[pick % n].1;
            match pick % 2 {
                0 => lw.bias[0] = value,
                _ => lw.weights[0] = value as i32,
            }
        }
        34 => {
            let l = pick % layers.len();
            layers[l].inputs[0].0 = (size % (1 << 32)) as u32;
        }
        35 => p.public.input.shape = vec![size; 1 + pick % 3],
        36 => {
            let d = p.public.epilogue.dequantize.as_mut().unwrap();
            match pick % 3 {
                0 => d.axis = size,
                1 => d.scales = vec![value as f32; pick % 5],
                _ => {
                    if let Some(s) = d.scales.first_mut() {
                        *s = f32::from_bits(value as u32);
                    }
                }
            }
        }
        37..=39 => {
            let steps = &mut p.public.epilogue.steps;
            let i = pick % steps.len();
            match (&mut steps[i].op, field) {
                (EpilogueOp::Mul(c) | EpilogueOp::Add(c), _) => *c = f32::from_bits(value as u32),
                (EpilogueOp::Softmax { axis } | EpilogueOp::ArgMax { axis, .. }, _) => {
                    *axis = size;
                }
                (EpilogueOp::TopK { axis, .. }, 37) => *axis = size,
                (EpilogueOp::TopK { k, .. }, _) => *k = size,
                (EpilogueOp::Reshape(shape), 37) => shape.push(size),
                (EpilogueOp::Reshape(shape), _) => shape.insert(0, size),
            }
            if field == 39 {
                let next = (i + 1) % steps.len();
                steps.swap(i, next);
            }
        }
        _ => {
            let Op::Conv(l) = &mut layers[0].op else {
                unreachable!()
            };
            let r = l.requant.as_mut().unwrap();
            if pick.is_multiple_of(2) {
                r.clamp = (value, VALUES[(pick / 12) % VALUES.len()]);
            } else {
                r.multipliers.iter_mut().for_each(|m| *m = value);
            }
        }
    }
}

fn run_if_valid(plan: &Plan) -> bool {
    if validate(plan).is_err() {
        return false;
    }
    let t = &plan.public.tensors[plan.public.input.tensor.0 as usize];
    assert!(
        t.len() <= 1 << 16,
        "a few mutations made a {}-element input",
        t.len()
    );
    for v in [0, t.range.0, t.range.1, t.range.0 / 2] {
        match reference::run(plan, &vec![v; t.len()]) {
            Err(ExecError::Plan(e)) => panic!("validated plan rejected by the executor: {e}"),
            Err(ExecError::InputShape { .. }) => panic!("input length mismatch"),
            Ok(y) => {
                if let Err(e) = epilogue::finish(&plan.public, &y) {
                    panic!("the epilogue of a validated plan failed: {e}");
                }
            }
            Err(_) => {}
        }
    }
    true
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn hostile_fields_never_panic(edits in prop::collection::vec((0usize..FIELDS, any::<usize>()), 1..4)) {
        let mut plan = sample_plan();
        for (field, pick) in edits {
            mutate(&mut plan, field, pick);
        }
        run_if_valid(&plan);
    }
}

#[test]
fn every_single_field_edit_never_panics() {
    let mut accepted = 0;
    for field in 0..FIELDS {
        for pick in 0..SIZES.len() * VALUES.len() {
            let mut plan = sample_plan();
            mutate(&mut plan, field, pick);
            accepted += usize::from(run_if_valid(&plan));
        }
    }
    // Some edits keep the plan valid (a weight, a bias, a wider range, another multiplier).
    assert!(accepted > 0);
}
