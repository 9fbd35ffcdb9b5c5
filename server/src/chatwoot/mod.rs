//! Chatwoot as the chat platform: its account webhook in, its API out, and a
//! reconciliation poll that catches what the webhook missed.
//!
//! Written against Chatwoot 4.x: account webhooks signed with
//! `X-Chatwoot-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">`,
//! `X-Chatwoot-Timestamp` and `X-Chatwoot-Delivery`, and the application API
//! under `/api/v1/accounts/{account_id}` with the `api_access_token` header.

pub mod client;
pub mod reconcile;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::config::ChatwootAttributes;
use crate::intake::EndedChat;
use crate::signature::{TIMESTAMP_TOLERANCE_SECS, parse_timestamp};

/// Why a Chatwoot webhook failed verification.
#[derive(Debug, PartialEq, Eq)]
pub enum ChatwootVerifyError {
    InvalidTimestamp,
    OutOfWindow { offset_secs: i128 },
    InvalidSignature,
}

/// Checks `X-Chatwoot-Signature` (`sha256=<hex>`) over `"<timestamp>.<body>"`
/// in constant time, and the timestamp against `now` (Unix seconds).
pub fn verify(
    secret: &str,
    timestamp: &str,
    body: &[u8],
    signature: &str,
    now: i64,
) -> Result<(), ChatwootVerifyError> {
    let Some(sent_at) = parse_timestamp(timestamp) else {
        return Err(ChatwootVerifyError::InvalidTimestamp);
    };
    let offset = i128::from(sent_at) - i128::from(now);
    if offset.abs() > i128::from(TIMESTAMP_TOLERANCE_SECS) {
        return Err(ChatwootVerifyError::OutOfWindow { offset_secs: offset });
    }

    let Some(expected_hex) = signature.strip_prefix("sha256=") else {
        return Err(ChatwootVerifyError::InvalidSignature);
    };
    let Some(expected) = decode_hex(expected_hex) else {
        return Err(ChatwootVerifyError::InvalidSignature);
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| ChatwootVerifyError::InvalidSignature)
}

/// Signs like Chatwoot does; used by tests and the simulated Chatwoot.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", crate::token::hex(&mac.finalize().into_bytes()))
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(&text[index..index + 2], 16).ok())
        .collect()
}

/// What a Chatwoot conversation event means for us.
#[derive(Debug)]
pub enum ConversationEvent {
    /// The conversation was resolved: the chat ended.
    Resolved(EndedChat),
    /// Any other event or status; acknowledged and ignored.
    Ignored(String),
}

/// Reads a conversation object, from a webhook or from the conversations
/// API, into an ended chat. With `account_id` set, a conversation of another
/// account, or one that names no account, is ignored.
pub fn conversation_event(
    payload: &Value,
    account_id: Option<u64>,
    attributes: &ChatwootAttributes,
    now_secs: i64,
) -> Result<ConversationEvent, String> {
    let event = payload.get("event").and_then(Value::as_str);
    if let Some(event) = event {
        if event != "conversation_status_changed" {
            return Ok(ConversationEvent::Ignored(format!("event {event} does not end a chat")));
        }
    }
    let status = payload.get("status").and_then(Value::as_str).unwrap_or("");
    if status != "resolved" {
        return Ok(ConversationEvent::Ignored(format!("status {status:?} is not resolved")));
    }

    if let Some(expected) = account_id {
        if let Some(reason) = account_mismatch(payload, expected) {
            return Ok(ConversationEvent::Ignored(reason));
        }
    }

    let conversation_id = match payload.get("id") {
        Some(Value::Number(number)) if number.as_u64().is_some() => number.to_string(),
        Some(_) => return Err("field \"id\" (the conversation display id) must be a positive whole number".into()),
        None => return Err("field \"id\" (the conversation display id) is required".into()),
    };

    let id_of = |pointer: &str| match payload.pointer(pointer) {
        Some(Value::Number(number)) => Some(number.to_string()),
        Some(Value::String(text)) if !text.is_empty() => Some(text.clone()),
        _ => None,
    };
    let contact = id_of("/meta/sender/id")
        .or_else(|| id_of("/contact_inbox/contact_id"))
        .ok_or("field \"meta.sender.id\" (the contact) is required")?;
    // A resolved conversation without an assignee still gets a private note,
    // which any agent of the inbox may fill in, but its chat belongs to no nurse.
    let assignee = id_of("/meta/assignee/id");

    let ended_secs = ["/timestamp", "/last_activity_at", "/updated_at"]
        .iter()
        .find_map(|pointer| payload.pointer(pointer).and_then(Value::as_i64))
        .filter(|seconds| (946_684_800..4_102_444_800).contains(seconds))
        .unwrap_or(now_secs);
    let ended_at = time::OffsetDateTime::from_unix_timestamp(ended_secs)
        .ok()
        .and_then(|time| time.format(&time::format_description::well_known::Rfc3339).ok())
        .ok_or("the conversation time is out of range")?;

    let label = |key: &str| label_value(payload, key);
    Ok(ConversationEvent::Resolved(EndedChat {
        chat_id: conversation_id,
        ended_at,
        organization: label(&attributes.organization),
        topic: label(&attributes.topic),
        child_age_group: label(&attributes.child_age_group),
        locale: "nl".to_string(),
        parent_participant: contact,
        professional_participant: assignee,
        message_counts: None,
    }))
}

/// Returns why a conversation does not belong to account `expected`, or
/// `None` when it does. The account ids a payload can name are its
/// `account_id`, its `account.id` and the `account_id` of each message in
/// `messages`. Some Chatwoot versions send conversation webhooks whose only
/// account ids are those in `messages`. Every id named must equal
/// `expected`, and at least one must be named.
fn account_mismatch(payload: &Value, expected: u64) -> Option<String> {
    let mut named = Vec::new();
    named.extend(payload.get("account_id").and_then(Value::as_u64));
    named.extend(payload.pointer("/account/id").and_then(Value::as_u64));
    if let Some(messages) = payload.get("messages").and_then(Value::as_array) {
        named.extend(
            messages
                .iter()
                .filter_map(|message| message.get("account_id").and_then(Value::as_u64)),
        );
    }

    if named.is_empty() {
        return Some(
            "field \"account_id\" is missing: with ALLIANCE_CHATWOOT_ACCOUNT_ID set, only conversations \
             that name their account are accepted"
                .to_string(),
        );
    }
    named
        .into_iter()
        .find(|actual| *actual != expected)
        .map(|actual| format!("conversation of another account ({actual})"))
}

/// A custom attribute `key`, or else the first label `key:value`.
fn label_value(payload: &Value, key: &str) -> Option<String> {
    let attribute = payload
        .pointer("/custom_attributes")
        .and_then(|attributes| attributes.get(key))
        .and_then(|value| match value {
            Value::String(text) => Some(text.trim().to_string()),
            Value::Number(number) => Some(number.to_string()),
            _ => None,
        })
        .filter(|text| !text.is_empty() && text.chars().count() <= 200);
    if attribute.is_some() {
        return attribute;
    }
    let prefix = format!("{key}:");
    payload
        .get("labels")
        .and_then(Value::as_array)?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|label| label.strip_prefix(&prefix))
        .map(|value| value.trim().to_string())
        .filter(|text| !text.is_empty() && text.chars().count() <= 200)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attributes() -> ChatwootAttributes {
        ChatwootAttributes {
            organization: "organization".into(),
            topic: "topic".into(),
            child_age_group: "child_age_group".into(),
        }
    }

    #[test]
    fn signature_round_trip_and_tamper() {
        let body = br#"{"event":"conversation_status_changed"}"#;
        let signature = sign("secret", 1_800_000_000, body);
        assert_eq!(verify("secret", "1800000000", body, &signature, 1_800_000_000), Ok(()));
        assert_eq!(
            verify("other", "1800000000", body, &signature, 1_800_000_000),
            Err(ChatwootVerifyError::InvalidSignature)
        );
        assert_eq!(
            verify("secret", "1800000001", body, &signature, 1_800_000_000),
            Err(ChatwootVerifyError::InvalidSignature)
        );
        assert_eq!(
            verify(
                "secret",
                "1800000000",
                body,
                &signature.replace("sha256=", ""),
                1_800_000_000
            ),
            Err(ChatwootVerifyError::InvalidSignature)
        );
        assert!(matches!(
            verify("secret", "1800000000", body, &signature, 1_800_000_301),
            Err(ChatwootVerifyError::OutOfWindow { .. })
        ));
    }

    #[test]
    fn resolved_conversation_becomes_a_chat() {
        let payload = json!({
            "event": "conversation_status_changed",
            "id": 42,
            "account_id": 1,
            "status": "resolved",
            "timestamp": 1_656_670_471,
            "meta": { "sender": { "id": 981 }, "assignee": { "id": 17 } },
            "custom_attributes": { "organization": "GGD Regio Utrecht" },
            "labels": ["topic:voeding", "child_age_group:0-5"],
        });
        let ConversationEvent::Resolved(chat) = conversation_event(&payload, Some(1), &attributes(), 0).unwrap() else {
            panic!("expected a resolved chat");
        };
        assert_eq!(chat.chat_id, "42");
        assert_eq!(chat.parent_participant, "981");
        assert_eq!(chat.professional_participant.as_deref(), Some("17"));
        assert_eq!(chat.organization.as_deref(), Some("GGD Regio Utrecht"));
        assert_eq!(chat.topic.as_deref(), Some("voeding"));
        assert_eq!(chat.child_age_group.as_deref(), Some("0-5"));
        assert_eq!(chat.ended_at, "2022-07-01T10:14:31Z");
    }

    #[test]
    fn conversation_without_assignee_has_no_professional() {
        for assignee in [json!(null), json!({})] {
            let payload = json!({
                "event": "conversation_status_changed", "id": 110, "account_id": 1, "status": "resolved",
                "meta": { "sender": { "id": 981 }, "assignee": assignee },
            });
            let ConversationEvent::Resolved(chat) = conversation_event(&payload, Some(1), &attributes(), 0).unwrap()
            else {
                panic!("expected a resolved chat");
            };
            assert_eq!(chat.professional_participant, None, "assignee {assignee}");
        }
    }

    #[test]
    fn other_events_accounts_and_statuses_are_ignored() {
        let cases = [
            json!({ "event": "message_created", "id": 1 }),
            json!({ "event": "conversation_status_changed", "id": 1, "status": "open" }),
            json!({ "event": "conversation_status_changed", "id": 1, "status": "resolved", "account_id": 2,
                    "meta": { "sender": { "id": 5 } } }),
        ];
        for payload in cases {
            let event = conversation_event(&payload, Some(1), &attributes(), 0).unwrap();
            assert!(matches!(event, ConversationEvent::Ignored(_)), "{payload}");
        }
    }

    #[test]
    fn conversation_without_account_is_ignored() {
        let payload = json!({ "event": "conversation_status_changed", "id": 1, "status": "resolved",
                              "meta": { "sender": { "id": 5 } } });
        let ConversationEvent::Ignored(reason) = conversation_event(&payload, Some(1), &attributes(), 0).unwrap()
        else {
            panic!("a conversation without account id was accepted");
        };
        assert!(reason.contains("\"account_id\" is missing"), "{reason}");
    }

    #[test]
    fn unconfigured_account_is_not_checked() {
        let payload = json!({ "event": "conversation_status_changed", "id": 1, "status": "resolved",
                              "meta": { "sender": { "id": 5 } } });
        let event = conversation_event(&payload, None, &attributes(), 0).unwrap();
        assert!(matches!(event, ConversationEvent::Resolved(_)));
    }

    #[test]
    fn message_account_ids_count() {
        let resolved = |messages: Value| {
            json!({ "event": "conversation_status_changed", "id": 1, "status": "resolved",
                    "meta": { "sender": { "id": 5 } }, "messages": messages })
        };

        let same = resolved(json!([{ "id": 10, "account_id": 1 }]));
        let event = conversation_event(&same, Some(1), &attributes(), 0).unwrap();
        assert!(
            matches!(event, ConversationEvent::Resolved(_)),
            "account named by the message"
        );

        let other = resolved(json!([{ "id": 10, "account_id": 2 }]));
        let event = conversation_event(&other, Some(1), &attributes(), 0).unwrap();
        assert!(
            matches!(event, ConversationEvent::Ignored(_)),
            "message of another account"
        );

        let mut mixed = resolved(json!([{ "id": 10, "account_id": 2 }]));
        mixed["account_id"] = json!(1);
        let event = conversation_event(&mixed, Some(1), &attributes(), 0).unwrap();
        assert!(matches!(event, ConversationEvent::Ignored(_)), "ids that disagree");

        let unnamed = resolved(json!([{ "id": 10 }]));
        let event = conversation_event(&unnamed, Some(1), &attributes(), 0).unwrap();
        assert!(
            matches!(event, ConversationEvent::Ignored(_)),
            "message without account id"
        );
    }

    #[test]
    fn missing_conversation_id_is_an_error() {
        let payload = json!({ "event": "conversation_status_changed", "status": "resolved", "account_id": 1 });
        assert!(
            conversation_event(&payload, Some(1), &attributes(), 0)
                .unwrap_err()
                .contains("\"id\"")
        );
    }
}
