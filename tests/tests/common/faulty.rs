//! A scriptable chat platform on loopback for fault tests. It speaks either
//! the generic platform API (idempotency keys, `409` for a key it has
//! stored) or enough of Chatwoot's API (messages posted to a conversation
//! and listed back). A test sets a rule that picks an `Action` for each
//! request: respond normally, respond with a status, stall, respond late, or
//! drop the connection, before or after the platform stores the request.
//! Every exchange is logged with its timing, so a test can check what the
//! platform saw.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Which API the platform speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// `POST /chats/{chat_id}/messages` with an `Idempotency-Key`.
    Generic,
    /// `POST` and `GET /api/v1/accounts/{account}/conversations/{id}/messages`.
    Chatwoot,
}

/// What the platform does with one request.
#[derive(Clone, Debug)]
pub enum Action {
    /// Stores a new request and responds `201` (generic) or `200` (Chatwoot).
    /// A generic request with a stored key gets `409`.
    Normal,
    /// Responds with this status without storing, with an optional `Retry-After` value.
    Status { status: u16, retry_after: Option<String> },
    /// Keeps the connection open without storing or responding, then closes it.
    Stall(Duration),
    /// Stores the request, keeps the connection open without responding, then closes it.
    StoreThenStall(Duration),
    /// Stores the request and closes the connection without responding.
    StoreThenDrop,
    /// Stores the request and responds normally after a delay.
    StoreThenAnswerLate(Duration),
}

/// One request, as passed to the rule.
#[derive(Clone, Debug)]
pub struct Incoming {
    pub method: String,
    pub path: String,
    /// `parent` or `professional`: the generic body's recipient role, or
    /// Chatwoot's `private` flag (a private note is the professional's).
    pub role: Option<String>,
    /// The `Idempotency-Key` header (generic only).
    pub key: Option<String>,
    /// Earlier requests with the same method, path and role.
    pub earlier: usize,
}

/// One exchange the platform logged.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub role: Option<String>,
    pub headers: HashMap<String, String>,
    pub raw: Vec<u8>,
    pub body: serde_json::Value,
    pub received_at: Instant,
    /// Unix time in seconds, with fractions, when the request arrived.
    pub received_unix: f64,
    pub action: Action,
    /// The status the platform sent back before the client's timeout could
    /// pass; `None` for stalls, drops and late answers.
    pub prompt_status: Option<u16>,
    pub answered_at: Option<Instant>,
    /// Whether this request stored a new message (or idempotency key).
    pub stored: bool,
}

impl Exchange {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// A message the platform stored: a generic invitation under its key, or a
/// Chatwoot message in a conversation.
#[derive(Clone, Debug)]
pub struct StoredMessage {
    pub path: String,
    pub role: Option<String>,
    pub key: Option<String>,
    pub body: serde_json::Value,
}

type Rule = Box<dyn FnMut(&Incoming) -> Action + Send>;

struct State {
    api: Api,
    rule: Mutex<Rule>,
    exchanges: Mutex<Vec<Exchange>>,
    stored: Mutex<Vec<StoredMessage>>,
}

/// The fault platform; its listener threads run until the test process ends.
pub struct FaultyPlatform {
    pub url: String,
    state: Arc<State>,
}

impl FaultyPlatform {
    /// Starts on a free loopback port, answering every request normally.
    pub fn start(api: Api) -> Self {
        Self::listen(api, TcpListener::bind("127.0.0.1:0").expect("bind a loopback port"))
    }

    /// Starts on a given loopback port, for tests that configure the service
    /// with the platform's address before the platform listens.
    pub fn start_on(api: Api, port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|error| panic!("cannot bind 127.0.0.1:{port} for the platform: {error}"));
        Self::listen(api, listener)
    }

    fn listen(api: Api, listener: TcpListener) -> Self {
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State {
            api,
            rule: Mutex::new(Box::new(|_: &Incoming| Action::Normal)),
            exchanges: Mutex::new(Vec::new()),
            stored: Mutex::new(Vec::new()),
        });
        let shared = state.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                thread::spawn(move || serve_connection(stream, &state));
            }
        });
        Self { url, state }
    }

    /// Replaces the rule that picks an action for each request.
    pub fn set_rule(&self, rule: impl FnMut(&Incoming) -> Action + Send + 'static) {
        *self.state.rule.lock().unwrap() = Box::new(rule);
    }

    /// Responds to every request normally from now on.
    pub fn heal(&self) {
        self.set_rule(|_| Action::Normal);
    }

    pub fn exchanges(&self) -> Vec<Exchange> {
        self.state.exchanges.lock().unwrap().clone()
    }

    /// Returns the `POST` exchanges, oldest first.
    pub fn posts(&self) -> Vec<Exchange> {
        self.exchanges().into_iter().filter(|e| e.method == "POST").collect()
    }

    pub fn stored(&self) -> Vec<StoredMessage> {
        self.state.stored.lock().unwrap().clone()
    }

    /// Waits until at least `count` requests arrived, and returns them all.
    pub fn wait_for_requests(&self, count: usize, timeout: Duration) -> Vec<Exchange> {
        let started = Instant::now();
        loop {
            let exchanges = self.exchanges();
            if exchanges.len() >= count || started.elapsed() > timeout {
                return exchanges;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// One HTTP/1.1 request: method, path, lower-case headers and body.
type RawRequest = (String, String, HashMap<String, String>, Vec<u8>);

/// Reads one request; `None` when the client closed the connection.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<RawRequest> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return None;
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
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
    reader.read_exact(&mut body).ok()?;
    Some((method, path, headers, body))
}

fn role_of(api: Api, body: &serde_json::Value) -> Option<String> {
    match api {
        Api::Generic => body["recipient"]["role"].as_str().map(str::to_string),
        Api::Chatwoot => body["private"]
            .as_bool()
            .map(|private| if private { "professional" } else { "parent" }.to_string()),
    }
}

fn write_response(stream: &TcpStream, status: u16, extra_headers: &str, body: &str) -> bool {
    let reply = format!(
        "HTTP/1.1 {status} Status\r\nContent-Length: {}\r\nContent-Type: application/json\r\n{extra_headers}\r\n{body}",
        body.len()
    );
    let mut stream = stream;
    stream.write_all(reply.as_bytes()).is_ok()
}

fn serve_connection(stream: TcpStream, state: &State) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    while let Some((method, path, headers, raw)) = read_request(&mut reader) {
        let received_at = Instant::now();
        let received_unix = unix_now();
        let body: serde_json::Value = serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null);
        let role = role_of(state.api, &body);
        let key = headers.get("idempotency-key").cloned();

        // Logs the exchange and picks its action under one lock, so
        // `earlier` counts requests in their order of arrival.
        let (index, action) = {
            let mut exchanges = state.exchanges.lock().unwrap();
            let earlier = exchanges
                .iter()
                .filter(|e| e.method == method && e.path == path && e.role == role)
                .count();
            let incoming = Incoming {
                method: method.clone(),
                path: path.clone(),
                role: role.clone(),
                key: key.clone(),
                earlier,
            };
            let action = (state.rule.lock().unwrap())(&incoming);
            exchanges.push(Exchange {
                method: method.clone(),
                path: path.clone(),
                role: role.clone(),
                headers,
                raw,
                body: body.clone(),
                received_at,
                received_unix,
                action: action.clone(),
                prompt_status: None,
                answered_at: None,
                stored: false,
            });
            (exchanges.len() - 1, action)
        };

        let store =
            |state: &State| -> (u16, String) { store_request(state, index, &method, &path, &role, &key, &body) };
        let keep_open = match action {
            Action::Normal => {
                let (status, reply) = store(state);
                // Recorded before writing, so no request that the answer
                // enables can be logged as arriving before it.
                record_answer(state, index, status);
                write_response(&stream, status, "", &reply)
            }
            Action::Status { status, retry_after } => {
                let extra = retry_after
                    .map(|value| format!("Retry-After: {value}\r\n"))
                    .unwrap_or_default();
                record_answer(state, index, status);
                write_response(&stream, status, &extra, "{\"error\":\"scripted\"}")
            }
            Action::Stall(hold) => {
                thread::sleep(hold);
                false
            }
            Action::StoreThenStall(hold) => {
                store(state);
                thread::sleep(hold);
                false
            }
            Action::StoreThenDrop => {
                store(state);
                false
            }
            Action::StoreThenAnswerLate(delay) => {
                let (status, reply) = store(state);
                thread::sleep(delay);
                write_response(&stream, status, "", &reply);
                false
            }
        };
        if !keep_open {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
    }
}

fn record_answer(state: &State, index: usize, status: u16) {
    let mut exchanges = state.exchanges.lock().unwrap();
    exchanges[index].prompt_status = Some(status);
    exchanges[index].answered_at = Some(Instant::now());
}

/// Applies a request the way the platform would when it processes it, and
/// returns the status and body of the normal response.
fn store_request(
    state: &State,
    index: usize,
    method: &str,
    path: &str,
    role: &Option<String>,
    key: &Option<String>,
    body: &serde_json::Value,
) -> (u16, String) {
    let mut stored = state.stored.lock().unwrap();
    if method == "GET" {
        let route = path.split('?').next().unwrap_or(path);
        if route.ends_with("/messages") {
            let messages: Vec<serde_json::Value> = stored
                .iter()
                .filter(|message| message.path == route)
                .map(|message| message.body.clone())
                .collect();
            return (200, serde_json::json!({ "payload": messages }).to_string());
        }
        // Chatwoot's conversation list, polled for reconciliation: empty.
        return (
            200,
            serde_json::json!({ "data": { "meta": {}, "payload": [] } }).to_string(),
        );
    }

    let seen_key = key
        .as_deref()
        .is_some_and(|key| stored.iter().any(|message| message.key.as_deref() == Some(key)));
    if state.api == Api::Generic && seen_key {
        return (409, "{\"error\":\"duplicate idempotency key\"}".into());
    }
    let id = stored.len() + 1;
    let mut message = body.clone();
    if state.api == Api::Chatwoot {
        message["id"] = serde_json::json!(id);
    }
    stored.push(StoredMessage {
        path: path.to_string(),
        role: role.clone(),
        key: key.clone(),
        body: message.clone(),
    });
    state.exchanges.lock().unwrap()[index].stored = true;
    match state.api {
        Api::Generic => (201, serde_json::json!({ "id": id }).to_string()),
        Api::Chatwoot => (200, message.to_string()),
    }
}
