//! Admin endpoints: the report and the delivery queue. Every call needs an
//! admin token; a token limited to some organizations sees only their chats.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::report::{self as reports, ReportFilter};
use crate::routes::questionnaire::time_text;
use crate::startup::AppState;
use crate::token::InvitationId;

#[derive(Deserialize)]
pub struct ReportQuery {
    from: Option<String>,
    to: Option<String>,
    organization: Option<String>,
    topic: Option<String>,
    child_age_group: Option<String>,
}

/// `GET /api/admin/report`: the report as JSON.
#[get("/api/admin/report")]
pub async fn report(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<ReportQuery>,
) -> Result<HttpResponse, ApiError> {
    let scope = state.admin_scope(&request)?;
    let query = query.into_inner();
    let filter = ReportFilter::parse(
        query.from.as_deref(),
        query.to.as_deref(),
        query.organization,
        query.topic,
        query.child_age_group,
    )
    .map_err(|problem| ApiError::unprocessable("invalid_filter", problem))?
    .limited_to(scope.organizations);

    let store = state.store.clone();
    let now = state.now_millis();
    let built = web::block(move || reports::build(&store, &filter, now))
        .await
        .map_err(|error| ApiError::internal(&error))??;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(built))
}

#[derive(Deserialize)]
pub struct DeliveriesQuery {
    status: Option<String>,
}

/// `GET /api/admin/deliveries?status=dead|pending`.
#[get("/api/admin/deliveries")]
pub async fn deliveries(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<DeliveriesQuery>,
) -> Result<HttpResponse, ApiError> {
    state.admin_scope(&request)?;
    let status = query.status.as_deref().unwrap_or("pending");
    let (entries, label) = match status {
        "pending" => (state.store.pending_deliveries()?, "pending"),
        "dead" => (state.store.dead_deliveries()?, "dead"),
        other => {
            return Err(ApiError::unprocessable(
                "invalid_status",
                format!("status {other:?} is not \"pending\" or \"dead\""),
            ));
        }
    };
    let deliveries: Vec<_> = entries
        .iter()
        .map(|delivery| {
            json!({
                "invitation_id": delivery.invitation_id,
                "role": delivery.role,
                "status": label,
                "attempts": delivery.attempts,
                "last_error": delivery.last_error,
                "next_attempt_at": (label == "pending").then(|| time_text(delivery.next_attempt_at)),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "deliveries": deliveries })))
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
    let found = state.store.retry_dead(&id, state.now_millis())?;
    if !found {
        return Err(ApiError::not_found(format!(
            "invitation {id} is not in the dead-letter list"
        )));
    }
    state.store.flush().await?;
    state.delivery.wake();
    tracing::info!(invitation = %id, admin = %scope.label, "dead letter queued again");
    Ok(HttpResponse::Accepted().json(json!({ "status": "pending", "invitation_id": id })))
}
