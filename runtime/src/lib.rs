//! heq-run: the runtime of heqc plans.
//!
//! - [`plan`]: the plan format, shared with the compiler (the one source of truth);
//! - [`reference`]: the plaintext executor of the plan's integer semantics, the definition every
//!   two-party run reproduces bit for bit.
//!
//! Threat model: semi-honest server and client. See `docs/security.md`.

pub mod error;
pub mod plan;
pub mod ring;
