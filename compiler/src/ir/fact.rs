//! `TensorFact`: what the compiler knows about one integer tensor.

use heq_runtime::plan::IntType;

/// Shape, quantization and value range of one tensor of the layer graph.
///
/// Values are centred: the tensor holds `v = q − zero_point`, whose real value is `scale · v`.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorFact {
    /// ONNX name of the tensor this one stands for.
    pub name: String,
    /// Shape of one sample (the batch dimension dropped).
    pub shape: Vec<usize>,
    /// Element type of the quantized value `q`.
    pub ty: IntType,
    /// Zero point of `q`.
    pub zero_point: i64,
    /// Real value of one step.
    pub scale: f32,
    /// Sound bounds of the centred values; the type's bounds until range analysis narrows them.
    pub range: (i64, i64),
}

impl TensorFact {
    /// A tensor whose range is everything its type can hold.
    pub fn new(
        name: impl Into<String>,
        shape: Vec<usize>,
        ty: IntType,
        zero_point: i64,
        scale: f32,
    ) -> Self {
        let range = type_range(ty, zero_point);
        TensorFact {
            name: name.into(),
            shape,
            ty,
            zero_point,
            scale,
            range,
        }
    }

    /// Number of elements of one sample.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Centred values `[min − zp, max − zp]` a type can hold.
pub fn type_range(ty: IntType, zero_point: i64) -> (i64, i64) {
    (ty.min() - zero_point, ty.max() - zero_point)
}
