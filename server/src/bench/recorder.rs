//! A healthy chat platform on loopback that records when each invitation
//! arrived. It checks the Bearer token and the Standard Webhooks signature
//! as the demo's simulated platform does. It responds with `201` to the first request
//! per idempotency key and `409` to repeats, and never fails on purpose.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use crate::questionnaire::Role;
use crate::signature::{self, WebhookSecret};
use crate::startup::now_millis;

/// First arrival of the parent's and the professional's invitation.
#[derive(Clone, Copy, Default)]
pub struct Arrivals {
    pub parent: Option<Instant>,
    pub professional: Option<Instant>,
}

impl Arrivals {
    /// When the second of the two invitations arrived.
    pub fn both(&self) -> Option<Instant> {
        Some(self.parent?.max(self.professional?))
    }
}

#[derive(Default)]
struct State {
    arrivals: HashMap<String, Arrivals>,
    seen_keys: HashSet<String>,
    accepted: u64,
    rejected: u64,
}

struct Shared {
    api_token: String,
    signing_secret: WebhookSecret,
    state: Mutex<State>,
}

/// The running recording platform.
pub struct RecordingPlatform {
    pub address: SocketAddr,
    handle: ServerHandle,
    shared: Arc<Shared>,
}

impl RecordingPlatform {
    /// Starts the platform on a loopback `address` (port 0 picks a free port).
    pub fn start(address: SocketAddr, api_token: String, signing_secret: WebhookSecret) -> Result<Self, String> {
        if !address.ip().is_loopback() {
            return Err(format!(
                "the recording platform listens on loopback only, not on {address}"
            ));
        }
        let shared = Arc::new(Shared {
            api_token,
            signing_secret,
            state: Mutex::new(State::default()),
        });
        let listener = TcpListener::bind(address)
            .map_err(|error| format!("the recording platform cannot listen on {address}: {error}"))?;
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
        .map_err(|error| format!("the recording platform cannot start: {error}"))?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self {
            address,
            handle,
            shared,
        })
    }

    /// Invitations accepted (first requests per idempotency key).
    pub fn accepted(&self) -> u64 {
        self.shared.state.lock().expect("platform state").accepted
    }

    /// Requests rejected for a wrong token, signature or body.
    pub fn rejected(&self) -> u64 {
        self.shared.state.lock().expect("platform state").rejected
    }

    pub fn arrivals(&self, chat_id: &str) -> Arrivals {
        let state = self.shared.state.lock().expect("platform state");
        state.arrivals.get(chat_id).copied().unwrap_or_default()
    }

    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

async fn receive(
    shared: web::Data<Shared>,
    request: HttpRequest,
    chat_id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let arrived = Instant::now();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    };
    let reject = |status: u16, message: &str| {
        shared.state.lock().expect("platform state").rejected += 1;
        let status = actix_web::http::StatusCode::from_u16(status).expect("valid status");
        HttpResponse::build(status).json(json!({ "error": "rejected", "message": message }))
    };

    if header("authorization") != format!("Bearer {}", shared.api_token) {
        return reject(401, "missing or wrong API token");
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
        return reject(401, "the request signature does not verify");
    }
    let key = header("idempotency-key").to_string();
    if key.is_empty() {
        return reject(400, "Idempotency-Key is missing");
    }
    let role = serde_json::from_slice::<Value>(&body).ok().and_then(|message| {
        match message.pointer("/recipient/role").and_then(Value::as_str) {
            Some("parent") => Some(Role::Parent),
            Some("professional") => Some(Role::Professional),
            _ => None,
        }
    });
    let Some(role) = role else {
        return reject(400, "recipient.role must be parent or professional");
    };

    let mut state = shared.state.lock().expect("platform state");
    if !state.seen_keys.insert(key) {
        return HttpResponse::Conflict().json(json!({ "error": "duplicate" }));
    }
    state.accepted += 1;
    let arrivals = state.arrivals.entry(chat_id.into_inner()).or_default();
    let slot = match role {
        Role::Parent => &mut arrivals.parent,
        Role::Professional => &mut arrivals.professional,
    };
    slot.get_or_insert(arrived);
    drop(state);
    HttpResponse::Created().json(json!({ "status": "delivered" }))
}
