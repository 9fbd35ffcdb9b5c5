//! Backups taken while the service runs restore into a store whose report
//! equals the original's.

mod common;

use std::process::Command;
use std::thread;
use std::time::Duration;

use common::{RecordingPlatform, Service, SignedWebhook, TestConfig, binary, client};

fn without_time(mut report: serde_json::Value) -> serde_json::Value {
    report.as_object_mut().unwrap().remove("generated_at");
    report
}

fn answer_all(service: &Service, token: &str, rating: &str) {
    for item in 1..=11 {
        let response = client()
            .put(service.url(&format!("/api/questionnaires/{token}/items/{item}")))
            .json(&serde_json::json!({ "rating": rating }))
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
    }
}

fn backup(service: &Service) -> std::path::PathBuf {
    let response = client()
        .post(service.url("/api/admin/backup"))
        .bearer_auth(&service.config.admin_token)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().unwrap();
    std::path::PathBuf::from(body["dir"].as_str().unwrap())
}

/// Settings for a store in `root/data` whose backups go to `root/backups`.
fn config_with_backups(root: &std::path::Path, platform: &RecordingPlatform) -> TestConfig {
    let mut config = TestConfig::new(&root.join("data"), &platform.url);
    config.extra = vec![("ALLIANCE_BACKUP_DIR".into(), root.join("backups").display().to_string())];
    config
}

fn restore(config: &TestConfig, backup_dir: &std::path::Path) -> std::process::Output {
    let mut command = Command::new(binary());
    config.apply(&mut command);
    command.arg("restore").arg(backup_dir).output().unwrap()
}

#[test]
fn backup_under_load_restores_the_same_report() {
    let root = tempfile::tempdir().unwrap();
    let platform = RecordingPlatform::start();
    let config = config_with_backups(root.path(), &platform);
    let service = Service::start(&config);
    let secret = config.webhook_secrets[0].clone();

    for chat in 0..10 {
        assert_eq!(
            SignedWebhook::chat_ended(&secret, &format!("c-base-{chat}"))
                .send(&service)
                .0,
            202
        );
    }
    let requests = platform.wait_for(20, Duration::from_secs(10));
    for request in requests.iter().take(6) {
        answer_all(
            &service,
            request.body["questionnaire"]["token"].as_str().unwrap(),
            "good",
        );
    }

    let base_url = service.url("");
    let load_secret = secret.clone();
    let load = thread::spawn(move || {
        let target = base_url.trim_end_matches('/').to_string();
        for chat in 0..150 {
            let webhook = SignedWebhook::chat_ended(&load_secret, &format!("c-load-{chat}"));
            let response = client()
                .post(format!("{target}/webhooks/chat-ended"))
                .header("content-type", "application/json")
                .header("webhook-id", &webhook.id)
                .header("webhook-timestamp", &webhook.timestamp)
                .header("webhook-signature", &webhook.signature)
                .body(webhook.body.clone())
                .send()
                .unwrap();
            assert_eq!(response.status(), 202);
        }
    });
    thread::sleep(Duration::from_millis(100));
    let during_load = backup(&service);
    load.join().unwrap();

    let final_backup = backup(&service);
    let original = without_time(service.report());
    drop(service);

    let restored_config = TestConfig {
        data_dir: root.path().join("restored"),
        port: common::free_port(),
        ..config.clone()
    };
    let output = restore(&restored_config, &final_backup);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let restored = Service::start(&restored_config);
    assert_eq!(
        without_time(restored.report()),
        original,
        "the restored report equals the original"
    );
    drop(restored);

    let partial_config = TestConfig {
        data_dir: root.path().join("partial"),
        port: common::free_port(),
        ..config.clone()
    };
    let output = restore(&partial_config, &during_load);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let partial = Service::start(&partial_config);
    let report = partial.report();
    let chats = report["chats"].as_u64().unwrap();
    assert!((10..=160).contains(&chats), "the backup under load holds {chats} chats");
    assert_eq!(
        report["questionnaires"]["parent"]["invited"], chats,
        "every chat in it has its invitations"
    );
}

#[test]
fn restore_refuses_a_used_data_directory() {
    let root = tempfile::tempdir().unwrap();
    let platform = RecordingPlatform::start();
    let config = config_with_backups(root.path(), &platform);
    let service = Service::start(&config);
    let backup_dir = backup(&service);

    let output = restore(&config, &backup_dir);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not empty"));

    let mut offline = Command::new(binary());
    config.apply(&mut offline);
    let output = offline
        .arg("backup")
        .arg(root.path().join("cli-backup"))
        .output()
        .unwrap();
    assert!(!output.status.success(), "the store is held by the running service");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--server"));

    let output = restore(&config, root.path());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a finished backup"));
}

#[test]
fn simultaneous_backups_never_fail_or_share_a_directory() {
    let root = tempfile::tempdir().unwrap();
    let platform = RecordingPlatform::start();
    let config = config_with_backups(root.path(), &platform);
    let service = Service::start(&config);

    for _ in 0..3 {
        let answers: Vec<(u16, serde_json::Value)> = thread::scope(|scope| {
            let requests: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        let response = client()
                            .post(service.url("/api/admin/backup"))
                            .bearer_auth(&service.config.admin_token)
                            .send()
                            .unwrap();
                        (response.status().as_u16(), response.json().unwrap())
                    })
                })
                .collect();
            requests.into_iter().map(|request| request.join().unwrap()).collect()
        });
        for (status, body) in &answers {
            assert!(
                *status == 200 || (*status == 409 && body["error"] == "backup_in_progress"),
                "{status} {body}"
            );
        }
        assert!(answers.iter().any(|(status, _)| *status == 200), "{answers:?}");
    }

    let written: Vec<_> = std::fs::read_dir(root.path().join("backups"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    for dir in &written {
        assert!(
            dir.join("alliance-backup.json").is_file(),
            "{} is not finished",
            dir.display()
        );
    }
}

#[test]
fn backup_through_server_names_its_directory() {
    let root = tempfile::tempdir().unwrap();
    let platform = RecordingPlatform::start();
    let config = config_with_backups(root.path(), &platform);
    let backups = root.path().join("backups");
    let service = Service::start(&config);
    let webhook = SignedWebhook::chat_ended(&config.webhook_secrets[0], "c-backup-cli");
    assert_eq!(webhook.send(&service).0, 202);

    let mut command = Command::new(binary());
    config.apply(&mut command);
    let output = command.args(["backup", "--server", &service.url("")]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("wrote a backup of 1 chats to"), "{stdout}");
    let written: Vec<_> = std::fs::read_dir(&backups).unwrap().flatten().collect();
    assert_eq!(written.len(), 1, "one backup directory under ALLIANCE_BACKUP_DIR");
    let path = written[0].path();
    assert!(
        stdout.contains(&path.display().to_string()),
        "the output names {}: {stdout}",
        path.display()
    );

    let mut command = Command::new(binary());
    config.apply(&mut command);
    let output = command
        .args(["backup", "--server", &service.url("")])
        .arg(root.path().join("ignored"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "DIR with --server is rejected");
    assert!(!root.path().join("ignored").exists());
    assert_eq!(std::fs::read_dir(&backups).unwrap().count(), 1, "no second backup");
}
