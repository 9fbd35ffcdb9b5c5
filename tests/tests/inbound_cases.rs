//! Table-driven inbound cases for `POST /webhooks/chat-ended` and
//! `POST /webhooks/chatwoot`, sent over raw HTTP/1.1 to the real binary so
//! that a case controls every header byte, the header name case, repeated
//! headers and the body framing.
//!
//! Each case uses its own chat id and asserts the status, the `error` code,
//! a word of the message, and whether the chat was stored: the report's
//! `chats` count and the requests that the recording platform received.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{RecordingPlatform, Service, TestConfig, random_secret, sign};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const LIMIT: usize = 64 * 1024;
const CHATWOOT_LIMIT: usize = 256 * 1024;
const CHATWOOT_SECRET: &str = "chatwoot-webhook-secret-for-inbound-cases";
const CHATWOOT_ACCOUNT: u64 = 3;

// ---------------------------------------------------------------------------
// Raw HTTP/1.1 client

/// How a request body goes on the wire.
enum Framing {
    /// `Content-Length` with the whole body.
    Length(Vec<u8>),
    /// `Transfer-Encoding: chunked` in chunks of `chunk` bytes. Without
    /// `finish` the closing zero-length chunk is never sent, so the server
    /// can only respond if it stops reading at the limit.
    Chunked { body: Vec<u8>, chunk: usize, finish: bool },
    /// A `Content-Length` header with no body bytes sent at all.
    DeclaredOnly(u64),
}

struct RawRequest {
    path: &'static str,
    headers: Vec<(String, String)>,
    framing: Framing,
}

impl RawRequest {
    fn new(path: &'static str, body: Vec<u8>) -> Self {
        Self {
            path,
            headers: vec![("Content-Type".into(), "application/json".into())],
            framing: Framing::Length(body),
        }
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    fn without(mut self, name: &str) -> Self {
        self.headers
            .retain(|(existing, _)| !existing.eq_ignore_ascii_case(name));
        self
    }

    fn replace(self, name: &str, value: &str) -> Self {
        self.without(name).header(name, value)
    }

    fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }
}

/// A response: status, the parsed JSON body (`Null` when not JSON) and the
/// raw body text for failure messages.
struct RawResponse {
    status: u16,
    json: Value,
    text: String,
}

fn send_raw(port: u16, request: &RawRequest) -> Result<RawResponse, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|error| format!("connect: {error}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(8))).unwrap();

    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n",
        request.path
    );
    for (name, value) in &request.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let mut wire = Vec::new();
    match &request.framing {
        Framing::Length(body) => {
            head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
            wire.extend_from_slice(head.as_bytes());
            wire.extend_from_slice(body);
        }
        Framing::Chunked { body, chunk, finish } => {
            head.push_str("Transfer-Encoding: chunked\r\n\r\n");
            wire.extend_from_slice(head.as_bytes());
            for piece in body.chunks(*chunk) {
                wire.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                wire.extend_from_slice(piece);
                wire.extend_from_slice(b"\r\n");
            }
            if *finish {
                wire.extend_from_slice(b"0\r\n\r\n");
            }
        }
        Framing::DeclaredOnly(length) => {
            head.push_str(&format!("Content-Length: {length}\r\n\r\n"));
            wire.extend_from_slice(head.as_bytes());
        }
    }
    stream.write_all(&wire).map_err(|error| format!("write: {error}"))?;

    let mut received = Vec::new();
    if let Err(error) = stream.read_to_end(&mut received) {
        // The server may close the connection right after its response, so keep what arrived.
        if received.is_empty() {
            return Err(format!("read: {error} (no response within 8 s)"));
        }
    }
    parse_response(&received)
}

fn parse_response(received: &[u8]) -> Result<RawResponse, String> {
    let split = received
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| format!("no complete response head in {:?}", String::from_utf8_lossy(received)))?;
    let head = String::from_utf8_lossy(&received[..split]).to_string();
    let mut body = received[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let chunked = head
        .lines()
        .any(|line| line.to_ascii_lowercase().starts_with("transfer-encoding:") && line.contains("chunked"));
    if chunked {
        body = decode_chunked(&body);
    }
    let text = String::from_utf8_lossy(&body).to_string();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok(RawResponse { status, json, text })
}

fn decode_chunked(mut data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(line_end) = data.windows(2).position(|window| window == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..line_end]).to_string();
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        if size == 0 || data.len() < line_end + 2 + size {
            break;
        }
        body.extend_from_slice(&data[line_end + 2..line_end + 2 + size]);
        data = &data[(line_end + 4 + size).min(data.len())..];
    }
    body
}

// ---------------------------------------------------------------------------
// Case table

/// What a case must produce.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// `202`, one more chat, and two invitations posted for its chat id.
    Accepted,
    /// `200` with `"status": "accepted"`; Chatwoot's response to a new chat.
    AcceptedWith200,
    /// `200` with `"status": "ignored"`, nothing stored.
    Ignored,
    /// This status and `error` code, a message containing the given text,
    /// and nothing stored.
    Rejected(u16, &'static str, &'static str),
}

/// What a case's request builder gets: its own chat id, the secrets and the
/// current time in Unix seconds.
struct Context {
    chat_id: String,
    conversation_id: u64,
    secrets: Vec<String>,
    now: i64,
}

impl Context {
    fn secret(&self) -> &str {
        &self.secrets[0]
    }

    fn webhook_id(&self) -> String {
        format!("msg_{}", self.chat_id)
    }
}

struct Case {
    name: &'static str,
    /// Whether to sign and send in the first 200 ms of a clock second. The
    /// window-edge cases need it, because the server must read the same second.
    clock_sensitive: bool,
    build: Box<dyn Fn(&Context) -> RawRequest>,
    expect: Expect,
}

fn case(name: &'static str, expect: Expect, build: impl Fn(&Context) -> RawRequest + 'static) -> Case {
    Case {
        name,
        clock_sensitive: false,
        build: Box::new(build),
        expect,
    }
}

fn edge_case(name: &'static str, expect: Expect, build: impl Fn(&Context) -> RawRequest + 'static) -> Case {
    Case {
        clock_sensitive: true,
        ..case(name, expect, build)
    }
}

fn rejected(status: u16, code: &'static str, message_contains: &'static str) -> Expect {
    Expect::Rejected(status, code, message_contains)
}

fn now_secs() -> i64 {
    common::now_secs()
}

/// Sleeps until the wall clock is in the first 200 ms of a second.
fn align_to_second_start() {
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_millis();
    if millis > 200 {
        thread::sleep(Duration::from_millis(u64::from(1000 - millis) + 20));
    }
}

// ---------------------------------------------------------------------------
// Generic chat-ended requests

fn chat_json(chat_id: &str) -> Value {
    json!({
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
    })
}

/// Builds the standard body with one change applied to its JSON value.
fn chat_body_with(context: &Context, change: impl Fn(&mut Value)) -> Vec<u8> {
    let mut value = chat_json(&context.chat_id);
    change(&mut value);
    serde_json::to_vec(&value).unwrap()
}

/// Builds a correctly signed chat-ended request for `body` at `timestamp`.
fn signed_at(context: &Context, body: Vec<u8>, timestamp: i64) -> RawRequest {
    let id = context.webhook_id();
    let signature = sign(context.secret(), &id, timestamp, &body);
    RawRequest::new("/webhooks/chat-ended", body)
        .header("webhook-id", &id)
        .header("webhook-timestamp", &timestamp.to_string())
        .header("webhook-signature", &signature)
}

/// Builds a correctly signed chat-ended request whose `webhook-id` is `id`.
fn signed_with_id(context: &Context, id: &str) -> RawRequest {
    let body = chat_body_with(context, |_| {});
    let signature = sign(context.secret(), id, context.now, &body);
    RawRequest::new("/webhooks/chat-ended", body)
        .header("webhook-id", id)
        .header("webhook-timestamp", &context.now.to_string())
        .header("webhook-signature", &signature)
}

fn signed(context: &Context, body: Vec<u8>) -> RawRequest {
    signed_at(context, body, context.now)
}

fn signed_chat(context: &Context) -> RawRequest {
    signed(context, chat_body_with(context, |_| {}))
}

/// Builds a request whose timestamp header is `timestamp` verbatim, signed
/// over exactly that text, so only the timestamp rules can reject it.
fn signed_with_timestamp_text(context: &Context, timestamp: &str) -> RawRequest {
    let id = context.webhook_id();
    let body = chat_body_with(context, |_| {});
    let key = common_key(context.secret());
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&body);
    let signature = format!("v1,{}", base64_encode(&mac.finalize().into_bytes()));
    RawRequest::new("/webhooks/chat-ended", body)
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp)
        .header("webhook-signature", &signature)
}

fn common_key(secret: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap()
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Computes the `v1,<base64>` signature of the context's standard request.
fn correct_signature(context: &Context) -> String {
    sign(
        context.secret(),
        &context.webhook_id(),
        context.now,
        &chat_body_with(context, |_| {}),
    )
}

/// Builds the signed standard request with its signature header replaced.
fn with_signature(context: &Context, signature: &str) -> RawRequest {
    signed_chat(context).replace("webhook-signature", signature)
}

/// Builds a correctly signed request from a raw body text with the chat id filled in.
fn signed_text(context: &Context, template: &str) -> RawRequest {
    let body = template.replace("CHAT_ID", &context.chat_id);
    signed(context, body.into_bytes())
}

fn signature_cases() -> Vec<Case> {
    let invalid = || rejected(401, "invalid_signature", "webhook-signature");
    vec![
        case("signature truncated by 4 characters", invalid(), |c| {
            let full = correct_signature(c);
            with_signature(c, &full[..full.len() - 4])
        }),
        case("signature entry empty after v1,", invalid(), |c| {
            with_signature(c, "v1,")
        }),
        case("signature over-long", invalid(), |c| {
            with_signature(c, &format!("{}AAAA", correct_signature(c)))
        }),
        case("signature of odd length", invalid(), |c| {
            let full = correct_signature(c);
            with_signature(c, &full[..full.len() - 1])
        }),
        case("signature not base64", invalid(), |c| {
            with_signature(c, "v1,!!!!not*base64*at*all!!!!!!!!!!!!!!!!!!!!!")
        }),
        case("signature with version v2", invalid(), |c| {
            with_signature(c, &correct_signature(c).replacen("v1,", "v2,", 1))
        }),
        case("signature with upper-case V1", invalid(), |c| {
            with_signature(c, &correct_signature(c).replacen("v1,", "V1,", 1))
        }),
        case("signature without version prefix", invalid(), |c| {
            with_signature(c, correct_signature(c).trim_start_matches("v1,"))
        }),
        case("signature without base64 padding", invalid(), |c| {
            with_signature(c, correct_signature(c).trim_end_matches('='))
        }),
        case("signature as hex instead of base64", invalid(), |c| {
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(correct_signature(c).trim_start_matches("v1,"))
                .unwrap();
            let hex: String = raw.iter().map(|byte| format!("{byte:02x}")).collect();
            with_signature(c, &format!("v1,{hex}"))
        }),
        case("signature by an unknown secret", invalid(), |c| {
            let other = sign(&random_secret(), &c.webhook_id(), c.now, &chat_body_with(c, |_| {}));
            with_signature(c, &other)
        }),
        case("signature over a changed body byte", invalid(), |c| {
            let mut body = chat_body_with(c, |_| {});
            let signature = sign(c.secret(), &c.webhook_id(), c.now, &body);
            let position = body.len() / 2;
            body[position] ^= 0x01;
            signed(c, body).replace("webhook-signature", &signature)
        }),
        case("signature over another webhook-id", invalid(), |c| {
            signed_chat(c).replace("webhook-id", &format!("{}x", c.webhook_id()))
        }),
        case("signature entries separated by commas", invalid(), |c| {
            with_signature(c, &format!("v1,AAAA,{}", correct_signature(c)))
        }),
        case("several entries, only the last matches", Expect::Accepted, |c| {
            let wrong = sign(&random_secret(), &c.webhook_id(), c.now, &chat_body_with(c, |_| {}));
            with_signature(
                c,
                &format!("v1,!!! v2,abc v1a,AAAA v1, {wrong} {}", correct_signature(c)),
            )
        }),
        case("several entries, only the first matches", Expect::Accepted, |c| {
            with_signature(c, &format!("{} v1,AAAA v1,", correct_signature(c)))
        }),
        case("entries separated by two spaces", Expect::Accepted, |c| {
            with_signature(c, &format!("v1,AAAA  {}", correct_signature(c)))
        }),
        case("second configured secret (rotation)", Expect::Accepted, |c| {
            let signature = sign(&c.secrets[1], &c.webhook_id(), c.now, &chat_body_with(c, |_| {}));
            with_signature(c, &signature)
        }),
    ]
}

fn timestamp_cases() -> Vec<Case> {
    let invalid = || rejected(401, "invalid_timestamp", "webhook-timestamp");
    let out = || rejected(401, "timestamp_out_of_window", "seconds");
    vec![
        case("timestamp +1800000000", invalid(), |c| {
            signed_with_timestamp_text(c, "+1800000000")
        }),
        case("timestamp 01800000000", invalid(), |c| {
            signed_with_timestamp_text(c, "01800000000")
        }),
        case("timestamp 1.8e9", invalid(), |c| signed_with_timestamp_text(c, "1.8e9")),
        case("timestamp -1", invalid(), |c| signed_with_timestamp_text(c, "-1")),
        case("timestamp i64::MIN", invalid(), |c| {
            signed_with_timestamp_text(c, "-9223372036854775808")
        }),
        case("timestamp 99999999999999999999", invalid(), |c| {
            signed_with_timestamp_text(c, "99999999999999999999")
        }),
        case("timestamp now with plus sign", invalid(), |c| {
            signed_with_timestamp_text(c, &format!("+{}", c.now))
        }),
        case("timestamp now with leading zero", invalid(), |c| {
            signed_with_timestamp_text(c, &format!("0{}", c.now))
        }),
        case("timestamp now with fraction", invalid(), |c| {
            signed_with_timestamp_text(c, &format!("{}.5", c.now))
        }),
        case("timestamp now in full-width digits", invalid(), |c| {
            let full_width: String = c
                .now
                .to_string()
                .chars()
                .map(|digit| char::from_u32(0xFF10 + digit.to_digit(10).unwrap()).unwrap())
                .collect();
            signed_with_timestamp_text(c, &full_width)
        }),
        case("timestamp as RFC 3339 text", invalid(), |c| {
            signed_with_timestamp_text(c, "2026-12-04T10:15:02Z")
        }),
        // HTTP/1.1 strips white space around a header value, so the server
        // receives the canonical number, and the signature over " <now>" then
        // does not match the signature over "<now>".
        case(
            "timestamp with leading space (HTTP strips it)",
            rejected(401, "invalid_signature", "webhook-signature"),
            |c| signed_with_timestamp_text(c, &format!(" {}", c.now)),
        ),
        case(
            "timestamp 1800000000 with leading space",
            rejected(401, "timestamp_out_of_window", "seconds"),
            |c| signed_with_timestamp_text(c, " 1800000000"),
        ),
        case("timestamp in 13-digit milliseconds", out(), |c| {
            signed_with_timestamp_text(c, &(c.now * 1000).to_string())
        }),
        case("timestamp i64::MAX", out(), |c| {
            signed_with_timestamp_text(c, "9223372036854775807")
        }),
        case("timestamp 0", out(), |c| signed_with_timestamp_text(c, "0")),
        edge_case(
            "window -301 s",
            rejected(401, "timestamp_out_of_window", "301 seconds behind"),
            |c| signed_at(c, chat_body_with(c, |_| {}), c.now - 301),
        ),
        edge_case("window -300 s is inside", Expect::Accepted, |c| {
            signed_at(c, chat_body_with(c, |_| {}), c.now - 300)
        }),
        edge_case("window -299 s", Expect::Accepted, |c| {
            signed_at(c, chat_body_with(c, |_| {}), c.now - 299)
        }),
        edge_case("window +299 s", Expect::Accepted, |c| {
            signed_at(c, chat_body_with(c, |_| {}), c.now + 299)
        }),
        edge_case("window +300 s is inside", Expect::Accepted, |c| {
            signed_at(c, chat_body_with(c, |_| {}), c.now + 300)
        }),
        edge_case(
            "window +301 s",
            rejected(401, "timestamp_out_of_window", "301 seconds ahead"),
            |c| signed_at(c, chat_body_with(c, |_| {}), c.now + 301),
        ),
        case(
            "replay signed 10 minutes ago",
            rejected(401, "timestamp_out_of_window", "600 seconds behind"),
            |c| signed_at(c, chat_body_with(c, |_| {}), c.now - 600),
        ),
    ]
}

fn header_cases() -> Vec<Case> {
    let duplicate = |name: &'static str| rejected(400, "duplicate_header", name);
    let missing = |name: &'static str| rejected(401, "missing_signature_headers", name);
    vec![
        case("webhook-id twice", duplicate("webhook-id"), |c| {
            signed_chat(c).header("webhook-id", &c.webhook_id())
        }),
        case(
            "webhook-id of 1281 bytes",
            rejected(400, "webhook_id_too_long", "the limit is 1280"),
            |c| signed_with_id(c, &format!("msg_{}", "x".repeat(1277))),
        ),
        case("webhook-timestamp twice", duplicate("webhook-timestamp"), |c| {
            signed_chat(c).header("webhook-timestamp", &c.now.to_string())
        }),
        case("webhook-signature twice", duplicate("webhook-signature"), |c| {
            signed_chat(c).header("webhook-signature", "v1,AAAA")
        }),
        case("webhook-id twice in different case", duplicate("webhook-id"), |c| {
            signed_chat(c).header("WEBHOOK-ID", "msg_other")
        }),
        case(
            "duplicate header before a bad signature",
            duplicate("webhook-signature"),
            |c| with_signature(c, "v1,AAAA").header("Webhook-Signature", "v1,BBBB"),
        ),
        case("header names in odd case", Expect::Accepted, |c| {
            let request = signed_chat(c);
            let renamed = request
                .headers
                .iter()
                .map(|(name, value)| {
                    let name = match name.as_str() {
                        "webhook-id" => "WEBHOOK-ID".to_string(),
                        "webhook-timestamp" => "Webhook-Timestamp".to_string(),
                        "webhook-signature" => "wEbHoOk-SiGnAtUrE".to_string(),
                        "Content-Type" => "CONTENT-type".to_string(),
                        other => other.to_string(),
                    };
                    (name, value.clone())
                })
                .collect();
            RawRequest {
                headers: renamed,
                ..request
            }
        }),
        case("webhook-id missing", missing("webhook-id"), |c| {
            signed_chat(c).without("webhook-id")
        }),
        case("webhook-timestamp missing", missing("webhook-timestamp"), |c| {
            signed_chat(c).without("webhook-timestamp")
        }),
        case("webhook-signature missing", missing("webhook-signature"), |c| {
            signed_chat(c).without("webhook-signature")
        }),
        case("webhook-id empty", missing("webhook-id"), |c| {
            signed_chat(c).replace("webhook-id", "")
        }),
        case("webhook-timestamp empty", missing("webhook-timestamp"), |c| {
            signed_chat(c).replace("webhook-timestamp", "")
        }),
        case("webhook-signature empty", missing("webhook-signature"), |c| {
            signed_chat(c).replace("webhook-signature", "")
        }),
        case("webhook-signature only spaces", missing("webhook-signature"), |c| {
            signed_chat(c).replace("webhook-signature", "   ")
        }),
        case("all signature headers missing", missing("webhook-id"), |c| {
            signed_chat(c)
                .without("webhook-id")
                .without("webhook-timestamp")
                .without("webhook-signature")
        }),
    ]
}

fn size_and_type_cases() -> Vec<Case> {
    let too_large = || rejected(413, "payload_too_large", "65536");
    let media = || rejected(415, "unsupported_media_type", "application/json");
    vec![
        case("body of exactly 64 KiB", Expect::Accepted, |c| {
            let mut body = chat_body_with(c, |_| {});
            body.resize(LIMIT, b' ');
            signed(c, body)
        }),
        case("body of 64 KiB + 1 with Content-Length", too_large(), |c| {
            let mut body = chat_body_with(c, |_| {});
            body.resize(LIMIT + 1, b' ');
            signed(c, body)
        }),
        case("Content-Length of 10 MB, no body sent", too_large(), |c| {
            signed_chat(c).framing(Framing::DeclaredOnly(10_000_000))
        }),
        case("chunked body of 64 KiB + 1, never finished", too_large(), |c| {
            let mut body = chat_body_with(c, |_| {});
            body.resize(LIMIT + 1, b' ');
            signed(c, body.clone()).framing(Framing::Chunked {
                body,
                chunk: 4096,
                finish: false,
            })
        }),
        case("chunked body under the limit", Expect::Accepted, |c| {
            let body = chat_body_with(c, |_| {});
            signed(c, body.clone()).framing(Framing::Chunked {
                body,
                chunk: 50,
                finish: true,
            })
        }),
        case("oversized body without any signature headers", too_large(), |c| {
            let mut body = chat_body_with(c, |_| {});
            body.resize(LIMIT + 1, b' ');
            RawRequest::new("/webhooks/chat-ended", body).replace("Content-Type", "text/plain")
        }),
        case("Content-Type text/plain", media(), |c| {
            signed_chat(c).replace("Content-Type", "text/plain")
        }),
        case("Content-Type missing", media(), |c| {
            signed_chat(c).without("Content-Type")
        }),
        case("Content-Type form-urlencoded", media(), |c| {
            signed_chat(c).replace("Content-Type", "application/x-www-form-urlencoded")
        }),
        case("Content-Type application/jsonx", media(), |c| {
            signed_chat(c).replace("Content-Type", "application/jsonx")
        }),
        case("Content-Type with charset", Expect::Accepted, |c| {
            signed_chat(c).replace("Content-Type", "application/json; charset=utf-8")
        }),
        case("Content-Type in upper case", Expect::Accepted, |c| {
            signed_chat(c).replace("Content-Type", "Application/JSON")
        }),
        case(
            "bad signature answers before bad content type",
            rejected(401, "invalid_signature", "webhook-signature"),
            |c| with_signature(c, "v1,AAAA").replace("Content-Type", "text/plain"),
        ),
    ]
}

fn body_cases() -> Vec<Case> {
    let invalid_json = || rejected(400, "invalid_json", "");
    let payload = |field: &'static str| rejected(400, "invalid_payload", field);
    vec![
        case("body with emoji", Expect::Accepted, |c| {
            signed(
                c,
                chat_body_with(c, |v| v["data"]["topic"] = json!("slapen 😴 en huilen 🍼")),
            )
        }),
        case("body with ñ", Expect::Accepted, |c| {
            signed(
                c,
                chat_body_with(c, |v| v["data"]["organization"] = json!("Consultorio Peñalara")),
            )
        }),
        case("body with raw U+2028", Expect::Accepted, |c| {
            let text = r#"{"type":"chat.ended","data":{"chat_id":"CHAT_ID","ended_at":"2022-07-01T10:14:31Z",
                "topic":"eerste regel\u{2028}tweede regel","parent":{"participant_id":"v-1"},
                "professional":{"participant_id":"n-1"}}}"#
                .replace("\\u{2028}", "\u{2028}");
            assert!(text.contains('\u{2028}'));
            signed_text(c, &text)
        }),
        case("body with ñ, emoji and U+2028 escaped", Expect::Accepted, |c| {
            signed_text(
                c,
                r#"{"type":"chat.ended","data":{"chat_id":"CHAT_ID","ended_at":"2022-07-01T10:14:31Z",
                "organization":"Espa\u00f1a \ud83d\ude00","topic":"a\u2028b","parent":{"participant_id":"v-1"},
                "professional":{"participant_id":"n-1"}}}"#,
            )
        }),
        case("unknown fields everywhere", Expect::Accepted, |c| {
            signed(
                c,
                chat_body_with(c, |v| {
                    v["version"] = json!(7);
                    v["data"]["channel"] = json!({ "kind": "web", "tags": [1, 2, null] });
                    v["data"]["parent"]["display_name"] = json!("Ouder");
                }),
            )
        }),
        case("odd spacing", Expect::Accepted, |c| {
            signed_text(
                c,
                "\n\t{ \"type\" :\t\"chat.ended\" ,\r\n  \"data\":{\"chat_id\"  :  \"CHAT_ID\" ,\n\n\
                 \"ended_at\":\"2022-07-01T10:14:31Z\",\"parent\" : { \"participant_id\" : \"v-1\" } ,\
                 \"professional\":{\"participant_id\":\"n-1\"}   }   }\n\n",
            )
        }),
        case("different key order", Expect::Accepted, |c| {
            signed_text(
                c,
                r#"{"data":{"professional":{"participant_id":"n-1"},"parent":{"participant_id":"v-1"},
                "ended_at":"2022-07-01T10:14:31Z","chat_id":"CHAT_ID"},"timestamp":"2022-07-01T10:15:02Z",
                "type":"chat.ended"}"#,
            )
        }),
        case("only the required fields", Expect::Accepted, |c| {
            signed_text(
                c,
                r#"{"type":"chat.ended","data":{"chat_id":"CHAT_ID","ended_at":"2022-07-01T10:14:31+02:00",
                "parent":{"participant_id":"v-1"},"professional":{"participant_id":"n-1"}}}"#,
            )
        }),
        case("participant ids as numbers", Expect::Accepted, |c| {
            signed(
                c,
                chat_body_with(c, |v| {
                    v["data"]["parent"]["participant_id"] = json!(981);
                    v["data"]["professional"]["participant_id"] = json!(17);
                }),
            )
        }),
        case("optional labels null", Expect::Accepted, |c| {
            signed(
                c,
                chat_body_with(c, |v| {
                    for field in ["organization", "topic", "child_age_group", "locale", "message_counts"] {
                        v["data"][field] = Value::Null;
                    }
                }),
            )
        }),
        case("event type chat.started", Expect::Ignored, |c| {
            signed(c, chat_body_with(c, |v| v["type"] = json!("chat.started")))
        }),
        case("event type message.created without data", Expect::Ignored, |c| {
            signed(c, br#"{"type":"message.created"}"#.to_vec())
        }),
        case("body not JSON", invalid_json(), |c| signed(c, b"{not json".to_vec())),
        case("body empty", invalid_json(), |c| signed(c, Vec::new())),
        case("body not UTF-8", invalid_json(), |c| {
            let mut body = chat_body_with(c, |_| {});
            let position = body.iter().position(|&byte| byte == b'v').unwrap();
            body[position] = 0xFF;
            signed(c, body)
        }),
        case("body with trailing text", invalid_json(), |c| {
            let mut body = chat_body_with(c, |_| {});
            body.extend_from_slice(b" trailing");
            signed(c, body)
        }),
        case("body with UTF-8 byte order mark", invalid_json(), |c| {
            let mut body = "\u{FEFF}".as_bytes().to_vec();
            body.extend(chat_body_with(c, |_| {}));
            signed(c, body)
        }),
        case("body a JSON array", payload("\"type\""), |c| signed(c, b"[]".to_vec())),
        case("type missing", payload("\"type\""), |c| {
            signed(
                c,
                chat_body_with(c, |v| drop(v.as_object_mut().unwrap().remove("type"))),
            )
        }),
        case("type a number", payload("\"type\""), |c| {
            signed(c, chat_body_with(c, |v| v["type"] = json!(1)))
        }),
        case("data missing", payload("\"data\""), |c| {
            signed(
                c,
                chat_body_with(c, |v| drop(v.as_object_mut().unwrap().remove("data"))),
            )
        }),
        case("data an array", payload("\"data\""), |c| {
            signed(c, chat_body_with(c, |v| v["data"] = json!([])))
        }),
        case("chat_id missing", payload("data.chat_id"), |c| {
            signed(
                c,
                chat_body_with(c, |v| drop(v["data"].as_object_mut().unwrap().remove("chat_id"))),
            )
        }),
        case("chat_id a negative number", payload("data.chat_id"), |c| {
            signed(c, chat_body_with(c, |v| v["data"]["chat_id"] = json!(-42)))
        }),
        case("chat_id a fraction", payload("data.chat_id"), |c| {
            signed(c, chat_body_with(c, |v| v["data"]["chat_id"] = json!(4.2)))
        }),
        case(
            "chat_id with an exponent",
            rejected(400, "invalid_payload", "a fraction or an exponent"),
            |c| signed(c, br#"{"type":"chat.ended","data":{"chat_id":1e3}}"#.to_vec()),
        ),
        case("chat_id a boolean", payload("data.chat_id"), |c| {
            signed(c, chat_body_with(c, |v| v["data"]["chat_id"] = json!(true)))
        }),
        case(
            "participant_id a negative number",
            payload("data.parent.participant_id"),
            |c| {
                signed(
                    c,
                    chat_body_with(c, |v| v["data"]["parent"]["participant_id"] = json!(-7)),
                )
            },
        ),
        case(
            "participant_id a fraction",
            payload("data.professional.participant_id"),
            |c| {
                signed(
                    c,
                    chat_body_with(c, |v| v["data"]["professional"]["participant_id"] = json!(1.5)),
                )
            },
        ),
        case("chat_id empty", payload("data.chat_id"), |c| {
            signed(c, chat_body_with(c, |v| v["data"]["chat_id"] = json!("")))
        }),
        case("chat_id of 257 characters", payload("data.chat_id"), |c| {
            signed(c, chat_body_with(c, |v| v["data"]["chat_id"] = json!("x".repeat(257))))
        }),
        case("chat_id a dot segment", payload("data.chat_id"), |c| {
            signed(c, chat_body_with(c, |v| v["data"]["chat_id"] = json!(".")))
        }),
        case("chat_id a double-dot segment", payload("data.chat_id"), |c| {
            signed(c, chat_body_with(c, |v| v["data"]["chat_id"] = json!("..")))
        }),
        case("ended_at missing", payload("data.ended_at"), |c| {
            signed(
                c,
                chat_body_with(c, |v| drop(v["data"].as_object_mut().unwrap().remove("ended_at"))),
            )
        }),
        case("ended_at not RFC 3339", payload("data.ended_at"), |c| {
            signed(
                c,
                chat_body_with(c, |v| v["data"]["ended_at"] = json!("01-07-2022 10:14")),
            )
        }),
        case("ended_at as Unix seconds", payload("data.ended_at"), |c| {
            signed(c, chat_body_with(c, |v| v["data"]["ended_at"] = json!(1656670471)))
        }),
        case("ended_at in 1999", payload("data.ended_at"), |c| {
            signed(
                c,
                chat_body_with(c, |v| v["data"]["ended_at"] = json!("1999-12-31T23:59:59Z")),
            )
        }),
        case("parent missing", payload("data.parent"), |c| {
            signed(
                c,
                chat_body_with(c, |v| drop(v["data"].as_object_mut().unwrap().remove("parent"))),
            )
        }),
        case("parent a string", payload("data.parent"), |c| {
            signed(c, chat_body_with(c, |v| v["data"]["parent"] = json!("v-981")))
        }),
        case(
            "parent.participant_id missing",
            payload("data.parent.participant_id"),
            |c| signed(c, chat_body_with(c, |v| v["data"]["parent"] = json!({}))),
        ),
        case(
            "parent.participant_id empty",
            payload("data.parent.participant_id"),
            |c| {
                signed(
                    c,
                    chat_body_with(c, |v| v["data"]["parent"]["participant_id"] = json!("")),
                )
            },
        ),
        case("professional missing", payload("data.professional"), |c| {
            signed(
                c,
                chat_body_with(c, |v| drop(v["data"].as_object_mut().unwrap().remove("professional"))),
            )
        }),
        case(
            "professional.participant_id a boolean",
            payload("data.professional.participant_id"),
            |c| {
                signed(
                    c,
                    chat_body_with(c, |v| v["data"]["professional"]["participant_id"] = json!(true)),
                )
            },
        ),
        case("organization a number", payload("data.organization"), |c| {
            signed(c, chat_body_with(c, |v| v["data"]["organization"] = json!(7)))
        }),
        case("topic of 201 characters", payload("data.topic"), |c| {
            signed(c, chat_body_with(c, |v| v["data"]["topic"] = json!("t".repeat(201))))
        }),
        case("locale an array", payload("data.locale"), |c| {
            signed(c, chat_body_with(c, |v| v["data"]["locale"] = json!(["nl"])))
        }),
        case("message_counts a string", payload("data.message_counts"), |c| {
            signed(c, chat_body_with(c, |v| v["data"]["message_counts"] = json!("9/11")))
        }),
        case(
            "message_counts.parent negative",
            payload("data.message_counts.parent"),
            |c| {
                signed(
                    c,
                    chat_body_with(c, |v| v["data"]["message_counts"]["parent"] = json!(-1)),
                )
            },
        ),
        case(
            "message_counts.professional a fraction",
            payload("data.message_counts.professional"),
            |c| {
                signed(
                    c,
                    chat_body_with(c, |v| v["data"]["message_counts"]["professional"] = json!(1.5)),
                )
            },
        ),
    ]
}

fn chat_ended_cases() -> Vec<Case> {
    let mut cases = vec![case("valid request", Expect::Accepted, signed_chat)];
    cases.extend(signature_cases());
    cases.extend(timestamp_cases());
    cases.extend(header_cases());
    cases.extend(size_and_type_cases());
    cases.extend(body_cases());
    cases
}

// ---------------------------------------------------------------------------
// Chatwoot requests

fn chatwoot_signature(timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(CHATWOOT_SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Builds a `conversation_status_changed` payload shaped like Chatwoot's account webhook.
fn conversation_json(context: &Context, status: &str) -> Value {
    json!({
        "event": "conversation_status_changed",
        "id": context.conversation_id,
        "account_id": CHATWOOT_ACCOUNT,
        "inbox_id": 1,
        "status": status,
        "timestamp": context.now,
        "meta": {
            "sender": { "id": 981, "type": "contact" },
            "assignee": { "id": 17, "type": "user" }
        },
        "custom_attributes": { "organization": "GGD Regio Utrecht" },
        "labels": ["topic:voeding"],
        "messages": []
    })
}

fn chatwoot_signed_at(context: &Context, body: Vec<u8>, timestamp: &str) -> RawRequest {
    let signature = chatwoot_signature(timestamp, &body);
    RawRequest::new("/webhooks/chatwoot", body)
        .header("X-Chatwoot-Signature", &signature)
        .header("X-Chatwoot-Timestamp", timestamp)
        .header("X-Chatwoot-Delivery", &format!("delivery-{}", context.chat_id))
}

fn chatwoot_with(context: &Context, change: impl Fn(&mut Value)) -> RawRequest {
    let mut value = conversation_json(context, "resolved");
    change(&mut value);
    chatwoot_signed_at(context, serde_json::to_vec(&value).unwrap(), &context.now.to_string())
}

fn chatwoot_resolved(context: &Context) -> RawRequest {
    chatwoot_with(context, |_| {})
}

fn chatwoot_cases() -> Vec<Case> {
    let invalid = || rejected(401, "invalid_signature", "X-Chatwoot-Signature");
    let missing = || rejected(401, "missing_signature_headers", "X-Chatwoot");
    vec![
        case(
            "chatwoot resolved conversation",
            Expect::AcceptedWith200,
            chatwoot_resolved,
        ),
        case("chatwoot without X-Chatwoot-Delivery", Expect::AcceptedWith200, |c| {
            chatwoot_resolved(c).without("X-Chatwoot-Delivery")
        }),
        case("chatwoot header names in odd case", Expect::AcceptedWith200, |c| {
            let request = chatwoot_resolved(c);
            let headers = request
                .headers
                .iter()
                .map(|(name, value)| (name.to_ascii_uppercase(), value.clone()))
                .collect();
            RawRequest { headers, ..request }
        }),
        case("chatwoot signed with another secret", invalid(), |c| {
            let request = chatwoot_resolved(c);
            let Framing::Length(body) = &request.framing else {
                unreachable!()
            };
            let mut mac = Hmac::<Sha256>::new_from_slice(b"not-the-secret").unwrap();
            mac.update(format!("{}.", c.now).as_bytes());
            mac.update(body);
            let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
            request.replace("X-Chatwoot-Signature", &format!("sha256={hex}"))
        }),
        case("chatwoot signature without sha256= prefix", invalid(), |c| {
            let request = chatwoot_resolved(c);
            let value = request
                .headers
                .iter()
                .find(|(n, _)| n == "X-Chatwoot-Signature")
                .unwrap()
                .1
                .clone();
            request.replace("X-Chatwoot-Signature", value.trim_start_matches("sha256="))
        }),
        case("chatwoot signature truncated", invalid(), |c| {
            let request = chatwoot_resolved(c);
            let value = request
                .headers
                .iter()
                .find(|(n, _)| n == "X-Chatwoot-Signature")
                .unwrap()
                .1
                .clone();
            request.replace("X-Chatwoot-Signature", &value[..value.len() - 2])
        }),
        case("chatwoot signature not hex", invalid(), |c| {
            chatwoot_resolved(c).replace("X-Chatwoot-Signature", &format!("sha256={}", "zz".repeat(32)))
        }),
        case("chatwoot signature over another body", invalid(), |c| {
            let other = chatwoot_with(c, |v| v["id"] = json!(1));
            let value = other
                .headers
                .iter()
                .find(|(n, _)| n == "X-Chatwoot-Signature")
                .unwrap()
                .1
                .clone();
            chatwoot_resolved(c).replace("X-Chatwoot-Signature", &value)
        }),
        case("chatwoot signature missing", missing(), |c| {
            chatwoot_resolved(c).without("X-Chatwoot-Signature")
        }),
        case("chatwoot timestamp missing", missing(), |c| {
            chatwoot_resolved(c).without("X-Chatwoot-Timestamp")
        }),
        case(
            "chatwoot signature twice",
            rejected(400, "duplicate_header", "x-chatwoot-signature"),
            |c| chatwoot_resolved(c).header("x-chatwoot-signature", "sha256=00"),
        ),
        case(
            "chatwoot timestamp +now",
            rejected(401, "invalid_timestamp", "X-Chatwoot-Timestamp"),
            |c| {
                let body = serde_json::to_vec(&conversation_json(c, "resolved")).unwrap();
                chatwoot_signed_at(c, body, &format!("+{}", c.now))
            },
        ),
        case(
            "chatwoot timestamp 1.8e9",
            rejected(401, "invalid_timestamp", "X-Chatwoot-Timestamp"),
            |c| {
                let body = serde_json::to_vec(&conversation_json(c, "resolved")).unwrap();
                chatwoot_signed_at(c, body, "1.8e9")
            },
        ),
        case(
            "chatwoot timestamp in milliseconds",
            rejected(401, "timestamp_out_of_window", "seconds"),
            |c| {
                let body = serde_json::to_vec(&conversation_json(c, "resolved")).unwrap();
                chatwoot_signed_at(c, body, &(c.now * 1000).to_string())
            },
        ),
        edge_case(
            "chatwoot window -301 s",
            rejected(401, "timestamp_out_of_window", "301 seconds"),
            |c| {
                let body = serde_json::to_vec(&conversation_json(c, "resolved")).unwrap();
                chatwoot_signed_at(c, body, &(c.now - 301).to_string())
            },
        ),
        edge_case("chatwoot window +300 s is inside", Expect::AcceptedWith200, |c| {
            let body = serde_json::to_vec(&conversation_json(c, "resolved")).unwrap();
            chatwoot_signed_at(c, body, &(c.now + 300).to_string())
        }),
        case("chatwoot event message_created", Expect::Ignored, |c| {
            chatwoot_with(c, |v| v["event"] = json!("message_created"))
        }),
        case("chatwoot status open", Expect::Ignored, |c| {
            chatwoot_with(c, |v| v["status"] = json!("open"))
        }),
        case("chatwoot status pending", Expect::Ignored, |c| {
            chatwoot_with(c, |v| v["status"] = json!("pending"))
        }),
        case("chatwoot other account", Expect::Ignored, |c| {
            chatwoot_with(c, |v| v["account_id"] = json!(CHATWOOT_ACCOUNT + 1))
        }),
        case("chatwoot other account under account.id", Expect::Ignored, |c| {
            chatwoot_with(c, |v| {
                v.as_object_mut().unwrap().remove("account_id");
                v["account"] = json!({ "id": CHATWOOT_ACCOUNT + 1, "name": "Ander" });
            })
        }),
        case(
            "chatwoot content type text/plain",
            rejected(415, "unsupported_media_type", "application/json"),
            |c| chatwoot_resolved(c).replace("Content-Type", "text/plain"),
        ),
        case("chatwoot body not JSON", rejected(400, "invalid_json", ""), |c| {
            chatwoot_signed_at(c, b"{not json".to_vec(), &c.now.to_string())
        }),
        case(
            "chatwoot conversation id missing",
            rejected(400, "invalid_payload", "\"id\""),
            |c| chatwoot_with(c, |v| drop(v.as_object_mut().unwrap().remove("id"))),
        ),
        case(
            "chatwoot conversation id a string",
            rejected(400, "invalid_payload", "\"id\""),
            |c| chatwoot_with(c, |v| v["id"] = json!("42")),
        ),
        case(
            "chatwoot contact missing",
            rejected(400, "invalid_payload", "meta.sender.id"),
            |c| chatwoot_with(c, |v| v["meta"] = json!({})),
        ),
        case(
            "chatwoot body over 256 KiB",
            rejected(413, "payload_too_large", "262144"),
            |c| {
                let mut body = serde_json::to_vec(&conversation_json(c, "resolved")).unwrap();
                body.resize(CHATWOOT_LIMIT + 1, b' ');
                chatwoot_signed_at(c, body, &c.now.to_string())
            },
        ),
    ]
}

// ---------------------------------------------------------------------------
// Runner

struct Harness {
    _dir: tempfile::TempDir,
    platform: RecordingPlatform,
    service: Service,
}

impl Harness {
    fn start(extra: Vec<(String, String)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let platform = RecordingPlatform::start();
        let mut config = TestConfig::new(dir.path(), &platform.url);
        config.extra = extra;
        let service = Service::start(&config);
        Self {
            _dir: dir,
            platform,
            service,
        }
    }

    fn start_chatwoot() -> Self {
        Self::start(vec![
            ("ALLIANCE_PLATFORM_KIND".into(), "chatwoot".into()),
            ("ALLIANCE_CHATWOOT_WEBHOOK_SECRET".into(), CHATWOOT_SECRET.into()),
            ("ALLIANCE_CHATWOOT_ACCOUNT_ID".into(), CHATWOOT_ACCOUNT.to_string()),
            ("ALLIANCE_CHATWOOT_RECONCILE_SECONDS".into(), "3600".into()),
        ])
    }

    fn chats(&self) -> u64 {
        self.service.report()["chats"]
            .as_u64()
            .expect("report has a chats count")
    }

    fn requests_to(&self, path: &str) -> usize {
        self.platform
            .requests()
            .iter()
            .filter(|request| request.path == path)
            .count()
    }
}

/// Runs every case against one service and returns one line per failed
/// check, prefixed with the case name.
fn run_table(
    harness: &Harness,
    cases: &[Case],
    first_id: u64,
    message_path: impl Fn(&Context) -> String,
) -> Vec<String> {
    let mut failures = Vec::new();
    let mut rejected_paths = Vec::new();
    let mut names = BTreeSet::new();

    for (index, case) in cases.iter().enumerate() {
        assert!(names.insert(case.name), "case name {:?} is used twice", case.name);
        if case.clock_sensitive {
            align_to_second_start();
        }
        let context = Context {
            chat_id: format!("inbound-{:03}", first_id + index as u64),
            conversation_id: first_id + index as u64,
            secrets: harness.service.config.webhook_secrets.clone(),
            now: now_secs(),
        };
        let chats_before = harness.chats();
        let request = (case.build)(&context);
        let mut fail = |what: String| failures.push(format!("[{}] {what}", case.name));

        let response = match send_raw(harness.service.config.port, &request) {
            Ok(response) => response,
            Err(error) => {
                fail(format!("request failed: {error}"));
                continue;
            }
        };
        let body = &response.json;
        let path = message_path(&context);
        let chats_after = harness.chats();

        match case.expect {
            Expect::Accepted | Expect::AcceptedWith200 => {
                let status = if matches!(case.expect, Expect::Accepted) {
                    202
                } else {
                    200
                };
                if response.status != status {
                    fail(format!(
                        "status {} instead of {status}; body {}",
                        response.status, response.text
                    ));
                }
                if body["status"] != "accepted" {
                    fail(format!("status field {} instead of \"accepted\"", body["status"]));
                }
                if chats_after != chats_before + 1 {
                    fail(format!(
                        "chats went from {chats_before} to {chats_after}, expected one more"
                    ));
                }
                let started = std::time::Instant::now();
                while harness.requests_to(&path) < 2 && started.elapsed() < Duration::from_secs(10) {
                    thread::sleep(Duration::from_millis(20));
                }
                if harness.requests_to(&path) != 2 {
                    fail(format!(
                        "{} platform requests to {path} instead of 2",
                        harness.requests_to(&path)
                    ));
                }
            }
            Expect::Ignored => {
                if response.status != 200 {
                    fail(format!(
                        "status {} instead of 200; body {}",
                        response.status, response.text
                    ));
                }
                if body["status"] != "ignored" {
                    fail(format!("status field {} instead of \"ignored\"", body["status"]));
                }
                if chats_after != chats_before {
                    fail(format!("chats went from {chats_before} to {chats_after}"));
                }
                rejected_paths.push((case.name, path));
            }
            Expect::Rejected(status, code, message_contains) => {
                if response.status != status {
                    fail(format!(
                        "status {} instead of {status}; body {}",
                        response.status, response.text
                    ));
                }
                if body["error"] != code {
                    fail(format!(
                        "error {} instead of {code:?}; body {}",
                        body["error"], response.text
                    ));
                }
                let message = body["message"].as_str().unwrap_or("");
                if message.is_empty() || !message.contains(message_contains) {
                    fail(format!("message {message:?} does not contain {message_contains:?}"));
                }
                for secret in &context.secrets {
                    if response.text.contains(secret.trim_start_matches("whsec_")) {
                        fail("the error body contains a configured secret".into());
                    }
                }
                if chats_after != chats_before {
                    fail(format!("chats went from {chats_before} to {chats_after}"));
                }
                rejected_paths.push((case.name, path));
            }
        }
    }

    // Invitations go out asynchronously, so look for stray ones at the end.
    thread::sleep(Duration::from_millis(1000));
    for (name, path) in rejected_paths {
        let count = harness.requests_to(&path);
        if count != 0 {
            failures.push(format!("[{name}] {count} platform requests to {path}, expected none"));
        }
    }
    failures
}

fn assert_no_failures(failures: &[String], cases: usize) {
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures
            .iter()
            .map(|line| line.split(']').next().unwrap())
            .collect::<BTreeSet<_>>()
            .len(),
        failures.join("\n")
    );
}

#[test]
fn chat_ended_table() {
    let cases: Vec<Case> = chat_ended_cases();
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    let harness = Harness::start(Vec::new());
    let failures = run_table(&harness, &cases, 0, |context| {
        format!("/chats/{}/messages", context.chat_id)
    });
    assert_no_failures(&failures, cases.len());
}

#[test]
fn chatwoot_table() {
    let cases: Vec<Case> = chatwoot_cases();
    let harness = Harness::start_chatwoot();
    let failures = run_table(&harness, &cases, 500, |context| {
        format!(
            "/api/v1/accounts/{CHATWOOT_ACCOUNT}/conversations/{}/messages",
            context.conversation_id
        )
    });
    assert_no_failures(&failures, cases.len());
}

// ---------------------------------------------------------------------------
// Cases that need more than one request

#[test]
fn same_webhook_id_twenty_times_at_once() {
    let harness = Harness::start(Vec::new());
    let secret = harness.service.config.webhook_secrets[0].clone();
    let context = Context {
        chat_id: "concurrent".into(),
        conversation_id: 0,
        secrets: vec![secret],
        now: now_secs(),
    };
    let request = Arc::new(signed_chat(&context));
    let port = harness.service.config.port;
    let barrier = Arc::new(Barrier::new(20));

    let senders: Vec<_> = (0..20)
        .map(|_| {
            let (request, barrier) = (request.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                send_raw(port, &request).map(|response| (response.status, response.json["status"].clone()))
            })
        })
        .collect();
    let mut outcomes: Vec<(u16, Value)> = senders
        .into_iter()
        .map(|sender| sender.join().unwrap().expect("request answered"))
        .collect();
    outcomes.sort_by_key(|(status, _)| *status);

    let accepted = outcomes.iter().filter(|(status, _)| *status == 202).count();
    let duplicates = outcomes
        .iter()
        .filter(|(status, body)| *status == 200 && body == "duplicate")
        .count();
    assert_eq!(accepted, 1, "exactly one 202: {outcomes:?}");
    assert_eq!(duplicates, 19, "nineteen 200 duplicate: {outcomes:?}");
    assert_eq!(harness.chats(), 1, "one chat stored");

    let path = "/chats/concurrent/messages";
    harness.platform.wait_for(2, Duration::from_secs(10));
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(harness.requests_to(path), 2, "one invitation per role");
    assert_eq!(harness.platform.requests().len(), 2, "no other platform request");
}

#[test]
fn replayed_webhook_id_changes_nothing() {
    let harness = Harness::start(Vec::new());
    let secrets = harness.service.config.webhook_secrets.clone();
    let port = harness.service.config.port;
    let first = Context {
        chat_id: "replay-first".into(),
        conversation_id: 0,
        secrets: secrets.clone(),
        now: now_secs(),
    };
    let response = send_raw(port, &signed_chat(&first)).unwrap();
    assert_eq!(response.status, 202, "{}", response.text);

    let again = send_raw(port, &signed_chat(&first)).unwrap();
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json["status"], "duplicate");

    // The same webhook-id with another chat in a freshly signed body is a
    // new event under an old id: rejected, and the second chat is not stored.
    let second = Context {
        chat_id: "replay-second".into(),
        conversation_id: 0,
        secrets,
        now: now_secs(),
    };
    let id = first.webhook_id();
    let body = chat_body_with(&second, |_| {});
    let signature = sign(second.secret(), &id, second.now, &body);
    let reused = RawRequest::new("/webhooks/chat-ended", body)
        .header("webhook-id", &id)
        .header("webhook-timestamp", &second.now.to_string())
        .header("webhook-signature", &signature);
    let response = send_raw(port, &reused).unwrap();
    assert_eq!(response.status, 409, "{}", response.text);
    assert_eq!(response.json["error"], "webhook_id_reused");

    assert_eq!(harness.chats(), 1);
    thread::sleep(Duration::from_millis(1000));
    assert_eq!(harness.requests_to("/chats/replay-first/messages"), 2);
    assert_eq!(harness.requests_to("/chats/replay-second/messages"), 0);
}
