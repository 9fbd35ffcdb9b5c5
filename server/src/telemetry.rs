//! Logging set-up and the request log, which never shows a token's tag.

use std::future::{Ready, ready};
use std::time::Instant;

use actix_web::Error;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use futures_util::future::LocalBoxFuture;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: `RUST_LOG` filters (default
/// `default_level`), and `json` switches to one JSON object per line. Logs go
/// to standard error.
pub fn init(json: bool, default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // actix-web's extractors log the full request path at debug level, and
    // paths carry questionnaire tokens; keep them quiet whatever RUST_LOG says.
    let filter = filter.add_directive("actix_web::types=warn".parse().expect("valid directive"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Middleware that logs each request with its path redacted.
pub struct RequestLog;

impl<S, B> Transform<S, ServiceRequest> for RequestLog
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = RequestLogService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequestLogService { service }))
    }
}

pub struct RequestLogService<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for RequestLogService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        let method = request.method().clone();
        // A clone shares the request's bytes. The path is redacted only for
        // a line that is written, because tracing evaluates fields only then.
        let uri = request.uri().clone();
        let future = self.service.call(request);
        Box::pin(async move {
            let response = future.await?;
            let status = response.status().as_u16();
            let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
            let path = || crate::token::redact_path(uri.path());
            if status >= 500 {
                tracing::error!(%method, path = %path(), status, elapsed_ms, "request");
            } else {
                tracing::debug!(%method, path = %path(), status, elapsed_ms, "request");
            }
            Ok(response)
        })
    }
}
