//! Graceful shutdown: on SIGTERM the service stops taking work, lets the
//! deliveries in flight finish within its bound, flushes and exits; what
//! was not delivered goes out after a restart under the same id.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{RecordingPlatform, Service, SignedWebhook, TestConfig};

#[test]
fn sigterm_stops_cleanly_and_keeps_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let platform = RecordingPlatform::start();
    // The platform is down at first: every delivery gets 503 and waits in the queue.
    *platform.script.lock().unwrap() = vec![503; 6];
    let mut config = TestConfig::new(dir.path(), &platform.url);
    config.extra = vec![("ALLIANCE_BREAKER_THRESHOLD".into(), "1000".into())];
    let mut service = Service::start(&config);

    for chat in 0..3 {
        let webhook = SignedWebhook::chat_ended(&config.webhook_secrets[0], &format!("c-term-{chat}"));
        assert_eq!(webhook.send(&service).0, 202);
    }
    platform.wait_for(6, Duration::from_secs(10));

    let pid = service.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = service.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "the service did not stop within 25 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "the service exits cleanly on SIGTERM: {status:?}");

    // After a restart the queued invitations are delivered under the same ids.
    let first_keys: std::collections::HashSet<String> = platform
        .requests()
        .iter()
        .map(|request| request.headers["idempotency-key"].clone())
        .collect();
    assert_eq!(first_keys.len(), 6, "six invitations were tried before the stop");
    service = Service::start(&config);
    let started = Instant::now();
    loop {
        let accepted: std::collections::HashSet<String> = platform
            .requests()
            .iter()
            .skip(6)
            .map(|request| request.headers["idempotency-key"].clone())
            .collect();
        if accepted.len() == 6 {
            assert_eq!(accepted, first_keys, "the same idempotency keys after the restart");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "only {} delivered after the restart",
            accepted.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(service);
}
