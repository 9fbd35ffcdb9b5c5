//! Shared helpers of the end-to-end tests: the real `alliance` binary on a
//! free loopback port with a fresh store, a small recording chat platform,
//! and an independent Standard Webhooks signer.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Path of the `alliance` binary that cargo built for this test run.
/// `ALLIANCE_BIN` overrides it.
pub fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("ALLIANCE_BIN") {
        return PathBuf::from(path);
    }
    // This test runs as target/<profile>/deps/<name>; the binary is target/<profile>/alliance.
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile> directory");
    let candidate = profile_dir.join("alliance");
    assert!(
        candidate.exists(),
        "the alliance binary is missing at {}; run the tests with `cargo test --workspace`, which builds it",
        candidate.display()
    );
    candidate
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Signs `id.timestamp.body` with HMAC-SHA256 written out here, independent
/// of the service's signing code.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The server key (`ALLIANCE_SECRET_KEY`) of every test service.
pub const TEST_SERVER_KEY: [u8; 32] = [42; 32];

pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Computes the stored pseudonym of a platform id from the documented
/// derivation: HMAC-SHA256(pseudonym key, kind ‖ 0 ‖ id).
pub fn pseudonym(kind: &str, id: &str) -> String {
    let key = hmac_sha256(&TEST_SERVER_KEY, &[b"alliance/pseudonym-key/v1"]);
    hex(&hmac_sha256(&key, &[kind.as_bytes(), b"\0", id.as_bytes()]))
}

pub fn random_secret() -> String {
    format!("whsec_{}", STANDARD.encode(rand::random::<[u8; 32]>()))
}

/// Settings shared by a service and the tools that talk to it.
#[derive(Clone)]
pub struct TestConfig {
    pub port: u16,
    pub data_dir: PathBuf,
    pub webhook_secrets: Vec<String>,
    pub platform_url: String,
    pub platform_token: String,
    pub signing_secret: String,
    pub admin_token: String,
    pub extra: Vec<(String, String)>,
}

impl TestConfig {
    pub fn new(data_dir: &Path, platform_url: &str) -> Self {
        Self {
            port: free_port(),
            data_dir: data_dir.to_path_buf(),
            webhook_secrets: vec![random_secret(), random_secret()],
            platform_url: platform_url.to_string(),
            platform_token: "test-platform-token-0123456789".into(),
            signing_secret: random_secret(),
            admin_token: "test-admin-token-0123456789abcdef".into(),
            extra: Vec::new(),
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Applies the settings as ALLIANCE_* variables to a command.
    pub fn apply(&self, command: &mut Command) {
        for (key, _) in std::env::vars() {
            if key.starts_with("ALLIANCE_") {
                command.env_remove(key);
            }
        }
        command
            .env("ALLIANCE_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("ALLIANCE_DATA_DIR", &self.data_dir)
            .env("ALLIANCE_SECRET_KEY", STANDARD.encode(TEST_SERVER_KEY))
            .env("ALLIANCE_WEBHOOK_SECRETS", self.webhook_secrets.join(","))
            .env("ALLIANCE_PLATFORM_URL", &self.platform_url)
            .env("ALLIANCE_PLATFORM_TOKEN", &self.platform_token)
            .env("ALLIANCE_PLATFORM_SIGNING_SECRET", &self.signing_secret)
            .env("ALLIANCE_ADMIN_TOKEN", &self.admin_token)
            .env("ALLIANCE_DELIVERY_RATE_PER_SECOND", "0")
            .env("RUST_LOG", "warn");
        for (key, value) in &self.extra {
            command.env(key, value);
        }
    }
}

/// A running `alliance serve`, killed when dropped.
pub struct Service {
    pub child: Child,
    pub config: TestConfig,
}

impl Service {
    pub fn start(config: &TestConfig) -> Self {
        Self::start_with_config_file(config, None)
    }

    /// Starts `alliance --config FILE serve` when `file` is given, with the
    /// test settings as environment variables, which override the file.
    pub fn start_with_config_file(config: &TestConfig, file: Option<&Path>) -> Self {
        let mut command = Command::new(binary());
        if let Some(file) = file {
            command.arg("--config").arg(file);
        }
        command.arg("serve").stdout(Stdio::null()).stderr(Stdio::inherit());
        config.apply(&mut command);
        let child = command.spawn().expect("alliance serve starts");
        let service = Self {
            child,
            config: config.clone(),
        };
        service.wait_healthy(Duration::from_secs(20));
        service
    }

    pub fn wait_healthy(&self, timeout: Duration) {
        let started = Instant::now();
        let client = client();
        while started.elapsed() < timeout {
            let response = client.get(format!("{}/healthz", self.config.base_url())).send();
            if response.is_ok_and(|response| response.status().is_success()) {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("the service did not answer /healthz within {timeout:?}");
    }

    /// Sends SIGKILL and waits for the process to end.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.base_url())
    }

    pub fn report(&self) -> serde_json::Value {
        let response = client()
            .get(self.url("/api/admin/report"))
            .bearer_auth(&self.config.admin_token)
            .send()
            .expect("report request");
        assert_eq!(response.status(), 200);
        response.json().expect("report JSON")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A signed `POST /webhooks/chat-ended`, built by hand so a test can break any part.
pub struct SignedWebhook {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: Vec<u8>,
    pub content_type: String,
}

impl SignedWebhook {
    pub fn chat_ended(secret: &str, chat_id: &str) -> Self {
        let body = serde_json::json!({
            "type": "chat.ended",
            "timestamp": "2022-07-01T10:15:02Z",
            "data": {
                "chat_id": chat_id,
                "ended_at": "2022-07-01T10:14:31Z",
                "organization": "GGD Regio Utrecht",
                "topic": "voeding",
                "child_age_group": "0-5",
                "locale": "nl",
                "message_counts": { "parent": 9, "professional": 11 },
                "parent": { "participant_id": "v-981" },
                "professional": { "participant_id": "n-17" }
            }
        });
        Self::new(secret, &format!("msg_{chat_id}"), serde_json::to_vec(&body).unwrap())
    }

    pub fn new(secret: &str, id: &str, body: Vec<u8>) -> Self {
        let timestamp = now_secs();
        Self {
            id: id.to_string(),
            timestamp: timestamp.to_string(),
            signature: sign(secret, id, timestamp, &body),
            body,
            content_type: "application/json".into(),
        }
    }

    pub fn send(&self, service: &Service) -> (u16, serde_json::Value) {
        self.send_to(service, "/webhooks/chat-ended")
    }

    /// Posts the webhook to `path` of the service and returns the status and
    /// the JSON body (`null` when the body is not JSON).
    pub fn send_to(&self, service: &Service, path: &str) -> (u16, serde_json::Value) {
        let response = client()
            .post(service.url(path))
            .header("content-type", &self.content_type)
            .header("webhook-id", &self.id)
            .header("webhook-timestamp", &self.timestamp)
            .header("webhook-signature", &self.signature)
            .body(self.body.clone())
            .send()
            .expect("webhook request");
        let status = response.status().as_u16();
        let body = response.json().unwrap_or(serde_json::Value::Null);
        (status, body)
    }
}

/// One request the recording platform received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub raw: Vec<u8>,
    pub body: serde_json::Value,
}

/// A minimal chat platform on loopback that records every request and
/// answers with the next status from a script (201 when the script is empty).
pub struct RecordingPlatform {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    pub script: Arc<Mutex<Vec<u16>>>,
    /// Body of Chatwoot's conversation list (`GET …/conversations`), page 1.
    pub conversations: Arc<Mutex<serde_json::Value>>,
}

impl RecordingPlatform {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(Vec::new()));
        let conversations = Arc::new(Mutex::new(serde_json::json!({ "data": { "payload": [] } })));
        let shared = (requests.clone(), script.clone(), conversations.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (requests, script, conversations) = (shared.0.clone(), shared.1.clone(), shared.2.clone());
                thread::spawn(move || serve_connection(stream, &requests, &script, &conversations));
            }
        });
        Self {
            url,
            requests,
            script,
            conversations,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until at least `count` requests arrived.
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Recorded> {
        let started = Instant::now();
        loop {
            let requests = self.requests();
            if requests.len() >= count || started.elapsed() > timeout {
                return requests;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The token of the invitation for `role`, from the first matching request.
    pub fn token_for(&self, role: &str) -> Option<String> {
        self.requests()
            .iter()
            .find(|request| request.body["recipient"]["role"] == role)
            .and_then(|request| request.body["questionnaire"]["token"].as_str().map(str::to_string))
    }
}

/// Answers a GET the way Chatwoot's API would: a conversation's messages are
/// the ones posted to it here, and the conversation list is what the test set.
fn answer_get(path: &str, requests: &Mutex<Vec<Recorded>>, conversations: &Mutex<serde_json::Value>) -> String {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    if route.ends_with("/messages") {
        let posted: Vec<serde_json::Value> = requests
            .lock()
            .unwrap()
            .iter()
            .filter(|request| request.path == route)
            .map(|request| request.body.clone())
            .collect();
        return serde_json::json!({ "payload": posted }).to_string();
    }
    if route.ends_with("/conversations") && query.contains("page=1") {
        return conversations.lock().unwrap().to_string();
    }
    serde_json::json!({ "data": { "payload": [] } }).to_string()
}

fn serve_connection(
    stream: TcpStream,
    requests: &Mutex<Vec<Recorded>>,
    script: &Mutex<Vec<u16>>,
    conversations: &Mutex<serde_json::Value>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let method = request_line.split_whitespace().next().unwrap_or("").to_string();
        let path = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if method == "GET" {
            let body = answer_get(&path, requests, conversations);
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/json\r\n\r\n{body}",
                body.len()
            );
            if (&stream).write_all(reply.as_bytes()).is_err() {
                return;
            }
            continue;
        }
        let status = {
            let mut script = script.lock().unwrap();
            if script.is_empty() { 201 } else { script.remove(0) }
        };
        requests.lock().unwrap().push(Recorded {
            path,
            headers,
            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            raw: body,
        });
        let reply =
            format!("HTTP/1.1 {status} Status\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{{}}");
        let mut stream = &stream;
        if stream.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// Two tokens of one chat, as the platform received them.
pub struct Tokens {
    pub parent: String,
    pub professional: String,
}

/// Sends a signed `chat.ended` webhook and waits for both invitations of that chat.
pub fn invite(service: &Service, platform: &RecordingPlatform, chat_id: &str) -> Tokens {
    let webhook = SignedWebhook::chat_ended(&service.config.webhook_secrets[0], chat_id);
    let (status, body) = webhook.send(service);
    assert_eq!(status, 202, "webhook for {chat_id}: {body}");
    wait_for_tokens(platform, chat_id)
}

/// Waits until the platform received both invitations of a chat and returns their tokens.
pub fn wait_for_tokens(platform: &RecordingPlatform, chat_id: &str) -> Tokens {
    let path = format!("/chats/{chat_id}/messages");
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
            return Tokens { parent, professional };
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the platform did not receive both invitations of {chat_id} within 10 s"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

pub mod faulty;
pub mod study;
