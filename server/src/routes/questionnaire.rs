//! The questionnaire API that the plugin calls: read, answer item by item,
//! submit, decline. Every path carries a token, checked before any lookup.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, put, route, web};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::nurse_feedback;
use crate::questionnaire::{ITEM_COUNT, Instrument, ItemNumber, Lang, Rating};
use crate::routes::{parse_json_value, read_body};
use crate::startup::AppState;
use crate::store::UpdateError;
use crate::store::records::{Answer, InvitationRecord, Millis, ResponseStatus};
use crate::token::InvitationId;

/// Largest questionnaire API body: a comment of 1000 characters fits many times.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// Longest comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 1000;

fn not_found() -> ApiError {
    ApiError::not_found("this questionnaire link is not valid; use the link from the chat")
}

fn expired() -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "expired",
        "this questionnaire has closed; it can no longer be answered",
    )
}

fn already_submitted() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "already_submitted",
        "these answers were already sent and cannot be changed",
    )
}

fn already_declined() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "already_declined",
        "this questionnaire was declined and cannot be answered",
    )
}

/// Checks the token and counts the call against the token's rate limit.
fn invitation_id(state: &AppState, token: &str) -> Result<InvitationId, ApiError> {
    let id = state.token_key.verify(token).ok_or_else(not_found)?;
    if let Err(retry_after) = state.questionnaire_calls.hit(&id) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "too many calls for this questionnaire; try again in {} seconds",
                retry_after.as_secs().max(1)
            ),
        )
        .with_retry_after(retry_after));
    }
    Ok(id)
}

/// Maps a failed update to its HTTP error.
fn update_failed(error: UpdateError<ApiError>) -> ApiError {
    match error {
        UpdateError::NotFound => not_found(),
        UpdateError::Rejected(error) => error,
        UpdateError::Store(error) => error.into(),
    }
}

/// Applies answers from a platform that renders the questionnaire itself:
/// the same rules as the plugin's calls, so a repeat of an accepted
/// submission changes nothing and is not an error.
pub fn apply_platform_answers(
    record: &mut InvitationRecord,
    answers: &[(ItemNumber, Rating)],
    lock: bool,
    comment: Option<String>,
    now: Millis,
) -> Result<(), ApiError> {
    let same_answers = answers
        .iter()
        .all(|(item, rating)| record.response.answers[item.index()].map(|answer| answer.rating) == Some(*rating));
    if record.response.submitted_at.is_some() && same_answers {
        return Ok(());
    }
    require_open(record, now)?;

    for (item, rating) in answers {
        let slot = &mut record.response.answers[item.index()];
        if slot.map(|answer| answer.rating) != Some(*rating) {
            *slot = Some(Answer {
                rating: *rating,
                at: now,
            });
        }
    }
    if record.response.opened_at.is_none() {
        record.response.opened_at = Some(now);
    }
    if record.response.is_complete() && record.response.completed_at.is_none() {
        record.response.completed_at = Some(now);
    }
    if lock {
        let missing: Vec<usize> = (1..=ITEM_COUNT)
            .filter(|n| record.response.answers[n - 1].is_none())
            .collect();
        if !missing.is_empty() {
            return Err(ApiError::unprocessable(
                "incomplete",
                format!("submitted is true but items {missing:?} are not answered; send all {ITEM_COUNT} items"),
            )
            .with_details(json!({ "missing": missing })));
        }
        record.response.submitted_at = Some(now);
        record.response.comment = comment;
    }
    Ok(())
}

/// Rejects changes to a questionnaire that is submitted, declined or expired.
fn require_open(record: &InvitationRecord, now: Millis) -> Result<(), ApiError> {
    match record.status(now) {
        ResponseStatus::Submitted => Err(already_submitted()),
        ResponseStatus::Declined => Err(already_declined()),
        ResponseStatus::Expired => Err(expired()),
        ResponseStatus::Open | ResponseStatus::Complete => Ok(()),
    }
}

fn answers_json(record: &InvitationRecord) -> Value {
    let mut answers = serde_json::Map::new();
    for (index, answer) in record.response.answers.iter().enumerate() {
        if let Some(answer) = answer {
            answers.insert((index + 1).to_string(), json!(answer.rating.as_str()));
        }
    }
    Value::Object(answers)
}

fn no_store(mut response: HttpResponse) -> HttpResponse {
    response.headers_mut().insert(
        actix_web::http::header::CACHE_CONTROL,
        actix_web::http::header::HeaderValue::from_static("no-store"),
    );
    response
}

#[derive(Deserialize)]
pub struct LangQuery {
    lang: Option<String>,
}

/// `GET /api/questionnaires/{token}`: the items in the role's wording, the
/// answers so far and the status. The first call marks the invitation opened.
/// With nurse feedback on, a submitted professional's questionnaire also
/// carries `parent_answers` when the rules in [`crate::nurse_feedback`] allow it.
#[get("/api/questionnaires/{token}")]
pub async fn get_questionnaire(
    state: web::Data<AppState>,
    token: web::Path<String>,
    query: web::Query<LangQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = invitation_id(&state, &token)?;
    let now = state.now_millis();
    let asked_lang = query.lang.as_deref().map(Lang::from_locale);
    let feedback_enabled = state.settings.nurse_feedback;

    let (lang, record) = state
        .store
        .update_invitation(&id, |record| {
            if record.status(now) == ResponseStatus::Expired {
                return Err(expired());
            }
            nurse_feedback::record_notice(record, feedback_enabled, now);
            if record.response.opened_at.is_none() {
                record.response.opened_at = Some(now);
            }
            // The language shown is kept with the response until it is
            // submitted, so exports can tell which wording was answered.
            let lang = asked_lang.unwrap_or_else(|| Lang::from_locale(&record.locale));
            if record.response.submitted_at.is_none() {
                record.response.lang = Some(lang.as_str().to_string());
            }
            Ok(lang)
        })
        .map_err(update_failed)?;
    state.store.flush().await?;
    let status = record.status(now);
    let parent_ratings = if feedback_enabled {
        nurse_feedback::parent_ratings_for_nurse(&state.store, &record, now)?
    } else {
        None
    };

    let instrument = Instrument::get();
    let mut body = json!({
        "role": record.role,
        "locale": record.locale,
        "lang": lang.as_str(),
        "status": status,
        "stem": instrument.stem(record.role, lang),
        "scale": instrument.scale(lang),
        "items": instrument.items(record.role, lang),
        "answers": answers_json(&record),
        "comment_max_chars": MAX_COMMENT_CHARS,
        "nurse_feedback": nurse_feedback::flag_for(&record, feedback_enabled),
        "privacy_url": state.settings.privacy_url.as_ref().map(|url| url.as_str()),
        "expires_at": time_text(record.expires_at),
    });
    if let Some(ratings) = parent_ratings {
        let answers: serde_json::Map<String, Value> = ratings
            .iter()
            .enumerate()
            .map(|(index, rating)| ((index + 1).to_string(), json!(rating.as_str())))
            .collect();
        body["parent_answers"] = Value::Object(answers);
        tracing::info!(invitation = %id, "parent answers shown to the professional");
    }
    Ok(no_store(HttpResponse::Ok().json(body)))
}

#[derive(Deserialize)]
pub struct ItemPath {
    token: String,
    item: String,
}

/// `PUT /api/questionnaires/{token}/items/{n}` with `{"rating": "good"}`.
#[put("/api/questionnaires/{token}/items/{item}")]
pub async fn put_item(
    state: web::Data<AppState>,
    path: web::Path<ItemPath>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = invitation_id(&state, &path.token)?;
    let item = ItemNumber::parse(&path.item).map_err(|problem| ApiError::unprocessable("invalid_item", problem))?;

    let body = read_body(&request, payload, MAX_BODY_BYTES).await?;
    let value = parse_json_value(&body)?;
    let rating = match value.get("rating") {
        Some(Value::String(text)) => {
            Rating::parse(text).map_err(|problem| ApiError::unprocessable("invalid_rating", problem))?
        }
        Some(_) => {
            return Err(ApiError::unprocessable(
                "invalid_rating",
                "field \"rating\" must be a string",
            ));
        }
        None => {
            return Err(ApiError::unprocessable(
                "invalid_rating",
                "field \"rating\" is missing; send {\"rating\": \"insufficient\" | \"sufficient\" | \"good\"}",
            ));
        }
    };

    let now = state.now_millis();
    let (_, record) = state
        .store
        .update_invitation(&id, |record| {
            require_open(record, now)?;
            let slot = &mut record.response.answers[item.index()];
            if slot.map(|answer| answer.rating) != Some(rating) {
                *slot = Some(Answer { rating, at: now });
            }
            if record.response.opened_at.is_none() {
                record.response.opened_at = Some(now);
            }
            if record.response.is_complete() && record.response.completed_at.is_none() {
                record.response.completed_at = Some(now);
            }
            Ok(())
        })
        .map_err(update_failed)?;
    state.store.flush().await?;

    let body = json!({ "status": record.status(now), "answers": answers_json(&record) });
    Ok(no_store(HttpResponse::Ok().json(body)))
}

/// `POST /api/questionnaires/{token}/submit` with an optional comment:
/// locks the answers once all 11 are given.
#[post("/api/questionnaires/{token}/submit")]
pub async fn submit(
    state: web::Data<AppState>,
    token: web::Path<String>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = invitation_id(&state, &token)?;
    let body = read_body(&request, payload, MAX_BODY_BYTES).await?;
    let comment = parse_comment(&body)?;

    let now = state.now_millis();
    state
        .store
        .update_invitation(&id, |record| {
            require_open(record, now)?;
            let missing: Vec<usize> = record
                .response
                .answers
                .iter()
                .enumerate()
                .filter(|(_, answer)| answer.is_none())
                .map(|(index, _)| index + 1)
                .collect();
            if !missing.is_empty() {
                let list = missing.iter().map(usize::to_string).collect::<Vec<_>>().join(", ");
                return Err(ApiError::unprocessable(
                    "incomplete",
                    format!("items {list} are not answered yet; answer all {ITEM_COUNT} items, then submit"),
                )
                .with_details(json!({ "missing": missing })));
            }
            record.response.submitted_at = Some(now);
            record.response.comment = comment.clone();
            Ok(())
        })
        .map_err(update_failed)?;
    state.store.flush().await?;
    tracing::info!(invitation = %id, "response submitted");

    Ok(no_store(HttpResponse::Ok().json(json!({ "status": "submitted" }))))
}

/// Reads the submit body: empty, or a JSON object with at most the field
/// `comment`. Any other field is rejected, so a misspelt key does not drop
/// the comment silently.
fn parse_comment(body: &[u8]) -> Result<Option<String>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let Value::Object(fields) = parse_json_value(body)? else {
        return Err(ApiError::bad_request(
            "invalid_json",
            "the body must be empty or a JSON object such as {\"comment\": \"...\"}",
        ));
    };
    if let Some(other) = fields.keys().find(|key| key.as_str() != "comment") {
        return Err(ApiError::unprocessable(
            "unknown_field",
            format!("field {other:?} is not known; the body may contain only \"comment\""),
        ));
    }
    match fields.get("comment") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => clean_comment(text).map_err(|count| {
            ApiError::unprocessable(
                "comment_too_long",
                format!("the comment has {count} characters; the limit is {MAX_COMMENT_CHARS}"),
            )
        }),
        Some(_) => Err(ApiError::unprocessable(
            "invalid_comment",
            "field \"comment\" must be a string",
        )),
    }
}

/// Cleans a comment for storing: drops control characters other than tab
/// and line breaks (a NUL breaks the CSV imports of R and SPSS) and trims
/// spaces at both ends. Returns `None` for a comment left empty, or the
/// number of characters when it has more than [`MAX_COMMENT_CHARS`].
pub fn clean_comment(text: &str) -> Result<Option<String>, usize> {
    let cleaned: String = text
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let cleaned = cleaned.trim();
    let count = cleaned.chars().count();
    if count > MAX_COMMENT_CHARS {
        return Err(count);
    }
    Ok(Some(cleaned.to_string()).filter(|text| !text.is_empty()))
}

/// `POST /api/questionnaires/{token}/decline`: "nee, liever niet". Repeating it is harmless.
/// The body may be empty or a JSON object, which is not used.
#[post("/api/questionnaires/{token}/decline")]
pub async fn decline(
    state: web::Data<AppState>,
    token: web::Path<String>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = invitation_id(&state, &token)?;
    let body = read_body(&request, payload, MAX_BODY_BYTES).await?;
    if !body.iter().all(u8::is_ascii_whitespace) && !parse_json_value(&body)?.is_object() {
        return Err(ApiError::bad_request(
            "invalid_json",
            "the body must be empty or a JSON object",
        ));
    }
    let now = state.now_millis();
    state
        .store
        .update_invitation(&id, |record| {
            if record.response.declined_at.is_some() {
                return Ok(());
            }
            require_open(record, now)?;
            // Declining withdraws the response: answers given so far are
            // deleted and never counted as complete or paired.
            record.response.declined_at = Some(now);
            record.response.answers = Default::default();
            record.response.completed_at = None;
            Ok(())
        })
        .map_err(update_failed)?;
    state.store.flush().await?;
    tracing::info!(invitation = %id, "questionnaire declined");

    Ok(no_store(HttpResponse::Ok().json(json!({ "status": "declined" }))))
}

/// CORS preflight for platforms that embed the plugin on their own origin.
#[route("/api/questionnaires/{tail:.*}", method = "OPTIONS")]
pub async fn preflight(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let mut response = HttpResponse::NoContent();
    if allowed_origin(&state, &request).is_some() {
        response
            .insert_header(("Access-Control-Allow-Methods", "GET, PUT, POST"))
            .insert_header(("Access-Control-Allow-Headers", "Content-Type"))
            .insert_header(("Access-Control-Max-Age", "600"));
    }
    response.finish()
}

fn allowed_origin(state: &AppState, request: &HttpRequest) -> Option<String> {
    let origin = request.headers().get("origin")?.to_str().ok()?;
    state
        .settings
        .platform_origins
        .iter()
        .find(|allowed| *allowed == origin)
        .cloned()
}

/// Adds the CORS headers for an allowed platform origin to a questionnaire
/// API reply. Runs as middleware, so error replies carry them too and an
/// embedded plugin can read its 404, 409, 410 and 422 bodies.
pub fn add_cors_headers(state: &AppState, request: &HttpRequest, headers: &mut actix_web::http::header::HeaderMap) {
    use actix_web::http::header::{HeaderName, HeaderValue};
    if !request.path().starts_with("/api/questionnaires/") {
        return;
    }
    if let Some(origin) = allowed_origin(state, request) {
        if let Ok(value) = HeaderValue::from_str(&origin) {
            headers.insert(HeaderName::from_static("access-control-allow-origin"), value);
            headers.insert(HeaderName::from_static("vary"), HeaderValue::from_static("Origin"));
        }
    }
}

pub fn time_text(millis: Millis) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(|time| time.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_cleaning_drops_controls_and_trims() {
        assert_eq!(
            clean_comment("  fijn\u{0} gesprek\u{7}\n "),
            Ok(Some("fijn gesprek".to_string()))
        );
        assert_eq!(
            clean_comment("regel 1\nregel 2\tklaar"),
            Ok(Some("regel 1\nregel 2\tklaar".to_string()))
        );
        assert_eq!(clean_comment(" \u{0} "), Ok(None));
    }

    #[test]
    fn comment_limit_counts_cleaned_characters() {
        let padded = format!("   {}   ", "é".repeat(MAX_COMMENT_CHARS));
        assert_eq!(
            clean_comment(&padded).map(|text| text.map(|t| t.chars().count())),
            Ok(Some(MAX_COMMENT_CHARS))
        );
        assert_eq!(
            clean_comment(&"é".repeat(MAX_COMMENT_CHARS + 1)),
            Err(MAX_COMMENT_CHARS + 1)
        );
    }
}
