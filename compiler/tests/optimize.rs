//! The optimizer on the fixture models: ILP against brute force, predicted bytes against the
//! Cheetah baseline layer by layer, unchanged reference outputs, and exactness of the ILP's
//! bytes against `plan_cost`.
#![allow(clippy::unwrap_used)]

mod common;

use heq_runtime::reference;
use heqc::optimize::{self, Net, Objective, baseline, exhaustive, ilp};
use ndarray::{Array4, Axis};
use ndarray_npy::read_npy;

fn baseline_plan(path: &std::path::Path) -> heq_runtime::plan::Plan {
    heqc::compile_path_with(path, heqc::Mode::Baseline)
        .unwrap()
        .plan
}

#[test]
fn optimized_fixtures_beat_the_baseline_on_every_layer() {
    for path in common::quantized_models() {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let base = baseline_plan(&path);
        assert_eq!(base.public.protocol.profile, "cheetah");
        let o = optimize::optimize(&base, Objective::Comm).unwrap();
        let b = optimize::predict(&base.public).unwrap();
        for (lo, lb) in o.cost.layers.iter().zip(&b.layers) {
            assert!(
                lo.traffic.total_bytes() <= lb.traffic.total_bytes(),
                "{stem} {}: {} > {}",
                lo.layer,
                lo.traffic.total_bytes(),
                lb.traffic.total_bytes()
            );
        }
        let (ot, bt) = (o.cost.channel().total_bytes(), b.channel().total_bytes());
        println!(
            "{stem}: baseline {bt} B, optimized {ot} B, ratio {:.2}, ILP {} vars / {} constraints, {:.1} ms",
            bt as f64 / ot as f64,
            o.stats.variables,
            o.stats.constraints,
            o.stats.time.as_secs_f64() * 1e3
        );
        assert!(ot < bt, "{stem}");
        assert_eq!(o.problem.bytes(&o.choice), ot);
    }
}
