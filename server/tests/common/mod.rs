//! Helpers shared by the store tests: [`ChatBuilder`] writes a chat with a
//! parent and a professional invitation and, unless left out, a queued
//! delivery for each, through [`Store::accept_chat`].

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use alliance::questionnaire::Role;
use alliance::startup::now_millis;
use alliance::store::records::{ChatRecord, DeliveryStatus, InvitationRecord, Millis, QueuedDelivery, Response};
use alliance::store::webhook_ids::EventDigest;
use alliance::store::{ChatAcceptance, NewChat, Store};
use alliance::token::InvitationId;

const HOUR: Millis = 3_600_000;

/// The roles of a chat's two invitations, in the order of their ids.
const ROLES: [Role; 2] = [Role::Parent, Role::Professional];

/// Builder of an eligible chat in locale `nl`, which [`ChatBuilder::accept`]
/// writes into a store.
///
/// Defaults: the current time, two generated invitation ids, invitations that
/// expire after one hour with empty responses, both deliveries queued and
/// due at once, and no webhook id.
pub struct ChatBuilder {
    chat_key: String,
    now: Millis,
    invitation_ids: Option<[InvitationId; 2]>,
    webhook_id: Option<String>,
    webhook_digest: Option<EventDigest>,
    organization: Option<String>,
    expires_after: Millis,
    professional_response: Response,
    queue_deliveries: bool,
}

impl ChatBuilder {
    /// Starts a chat stored under the pseudonym `chat_key`.
    pub fn new(chat_key: &str) -> Self {
        Self {
            chat_key: chat_key.into(),
            now: now_millis(),
            invitation_ids: None,
            webhook_id: None,
            webhook_digest: None,
            organization: None,
            expires_after: HOUR,
            professional_response: Response::default(),
            queue_deliveries: true,
        }
    }

    /// Sets the time the chat is received at, which is also when the
    /// invitations are created and the deliveries are due.
    pub fn at(mut self, now: Millis) -> Self {
        self.now = now;
        self
    }

    /// Sets the parent's and the professional's invitation ids, in that order.
    pub fn invitation_ids(mut self, ids: [InvitationId; 2]) -> Self {
        self.invitation_ids = Some(ids);
        self
    }

    /// Sets the `webhook-id` the chat arrives under and the digest of the
    /// webhook's body. A `None` digest matches any body on a retry.
    pub fn webhook(mut self, id: &str, digest: Option<EventDigest>) -> Self {
        self.webhook_id = Some(id.into());
        self.webhook_digest = digest;
        self
    }

    pub fn organization(mut self, organization: &str) -> Self {
        self.organization = Some(organization.into());
        self
    }

    /// Sets how long after creation both invitations expire, in milliseconds.
    pub fn expires_after(mut self, lifetime: Millis) -> Self {
        self.expires_after = lifetime;
        self
    }

    pub fn professional_response(mut self, response: Response) -> Self {
        self.professional_response = response;
        self
    }

    /// Leaves both deliveries out, as for a chat whose invitations are not
    /// posted to the platform.
    pub fn without_deliveries(mut self) -> Self {
        self.queue_deliveries = false;
        self
    }

    /// Writes the chat with [`Store::accept_chat`] and returns its result.
    /// Panics if the store returns an error.
    pub fn accept(self, store: &Store) -> ChatAcceptance {
        let now = self.now;
        let ids = self
            .invitation_ids
            .unwrap_or_else(|| [InvitationId::generate(), InvitationId::generate()]);
        let chat = ChatRecord {
            received_at: now,
            ended_at: "2022-07-01T10:14:31Z".into(),
            organization: self.organization,
            topic: None,
            child_age_group: None,
            locale: "nl".into(),
            eligible: true,
            parent_invitation: ids[0].clone(),
            professional_invitation: ids[1].clone(),
            professional_participant: None,
            professional_unassigned: false,
        };

        let responses = [Response::default(), self.professional_response];
        let invitations = [0, 1].map(|n| InvitationRecord {
            id: ids[n].clone(),
            chat: self.chat_key.clone(),
            role: ROLES[n],
            locale: "nl".into(),
            created_at: now,
            expires_at: now + self.expires_after,
            delivery: DeliveryStatus::Pending,
            delivered_at: None,
            response: responses[n].clone(),
        });

        let deliveries = if self.queue_deliveries {
            [0, 1]
                .map(|n| QueuedDelivery {
                    invitation_id: ids[n].clone(),
                    role: ROLES[n],
                    chat_id: format!("raw-{}", self.chat_key),
                    participant_id: format!("participant-{n}"),
                    locale: "nl".into(),
                    attempts: 0,
                    created_at: now,
                    next_attempt_at: now,
                    last_error: None,
                })
                .to_vec()
        } else {
            Vec::new()
        };

        store
            .accept_chat(NewChat {
                webhook_id: self.webhook_id.as_deref(),
                webhook_digest: self.webhook_digest,
                chat_key: &self.chat_key,
                chat: &chat,
                invitations: &invitations,
                deliveries: &deliveries,
                now,
            })
            .expect("accepted")
    }
}
