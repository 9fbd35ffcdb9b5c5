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
    /// Starts the platform on `address` (port 0 picks a free port), taking
    /// messages under `path` (such as "" or "/api").
    pub fn start(
        address: SocketAddr,
        path: &str,
        api_token: String,
        signing_secret: WebhookSecret,
        failure_rate: f64,
    ) -> Result<Self, String> {
        let shared = Arc::new(Shared {
            api_token,
            signing_secret,
            failure_rate,
            state: Mutex::new(State::default()),
            arrived: tokio::sync::Notify::new(),
        });
        let (address, handle) = serve(
            address,
            path,
            web::Data::from(shared.clone()),
            receive,
            "simulated platform",
        )?;
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

/// Starts a one-worker HTTP server on a loopback `address` (port 0 picks a
/// free port) that routes the platform's messages endpoint under `path`
/// (such as "" or "/api") to `receive`, and returns the address it listens
/// on. `name` goes into errors.
pub fn serve<T, H, Args>(
    address: SocketAddr,
    path: &str,
    data: web::Data<T>,
    receive: H,
    name: &str,
) -> Result<(SocketAddr, ServerHandle), String>
where
    T: Send + Sync + 'static,
    H: actix_web::Handler<Args> + Clone + Send + 'static,
    Args: actix_web::FromRequest + 'static,
    H::Output: actix_web::Responder + 'static,
{
    if !address.ip().is_loopback() {
        return Err(format!("the {name} listens on loopback only, not on {address}"));
    }
    let listener = TcpListener::bind(address).map_err(|error| {
        format!(
            "the {name} cannot listen on {address}: {error}. With --target it takes the address of \
             ALLIANCE_PLATFORM_URL, so stop whatever listens there (the real platform's stand-in) first"
        )
    })?;
    let route = format!("{path}/chats/{{chat_id}}/messages");
    let address = listener.local_addr().map_err(|error| error.to_string())?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(64 * 1024))
            .route(&route, web::post().to(receive.clone()))
    })
    .workers(1)
    .disable_signals()
    // A graceful stop waits for open connections, and a service that keeps
    // delivering would hold it for actix's default of 30 s.
    .shutdown_timeout(1)
    .listen(listener)
    .map_err(|error| format!("the {name} cannot start: {error}"))?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok((address, handle))
}

/// Checks the Bearer token and the Standard Webhooks signature of a request
/// to the platform. Returns the error code and message of the `401` otherwise.
pub fn check_credentials(
    request: &HttpRequest,
    body: &[u8],
    api_token: &str,
    signing_secret: &WebhookSecret,
) -> Result<(), (&'static str, &'static str)> {
    let header = |name: &str| header_text(request, name);
    if header("authorization") != format!("Bearer {api_token}") {
        return Err(("unauthorized", "missing or wrong API token"));
    }
    signature::verify(
        std::slice::from_ref(signing_secret),
        header("webhook-id"),
        header("webhook-timestamp"),
        body,
        header("webhook-signature"),
        now_millis() / 1000,
    )
    .map_err(|_| ("invalid_signature", "the request signature does not verify"))
}

/// Returns the value of header `name` as text, or "" when it is missing or not visible ASCII.
pub fn header_text<'a>(request: &'a HttpRequest, name: &str) -> &'a str {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
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
    let header = |name: &str| header_text(&request, name);
    let reject = |status: u16, code: &str, message: &str| {
        shared.state.lock().expect("platform state").stats.rejected += 1;
        problem(status, code, message)
    };

    if let Err((code, message)) = check_credentials(&request, &body, &shared.api_token, &shared.signing_secret) {
        return reject(401, code, message);
    }
    let id = header("webhook-id");
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
