//! The optimizer on the fixture models: ILP against brute force, predicted bytes against the
//! Cheetah baseline (every layer, HE part and nonlinear steps, and the total), unchanged
//! reference outputs, and exactness of the ILP's bytes against `plan_cost`.
#![allow(clippy::unwrap_used)]

mod common;

use heq_runtime::cost::plan::PlanCost;
use heq_runtime::reference;
use heqc::optimize::{self, Net, Objective, baseline, exhaustive, ilp};
use ndarray::{Array4, Axis};
use ndarray_npy::read_npy;

fn baseline_plan(path: &std::path::Path) -> heq_runtime::plan::Plan {
    heqc::compile_path_with(path, heqc::Strategy::Baseline)
        .unwrap()
        .selection
        .plan
}

/// Every layer of `o` costs at most the baseline's same layer, HE part and nonlinear steps.
fn assert_dominates(name: &str, o: &PlanCost, b: &PlanCost) {
    for (lo, lb) in o.layers.iter().zip(&b.layers) {
        assert!(
            lo.traffic.total_bytes() <= lb.traffic.total_bytes(),
            "{name} {}: {} > {} bytes",
            lo.layer,
            lo.traffic.total_bytes(),
            lb.traffic.total_bytes()
        );
    }
}

#[test]
fn optimized_fixtures_beat_the_baseline_on_every_layer_and_in_total() {
    for path in common::quantized_models() {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let base = baseline_plan(&path);
        assert_eq!(base.public.protocol.profile, "cheetah");
        let o = optimize::optimize(&base, Objective::Comm).unwrap();
        let b = optimize::predict(&base.public).unwrap();
        assert_dominates(&stem, &o.cost, &b);
        let (ot, bt) = (o.cost.channel().total_bytes(), b.channel().total_bytes());
        println!(
            "{stem}: baseline {bt} B, optimized {ot} B, ratio {:.2}, ILP {} vars / {} constraints, {:.1} ms",
            bt as f64 / ot as f64,
            o.solution.stats.variables,
            o.solution.stats.constraints,
            o.solution.stats.time.as_secs_f64() * 1e3
        );
        assert!(ot < bt, "{stem}");
        assert_eq!(o.solution.problem.bytes(&o.solution.choice), ot);
    }
}

/// The latency objective's value of the chosen plan is its predicted time (what `heqc explain`
/// reports): per layer the longer of its driver's compute (HE operations, then every nonlinear
/// step's ROTs, also the unpacking of packed words) and the OT extension producing those ROTs,
/// plus the channel's bytes and rounds on the network; only the OT
/// extension's traffic, which runs beside the channel, is not in the objective. The objective
/// prices the ROTs at the speed of the plan's batch size, the prediction at that of each
/// actual batch: they agree where the speed does not depend on the size (a profile without
/// per-size speeds).
#[test]
fn latency_objective_is_the_predicted_time() {
    let mut profile = heq_runtime::cost::compute::ComputeProfile::builtin();
    profile.silent_ns_per_rot_by_batch.clear();
    for name in ["mpdw_qdq_u8s8", "cnn_avg_qcdq_w4a4"] {
        let base = baseline_plan(&common::models_dir().join(format!("{name}.onnx")));
        for net in [Net::Lan, Net::Wan] {
            let o = optimize::optimize_with(&base, Objective::Latency(net), &profile).unwrap();
            let compute: f64 = profile.layer_ms(&o.plan.public, &o.cost).iter().sum();
            assert!(o.cost.server_rots + o.cost.client_rots > 0, "{name}");
            let channel = o.cost.channel();
            let time = compute
                + net
                    .network()
                    .transfer_ms(channel.total_bytes(), channel.rounds);
            let value = o.solution.problem.value(&o.solution.choice);
            assert!(
                (value - time).abs() <= 1e-9 * time,
                "{name} {net}: objective {value} ms, predicted {time} ms"
            );
        }
    }
}

/// A small sub-problem of a fixture: the first `layers` layers, `per_layer` candidates each,
/// spread over the candidate list (hence over HE contexts).
fn small(p: &optimize::Problem, layers: usize, per_layer: usize) -> optimize::Problem {
    let mut p = p.clone();
    p.layers.truncate(layers);
    for l in &mut p.layers {
        let n = l.candidates.len();
        let picked: Vec<_> = (0..per_layer.min(n))
            .map(|i| l.candidates[i * n / per_layer.min(n)].clone())
            .collect();
        l.candidates = picked;
    }
    p
}

#[test]
fn ilp_equals_brute_force_on_small_problems() {
    let mut checked = 0;
    for name in [
        "tiny_qcdq_w2",
        "cnn_avg_qdq_u8s8",
        "mpdw_qdq_w4",
        "resnet_qdq_u8s8",
    ] {
        let base = baseline_plan(&common::models_dir().join(format!("{name}.onnx")));
        for objective in [
            Objective::Comm,
            Objective::Latency(Net::Lan),
            Objective::Latency(Net::Wan),
        ] {
            let full = optimize::problem(&base, objective).unwrap();
            for per_layer in [3, 6] {
                let p = small(&full, 4, per_layer);
                let (choice, _) = ilp::solve(&p).unwrap();
                let brute = exhaustive::solve(&p, 1 << 20).unwrap();
                let (a, b) = (p.value(&choice), p.value(&brute));
                assert!(
                    (a - b).abs() <= 1e-9 * b.abs(),
                    "{name} {objective:?} {per_layer}: ILP {a} vs brute force {b}"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 24);
}

/// On plans with few linear layers every combination of ring options is tried (each with the
/// ILP's optimum over the HE candidates): never worse than the coordinate descent, and better
/// on `mpdw_qdq_u8s8`.
#[test]
fn exhaustive_ring_search_is_at_least_as_good_as_the_descent() {
    for name in ["tiny_qcdq_w2", "cnn_avg_qdq_u8s8", "mpdw_qdq_u8s8"] {
        let base = baseline_plan(&common::models_dir().join(format!("{name}.onnx")));
        let value = |limit| {
            let p = optimize::problem_with(
                &base,
                Objective::Comm,
                &heq_runtime::cost::compute::ComputeProfile::builtin(),
                limit,
            )
            .unwrap();
            let (choice, _) = ilp::solve(&p).unwrap();
            p.value(&choice)
        };
        let (exact, descent) = (value(1 << 16), value(0));
        assert!(exact <= descent, "{name}: {exact} > {descent}");
        if name == "mpdw_qdq_u8s8" {
            assert!(exact < descent, "{name}");
        }
    }
}

#[test]
fn optimized_plans_compute_the_same_outputs() {
    let x: Array4<f32> = read_npy(common::models_dir().join("inputs/digits_test_x.npy")).unwrap();
    for path in common::quantized_models() {
        let base = baseline_plan(&path);
        let opt = heqc::compile_path(&path).unwrap().selection.plan;
        assert_eq!(opt.public.protocol.profile, "optimized");
        assert_ne!(opt.public.layers, base.public.layers);
        for sample in x.axis_iter(Axis(0)).take(4) {
            let flat: Vec<f32> = sample.iter().copied().collect();
            let input = reference::quantize_input(&base.public, &flat);
            assert_eq!(
                reference::run(&opt, &input).unwrap(),
                reference::run(&base, &input).unwrap(),
                "{}",
                path.display()
            );
        }
    }
}

#[test]
fn baseline_mode_is_the_cheetah_protocol() {
    let path = common::models_dir().join("resnet_qdq_u8s8.onnx");
    let base = baseline_plan(&path);
    assert_eq!(baseline::cheetah(&base), base);
    // The baseline keeps the literal requantizations: so must the optimized plan it matches.
    let mut options = heqc::CompileOptions::new(heqc::Strategy::default());
    options.compress_requant = false;
    let opt = heqc::compile_path_opts(&path, &options)
        .unwrap()
        .selection
        .plan;
    assert_eq!(baseline::cheetah(&opt), base);
}

/// Compiles a zoo model with the optimizer; checks every layer against the baseline and the
/// ILP's bytes against `plan_cost`; returns the numbers of linear layers with HEQuant packing
/// and with packed responses.
fn zoo(arch: heq_bench::zoo::Arch, precision: heq_bench::zoo::Precision) -> (usize, usize) {
    let model = heq_bench::zoo::build(arch, precision, 1);
    let start = std::time::Instant::now();
    let c = heqc::compile_proto(&model, "zoo").unwrap();
    let elapsed = start.elapsed();
    let s = c.selection;
    let o = s.solution.unwrap();
    let base = s.baseline.unwrap().cost;
    let (ot, bt) = (s.cost.channel().total_bytes(), base.channel().total_bytes());
    println!(
        "{arch:?} {precision:?}: baseline {bt} B, optimized {ot} B, ratio {:.2}; ILP {} vars / {} \
         constraints in {:.1} ms; search {:.1} ms; compile {:.1} s",
        bt as f64 / ot as f64,
        o.stats.variables,
        o.stats.constraints,
        o.stats.time.as_secs_f64() * 1e3,
        o.search_time.as_secs_f64() * 1e3,
        elapsed.as_secs_f64()
    );
    assert_dominates(&format!("{arch:?} {precision:?}"), &s.cost, &base);
    assert_eq!(o.problem.bytes(&o.choice), ot);
    assert!(ot < bt);
    let protocols: Vec<_> = s
        .plan
        .public
        .layers
        .iter()
        .filter_map(|l| heq_runtime::schedule::linear_protocol(&l.op))
        .collect();
    let count = |f: &dyn Fn(&heq_runtime::plan::LinearProtocol) -> bool| {
        protocols.iter().filter(|(p, _)| f(p)).count()
    };
    (
        count(&|p| p.packing.factor > 1),
        count(&|p| p.encoding.members() > 1),
    )
}

#[test]
fn resnet18_cifar_compiles_with_the_optimizer() {
    use heq_bench::zoo::{Arch, Precision};
    for p in [Precision::W8A8, Precision::W4A4] {
        zoo(Arch::ResNet18Cifar, p);
    }
}

#[test]
fn resnet50_compiles_with_the_optimizer() {
    use heq_bench::zoo::{Arch, Precision};
    zoo(Arch::ResNet50, Precision::W8A8);
    // Response packing pays off on ResNet-50's many filters, its Galois keys shared by the
    // layers of a context.
    let (_, packed) = zoo(Arch::ResNet50, Precision::W4A4);
    assert!(packed > 0);
}

/// The OT batch size is priced: communication takes the fewest OT-extension bytes (one batch,
/// and of the sizes that give it the smallest); latency takes a small batch where the encoder is
/// much faster there and round trips are cheap, and one batch where round trips are dear.
#[test]
fn the_ot_batch_size_follows_the_objective() {
    use heq_runtime::cost::compute::{ComputeProfile, OtRate};
    use heq_runtime::cost::plan::OT_BATCH_CHOICES;
    let plan = baseline_plan(&common::models_dir().join("cnn_avg_qdq_u8s8.onnx"));
    let mut profile = ComputeProfile::builtin();
    profile.silent_ns_per_rot_by_batch = vec![
        OtRate {
            batch_rots: 1 << 16,
            ns_per_rot: 50.0,
        },
        OtRate {
            batch_rots: 1 << 22,
            ns_per_rot: 500.0,
        },
    ];
    let chosen = |objective| {
        let mut public = plan.public.clone();
        let cost = heqc::select::choose_ot_batch(&mut public, objective, &profile).unwrap();
        assert_eq!(cost, optimize::predict(&public).unwrap());
        // Its ~2^17.5 ROTs per direction need at least three batches of 2^16.
        (public.protocol.ot_batch_rots, cost.ot_batches.len())
    };
    assert_eq!(OT_BATCH_CHOICES[..2], [1 << 16, 1 << 18]);
    assert_eq!(chosen(Objective::Comm), (1 << 18, 1));
    let (rots, batches) = chosen(Objective::Latency(Net::custom(3000.0, 0.3)));
    assert_eq!(rots, 1 << 16);
    assert!(batches >= 3, "{batches}");
    assert_eq!(chosen(Objective::Latency(Net::custom(100.0, 500.0))).1, 1);
}

/// The chunk bound is priced: with small OT batches (2^12 ROTs, default chunks of 2^16) the
/// model's layers run in several chunks; communication and a network whose round trips cost
/// next to nothing keep the default chunks (least memory), a high round-trip time takes the
/// smallest larger chunk within 1 % of the best value, with fewer rounds and a cost equal to
/// the plan's prediction.
#[test]
fn the_chunk_bound_follows_the_objective() {
    use heq_runtime::cost::plan::{MAX_CHUNK_ROTS, default_chunk_rots};
    use heqc::select::{CHUNK_VALUE_TOLERANCE, choose_chunk_rots, chunk_choices};
    let mut plan = baseline_plan(&common::models_dir().join("cnn_avg_qdq_u8s8.onnx"));
    plan.public.protocol.ot_batch_rots = 1 << 12;
    plan.public.protocol.chunk_rots = default_chunk_rots(1 << 12);
    assert_eq!(plan.public.protocol.chunk_rots, 1 << 16);
    assert_eq!(
        chunk_choices(1 << 12),
        (16..=24).map(|k| 1u64 << k).collect::<Vec<_>>()
    );
    assert_eq!(chunk_choices(1 << 22), vec![1 << 22, 1 << 23, 1 << 24]);
    assert_eq!(chunk_choices(MAX_CHUNK_ROTS), vec![MAX_CHUNK_ROTS]);
    let profile = heq_runtime::cost::compute::ComputeProfile::builtin();
    let chosen = |objective| {
        let mut public = plan.public.clone();
        let cost = choose_chunk_rots(&mut public, objective, &profile).unwrap();
        assert_eq!(cost, optimize::predict(&public).unwrap());
        assert_eq!(public.protocol.ot_batch_rots, 1 << 12);
        (public.protocol.chunk_rots, cost)
    };
    let default = optimize::predict(&plan.public).unwrap();
    assert!(
        default
            .layers
            .iter()
            .any(|l| l.stages.iter().any(|s| s.chunks() > 1)),
        "the default chunks split some layer"
    );
    assert_eq!(chosen(Objective::Comm).0, 1 << 16);
    assert_eq!(
        chosen(Objective::Latency(Net::custom(3000.0, 1e-6))).0,
        1 << 16
    );
    let wan = Net::custom(100.0, 500.0);
    let (chunk, cost) = chosen(Objective::Latency(wan));
    assert!(chunk > 1 << 16, "{chunk}");
    assert!(cost.channel().rounds < default.channel().rounds);
    // Within the tolerance of the largest chunks, and the smallest such.
    let value = |chunk: u64| {
        let mut public = plan.public.clone();
        public.protocol.chunk_rots = chunk;
        let c = optimize::predict(&public).unwrap();
        let t = c.ot_extension + c.channel();
        let ms: f64 = profile.layer_ms(&public, &c).iter().sum();
        Objective::Latency(wan).value(t.total_bytes(), t.rounds, ms)
    };
    let best = value(MAX_CHUNK_ROTS);
    assert!(value(chunk) <= best * (1.0 + CHUNK_VALUE_TOLERANCE));
    assert!(value(chunk / 2) > best * (1.0 + CHUNK_VALUE_TOLERANCE));
}

/// Carry depths follow the objective: communication keeps every ripple chain; latency on the
/// WAN takes log-depth trees, with far fewer rounds in total, and no layer's objective value
/// above the same plan's with ripple chains (each layer took the better depth).
#[test]
fn carry_depths_follow_the_objective() {
    use heq_runtime::plan::CarryDepth;
    let path = common::models_dir().join("resnet_qdq_w4.onnx");
    let profile = heq_runtime::cost::compute::ComputeProfile::builtin();
    let compiled = |objective| {
        heqc::compile_path_with(&path, heqc::Strategy::Optimized(objective))
            .unwrap()
            .selection
    };
    let comm = compiled(Objective::Comm);
    assert!(
        comm.plan
            .public
            .layers
            .iter()
            .all(|l| l.carry == CarryDepth::Ripple)
    );
    let wan = Objective::Latency(Net::Wan);
    let s = compiled(wan);
    let trees = s.plan.public.layers.iter();
    let trees = trees.filter(|l| l.carry == CarryDepth::Tree).count();
    let computing = s.plan.public.layers.iter();
    let computing = computing.filter(|l| l.op.computes_carries()).count();
    assert_eq!(
        trees, computing,
        "every layer with carries takes a tree on the WAN"
    );
    let mut ripple = s.plan.public.clone();
    for l in &mut ripple.layers {
        l.carry = CarryDepth::Ripple;
    }
    let chains = optimize::predict(&ripple).unwrap();
    let (rounds, chain_rounds) = (s.cost.channel().rounds, chains.channel().rounds);
    assert!(
        2 * rounds < chain_rounds,
        "{rounds} rounds with trees, {chain_rounds} with chains"
    );
    let (t_ms, r_ms) = (
        profile.layer_ms(&s.plan.public, &s.cost),
        profile.layer_ms(&ripple, &chains),
    );
    for (i, (t, r)) in s.cost.layers.iter().zip(&chains.layers).enumerate() {
        let value = |c: &heq_runtime::cost::plan::LayerCost, ms: f64| {
            wan.value(c.traffic.total_bytes(), c.traffic.rounds, ms)
        };
        assert!(value(t, t_ms[i]) <= value(r, r_ms[i]), "layer {}", t.layer);
    }
}
