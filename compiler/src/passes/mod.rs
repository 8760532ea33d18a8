//! Passes over the layer graph, run by a [`PassManager`] that verifies the IR after each pass
//! and records its time.

mod compress_requant;
mod drop_identity;
mod infer_ranges;
mod prove_no_ties;

pub use compress_requant::CompressRequant;
pub use drop_identity::DropIdentity;
pub use infer_ranges::InferRanges;
pub use prove_no_ties::ProveNoTies;

use crate::error::{Error, Result};
use crate::ir::{LayerGraph, verify};
use std::time::{Duration, Instant};

/// A transformation or analysis of the layer graph.
pub trait Pass {
    /// File stem of the pass; used in logs, timings and errors.
    fn name(&self) -> &'static str;
    /// Runs the pass; `true` if the graph changed.
    ///
    /// # Errors
    /// When the graph cannot be transformed.
    fn run(&mut self, g: &mut LayerGraph) -> Result<bool>;
}

/// Runs passes in order, verifying after each one.
#[derive(Default)]
pub struct PassManager {
    passes: Vec<Box<dyn Pass>>,
    /// Name and wall time of every pass run so far.
    pub timings: Vec<(&'static str, Duration)>,
}

impl PassManager {
    /// The standard pipeline: ranges, identity removal, ranges again, tie analysis.
    pub fn standard() -> Self {
        let mut pm = PassManager::default();
        pm.add(InferRanges);
        pm.add(DropIdentity);
        pm.add(InferRanges);
        pm.add(ProveNoTies);
        pm
    }

    /// Requantization compression ([`CompressRequant`]) on a graph the standard pipeline has
    /// analysed, after any change of bit widths.
    pub fn compression() -> Self {
        let mut pm = PassManager::default();
        pm.add(CompressRequant);
        pm
    }

    /// Appends a pass.
    pub fn add(&mut self, p: impl Pass + 'static) {
        self.passes.push(Box::new(p));
    }

    /// Verifies the input, then runs and verifies every pass.
    ///
    /// # Errors
    /// [`Error::Invariant`] when the IR breaks an invariant, or a pass's own error.
    pub fn run(&mut self, g: &mut LayerGraph) -> Result<()> {
        check(g, "frontend")?;
        for p in &mut self.passes {
            let start = Instant::now();
            let changed = p.run(g)?;
            self.timings.push((p.name(), start.elapsed()));
            tracing::debug!(pass = p.name(), changed, "pass done");
            check(g, p.name())?;
        }
        Ok(())
    }
}

fn check(g: &LayerGraph, pass: &'static str) -> Result<()> {
    let violations = verify::verify(g);
    if violations.is_empty() {
        Ok(())
    } else {
        Err(Error::Invariant { pass, violations })
    }
}
