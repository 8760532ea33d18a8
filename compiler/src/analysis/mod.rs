//! Read-only analyses of the layer graph.

pub mod ranges;
