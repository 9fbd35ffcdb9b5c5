//! A healthy chat platform on loopback that records when each invitation
//! arrived. It checks the Bearer token and the Standard Webhooks signature
//! as the demo's simulated platform does. It responds with `201` to the first request
//! per idempotency key and `409` to repeats, and never fails on purpose.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_web::dev::ServerHandle;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::demo::platform::{check_credentials, header_text, serve};
use crate::questionnaire::Role;
use crate::signature::WebhookSecret;

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
    /// Starts the platform on a loopback `address` (port 0 picks a free
    /// port), taking messages under `path` (such as "" or "/api").
    pub fn start(
        address: SocketAddr,
        path: &str,
        api_token: String,
        signing_secret: WebhookSecret,
    ) -> Result<Self, String> {
        let shared = Arc::new(Shared {
            api_token,
            signing_secret,
            state: Mutex::new(State::default()),
        });
        let (address, handle) = serve(
            address,
            path,
            web::Data::from(shared.clone()),
            receive,
            "recording platform",
        )?;
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
    let header = |name: &str| header_text(&request, name);
    let reject = |status: u16, message: &str| {
        shared.state.lock().expect("platform state").rejected += 1;
        let status = actix_web::http::StatusCode::from_u16(status).expect("valid status");
        HttpResponse::build(status).json(json!({ "error": "rejected", "message": message }))
    };

    if let Err((_, message)) = check_credentials(&request, &body, &shared.api_token, &shared.signing_secret) {
        return reject(401, message);
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
