//! The dead-letter list as an admin reads it. Each delivery names its chat
//! by the stored pseudonym and organization, never by a raw platform id.
//! The list comes in pages, and bad paging values get a 400 that names
//! them. A token limited to organizations sees and retries only their chats.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use common::{RecordingPlatform, Service, SignedWebhook, TestConfig, client, hex, pseudonym};

const CHATS: usize = 7;
const NOORD_TOKEN: &str = "noord-quality-token-0123456789";

/// Ends a chat of `organization` with raw ids that the test can look for.
fn end_chat(service: &Service, chat_id: &str, organization: &str) {
    let body = json!({
        "type": "chat.ended",
        "data": {
            "chat_id": chat_id,
            "ended_at": "2022-07-01T10:14:31Z",
            "organization": organization,
            "parent": { "participant_id": format!("parent-of-{chat_id}") },
            "professional": { "participant_id": format!("nurse-of-{chat_id}") }
        }
    });
    let webhook = SignedWebhook::new(
        &service.config.webhook_secrets[0],
        &format!("msg_{chat_id}"),
        serde_json::to_vec(&body).unwrap(),
    );
    assert_eq!(webhook.send(service).0, 202, "webhook for {chat_id}");
}

/// `GET /api/admin/deliveries` with `query`: the status and the JSON body.
fn list(service: &Service, token: &str, query: &str) -> (u16, Value) {
    let response = client()
        .get(service.url(&format!("/api/admin/deliveries?{query}")))
        .bearer_auth(token)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap())
}

/// Reads every page of the dead-letter list, `limit` at a time; returns the
/// deliveries and the size of each page.
fn all_pages(service: &Service, token: &str, limit: usize) -> (Vec<Value>, Vec<usize>) {
    let mut deliveries = Vec::new();
    let mut sizes = Vec::new();
    let mut query = format!("status=dead&limit={limit}");
    loop {
        let (status, body) = list(service, token, &query);
        assert_eq!(status, 200, "{query}: {body}");
        let page = body["deliveries"].as_array().unwrap().clone();
        sizes.push(page.len());
        deliveries.extend(page);
        match body["next_cursor"].as_str() {
            Some(cursor) => query = format!("status=dead&limit={limit}&cursor={cursor}"),
            None => {
                assert!(body["next_cursor"].is_null(), "{body}");
                return (deliveries, sizes);
            }
        }
        assert!(sizes.len() <= 20, "the pages do not end: {sizes:?}");
    }
}

fn scoped_config_file(dir: &std::path::Path) -> std::path::PathBuf {
    let text = format!(
        "[[admin_tokens]]\nlabel = \"quality team Noord\"\nsha256 = \"{}\"\norganizations = [\"GGD Noord\"]\n",
        hex(&Sha256::digest(NOORD_TOKEN.as_bytes()))
    );
    let path = dir.join("alliance.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn dead_letters_name_chats_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let platform = RecordingPlatform::start();
    // The platform rejects every invitation, so each one becomes a dead letter.
    *platform.script.lock().unwrap() = vec![400; 2 * CHATS];
    let config = TestConfig::new(&dir.path().join("data"), &platform.url);
    let file = scoped_config_file(dir.path());
    let service = Service::start_with_config_file(&config, Some(&file));
    let admin = config.admin_token.clone();

    let mut organizations = BTreeMap::new();
    for number in 0..CHATS {
        let chat_id = format!("c-dead-{number}");
        let organization = if number < 2 { "GGD Noord" } else { "GGD Zuid" };
        end_chat(&service, &chat_id, organization);
        organizations.insert(pseudonym("chat", &chat_id), organization.to_string());
    }
    let started = Instant::now();
    while all_pages(&service, &admin, 1000).0.len() < 2 * CHATS {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the dead letters did not appear"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Pages of 3 hold every dead letter once, in invitation id order.
    let (dead, sizes) = all_pages(&service, &admin, 3);
    assert_eq!(sizes, [3, 3, 3, 3, 2]);
    let ids: Vec<&str> = dead
        .iter()
        .map(|entry| entry["invitation_id"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(ids, sorted, "each dead letter once, in id order");

    // Each names its chat by the stored pseudonym, and both roles of a chat share it.
    let mut roles_per_chat: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in &dead {
        let chat = entry["chat"].as_str().unwrap_or_else(|| panic!("no chat in {entry}"));
        assert_eq!(
            entry["organization"].as_str(),
            organizations.get(chat).map(String::as_str),
            "{entry}"
        );
        let text = entry.to_string();
        assert!(!text.contains("c-dead-"), "a raw chat id is shown: {text}");
        assert!(!text.contains("-of-c-dead"), "a raw participant id is shown: {text}");
        roles_per_chat
            .entry(chat.to_string())
            .or_default()
            .insert(entry["role"].as_str().unwrap().to_string());
    }
    assert_eq!(roles_per_chat.len(), CHATS, "every chat is named");
    for roles in roles_per_chat.values() {
        assert_eq!(
            roles.len(),
            2,
            "parent and professional of one chat share the chat: {roles:?}"
        );
    }

    // The default page contains them all, and the last page has no next cursor.
    let (status, body) = list(&service, &admin, "status=dead");
    assert_eq!(status, 200);
    assert_eq!(body["deliveries"].as_array().unwrap().len(), 2 * CHATS);
    assert!(body["next_cursor"].is_null(), "{body}");

    // A token limited to GGD Noord sees and retries only the dead letters of its two chats.
    let (noord, _) = all_pages(&service, NOORD_TOKEN, 1000);
    assert_eq!(noord.len(), 4, "{noord:?}");
    assert!(
        noord.iter().all(|entry| entry["organization"] == "GGD Noord"),
        "{noord:?}"
    );
    let zuid_letter = dead
        .iter()
        .find(|entry| entry["organization"] == "GGD Zuid")
        .and_then(|entry| entry["invitation_id"].as_str())
        .unwrap();
    let retry = client()
        .post(service.url(&format!("/api/admin/deliveries/{zuid_letter}/retry")))
        .bearer_auth(NOORD_TOKEN)
        .send()
        .unwrap();
    assert_eq!(retry.status(), 404, "a dead letter of another organization");
    assert_eq!(
        all_pages(&service, &admin, 1000).0.len(),
        2 * CHATS,
        "nothing was retried"
    );
}

#[test]
fn bad_paging_values_get_400() {
    let dir = tempfile::tempdir().unwrap();
    let platform = RecordingPlatform::start();
    let config = TestConfig::new(dir.path(), &platform.url);
    let service = Service::start(&config);
    let admin = &config.admin_token;

    let cases = [
        ("status=dead&limit=0", "invalid_limit"),
        ("status=dead&limit=1001", "invalid_limit"),
        ("status=dead&limit=ten", "invalid_limit"),
        ("status=dead&limit=", "invalid_limit"),
        ("status=dead&cursor=inv_xyz", "invalid_cursor"),
        ("status=dead&cursor=", "invalid_cursor"),
        (
            "status=dead&cursor=1700000000000.inv_0123456789abcdef0123456789abcdef",
            "invalid_cursor",
        ),
        (
            "status=pending&cursor=inv_0123456789abcdef0123456789abcdef",
            "invalid_cursor",
        ),
    ];
    for (query, code) in cases {
        let (status, body) = list(&service, admin, query);
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"], code, "{query}: {body}");
        let message = body["message"].as_str().unwrap();
        let name = code.trim_start_matches("invalid_");
        assert!(message.contains(name), "{query}: the message names {name}: {message}");
    }

    let (status, body) = list(
        &service,
        admin,
        "status=pending&limit=1000&cursor=1700000000000.inv_0123456789abcdef0123456789abcdef",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deliveries"], json!([]));
    assert!(body["next_cursor"].is_null(), "{body}");
}
