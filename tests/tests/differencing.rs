//! Small-cell suppression against differencing: two filtered reports that
//! are each large enough must not give a small group's answers back when
//! one is subtracted from the other. Runs the real service with the default
//! minimum cell size of 10.

mod common;

use serde_json::{Value, json};

use common::{RecordingPlatform, Service, SignedWebhook, TestConfig, client, wait_for_tokens};

/// Chats of one stratum: organization, topic, child age group, number of pairs.
const STRATA: [(&str, &str, &str, usize); 4] = [
    ("DiffOrg", "A", "0-5", 12),
    ("DiffOrg", "A", "5-12", 1),
    ("OtherOrg", "A", "0-5", 10),
    ("OtherOrg", "B", "5-12", 10),
];

/// Ends a chat with the given labels and has both sides answer every item.
fn add_pair(service: &Service, platform: &RecordingPlatform, chat_id: &str, labels: (&str, &str, &str), rating: &str) {
    let (organization, topic, child_age_group) = labels;
    let body = json!({
        "type": "chat.ended",
        "timestamp": "2022-07-01T10:15:02Z",
        "data": {
            "chat_id": chat_id,
            "ended_at": "2022-07-01T10:14:31Z",
            "organization": organization,
            "topic": topic,
            "child_age_group": child_age_group,
            "parent": { "participant_id": format!("parent-{chat_id}") },
            "professional": { "participant_id": "nurse-1" }
        }
    });
    let webhook = SignedWebhook::new(
        &service.config.webhook_secrets[0],
        &format!("msg_{chat_id}"),
        serde_json::to_vec(&body).unwrap(),
    );
    let (status, reply) = webhook.send(service);
    assert_eq!(status, 202, "chat-ended for {chat_id}: {reply}");

    let tokens = wait_for_tokens(platform, chat_id);
    for token in [&tokens.parent, &tokens.professional] {
        for item in 1..=11 {
            let response = client()
                .put(service.url(&format!("/api/questionnaires/{token}/items/{item}")))
                .json(&json!({ "rating": rating }))
                .send()
                .unwrap();
            assert!(response.status().is_success(), "answer {item} of {chat_id}");
        }
    }
}

fn get(service: &Service, path: &str) -> (u16, String) {
    let response = client()
        .get(service.url(path))
        .bearer_auth(&service.config.admin_token)
        .send()
        .unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

fn json_at(service: &Service, path: &str) -> Value {
    let (status, body) = get(service, path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn report(service: &Service, query: &str) -> Value {
    json_at(service, &format!("/api/admin/report?{query}"))
}

/// Logs in to the dashboard and returns the session cookie.
fn dashboard_cookie(service: &Service) -> String {
    let response = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(service.url("/report/login"))
        .form(&[("token", service.config.admin_token.as_str())])
        .send()
        .unwrap();
    assert_eq!(response.status(), 303, "dashboard login");
    let header = response.headers().get("set-cookie").unwrap().to_str().unwrap();
    header.split(';').next().unwrap().to_string()
}

const WIDE: &str = "organization=DiffOrg&topic=A";
const NARROW: &str = "organization=DiffOrg&topic=A&child_age_group=0-5";
const SINGLE: &str = "organization=DiffOrg&topic=A&child_age_group=5-12";

#[test]
fn overlapping_filters_cannot_be_subtracted() {
    let dir = tempfile::tempdir().unwrap();
    let platform = RecordingPlatform::start();
    let mut config = TestConfig::new(dir.path(), &platform.url);
    config.extra = vec![("ALLIANCE_MIN_CELL_SIZE".into(), "10".into())];
    let service = Service::start(&config);

    for (stratum, (organization, topic, age, pairs)) in STRATA.iter().enumerate() {
        for number in 0..*pairs {
            // The single pair of age 5-12 answers differently from all others.
            let rating = if *age == "5-12" && *organization == "DiffOrg" {
                "insufficient"
            } else {
                "good"
            };
            add_pair(
                &service,
                &platform,
                &format!("chat-{stratum}-{number}"),
                (organization, topic, age),
                rating,
            );
        }
    }
    assert_eq!(service.report()["pairs"], 33);

    // 13 pairs; the same filter without the organization has 10 more, the
    // whole store 20 more: shown.
    let wide = report(&service, WIDE);
    assert_eq!(wide["suppression"]["suppressed"], false, "{}", wide["suppression"]);
    assert_eq!(wide["agreement"]["category"]["pairs"], 13);
    assert_eq!(wide["items"][0]["parent"]["insufficient"], 1);

    // 12 pairs, but the wide report has exactly one pair more.
    let narrow = report(&service, NARROW);
    assert_eq!(narrow["pairs"], 12);
    assert_eq!(narrow["suppression"]["suppressed"], true);
    assert_eq!(
        narrow["suppression"]["reason"],
        json!({ "code": "leaves_out_too_few_pairs", "left_out": 1, "without": ["child_age_group"] })
    );
    assert_eq!(narrow["agreement"]["category"]["pairs"], 0);
    for item in narrow["items"].as_array().unwrap() {
        assert_eq!(
            item["parent"],
            json!({ "insufficient": 0, "sufficient": 0, "good": 0 }),
            "item {}",
            item["number"]
        );
    }
    for breakdown in ["organization", "topic", "child_age_group", "iso_week"] {
        for cell in narrow["breakdowns"][breakdown].as_array().unwrap() {
            assert_eq!(cell["suppressed"], true, "{breakdown} {}", cell["value"]);
            assert_eq!(cell["figures"], Value::Null, "{breakdown} {}", cell["value"]);
        }
    }

    let single = report(&service, SINGLE);
    assert_eq!(
        single["suppression"]["reason"],
        json!({ "code": "too_few_pairs", "pairs": 1 })
    );

    // Both sides large: 23 pairs of topic A, 10 of the rest.
    let topic = report(&service, "topic=A");
    assert_eq!(topic["suppression"]["suppressed"], false, "{}", topic["suppression"]);
    assert_eq!(topic["agreement"]["category"]["pairs"], 23);

    // The dashboard says why.
    let cookie = dashboard_cookie(&service);
    let page = client()
        .get(service.url(&format!("/report?{NARROW}&lang=en")))
        .header("cookie", &cookie)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        page.contains(
            "This selection differs by only 1 matched pair from the same selection without child's age group."
        ),
        "{page}"
    );

    // The funnel export carries no agreement for the narrow filter.
    let (status, funnel) = get(&service, &format!("/api/admin/export?layout=funnel&{NARROW}"));
    assert_eq!(status, 200, "{funnel}");
    let mut lines = funnel.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|cell| *cell == name).unwrap();
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells[column("suppressed")], "1", "{line}");
        assert_eq!(cells[column("category_agreeing")], "", "{line}");
    }

    // The wide export refuses the narrow filter and names the dimension.
    let (status, body) = get(&service, &format!("/api/admin/export?layout=wide&{NARROW}"));
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("too_few_pairs"), "{body}");
    assert!(body.contains("without child_age_group"), "{body}");
    let (status, body) = get(&service, &format!("/api/admin/export?layout=wide&{WIDE}"));
    assert_eq!(status, 200, "{body}");

    // So does the peer-review view.
    let view = json_at(&service, &format!("/api/admin/peer-review?{NARROW}"));
    assert_eq!(view["suppressed"], true);
    assert_eq!(view["suppression_reason"]["code"], "leaves_out_too_few_pairs");
    assert_eq!(view["pairs"], Value::Null);
    let view = json_at(&service, &format!("/api/admin/peer-review?{WIDE}"));
    assert_eq!(view["suppressed"], false);
    assert_eq!(view["pairs"], 13);
}
