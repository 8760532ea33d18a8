//! Predicted cost of one plan: communication each way (the party channel and the OT extension),
//! rounds, and latency under the LAN and WAN profiles, from the runtime's exact cost functions
//! (`heq_runtime::cost::plan`, through [`heqc::optimize::predict`]).

use heq_runtime::cost::compute::ComputeProfile;
use heq_runtime::plan::PublicPlan;
use heqc::optimize::{self, Net};
use serde::{Deserialize, Serialize};

/// How latency is estimated: what the `*_latency_s` numbers include.
pub const LATENCY_MODEL: &str = "compute (heq-run's shipped compute profile, \
     runtime/profiles/default.json) + (channel + OT extension bytes) · 8 / bandwidth + (channel \
     rounds + OT-extension round trips, one per batch and direction) · RTT";

/// A network profile, as recorded next to a latency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetProfile {
    /// `lan` or `wan`.
    pub name: String,
    /// Bandwidth in bits per second.
    pub bits_per_second: f64,
    /// Round-trip time in milliseconds.
    pub rtt_ms: f64,
}

impl NetProfile {
    /// The profile of heqc's `--net` value.
    pub fn of(net: Net) -> Self {
        NetProfile {
            name: net.to_string(),
            bits_per_second: net.network().bits_per_second,
            rtt_ms: net.network().rtt_ms,
        }
    }

    /// The profiles every result is priced under: LAN and WAN (Cheetah's settings).
    pub fn all() -> Vec<Self> {
        vec![Self::of(Net::Lan), Self::of(Net::Wan)]
    }

    /// Seconds to send `bytes` in `rounds` rounds.
    pub fn seconds(&self, bytes: u64, rounds: u64) -> f64 {
        bytes as f64 * 8.0 / self.bits_per_second + rounds as f64 * self.rtt_ms / 1e3
    }
}

/// Predicted cost of one inference with one plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Predicted {
    /// Party channel bytes client → server (keys, HE queries, nonlinear messages).
    pub channel_up: u64,
    /// Party channel bytes server → client (HE responses, nonlinear messages, reveal).
    pub channel_down: u64,
    /// Party channel rounds.
    pub rounds: u64,
    /// OT extension bytes client → server (its own connection).
    pub ot_up: u64,
    /// OT extension bytes server → client.
    pub ot_down: u64,
    /// Predicted compute seconds of both parties (the shipped compute profile).
    pub compute_s: f64,
    /// Seconds under the LAN profile ([`LATENCY_MODEL`]).
    pub lan_latency_s: f64,
    /// Seconds under the WAN profile ([`LATENCY_MODEL`]).
    pub wan_latency_s: f64,
}

impl Predicted {
    /// All bytes of one inference, both directions, channel and OT extension.
    pub fn total_bytes(&self) -> u64 {
        self.channel_up + self.channel_down + self.ot_up + self.ot_down
    }
}

/// Predicts the cost of running `plan`.
///
/// # Errors
/// heqc's error when the plan cannot be scheduled.
pub fn predict(plan: &PublicPlan) -> heqc::Result<Predicted> {
    let cost = optimize::predict(plan)?;
    let channel = cost.channel();
    let ot = cost.ot_extension;
    let bytes = channel.total_bytes() + ot.total_bytes();
    // The OT extension's round trips (one per batch and direction) happen between layers.
    let rounds = channel.rounds + ot.rounds;
    let compute_s = ComputeProfile::builtin()
        .layer_ms(plan, &cost)
        .iter()
        .sum::<f64>()
        / 1e3;
    Ok(Predicted {
        channel_up: channel.bytes_up,
        channel_down: channel.bytes_down,
        rounds: channel.rounds,
        ot_up: ot.bytes_up,
        ot_down: ot.bytes_down,
        compute_s,
        lan_latency_s: compute_s + NetProfile::of(Net::Lan).seconds(bytes, rounds),
        wan_latency_s: compute_s + NetProfile::of(Net::Wan).seconds(bytes, rounds),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wan_seconds() {
        let wan = NetProfile::of(Net::Wan);
        // 50 MB at 400 Mbps is 1 s; 10 rounds of 40 ms add 0.4 s.
        assert!((wan.seconds(50_000_000, 10) - 1.4).abs() < 1e-12);
    }
}
