//! Chatwoot, both ways, through the real binary: Chatwoot-shaped account
//! webhooks in, the parent's message and the nurse's private note out to a
//! simulated Chatwoot API, and reconciliation when a webhook is lost.

mod common;

use std::time::Duration;

use common::{RecordingPlatform, Service, TestConfig, client, now_secs};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "chatwoot-webhook-secret-for-tests";
const ACCOUNT: u64 = 3;

fn start(reconcile_seconds: u64) -> (tempfile::TempDir, RecordingPlatform, Service) {
    start_with(reconcile_seconds, &[])
}

/// Starts the service for Chatwoot with more settings, as `(variable, value)`.
fn start_with(reconcile_seconds: u64, extra: &[(&str, &str)]) -> (tempfile::TempDir, RecordingPlatform, Service) {
    let dir = tempfile::tempdir().unwrap();
    let platform = RecordingPlatform::start();
    let mut config = TestConfig::new(dir.path(), &platform.url);
    config.extra = vec![
        ("ALLIANCE_PLATFORM_KIND".into(), "chatwoot".into()),
        ("ALLIANCE_CHATWOOT_WEBHOOK_SECRET".into(), SECRET.into()),
        ("ALLIANCE_CHATWOOT_ACCOUNT_ID".into(), ACCOUNT.to_string()),
        (
            "ALLIANCE_CHATWOOT_RECONCILE_SECONDS".into(),
            reconcile_seconds.to_string(),
        ),
    ];
    config
        .extra
        .extend(extra.iter().map(|(key, value)| (key.to_string(), value.to_string())));
    let service = Service::start(&config);
    (dir, platform, service)
}

/// A conversation object shaped like Chatwoot's webhook and API payloads.
fn conversation(display_id: u64, status: &str, timestamp: i64) -> Value {
    json!({
        "id": display_id,
        "account_id": ACCOUNT,
        "inbox_id": 1,
        "status": status,
        "timestamp": timestamp,
        "created_at": timestamp - 600,
        "meta": {
            "sender": { "id": 981, "type": "contact" },
            "assignee": { "id": 17, "type": "user" }
        },
        "custom_attributes": { "organization": "GGD Regio Utrecht", "topic": "voeding" },
        "labels": ["child_age_group:0-5"],
        "messages": []
    })
}

fn status_changed(display_id: u64, status: &str) -> Value {
    let mut payload = conversation(display_id, status, now_secs());
    payload["event"] = json!("conversation_status_changed");
    payload
}

fn send(service: &Service, payload: &Value, delivery: &str, secret: &str) -> (u16, Value) {
    let body = serde_json::to_vec(payload).unwrap();
    let timestamp = now_secs();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&body);
    let signature: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let response = client()
        .post(service.url("/webhooks/chatwoot"))
        .header("content-type", "application/json")
        .header("x-chatwoot-signature", format!("sha256={signature}"))
        .header("x-chatwoot-timestamp", timestamp.to_string())
        .header("x-chatwoot-delivery", delivery)
        .body(body)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

/// Waits up to 10 s for the two invitations of a conversation and checks them.
fn assert_invitations_posted(platform: &RecordingPlatform, display_id: u64) {
    let path = format!("/api/v1/accounts/{ACCOUNT}/conversations/{display_id}/messages");
    let started = std::time::Instant::now();
    let posted = loop {
        let posted: Vec<_> = platform.requests().into_iter().filter(|r| r.path == path).collect();
        if posted.len() >= 2 || started.elapsed() > Duration::from_secs(10) {
            break posted;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(posted.len(), 2, "two posts to {path}");
    for request in &posted {
        assert_eq!(request.headers["api_access_token"], "test-platform-token-0123456789");
        assert_eq!(request.body["message_type"], "outgoing");
        assert!(
            request.body["content"].as_str().unwrap().contains("/q/inv_"),
            "{}",
            request.body
        );
    }
    let private: Vec<bool> = posted.iter().map(|r| r.body["private"].as_bool().unwrap()).collect();
    assert!(private.contains(&true), "the nurse's invitation is a private note");
    assert!(private.contains(&false), "the parent's invitation is a public message");
}

#[test]
fn resolved_conversation_invites_parent_and_nurse() {
    let (_dir, platform, service) = start(3600);

    let (status, body) = send(&service, &status_changed(42, "resolved"), "delivery-1", SECRET);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "accepted");
    assert_invitations_posted(&platform, 42);

    let report = service.report();
    assert_eq!(report["chats"], 1);
    assert_eq!(report["questionnaires"]["parent"]["invited"], 1);
}

#[test]
fn repeats_and_reopened_conversations_invite_once() {
    let (_dir, platform, service) = start(3600);
    assert_eq!(
        send(&service, &status_changed(7, "resolved"), "delivery-a", SECRET).0,
        200
    );

    let (status, body) = send(&service, &status_changed(7, "resolved"), "delivery-a", SECRET);
    assert_eq!(
        (status, body["status"].clone()),
        (200, json!("duplicate")),
        "same delivery again"
    );
    assert_eq!(
        send(&service, &status_changed(7, "open"), "delivery-b", SECRET).1["status"],
        "ignored"
    );
    let (status, body) = send(&service, &status_changed(7, "resolved"), "delivery-c", SECRET);
    assert_eq!(
        (status, body["status"].clone()),
        (200, json!("duplicate")),
        "resolved again after reopening"
    );

    platform.wait_for(2, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(platform.requests().len(), 2, "one message and one note in all");
}

#[test]
fn other_events_and_accounts_are_ignored() {
    let (_dir, platform, service) = start(3600);
    let mut message = status_changed(8, "resolved");
    message["event"] = json!("message_created");
    assert_eq!(send(&service, &message, "d-1", SECRET).1["status"], "ignored");

    let mut other_account = status_changed(9, "resolved");
    other_account["account_id"] = json!(ACCOUNT + 1);
    assert_eq!(send(&service, &other_account, "d-2", SECRET).1["status"], "ignored");

    std::thread::sleep(Duration::from_millis(500));
    assert!(platform.requests().is_empty(), "nothing was posted");
    assert_eq!(service.report()["chats"], 0);
}

#[test]
fn webhook_without_account_is_ignored() {
    let (_dir, platform, service) = start(3600);
    let mut other_account = status_changed(20, "resolved");
    other_account["account_id"] = json!(ACCOUNT + 1);
    let (other_status, other_body) = send(&service, &other_account, "d-20", SECRET);

    let mut no_account = status_changed(21, "resolved");
    no_account.as_object_mut().unwrap().remove("account_id");
    let (status, body) = send(&service, &no_account, "d-21", SECRET);

    assert_eq!(status, other_status, "{body}");
    assert_eq!(body["status"], other_body["status"], "{body}");
    assert_eq!(body["error"], other_body["error"], "{body}");
    assert_eq!(body["status"], "ignored", "{body}");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("account_id"),
        "the reason names the missing field: {body}"
    );

    std::thread::sleep(Duration::from_millis(500));
    assert!(platform.requests().is_empty(), "nothing was posted");
    assert_eq!(service.report()["chats"], 0);
}

#[test]
fn wrong_chatwoot_signature_is_rejected() {
    let (_dir, _platform, service) = start(3600);
    let (status, body) = send(&service, &status_changed(10, "resolved"), "d-3", "not-the-secret");
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_signature");
    assert!(!body.to_string().contains(SECRET), "the error reveals the secret");
    assert_eq!(service.report()["chats"], 0);
}

#[test]
fn reconciliation_invites_when_the_webhook_is_lost() {
    let (_dir, platform, service) = start(1);
    let old = conversation(11, "resolved", now_secs() - 86_400);
    let lost = conversation(12, "resolved", now_secs() + 5);
    *platform.conversations.lock().unwrap() = json!({ "data": { "meta": {}, "payload": [lost, old] } });

    assert_invitations_posted(&platform, 12);
    std::thread::sleep(Duration::from_millis(2500));
    let posted_to_old = platform
        .requests()
        .iter()
        .filter(|r| r.path.contains("/conversations/11/"))
        .count();
    assert_eq!(
        posted_to_old, 0,
        "a conversation resolved before the first start is not invited"
    );

    // The webhook arriving late changes nothing.
    let (status, body) = send(&service, &status_changed(12, "resolved"), "late", SECRET);
    assert_eq!((status, body["status"].clone()), (200, json!("duplicate")));
    assert_eq!(service.report()["chats"], 1);
}

#[test]
fn reconciliation_skips_conversations_resolved_before_first_start() {
    // Inside the 300 s overlap that later polls look back over.
    let resolved_before_start = now_secs() - 250;
    let (_dir, platform, service) = start(1);
    let after_start = now_secs();
    let early = conversation(13, "resolved", resolved_before_start);
    let lost = conversation(14, "resolved", after_start + 5);
    *platform.conversations.lock().unwrap() = json!({ "data": { "meta": {}, "payload": [lost, early] } });

    assert_invitations_posted(&platform, 14);
    std::thread::sleep(Duration::from_millis(2500));
    let posted_to_early = platform
        .requests()
        .iter()
        .filter(|r| r.path.contains("/conversations/13/"))
        .count();
    assert_eq!(
        posted_to_early, 0,
        "a conversation resolved 250 s before the first start is not invited"
    );

    // Resolved after the first start but before the last poll: the overlap
    // of later polls still finds it.
    let missed = conversation(15, "resolved", after_start);
    platform.conversations.lock().unwrap()["data"]["payload"]
        .as_array_mut()
        .unwrap()
        .push(missed);
    assert_invitations_posted(&platform, 15);
    assert_eq!(service.report()["chats"], 2);
}

/// Returns a resolved conversation without an assignee, as Chatwoot sends it.
fn unassigned(display_id: u64) -> Value {
    let mut payload = status_changed(display_id, "resolved");
    payload["meta"]["assignee"] = Value::Null;
    payload
}

/// Returns the questionnaire token of a conversation's post: the nurse's
/// private note when `private`, otherwise the parent's message.
fn posted_token(platform: &RecordingPlatform, display_id: u64, private: bool) -> String {
    assert_invitations_posted(platform, display_id);
    let path = format!("/api/v1/accounts/{ACCOUNT}/conversations/{display_id}/messages");
    let post = platform
        .requests()
        .into_iter()
        .find(|r| r.path == path && r.body["private"] == private)
        .unwrap();
    let content = post.body["content"].as_str().unwrap().to_string();
    let (_, link_tail) = content
        .split_once("/q/")
        .expect("the post carries a questionnaire link");
    link_tail.split_whitespace().next().unwrap().to_string()
}

/// Returns the console code shown on the hosted questionnaire page of `token`, if any.
fn console_code_on(service: &Service, token: &str) -> Option<String> {
    let page = client().get(service.url(&format!("/q/{token}"))).send().unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().unwrap();
    let (_, block) = html.split_once("class=\"console-code\"")?;
    let (_, code_tail) = block.split_once("<code>")?;
    let (code, _) = code_tail.split_once("</code>")?;
    Some(code.to_string())
}

fn exchange_code(service: &Service, code: &str, conversation_id: u64) -> (u16, Value) {
    let response = client()
        .post(service.url("/api/console/token"))
        .header("content-type", "application/json")
        .json(&json!({ "code": code, "conversation_id": conversation_id.to_string() }))
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

/// Answers all 11 items of a questionnaire with `good` and submits it.
fn answer_all_good(service: &Service, token: &str) {
    for item in 1..=11 {
        let response = client()
            .put(service.url(&format!("/api/questionnaires/{token}/items/{item}")))
            .json(&json!({ "rating": "good" }))
            .send()
            .unwrap();
        assert_eq!(response.status(), 200, "item {item}");
    }
    let response = client()
        .post(service.url(&format!("/api/questionnaires/{token}/submit")))
        .json(&json!({}))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200, "submit");
}

#[test]
fn unassigned_conversations_get_no_console_code() {
    let (_dir, platform, service) = start(3600);
    for display_id in [110, 111] {
        let (status, body) = send(&service, &unassigned(display_id), &format!("d-{display_id}"), SECRET);
        assert_eq!((status, body["status"].clone()), (200, json!("accepted")), "{body}");
    }
    assert_eq!(send(&service, &status_changed(112, "resolved"), "d-112", SECRET).0, 200);
    let nurse_110 = posted_token(&platform, 110, true);
    let nurse_111 = posted_token(&platform, 111, true);
    let nurse_112 = posted_token(&platform, 112, true);

    // A code on the page of 110 would open 111 too, if the two shared one.
    assert_eq!(
        console_code_on(&service, &nurse_110),
        None,
        "no code for unassigned 110"
    );
    assert_eq!(
        console_code_on(&service, &nurse_111),
        None,
        "no code for unassigned 111"
    );

    let code = console_code_on(&service, &nurse_112).expect("the assigned nurse's page shows her code");
    let (status, body) = exchange_code(&service, &code, 112);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token"], json!(nurse_112));
    for display_id in [110, 111] {
        let (status, body) = exchange_code(&service, &code, display_id);
        assert_eq!(status, 404, "nurse code for unassigned {display_id}: {body}");
    }
}

#[test]
fn per_nurse_figures_keep_unassigned_chats_apart() {
    let (_dir, platform, service) = start_with(
        3600,
        &[("ALLIANCE_PER_NURSE_FIGURES", "true"), ("ALLIANCE_MIN_CELL_SIZE", "1")],
    );
    for display_id in [120, 121] {
        assert_eq!(
            send(&service, &unassigned(display_id), &format!("d-{display_id}"), SECRET).0,
            200
        );
    }
    assert_eq!(send(&service, &status_changed(122, "resolved"), "d-122", SECRET).0, 200);
    for display_id in [120, 121, 122] {
        answer_all_good(&service, &posted_token(&platform, display_id, false));
        answer_all_good(&service, &posted_token(&platform, display_id, true));
    }

    let response = client()
        .get(service.url("/api/admin/peer-review"))
        .bearer_auth(&service.config.admin_token)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let view: Value = response.json().unwrap();
    assert_eq!(view["pairs"], 3, "{view}");
    let nurses = view["groups"][0]["nurses"].as_array().unwrap();
    let named: Vec<&Value> = nurses.iter().filter(|row| !row["label"].is_null()).collect();
    assert_eq!(named.len(), 1, "only nurse 17 has a label: {view}");
    assert_eq!(named[0]["category"]["pairs"], 1, "{view}");
    let unknown: Vec<&Value> = nurses.iter().filter(|row| row["label"].is_null()).collect();
    assert_eq!(unknown.len(), 1, "unassigned chats form no nurse of their own: {view}");
    assert_eq!(unknown[0]["category"]["pairs"], 2, "{view}");
}
