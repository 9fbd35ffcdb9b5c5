//! Feedback to the nurse (`ALLIANCE_NURSE_FEEDBACK`) through the real binary
//! and the questionnaire API. The parent's answers appear in the nurse's
//! questionnaire only when the setting is on and only after she submitted.
//! They appear only once the parent's answers are final, only when the
//! parent's questionnaire was opened with the notice, and never in the
//! parent's questionnaire.

mod common;

use serde_json::{Value, json};

use common::{RecordingPlatform, Service, TestConfig, client, invite, now_secs, sign};

/// The parent's answers in these tests.
const PARENT: [&str; 11] = [
    "good",
    "good",
    "sufficient",
    "good",
    "insufficient",
    "good",
    "good",
    "sufficient",
    "good",
    "good",
    "good",
];

/// The nurse's answers, different from the parent's on most items.
const NURSE: [&str; 11] = ["sufficient"; 11];

/// The questionnaire's `nurse_feedback`: for the parent, whether the
/// introduction states that the nurse reads the answers.
fn feedback_flag(body: &Value) -> bool {
    body["nurse_feedback"].as_bool().expect("nurse_feedback is a boolean")
}

fn get(service: &Service, token: &str) -> Value {
    let response = client()
        .get(service.url(&format!("/api/questionnaires/{token}")))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200, "GET questionnaire");
    response.json().unwrap()
}

fn answer_all(service: &Service, token: &str, ratings: &[&str; 11]) {
    for (index, rating) in ratings.iter().enumerate() {
        let response = client()
            .put(service.url(&format!("/api/questionnaires/{token}/items/{}", index + 1)))
            .header("content-type", "application/json")
            .body(json!({ "rating": rating }).to_string())
            .send()
            .unwrap();
        assert_eq!(response.status(), 200, "PUT item {}", index + 1);
    }
}

fn submit(service: &Service, token: &str) {
    let response = client()
        .post(service.url(&format!("/api/questionnaires/{token}/submit")))
        .header("content-type", "application/json")
        .body(json!({ "comment": "only for the team" }).to_string())
        .send()
        .unwrap();
    assert_eq!(response.status(), 200, "submit");
}

/// Opens, answers and submits, as the plugin does.
fn fill_in(service: &Service, token: &str, ratings: &[&str; 11]) {
    get(service, token);
    answer_all(service, token, ratings);
    submit(service, token);
}

fn answers_json(ratings: &[&str; 11]) -> Value {
    let map: serde_json::Map<String, Value> = ratings
        .iter()
        .enumerate()
        .map(|(index, rating)| ((index + 1).to_string(), json!(rating)))
        .collect();
    Value::Object(map)
}

/// Submits a parent's answers the way a platform that renders its own form does.
fn platform_answers(service: &Service, token: &str, ratings: &[&str; 11]) {
    let body = serde_json::to_vec(&json!({
        "type": "questionnaire.answered",
        "data": { "token": token, "answers": answers_json(ratings), "submitted": true }
    }))
    .unwrap();
    let id = format!("msg_answered_{}", &token[..20]);
    let timestamp = now_secs();
    let response = client()
        .post(service.url("/webhooks/questionnaire-answered"))
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header(
            "webhook-signature",
            sign(&service.config.webhook_secrets[0], &id, timestamp, &body),
        )
        .body(body)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200, "platform answers");
}

fn feedback_setting(on: bool) -> Vec<(String, String)> {
    vec![("ALLIANCE_NURSE_FEEDBACK".into(), on.to_string())]
}

/// Checks that a parent's questionnaire carries only the parent's own answers.
fn assert_parent_side_clean(body: &Value, what: &str) {
    assert_eq!(body["role"], "parent", "{what}");
    assert!(body.get("parent_answers").is_none(), "{what}: {body}");
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert!(
        keys.iter()
            .all(|key| !key.contains("professional") && !key.contains("nurse_answers")),
        "{what}: {keys:?}"
    );
    assert_ne!(
        body["answers"],
        answers_json(&NURSE),
        "{what}: the nurse's answers in the parent's view"
    );
}

#[test]
fn feedback_is_off_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let platform = RecordingPlatform::start();
    let config = TestConfig::new(dir.path(), &platform.url);
    let service = Service::start(&config);

    let chat = invite(&service, &platform, "c-feedback-off");
    let parent = get(&service, &chat.parent);
    assert!(!feedback_flag(&parent), "the parent is not told when feedback is off");
    fill_in(&service, &chat.parent, &PARENT);
    fill_in(&service, &chat.professional, &NURSE);

    let nurse = get(&service, &chat.professional);
    assert_eq!(nurse["status"], "submitted");
    assert!(!feedback_flag(&nurse));
    assert!(nurse.get("parent_answers").is_none(), "feedback is off: {nurse}");
}

#[test]
fn feedback_follows_every_rule() {
    let dir = tempfile::tempdir().unwrap();
    let platform = RecordingPlatform::start();
    let mut config = TestConfig::new(dir.path(), &platform.url);
    config.extra = feedback_setting(false);
    let mut service = Service::start(&config);

    // Opened while feedback was off: this parent was never told.
    let untold = invite(&service, &platform, "c-feedback-untold");
    assert!(!feedback_flag(&get(&service, &untold.parent)));

    service.kill();
    config.extra = feedback_setting(true);
    let mut service = Service::start(&config);

    // 1. The nurse sees nothing before she submitted, nor while the parent
    // can still change the answers; then she sees the parent's answers.
    let chat = invite(&service, &platform, "c-feedback-on");
    let parent = get(&service, &chat.parent);
    assert!(
        feedback_flag(&parent),
        "the parent's introduction tells about the nurse"
    );
    assert_parent_side_clean(&parent, "parent at first opening");

    let nurse = get(&service, &chat.professional);
    assert!(feedback_flag(&nurse), "the nurse's questionnaire says feedback is on");
    assert!(
        nurse.get("parent_answers").is_none(),
        "nothing before anything is answered"
    );

    answer_all(&service, &chat.professional, &NURSE);
    assert!(
        get(&service, &chat.professional).get("parent_answers").is_none(),
        "nothing while the nurse's answers are complete but not submitted"
    );
    submit(&service, &chat.professional);
    assert!(
        get(&service, &chat.professional).get("parent_answers").is_none(),
        "nothing while the parent has not answered"
    );

    answer_all(&service, &chat.parent, &PARENT);
    assert!(
        get(&service, &chat.professional).get("parent_answers").is_none(),
        "nothing while the parent can still change the answers"
    );
    submit(&service, &chat.parent);

    let nurse = get(&service, &chat.professional);
    assert_eq!(nurse["status"], "submitted");
    assert_eq!(nurse["parent_answers"], answers_json(&PARENT));
    assert_eq!(
        nurse["answers"],
        answers_json(&NURSE),
        "her own answers stay beside them"
    );
    assert!(!nurse.to_string().contains("only for the team"), "no comment is shown");

    // The parent's side never shows the nurse's answers.
    let parent = get(&service, &chat.parent);
    assert_eq!(parent["status"], "submitted");
    assert_eq!(parent["answers"], answers_json(&PARENT));
    assert_parent_side_clean(&parent, "parent after both submitted");

    // 2. The parent submitted first: still nothing until the nurse submits.
    let early = invite(&service, &platform, "c-feedback-parent-first");
    fill_in(&service, &early.parent, &PARENT);
    assert!(get(&service, &early.professional).get("parent_answers").is_none());
    answer_all(&service, &early.professional, &NURSE);
    assert!(get(&service, &early.professional).get("parent_answers").is_none());
    submit(&service, &early.professional);
    assert_eq!(
        get(&service, &early.professional)["parent_answers"],
        answers_json(&PARENT)
    );

    // 3. The parent who opened the questionnaire without the notice: the
    // introduction keeps saying that only the team reads the answers, and
    // the nurse never sees them.
    let reopened = get(&service, &untold.parent);
    assert!(
        !feedback_flag(&reopened),
        "a parent first shown no notice stays without it"
    );
    answer_all(&service, &untold.parent, &PARENT);
    submit(&service, &untold.parent);
    fill_in(&service, &untold.professional, &NURSE);
    let nurse = get(&service, &untold.professional);
    assert!(feedback_flag(&nurse));
    assert!(
        nurse.get("parent_answers").is_none(),
        "the parent was not told: {nurse}"
    );

    // 4. A platform that renders its own form shows no notice of ours.
    let rendered = invite(&service, &platform, "c-feedback-platform");
    platform_answers(&service, &rendered.parent, &PARENT);
    fill_in(&service, &rendered.professional, &NURSE);
    assert!(get(&service, &rendered.professional).get("parent_answers").is_none());

    // 5. Switched off again: nothing, also for the chat that showed it.
    service.kill();
    config.extra = feedback_setting(false);
    let service = Service::start(&config);
    let nurse = get(&service, &chat.professional);
    assert!(!feedback_flag(&nurse));
    assert!(nurse.get("parent_answers").is_none(), "feedback is off again: {nurse}");
    let parent = get(&service, &chat.parent);
    assert!(!feedback_flag(&parent));
    assert_parent_side_clean(&parent, "parent with feedback off again");
}
