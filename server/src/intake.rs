//! Turning an ended chat into stored invitations: the step shared by the
//! generic webhook, the Chatwoot webhook and Chatwoot reconciliation.

use crate::questionnaire::Role;
use crate::startup::AppState;
use crate::store::records::{ChatRecord, DeliveryStatus, InvitationRecord, QueuedDelivery, Response};
use crate::store::webhook_ids::EventDigest;
use crate::store::{ChatAcceptance, NewChat, StoreError};
use crate::token::InvitationId;

/// Pseudonym kind of the professional of a chat without an assignee. Such a
/// pseudonym is taken over the chat id.
const UNASSIGNED_PROFESSIONAL_KIND: &str = "unassigned-professional";

/// A chat that ended, as a platform reported it; raw ids, validated.
#[derive(Clone, Debug)]
pub struct EndedChat {
    /// The platform's chat id, used in its API paths (Chatwoot: the display id).
    pub chat_id: String,
    /// RFC 3339 end time; places the chat in reports only.
    pub ended_at: String,
    pub organization: Option<String>,
    pub topic: Option<String>,
    pub child_age_group: Option<String>,
    pub locale: String,
    pub parent_participant: String,
    /// The professional's participant id; `None` when the chat had no assignee
    /// (a Chatwoot conversation resolved without one).
    pub professional_participant: Option<String>,
    /// Messages from the parent and from the professional, when the platform sends them.
    pub message_counts: Option<(u64, u64)>,
}

/// Stores the chat and, when it is eligible, its two invitations and queued
/// deliveries, deduplicated on `dedup_key` and on the chat; then flushes.
/// `digest` is the digest of the webhook event when the sender sends the same
/// event on every retry, so a `dedup_key` that comes back with another event
/// is rejected. Returns only after the write is on disk.
pub async fn accept(
    state: &AppState,
    dedup_key: &str,
    digest: Option<EventDigest>,
    chat: &EndedChat,
) -> Result<ChatAcceptance, StoreError> {
    let now = state.now_millis();
    let chat_key = state.pseudonym_key.pseudonym("chat", &chat.chat_id);
    let expires_at = now + state.settings.questionnaire_expiry.as_millis() as i64;
    let [parent_id, professional_id] = state.store.new_invitation_ids(&chat_key);
    let eligible = is_eligible(chat, state.settings.min_messages_per_side);
    let professional_pseudonym = match &chat.professional_participant {
        Some(participant) => state.pseudonym_key.pseudonym("participant", participant),
        // No nurse to key on, so the pseudonym is taken over the chat id, in a
        // kind of its own. Two unassigned chats never share it, and it never
        // equals the pseudonym of a real participant id.
        None => state
            .pseudonym_key
            .pseudonym(UNASSIGNED_PROFESSIONAL_KIND, &chat.chat_id),
    };

    let record = ChatRecord {
        received_at: now,
        ended_at: chat.ended_at.clone(),
        organization: chat.organization.clone(),
        topic: chat.topic.clone(),
        child_age_group: chat.child_age_group.clone(),
        locale: chat.locale.clone(),
        eligible,
        parent_invitation: parent_id.clone(),
        professional_invitation: professional_id.clone(),
        professional_participant: Some(professional_pseudonym),
        professional_unassigned: chat.professional_participant.is_none(),
    };
    let invitation = |id: &InvitationId, role: Role| InvitationRecord {
        id: id.clone(),
        chat: chat_key.clone(),
        role,
        locale: chat.locale.clone(),
        created_at: now,
        expires_at,
        delivery: DeliveryStatus::Pending,
        delivered_at: None,
        response: Response::default(),
    };
    let delivery = |id: &InvitationId, role: Role, participant: &str| QueuedDelivery {
        invitation_id: id.clone(),
        role,
        chat_id: chat.chat_id.clone(),
        participant_id: participant.to_string(),
        locale: chat.locale.clone(),
        attempts: 0,
        created_at: now,
        next_attempt_at: now,
        last_error: None,
    };
    let invitations = [
        invitation(&parent_id, Role::Parent),
        invitation(&professional_id, Role::Professional),
    ];
    let deliveries = [
        delivery(&parent_id, Role::Parent, &chat.parent_participant),
        // Only generic platforms address the recipient by participant id,
        // and their webhook always names the professional.
        delivery(
            &professional_id,
            Role::Professional,
            chat.professional_participant.as_deref().unwrap_or_default(),
        ),
    ];

    state.store.inbox_room().await;
    let acceptance = state.store.accept_chat(NewChat {
        webhook_id: Some(dedup_key),
        webhook_digest: digest,
        chat_key: &chat_key,
        chat: &record,
        invitations: if eligible { &invitations } else { &[] },
        deliveries: if eligible { &deliveries } else { &[] },
        now,
    })?;
    state.store.flush().await?;

    let chat_log = &chat_key[..16];
    match acceptance {
        // The delivery worker wakes when the applier has written the chat into sled.
        ChatAcceptance::New if eligible => tracing::info!(dedup_key, chat = chat_log, "accepted chat"),
        ChatAcceptance::New => tracing::info!(
            dedup_key,
            chat = chat_log,
            "accepted chat as ineligible; no invitations"
        ),
        ChatAcceptance::DuplicateWebhook => tracing::info!(dedup_key, "event already accepted"),
        ChatAcceptance::WebhookIdReused => tracing::warn!(
            dedup_key,
            "rejected an event whose webhook id was accepted before with a different event"
        ),
        ChatAcceptance::KnownChat => tracing::info!(dedup_key, chat = chat_log, "chat already known"),
    }
    Ok(acceptance)
}

/// A chat is eligible unless the platform reports fewer messages than the
/// configured minimum from either side. Without counts it is eligible.
fn is_eligible(chat: &EndedChat, min_messages_per_side: u64) -> bool {
    match chat.message_counts {
        Some((parent, professional)) => parent >= min_messages_per_side && professional >= min_messages_per_side,
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(counts: Option<(u64, u64)>) -> EndedChat {
        EndedChat {
            chat_id: "c-1".into(),
            ended_at: "2022-07-01T10:14:31Z".into(),
            organization: None,
            topic: None,
            child_age_group: None,
            locale: "nl".into(),
            parent_participant: "v-1".into(),
            professional_participant: Some("n-1".into()),
            message_counts: counts,
        }
    }

    #[test]
    fn eligibility_needs_messages_from_both_sides() {
        assert!(is_eligible(&chat(None), 2));
        assert!(is_eligible(&chat(Some((2, 3))), 2));
        assert!(!is_eligible(&chat(Some((1, 3))), 2));
        assert!(!is_eligible(&chat(Some((3, 0))), 2));
        assert!(is_eligible(&chat(Some((0, 0))), 0));
    }
}
