//! The nurse's console: the Chatwoot Dashboard App page and the exchange of a
//! personal console code plus a conversation id for that nurse's questionnaire token.
//!
//! The conversation id comes from Chatwoot's unsigned `appContext` message, so
//! it only chooses which questionnaire to return. The console code proves who
//! is asking: it is a keyed hash of the nurse's participant pseudonym, shown
//! only on her own questionnaire page, and a token is returned only when the
//! code matches the professional participant of that conversation.

use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, get, post, route, web};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::questionnaire::Role;
use crate::routes::pages::{self, AssetQuery};
use crate::routes::webhooks::MAX_ID_CHARS;
use crate::routes::{parse_json_value, read_body};
use crate::startup::AppState;
use crate::store::records::{ChatRecord, InvitationRecord};
use crate::token::PseudonymKey;

/// Largest body of a code exchange.
const MAX_BODY_BYTES: usize = 4 * 1024;

/// Hex digits in a console code: 128 bits.
const CODE_HEX_DIGITS: usize = 32;

/// `kind` of the keyed hash that turns a participant pseudonym into a console
/// code, so a code never equals a pseudonym of the same input.
const CODE_KIND: &str = "console-code/v1";

/// Participant id that earlier versions stored for every Chatwoot
/// conversation resolved without an assignee.
const LEGACY_UNASSIGNED_PARTICIPANT: &str = "unassigned";

/// Returns the console code of a professional participant, given the
/// pseudonym stored with her chats: 32 hex digits in groups of four.
pub fn console_code(state: &AppState, participant_pseudonym: &str) -> String {
    let digest = state.pseudonym_key.pseudonym(CODE_KIND, participant_pseudonym);
    let digits = &digest[..CODE_HEX_DIGITS];
    digits
        .as_bytes()
        .chunks(4)
        .map(|group| std::str::from_utf8(group).expect("hex digits are ASCII"))
        .collect::<Vec<_>>()
        .join("-")
}

/// Returns the pseudonym whose console code opens the professional's
/// questionnaire of `chat`, or `None` when no code opens it: the chat has no
/// assigned nurse, or was stored without her pseudonym.
fn code_owner<'a>(pseudonym_key: &PseudonymKey, chat: &'a ChatRecord) -> Option<&'a str> {
    let pseudonym = chat.nurse_pseudonym()?;
    // Chats stored by earlier versions for unassigned conversations all share
    // this pseudonym, so one code would open all of them. A generic platform
    // that sends the participant id "unassigned" gets no code either.
    let legacy = pseudonym_key.pseudonym("participant", LEGACY_UNASSIGNED_PARTICIPANT);
    if pseudonym == legacy {
        return None;
    }
    Some(pseudonym)
}

/// Returns the console code of the nurse an invitation was sent to, or `None`
/// for a parent's invitation or a chat that no code opens (see [`code_owner`]).
pub fn code_for_invitation(state: &AppState, invitation: &InvitationRecord) -> Option<String> {
    if invitation.role != Role::Professional {
        return None;
    }
    let chat = match state.store.chat(&invitation.chat) {
        Ok(chat) => chat?,
        Err(error) => {
            tracing::error!(invitation = %invitation.id, %error, "reading the chat for a console code failed");
            return None;
        }
    };
    let participant = code_owner(&state.pseudonym_key, &chat)?;
    Some(console_code(state, participant))
}

/// Parses a pasted console code: hex digits, case-insensitive, with any
/// dashes or white space between them.
fn parse_code(text: &str) -> Result<String, ApiError> {
    let digits: String = text
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if digits.len() != CODE_HEX_DIGITS || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::unprocessable(
            "invalid_code",
            format!(
                "field \"code\" must be the console code of {CODE_HEX_DIGITS} hex digits from your questionnaire page"
            ),
        ));
    }
    Ok(digits)
}

fn no_questionnaire() -> ApiError {
    ApiError::not_found(
        "there is no questionnaire for this console code in this conversation; \
         the chat may not have ended yet, it was not assigned to a nurse, or the code belongs to another nurse",
    )
}

/// `GET /console/chatwoot`: the Chatwoot Dashboard App page. It holds no
/// token; its script exchanges the stored console code for one.
#[get("/console/chatwoot")]
pub async fn chatwoot_page(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let lang = pages::page_lang(request.query_string());
    let origins = state.settings.platform_origins.join(" ");
    let html = pages::CONSOLE_HTML
        .replace("{{LANG}}", lang)
        .replace("{{ORIGINS}}", &pages::escape_attribute(&origins))
        .replace("{{VERSION}}", pages::asset_version());

    let mut response = HttpResponse::Ok();
    pages::page_headers(&state, &mut response);
    response
        .insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
        .body(html)
}

/// `GET /widget/console.js`: the console page's script.
#[route("/widget/console.js", method = "GET", method = "HEAD")]
pub async fn console_script(request: HttpRequest, query: web::Query<AssetQuery>) -> HttpResponse {
    pages::asset(&request, &query, "text/javascript; charset=utf-8", pages::CONSOLE_JS)
}

/// `POST /api/console/token` with `{"code": "…", "conversation_id": "…"}`:
/// returns `{"token": "…"}` of the professional's questionnaire in that
/// conversation when the code is hers. Any other case gets the same 404, so
/// the answer does not tell whether the conversation exists.
#[post("/api/console/token")]
pub async fn exchange_code(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&request, payload, MAX_BODY_BYTES).await?;
    let value = parse_json_value(&body)?;
    let code = match value.get("code") {
        Some(Value::String(text)) => parse_code(text)?,
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_code",
                "field \"code\" is missing; send the console code from your questionnaire page",
            ));
        }
    };
    let conversation = match value.get("conversation_id") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        _ => String::new(),
    };
    // The same limit as chat ids in the chat-ended webhook, so every chat can be looked up.
    if conversation.is_empty() || conversation.chars().count() > MAX_ID_CHARS {
        return Err(ApiError::unprocessable(
            "invalid_conversation",
            format!("field \"conversation_id\" must be a string or number of 1 to {MAX_ID_CHARS} characters"),
        ));
    }

    let chat_key = state.pseudonym_key.pseudonym("chat", &conversation);
    // The console may ask as soon as the chat ends, before its webhook's
    // write has left the store's inbox. Waiting for that blocks, and during a
    // burst for seconds, so it runs off the request thread.
    let store = state.store.clone();
    let key = chat_key.clone();
    let chat = web::block(move || {
        store.settle_chat(&key);
        store.chat(&key)
    })
    .await
    .map_err(|error| ApiError::internal(&error))??
    .ok_or_else(no_questionnaire)?;
    let participant = code_owner(&state.pseudonym_key, &chat).ok_or_else(no_questionnaire)?;
    let expected = console_code(&state, participant).replace('-', "");
    if !bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
        tracing::info!(
            chat = &chat_key[..16],
            "console code does not match the professional of the chat"
        );
        return Err(no_questionnaire());
    }

    let invitation = chat.invitation(Role::Professional);
    let token = state.token_key.token(invitation);
    let mut response = HttpResponse::build(StatusCode::OK);
    response.insert_header(("Cache-Control", "no-store"));
    Ok(response.json(json!({ "token": token })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{InvitationId, ServerKey};

    fn chat(professional_participant: Option<String>, professional_unassigned: bool) -> ChatRecord {
        ChatRecord {
            received_at: 0,
            ended_at: "2022-07-01T10:14:31Z".into(),
            organization: None,
            topic: None,
            child_age_group: None,
            locale: "nl".into(),
            eligible: true,
            parent_invitation: InvitationId::generate(),
            professional_invitation: InvitationId::generate(),
            professional_participant,
            professional_unassigned,
        }
    }

    #[test]
    fn code_owner_is_the_assigned_nurse_only() {
        let key = ServerKey::from_bytes(vec![7; 32]).unwrap().pseudonym_key();
        let nurse = key.pseudonym("participant", "17");
        assert_eq!(
            code_owner(&key, &chat(Some(nurse.clone()), false)),
            Some(nurse.as_str())
        );

        let unassigned = key.pseudonym("unassigned-professional", "110");
        assert_eq!(code_owner(&key, &chat(Some(unassigned), true)), None, "unassigned chat");
        assert_eq!(
            code_owner(&key, &chat(None, false)),
            None,
            "chat stored without pseudonym"
        );

        let legacy = key.pseudonym("participant", LEGACY_UNASSIGNED_PARTICIPANT);
        assert_eq!(
            code_owner(&key, &chat(Some(legacy), false)),
            None,
            "shared legacy pseudonym"
        );
    }

    #[test]
    fn code_parse_accepts_pasted_forms() {
        let code = "0123-4567-89ab-cdef-0123-4567-89AB-CDEF";
        assert_eq!(parse_code(code).unwrap(), "0123456789abcdef0123456789abcdef");
        assert_eq!(parse_code(" 0123456789abcdef0123456789abcdef ").unwrap().len(), 32);
    }

    #[test]
    fn code_parse_rejects_bad_input() {
        for bad in [
            "",
            "0123",
            "g123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcdef0",
        ] {
            let error = parse_code(bad).unwrap_err();
            assert_eq!(error.code, "invalid_code", "input {bad:?}");
        }
    }
}
