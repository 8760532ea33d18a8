//! Reading and writing plan files.
//!
//! A plan file is `PLAN_MAGIC` (8 bytes), the format version (`u32`, little endian), the
//! BLAKE3 hash of the body (32 bytes), then the body: the postcard encoding of [`Plan`]. A file
//! is written to a temporary name and renamed ([`crate::output_file`]), so a failure never
//! leaves a half-written plan.
//!
//! Reading never panics and never allocates from a length it has not checked: the header and
//! hash are checked before decoding; postcard reads every length prefix against the bytes
//! actually present (serde caps any preallocation); and [`super::validate`] bounds the shapes
//! and work a decoded plan may ask for. `runtime/tests/plan_io*.rs` exercise this with
//! truncations, byte flips and body mutations whose hash is recomputed.

use super::{Plan, PublicPlan};
use crate::error::PlanError;
use std::path::Path;

/// First bytes of every plan file.
pub const PLAN_MAGIC: [u8; 8] = *b"HEQPLAN\0";
/// Version of the plan format; a reader refuses any other. Version 3 added
/// [`super::PublicPlan::epilogue`] and [`super::AvgPoolSpec::ceil_pads`], version 4
/// [`super::Rounding::HalfEvenWithin`], version 5 [`super::GlobalProtocol::ot_batch_rots`],
/// version 6 [`super::Layer::carry`], version 7 [`super::Rounding::Faithful`],
/// [`super::PrecisionRecord::faithful_seed`] and [`super::GlobalProtocol::chunk_rots`], version
/// 8 [`super::LinearProtocol::encoding`].
pub const PLAN_FORMAT_VERSION: u32 = 8;

const HEADER_LEN: usize = 8 + 4 + 32;

/// Encodes a plan into the bytes of a plan file.
///
/// # Errors
/// Fails only if postcard cannot encode the plan.
pub fn write_plan_bytes(plan: &Plan) -> Result<Vec<u8>, PlanError> {
    let body = postcard::to_stdvec(plan).map_err(|e| PlanError::Encode(e.to_string()))?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&PLAN_MAGIC);
    out.extend_from_slice(&PLAN_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(blake3::hash(&body).as_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes and validates the bytes of a plan file.
///
/// # Errors
/// A wrong magic, version or hash, a body that does not decode, or a plan that fails
/// [`super::validate`].
pub fn read_plan_bytes(bytes: &[u8]) -> Result<Plan, PlanError> {
    if bytes.len() < HEADER_LEN || bytes[..8] != PLAN_MAGIC {
        return Err(PlanError::NotAPlan);
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != PLAN_FORMAT_VERSION {
        return Err(PlanError::Version {
            found: version,
            expected: PLAN_FORMAT_VERSION,
        });
    }
    let body = &bytes[HEADER_LEN..];
    if blake3::hash(body).as_bytes()[..] != bytes[12..HEADER_LEN] {
        return Err(PlanError::Corrupt(
            "content hash mismatch (truncated or modified file)".into(),
        ));
    }
    let (plan, rest): (Plan, &[u8]) =
        postcard::take_from_bytes(body).map_err(|e| PlanError::Corrupt(e.to_string()))?;
    if !rest.is_empty() {
        return Err(PlanError::Corrupt(format!(
            "{} trailing bytes after the plan",
            rest.len()
        )));
    }
    super::validate(&plan)?;
    Ok(plan)
}

/// Writes a plan file atomically ([`crate::output_file::write_atomically`]).
///
/// # Errors
/// Encoding or I/O failures (the caller names the file).
pub fn write_plan(plan: &Plan, path: &Path) -> Result<(), PlanError> {
    let bytes = write_plan_bytes(plan)?;
    crate::output_file::write_atomically(path, &bytes).map_err(PlanError::Io)
}

/// Reads and validates a plan file.
///
/// # Errors
/// I/O failures and everything [`read_plan_bytes`] rejects (the caller names the file).
pub fn read_plan(path: &Path) -> Result<Plan, PlanError> {
    let bytes = std::fs::read(path).map_err(PlanError::Io)?;
    read_plan_bytes(&bytes)
}

impl PublicPlan {
    /// BLAKE3 hash of the public part: what both parties compare in the handshake.
    pub fn hash(&self) -> [u8; 32] {
        let bytes = postcard::to_stdvec(self).expect("postcard encodes plan data into a Vec");
        *blake3::hash(&bytes).as_bytes()
    }
}

impl Plan {
    /// The same plan without the server-only part, for the client.
    pub fn to_client(&self) -> Plan {
        Plan {
            public: self.public.clone(),
            weights: None,
        }
    }
}
