//! `heq-run calibrate`: the real binary writes a compute profile that parses and prices work.
#![cfg(feature = "cli")]

use heq_runtime::cost::compute::{ComputeProfile, HeOps};
use heq_runtime::plan::HeParams;

#[test]
fn calibrate_writes_a_profile() {
    let dir = std::env::temp_dir().join(format!("heq-run-calibrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("profile.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_heq-run"))
        .args(["calibrate", "--iters", "2", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = ComputeProfile::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(p.he.len(), heq_runtime::calibrate::CONTEXTS.len());
    assert!(p.protocol_ns_per_rot > 0.0 && p.silent_ns_per_rot > 0.0 && p.iknp_ns_per_rot > 0.0);
    let he = HeParams {
        degree: 4096,
        moduli_bits: vec![60, 49],
        plain_bits: 37,
    };
    let one = HeOps {
        requests: 1,
        products: 1,
        sums: 1,
        key_switches: 1,
        responses: 1,
    };
    let two = HeOps {
        requests: 2,
        products: 2,
        sums: 2,
        key_switches: 2,
        responses: 2,
    };
    assert!(p.he_ms(&he, one) > 0.0);
    assert!((p.he_ms(&he, two) - 2.0 * p.he_ms(&he, one)).abs() < 1e-9);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn calibrate_usage_errors_exit_2() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_heq-run"))
        .args(["calibrate", "--iters", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_heq-run"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("heq-run calibrate"));
}
