//! Admin endpoints of the delivery queue: the pending and dead-lettered
//! invitations, page by page, and the retry of a dead letter.
//!
//! Each listed delivery names its chat by the chat's stored pseudonym (the
//! keyed hash that exports show in their `chat` column) and its organization
//! label, never by the platform's raw chat or participant id. A token limited
//! to some organizations sees and retries only the deliveries of their chats.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::routes::questionnaire::time_text;
use crate::startup::AppState;
use crate::store::records::QueuedDelivery;
use crate::store::{DeliveryList, Store, StoreError};
use crate::token::InvitationId;

/// Deliveries on one page when the request gives no `limit`.
pub const DEFAULT_PAGE_LIMIT: usize = 100;
/// Maximum `limit` of one page.
pub const MAX_PAGE_LIMIT: usize = 1000;

#[derive(Deserialize)]
pub struct DeliveriesQuery {
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// The chat a delivery belongs to, in the form an admin may see.
struct ChatReference {
    /// The chat's pseudonym as stored.
    chat: String,
    organization: Option<String>,
}

/// Looks up the chat of an invitation. `None` when the invitation or its
/// chat is no longer stored, which a purge between two reads can cause.
fn chat_reference(store: &Store, id: &InvitationId) -> Result<Option<ChatReference>, StoreError> {
    let Some(invitation) = store.invitation(id)? else {
        return Ok(None);
    };
    let organization = store.chat(&invitation.chat)?.and_then(|chat| chat.organization);
    Ok(Some(ChatReference {
        chat: invitation.chat,
        organization,
    }))
}

/// Returns whether a token limited to `allowed` organizations (`None`: all)
/// may see a delivery of the chat `reference`. A chat without an
/// organization label is visible to unlimited tokens only, as in reports.
fn in_scope(allowed: Option<&[String]>, reference: Option<&ChatReference>) -> bool {
    let Some(allowed) = allowed else {
        return true;
    };
    reference
        .and_then(|reference| reference.organization.as_ref())
        .is_some_and(|organization| allowed.contains(organization))
}

fn parse_limit(value: Option<&str>) -> Result<usize, ApiError> {
    let Some(value) = value else {
        return Ok(DEFAULT_PAGE_LIMIT);
    };
    match value.parse::<usize>() {
        Ok(limit) if (1..=MAX_PAGE_LIMIT).contains(&limit) => Ok(limit),
        _ => Err(ApiError::bad_request(
            "invalid_limit",
            format!(
                "limit {value:?} is not a whole number from 1 to {MAX_PAGE_LIMIT}; leave it out for \
                 {DEFAULT_PAGE_LIMIT} deliveries a page"
            ),
        )),
    }
}

/// Writes the cursor that continues a list after the store key `key`: the
/// invitation id for dead letters, `<due time in ms>.<invitation id>` for
/// the queue, whose keys start with the due time.
fn cursor_text(list: DeliveryList, key: &[u8]) -> String {
    match list {
        DeliveryList::Dead => String::from_utf8_lossy(key).into_owned(),
        DeliveryList::Pending => {
            let (due, id) = key.split_at(8.min(key.len()));
            let mut due_bytes = [0u8; 8];
            due_bytes[..due.len()].copy_from_slice(due);
            format!("{}.{}", u64::from_be_bytes(due_bytes), String::from_utf8_lossy(id))
        }
    }
}

/// Parses a cursor written by [`cursor_text`] back into the store key.
fn parse_cursor(list: DeliveryList, cursor: &str) -> Result<Vec<u8>, ApiError> {
    let invalid = || {
        let status = match list {
            DeliveryList::Pending => "pending",
            DeliveryList::Dead => "dead",
        };
        ApiError::bad_request(
            "invalid_cursor",
            format!(
                "cursor {cursor:?} is not a cursor of the {status} list; pass the next_cursor of the \
                 previous page of the same status unchanged, or leave cursor out to start at the beginning"
            ),
        )
    };
    match list {
        DeliveryList::Dead => {
            let id = InvitationId::parse(cursor).map_err(|_| invalid())?;
            Ok(id.as_str().as_bytes().to_vec())
        }
        DeliveryList::Pending => {
            let (due, id) = cursor.split_once('.').ok_or_else(invalid)?;
            let due_valid = !due.is_empty() && due.bytes().all(|byte| byte.is_ascii_digit());
            let due = due.parse::<i64>().ok().filter(|_| due_valid).ok_or_else(invalid)?;
            let id = InvitationId::parse(id).map_err(|_| invalid())?;
            Ok(crate::store::queue_key(due, &id))
        }
    }
}

/// `GET /api/admin/deliveries?status=dead|pending&limit=N&cursor=C`: one
/// page of the queue (by due time) or of the dead letters (by invitation
/// id). `next_cursor` continues the list, and is `null` on the last page.
#[get("/api/admin/deliveries")]
pub async fn deliveries(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<DeliveriesQuery>,
) -> Result<HttpResponse, ApiError> {
    let scope = state.admin_scope(&request)?;
    let query = query.into_inner();
    let list = match query.status.as_deref().unwrap_or("pending") {
        "pending" => DeliveryList::Pending,
        "dead" => DeliveryList::Dead,
        other => {
            return Err(ApiError::unprocessable(
                "invalid_status",
                format!("status {other:?} is not \"pending\" or \"dead\""),
            ));
        }
    };
    let limit = parse_limit(query.limit.as_deref())?;
    let after = query
        .cursor
        .as_deref()
        .map(|cursor| parse_cursor(list, cursor))
        .transpose()?;

    let store = state.store.clone();
    let allowed = scope.organizations;
    let read = web::block(move || {
        let mut references = Vec::new();
        // Reading one entry more than the page shows whether another page follows.
        let mut page = store.deliveries_page(list, after.as_deref(), limit + 1, |delivery| {
            let reference = chat_reference(&store, &delivery.invitation_id)?;
            let visible = in_scope(allowed.as_deref(), reference.as_ref());
            if visible {
                references.push(reference);
            }
            Ok(visible)
        })?;
        let more = page.len() > limit;
        page.truncate(limit);
        references.truncate(limit);
        Ok::<_, StoreError>((page, references, more))
    })
    .await
    .map_err(|error| ApiError::internal(&error))?;
    let (page, references, more) = read?;

    let next_cursor = match page.last() {
        Some((key, _)) if more => Some(cursor_text(list, key)),
        _ => None,
    };
    let deliveries: Vec<_> = page
        .iter()
        .zip(&references)
        .map(|((_, delivery), reference)| delivery_json(list, delivery, reference.as_ref()))
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({ "deliveries": deliveries, "next_cursor": next_cursor })))
}

fn delivery_json(
    list: DeliveryList,
    delivery: &QueuedDelivery,
    reference: Option<&ChatReference>,
) -> serde_json::Value {
    let pending = list == DeliveryList::Pending;
    json!({
        "invitation_id": delivery.invitation_id,
        "chat": reference.map(|reference| &reference.chat),
        "organization": reference.and_then(|reference| reference.organization.as_ref()),
        "role": delivery.role,
        "status": if pending { "pending" } else { "dead" },
        "attempts": delivery.attempts,
        "last_error": delivery.last_error,
        "next_attempt_at": pending.then(|| time_text(delivery.next_attempt_at)),
    })
}

/// `POST /api/admin/deliveries/{invitation_id}/retry`: puts a dead letter back in the queue.
#[post("/api/admin/deliveries/{invitation_id}/retry")]
pub async fn retry_delivery(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let scope = state.admin_scope(&request)?;
    let id = InvitationId::parse(&path).map_err(|problem| ApiError::unprocessable("invalid_invitation_id", problem))?;
    let not_listed = || ApiError::not_found(format!("invitation {id} is not in the dead-letter list"));
    if scope.organizations.is_some() {
        let reference = chat_reference(&state.store, &id)?;
        if !in_scope(scope.organizations.as_deref(), reference.as_ref()) {
            return Err(not_listed());
        }
    }
    let found = state.store.retry_dead(&id, state.now_millis())?;
    if !found {
        return Err(not_listed());
    }
    state.store.flush().await?;
    state.delivery.wake();
    tracing::info!(invitation = %id, admin = %scope.label, "dead letter queued again");
    Ok(HttpResponse::Accepted().json(json!({ "status": "pending", "invitation_id": id })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_for_both_lists() {
        let id = InvitationId::parse("inv_0123456789abcdef0123456789abcdef").unwrap();
        let dead_key = id.as_str().as_bytes().to_vec();
        let dead_cursor = cursor_text(DeliveryList::Dead, &dead_key);
        assert_eq!(dead_cursor, id.as_str());
        assert_eq!(parse_cursor(DeliveryList::Dead, &dead_cursor).unwrap(), dead_key);

        let pending_key = crate::store::queue_key(1_700_000_000_123, &id);
        let pending_cursor = cursor_text(DeliveryList::Pending, &pending_key);
        assert_eq!(pending_cursor, format!("1700000000123.{id}"));
        assert_eq!(
            parse_cursor(DeliveryList::Pending, &pending_cursor).unwrap(),
            pending_key
        );
    }

    #[test]
    fn bad_cursors_are_rejected() {
        let id = "inv_0123456789abcdef0123456789abcdef";
        let cases = [
            (DeliveryList::Dead, ""),
            (DeliveryList::Dead, "inv_xyz"),
            (DeliveryList::Dead, "1700000000123.inv_0123456789abcdef0123456789abcdef"),
            (DeliveryList::Pending, id),
            (DeliveryList::Pending, ".inv_0123456789abcdef0123456789abcdef"),
            (DeliveryList::Pending, "+17.inv_0123456789abcdef0123456789abcdef"),
            (DeliveryList::Pending, "17.inv_0123"),
        ];
        for (list, cursor) in cases {
            let error = parse_cursor(list, cursor).unwrap_err();
            assert_eq!(error.code, "invalid_cursor", "{list:?} {cursor:?}");
        }
    }

    #[test]
    fn limit_defaults_and_bounds() {
        assert_eq!(parse_limit(None).unwrap(), DEFAULT_PAGE_LIMIT);
        assert_eq!(parse_limit(Some("1")).unwrap(), 1);
        assert_eq!(parse_limit(Some("1000")).unwrap(), MAX_PAGE_LIMIT);
        for bad in ["0", "1001", "-1", "ten", "", "1.5"] {
            assert_eq!(parse_limit(Some(bad)).unwrap_err().code, "invalid_limit", "{bad:?}");
        }
    }
}
