//! Fuzzes the JSON and payload parsing of both inbound webhooks: the
//! generic `chat.ended` event and Chatwoot's conversation events. Neither
//! may panic, and an accepted chat must satisfy the documented limits.

#![no_main]

use alliance::chatwoot::{self, ConversationEvent};
use alliance::config::ChatwootAttributes;
use alliance::routes::parse_json_value;
use alliance::routes::webhooks::{parse_chat_ended, validate_ended_at};
use libfuzzer_sys::fuzz_target;

const MAX_ID_CHARS: usize = 256;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = parse_json_value(data) else {
        return;
    };

    if let Ok(chat) = parse_chat_ended(&event) {
        assert!(!chat.chat_id.is_empty());
        assert!(chat.chat_id.chars().count() <= MAX_ID_CHARS);
        assert!(validate_ended_at(&chat.ended_at).is_ok());
        assert!(!chat.parent_participant.is_empty());
        let professional = chat
            .professional_participant
            .expect("the generic webhook requires a professional");
        assert!(!professional.is_empty());
    }

    let attributes = ChatwootAttributes {
        organization: "organization".into(),
        topic: "topic".into(),
        child_age_group: "child_age_group".into(),
    };
    if let Ok(ConversationEvent::Resolved(chat)) =
        chatwoot::conversation_event(&event, Some(3), &attributes, 1_800_000_000)
    {
        assert!(
            chat.chat_id.parse::<u64>().is_ok(),
            "conversation id {:?}",
            chat.chat_id
        );
        assert!(validate_ended_at(&chat.ended_at).is_ok());
    }
});
