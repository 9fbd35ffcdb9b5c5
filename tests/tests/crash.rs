//! Crash safety of the main path: the study is replayed against `alliance
//! serve`, the service is killed with SIGKILL twice (while chats arrive and
//! while answers arrive) and restarted on the same store; the final report
//! still equals the publication and no invitation was sent under two keys.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{Service, TestConfig, client, free_port};

fn chats_stored(service: &Service) -> Option<u64> {
    let text = client()
        .get(service.url("/metrics"))
        .bearer_auth(&service.config.admin_token)
        .send()
        .ok()?
        .text()
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("alliance_chats_stored ")?.trim().parse().ok())
}

#[test]
fn replay_survives_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let platform_url = format!("http://127.0.0.1:{}", free_port());
    let config = TestConfig::new(dir.path(), &platform_url);
    let mut service = Service::start(&config);

    let summary_path = dir.path().join("summary.json");
    let mut demo = Command::new(common::binary());
    config.apply(&mut demo);
    let mut demo = demo
        .args(["demo", "--exit", "--format", "json", "--target"])
        .arg(config.base_url())
        .arg("--summary")
        .arg(&summary_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("alliance demo starts");

    let (lines, received) = mpsc::channel();
    let stderr = demo.stderr.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let stdout = demo.stdout.take().unwrap();
    let output = thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut BufReader::new(stdout), &mut text).unwrap();
        text
    });

    // First kill: while chat-ended webhooks arrive.
    let started = Instant::now();
    while chats_stored(&service).unwrap_or(0) < 3000 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the replay did not reach 3000 chats"
        );
        thread::sleep(Duration::from_millis(100));
    }
    service.kill();
    thread::sleep(Duration::from_millis(300));
    service = Service::start(&config);

    // Second kill: while the questionnaires are answered.
    let mut log = Vec::new();
    loop {
        let line = received
            .recv_timeout(Duration::from_secs(180))
            .expect("the demo reports its steps");
        let answering = line.starts_with("Step 3 of 3");
        log.push(line);
        if answering {
            break;
        }
    }
    thread::sleep(Duration::from_secs(3));
    service.kill();
    thread::sleep(Duration::from_millis(300));
    service = Service::start(&config);

    let status = demo.wait().unwrap();
    log.extend(received.try_iter());
    assert!(status.success(), "demo failed:\n{}", log.join("\n"));

    let report: serde_json::Value = serde_json::from_str(&output.join().unwrap()).expect("report JSON");
    common::study::assert_report_matches_publication(&report);
    assert_eq!(
        service.report()["pairs"],
        218,
        "the restarted service reports the same pairs"
    );

    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    assert_eq!(
        summary["platform"]["accepted"],
        8527 * 2,
        "every invitation reached the platform: {summary}"
    );
    assert_eq!(summary["platform"]["invitations_with_several_keys"], 0, "{summary}");
    assert!(
        summary["client_retries"].as_u64().unwrap() > 0,
        "the kills were not noticed: {summary}"
    );
}
