//! The crash harness: load the service with webhooks and answers, kill it
//! with SIGKILL at a random moment, restart it on the same store, and check
//! that every acknowledged webhook and answer is there and that no
//! invitation was lost. Twenty rounds.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{RecordingPlatform, Service, SignedWebhook, TestConfig, client};

const ROUNDS: usize = 20;

/// Everything the service acknowledged: chats (by id) and answers (token, item, rating).
#[derive(Default)]
struct Acknowledged {
    chats: Vec<String>,
    answers: HashMap<(String, u8), &'static str>,
}

/// Sends new chats and answers the questionnaires whose tokens arrived,
/// recording every acknowledgement, until `stop` is set.
fn load(
    base_url: String,
    secret: String,
    round: usize,
    platform: Arc<Mutex<Vec<common::Recorded>>>,
    acknowledged: Arc<Mutex<Acknowledged>>,
    stop: Arc<AtomicBool>,
) {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let ratings = ["insufficient", "sufficient", "good"];
    let mut sequence = 0usize;
    while !stop.load(Ordering::SeqCst) {
        sequence += 1;
        let chat_id = format!("c-round{round}-{sequence}");
        let webhook = SignedWebhook::chat_ended(&secret, &chat_id);
        let sent = http
            .post(format!("{base_url}/webhooks/chat-ended"))
            .header("content-type", "application/json")
            .header("webhook-id", &webhook.id)
            .header("webhook-timestamp", &webhook.timestamp)
            .header("webhook-signature", &webhook.signature)
            .body(webhook.body.clone())
            .send();
        if sent.is_ok_and(|response| response.status().is_success()) {
            acknowledged.lock().unwrap().chats.push(chat_id);
        }

        let tokens: Vec<String> = platform
            .lock()
            .unwrap()
            .iter()
            .rev()
            .take(4)
            .filter_map(|request| request.body["questionnaire"]["token"].as_str().map(str::to_string))
            .collect();
        for token in tokens {
            let item = (sequence % 11 + 1) as u8;
            let rating = ratings[sequence % 3];
            let put = http
                .put(format!("{base_url}/api/questionnaires/{token}/items/{item}"))
                .json(&serde_json::json!({ "rating": rating }))
                .send();
            if put.is_ok_and(|response| response.status().is_success()) {
                acknowledged.lock().unwrap().answers.insert((token, item), rating);
            }
        }
    }
}

#[test]
fn twenty_kills_lose_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let platform = RecordingPlatform::start();
    let config = TestConfig::new(dir.path(), &platform.url);
    let secret = config.webhook_secrets[0].clone();
    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let mut service = Service::start(&config);
    let mut random = 0x2545_f491_4f6c_dd1du64;

    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let (base_url, secret) = (config.base_url(), secret.clone());
            let (requests, acknowledged, stop) = (platform.requests.clone(), acknowledged.clone(), stop.clone());
            thread::spawn(move || load(base_url, secret, round, requests, acknowledged, stop))
        };

        // xorshift: a kill between 150 and 1,150 ms into the round.
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        thread::sleep(Duration::from_millis(150 + random % 1000));
        service.kill();
        stop.store(true, Ordering::SeqCst);
        worker.join().unwrap();
        service = Service::start(&config);

        // Every acknowledged chat gets both invitations, after the restart if need be.
        let expected = acknowledged.lock().unwrap().chats.clone();
        let started = Instant::now();
        loop {
            let requests = platform.requests();
            let missing: Vec<&String> = expected
                .iter()
                .filter(|chat| {
                    let path = format!("/chats/{chat}/messages");
                    let roles: std::collections::HashSet<String> = requests
                        .iter()
                        .filter(|request| request.path == path)
                        .filter_map(|request| request.body["recipient"]["role"].as_str().map(str::to_string))
                        .collect();
                    roles.len() < 2
                })
                .collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "round {round}: {} acknowledged chats lack invitations, e.g. {:?}",
                missing.len(),
                missing.first()
            );
            thread::sleep(Duration::from_millis(50));
        }

        // Every acknowledged answer is stored.
        let answers: Vec<((String, u8), &'static str)> = acknowledged
            .lock()
            .unwrap()
            .answers
            .iter()
            .map(|(key, value)| (key.clone(), *value))
            .collect();
        let mut by_token: HashMap<String, Vec<(u8, &'static str)>> = HashMap::new();
        for ((token, item), rating) in answers {
            by_token.entry(token).or_default().push((item, rating));
        }
        for (token, items) in by_token {
            let response = client()
                .get(service.url(&format!("/api/questionnaires/{token}")))
                .send()
                .unwrap();
            assert_eq!(response.status(), 200, "round {round}: questionnaire lost");
            let body: serde_json::Value = response.json().unwrap();
            for (item, rating) in items {
                assert_eq!(
                    body["answers"][item.to_string()],
                    rating,
                    "round {round}: answer to item {item} lost"
                );
            }
        }
    }

    let acknowledged = acknowledged.lock().unwrap();
    assert!(
        acknowledged.chats.len() >= ROUNDS * 5,
        "the load was too light: {} chats",
        acknowledged.chats.len()
    );
    // A chat whose 202 was lost in a kill may be stored too: at most one a
    // round, since one client sends one webhook at a time.
    let stored = service.report()["chats"].as_u64().unwrap() as usize;
    let acknowledged_count = acknowledged.chats.len();
    eprintln!(
        "crash harness: {ROUNDS} kills, {acknowledged_count} chats and {} answers acknowledged, none lost",
        acknowledged.answers.len()
    );
    assert!(
        stored >= acknowledged_count,
        "{stored} chats stored, {acknowledged_count} acknowledged"
    );
    assert!(
        stored <= acknowledged_count + ROUNDS,
        "{stored} chats stored, {acknowledged_count} acknowledged"
    );
}
