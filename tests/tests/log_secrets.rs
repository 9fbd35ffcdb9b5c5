//! The whole study replay with the service logging at `trace`: no secret,
//! no server key, no token tag and no raw chat or parent id may appear in
//! its output.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::thread;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Service, TEST_SERVER_KEY, TestConfig, binary, free_port};

/// Whether `line` holds a questionnaire token with its tag:
/// `inv_` + 32 hex digits + `.` + 22 base64url characters.
fn contains_token_tag(line: &str) -> bool {
    let bytes = line.as_bytes();
    let mut start = 0;
    while let Some(offset) = line[start..].find("inv_") {
        let at = start + offset + 4;
        let hex_end = at + 32;
        let tag_end = hex_end + 1 + 22;
        if tag_end <= bytes.len()
            && bytes[at..hex_end].iter().all(|b| b.is_ascii_hexdigit())
            && bytes[hex_end] == b'.'
            && bytes[hex_end + 1..tag_end]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return true;
        }
        start = at;
    }
    false
}

#[test]
fn trace_logs_hold_no_secret_or_token() {
    let dir = tempfile::tempdir().unwrap();
    let platform_url = format!("http://127.0.0.1:{}", free_port());
    let config = TestConfig::new(dir.path(), &platform_url);

    let mut forbidden: Vec<String> = config
        .webhook_secrets
        .iter()
        .map(|secret| secret.trim_start_matches("whsec_").to_string())
        .collect();
    forbidden.push(config.signing_secret.trim_start_matches("whsec_").to_string());
    forbidden.push(config.platform_token.clone());
    forbidden.push(config.admin_token.clone());
    // Raw chat ids of the rebuilt study start with the date, e.g. c-20220701-0042.
    forbidden.push("c-2022".to_string());
    // Raw parent ids are `v-` and the chat's index; these ten are long
    // enough not to occur in other text.
    forbidden.extend((1000..1010).map(|index| format!("v-{index}")));
    forbidden.push(STANDARD.encode(TEST_SERVER_KEY));

    let mut serve = Command::new(binary());
    config.apply(&mut serve);
    let mut serve = serve
        .arg("serve")
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("alliance serve starts");
    let stderr = serve.stderr.take().unwrap();
    let patterns = forbidden.clone();
    let scanner = thread::spawn(move || {
        let mut lines = 0u64;
        let mut found: Vec<String> = Vec::new();
        let mut reader = BufReader::new(stderr);
        let mut buffer = Vec::new();
        while reader.read_until(b'\n', &mut buffer).unwrap_or(0) > 0 {
            let line = String::from_utf8_lossy(&buffer);
            lines += 1;
            let leaked = patterns.iter().any(|pattern| line.contains(pattern.as_str())) || contains_token_tag(&line);
            if leaked && found.len() < 5 {
                found.push(line.chars().take(300).collect());
            }
            buffer.clear();
        }
        (lines, found)
    });

    let service = Service {
        child: serve,
        config: config.clone(),
    };
    service.wait_healthy(std::time::Duration::from_secs(20));
    let mut demo = Command::new(binary());
    config.apply(&mut demo);
    let output = demo
        .args(["demo", "--exit", "--format", "json", "--target"])
        .arg(config.base_url())
        .output()
        .expect("alliance demo runs");
    assert!(
        output.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["pairs"], 218, "the whole study was replayed");

    drop(service);
    let (lines, found) = scanner.join().unwrap();
    assert!(lines > 100_000, "trace logging was on ({lines} lines)");
    assert!(
        found.is_empty(),
        "the log shows a secret, token or raw chat id:\n{}",
        found.join("\n")
    );
    let demo_log = String::from_utf8_lossy(&output.stderr);
    for pattern in &forbidden {
        assert!(
            !demo_log.contains(pattern.as_str()),
            "the demo's output shows {pattern}"
        );
    }
}

#[test]
fn token_tag_detector_works() {
    assert!(contains_token_tag(
        "GET /q/inv_0123456789abcdef0123456789abcdef.AbCdEfGhIjKlMnOpQrStUv HTTP"
    ));
    assert!(!contains_token_tag(
        "GET /q/inv_0123456789abcdef0123456789abcdef.<tag> HTTP"
    ));
    assert!(!contains_token_tag(
        "invitation inv_0123456789abcdef0123456789abcdef delivered"
    ));
}
