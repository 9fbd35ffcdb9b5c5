//! Builds the application: opens the store, starts the delivery worker,
//! binds the listener (port 0 allowed) and returns the running service.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpServer, web};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Settings;
use crate::delivery::{self, DeliveryHandle};
use crate::error::ApiError;
use crate::ratelimit::RateLimiter;
use crate::shutdown::{InFlight, InFlightBody};
use crate::store::Store;
use crate::store::records::Millis;
use crate::token::{PseudonymKey, TokenKey};

/// Shared state of every request handler.
pub struct AppState {
    pub settings: Settings,
    pub store: Store,
    pub token_key: TokenKey,
    pub pseudonym_key: PseudonymKey,
    pub delivery: DeliveryHandle,
    /// Failed webhook signatures per client address.
    pub failed_signatures: RateLimiter<IpAddr>,
    /// Questionnaire API calls per invitation.
    pub questionnaire_calls: RateLimiter<crate::token::InvitationId>,
    /// The pruning, purge and reconciliation tasks, stopped by [`AppState::stop`].
    background: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Held while `POST /api/admin/backup` writes a copy, so copies never overlap.
    pub(crate) backup_running: tokio::sync::Mutex<()>,
    /// Requests being handled, which a graceful stop waits for.
    pub in_flight: std::sync::Arc<InFlight>,
}

/// What an admin token may see.
pub struct AdminScope {
    pub label: String,
    /// `None` means every organization.
    pub organizations: Option<Vec<String>>,
}

impl AppState {
    /// Stops the delivery worker and the background tasks and waits for
    /// them, so no store handle of theirs outlives the call.
    pub async fn stop(&self) {
        self.delivery.stop().await;
        let tasks = std::mem::take(
            &mut *self
                .background
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
    }

    /// The service clock in milliseconds since the Unix epoch. Every time
    /// limit (signature window, expiry, retries) runs on this clock.
    pub fn now_millis(&self) -> Millis {
        now_millis()
    }

    /// Checks `Authorization: Bearer <token>` against the admin tokens in
    /// constant time.
    /// Checks for an admin token that may read every organization, because
    /// `holding` (what the endpoint returns) covers them all. A limited token
    /// gets `403`.
    pub fn unlimited_admin_scope(&self, request: &HttpRequest, holding: &str) -> Result<AdminScope, ApiError> {
        let scope = self.admin_scope(request)?;
        if scope.organizations.is_some() {
            return Err(ApiError::new(
                actix_web::http::StatusCode::FORBIDDEN,
                "forbidden",
                format!("{holding} every organization's data; use a token that is not limited to organizations"),
            ));
        }
        Ok(scope)
    }

    pub fn admin_scope(&self, request: &HttpRequest) -> Result<AdminScope, ApiError> {
        let missing = || {
            ApiError::unauthorized(
                "missing_admin_token",
                "send an admin token as \"Authorization: Bearer <token>\"",
            )
        };
        let header = request
            .headers()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .ok_or_else(missing)?;
        let (scheme, token) = header.split_once(' ').ok_or_else(missing)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(missing());
        }
        self.scope_for_token(token)
            .ok_or_else(|| ApiError::unauthorized("invalid_admin_token", "the admin token is not valid"))
    }

    /// Looks up an admin token, compared in constant time, and returns what it may see.
    pub fn scope_for_token(&self, token: &str) -> Option<AdminScope> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut scope = None;
        if let Some(admin) = &self.settings.admin_token {
            let expected: [u8; 32] = Sha256::digest(admin.expose().as_bytes()).into();
            if bool::from(expected.ct_eq(&digest)) {
                scope = Some(AdminScope {
                    label: "admin".into(),
                    organizations: None,
                });
            }
        }
        for scoped in &self.settings.admin_tokens {
            if bool::from(scoped.sha256.ct_eq(&digest)) && scope.is_none() {
                let organizations = (!scoped.organizations.is_empty()).then(|| scoped.organizations.clone());
                scope = Some(AdminScope {
                    label: scoped.label.clone(),
                    organizations,
                });
            }
        }
        scope
    }
}

pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as Millis)
        .unwrap_or(0)
}

/// A started service.
pub struct Application {
    pub address: SocketAddr,
    pub handle: ServerHandle,
    pub server: actix_web::dev::Server,
    pub state: web::Data<AppState>,
}

/// Opens the store, starts the delivery worker and binds the HTTP server.
/// Start-up errors are messages for the operator. `settings` must have
/// passed [`Settings::check_ready_to_serve`].
pub fn build(settings: Settings) -> Result<Application, String> {
    let secret_key = settings.secret_key.clone().ok_or("ALLIANCE_SECRET_KEY is not set")?;
    crate::store::create_private_dir(&settings.data_dir)
        .map_err(|error| format!("cannot create data directory {}: {error}", settings.data_dir.display()))?;
    let store = Store::open(&settings.data_dir, settings.cache_bytes).map_err(|error| {
        format!(
            "cannot open the store in {}: {error}. Is another alliance process using it?",
            settings.data_dir.display()
        )
    })?;
    store
        .first_started_at(now_millis())
        .map_err(|error| error.to_string())?;
    let fingerprint = secret_key.pseudonym_key().pseudonym("key-fingerprint", "v1");
    if !store.key_matches(&fingerprint).map_err(|error| error.to_string())? {
        return Err(format!(
            "the store in {} was written with another ALLIANCE_SECRET_KEY; questionnaire links and \
             pseudonyms would not match. Start it with the key it was written with (after a restore: the \
             original service's key, or its data/dev-secrets.toml)",
            settings.data_dir.display()
        ));
    }

    // Bound before any worker starts, so a start that cannot listen sends no
    // invitation and purges nothing.
    let listener =
        TcpListener::bind(settings.listen).map_err(|error| format!("cannot listen on {}: {error}", settings.listen))?;

    let token_key = secret_key.token_key();
    let delivery = delivery::start(&settings, store.clone(), token_key.clone())?;
    let minute = Duration::from_secs(60);
    let state = web::Data::new(AppState {
        failed_signatures: RateLimiter::new(settings.failed_signature_limit, minute),
        questionnaire_calls: RateLimiter::new(settings.questionnaire_call_limit, minute),
        pseudonym_key: secret_key.pseudonym_key(),
        token_key,
        store,
        delivery,
        settings,
        background: Default::default(),
        backup_running: Default::default(),
        in_flight: Default::default(),
    });

    let mut background = vec![
        tokio::spawn(prune_webhook_ids(state.store.clone())),
        tokio::spawn(purge_daily(state.store.clone(), state.settings.retention_days)),
    ];
    if state.settings.platform_kind == crate::config::PlatformKind::Chatwoot {
        let client = crate::chatwoot::client::ChatwootClient::new(&state.settings, state.token_key.clone())?;
        let interval = state.settings.chatwoot_reconcile_interval;
        background.push(tokio::spawn(crate::chatwoot::reconcile::run(
            state.clone(),
            std::sync::Arc::new(client),
            interval,
        )));
    }
    *state
        .background
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = background;

    let address = listener.local_addr().map_err(|error| error.to_string())?;

    let app_state = state.clone();
    let server = HttpServer::new(move || {
        let in_flight = app_state.in_flight.clone();
        App::new()
            .app_data(app_state.clone())
            .app_data(web::QueryConfig::default().error_handler(|error, request| {
                let message = match crate::routes::page_query::first_repeated(request.query_string()) {
                    Some(name) => format!("query parameter {name:?} is given more than once; give it once"),
                    None => format!("the query string is not valid ({error}); check the parameter values"),
                };
                ApiError::bad_request("invalid_query", message).into()
            }))
            .app_data(web::FormConfig::default().error_handler(|error, _| crate::routes::form_error(error).into()))
            .app_data(
                web::PathConfig::default()
                    .error_handler(|error, _| ApiError::not_found(format!("the path is not valid: {error}")).into()),
            )
            .wrap_fn(|request, service| {
                use actix_web::dev::Service;
                // web::Query would read a value that is not UTF-8 with
                // replacement characters, so the API rejects it instead.
                let not_utf8 = if request.path().starts_with("/api/") {
                    crate::routes::page_query::first_not_utf8(request.query_string())
                } else {
                    None
                };
                if let Some(name) = not_utf8 {
                    let error = ApiError::bad_request(
                        "invalid_query",
                        format!("query parameter {name:?} is not UTF-8 text once percent-decoded; send UTF-8"),
                    );
                    return Box::pin(async move { Ok(request.error_response(error)) })
                        as std::pin::Pin<Box<dyn std::future::Future<Output = _>>>;
                }
                let state = request.app_data::<web::Data<AppState>>().cloned();
                let reply = service.call(request);
                Box::pin(async move {
                    let mut response = reply.await?;
                    if let Some(state) = state {
                        // Taken from the response: cloning the request before routing
                        // would stop actix-web from writing the path parameters.
                        let http_request = response.request().clone();
                        crate::routes::questionnaire::add_cors_headers(&state, &http_request, response.headers_mut());
                    }
                    Ok(response)
                })
            })
            .wrap(
                actix_web::middleware::DefaultHeaders::new()
                    .add(("X-Content-Type-Options", "nosniff"))
                    .add(("Referrer-Policy", "no-referrer")),
            )
            .wrap(crate::telemetry::RequestLog)
            .wrap_fn(move |request, service| {
                use actix_web::dev::Service;
                let guard = in_flight.enter();
                let reply = service.call(request);
                async move {
                    let mut response = reply.await?;
                    if guard.is_draining() {
                        // The client reconnects for its next request, so no
                        // keep-alive connection outlives the stop.
                        response
                            .response_mut()
                            .head_mut()
                            .set_connection_type(actix_web::http::ConnectionType::Close);
                    }
                    Ok(response.map_body(|_, body| InFlightBody::new(body, guard)))
                }
            })
            .configure(crate::routes::configure)
    })
    .listen(listener)
    .map_err(|error| format!("cannot start the HTTP server: {error}"))?
    // Signals are handled by `run_until_stopped` (see crate::shutdown); the
    // timeout bounds a graceful stop that a caller starts through `handle`.
    .disable_signals()
    .shutdown_timeout(10)
    .run();

    Ok(Application {
        address,
        handle: server.handle(),
        server,
        state,
    })
}

impl Application {
    /// Runs until the server stops or a stop signal arrives (see
    /// [`crate::shutdown`]), then stops the delivery worker and the
    /// background tasks and flushes the store.
    pub async fn run_until_stopped(self) -> Result<(), String> {
        let mut signals = crate::shutdown::StopSignals::listen();
        let Application {
            handle, server, state, ..
        } = self;
        let mut server = tokio::spawn(server);
        let finished = tokio::select! {
            finished = &mut server => finished,
            signal = signals.next() => {
                crate::shutdown::stop_server(&handle, &state.in_flight, &mut signals, signal).await;
                (&mut server).await
            }
        };
        let result = match finished {
            Ok(served) => served.map_err(|error| error.to_string()),
            Err(error) => Err(format!("the HTTP server task failed: {error}")),
        };
        state.stop().await;
        state.store.flush().await.map_err(|error| error.to_string())?;
        result
    }
}

/// Purges chats older than the retention period at start and then once a
/// day, and logs the result every time, also when nothing was old enough.
/// While the store is younger than the retention period no chat can be old
/// enough, so the scan over every chat is skipped. After each purge, moves
/// the chats that have settled into the archive (see [`crate::store::archive`]).
async fn purge_daily(store: Store, retention_days: u32) {
    const DAY_MILLIS: Millis = 24 * 3_600_000;
    loop {
        let now = now_millis();
        let cutoff = now - Millis::from(retention_days) * DAY_MILLIS;
        let store_is_younger = match store.first_started_at(now) {
            Ok(first_start) => first_start > cutoff,
            Err(error) => {
                tracing::error!(%error, "reading the store's first start failed; purging anyway");
                false
            }
        };
        let result = if store_is_younger {
            Ok(Ok(crate::retention::PurgeSummary {
                retention_days,
                cutoff: crate::routes::questionnaire::time_text(cutoff),
                ..Default::default()
            }))
        } else {
            let job_store = store.clone();
            tokio::task::spawn_blocking(move || crate::retention::purge(&job_store, now, retention_days, false, |_| {}))
                .await
        };
        match result {
            Ok(Ok(summary)) => tracing::info!(
                chats = summary.chats,
                invitations = summary.invitations,
                answers = summary.answers,
                comments = summary.comments,
                dead_letters = summary.dead_letters,
                pending_deliveries = summary.pending_deliveries,
                retention_days,
                cutoff = %summary.cutoff,
                "retention purge finished"
            ),
            Ok(Err(error)) => tracing::error!(%error, "the retention purge failed; trying again in a day"),
            Err(error) => tracing::error!(%error, "the retention purge stopped; trying again in a day"),
        }
        archive_settled(&store).await;
        tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
    }
}

/// Moves the settled chats into the archive, logging progress on a large
/// first run and the result.
async fn archive_settled(store: &Store) {
    let job_store = store.clone();
    let started = std::time::Instant::now();
    let result = tokio::task::spawn_blocking(move || {
        let mut logged = 0;
        job_store.archive_settled(now_millis(), |moved| {
            if moved >= logged + 100_000 {
                logged = moved;
                tracing::info!(moved, "moving settled chats into the archive");
            }
        })
    })
    .await;
    match result {
        Ok(Ok(moved)) => tracing::info!(
            moved,
            archived = store.archived_count(),
            seconds = started.elapsed().as_secs_f64(),
            "settled chats moved into the archive"
        ),
        Ok(Err(error)) => {
            tracing::error!(%error, "moving settled chats into the archive failed; trying again in a day")
        }
        Err(error) => tracing::error!(%error, "moving settled chats into the archive stopped; trying again in a day"),
    }
}

/// Seen webhook ids are kept 8 days, because platforms retry with the same
/// id for days; older ones are pruned once an hour.
async fn prune_webhook_ids(store: Store) {
    const KEEP: Duration = Duration::from_secs(8 * 24 * 3600);
    loop {
        let cutoff = now_millis() - KEEP.as_millis() as Millis;
        match store.prune_webhook_ids(cutoff) {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "pruned webhook ids older than 8 days"),
            Err(error) => tracing::error!(%error, "pruning webhook ids failed; trying again in an hour"),
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
