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

#[test]
fn bad_filter_gets_an_html_page() {
    let dir = tempfile::tempdir().unwrap();
    let platform = RecordingPlatform::start();
    let config = TestConfig::new(dir.path(), &platform.url);
    let service = Service::start(&config);
    let cookie = session_cookie(&service);
    let get = |path: &str| {
        common::client()
            .get(service.url(path))
            .header("cookie", &cookie)
            .send()
            .unwrap()
    };

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
        let response = get(path);
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
        .get(service.url("/api/admin/report?from=bad"))
        .bearer_auth(&config.admin_token)
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
