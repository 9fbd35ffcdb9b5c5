//! Graceful shutdown. On SIGTERM the service stops taking work, finishes
//! the requests and deliveries in flight within its bounds, flushes and
//! exits, at once when nothing is in flight. What was not delivered goes
//! out after a restart under the same id.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use common::{RecordingPlatform, Service, SignedWebhook, TestConfig};

/// Sends SIGTERM to the service; returns when it was sent.
fn send_sigterm(service: &Service) -> Instant {
    let pid = service.child.id().to_string();
    let sent = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    sent
}

/// Waits up to `limit` after `sent` for the service to exit; returns its
/// status and how long after `sent` it exited.
fn wait_for_exit(service: &mut Service, sent: Instant, limit: Duration) -> (ExitStatus, Duration) {
    loop {
        if let Some(status) = service.child.try_wait().unwrap() {
            return (status, sent.elapsed());
        }
        assert!(
            sent.elapsed() < limit,
            "the service did not exit within {limit:?} of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Opens a connection, sends `GET /healthz` on it and reads the answer,
/// leaving the connection open and idle, as a keep-alive client does.
fn idle_keep_alive_connection(service: &Service) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", service.config.port)).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut answer = [0u8; 512];
    let read = stream.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    stream
}

#[test]
fn sigterm_exits_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let platform = RecordingPlatform::start();
    let config = TestConfig::new(dir.path(), &platform.url);
    let mut service = Service::start(&config);

    // A chat whose invitations are delivered, so the delivery worker is idle.
    let webhook = SignedWebhook::chat_ended(&config.webhook_secrets[0], "c-quick-stop");
    assert_eq!(webhook.send(&service).0, 202);
    assert_eq!(platform.wait_for(2, Duration::from_secs(10)).len(), 2);
    let _idle = idle_keep_alive_connection(&service);

    let sent = send_sigterm(&service);
    let (status, took) = wait_for_exit(&mut service, sent, Duration::from_secs(10));
    assert!(took < Duration::from_secs(1), "the service took {took:?} to exit");
    assert_eq!(status.code(), Some(0), "the service exits cleanly: {status:?}");

    let service = Service::start(&config);
    assert_eq!(service.report()["chats"], 1, "the chat is stored after the stop");
}

#[test]
fn sigterm_finishes_a_request_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let platform = RecordingPlatform::start();
    let config = TestConfig::new(dir.path(), &platform.url);
    let mut service = Service::start(&config);

    // The request head and half of the body arrive before SIGTERM, the rest after it.
    let webhook = SignedWebhook::chat_ended(&config.webhook_secrets[0], "c-in-flight");
    let head = format!(
        "POST /webhooks/chat-ended HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         webhook-id: {}\r\nwebhook-timestamp: {}\r\nwebhook-signature: {}\r\nContent-Length: {}\r\n\r\n",
        webhook.id,
        webhook.timestamp,
        webhook.signature,
        webhook.body.len()
    );
    let (first, rest) = webhook.body.split_at(webhook.body.len() / 2);
    let mut stream = TcpStream::connect(("127.0.0.1", config.port)).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(first).unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let sent = send_sigterm(&service);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        service.child.try_wait().unwrap().is_none(),
        "the service exited with a request in flight"
    );
    stream.write_all(rest).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "a response during the stop closes its connection: {answer}"
    );

    let (status, took) = wait_for_exit(&mut service, sent, Duration::from_secs(10));
    assert!(
        took < Duration::from_secs(1),
        "the service took {took:?} to exit, 300 ms of which the request was held back"
    );
    assert_eq!(status.code(), Some(0), "the service exits cleanly: {status:?}");

    let service = Service::start(&config);
    assert_eq!(service.report()["chats"], 1, "the acknowledged chat is stored");
    assert!(
        platform.wait_for(2, Duration::from_secs(10)).len() >= 2,
        "both invitations of the acknowledged chat are delivered"
    );
}

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

    let sent = send_sigterm(&service);
    let (status, _) = wait_for_exit(&mut service, sent, Duration::from_secs(25));
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
