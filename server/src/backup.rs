//! `alliance backup DIR`, `alliance backup --server URL`, `alliance restore
//! DIR` and the admin API's `POST /api/admin/backup`: a copy of the store
//! that another data directory can start from. Restoring needs the same `ALLIANCE_SECRET_KEY`,
//! because tokens and pseudonyms are derived from it.

use std::path::{Path, PathBuf};

use actix_web::{HttpRequest, HttpResponse, post, web};
use clap::Args;
use serde_json::json;

use crate::cli::CliError;
use crate::config::RawSettings;
use crate::error::ApiError;
use crate::startup::{AppState, now_millis};
use crate::store::Store;

/// Name of the file that marks a directory as a finished backup.
const MARKER: &str = "alliance-backup.json";

#[derive(Args)]
pub struct BackupArgs {
    /// Directory to write the backup into, when no service has the store open. It must
    /// not exist or be empty. Not allowed with --server.
    pub dir: Option<PathBuf>,
    /// Ask this running service to write the backup. The service chooses the directory:
    /// a new alliance-<time> under its own ALLIANCE_BACKUP_DIR (default ./backups), on
    /// the service's machine.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// A directory written by `alliance backup`.
    pub dir: PathBuf,
}

/// Returns whether `dir` is missing or contains no entry but those named in `allowed`.
fn is_empty_or_missing(dir: &Path, allowed: &[&str]) -> Result<bool, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(error) => return Err(format!("cannot read {}: {error}", dir.display())),
    };
    for entry in entries {
        let entry = entry.map_err(|error| format!("cannot read {}: {error}", dir.display()))?;
        if !allowed.iter().any(|name| entry.file_name() == *name) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Entries a restore may find in the data directory: a file system's
/// `lost+found` and the generated secrets, which a backup leaves out and the
/// restored store needs.
const ALLOWED_BEFORE_RESTORE: [&str; 2] = ["lost+found", crate::config::DEV_SECRETS_FILE];

/// Writes a backup of `store` into `dir` and marks it finished.
pub fn write_backup(store: &Store, dir: &Path) -> Result<usize, String> {
    if !is_empty_or_missing(dir, &[])? {
        return Err(format!(
            "{} is not empty; choose a new directory for the backup",
            dir.display()
        ));
    }
    let chats = store
        .copy_to(&dir.join("store"))
        .map_err(|error| format!("the backup into {} failed: {error}", dir.display()))?;
    let marker = json!({
        "created_at": crate::routes::questionnaire::time_text(now_millis()),
        "chats": chats,
        "version": env!("CARGO_PKG_VERSION"),
    });
    std::fs::write(
        dir.join(MARKER),
        serde_json::to_vec_pretty(&marker).expect("JSON serialises"),
    )
    .map_err(|error| format!("cannot write {}: {error}", dir.join(MARKER).display()))?;
    Ok(chats)
}

pub async fn backup(config_file: Option<&Path>, arguments: BackupArgs) -> Result<(), CliError> {
    let dir = match (arguments.server, arguments.dir) {
        (Some(_), Some(dir)) => {
            return Err(CliError::Usage(format!(
                "DIR {} cannot be used with --server: the service writes the backup itself, into a \
                 new directory alliance-<time> under its own ALLIANCE_BACKUP_DIR (default ./backups, \
                 relative to the service's working directory). Leave out DIR; to choose where the \
                 service writes, set ALLIANCE_BACKUP_DIR for the service and restart it. To write \
                 into DIR, stop the service and run `alliance backup DIR`",
                dir.display()
            )));
        }
        (None, None) => {
            return Err(CliError::Usage(
                "missing DIR: give the directory to write the backup into (`alliance backup DIR`), \
                 or, while a service holds the store, ask it with `alliance backup --server URL`"
                    .into(),
            ));
        }
        (Some(server), None) => {
            let settings = RawSettings::load(config_file)?.validate()?;
            return backup_through_server(&settings, &server).await;
        }
        (None, Some(dir)) => dir,
    };
    let settings = RawSettings::load(config_file)?.validate()?;
    let store = Store::open(&settings.data_dir, settings.cache_bytes).map_err(|error| {
        format!(
            "cannot open the store in {} ({error}); if a service is running on it, run \
             `alliance backup --server URL` without DIR to have the service write the backup \
             under its ALLIANCE_BACKUP_DIR",
            settings.data_dir.display()
        )
    })?;
    let chats = write_backup(&store, &dir)?;
    println!("backup of {chats} chats written to {}", dir.display());
    Ok(())
}

async fn backup_through_server(settings: &crate::config::Settings, server: &str) -> Result<(), CliError> {
    let token = settings
        .admin_token
        .as_ref()
        .ok_or_else(|| CliError::Failed("set ALLIANCE_ADMIN_TOKEN to ask a running service for a backup (a service that generated its own secrets wrote the admin token to dev-secrets.toml in its data directory)".into()))?;
    let url = format!("{}/api/admin/backup", server.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(token.expose())
        .send()
        .await
        .map_err(|error| format!("cannot reach {server}: {}", crate::cli::describe_http_error(&error)))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(CliError::Failed(format!("{server} answered {status}: {body}")));
    }
    let written: serde_json::Value = serde_json::from_str(&body)
        .map_err(|error| format!("the response of {server} is not JSON ({error}): {body}"))?;
    let (Some(dir), Some(chats)) = (written["dir"].as_str(), written["chats"].as_u64()) else {
        return Err(CliError::Failed(format!(
            "the response of {server} has no \"dir\" or \"chats\": {body}"
        )));
    };
    println!(
        "the service wrote a backup of {chats} chats to {dir} (a new directory under its \
         ALLIANCE_BACKUP_DIR, on the service's machine)"
    );
    Ok(())
}

pub fn restore(config_file: Option<&Path>, arguments: RestoreArgs) -> Result<(), CliError> {
    let settings = RawSettings::load(config_file)?.validate()?;
    if !arguments.dir.join(MARKER).exists() {
        return Err(CliError::Failed(format!(
            "{} is not a finished backup (no {MARKER}); use a directory written by `alliance backup`",
            arguments.dir.display()
        )));
    }
    if !is_empty_or_missing(&settings.data_dir, &ALLOWED_BEFORE_RESTORE)? {
        return Err(CliError::Failed(format!(
            "the data directory {} is not empty; restore only into an empty or new directory \
             (set ALLIANCE_DATA_DIR); it may hold lost+found and the service's dev-secrets.toml",
            settings.data_dir.display()
        )));
    }
    let backup = Store::open(&arguments.dir.join("store"), settings.cache_bytes)
        .map_err(|error| format!("cannot open the backup in {}: {error}", arguments.dir.display()))?;
    let chats = backup
        .copy_to(&settings.data_dir)
        .map_err(|error| format!("restoring into {} failed: {error}", settings.data_dir.display()))?;
    println!("restored {chats} chats into {}", settings.data_dir.display());
    Ok(())
}

/// Returns `BASE/alliance-STAMP`, or with `-2`, `-3`, … appended when a
/// backup of the same millisecond already has that name.
fn new_backup_dir(base: &Path, stamp: &str) -> PathBuf {
    let first = base.join(format!("alliance-{stamp}"));
    if !first.exists() {
        return first;
    }
    (2..)
        .map(|n| base.join(format!("alliance-{stamp}-{n}")))
        .find(|dir| !dir.exists())
        .expect("some numbered name is free")
}

/// `POST /api/admin/backup`: writes a backup into a new, timestamped
/// directory under ALLIANCE_BACKUP_DIR while the service runs.
#[post("/api/admin/backup")]
pub async fn backup_route(state: web::Data<AppState>, request: HttpRequest) -> Result<HttpResponse, ApiError> {
    let scope = state.unlimited_admin_scope(&request, "a backup holds")?;
    let Ok(_running) = state.backup_running.try_lock() else {
        return Err(ApiError::new(
            actix_web::http::StatusCode::CONFLICT,
            "backup_in_progress",
            "another backup is being written; try again when it has finished",
        ));
    };
    let stamp = crate::routes::questionnaire::time_text(state.now_millis()).replace([':', '.'], "-");
    let dir = new_backup_dir(&state.settings.backup_dir, &stamp);
    let store = state.store.clone();
    let target = dir.clone();
    let chats = web::block(move || write_backup(&store, &target))
        .await
        .map_err(|error| ApiError::internal(&error))?
        .map_err(|error| ApiError::internal(&error))?;
    tracing::info!(admin = %scope.label, chats, dir = %dir.display(), "backup written");
    Ok(HttpResponse::Ok().json(json!({ "status": "written", "dir": dir, "chats": chats })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_target_may_hold_lost_found_and_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let may_restore = |dir: &Path| is_empty_or_missing(dir, &ALLOWED_BEFORE_RESTORE).unwrap();
        assert!(may_restore(&dir.path().join("missing")));
        std::fs::create_dir(dir.path().join("lost+found")).unwrap();
        std::fs::write(dir.path().join("dev-secrets.toml"), "").unwrap();
        assert!(may_restore(dir.path()));
        assert!(!is_empty_or_missing(dir.path(), &[]).unwrap());
        std::fs::write(dir.path().join("db"), "").unwrap();
        assert!(!may_restore(dir.path()));
    }

    #[test]
    fn backup_dir_numbered_when_taken() {
        let base = tempfile::tempdir().unwrap();
        let stamp = "2026-12-05T05-44-21-806Z";
        let first = new_backup_dir(base.path(), stamp);
        assert_eq!(first, base.path().join(format!("alliance-{stamp}")));
        std::fs::create_dir(&first).unwrap();
        let second = new_backup_dir(base.path(), stamp);
        assert_eq!(second, base.path().join(format!("alliance-{stamp}-2")));
        std::fs::create_dir(&second).unwrap();
        assert_eq!(
            new_backup_dir(base.path(), stamp),
            base.path().join(format!("alliance-{stamp}-3"))
        );
    }
}
