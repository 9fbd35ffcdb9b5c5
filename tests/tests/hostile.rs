//! Hostile input across every public endpoint: each request gets a 4xx,
//! never a 5xx; the service stays healthy and nothing is half-written.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{RecordingPlatform, Service, SignedWebhook, TestConfig, client};
use reqwest::Method;

/// One request of the table: method, path, headers, body, and the statuses
/// that are right for it.
struct Case {
    name: String,
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    expected: &'static [u16],
    /// Whether the path is an HTML page, so every response must be HTML.
    page: bool,
}

fn case(name: impl Into<String>, method: Method, path: impl Into<String>, expected: &'static [u16]) -> Case {
    Case {
        name: name.into(),
        method,
        path: path.into(),
        headers: Vec::new(),
        body: Vec::new(),
        expected,
        page: false,
    }
}

impl Case {
    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    fn page(mut self) -> Self {
        self.page = true;
        self
    }

    fn json(self, body: &str) -> Self {
        self.header("content-type", "application/json")
            .body(body.as_bytes().to_vec())
    }
}

/// Sends raw bytes and returns the status of the reply, or 0 when the
/// service closed the connection without one.
fn raw_status(service: &Service, request: &[u8]) -> u16 {
    let address = service.config.base_url().trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = stream.write_all(request);
    let mut reply = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(read) = stream.read(&mut buffer) {
        if read == 0 {
            break;
        }
        reply.extend_from_slice(&buffer[..read]);
        if reply.windows(4).any(|window| window == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&reply);
    text.split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or(0)
}

#[test]
fn hostile_requests_get_4xx_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let platform = RecordingPlatform::start();
    let config = TestConfig::new(dir.path(), &platform.url);
    let service = Service::start(&config);
    let secret = config.webhook_secrets[0].clone();

    // One real chat, so the questionnaire endpoints have a valid token to abuse.
    assert_eq!(SignedWebhook::chat_ended(&secret, "c-real").send(&service).0, 202);
    let token = platform.wait_for(2, Duration::from_secs(10))[0].body["questionnaire"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (id, tag) = token.split_once('.').unwrap();
    let report_before = service.report();

    let bad_request: &[u16] = &[400];
    let unauthorized: &[u16] = &[401];
    let not_found: &[u16] = &[404];
    let method_not_allowed: &[u16] = &[405];
    let unprocessable: &[u16] = &[422];
    let too_large: &[u16] = &[413];
    let unsupported: &[u16] = &[415];
    let any_4xx: &[u16] = &[400, 401, 404, 405, 408, 409, 410, 411, 413, 415, 422, 429, 431];

    let mut cases: Vec<Case> = Vec::new();

    // Webhooks: signatures, headers, bodies.
    for path in ["/webhooks/chat-ended", "/webhooks/questionnaire-answered"] {
        cases.push(case(format!("{path} unsigned"), Method::POST, path, unauthorized).json("{}"));
        cases.push(
            case(format!("{path} garbage signature"), Method::POST, path, unauthorized)
                .header("webhook-id", "msg_x")
                .header("webhook-timestamp", &common::now_secs().to_string())
                .header("webhook-signature", "v1,%%%%")
                .json("{}"),
        );
        cases.push(
            case(format!("{path} timestamp in ms"), Method::POST, path, unauthorized)
                .header("webhook-id", "msg_x")
                .header("webhook-timestamp", &(common::now_secs() * 1000).to_string())
                .header("webhook-signature", "v1,AAAA")
                .json("{}"),
        );
        cases.push(
            case(format!("{path} signature flood"), Method::POST, path, unauthorized)
                .header("webhook-id", "msg_x")
                .header("webhook-timestamp", &common::now_secs().to_string())
                .header("webhook-signature", &vec!["v1,AAAA"; 2000].join(" "))
                .json("{}"),
        );
        cases.push(case(format!("{path} 70 KiB body"), Method::POST, path, too_large).json(&" ".repeat(70 * 1024)));
        cases.push(case(format!("{path} GET"), Method::GET, path, method_not_allowed));
    }
    let signed = |name: &str, body: &[u8], content_type: &str| {
        let webhook = SignedWebhook::new(&secret, &format!("msg_hostile_{name}"), body.to_vec());
        case(format!("signed {name}"), Method::POST, "/webhooks/chat-ended", any_4xx)
            .header("webhook-id", &webhook.id)
            .header("webhook-timestamp", &webhook.timestamp)
            .header("webhook-signature", &webhook.signature)
            .header("content-type", content_type)
            .body(body.to_vec())
    };
    let deep_nesting = "[".repeat(5000);
    let payloads: [(&str, &[u8], &'static [u16]); 16] = [
        ("not json", b"{", bad_request),
        ("latin-1", b"{\"type\":\"chat.ended\",\"data\":{\"chat_id\":\"\xe9\"}}", bad_request),
        ("array", b"[]", bad_request),
        ("number type", b"{\"type\":5}", bad_request),
        ("no data", b"{\"type\":\"chat.ended\"}", bad_request),
        ("data string", b"{\"type\":\"chat.ended\",\"data\":\"x\"}", bad_request),
        ("chat id number", b"{\"type\":\"chat.ended\",\"data\":{\"chat_id\":5}}", bad_request),
        ("chat id empty", b"{\"type\":\"chat.ended\",\"data\":{\"chat_id\":\"\"}}", bad_request),
        ("ended_at bad", b"{\"type\":\"chat.ended\",\"data\":{\"chat_id\":\"c\",\"ended_at\":\"yesterday\"}}", bad_request),
        ("ended_at far future", b"{\"type\":\"chat.ended\",\"data\":{\"chat_id\":\"c\",\"ended_at\":\"9999-12-31T23:59:59Z\"}}", bad_request),
        ("parent missing", b"{\"type\":\"chat.ended\",\"data\":{\"chat_id\":\"c\",\"ended_at\":\"2022-07-01T10:14:31Z\"}}", bad_request),
        ("parent string", b"{\"type\":\"chat.ended\",\"data\":{\"chat_id\":\"c\",\"ended_at\":\"2022-07-01T10:14:31Z\",\"parent\":\"p\"}}", bad_request),
        ("participant null", b"{\"type\":\"chat.ended\",\"data\":{\"chat_id\":\"c\",\"ended_at\":\"2022-07-01T10:14:31Z\",\"parent\":{\"participant_id\":null},\"professional\":{\"participant_id\":\"n\"}}}", bad_request),
        ("label object", b"{\"type\":\"chat.ended\",\"data\":{\"chat_id\":\"c\",\"ended_at\":\"2022-07-01T10:14:31Z\",\"parent\":{\"participant_id\":\"p\"},\"professional\":{\"participant_id\":\"n\"},\"topic\":{}}}", bad_request),
        ("counts negative", b"{\"type\":\"chat.ended\",\"data\":{\"chat_id\":\"c\",\"ended_at\":\"2022-07-01T10:14:31Z\",\"parent\":{\"participant_id\":\"p\"},\"professional\":{\"participant_id\":\"n\"},\"message_counts\":{\"parent\":-1}}}", bad_request),
        ("deep nesting", deep_nesting.as_bytes(), bad_request),
    ];
    for (name, body, expected) in payloads {
        let mut built = signed(name, body, "application/json");
        built.expected = expected;
        cases.push(built);
    }
    let mut wrong_type = signed("form", b"a=b", "application/x-www-form-urlencoded");
    wrong_type.expected = unsupported;
    cases.push(wrong_type);
    let mut chatwoot = case("chatwoot unsigned", Method::POST, "/webhooks/chatwoot", &[401, 404]).json("{}");
    chatwoot.expected = &[401, 404];
    cases.push(chatwoot);

    // Questionnaire API: token guessing, path tricks, wrong bodies.
    let forged_tokens = [
        format!("{id}.{}", "A".repeat(22)),
        format!("{id}."),
        format!(".{tag}"),
        format!("{}.{tag}", id.to_uppercase()),
        format!("{id}.{tag}.{tag}"),
        "inv_".to_string(),
        "a".repeat(5000),
        "%00".to_string(),
        "..%2F..%2Fetc%2Fpasswd".to_string(),
        "inv_0123456789abcdef0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAA".to_string(),
    ];
    for (index, forged) in forged_tokens.iter().enumerate() {
        cases.push(case(
            format!("GET forged token {index}"),
            Method::GET,
            format!("/api/questionnaires/{forged}"),
            not_found,
        ));
        cases.push(
            case(
                format!("PUT forged token {index}"),
                Method::PUT,
                format!("/api/questionnaires/{forged}/items/1"),
                not_found,
            )
            .json("{\"rating\":\"good\"}"),
        );
        cases.push(
            case(
                format!("submit forged token {index}"),
                Method::POST,
                format!("/api/questionnaires/{forged}/submit"),
                not_found,
            )
            .json("{}"),
        );
        cases.push(case(
            format!("decline forged token {index}"),
            Method::POST,
            format!("/api/questionnaires/{forged}/decline"),
            not_found,
        ));
    }
    for item in ["0", "12", "-1", "1e1", "%31%32", "..", "1/2", "99999999999999999999"] {
        cases.push(
            case(
                format!("item {item}"),
                Method::PUT,
                format!("/api/questionnaires/{token}/items/{item}"),
                &[404, 422],
            )
            .json("{\"rating\":\"good\"}"),
        );
    }
    let bodies: [(&str, &[u8], &'static [u16]); 8] = [
        ("rating number", b"{\"rating\":2}", unprocessable),
        ("rating list", b"{\"rating\":[\"good\"]}", unprocessable),
        ("rating upper", b"{\"rating\":\"GOOD\"}", unprocessable),
        ("no rating", b"{}", unprocessable),
        ("broken json", b"{\"rating\":", bad_request),
        ("utf-16", b"\xff\xfe{\x00}\x00", bad_request),
        ("huge", &[b' '; 20_000], too_large),
        ("null", b"null", unprocessable),
    ];
    for (name, body, expected) in bodies {
        cases.push(
            case(
                format!("PUT {name}"),
                Method::PUT,
                format!("/api/questionnaires/{token}/items/1"),
                expected,
            )
            .header("content-type", "application/json")
            .body(body.to_vec()),
        );
    }
    cases.push(
        case(
            "submit incomplete",
            Method::POST,
            format!("/api/questionnaires/{token}/submit"),
            unprocessable,
        )
        .json("{}"),
    );
    cases.push(
        case(
            "submit comment object",
            Method::POST,
            format!("/api/questionnaires/{token}/submit"),
            unprocessable,
        )
        .json("{\"comment\":{}}"),
    );
    cases.push(
        case(
            "submit comment too long",
            Method::POST,
            format!("/api/questionnaires/{token}/submit"),
            unprocessable,
        )
        .json(&format!("{{\"comment\":\"{}\"}}", "é".repeat(1001))),
    );
    cases.push(
        case(
            "decline with array",
            Method::POST,
            format!("/api/questionnaires/{token}/decline"),
            bad_request,
        )
        .json("[]"),
    );
    cases.push(case(
        "DELETE questionnaire",
        Method::DELETE,
        format!("/api/questionnaires/{token}"),
        method_not_allowed,
    ));

    // Pages and assets.
    cases.push(case("page script token", Method::GET, "/q/%3Cscript%3E", &[200, 404]));
    cases.push(case("page traversal", Method::GET, "/q/../../etc/passwd", not_found));
    cases.push(case(
        "widget traversal",
        Method::GET,
        "/widget/../Cargo.toml",
        not_found,
    ));
    cases.push(case("widget unknown", Method::GET, "/widget/evil.js", not_found));
    cases.push(case("bad query", Method::GET, "/widget/page.css?v=%ZZ", &[200, 400]));
    cases.push(
        case(
            "dashboard repeated from",
            Method::GET,
            "/report?from=2022-01-01&from=2022-02-01",
            bad_request,
        )
        .page(),
    );
    cases.push(
        case(
            "peer-review repeated lang",
            Method::GET,
            "/report/peer-review?lang=en&lang=nl",
            bad_request,
        )
        .page(),
    );
    cases.push(
        case(
            "dashboard value not UTF-8",
            Method::GET,
            "/report?organization=%FF%FE",
            bad_request,
        )
        .page(),
    );
    cases.push(
        case(
            "page repeated lang",
            Method::GET,
            format!("/q/{token}?lang=en&lang=nl"),
            &[200],
        )
        .page(),
    );

    // Wrong methods and probes.
    cases.push(case("HEAD healthz", Method::HEAD, "/healthz", &[200]));
    cases.push(case("HEAD readyz", Method::HEAD, "/readyz", &[200]));
    cases.push(case("PUT healthz", Method::PUT, "/healthz", method_not_allowed));
    cases.push(case("GET backup", Method::GET, "/api/admin/backup", method_not_allowed));
    cases.push(case(
        "POST page",
        Method::POST,
        format!("/q/{token}"),
        method_not_allowed,
    ));
    cases.push(case(
        "PUT widget",
        Method::PUT,
        "/widget/alliance-questionnaire.js",
        method_not_allowed,
    ));
    cases.push(case(
        "HEAD widget",
        Method::HEAD,
        "/widget/alliance-questionnaire.js",
        &[200],
    ));
    cases.push(case(
        "DELETE favicon",
        Method::DELETE,
        "/favicon.ico",
        method_not_allowed,
    ));

    // Dashboard login form.
    cases.push(case("login as JSON", Method::POST, "/report/login", unsupported).json("{}"));
    cases.push(
        case("login without token", Method::POST, "/report/login", bad_request)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("lang=nl"),
    );
    cases.push(
        case("login of 300 KB", Method::POST, "/report/login", too_large)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={}", "a".repeat(300 * 1024))),
    );

    // Admin: no, wrong and odd tokens.
    for path in ["/api/admin/report", "/api/admin/deliveries", "/metrics"] {
        cases.push(case(format!("{path} no token"), Method::GET, path, unauthorized));
        cases.push(
            case(format!("{path} wrong token"), Method::GET, path, unauthorized)
                .header("authorization", "Bearer wrong"),
        );
        cases.push(
            case(format!("{path} basic"), Method::GET, path, unauthorized)
                .header("authorization", "Basic YWRtaW46YWRtaW4="),
        );
        cases.push(
            case(format!("{path} token with spaces"), Method::GET, path, unauthorized)
                .header("authorization", &format!("Bearer  {} x", config.admin_token)),
        );
    }
    let admin = format!("Bearer {}", config.admin_token);
    cases.push(
        case(
            "report bad date",
            Method::GET,
            "/api/admin/report?from=2022-13-45",
            unprocessable,
        )
        .header("authorization", &admin),
    );
    cases.push(
        case(
            "report reversed",
            Method::GET,
            "/api/admin/report?from=2022-09-01&to=2022-07-01",
            unprocessable,
        )
        .header("authorization", &admin),
    );
    cases.push(
        case(
            "deliveries bad status",
            Method::GET,
            "/api/admin/deliveries?status=all",
            unprocessable,
        )
        .header("authorization", &admin),
    );
    cases.push(
        case(
            "retry bad id",
            Method::POST,
            "/api/admin/deliveries/..%2F/retry",
            &[404, 422],
        )
        .header("authorization", &admin),
    );
    cases.push(
        case(
            "retry unknown id",
            Method::POST,
            "/api/admin/deliveries/inv_0123456789abcdef0123456789abcdef/retry",
            not_found,
        )
        .header("authorization", &admin),
    );
    cases.push(case("unknown path", Method::GET, "/admin", not_found));
    cases.push(case(
        "very long path",
        Method::GET,
        format!("/{}", "a".repeat(8000)),
        &[400, 404, 414, 431],
    ));

    let mut failures = Vec::new();
    for built in &cases {
        let mut request = client().request(built.method.clone(), service.url(&built.path));
        for (name, value) in &built.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.body(built.body.clone()).send();
        let response = match response {
            Ok(response) => response,
            Err(error) => {
                failures.push(format!("{}: no reply ({error})", built.name));
                continue;
            }
        };
        let status = response.status().as_u16();
        if status >= 500 || !built.expected.contains(&status) {
            failures.push(format!(
                "{}: got {status}, expected one of {:?}",
                built.name, built.expected
            ));
        }
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_string();
        if built.page && !content_type.starts_with("text/html") {
            failures.push(format!("{}: a page answered with {content_type:?}", built.name));
        }
        if status == 405 && response.headers().get("allow").is_none() {
            failures.push(format!("{}: 405 without an Allow header", built.name));
        }
        // A response to HEAD has no body to name its problem in.
        if status >= 400 && built.method != Method::HEAD {
            // Every error names its problem: JSON with error and message, or an HTML page.
            let body = response.text().unwrap_or_default();
            let named = if content_type.starts_with("application/json") {
                serde_json::from_str::<serde_json::Value>(&body)
                    .is_ok_and(|error| error["error"].is_string() && error["message"].is_string())
            } else {
                content_type.starts_with("text/html")
            };
            if !named {
                failures.push(format!(
                    "{}: {status} with {content_type:?} body {body:?}, not a JSON error or a page",
                    built.name
                ));
            }
        }
    }

    // Protocol-level abuse over raw TCP: each gets a 4xx or a closed connection, never a 5xx.
    let address = config.base_url().trim_start_matches("http://").to_string();
    let raw_cases: Vec<(&str, Vec<u8>)> = vec![
        ("two content lengths", format!("POST /webhooks/chat-ended HTTP/1.1\r\nHost: {address}\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}").into_bytes()),
        ("negative content length", format!("POST /webhooks/chat-ended HTTP/1.1\r\nHost: {address}\r\nContent-Length: -5\r\n\r\n").into_bytes()),
        ("header flood", {
            let mut request = format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\n");
            for index in 0..500 {
                request.push_str(&format!("X-Flood-{index}: {}\r\n", "v".repeat(100)));
            }
            request.push_str("\r\n");
            request.into_bytes()
        }),
        ("garbage request line", b"\x00\x01\x02 nonsense\r\n\r\n".to_vec()),
        ("bad chunk size", format!("POST /webhooks/chat-ended HTTP/1.1\r\nHost: {address}\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nZZ\r\n{{}}\r\n0\r\n\r\n").into_bytes()),
    ];
    for (name, bytes) in &raw_cases {
        let status = raw_status(&service, bytes);
        if status >= 500 || (status != 0 && !(400..500).contains(&status)) {
            failures.push(format!("raw {name}: got {status}"));
        }
    }

    // A slow client that never finishes its body is cut off with 408, not held forever.
    let mut slow = TcpStream::connect(&address).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    slow.write_all(format!("PUT /api/questionnaires/{token}/items/1 HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{").as_bytes()).unwrap();
    let mut reply = [0u8; 64];
    let read = slow.read(&mut reply).unwrap_or(0);
    let text = String::from_utf8_lossy(&reply[..read]);
    assert!(text.contains(" 408 ") || read == 0, "slow body: {text}");

    assert!(
        cases.len() + raw_cases.len() >= 100,
        "only {} cases",
        cases.len() + raw_cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    let health = client().get(service.url("/readyz")).send().unwrap();
    assert_eq!(health.status(), 200, "the service is still ready");
    let mut after = service.report();
    let mut before = report_before;
    after.as_object_mut().unwrap().remove("generated_at");
    before.as_object_mut().unwrap().remove("generated_at");
    // Opening the questionnaire is not part of the hostile requests, so the report must not change at all.
    assert_eq!(after, before, "a hostile request changed stored data");
}
