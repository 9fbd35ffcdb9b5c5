//! `POST /webhooks/chatwoot`: Chatwoot's account webhook. Accepted,
//! duplicate and ignored events all get `200`, as Chatwoot expects; a
//! failed signature or a malformed body gets the same `4xx` errors as the
//! generic webhook.

use actix_web::{HttpRequest, HttpResponse, post, web};
use serde_json::json;

use crate::chatwoot::{self, ChatwootVerifyError, ConversationEvent};
use crate::error::ApiError;
use crate::intake;
use crate::routes::webhooks::{count_failed_signature, require_json_content_type};
use crate::routes::{parse_json_value, read_body};
use crate::signature::TIMESTAMP_TOLERANCE_SECS;
use crate::startup::AppState;
use crate::store::ChatAcceptance;

/// Chatwoot's conversation payloads carry the last messages, so they get
/// more room than the generic webhook.
const MAX_CHATWOOT_BYTES: usize = 256 * 1024;

const HEADERS: [&str; 3] = ["x-chatwoot-signature", "x-chatwoot-timestamp", "x-chatwoot-delivery"];

#[post("/webhooks/chatwoot")]
pub async fn chatwoot_webhook(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&request, payload, MAX_CHATWOOT_BYTES).await?;
    verify(&state, &request, &body).map_err(|error| count_failed_signature(&state, &request, error))?;
    let now = state.now_millis() / 1000;
    let delivery = request
        .headers()
        .get(HEADERS[2])
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");

    require_json_content_type(&request)?;
    let event = parse_json_value(&body)?;
    let conversation = chatwoot::conversation_event(
        &event,
        state.settings.chatwoot_account_id,
        &state.settings.chatwoot_attributes,
        now,
    )
    .map_err(|problem| ApiError::bad_request("invalid_payload", problem))?;
    let chat = match conversation {
        ConversationEvent::Resolved(chat) => chat,
        ConversationEvent::Ignored(reason) => {
            return Ok(HttpResponse::Ok().json(json!({ "status": "ignored", "reason": reason })));
        }
    };

    // Deduplicate on the delivery id when Chatwoot sends one, otherwise on the conversation.
    let dedup_key = if delivery.is_empty() {
        format!(
            "chatwoot-conversation-{}",
            state.pseudonym_key.pseudonym("chat", &chat.chat_id)
        )
    } else {
        format!("chatwoot-delivery-{delivery}")
    };
    // No body digest: Chatwoot sends a conversation again with other fields,
    // so its keys deduplicate by identity alone.
    let status = match intake::accept(&state, &dedup_key, None, &chat).await? {
        ChatAcceptance::New => "accepted",
        ChatAcceptance::DuplicateWebhook | ChatAcceptance::WebhookIdReused | ChatAcceptance::KnownChat => "duplicate",
    };
    Ok(HttpResponse::Ok().json(json!({ "status": status })))
}

/// Checks the Chatwoot headers, timestamp and signature.
fn verify(state: &AppState, request: &HttpRequest, body: &[u8]) -> Result<(), ApiError> {
    let Some(secret) = state.settings.chatwoot_webhook_secret.as_ref() else {
        return Err(ApiError::new(
            actix_web::http::StatusCode::NOT_FOUND,
            "not_configured",
            "this service is not connected to Chatwoot (ALLIANCE_CHATWOOT_WEBHOOK_SECRET is not set)",
        ));
    };
    for name in HEADERS {
        if request.headers().get_all(name).count() > 1 {
            return Err(ApiError::bad_request(
                "duplicate_header",
                format!("header {name} is given more than once; send it once"),
            ));
        }
    }
    // A value that is present but not ASCII is malformed, not missing:
    // it fails the signature or timestamp check below.
    let header = |name: &str| match request.headers().get(name) {
        None => "",
        Some(value) => value.to_str().unwrap_or("\u{fffd}"),
    };
    let (signature, timestamp) = (header(HEADERS[0]), header(HEADERS[1]));
    if signature.is_empty() || timestamp.is_empty() {
        return Err(ApiError::unauthorized(
            "missing_signature_headers",
            "headers X-Chatwoot-Signature and X-Chatwoot-Timestamp are required; \
             Chatwoot signs account webhooks since version 4.11",
        ));
    }

    let now = state.now_millis() / 1000;
    match chatwoot::verify(secret.expose(), timestamp, body, signature, now) {
        Ok(()) => {}
        Err(ChatwootVerifyError::InvalidTimestamp) => {
            return Err(ApiError::unauthorized(
                "invalid_timestamp",
                "header X-Chatwoot-Timestamp must be the Unix time in whole seconds, digits only",
            ));
        }
        Err(ChatwootVerifyError::OutOfWindow { offset_secs }) => {
            return Err(ApiError::unauthorized(
                "timestamp_out_of_window",
                format!(
                    "X-Chatwoot-Timestamp is {} seconds from the service clock; the limit is \
                     {TIMESTAMP_TOLERANCE_SECS} seconds. Check the clocks of both servers",
                    offset_secs.abs()
                ),
            ));
        }
        Err(ChatwootVerifyError::InvalidSignature) => {
            tracing::warn!(peer = ?request.peer_addr(), "Chatwoot webhook signature did not match");
            return Err(ApiError::unauthorized(
                "invalid_signature",
                "X-Chatwoot-Signature does not match; copy the webhook's secret from Chatwoot \
                 (Settings → Integrations → Webhooks) into ALLIANCE_CHATWOOT_WEBHOOK_SECRET",
            ));
        }
    }

    Ok(())
}
