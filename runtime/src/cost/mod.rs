//! Exact communication costs of every protocol message, as pure functions of the protocol
//! parameters ([`crate::params`]) and of a plan's [`crate::schedule`]. The compiler's cost model
//! calls these, and the protocol tests assert that the messages actually produced have exactly
//! these sizes. [`compute`] models compute time.
//!
//! Layering: `cost` sits above [`crate::params`] and [`crate::schedule`], which never import it.

pub mod compute;
pub mod linear;
pub mod nonlinear;
pub mod ot_extension;
pub mod plan;
