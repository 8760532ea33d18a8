//! Error types of the runtime library.

use crate::plan::{LayerId, TensorId};
use std::path::PathBuf;

/// Why a plan could not be read, written or accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The file does not start with the plan magic.
    #[error("not a heqc plan file (bad magic or too short)")]
    NotAPlan,
    /// The file has another format version.
    #[error("plan format version {found} is not supported (this heq-run reads version {expected})")]
    Version {
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        expected: u32,
    },
    /// The body is damaged.
    #[error("corrupt plan file: {0}")]
    Corrupt(String),
    /// The plan could not be encoded.
    #[error("cannot encode the plan: {0}")]
    Encode(String),
    /// Reading or writing the file failed (the caller names the file, as for every other
    /// variant).
    #[error(transparent)]
    Io(std::io::Error),
    /// The plan decodes but breaks a structural rule.
    #[error("invalid plan: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

/// Why an `.npy` sample file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NpyError {
    /// Reading or writing the file failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not a well-formed `.npy` file.
    #[error("{0}")]
    Format(String),
    /// The array has an element type heq-run does not read.
    #[error("unsupported dtype '{0}': heq-run reads float32 or float64 .npy files")]
    Dtype(String),
    /// The data does not have the size the shape announces.
    #[error("the .npy header announces shape {shape:?}, but the file holds {actual} data bytes")]
    Length {
        /// Shape in the header.
        shape: Vec<usize>,
        /// Data bytes (or elements, when writing) actually present.
        actual: usize,
    },
}

/// Why an output file cannot be written where the command line asks; found before any work
/// starts ([`crate::output_file`]), a usage error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// The folder the file would go in does not exist.
    #[error("cannot write {}: the directory {} does not exist", .path.display(), .dir.display())]
    NoDirectory {
        /// The file.
        path: PathBuf,
        /// Its folder.
        dir: PathBuf,
    },
    /// What should be the file's folder is not a folder.
    #[error("cannot write {}: {} is not a directory", .path.display(), .dir.display())]
    NotADirectory {
        /// The file.
        path: PathBuf,
        /// Its would-be folder.
        dir: PathBuf,
    },
    /// The path names a folder.
    #[error("cannot write {}: it is a directory", .path.display())]
    IsADirectory {
        /// The path.
        path: PathBuf,
    },
    /// No file can be created in the folder (permissions, read-only file system, …).
    #[error("cannot write {}: {error}", .path.display())]
    NotWritable {
        /// The file.
        path: PathBuf,
        /// Why a file could not be created next to it.
        error: std::io::Error,
    },
    /// Two outputs name the same file, so one would overwrite the other.
    #[error("{} and {} are the same file", .first.display(), .second.display())]
    SameFile {
        /// The first path as given.
        first: PathBuf,
        /// The second path as given.
        second: PathBuf,
    },
}

/// Why the reference executor could not run a plan on an input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The input has the wrong number of elements.
    #[error(
        "input has {actual} elements per sample, the plan expects {expected} (shape {shape:?})"
    )]
    InputShape {
        /// Elements the plan expects.
        expected: usize,
        /// Elements given.
        actual: usize,
        /// The plan's input shape.
        shape: Vec<usize>,
    },
    /// The plan breaks a structural rule.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A server-side computation was asked of a plan without weights.
    #[error("layer {0} needs the server's weights, but this plan has none (a client plan)")]
    MissingWeights(LayerId),
    /// A value left the range the plan promises (a bug in the compiler's range analysis).
    #[error("tensor {tensor}: value {value} outside its declared range [{lo}, {hi}]")]
    OutOfRange {
        /// The tensor.
        tensor: TensorId,
        /// The offending value.
        value: i64,
        /// Declared lower bound.
        lo: i64,
        /// Declared upper bound.
        hi: i64,
    },
    /// A linear layer's accumulator does not fit the width the plan declares (a bug in the
    /// compiler's range analysis).
    #[error("layer {layer}: accumulator {value} does not fit in {bits} signed bits")]
    AccOverflow {
        /// The linear layer.
        layer: LayerId,
        /// The offending accumulator.
        value: i128,
        /// Declared accumulator width `acc_bits`.
        bits: u32,
    },
    /// An intermediate product or sum left the 128-bit range (only a hostile or broken plan
    /// with extreme multipliers and ranges can cause this).
    #[error("layer {layer}: arithmetic overflow in 128-bit intermediate values")]
    Overflow {
        /// The layer.
        layer: LayerId,
    },
    /// The revealed output of a sample does not have the output tensor's length.
    #[error("the revealed output has {actual} elements, the plan's output tensor {expected}")]
    OutputLength {
        /// Elements of the plan's output tensor.
        expected: usize,
        /// Elements given.
        actual: usize,
    },
    /// A requantization declared tie-free (`Rounding::NoTies`) met a rounding tie (a bug in the
    /// compiler's tie analysis).
    #[error("layer {layer}: rounding tie in a requantization the plan declares tie-free")]
    UnexpectedTie {
        /// The layer.
        layer: LayerId,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_error_messages() {
        let e = ExecError::AccOverflow {
            layer: LayerId(3),
            value: -128,
            bits: 8,
        };
        assert_eq!(
            e.to_string(),
            "layer l3: accumulator -128 does not fit in 8 signed bits"
        );
        let e = ExecError::Overflow { layer: LayerId(1) };
        assert_eq!(
            e.to_string(),
            "layer l1: arithmetic overflow in 128-bit intermediate values"
        );
        let e = ExecError::OutOfRange {
            tensor: TensorId(2),
            value: 9,
            lo: -1,
            hi: 1,
        };
        assert_eq!(
            e.to_string(),
            "tensor t2: value 9 outside its declared range [-1, 1]"
        );
    }
}
