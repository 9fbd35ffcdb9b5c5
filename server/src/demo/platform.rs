//! A simulated chat platform on loopback that follows the generic platform
//! contract: it checks the Bearer token and the Standard Webhooks signature
//! of every request, answers `409` to a repeated `Idempotency-Key`, and keeps
//! the invitations it received so the replay can answer with their tokens.
//! It can also fail on purpose, as a real platform does.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use rand::Rng;
use serde::Serialize;
use serde_json::{Value, json};

use crate::questionnaire::Role;
use crate::signature::{self, WebhookSecret};
use crate::startup::now_millis;

/// An invitation as the platform received it.
#[derive(Clone, Debug)]
pub struct ReceivedInvitation {
    pub token: String,
    pub url: String,
    pub participant_id: String,
}

/// Counts that show whether delivery kept its promises.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct PlatformStats {
    /// Requests answered with `2xx`: first deliveries.
    pub accepted: u64,
    /// Requests answered with `409` because the idempotency key was seen before.
    pub repeated_keys: u64,
    /// Requests rejected for a bad token, signature or body.
    pub rejected: u64,
    /// Requests answered with an injected failure.
    pub injected_failures: u64,
    /// Chat and role combinations that arrived under more than one idempotency key.
    pub invitations_with_several_keys: u64,
}

#[derive(Default)]
struct State {
    invitations: HashMap<(String, Role), ReceivedInvitation>,
    keys_per_invitation: HashMap<(String, Role), HashSet<String>>,
    seen_keys: HashSet<String>,
    stats: PlatformStats,
}

/// The running simulated platform.
pub struct SimulatedPlatform {
    pub address: SocketAddr,
    handle: ServerHandle,
    shared: Arc<Shared>,
}

struct Shared {
    api_token: String,
    signing_secret: WebhookSecret,
    /// Share of requests, 0 to 1, answered with a `503` before anything is recorded.
    failure_rate: f64,
    state: Mutex<State>,
    arrived: tokio::sync::Notify,
}

impl SimulatedPlatform {
    /// Starts the platform on `address` (port 0 picks a free port).
    pub fn start(
        address: SocketAddr,
        api_token: String,
        signing_secret: WebhookSecret,
        failure_rate: f64,
    ) -> Result<Self, String> {
        if !address.ip().is_loopback() {
            return Err(format!(
                "the simulated platform listens on loopback only, not on {address}"
            ));
        }
        let shared = Arc::new(Shared {
            api_token,
            signing_secret,
            failure_rate,
            state: Mutex::new(State::default()),
            arrived: tokio::sync::Notify::new(),
        });
        let listener = TcpListener::bind(address)
            .map_err(|error| format!("simulated platform cannot listen on {address}: {error}"))?;
        let address = listener.local_addr().map_err(|error| error.to_string())?;

        let data = web::Data::from(shared.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(64 * 1024))
                .route("/chats/{chat_id}/messages", web::post().to(receive))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .map_err(|error| format!("simulated platform cannot start: {error}"))?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self {
            address,
            handle,
            shared,
        })
    }

    pub fn stats(&self) -> PlatformStats {
        let state = self.shared.state.lock().expect("platform state");
        let mut stats = state.stats.clone();
        stats.invitations_with_several_keys =
            state.keys_per_invitation.values().filter(|keys| keys.len() > 1).count() as u64;
        stats
    }

    pub fn received(&self, chat_id: &str, role: Role) -> Option<ReceivedInvitation> {
        let state = self.shared.state.lock().expect("platform state");
        state.invitations.get(&(chat_id.to_string(), role)).cloned()
    }

    pub fn received_count(&self) -> usize {
        self.shared.state.lock().expect("platform state").invitations.len()
    }

    /// Waits until an invitation arrives or `timeout` passes.
    pub async fn wait_for_arrival(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.shared.arrived.notified()).await;
    }

    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

fn problem(status: u16, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("valid status"))
        .json(json!({ "error": code, "message": message }))
}

async fn receive(
    shared: web::Data<Shared>,
    request: HttpRequest,
    chat_id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    };
    let reject = |status: u16, code: &str, message: &str| {
        shared.state.lock().expect("platform state").stats.rejected += 1;
        problem(status, code, message)
    };

    if header("authorization") != format!("Bearer {}", shared.api_token) {
        return reject(401, "unauthorized", "missing or wrong API token");
    }
    let id = header("webhook-id");
    let verified = signature::verify(
        std::slice::from_ref(&shared.signing_secret),
        id,
        header("webhook-timestamp"),
        &body,
        header("webhook-signature"),
        now_millis() / 1000,
    );
    if verified.is_err() {
        return reject(401, "invalid_signature", "the request signature does not verify");
    }
    let key = header("idempotency-key").to_string();
    if key.is_empty() || key != id {
        return reject(
            400,
            "invalid_idempotency_key",
            "Idempotency-Key must be present and equal webhook-id",
        );
    }

    if shared.failure_rate > 0.0 && rand::thread_rng().gen_bool(shared.failure_rate.min(1.0)) {
        shared.state.lock().expect("platform state").stats.injected_failures += 1;
        return problem(503, "unavailable", "simulated outage");
    }

    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return reject(400, "invalid_json", "body is not JSON");
    };
    let role = match message.pointer("/recipient/role").and_then(Value::as_str) {
        Some("parent") => Role::Parent,
        Some("professional") => Role::Professional,
        _ => {
            return reject(
                400,
                "invalid_recipient",
                "recipient.role must be parent or professional",
            );
        }
    };
    let text = |pointer: &str| message.pointer(pointer).and_then(Value::as_str).map(str::to_string);
    let (Some(token), Some(url), Some(participant_id)) = (
        text("/questionnaire/token"),
        text("/questionnaire/url"),
        text("/recipient/participant_id"),
    ) else {
        return reject(
            400,
            "invalid_questionnaire",
            "questionnaire.token, questionnaire.url and recipient.participant_id are required",
        );
    };

    let mut state = state_lock(&shared);
    let invitation_key = (chat_id.into_inner(), role);
    state
        .keys_per_invitation
        .entry(invitation_key.clone())
        .or_default()
        .insert(key.clone());
    if !state.seen_keys.insert(key) {
        state.stats.repeated_keys += 1;
        return problem(
            409,
            "duplicate",
            "a message with this Idempotency-Key was already accepted",
        );
    }
    state.stats.accepted += 1;
    state.invitations.insert(
        invitation_key,
        ReceivedInvitation {
            token,
            url,
            participant_id,
        },
    );
    drop(state);
    shared.arrived.notify_waiters();

    HttpResponse::Created().json(json!({ "status": "delivered" }))
}

fn state_lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    shared.state.lock().expect("platform state")
}
