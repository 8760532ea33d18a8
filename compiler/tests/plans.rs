//! `plans/<model>.yaml` is `heqc explain --format yaml` of every quantized model in `models/`,
//! from the compilation's selection and, the same, from the plan read back. This test fails
//! when one is stale or missing; with `HEQC_UPDATE_PLANS=1` it rewrites them
//! (and removes plans whose model is gone):
//!
//! ```text
//! HEQC_UPDATE_PLANS=1 cargo test -p heqc --test plans
//! ```

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

fn plans_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plans")
}

#[test]
fn plans_are_up_to_date() {
    let update = std::env::var("HEQC_UPDATE_PLANS").is_ok_and(|v| v == "1");
    let dir = plans_dir();
    let mut stale = Vec::new();
    let mut wanted = BTreeSet::new();
    for model in common::quantized_models() {
        let stem = model.file_stem().unwrap().to_string_lossy().into_owned();
        let selection = heqc::compile_path(&model)
            .unwrap_or_else(|e| panic!("{stem}: {e}"))
            .selection;
        let yaml =
            heqc::explain::render_selection(&selection, heqc::explain::Format::Yaml).unwrap();
        // A plan read from disk is priced and searched anew: the same report.
        let bytes = heq_runtime::plan::write_plan_bytes(&selection.plan).unwrap();
        let read = heq_runtime::plan::read_plan_bytes(&bytes).unwrap();
        assert_eq!(
            heqc::explain::render(&read, heqc::explain::Format::Yaml).unwrap(),
            yaml,
            "{stem}: the report of the plan read back differs from the selection's"
        );
        let path = dir.join(format!("{stem}.yaml"));
        wanted.insert(path.clone());
        if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
            if update {
                std::fs::write(&path, yaml).unwrap();
            } else {
                stale.push(stem);
            }
        }
    }
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") && !wanted.contains(&path) {
            if update {
                std::fs::remove_file(&path).unwrap();
            } else {
                stale.push(path.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "stale plans (run `HEQC_UPDATE_PLANS=1 cargo test -p heqc --test plans`): {stale:?}"
    );
}
