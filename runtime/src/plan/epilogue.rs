//! The client-side epilogue of a plan: what the client computes, in plaintext, from the
//! revealed output tensor.
//!
//! The two-party run ends when the server reveals its share of the output tensor
//! ([`super::PublicPlan::output`]) to the client. Trailing model operations that only read that
//! output (Softmax, ArgMax, TopK, a reshape, a multiplication or addition by a public scalar,
//! and the dequantization of a float head's accumulators) need no secret and no protocol: the
//! client applies them after the reveal. [`Epilogue`] records them in the public part of the
//! plan; [`crate::reference::epilogue`] executes them, for the reference executor and the
//! client alike. The semantics are in `docs/semantics.md` (§5).
//!
//! An epilogue holds no server weight: its constants are public scalars and public
//! quantization scales (a float head's bias is folded into the server's accumulator before
//! the reveal, see `docs/security.md`).

use serde::{Deserialize, Serialize};

/// Most steps an epilogue may have (a hostile plan cannot ask for unbounded work).
pub const MAX_EPILOGUE_STEPS: usize = 64;
/// Most dimensions an epilogue value may have.
pub const MAX_EPILOGUE_RANK: usize = 8;

/// What the client computes after the reveal. The default (no dequantization override, no
/// steps) is the plain output: the revealed tensor dequantized by its scale.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Epilogue {
    /// Per-channel scales of a revealed accumulator (a float head: a linear layer whose output
    /// stays float): element `i` of the revealed tensor is worth `v[i] · scales[c]`, `c` its
    /// index along `axis`. `None`: the output tensor's own scale.
    pub dequantize: Option<ChannelScales>,
    /// The plaintext steps, applied in order to the dequantized output.
    pub steps: Vec<EpilogueStep>,
}

/// One scale per index along an axis of a tensor (one sample).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelScales {
    /// The axis of the sample shape (no batch dimension).
    pub axis: usize,
    /// One scale per index along `axis`.
    pub scales: Vec<f32>,
}

/// One step of the epilogue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpilogueStep {
    /// ONNX node name(s) of the step.
    pub name: String,
    /// What it computes.
    pub op: EpilogueOp,
}

/// A plaintext operation on one sample (axes count without the batch dimension). Float values
/// are `f32`, indices `i64`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum EpilogueOp {
    /// `x · c` for a public scalar `c` (ONNX Mul by a constant).
    Mul(f32),
    /// `x + c` for a public scalar `c` (ONNX Add of a constant).
    Add(f32),
    /// `exp(x − max) / Σ exp(x − max)` along an axis.
    Softmax {
        /// The axis.
        axis: usize,
    },
    /// The index of the largest value along an axis: the first one, or the last one with
    /// `last_index`; an index tensor.
    ArgMax {
        /// The axis.
        axis: usize,
        /// Whether the axis stays, with length 1.
        keep_dims: bool,
        /// Whether ties pick the last index (ONNX `select_last_index`).
        last_index: bool,
    },
    /// The `k` largest (or smallest) values along an axis, sorted, ties broken by the lower
    /// index; either their values or their indices.
    TopK {
        /// The axis.
        axis: usize,
        /// How many.
        k: usize,
        /// Largest (`true`) or smallest values.
        largest: bool,
        /// Which of the two ONNX outputs the step computes.
        output: TopKOutput,
    },
    /// A new shape with the same elements in the same (row-major) order.
    Reshape(Vec<usize>),
}

/// The output of a TopK step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TopKOutput {
    /// The values (float).
    Values,
    /// Their indices along the axis (int64).
    Indices,
}

/// The element type of an epilogue value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElementKind {
    /// `f32` (written as float32).
    Float,
    /// `i64` indices (written as int64).
    Index,
}

impl ElementKind {
    /// The name `explain` prints: `f32` or `i64`.
    pub fn name(self) -> &'static str {
        match self {
            ElementKind::Float => "f32",
            ElementKind::Index => "i64",
        }
    }
}

/// Shape (one sample) and element type of a value of the epilogue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueType {
    /// Shape without the batch dimension.
    pub shape: Vec<usize>,
    /// Element type.
    pub kind: ElementKind,
}

impl Epilogue {
    /// Whether the output is the revealed tensor dequantized by its own scale.
    pub fn is_empty(&self) -> bool {
        self.dequantize.is_none() && self.steps.is_empty()
    }

    /// The type of the model output, from the revealed tensor's shape; checks every step
    /// against its input (axes, lengths, element types, the limits of this module).
    ///
    /// # Errors
    /// What does not fit, naming the step.
    pub fn output(&self, revealed: &[usize]) -> Result<ValueType, String> {
        if revealed.len() > MAX_EPILOGUE_RANK {
            return Err(format!(
                "the revealed tensor has {} dimensions, more than {MAX_EPILOGUE_RANK}",
                revealed.len()
            ));
        }
        if self.steps.len() > MAX_EPILOGUE_STEPS {
            return Err(format!(
                "{} epilogue steps exceed the limit of {MAX_EPILOGUE_STEPS}",
                self.steps.len()
            ));
        }
        if let Some(d) = &self.dequantize {
            let dim = revealed.get(d.axis).copied();
            if dim != Some(d.scales.len()) {
                return Err(format!(
                    "dequantization: {} scales along axis {} of shape {revealed:?}",
                    d.scales.len(),
                    d.axis
                ));
            }
            if let Some(s) = d.scales.iter().find(|s| !s.is_finite()) {
                return Err(format!("dequantization: scale {s} is not finite"));
            }
        }
        let mut value = ValueType {
            shape: revealed.to_vec(),
            kind: ElementKind::Float,
        };
        for (i, step) in self.steps.iter().enumerate() {
            value = step.op.output(&value).map_err(|e| {
                format!(
                    "epilogue step {i} ({}, '{}'): {e}",
                    step.op.kind(),
                    step.name
                )
            })?;
        }
        Ok(value)
    }
}

impl EpilogueOp {
    /// Short lower-case name, as `heqc explain` prints it.
    pub fn kind(&self) -> &'static str {
        match self {
            EpilogueOp::Mul(_) => "mul",
            EpilogueOp::Add(_) => "add",
            EpilogueOp::Softmax { .. } => "softmax",
            EpilogueOp::ArgMax { .. } => "argmax",
            EpilogueOp::TopK { .. } => "topk",
            EpilogueOp::Reshape(_) => "reshape",
        }
    }

    /// The type of the step's output for an input of type `input`.
    ///
    /// # Errors
    /// An axis out of range, a `k` larger than the axis, a reshape that changes the number of
    /// elements or exceeds [`MAX_EPILOGUE_RANK`], a non-finite constant, or a float operation
    /// on indices.
    pub fn output(&self, input: &ValueType) -> Result<ValueType, String> {
        let float = |v: &ValueType| {
            if v.kind == ElementKind::Float {
                Ok(())
            } else {
                Err("needs float values, its input holds indices".to_string())
            }
        };
        let dim = |axis: usize| {
            input
                .shape
                .get(axis)
                .copied()
                .ok_or_else(|| format!("axis {axis} out of range for shape {:?}", input.shape))
        };
        match self {
            EpilogueOp::Mul(c) | EpilogueOp::Add(c) => {
                float(input)?;
                if !c.is_finite() {
                    return Err(format!("constant {c} is not finite"));
                }
                Ok(input.clone())
            }
            EpilogueOp::Softmax { axis } => {
                float(input)?;
                dim(*axis)?;
                Ok(input.clone())
            }
            EpilogueOp::ArgMax {
                axis, keep_dims, ..
            } => {
                float(input)?;
                dim(*axis)?;
                let mut shape = input.shape.clone();
                if *keep_dims {
                    shape[*axis] = 1;
                } else {
                    shape.remove(*axis);
                }
                Ok(ValueType {
                    shape,
                    kind: ElementKind::Index,
                })
            }
            EpilogueOp::TopK {
                axis, k, output, ..
            } => {
                float(input)?;
                let n = dim(*axis)?;
                if !(1..=n).contains(k) {
                    return Err(format!("k = {k} outside 1..={n}"));
                }
                let mut shape = input.shape.clone();
                shape[*axis] = *k;
                let kind = match output {
                    TopKOutput::Values => ElementKind::Float,
                    TopKOutput::Indices => ElementKind::Index,
                };
                Ok(ValueType { shape, kind })
            }
            EpilogueOp::Reshape(shape) => {
                let len = |s: &[usize]| s.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                if shape.len() > MAX_EPILOGUE_RANK || len(shape) != len(&input.shape) {
                    return Err(format!("cannot reshape {:?} to {shape:?}", input.shape));
                }
                Ok(ValueType {
                    shape: shape.clone(),
                    kind: input.kind,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(shape: &[usize]) -> ValueType {
        ValueType {
            shape: shape.to_vec(),
            kind: ElementKind::Float,
        }
    }

    fn step(op: EpilogueOp) -> EpilogueStep {
        EpilogueStep {
            name: "n".into(),
            op,
        }
    }

    #[test]
    fn output_types_follow_the_steps() {
        let e = Epilogue {
            dequantize: Some(ChannelScales {
                axis: 1,
                scales: vec![0.5; 10],
            }),
            steps: vec![
                step(EpilogueOp::Reshape(vec![10])),
                step(EpilogueOp::Softmax { axis: 0 }),
                step(EpilogueOp::TopK {
                    axis: 0,
                    k: 3,
                    largest: true,
                    output: TopKOutput::Indices,
                }),
            ],
        };
        assert_eq!(
            e.output(&[1, 10]),
            Ok(ValueType {
                shape: vec![3],
                kind: ElementKind::Index
            })
        );
        let argmax = EpilogueOp::ArgMax {
            axis: 0,
            keep_dims: false,
            last_index: false,
        };
        assert_eq!(
            argmax.output(&float(&[10])),
            Ok(ValueType {
                shape: vec![],
                kind: ElementKind::Index
            })
        );
    }

    #[test]
    fn misfits_are_named() {
        let e = Epilogue {
            dequantize: Some(ChannelScales {
                axis: 0,
                scales: vec![1.0; 3],
            }),
            steps: vec![],
        };
        assert_eq!(
            e.output(&[10]),
            Err("dequantization: 3 scales along axis 0 of shape [10]".into())
        );
        let topk = EpilogueOp::TopK {
            axis: 0,
            k: 11,
            largest: true,
            output: TopKOutput::Values,
        };
        assert_eq!(
            topk.output(&float(&[10])),
            Err("k = 11 outside 1..=10".into())
        );
        let softmax_of_indices = Epilogue {
            dequantize: None,
            steps: vec![
                step(EpilogueOp::ArgMax {
                    axis: 0,
                    keep_dims: true,
                    last_index: false,
                }),
                step(EpilogueOp::Softmax { axis: 0 }),
            ],
        };
        assert_eq!(
            softmax_of_indices.output(&[10]),
            Err(
                "epilogue step 1 (softmax, 'n'): needs float values, its input holds indices"
                    .into()
            )
        );
        assert!(
            EpilogueOp::Reshape(vec![usize::MAX, 2])
                .output(&float(&[10]))
                .is_err()
        );
        assert!(EpilogueOp::Mul(f32::NAN).output(&float(&[10])).is_err());
    }
}
