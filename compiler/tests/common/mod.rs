//! Shared helpers of the heqc integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

/// The repository's `models/` folder.
pub fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// Every top-level model file, sorted.
pub fn all_models() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(models_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    v.sort();
    v
}

/// Whether a model is a float model (not quantized; heqc refuses it).
pub fn is_float(p: &std::path::Path) -> bool {
    p.file_stem().unwrap().to_string_lossy().ends_with("_float")
}

/// Every quantized model heqc must compile.
pub fn quantized_models() -> Vec<PathBuf> {
    all_models()
        .into_iter()
        .filter(|p| !is_float(p) && p.file_stem().unwrap() != "unsupported")
        .collect()
}
