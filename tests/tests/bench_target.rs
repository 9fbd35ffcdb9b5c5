//! `alliance bench --target` loads a running service whose platform URL has
//! a path, as real platform URLs do (`…/api`): the bench's own platform must
//! take the messages under that path, or every invitation is dead-lettered.

mod common;

use std::process::{Command, Stdio};

use common::{Service, TestConfig, free_port};

#[test]
fn bench_target_honours_platform_path() {
    let dir = tempfile::tempdir().unwrap();
    let platform_url = format!("http://127.0.0.1:{}/api", free_port());
    let config = TestConfig::new(dir.path(), &platform_url);
    let service = Service::start(&config);

    let mut bench = Command::new(common::binary());
    config.apply(&mut bench);
    let output = bench
        .args(["bench", "--requests", "200", "--rounds", "1", "--target"])
        .arg(config.base_url())
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .output()
        .expect("alliance bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed: {stdout}\n{stderr}");
    assert!(
        stdout.contains("platform accepted 400 invitations, rejected 0 requests"),
        "every invitation reached the bench's platform: {stdout}"
    );

    let metrics = common::client()
        .get(service.url("/metrics"))
        .bearer_auth(&config.admin_token)
        .send()
        .expect("metrics")
        .text()
        .expect("metrics body");
    assert!(
        metrics.contains("alliance_deliveries_dead_total 0"),
        "no invitation was dead-lettered: {metrics}"
    );
}
