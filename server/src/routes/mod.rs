//! HTTP endpoints, one module per group. Handlers are thin: they parse the
//! request into domain types and call the store, delivery or report code.

pub mod admin;
pub mod chatwoot;
pub mod console;
pub mod dashboard;
pub mod deliveries;
pub mod health;
pub mod page_query;
pub mod pages;
pub mod peer_review;
pub mod questionnaire;
pub mod webhooks;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use futures_util::StreamExt;

use crate::error::ApiError;

/// Registers every route of the service.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(webhooks::chat_ended)
        .service(webhooks::questionnaire_answered)
        .service(chatwoot::chatwoot_webhook)
        .service(questionnaire::get_questionnaire)
        .service(questionnaire::put_item)
        .service(questionnaire::submit)
        .service(questionnaire::decline)
        .service(questionnaire::preflight)
        .service(pages::questionnaire_page)
        .service(pages::widget_script)
        .service(pages::page_stylesheet)
        .service(pages::favicon)
        .service(console::chatwoot_page)
        .service(console::console_script)
        .service(console::exchange_code)
        .service(admin::report)
        .service(admin::export)
        .service(peer_review::view_json)
        .service(dashboard::dashboard)
        .service(dashboard::login)
        .service(dashboard::login_link)
        .service(dashboard::logout)
        .service(dashboard::stylesheet)
        .service(peer_review::view_page)
        .service(deliveries::deliveries)
        .service(deliveries::retry_delivery)
        .service(health::healthz)
        .service(health::readyz)
        .service(health::metrics)
        .service(health::openapi)
        .service(crate::backup::backup_route)
        .default_service(web::to(not_found));
}

/// Turns a form that cannot be read (the dashboard login) into the JSON error
/// every other endpoint gives, naming the problem and the fix.
pub fn form_error(error: actix_web::error::UrlencodedError) -> ApiError {
    use actix_web::error::UrlencodedError;
    match error {
        UrlencodedError::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the form as application/x-www-form-urlencoded",
        ),
        UrlencodedError::Overflow { size, limit } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the form has {size} bytes, more than the {limit} allowed; send a smaller form"),
        ),
        UrlencodedError::Parse(problem) => {
            ApiError::bad_request("invalid_form", format!("the form is not valid: {problem}"))
        }
        other => ApiError::bad_request("invalid_form", format!("the form could not be read: {other}")),
    }
}

/// Builds the response to a request that no route took: `405` with `Allow` when the path is
/// an endpoint of `/openapi.json` that takes other methods, otherwise `404`.
async fn not_found(request: HttpRequest) -> actix_web::HttpResponse {
    if let Some(response) = pages::damaged_link(&request) {
        return response;
    }
    let path = crate::token::redact_path(request.path());
    if let Some(allowed) = documented_methods(request.path()) {
        let error = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!(
                "{} is not allowed on {path}; this endpoint takes {}",
                request.method(),
                allowed.join(", ")
            ),
        );
        let mut response = actix_web::ResponseError::error_response(&error);
        if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allowed.join(", ")) {
            response.headers_mut().insert(actix_web::http::header::ALLOW, value);
        }
        return response;
    }
    let error = ApiError::not_found(format!(
        "no endpoint {} {path}; see /openapi.json for the endpoints",
        request.method()
    ));
    actix_web::ResponseError::error_response(&error)
}

/// Returns the methods that `/openapi.json` documents for the endpoint
/// matching `path`, in upper case, or `None` when it documents no such path.
fn documented_methods(path: &str) -> Option<Vec<String>> {
    static ENDPOINTS: std::sync::OnceLock<Vec<(actix_web::dev::ResourceDef, Vec<String>)>> = std::sync::OnceLock::new();
    let endpoints = ENDPOINTS.get_or_init(|| {
        let spec: serde_json::Value = serde_json::from_str(health::OPENAPI).unwrap_or_default();
        let Some(paths) = spec["paths"].as_object() else {
            return Vec::new();
        };
        paths
            .iter()
            .map(|(template, operations)| {
                let methods: Vec<String> = operations
                    .as_object()
                    .into_iter()
                    .flat_map(|operations| operations.keys())
                    .filter(|key| HTTP_METHODS.contains(&key.as_str()))
                    .map(|key| key.to_ascii_uppercase())
                    .collect();
                (actix_web::dev::ResourceDef::new(template.as_str()), methods)
            })
            .collect()
    });
    let documented = endpoints
        .iter()
        .find(|(resource, _)| resource.is_match(path))
        .map(|(_, methods)| methods.clone());
    documented.or_else(|| {
        PAGES_AND_ASSETS
            .iter()
            .find(|(template, _)| actix_web::dev::ResourceDef::new(*template).is_match(path))
            .map(|(_, methods)| methods.iter().map(|method| method.to_string()).collect())
    })
}

/// Pages and files that `/openapi.json` leaves out, because they are not
/// API endpoints, with the methods each takes.
const PAGES_AND_ASSETS: [(&str, &[&str]); 6] = [
    ("/q/{token}", &["GET", "HEAD"]),
    ("/widget/alliance-questionnaire.js", &["GET", "HEAD"]),
    ("/widget/page.css", &["GET", "HEAD"]),
    ("/widget/console.js", &["GET", "HEAD"]),
    ("/favicon.ico", &["GET", "HEAD"]),
    ("/report/dashboard.css", &["GET", "HEAD"]),
];

/// The operation keys of an OpenAPI path item.
const HTTP_METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// Longest time a request body may take to arrive.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads a request body of at most `limit` bytes. A declared
/// `Content-Length` over the limit is rejected before reading, and a body
/// that grows past it is rejected without reading further.
pub async fn read_body(request: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {limit} bytes; send a smaller body"),
        )
    };

    let declared = request
        .headers()
        .get("content-length")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }

    let mut body = Vec::with_capacity(declared.unwrap_or(0).min(limit as u64) as usize);
    let deadline = tokio::time::Instant::now() + BODY_TIMEOUT;
    loop {
        let next = tokio::time::timeout_at(deadline, payload.next()).await.map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request body did not arrive within {} seconds; send it at once",
                    BODY_TIMEOUT.as_secs()
                ),
            )
        })?;
        let Some(chunk) = next else {
            break;
        };
        let chunk = chunk.map_err(|_| {
            ApiError::bad_request(
                "invalid_body",
                "the request body is incomplete or badly framed; send it again",
            )
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses a JSON body into `T`, with 400 `invalid_json` for bytes that are not JSON.
pub fn parse_json_value(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("invalid_json", "the body is not UTF-8; send UTF-8 JSON"))?;
    serde_json::from_str(text)
        .map_err(|error| ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {error}")))
}
