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
            "optimized profile: predicted 1341903 bytes (703463 up, 638440 down), \
             2.08x less than cheetah (2787450 bytes)"
        ),
        "{s}"
    );
    // Cheetah as it would run the model: the literal requantizations.
    let s = compile(&["--baseline", "cheetah"]);
    assert!(
        s.contains(
            "cheetah profile: predicted 2801281 bytes (602542 up, 2198739 down), \
             1.00x less than cheetah (2801281 bytes)"
        ),
        "{s}"
    );
    // The literal multipliers: longer truncations (the two adds' shifts are 22 instead of 17
    // and 21), more bytes.
    let s = compile(&["--no-compress-requant"]);
    assert!(
        s.contains(
            "optimized profile: predicted 1357015 bytes (708586 up, 648429 down), \
             2.06x less than cheetah (2801281 bytes)"
        ),
        "{s}"
    );
    // The latency optimum depends on the shipped compute profile (runtime/profiles/default.json);
    // on the WAN its carry trees send more bytes for far fewer rounds.
    let s = compile(&["--objective", "latency", "--net", "wan"]);
    assert!(
        s.contains("optimized profile: predicted 1710419 bytes"),
        "{s}"
    );
}
