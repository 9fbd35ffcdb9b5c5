//! Chatwoot's application API: posting the invitations and listing
//! resolved conversations for reconciliation.

use reqwest::Url;
use serde_json::{Value, json};

use crate::config::{Secret, Settings};
use crate::delivery::{Outcome, classify};
use crate::questionnaire::Role;
use crate::store::records::QueuedDelivery;
use crate::token::TokenKey;

/// A client for one Chatwoot account.
pub struct ChatwootClient {
    http: reqwest::Client,
    base_url: Url,
    account_id: u64,
    api_token: Secret,
    public_url: String,
    token_key: TokenKey,
}

impl ChatwootClient {
    pub fn new(settings: &Settings, token_key: TokenKey) -> Result<Self, String> {
        let base_url = settings
            .platform_url
            .clone()
            .ok_or("ALLIANCE_PLATFORM_URL is not set")?;
        let api_token = settings
            .platform_token
            .clone()
            .ok_or("ALLIANCE_PLATFORM_TOKEN is not set")?;
        let account_id = settings
            .chatwoot_account_id
            .ok_or("ALLIANCE_CHATWOOT_ACCOUNT_ID is not set")?;
        let http = crate::delivery::platform_http_client(settings)?;
        Ok(Self {
            http,
            base_url,
            account_id,
            api_token,
            public_url: settings.public_url.as_str().trim_end_matches('/').to_string(),
            token_key,
        })
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base_url.clone();
        {
            let mut path = url.path_segments_mut().expect("an http URL has path segments");
            path.pop_if_empty()
                .extend(["api", "v1", "accounts", &self.account_id.to_string()]);
            path.extend(segments);
        }
        url
    }

    /// Builds the message body: a public message for the parent, a private note,
    /// which only agents see, for the professional. The link carries the
    /// invitation id, which lets a retry find an earlier post.
    pub fn message(&self, delivery: &QueuedDelivery) -> Value {
        let token = self.token_key.token(&delivery.invitation_id);
        let link = crate::delivery::questionnaire_link(&self.public_url, &token, delivery);
        match delivery.role {
            Role::Parent => json!({
                "content": crate::delivery::parent_invitation(&link, &delivery.locale),
                "message_type": "outgoing",
                "private": false,
            }),
            Role::Professional => json!({
                "content": format!("Vragenlijst online alliantie over dit gesprek (11 vragen), alleen voor jou: {link}"),
                "message_type": "outgoing",
                "private": true,
            }),
        }
    }

    /// Posts one invitation. Chatwoot has no idempotency keys, so every
    /// attempt first looks for an earlier post of the same invitation in the
    /// conversation and counts it as delivered when it finds one. It looks
    /// on the first attempt too: a post may have landed just before a crash
    /// or before an admin retried a dead letter, and neither is counted in
    /// `attempts`.
    pub async fn send(&self, delivery: &QueuedDelivery) -> Outcome {
        let messages_url = self.url(&["conversations", &delivery.chat_id, "messages"]);
        match self.already_posted(&messages_url, delivery).await {
            Ok(true) => return Outcome::Accepted,
            Ok(false) => {}
            Err(outcome) => return outcome,
        }

        let response = self
            .http
            .post(messages_url)
            .header("api_access_token", self.api_token.expose())
            .json(&self.message(delivery))
            .send()
            .await;
        match response {
            // Chatwoot has no idempotency keys, so a 409 is not "already accepted" there.
            Ok(response) if response.status() == reqwest::StatusCode::CONFLICT => Outcome::Permanent {
                error: "Chatwoot answered 409 Conflict".into(),
            },
            Ok(response) => classify(response.status(), response.headers()),
            Err(error) => Outcome::Retry {
                error: crate::delivery::describe(&error),
                retry_after: None,
            },
        }
    }

    async fn already_posted(&self, messages_url: &Url, delivery: &QueuedDelivery) -> Result<bool, Outcome> {
        let response = self
            .http
            .get(messages_url.clone())
            .header("api_access_token", self.api_token.expose())
            .send()
            .await
            .map_err(|error| Outcome::Retry {
                error: crate::delivery::describe(&error),
                retry_after: None,
            })?;
        if !response.status().is_success() {
            return Err(classify(response.status(), response.headers()));
        }
        let body: Value = response.json().await.map_err(|_| Outcome::Retry {
            error: "Chatwoot's message list is not JSON".into(),
            retry_after: None,
        })?;
        let marker = delivery.invitation_id.as_str();
        let found = body.get("payload").and_then(Value::as_array).is_some_and(|messages| {
            messages.iter().any(|message| {
                message
                    .get("content")
                    .and_then(Value::as_str)
                    .is_some_and(|content| content.contains(marker))
            })
        });
        Ok(found)
    }

    /// Fetches one page (1-based) of the account's resolved conversations.
    pub async fn resolved_conversations(&self, page: u32) -> Result<Vec<Value>, String> {
        let mut url = self.url(&["conversations"]);
        url.query_pairs_mut()
            .append_pair("status", "resolved")
            .append_pair("assignee_type", "all")
            .append_pair("page", &page.to_string());
        let response = self
            .http
            .get(url)
            .header("api_access_token", self.api_token.expose())
            .send()
            .await
            .map_err(|error| crate::delivery::describe(&error))?;
        if !response.status().is_success() {
            return Err(format!(
                "Chatwoot answered {} to the conversation list",
                response.status()
            ));
        }
        let body: Value = response
            .json()
            .await
            .map_err(|_| "Chatwoot's conversation list is not JSON".to_string())?;
        Ok(body
            .pointer("/data/payload")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    pub fn account_id(&self) -> u64 {
        self.account_id
    }
}
