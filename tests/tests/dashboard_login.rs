//! The dashboard login: a valid admin token gives an HttpOnly, SameSite=Strict
//! session cookie; failed attempts are limited per client address. With the
//! cookie, a page given an invalid filter explains it as an HTML page.

mod common;

use common::{RecordingPlatform, Service, TestConfig};

fn login(service: &Service, token: &str) -> reqwest::blocking::Response {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(service.url("/report/login"))
        .form(&[("token", token)])
        .send()
        .unwrap()
}

#[test]
fn login_sets_cookie_and_limits_guessing() {
    let dir = tempfile::tempdir().unwrap();
    let platform = RecordingPlatform::start();
    let mut config = TestConfig::new(dir.path(), &platform.url);
    config.extra = vec![("ALLIANCE_FAILED_SIGNATURE_LIMIT".into(), "3".into())];
    let service = Service::start(&config);

    let response = login(&service, &config.admin_token);
    assert_eq!(response.status(), 303, "a valid token logs in");
    let cookie = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(
        !cookie.contains(&config.admin_token),
        "the cookie does not carry the token"
    );

    for attempt in 0..3 {
        assert_eq!(login(&service, "guess").status(), 401, "failed attempt {attempt}");
    }
    assert_eq!(
        login(&service, "guess").status(),
        429,
        "the fourth failure in a minute is refused"
    );
}

/// Returns the `name=value` part of the session cookie that a login sets.
fn session_cookie(service: &Service) -> String {
    let response = login(service, &service.config.admin_token);
    assert_eq!(response.status(), 303, "a valid token logs in");
    let header = response.headers().get("set-cookie").unwrap().to_str().unwrap();
    header.split(';').next().unwrap().to_string()
}

/// A service with a dashboard session.
struct LoggedIn {
    _dir: tempfile::TempDir,
    _platform: RecordingPlatform,
    service: Service,
    cookie: String,
}

impl LoggedIn {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let platform = RecordingPlatform::start();
        let config = TestConfig::new(dir.path(), &platform.url);
        let service = Service::start(&config);
        let cookie = session_cookie(&service);
        Self {
            _dir: dir,
            _platform: platform,
            service,
            cookie,
        }
    }

    /// Sends `GET path` with the session cookie.
    fn get(&self, path: &str) -> reqwest::blocking::Response {
        common::client()
            .get(self.service.url(path))
            .header("cookie", &self.cookie)
            .send()
            .unwrap()
    }
}

#[test]
fn bad_filter_gets_an_html_page() {
    let session = LoggedIn::start();

    let cases = [
        ("/report?from=bad", "/report", ["from=bad", "from=2022-07-01"]),
        (
            "/report?lang=en&to=1-7-2022",
            "/report",
            ["to=1-7-2022", "to=2022-07-01"],
        ),
        (
            "/report?from=2022-09-01&to=2022-07-01",
            "/report",
            ["from=2022-09-01", "to=2022-07-01"],
        ),
        (
            "/report/peer-review?from=bad",
            "/report/peer-review",
            ["from=bad", "from=2022-07-01"],
        ),
    ];
    for (path, unfiltered, shown) in cases {
        let response = session.get(path);
        assert_eq!(response.status(), 422, "{path}");
        let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
        assert!(content_type.starts_with("text/html"), "{path}: {content_type}");
        let page = response.text().unwrap();
        assert!(page.contains("<html lang=\"nl\">"), "{path}: {page}");
        for text in shown {
            assert!(
                page.contains(&format!("<code>{text}</code>")),
                "{path} shows {text}: {page}"
            );
        }
        let dutch = page.find("Dit filter klopt niet").expect("a Dutch heading");
        let english = page.find("This filter is not valid").expect("an English heading");
        assert!(dutch < english, "{path}: Dutch comes first");
        for lang in ["nl", "en"] {
            let link = format!("<a href=\"{unfiltered}?lang={lang}\">");
            assert!(page.contains(&link), "{path} links to {unfiltered} in {lang}: {page}");
        }
    }

    // The JSON API keeps its JSON error.
    let response = common::client()
        .get(session.service.url("/api/admin/report?from=bad"))
        .bearer_auth(&session.service.config.admin_token)
        .send()
        .unwrap();
    assert_eq!(response.status(), 422);
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(body["error"], "invalid_filter");
    assert_eq!(
        body["message"],
        "from = \"bad\" is not a date; use YYYY-MM-DD, e.g. 2022-07-01"
    );
}

/// Asserts that `response` is an HTML page with `status` and returns the page.
fn html_page(response: reqwest::blocking::Response, status: u16, path: &str) -> String {
    assert_eq!(response.status(), status, "{path}");
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/html"), "{path}: {content_type}");
    response.text().unwrap()
}

#[test]
fn unreadable_query_gets_an_html_page() {
    let session = LoggedIn::start();

    // Each case: path, the page without filters that it links to, and texts the page shows.
    let repeated_from = "/report?from=2022-01-01&from=2022-02-01";
    let cases = [
        (
            repeated_from,
            "/report",
            vec![
                "Het adres geeft <code>from</code> 2 keer: <code>from=2022-01-01</code>, <code>from=2022-02-01</code>.",
                "Geef <code>from</code> één keer.",
                "Give <code>from</code> once.",
            ],
        ),
        (
            "/report/peer-review?lang=en&organization=A&lang=nl",
            "/report/peer-review",
            vec!["Geef <code>lang</code> één keer.", "Give <code>lang</code> once."],
        ),
        (
            "/report?topic=a&topic=b&topic=c&topic=d",
            "/report",
            vec!["<code>topic</code> 4 keer", "<code>topic=c</code>, …."],
        ),
        (
            "/report?organization=GGD%20Frysl%E2n",
            "/report",
            vec![
                "<code>organization=GGD%20Frysl%E2n</code> geen geldige tekst",
                "<code>organization=GGD%20Frysl%E2n</code> is not valid text",
            ],
        ),
    ];
    for (path, unfiltered, shown) in &cases {
        let page = html_page(session.get(path), 400, path);
        assert!(page.contains("<html lang=\"nl\">"), "{path}: {page}");
        let dutch = page.find("Dit adres klopt niet").expect("a Dutch heading");
        let english = page.find("This address is not valid").expect("an English heading");
        assert!(dutch < english, "{path}: Dutch comes first");
        for text in shown {
            assert!(page.contains(text), "{path} shows {text}: {page}");
        }
        for lang in ["nl", "en"] {
            let link = format!("<a href=\"{unfiltered}?lang={lang}\">");
            assert!(page.contains(&link), "{path} links to {unfiltered} in {lang}: {page}");
        }
    }

    // Without a session the page explains the query too, instead of the login form.
    let without_session = common::client().get(session.service.url(repeated_from)).send().unwrap();
    let page = html_page(without_session, 400, "without a session");
    assert!(page.contains("Give <code>from</code> once."), "{page}");

    // The JSON API keeps its JSON error for the same queries, and names the
    // parameter, also for a value that is not UTF-8.
    let api_cases = [
        (
            "/api/admin/report?from=2022-01-01&from=2022-02-01",
            "query parameter \"from\" is given more than once",
        ),
        (
            "/api/admin/peer-review?lang=en&organization=A&lang=nl",
            "query parameter \"lang\" is given more than once",
        ),
        (
            "/api/admin/report?organization=%FF",
            "query parameter \"organization\" is not UTF-8",
        ),
        (
            "/api/admin/peer-review?organization=%FF",
            "query parameter \"organization\" is not UTF-8",
        ),
        (
            "/api/admin/export?layout=wide&topic=sl%E9pen",
            "query parameter \"topic\" is not UTF-8",
        ),
    ];
    for (path, expected) in api_cases {
        let response = common::client()
            .get(session.service.url(path))
            .bearer_auth(&session.service.config.admin_token)
            .send()
            .unwrap();
        assert_eq!(response.status(), 400, "{path}");
        let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
        assert!(content_type.starts_with("application/json"), "{path}: {content_type}");
        let body: serde_json::Value = response.json().unwrap();
        assert_eq!(body["error"], "invalid_query", "{path}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.starts_with(expected), "{path}: {message}");
    }
}

/// Sends `GET path` with the session cookie over raw TCP and returns the reply.
fn raw_get(session: &LoggedIn, path: &str) -> String {
    use std::io::{Read, Write};

    let address = session
        .service
        .config
        .base_url()
        .trim_start_matches("http://")
        .to_string();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nCookie: {}\r\nConnection: close\r\n\r\n",
        session.cookie
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

#[test]
fn odd_query_keeps_the_html_page() {
    let session = LoggedIn::start();

    // Unknown parameters are ignored, also when repeated or not UTF-8.
    for path in ["/report", "/report/peer-review"] {
        let query = format!("{path}?utm_source=mail&utm_source=app&x=%FF&from=2022-07-01");
        let page = html_page(session.get(&query), 200, &query);
        assert!(page.contains("name=\"from\" value=\"2022-07-01\""), "{query}: {page}");
    }

    // A `%` without two hex digits stays in the value, so the filter page shows it.
    let page = html_page(session.get("/report?from=%ZZ"), 422, "from=%ZZ");
    assert!(page.contains("<code>from=%ZZ</code>"), "{page}");

    // Long query strings that reach the service: a long label is a filter with no
    // chats, a long date is cut short on the filter page, and many repeats are
    // counted without listing each one.
    let long_label = format!("/report?organization={}", "a".repeat(20_000));
    let page = html_page(session.get(&long_label), 200, "long organization");
    assert!(page.contains("name=\"organization\""), "the dashboard with its filters");
    let long_date = format!("/report?from={}", "9".repeat(20_000));
    let page = html_page(session.get(&long_date), 422, "long from");
    assert!(
        page.contains(&format!("<code>from={}…</code>", "9".repeat(60))),
        "{page}"
    );
    assert!(page.len() < 10_000, "the page does not repeat the whole value");
    let many_repeats = format!("/report?{}", "to=2022-07-01&".repeat(3_000));
    let page = html_page(session.get(&many_repeats), 400, "3000 times to");
    assert!(page.contains("<code>to</code> 3000 keer"), "{page}");
    assert!(page.len() < 10_000, "the page does not list every value");

    // A longer URI is rejected by actix-http before any handler runs, with 400
    // and no body: not JSON, and no 5xx. Its `http` 0.2 crate limits a URI to
    // 65,534 bytes. reqwest refuses such a URI, so it goes over raw TCP.
    let too_long = format!("/report?organization={}", "a".repeat(70_000));
    let reply = raw_get(&session, &too_long);
    let head = reply.split("\r\n\r\n").next().unwrap_or_default();
    assert!(reply.starts_with("HTTP/1.1 400 "), "a URI of 70,000 bytes: {head}");
    assert!(
        head.to_ascii_lowercase().contains("content-length: 0"),
        "a URI of 70,000 bytes: {head}"
    );
}
