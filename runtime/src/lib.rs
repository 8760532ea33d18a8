//! heq-run: the runtime of heqc plans.
//!
//! - [`plan`]: the plan format, shared with the compiler (the one source of truth);
//! - [`reference`](mod@reference): the plaintext executor of the plan's integer semantics, the definition every
//!   two-party run reproduces bit for bit;
//! - [`ring`]: arithmetic in the share rings and the exact rounding shift;
//! - [`params`]: the protocol parameters (HE noise budget, tiling of a linear layer into
//!   ciphertexts, the plans the nonlinear protocols execute);
//! - [`schedule`]: the per-layer protocols, their parameters and the share rings both parties
//!   derive from a plan;
//! - [`cost`]: exact message sizes and rounds of every protocol, and of a whole plan (above
//!   `params` and `schedule`, which never import it);
//! - [`output_file`]: checking output paths before any work and writing files atomically;
//! - `npy`: `.npy` sample files for `heq-run` and heqc's calibration data (feature `npy`);
//! - `he`, `linear`: the HE linear-layer protocols (feature `crypto`);
//! - `ot`, `nonlinear`, `transport`: the OT-based nonlinear protocols and the channels
//!   (feature `crypto`);
//! - `party`: the server and client drivers that run a whole plan (feature `crypto`);
//! - `calibrate`: measures this machine's compute profile for `heq-run calibrate` (feature
//!   `crypto`).
//!
//! Features: `crypto` (the protocols, the transport, the parties), `npy`, `cli` (the `heq-run`
//! binary: command line, logging, progress bars; the default) and `testing` (test support:
//! `reference::testutil` and cryprot-net's demo loopback connection; enabled by this crate's
//! tests and benches through a dev-dependency on itself, never by the binary).
//!
//! Threat model: semi-honest server and client. See `docs/security.md`.

#[cfg(feature = "crypto")]
pub mod calibrate;
pub mod cost;
pub mod error;
pub mod output_file;
pub mod params;
pub mod plan;
pub mod reference;
pub mod ring;
pub mod schedule;

#[cfg(feature = "crypto")]
pub mod he;
#[cfg(feature = "crypto")]
pub mod linear;
#[cfg(feature = "crypto")]
pub mod nonlinear;
#[cfg(feature = "npy")]
pub mod npy;
#[cfg(feature = "crypto")]
pub mod ot;
#[cfg(feature = "crypto")]
pub mod party;
#[cfg(feature = "crypto")]
pub mod transport;
