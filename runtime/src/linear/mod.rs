//! Sans-IO two-party protocols of the linear layers (conv, grouped/depthwise conv, matmul/FC,
//! per-channel affine), Cheetah-style (Huang et al., USENIX Security'22, ePrint 2022/207;
//! `protocols.md` §1.3–1.7) with HEQuant intra-coefficient packing (arXiv 2401.15970;
//! `protocols.md` §3.5) and, in the channel-interleaved encoding
//! ([`crate::plan::Encoding::Interleaved`]), BumbleBee-style response packing: the server packs
//! the responses of several filter groups into one ciphertext (`crate::he::pack`).
//!
//! One layer is one round trip, and no socket is touched here:
//!
//! ```text
//! client.query(&x_client, rng)        -> Query       (seeded RLWE ciphertexts of the shares)
//! server.respond(&keys, &query, x_server, rng) -> (Response, y_server)
//! client.finish(&response)            -> y_client    (y_client + y_server = acc mod 2^out)
//! ```
//!
//! The layer's index maps ([`Layout`]) come from the public plan; the server's weights never
//! leave [`LinearServer`]. Its parameters are `crate::params`' (noise budget, tiling), its exact
//! message sizes `crate::cost::linear`'s.

mod layout;
mod packing;
mod protocol;

pub use layout::{Kind, Layout, NO_ELEMENT};
pub use packing::{extract_field, unpack_words};
pub use protocol::{LinearClient, LinearServer, Query, Response, ServerKeys};

use crate::he::HeError;
use crate::params::he::ConfigError;

/// Errors of the linear-layer protocols.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinearError {
    /// The configuration cannot run.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The RLWE layer failed (including malformed ciphertexts from the peer).
    #[error(transparent)]
    He(#[from] HeError),
    /// A vector has the wrong length (a share, the weights, the bias, a message).
    #[error("{what}: expected {expected}, got {actual}")]
    Length {
        /// What was checked.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Actual length.
        actual: usize,
    },
    /// The flooding noise cannot hide the product noise with the required statistical slack.
    #[error(
        "flooding: the product noise needs {noise_bits} bits, the flood has {flood_bits}, \
         {stat_bits} bits of statistical slack are required (enlarge q or shrink the kernel)"
    )]
    Flooding {
        /// Bits of the product noise bound.
        noise_bits: u32,
        /// Bits of the flood.
        flood_bits: u32,
        /// Required slack.
        stat_bits: u32,
    },
    /// The key or public key was made for other HE parameters than the layer's.
    #[error("the key is for other HE parameters than this layer's")]
    KeyMismatch,
    /// A layer packs its responses but the client sent no Galois keys for its context.
    #[error("the layer packs responses but the client sent no Galois keys for its HE context")]
    MissingGaloisKeys,
    /// A layer's server was given the layout of another layer.
    #[error("the layout is not the one this layer's server was made for")]
    LayoutMismatch,
}
