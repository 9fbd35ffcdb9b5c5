//! The generic platform API: `POST {platform_url}/chats/{chat_id}/messages`,
//! Bearer-authorised, with an `Idempotency-Key` and Standard Webhooks
//! signature headers that are signed afresh for every attempt.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde_json::json;

use crate::config::{Secret, Settings};
use crate::delivery::Outcome;
use crate::questionnaire::Role;
use crate::signature::WebhookSecret;
use crate::startup::now_millis;
use crate::store::records::QueuedDelivery;
use crate::token::TokenKey;

pub struct GenericPlatform {
    http: reqwest::Client,
    base_url: Url,
    api_token: Secret,
    signing_secret: WebhookSecret,
    public_url: String,
    token_key: TokenKey,
}

impl GenericPlatform {
    pub fn new(settings: &Settings, token_key: TokenKey) -> Result<Self, String> {
        let base_url = settings
            .platform_url
            .clone()
            .ok_or("ALLIANCE_PLATFORM_URL is not set")?;
        let api_token = settings
            .platform_token
            .clone()
            .ok_or("ALLIANCE_PLATFORM_TOKEN is not set")?;
        let signing_secret = settings
            .platform_signing_secret
            .clone()
            .ok_or("ALLIANCE_PLATFORM_SIGNING_SECRET is not set")?;
        let http = crate::delivery::platform_http_client(settings)?;
        Ok(Self {
            http,
            base_url,
            api_token,
            signing_secret,
            public_url: settings.public_url.as_str().trim_end_matches('/').to_string(),
            token_key,
        })
    }

    fn messages_url(&self, chat_id: &str) -> Url {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .expect("an http URL has path segments")
            .pop_if_empty()
            .push("chats")
            .push(chat_id)
            .push("messages");
        url
    }

    /// Builds the request body. The same delivery always gives the same
    /// bytes, because the token is derived from the invitation id.
    pub fn body(&self, delivery: &QueuedDelivery) -> Vec<u8> {
        let token = self.token_key.token(&delivery.invitation_id);
        let url = super::questionnaire_link(&self.public_url, &token, delivery);
        let text = match delivery.role {
            Role::Parent => super::parent_invitation(&url, &delivery.locale),
            Role::Professional => format!("Vragenlijst online alliantie over dit gesprek (11 vragen): {url}"),
        };
        let body = json!({
            "recipient": { "role": delivery.role, "participant_id": delivery.participant_id },
            "type": "questionnaire",
            "questionnaire": { "url": url, "token": token, "locale": delivery.locale },
            "text": text,
        });
        serde_json::to_vec(&body).expect("JSON values serialise")
    }

    /// Makes one attempt and classifies the result.
    pub async fn send(&self, delivery: &QueuedDelivery) -> Outcome {
        let body = self.body(delivery);
        let id = delivery.invitation_id.as_str();
        let timestamp = now_millis() / 1000;
        let signature = self.signing_secret.sign(id, timestamp, &body);

        let response = self
            .http
            .post(self.messages_url(&delivery.chat_id))
            .bearer_auth(self.api_token.expose())
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", id)
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;

        match response {
            Ok(response) => classify(response.status(), response.headers()),
            Err(error) => Outcome::Retry {
                error: describe(&error),
                retry_after: None,
            },
        }
    }
}

/// Maps a platform status to an outcome: `2xx` and `409` are accepted;
/// `408`, `425`, `429` and `5xx` are retried; anything else is permanent.
pub fn classify(status: StatusCode, headers: &HeaderMap) -> Outcome {
    if status.is_success() || status == StatusCode::CONFLICT {
        return Outcome::Accepted;
    }
    let error = format!("platform answered {status}");
    let retryable = matches!(status.as_u16(), 408 | 425 | 429) || status.is_server_error();
    if retryable {
        Outcome::Retry {
            error,
            retry_after: retry_after(headers),
        }
    } else if status.is_redirection() {
        Outcome::Permanent {
            error: format!("{error} (a redirect; check ALLIANCE_PLATFORM_URL, redirects are not followed)"),
        }
    } else {
        Outcome::Permanent { error }
    }
}

/// Parses `Retry-After` as seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let format = time::format_description::well_known::Rfc2822;
    let date = time::OffsetDateTime::parse(value, &format).ok()?;
    let seconds = date.unix_timestamp() - now_millis() / 1000;
    Some(Duration::from_secs(seconds.max(0) as u64))
}

/// Describes a request failure without its URL, which may carry a chat id.
pub fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "request to the platform timed out".into()
    } else if error.is_connect() {
        "could not connect to the platform".into()
    } else {
        format!(
            "request to the platform failed: {}",
            std::error::Error::source(error)
                .map(ToString::to_string)
                .unwrap_or_else(|| error.to_string())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        let headers = HeaderMap::new();
        for code in [200, 201, 202, 204, 409] {
            assert!(
                matches!(
                    classify(StatusCode::from_u16(code).unwrap(), &headers),
                    Outcome::Accepted
                ),
                "{code}"
            );
        }
        for code in [408, 425, 429, 500, 502, 503, 504] {
            assert!(
                matches!(
                    classify(StatusCode::from_u16(code).unwrap(), &headers),
                    Outcome::Retry { .. }
                ),
                "{code}"
            );
        }
        for code in [301, 400, 401, 403, 404, 410, 422] {
            assert!(
                matches!(
                    classify(StatusCode::from_u16(code).unwrap(), &headers),
                    Outcome::Permanent { .. }
                ),
                "{code}"
            );
        }
    }

    #[test]
    fn retry_after_seconds_are_read() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        match classify(StatusCode::TOO_MANY_REQUESTS, &headers) {
            Outcome::Retry { retry_after, .. } => assert_eq!(retry_after, Some(Duration::from_secs(7))),
            other => panic!("expected a retry, got {other:?}"),
        }
    }
}
