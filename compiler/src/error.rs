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
    /// Something about the model as a whole that heqc cannot compile: an opset newer than the
    /// frontend knows, a symbolic spatial dimension.
    #[error("unsupported model: {what}: {reason}")]
    UnsupportedModel {
        /// What part of the model (the opset import, the graph input).
        what: String,
        /// Why heqc cannot compile it.
        reason: String,
    },
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
    /// Whether the model uses something heqc does not support ([`Error::Unsupported`],
    /// [`Error::UnsupportedModel`]), as opposed to a failure (`heqc` exits with 2, not 1).
    pub fn is_unsupported_model(&self) -> bool {
        matches!(self, Error::Unsupported(_) | Error::UnsupportedModel { .. })
    }

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

/// How many node names each group of [`Error::Unsupported`] shows.
const NAMES_PER_GROUP: usize = 3;

/// The unsupported nodes grouped by (domain, operator, reason) in order of first appearance,
/// one line per group with the count and the first node names.
struct UnsupportedList<'a>(&'a [UnsupportedNode]);

impl fmt::Display for UnsupportedList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut groups: Vec<(&UnsupportedNode, Vec<&str>)> = Vec::new();
        for n in self.0 {
            let same = |g: &&mut (&UnsupportedNode, Vec<&str>)| {
                (&g.0.domain, &g.0.op_type, &g.0.reason) == (&n.domain, &n.op_type, &n.reason)
            };
            match groups.iter_mut().find(same) {
                Some((_, names)) => names.push(&n.name),
                None => groups.push((n, vec![&n.name])),
            }
        }
        write!(f, "{} unsupported node(s):", self.0.len())?;
        for (n, names) in &groups {
            let more = if names.len() > NAMES_PER_GROUP {
                ", …"
            } else {
                ""
            };
            let shown = names[..names.len().min(NAMES_PER_GROUP)].join(", ");
            write!(
                f,
                "\n  {}:{} ×{} ({shown}{more})",
                n.domain,
                n.op_type,
                names.len()
            )?;
            if let Some(r) = &n.reason {
                write!(f, ": {r}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, op_type: &str, reason: Option<&str>) -> UnsupportedNode {
        UnsupportedNode {
            name: name.into(),
            op_type: op_type.into(),
            domain: "ai.onnx".into(),
            reason: reason.map(Into::into),
        }
    }

    #[test]
    fn unsupported_nodes_group_by_operator_and_reason() {
        let mut nodes: Vec<UnsupportedNode> = (0..5)
            .map(|i| node(&format!("sig{i}"), "Sigmoid", None))
            .collect();
        nodes.insert(1, node("sm", "Softmax", None));
        nodes.push(node("p1", "MaxPool", Some("dilation")));
        nodes.push(node("p2", "MaxPool", Some("MaxPool indices output")));
        nodes.push(node("p3", "MaxPool", Some("dilation")));
        assert_eq!(
            Error::Unsupported(nodes).to_string(),
            "9 unsupported node(s):\n  \
             ai.onnx:Sigmoid ×5 (sig0, sig1, sig2, …)\n  \
             ai.onnx:Softmax ×1 (sm)\n  \
             ai.onnx:MaxPool ×2 (p1, p3): dilation\n  \
             ai.onnx:MaxPool ×1 (p2): MaxPool indices output"
        );
    }
}
