//! Fault tests of invitation delivery against the real binary: a scripted
//! platform stalls, fails, throttles, refuses, drops connections, responds
//! late, rejects, or stays down long enough to open the circuit breaker,
//! and the service is killed while deliveries are in flight. Each test ends
//! with every invitation accepted exactly once from the platform's point of
//! view: one idempotency key per (chat, role) on the generic platform, and
//! one message per (conversation, role) on Chatwoot.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::faulty::{Action, Api, Exchange, FaultyPlatform, Incoming};
use common::{Service, SignedWebhook, TestConfig, client, free_port, now_secs, sign};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const CHATWOOT_SECRET: &str = "chatwoot-webhook-secret-for-fault-tests";
const CHATWOOT_ACCOUNT: u64 = 3;

/// A service and its store, for one API.
struct Setup {
    api: Api,
    _dir: tempfile::TempDir,
    config: TestConfig,
}

impl Setup {
    /// Settings for a service that posts to `platform_url`. The breaker
    /// threshold is set out of reach unless `extra` sets it, so that only the
    /// breaker test waits for its 5-second pause. Later entries in `extra` win.
    fn new(api: Api, platform_url: &str, extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = TestConfig::new(dir.path(), platform_url);
        config.extra.push(("ALLIANCE_BREAKER_THRESHOLD".into(), "1000".into()));
        if api == Api::Chatwoot {
            for (key, value) in [
                ("ALLIANCE_PLATFORM_KIND", "chatwoot".to_string()),
                ("ALLIANCE_CHATWOOT_WEBHOOK_SECRET", CHATWOOT_SECRET.to_string()),
                ("ALLIANCE_CHATWOOT_ACCOUNT_ID", CHATWOOT_ACCOUNT.to_string()),
                ("ALLIANCE_CHATWOOT_RECONCILE_SECONDS", "3600".to_string()),
            ] {
                config.extra.push((key.into(), value));
            }
        }
        for (key, value) in extra {
            config.extra.push(((*key).into(), (*value).into()));
        }
        Self { api, _dir: dir, config }
    }

    fn start(&self) -> Service {
        Service::start(&self.config)
    }

    /// Path the invitations of `chat` are posted to.
    fn messages_path(&self, chat: &str) -> String {
        match self.api {
            Api::Generic => format!("/chats/{chat}/messages"),
            Api::Chatwoot => format!("/api/v1/accounts/{CHATWOOT_ACCOUNT}/conversations/{chat}/messages"),
        }
    }

    /// Ends chat number `number` through the platform's webhook and returns its chat id.
    fn end_chat(&self, service: &Service, number: u64) -> String {
        match self.api {
            Api::Generic => {
                let chat = format!("chat-{number}");
                let (status, body) = SignedWebhook::chat_ended(&self.config.webhook_secrets[0], &chat).send(service);
                assert_eq!(status, 202, "chat-ended webhook for {chat}: {body}");
                chat
            }
            Api::Chatwoot => {
                let (status, body) = send_chatwoot_resolved(service, number);
                assert_eq!(status, 200, "Chatwoot webhook for conversation {number}: {body}");
                assert_eq!(body["status"], "accepted", "conversation {number}");
                number.to_string()
            }
        }
    }

    fn end_chats(&self, service: &Service, count: u64) -> Vec<String> {
        (1..=count).map(|number| self.end_chat(service, number)).collect()
    }
}

/// Sends Chatwoot's `conversation_status_changed` event for a resolved
/// conversation, signed the way Chatwoot signs account webhooks.
fn send_chatwoot_resolved(service: &Service, display_id: u64) -> (u16, Value) {
    let timestamp = now_secs();
    let payload = json!({
        "event": "conversation_status_changed",
        "id": display_id,
        "account_id": CHATWOOT_ACCOUNT,
        "inbox_id": 1,
        "status": "resolved",
        "timestamp": timestamp,
        "created_at": timestamp - 600,
        "meta": {
            "sender": { "id": 981, "type": "contact" },
            "assignee": { "id": 17, "type": "user" }
        },
        "custom_attributes": { "organization": "GGD Regio Utrecht", "topic": "voeding" },
        "labels": [],
        "messages": []
    });
    let body = serde_json::to_vec(&payload).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(CHATWOOT_SECRET.as_bytes()).unwrap();
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
        .header("x-chatwoot-delivery", format!("delivery-{display_id}"))
        .body(body)
        .send()
        .expect("Chatwoot webhook request");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

/// Reads one sample from `/metrics`.
fn metric(service: &Service, name: &str) -> Option<f64> {
    let text = client()
        .get(service.url("/metrics"))
        .bearer_auth(&service.config.admin_token)
        .send()
        .ok()?
        .text()
        .ok()?;
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
}

/// `GET /api/admin/deliveries?status=…`: the listed deliveries.
fn deliveries(service: &Service, status: &str) -> Vec<Value> {
    let response = client()
        .get(service.url(&format!("/api/admin/deliveries?status={status}")))
        .bearer_auth(&service.config.admin_token)
        .send()
        .expect("deliveries request");
    assert_eq!(response.status(), 200, "GET /api/admin/deliveries?status={status}");
    let body: Value = response.json().expect("deliveries JSON");
    body["deliveries"].as_array().cloned().unwrap_or_default()
}

fn is_accepted(status: u16) -> bool {
    (200..300).contains(&status) || status == 409
}

/// Polls `condition` every 50 ms; panics with `describe()` after `timeout`.
fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool, describe: impl Fn() -> String) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < timeout,
            "not reached within {timeout:?}: {}",
            describe()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the platform stored an invitation for both roles of every
/// chat and the service has nothing pending or dead, then waits a little
/// longer so that a stray extra attempt would show up.
fn wait_delivered(setup: &Setup, service: &Service, platform: &FaultyPlatform, chats: &[String], timeout: Duration) {
    let expected: BTreeSet<(String, String)> = chats
        .iter()
        .flat_map(|chat| {
            let path = setup.messages_path(chat);
            [(path.clone(), "parent".to_string()), (path, "professional".to_string())]
        })
        .collect();
    wait_until(
        timeout,
        || {
            let stored: BTreeSet<(String, String)> = platform
                .stored()
                .into_iter()
                .filter_map(|message| Some((message.path, message.role?)))
                .collect();
            expected.is_subset(&stored)
                && deliveries(service, "pending").is_empty()
                && deliveries(service, "dead").is_empty()
        },
        || {
            format!(
                "all invitations delivered; pending {:?}, dead {:?}, stored {}",
                deliveries(service, "pending"),
                deliveries(service, "dead"),
                platform.stored().len()
            )
        },
    );
    thread::sleep(Duration::from_millis(700));
}

/// Asserts that every invitation was accepted exactly once, per the API's rules.
fn assert_exactly_once(setup: &Setup, platform: &FaultyPlatform, chats: &[String]) {
    match setup.api {
        Api::Generic => assert_generic_exactly_once(setup, platform, chats),
        Api::Chatwoot => assert_chatwoot_exactly_once(setup, platform, chats),
    }
}

/// Generic platform: per (chat, role) one idempotency key, equal to
/// `webhook-id`; the same body bytes on every attempt, each with a valid
/// signature made when the attempt was sent; one stored message per key;
/// and one accepted response, the last one the service received.
fn assert_generic_exactly_once(setup: &Setup, platform: &FaultyPlatform, chats: &[String]) {
    let posts = platform.posts();
    let mut all_keys = BTreeSet::new();
    for chat in chats {
        for role in ["parent", "professional"] {
            let path = setup.messages_path(chat);
            let attempts: Vec<&Exchange> = posts
                .iter()
                .filter(|post| post.path == path && post.role.as_deref() == Some(role))
                .collect();
            assert!(!attempts.is_empty(), "no request for {role} of {chat}");

            let keys: BTreeSet<&str> = attempts
                .iter()
                .filter_map(|post| post.header("idempotency-key"))
                .collect();
            assert_eq!(keys.len(), 1, "{role} of {chat} was sent under keys {keys:?}");
            let key = *keys.iter().next().unwrap();
            all_keys.insert(key.to_string());

            for (number, post) in attempts.iter().enumerate() {
                let context = format!("{role} of {chat}, attempt {}", number + 1);
                assert_eq!(post.header("idempotency-key"), Some(key), "{context}: key missing");
                assert_eq!(
                    post.header("webhook-id"),
                    Some(key),
                    "{context}: webhook-id differs from the key"
                );
                assert_eq!(
                    post.header("authorization"),
                    Some(format!("Bearer {}", setup.config.platform_token).as_str()),
                    "{context}: bearer token"
                );
                assert_eq!(
                    post.raw, attempts[0].raw,
                    "{context}: body bytes differ from the first attempt"
                );

                let timestamp: i64 = post
                    .header("webhook-timestamp")
                    .and_then(|value| value.parse().ok())
                    .unwrap_or_else(|| panic!("{context}: webhook-timestamp missing or not a number"));
                let expected = sign(&setup.config.signing_secret, key, timestamp, &post.raw);
                let signatures = post.header("webhook-signature").unwrap_or("");
                assert!(
                    signatures.split_whitespace().any(|signature| signature == expected),
                    "{context}: no valid signature in {signatures:?}"
                );
                let age = post.received_unix - timestamp as f64;
                assert!(
                    (-2.0..=2.0).contains(&age),
                    "{context}: signed {age:.1} s before it arrived, so not signed afresh"
                );
            }

            let stored = platform
                .stored()
                .iter()
                .filter(|message| message.key.as_deref() == Some(key))
                .count();
            assert_eq!(
                stored, 1,
                "{role} of {chat}: the platform stored key {key} {stored} times"
            );

            let accepted: Vec<&&Exchange> = attempts
                .iter()
                .filter(|post| post.prompt_status.is_some_and(is_accepted))
                .collect();
            assert_eq!(
                accepted.len(),
                1,
                "{role} of {chat}: accepted answers {:?}",
                accepted.iter().map(|post| post.prompt_status).collect::<Vec<_>>()
            );
            let last = attempts.last().unwrap();
            assert!(
                last.prompt_status.is_some_and(is_accepted),
                "{role} of {chat}: the service tried again after an accepted answer ({:?})",
                last.prompt_status
            );
        }
    }
    assert_eq!(all_keys.len(), chats.len() * 2, "one key per invitation");
    let stray = posts
        .iter()
        .filter(|post| !post.header("idempotency-key").is_some_and(|key| all_keys.contains(key)))
        .count();
    assert_eq!(stray, 0, "requests outside the expected invitations");
}

/// Chatwoot: per (conversation, role) exactly one stored message with a
/// questionnaire link, public for the parent and private for the nurse.
/// Every request carries the API token.
fn assert_chatwoot_exactly_once(setup: &Setup, platform: &FaultyPlatform, chats: &[String]) {
    let stored = platform.stored();
    for chat in chats {
        let path = setup.messages_path(chat);
        for role in ["parent", "professional"] {
            let messages: Vec<_> = stored
                .iter()
                .filter(|message| message.path == path && message.role.as_deref() == Some(role))
                .collect();
            assert_eq!(
                messages.len(),
                1,
                "conversation {chat} has {} messages for the {role}: {:?}",
                messages.len(),
                messages
                    .iter()
                    .map(|message| &message.body["content"])
                    .collect::<Vec<_>>()
            );
            let message = &messages[0].body;
            assert_eq!(
                message["private"],
                role == "professional",
                "{role} of {chat}: private flag"
            );
            assert!(
                message["content"].as_str().unwrap_or("").contains("/q/inv_"),
                "{role} of {chat}: no questionnaire link in {message}"
            );

            let bodies: BTreeSet<Vec<u8>> = platform
                .posts()
                .into_iter()
                .filter(|post| post.path == path && post.role.as_deref() == Some(role))
                .map(|post| post.raw)
                .collect();
            assert_eq!(bodies.len(), 1, "{role} of {chat}: attempts posted different messages");
        }
    }
    assert_eq!(stored.len(), chats.len() * 2, "messages stored in all");
    for exchange in platform.exchanges() {
        assert_eq!(
            exchange.header("api_access_token"),
            Some(setup.config.platform_token.as_str()),
            "{} {} without the API token",
            exchange.method,
            exchange.path
        );
    }
}

/// Counts the `POST`s per (path, role).
fn post_counts(platform: &FaultyPlatform) -> HashMap<(String, String), usize> {
    let mut counts = HashMap::new();
    for post in platform.posts() {
        *counts.entry((post.path, post.role.unwrap_or_default())).or_insert(0) += 1;
    }
    counts
}

fn first_posts_only(action: Action) -> impl FnMut(&Incoming) -> Action + Send + 'static {
    move |request: &Incoming| {
        if request.method == "POST" && request.earlier == 0 {
            action.clone()
        } else {
            Action::Normal
        }
    }
}

// Timeouts: the platform keeps the first two attempts of every invitation
// open without responding; the service times out after 300 ms and retries.
fn check_timeouts(api: Api) {
    let platform = FaultyPlatform::start(api);
    platform.set_rule(|request| {
        if request.method == "POST" && request.earlier < 2 {
            Action::Stall(Duration::from_secs(3))
        } else {
            Action::Normal
        }
    });
    let setup = Setup::new(api, &platform.url, &[("ALLIANCE_DELIVERY_TIMEOUT_MS", "300")]);
    let service = setup.start();
    let chats = setup.end_chats(&service, 2);

    wait_delivered(&setup, &service, &platform, &chats, Duration::from_secs(20));
    assert_exactly_once(&setup, &platform, &chats);
    for ((path, role), count) in post_counts(&platform) {
        assert_eq!(
            count, 3,
            "{role} at {path}: two stalled attempts and one that succeeded"
        );
    }
    let retried = metric(&service, "alliance_deliveries_retried_total").unwrap();
    assert!(retried >= 8.0, "retried_total {retried}, expected 2 per invitation");
}

#[test]
fn generic_timeouts_are_retried() {
    check_timeouts(Api::Generic);
}

#[test]
fn chatwoot_timeouts_are_retried() {
    check_timeouts(Api::Chatwoot);
}

// A burst of 500s: the first three attempts of every invitation fail.
fn check_server_errors(api: Api) {
    let platform = FaultyPlatform::start(api);
    platform.set_rule(|request| {
        if request.method == "POST" && request.earlier < 3 {
            Action::Status {
                status: 500,
                retry_after: None,
            }
        } else {
            Action::Normal
        }
    });
    let setup = Setup::new(api, &platform.url, &[]);
    let service = setup.start();
    let chats = setup.end_chats(&service, 3);

    wait_delivered(&setup, &service, &platform, &chats, Duration::from_secs(20));
    assert_exactly_once(&setup, &platform, &chats);
    for ((path, role), count) in post_counts(&platform) {
        assert_eq!(count, 4, "{role} at {path}: three 500s and one success");
    }
    assert_eq!(metric(&service, "alliance_deliveries_retried_total"), Some(18.0));
    assert_eq!(metric(&service, "alliance_deliveries_accepted_total"), Some(6.0));
}

#[test]
fn generic_server_error_burst_is_retried() {
    check_server_errors(Api::Generic);
}

#[test]
fn chatwoot_server_error_burst_is_retried() {
    check_server_errors(Api::Chatwoot);
}

/// Formats Unix seconds as an HTTP date (IMF-fixdate), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(unix: i64) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix.div_euclid(86_400);
    let seconds = unix.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}

// 429 with Retry-After on the first attempt of every invitation: the next
// request for that conversation comes no sooner than the platform asked.
fn check_retry_after(api: Api, retry_after: impl Fn() -> String + Send + 'static, minimum: Duration) {
    let platform = FaultyPlatform::start(api);
    platform.set_rule(move |request| {
        if request.method == "POST" && request.earlier == 0 {
            Action::Status {
                status: 429,
                retry_after: Some(retry_after()),
            }
        } else {
            Action::Normal
        }
    });
    let setup = Setup::new(api, &platform.url, &[]);
    let service = setup.start();
    let chats = setup.end_chats(&service, 2);

    wait_delivered(&setup, &service, &platform, &chats, Duration::from_secs(20));
    assert_exactly_once(&setup, &platform, &chats);

    let exchanges = platform.exchanges();
    let throttled: Vec<&Exchange> = exchanges.iter().filter(|e| e.prompt_status == Some(429)).collect();
    assert_eq!(throttled.len(), chats.len() * 2, "one 429 per invitation");
    for answer in &throttled {
        let answered_at = answer.answered_at.unwrap();
        let next = exchanges
            .iter()
            .filter(|e| e.path == answer.path && e.role == answer.role && e.received_at > answered_at)
            .map(|e| e.received_at)
            .min()
            .expect("a retry after the 429");
        let waited = next - answered_at;
        assert!(
            waited >= minimum,
            "retry of {:?} at {} came after {waited:?}, before Retry-After allowed",
            answer.role,
            answer.path
        );
    }
    // On Chatwoot every attempt starts with a GET of the conversation's
    // messages. The GET carries no role, so the first two lookups on a path
    // (one per role's first attempt, in either order) need not wait; every
    // later one is a retry and must wait for the 429 before it.
    let mut lookups: Vec<_> = exchanges
        .iter()
        .filter(|e| e.method == "GET" && e.path.ends_with("/messages"))
        .collect();
    lookups.sort_by_key(|lookup| lookup.received_at);
    let mut seen_per_path: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for lookup in lookups {
        let seen = seen_per_path.entry(lookup.path.as_str()).or_default();
        *seen += 1;
        if *seen <= 2 {
            continue;
        }
        let Some(earliest_429) = throttled
            .iter()
            .filter(|answer| answer.path == lookup.path)
            .filter_map(|answer| answer.answered_at)
            .min()
        else {
            panic!("no 429 on the path of the lookup {}", lookup.path);
        };
        if lookup.received_at < earliest_429 {
            continue;
        }
        let waited = lookup.received_at.saturating_duration_since(earliest_429);
        assert!(waited >= minimum, "lookup at {} came after {waited:?}", lookup.path);
    }
}

#[test]
fn generic_retry_after_seconds_is_honoured() {
    check_retry_after(Api::Generic, || "2".into(), Duration::from_millis(1950));
}

#[test]
fn generic_retry_after_http_date_is_honoured() {
    // An HTTP date has whole seconds, so three seconds ahead means at least two.
    let ahead = || {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        http_date(now + 3)
    };
    check_retry_after(Api::Generic, ahead, Duration::from_millis(1950));
}

#[test]
fn chatwoot_retry_after_seconds_is_honoured() {
    check_retry_after(Api::Chatwoot, || "2".into(), Duration::from_millis(1950));
}

// Refused connections: nothing listens on the platform's port until the
// service has failed to connect a few times.
fn check_refused_connections(api: Api) {
    let port = free_port();
    let setup = Setup::new(api, &format!("http://127.0.0.1:{port}"), &[]);
    let service = setup.start();
    let chats = setup.end_chats(&service, 2);

    wait_until(
        Duration::from_secs(10),
        || {
            let pending = deliveries(&service, "pending");
            pending.len() == 4
                && pending
                    .iter()
                    .all(|delivery| delivery["attempts"].as_u64().unwrap_or(0) >= 2)
        },
        || {
            format!(
                "two refused attempts per invitation; pending {:?}",
                deliveries(&service, "pending")
            )
        },
    );
    for delivery in deliveries(&service, "pending") {
        let error = delivery["last_error"].as_str().unwrap_or("");
        assert!(error.contains("connect"), "last_error {error:?} names the connection");
        assert!(delivery["next_attempt_at"].is_string(), "{delivery}");
    }

    let platform = FaultyPlatform::start_on(api, port);
    wait_delivered(&setup, &service, &platform, &chats, Duration::from_secs(20));
    assert_exactly_once(&setup, &platform, &chats);
}

#[test]
fn generic_refused_connections_are_retried() {
    check_refused_connections(Api::Generic);
}

#[test]
fn chatwoot_refused_connections_are_retried() {
    check_refused_connections(Api::Chatwoot);
}

// The platform stores the first attempt of every invitation and closes the
// connection without responding. A generic retry gets 409 for the repeated
// key; a Chatwoot retry finds the earlier message and posts nothing.
fn check_dropped_after_accepting(api: Api) {
    let platform = FaultyPlatform::start(api);
    platform.set_rule(first_posts_only(Action::StoreThenDrop));
    let setup = Setup::new(api, &platform.url, &[]);
    let service = setup.start();
    let chats = setup.end_chats(&service, 2);

    wait_delivered(&setup, &service, &platform, &chats, Duration::from_secs(20));
    assert_exactly_once(&setup, &platform, &chats);
    check_stored_first_attempt_counts(api, &platform);
    assert_eq!(metric(&service, "alliance_deliveries_accepted_total"), Some(4.0));
}

/// After a first attempt that the platform stored but did not answer in
/// time: a generic retry ends with 409, and Chatwoot gets no second post.
fn check_stored_first_attempt_counts(api: Api, platform: &FaultyPlatform) {
    match api {
        Api::Generic => {
            for post in platform.posts().iter().filter(|post| post.prompt_status.is_some()) {
                assert_eq!(
                    post.prompt_status,
                    Some(409),
                    "retry of {:?} at {}",
                    post.role,
                    post.path
                );
            }
        }
        Api::Chatwoot => {
            for ((path, role), count) in post_counts(platform) {
                assert_eq!(count, 1, "{role} at {path} was posted again");
            }
        }
    }
}

#[test]
fn generic_dropped_connection_after_accepting_counts_once() {
    check_dropped_after_accepting(Api::Generic);
}

#[test]
fn chatwoot_dropped_connection_after_accepting_counts_once() {
    check_dropped_after_accepting(Api::Chatwoot);
}

// Slow responses: the platform stores the first attempt but responds only
// after the 300 ms timeout has passed.
fn check_slow_responses(api: Api) {
    let platform = FaultyPlatform::start(api);
    platform.set_rule(first_posts_only(Action::StoreThenAnswerLate(Duration::from_millis(
        1200,
    ))));
    let setup = Setup::new(api, &platform.url, &[("ALLIANCE_DELIVERY_TIMEOUT_MS", "300")]);
    let service = setup.start();
    let chats = setup.end_chats(&service, 2);

    wait_delivered(&setup, &service, &platform, &chats, Duration::from_secs(20));
    assert_exactly_once(&setup, &platform, &chats);
    check_stored_first_attempt_counts(api, &platform);
}

#[test]
fn generic_slow_responses_past_timeout_count_once() {
    check_slow_responses(Api::Generic);
}

#[test]
fn chatwoot_slow_responses_past_timeout_count_once() {
    check_slow_responses(Api::Chatwoot);
}

// A 400: the invitation becomes a dead letter at once, is listed by the
// admin API, and is delivered after an admin retry once the platform
// accepts it.
fn check_bad_request_dead_letter(api: Api) {
    let platform = FaultyPlatform::start(api);
    platform.set_rule(|request| {
        if request.method == "POST" {
            Action::Status {
                status: 400,
                retry_after: None,
            }
        } else {
            Action::Normal
        }
    });
    let setup = Setup::new(api, &platform.url, &[]);
    let service = setup.start();
    let chats = setup.end_chats(&service, 2);

    wait_until(
        Duration::from_secs(10),
        || deliveries(&service, "dead").len() == 4,
        || format!("four dead letters; dead {:?}", deliveries(&service, "dead")),
    );
    thread::sleep(Duration::from_millis(500));
    assert_eq!(platform.posts().len(), 4, "a 400 is not retried");
    assert!(
        deliveries(&service, "pending").is_empty(),
        "dead letters are not pending"
    );
    assert_eq!(metric(&service, "alliance_deliveries_dead_total"), Some(4.0));

    let dead = deliveries(&service, "dead");
    let mut roles = Vec::new();
    for delivery in &dead {
        assert_eq!(delivery["status"], "dead", "{delivery}");
        assert_eq!(delivery["attempts"], 1, "{delivery}");
        let error = delivery["last_error"].as_str().unwrap_or("");
        assert!(error.contains("400"), "last_error {error:?} names the status");
        roles.push(delivery["role"].as_str().unwrap().to_string());
    }
    roles.sort();
    assert_eq!(roles, ["parent", "parent", "professional", "professional"]);

    let unknown = client()
        .post(service.url("/api/admin/deliveries/inv_unknown/retry"))
        .bearer_auth(&setup.config.admin_token)
        .send()
        .unwrap();
    assert!(
        [404, 422].contains(&unknown.status().as_u16()),
        "retry of an unknown invitation: {}",
        unknown.status()
    );

    platform.heal();
    for delivery in &dead {
        let id = delivery["invitation_id"].as_str().unwrap();
        let response = client()
            .post(service.url(&format!("/api/admin/deliveries/{id}/retry")))
            .bearer_auth(&setup.config.admin_token)
            .send()
            .unwrap();
        assert_eq!(response.status(), 202, "retry of {id}");
    }

    wait_delivered(&setup, &service, &platform, &chats, Duration::from_secs(20));
    assert_exactly_once(&setup, &platform, &chats);
    if api == Api::Generic {
        let keys: BTreeSet<String> = platform
            .posts()
            .iter()
            .filter_map(|post| post.header("idempotency-key").map(str::to_string))
            .collect();
        let dead_ids: BTreeSet<String> = dead
            .iter()
            .map(|delivery| delivery["invitation_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(keys, dead_ids, "the retry keeps the invitation id as the key");
    }
}

#[test]
fn generic_bad_request_is_dead_lettered_and_retried() {
    check_bad_request_dead_letter(Api::Generic);
}

#[test]
fn chatwoot_bad_request_is_dead_lettered_and_retried() {
    check_bad_request_dead_letter(Api::Chatwoot);
}

// A platform down for longer than the breaker's threshold of three
// failures: the breaker opens, nothing is sent during its 5-second pause,
// one probe goes out when it half opens, and everything is delivered.
fn check_circuit_breaker(api: Api) {
    let platform = FaultyPlatform::start(api);
    platform.set_rule(|_| Action::Status {
        status: 503,
        retry_after: None,
    });
    let setup = Setup::new(api, &platform.url, &[("ALLIANCE_BREAKER_THRESHOLD", "3")]);
    let service = setup.start();
    let chats = setup.end_chats(&service, 4);

    wait_until(
        Duration::from_secs(5),
        || metric(&service, "alliance_platform_circuit_state") == Some(1.0),
        || {
            format!(
                "circuit state {:?}",
                metric(&service, "alliance_platform_circuit_state")
            )
        },
    );
    // Attempts that started before the breaker opened may still land.
    thread::sleep(Duration::from_millis(300));
    let seen_when_open = platform.exchanges().len();
    thread::sleep(Duration::from_secs(2));
    assert_eq!(
        platform.exchanges().len(),
        seen_when_open,
        "requests reached the platform while the circuit was open"
    );
    assert_eq!(
        metric(&service, "alliance_platform_circuit_state"),
        Some(1.0),
        "still open while the platform is down"
    );
    assert_eq!(
        deliveries(&service, "pending").len(),
        8,
        "nothing is dropped while paused"
    );

    platform.heal();
    wait_delivered(&setup, &service, &platform, &chats, Duration::from_secs(15));
    assert_exactly_once(&setup, &platform, &chats);
    assert_eq!(metric(&service, "alliance_platform_circuit_state"), Some(0.0));

    // The probe goes out alone: the next attempt starts only after it was
    // answered. A Chatwoot probe is a GET of the messages and then a POST.
    let after_pause: Vec<Exchange> = platform.exchanges().split_off(seen_when_open);
    let probe_length = if api == Api::Chatwoot { 2 } else { 1 };
    assert!(after_pause.len() > probe_length, "requests after the pause");
    let probe_answered = after_pause[probe_length - 1]
        .answered_at
        .expect("the probe was answered");
    assert!(
        after_pause[probe_length].received_at >= probe_answered,
        "another request arrived while the probe was under way"
    );
}

#[test]
fn generic_circuit_breaker_pauses_and_recovers() {
    check_circuit_breaker(Api::Generic);
}

#[test]
fn chatwoot_circuit_breaker_pauses_and_recovers() {
    check_circuit_breaker(Api::Chatwoot);
}

// SIGKILL while every first attempt is in flight: the platform has stored
// the parents' invitations but not the nurses', and responds to neither. After
// a restart on the same store each invitation is delivered once.
fn check_kill_during_delivery(api: Api) {
    let platform = FaultyPlatform::start(api);
    platform.set_rule(|request| {
        if request.method != "POST" || request.earlier > 0 {
            Action::Normal
        } else if request.role.as_deref() == Some("parent") {
            Action::StoreThenStall(Duration::from_secs(25))
        } else {
            Action::Stall(Duration::from_secs(25))
        }
    });
    let setup = Setup::new(api, &platform.url, &[("ALLIANCE_DELIVERY_TIMEOUT_MS", "20000")]);
    let mut service = setup.start();
    let chats = setup.end_chats(&service, 3);

    wait_until(
        Duration::from_secs(10),
        || platform.posts().len() >= 6,
        || format!("six first posts in flight; posts {}", platform.posts().len()),
    );
    assert_eq!(platform.posts().len(), 6, "all first attempts in flight");
    service.kill();
    platform.heal();

    let service = setup.start();
    wait_delivered(&setup, &service, &platform, &chats, Duration::from_secs(20));
    assert_exactly_once(&setup, &platform, &chats);
}

#[test]
fn generic_kill_during_delivery_keeps_keys() {
    check_kill_during_delivery(Api::Generic);
}

#[test]
fn chatwoot_kill_during_delivery_posts_once() {
    check_kill_during_delivery(Api::Chatwoot);
}

// The rate gate at 2 per second lets one second's burst through and then
// spaces the rest: eight invitations take at least two seconds.
#[test]
fn generic_rate_gate_spaces_deliveries() {
    let platform = FaultyPlatform::start(Api::Generic);
    let setup = Setup::new(
        Api::Generic,
        &platform.url,
        &[("ALLIANCE_DELIVERY_RATE_PER_SECOND", "2")],
    );
    let service = setup.start();
    let chats = setup.end_chats(&service, 4);

    wait_delivered(&setup, &service, &platform, &chats, Duration::from_secs(20));
    assert_exactly_once(&setup, &platform, &chats);
    let posts = platform.posts();
    let first = posts.first().unwrap().received_at;
    let span = posts.last().unwrap().received_at - first;
    assert!(span >= Duration::from_secs(2), "eight deliveries took only {span:?}");
    let in_first_second = posts
        .iter()
        .filter(|post| post.received_at - first < Duration::from_millis(900))
        .count();
    assert!(in_first_second <= 4, "{in_first_second} deliveries in the first 0.9 s");
}

// The first post lands but its answer is lost; the lookup before the retry
// then gets a 404, so the invitation becomes a dead letter. (The two lookups
// before the first posts, one per role, succeed.) An admin retry
// must still find the earlier message instead of posting a second one.
#[test]
fn chatwoot_retry_of_landed_dead_letter_posts_once() {
    let platform = FaultyPlatform::start(Api::Chatwoot);
    let lookups_fail = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let fail = lookups_fail.clone();
    platform.set_rule(move |request| {
        if request.method == "POST" && request.earlier == 0 {
            Action::StoreThenDrop
        } else if request.method == "GET" && request.earlier >= 2 && fail.load(std::sync::atomic::Ordering::SeqCst) {
            Action::Status {
                status: 404,
                retry_after: None,
            }
        } else {
            Action::Normal
        }
    });
    let setup = Setup::new(Api::Chatwoot, &platform.url, &[]);
    let service = setup.start();
    let chats = setup.end_chats(&service, 1);

    wait_until(
        Duration::from_secs(10),
        || deliveries(&service, "dead").len() == 2,
        || format!("two dead letters; dead {:?}", deliveries(&service, "dead")),
    );
    assert_eq!(platform.stored().len(), 2, "both first posts landed");

    lookups_fail.store(false, std::sync::atomic::Ordering::SeqCst);
    for delivery in deliveries(&service, "dead") {
        let id = delivery["invitation_id"].as_str().unwrap();
        let response = client()
            .post(service.url(&format!("/api/admin/deliveries/{id}/retry")))
            .bearer_auth(&setup.config.admin_token)
            .send()
            .unwrap();
        assert_eq!(response.status(), 202, "retry of {id}");
    }
    wait_delivered(&setup, &service, &platform, &chats, Duration::from_secs(10));
    assert_exactly_once(&setup, &platform, &chats);
}
