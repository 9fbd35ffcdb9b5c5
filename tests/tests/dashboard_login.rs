//! The dashboard login: a valid admin token gives an HttpOnly, SameSite=Strict
//! session cookie; failed attempts are limited per client address.

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
