//! The hosted questionnaire page and the plugin's files, embedded at build time.

use std::sync::OnceLock;

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, route, web};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::questionnaire::Lang;
use crate::routes::page_query::PageQuery;
use crate::startup::AppState;
use crate::token::hex;

const WIDGET_JS: &str = include_str!("../../../widget/src/alliance-questionnaire.js");
const PAGE_CSS: &str = include_str!("../../../widget/pages/page.css");
const QUESTIONNAIRE_HTML: &str = include_str!("../../../widget/pages/questionnaire.html");
pub(crate) const CONSOLE_HTML: &str = include_str!("../../../widget/pages/console.html");
pub(crate) const CONSOLE_JS: &str = include_str!("../../../widget/pages/console.js");

/// Version of the embedded assets: a short hash of their content, so a
/// versioned URL can be cached for a year.
pub fn asset_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut hasher = Sha256::new();
        hasher.update(WIDGET_JS.as_bytes());
        hasher.update(PAGE_CSS.as_bytes());
        hasher.update(CONSOLE_JS.as_bytes());
        hex(&hasher.finalize()[..6])
    })
}

/// Security headers shared by every page.
pub(crate) fn page_headers(state: &AppState, response: &mut actix_web::HttpResponseBuilder) {
    let ancestors = if state.settings.platform_origins.is_empty() {
        "'self'".to_string()
    } else {
        format!("'self' {}", state.settings.platform_origins.join(" "))
    };
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
         frame-ancestors {ancestors}; base-uri 'none'; form-action 'none'"
    );
    response
        .insert_header(("Content-Security-Policy", policy))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header((CACHE_CONTROL, "no-store"));
}

/// Returns the page language of a raw query string: Dutch unless `lang`
/// begins with `en`, in any case.
/// A query string with `lang` repeated or not UTF-8 also gets Dutch, as any
/// other `lang` value does, because the parent or nurse who opens the link
/// cannot be expected to correct it.
pub(crate) fn page_lang(query: &str) -> &'static str {
    match PageQuery::parse(query, &["lang"]) {
        Ok(query)
            if query
                .get("lang")
                .is_some_and(|lang| Lang::from_locale(lang) == Lang::En) =>
        {
            "en"
        }
        _ => "nl",
    }
}

/// Escapes text for an HTML attribute value or element content.
pub(crate) fn escape_attribute(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

/// The block on a nurse's own questionnaire page that shows her console code,
/// folded away because most nurses use the link only.
fn console_code_block(code: &str, lang: &str) -> String {
    let (summary, intro, warning) = if lang == "en" {
        (
            "Questionnaire in your chat console",
            "Do you work in Chatwoot? Then you can also fill in the questionnaire in the app beside the conversation. Paste this personal code there once:",
            "Do not share this code. With it, someone can open your questionnaires.",
        )
    } else {
        (
            "Vragenlijst in je chatconsole",
            "Werk je in Chatwoot? Dan kun je de vragenlijst ook invullen in de app naast het gesprek. Plak daar één keer deze persoonlijke code:",
            "Deel deze code met niemand. Met de code kan iemand jouw vragenlijsten openen.",
        )
    };
    format!(
        "<details class=\"console-code\"><summary>{summary}</summary><p>{intro}</p>\
         <p><code>{code}</code></p><p>{warning}</p></details>",
        code = escape_attribute(code)
    )
}

/// `GET /q/{token}`: the hosted questionnaire, in Dutch unless `lang` in
/// the query begins with `en` (`?lang=en`, `?lang=en-GB`).
/// The page request does not count as opened; the plugin's API call does,
/// because link previews fetch pages too.
#[route("/q/{token}", method = "GET", method = "HEAD")]
pub async fn questionnaire_page(
    state: web::Data<AppState>,
    request: HttpRequest,
    token: web::Path<String>,
) -> HttpResponse {
    render_questionnaire_page(&state, &request, &token, StatusCode::OK)
}

/// Answers a `GET` or `HEAD` of a questionnaire link that a messenger or a
/// copy damaged, which no route takes. A link with trailing slashes,
/// `/q/{token}/`, is redirected to the link without them. Any other path
/// under `/q` gets the questionnaire page with status `404`, on which the
/// plugin shows in Dutch (or English with `?lang=en`) that the link does not
/// work. Returns `None` for every other request.
pub(crate) fn damaged_link(request: &HttpRequest) -> Option<HttpResponse> {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return None;
    }
    let path = request.path();
    let rest = path
        .strip_prefix("/q")
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))?;
    let state = request.app_data::<web::Data<AppState>>()?;
    let token = rest.trim_matches('/');
    if is_safe_token(token) && rest.ends_with('/') {
        let query = request.query_string();
        let location = if query.is_empty() {
            format!("/q/{token}")
        } else {
            format!("/q/{token}?{query}")
        };
        return Some(
            HttpResponse::PermanentRedirect()
                .insert_header((actix_web::http::header::LOCATION, location))
                .finish(),
        );
    }
    Some(render_questionnaire_page(state, request, "", StatusCode::NOT_FOUND))
}

/// Returns whether `token` has the shape of a token, so it may appear in
/// the page and in a redirect: 1 to 128 ASCII letters, digits, `.`, `_` or `-`.
fn is_safe_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 128
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Builds the hosted questionnaire page for `token`. An unsafe or empty
/// token becomes an empty one, for which the plugin shows "Niet gevonden".
fn render_questionnaire_page(state: &AppState, request: &HttpRequest, token: &str, status: StatusCode) -> HttpResponse {
    let token = if is_safe_token(token) { token } else { "" };
    let lang = page_lang(request.query_string());

    // Only the nurse's own page shows her console code; reading it does not
    // count the questionnaire as opened.
    let console_block = state
        .token_key
        .verify(token)
        .and_then(|id| match state.store.invitation(&id) {
            Ok(invitation) => invitation,
            Err(error) => {
                tracing::error!(invitation = %id, %error, "reading the invitation for the hosted page failed");
                None
            }
        })
        .and_then(|invitation| crate::routes::console::code_for_invitation(state, &invitation))
        .map(|code| console_code_block(&code, lang))
        .unwrap_or_default();

    let html = QUESTIONNAIRE_HTML
        .replace("{{TOKEN}}", token)
        .replace("{{LANG}}", lang)
        .replace("{{VERSION}}", asset_version())
        .replace("{{CONSOLE}}", &console_block);

    let mut response = HttpResponse::build(status);
    page_headers(state, &mut response);
    response
        .insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
        .body(html)
}

#[derive(Deserialize)]
pub struct AssetQuery {
    v: Option<String>,
}

/// Returns `body` compressed once with gzip at the best level and kept for
/// the life of the process; the assets are few and never change.
fn gzipped(body: &'static str) -> &'static [u8] {
    use std::collections::HashMap;
    use std::io::Write;
    use std::sync::Mutex;

    static CACHE: OnceLock<Mutex<HashMap<usize, &'static [u8]>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut cache = cache.lock().expect("gzip cache lock");
    cache.entry(body.as_ptr() as usize).or_insert_with(|| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(body.as_bytes()).expect("writing to memory succeeds");
        Box::leak(encoder.finish().expect("writing to memory succeeds").into_boxed_slice())
    })
}

fn accepts_gzip(request: &HttpRequest) -> bool {
    request
        .headers()
        .get_all("accept-encoding")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|parameter| matches!(parameter.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

pub(crate) fn asset(request: &HttpRequest, query: &AssetQuery, content_type: &str, body: &'static str) -> HttpResponse {
    let cache = if query.v.as_deref() == Some(asset_version()) {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=300"
    };
    let etag = format!("\"{}\"", asset_version());
    let not_modified = request
        .headers()
        .get("if-none-match")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value == etag);
    let mut response = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((CONTENT_TYPE, content_type))
        .insert_header((CACHE_CONTROL, cache))
        .insert_header(("ETag", etag))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Access-Control-Allow-Origin", "*"));
    response.insert_header(("Vary", "Accept-Encoding"));
    if not_modified {
        response.finish()
    } else if accepts_gzip(request) {
        response.insert_header(("Content-Encoding", "gzip")).body(gzipped(body))
    } else {
        response.body(body)
    }
}

/// `GET /widget/alliance-questionnaire.js`: the plugin, an ES module.
#[route("/widget/alliance-questionnaire.js", method = "GET", method = "HEAD")]
pub async fn widget_script(request: HttpRequest, query: web::Query<AssetQuery>) -> HttpResponse {
    asset(&request, &query, "text/javascript; charset=utf-8", WIDGET_JS)
}

/// `GET /widget/page.css`: the hosted page's own styles.
#[route("/widget/page.css", method = "GET", method = "HEAD")]
pub async fn page_stylesheet(request: HttpRequest, query: web::Query<AssetQuery>) -> HttpResponse {
    asset(&request, &query, "text/css; charset=utf-8", PAGE_CSS)
}

/// `GET /favicon.ico`: no icon. Browsers ask for it on every page that links
/// none; a 204 keeps a 404 out of their console.
#[route("/favicon.ico", method = "GET", method = "HEAD")]
pub async fn favicon() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((CACHE_CONTROL, "public, max-age=86400"))
        .finish()
}
