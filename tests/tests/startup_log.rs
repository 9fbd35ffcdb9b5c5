//! What the service logs at start: one line with every optional feature
//! on or off, and the result of the first retention purge, also when it
//! purged nothing.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{RecordingPlatform, TestConfig, binary};

/// Starts `alliance serve` with `extra` settings at log level info and
/// returns the first line that contains each of `wanted`, in order.
fn first_lines(extra: &[(&str, &str)], wanted: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let platform = RecordingPlatform::start();
    let mut config = TestConfig::new(dir.path(), &platform.url);
    config.extra = extra
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    let mut command = Command::new(binary());
    command.arg("serve").stdout(Stdio::null()).stderr(Stdio::piped());
    config.apply(&mut command);
    command.env("RUST_LOG", "info");
    let mut child = command.spawn().unwrap();

    let (sender, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });

    let mut found: Vec<Option<String>> = vec![None; wanted.len()];
    let started = Instant::now();
    while found.iter().any(Option::is_none) && started.elapsed() < Duration::from_secs(20) {
        let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        for (slot, text) in found.iter_mut().zip(wanted) {
            if slot.is_none() && line.contains(text) {
                *slot = Some(line.clone());
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    found
        .into_iter()
        .zip(wanted)
        .map(|(line, text)| line.unwrap_or_else(|| panic!("no log line contains {text:?}")))
        .collect()
}

#[test]
fn start_logs_features_that_are_off() {
    let lines = first_lines(&[], &["optional features", "retention purge finished"]);
    assert!(
        lines[0].contains(
            "optional features: per-nurse figures off (ALLIANCE_PER_NURSE_FIGURES), \
             nurse feedback off (ALLIANCE_NURSE_FEEDBACK)"
        ),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains("chats=0"), "{}", lines[1]);
    assert!(lines[1].contains("retention_days=730"), "{}", lines[1]);
}

#[test]
fn start_logs_features_that_are_on() {
    let lines = first_lines(
        &[
            ("ALLIANCE_PER_NURSE_FIGURES", "true"),
            ("ALLIANCE_RETENTION_DAYS", "30"),
        ],
        &["optional features", "retention purge finished"],
    );
    assert!(lines[0].contains("per-nurse figures on"), "{}", lines[0]);
    assert!(lines[0].contains("nurse feedback off"), "{}", lines[0]);
    assert!(lines[1].contains("chats=0"), "{}", lines[1]);
    assert!(lines[1].contains("retention_days=30"), "{}", lines[1]);
}

/// A start that cannot listen on its port must exit before its delivery
/// worker sends a queued invitation.
#[test]
fn failed_listen_sends_no_invitation() {
    let dir = tempfile::tempdir().unwrap();
    let platform = RecordingPlatform::start();
    let config = TestConfig::new(dir.path(), &platform.url);
    // The first attempts fail, so both invitations stay queued.
    platform.script.lock().unwrap().extend([503; 6]);
    let mut service = common::Service::start(&config);
    service.wait_healthy(Duration::from_secs(20));
    let (status, _) = common::SignedWebhook::chat_ended(&config.webhook_secrets[0], "listen-1").send(&service);
    assert_eq!(status, 202);
    assert_eq!(platform.wait_for(2, Duration::from_secs(20)).len(), 2);
    service.kill();
    let attempts = platform.requests().len();
    // The retries are due 0.25 to 0.5 s after the failed attempts.
    std::thread::sleep(Duration::from_secs(1));

    let port_holder = std::net::TcpListener::bind(("127.0.0.1", config.port)).expect("port free after the kill");
    let mut command = Command::new(binary());
    config.apply(&mut command);
    let output = command
        .arg("serve")
        .env("RUST_LOG", "info")
        .output()
        .expect("alliance serve runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    // The process may exit before a started worker's request arrives, so
    // the log shows whether the worker and the purge started at all.
    for started in ["delivery worker started", "retention purge"] {
        assert!(
            !stderr.contains(started),
            "{started:?} in a start that could not listen:\n{stderr}"
        );
    }
    assert_eq!(
        platform.requests().len(),
        attempts,
        "a start that could not listen sent invitations"
    );

    drop(port_holder);
    let service = common::Service::start(&config);
    service.wait_healthy(Duration::from_secs(20));
    assert!(
        platform.wait_for(attempts + 2, Duration::from_secs(20)).len() >= attempts + 2,
        "the queued invitations go out once the service listens"
    );
}
