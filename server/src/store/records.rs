//! What the store keeps, as plain serialisable records. Raw platform ids
//! appear only in [`QueuedDelivery`], which is deleted once the platform has
//! accepted the invitation.

use serde::{Deserialize, Serialize};

use crate::questionnaire::{ITEM_COUNT, Rating, Role};
use crate::token::InvitationId;

/// Milliseconds since the Unix epoch on the service clock.
pub type Millis = i64;

/// One chat, keyed by the pseudonym of its platform id.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ChatRecord {
    /// When the service accepted the chat-ended webhook.
    pub received_at: Millis,
    /// When the platform reports the chat ended (RFC 3339). It places the chat in reports only.
    pub ended_at: String,
    pub organization: Option<String>,
    pub topic: Option<String>,
    pub child_age_group: Option<String>,
    pub locale: String,
    pub eligible: bool,
    pub parent_invitation: InvitationId,
    pub professional_invitation: InvitationId,
    /// Pseudonym of the professional's participant id, which the nurse's
    /// console code is derived from. For a chat without an assigned
    /// professional it is a pseudonym of the chat alone (see
    /// `professional_unassigned`). `None` for chats stored before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub professional_participant: Option<String>,
    /// Whether the chat had no assignee when it ended (a Chatwoot
    /// conversation resolved without one). Such a chat belongs to no
    /// nurse: it has no console code, and per-nurse figures count it for no
    /// known nurse.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub professional_unassigned: bool,
}

impl ChatRecord {
    /// Returns the pseudonym of the nurse the chat was assigned to, or `None`
    /// for a chat without an assignee or one stored before the pseudonym was kept.
    pub fn nurse_pseudonym(&self) -> Option<&str> {
        if self.professional_unassigned {
            return None;
        }
        self.professional_participant.as_deref()
    }

    pub fn invitation(&self, role: Role) -> &InvitationId {
        match role {
            Role::Parent => &self.parent_invitation,
            Role::Professional => &self.professional_invitation,
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Dead,
}

/// The questionnaire offered to one role of one chat.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct InvitationRecord {
    pub id: InvitationId,
    /// Pseudonym of the chat id.
    pub chat: String,
    pub role: Role,
    pub locale: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub delivery: DeliveryStatus,
    pub delivered_at: Option<Millis>,
    pub response: Response,
}

/// One role's answers for one chat.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
pub struct Response {
    pub answers: [Option<Answer>; ITEM_COUNT],
    pub opened_at: Option<Millis>,
    pub completed_at: Option<Millis>,
    pub submitted_at: Option<Millis>,
    pub declined_at: Option<Millis>,
    pub comment: Option<String>,
    /// Language of the wording the answers were given in.
    pub lang: Option<String>,
    /// When a parent's questionnaire was first opened with the notice that
    /// the nurse reads the answers. `None` when it was first opened without
    /// that notice, and always for the professional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback_notice_at: Option<Millis>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Answer {
    pub rating: Rating,
    pub at: Millis,
}

impl Response {
    pub fn answered(&self) -> usize {
        self.answers.iter().filter(|answer| answer.is_some()).count()
    }

    /// Complete means all 11 items answered, submitted or not.
    pub fn is_complete(&self) -> bool {
        self.answered() == ITEM_COUNT
    }

    pub fn is_started(&self) -> bool {
        self.answers.iter().any(Option::is_some)
    }

    /// Returns the 11 ratings when the response is complete.
    pub fn ratings(&self) -> Option<[Rating; ITEM_COUNT]> {
        let mut ratings = [Rating::Insufficient; ITEM_COUNT];
        for (slot, answer) in ratings.iter_mut().zip(&self.answers) {
            *slot = answer.as_ref()?.rating;
        }
        Some(ratings)
    }
}

/// Where an invitation's questionnaire stands, as the API reports it.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ResponseStatus {
    Open,
    Complete,
    Submitted,
    Declined,
    Expired,
}

impl InvitationRecord {
    pub fn status(&self, now: Millis) -> ResponseStatus {
        let response = &self.response;
        if response.submitted_at.is_some() {
            ResponseStatus::Submitted
        } else if response.declined_at.is_some() {
            ResponseStatus::Declined
        } else if now >= self.expires_at {
            ResponseStatus::Expired
        } else if response.is_complete() {
            ResponseStatus::Complete
        } else {
            ResponseStatus::Open
        }
    }
}

/// An invitation waiting to be posted to the platform. Holds the raw ids the
/// platform call needs; the request body is rebuilt identically for every
/// attempt, so no token is stored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct QueuedDelivery {
    pub invitation_id: InvitationId,
    pub role: Role,
    pub chat_id: String,
    pub participant_id: String,
    pub locale: String,
    pub attempts: u32,
    pub created_at: Millis,
    pub next_attempt_at: Millis,
    pub last_error: Option<String>,
}
