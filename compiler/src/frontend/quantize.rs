//! Quantization: the QuantizeLinear and DequantizeLinear semantics on [`Value`]s, and turning a
//! pending float computation into integer layers with a fused requantization.
//!
//! Multipliers follow the rule of the plan: `M = s_in·s_w[c]/s_out` in f64 from the f32 scales,
//! one shift `k ≥ 0` per layer with `max |M|·2^k ∈ [2^23, 2^24)`, `m = round(M·2^k)`.

use super::context::Ctx;
use super::tensor::{Const, ConstData};
use super::unsupported;
use super::value::{Pending, PendingOp, QConst, QParams, RealClamp, Value};
use crate::error::Result;
use crate::ir::{Layer, LayerGraph, LayerOp, Port, Requant, TensorId, TensorInfo};
use heq_runtime::plan::{AddSpec, AvgPoolSpec, IntType, Rounding};
use tract_onnx::pb::NodeProto;

/// Significant bits of the largest requantization multiplier.
pub const MULTIPLIER_BITS: u32 = 24;

/// Integer multipliers and shift for real multipliers `ms` (see the module doc).
pub fn multipliers(ms: &[f64]) -> (Vec<i64>, u32) {
    let max = ms.iter().fold(0.0f64, |a, m| a.max(m.abs()));
    let mut k: i32 = 0;
    if max > 0.0 && max.is_finite() {
        k = (MULTIPLIER_BITS as i32 - 1) - max.log2().floor() as i32;
        while k > 0 && max * 2f64.powi(k) >= 2f64.powi(MULTIPLIER_BITS as i32) {
            k -= 1;
        }
        while max * 2f64.powi(k) < 2f64.powi(MULTIPLIER_BITS as i32 - 1) {
            k += 1;
        }
        k = k.clamp(0, 62);
    }
    let scale = 2f64.powi(k);
    (
        ms.iter().map(|m| (m * scale).round() as i64).collect(),
        k as u32,
    )
}

/// The requantization by real multipliers `ms` (see the module doc), clamped to `clamp`. Ties
/// round to even until [`crate::passes::ProveNoTies`] proves that none occurs.
pub fn requant(ms: &[f64], clamp: (i64, i64)) -> Requant {
    let (multipliers, shift) = multipliers(ms);
    Requant {
        multipliers,
        shift,
        clamp,
        rounding: Rounding::HalfEven,
    }
}

/// The range of real requantization multipliers (`s_in·s_w / s_out`, the largest of a layer)
/// heqc compiles: below it every output rounds to zero (and the shift exceeds what the share
/// rings hold), above it an accumulator step is billions of output steps (the products
/// overflow the 62-bit share rings).
const MULTIPLIER_RANGE: (f64, f64) = (1.0 / (1u64 << 32) as f64, (1u64 << 31) as f64);

/// Refuses a requantization whose largest multiplier is outside [`MULTIPLIER_RANGE`].
///
/// # Errors
/// An unsupported-configuration error naming the node and the multiplier.
fn check_multipliers(node: &NodeProto, ms: &[f64]) -> Result<()> {
    let max = ms.iter().fold(0.0f64, |a, m| a.max(m.abs()));
    let (lo, hi) = MULTIPLIER_RANGE;
    if (lo..hi).contains(&max) {
        return Ok(());
    }
    Err(unsupported(
        node,
        &format!(
            "scales out of range: the requantization multiplier (input scale × weight scale / \
             output scale) is {max:.3e}, outside [2^-32, 2^31)"
        ),
    ))
}

/// Round half to even of a float, as ONNX QuantizeLinear rounds.
pub(crate) fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 {
        2.0 * (x / 2.0).round()
    } else {
        r
    }
}

impl Ctx {
    /// Quantizes a value (the QuantizeLinear semantics), emitting the layers it needs.
    ///
    /// # Errors
    /// Values that cannot be quantized, per-axis activation quantization.
    pub fn quantize(
        &mut self,
        node: &NodeProto,
        x: Value,
        q: &QParams,
        out_name: &str,
    ) -> Result<Value> {
        match x {
            Value::Const(c) => {
                let ConstData::Float(v) = &c.data else {
                    return Err(unsupported(node, "quantizing an integer constant"));
                };
                let mut qc = QConst::new(node, c.dims.clone(), Vec::new(), q.ty, q)?;
                qc.values = v
                    .iter()
                    .enumerate()
                    .map(|(i, &x)| {
                        let s = qc.slice_of(i);
                        let r =
                            round_half_even(f64::from(x / qc.scale[s])) as i64 + qc.zero_point[s];
                        r.clamp(q.ty.min(), q.ty.max())
                    })
                    .collect();
                Ok(Value::ConstQuant(qc))
            }
            Value::FloatInput(shape) => {
                let (s, zp) = q.per_tensor(node)?;
                if self.input_defined {
                    return Err(unsupported(node, "the float input is quantized twice"));
                }
                let input_name = node.input[0].clone();
                let t = self.tensor(&input_name, shape.clone(), q.ty, zp, s);
                self.graph.input = Port {
                    name: input_name,
                    tensor: t,
                };
                self.input_defined = true;
                Ok(Value::Quant(t))
            }
            Value::Real(t) => {
                let (s, zp) = q.per_tensor(node)?;
                let f = self.graph.tensor(t);
                if f.scale == s && f.zero_point == zp && f.ty == q.ty {
                    return Ok(Value::Quant(t));
                }
                let p = Pending {
                    op: PendingOp::Clamp(t),
                    shape: f.shape.clone(),
                    clamp: RealClamp::default(),
                    names: vec![],
                };
                self.finish(node, p, s, zp, q.ty, out_name)
            }
            Value::Pending(p) => {
                let (s, zp) = q.per_tensor(node)?;
                self.finish(node, p, s, zp, q.ty, out_name)
            }
            Value::Client(_) => Err(unsupported(
                node,
                "quantizes a value the client computes after the output is revealed (a client-side operation in the middle of the network)",
            )),
            _ => Err(unsupported(
                node,
                "QuantizeLinear of an already quantized value",
            )),
        }
    }

    /// Dequantizes a value (the DequantizeLinear semantics).
    ///
    /// # Errors
    /// Parameters that disagree with the tensor's own, non-integer values.
    pub fn dequantize(&mut self, node: &NodeProto, x: Value, q: &QParams) -> Result<Value> {
        match x {
            Value::Quant(t) => {
                let (s, zp) = q.per_tensor(node)?;
                let is_int_input = t == self.graph.input.tensor && !self.input_defined;
                let f = self.graph.tensor_mut(t);
                if is_int_input {
                    f.scale = s;
                    f.zero_point = zp;
                    f.range = f.ty.centred_range(zp);
                    self.input_defined = true;
                } else if f.scale != s || f.zero_point != zp {
                    return Err(unsupported(
                        node,
                        "dequantization parameters differ from the tensor's quantization",
                    ));
                }
                Ok(Value::Real(t))
            }
            Value::Const(Const {
                dims,
                data: ConstData::Int { ty, values },
            }) => Ok(Value::ConstReal(QConst::new(node, dims, values, ty, q)?)),
            Value::ConstQuant(c) => Ok(Value::ConstReal(QConst::new(
                node, c.dims, c.values, c.ty, q,
            )?)),
            _ => Err(unsupported(
                node,
                "DequantizeLinear of a value that is not an integer tensor",
            )),
        }
    }

    /// Turns a pending computation into integer layers whose output has scale `s`, zero point
    /// `zp` and type `ty`.
    fn finish(
        &mut self,
        node: &NodeProto,
        p: Pending,
        s: f32,
        zp: i64,
        ty: IntType,
        out_name: &str,
    ) -> Result<Value> {
        let (tlo, thi) = ty.centred_range(zp);
        let sy = f64::from(s);
        let bound = |b: Option<f32>, default: i64| {
            b.map(|b| (round_half_even(f64::from(b) / sy) as i64).clamp(tlo, thi))
                .unwrap_or(default)
        };
        let clamp = (
            bound(p.clamp.lo, tlo).max(tlo),
            bound(p.clamp.hi, thi).min(thi),
        );
        if clamp.0 > clamp.1 {
            return Err(unsupported(
                node,
                "the fused clip leaves no representable value",
            ));
        }
        let mut names = p.names.clone();
        if names.is_empty() {
            names.push(node.name.clone());
        }
        let name = names.join("+");
        let out = self
            .graph
            .add_tensor(TensorInfo::new(out_name, p.shape.clone(), ty, zp, s));
        let scale_of = |g: &LayerGraph, t: TensorId| f64::from(g.tensor(t).scale);
        let (op, inputs) = match p.op {
            PendingOp::Linear(d) => {
                let ms: Vec<f64> = d.acc_scale.iter().map(|a| a / sy).collect();
                check_multipliers(node, &ms)?;
                let input = d.input;
                (d.into_op(Some(requant(&ms, clamp))), vec![input])
            }
            PendingOp::Add(a, b) => {
                let ms = [scale_of(&self.graph, a) / sy, scale_of(&self.graph, b) / sy];
                check_multipliers(node, &ms)?;
                let (m, shift) = multipliers(&ms);
                (
                    LayerOp::Add(AddSpec {
                        m_a: m[0],
                        m_b: m[1],
                        shift,
                        clamp,
                        rounding: Rounding::HalfEven,
                    }),
                    vec![a, b],
                )
            }
            PendingOp::AvgPool {
                input,
                pool,
                count_include_pad,
                ceil_pads,
            } => {
                let sx = scale_of(&self.graph, input);
                let n = pool.kernel[0] * pool.kernel[1];
                let ms: Vec<f64> = (1..=n).map(|c| sx / (sy * c as f64)).collect();
                check_multipliers(node, &ms)?;
                (
                    LayerOp::AvgPool(AvgPoolSpec {
                        pool,
                        count_include_pad,
                        requant: requant(&ms, clamp),
                        ceil_pads,
                    }),
                    vec![input],
                )
            }
            PendingOp::Clamp(t) => {
                let m = scale_of(&self.graph, t) / sy;
                check_multipliers(node, &[m])?;
                (LayerOp::Rescale(requant(&[m], clamp)), vec![t])
            }
            PendingOp::Concat(ts) => {
                let mut inputs = Vec::with_capacity(ts.len());
                for t in ts {
                    let f = self.graph.tensor(t).clone();
                    if f.scale == s && f.zero_point == zp && f.ty == ty && clamp == (tlo, thi) {
                        inputs.push(t);
                        continue;
                    }
                    let r = self.graph.add_tensor(TensorInfo::new(
                        format!("{}.rescaled", f.name),
                        f.shape.clone(),
                        ty,
                        zp,
                        s,
                    ));
                    let m = f64::from(f.scale) / sy;
                    check_multipliers(node, &[m])?;
                    self.graph.add_layer(Layer {
                        name: format!("{name}.{}", f.name),
                        op: LayerOp::Rescale(requant(&[m], clamp)),
                        inputs: vec![t],
                        output: r,
                    });
                    inputs.push(r);
                }
                (LayerOp::Concat, inputs)
            }
        };
        self.graph.add_layer(Layer {
            name,
            op,
            inputs,
            output: out,
        });
        Ok(Value::Quant(out))
    }

    /// Emits a pending linear layer without requantization: its output is the raw accumulator
    /// (ConvInteger, MatMulInteger), an int32 tensor with scale 1.
    ///
    /// # Errors
    /// If the pending computation is not a linear layer with unit accumulator scale.
    pub fn finish_raw(&mut self, node: &NodeProto, p: Pending) -> Result<Value> {
        let PendingOp::Linear(d) = p.op else {
            return Err(unsupported(
                node,
                "only linear layers can output their raw accumulator",
            ));
        };
        if d.acc_scale.iter().any(|&s| s != 1.0) || !p.clamp.is_none() {
            return Err(unsupported(
                node,
                "a raw accumulator output must have unit scale",
            ));
        }
        let out_name = node.output.first().cloned().unwrap_or_default();
        let out = self.emit_accumulator(node.name.clone(), &out_name, p.shape, d);
        Ok(Value::Quant(out))
    }

    /// Tightens the clamp of the layer producing `t` (a Clip right after a QuantizeLinear), or
    /// adds a clamping rescale when `t` has no such producer; narrows the type to `ty`.
    pub fn clip_quant(
        &mut self,
        node: &NodeProto,
        t: TensorId,
        lo: i64,
        hi: i64,
        ty: IntType,
    ) -> Result<Value> {
        let f = self.graph.tensor(t).clone();
        let (clo, chi) = (lo - f.zero_point, hi - f.zero_point);
        let tightened = self
            .graph
            .producer(t)
            .filter(|_| self.graph.consumers(t).is_empty())
            .is_some_and(|p| {
                let layer = self.graph.layer_mut(p);
                let c = layer.op.clamp_and_rounding_mut().map(|(c, _)| c);
                c.map(|c| *c = (c.0.max(clo), c.1.min(chi))).is_some()
            });
        if tightened {
            let f = self.graph.tensor_mut(t);
            f.ty = ty;
            f.range = (f.range.0.max(clo), f.range.1.min(chi));
            if f.range.0 > f.range.1 {
                return Err(unsupported(node, "the clip leaves no representable value"));
            }
            return Ok(Value::Quant(t));
        }
        let out = self.graph.add_tensor(TensorInfo {
            ty,
            range: (clo, chi),
            ..TensorInfo::new(
                node.output.first().cloned().unwrap_or_default(),
                f.shape.clone(),
                ty,
                f.zero_point,
                f.scale,
            )
        });
        let op = LayerOp::Rescale(Requant {
            multipliers: vec![1],
            shift: 0,
            clamp: (clo, chi),
            rounding: Rounding::HalfEven,
        });
        self.graph.add_layer(Layer {
            name: node.name.clone(),
            op,
            inputs: vec![t],
            output: out,
        });
        Ok(Value::Quant(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipliers_keep_24_significant_bits() {
        // 0.25 = 2^-2: k = 23 + 2 = 25, m = 2^23.
        assert_eq!(multipliers(&[0.25]), (vec![1 << 23], 25));
        // The largest sets k; the others share it (and may be negative).
        let (m, k) = multipliers(&[0.75, -0.1]);
        assert_eq!(k, 24);
        assert_eq!(m, vec![12_582_912, -1_677_722]);
        // Multipliers ≥ 2^24 keep k = 0.
        assert_eq!(multipliers(&[3.0e7]), (vec![30_000_000], 0));
        assert_eq!(multipliers(&[0.0]), (vec![0], 0));
    }

    #[test]
    fn rounding_is_half_even() {
        assert_eq!(
            [0.5, 1.5, 2.5, -0.5, -1.5, 2.4].map(round_half_even),
            [0.0, 2.0, 2.0, 0.0, -2.0, 2.0]
        );
    }
}
