//! Model → plan (heqc, default profile) → both parties (silent OT over loopback QUIC) on two
//! digits samples, and over a real network session (server and client over one loopback
//! QUIC connection with a pinned certificate) on one sample: outputs bit-exact with the
//! reference executor (the revealed integers and, for plans with a client-side epilogue, the
//! float or index model output computed from them), traffic equal to the prediction on every
//! layer.

use heq_runtime::plan::{CarryDepth, OtBackend, Plan};
use heq_tests::{check_model, check_model_net, compile, compile_with, init_rayon};
use heqc::optimize::{Net, Objective};
use heqc::select::Strategy;

fn e2e(name: &str) {
    e2e_with(name, OtBackend::Silent);
}

fn e2e_with(name: &str, backend: OtBackend) {
    init_rayon();
    e2e_plan(name, &compile(name).expect("compiles"), backend);
}

fn e2e_plan(name: &str, plan: &Plan, backend: OtBackend) {
    let runs = check_model(plan, 2, backend).expect("two-party run");
    eprintln!("{name} ({backend:?}):\n{}", runs[0].client.table());
    if backend == plan.public.protocol.ot {
        let (_, client) = check_model_net(plan, 1).expect("network session");
        eprintln!("{name} over the network: {:?}", client.quic);
    }
}

/// The WAN latency plan computes its carries by log-depth trees (and one-round correlated OTs
/// everywhere): still bit-exact, traffic still as predicted.
#[test]
fn resnet_qdq_w4_wan_latency_trees() {
    init_rayon();
    let name = "resnet_qdq_w4";
    let plan =
        compile_with(name, Strategy::Optimized(Objective::Latency(Net::Wan))).expect("compiles");
    let trees = plan
        .public
        .layers
        .iter()
        .filter(|l| l.carry == CarryDepth::Tree);
    assert!(trees.count() > 0, "the WAN plan takes trees");
    e2e_plan(name, &plan, OtBackend::Silent);
}

#[test]
fn tiny_qcdq_w2_iknp() {
    e2e_with("tiny_qcdq_w2", OtBackend::Iknp);
}

#[test]
fn tiny_qcdq_w2() {
    e2e("tiny_qcdq_w2");
}

#[test]
fn cnn_avg_qdq_u8s8() {
    e2e("cnn_avg_qdq_u8s8");
}

#[test]
fn mpdw_qdq_u8s8() {
    e2e("mpdw_qdq_u8s8");
}

#[test]
fn resnet_qdq_u8s8() {
    e2e("resnet_qdq_u8s8");
}

#[test]
fn cnn_avg_qcdq_w4a4() {
    e2e("cnn_avg_qcdq_w4a4");
}

#[test]
fn cnn_avg_qcdq_w4a4_p2() {
    e2e("cnn_avg_qcdq_w4a4_p2");
}

#[test]
fn cnn_avg_qdq_w4() {
    e2e("cnn_avg_qdq_w4");
}

#[test]
fn cnn_avg_qop() {
    e2e("cnn_avg_qop");
}

#[test]
fn mpdw_qdq_w4() {
    e2e("mpdw_qdq_w4");
}

#[test]
fn mpdw_qop() {
    e2e("mpdw_qop");
}

#[test]
fn resnet_bn_qdq_u8s8() {
    e2e("resnet_bn_qdq_u8s8");
}

#[test]
fn resnet_qdq_mixed() {
    e2e("resnet_qdq_mixed");
}

#[test]
fn resnet_qdq_w4() {
    e2e("resnet_qdq_w4");
}

#[test]
fn resnet_qop() {
    e2e("resnet_qop");
}

/// com.microsoft Q/DQ with int4 weights.
#[test]
fn mpdw_qdq_w4_ms() {
    e2e("mpdw_qdq_w4_ms");
}

/// com.microsoft Q/DQ, uint16 activations (wide share rings) and uint4 weights (zero point 8).
#[test]
fn mpdw_qdq_a16_ms() {
    e2e("mpdw_qdq_a16_ms");
}

/// com.microsoft Q/DQ, int16 activations and int8 weights.
#[test]
fn mpdw_qdq_a16s_ms() {
    e2e("mpdw_qdq_a16s_ms");
}

/// `ceil_mode` max and average pools (`count_include_pad` = 0): partial last windows.
#[test]
fn ceil_qdq_u8s8() {
    e2e("ceil_qdq_u8s8");
}

/// `ceil_mode` average pool with `count_include_pad` = 1: per-window divisors.
#[test]
fn ceil_cip_qdq_u8s8() {
    e2e("ceil_cip_qdq_u8s8");
}

/// A float head: the last Gemm's accumulator is revealed and dequantized by the client.
#[test]
fn cnn_avg_qcdq_floathead() {
    e2e("cnn_avg_qcdq_floathead");
}

/// A Softmax after the final DequantizeLinear, on the client.
#[test]
fn mpdw_qdq_u8s8_softmax() {
    e2e("mpdw_qdq_u8s8_softmax");
}

/// An ArgMax after the final DequantizeLinear: int64 labels, on the client.
#[test]
fn mpdw_qdq_u8s8_argmax() {
    e2e("mpdw_qdq_u8s8_argmax");
}
