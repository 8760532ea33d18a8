//! Protocol parameters: what the two-party protocols execute, decided from the public plan
//! alone (crypto-free, so the compiler shares them).
//!
//! - [`he`]: the HE parameter rules and noise budget of a linear layer (widths on the wire);
//! - [`conv`]: the tiling of a linear layer into ciphertexts;
//! - [`carry`]: the combination schedule of log-depth carry computations;
//! - [`nonlinear`]: the plans the nonlinear protocols execute (rescale, clamp, requantization,
//!   unpacking, combinations of inputs) and the range arithmetic they are planned with.
//!
//! Layering: `params` sits below [`crate::schedule`] (which picks the parameters of every layer)
//! and below [`crate::cost`] (which prices them); it imports neither.

pub mod carry;
pub mod conv;
pub mod he;
pub mod nonlinear;
