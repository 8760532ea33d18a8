//! The README's table of supported operators is `heqc ops` verbatim. This test fails when it is
//! stale; `HEQC_UPDATE_README=1 cargo test -p heqc --test ops` rewrites it.

use std::path::PathBuf;
use std::process::Command;

const BEGIN: &str = "<!-- heqc ops: begin -->\n";
const END: &str = "<!-- heqc ops: end -->";

#[test]
fn readme_table_is_heqc_ops() {
    let out = Command::new(env!("CARGO_BIN_EXE_heqc"))
        .arg("ops")
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    for op in [
        "Conv",
        "QLinearConv",
        "QGemm",
        "BatchNormalization",
        "MaxPool",
        "Concat",
    ] {
        assert!(
            table.contains(&format!("| {op} |")),
            "{op} missing:\n{table}"
        );
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let start = readme.find(BEGIN).expect("README has the begin marker") + BEGIN.len();
    let end = readme.find(END).expect("README has the end marker");
    if readme[start..end] == table {
        return;
    }
    if std::env::var("HEQC_UPDATE_README").is_ok_and(|v| v == "1") {
        std::fs::write(
            &path,
            format!("{}{table}{}", &readme[..start], &readme[end..]),
        )
        .unwrap();
    } else {
        panic!(
            "README.md's operator table is stale; run HEQC_UPDATE_README=1 cargo test -p heqc --test ops"
        );
    }
}
