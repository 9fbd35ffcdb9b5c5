//! The questionnaire API, the hosted page and the plugin script, through the
//! real binary: each rejected request is checked for its status, its error
//! code and that the stored answers and status did not change.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use common::{RecordingPlatform, Service, TestConfig, client, invite};

/// Server key that `TestConfig::apply` passes as `ALLIANCE_SECRET_KEY`.
const TEST_SERVER_KEY: [u8; 32] = [42; 32];

fn start_with(extra: Vec<(String, String)>) -> (tempfile::TempDir, RecordingPlatform, Service) {
    let dir = tempfile::tempdir().unwrap();
    let platform = RecordingPlatform::start();
    let mut config = TestConfig::new(dir.path(), &platform.url);
    config.extra = extra;
    let service = Service::start(&config);
    (dir, platform, service)
}

fn start() -> (tempfile::TempDir, RecordingPlatform, Service) {
    start_with(Vec::new())
}

/// Status and JSON body of a response. The body is `Null` when it is not JSON.
fn status_and_json(response: reqwest::blocking::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json().unwrap_or(Value::Null);
    (status, body)
}

fn api_path(token: &str) -> String {
    format!("/api/questionnaires/{token}")
}

fn get_questionnaire(service: &Service, token: &str, query: &str) -> (u16, Value) {
    let response = client()
        .get(service.url(&format!("{}{query}", api_path(token))))
        .send()
        .expect("GET questionnaire");
    status_and_json(response)
}

fn put_body(service: &Service, token: &str, item: &str, body: impl Into<reqwest::blocking::Body>) -> (u16, Value) {
    let response = client()
        .put(service.url(&format!("{}/items/{item}", api_path(token))))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .expect("PUT item");
    status_and_json(response)
}

fn put_rating(service: &Service, token: &str, item: u8, rating: &str) -> (u16, Value) {
    put_body(
        service,
        token,
        &item.to_string(),
        json!({ "rating": rating }).to_string(),
    )
}

fn post_body(service: &Service, token: &str, action: &str, body: String) -> (u16, Value) {
    let response = client()
        .post(service.url(&format!("{}/{action}", api_path(token))))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .expect("POST to the questionnaire");
    status_and_json(response)
}

fn submit(service: &Service, token: &str, body: Value) -> (u16, Value) {
    post_body(service, token, "submit", body.to_string())
}

fn decline(service: &Service, token: &str) -> (u16, Value) {
    post_body(service, token, "decline", "{}".to_string())
}

/// Answers all 11 items with `rating` and checks every answer is accepted.
fn answer_all(service: &Service, token: &str, rating: &str) {
    for item in 1..=11 {
        let (status, body) = put_rating(service, token, item, rating);
        assert_eq!(status, 200, "item {item}: {body}");
    }
}

/// Answers and status of a questionnaire, read through the API.
fn state_of(service: &Service, token: &str) -> (Value, Value) {
    let (status, body) = get_questionnaire(service, token, "");
    assert_eq!(status, 200, "GET to read the state: {body}");
    (body["answers"].clone(), body["status"].clone())
}

fn assert_error(actual: &(u16, Value), status: u16, code: &str, case: &str) {
    let (actual_status, body) = actual;
    assert_eq!(*actual_status, status, "{case}: status, body {body}");
    assert_eq!(body["error"], code, "{case}: error code, body {body}");
    assert!(
        body["message"].as_str().is_some_and(|message| !message.is_empty()),
        "{case}: message, body {body}"
    );
}

fn funnel(report: &Value, role: &str) -> Value {
    report["questionnaires"][role].clone()
}

/// Builds a token for `invitation_id` under `server_key`, independently of
/// the service, following the scheme in `server/src/token.rs`. The tag is
/// base64url of the first 16 bytes of HMAC-SHA256(token key, id), and the
/// token key is HMAC-SHA256(server key, "alliance/token-key/v1").
fn token_under_key(server_key: &[u8], invitation_id: &str) -> String {
    let mut key_mac = Hmac::<Sha256>::new_from_slice(server_key).unwrap();
    key_mac.update(b"alliance/token-key/v1");
    let token_key = key_mac.finalize().into_bytes();

    let mut tag_mac = Hmac::<Sha256>::new_from_slice(&token_key).unwrap();
    tag_mac.update(invitation_id.as_bytes());
    let tag = tag_mac.finalize().into_bytes();
    format!("{invitation_id}.{}", URL_SAFE_NO_PAD.encode(&tag[..16]))
}

fn split_token(token: &str) -> (&str, &str) {
    token.split_once('.').expect("a token is <invitation id>.<tag>")
}

/// Replaces the character at `position` with another one of the base64url alphabet.
fn change_char(text: &str, position: usize) -> String {
    let mut bytes = text.as_bytes().to_vec();
    bytes[position] = if bytes[position] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

#[test]
fn privacy_notice_link_comes_from_settings() {
    let (_dir, platform, service) = start();
    let tokens = invite(&service, &platform, "c-privacy-unset");
    let (_, body) = get_questionnaire(&service, &tokens.parent, "");
    assert_eq!(body["privacy_url"], Value::Null, "no link without the setting");

    let url = "https://ggd.example.nl/privacy";
    let (_dir, platform, service) = start_with(vec![("ALLIANCE_PRIVACY_URL".into(), url.into())]);
    let tokens = invite(&service, &platform, "c-privacy-set");
    let (_, body) = get_questionnaire(&service, &tokens.parent, "");
    assert_eq!(body["privacy_url"], url, "the configured notice");
}

#[test]
fn parent_gets_dutch_wording() {
    let (_dir, platform, service) = start();
    let tokens = invite(&service, &platform, "c-parent-nl");

    let (status, body) = get_questionnaire(&service, &tokens.parent, "");
    assert_eq!(status, 200, "body: {body}");
    assert_eq!(body["role"], "parent", "role");
    assert_eq!(body["lang"], "nl", "language");
    assert_eq!(body["status"], "open", "status");
    assert_eq!(body["stem"], "De hulpverlener…", "stem");
    assert_eq!(body["answers"], json!({}), "no answers yet");

    let items = body["items"].as_array().expect("items is an array");
    assert_eq!(items.len(), 11, "item count");
    let numbers: Vec<u64> = items.iter().filter_map(|item| item["number"].as_u64()).collect();
    assert_eq!(numbers, (1..=11).collect::<Vec<u64>>(), "item numbers");
    assert_eq!(items[0]["text"], "begreep mijn situatie", "item 1");
    assert_eq!(items[0]["element"], "Begrip", "element of item 1");
    assert_eq!(items[1]["text"], "luisterde echt naar mijn zorgen", "item 2");

    let scale: Vec<&str> = body["scale"]
        .as_array()
        .expect("scale is an array")
        .iter()
        .filter_map(|point| point["value"].as_str())
        .collect();
    assert_eq!(scale, ["insufficient", "sufficient", "good"], "scale values");
    assert_eq!(body["scale"][0]["label"], "onvoldoende", "Dutch scale label");
    assert_eq!(body["comment_max_chars"], 1000, "comment limit");
}

#[test]
fn professional_gets_own_wording() {
    let (_dir, platform, service) = start();
    let tokens = invite(&service, &platform, "c-professional-nl");

    let (status, body) = get_questionnaire(&service, &tokens.professional, "");
    assert_eq!(status, 200, "body: {body}");
    assert_eq!(body["role"], "professional", "role");
    assert_eq!(body["stem"], "Ik…", "stem");
    assert_eq!(body["items"].as_array().map(Vec::len), Some(11), "item count");
    assert_eq!(body["items"][0]["text"], "begrijp de situatie", "item 1");
    assert_eq!(body["items"][1]["text"], "heb echt geluisterd naar de zorgen", "item 2");
    assert_eq!(body["status"], "open", "status");
}

#[test]
fn lang_en_gives_english() {
    let (_dir, platform, service) = start();
    let tokens = invite(&service, &platform, "c-english");

    let (status, body) = get_questionnaire(&service, &tokens.parent, "?lang=en");
    assert_eq!(status, 200, "body: {body}");
    assert_eq!(body["lang"], "en", "language");
    assert_eq!(body["stem"], "The professional…", "parent stem");
    assert_eq!(body["items"][0]["text"], "understood my situation", "parent item 1");
    assert_eq!(body["scale"][0]["label"], "insufficient", "English scale label");

    let (status, body) = get_questionnaire(&service, &tokens.professional, "?lang=en");
    assert_eq!(status, 200, "body: {body}");
    assert_eq!(body["stem"], "I…", "professional stem");
    assert_eq!(
        body["items"][0]["text"], "understand the situation",
        "professional item 1"
    );
}

#[test]
fn api_get_marks_opened_page_not() {
    let (_dir, platform, service) = start();
    let tokens = invite(&service, &platform, "c-opened");
    assert_eq!(
        funnel(&service.report(), "parent")["opened"],
        0,
        "opened before any request"
    );

    let page = client()
        .get(service.url(&format!("/q/{}", tokens.parent)))
        .send()
        .unwrap();
    assert_eq!(page.status(), 200, "page status");
    assert_eq!(
        funnel(&service.report(), "parent")["opened"],
        0,
        "opened after the page request"
    );

    let (status, body) = get_questionnaire(&service, &tokens.parent, "");
    assert_eq!(status, 200, "body: {body}");
    let report = service.report();
    assert_eq!(funnel(&report, "parent")["opened"], 1, "opened after the API request");
    assert_eq!(
        funnel(&report, "professional")["opened"],
        0,
        "the other role stays unopened"
    );

    get_questionnaire(&service, &tokens.parent, "");
    assert_eq!(
        funnel(&service.report(), "parent")["opened"],
        1,
        "a second GET counts once"
    );
}

#[test]
fn put_item_stores_and_changes() {
    let (_dir, platform, service) = start();
    let tokens = invite(&service, &platform, "c-put");

    let (status, body) = put_rating(&service, &tokens.parent, 1, "good");
    assert_eq!(status, 200, "first answer: {body}");
    assert_eq!(body["answers"], json!({ "1": "good" }), "answers after the first PUT");
    assert_eq!(body["status"], "open", "status after the first PUT");

    let (status, body) = put_rating(&service, &tokens.parent, 1, "good");
    assert_eq!(status, 200, "repeated answer: {body}");
    assert_eq!(body["answers"], json!({ "1": "good" }), "answers after the repeat");

    let (status, body) = put_rating(&service, &tokens.parent, 1, "insufficient");
    assert_eq!(status, 200, "changed answer: {body}");
    let (status, body) = put_rating(&service, &tokens.parent, 11, "sufficient");
    assert_eq!(status, 200, "item 11: {body}");

    let (answers, status) = state_of(&service, &tokens.parent);
    assert_eq!(
        answers,
        json!({ "1": "insufficient", "11": "sufficient" }),
        "answers read back"
    );
    assert_eq!(status, "open", "status read back");
    let (answers, _) = state_of(&service, &tokens.professional);
    assert_eq!(answers, json!({}), "the other role has no answers");
}

#[test]
fn put_rejects_invalid_item() {
    let (_dir, platform, service) = start();
    let tokens = invite(&service, &platform, "c-bad-item");
    assert_eq!(
        put_rating(&service, &tokens.parent, 2, "good").0,
        200,
        "valid answer first"
    );

    for item in [
        "0", "12", "99", "100", "256", "-1", "+1", "1.0", "1e1", "abc", "%20", "%201", "one",
    ] {
        let result = put_body(&service, &tokens.parent, item, r#"{"rating":"good"}"#);
        assert_error(&result, 422, "invalid_item", &format!("item {item:?}"));
    }

    let (answers, status) = state_of(&service, &tokens.parent);
    assert_eq!(answers, json!({ "2": "good" }), "answers unchanged");
    assert_eq!(status, "open", "status unchanged");
}

#[test]
fn put_rejects_invalid_rating() {
    let (_dir, platform, service) = start();
    let tokens = invite(&service, &platform, "c-bad-rating");
    assert_eq!(
        put_rating(&service, &tokens.parent, 4, "sufficient").0,
        200,
        "valid answer first"
    );

    let bodies = [
        r#"{"rating":"excellent"}"#,
        r#"{"rating":"Good"}"#,
        r#"{"rating":"goed"}"#,
        r#"{"rating":" good"}"#,
        r#"{"rating":""}"#,
        r#"{}"#,
        r#"{"score":"good"}"#,
        r#"{"rating":2}"#,
        r#"{"rating":null}"#,
        r#"{"rating":true}"#,
        r#"{"rating":["good"]}"#,
        r#"{"rating":{"value":"good"}}"#,
        r#""good""#,
        r#"["good"]"#,
    ];
    for body in bodies {
        // Item 4 already has an answer, so a rejected PUT there must leave it as it is.
        let result = put_body(&service, &tokens.parent, "4", body);
        assert_error(&result, 422, "invalid_rating", &format!("body {body}"));
    }

    let (answers, status) = state_of(&service, &tokens.parent);
    assert_eq!(answers, json!({ "4": "sufficient" }), "answers unchanged");
    assert_eq!(status, "open", "status unchanged");
}

#[test]
fn put_rejects_body_not_json() {
    let (_dir, platform, service) = start();
    let tokens = invite(&service, &platform, "c-not-json");
    assert_eq!(
        put_rating(&service, &tokens.parent, 5, "good").0,
        200,
        "valid answer first"
    );

    for body in ["{not json", "", "rating=good", r#"{"rating":"good""#, "good"] {
        let result = put_body(&service, &tokens.parent, "5", body);
        assert_error(&result, 400, "invalid_json", &format!("body {body:?}"));
    }
    let not_utf8 = put_body(&service, &tokens.parent, "5", vec![b'{', 0xff, 0xfe, b'}']);
    assert_error(&not_utf8, 400, "invalid_json", "body not UTF-8");

    let (answers, status) = state_of(&service, &tokens.parent);
    assert_eq!(answers, json!({ "5": "good" }), "answers unchanged");
    assert_eq!(status, "open", "status unchanged");
}

#[test]
fn submit_lists_missing_items() {
    let (_dir, platform, service) = start();
    let tokens = invite(&service, &platform, "c-incomplete");

    let result = submit(&service, &tokens.parent, json!({}));
    assert_error(&result, 422, "incomplete", "no answers");
    assert_eq!(
        result.1["missing"],
        json!([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
        "all items missing"
    );

    for item in [1, 2, 4, 5, 6, 7, 8, 9, 10] {
        assert_eq!(put_rating(&service, &tokens.parent, item, "good").0, 200, "item {item}");
    }
    let result = submit(&service, &tokens.parent, json!({ "comment": "bijna klaar" }));
    assert_error(&result, 422, "incomplete", "items 3 and 11 unanswered");
    assert_eq!(result.1["missing"], json!([3, 11]), "missing items");

    let (answers, status) = state_of(&service, &tokens.parent);
    assert_eq!(
        answers.as_object().map(|answers| answers.len()),
        Some(9),
        "answers kept"
    );
    assert_eq!(status, "open", "status after the rejected submit");
    assert_eq!(funnel(&service.report(), "parent")["submitted"], 0, "nothing submitted");
}

#[test]
fn submit_locks_the_answers() {
    let (_dir, platform, service) = start();
    let tokens = invite(&service, &platform, "c-submit");
    answer_all(&service, &tokens.parent, "sufficient");
    let (answers_before, status) = state_of(&service, &tokens.parent);
    assert_eq!(status, "complete", "status with all items answered");

    let (status, body) = submit(&service, &tokens.parent, json!({ "comment": "Fijn gesprek." }));
    assert_eq!(status, 200, "submit: {body}");
    assert_eq!(body["status"], "submitted", "submit body");

    let changed = put_rating(&service, &tokens.parent, 1, "good");
    assert_error(&changed, 409, "already_submitted", "PUT of another rating");
    let same = put_rating(&service, &tokens.parent, 1, "sufficient");
    assert_error(&same, 409, "already_submitted", "PUT of the same rating");
    let again = submit(&service, &tokens.parent, json!({ "comment": "nog iets" }));
    assert_error(&again, 409, "already_submitted", "second submit");
    let declined = decline(&service, &tokens.parent);
    assert_error(&declined, 409, "already_submitted", "decline after submit");

    let (answers_after, status) = state_of(&service, &tokens.parent);
    assert_eq!(answers_after, answers_before, "answers unchanged");
    assert_eq!(status, "submitted", "status unchanged");
    let parent = funnel(&service.report(), "parent");
    assert_eq!(parent["submitted"], 1, "submitted count");
    assert_eq!(parent["declined"], 0, "declined count");
}

#[test]
fn comment_limit_counts_characters() {
    let (_dir, platform, service) = start();
    let tokens = invite(&service, &platform, "c-comment");
    answer_all(&service, &tokens.parent, "good");
    let other = invite(&service, &platform, "c-comment-padded");
    answer_all(&service, &other.parent, "good");

    // "é" is two bytes in UTF-8, so a byte count would reject 1000 of them.
    let too_long = submit(&service, &tokens.parent, json!({ "comment": "é".repeat(1001) }));
    assert_error(&too_long, 422, "comment_too_long", "1001 characters");
    let ascii_too_long = submit(&service, &tokens.parent, json!({ "comment": "a".repeat(1001) }));
    assert_error(&ascii_too_long, 422, "comment_too_long", "1001 ASCII characters");
    // The limit applies to the stored comment, after trimming spaces and
    // dropping control characters.
    let padded = format!("     {}\u{0}", "a".repeat(1000));
    let (status, body) = submit(&service, &other.parent, json!({ "comment": padded }));
    assert_eq!(status, 200, "1000 characters with spaces and a NUL around them: {body}");
    let not_string = submit(&service, &tokens.parent, json!({ "comment": 5 }));
    assert_error(&not_string, 422, "invalid_comment", "comment not a string");
    let (_, status) = state_of(&service, &tokens.parent);
    assert_eq!(status, "complete", "status after the rejected comments");

    let (status, body) = submit(&service, &tokens.parent, json!({ "comment": "é".repeat(1000) }));
    assert_eq!(status, 200, "1000 characters: {body}");
    let (_, status) = state_of(&service, &tokens.parent);
    assert_eq!(status, "submitted", "status after the accepted comment");
}

#[test]
fn submit_rejects_body_not_json() {
    let (_dir, platform, service) = start();
    let tokens = invite(&service, &platform, "c-submit-json");
    answer_all(&service, &tokens.parent, "good");

    let result = post_body(&service, &tokens.parent, "submit", "{not json".to_string());
    assert_error(&result, 400, "invalid_json", "submit body not JSON");
    // JSON that is not an object would lose the comment it carries.
    for body in [r#""Mijn opmerking""#, "[1]", "null"] {
        let result = post_body(&service, &tokens.parent, "submit", body.to_string());
        assert_error(&result, 400, "invalid_json", body);
    }
    let misspelt = submit(&service, &tokens.parent, json!({ "Comment": "fijn gesprek" }));
    assert_error(&misspelt, 422, "unknown_field", "misspelt comment field");
    let (_, status) = state_of(&service, &tokens.parent);
    assert_eq!(status, "complete", "status unchanged");

    let (status, body) = post_body(&service, &tokens.parent, "submit", String::new());
    assert_eq!(status, 200, "empty body submits without a comment: {body}");
}

#[test]
fn decline_is_repeatable_and_final() {
    let (_dir, platform, service) = start();
    let tokens = invite(&service, &platform, "c-decline");
    assert_eq!(
        put_rating(&service, &tokens.parent, 3, "good").0,
        200,
        "answer before declining"
    );

    let (status, body) = decline(&service, &tokens.parent);
    assert_eq!(status, 200, "decline: {body}");
    assert_eq!(body["status"], "declined", "decline body");
    let (status, body) = decline(&service, &tokens.parent);
    assert_eq!(status, 200, "repeated decline: {body}");

    let changed = put_rating(&service, &tokens.parent, 3, "insufficient");
    assert_error(&changed, 409, "already_declined", "PUT after decline");
    let new_item = put_rating(&service, &tokens.parent, 4, "good");
    assert_error(&new_item, 409, "already_declined", "PUT of a new item after decline");
    let submitted = submit(&service, &tokens.parent, json!({}));
    assert_error(&submitted, 409, "already_declined", "submit after decline");

    let (answers, status) = state_of(&service, &tokens.parent);
    assert_eq!(answers, json!({}), "declining deletes the answers given before");
    assert_eq!(status, "declined", "status unchanged");
    let (_, other_status) = state_of(&service, &tokens.professional);
    assert_eq!(other_status, "open", "the other role stays open");
    assert_eq!(funnel(&service.report(), "parent")["declined"], 1, "declined count");
}

#[test]
fn forged_tokens_are_not_found() {
    let (_dir, platform, service) = start();
    let tokens = invite(&service, &platform, "c-forged");
    let (parent_id, parent_tag) = split_token(&tokens.parent);
    let (professional_id, _) = split_token(&tokens.professional);
    assert_eq!(
        token_under_key(&TEST_SERVER_KEY, parent_id),
        tokens.parent,
        "the token scheme written out here matches the service"
    );

    let mut forged: Vec<(String, String)> = Vec::new();
    for position in 0..parent_tag.len() {
        forged.push((
            format!("{parent_id}.{}", change_char(parent_tag, position)),
            format!("tag character {position} changed"),
        ));
    }
    forged.push((
        format!("{}.{parent_tag}", change_char(parent_id, parent_id.len() - 1)),
        "last id digit changed".into(),
    ));
    forged.push((
        format!("{professional_id}.{parent_tag}"),
        "other invitation with the parent's tag".into(),
    ));
    forged.push((
        token_under_key(&TEST_SERVER_KEY, "inv_0123456789abcdef0123456789abcdef"),
        "correct tag for an id that was never issued".into(),
    ));
    forged.push((
        token_under_key(&[7; 32], parent_id),
        "tag under another server key".into(),
    ));
    forged.push((
        format!("{}.{parent_tag}", parent_id.to_uppercase()),
        "upper-case id".into(),
    ));
    forged.push((format!("{}A", tokens.parent), "one character appended".into()));
    forged.push((format!("{}=", tokens.parent), "padding appended".into()));
    forged.push((parent_id.to_string(), "id without tag".into()));
    forged.push((format!("{parent_id}."), "empty tag".into()));
    forged.push((format!(".{parent_tag}"), "empty id".into()));
    for empty_ish in [".", "inv_", "%20", "null", "undefined", "0"] {
        forged.push((empty_ish.to_string(), format!("token {empty_ish:?}")));
    }

    for (token, case) in &forged {
        let results = [
            ("GET", get_questionnaire(&service, token, "")),
            ("PUT", put_rating(&service, token, 1, "good")),
            ("submit", submit(&service, token, json!({}))),
            ("decline", decline(&service, token)),
        ];
        for (request, result) in results {
            // URLs drop the dot segment, so `POST /api/questionnaires/./submit`
            // arrives as `POST /api/questionnaires/submit`: the questionnaire
            // of the token "submit", which takes only GET.
            let (status, code) = if token == "." && (request == "submit" || request == "decline") {
                (405, "method_not_allowed")
            } else {
                (404, "not_found")
            };
            assert_error(&result, status, code, &format!("{request} with {case}"));
            assert!(
                !result.1.to_string().contains(parent_tag),
                "{request} with {case}: the response echoes the tag: {}",
                result.1
            );
        }
    }

    let empty = client().get(service.url("/api/questionnaires/")).send().unwrap();
    assert_error(&status_and_json(empty), 404, "not_found", "empty token");

    let report = service.report();
    assert_eq!(funnel(&report, "parent")["opened"], 0, "forged requests open nothing");
    assert_eq!(
        funnel(&report, "parent")["declined"],
        0,
        "forged requests decline nothing"
    );
    let (answers, status) = state_of(&service, &tokens.parent);
    assert_eq!(answers, json!({}), "forged requests answer nothing");
    assert_eq!(status, "open", "status unchanged");
}

#[test]
fn expired_questionnaire_is_gone() {
    // 0.001 hours is 3.6 s: long enough to answer one item, short enough to wait out.
    let extra = vec![("ALLIANCE_QUESTIONNAIRE_EXPIRY_HOURS".to_string(), "0.001".to_string())];
    let (_dir, platform, service) = start_with(extra);
    let sent = Instant::now();
    let tokens = invite(&service, &platform, "c-expired");
    let (status, body) = put_rating(&service, &tokens.parent, 1, "good");
    assert_eq!(status, 200, "answer before expiry: {body}");
    assert!(
        sent.elapsed() < Duration::from_millis(3600),
        "the answer came before expiry"
    );

    thread::sleep(Duration::from_millis(4000).saturating_sub(sent.elapsed()));

    let get = get_questionnaire(&service, &tokens.parent, "");
    assert_error(&get, 410, "expired", "GET");
    let put = put_rating(&service, &tokens.parent, 2, "good");
    assert_error(&put, 410, "expired", "PUT");
    let submitted = submit(&service, &tokens.parent, json!({}));
    assert_error(&submitted, 410, "expired", "submit");
    let declined = decline(&service, &tokens.parent);
    assert_error(&declined, 410, "expired", "decline");
    let other = get_questionnaire(&service, &tokens.professional, "");
    assert_error(&other, 410, "expired", "GET of the other role");

    let parent = funnel(&service.report(), "parent");
    assert_eq!(parent["items_answered"][0], 1, "the answer before expiry is kept");
    assert_eq!(parent["items_answered"][1], 0, "no answer after expiry");
    assert_eq!(parent["declined"], 0, "no decline after expiry");
    assert_eq!(parent["expired"], 1, "expired count");
}

#[test]
fn report_counts_funnel_steps() {
    let (_dir, platform, service) = start();
    let first = invite(&service, &platform, "c-funnel-1");
    let second = invite(&service, &platform, "c-funnel-2");

    // First chat: the parent opens and answers items 1 to 3, the professional submits.
    assert_eq!(
        get_questionnaire(&service, &first.parent, "").0,
        200,
        "open first parent"
    );
    for item in 1..=3 {
        assert_eq!(
            put_rating(&service, &first.parent, item, "good").0,
            200,
            "first parent item {item}"
        );
    }
    answer_all(&service, &first.professional, "good");
    assert_eq!(
        submit(&service, &first.professional, json!({})).0,
        200,
        "submit first professional"
    );

    // Second chat: the parent opens and declines, the professional answers all but does not submit.
    assert_eq!(
        get_questionnaire(&service, &second.parent, "").0,
        200,
        "open second parent"
    );
    assert_eq!(decline(&service, &second.parent).0, 200, "decline second parent");
    answer_all(&service, &second.professional, "sufficient");

    let report = service.report();
    assert_eq!(report["chats"], 2, "chats");

    let parent = funnel(&report, "parent");
    assert_eq!(parent["invited"], 2, "parent invited");
    assert_eq!(parent["opened"], 2, "parent opened");
    assert_eq!(parent["started"], 1, "parent started");
    assert_eq!(
        parent["items_answered"],
        json!([1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
        "parent items answered"
    );
    assert_eq!(parent["complete"], 0, "parent complete");
    assert_eq!(parent["submitted"], 0, "parent submitted");
    assert_eq!(parent["declined"], 1, "parent declined");

    let professional = funnel(&report, "professional");
    assert_eq!(professional["invited"], 2, "professional invited");
    assert_eq!(professional["opened"], 2, "an answer marks the questionnaire opened");
    assert_eq!(professional["started"], 2, "professional started");
    assert_eq!(
        professional["items_answered"],
        json!([2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2]),
        "professional items answered"
    );
    assert_eq!(professional["complete"], 2, "professional complete");
    assert_eq!(professional["submitted"], 1, "professional submitted");
    assert_eq!(professional["declined"], 0, "professional declined");

    assert_eq!(report["pairs"], 0, "pairs");
    assert_eq!(
        report["pairing"]["professional_only"], 2,
        "chats with only the professional complete"
    );
    assert_eq!(report["rates"]["professional"]["count"], 2, "professional rate count");
}

#[test]
fn report_pairs_both_roles() {
    let (_dir, platform, service) = start();
    let paired = invite(&service, &platform, "c-pair");
    let unpaired = invite(&service, &platform, "c-unpaired");

    answer_all(&service, &paired.parent, "good");
    answer_all(&service, &paired.professional, "good");
    assert_eq!(
        put_rating(&service, &paired.professional, 1, "sufficient").0,
        200,
        "professional item 1"
    );
    assert_eq!(
        put_rating(&service, &paired.parent, 2, "insufficient").0,
        200,
        "parent item 2"
    );
    assert_eq!(submit(&service, &paired.parent, json!({})).0, 200, "submit parent");
    assert_eq!(
        submit(&service, &paired.professional, json!({})).0,
        200,
        "submit professional"
    );
    answer_all(&service, &unpaired.parent, "sufficient");

    let report = service.report();
    assert_eq!(report["pairs"], 1, "pairs");
    assert_eq!(report["pairing"]["both"], 1, "chats with both complete");
    assert_eq!(
        report["pairing"]["parent_only"], 1,
        "chats with only the parent complete"
    );
    assert_eq!(report["rates"]["pairs"]["count"], 1, "pair rate count");
    assert_eq!(report["rates"]["pairs"]["of"], 2, "pair rate denominator");

    let items = report["items"].as_array().expect("items table");
    assert_eq!(items.len(), 11, "items table rows");
    assert_eq!(items[0]["number"], 1, "first row number");
    assert_eq!(
        items[0]["parent"],
        json!({ "insufficient": 0, "sufficient": 0, "good": 1 }),
        "item 1 parent"
    );
    assert_eq!(
        items[0]["professional"],
        json!({ "insufficient": 0, "sufficient": 1, "good": 0 }),
        "item 1 professional"
    );
    assert_eq!(
        items[0]["agreement"]["table"],
        json!([[0, 0, 0], [0, 0, 0], [0, 1, 0]]),
        "item 1 table"
    );
    assert_eq!(items[1]["parent"]["insufficient"], 1, "item 2 parent");
    assert_eq!(
        items[1]["agreement"]["table"],
        json!([[0, 0, 1], [0, 0, 0], [0, 0, 0]]),
        "item 2 table"
    );
    assert_eq!(
        items[2]["agreement"]["table"],
        json!([[0, 0, 0], [0, 0, 0], [0, 0, 1]]),
        "item 3 table"
    );
    assert_eq!(items[2]["agreement"]["n"], 1, "item 3 pairs");
}

#[test]
fn page_has_token_and_headers() {
    let (_dir, platform, service) = start();
    let tokens = invite(&service, &platform, "c-page");

    let response = client()
        .get(service.url(&format!("/q/{}", tokens.parent)))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200, "page status");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let policy = header("content-security-policy");
    assert!(policy.contains("default-src 'none'"), "CSP default-src: {policy}");
    assert!(policy.contains("frame-ancestors"), "CSP frame-ancestors: {policy}");
    assert_eq!(header("referrer-policy"), "no-referrer", "Referrer-Policy");
    assert!(header("content-type").starts_with("text/html"), "content type");
    let html = response.text().unwrap();
    assert!(
        html.contains(&format!("token=\"{}\"", tokens.parent)),
        "token in the page"
    );
    assert!(html.contains("<html lang=\"nl\">"), "Dutch page");

    let english = client()
        .get(service.url(&format!("/q/{}?lang=en", tokens.parent)))
        .send()
        .unwrap();
    assert_eq!(english.status(), 200, "English page status");
    let html = english.text().unwrap();
    assert!(html.contains("<html lang=\"en\">"), "English page");
    assert!(!html.contains("<html lang=\"nl\">"), "no Dutch page language");
}

#[test]
fn page_never_echoes_unsafe_token() {
    let (_dir, _platform, service) = start();
    let unsafe_tokens = [
        ("%3Cscript%3Ealert(1)%3C%2Fscript%3E", "<script>alert(1)</script>"),
        ("%3Cscript%3Ealert(1)", "<script>alert(1)"),
        ("x%22%20onmouseover%3D%22alert(1)", "x\" onmouseover=\"alert(1)"),
        ("a%26b%3Cimg", "a&b<img"),
    ];
    for (encoded, decoded) in unsafe_tokens {
        let response = client().get(service.url(&format!("/q/{encoded}"))).send().unwrap();
        assert_eq!(response.status(), 200, "page status for {decoded:?}");
        let html = response.text().unwrap();
        assert!(!html.contains(decoded), "the page contains {decoded:?} unescaped");
        assert!(
            !html.contains("alert(1)"),
            "the page contains the script of {decoded:?}"
        );
        assert!(!html.contains("<img"), "the page contains the tag of {decoded:?}");
    }

    let response = client()
        .get(service.url("/q/abc?lang=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E"))
        .send()
        .unwrap();
    let html = response.text().unwrap();
    assert!(!html.contains("alert(1)"), "the lang parameter reaches the page");
    assert!(html.contains("<html lang=\"nl\">"), "an unknown lang gives Dutch");
}

#[test]
fn page_lang_from_odd_query() {
    let (_dir, _platform, service) = start();
    // Each case: path and the page language. A query whose `lang` cannot be
    // read gets the Dutch page, as an unknown `lang` value does.
    let cases = [
        ("/q/abc?lang=en", "en"),
        ("/q/abc?lang=en&lang=en", "nl"),
        ("/q/abc?lang=en&lang=nl", "nl"),
        ("/q/abc?lang=%FF", "nl"),
        ("/q/abc?utm_source=a&utm_source=b&x=%FF&l%61ng=en", "en"),
        ("/console/chatwoot?lang=en", "en"),
        ("/console/chatwoot?lang=en&lang=en", "nl"),
        ("/console/chatwoot?x=%FF&lang=en", "en"),
    ];
    for (path, lang) in cases {
        let response = client().get(service.url(path)).send().unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
        assert!(content_type.starts_with("text/html"), "{path}: {content_type}");
        let html = response.text().unwrap();
        assert!(html.contains(&format!("<html lang=\"{lang}\">")), "{path}: {html}");
    }
}

#[test]
fn widget_script_is_javascript() {
    let (_dir, _platform, service) = start();
    let response = client()
        .get(service.url("/widget/alliance-questionnaire.js"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("text/javascript"),
        "content type {content_type:?}"
    );
    let script = response.text().unwrap();
    assert!(
        script.contains("customElements.define('alliance-questionnaire'"),
        "the script defines the element"
    );
}

#[test]
fn errors_carry_cors_for_platform_origin() {
    let origin = "https://chat.example.nl";
    let (_dir, platform, service) = start_with(vec![("ALLIANCE_PLATFORM_ORIGINS".into(), origin.into())]);
    let tokens = invite(&service, &platform, "c-cors");

    let forged = format!("{}x", tokens.parent);
    let cases = [
        client().get(service.url(&format!("/api/questionnaires/{forged}"))),
        client()
            .post(service.url(&format!("/api/questionnaires/{}/submit", tokens.parent)))
            .header("content-type", "application/json")
            .body("{}"),
        client().get(service.url(&format!("/api/questionnaires/{}", tokens.parent))),
    ];
    for request in cases {
        let response = request.header("origin", origin).send().unwrap();
        let status = response.status();
        let allowed = response
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_string());
        assert_eq!(allowed.as_deref(), Some(origin), "CORS header on a {status} reply");
    }

    let other = client()
        .get(service.url(&format!("/api/questionnaires/{}", tokens.parent)))
        .header("origin", "https://evil.example")
        .send()
        .unwrap();
    assert!(
        other.headers().get("access-control-allow-origin").is_none(),
        "another origin gets no CORS header"
    );
}
