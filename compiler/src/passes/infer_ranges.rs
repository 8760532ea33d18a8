//! `InferRanges`: writes tensor ranges and accumulator widths from [`crate::analysis::ranges`].

use super::Pass;
use crate::error::Result;
use crate::ir::LayerGraph;

/// Range analysis as a pass.
pub struct InferRanges;

impl Pass for InferRanges {
    fn name(&self) -> &'static str {
        "infer_ranges"
    }

    fn run(&mut self, g: &mut LayerGraph) -> Result<bool> {
        let before: Vec<_> = g.tensors().iter().map(|t| t.range).collect();
        crate::analysis::ranges::infer(g);
        Ok(g.tensors().iter().map(|t| t.range).ne(before))
    }
}
