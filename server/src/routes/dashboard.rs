//! The report dashboard, `GET /report`: an admin token, or a one-time login
//! link, is exchanged for a session cookie (`HttpOnly`, `SameSite=Strict`,
//! `Secure` when the public URL is https). `report::html` renders the page on
//! the server, and its only other file is the stylesheet.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use actix_web::{HttpRequest, HttpResponse, get, post, route, web};
use serde::Deserialize;

use crate::error::ApiError;
use crate::questionnaire::Lang;
use crate::report::{self, FilterError, ReportFilter, ReportOptions, error_page, html};
use crate::routes::page_query::{PageQuery, QueryError};
use crate::startup::{AdminScope, AppState};
use crate::store::records::Millis;
use crate::token::hex;

const STYLESHEET: &str = include_str!("../../../dashboard/dashboard.css");
const COOKIE: &str = "alliance_session";
const SESSION_MILLIS: Millis = 8 * 3600 * 1000;
const LOGIN_LINK_MILLIS: Millis = 15 * 60 * 1000;

/// The rights of a session or of an unused login link.
#[derive(Clone)]
struct Grant {
    label: String,
    organizations: Option<Vec<String>>,
    expires_at: Millis,
}

// NOTE: sessions and login links live in this process only, so a restart
// logs everybody out and several service processes do not share them.
fn sessions() -> &'static Mutex<HashMap<String, Grant>> {
    static SESSIONS: OnceLock<Mutex<HashMap<String, Grant>>> = OnceLock::new();
    SESSIONS.get_or_init(|| Mutex::new(HashMap::new()))
}

fn login_links() -> &'static Mutex<HashMap<String, Grant>> {
    static LINKS: OnceLock<Mutex<HashMap<String, Grant>>> = OnceLock::new();
    LINKS.get_or_init(|| Mutex::new(HashMap::new()))
}

fn random_id() -> String {
    hex(&rand::random::<[u8; 32]>())
}

fn remove_expired(map: &mut HashMap<String, Grant>, now: Millis) {
    map.retain(|_, grant| grant.expires_at > now);
}

/// Creates a one-time login link to the dashboard with full admin rights,
/// valid for 15 minutes, e.g. for `alliance demo` to print.
pub fn create_login_link(state: &AppState) -> String {
    let now = state.now_millis();
    let code = random_id();
    let mut links = login_links().lock().expect("login links lock");
    remove_expired(&mut links, now);
    links.insert(
        code.clone(),
        Grant {
            label: "login link".into(),
            organizations: None,
            expires_at: now + LOGIN_LINK_MILLIS,
        },
    );
    let base = state.settings.public_url.as_str().trim_end_matches('/');
    format!("{base}/report/login/{code}")
}

fn start_session(state: &AppState, label: String, organizations: Option<Vec<String>>, lang: Lang) -> HttpResponse {
    let now = state.now_millis();
    let id = random_id();
    {
        let mut sessions = sessions().lock().expect("sessions lock");
        remove_expired(&mut sessions, now);
        sessions.insert(
            id.clone(),
            Grant {
                label: label.clone(),
                organizations,
                expires_at: now + SESSION_MILLIS,
            },
        );
    }
    tracing::info!(admin = %label, "dashboard session started");
    let secure = if state.settings.public_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={id}; Path=/report; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_MILLIS / 1000
    );
    HttpResponse::SeeOther()
        .insert_header((SET_COOKIE, cookie))
        .insert_header((LOCATION, format!("/report?lang={}", lang.as_str())))
        .insert_header((CACHE_CONTROL, "no-store"))
        .finish()
}

fn session_id(request: &HttpRequest) -> Option<String> {
    let header = request.headers().get("cookie")?.to_str().ok()?;
    header.split(';').find_map(|part| {
        let (name, value) = part.trim().split_once('=')?;
        (name == COOKIE && !value.is_empty()).then(|| value.to_string())
    })
}

pub(crate) fn session(state: &AppState, request: &HttpRequest) -> Option<AdminScope> {
    let id = session_id(request)?;
    let sessions = sessions().lock().expect("sessions lock");
    let grant = sessions.get(&id)?;
    (grant.expires_at > state.now_millis()).then(|| AdminScope {
        label: grant.label.clone(),
        organizations: grant.organizations.clone(),
    })
}

/// Headers of every dashboard page: a strict policy without inline script or
/// style, no framing, and no caching of report figures.
pub(crate) fn page(status: actix_web::http::StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header((CACHE_CONTROL, "no-store"))
        .insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
        .body(body)
}

/// Builds the response to a dashboard page request whose filter is invalid:
/// `422` with a page that explains the problem, because the reader is a
/// browser.
pub(crate) fn filter_error(problem: &FilterError, unfiltered_path: &str) -> HttpResponse {
    page(
        actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
        error_page::filter_error_page(problem, &stylesheet_url(), unfiltered_path),
    )
}

/// Builds the response to a dashboard page request whose query string the
/// page cannot read: `400`, the status of the API's `invalid_query`, with a
/// page in the layout of [`filter_error`].
pub(crate) fn query_error(problem: &QueryError, unfiltered_path: &str) -> HttpResponse {
    page(
        actix_web::http::StatusCode::BAD_REQUEST,
        error_page::query_error_page(problem, &stylesheet_url(), unfiltered_path),
    )
}

/// The stylesheet's URL with a short hash of its content, so a changed file is fetched again.
pub(crate) fn stylesheet_url() -> String {
    static VERSION: OnceLock<String> = OnceLock::new();
    let version = VERSION.get_or_init(|| {
        use sha2::{Digest, Sha256};
        hex(&Sha256::digest(STYLESHEET.as_bytes())[..6])
    });
    format!("/report/dashboard.css?v={version}")
}

pub(crate) fn language(value: Option<&str>) -> Lang {
    if value == Some("en") { Lang::En } else { Lang::Nl }
}

/// The query parameters of the dashboard pages. Others are ignored.
const QUERY_PARAMETERS: [&str; 6] = ["lang", "from", "to", "organization", "topic", "child_age_group"];

/// The query of a dashboard page: the language and the filter values.
pub(crate) struct DashboardQuery {
    pub(crate) lang: Lang,
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
    pub(crate) organization: Option<String>,
    pub(crate) topic: Option<String>,
    pub(crate) child_age_group: Option<String>,
}

/// Reads the query of a dashboard page. A query that the page cannot read
/// gets the response of [`query_error`], with a link to `unfiltered_path`.
pub(crate) fn read_query(request: &HttpRequest, unfiltered_path: &str) -> Result<DashboardQuery, HttpResponse> {
    let mut query = PageQuery::parse(request.query_string(), &QUERY_PARAMETERS)
        .map_err(|problem| query_error(&problem, unfiltered_path))?;
    Ok(DashboardQuery {
        lang: language(query.get("lang")),
        from: query.take("from"),
        to: query.take("to"),
        organization: query.take("organization"),
        topic: query.take("topic"),
        child_age_group: query.take("child_age_group"),
    })
}

pub(crate) fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|text| !text.trim().is_empty())
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
pub(crate) fn encode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `GET /report`: the dashboard for a session, otherwise the login form.
#[get("/report")]
pub async fn dashboard(state: web::Data<AppState>, request: HttpRequest) -> Result<HttpResponse, ApiError> {
    let query = match read_query(&request, "/report") {
        Ok(query) => query,
        Err(response) => return Ok(response),
    };
    let lang = query.lang;
    let Some(scope) = session(&state, &request) else {
        return Ok(page(
            actix_web::http::StatusCode::OK,
            html::login_page(lang, &stylesheet_url(), None),
        ));
    };

    let from = non_empty(query.from);
    let to = non_empty(query.to);
    let parsed = ReportFilter::parse(
        from.as_deref(),
        to.as_deref(),
        non_empty(query.organization),
        non_empty(query.topic),
        non_empty(query.child_age_group),
    );
    let filter = match parsed {
        Ok(filter) => filter.limited_to(scope.organizations.clone()),
        Err(problem) => return Ok(filter_error(&problem, "/report")),
    };

    let store = state.store.clone();
    let now = state.now_millis();
    let options = ReportOptions {
        min_cell_size: u64::from(state.settings.min_cell_size),
        bootstrap: true,
    };
    let built_filter = filter.clone();
    let built = web::block(move || report::build_with(&store, &built_filter, now, &options))
        .await
        .map_err(|error| ApiError::internal(&error))??;

    let mut filter_query = Vec::new();
    let dates = [
        ("from", filter.from.map(|d| d.to_string())),
        ("to", filter.to.map(|d| d.to_string())),
    ];
    let labels = [
        ("organization", filter.organization.clone()),
        ("topic", filter.topic.clone()),
        ("child_age_group", filter.child_age_group.clone()),
    ];
    for (name, value) in dates.into_iter().chain(labels) {
        if let Some(value) = value {
            filter_query.push(format!("{name}={}", encode(&value)));
        }
    }
    // NOTE: the lists offer the values present in the current selection plus
    // the chosen one, so narrowing one filter narrows the others' lists.
    let values = |cells: &[report::breakdown::Cell], chosen: &Option<String>| -> Vec<String> {
        let mut values: Vec<String> = cells.iter().filter_map(|cell| cell.value.clone()).collect();
        if let Some(chosen) = chosen {
            if !values.contains(chosen) {
                values.push(chosen.clone());
            }
        }
        values
    };
    let organizations = values(&built.breakdowns.organization, &filter.organization);
    let topics = values(&built.breakdowns.topic, &filter.topic);
    let age_groups = values(&built.breakdowns.child_age_group, &filter.child_age_group);
    let stylesheet_href = stylesheet_url();
    let context = html::PageContext {
        lang,
        stylesheet: &stylesheet_href,
        filter_query: &filter_query.join("&"),
        organizations: &organizations,
        topics: &topics,
        age_groups: &age_groups,
    };
    Ok(page(actix_web::http::StatusCode::OK, html::render(&built, &context)))
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    lang: Option<String>,
}

/// `POST /report/login`: exchanges an admin token for a session cookie.
/// Failed attempts count per client address against the same limit as
/// failed webhook signatures; over it, the form answers 429.
#[post("/report/login")]
pub async fn login(
    state: web::Data<AppState>,
    request: actix_web::HttpRequest,
    form: web::Form<LoginForm>,
) -> HttpResponse {
    let lang = language(form.lang.as_deref());
    let address = crate::ratelimit::client_address(&request, &state.settings.trusted_proxies);
    if let Some(address) = address {
        if state.failed_signatures.is_limited(&address).is_some() {
            let problem = match lang {
                Lang::Nl => "Te veel mislukte pogingen. Probeer het over een minuut opnieuw.",
                Lang::En => "Too many failed attempts. Try again in a minute.",
            };
            return page(
                actix_web::http::StatusCode::TOO_MANY_REQUESTS,
                html::login_page(lang, &stylesheet_url(), Some(problem)),
            );
        }
    }
    match state.scope_for_token(form.token.trim()) {
        Some(scope) => start_session(&state, scope.label, scope.organizations, lang),
        None => {
            if let Some(address) = address {
                let _ = state.failed_signatures.hit(&address);
            }
            tracing::warn!("dashboard login with an invalid admin token");
            let problem = match lang {
                Lang::Nl => "Dit beheertoken is niet geldig.",
                Lang::En => "This admin token is not valid.",
            };
            page(
                actix_web::http::StatusCode::UNAUTHORIZED,
                html::login_page(lang, &stylesheet_url(), Some(problem)),
            )
        }
    }
}

/// `GET /report/login/{code}`: uses a one-time login link.
#[get("/report/login/{code}")]
pub async fn login_link(state: web::Data<AppState>, code: web::Path<String>) -> HttpResponse {
    let now = state.now_millis();
    let grant = login_links().lock().expect("login links lock").remove(code.as_str());
    match grant.filter(|grant| grant.expires_at > now) {
        Some(grant) => start_session(&state, grant.label, grant.organizations, Lang::Nl),
        None => page(
            actix_web::http::StatusCode::UNAUTHORIZED,
            html::login_page(
                Lang::Nl,
                &stylesheet_url(),
                Some("Deze aanmeldlink is al gebruikt of verlopen. / This login link was used or has expired."),
            ),
        ),
    }
}

/// `POST /report/logout`: ends the session.
#[post("/report/logout")]
pub async fn logout(request: HttpRequest) -> HttpResponse {
    if let Some(id) = session_id(&request) {
        sessions().lock().expect("sessions lock").remove(&id);
    }
    HttpResponse::SeeOther()
        .insert_header((
            SET_COOKIE,
            format!("{COOKIE}=; Path=/report; HttpOnly; SameSite=Strict; Max-Age=0"),
        ))
        .insert_header((LOCATION, "/report"))
        .finish()
}

/// `GET /report/dashboard.css`: the dashboard's stylesheet.
#[route("/report/dashboard.css", method = "GET", method = "HEAD")]
pub async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/css; charset=utf-8"))
        .insert_header((CACHE_CONTROL, "public, max-age=300"))
        .body(STYLESHEET)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_keeps_unreserved() {
        assert_eq!(encode("GGD Fryslân/0-5"), "GGD%20Frysl%C3%A2n%2F0-5");
    }
}
