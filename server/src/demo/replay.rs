//! Drives the rebuilt study through the service's public HTTP contracts:
//! signed webhooks in, then answers through the questionnaire API with the
//! tokens the simulated platform received, as the plugin sends them.
//!
//! Every request is retried on connection errors and `5xx` until a deadline,
//! so a replay survives a service that is killed and restarted half-way.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::platform::SimulatedPlatform;
use super::study::{DemoChat, Plan};
use crate::questionnaire::Role;
use crate::signature::WebhookSecret;
use crate::startup::now_millis;

/// How long one request keeps being retried while the service is unreachable.
const RETRY_DEADLINE: Duration = Duration::from_secs(120);

pub struct Replay {
    pub client: reqwest::Client,
    pub target: String,
    pub webhook_secret: WebhookSecret,
    pub platform: Arc<SimulatedPlatform>,
    pub concurrency: usize,
    pub retries: AtomicU64,
}

fn progress(length: usize, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(length as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:<22} [{bar:40}] {pos}/{len} ({per_sec}, {elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}

impl Replay {
    /// Sends one request, retrying connection failures and `5xx` until the
    /// deadline. Returns the final status and body.
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(StatusCode, String), String> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(50);
        loop {
            let mut builder = self.client.request(method.clone(), format!("{}{path}", self.target));
            if let Some(body) = &body {
                builder = builder.json(body);
            }
            match builder.send().await {
                Ok(response) if !response.status().is_server_error() => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    return Ok((status, text));
                }
                Ok(response) if started.elapsed() > RETRY_DEADLINE => {
                    return Err(format!(
                        "{method} {} kept failing: {}",
                        crate::token::redact_path(path),
                        response.status()
                    ));
                }
                Err(error) if started.elapsed() > RETRY_DEADLINE => {
                    return Err(format!(
                        "{method} {} kept failing: {error}",
                        crate::token::redact_path(path)
                    ));
                }
                _ => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Sends the chat-ended webhook of every chat, signed with the current time.
    pub async fn send_webhooks(&self, chats: &[DemoChat]) -> Result<(), String> {
        let bar = progress(chats.len(), "chats ended");
        let results = futures_util::stream::iter(chats)
            .map(|chat| async {
                let result = self.send_webhook(chat).await;
                bar.inc(1);
                result
            })
            .buffer_unordered(self.concurrency)
            .collect::<Vec<_>>()
            .await;
        bar.finish();
        results.into_iter().collect()
    }

    async fn send_webhook(&self, chat: &DemoChat) -> Result<(), String> {
        let body = serde_json::to_vec(&json!({
            "type": "chat.ended",
            "timestamp": chat.ended_at,
            "data": {
                "chat_id": chat.chat_id,
                "ended_at": chat.ended_at,
                "organization": chat.organization,
                "topic": chat.topic,
                "child_age_group": chat.child_age_group,
                "locale": "nl",
                "parent": { "participant_id": chat.parent_participant },
                "professional": { "participant_id": chat.professional_participant },
            }
        }))
        .expect("JSON serialises");
        // Derived from the chat id, so a second replay repeats the same ids,
        // yet without the raw chat id, which the service logs never show.
        let digest = <sha2::Sha256 as sha2::Digest>::digest(chat.chat_id.as_bytes());
        let id = format!("msg_demo_{}", crate::token::hex(&digest[..12]));

        let started = Instant::now();
        let mut delay = Duration::from_millis(50);
        loop {
            // Signed afresh for every attempt, so a retry is never outside the window.
            let timestamp = now_millis() / 1000;
            let signature = self.webhook_secret.sign(&id, timestamp, &body);
            let sent = self
                .client
                .post(format!("{}/webhooks/chat-ended", self.target))
                .header("Content-Type", "application/json")
                .header("webhook-id", &id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature)
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) if response.status().is_client_error() => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    return Err(format!("webhook {id} was rejected with {status}: {text}"));
                }
                outcome if started.elapsed() > RETRY_DEADLINE => {
                    return Err(format!("webhook {id} kept failing: {outcome:?}"));
                }
                _ => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Waits until the platform received both invitations of every chat.
    pub async fn wait_for_invitations(&self, expected: usize, timeout: Duration) -> Result<(), String> {
        let bar = progress(expected, "invitations received");
        let started = Instant::now();
        loop {
            let received = self.platform.received_count();
            bar.set_position(received as u64);
            if received >= expected {
                bar.finish();
                return Ok(());
            }
            if started.elapsed() > timeout {
                bar.abandon();
                return Err(format!(
                    "the platform received {received} of {expected} invitations within {} s; \
                     check the service log and GET /api/admin/deliveries",
                    timeout.as_secs()
                ));
            }
            self.platform.wait_for_arrival(Duration::from_millis(200)).await;
        }
    }

    /// Answers every questionnaire as the chat's plan says.
    pub async fn answer(&self, chats: &[DemoChat]) -> Result<(), String> {
        let work: Vec<(&DemoChat, Role, &Plan)> = chats
            .iter()
            .flat_map(|chat| {
                [
                    (chat, Role::Parent, &chat.parent),
                    (chat, Role::Professional, &chat.professional),
                ]
            })
            .filter(|(_, _, plan)| **plan != Plan::Ignore)
            .collect();
        let bar = progress(work.len(), "questionnaires");
        let results = futures_util::stream::iter(work)
            .map(|(chat, role, plan)| {
                let bar = bar.clone();
                async move {
                    let result = self.answer_one(chat, role, plan).await;
                    bar.inc(1);
                    result
                }
            })
            .buffer_unordered(self.concurrency)
            .collect::<Vec<_>>()
            .await;
        bar.finish();
        results.into_iter().collect()
    }

    async fn answer_one(&self, chat: &DemoChat, role: Role, plan: &Plan) -> Result<(), String> {
        let Some(invitation) = self.platform.received(&chat.chat_id, role) else {
            return Err(format!(
                "the platform has no {role} invitation for chat {}",
                chat.chat_id
            ));
        };
        let base = format!("/api/questionnaires/{}", invitation.token);
        let expect_ok = |what: &str, (status, body): (StatusCode, String)| {
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("{what} for a {role} questionnaire answered {status}: {body}"))
            }
        };

        expect_ok("opening", self.request(Method::GET, &base, None).await?)?;
        let answers: &[crate::questionnaire::Rating] = match plan {
            Plan::Ignore | Plan::Open => return Ok(()),
            Plan::Decline => {
                return expect_ok(
                    "declining",
                    self.request(Method::POST, &format!("{base}/decline"), None).await?,
                );
            }
            Plan::Partial(answers) => answers,
            Plan::Complete { answers, .. } => answers,
        };
        for (index, rating) in answers.iter().enumerate() {
            let path = format!("{base}/items/{}", index + 1);
            let body = json!({ "rating": rating.as_str() });
            expect_ok("an answer", self.request(Method::PUT, &path, Some(body)).await?)?;
        }
        if let Plan::Complete {
            submit: true, comment, ..
        } = plan
        {
            let body = json!({ "comment": comment });
            let (status, text) = self
                .request(Method::POST, &format!("{base}/submit"), Some(body))
                .await?;
            // A submit retried after a lost response finds the answers already sent.
            let already_submitted = status == StatusCode::CONFLICT && text.contains("already_submitted");
            if !status.is_success() && !already_submitted {
                return Err(format!("submitting a {role} questionnaire answered {status}: {text}"));
            }
        }
        Ok(())
    }
}
