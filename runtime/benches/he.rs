//! HE linear-layer benchmark: per-ciphertext operation times, then whole-layer time and bytes
//! for ResNet-50 convolutions in Cheetah's configuration (N = 4096, ℓ = 37, q = 60 + 49 bits)
//! and in low-bit configurations (ℓ = 16 unpacked; two 2-field spatially packed words).
//!
//! Guards: the per-op costs the compiler's latency model uses, and the bytes of the Cheetah
//! configuration against the formulas of `protocols.md` §5.3. Run with
//! `cargo bench -p heq-runtime --bench he` (one iteration per layer: a whole layer takes
//! seconds on two cores).

use std::sync::Arc;
use std::time::Instant;

use heq_runtime::cost::linear::conv_cost;
use heq_runtime::he::{Accumulator, InputCt, Kernel, Params, PublicKey, SecretKey};
use heq_runtime::linear::{Layout, LinearClient, LinearServer, ServerKeys};
use heq_runtime::params::conv::ConvGeometry;
use heq_runtime::params::he::{LinearOutput, he_budget};
use heq_runtime::plan::{
    ConvShape, Encoding, HeParams, IntType, LayerWeights, LinearLayer, LinearProtocol, PackDim,
    Packing, Tile,
};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

const STAT_BITS: u32 = 40;

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

fn per_ct_ops(rng: &mut ChaCha20Rng) {
    println!("## Per-ciphertext operations (mean of 20, one thread)\n");
    println!(
        "| N | q bits | t | encrypt | absorb (+share, NTT) | ct×pt | re-randomise + flood (N/4 coeffs) | mod switch + drop | decrypt |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (n, moduli, l) in [
        (4096, vec![60, 49], 37),
        (4096, vec![34, 36], 16),
        (2048, vec![54], 12),
        (8192, vec![60, 60, 60], 37),
    ] {
        let he = HeParams {
            degree: n,
            moduli_bits: moduli.clone(),
            plain_bits: l,
        };
        let p = Params::new(&he).expect("parameters");
        let budget = p.budget(l).expect("budget");
        let sk = SecretKey::generate(&p, rng).expect("key");
        let pk = PublicKey::new(&p, &sk.public_key(rng).expect("pk")).expect("pk");
        let m: Vec<u64> = (0..n).map(|_| rng.next_u64() & ((1 << l) - 1)).collect();
        let w: Vec<i64> = (0..n).map(|_| rng.random_range(-8..8)).collect();
        let kernel = Kernel::new(&p, &w).expect("kernel");
        let positions: Vec<usize> = (0..n / 4).collect();
        let iters = 20;
        sk.encrypt(&m, rng).expect("warm-up");
        let t = Instant::now();
        let cts: Vec<_> = (0..iters)
            .map(|_| sk.encrypt(&m, rng).expect("enc"))
            .collect();
        let enc = ms(t) / iters as f64;
        let t = Instant::now();
        let inputs: Vec<_> = cts
            .iter()
            .map(|ct| InputCt::new(&p, ct, Some(&m)).expect("absorb"))
            .collect();
        let absorb = ms(t) / iters as f64;
        let t = Instant::now();
        let accs: Vec<_> = inputs
            .iter()
            .map(|i| Accumulator::sum_products(&p, [(i, &kernel)].into_iter()).expect("product"))
            .collect();
        let mul = ms(t) / iters as f64;
        let t = Instant::now();
        let sanitized: Vec<_> = accs
            .into_iter()
            .map(|a| {
                a.sanitize(&p, &pk, &[], &positions, &budget, rng)
                    .expect("sanitize")
            })
            .collect();
        let sanitize = ms(t) / iters as f64;
        let t = Instant::now();
        let resps: Vec<_> = sanitized
            .into_iter()
            .map(|s| {
                s.switch(&p)
                    .and_then(|s| s.into_response(&p, &positions, &budget))
                    .expect("switch")
            })
            .collect();
        let switch = ms(t) / iters as f64;
        let t = Instant::now();
        resps.iter().for_each(|r| {
            sk.decrypt(r, &positions, &budget, l).expect("decrypt");
        });
        let dec = ms(t) / iters as f64;
        let bits: u32 = moduli.iter().sum();
        println!(
            "| {n} | {moduli:?} = {bits} | 2^{l} | {enc:.3} ms | {absorb:.3} ms | {mul:.3} ms | {sanitize:.3} ms | {switch:.3} ms | {dec:.3} ms |"
        );
    }
    println!();
}

struct LayerCase {
    name: &'static str,
    shape: ConvShape,
}

fn resnet_layers() -> Vec<LayerCase> {
    let conv = |c, hw, m, k, s, p| ConvShape {
        in_channels: c,
        in_hw: [hw, hw],
        out_channels: m,
        kernel: [k, k],
        stride: [s, s],
        pads: [p; 4],
        groups: 1,
    };
    vec![
        LayerCase {
            name: "64→64 3×3 @56",
            shape: conv(64, 56, 64, 3, 1, 1),
        },
        LayerCase {
            name: "256→512 1×1 s2 @56",
            shape: conv(256, 56, 512, 1, 2, 0),
        },
        LayerCase {
            name: "512→512 3×3 @7",
            shape: conv(512, 7, 512, 3, 1, 1),
        },
        LayerCase {
            name: "stem 3→64 7×7 s2 @224",
            shape: conv(3, 224, 64, 7, 2, 3),
        },
    ]
}

/// OpenCheetah's tile heuristic (`protocols.md` §1.4): the whole padded image if it fits, with
/// `C_w = min(⌊N/HW⌋, C)`; else one channel and a near-square spatial tile.
fn cheetah_tile(s: &ConvShape, n: usize) -> Tile {
    let (h, w) = eff_hw(s);
    if h * w <= n {
        Tile {
            c: (n / (h * w)).min(s.in_channels),
            h,
            w,
            m: 1,
        }
    } else {
        let th = ((n * h / w) as f64).sqrt() as usize;
        Tile {
            c: 1,
            h: th,
            w: n / th,
            m: 1,
        }
    }
}

/// Padded input extent after sub-sampling a strided 1×1 kernel.
fn eff_hw(s: &ConvShape) -> (usize, usize) {
    let eff = |i: usize| {
        let padded = s.in_hw[i] + s.pads[i] + s.pads[i + 2];
        if s.kernel[i] == 1 && s.stride[i] > 1 {
            (padded - 1) / s.stride[i] + 1
        } else {
            padded
        }
    };
    (eff(0), eff(1))
}

/// A tile with two spatial tiles along the rows (so two-field spatial packing halves both
/// directions): half the rows plus the kernel overlap, the channels that then fit.
fn split_tile(s: &ConvShape, n: usize) -> Tile {
    let base = cheetah_tile(s, n);
    let (h, w) = eff_hw(s);
    if h * w > n {
        // Already several spatial tiles.
        return base;
    }
    let [ho, _] = s.out_hw();
    let k = if s.kernel[0] == 1 && s.stride[0] > 1 {
        1
    } else {
        s.kernel[0]
    };
    let stride = if k == 1 { 1 } else { s.stride[0] };
    let h = (ho.div_ceil(2) - 1) * stride + k;
    Tile {
        c: (n / (h * base.w)).min(s.in_channels),
        h,
        ..base
    }
}

/// `(‖w‖₁ max over filters, acc bits)` for activations in `[−2^(b_a−1), 2^(b_a−1))`.
fn bounds(s: &ConvShape, w: &[i32], act_bits: u32) -> (u64, u32) {
    let per = s.weight_len() / s.out_channels;
    let l1 = w
        .chunks(per)
        .map(|f| f.iter().map(|v| u64::from(v.unsigned_abs())).sum::<u64>())
        .max()
        .unwrap_or(0);
    let acc = l1 << (act_bits - 1);
    (l1, 65 - acc.leading_zeros())
}

/// Smallest two-prime modulus for decryption at `2^dec` with 40 bits of flooding slack.
fn low_bit_moduli(dec: u32, l1: u64) -> Vec<u32> {
    // Product noise plus the re-randomisation noise (40N + 20 at N = 4096), as the server checks.
    let noise_bits = 64 - (22 * l1 + 1 + 40 * 4096 + 20).leading_zeros();
    let b0 = dec + 6 + 12;
    let b1 = (noise_bits + STAT_BITS + 7 + dec)
        .saturating_sub(b0)
        .max(20);
    vec![b0, b1]
}

struct Row {
    layer: &'static str,
    config: String,
    cts: (usize, usize),
    mb: (f64, f64),
    formula_mb: Option<(f64, f64)>,
    ms: (f64, f64, f64, f64),
}

fn run_layer(
    case: &LayerCase,
    proto: LinearProtocol,
    w_bits: u32,
    act_bits: u32,
    rng: &mut ChaCha20Rng,
) -> Row {
    let s = &case.shape;
    let weights = LayerWeights {
        weights: (0..s.weight_len())
            .map(|_| rng.random_range(-(1 << (w_bits - 1))..(1 << (w_bits - 1))))
            .collect(),
        bias: (0..s.out_channels)
            .map(|_| rng.random_range(-100..100))
            .collect(),
    };
    let (_, acc_bits) = bounds(s, &weights.weights, act_bits);
    let layer = LinearLayer {
        shape: s.clone(),
        weight_ty: IntType {
            bits: w_bits,
            signed: true,
        },
        acc_bits,
        acc_bits_naive: acc_bits,
        requant: None,
        protocol: proto.clone(),
    };
    let cost =
        conv_cost(s, acc_bits, &proto, LinearOutput::Accumulator).expect("valid configuration");
    let layout = Arc::new(Layout::conv(&layer, LinearOutput::Accumulator).expect("layout"));
    let params = Params::new(&proto.he).expect("parameters");
    let key = Arc::new(SecretKey::generate(&params, rng).expect("key"));
    let keys = ServerKeys {
        public: PublicKey::new(&params, &key.public_key(rng).expect("pk")).expect("pk"),
        galois: None,
    };
    let client = LinearClient::new(layout.clone(), key).expect("client");
    let t = Instant::now();
    let mut server =
        LinearServer::new(&layout, params.clone(), &weights, STAT_BITS).expect("server");
    server.prepare_kernels(&layout).expect("kernels");
    let t_setup = ms(t);
    let in_mask = (1u64 << proto.in_ring_bits) - 1;
    let x_c: Vec<u64> = (0..layout.input_len())
        .map(|_| rng.next_u64() & in_mask)
        .collect();
    let x_s: Vec<u64> = (0..layout.input_len())
        .map(|_| rng.next_u64() & in_mask)
        .collect();
    let t = Instant::now();
    let query = client.query(&x_c, rng).expect("query");
    let t_query = ms(t);
    let up = query.to_bytes(&params).len();
    let t = Instant::now();
    let (resp, _) = server
        .respond(&layout, &keys, &query, Some(&x_s), rng)
        .expect("respond");
    let t_respond = ms(t);
    let down = resp.to_bytes(&layout).len();
    let t = Instant::now();
    client.finish(&resp).expect("finish");
    let t_finish = ms(t);
    assert_eq!(
        (up, down),
        (cost.bytes_up, cost.bytes_down),
        "bytes differ from the cost function"
    );
    let formula_mb = (proto.packing.factor == 1).then(|| reference_formula_mb(s, &proto));
    let p = &proto.packing;
    let packing = if p.factor > 1 {
        format!(", b={}×{} {:?}", p.factor, p.field_bits, p.dim)
    } else {
        String::new()
    };
    let t = proto.tile;
    Row {
        layer: case.name,
        config: format!(
            "N={} q={:?} ℓ={}{} tile {}×{}×{}×{}",
            proto.he.degree, proto.he.moduli_bits, proto.he.plain_bits, packing, t.c, t.h, t.w, t.m
        ),
        cts: (cost.cts_up, cost.cts_down),
        mb: (up as f64 / 1e6, down as f64 / 1e6),
        formula_mb,
        ms: (t_setup, t_query, t_respond, t_finish),
    }
}

/// `protocols.md` §5.3: `B_req = n_req·N·log2 q / 8`,
/// `B_resp = n_resp·[N·min(log2 q0, ℓ+1+n_var) + u·(ℓ+2)] / 8`, with the per-ciphertext `u`.
fn reference_formula_mb(s: &ConvShape, proto: &LinearProtocol) -> (f64, f64) {
    let g = ConvGeometry::new(s, proto).expect("geometry");
    let he = &proto.he;
    let n = he.degree as f64;
    let log_q: u32 = he.moduli_bits.iter().sum();
    let n_var = ((12.0 * n / 18f64.sqrt()).log2()).floor();
    let l = f64::from(he.plain_bits);
    let c1 = f64::from(he.moduli_bits[0]).min(l + 1.0 + n_var);
    let req = g.input_cts() as f64 * n * f64::from(log_q) / 8.0;
    let resp: f64 = (0..g.n_mg)
        .flat_map(|mg| (0..g.n_sg).map(move |sg| (mg, sg)))
        .map(|(mg, sg)| (n * c1 + g.useful(mg, sg) as f64 * (l + 2.0)) / 8.0)
        .sum();
    (req / 1e6, resp / 1e6)
}

fn proto(he: HeParams, tile: Tile, packing: Packing) -> LinearProtocol {
    let l = he.plain_bits;
    LinearProtocol {
        he,
        tile,
        packing,
        encoding: Encoding::Cheetah,
        in_ring_bits: l,
        out_ring_bits: l,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument filters nothing here.
    let mut rng = ChaCha20Rng::seed_from_u64(2026);
    println!("rayon threads: {}\n", rayon::current_num_threads());
    per_ct_ops(&mut rng);
    let mut rows = Vec::new();
    for case in resnet_layers() {
        let s = &case.shape;
        let n = 4096;
        // Cheetah: 8-bit weights (ℓ = 37 leaves 42 bits of flooding slack at 2^22.7 noise).
        let cheetah = HeParams {
            degree: n,
            moduli_bits: vec![60, 49],
            plain_bits: 37,
        };
        rows.push(run_layer(
            &case,
            proto(cheetah, cheetah_tile(s, n), Packing::none()),
            8,
            8,
            &mut rng,
        ));
        // Low bit: 4-bit weights and activations; ℓ = acc bits, minimal two-prime q.
        let w4: Vec<i32> = vec![8; s.weight_len()];
        let (l1, acc) = bounds(s, &w4, 4);
        let he = HeParams {
            degree: n,
            moduli_bits: low_bit_moduli(acc, l1),
            plain_bits: acc,
        };
        he_budget(&he, acc).expect("low-bit parameters");
        rows.push(run_layer(
            &case,
            proto(he, cheetah_tile(s, n), Packing::none()),
            4,
            4,
            &mut rng,
        ));
        // Low bit with a communication-aware tile: as many filters as channels per ciphertext
        // (`C_w = M_w`), which trades request count for dense responses.
        let (h, w) = eff_hw(s);
        if h * w * 4 <= n {
            let side = ((n / (h * w)) as f64).sqrt() as usize;
            let tile = Tile {
                c: side.min(s.in_channels),
                h,
                w,
                m: side.min(s.out_channels),
            };
            let he = HeParams {
                degree: n,
                moduli_bits: low_bit_moduli(acc, l1 * side as u64),
                plain_bits: acc,
            };
            rows.push(run_layer(
                &case,
                proto(he, tile, Packing::none()),
                4,
                4,
                &mut rng,
            ));
        }
        // Packed: two fields of `acc` bits along space, on a tile with two spatial tiles.
        let plain = 2 * acc;
        let he = HeParams {
            degree: n,
            moduli_bits: low_bit_moduli(plain, l1),
            plain_bits: plain,
        };
        let packing = Packing {
            factor: 2,
            field_bits: acc,
            dim: PackDim::Spatial,
        };
        rows.push(run_layer(
            &case,
            proto(he, split_tile(s, n), packing),
            4,
            4,
            &mut rng,
        ));
    }
    println!("## ResNet-50 convolutions, one inference, whole layer (rayon, all threads)\n");
    println!(
        "| layer | configuration | cts up/down | MB up | MB down | MB total | §5.3 formula MB up/down | server setup (kernels) | client query | server respond | client finish |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let formula = r
            .formula_mb
            .map_or("—".into(), |(u, d)| format!("{u:.3} / {d:.3}"));
        println!(
            "| {} | {} | {} / {} | {:.3} | {:.3} | {:.3} | {} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
            r.layer,
            r.config,
            r.cts.0,
            r.cts.1,
            r.mb.0,
            r.mb.1,
            r.mb.0 + r.mb.1,
            formula,
            r.ms.0,
            r.ms.1,
            r.ms.2,
            r.ms.3
        );
    }
}
