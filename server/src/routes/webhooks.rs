//! Inbound webhooks from the chat platform.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, post, web};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::intake::{self, EndedChat};
use crate::routes::{parse_json_value, read_body};
use crate::signature::{self, VerifyError};
use crate::startup::AppState;
use crate::store::ChatAcceptance;
use crate::store::webhook_ids::{WebhookSeen, event_digest};

/// Largest accepted webhook body.
pub const MAX_WEBHOOK_BYTES: usize = 64 * 1024;

const SIGNATURE_HEADERS: [&str; 3] = ["webhook-id", "webhook-timestamp", "webhook-signature"];

/// Longest accepted `webhook-id`, in bytes: room for a chat id of
/// [`MAX_ID_CHARS`] characters of up to 4 bytes and a prefix, because some
/// senders derive the id from the chat. The id is stored for 8 days and logged.
pub const MAX_WEBHOOK_ID_BYTES: usize = 4 * MAX_ID_CHARS + 256;

/// `POST /webhooks/chat-ended`: a Standard Webhooks signed `chat.ended` event.
/// The checks run in the documented order and the first failure answers.
#[post("/webhooks/chat-ended")]
pub async fn chat_ended(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&request, payload, MAX_WEBHOOK_BYTES).await?;
    let (id, _timestamp) = verify_standard_webhook(&state, &request, &body)?;

    require_json_content_type(&request)?;
    let event = parse_json_value(&body)?;
    let Some(kind) = event.get("type").and_then(Value::as_str) else {
        return Err(ApiError::bad_request(
            "invalid_payload",
            "field \"type\" is missing or not a string",
        ));
    };
    if kind != "chat.ended" {
        tracing::debug!(webhook_id = %id, event_type = kind, "ignored webhook of another type");
        return Ok(HttpResponse::Ok().json(json!({ "status": "ignored", "reason": "event type is not chat.ended" })));
    }
    let chat = parse_chat_ended(&event)?;

    match intake::accept(&state, &id, Some(event_digest(&event)), &chat).await? {
        // A fixed body, because this is the response to nearly every webhook.
        ChatAcceptance::New => Ok(HttpResponse::Accepted()
            .insert_header(actix_web::http::header::ContentType::json())
            .body(r#"{"status":"accepted"}"#)),
        ChatAcceptance::DuplicateWebhook => {
            Ok(HttpResponse::Ok().json(json!({ "status": "duplicate", "reason": "webhook-id already accepted" })))
        }
        ChatAcceptance::WebhookIdReused => Err(webhook_id_reused()),
        ChatAcceptance::KnownChat => {
            Ok(HttpResponse::Ok().json(json!({ "status": "duplicate", "reason": "chat already known" })))
        }
    }
}

/// Runs the header, timestamp and signature checks of a Standard Webhooks
/// request and returns its id and timestamp. Every `401` counts as a failed
/// signature for the client's address; an address over the limit gets `429`
/// for its failures, while correctly signed requests still pass.
pub fn verify_standard_webhook(
    state: &AppState,
    request: &HttpRequest,
    body: &[u8],
) -> Result<(String, i64), ApiError> {
    check_standard_webhook(state, request, body).map_err(|error| count_failed_signature(state, request, error))
}

/// Counts a `401` against the client's address and turns it into `429`
/// when the address is over its limit of failed signatures.
pub fn count_failed_signature(state: &AppState, request: &HttpRequest, error: ApiError) -> ApiError {
    if error.status != StatusCode::UNAUTHORIZED {
        return error;
    }
    let Some(address) = crate::ratelimit::client_address(request, &state.settings.trusted_proxies) else {
        return error;
    };
    match state.failed_signatures.hit(&address) {
        Ok(()) => error,
        Err(retry_after) => {
            tracing::debug!(%address, "too many failed webhook signatures from one address; answering 429");
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "too many requests with failed signatures from this address; fix the signing \
                     and try again in {} seconds",
                    retry_after.as_secs().max(1)
                ),
            )
            .with_retry_after(retry_after)
        }
    }
}

fn malformed_header(name: &str) -> ApiError {
    if name == "webhook-timestamp" {
        ApiError::unauthorized(
            "invalid_timestamp",
            "header webhook-timestamp must be the Unix time in whole seconds, ASCII digits only (e.g. 1719830102)",
        )
    } else {
        ApiError::unauthorized(
            "invalid_signature",
            format!("header {name} is not valid UTF-8 text; sign the request with Standard Webhooks"),
        )
    }
}

/// The checks behind [`verify_standard_webhook`], in the documented order.
fn check_standard_webhook(state: &AppState, request: &HttpRequest, body: &[u8]) -> Result<(String, i64), ApiError> {
    for name in SIGNATURE_HEADERS {
        if request.headers().get_all(name).count() > 1 {
            return Err(ApiError::bad_request(
                "duplicate_header",
                format!("header {name} is given more than once; send it once"),
            ));
        }
    }

    let mut values = [""; 3];
    for (slot, name) in values.iter_mut().zip(SIGNATURE_HEADERS) {
        let bytes = request.headers().get(name).map(|value| value.as_bytes()).unwrap_or(b"");
        // A present value that is not UTF-8 (or not ASCII, for the timestamp)
        // is malformed, not missing: it fails the check it belongs to.
        let Ok(value) = std::str::from_utf8(bytes) else {
            return Err(malformed_header(name));
        };
        if name == "webhook-timestamp" && !value.is_ascii() {
            return Err(malformed_header(name));
        }
        if value.is_empty() {
            return Err(ApiError::unauthorized(
                "missing_signature_headers",
                format!(
                    "header {name} is missing or empty; sign the request with Standard Webhooks \
                     (webhook-id, webhook-timestamp, webhook-signature)"
                ),
            ));
        }
        *slot = value;
    }
    let [id, timestamp, signature_header] = values;
    if id.len() > MAX_WEBHOOK_ID_BYTES {
        return Err(ApiError::bad_request(
            "webhook_id_too_long",
            format!(
                "header webhook-id is {} bytes; the limit is {MAX_WEBHOOK_ID_BYTES}. Send the platform's \
                 message id",
                id.len()
            ),
        ));
    }

    let now = state.now_millis() / 1000;
    match signature::verify_with_public_keys(
        &state.settings.webhook_secrets,
        &state.settings.webhook_public_keys,
        id,
        timestamp,
        body,
        signature_header,
        now,
    ) {
        Ok(()) => Ok((id.to_string(), signature::parse_timestamp(timestamp).unwrap_or(now))),
        Err(VerifyError::InvalidTimestamp) => Err(ApiError::unauthorized(
            "invalid_timestamp",
            "header webhook-timestamp must be the Unix time in whole seconds, digits only (e.g. 1719830102)",
        )),
        Err(VerifyError::OutOfWindow { offset_secs }) => {
            let direction = if offset_secs > 0 { "ahead of" } else { "behind" };
            Err(ApiError::unauthorized(
                "timestamp_out_of_window",
                format!(
                    "webhook-timestamp is {} seconds {direction} the service clock; the limit is {} seconds. \
                     Sign each request with the current time and check the sender's clock",
                    offset_secs.abs(),
                    signature::TIMESTAMP_TOLERANCE_SECS
                ),
            ))
        }
        Err(VerifyError::InvalidSignature) => {
            tracing::debug!(peer = ?request.peer_addr(), "webhook signature did not match any configured secret");
            Err(ApiError::unauthorized(
                "invalid_signature",
                "no v1 signature in webhook-signature matches a configured secret; check that the sender \
                 signs \"id.timestamp.body\" over the exact body bytes with the secret configured here",
            ))
        }
    }
}

pub fn require_json_content_type(request: &HttpRequest) -> Result<(), ApiError> {
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Type is {content_type:?}; send application/json"),
        ))
    }
}

/// Maximum length of a chat or participant id, in characters.
pub const MAX_ID_CHARS: usize = 256;
const MAX_LABEL_CHARS: usize = 200;

/// Validates the `data` of a `chat.ended` event; the error names the field.
pub fn parse_chat_ended(event: &Value) -> Result<EndedChat, ApiError> {
    let Some(data) = event.get("data").and_then(Value::as_object) else {
        return Err(invalid_payload("field \"data\" is missing or not an object"));
    };
    let required_id = |field: &str| -> Result<String, ApiError> {
        match data.get(field) {
            Some(Value::String(text)) if !text.is_empty() && text.chars().count() <= MAX_ID_CHARS => Ok(text.clone()),
            Some(Value::String(_)) => Err(invalid_payload(format!(
                "field \"data.{field}\" must be 1 to {MAX_ID_CHARS} characters"
            ))),
            Some(_) => Err(invalid_payload(format!("field \"data.{field}\" must be a string"))),
            None => Err(invalid_payload(format!("field \"data.{field}\" is required"))),
        }
    };
    let chat_id = parse_chat_id(data)?;
    let ended_at = required_id("ended_at")?;
    validate_ended_at(&ended_at).map_err(invalid_payload)?;

    let participant = |role: &str| -> Result<String, ApiError> {
        let Some(object) = data.get(role) else {
            return Err(invalid_payload(format!("field \"data.{role}\" is required")));
        };
        let Some(object) = object.as_object() else {
            return Err(invalid_payload(format!("field \"data.{role}\" must be an object")));
        };
        parse_id(object.get("participant_id"), &format!("data.{role}.participant_id"))
    };
    let parent_participant = participant("parent")?;
    let professional_participant = Some(participant("professional")?);

    let label = |field: &str| -> Result<Option<String>, ApiError> {
        match data.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) if text.chars().count() <= MAX_LABEL_CHARS => {
                Ok(Some(text.trim().to_string()).filter(|text| !text.is_empty()))
            }
            Some(Value::String(_)) => Err(invalid_payload(format!(
                "field \"data.{field}\" is longer than {MAX_LABEL_CHARS} characters"
            ))),
            Some(_) => Err(invalid_payload(format!("field \"data.{field}\" must be a string"))),
        }
    };
    let organization = label("organization")?;
    let topic = label("topic")?;
    let child_age_group = label("child_age_group")?;
    let locale = label("locale")?.unwrap_or_else(|| "nl".to_string());
    let message_counts = parse_message_counts(data.get("message_counts"))?;

    Ok(EndedChat {
        chat_id,
        ended_at,
        organization,
        topic,
        child_age_group,
        locale,
        parent_participant,
        professional_participant,
        message_counts,
    })
}

/// Reads `data.chat_id` (see [`parse_id`]), which must also work as a URL path segment.
fn parse_chat_id(data: &serde_json::Map<String, Value>) -> Result<String, ApiError> {
    let chat_id = parse_id(data.get("chat_id"), "data.chat_id")?;
    if chat_id == "." || chat_id == ".." {
        // URLs treat these as dot segments and drop them, so an invitation
        // would reach the platform at the wrong path.
        return Err(invalid_payload(format!(
            "field \"data.chat_id\" is {chat_id:?}, which cannot be a URL path segment; send the platform's chat id"
        )));
    }
    Ok(chat_id)
}

/// Reads a platform id: a string of 1 to [`MAX_ID_CHARS`] characters, or a
/// whole number of 0 or more, which becomes its decimal string. Platforms that
/// number their chats and users (Chatwoot does) may send ids as JSON
/// numbers, so 123 and "123" are the same id.
fn parse_id(value: Option<&Value>, field: &str) -> Result<String, ApiError> {
    let expected = format!("send a string of 1 to {MAX_ID_CHARS} characters or a whole number of 0 or more");
    match value {
        Some(Value::String(text)) if !text.is_empty() && text.chars().count() <= MAX_ID_CHARS => Ok(text.clone()),
        Some(Value::Number(number)) => number.as_u64().map(|id| id.to_string()).ok_or_else(|| {
            // A float such as 1e3 or 12.0 would name the same id in two ways.
            let problem = if number.is_f64() {
                "a number with a fraction or an exponent"
            } else {
                "a negative number"
            };
            invalid_payload(format!(
                "field \"{field}\" is {number}, {problem}; {expected} without a fraction or exponent"
            ))
        }),
        Some(Value::String(_)) => Err(invalid_payload(format!(
            "field \"{field}\" is empty or longer than {MAX_ID_CHARS} characters; {expected}"
        ))),
        Some(_) => Err(invalid_payload(format!(
            "field \"{field}\" has the wrong type; {expected}"
        ))),
        None => Err(invalid_payload(format!("field \"{field}\" is required"))),
    }
}

/// Checks that `ended_at` is an RFC 3339 time in a plausible range, so that
/// reports can place it on the Amsterdam calendar.
pub fn validate_ended_at(ended_at: &str) -> Result<(), String> {
    let format = time::format_description::well_known::Rfc3339;
    let invalid = || "field \"data.ended_at\" must be an RFC 3339 time such as 2022-07-01T10:14:31Z".to_string();
    let time = time::OffsetDateTime::parse(ended_at, &format).map_err(|_| invalid())?;
    if !(2000..=2100).contains(&time.year()) {
        return Err(format!(
            "field \"data.ended_at\" has the year {}; send a time between 2000 and 2100",
            time.year()
        ));
    }
    Ok(())
}

fn parse_message_counts(value: Option<&Value>) -> Result<Option<(u64, u64)>, ApiError> {
    let object = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(object)) => object,
        Some(_) => return Err(invalid_payload("field \"data.message_counts\" must be an object")),
    };
    let count = |role: &str| -> Result<u64, ApiError> {
        match object.get(role) {
            None | Some(Value::Null) => Ok(0),
            Some(value) => value.as_u64().ok_or_else(|| {
                invalid_payload(format!(
                    "field \"data.message_counts.{role}\" must be a whole number of 0 or more"
                ))
            }),
        }
    };
    Ok(Some((count("parent")?, count("professional")?)))
}

/// `409` for a `webhook-id` that was accepted before with a different event.
/// A retry sends the same event, so this is a new event under an old id, and
/// dropping it as a duplicate would lose it silently.
fn webhook_id_reused() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "webhook_id_reused",
        "this webhook-id was accepted before with a different event; \
         send a retry with the same event, and a new event with a new webhook-id",
    )
}

fn invalid_payload(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_payload", message)
}

/// `POST /webhooks/questionnaire-answered`: answers from a platform that
/// renders the questionnaire itself, Standard Webhooks signed, with the same
/// validation as the plugin's calls and deduplicated on `webhook-id`.
#[post("/webhooks/questionnaire-answered")]
pub async fn questionnaire_answered(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    use crate::questionnaire::{ItemNumber, Rating};
    use crate::routes::questionnaire::{MAX_COMMENT_CHARS, apply_platform_answers, clean_comment};
    use crate::store::UpdateError;

    let body = read_body(&request, payload, MAX_WEBHOOK_BYTES).await?;
    let (id, _) = verify_standard_webhook(&state, &request, &body)?;
    require_json_content_type(&request)?;
    let event = parse_json_value(&body)?;
    match event.get("type").and_then(Value::as_str) {
        Some("questionnaire.answered") => {}
        Some(_) => {
            return Ok(HttpResponse::Ok()
                .json(json!({ "status": "ignored", "reason": "event type is not questionnaire.answered" })));
        }
        None => return Err(invalid_payload("field \"type\" is missing or not a string")),
    }
    let digest = event_digest(&event);
    match state.store.webhook_seen(&id, Some(digest))? {
        WebhookSeen::New => {}
        WebhookSeen::Retry => {
            return Ok(
                HttpResponse::Ok().json(json!({ "status": "duplicate", "reason": "webhook-id already accepted" }))
            );
        }
        WebhookSeen::Reused => return Err(webhook_id_reused()),
    }

    let Some(data) = event.get("data").and_then(Value::as_object) else {
        return Err(invalid_payload("field \"data\" is missing or not an object"));
    };
    let Some(token) = data.get("token").and_then(Value::as_str) else {
        return Err(invalid_payload("field \"data.token\" is missing or not a string"));
    };
    let Some(answers_object) = data.get("answers").and_then(Value::as_object) else {
        return Err(invalid_payload(
            "field \"data.answers\" is missing or not an object such as {\"1\": \"good\"}",
        ));
    };
    let mut answers = Vec::with_capacity(answers_object.len());
    for (key, value) in answers_object {
        let item = ItemNumber::parse(key).map_err(|problem| ApiError::unprocessable("invalid_item", problem))?;
        let rating = value
            .as_str()
            .ok_or_else(|| format!("answer to item {key} must be a string"))
            .and_then(Rating::parse)
            .map_err(|problem| ApiError::unprocessable("invalid_rating", problem))?;
        answers.push((item, rating));
    }
    let submitted = match data.get("submitted") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(flag)) => *flag,
        Some(_) => return Err(invalid_payload("field \"data.submitted\" must be true or false")),
    };
    let comment = match data.get("comment") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => clean_comment(text).map_err(|count| {
            ApiError::unprocessable(
                "comment_too_long",
                format!("field \"data.comment\" has {count} characters; the limit is {MAX_COMMENT_CHARS}"),
            )
        })?,
        Some(_) => return Err(invalid_payload("field \"data.comment\" must be a string")),
    };

    let invitation = state
        .token_key
        .verify(token)
        .ok_or_else(|| ApiError::not_found("field \"data.token\" is not a valid questionnaire token"))?;
    let now = state.now_millis();
    // The write that stores the ratings checks the id again, so of two
    // requests with this id that both passed the check above, the second
    // gets the retry reply or a 409 here.
    let result = state
        .store
        .update_invitation_once(&id, Some(digest), now, &invitation, |record| {
            apply_platform_answers(record, &answers, submitted, comment.clone(), now)
        });
    let (_, record) = match result {
        Ok(Ok(updated)) => updated,
        Ok(Err(WebhookSeen::Reused)) => return Err(webhook_id_reused()),
        Ok(Err(_)) => {
            return Ok(
                HttpResponse::Ok().json(json!({ "status": "duplicate", "reason": "webhook-id already accepted" }))
            );
        }
        Err(UpdateError::NotFound) => {
            return Err(ApiError::not_found(
                "field \"data.token\" is not a valid questionnaire token",
            ));
        }
        Err(UpdateError::Rejected(error)) => return Err(error),
        Err(UpdateError::Store(error)) => return Err(error.into()),
    };
    state.store.flush().await?;
    tracing::info!(webhook_id = %id, invitation = %invitation, "answers received from the platform");

    Ok(HttpResponse::Ok().json(json!({ "status": record.status(now) })))
}
