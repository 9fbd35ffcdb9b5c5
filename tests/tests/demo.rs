//! `alliance demo` replays the 2022 study through real HTTP and reproduces
//! every published number.

mod common;

use std::process::Command;

#[test]
fn demo_reproduces_the_published_study() {
    let dir = tempfile::tempdir().unwrap();
    let summary_path = dir.path().join("summary.json");
    let mut command = Command::new(common::binary());
    for (key, _) in std::env::vars() {
        if key.starts_with("ALLIANCE_") {
            command.env_remove(key);
        }
    }
    let output = command
        .args(["demo", "--exit", "--format", "json", "--summary"])
        .arg(&summary_path)
        .env("RUST_LOG", "warn")
        .output()
        .expect("alliance demo runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed: {stderr}");

    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("the report is JSON");
    common::study::assert_report_matches_publication(&report);

    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    assert_eq!(summary["fingerprint"], 9_953_281, "fingerprint of the rebuilt dataset");
    assert_eq!(
        summary["platform"]["accepted"],
        8527 * 2,
        "every invitation delivered once"
    );
    assert_eq!(summary["platform"]["invitations_with_several_keys"], 0);
    assert_eq!(
        summary["platform"]["rejected"], 0,
        "the platform rejected a request: {summary}"
    );
}
