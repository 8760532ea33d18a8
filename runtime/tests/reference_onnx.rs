//! Input quantization and output dequantization against the ONNX backend node cases in
//! `models/onnx_node_cases` (reference outputs of onnx 1.23.2, which onnxruntime 1.32.0
//! reproduces at opset 21): `quantize_input` must give exactly ONNX `QuantizeLinear`, and
//! `dequantize_output` exactly `DequantizeLinear`, for every integer type a plan can hold.
#![cfg(feature = "crypto")]
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]

use heq_runtime::plan::{IntType, PublicPlan};
use heq_runtime::reference::{dequantize_output, quantize_input, testutil::PlanBuilder};
use ndarray::ArrayD;
use ndarray_npy::{ReadNpyExt, ReadableElement};
use std::path::PathBuf;

fn case_file(case: &str, file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models/onnx_node_cases")
        .join(case)
        .join(file)
}

fn read<T: ReadableElement + Copy>(case: &str, file: &str) -> Option<Vec<T>> {
    let bytes = std::fs::read(case_file(case, file)).unwrap();
    ArrayD::<T>::read_npy(bytes.as_slice())
        .ok()
        .map(|a| a.iter().copied().collect())
}

/// An integer `.npy` file of any of the dtypes the cases use, widened to i64.
fn read_ints(case: &str, file: &str) -> Vec<i64> {
    fn widen<T: ReadableElement + Copy + Into<i64>>(case: &str, file: &str) -> Option<Vec<i64>> {
        read::<T>(case, file).map(|v| v.into_iter().map(Into::into).collect())
    }
    widen::<u8>(case, file)
        .or_else(|| widen::<i8>(case, file))
        .or_else(|| widen::<u16>(case, file))
        .or_else(|| widen::<i16>(case, file))
        .unwrap_or_else(|| panic!("{case}/{file}: not an 8- or 16-bit integer array"))
}

/// A plan whose input and output is one tensor of `n` elements with this quantization.
fn io_plan(ty: IntType, zero_point: i64, scale: f32, n: usize) -> PublicPlan {
    let mut b = PlanBuilder::new(&[n], (ty.min() - zero_point, ty.max() - zero_point));
    let input = b.input();
    let t = b.tensor_mut(input);
    (t.ty, t.zero_point, t.scale) = (ty, zero_point, scale);
    b.build(input).unwrap().public
}

/// The per-tensor and per-axis (axis 0) cases with integer outputs, and their element types.
const TYPES: [(&str, u32, bool); 7] = [
    ("", 8, false),
    ("_int16", 16, true),
    ("_uint16", 16, false),
    ("_int4", 4, true),
    ("_uint4", 4, false),
    ("_int2", 2, true),
    ("_uint2", 2, false),
];

#[test]
fn quantize_input_is_onnx_quantize_linear() {
    let mut checked = 0;
    for (suffix, bits, signed) in TYPES {
        let case = format!("test_quantizelinear{suffix}");
        let x = read::<f32>(&case, "input_0.npy").unwrap();
        let scales = read::<f32>(&case, "input_1.npy").unwrap();
        let zero_points = read_ints(&case, "input_2.npy");
        let want = read_ints(&case, "output_0.npy");
        // One scale per row (axis 0) or one for the whole tensor.
        let n = x.len() / scales.len();
        for (r, (&scale, &zp)) in scales.iter().zip(&zero_points).enumerate() {
            let plan = io_plan(IntType { bits, signed }, zp, scale, n);
            let q: Vec<i64> = quantize_input(&plan, &x[r * n..][..n])
                .iter()
                .map(|v| v + zp)
                .collect();
            assert_eq!(q, want[r * n..][..n], "{case}, row {r}");
            checked += n;
        }
    }
    assert_eq!(checked, 6 + 16 + 12 + 4 * 12);
}

#[test]
fn dequantize_output_is_onnx_dequantize_linear() {
    let mut checked = 0;
    for (suffix, bits, signed) in TYPES {
        let case = format!("test_dequantizelinear{suffix}");
        let q = read_ints(&case, "input_0.npy");
        let scale = read::<f32>(&case, "input_1.npy").unwrap();
        let zp = read_ints(&case, "input_2.npy");
        let want = read::<f32>(&case, "output_0.npy").unwrap();
        let plan = io_plan(IntType { bits, signed }, zp[0], scale[0], q.len());
        let v: Vec<i64> = q.iter().map(|q| q - zp[0]).collect();
        let y = dequantize_output(&plan, &v);
        assert_eq!(
            y.iter().map(|y| y.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|y| y.to_bits()).collect::<Vec<_>>(),
            "{case}"
        );
        checked += q.len();
    }
    assert_eq!(checked, 4 + 4 + 4 + 5 + 5 + 4 + 4);
}
