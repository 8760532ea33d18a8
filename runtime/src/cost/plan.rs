//! Predicted communication of a whole plan, layer by layer, from its [`Schedule`]: the one
//! source of truth for `heqc explain` and for the runtime's measured-vs-predicted report.
//!
//! Message flow (what the party drivers put on the channel; every exchange is one round in
//! which both parties send one message, possibly empty):
//!
//! - setup: the client sends one public key per HE context ([`Schedule::keys`]), one round;
//! - a linear layer: the query (client → server), then the response (server → client), two
//!   rounds, then the requantization's rounds if any ([`crate::cost::linear`],
//!   [`crate::cost::nonlinear`]);
//! - `Rescale`, `Add`, `AvgPool`, `MaxPool`: their nonlinear protocol's rounds;
//! - reveal: the server sends its output share, `⌈n·r/8⌉` bytes for `n` outputs in a `r`-bit
//!   ring, one round.
//!
//! The random OTs of the whole inference are produced up front by the OT extension, which runs
//! on its own connection; its traffic is [`PlanCost::ot_extension`].

use crate::cost::linear::{ConfigError, LinearCost, public_key_bytes};
use crate::cost::nonlinear::{Cost, ot_extension_bytes};
use crate::plan::{LayerId, OtBackend, PublicPlan};
use crate::schedule::{Schedule, StepKind};

/// Bytes each way and rounds of one part of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Traffic {
    /// Payload bytes client → server.
    pub bytes_up: u64,
    /// Payload bytes server → client.
    pub bytes_down: u64,
    /// Rounds (exchanges of one message each way).
    pub rounds: u64,
}

impl Traffic {
    /// Bytes in both directions.
    pub fn total_bytes(&self) -> u64 {
        self.bytes_up + self.bytes_down
    }

    /// The traffic of a nonlinear protocol run.
    pub fn of(cost: &Cost) -> Self {
        Traffic {
            bytes_up: cost.client_bytes,
            bytes_down: cost.server_bytes,
            rounds: cost.rounds,
        }
    }
}

impl std::ops::Add for Traffic {
    type Output = Traffic;
    fn add(self, o: Traffic) -> Traffic {
        Traffic {
            bytes_up: self.bytes_up + o.bytes_up,
            bytes_down: self.bytes_down + o.bytes_down,
            rounds: self.rounds + o.rounds,
        }
    }
}

/// Predicted cost of one layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerCost {
    /// The layer.
    pub layer: LayerId,
    /// Channel traffic of the layer (HE and nonlinear together).
    pub traffic: Traffic,
    /// The HE part of a linear layer.
    pub he: Option<LinearCost>,
    /// The nonlinear part (with its ROT counts).
    pub nonlinear: Cost,
}

/// Predicted cost of one inference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanCost {
    /// Public keys (once per run).
    pub setup: Traffic,
    /// Per layer, in plan order.
    pub layers: Vec<LayerCost>,
    /// The server's output share to the client.
    pub reveal: Traffic,
    /// ROTs with the server as OT sender, for the whole inference.
    pub server_rots: u64,
    /// ROTs with the client as OT sender.
    pub client_rots: u64,
    /// Traffic of the OT extension producing those ROTs in one batch per direction (on its own
    /// connection; `rounds` is not counted).
    pub ot_extension: Traffic,
}

impl PlanCost {
    /// Channel traffic of the whole run: setup, layers and reveal (OT extension excluded).
    pub fn channel(&self) -> Traffic {
        self.layers
            .iter()
            .fold(self.setup + self.reveal, |t, l| t + l.traffic)
    }
}

/// Rounds of the HE part of a linear layer: the query, then the response.
pub const LINEAR_ROUNDS: u64 = 2;

/// The predicted cost of running `plan` as scheduled by `schedule` with the OT `backend`.
///
/// # Errors
/// [`ConfigError`] if an HE context has invalid parameters (a scheduled plan has none).
pub fn plan_cost(
    plan: &PublicPlan,
    schedule: &Schedule,
    backend: OtBackend,
) -> Result<PlanCost, ConfigError> {
    let mut setup = Traffic::default();
    for he in &schedule.keys {
        setup.bytes_up += public_key_bytes(he)? as u64;
    }
    if !schedule.keys.is_empty() {
        setup.rounds = 1;
    }
    let layers: Vec<LayerCost> = schedule
        .steps
        .iter()
        .map(|step| {
            let nonlinear = step.nonlinear_cost(plan);
            let he = match &step.kind {
                StepKind::Linear { he, .. } => Some(*he),
                _ => None,
            };
            let he_traffic = he.map_or(Traffic::default(), |h| Traffic {
                bytes_up: h.bytes_up as u64,
                bytes_down: h.bytes_down as u64,
                rounds: LINEAR_ROUNDS,
            });
            LayerCost {
                layer: step.layer,
                traffic: he_traffic + Traffic::of(&nonlinear),
                he,
                nonlinear,
            }
        })
        .collect();
    let out = plan.output.tensor.0 as usize;
    let n = plan.tensors.get(out).map_or(0, |t| t.len() as u64);
    let ring = u64::from(schedule.rings.get(out).copied().unwrap_or(0));
    let reveal = Traffic {
        bytes_up: 0,
        bytes_down: (n * ring).div_ceil(8),
        rounds: 1,
    };
    let server_rots = layers.iter().map(|l| l.nonlinear.server_rots).sum();
    let client_rots = layers.iter().map(|l| l.nonlinear.client_rots).sum();
    // (OT sender's bytes, receiver's bytes) per direction.
    let s2c = ot_extension_bytes(backend, server_rots, true);
    let c2s = ot_extension_bytes(backend, client_rots, true);
    Ok(PlanCost {
        setup,
        layers,
        reveal,
        server_rots,
        client_rots,
        ot_extension: Traffic {
            bytes_up: s2c.1 + c2s.0,
            bytes_down: s2c.0 + c2s.1,
            rounds: 0,
        },
    })
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]
mod tests {
    use super::*;
    use crate::cost::linear::{LinearOutput, matmul_cost};
    use crate::plan::{MatMulShape, Op, PublicRequant, Rounding};
    use crate::reference::testutil::{PlanBuilder, linear, weights};
    use crate::schedule::schedule;

    #[test]
    fn plan_cost_adds_keys_layers_and_reveal() {
        let shape = MatMulShape {
            rows: 1,
            inner: 4,
            cols: 2,
        };
        let mut l = linear(shape.clone(), 8, None);
        l.protocol.tile.c = 4;
        l.protocol.tile.m = 2;
        let he = matmul_cost(&shape, 8, &l.protocol, LinearOutput::Accumulator).unwrap();
        let proto = l.protocol.clone();
        let mut b = PlanBuilder::new(&[1, 4], (-8, 8));
        let t1 = b.linear(
            Op::MatMul(l),
            b.input(),
            weights(&[1; 8], &[0, 0]),
            &[1, 2],
            (-127, 127),
        );
        let rescale = Op::Rescale(PublicRequant {
            multipliers: vec![1],
            shift: 2,
            clamp: (-16, 15),
            rounding: Rounding::NoTies,
        });
        let t2 = b.layer(rescale, &[t1], &[1, 2], (-16, 15));
        let plan = b.build(t2).unwrap();
        let s = schedule(&plan.public).unwrap();
        let c = plan_cost(&plan.public, &s, OtBackend::Silent).unwrap();
        let key = public_key_bytes(&proto.he).unwrap() as u64;
        assert_eq!(
            c.setup,
            Traffic {
                bytes_up: key,
                bytes_down: 0,
                rounds: 1
            }
        );
        assert_eq!(
            c.layers[0].traffic,
            Traffic {
                bytes_up: he.bytes_up as u64,
                bytes_down: he.bytes_down as u64,
                rounds: LINEAR_ROUNDS
            }
        );
        let rescale = s.steps[1].nonlinear_cost(&plan.public);
        assert_eq!(c.layers[1].traffic, Traffic::of(&rescale));
        assert_eq!(
            (c.server_rots, c.client_rots),
            (rescale.server_rots, rescale.client_rots)
        );
        // Two outputs in a 5-bit ring: 10 bits.
        assert_eq!(
            c.reveal,
            Traffic {
                bytes_up: 0,
                bytes_down: 2,
                rounds: 1
            }
        );
        assert_eq!(
            c.channel().total_bytes(),
            key + he.total_bytes() as u64 + rescale.total_bytes() + 2
        );
    }
}
