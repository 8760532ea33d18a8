//! Error types of the compiler library.
//!
//! User-facing problems (a file that is not ONNX, an operator heqc does not support, a model
//! whose quantization it cannot express) are kept apart from [`Error::Invariant`], which means a
//! bug in heqc itself (a pass broke the IR).

use heq_runtime::error::PlanError;
use std::fmt;

/// Result of the compiler library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a model could not be compiled or a plan explained.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading a file failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The bytes are not a decodable ONNX `ModelProto`.
    #[error("{path}: not a valid ONNX model: {reason}")]
    Decode {
        /// The file (or `<bytes>`).
        path: String,
        /// What the protobuf decoder or the structural check reported.
        reason: String,
    },
    /// Operators (or operator configurations) heqc cannot compile, every one of them.
    #[error("{}", UnsupportedList(.0))]
    Unsupported(Vec<UnsupportedNode>),
    /// A node is malformed or its quantization cannot be expressed in a plan.
    #[error("node '{node}' ({op_type}): {reason}")]
    Model {
        /// ONNX node name (or the tensor name when the problem is not at a node).
        node: String,
        /// ONNX operator type.
        op_type: String,
        /// What is wrong.
        reason: String,
    },
    /// An initializer cannot be decoded.
    #[error("initializer '{name}': {reason}")]
    Tensor {
        /// Tensor name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A compiler pass left the IR inconsistent: a bug in heqc.
    #[error("internal error after pass '{pass}': {}", .violations.join("; "))]
    Invariant {
        /// The pass that ran last.
        pass: &'static str,
        /// Every violated invariant.
        violations: Vec<String>,
    },
    /// Writing, reading or validating a plan failed.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Serialising a report failed.
    #[error("cannot format the report: {0}")]
    Format(String),
    /// Mixed precision cannot use the calibration data.
    #[error("calibration: {reason}")]
    Calibration {
        /// Why.
        reason: String,
    },
    /// The optimizer found no valid configuration, or its solver failed.
    #[error("optimizer: {reason}")]
    Optimize {
        /// Why.
        reason: String,
    },
}

impl Error {
    /// Shorthand for [`Error::Model`].
    pub(crate) fn model(node: &str, op_type: &str, reason: impl Into<String>) -> Self {
        Error::Model {
            node: node.to_string(),
            op_type: op_type.to_string(),
            reason: reason.into(),
        }
    }
}

/// One ONNX node heqc cannot compile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsupportedNode {
    /// Node name (`<unnamed #i>` when the model gives none).
    pub name: String,
    /// Operator type.
    pub op_type: String,
    /// Operator domain (`ai.onnx` for the default domain).
    pub domain: String,
    /// Why, when the operator itself is known but this use of it is not.
    pub reason: Option<String>,
}

struct UnsupportedList<'a>(&'a [UnsupportedNode]);

impl fmt::Display for UnsupportedList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} unsupported node(s):", self.0.len())?;
        for n in self.0 {
            write!(f, " '{}' ({}:{})", n.name, n.domain, n.op_type)?;
            if let Some(r) = &n.reason {
                write!(f, " [{r}]")?;
            }
            write!(f, ";")?;
        }
        Ok(())
    }
}
