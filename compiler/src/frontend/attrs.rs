//! Reading ONNX node attributes: typed attribute lookups, sizes and axes, and the 2-D window
//! attributes (padding, strides) and feature-map shape that convolutions and pools share.

use super::unsupported;
use crate::error::{Error, Result};
use tract_onnx::pb::{NodeProto, attribute_proto::AttributeType};

/// A non-negative axis for a tensor of `rank` dimensions.
pub(crate) fn normalize_axis(node: &NodeProto, axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r.max(1)).contains(&a) {
        Ok(a as usize)
    } else {
        Err(Error::model(
            &node.name,
            &node.op_type,
            format!("axis {axis} out of range for rank {rank}"),
        ))
    }
}

/// An integer attribute.
pub fn attr_int(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute
        .iter()
        .find(|a| a.name == name && a.r#type == AttributeType::Int as i32)
        .map(|a| a.i)
}

/// A float attribute.
pub fn attr_float(node: &NodeProto, name: &str) -> Option<f32> {
    node.attribute
        .iter()
        .find(|a| a.name == name && a.r#type == AttributeType::Float as i32)
        .map(|a| a.f)
}

/// An integer-list attribute.
pub fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    node.attribute
        .iter()
        .find(|a| a.name == name && a.r#type == AttributeType::Ints as i32)
        .map(|a| a.ints.clone())
}

/// A string attribute.
pub fn attr_str(node: &NodeProto, name: &str) -> Option<String> {
    node.attribute
        .iter()
        .find(|a| a.name == name && a.r#type == AttributeType::String as i32)
        .map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

/// Non-negative sizes from an integer-list attribute.
///
/// # Errors
/// Negative or oversized entries.
pub fn sizes(node: &NodeProto, v: &[i64]) -> Result<Vec<usize>> {
    v.iter()
        .map(|&x| usize::try_from(x).ok().filter(|&x| x < 1 << 24))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| Error::model(&node.name, &node.op_type, format!("invalid sizes {v:?}")))
}

/// Resolves ONNX padding (`pads` or `auto_pad`) of a 2-D window over `[H, W]`.
///
/// # Errors
/// Malformed padding attributes.
pub(crate) fn pads_2d(
    node: &NodeProto,
    in_hw: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
) -> Result<[usize; 4]> {
    let auto = attr_str(node, "auto_pad").unwrap_or_else(|| "NOTSET".into());
    match auto.as_str() {
        "NOTSET" => match attr_ints(node, "pads") {
            None => Ok([0; 4]),
            Some(p) => {
                let p = sizes(node, &p)?;
                <[usize; 4]>::try_from(p).map_err(|_| {
                    Error::model(&node.name, &node.op_type, "pads must have 4 entries")
                })
            }
        },
        "VALID" => Ok([0; 4]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut p = [0; 4];
            for d in 0..2 {
                let out = in_hw[d].div_ceil(stride[d]);
                let total = ((out - 1) * stride[d] + kernel[d]).saturating_sub(in_hw[d]);
                let small = total / 2;
                let (begin, end) = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                p[d] = begin;
                p[d + 2] = end;
            }
            Ok(p)
        }
        other => Err(Error::model(
            &node.name,
            &node.op_type,
            format!("auto_pad '{other}'"),
        )),
    }
}

/// Strides (default 1) of a 2-D window, rejecting dilation.
///
/// # Errors
/// Dilations other than 1, malformed strides.
pub(crate) fn strides_2d(node: &NodeProto) -> Result<[usize; 2]> {
    if attr_ints(node, "dilations").is_some_and(|d| d.iter().any(|&x| x != 1)) {
        return Err(unsupported(node, "dilation"));
    }
    match attr_ints(node, "strides") {
        None => Ok([1, 1]),
        Some(s) => {
            let s = sizes(node, &s)?;
            match s.as_slice() {
                [a, b] if *a > 0 && *b > 0 => Ok([*a, *b]),
                _ => Err(unsupported(node, "strides other than 2-D positive")),
            }
        }
    }
}

/// `[C, H, W]` of a feature-map tensor.
///
/// # Errors
/// Tensors that are not 3-D per sample.
pub(crate) fn chw(node: &NodeProto, shape: &[usize]) -> Result<[usize; 3]> {
    <[usize; 3]>::try_from(shape).map_err(|_| {
        unsupported(
            node,
            &format!("input shape {shape:?} is not [C, H, W] per sample"),
        )
    })
}
