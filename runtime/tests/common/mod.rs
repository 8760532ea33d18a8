//! Plans shared by the two-party test suites.

use heq_runtime::plan::{Op, Plan};
use heq_runtime::reference::testutil::every_op_plan;

/// `every_op_plan` with tiles the default protocol can run (the testutil default is a 1×1×1
/// tile, which a 3×3 kernel cannot use): the whole padded input per ciphertext.
pub fn every_op_runnable() -> Plan {
    let mut plan = every_op_plan();
    for layer in &mut plan.public.layers {
        match &mut layer.op {
            Op::Conv(l) => {
                l.protocol.tile.c = l.shape.in_channels;
                l.protocol.tile.h = l.shape.in_hw[0] + l.shape.pads[0] + l.shape.pads[2];
                l.protocol.tile.w = l.shape.in_hw[1] + l.shape.pads[1] + l.shape.pads[3];
            }
            Op::MatMul(l) => {
                l.protocol.tile.c = l.shape.inner;
                l.protocol.tile.m = l.shape.cols;
            }
            Op::Affine(l) => {
                l.protocol.tile.c = l.shape.channels;
                l.protocol.tile.m = l.shape.channels;
                l.protocol.tile.h = l.shape.per_channel;
            }
            _ => {}
        }
    }
    plan
}
