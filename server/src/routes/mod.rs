//! HTTP endpoints, one module per group. Handlers are thin: they parse the
//! request into domain types and call the store, delivery or report code.

pub mod admin;
pub mod chatwoot;
pub mod console;
pub mod dashboard;
pub mod deliveries;
pub mod health;
pub mod pages;
pub mod peer_review;
pub mod questionnaire;
pub mod webhooks;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use futures_util::StreamExt;

use crate::error::ApiError;

/// Registers every route of the service.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(webhooks::chat_ended)
        .service(webhooks::questionnaire_answered)
        .service(chatwoot::chatwoot_webhook)
        .service(questionnaire::get_questionnaire)
        .service(questionnaire::put_item)
        .service(questionnaire::submit)
        .service(questionnaire::decline)
        .service(questionnaire::preflight)
        .service(pages::questionnaire_page)
        .service(pages::widget_script)
        .service(pages::page_stylesheet)
        .service(pages::favicon)
        .service(console::chatwoot_page)
        .service(console::console_script)
        .service(console::exchange_code)
        .service(admin::report)
        .service(admin::export)
        .service(peer_review::view_json)
        .service(dashboard::dashboard)
        .service(dashboard::login)
        .service(dashboard::login_link)
        .service(dashboard::logout)
        .service(dashboard::stylesheet)
        .service(peer_review::view_page)
        .service(deliveries::deliveries)
        .service(deliveries::retry_delivery)
        .service(health::healthz)
        .service(health::readyz)
        .service(health::metrics)
        .service(health::openapi)
        .service(crate::backup::backup_route)
        .default_service(web::to(not_found));
}

async fn not_found(request: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found(format!(
        "no endpoint {} {}; see /openapi.json for the endpoints",
        request.method(),
        crate::token::redact_path(request.path())
    )))
}

/// Longest time a request body may take to arrive.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads a request body of at most `limit` bytes. A declared
/// `Content-Length` over the limit is rejected before reading, and a body
/// that grows past it is rejected without reading further.
pub async fn read_body(request: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {limit} bytes; send a smaller body"),
        )
    };

    let declared = request
        .headers()
        .get("content-length")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }

    let mut body = Vec::with_capacity(declared.unwrap_or(0).min(limit as u64) as usize);
    let deadline = tokio::time::Instant::now() + BODY_TIMEOUT;
    loop {
        let next = tokio::time::timeout_at(deadline, payload.next()).await.map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request body did not arrive within {} seconds; send it at once",
                    BODY_TIMEOUT.as_secs()
                ),
            )
        })?;
        let Some(chunk) = next else {
            break;
        };
        let chunk = chunk.map_err(|_| {
            ApiError::bad_request(
                "invalid_body",
                "the request body is incomplete or badly framed; send it again",
            )
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses a JSON body into `T`, with 400 `invalid_json` for bytes that are not JSON.
pub fn parse_json_value(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("invalid_json", "the body is not UTF-8; send UTF-8 JSON"))?;
    serde_json::from_str(text)
        .map_err(|error| ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {error}")))
}
