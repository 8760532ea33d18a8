//! Exact bytes, ciphertext counts and rounds of the HE linear-layer protocols
//! (`protocols.md` §1.3–1.7, §3.5, §5.3–5.5), computed from their parameters: the noise budget
//! ([`crate::params::he`]) fixes the width of every ciphertext, the tiling
//! ([`crate::params::conv`]) how many there are and how many coefficients each response carries.
//!
//! The protocol in `crate::linear` builds its messages from the same parameters, and its tests
//! assert that they have exactly the sizes returned here.

use crate::params::conv::{ConvGeometry, affine_as_conv, matmul_as_conv};
use crate::params::he::{
    ConfigError, HeBudget, LinearOutput, galois_key_bytes, he_budget, layer_budget,
};
use crate::plan::{AffineShape, ConvShape, HeParams, LinearProtocol, MatMulShape};

/// Rounds of one linear layer: one query up, one response down.
pub const ROUNDS: u32 = 1;

/// Communication of one linear layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinearCost {
    /// Bytes client → server (the query).
    pub bytes_up: usize,
    /// Bytes server → client (the response).
    pub bytes_down: usize,
    /// Request ciphertexts.
    pub cts_up: usize,
    /// Response ciphertexts on the wire.
    pub cts_down: usize,
    /// Output sums the server sanitizes and switches (`cts_down` times the responses packed
    /// into one).
    pub sums: usize,
    /// Key switches of the response packing.
    pub key_switches: usize,
    /// `c0` coefficients revealed to the client (each flooded): the `n` of the per-layer
    /// statistical bound `n·2^(−stat_bits)` (`docs/security.md` §1.2).
    pub coeffs_down: usize,
    /// Round trips.
    pub rounds: u32,
}

impl LinearCost {
    /// Bytes in both directions.
    pub fn total_bytes(&self) -> usize {
        self.bytes_up + self.bytes_down
    }
}

/// Bytes of the client's public key for `he` (sent once per key and `(N, primes)`, shared by
/// every plaintext modulus; the server re-randomises responses with it).
///
/// # Errors
/// As [`he_budget`].
pub fn public_key_bytes(he: &HeParams) -> Result<usize, ConfigError> {
    Ok(he_budget(he, he.plain_bits)?.request_ct_bytes())
}

/// Bytes of the client's keys for one HE context: the public key and the Galois keys of
/// `galois` exponents (response packing).
///
/// # Errors
/// As [`he_budget`].
pub fn context_key_bytes(he: &HeParams, galois: usize) -> Result<usize, ConfigError> {
    let b0 = he.moduli_bits.first().copied().unwrap_or(0);
    Ok(public_key_bytes(he)? + galois * galois_key_bytes(he.degree, b0))
}

impl ConvGeometry {
    /// The exact communication of the layer with the noise budget `budget`.
    pub fn cost(&self, budget: &HeBudget) -> LinearCost {
        let per_slot: Vec<usize> = (0..self.n_sg)
            .map(|sg| self.positions_per_slot(sg))
            .collect();
        // Useful coefficients of each response, per block of packed filter groups (the slots
        // of its members summed); few distinct values.
        let n = self.members();
        let slots_of: Vec<usize> = (0..self.n_mg.div_ceil(n))
            .map(|b| {
                (b * n..((b + 1) * n).min(self.n_mg))
                    .map(|mg| self.slots(mg))
                    .sum()
            })
            .collect();
        let (slot_counts, position_counts) = (histogram(&slots_of), histogram(&per_slot));
        let bytes_down = slot_counts
            .iter()
            .flat_map(|&(a, ca)| {
                position_counts
                    .iter()
                    .map(move |&(p, cp)| ca * cp * budget.response_ct_bytes(a * p))
            })
            .sum();
        let slots: usize = slots_of.iter().sum();
        LinearCost {
            bytes_up: self.input_cts() * budget.request_ct_bytes(),
            bytes_down,
            cts_up: self.input_cts(),
            cts_down: self.response_cts(),
            sums: self.output_cts(),
            key_switches: self.key_switches(),
            coeffs_down: slots * per_slot.iter().sum::<usize>(),
            rounds: ROUNDS,
        }
    }
}

/// The distinct values of `v` with their counts.
fn histogram(v: &[usize]) -> Vec<(usize, usize)> {
    let mut sorted = v.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<(usize, usize)> = Vec::new();
    for x in sorted {
        match out.last_mut() {
            Some((y, c)) if *y == x => *c += 1,
            _ => out.push((x, 1)),
        }
    }
    out
}

/// Exact cost of a convolution (grouped and depthwise included).
///
/// # Errors
/// [`ConfigError`] when the configuration cannot run.
pub fn conv_cost(
    shape: &ConvShape,
    acc_bits: u32,
    proto: &LinearProtocol,
    output: LinearOutput,
) -> Result<LinearCost, ConfigError> {
    let budget = layer_budget(proto, acc_bits, output)?;
    Ok(ConvGeometry::new(shape, proto)?.cost(&budget))
}

/// Exact cost of a matrix product (FC when `rows = 1`).
///
/// # Errors
/// [`ConfigError`] when the configuration cannot run. The tile's `c` is the inner block, `h`
/// the row block, `m` the output block and `w` is 1.
pub fn matmul_cost(
    shape: &MatMulShape,
    acc_bits: u32,
    proto: &LinearProtocol,
    output: LinearOutput,
) -> Result<LinearCost, ConfigError> {
    conv_cost(&matmul_as_conv(shape), acc_bits, proto, output)
}

/// Exact cost of a per-channel affine map (stand-alone BatchNorm).
///
/// # Errors
/// [`ConfigError`] when the configuration cannot run.
pub fn affine_cost(
    shape: &AffineShape,
    acc_bits: u32,
    proto: &LinearProtocol,
    output: LinearOutput,
) -> Result<LinearCost, ConfigError> {
    conv_cost(&affine_as_conv(shape), acc_bits, proto, output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Tile;
    use crate::reference::testutil::default_protocol;

    #[test]
    fn resnet_conv_counts_match_reference_example() {
        // protocols.md §5.3: 64→64, 32×32, 3×3, pad 1, tile 3×34×34: 22 requests, 64 responses
        // with u = 1024.
        let shape = ConvShape {
            in_channels: 64,
            in_hw: [32, 32],
            out_channels: 64,
            kernel: [3, 3],
            stride: [1, 1],
            pads: [1; 4],
            groups: 1,
        };
        let p = LinearProtocol {
            tile: Tile {
                c: 3,
                h: 34,
                w: 34,
                m: 1,
            },
            ..default_protocol()
        };
        let cost = conv_cost(&shape, 20, &p, LinearOutput::Accumulator).expect("valid");
        assert_eq!(
            (cost.cts_up, cost.cts_down, cost.coeffs_down),
            (22, 64, 64 * 1024)
        );
        assert_eq!(cost.bytes_up, 22 * (4096 * 109 / 8 + 32));
        assert_eq!(cost.bytes_down, 64 * ((1024 * 39 + 4096 * 51) / 8));
    }

    #[test]
    fn fc_counts_match_cheetah_blocking() {
        // protocols.md §1.6: ⌈n_i/d1⌉ requests, ⌈n_o/d0⌉ responses with d0 useful coefficients.
        let shape = MatMulShape {
            rows: 1,
            inner: 2048,
            cols: 1000,
        };
        let p = LinearProtocol {
            tile: Tile {
                c: 512,
                h: 1,
                w: 1,
                m: 8,
            },
            ..default_protocol()
        };
        let b = layer_budget(&p, 20, LinearOutput::Accumulator).expect("valid");
        let cost = matmul_cost(&shape, 20, &p, LinearOutput::Accumulator).expect("valid");
        assert_eq!((cost.cts_up, cost.cts_down), (4, 125));
        assert_eq!(cost.bytes_down, 125 * b.response_ct_bytes(8));
    }
}
