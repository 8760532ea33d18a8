//! Read-only analyses of the layer graph.

pub mod ranges;
pub mod ties;
