//! The peer-review view (`GET /api/admin/peer-review` and the dashboard page
//! `GET /report/peer-review`) through the real binary. The tests cover
//! grouping, the items of largest difference, small-cell suppression,
//! organization-limited tokens, filters and per-nurse figures on and off.
//! They also check that nothing in the view identifies a chat, a parent or
//! a nurse.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use common::{RecordingPlatform, Service, SignedWebhook, TestConfig, client, hex, now_secs, pseudonym, sign};

/// Smallest group shown in these tests, so that a few chats make a group.
const MIN_CELL_SIZE: &str = "3";

/// Server key that `TestConfig::apply` passes as `ALLIANCE_SECRET_KEY`.
const NOORD_TOKEN: &str = "noord-quality-token-0123456789";
const ZUID_TOKEN: &str = "zuid-quality-token-0123456789";

/// Answers of a side whose overall category is good.
const ALL_GOOD: [&str; 11] = ["good"; 11];

/// Category sufficient; item 4 insufficient, items 1–3, 5, 6 sufficient.
const ITEM_4_LOW: [&str; 11] = [
    "sufficient",
    "sufficient",
    "sufficient",
    "insufficient",
    "sufficient",
    "sufficient",
    "good",
    "good",
    "good",
    "good",
    "good",
];

/// Category sufficient; items 1–6 sufficient.
const FIRST_SIX_SUFFICIENT: [&str; 11] = [
    "sufficient",
    "sufficient",
    "sufficient",
    "sufficient",
    "sufficient",
    "sufficient",
    "good",
    "good",
    "good",
    "good",
    "good",
];

/// Category good, although item 1 differs from [`ALL_GOOD`].
const ITEM_1_LOW: [&str; 11] = [
    "insufficient",
    "good",
    "good",
    "good",
    "good",
    "good",
    "good",
    "good",
    "good",
    "good",
    "good",
];

/// One chat of the test data.
struct ChatSpec {
    id: &'static str,
    organization: &'static str,
    professional: &'static str,
    ended_at: &'static str,
    parent: Option<[&'static str; 11]>,
    nurse: Option<[&'static str; 11]>,
}

const fn pair(
    id: &'static str,
    organization: &'static str,
    professional: &'static str,
    ended_at: &'static str,
    parent: [&'static str; 11],
    nurse: [&'static str; 11],
) -> ChatSpec {
    ChatSpec {
        id,
        organization,
        professional,
        ended_at,
        parent: Some(parent),
        nurse: Some(nurse),
    }
}

const W26: &str = "2022-07-01T10:14:31Z";
const W26_EARLY: &str = "2022-06-28T09:05:12Z";
const W27: &str = "2022-07-05T13:44:09Z";
const W28: &str = "2022-07-12T11:21:50Z";

/// GGD Noord: 8 pairs (pro-anna 4, pro-bram 3, pro-cees 1), 3 disagreeing.
/// GGD Oost: 4 pairs, 1 disagreeing. GGD West: 3 pairs, 1 disagreeing.
/// GGD Zuid: 1 pair, disagreeing. Two more chats in GGD Noord are no pair.
const CHATS: &[ChatSpec] = &[
    pair("chat-noord-01", "GGD Noord", "pro-anna", W26, ALL_GOOD, ITEM_4_LOW),
    pair(
        "chat-noord-02",
        "GGD Noord",
        "pro-bram",
        W26_EARLY,
        FIRST_SIX_SUFFICIENT,
        ALL_GOOD,
    ),
    pair(
        "chat-noord-03",
        "GGD Noord",
        "pro-cees",
        W27,
        ALL_GOOD,
        FIRST_SIX_SUFFICIENT,
    ),
    pair("chat-noord-04", "GGD Noord", "pro-anna", W26, ALL_GOOD, ITEM_1_LOW),
    pair("chat-noord-05", "GGD Noord", "pro-anna", W26, ALL_GOOD, ALL_GOOD),
    pair("chat-noord-06", "GGD Noord", "pro-anna", W27, ALL_GOOD, ALL_GOOD),
    pair("chat-noord-07", "GGD Noord", "pro-bram", W27, ALL_GOOD, ALL_GOOD),
    pair("chat-noord-08", "GGD Noord", "pro-bram", W27, ALL_GOOD, ALL_GOOD),
    ChatSpec {
        id: "chat-noord-09",
        organization: "GGD Noord",
        professional: "pro-anna",
        ended_at: W26,
        parent: Some(ITEM_4_LOW),
        nurse: None,
    },
    ChatSpec {
        id: "chat-noord-10",
        organization: "GGD Noord",
        professional: "pro-bram",
        ended_at: W26,
        parent: None,
        nurse: None,
    },
    pair("chat-oost-01", "GGD Oost", "pro-dirk", W26, ALL_GOOD, ITEM_4_LOW),
    pair("chat-oost-02", "GGD Oost", "pro-dirk", W26, ALL_GOOD, ALL_GOOD),
    pair("chat-oost-03", "GGD Oost", "pro-dirk", W27, ALL_GOOD, ALL_GOOD),
    pair("chat-oost-04", "GGD Oost", "pro-dirk", W27, ALL_GOOD, ALL_GOOD),
    pair(
        "chat-west-01",
        "GGD West",
        "pro-eva",
        W28,
        ALL_GOOD,
        FIRST_SIX_SUFFICIENT,
    ),
    pair("chat-west-02", "GGD West", "pro-eva", W28, ALL_GOOD, ALL_GOOD),
    pair("chat-west-03", "GGD West", "pro-eva", W28, ALL_GOOD, ALL_GOOD),
    pair("chat-zuid-01", "GGD Zuid", "pro-fien", W26, ALL_GOOD, ITEM_4_LOW),
];

/// Computes the label a nurse gets in per-nurse figures.
fn nurse_label(participant_id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"alliance/nurse-label/v1\0");
    hasher.update(pseudonym("participant", participant_id).as_bytes());
    format!("nurse-{}", &hex(&hasher.finalize())[..8])
}

fn config_file(dir: &Path) -> std::path::PathBuf {
    let digest = |token: &str| hex(&Sha256::digest(token.as_bytes()));
    let text = format!(
        "[[admin_tokens]]\nlabel = \"quality team Noord\"\nsha256 = \"{}\"\norganizations = [\"GGD Noord\"]\n\n\
         [[admin_tokens]]\nlabel = \"quality team Zuid\"\nsha256 = \"{}\"\norganizations = [\"GGD Zuid\"]\n",
        digest(NOORD_TOKEN),
        digest(ZUID_TOKEN)
    );
    let path = dir.join("alliance.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts `alliance --config FILE serve` with the test settings. The log,
/// audit lines included, goes to `service.log` next to the config file.
fn start_service(config: &TestConfig, file: &Path) -> Service {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file.with_file_name("service.log"))
        .unwrap();
    let mut command = Command::new(common::binary());
    command
        .arg("--config")
        .arg(file)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    config.apply(&mut command);
    command.env("RUST_LOG", "warn,alliance::audit=info");
    let service = Service {
        child: command.spawn().expect("alliance serve starts"),
        config: config.clone(),
    };
    service.wait_healthy(Duration::from_secs(20));
    service
}

fn settings(per_nurse_figures: bool) -> Vec<(String, String)> {
    vec![
        ("ALLIANCE_MIN_CELL_SIZE".into(), MIN_CELL_SIZE.into()),
        ("ALLIANCE_PER_NURSE_FIGURES".into(), per_nurse_figures.to_string()),
    ]
}

/// Ends one chat and returns its parent and professional tokens.
fn end_chat(service: &Service, platform: &RecordingPlatform, chat: &ChatSpec) -> (String, String) {
    let body = json!({
        "type": "chat.ended",
        "timestamp": chat.ended_at,
        "data": {
            "chat_id": chat.id,
            "ended_at": chat.ended_at,
            "organization": chat.organization,
            "topic": "slapen",
            "child_age_group": "0-5",
            "locale": "nl",
            "parent": { "participant_id": format!("par-{}", chat.id) },
            "professional": { "participant_id": chat.professional }
        }
    });
    let webhook = SignedWebhook::new(
        &service.config.webhook_secrets[0],
        &format!("msg_{}", chat.id),
        serde_json::to_vec(&body).unwrap(),
    );
    let (status, reply) = webhook.send(service);
    assert_eq!(status, 202, "chat-ended for {}: {reply}", chat.id);

    let path = format!("/chats/{}/messages", chat.id);
    let started = Instant::now();
    loop {
        let requests = platform.requests();
        let token = |role: &str| {
            requests
                .iter()
                .filter(|request| request.path == path)
                .find(|request| request.body["recipient"]["role"] == role)
                .and_then(|request| request.body["questionnaire"]["token"].as_str())
                .map(str::to_string)
        };
        if let (Some(parent), Some(professional)) = (token("parent"), token("professional")) {
            return (parent, professional);
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the platform did not receive both invitations of {} within 10 s",
            chat.id
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Submits all 11 answers and a comment through the signed answers webhook.
fn answer(service: &Service, token: &str, ratings: &[&str; 11], comment: &str) {
    let answers: serde_json::Map<String, Value> = ratings
        .iter()
        .enumerate()
        .map(|(index, rating)| ((index + 1).to_string(), json!(rating)))
        .collect();
    let body = serde_json::to_vec(&json!({
        "type": "questionnaire.answered",
        "data": { "token": token, "answers": answers, "submitted": true, "comment": comment }
    }))
    .unwrap();
    let id = format!("msg_answer_{}", &token[..20]);
    let timestamp = now_secs();
    let response = client()
        .post(service.url("/webhooks/questionnaire-answered"))
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header(
            "webhook-signature",
            sign(&service.config.webhook_secrets[0], &id, timestamp, &body),
        )
        .body(body)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200, "answers for {id}");
}

fn comment_for(chat: &ChatSpec) -> String {
    format!("private remark about {}", chat.id)
}

/// Sends every chat of [`CHATS`] and its answers.
fn load_chats(service: &Service, platform: &RecordingPlatform) {
    for chat in CHATS {
        let (parent_token, professional_token) = end_chat(service, platform, chat);
        if let Some(ratings) = &chat.parent {
            answer(service, &parent_token, ratings, &comment_for(chat));
        }
        if let Some(ratings) = &chat.nurse {
            answer(service, &professional_token, ratings, &comment_for(chat));
        }
    }
}

fn peer_review(service: &Service, token: &str, query: &str) -> (u16, Value) {
    let response = client()
        .get(service.url(&format!("/api/admin/peer-review{query}")))
        .bearer_auth(token)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn view(service: &Service, token: &str, query: &str) -> Value {
    let (status, body) = peer_review(service, token, query);
    assert_eq!(status, 200, "peer review {query}: {body}");
    body
}

fn group<'a>(view: &'a Value, name: &str) -> &'a Value {
    view["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|group| group["name"] == name)
        .unwrap_or_else(|| panic!("group {name} missing in {view}"))
}

fn group_names(view: &Value) -> Vec<String> {
    view["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|group| group["name"].as_str().unwrap_or("null").to_string())
        .collect()
}

fn collect_keys(value: &Value, keys: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                keys.insert(key.clone());
                collect_keys(inner, keys);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_keys(item, keys)),
        _ => {}
    }
}

/// Every key the view may have. None of them contains an id, a time or a comment.
const ALLOWED_KEYS: &[&str] = &[
    "generated_at",
    "filter",
    "from",
    "to",
    "organization",
    "topic",
    "child_age_group",
    "lang",
    "group_by",
    "min_cell_size",
    "per_nurse_figures",
    "filtered",
    "suppressed",
    "pairs",
    "disagreeing",
    "groups",
    "name",
    "chats",
    "nurses",
    "iso_week",
    "parent_category",
    "professional_category",
    "largest_differences",
    "item",
    "element",
    "parent_text",
    "professional_text",
    "parent",
    "professional",
    "difference",
    "label",
    "category",
    "agreeing",
    "percent",
    "ci95",
];

/// Checks that a JSON view or HTML page carries no id, pseudonym, chat
/// time or comment of any chat.
fn assert_nothing_identifying(text: &str, what: &str) {
    for chat in CHATS {
        let forbidden = [
            chat.id.to_string(),
            format!("par-{}", chat.id),
            chat.professional.to_string(),
            pseudonym("chat", chat.id),
            pseudonym("participant", chat.professional),
            pseudonym("participant", &format!("par-{}", chat.id)),
            comment_for(chat),
            chat.ended_at.to_string(),
            chat.ended_at[11..19].to_string(),
        ];
        for needle in forbidden {
            assert!(!text.contains(&needle), "{what} contains {needle:?}");
        }
    }
    assert!(!text.contains("inv_"), "{what} contains an invitation id");
}

fn assert_no_nurse_data(view: &Value) {
    let mut keys = BTreeSet::new();
    collect_keys(view, &mut keys);
    assert!(!keys.contains("nurses"), "per-nurse figures are off: {view}");
    assert!(!keys.contains("label"), "per-nurse figures are off: {view}");
    let text = view.to_string();
    for professional in ["pro-anna", "pro-bram", "pro-cees", "pro-dirk", "pro-eva", "pro-fien"] {
        assert!(
            !text.contains(&nurse_label(professional)),
            "label of {professional} in {view}"
        );
    }
}

/// Logs in to the dashboard and returns the session cookie.
fn dashboard_cookie(service: &Service, token: &str) -> String {
    let response = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(service.url("/report/login"))
        .form(&[("token", token)])
        .send()
        .unwrap();
    assert_eq!(response.status(), 303, "dashboard login");
    let header = response.headers().get("set-cookie").unwrap().to_str().unwrap();
    header.split(';').next().unwrap().to_string()
}

fn dashboard_page(service: &Service, cookie: &str, path: &str) -> String {
    let response = client().get(service.url(path)).header("cookie", cookie).send().unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.text().unwrap()
}

#[test]
fn peer_review_groups_suppresses_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let platform = RecordingPlatform::start();
    let file = config_file(dir.path());
    let mut config = TestConfig::new(&dir.path().join("data"), &platform.url);
    config.extra = settings(false);
    let service = start_service(&config, &file);
    load_chats(&service, &platform);
    let admin = config.admin_token.clone();

    // Without a token, or with bad parameters, the view is refused.
    let (status, _) = peer_review(&service, "not-a-token-at-all", "");
    assert_eq!(status, 401);
    let (status, body) = peer_review(&service, &admin, "?lang=de");
    assert_eq!(status, 422);
    assert_eq!(body["error"], "invalid_lang");
    let (status, body) = peer_review(&service, &admin, "?from=1-7-2022");
    assert_eq!(status, 422);
    assert_eq!(body["error"], "invalid_filter");

    // The whole view: 16 pairs, 6 of them disagreeing.
    let all = view(&service, &admin, "");
    assert_eq!(all["group_by"], "organization");
    assert_eq!(all["min_cell_size"], 3);
    assert_eq!(all["filtered"], false);
    assert_eq!(all["suppressed"], false);
    assert_eq!(all["pairs"], 16);
    assert_eq!(all["disagreeing"], 6);
    assert_eq!(group_names(&all), ["GGD Noord", "GGD Oost", "GGD West", "GGD Zuid"]);

    // GGD Noord: the no-pair chats and the pair that differs on an item but
    // not on the category are not listed.
    let noord = group(&all, "GGD Noord");
    assert_eq!(noord["suppressed"], false);
    assert_eq!(noord["pairs"], 8);
    assert_eq!(noord["disagreeing"], 3);
    let rows = noord["chats"].as_array().unwrap();
    assert_eq!(rows.len(), 3);

    // Week 26 first, the larger difference first within the week.
    assert_eq!(rows[0]["iso_week"], "2022-W26");
    assert_eq!(rows[0]["parent_category"], "good");
    assert_eq!(rows[0]["professional_category"], "sufficient");
    let largest = rows[0]["largest_differences"].as_array().unwrap();
    assert_eq!(largest.len(), 1, "only item 4 differs by 2: {largest:?}");
    assert_eq!(largest[0]["item"], 4);
    assert_eq!(largest[0]["difference"], 2);
    assert_eq!(largest[0]["parent"], "good");
    assert_eq!(largest[0]["professional"], "insufficient");
    assert_eq!(largest[0]["element"], "Sensitiviteit");
    assert_eq!(
        largest[0]["parent_text"],
        "speelde goed in op mijn (minderheids-)positie"
    );
    assert_eq!(
        largest[0]["professional_text"],
        "speelde goed in op de (minderheids-)positie"
    );

    assert_eq!(rows[1]["iso_week"], "2022-W26");
    assert_eq!(rows[1]["parent_category"], "sufficient");
    assert_eq!(rows[1]["professional_category"], "good");
    let items: Vec<(i64, i64)> = rows[1]["largest_differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| (item["item"].as_i64().unwrap(), item["difference"].as_i64().unwrap()))
        .collect();
    assert_eq!(items, [(1, -1), (2, -1), (3, -1), (4, -1), (5, -1), (6, -1)]);

    assert_eq!(rows[2]["iso_week"], "2022-W27");
    assert_eq!(rows[2]["largest_differences"][0]["difference"], 1);

    let oost = group(&all, "GGD Oost");
    assert_eq!(oost["pairs"], 4);
    assert_eq!(oost["disagreeing"], 1);
    assert_eq!(oost["chats"].as_array().unwrap().len(), 1);

    // GGD Zuid has 1 pair, under 3; GGD West (3 pairs) is hidden with it,
    // or Zuid's figures would follow from the totals.
    for name in ["GGD Zuid", "GGD West"] {
        let hidden = group(&all, name);
        assert_eq!(hidden["suppressed"], true, "{name}");
        assert_eq!(hidden["pairs"], Value::Null, "{name}");
        assert_eq!(hidden["disagreeing"], Value::Null, "{name}");
        assert_eq!(hidden["chats"], json!([]), "{name}");
    }

    // Nothing identifies a chat, and per-nurse figures are off.
    let mut keys = BTreeSet::new();
    collect_keys(&all, &mut keys);
    for key in &keys {
        assert!(
            ALLOWED_KEYS.contains(&key.as_str()),
            "unexpected key {key:?} in the view"
        );
    }
    assert_nothing_identifying(&all.to_string(), "the JSON view");
    assert_eq!(all["per_nurse_figures"], false);
    assert_no_nurse_data(&all);

    // English wording on request.
    let english = view(&service, &admin, "?lang=en");
    assert_eq!(
        group(&english, "GGD Noord")["chats"][0]["largest_differences"][0]["element"],
        "Sensitivity"
    );

    // A token limited to GGD Noord sees only that group.
    let noord_only = view(&service, NOORD_TOKEN, "");
    assert_eq!(noord_only["filtered"], true);
    assert_eq!(noord_only["suppressed"], false);
    assert_eq!(noord_only["pairs"], 8);
    assert_eq!(group_names(&noord_only), ["GGD Noord"]);
    assert_eq!(group(&noord_only, "GGD Noord")["chats"].as_array().unwrap().len(), 3);

    // Asking that token for another organization gives nothing of it.
    let elsewhere = view(&service, NOORD_TOKEN, "?organization=GGD%20Zuid");
    assert_eq!(elsewhere["groups"], json!([]));
    assert_eq!(elsewhere["suppressed"], true);
    assert_eq!(elsewhere["pairs"], Value::Null);

    // A token limited to GGD Zuid, with 1 pair, sees the view suppressed.
    let zuid_only = view(&service, ZUID_TOKEN, "");
    assert_eq!(zuid_only["suppressed"], true);
    assert_eq!(zuid_only["pairs"], Value::Null);
    assert_eq!(zuid_only["disagreeing"], Value::Null);
    assert_eq!(group_names(&zuid_only), ["GGD Zuid"]);
    assert_eq!(group(&zuid_only, "GGD Zuid")["suppressed"], true);
    assert_eq!(group(&zuid_only, "GGD Zuid")["chats"], json!([]));

    // The report's filters apply: from 10 July only GGD West's 3 pairs.
    let late = view(&service, &admin, "?from=2022-07-10");
    assert_eq!(late["filtered"], true);
    assert_eq!(late["pairs"], 3);
    assert_eq!(group_names(&late), ["GGD West"]);
    assert_eq!(group(&late, "GGD West")["chats"][0]["iso_week"], "2022-W28");
    let other_topic = view(&service, &admin, "?topic=voeding");
    assert_eq!(other_topic["groups"], json!([]));

    // The dashboard page shows the same, in Dutch by default and in English.
    let cookie = dashboard_cookie(&service, &admin);
    let page = dashboard_page(&service, &cookie, "/report/peer-review");
    assert!(page.contains("Intervisie: waar ouder en jeugdverpleegkundige verschillen"));
    assert!(page.contains("GGD Noord"));
    assert!(page.contains("2022-W26"));
    assert!(page.contains("4. Sensitiviteit</strong>: ouder goed, jeugdverpleegkundige onvoldoende (verschil +2)"));
    assert!(page.contains("Verborgen. Deze groep heeft te weinig paren"));
    assert!(!page.contains("Per jeugdverpleegkundige"), "per-nurse figures are off");
    assert_nothing_identifying(&page, "the dashboard page");
    let english_page = dashboard_page(&service, &cookie, "/report/peer-review?lang=en");
    assert!(english_page.contains("Peer review: where parent and nurse differ"));
    assert!(english_page.contains("4. Sensitivity</strong>: parent good, nurse insufficient (difference +2)"));
    let report_page = dashboard_page(&service, &cookie, "/report");
    assert!(
        report_page.contains("href=\"/report/peer-review?lang=nl\""),
        "the report links to it"
    );

    // A dashboard session of the Noord token sees only GGD Noord.
    let noord_cookie = dashboard_cookie(&service, NOORD_TOKEN);
    let noord_page = dashboard_page(&service, &noord_cookie, "/report/peer-review");
    assert!(noord_page.contains("GGD Noord"));
    for other in ["GGD Oost", "GGD West", "GGD Zuid"] {
        assert!(!noord_page.contains(other), "{other} on the Noord page");
    }

    // Store-wide data needs a token that sees every organization.
    for (method, path) in [("GET", "/metrics"), ("POST", "/api/admin/backup")] {
        let request = match method {
            "GET" => client().get(service.url(path)),
            _ => client().post(service.url(path)),
        };
        let response = request.bearer_auth(NOORD_TOKEN).send().unwrap();
        assert_eq!(response.status(), 403, "{method} {path} with the Noord token");
        let body: Value = response.json().unwrap();
        assert_eq!(body["error"], "forbidden", "{method} {path}");
    }
    let metrics = client()
        .get(service.url("/metrics"))
        .bearer_auth(&admin)
        .send()
        .unwrap();
    assert_eq!(metrics.status(), 200);

    // The contract is published.
    let spec: Value = client()
        .get(service.url("/openapi.json"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(spec["paths"]["/api/admin/peer-review"]["get"].is_object());
    assert!(spec["paths"]["/report/peer-review"]["get"].is_object());

    // Without a session the page is the login form.
    let login = client().get(service.url("/report/peer-review")).send().unwrap();
    assert_eq!(login.status(), 200);
    assert!(login.text().unwrap().contains("Beheertoken"));

    // Every view served is audit-logged with the token's label.
    let log = std::fs::read_to_string(dir.path().join("service.log")).unwrap();
    let audit: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("peer-review view served"))
        .collect();
    assert!(audit.iter().any(|line| line.contains("quality team Noord")), "{log}");
    assert!(audit.iter().any(|line| line.contains("admin=admin")), "{log}");
    for chat in CHATS {
        assert!(!log.contains(chat.id), "raw chat id {} in the log", chat.id);
        assert!(!log.contains(&comment_for(chat)), "comment of {} in the log", chat.id);
    }
}

#[test]
fn per_nurse_figures_only_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let platform = RecordingPlatform::start();
    let file = config_file(dir.path());
    let mut config = TestConfig::new(&dir.path().join("data"), &platform.url);
    config.extra = settings(false);
    let mut service = start_service(&config, &file);
    load_chats(&service, &platform);

    let off = view(&service, &config.admin_token, "");
    assert_eq!(off["per_nurse_figures"], false);
    assert_no_nurse_data(&off);

    // The same store with per-nurse figures switched on.
    service.kill();
    config.extra = settings(true);
    let service = start_service(&config, &file);
    let on = view(&service, &config.admin_token, "");
    assert_eq!(on["per_nurse_figures"], true);

    // GGD Noord: pro-anna has 4 pairs (3 agreeing) and is shown. pro-cees
    // has 1 pair; pro-bram's 3 pairs are hidden with it, or pro-cees's
    // figures would follow from the group's totals.
    let nurses = group(&on, "GGD Noord")["nurses"].as_array().unwrap().clone();
    assert_eq!(nurses.len(), 3);
    let nurse = |participant: &str| {
        let label = nurse_label(participant);
        nurses
            .iter()
            .find(|row| row["label"] == label.as_str())
            .unwrap_or_else(|| panic!("no row labelled {label} for {participant} in {nurses:?}"))
            .clone()
    };
    let anna = nurse("pro-anna");
    assert_eq!(anna["suppressed"], false);
    assert_eq!(anna["category"]["pairs"], 4);
    assert_eq!(anna["category"]["agreeing"], 3);
    assert_eq!(anna["category"]["percent"], 75.0);
    for hidden in ["pro-bram", "pro-cees"] {
        let row = nurse(hidden);
        assert_eq!(row["suppressed"], true, "{hidden}");
        assert_eq!(row["category"], Value::Null, "{hidden}");
    }

    let oost_nurses = group(&on, "GGD Oost")["nurses"].as_array().unwrap().clone();
    assert_eq!(oost_nurses.len(), 1);
    assert_eq!(oost_nurses[0]["label"], nurse_label("pro-dirk").as_str());
    assert_eq!(oost_nurses[0]["category"]["pairs"], 4);
    assert_eq!(oost_nurses[0]["category"]["agreeing"], 3);

    // A suppressed group lists no nurse at all.
    for name in ["GGD West", "GGD Zuid"] {
        assert_eq!(group(&on, name)["nurses"], json!([]), "{name}");
    }

    // Labels are no ids, pseudonyms or comments.
    assert_nothing_identifying(&on.to_string(), "the JSON view with per-nurse figures");

    // A token limited to GGD Zuid, with 1 pair, sees no nurse either.
    let zuid_only = view(&service, ZUID_TOKEN, "");
    assert_eq!(group(&zuid_only, "GGD Zuid")["nurses"], json!([]));
    assert!(!zuid_only.to_string().contains(&nurse_label("pro-fien")));

    // The page shows the table, with the hidden cells marked.
    let cookie = dashboard_cookie(&service, &config.admin_token);
    let page = dashboard_page(&service, &cookie, "/report/peer-review");
    assert!(page.contains("Per jeugdverpleegkundige"));
    assert!(page.contains(&nurse_label("pro-anna")));
    assert!(page.contains("<td colspan=\"2\" class=\"hidden\">verborgen</td>"));
    assert!(
        !page.contains(&nurse_label("pro-fien")),
        "a suppressed group lists no nurse"
    );
    assert_nothing_identifying(&page, "the dashboard page with per-nurse figures");
}
