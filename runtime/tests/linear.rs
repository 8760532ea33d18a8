//! Two-party linear layers, sans-IO, one thread: random shapes, strides, paddings, groups,
//! tiles, plaintext widths, ring degrees and packings. Every case reconstructs the output
//! shares and compares them exactly with the plaintext integer result, and checks that the
//! bytes on the wire equal the cost functions.

use std::sync::Arc;

use heq_runtime::cost::linear::{
    LinearCost, affine_cost, conv_cost, matmul_cost, public_key_bytes,
};
use heq_runtime::he::{GaloisKeys, Params, PublicKey, SecretKey, SeededGaloisKeys};
use heq_runtime::linear::{
    Layout, LinearClient, LinearError, LinearServer, Query, Response, ServerKeys, unpack_words,
};
use heq_runtime::params::he::{LinearOutput, galois_key_bytes, pack_exponents};
use heq_runtime::plan::{
    AffineShape, ConvShape, Encoding, HeParams, IntType, LayerWeights, LinearLayer, LinearProtocol,
    MatMulShape, PackDim, Packing, Requant, Rounding, Tile,
};
use proptest::prelude::*;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// Plain convolution over centred integers, output `[M, H', W']`.
fn conv_ref(s: &ConvShape, w: &[i32], bias: &[i64], x: &[i64]) -> Vec<i64> {
    let [h, wd] = s.in_hw;
    let [ho, wo] = s.out_hw();
    let (cg, mg) = (s.in_channels / s.groups, s.out_channels / s.groups);
    let mut out = vec![0i64; s.out_channels * ho * wo];
    for m in 0..s.out_channels {
        let grp = m / mg;
        for oi in 0..ho {
            for oj in 0..wo {
                let mut acc = bias[m];
                for c in 0..cg {
                    for l in 0..s.kernel[0] {
                        for q in 0..s.kernel[1] {
                            let r = (oi * s.stride[0] + l)
                                .checked_sub(s.pads[0])
                                .filter(|&r| r < h);
                            let col = (oj * s.stride[1] + q)
                                .checked_sub(s.pads[1])
                                .filter(|&c| c < wd);
                            if let (Some(r), Some(col)) = (r, col) {
                                let wv = w[((m * cg + c) * s.kernel[0] + l) * s.kernel[1] + q];
                                acc += i64::from(wv) * x[((grp * cg + c) * h + r) * wd + col];
                            }
                        }
                    }
                }
                out[(m * ho + oi) * wo + oj] = acc;
            }
        }
    }
    out
}

/// `Y[r, j] = bias[j] + Σ_i X[r, i]·W[i, j]`.
fn matmul_ref(s: &MatMulShape, w: &[i32], bias: &[i64], x: &[i64]) -> Vec<i64> {
    let mut out = vec![0i64; s.rows * s.cols];
    for r in 0..s.rows {
        for j in 0..s.cols {
            out[r * s.cols + j] = bias[j]
                + (0..s.inner)
                    .map(|i| x[r * s.inner + i] * i64::from(w[i * s.cols + j]))
                    .sum::<i64>();
        }
    }
    out
}

/// Largest |x| of [`random_input`].
const X_MAX: i64 = 16;

/// Sound accumulator bits, as the plan's range analysis gives them: a signed integer of this
/// width holds `±(|bias| + ‖w‖₁·max|x|)` for every output channel, hence every partial sum too
/// (the packed fields of smaller edge tiles hold such partial sums).
fn acc_bits_bound(weights: &LayerWeights, per_channel: impl Fn(usize) -> Vec<usize>) -> u32 {
    let bound = (0..weights.bias.len())
        .map(|c| {
            weights.bias[c].abs()
                + per_channel(c)
                    .iter()
                    .map(|&i| i64::from(weights.weights[i]).abs())
                    .sum::<i64>()
                    * X_MAX
        })
        .max()
        .unwrap_or(0);
    65 - bound.leading_zeros()
}

/// A random HE configuration and rings for an accumulator of `acc_bits` bits.
struct Config {
    he: HeParams,
    packing: Packing,
    in_bits: u32,
    out_bits: u32,
    stat_bits: u32,
    encoding: Encoding,
}

fn random_config(rng: &mut ChaCha20Rng, acc_bits: u32, pack: Option<PackDim>) -> Config {
    // Packing needs room for two fields of the accumulator.
    let big = rng.random_bool(0.5) || (pack.is_some() && 2 * (acc_bits + 1) > 14);
    // Packing along output channels scales the kernel by 2^{(b−1)s}: the flood needs N = 8192.
    let (degree, moduli, max_plain, stat_bits) = if pack == Some(PackDim::OutChannels) {
        (8192, vec![60, 60, 60], 37, 40)
    } else if big {
        (4096, vec![60, 49], 37, 40)
    } else {
        (2048, vec![54], 14, 12)
    };
    let (plain, packing) = match pack {
        Some(dim) => {
            let s = acc_bits + rng.random_range(0..2);
            let factor = rng.random_range(2..=(max_plain / s).max(2));
            let plain = (factor * s).max(rng.random_range(factor * s..=max_plain.max(factor * s)));
            (
                plain,
                Packing {
                    factor,
                    field_bits: s,
                    dim,
                },
            )
        }
        None => (
            rng.random_range(acc_bits.min(max_plain)..=max_plain),
            Packing::none(),
        ),
    };
    let in_bits = plain + rng.random_range(0..3);
    let out_bits = if packing.factor > 1 {
        plain
    } else {
        rng.random_range(plain.min(acc_bits).max(2)..=plain)
    };
    Config {
        he: HeParams {
            degree,
            moduli_bits: moduli,
            plain_bits: plain,
        },
        packing,
        in_bits,
        out_bits,
        stat_bits,
        encoding: Encoding::Cheetah,
    }
}

fn layer<S>(shape: S, acc_bits: u32, cfg: &Config, tile: Tile) -> LinearLayer<S> {
    LinearLayer {
        shape,
        weight_ty: IntType {
            bits: 4,
            signed: true,
        },
        acc_bits,
        acc_bits_naive: acc_bits,
        requant: None,
        protocol: LinearProtocol {
            he: cfg.he.clone(),
            tile,
            packing: cfg.packing,
            encoding: cfg.encoding,
            in_ring_bits: cfg.in_bits,
            out_ring_bits: cfg.out_bits,
        },
    }
}

/// Runs the protocol on `x` (shared at random, or plain when `first`), checks the result against
/// `acc` and the bytes against `cost`.
fn run(
    layout: Layout,
    cost: LinearCost,
    weights: &LayerWeights,
    (x, acc): (&[i64], &[i64]),
    cfg: &Config,
    first: bool,
    rng: &mut ChaCha20Rng,
) -> Result<(), TestCaseError> {
    let layout = Arc::new(layout);
    let params = Params::new(&cfg.he).expect("valid parameters");
    let key = Arc::new(SecretKey::generate(&params, rng).expect("key"));
    let pk_msg = key.public_key(rng).expect("public key");
    prop_assert_eq!(
        pk_msg.to_bytes(&params).len(),
        public_key_bytes(&cfg.he).expect("valid")
    );
    let members = layout.protocol().encoding.members();
    let exponents = pack_exponents(cfg.he.degree, layout.protocol().tile.c, members);
    let galois = (!exponents.is_empty()).then(|| {
        let seeded = key.galois_keys(&exponents, rng).expect("galois keys");
        let bytes = seeded.to_bytes(&params);
        let b0 = cfg.he.moduli_bits[0];
        assert_eq!(
            bytes.len(),
            exponents.len() * galois_key_bytes(cfg.he.degree, b0)
        );
        let seeded = SeededGaloisKeys::from_bytes(&params, &exponents, &bytes).expect("decode");
        GaloisKeys::new(&params, &seeded).expect("galois keys")
    });
    let keys = ServerKeys {
        public: PublicKey::new(&params, &pk_msg).expect("pk"),
        galois,
    };
    let client = LinearClient::new(layout.clone(), key).expect("client");
    let mut server =
        LinearServer::new(&layout, params.clone(), weights, cfg.stat_bits).expect("server");

    let in_mask = (1u64 << cfg.in_bits) - 1;
    let xv: Vec<u64> = x.iter().map(|&v| (v as u64) & in_mask).collect();
    let (x_c, x_s): (Vec<u64>, Option<Vec<u64>>) = if first {
        (xv, None)
    } else {
        let x_s: Vec<u64> = xv.iter().map(|_| rng.next_u64() & in_mask).collect();
        (
            xv.iter()
                .zip(&x_s)
                .map(|(a, b)| a.wrapping_sub(*b) & in_mask)
                .collect(),
            Some(x_s),
        )
    };
    let query = client.query(&x_c, rng).expect("query");
    let q_bytes = query.to_bytes(&params);
    prop_assert_eq!(q_bytes.len(), cost.bytes_up);
    prop_assert_eq!(query.ciphertexts(), cost.cts_up);
    let query = Query::from_bytes(&params, &layout, &q_bytes).expect("decode query");
    // Kernels built during the response, then prepared: the same response bit for bit.
    let mut same_rng = rng.clone();
    prop_assert!(!server.kernels_prepared());
    let on_the_fly = server
        .respond(&layout, &keys, &query, x_s.as_deref(), &mut same_rng)
        .expect("respond");
    server.prepare_kernels(&layout).expect("kernels");
    prop_assert!(server.kernels_prepared());
    let (resp, y_s) = server
        .respond(&layout, &keys, &query, x_s.as_deref(), rng)
        .expect("respond");
    prop_assert_eq!(&on_the_fly.0, &resp);
    prop_assert_eq!(&on_the_fly.1, &y_s);
    let r_bytes = resp.to_bytes(&layout);
    prop_assert_eq!(r_bytes.len(), cost.bytes_down);
    prop_assert_eq!(resp.ciphertexts(), cost.cts_down);
    // Every revealed coefficient is one output word.
    prop_assert_eq!(
        layout.word_fields().len() / cfg.packing.factor as usize,
        cost.coeffs_down
    );
    let resp = Response::from_bytes(&layout, &r_bytes).expect("decode response");
    let y_c = client.finish(&resp).expect("finish");
    prop_assert_eq!(y_c.len(), layout.output_words());
    let out_mask = (1u64 << cfg.out_bits) - 1;
    let words: Vec<u64> = y_c
        .iter()
        .zip(&y_s)
        .map(|(a, b)| a.wrapping_add(*b) & out_mask)
        .collect();
    if cfg.packing.factor > 1 {
        let got = unpack_words(
            &words,
            layout.word_fields(),
            cfg.packing.factor as usize,
            cfg.packing.field_bits,
            layout.output_len(),
        );
        prop_assert_eq!(got, acc.to_vec());
    } else {
        let want: Vec<u64> = acc.iter().map(|&v| (v as u64) & out_mask).collect();
        prop_assert_eq!(words, want);
    }
    Ok(())
}

fn random_weights(rng: &mut ChaCha20Rng, len: usize, bias_len: usize) -> LayerWeights {
    LayerWeights {
        weights: (0..len).map(|_| rng.random_range(-8..8)).collect(),
        bias: (0..bias_len).map(|_| rng.random_range(-100..100)).collect(),
    }
}

fn random_input(rng: &mut ChaCha20Rng, len: usize) -> Vec<i64> {
    (0..len).map(|_| rng.random_range(-X_MAX..X_MAX)).collect()
}

fn pack_dim(rng: &mut ChaCha20Rng) -> Option<PackDim> {
    match rng.random_range(0..4) {
        0 => Some(PackDim::Spatial),
        1 => Some(PackDim::OutChannels),
        _ => None,
    }
}

/// A random convolution case: shape, tile inside `N`, weights and input.
///
/// With `fold`, the layer folds a random requantization (multipliers, shift) into the HE
/// computation and outputs `⌊(acc·m[c] + 2^(k−1)) / 2^k⌋ mod 2^out`.
fn conv_case(
    seed: u64,
    depthwise: bool,
    fold: bool,
    interleave: bool,
) -> Result<(), TestCaseError> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let groups_pick = rng.random_range(1..=3usize);
    let (c, m, groups) = if depthwise {
        let c = rng.random_range(1..=6);
        (c, c, c)
    } else {
        (
            groups_pick * rng.random_range(1..=3),
            groups_pick * rng.random_range(1..=3),
            groups_pick,
        )
    };
    let k = [rng.random_range(1..=3), rng.random_range(1..=3)];
    let pads = [0, 1, 2, 3].map(|i| rng.random_range(0..k[i % 2]));
    let in_hw = [rng.random_range(k[0]..=9), rng.random_range(k[1]..=9)];
    let stride = [rng.random_range(1..=3), rng.random_range(1..=3)];
    let shape = ConvShape {
        in_channels: c,
        in_hw,
        out_channels: m,
        kernel: k,
        stride,
        pads,
        groups,
    };
    let weights = random_weights(&mut rng, shape.weight_len(), m);
    let x = random_input(&mut rng, c * in_hw[0] * in_hw[1]);
    let mut acc = conv_ref(&shape, &weights.weights, &weights.bias, &x);
    let per_filter = shape.weight_len() / m;
    let acc_bits = acc_bits_bound(&weights, |f| {
        (f * per_filter..(f + 1) * per_filter).collect()
    });
    let mut multipliers = Vec::new();
    let (cfg, output) = if fold {
        let k = rng.random_range(1..=6);
        multipliers = (0..m)
            .map(|_| rng.random_range(-1000..1000))
            .collect::<Vec<i64>>();
        let per = acc.len() / m;
        acc = acc
            .iter()
            .enumerate()
            .map(|(i, &a)| (a * multipliers[i / per] + (1 << (k - 1))).div_euclid(1 << k))
            .collect();
        // Narrow plaintexts leave room for packing's key-switching noise.
        let plain = rng.random_range(k + 3..=if interleave { k + 8 } else { 30 });
        let cfg = Config {
            he: HeParams {
                degree: 4096,
                moduli_bits: vec![60, 49],
                plain_bits: plain,
            },
            packing: Packing::none(),
            in_bits: plain,
            out_bits: rng.random_range(2..=plain - k - 1),
            stat_bits: 40,
            encoding: Encoding::Cheetah,
        };
        (cfg, LinearOutput::Requantized { shift: k })
    } else {
        let dim = pack_dim(&mut rng);
        let mut cfg = random_config(&mut rng, acc_bits, dim);
        if interleave && dim.is_none() {
            // Narrow plaintexts leave room for packing's key-switching noise.
            cfg.he.plain_bits = cfg.he.plain_bits.min(acc_bits.max(2) + 2);
            cfg.out_bits = cfg.out_bits.min(cfg.he.plain_bits);
        }
        (cfg, LinearOutput::Accumulator)
    };
    // Effective extents (a 1-wide kernel with stride > 1 sub-samples).
    let eff = |i: usize| {
        let padded = in_hw[i] + pads[i] + pads[i + 2];
        if k[i] == 1 && stride[i] > 1 {
            (1, (padded - 1) / stride[i] + 1)
        } else {
            (k[i], padded)
        }
    };
    let ((kh, eh), (kw, ew)) = (eff(0), eff(1));
    let n = cfg.he.degree;
    let th = rng.random_range(kh..=eh + 1);
    let tw = rng.random_range(kw..=ew + 1);
    let (tc, tm) = if interleave {
        // A power-of-two channel tile, possibly wider than the layer.
        let max_log = (n / (th * tw))
            .ilog2()
            .min(c.next_power_of_two().ilog2() + 1);
        (1usize << rng.random_range(0..=max_log), 1)
    } else {
        let tc = rng.random_range(1..=c.min(n / (th * tw)).max(1));
        (tc, rng.random_range(1..=m.min(n / (th * tw * tc)).max(1)))
    };
    let tile = Tile {
        c: tc,
        h: th,
        w: tw,
        m: tm,
    };
    let mut cfg = cfg;
    if interleave {
        cfg.encoding = Encoding::Interleaved {
            members: 1 << rng.random_range(0..=tc.ilog2()),
        };
    }
    let mut layer = layer(shape.clone(), acc_bits, &cfg, tile);
    if let LinearOutput::Requantized { shift } = output {
        layer.requant = Some(Requant {
            shift,
            clamp: (i64::MIN, i64::MAX),
            rounding: Rounding::NoTies,
            multipliers,
        });
    }
    // Fewer packed responses until the key-switching noise fits the budget.
    while let Encoding::Interleaved { members } = layer.protocol.encoding
        && members > 1
        && conv_cost(&shape, acc_bits, &layer.protocol, output).is_err()
    {
        layer.protocol.encoding = Encoding::Interleaved {
            members: members / 2,
        };
    }
    cfg.encoding = layer.protocol.encoding;
    let cost = conv_cost(&shape, acc_bits, &layer.protocol, output).expect("valid config");
    let layout = Layout::conv(&layer, output).expect("layout");
    let first = rng.random_bool(0.2);
    run(layout, cost, &weights, (&x, &acc), &cfg, first, &mut rng)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn conv_matches_plaintext(seed in any::<u64>()) {
        conv_case(seed, false, false, false)?;
    }

    #[test]
    fn depthwise_matches_plaintext(seed in any::<u64>()) {
        conv_case(seed, true, false, false)?;
    }

    #[test]
    fn folded_requantization_matches_plaintext(seed in any::<u64>()) {
        conv_case(seed, seed % 3 == 0, true, false)?;
    }

    #[test]
    fn packed_responses_match_plaintext(seed in any::<u64>()) {
        conv_case(seed, seed % 4 == 0, seed % 3 == 0, true)?;
    }

    #[test]
    fn matmul_matches_plaintext(seed in any::<u64>()) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let shape = MatMulShape {
            rows: rng.random_range(1..=4),
            inner: rng.random_range(1..=40),
            cols: rng.random_range(1..=12),
        };
        let weights = random_weights(&mut rng, shape.inner * shape.cols, shape.cols);
        let x = random_input(&mut rng, shape.rows * shape.inner);
        let acc = matmul_ref(&shape, &weights.weights, &weights.bias, &x);
        let acc_bits = acc_bits_bound(&weights, |j| (0..shape.inner).map(|i| i * shape.cols + j).collect());
        let dim = pack_dim(&mut rng);
        let cfg = random_config(&mut rng, acc_bits, dim);
        let n = cfg.he.degree;
        let h = rng.random_range(1..=shape.rows);
        let c = rng.random_range(1..=shape.inner.min(n / h));
        let m = rng.random_range(1..=shape.cols.min(n / (h * c)));
        let tile = Tile { c, h, w: 1, m };
        let layer = layer(shape.clone(), acc_bits, &cfg, tile);
        let cost = matmul_cost(&shape, acc_bits, &layer.protocol, LinearOutput::Accumulator).expect("valid config");
        run(Layout::matmul(&layer, LinearOutput::Accumulator).expect("layout"), cost, &weights, (&x, &acc), &cfg, false, &mut rng)?;
    }

    #[test]
    fn affine_matches_plaintext(seed in any::<u64>()) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let shape = AffineShape { channels: rng.random_range(1..=6), per_channel: rng.random_range(1..=50) };
        let weights = random_weights(&mut rng, shape.channels, shape.channels);
        let x = random_input(&mut rng, shape.channels * shape.per_channel);
        let acc: Vec<i64> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let c = i / shape.per_channel;
                i64::from(weights.weights[c]) * v + weights.bias[c]
            })
            .collect();
        let acc_bits = acc_bits_bound(&weights, |c| vec![c]);
        let dim = pack_dim(&mut rng);
    let cfg = random_config(&mut rng, acc_bits, dim);
        let n = cfg.he.degree;
        let h = rng.random_range(1..=shape.per_channel);
        let c = rng.random_range(1..=shape.channels.min(n / h));
        let m = rng.random_range(1..=shape.channels.min(n / (h * c)));
        let layer = layer(shape.clone(), acc_bits, &cfg, Tile { c, h, w: 1, m });
        let cost = affine_cost(&shape, acc_bits, &layer.protocol, LinearOutput::Accumulator).expect("valid config");
        run(Layout::affine(&layer, LinearOutput::Accumulator).expect("layout"), cost, &weights, (&x, &acc), &cfg, false, &mut rng)?;
    }
}

/// A malformed query or response from the peer is an error with expected/actual sizes.
#[test]
fn malformed_messages_are_rejected() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let shape = MatMulShape {
        rows: 1,
        inner: 8,
        cols: 3,
    };
    let cfg = Config {
        he: HeParams {
            degree: 2048,
            moduli_bits: vec![54],
            plain_bits: 12,
        },
        packing: Packing::none(),
        in_bits: 12,
        out_bits: 12,
        stat_bits: 12,
        encoding: Encoding::Cheetah,
    };
    let layer = layer(
        shape.clone(),
        10,
        &cfg,
        Tile {
            c: 8,
            h: 1,
            w: 1,
            m: 3,
        },
    );
    let layout = Arc::new(Layout::matmul(&layer, LinearOutput::Accumulator).expect("layout"));
    let params = Params::new(&cfg.he).expect("params");
    let key = Arc::new(SecretKey::generate(&params, &mut rng).expect("key"));
    let pk = ServerKeys {
        public: PublicKey::new(&params, &key.public_key(&mut rng).expect("pk")).expect("pk"),
        galois: None,
    };
    let client = LinearClient::new(layout.clone(), key).expect("client");
    let weights = random_weights(&mut rng, 24, 3);
    let server = LinearServer::new(&layout, params.clone(), &weights, 12).expect("server");
    // One filter group against one channel tile: one kernel of N words per prime.
    assert_eq!(
        server.kernel_bytes(),
        8 * cfg.he.degree * cfg.he.moduli_bits.len()
    );
    let q = client
        .query(&[1; 8], &mut rng)
        .expect("query")
        .to_bytes(&params);
    let err = Query::from_bytes(&params, &layout, &q[..q.len() - 1]).expect_err("short query");
    assert!(
        matches!(err, LinearError::Length { expected, actual, .. } if expected == q.len() && actual == q.len() - 1)
    );
    assert!(matches!(
        client.query(&[1; 7], &mut rng),
        Err(LinearError::Length {
            expected: 8,
            actual: 7,
            ..
        })
    ));
    let query = Query::from_bytes(&params, &layout, &q).expect("query");
    let (resp, _) = server
        .respond(&layout, &pk, &query, Some(&[0; 8]), &mut rng)
        .expect("respond");
    // Another layer's layout (other tiles) is refused, by the kernels and by the response.
    let other_tiles = Layout::matmul(
        &self::layer(
            shape,
            10,
            &cfg,
            Tile {
                c: 4,
                h: 1,
                w: 1,
                m: 3,
            },
        ),
        LinearOutput::Accumulator,
    )
    .expect("layout");
    assert!(matches!(
        server.respond(&other_tiles, &pk, &query, Some(&[0; 8]), &mut rng),
        Err(LinearError::LayoutMismatch)
    ));
    let mut unprepared = LinearServer::new(&layout, params.clone(), &weights, 12).expect("server");
    assert!(matches!(
        unprepared.prepare_kernels(&other_tiles),
        Err(LinearError::LayoutMismatch)
    ));
    assert!(!unprepared.kernels_prepared());
    let r = resp.to_bytes(&layout);
    let mut long = r.clone();
    long.push(0);
    assert!(matches!(
        Response::from_bytes(&layout, &long),
        Err(LinearError::Length { .. })
    ));
    // A kernel too heavy for the flood is refused, not silently insecure.
    // (Kernel coefficients are centred mod t = 2^12, so 2047 is the heaviest weight.)
    let heavy = LayerWeights {
        weights: vec![2047; 24],
        bias: vec![0; 3],
    };
    assert!(matches!(
        LinearServer::new(&layout, params, &heavy, 30),
        Err(LinearError::Flooding {
            noise_bits: 21,
            flood_bits: 36,
            stat_bits: 30
        })
    ));
}

/// Larger layers once: a 32→32 3×3 convolution at 28×28 with spatial tiles at N = 8192
/// (`q = 3 × 60` bits), and a first-layer 7×7 stride-2 stem at N = 4096 in Cheetah's
/// configuration with 8-bit weights.
#[test]
fn larger_layers_match_plaintext() {
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    let cases = [
        (
            ConvShape {
                in_channels: 32,
                in_hw: [28, 28],
                out_channels: 32,
                kernel: [3, 3],
                stride: [1, 1],
                pads: [1; 4],
                groups: 1,
            },
            HeParams {
                degree: 8192,
                moduli_bits: vec![60, 60, 60],
                plain_bits: 37,
            },
            Tile {
                c: 8,
                h: 16,
                w: 30,
                m: 2,
            },
            8,
            false,
        ),
        (
            ConvShape {
                in_channels: 3,
                in_hw: [64, 64],
                out_channels: 16,
                kernel: [7, 7],
                stride: [2, 2],
                pads: [3; 4],
                groups: 1,
            },
            HeParams {
                degree: 4096,
                moduli_bits: vec![60, 49],
                plain_bits: 37,
            },
            Tile {
                c: 1,
                h: 64,
                w: 64,
                m: 1,
            },
            8,
            true,
        ),
    ];
    for (shape, he, tile, w_bits, first) in cases {
        let half = 1 << (w_bits - 1);
        let weights = LayerWeights {
            weights: (0..shape.weight_len())
                .map(|_| rng.random_range(-half..half))
                .collect(),
            bias: (0..shape.out_channels)
                .map(|_| rng.random_range(-1000..1000))
                .collect(),
        };
        let x = random_input(
            &mut rng,
            shape.in_channels * shape.in_hw[0] * shape.in_hw[1],
        );
        let acc = conv_ref(&shape, &weights.weights, &weights.bias, &x);
        let per_filter = shape.weight_len() / shape.out_channels;
        let acc_bits = acc_bits_bound(&weights, |f| {
            (f * per_filter..(f + 1) * per_filter).collect()
        });
        let cfg = Config {
            he: he.clone(),
            packing: Packing::none(),
            in_bits: 37,
            out_bits: 37,
            stat_bits: 40,
            encoding: Encoding::Cheetah,
        };
        let layer = layer(shape.clone(), acc_bits, &cfg, tile);
        let cost =
            conv_cost(&shape, acc_bits, &layer.protocol, LinearOutput::Accumulator).expect("valid");
        let layout = Layout::conv(&layer, LinearOutput::Accumulator).expect("layout");
        run(layout, cost, &weights, (&x, &acc), &cfg, first, &mut rng).expect("case");
    }
}
