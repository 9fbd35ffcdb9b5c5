//! Liveness, readiness and metrics.

use actix_web::{HttpRequest, HttpResponse, get, route, web};

use crate::error::ApiError;
use crate::startup::AppState;

#[route("/healthz", method = "GET", method = "HEAD")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// Ready when the store answers and the delivery worker runs; a failing
/// platform does not make the service unready.
#[route("/readyz", method = "GET", method = "HEAD")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let store_ok = state.store.is_healthy();
    let worker_ok = state.delivery.is_running();
    let body = serde_json::json!({ "store": store_ok, "delivery_worker": worker_ok });
    if store_ok && worker_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus text format.
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>, request: HttpRequest) -> Result<HttpResponse, ApiError> {
    state.unlimited_admin_scope(&request, "the metrics count")?;
    let counters = state.delivery.counters();
    let mut text = String::new();
    text.push_str("# HELP alliance_chats_stored Chats in the store.\n# TYPE alliance_chats_stored gauge\n");
    text.push_str(&format!("alliance_chats_stored {}\n", state.store.chat_count()));
    text.push_str(
        "# HELP alliance_chats_archived Stored chats that have settled and moved into the archive.\n\
         # TYPE alliance_chats_archived gauge\n",
    );
    text.push_str(&format!("alliance_chats_archived {}\n", state.store.archived_count()));
    text.push_str(
        "# HELP alliance_store_inbox_entries Accepted webhooks not yet written into sled.\n\
         # TYPE alliance_store_inbox_entries gauge\n",
    );
    text.push_str(&format!("alliance_store_inbox_entries {}\n", state.store.inbox_len()));
    text.push_str("# HELP alliance_deliveries_pending Invitations waiting for delivery.\n# TYPE alliance_deliveries_pending gauge\n");
    text.push_str(&format!("alliance_deliveries_pending {}\n", state.store.queue_len()));
    let oldest_age = match state.store.oldest_pending()? {
        Some(created_at) => ((state.now_millis() - created_at).max(0) as f64) / 1000.0,
        None => 0.0,
    };
    text.push_str(
        "# HELP alliance_deliveries_oldest_pending_age_seconds Age of the oldest invitation waiting for delivery.\n\
         # TYPE alliance_deliveries_oldest_pending_age_seconds gauge\n",
    );
    text.push_str(&format!(
        "alliance_deliveries_oldest_pending_age_seconds {oldest_age:.3}\n"
    ));
    text.push_str(
        "# HELP alliance_platform_circuit_state Circuit breaker towards the platform: 0 closed, 1 open, 2 half open.\n\
         # TYPE alliance_platform_circuit_state gauge\n",
    );
    text.push_str(&format!(
        "alliance_platform_circuit_state {}\n",
        state.delivery.breaker_state()
    ));
    for (name, help, value) in [
        (
            "alliance_deliveries_accepted_total",
            "Deliveries the platform accepted.",
            counters.accepted,
        ),
        (
            "alliance_deliveries_retried_total",
            "Delivery attempts that failed and were rescheduled.",
            counters.retried,
        ),
        (
            "alliance_deliveries_dead_total",
            "Deliveries moved to the dead-letter list.",
            counters.dead,
        ),
    ] {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
        ));
    }
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(text))
}

pub(crate) const OPENAPI: &str = include_str!("../../api/openapi.json");

/// `GET /openapi.json`: the HTTP contracts, kept by hand in `server/api/openapi.json`.
#[get("/openapi.json")]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(OPENAPI)
}

#[cfg(test)]
mod tests {
    use super::OPENAPI;

    #[test]
    fn openapi_describes_every_inbound_endpoint() {
        let spec: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is valid JSON");
        assert_eq!(spec["openapi"], "3.1.0");
        for path in [
            "/webhooks/chat-ended",
            "/webhooks/questionnaire-answered",
            "/webhooks/chatwoot",
            "/api/questionnaires/{token}",
            "/api/questionnaires/{token}/items/{n}",
            "/api/questionnaires/{token}/submit",
            "/api/questionnaires/{token}/decline",
        ] {
            assert!(spec["paths"][path].is_object(), "{path} is described");
        }
    }
}
