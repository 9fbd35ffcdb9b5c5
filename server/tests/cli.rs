//! The command line as an operator meets it: `check-config`, `sign`,
//! `purge` and the arguments of `backup`.
//! Having an integration test here also makes `cargo test --workspace` build
//! the `alliance` binary that the end-to-end tests in `tests/` run.

use std::process::Command;

use alliance::bench::fill::write_chat;
use alliance::questionnaire::Role;
use alliance::startup::now_millis;
use alliance::store::records::QueuedDelivery;
use alliance::store::{Store, queue_key};
use alliance::token::ServerKey;

const DAY: i64 = 24 * 3_600_000;

fn alliance() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_alliance"));
    for (key, _) in std::env::vars() {
        if key.starts_with("ALLIANCE_") {
            command.env_remove(key);
        }
    }
    command
}

#[test]
fn check_config_names_the_bad_setting() {
    let output = alliance()
        .arg("check-config")
        .env(
            "ALLIANCE_WEBHOOK_SECRETS",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        )
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ALLIANCE_WEBHOOK_SECRETS"), "{stderr}");
    assert!(stderr.contains("whsec_"), "{stderr}");
}

/// A start that fails for a missing setting leaves no secrets file behind.
#[test]
fn failed_serve_writes_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let output = alliance()
        .arg("serve")
        .env("ALLIANCE_LISTEN", "127.0.0.1:0")
        .env("ALLIANCE_DATA_DIR", &data_dir)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ALLIANCE_PLATFORM_URL"), "{stderr}");
    assert!(!data_dir.join("dev-secrets.toml").exists(), "secrets were written");
}

#[test]
fn check_config_refuses_public_address_without_https() {
    let output = alliance()
        .arg("check-config")
        .env("ALLIANCE_LISTEN", "0.0.0.0:8080")
        .env("ALLIANCE_PUBLIC_URL", "http://chat.example.nl")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("https"), "{stderr}");
}

#[test]
fn sign_prints_verifiable_headers() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    let body = dir.path().join("body.json");
    std::fs::write(&secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
    std::fs::write(&body, br#"{"test": 2432232314}"#).unwrap();

    let output = alliance()
        .args(["sign", "--id", "msg_p5jXN8AQM9LWM0D4loKWxJek", "--secret-file"])
        .arg(&secret)
        .arg("--body")
        .arg(&body)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("webhook-id: msg_p5jXN8AQM9LWM0D4loKWxJek"), "{stdout}");
    assert!(stdout.contains("webhook-signature: v1,"), "{stdout}");
    assert!(stdout.contains("curl"), "{stdout}");
    assert!(
        !stdout.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        "the secret is printed"
    );
}

/// `sign` reads the secret from the generated development secrets file and
/// the listen address from the configuration file.
#[test]
fn sign_reads_dev_secrets_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let (_, secret) = alliance::signature::WebhookSecret::generate();
    let secrets = dir.path().join("dev-secrets.toml");
    std::fs::write(
        &secrets,
        format!("admin_token = \"abc\"\nwebhook_secrets = \"{secret}\"\n"),
    )
    .unwrap();
    let config = dir.path().join("alliance.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:18080\"\n").unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, "{}").unwrap();

    let output = alliance()
        .args(["--config", config.to_str().unwrap(), "sign", "--id", "msg_1"])
        .arg("--secret-file")
        .arg(&secrets)
        .arg("--body")
        .arg(&body)
        .output()
        .unwrap();

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("http://127.0.0.1:18080/webhooks/chat-ended"),
        "{stdout}"
    );
    assert!(stdout.contains("webhook-signature: v1,"), "{stdout}");
}

#[test]
fn sign_rejects_a_pasted_signature() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    let body = dir.path().join("body.json");
    std::fs::write(&secret, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=").unwrap();
    std::fs::write(&body, b"{}").unwrap();
    let output = alliance()
        .args(["sign", "--id", "msg_1", "--secret-file"])
        .arg(&secret)
        .arg("--body")
        .arg(&body)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("signature"));
}

/// Writes three chats received 800 days ago, one of them with a dead
/// letter, and one received yesterday; returns the dead letter's invitation.
fn store_with_old_chats(dir: &std::path::Path) -> alliance::token::InvitationId {
    let store = Store::open(dir, 16 << 20).unwrap();
    let key = ServerKey::from_bytes(vec![7; 32]).unwrap().pseudonym_key();
    let now = now_millis();
    for number in 0..3 {
        write_chat(&store, &key, number, now - 800 * DAY).unwrap();
    }
    write_chat(&store, &key, 3, now - DAY).unwrap();
    store.flush_blocking().unwrap();

    let chat = store.chat(&key.pseudonym("chat", "fill-0")).unwrap().unwrap();
    let id = chat.parent_invitation;
    let delivery = QueuedDelivery {
        invitation_id: id.clone(),
        role: Role::Parent,
        chat_id: "c-raw-0".into(),
        participant_id: "v-raw-0".into(),
        locale: "nl".into(),
        attempts: 1,
        created_at: now - 800 * DAY,
        next_attempt_at: now - 800 * DAY,
        last_error: Some("platform answered 400 Bad Request".into()),
    };
    store
        .dead_letter(&queue_key(delivery.next_attempt_at, &id), &delivery)
        .unwrap();
    store.flush_blocking().unwrap();
    id
}

#[test]
fn purge_output_says_what_is_deleted_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let dead_letter = store_with_old_chats(dir.path());

    let output = alliance()
        .args(["purge", "--dry-run"])
        .env("ALLIANCE_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "retention period 730 days",
        "would delete these chats whole: 3",
        "chat records (pseudonym, end time, organization, topic, child age group, locale) with their report facts: 3",
        "questionnaires: 6, with",
        "dead letters, which hold the platform's raw chat and participant ids: 1",
        "deliveries still queued, which hold the same raw ids and are then not sent: 0",
        "kept: the totals per organization, topic, child age group and ISO week",
        "not touched: chats received on or after the cutoff",
        "dry run: nothing was changed",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }

    let output = alliance()
        .arg("purge")
        .env("ALLIANCE_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("deleted these chats whole: 3"), "{stdout}");
    assert!(stdout.contains("participant ids: 1"), "{stdout}");
    assert!(!stdout.contains("dry run"), "{stdout}");

    let store = Store::open(dir.path(), 16 << 20).unwrap();
    assert_eq!(store.chat_count(), 1, "only the recent chat is left");
    assert!(
        !store.is_dead_letter(&dead_letter).unwrap(),
        "the dead letter is deleted"
    );
}

#[test]
fn backup_rejects_a_directory_with_server() {
    let dir = tempfile::tempdir().unwrap();
    let output = alliance()
        .args(["backup", "--server", "http://127.0.0.1:9"])
        .arg(dir.path().join("copy"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot be used with --server"), "{stderr}");
    assert!(
        stderr.contains("ALLIANCE_BACKUP_DIR"),
        "names where the service writes: {stderr}"
    );
    assert!(stderr.contains("Leave out DIR"), "says what to do: {stderr}");
    assert!(!dir.path().join("copy").exists(), "nothing is written");
}

#[test]
fn backup_needs_a_directory_or_server() {
    let output = alliance().arg("backup").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("missing DIR"), "{stderr}");
    assert!(stderr.contains("--server URL"), "{stderr}");
}

#[test]
fn purge_output_to_closed_pipe_does_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    store_with_old_chats(dir.path());
    let mut purge = alliance();
    purge.args(["purge", "--dry-run"]).env("ALLIANCE_DATA_DIR", dir.path());
    assert_survives_closed_pipe(&mut purge);
}

/// Runs `command` with its output pipe closed before it writes, as
/// `| head -0` would, and checks that it ends normally without a panic.
fn assert_survives_closed_pipe(command: &mut Command) {
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.status.success(), "{stderr}");
}

#[test]
fn sign_output_to_closed_pipe_does_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("event.json");
    std::fs::write(&body, br#"{"type":"chat.ended"}"#).unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let mut sign = alliance();
    sign.args([
        "sign",
        "--id",
        "msg_1",
        "--url",
        "http://127.0.0.1:8080/webhooks/chat-ended",
    ])
    .arg("--secret-file")
    .arg(&secret)
    .arg("--body")
    .arg(&body);
    assert_survives_closed_pipe(&mut sign);
}

#[test]
fn log_json_writes_fatal_error_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let output = alliance()
        .args(["--log-json", "check-config"])
        .env("ALLIANCE_DATA_DIR", dir.path())
        .env_remove("ALLIANCE_PLATFORM_URL")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr
        .lines()
        .find(|line| line.contains("ALLIANCE_PLATFORM_URL"))
        .unwrap_or_else(|| panic!("no line names the missing setting:\n{stderr}"));
    let event: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
    assert_eq!(event["level"], "ERROR");
    assert!(event["fields"]["error"].as_str().unwrap().contains("is not set"));
}
