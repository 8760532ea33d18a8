//! ONNX backend node cases (`models/onnx_node_cases`): the graph inputs other than the first
//! (scales, zero points, weights) become initializers, the model is compiled, and the
//! reference executor must reproduce the case's output exactly, sample by sample (the first
//! dimension is the batch). Integer graph inputs are already quantized. Cases outside heqc's
//! scope (per-axis or blocked activation quantization, including per-axis along the batch
//! axis; float8/float16; batched weights) must fail with an error, never a panic.
#![allow(clippy::unwrap_used)]

mod common;

use heq_runtime::reference;
use ndarray::ArrayD;
use ndarray_npy::read_npy;
use std::path::Path;
use tract_onnx::pb::TensorProto;

/// Cases heqc compiles and must reproduce exactly.
const EXACT: &[&str] = &[
    "test_convinteger_with_padding",
    "test_convinteger_without_padding",
    "test_dequantizelinear",
    "test_dequantizelinear_int16",
    "test_dequantizelinear_int2",
    "test_dequantizelinear_int4",
    "test_dequantizelinear_uint16",
    "test_dequantizelinear_uint2",
    "test_dequantizelinear_uint4",
    "test_matmulinteger",
    "test_qlinearconv",
    "test_qlinearmatmul_2D_int8_float32",
    "test_qlinearmatmul_2D_uint8_float32",
    "test_quantizelinear",
    "test_quantizelinear_int16",
    "test_quantizelinear_uint16",
];

/// ONNX element type code of a meta.json type name.
fn elem_code(name: &str) -> i32 {
    match name {
        "FLOAT" => 1,
        "UINT8" => 2,
        "INT8" => 3,
        "UINT16" => 4,
        "INT16" => 5,
        "INT32" => 6,
        "INT64" => 7,
        "FLOAT16" => 10,
        "UINT4" => 21,
        "INT4" => 22,
        "UINT2" => 25,
        "INT2" => 26,
        _ => 0,
    }
}

/// Values of a .npy file as f64 (every dtype the cases use).
fn read_values(path: &Path, npy_dtype: &str) -> (Vec<usize>, Vec<f64>) {
    macro_rules! read {
        ($t:ty) => {{
            let a: ArrayD<$t> = read_npy(path).unwrap();
            (a.shape().to_vec(), a.iter().map(|&v| v as f64).collect())
        }};
    }
    match npy_dtype {
        "float32" => read!(f32),
        "float64" => read!(f64),
        "uint8" => read!(u8),
        "int8" => read!(i8),
        "uint16" => read!(u16),
        "int16" => read!(i16),
        "int32" => read!(i32),
        "int64" => read!(i64),
        other => panic!("{}: dtype {other}", path.display()),
    }
}

/// A TensorProto holding `values` as ONNX type `code` (sub-byte types packed, low bits first).
fn tensor_proto(name: &str, code: i32, dims: &[usize], values: &[f64]) -> TensorProto {
    let mut t = TensorProto {
        name: name.into(),
        data_type: code,
        dims: dims.iter().map(|&d| d as i64).collect(),
        ..Default::default()
    };
    match code {
        1 => t.float_data = values.iter().map(|&v| v as f32).collect(),
        7 => t.int64_data = values.iter().map(|&v| v as i64).collect(),
        21 | 22 | 25 | 26 => {
            let bits = if code <= 22 { 4 } else { 2 };
            let per = 8 / bits;
            let mut bytes = vec![0u8; values.len().div_ceil(per)];
            for (i, &v) in values.iter().enumerate() {
                bytes[i / per] |= ((v as i64 as u8) & ((1 << bits) - 1)) << ((i % per) * bits);
            }
            t.raw_data = bytes;
        }
        _ => t.int32_data = values.iter().map(|&v| v as i32).collect(),
    }
    t
}

/// Compiles a case and runs it; `Err` carries the compile error.
fn run_case(dir: &Path) -> Result<(Vec<f64>, Vec<f64>), heqc::Error> {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let bytes = std::fs::read(dir.join("model.onnx")).unwrap();
    let mut model = heqc::frontend::tensor::decode_model(&bytes, "model.onnx")?;
    let inputs = meta["inputs"].as_array().unwrap();
    let graph = model.graph.as_mut().unwrap();
    for inp in &inputs[1..] {
        let name = inp["name"].as_str().unwrap();
        let code = elem_code(inp["elem_type"].as_str().unwrap());
        if inp["npy_dtype"] == "float16" {
            // heqc reads no float16 constants; an empty payload of that type is refused alike.
            let dims: Vec<usize> = inp["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            graph.initializer.push(tensor_proto(name, code, &dims, &[]));
        } else {
            let (dims, values) = read_values(
                &dir.join(format!("input_{}.npy", inp["index"])),
                inp["npy_dtype"].as_str().unwrap(),
            );
            graph
                .initializer
                .push(tensor_proto(name, code, &dims, &values));
        }
        graph.input.retain(|i| i.name != name);
    }
    let plan = heqc::compile_proto(&model, "case")?.selection.plan;
    let x0 = &inputs[0];
    let (xdims, x) = read_values(&dir.join("input_0.npy"), x0["npy_dtype"].as_str().unwrap());
    let out = &meta["outputs"][0];
    let (_, want) = read_values(
        &dir.join("output_0.npy"),
        out["npy_dtype"].as_str().unwrap(),
    );
    let p = &plan.public;
    let (tin, tout) = (
        &p.tensors[p.input.tensor.0 as usize],
        &p.tensors[p.output.tensor.0 as usize],
    );
    let float_out = out["elem_type"] == "FLOAT";
    let batch = xdims.first().copied().unwrap_or(1);
    let per = x.len() / batch;
    let mut got = Vec::with_capacity(want.len());
    for s in 0..batch {
        let sample = &x[s * per..(s + 1) * per];
        let v = if x0["elem_type"] == "FLOAT" {
            reference::quantize_input(p, &sample.iter().map(|&v| v as f32).collect::<Vec<_>>())
        } else {
            sample.iter().map(|&q| q as i64 - tin.zero_point).collect()
        };
        let y = reference::run(&plan, &v).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        if float_out {
            got.extend(
                reference::dequantize_output(p, &y)
                    .iter()
                    .map(|&v| f64::from(v)),
            );
        } else {
            got.extend(y.iter().map(|&v| (v + tout.zero_point) as f64));
        }
    }
    Ok((got, want))
}

#[test]
fn node_cases_in_scope_match_exactly_and_the_rest_fail_cleanly() {
    let root = common::models_dir().join("onnx_node_cases");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut exact = Vec::new();
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        match run_case(&dir) {
            Ok((got, want)) => {
                assert_eq!(got, want, "{name}: output differs");
                exact.push(name);
            }
            Err(e) => {
                assert!(!EXACT.contains(&name.as_str()), "{name}: {e}");
                println!("{name}: refused: {e}");
            }
        }
    }
    assert_eq!(exact, EXACT, "cases reproduced exactly");
}
