//! Standard Webhooks verification of `POST /webhooks/chat-ended`, through
//! the real binary: each case asserts the status, the error code, and
//! whether a chat was stored.

mod common;

use std::time::Duration;

use common::{RecordingPlatform, Service, SignedWebhook, TestConfig, client, sign};

fn start() -> (tempfile::TempDir, RecordingPlatform, Service) {
    let dir = tempfile::tempdir().unwrap();
    let platform = RecordingPlatform::start();
    let config = TestConfig::new(dir.path(), &platform.url);
    let service = Service::start(&config);
    (dir, platform, service)
}

fn chats_stored(service: &Service) -> u64 {
    service.report()["chats"].as_u64().unwrap()
}

fn assert_rejected(service: &Service, webhook: &SignedWebhook, status: u16, code: &str) {
    let (actual_status, body) = webhook.send(service);
    assert_eq!(actual_status, status, "body: {body}");
    assert_eq!(body["error"], code, "body: {body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "body: {body}");
}

#[test]
fn valid_webhook_is_accepted_and_invites_both() {
    let (_dir, platform, service) = start();
    let secret = &service.config.webhook_secrets[0];
    let webhook = SignedWebhook::chat_ended(secret, "c-valid");

    let (status, body) = webhook.send(&service);
    assert_eq!(status, 202, "body: {body}");
    assert_eq!(chats_stored(&service), 1);

    let requests = platform.wait_for(2, Duration::from_secs(10));
    assert_eq!(requests.len(), 2);
    let mut roles: Vec<&str> = requests
        .iter()
        .map(|r| r.body["recipient"]["role"].as_str().unwrap())
        .collect();
    roles.sort_unstable();
    assert_eq!(roles, ["parent", "professional"]);
    for request in &requests {
        assert_eq!(request.path, "/chats/c-valid/messages");
        assert_eq!(
            request.headers["authorization"],
            format!("Bearer {}", service.config.platform_token)
        );
        assert_eq!(request.headers["idempotency-key"], request.headers["webhook-id"]);
        let timestamp: i64 = request.headers["webhook-timestamp"].parse().unwrap();
        let expected = sign(
            &service.config.signing_secret,
            &request.headers["webhook-id"],
            timestamp,
            &request.raw,
        );
        assert_eq!(request.headers["webhook-signature"], expected, "outbound signature");
        let url = request.body["questionnaire"]["url"].as_str().unwrap();
        let token = request.body["questionnaire"]["token"].as_str().unwrap();
        assert!(url.ends_with(&format!("/q/{token}")), "{url}");
    }
}

#[test]
fn english_chat_invites_parent_in_english() {
    let (_dir, platform, service) = start();
    let secret = &service.config.webhook_secrets[0];
    let body = SignedWebhook::chat_ended(secret, "c-english").body;
    let mut event: serde_json::Value = serde_json::from_slice(&body).unwrap();
    event["data"]["locale"] = "en".into();
    let webhook = SignedWebhook::new(secret, "msg_c-english", serde_json::to_vec(&event).unwrap());
    assert_eq!(webhook.send(&service).0, 202);

    let requests = platform.wait_for(2, Duration::from_secs(10));
    for request in &requests {
        let role = request.body["recipient"]["role"].as_str().unwrap();
        let url = request.body["questionnaire"]["url"].as_str().unwrap();
        let text = request.body["text"].as_str().unwrap();
        let token = request.body["questionnaire"]["token"].as_str().unwrap();
        if role == "parent" {
            assert!(url.ends_with(&format!("/q/{token}?lang=en")), "{url}");
            assert!(text.starts_with("Would you help us"), "{text}");
        } else {
            // Nurses work in Dutch, whatever the language of the chat.
            assert!(url.ends_with(&format!("/q/{token}")), "{url}");
            assert!(text.starts_with("Vragenlijst online alliantie"), "{text}");
        }
        assert!(text.ends_with(url), "the text ends with the link: {text}");
    }
}

#[test]
fn damaged_questionnaire_links_get_pages() {
    let (_dir, _platform, service) = start();
    let no_redirects = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // A messenger that adds a slash gets the link without it, query kept.
    let response = no_redirects.get(service.url("/q/abc.def/?lang=en")).send().unwrap();
    assert_eq!(response.status().as_u16(), 308);
    assert_eq!(response.headers()["location"], "/q/abc.def?lang=en");

    // Anything else under /q gets the page, on which the plugin shows that
    // the link does not work, in Dutch unless English is requested.
    for (path, lang) in [
        ("/q", "nl"),
        ("/q/", "nl"),
        ("/q/abc/def", "nl"),
        ("/q/a%20b/", "nl"),
        ("/q/?lang=EN-gb", "en"),
    ] {
        let response = no_redirects.get(service.url(path)).send().unwrap();
        assert_eq!(response.status().as_u16(), 404, "{path}");
        assert_eq!(response.headers()["content-type"], "text/html; charset=utf-8", "{path}");
        let html = response.text().unwrap();
        assert!(html.contains(&format!("<html lang=\"{lang}\"")), "{path}: {html}");
    }

    // Link checkers send HEAD requests.
    let response = no_redirects.head(service.url("/q/abc.def")).send().unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

#[test]
fn second_configured_secret_verifies() {
    let (_dir, _platform, service) = start();
    let webhook = SignedWebhook::chat_ended(&service.config.webhook_secrets[1], "c-second");
    assert_eq!(webhook.send(&service).0, 202);
}

#[test]
fn one_changed_byte_is_rejected() {
    let (_dir, _platform, service) = start();
    let secret = &service.config.webhook_secrets[0];

    let mut body_changed = SignedWebhook::chat_ended(secret, "c-body");
    let position = body_changed.body.len() / 2;
    body_changed.body[position] ^= 0x01;
    assert_rejected(&service, &body_changed, 401, "invalid_signature");

    let mut id_changed = SignedWebhook::chat_ended(secret, "c-id");
    id_changed.id.push('x');
    assert_rejected(&service, &id_changed, 401, "invalid_signature");

    let mut timestamp_changed = SignedWebhook::chat_ended(secret, "c-ts");
    let timestamp: i64 = timestamp_changed.timestamp.parse().unwrap();
    timestamp_changed.timestamp = (timestamp - 1).to_string();
    assert_rejected(&service, &timestamp_changed, 401, "invalid_signature");

    assert_eq!(chats_stored(&service), 0);
}

#[test]
fn missing_header_is_rejected() {
    let (_dir, _platform, service) = start();
    let webhook = SignedWebhook::chat_ended(&service.config.webhook_secrets[0], "c-missing");
    for missing in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let mut request = client()
            .post(service.url("/webhooks/chat-ended"))
            .header("content-type", "application/json")
            .body(webhook.body.clone());
        for (name, value) in [
            ("webhook-id", &webhook.id),
            ("webhook-timestamp", &webhook.timestamp),
            ("webhook-signature", &webhook.signature),
        ] {
            if name != missing {
                request = request.header(name, value);
            }
        }
        let response = request.send().unwrap();
        assert_eq!(response.status(), 401, "without {missing}");
        let body: serde_json::Value = response.json().unwrap();
        assert_eq!(body["error"], "missing_signature_headers", "without {missing}");
        assert!(body["message"].as_str().unwrap().contains(missing), "{body}");
    }
    assert_eq!(chats_stored(&service), 0);
}

#[test]
fn timestamps_outside_the_window_are_rejected() {
    let (_dir, _platform, service) = start();
    let secret = service.config.webhook_secrets[0].clone();
    for offset in [-301i64, 301] {
        let mut webhook = SignedWebhook::chat_ended(&secret, &format!("c-window{offset}"));
        let timestamp = common::now_secs() + offset;
        webhook.timestamp = timestamp.to_string();
        webhook.signature = sign(&secret, &webhook.id, timestamp, &webhook.body);
        assert_rejected(&service, &webhook, 401, "timestamp_out_of_window");
    }
    for offset in [-290i64, 290] {
        let mut webhook = SignedWebhook::chat_ended(&secret, &format!("c-inside{offset}"));
        let timestamp = common::now_secs() + offset;
        webhook.timestamp = timestamp.to_string();
        webhook.signature = sign(&secret, &webhook.id, timestamp, &webhook.body);
        assert_eq!(webhook.send(&service).0, 202, "offset {offset}");
    }
    assert_eq!(chats_stored(&service), 2);
}

#[test]
fn unknown_secret_is_rejected_without_revealing_it() {
    let (_dir, _platform, service) = start();
    let webhook = SignedWebhook::chat_ended(&common::random_secret(), "c-unknown");
    let (status, body) = webhook.send(&service);
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_signature");
    let text = body.to_string();
    for secret in &service.config.webhook_secrets {
        assert!(
            !text.contains(secret.trim_start_matches("whsec_")),
            "the error reveals a secret"
        );
    }
    assert_eq!(chats_stored(&service), 0);
}

#[test]
fn duplicate_webhook_id_gets_200_and_no_second_invitation() {
    let (_dir, platform, service) = start();
    let webhook = SignedWebhook::chat_ended(&service.config.webhook_secrets[0], "c-dup");
    assert_eq!(webhook.send(&service).0, 202);
    let (status, body) = webhook.send(&service);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "duplicate");

    // A second event for the same chat under a new webhook id changes nothing either.
    let other_id = SignedWebhook::new(&service.config.webhook_secrets[0], "msg_other", webhook.body.clone());
    assert_eq!(other_id.send(&service).0, 200);

    platform.wait_for(2, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(platform.requests().len(), 2, "exactly one invitation per role");
    assert_eq!(service.report()["questionnaires"]["parent"]["invited"], 1);
}

/// A webhook id that comes back with another event is a new event under an
/// old id, so it is rejected with 409, which the sender logs, and nothing is written.
#[test]
fn reused_webhook_id_with_another_body_is_refused() {
    let (_dir, _platform, service) = start();
    let secret = &service.config.webhook_secrets[0];
    let first = SignedWebhook::chat_ended(secret, "c-first");
    assert_eq!(first.send(&service).0, 202);

    let other_chat = SignedWebhook::chat_ended(secret, "c-second");
    let reused = SignedWebhook::new(secret, &first.id, other_chat.body.clone());
    assert_rejected(&service, &reused, 409, "webhook_id_reused");
    assert_eq!(chats_stored(&service), 1, "the second chat is not stored");

    // The original body under the same id is still a plain retry, also when
    // the sender formats it again (other key order, spaces), and the second
    // chat under its own id is accepted.
    let (status, body) = first.send(&service);
    assert_eq!((status, body["status"].clone()), (200, serde_json::json!("duplicate")));
    let event: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
    let reformatted = format!(
        "{{ \"type\": {},\n  \"data\": {},\n  \"timestamp\": {} }}\n",
        event["type"],
        serde_json::to_string_pretty(&event["data"]).unwrap(),
        event["timestamp"]
    )
    .into_bytes();
    assert_ne!(reformatted, first.body);
    let retry = SignedWebhook::new(secret, &first.id, reformatted);
    let (status, body) = retry.send(&service);
    assert_eq!(
        (status, body["status"].clone()),
        (200, serde_json::json!("duplicate")),
        "{body}"
    );
    assert_eq!(other_chat.send(&service).0, 202);
    assert_eq!(chats_stored(&service), 2);
}

#[test]
fn numeric_chat_id_is_its_decimal_string() {
    let (_dir, platform, service) = start();
    let secret = &service.config.webhook_secrets[0];
    let with_chat_id = |webhook_id: &str, chat_id: serde_json::Value| {
        let mut body: serde_json::Value = serde_json::from_slice(&SignedWebhook::chat_ended(secret, "x").body).unwrap();
        body["data"]["chat_id"] = chat_id;
        SignedWebhook::new(secret, webhook_id, serde_json::to_vec(&body).unwrap())
    };

    let (status, body) = with_chat_id("msg_number", serde_json::json!(123)).send(&service);
    assert_eq!(status, 202, "a whole number is accepted: {body}");

    let (status, body) = with_chat_id("msg_string", serde_json::json!("123")).send(&service);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "duplicate", "{body}");
    assert_eq!(body["reason"], "chat already known", "{body}");
    assert_eq!(chats_stored(&service), 1);

    let requests = platform.wait_for(2, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(platform.requests().len(), 2, "one invitation per role");
    for request in &requests {
        assert_eq!(request.path, "/chats/123/messages");
    }
}

#[test]
fn checks_run_in_the_documented_order() {
    let (_dir, _platform, service) = start();
    let secret = &service.config.webhook_secrets[0];

    let mut wrong_type = SignedWebhook::chat_ended(secret, "c-type");
    wrong_type.content_type = "text/plain".into();
    assert_rejected(&service, &wrong_type, 415, "unsupported_media_type");

    // A bad signature answers before the content type is looked at.
    let mut both_wrong = SignedWebhook::chat_ended(&common::random_secret(), "c-both");
    both_wrong.content_type = "text/plain".into();
    assert_rejected(&service, &both_wrong, 401, "invalid_signature");

    let not_json = SignedWebhook::new(secret, "msg_notjson", b"{not json".to_vec());
    assert_rejected(&service, &not_json, 400, "invalid_json");

    let missing_field = SignedWebhook::new(
        secret,
        "msg_nofield",
        br#"{"type":"chat.ended","data":{"ended_at":"2022-07-01T10:14:31Z","parent":{"participant_id":"v"},"professional":{"participant_id":"n"}}}"#.to_vec(),
    );
    let (status, body) = missing_field.send(&service);
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_payload");
    assert!(body["message"].as_str().unwrap().contains("chat_id"), "{body}");

    let other_type = SignedWebhook::new(
        secret,
        "msg_other_type",
        br#"{"type":"chat.started","data":{}}"#.to_vec(),
    );
    assert_eq!(other_type.send(&service).0, 200);

    let mut bad_timestamp = SignedWebhook::chat_ended(secret, "c-badts");
    bad_timestamp.timestamp = format!("+{}", bad_timestamp.timestamp);
    assert_rejected(&service, &bad_timestamp, 401, "invalid_timestamp");

    let oversized = SignedWebhook::new(secret, "msg_big", vec![b' '; 64 * 1024 + 1]);
    assert_rejected(&service, &oversized, 413, "payload_too_large");

    assert_eq!(chats_stored(&service), 0);
}

fn start_with(extra: Vec<(&str, String)>) -> (tempfile::TempDir, RecordingPlatform, Service) {
    let dir = tempfile::tempdir().unwrap();
    let platform = RecordingPlatform::start();
    let mut config = TestConfig::new(dir.path(), &platform.url);
    config.extra = extra.into_iter().map(|(key, value)| (key.to_string(), value)).collect();
    let service = Service::start(&config);
    (dir, platform, service)
}

#[test]
fn v1a_signature_verifies_with_public_key() {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use ed25519_dalek::Signer;

    let signing = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
    let public_key = format!("whpk_{}", STANDARD.encode(signing.verifying_key().as_bytes()));
    let (_dir, _platform, service) = start_with(vec![("ALLIANCE_WEBHOOK_PUBLIC_KEYS", public_key)]);

    let mut webhook = SignedWebhook::chat_ended(&common::random_secret(), "c-v1a");
    let content = [
        webhook.id.as_bytes(),
        b".",
        webhook.timestamp.as_bytes(),
        b".",
        &webhook.body,
    ]
    .concat();
    webhook.signature = format!("v1a,{}", STANDARD.encode(signing.sign(&content).to_bytes()));
    assert_eq!(webhook.send(&service).0, 202, "a valid v1a signature is accepted");

    let mut forged = SignedWebhook::chat_ended(&common::random_secret(), "c-v1a-forged");
    forged.signature = webhook.signature.clone();
    assert_rejected(&service, &forged, 401, "invalid_signature");
    assert_eq!(chats_stored(&service), 1);
}

#[test]
fn failed_signatures_are_limited_per_address() {
    let (_dir, _platform, service) = start_with(vec![("ALLIANCE_FAILED_SIGNATURE_LIMIT", "5".into())]);
    for attempt in 0..5 {
        let forged = SignedWebhook::chat_ended(&common::random_secret(), &format!("c-forged-{attempt}"));
        assert_eq!(forged.send(&service).0, 401, "failure {attempt} is within the limit");
    }
    let over = SignedWebhook::chat_ended(&common::random_secret(), "c-forged-over");
    let response = client()
        .post(service.url("/webhooks/chat-ended"))
        .header("content-type", "application/json")
        .header("webhook-id", &over.id)
        .header("webhook-timestamp", &over.timestamp)
        .header("webhook-signature", &over.signature)
        .body(over.body.clone())
        .send()
        .unwrap();
    assert_eq!(response.status(), 429, "the sixth failure in a minute");
    assert!(
        response.headers().get("retry-after").is_some(),
        "429 carries Retry-After"
    );

    let genuine = SignedWebhook::chat_ended(&service.config.webhook_secrets[0], "c-genuine");
    assert_eq!(
        genuine.send(&service).0,
        202,
        "a correctly signed request is never throttled"
    );
}

#[test]
fn short_chats_are_counted_ineligible() {
    let (_dir, platform, service) = start_with(vec![("ALLIANCE_MIN_MESSAGES_PER_SIDE", "10".into())]);
    // The helper's chat has 9 parent and 11 professional messages.
    let short = SignedWebhook::chat_ended(&service.config.webhook_secrets[0], "c-short");
    assert_eq!(short.send(&service).0, 202);

    std::thread::sleep(Duration::from_millis(500));
    assert!(platform.requests().is_empty(), "an ineligible chat gets no invitations");
    let report = service.report();
    assert_eq!(report["chats"], 0, "ineligible chats stay out of the response rates");
    assert_eq!(report["chats_ineligible"], 1);
}

#[test]
fn platform_answers_arrive_by_webhook() {
    let (_dir, platform, service) = start();
    let secret = service.config.webhook_secrets[0].clone();
    assert_eq!(SignedWebhook::chat_ended(&secret, "c-answered").send(&service).0, 202);
    platform.wait_for(2, Duration::from_secs(10));
    let token = platform.token_for("parent").unwrap();

    let answers: serde_json::Map<String, serde_json::Value> = (1..=11)
        .map(|item| (item.to_string(), serde_json::json!("good")))
        .collect();
    let body = serde_json::json!({
        "type": "questionnaire.answered",
        "data": { "token": token, "answers": answers, "submitted": true, "comment": "Fijn gesprek" }
    });
    let send = |id: &str, body: &serde_json::Value| {
        SignedWebhook::new(&secret, id, serde_json::to_vec(body).unwrap())
            .send_to(&service, "/webhooks/questionnaire-answered")
    };

    let (status, reply) = send("msg_answers_1", &body);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["status"], "submitted");
    assert_eq!(
        send("msg_answers_1", &body).1["status"],
        "duplicate",
        "same webhook id again"
    );
    assert_eq!(
        send("msg_answers_2", &body).0,
        200,
        "the same answers under a new id change nothing"
    );
    let mut other_body = body.clone();
    other_body["data"]["comment"] = serde_json::json!("Een andere opmerking");
    let (status, reply) = send("msg_answers_1", &other_body);
    assert_eq!(
        (status, reply["error"].clone()),
        (409, serde_json::json!("webhook_id_reused")),
        "same webhook id with another body"
    );

    let mut changed = body.clone();
    changed["data"]["answers"]["3"] = serde_json::json!("insufficient");
    let (status, reply) = send("msg_answers_3", &changed);
    assert_eq!(
        (status, reply["error"].clone()),
        (409, serde_json::json!("already_submitted"))
    );

    let mut bad_rating = body.clone();
    bad_rating["data"]["answers"]["1"] = serde_json::json!("great");
    assert_eq!(send("msg_answers_4", &bad_rating).1["error"], "invalid_rating");
    let mut bad_item = body.clone();
    bad_item["data"]["answers"]["12"] = serde_json::json!("good");
    assert_eq!(send("msg_answers_5", &bad_item).1["error"], "invalid_item");
    let mut forged = body.clone();
    forged["data"]["token"] = serde_json::json!(format!("{token}x"));
    assert_eq!(send("msg_answers_6", &forged).0, 404);

    let funnel = &service.report()["questionnaires"]["parent"];
    assert_eq!(funnel["complete"], 1);
    assert_eq!(funnel["submitted"], 1);
}

/// One questionnaire-answered webhook id sent twice at the same moment, with
/// different comments: exactly one is stored, and the other is rejected with
/// `409`, as when the two arrive one after the other.
#[test]
fn concurrent_answers_under_one_id() {
    let (_dir, platform, service) = start();
    let secret = service.config.webhook_secrets[0].clone();
    assert_eq!(SignedWebhook::chat_ended(&secret, "c-concurrent").send(&service).0, 202);
    platform.wait_for(2, Duration::from_secs(10));
    let token = platform.token_for("parent").unwrap();

    let send = |id: &str, comment: &str| {
        let body = serde_json::json!({
            "type": "questionnaire.answered",
            "data": { "token": token, "answers": { "1": "good" }, "submitted": false, "comment": comment }
        });
        SignedWebhook::new(&secret, id, serde_json::to_vec(&body).unwrap())
            .send_to(&service, "/webhooks/questionnaire-answered")
            .0
    };

    let mut both_taken = Vec::new();
    for round in 0..40 {
        let id = format!("msg_concurrent_{round}");
        let barrier = std::sync::Barrier::new(2);
        let mut statuses: Vec<u16> = std::thread::scope(|scope| {
            let senders: Vec<_> = ["first comment", "second comment"]
                .into_iter()
                .map(|comment| {
                    let (barrier, id, send) = (&barrier, &id, &send);
                    scope.spawn(move || {
                        barrier.wait();
                        send(id, comment)
                    })
                })
                .collect();
            senders.into_iter().map(|sender| sender.join().unwrap()).collect()
        });
        statuses.sort_unstable();
        if statuses == [200, 200] {
            both_taken.push(round);
        } else {
            assert_eq!(statuses, [200, 409], "round {round}");
        }
    }
    assert!(both_taken.is_empty(), "both events were taken in rounds {both_taken:?}");
}
