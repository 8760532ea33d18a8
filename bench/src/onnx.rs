//! A small builder of QDQ-quantized ONNX graphs (tract-onnx's protobuf types), emitting the
//! patterns of onnxruntime's `quantize_static` (see `models/README.md`, "How the files were
//! quantized"):
//!
//! * the float input goes through `QuantizeLinear` → `DequantizeLinear`;
//! * every Conv/Gemm reads `DequantizeLinear(signed weights, per-channel scale, axis 0)` and an
//!   int32 bias `DequantizeLinear` with scale `s_x·s_w[c]`, zero point 0;
//! * every op output that is quantized gets a `QuantizeLinear` → `DequantizeLinear` pair; a ReLU
//!   (or ReLU6) after a quantized op is implicit in an unsigned zero-point-0 quantization;
//! * MaxPool and Flatten outputs reuse their input's scale and zero point.
//!
//! Sub-byte initializers (int4/uint4, int2/uint2) are packed low bits first, as ONNX specifies.

use tract_onnx::pb::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType,
    tensor_shape_proto::Dimension, tensor_shape_proto::dimension, type_proto,
};

/// ONNX `TensorProto.DataType` codes the builder writes.
mod dtype {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const INT32: i32 = 6;
    pub const UINT4: i32 = 21;
    pub const INT4: i32 = 22;
    pub const UINT2: i32 = 25;
    pub const INT2: i32 = 26;
}

/// The ONNX element type of an integer of `bits` bits (2, 4, 8 or 32).
///
/// # Panics
/// For other widths (the builder only creates the widths listed).
fn int_dtype(bits: u32, signed: bool) -> i32 {
    match (bits, signed) {
        (2, false) => dtype::UINT2,
        (2, true) => dtype::INT2,
        (4, false) => dtype::UINT4,
        (4, true) => dtype::INT4,
        (8, false) => dtype::UINT8,
        (8, true) => dtype::INT8,
        (32, true) => dtype::INT32,
        _ => panic!("no ONNX integer type of {bits} bits (signed: {signed}) in the builder"),
    }
}

/// Raw little-endian payload of integers of `bits` bits, sub-byte types packed low bits first.
fn pack_ints(bits: u32, values: &[i64]) -> Vec<u8> {
    match bits {
        32 => values
            .iter()
            .flat_map(|&v| (v as i32).to_le_bytes())
            .collect(),
        8 => values.iter().map(|&v| v as u8).collect(),
        _ => {
            let per_byte = (8 / bits) as usize;
            let mask = (1u8 << bits) - 1;
            let mut out = vec![0u8; values.len().div_ceil(per_byte)];
            for (i, &v) in values.iter().enumerate() {
                out[i / per_byte] |= ((v as u8) & mask) << ((i % per_byte) as u32 * bits);
            }
            out
        }
    }
}

/// Quantization of an activation tensor: unsigned integers of `bits` bits, per tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActQuant {
    /// Width (2, 4 or 8).
    pub bits: u32,
    /// Scale.
    pub scale: f32,
    /// Zero point, in `[0, 2^bits)`.
    pub zero_point: i64,
}

impl ActQuant {
    /// After a ReLU, over `[0, range]`: zero point 0, scale `range/(2^bits − 1)`, so the ReLU
    /// is the lower end of the integer range (onnxruntime removes such ReLUs; a ReLU6 is also
    /// the upper end when `range ≤ 6`).
    pub fn relu_range(bits: u32, range: f32) -> Self {
        ActQuant {
            bits,
            scale: range / ((1u32 << bits) - 1) as f32,
            zero_point: 0,
        }
    }

    /// Asymmetric around zero over about `[−range, range]`: zero point `2^(bits−1)`.
    pub fn signed(bits: u32, range: f32) -> Self {
        ActQuant {
            bits,
            scale: 2.0 * range / ((1u32 << bits) - 1) as f32,
            zero_point: 1 << (bits - 1),
        }
    }
}

/// A dequantized activation: the name of a `DequantizeLinear` output, its per-sample shape
/// `[C, H, W]` or `[K]`, and its quantization.
#[derive(Clone, Debug, PartialEq)]
pub struct Act {
    /// Tensor name (a `DequantizeLinear` output).
    pub name: String,
    /// Per-sample shape.
    pub shape: Vec<usize>,
    /// Quantization of the integer tensor behind it.
    pub quant: ActQuant,
}

/// Symmetric per-output-channel quantized weights (output channels along axis 0).
#[derive(Clone, Debug, PartialEq)]
pub struct QuantWeights {
    /// ONNX dimensions: `[M, C/groups, kh, kw]` for Conv, `[N, K]` for Gemm (`transB = 1`).
    pub dims: Vec<usize>,
    /// Width of the integer container (2, 4 or 8).
    pub bits: u32,
    /// Integer values, row-major.
    pub values: Vec<i64>,
    /// Scale per output channel.
    pub scales: Vec<f32>,
}

impl QuantWeights {
    /// Quantizes float weights per output channel to `[−q, q]`: `q = 2^(bits−1) − 1` with
    /// scale `max|w_c|/q` (symmetric; the full int8/int4 range minus its most negative value);
    /// for 2 bits ternary `{−1, 0, 1}` with scale `1.2·mean|w_c|` (the int2 container holds
    /// `[−2, 1]`, ternary uses its narrow range).
    ///
    /// # Panics
    /// If `weights` does not hold `dims` elements or `dims` is empty.
    pub fn quantize(dims: Vec<usize>, bits: u32, weights: &[f32]) -> Self {
        let n: usize = dims.iter().product();
        assert_eq!(n, weights.len(), "weights do not match their dimensions");
        let m = dims[0];
        let per = n / m;
        let qmax = ((1i64 << (bits - 1)) - 1).max(1);
        let mut values = Vec::with_capacity(n);
        let mut scales = Vec::with_capacity(m);
        for w in weights.chunks(per) {
            let s = if bits == 2 {
                1.2 * w.iter().map(|x| x.abs()).sum::<f32>() / per as f32
            } else {
                w.iter().fold(0f32, |a, x| a.max(x.abs())) / qmax as f32
            };
            let s = if s > 0.0 { s } else { 1.0 };
            scales.push(s);
            values.extend(
                w.iter()
                    .map(|x| ((x / s).round_ties_even() as i64).clamp(-qmax, qmax)),
            );
        }
        QuantWeights {
            dims,
            bits,
            values,
            scales,
        }
    }
}

/// Convolution attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvAttrs {
    /// Square kernel size.
    pub kernel: usize,
    /// Stride (both axes).
    pub stride: usize,
    /// Symmetric zero padding (all four sides).
    pub pad: usize,
    /// Groups (`C` for depthwise).
    pub groups: usize,
}

fn attr_ints(name: &str, ints: Vec<i64>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints,
        ..Default::default()
    }
}

fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

fn value_info(name: &str, elem_type: i32, sample: &[usize]) -> ValueInfoProto {
    let mut dim = vec![Dimension {
        value: Some(dimension::Value::DimParam("N".into())),
        ..Default::default()
    }];
    dim.extend(sample.iter().map(|&d| Dimension {
        value: Some(dimension::Value::DimValue(d as i64)),
        ..Default::default()
    }));
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Output size of a window of `kernel` with `stride` over `size` padded by `pads` in total.
fn window_out(size: usize, kernel: usize, stride: usize, pads: usize) -> usize {
    (size + pads - kernel) / stride + 1
}

/// Accumulates the nodes and initializers of one QDQ graph.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    input: Option<ValueInfoProto>,
}

impl GraphBuilder {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    fn node(&mut self, op: &str, name: &str, inputs: &[&str], output: &str) -> &mut NodeProto {
        self.nodes.push(NodeProto {
            op_type: op.into(),
            name: name.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            ..Default::default()
        });
        self.nodes.last_mut().expect("just pushed")
    }

    fn init_ints(&mut self, name: &str, dims: &[usize], bits: u32, signed: bool, v: &[i64]) {
        self.initializers.push(TensorProto {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: int_dtype(bits, signed),
            raw_data: pack_ints(bits, v),
            ..Default::default()
        });
    }

    fn init_floats(&mut self, name: &str, dims: &[usize], v: &[f32]) {
        self.initializers.push(TensorProto {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: dtype::FLOAT,
            float_data: v.to_vec(),
            ..Default::default()
        });
    }

    /// `QuantizeLinear` → `DequantizeLinear` of float tensor `x` with `q`; returns the
    /// dequantized tensor (named like onnxruntime: `<x>_DequantizeLinear_Output`).
    fn qdq(&mut self, x: &str, shape: Vec<usize>, q: ActQuant) -> Act {
        let (scale, zp) = (format!("{x}_scale"), format!("{x}_zero_point"));
        self.init_floats(&scale, &[], &[q.scale]);
        self.init_ints(&zp, &[], q.bits, false, &[q.zero_point]);
        let qo = format!("{x}_QuantizeLinear_Output");
        let dqo = format!("{x}_DequantizeLinear_Output");
        self.node(
            "QuantizeLinear",
            &format!("{x}_QuantizeLinear"),
            &[x, &scale, &zp],
            &qo,
        );
        self.node(
            "DequantizeLinear",
            &format!("{x}_DequantizeLinear"),
            &[&qo, &scale, &zp],
            &dqo,
        );
        Act {
            name: dqo,
            shape,
            quant: q,
        }
    }

    /// The float graph input `[N, C, H, W]` (or `[N, K]`), quantized with `q`.
    pub fn input(&mut self, name: &str, sample: &[usize], q: ActQuant) -> Act {
        self.input = Some(value_info(name, dtype::FLOAT, sample));
        self.qdq(name, sample.to_vec(), q)
    }

    /// Dequantized weights and int32 bias (`round(b/(s_x·s_w[c]))`, scale `s_x·s_w[c]`) of a
    /// layer named `name` reading `x`; returns the two tensor names.
    fn weights_and_bias(
        &mut self,
        name: &str,
        x: &Act,
        w: &QuantWeights,
        bias: &[f32],
    ) -> (String, String) {
        let wq = format!("{name}.weight_quantized");
        let (ws, wz, wd) = (
            format!("{name}.weight_scale"),
            format!("{name}.weight_zero_point"),
            format!("{name}.weight_DequantizeLinear_Output"),
        );
        let m = w.dims[0];
        self.init_ints(&wq, &w.dims, w.bits, true, &w.values);
        self.init_floats(&ws, &[m], &w.scales);
        self.init_ints(&wz, &[m], w.bits, true, &vec![0; m]);
        self.node(
            "DequantizeLinear",
            &format!("{name}.weight_DequantizeLinear"),
            &[&wq, &ws, &wz],
            &wd,
        )
        .attribute
        .push(attr_int("axis", 0));
        let bias_scale: Vec<f32> = w.scales.iter().map(|s| x.quant.scale * s).collect();
        let bias_q: Vec<i64> = bias
            .iter()
            .zip(&bias_scale)
            .map(|(b, s)| (f64::from(*b) / f64::from(*s)).round() as i64)
            .collect();
        let (bq, bs, bz, bd) = (
            format!("{name}.bias_quantized"),
            format!("{name}.bias_quantized_scale"),
            format!("{name}.bias_quantized_zero_point"),
            format!("{name}.bias_DequantizeLinear_Output"),
        );
        self.init_ints(&bq, &[m], 32, true, &bias_q);
        self.init_floats(&bs, &[m], &bias_scale);
        self.init_ints(&bz, &[m], 32, true, &vec![0; m]);
        self.node(
            "DequantizeLinear",
            &format!("{name}.bias_DequantizeLinear"),
            &[&bq, &bs, &bz],
            &bd,
        )
        .attribute
        .push(attr_int("axis", 0));
        (wd, bd)
    }

    /// A quantized Conv of `x` with weights `w` (`[M, C/groups, k, k]`) and float bias, its
    /// output quantized with `out`.
    ///
    /// # Panics
    /// If `x` is not `[C, H, W]`.
    pub fn conv(
        &mut self,
        name: &str,
        x: &Act,
        w: &QuantWeights,
        bias: &[f32],
        a: ConvAttrs,
        out: ActQuant,
    ) -> Act {
        let [_, h, wd] = <[usize; 3]>::try_from(x.shape.as_slice()).expect("conv input is CHW");
        let (wn, bn) = self.weights_and_bias(name, x, w, bias);
        let y = format!("{name}_output");
        let k = a.kernel as i64;
        let p = a.pad as i64;
        let s = a.stride as i64;
        self.node("Conv", name, &[&x.name, &wn, &bn], &y)
            .attribute
            .extend([
                attr_int("group", a.groups as i64),
                attr_ints("kernel_shape", vec![k, k]),
                attr_ints("pads", vec![p, p, p, p]),
                attr_ints("strides", vec![s, s]),
                attr_ints("dilations", vec![1, 1]),
            ]);
        let shape = vec![
            w.dims[0],
            window_out(h, a.kernel, a.stride, 2 * a.pad),
            window_out(wd, a.kernel, a.stride, 2 * a.pad),
        ];
        self.qdq(&y, shape, out)
    }

    /// A quantized Gemm `x · Wᵀ + b` (`transB = 1`, weights `[N, K]`) of a flat `x`.
    pub fn gemm(
        &mut self,
        name: &str,
        x: &Act,
        w: &QuantWeights,
        bias: &[f32],
        out: ActQuant,
    ) -> Act {
        let (wn, bn) = self.weights_and_bias(name, x, w, bias);
        let y = format!("{name}_output");
        self.node("Gemm", name, &[&x.name, &wn, &bn], &y)
            .attribute
            .extend([
                attr_int("transB", 1),
                AttributeProto {
                    name: "alpha".into(),
                    r#type: AttributeType::Float as i32,
                    f: 1.0,
                    ..Default::default()
                },
                AttributeProto {
                    name: "beta".into(),
                    r#type: AttributeType::Float as i32,
                    f: 1.0,
                    ..Default::default()
                },
            ]);
        self.qdq(&y, vec![w.dims[0]], out)
    }

    /// Elementwise Add of two activations of the same shape, quantized with `out`.
    pub fn add(&mut self, name: &str, a: &Act, b: &Act, out: ActQuant) -> Act {
        let y = format!("{name}_output");
        self.node("Add", name, &[&a.name, &b.name], &y);
        self.qdq(&y, a.shape.clone(), out)
    }

    /// MaxPool with a square window; `pads` is `[top, left, bottom, right]`. The output reuses
    /// the input's quantization.
    ///
    /// # Panics
    /// If `x` is not `[C, H, W]`.
    pub fn max_pool(
        &mut self,
        name: &str,
        x: &Act,
        kernel: usize,
        stride: usize,
        pads: [usize; 4],
    ) -> Act {
        let [c, h, w] = <[usize; 3]>::try_from(x.shape.as_slice()).expect("pool input is CHW");
        let y = format!("{name}_output");
        let (k, s) = (kernel as i64, stride as i64);
        self.node("MaxPool", name, &[&x.name], &y)
            .attribute
            .extend([
                attr_ints("kernel_shape", vec![k, k]),
                attr_ints("strides", vec![s, s]),
                attr_ints("pads", pads.iter().map(|&p| p as i64).collect()),
            ]);
        let shape = vec![
            c,
            window_out(h, kernel, stride, pads[0] + pads[2]),
            window_out(w, kernel, stride, pads[1] + pads[3]),
        ];
        self.qdq(&y, shape, x.quant)
    }

    /// GlobalAveragePool to `[C, 1, 1]`, quantized with `out`.
    pub fn global_average_pool(&mut self, name: &str, x: &Act, out: ActQuant) -> Act {
        let y = format!("{name}_output");
        self.node("GlobalAveragePool", name, &[&x.name], &y);
        self.qdq(&y, vec![x.shape[0], 1, 1], out)
    }

    /// Flatten (`axis = 1`); the output reuses the input's quantization.
    pub fn flatten(&mut self, name: &str, x: &Act) -> Act {
        let y = format!("{name}_output");
        self.node("Flatten", name, &[&x.name], &y)
            .attribute
            .push(attr_int("axis", 1));
        self.qdq(&y, vec![x.shape.iter().product()], x.quant)
    }

    /// Concat along the channels of activations that share one quantization; the output keeps
    /// it (onnxruntime gives a Concat's inputs and output one set of parameters).
    ///
    /// # Panics
    /// If `xs` is empty.
    pub fn concat(&mut self, name: &str, xs: &[&Act]) -> Act {
        let y = format!("{name}_output");
        let names: Vec<&str> = xs.iter().map(|x| x.name.as_str()).collect();
        self.node("Concat", name, &names, &y)
            .attribute
            .push(attr_int("axis", 1));
        let mut shape = xs[0].shape.clone();
        shape[0] = xs.iter().map(|x| x.shape[0]).sum();
        self.qdq(&y, shape, xs[0].quant)
    }

    /// The model: `output` (a dequantized activation) becomes the float graph output; default
    /// opset `opset` (13 for 8-bit, 21 for int4/uint4, 25 for int2/uint2).
    ///
    /// # Panics
    /// If no input was declared.
    pub fn finish(self, name: &str, output: &Act, opset: i64) -> ModelProto {
        let ir_version = match opset {
            ..=13 => 7,
            14..=21 => 10,
            _ => 12,
        };
        ModelProto {
            ir_version,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: opset,
            }],
            producer_name: "heq-bench".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(GraphProto {
                name: name.into(),
                node: self.nodes,
                initializer: self.initializers,
                input: vec![self.input.expect("the graph has an input")],
                output: vec![value_info(&output.name, dtype::FLOAT, &output.shape)],
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_byte_packing_is_low_bits_first() {
        assert_eq!(pack_ints(4, &[-1, -8, 7]), vec![0x8F, 0x07]);
        assert_eq!(pack_ints(2, &[0, 1, -2, -1, 1]), vec![0b1110_0100, 0b01]);
        assert_eq!(pack_ints(32, &[-2]), vec![0xFE, 0xFF, 0xFF, 0xFF]);
    }

    #[test]
    fn weights_quantize_per_channel() {
        let w = QuantWeights::quantize(vec![2, 2], 4, &[0.7, -0.36, 0.1, 0.0]);
        assert_eq!(w.values, vec![7, -4, 7, 0]);
        assert_eq!(w.scales, vec![0.7f32 / 7.0, 0.1f32 / 7.0]);
        let t = QuantWeights::quantize(vec![1, 4], 2, &[1.0, -1.0, 0.2, 0.0]);
        assert_eq!(t.values, vec![1, -1, 0, 0]);
    }

    #[test]
    fn activation_quantization() {
        assert_eq!(
            ActQuant::relu_range(4, 6.0),
            ActQuant {
                bits: 4,
                scale: 0.4,
                zero_point: 0
            }
        );
        assert_eq!(ActQuant::signed(2, 3.0).zero_point, 2);
        assert_eq!(ActQuant::signed(2, 3.0).scale, 2.0);
    }
}
