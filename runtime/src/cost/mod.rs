//! Exact communication costs of every protocol message, as pure functions of shapes and
//! parameters. The compiler's cost model calls these, and the protocol tests assert that the
//! messages actually produced have exactly these sizes. [`compute`] models compute time.

pub mod compute;
pub mod linear;
pub mod nonlinear;
pub mod plan;
