//! `heqc compile` flags of the optimizer: `--baseline cheetah`, `--objective`, `--net`, and the
//! predicted bytes of the summary line.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

fn compile(args: &[&str]) -> String {
    let model = common::models_dir().join("resnet_qdq_u8s8.onnx");
    let dir = std::env::temp_dir().join(format!("heqc-opt-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_heqc"))
        .arg("compile")
        .arg(&model)
        .arg("-o")
        .arg(dir.join("plan.bin"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn summary_reports_predicted_bytes_and_the_baseline_ratio() {
    let s = compile(&[]);
    assert!(
        s.contains(
            "optimized profile: predicted 1341905 bytes (703464 up, 638441 down), \
             2.08x less than cheetah (2787452 bytes)"
        ),
        "{s}"
    );
    let s = compile(&["--baseline", "cheetah"]);
    assert!(
        s.contains(
            "cheetah profile: predicted 2787452 bytes (597420 up, 2190032 down), \
             1.00x less than cheetah (2787452 bytes)"
        ),
        "{s}"
    );
    // The literal multipliers: longer truncations (the two adds' shifts are 22 instead of 17
    // and 21), more bytes.
    let s = compile(&["--no-compress-requant"]);
    assert!(
        s.contains(
            "optimized profile: predicted 1357017 bytes (708587 up, 648430 down), \
             2.06x less than cheetah (2801283 bytes)"
        ),
        "{s}"
    );
    // The latency optimum depends on the shipped compute profile (runtime/profiles/default.json);
    // on the WAN its carry trees send more bytes for far fewer rounds.
    let s = compile(&["--objective", "latency", "--net", "wan"]);
    assert!(
        s.contains("optimized profile: predicted 1339610 bytes"),
        "{s}"
    );
}
