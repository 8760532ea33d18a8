//! The Cheetah baseline (`--baseline cheetah`, `protocols.md` §1.2, §1.4): `N = 4096`, primes of
//! 60 and 49 bits, `t = 2^37` and share rings of 37 bits everywhere, no packing, OpenCheetah's
//! tiling heuristic, except where the server's flooding check (the plan's statistical slack)
//! fails with its tile: there the cheapest tile at the same parameters that passes. A normal
//! plan the runtime can run.

use super::candidates::runnable_tile;
use crate::lower::{affine_tile, conv_tile, matmul_tile};
use heq_runtime::plan::{HeParams, LinearProtocol, Op, Packing, Plan, Tile};

/// Ring degree of the baseline.
pub const DEGREE: usize = 4096;
/// Ciphertext primes of the baseline.
pub const MODULI_BITS: [u32; 2] = [60, 49];
/// Plaintext and share ring width of the baseline.
pub const RING_BITS: u32 = 37;

/// The baseline protocol with `tile`.
pub fn protocol(tile: Tile) -> LinearProtocol {
    LinearProtocol {
        he: HeParams {
            degree: DEGREE,
            moduli_bits: MODULI_BITS.to_vec(),
            plain_bits: RING_BITS,
        },
        tile,
        packing: Packing::none(),
        in_ring_bits: RING_BITS,
        out_ring_bits: RING_BITS,
    }
}

/// The baseline protocol of a linear op (`None` for other ops).
pub fn layer_protocol(op: &Op) -> Option<LinearProtocol> {
    Some(protocol(match op {
        Op::Conv(l) => conv_tile(&l.shape, DEGREE),
        Op::MatMul(l) => matmul_tile(&l.shape, DEGREE),
        Op::Affine(l) => affine_tile(&l.shape, DEGREE),
        _ => return None,
    }))
}

/// `plan` with every linear layer on the baseline protocol (profile `"cheetah"`); with the
/// weights of a server plan, tiles whose flooding fails are replaced as the module says.
pub fn cheetah(plan: &Plan) -> Plan {
    let stat_bits = plan.public.protocol.stat_bits;
    let protocols: Vec<LinearProtocol> = plan
        .public
        .layers
        .iter()
        .filter_map(|l| {
            let proto = layer_protocol(&l.op)?;
            let weights = plan.weights.as_ref().and_then(|w| w.get(l.id));
            Some(
                weights
                    .and_then(|w| runnable_tile(&l.op, w, &proto, stat_bits))
                    .unwrap_or(proto),
            )
        })
        .collect();
    super::with_protocols(plan, &protocols, "cheetah")
}
