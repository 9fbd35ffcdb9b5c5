//! The peer-review view (intervisie): `GET /api/admin/peer-review` as JSON
//! for an admin token, and `GET /report/peer-review` as a dashboard page for
//! a dashboard session. Both are limited to the token's organizations and
//! take the report's filters.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, web};
use serde::Deserialize;

use crate::error::ApiError;
use crate::questionnaire::Lang;
use crate::report::ReportFilter;
use crate::report::peer_review::{self, PeerReview, PeerReviewOptions};
use crate::report::peer_review_page::{self, PageContext};
use crate::routes::dashboard;
use crate::routes::questionnaire::time_text;
use crate::startup::{AdminScope, AppState};

#[derive(Deserialize)]
pub struct PeerReviewQuery {
    lang: Option<String>,
    from: Option<String>,
    to: Option<String>,
    organization: Option<String>,
    topic: Option<String>,
    child_age_group: Option<String>,
}

/// Builds the view on the blocking pool, with the service's settings, and
/// writes an audit line with the token's label, because the view shows
/// answers per chat and, when configured, figures per nurse.
async fn build_view(
    state: &AppState,
    filter: ReportFilter,
    lang: Lang,
    scope: &AdminScope,
) -> Result<PeerReview, ApiError> {
    tracing::info!(
        target: "alliance::audit",
        admin = %scope.label,
        at = %time_text(state.now_millis()),
        filter = %serde_json::to_string(&filter).unwrap_or_default(),
        organizations = ?scope.organizations,
        per_nurse_figures = state.settings.per_nurse_figures,
        "peer-review view served"
    );
    let store = state.store.clone();
    let now = state.now_millis();
    let options = PeerReviewOptions {
        min_cell_size: u64::from(state.settings.min_cell_size),
        per_nurse_figures: state.settings.per_nurse_figures,
        lang,
    };
    web::block(move || peer_review::build(&store, &filter, now, &options))
        .await
        .map_err(|error| ApiError::internal(&error))?
        .map_err(ApiError::from)
}

/// `GET /api/admin/peer-review`: the pairs whose overall categories differ,
/// per organization, as JSON. `lang` (`nl` or `en`) chooses the item wording.
#[get("/api/admin/peer-review")]
pub async fn view_json(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<PeerReviewQuery>,
) -> Result<HttpResponse, ApiError> {
    let scope = state.admin_scope(&request)?;
    let query = query.into_inner();
    let lang = match query.lang.as_deref() {
        None | Some("nl") => Lang::Nl,
        Some("en") => Lang::En,
        Some(other) => {
            return Err(ApiError::unprocessable(
                "invalid_lang",
                format!("lang {other:?} is not \"nl\" or \"en\""),
            ));
        }
    };
    let filter = ReportFilter::parse(
        query.from.as_deref(),
        query.to.as_deref(),
        query.organization,
        query.topic,
        query.child_age_group,
    )
    .map_err(|problem| ApiError::unprocessable("invalid_filter", problem.to_string()))?
    .limited_to(scope.organizations.clone());

    let view = build_view(&state, filter, lang, &scope).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(view))
}

/// `GET /report/peer-review`: the peer-review page of the dashboard; without
/// a session, the login form.
#[get("/report/peer-review")]
pub async fn view_page(state: web::Data<AppState>, request: HttpRequest) -> Result<HttpResponse, ApiError> {
    let query = match dashboard::read_query(&request, "/report/peer-review") {
        Ok(query) => query,
        Err(response) => return Ok(response),
    };
    let lang = query.lang;
    let stylesheet = dashboard::stylesheet_url();
    let Some(scope) = dashboard::session(&state, &request) else {
        return Ok(dashboard::page(
            StatusCode::OK,
            crate::report::html::login_page(lang, &stylesheet, None),
        ));
    };

    let from = dashboard::non_empty(query.from);
    let to = dashboard::non_empty(query.to);
    let parsed = ReportFilter::parse(
        from.as_deref(),
        to.as_deref(),
        dashboard::non_empty(query.organization),
        dashboard::non_empty(query.topic),
        dashboard::non_empty(query.child_age_group),
    );
    let filter = match parsed {
        Ok(filter) => filter.limited_to(scope.organizations.clone()),
        Err(problem) => return Ok(dashboard::filter_error(&problem, "/report/peer-review")),
    };

    let view = build_view(&state, filter.clone(), lang, &scope).await?;

    let mut organizations: Vec<String> = view.groups.iter().filter_map(|group| group.name.clone()).collect();
    if let Some(chosen) = &filter.organization {
        if !organizations.contains(chosen) {
            organizations.push(chosen.clone());
        }
    }
    let context = PageContext {
        lang,
        stylesheet: &stylesheet,
        filter_query: &filter_query(&filter),
        organizations: &organizations,
    };
    Ok(dashboard::page(
        StatusCode::OK,
        peer_review_page::render(&view, &context),
    ))
}

/// Formats the filter as a URL-encoded query string, without `lang`.
pub fn filter_query(filter: &ReportFilter) -> String {
    let values = [
        ("from", filter.from.map(|date| date.to_string())),
        ("to", filter.to.map(|date| date.to_string())),
        ("organization", filter.organization.clone()),
        ("topic", filter.topic.clone()),
        ("child_age_group", filter.child_age_group.clone()),
    ];
    values
        .into_iter()
        .filter_map(|(name, value)| value.map(|value| format!("{name}={}", dashboard::encode(&value))))
        .collect::<Vec<_>>()
        .join("&")
}
