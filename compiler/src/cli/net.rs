//! The network and compute profile of latency predictions, shared by `compile` and `explain`.

use anyhow::{Context, bail};
use heq_runtime::cost::compute::ComputeProfile;
use heqc::optimize::Net;
use std::path::PathBuf;

/// Network profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NetArg {
    /// 3 Gbps, 0.3 ms RTT.
    Lan,
    /// 400 Mbps, 40 ms RTT.
    Wan,
    /// `--bandwidth` and `--rtt`.
    Custom,
}

/// Network and compute profile of the latency predictions.
#[derive(Debug, clap::Args)]
pub struct NetArgs {
    /// Network of the latency objective and of the predicted times.
    #[arg(long, value_enum, default_value = "lan")]
    pub net: NetArg,
    /// Bandwidth of `--net custom`, in megabits per second.
    #[arg(long, value_name = "MBPS", requires = "rtt")]
    pub bandwidth: Option<f64>,
    /// Round-trip time of `--net custom`, in milliseconds.
    #[arg(long, value_name = "MS", requires = "bandwidth")]
    pub rtt: Option<f64>,
    /// Compute profile written by `heq-run calibrate` (default: the shipped one).
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
}

impl NetArgs {
    /// The network these arguments describe.
    ///
    /// # Errors
    /// `--net custom` without a positive `--bandwidth` and a non-negative `--rtt`, or those
    /// flags with another network.
    pub fn net(&self) -> anyhow::Result<Net> {
        match (self.net, self.bandwidth, self.rtt) {
            (NetArg::Lan, None, None) => Ok(Net::Lan),
            (NetArg::Wan, None, None) => Ok(Net::Wan),
            (NetArg::Custom, Some(b), Some(r))
                if b > 0.0 && b.is_finite() && r >= 0.0 && r.is_finite() =>
            {
                Ok(Net::custom(b, r))
            }
            (NetArg::Custom, Some(_), Some(_)) => {
                bail!("--bandwidth must be positive and --rtt non-negative")
            }
            (NetArg::Custom, _, _) => bail!("--net custom needs --bandwidth and --rtt"),
            _ => bail!("--bandwidth and --rtt go with --net custom"),
        }
    }

    /// The compute profile: the file given, or the shipped one.
    ///
    /// # Errors
    /// An unreadable or invalid profile file.
    pub fn profile(&self) -> anyhow::Result<ComputeProfile> {
        match &self.profile {
            None => Ok(ComputeProfile::builtin()),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the profile {}", path.display()))?;
                ComputeProfile::from_json(&text)
                    .with_context(|| format!("profile {}", path.display()))
            }
        }
    }
}
