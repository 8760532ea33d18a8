//! Initializer decoding: ONNX `TensorProto` → integer or float constants.
//!
//! Byte-wide and wider types go through `tract_onnx::tensor::load_tensor` after this module has
//! checked that the payload matches the shape (tract trusts the sizes); the sub-byte types
//! (int4/uint4, int2/uint2), which tract does not know, are unpacked here (low bits first).

use crate::error::{Error, Result};
use heq_runtime::plan::IntType;
use tract_onnx::pb::TensorProto;
use tract_onnx::prelude::{Framework, Tensor};

/// ONNX `TensorProto.DataType` codes heqc reads.
pub(crate) mod dtype {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const UINT16: i32 = 4;
    pub const INT16: i32 = 5;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const DOUBLE: i32 = 11;
    pub const UINT4: i32 = 21;
    pub const INT4: i32 = 22;
    pub const UINT2: i32 = 25;
    pub const INT2: i32 = 26;
}

/// Largest constant heqc accepts (elements), so that a corrupt `dims` cannot exhaust memory.
const MAX_ELEMENTS: usize = 1 << 28;

/// The integer type of an ONNX element type, if it is one heqc quantizes with.
pub(crate) fn int_type(data_type: i32) -> Option<IntType> {
    let (bits, signed) = match data_type {
        dtype::UINT8 => (8, false),
        dtype::INT8 => (8, true),
        dtype::UINT16 => (16, false),
        dtype::INT16 => (16, true),
        dtype::INT32 => (32, true),
        dtype::UINT4 => (4, false),
        dtype::INT4 => (4, true),
        dtype::UINT2 => (2, false),
        dtype::INT2 => (2, true),
        _ => return None,
    };
    Some(IntType { bits, signed })
}

/// Values of a constant.
#[derive(Clone, Debug, PartialEq)]
pub enum ConstData {
    /// Integer elements of an ONNX integer type.
    Int {
        /// The ONNX element type.
        ty: IntType,
        /// The values.
        values: Vec<i64>,
    },
    /// Float elements (float and double initializers).
    Float(Vec<f32>),
}

/// A decoded initializer (or a constant the frontend computed).
#[derive(Clone, Debug, PartialEq)]
pub struct Const {
    /// ONNX dimensions (row-major).
    pub dims: Vec<usize>,
    /// The values.
    pub data: ConstData,
}

impl Const {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.data {
            ConstData::Int { values, .. } => values.len(),
            ConstData::Float(v) => v.len(),
        }
    }

    /// Whether the constant has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values as `f64` (integers converted exactly).
    pub fn to_f64(&self) -> Vec<f64> {
        match &self.data {
            ConstData::Int { values, .. } => values.iter().map(|&v| v as f64).collect(),
            ConstData::Float(v) => v.iter().map(|&v| f64::from(v)).collect(),
        }
    }
}

/// Decodes one initializer.
///
/// # Errors
/// [`Error::Tensor`] for unsupported element types, external data, negative or oversized
/// dimensions, and payloads whose size does not match the dimensions.
pub fn decode(t: &TensorProto) -> Result<Const> {
    let err = |reason: String| Error::Tensor {
        name: t.name.clone(),
        reason,
    };
    let mut dims = Vec::with_capacity(t.dims.len());
    let mut n: usize = 1;
    for &d in &t.dims {
        let d = usize::try_from(d).map_err(|_| err(format!("negative dimension {d}")))?;
        n = n
            .checked_mul(d)
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| err("too many elements".into()))?;
        dims.push(d);
    }
    if t.data_location == Some(1) {
        return Err(err("external data is not supported".into()));
    }
    let data = match t.data_type {
        dtype::UINT4 | dtype::INT4 | dtype::UINT2 | dtype::INT2 => {
            let ty = int_type(t.data_type).expect("sub-byte types are integer types");
            let bytes: Vec<u8> = if t.raw_data.is_empty() {
                t.int32_data.iter().map(|&v| v as u8).collect()
            } else {
                t.raw_data.clone()
            };
            let per_byte = (8 / ty.bits) as usize;
            if bytes.len() != n.div_ceil(per_byte) {
                return Err(err(format!("{} bytes for {n} {ty} elements", bytes.len())));
            }
            let mask = (1u8 << ty.bits) - 1;
            let values = (0..n)
                .map(|i| {
                    let raw = (bytes[i / per_byte] >> ((i % per_byte) as u32 * ty.bits)) & mask;
                    let v = i64::from(raw);
                    if ty.signed && v >= 1 << (ty.bits - 1) {
                        v - (1 << ty.bits)
                    } else {
                        v
                    }
                })
                .collect();
            ConstData::Int { ty, values }
        }
        dtype::FLOAT
        | dtype::DOUBLE
        | dtype::UINT8
        | dtype::INT8
        | dtype::UINT16
        | dtype::INT16
        | dtype::INT32
        | dtype::INT64 => {
            let (size, typed_len) = match t.data_type {
                dtype::FLOAT => (4, t.float_data.len()),
                dtype::DOUBLE => (8, t.double_data.len()),
                dtype::INT64 => (8, t.int64_data.len()),
                dtype::UINT8 | dtype::INT8 => (1, t.int32_data.len()),
                dtype::UINT16 | dtype::INT16 => (2, t.int32_data.len()),
                _ => (4, t.int32_data.len()),
            };
            let ok = if t.raw_data.is_empty() {
                typed_len == n
            } else {
                t.raw_data.len() == n * size
            };
            if !ok {
                return Err(err(format!("payload does not hold {n} elements")));
            }
            let onnx = tract_onnx::onnx();
            let tensor = tract_onnx::tensor::load_tensor(&*onnx.provider, t, None)
                .map_err(|e| err(format!("{e:#}")))?;
            convert(&tensor, t.data_type).map_err(err)?
        }
        other => return Err(err(format!("element type {other} is not supported"))),
    };
    Ok(Const { dims, data })
}

fn convert(tensor: &Tensor, data_type: i32) -> std::result::Result<ConstData, String> {
    fn ints<T: Copy + Into<i64> + tract_onnx::prelude::Datum>(
        t: &Tensor,
    ) -> std::result::Result<Vec<i64>, String> {
        Ok(t.to_plain_array_view::<T>()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|&v| v.into())
            .collect())
    }
    let int = |values| {
        let ty = int_type(data_type).unwrap_or(IntType {
            bits: 64,
            signed: true,
        });
        Ok(ConstData::Int { ty, values })
    };
    match data_type {
        dtype::FLOAT => Ok(ConstData::Float(
            tensor
                .to_plain_array_view::<f32>()
                .map_err(|e| e.to_string())?
                .iter()
                .copied()
                .collect(),
        )),
        dtype::DOUBLE => Ok(ConstData::Float(
            tensor
                .to_plain_array_view::<f64>()
                .map_err(|e| e.to_string())?
                .iter()
                .map(|&v| v as f32)
                .collect(),
        )),
        dtype::UINT8 => int(ints::<u8>(tensor)?),
        dtype::INT8 => int(ints::<i8>(tensor)?),
        dtype::UINT16 => int(ints::<u16>(tensor)?),
        dtype::INT16 => int(ints::<i16>(tensor)?),
        dtype::INT32 => int(ints::<i32>(tensor)?),
        _ => int(ints::<i64>(tensor)?),
    }
}

/// Decodes a ModelProto from bytes, the one entry point to the protobuf decoder.
///
/// # Errors
/// [`Error::Decode`] when the bytes are not a `ModelProto`.
pub fn decode_model(bytes: &[u8], path: &str) -> Result<tract_onnx::pb::ModelProto> {
    let onnx = tract_onnx::onnx();
    let mut reader = bytes;
    onnx.proto_model_for_read(&mut reader)
        .map_err(|e| Error::Decode {
            path: path.to_string(),
            reason: format!("{e:#}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto(data_type: i32, dims: Vec<i64>, raw: Vec<u8>) -> TensorProto {
        TensorProto {
            name: "w".into(),
            data_type,
            dims,
            raw_data: raw,
            ..Default::default()
        }
    }

    #[test]
    fn int4_unpacks_low_nibble_first_with_sign() {
        let c = decode(&proto(dtype::INT4, vec![3], vec![0x8F, 0x07])).expect("decodes");
        assert_eq!(
            c.data,
            ConstData::Int {
                ty: IntType {
                    bits: 4,
                    signed: true
                },
                values: vec![-1, -8, 7]
            }
        );
    }

    #[test]
    fn uint2_unpacks_four_per_byte() {
        let c = decode(&proto(dtype::UINT2, vec![5], vec![0b1110_0100, 0b11])).expect("decodes");
        assert_eq!(
            c.data,
            ConstData::Int {
                ty: IntType {
                    bits: 2,
                    signed: false
                },
                values: vec![0, 1, 2, 3, 3]
            }
        );
    }

    #[test]
    fn int8_raw_data_goes_through_tract() {
        let c = decode(&proto(dtype::INT8, vec![2, 2], vec![1, 255, 128, 7])).expect("decodes");
        assert_eq!(c.dims, vec![2, 2]);
        assert_eq!(
            c.data,
            ConstData::Int {
                ty: IntType {
                    bits: 8,
                    signed: true
                },
                values: vec![1, -1, -128, 7]
            }
        );
    }

    #[test]
    fn short_payload_is_an_error() {
        let e =
            decode(&proto(dtype::FLOAT, vec![2], vec![0; 7])).expect_err("7 bytes for 2 floats");
        assert_eq!(
            e.to_string(),
            "initializer 'w': payload does not hold 2 elements"
        );
        let e = decode(&proto(dtype::INT8, vec![-1], vec![])).expect_err("negative dim");
        assert_eq!(e.to_string(), "initializer 'w': negative dimension -1");
    }
}
