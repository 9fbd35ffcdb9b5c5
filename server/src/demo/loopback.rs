//! Shared parts of `alliance demo` and `alliance bench`, which run the
//! service against a platform of their own on loopback: the secrets the
//! three sides share, the service settings that wire them together, and the
//! platform's address when the service already runs.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::web;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tempfile::TempDir;

use crate::cli::CliError;
use crate::config::Settings;
use crate::shutdown::StopSignal;
use crate::signature::WebhookSecret;
use crate::startup::AppState;

/// Maximum time that a stop signal waits for the in-process service to stop
/// before its temporary store is removed anyway.
const STOP_LIMIT: Duration = Duration::from_secs(5);

/// Secrets shared by the client that signs webhooks, the platform on
/// loopback and the service.
pub struct LoopbackSecrets {
    pub webhook_secret: WebhookSecret,
    pub platform_token: String,
    pub signing_secret: WebhookSecret,
}

impl LoopbackSecrets {
    /// Generates fresh secrets for a service started on a temporary store.
    pub fn generate() -> Self {
        Self {
            webhook_secret: WebhookSecret::generate().0,
            platform_token: crate::token::hex(&rand::random::<[u8; 32]>()),
            signing_secret: WebhookSecret::generate().0,
        }
    }

    /// Reads the secrets of a running service from its settings, for `--target`.
    pub fn from_settings(settings: &Settings) -> Result<Self, CliError> {
        Ok(Self {
            webhook_secret: settings
                .webhook_secrets
                .first()
                .cloned()
                .ok_or_else(|| missing_for_target("ALLIANCE_WEBHOOK_SECRETS"))?,
            platform_token: settings
                .platform_token
                .as_ref()
                .ok_or_else(|| missing_for_target("ALLIANCE_PLATFORM_TOKEN"))?
                .expose()
                .to_string(),
            signing_secret: settings
                .platform_signing_secret
                .clone()
                .ok_or_else(|| missing_for_target("ALLIANCE_PLATFORM_SIGNING_SECRET"))?,
        })
    }

    /// Returns the settings that point a new service at the platform on
    /// loopback, with a temporary store in `data_dir` and a fresh server key.
    pub fn service_settings(&self, data_dir: &Path, platform: SocketAddr) -> [(&'static str, String); 7] {
        [
            ("data_dir", data_dir.display().to_string()),
            ("secret_key", STANDARD.encode(rand::random::<[u8; 32]>())),
            ("webhook_secrets", self.webhook_secret.expose_text()),
            ("platform_kind", "generic".into()),
            ("platform_url", format!("http://{platform}")),
            ("platform_token", self.platform_token.clone()),
            ("platform_signing_secret", self.signing_secret.expose_text()),
        ]
    }
}

/// Returns the error for a setting that `--target` needs from the running service's configuration.
pub fn missing_for_target(name: &str) -> CliError {
    CliError::Failed(format!("--target needs {name}, the same value the service uses"))
}

/// The place where `platform` (named in errors) listens for a running
/// service: the loopback address of ALLIANCE_PLATFORM_URL and its path, such
/// as `/api`, under which the service posts the messages.
pub struct PlatformLocation {
    pub address: SocketAddr,
    pub path: String,
}

/// Reads ALLIANCE_PLATFORM_URL for `--target`, which must be on loopback.
pub fn platform_location(settings: &Settings, platform: &str) -> Result<PlatformLocation, CliError> {
    let url = settings.platform_url.as_ref().ok_or_else(|| {
        CliError::Failed(format!(
            "--target needs ALLIANCE_PLATFORM_URL: the {platform} listens there"
        ))
    })?;
    let addresses = url
        .socket_addrs(|| Some(80))
        .map_err(|error| format!("cannot resolve ALLIANCE_PLATFORM_URL {url}: {error}"))?;
    let address = addresses
        .into_iter()
        .find(|address| address.ip().is_loopback())
        .ok_or_else(|| {
            CliError::Failed(format!(
                "ALLIANCE_PLATFORM_URL {url} is not a loopback address; the {platform} runs on loopback only"
            ))
        })?;
    Ok(PlatformLocation {
        address,
        path: url.path().trim_end_matches('/').to_string(),
    })
}

/// Ends `alliance demo` or `alliance bench` after a stop signal that came
/// before its work was done. Stops the in-process `service`, if any, and
/// removes its temporary store. Returns the error that ends the command with
/// the signal's exit code. Its one-line message states whether the store was
/// removed.
pub async fn stop_on_signal(
    signal: StopSignal,
    service: Option<(ServerHandle, web::Data<AppState>)>,
    temporary_store: Option<TempDir>,
) -> CliError {
    if let Some((handle, state)) = service {
        let stopped = tokio::time::timeout(STOP_LIMIT, async {
            handle.stop(false).await;
            state.stop().await;
        })
        .await;
        if stopped.is_err() {
            tracing::warn!(
                limit_seconds = STOP_LIMIT.as_secs(),
                "the in-process service did not stop in time; removing its temporary store anyway"
            );
        }
    }
    let message = match temporary_store {
        Some(directory) => format!("Stopped by {}; {}", signal.name(), remove_temporary_store(directory)),
        None => format!("Stopped by {}.", signal.name()),
    };
    CliError::Stopped { signal, message }
}

/// Removes a temporary store and returns a clause for the stop message: the
/// store's path, or why it could not be removed.
pub fn remove_temporary_store(directory: TempDir) -> String {
    let path = directory.path().display().to_string();
    match directory.close() {
        Ok(()) => format!("removed the temporary store {path}"),
        Err(error) => format!("could not remove the temporary store {path} ({error}); delete it by hand"),
    }
}
