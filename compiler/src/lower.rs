//! Lowering: layer graph → [`Skeleton`], the plan of `heq_runtime::plan` without protocol
//! choices; the only code that builds plans.
//!
//! Lowering decides everything about the plan except how each linear layer runs under HE: the
//! layers in topological order, the tensors, the requantization of every layer and the
//! server's weights. The protocols (HE parameters, tile, packing, share rings) are chosen by
//! [`crate::select`], the only way from a [`Skeleton`] to a runnable [`Plan`].

use crate::error::{Error, Result};
use crate::ir::{LayerGraph, LayerOp, Linear, LinearShape, TensorId};
use heq_runtime::plan::{
    self, CarryDepth, Encoding, GlobalProtocol, HeParams, IoSpec, Layer, LayerId, LayerWeights,
    LinearLayer, LinearProtocol, Op, OtBackend, Packing, Plan, PrecisionRecord, PublicPlan,
    ServerWeights, TensorInfo, Tile,
};
use std::collections::HashMap;

/// A lowered model whose linear layers have no protocol yet.
///
/// It holds a [`Plan`] whose linear layers carry a placeholder protocol (ring degree 0, which
/// `plan::validate` rejects); the plan is private, and [`crate::select::select`] is the only
/// public way to turn a skeleton into a runnable plan, so an unselected protocol never
/// reaches a plan file, the runtime or a cost function.
#[derive(Clone, Debug)]
pub struct Skeleton {
    plan: Plan,
}

impl Skeleton {
    /// Records what mixed precision changed and measured (carried into the selected plan).
    pub fn record_precision(&mut self, record: PrecisionRecord) {
        self.plan.public.protocol.precision = Some(record);
    }

    /// The operations of the linear layers in plan order: what a protocol is chosen for.
    /// Their `protocol` fields are placeholders; only shapes, widths and requantization count.
    pub(crate) fn linear_ops(&self) -> impl Iterator<Item = &Op> {
        self.plan
            .public
            .layers
            .iter()
            .map(|l| &l.op)
            .filter(|op| op.is_linear())
    }

    /// The plan with `protocols` on the linear layers, in plan order, and the protocol profile
    /// `profile`, validated.
    ///
    /// # Errors
    /// [`Error::Invariant`] when `protocols` does not have one entry per linear layer;
    /// [`Error::Plan`] when the plan breaks a structural rule.
    pub(crate) fn into_plan(self, protocols: Vec<LinearProtocol>, profile: &str) -> Result<Plan> {
        let mut plan = self.plan;
        let linear = protocol_slots(&mut plan.public).count();
        if protocols.len() != linear {
            return Err(Error::Invariant {
                pass: "select",
                violations: vec![format!(
                    "{} protocols for {linear} linear layers",
                    protocols.len()
                )],
            });
        }
        for (slot, p) in protocol_slots(&mut plan.public).zip(protocols) {
            *slot = p;
        }
        plan.public.protocol.profile = profile.to_string();
        plan::validate(&plan)?;
        Ok(plan)
    }
}

/// The protocol of every linear layer of `public`, in plan order, to be replaced.
pub(crate) fn protocol_slots(public: &mut PublicPlan) -> impl Iterator<Item = &mut LinearProtocol> {
    public.layers.iter_mut().filter_map(|l| match &mut l.op {
        Op::Conv(c) => Some(&mut c.protocol),
        Op::MatMul(c) => Some(&mut c.protocol),
        Op::Affine(c) => Some(&mut c.protocol),
        _ => None,
    })
}

/// The placeholder protocol of a skeleton's linear layer (ring degree 0: never valid).
fn unselected() -> LinearProtocol {
    LinearProtocol {
        he: HeParams {
            degree: 0,
            moduli_bits: Vec::new(),
            plain_bits: 0,
        },
        tile: Tile {
            c: 0,
            h: 0,
            w: 0,
            m: 0,
        },
        packing: Packing::none(),
        encoding: Encoding::Cheetah,
        in_ring_bits: 0,
        out_ring_bits: 0,
    }
}

/// The plan's linear layer of shape `shape` and its weights.
fn linear<S>(l: &Linear, shape: S, name: &str) -> Result<(LinearLayer<S>, LayerWeights)> {
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
        protocol: unselected(),
    };
    let weights = LayerWeights {
        weights: l.weights.clone(),
        bias: l.bias.clone(),
    };
    Ok((public, weights))
}

/// Lowers an analysed graph to a skeleton (public part and server weights, no protocols); the
/// plan is validated once [`crate::select`] has chosen the protocols.
///
/// # Errors
/// [`Error::Invariant`] when the graph was not analysed.
pub fn lower(g: &LayerGraph) -> Result<Skeleton> {
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
                        let (p, w) = linear(c, s.clone(), &l.name)?;
                        (Op::Conv(p), w)
                    }
                    LinearShape::MatMul(s) => {
                        let (p, w) = linear(c, s.clone(), &l.name)?;
                        (Op::MatMul(p), w)
                    }
                    LinearShape::Affine(s) => {
                        let (p, w) = linear(c, s.clone(), &l.name)?;
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
            carry: CarryDepth::Ripple,
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
            // Chosen by the selection.
            ot_batch_rots: heq_runtime::cost::plan::DEFAULT_OT_BATCH_ROTS,
            chunk_rots: heq_runtime::cost::plan::default_chunk_rots(
                heq_runtime::cost::plan::DEFAULT_OT_BATCH_ROTS,
            ),
            stat_bits: 40,
            // Set by the selection.
            profile: String::new(),
            precision: None,
        },
        epilogue: g.epilogue.clone(),
    };
    Ok(Skeleton {
        plan: Plan {
            public,
            weights: Some(ServerWeights { layers: weights }),
        },
    })
}
