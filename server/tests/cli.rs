//! The command line as an operator meets it: `check-config` and `sign`.
//! Having an integration test here also makes `cargo test --workspace` build
//! the `alliance` binary that the end-to-end tests in `tests/` run.

use std::process::Command;

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
