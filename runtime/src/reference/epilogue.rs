//! The client's plaintext epilogue ([`crate::plan::Epilogue`]): from the revealed centred
//! integers of one sample to the model output.
//!
//! This is the one implementation of the epilogue: `heq-run --mode plain` applies it to the
//! reference executor's output, and `--mode sim` and `--role client` to the output the client
//! reconstructed, so float outputs of a two-party run are bit-identical to the reference
//! whenever the revealed integers are (they always are). Every step is `f32` arithmetic in a
//! fixed order (`docs/semantics.md` §5).

use super::dequantize_output;
use crate::error::{ExecError, PlanError};
use crate::plan::{EpilogueOp, PublicPlan, TopKOutput};

/// The elements of a model output, row-major.
#[derive(Clone, Debug, PartialEq)]
pub enum OutputData {
    /// Float values (written as float32).
    Float(Vec<f32>),
    /// Indices (ArgMax, TopK; written as int64).
    Index(Vec<i64>),
}

/// The model output of one sample, as the client computes it after the reveal.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelOutput {
    /// Shape of one sample (no batch dimension).
    pub shape: Vec<usize>,
    /// The elements.
    pub data: OutputData,
}

/// The model output of one sample from the revealed centred values of the plan's output
/// tensor: dequantized (by the output tensor's scale, or the epilogue's per-channel scales),
/// then every epilogue step in order.
///
/// # Errors
/// An epilogue that does not fit the output tensor ([`ExecError::Plan`]; a validated plan
/// always fits), or `revealed` of the wrong length ([`ExecError::OutputLength`]).
pub fn finish(plan: &PublicPlan, revealed: &[i64]) -> Result<ModelOutput, ExecError> {
    let out = plan
        .tensors
        .get(plan.output.tensor.0 as usize)
        .ok_or_else(|| invalid(format!("output tensor {} is missing", plan.output.tensor)))?;
    plan.epilogue.output(&out.shape).map_err(invalid)?;
    if revealed.len() != out.len() {
        return Err(ExecError::OutputLength {
            expected: out.len(),
            actual: revealed.len(),
        });
    }
    let mut shape = out.shape.clone();
    let mut data = OutputData::Float(dequantize_output(plan, revealed));
    for step in &plan.epilogue.steps {
        data = apply(&step.op, &mut shape, data);
    }
    Ok(ModelOutput { shape, data })
}

fn invalid(reason: String) -> ExecError {
    ExecError::Plan(PlanError::Invalid(vec![reason]))
}

/// Runs one step on `data` of shape `shape` (checked by [`crate::plan::Epilogue::output`]),
/// updating the shape.
fn apply(op: &EpilogueOp, shape: &mut Vec<usize>, data: OutputData) -> OutputData {
    let x = match data {
        OutputData::Float(x) => x,
        // Only a reshape reads indices (the type check admits nothing else).
        index @ OutputData::Index(_) => {
            if let EpilogueOp::Reshape(s) = op {
                shape.clone_from(s);
            }
            return index;
        }
    };
    match op {
        EpilogueOp::Mul(c) => OutputData::Float(x.into_iter().map(|v| v * c).collect()),
        EpilogueOp::Add(c) => OutputData::Float(x.into_iter().map(|v| v + c).collect()),
        EpilogueOp::Softmax { axis } => OutputData::Float(softmax(x, Lanes::new(shape, *axis))),
        EpilogueOp::ArgMax {
            axis,
            keep_dims,
            last_index,
        } => {
            let y = argmax(&x, Lanes::new(shape, *axis), *last_index);
            if *keep_dims {
                shape[*axis] = 1;
            } else {
                shape.remove(*axis);
            }
            OutputData::Index(y)
        }
        EpilogueOp::TopK {
            axis,
            k,
            largest,
            output,
        } => {
            let lanes = Lanes::new(shape, *axis);
            shape[*axis] = *k;
            let order = top_k(&x, lanes, *k, *largest);
            match output {
                TopKOutput::Values => OutputData::Float(order.iter().map(|&(_, v)| v).collect()),
                TopKOutput::Indices => {
                    OutputData::Index(order.iter().map(|&(j, _)| j as i64).collect())
                }
            }
        }
        EpilogueOp::Reshape(s) => {
            shape.clone_from(s);
            OutputData::Float(x)
        }
    }
}

/// A tensor viewed as `outer × dim × inner` around one axis: the lane `(o, i)` holds the `dim`
/// elements `(o·dim + j)·inner + i`.
#[derive(Clone, Copy, Debug)]
struct Lanes {
    outer: usize,
    dim: usize,
    inner: usize,
}

impl Lanes {
    fn new(shape: &[usize], axis: usize) -> Self {
        Lanes {
            outer: shape[..axis].iter().product(),
            dim: shape[axis],
            inner: shape[axis + 1..].iter().product(),
        }
    }

    /// The element indices of every lane, lane by lane in row-major order of `(o, i)`.
    fn each(self) -> impl Iterator<Item = impl Iterator<Item = usize> + Clone> {
        let Lanes { outer, dim, inner } = self;
        (0..outer).flat_map(move |o| {
            (0..inner).map(move |i| (0..dim).map(move |j| (o * dim + j) * inner + i))
        })
    }

    /// Where element `r` of lane number `lane` (in the order of [`Lanes::each`]) goes in a
    /// tensor whose axis has length `len`.
    fn position(self, lane: usize, r: usize, len: usize) -> usize {
        let (o, i) = (lane / self.inner, lane % self.inner);
        (o * len + r) * self.inner + i
    }
}

/// `exp(x − max) / Σ exp(x − max)` on every lane, in `f32`, summing in index order.
fn softmax(mut x: Vec<f32>, lanes: Lanes) -> Vec<f32> {
    for lane in lanes.each() {
        let max = lane.clone().map(|j| x[j]).fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for j in lane.clone() {
            x[j] = (x[j] - max).exp();
            sum += x[j];
        }
        for j in lane {
            x[j] /= sum;
        }
    }
    x
}

/// The index of the largest value of every lane: the first one, or the last one with
/// `last_index` (NaN never wins).
fn argmax(x: &[f32], lanes: Lanes, last_index: bool) -> Vec<i64> {
    lanes
        .each()
        .map(|lane| {
            let mut best: Option<(usize, f32)> = None;
            for (r, j) in lane.enumerate() {
                let v = x[j];
                let better = match best {
                    None => !v.is_nan(),
                    Some((_, b)) => v > b || (last_index && v == b),
                };
                if better {
                    best = Some((r, v));
                }
            }
            best.map_or(0, |(r, _)| r as i64)
        })
        .collect()
}

/// The `k` largest (or smallest) `(index, value)` pairs of every lane, sorted, ties broken by
/// the lower index (ONNX TopK), laid out with the axis of length `k`. `−0.0` and `+0.0` are
/// equal; NaN sorts above every number.
fn top_k(x: &[f32], lanes: Lanes, k: usize, largest: bool) -> Vec<(usize, f32)> {
    let key = |v: f32| if v == 0.0 { 0.0 } else { v };
    let mut out = vec![(0, 0.0); lanes.outer * k * lanes.inner];
    for (n, lane) in lanes.each().enumerate() {
        let mut order: Vec<(usize, f32)> = lane.enumerate().map(|(r, j)| (r, x[j])).collect();
        // A stable sort keeps equal values in index order.
        order.sort_by(|a, b| {
            let o = key(a.1).total_cmp(&key(b.1));
            if largest { o.reverse() } else { o }
        });
        for (r, pair) in order.into_iter().take(k).enumerate() {
            out[lanes.position(n, r, k)] = pair;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_along_an_inner_axis() {
        // Shape [2, 2], softmax along axis 0: lanes (0, 2) and (1, 3).
        let y = softmax(vec![0.0, 1.0, 0.0, 1.0], Lanes::new(&[2, 2], 0));
        assert_eq!(y, vec![0.5, 0.5, 0.5, 0.5]);
        let y = softmax(vec![0.0, 2.0f32.ln()], Lanes::new(&[2], 0));
        assert!((y[0] - 1.0 / 3.0).abs() < 1e-7 && (y[1] - 2.0 / 3.0).abs() < 1e-7);
    }

    #[test]
    fn argmax_breaks_ties_as_onnx() {
        let x = [1.0, 3.0, 3.0, f32::NAN];
        assert_eq!(argmax(&x, Lanes::new(&[4], 0), false), vec![1]);
        assert_eq!(argmax(&x, Lanes::new(&[4], 0), true), vec![2]);
        // Shape [2, 2] along axis 1: rows.
        assert_eq!(
            argmax(&[0.0, 1.0, 5.0, -1.0], Lanes::new(&[2, 2], 1), false),
            vec![1, 0]
        );
    }

    #[test]
    fn top_k_sorts_with_lower_indices_first_on_ties() {
        let x = [0.5, 2.0, -0.0, 2.0, 0.0];
        let top = top_k(&x, Lanes::new(&[5], 0), 3, true);
        assert_eq!(top, vec![(1, 2.0), (3, 2.0), (0, 0.5)]);
        let bottom = top_k(&x, Lanes::new(&[5], 0), 2, false);
        assert_eq!(bottom, vec![(2, -0.0), (4, 0.0)]);
        // Shape [3, 2] along axis 0, k = 2: the output is [2, 2].
        let top = top_k(
            &[1.0, 6.0, 3.0, 5.0, 2.0, 4.0],
            Lanes::new(&[3, 2], 0),
            2,
            true,
        );
        assert_eq!(top, vec![(1, 3.0), (0, 6.0), (2, 2.0), (1, 5.0)]);
    }
}
