//! Admin endpoints: the report and the research exports. Every call needs
//! an admin token; a token limited to some organizations sees only their
//! chats. The delivery queue's endpoints are in [`super::deliveries`].

use actix_web::{HttpRequest, HttpResponse, get, web};
use serde::Deserialize;

use crate::error::ApiError;
use crate::report::export::{self as exports, ExportError, ExportOptions, Layout};
use crate::report::{self as reports, ReportFilter};
use crate::routes::questionnaire::time_text;
use crate::startup::AppState;

#[derive(Deserialize)]
pub struct ReportQuery {
    from: Option<String>,
    to: Option<String>,
    organization: Option<String>,
    topic: Option<String>,
    child_age_group: Option<String>,
}

impl ReportQuery {
    /// Parses the filter values, limited to the token's organizations.
    fn filter(self, organizations: Option<Vec<String>>) -> Result<ReportFilter, ApiError> {
        ReportFilter::parse(
            self.from.as_deref(),
            self.to.as_deref(),
            self.organization,
            self.topic,
            self.child_age_group,
        )
        .map(|filter| filter.limited_to(organizations))
        .map_err(|problem| ApiError::unprocessable("invalid_filter", problem.to_string()))
    }
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
    let filter = ReportQuery {
        from: query.from,
        to: query.to,
        organization: query.organization,
        topic: query.topic,
        child_age_group: query.child_age_group,
    }
    .filter(scope.organizations)?;

    let store = state.store.clone();
    let now = state.now_millis();
    let options = reports::ReportOptions {
        min_cell_size: u64::from(state.settings.min_cell_size),
        bootstrap: true,
    };
    let built = web::block(move || reports::build_with(&store, &filter, now, &options))
        .await
        .map_err(|error| ApiError::internal(&error))??;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(built))
}

#[derive(Deserialize)]
pub struct ExportQuery {
    layout: Option<String>,
    /// `data` (default), `codebook` or `spss`.
    part: Option<String>,
    #[serde(default)]
    excel: bool,
    #[serde(default)]
    include_comments: bool,
    from: Option<String>,
    to: Option<String>,
    organization: Option<String>,
    topic: Option<String>,
    child_age_group: Option<String>,
}

/// `GET /api/admin/export?layout=wide|long|funnel`: a research export as
/// CSV, or with `part=codebook` or `part=spss` its codebook or SPSS syntax.
/// Every call is audit-logged with the token's label, the time and the filters.
#[get("/api/admin/export")]
pub async fn export(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    let scope = state.admin_scope(&request)?;
    let query = query.into_inner();
    let layout = Layout::parse(query.layout.as_deref().unwrap_or("wide"))
        .map_err(|problem| ApiError::unprocessable("invalid_layout", problem))?;
    let filter = ReportQuery {
        from: query.from,
        to: query.to,
        organization: query.organization,
        topic: query.topic,
        child_age_group: query.child_age_group,
    }
    .filter(scope.organizations.clone())?;
    let options = ExportOptions {
        layout,
        excel: query.excel,
        include_comments: query.include_comments,
        min_cell_size: u64::from(state.settings.min_cell_size),
    };
    let part = query.part.as_deref().unwrap_or("data");
    let data_name = exports::file_name(layout, options.excel);

    let (body, content_type, file_name, rows) = match part {
        "data" => {
            let store = state.store.clone();
            let now = state.now_millis();
            let (filter, options) = (filter.clone(), options.clone());
            let written = web::block(move || {
                let mut body = Vec::new();
                exports::write(&store, &filter, now, &options, &mut body).map(|rows| (body, rows))
            })
            .await
            .map_err(|error| ApiError::internal(&error))?;
            let (body, rows) = match written {
                Ok(written) => written,
                Err(error @ ExportError::Suppressed { .. }) => {
                    return Err(ApiError::unprocessable("too_few_pairs", error.to_string()));
                }
                Err(ExportError::Store(error)) => return Err(error.into()),
                Err(error) => return Err(ApiError::internal(&error)),
            };
            (body, "text/csv; charset=utf-8", data_name.clone(), Some(rows))
        }
        "codebook" => (
            exports::codebook(layout, &options),
            "text/csv; charset=utf-8",
            format!("alliance-{layout}-codebook.csv"),
            None,
        ),
        "spss" => (
            exports::spss_syntax(layout, &options, &data_name).into_bytes(),
            "text/plain; charset=utf-8",
            format!("alliance-{layout}.sps"),
            None,
        ),
        other => {
            return Err(ApiError::unprocessable(
                "invalid_part",
                format!("part {other:?} is not one of \"data\", \"codebook\", \"spss\""),
            ));
        }
    };

    tracing::info!(
        target: "alliance::audit",
        admin = %scope.label,
        at = %time_text(state.now_millis()),
        layout = %layout,
        part,
        excel = options.excel,
        include_comments = options.include_comments,
        filter = %serde_json::to_string(&filter).unwrap_or_default(),
        organizations = ?scope.organizations,
        rows,
        "export served"
    );
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Content-Type", content_type))
        .insert_header(("Content-Disposition", format!("attachment; filename=\"{file_name}\"")))
        .body(body))
}
