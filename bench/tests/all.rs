//! `heq-bench all --quick --measure-plan heqc`: ResNet-20 W4A4 compiled with heqc and the
//! Cheetah baseline, heqc's plan run by two `heq-run` processes (the baseline's run is left to
//! the benchmark itself, to keep the test short); the JSON results hold both predictions, the
//! measured run (every row's bytes equal to the prediction, the output equal to the reference)
//! and a ratio above one, and the markdown table and the chart are written.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]

use heq_bench::results::{BEGIN, END, ModelResult, PlanKind, Summary};
use std::process::Command;

fn read<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> T {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn quick_run_measures_what_it_predicts() {
    let dir = std::env::temp_dir().join(format!("heq-bench-all-{}", std::process::id()));
    let (results, docs) = (dir.join("results"), dir.join("docs"));
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(
        docs.join("benchmarks.md"),
        format!("# Benchmarks\n\nprose\n\n{BEGIN}\nold\n{END}\n\nafter\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_heq-bench"))
        .args(["all", "--quick", "--measure-plan", "heqc", "--results"])
        .arg(&results)
        .arg("--docs")
        .arg(&docs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let summary: Summary = read(&results.join("summary.json"));
    assert_eq!(summary.models.len(), 1);
    let c = &summary.models[0];
    assert_eq!(c.model, "resnet20_w4a4");
    assert!(c.comm_ratio > 1.0, "ratio {}", c.comm_ratio);
    assert!(c.heqc.total_bytes() < c.cheetah.total_bytes());
    assert!(c.wan_ratio > 0.0 && c.lan_ratio > 0.0);
    assert_eq!(summary.networks.len(), 2);
    assert!(summary.machine.cores >= 1);

    for kind in PlanKind::ALL {
        let r: ModelResult = read(&results.join(format!("resnet20_w4a4_{}.json", kind.name())));
        assert_eq!(r.plan, kind);
        assert_eq!(r.linear_layers, 22);
        let p = &r.predicted;
        let Some(m) = r.measured.as_ref() else {
            assert_eq!(kind, PlanKind::Cheetah, "only heqc's plan is measured");
            assert!(p.total_bytes() > 0);
            continue;
        };
        assert_eq!(kind, PlanKind::Heqc);
        assert!(m.output_equals_reference);
        assert_eq!(m.max_deviation, 0.0, "{kind:?}");
        let roles: Vec<&str> = m.reports.iter().map(|r| r.role.as_str()).collect();
        assert_eq!(roles, ["server", "client"]);
        // Setup, every layer, the reveal and the OT extension, on both sides.
        let (server, client) = (&m.reports[0], &m.reports[1]);
        assert_eq!(m.rows_checked, (client.layers.len() + 1) * 2);
        assert_eq!(server.layers.len(), client.layers.len());
        for (s, c) in server.layers.iter().zip(&client.layers) {
            assert_eq!(c.measured, c.predicted, "{kind:?} {c:?}");
            assert_eq!(s.measured, s.predicted, "{kind:?} {s:?}");
        }
        for party in [server, client] {
            assert!(party.matches_prediction);
            let t = &party.total.measured;
            assert_eq!((t.bytes_up, t.bytes_down), (p.channel_up, p.channel_down));
            let ot = party.ot_extension.as_ref().unwrap();
            assert!(ot.is_measured());
            assert_eq!((ot.bytes_up, ot.bytes_down), (p.ot_up, p.ot_down));
            assert!(party.peak_rss_bytes.unwrap() > 0);
            assert!(party.wall_ms > 0.0);
        }
        assert!(m.wall_s > 0.0);
    }

    let md = std::fs::read_to_string(docs.join("benchmarks.md")).unwrap();
    assert!(md.starts_with("# Benchmarks\n\nprose\n\n"), "{md}");
    assert!(md.ends_with(&format!("{END}\n\nafter\n")), "{md}");
    assert!(!md.contains("\nold\n"));
    assert!(md.contains("| resnet20 | w4a4 | "), "{md}");
    let svg = std::fs::read_to_string(docs.join("benchmarks.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("resnet20 w4a4"));
    std::fs::remove_dir_all(&dir).unwrap();
}
