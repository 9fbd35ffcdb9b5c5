//! Commands and flags of the `alliance` command line.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, ConfigError, RawSettings, Settings};
use crate::report::{self, ReportFilter};
use crate::shutdown::StopSignal;
use crate::signature::WebhookSecret;
use crate::startup;
use crate::store::Store;

#[derive(Parser)]
#[command(
    name = "alliance",
    version,
    about = "Measures the online alliance of chat-based parenting support"
)]
pub struct Cli {
    /// TOML configuration file; ALLIANCE_* environment variables override its values.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Write logs as JSON lines instead of text.
    #[arg(long, global = true)]
    pub log_json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the service.
    Serve,
    /// Replay the 2022 study through a real service and a simulated chat platform, then print the report.
    Demo(crate::demo::DemoArgs),
    /// Load the webhook intake on loopback and report throughput and latency against GET /healthz.
    Bench(crate::bench::BenchArgs),
    /// Print the report, from the store or from a running service.
    Report {
        /// First day included, YYYY-MM-DD (Europe/Amsterdam, by chat end time).
        #[arg(long)]
        from: Option<String>,
        /// Last day included, YYYY-MM-DD.
        #[arg(long)]
        to: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Ask this running service (its admin API) instead of reading the store.
        #[arg(long, value_name = "URL")]
        server: Option<String>,
    },
    /// Print correctly signed Standard Webhooks headers and a curl line, to test a set-up.
    Sign {
        /// File holding the whsec_ secret, or a TOML file with `webhook_secrets`,
        /// such as the generated data/dev-secrets.toml (its first secret is used).
        #[arg(long, value_name = "FILE")]
        secret_file: PathBuf,
        /// The webhook-id to sign.
        #[arg(long)]
        id: String,
        /// File holding the exact request body.
        #[arg(long, value_name = "FILE")]
        body: PathBuf,
        /// URL for the printed curl line; default: the chat-ended endpoint on the
        /// configured listen address (ALLIANCE_LISTEN or `listen` in --config).
        #[arg(long)]
        url: Option<String>,
    },
    /// Write a research export (CSV) with, on request, its codebook and SPSS syntax.
    Export(crate::report::export_command::ExportArgs),
    /// Write a copy of the store that `alliance restore` can start a new data directory from:
    /// into DIR when no service runs, or, with --server URL and no DIR, by the running
    /// service into its ALLIANCE_BACKUP_DIR.
    Backup(crate::backup::BackupArgs),
    /// Fill an empty data directory (ALLIANCE_DATA_DIR) from a backup.
    Restore(crate::backup::RestoreArgs),
    /// Validate the configuration and say what is wrong and how to fix it.
    CheckConfig,
    /// Delete whole chats received more than ALLIANCE_RETENTION_DAYS ago (chat record,
    /// questionnaires with answers and comments, dead letters), keeping only the weekly
    /// totals that reports need. Run it while the service is stopped. The service itself
    /// purges at start and once a day.
    Purge {
        /// Count what would be deleted and print what would be kept; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// A command failure, with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Failed(String),
    /// Arguments that do not fit together; exits like a command-line syntax error.
    #[error("{0}")]
    Usage(String),
    /// A stop signal ended the command before its work was done. The
    /// message states what was cleaned up.
    #[error("{message}")]
    Stopped { signal: StopSignal, message: String },
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) | CliError::Usage(_) => 2,
            CliError::Failed(_) => 1,
            CliError::Stopped { signal, .. } => signal.exit_code(),
        }
    }
}

impl From<String> for CliError {
    fn from(message: String) -> Self {
        CliError::Failed(message)
    }
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    let config_file = cli.config.as_deref();
    match cli.command {
        Command::Serve => serve(config_file).await,
        Command::Demo(arguments) => crate::demo::run(config_file, arguments).await,
        Command::Bench(arguments) => crate::bench::run(config_file, arguments).await,
        Command::Report {
            from,
            to,
            format,
            server,
        } => {
            let filter = ReportFilter::parse(from.as_deref(), to.as_deref(), None, None, None)
                .map_err(|problem| CliError::Failed(format!("invalid filter: {problem}")))?;
            report_command(config_file, filter, format, server).await
        }
        Command::Purge { dry_run } => purge_command(config_file, dry_run),
        Command::Sign {
            secret_file,
            id,
            body,
            url,
        } => sign(config_file, &secret_file, &id, &body, url.as_deref()),
        Command::Export(arguments) => crate::report::export_command::run(config_file, arguments).await,
        Command::Backup(arguments) => crate::backup::backup(config_file, arguments).await,
        Command::Restore(arguments) => crate::backup::restore(config_file, arguments),
        Command::CheckConfig => check_config(config_file),
    }
}

/// Loads and validates settings for a service. On a loopback address every
/// secret that is not configured comes from the development secrets file
/// in the data directory; the path of that file is returned.
pub fn service_settings(config_file: Option<&Path>) -> Result<(Settings, Option<PathBuf>), CliError> {
    let mut raw = RawSettings::load(config_file)?;
    let first = raw.validate()?;
    let development = if is_development(&first) {
        // Checked first with stand-ins for the generated secrets, so a start
        // that fails for another setting writes no secrets file.
        let mut with_placeholders = RawSettings::load(config_file)?;
        config::add_placeholder_secrets(&mut with_placeholders);
        with_placeholders.validate()?.check_ready_to_serve()?;
        config::add_development_secrets(&mut raw, &first.data_dir)?
    } else {
        None
    };
    let settings = raw.validate()?;
    settings.check_ready_to_serve()?;
    Ok((settings, development))
}

async fn serve(config_file: Option<&Path>) -> Result<(), CliError> {
    let (settings, development) = service_settings(config_file)?;
    if let Some(path) = development {
        tracing::warn!(path = %path.display(), "using development secrets for settings that are not configured; read them from this file");
    }
    for variable in config::unknown_environment_variables() {
        tracing::warn!(%variable, "ignoring an environment variable that is not a setting; check its spelling against docs/operations.md");
    }
    tracing::info!(
        per_nurse_figures = settings.per_nurse_figures,
        nurse_feedback = settings.nurse_feedback,
        privacy_notice = settings.privacy_url.is_some(),
        "{}",
        settings.optional_features()
    );
    let data_dir = settings.data_dir.clone();
    let application = startup::build(settings)?;
    tracing::info!(address = %application.address, data_dir = %data_dir.display(), "service listening");
    application.run_until_stopped().await?;
    tracing::info!("service stopped");
    Ok(())
}

/// Development mode: a loopback address without an https public URL. Only
/// then are missing secrets generated; behind a proxy with an https public
/// URL every secret must be configured, as on a public address.
fn is_development(settings: &Settings) -> bool {
    settings.listen.ip().is_loopback() && settings.public_url.scheme() != "https"
}

fn check_config(config_file: Option<&Path>) -> Result<(), CliError> {
    for variable in config::unknown_environment_variables() {
        eprintln!("warning: {variable} is not a setting and is ignored; check its spelling against docs/operations.md");
    }
    let raw = RawSettings::load(config_file)?;
    let settings = raw.validate()?;
    if !is_development(&settings) {
        settings.check_ready_to_serve()?;
        println!("configuration is valid; the service will listen on {}", settings.listen);
        return Ok(());
    }

    // Check as `serve` will: with the generated secrets filled in, which
    // stand in here for the real ones, so nothing is written.
    let mut with_generated = RawSettings::load(config_file)?;
    let generated: Vec<&str> = config::DEVELOPMENT_SECRETS
        .iter()
        .copied()
        .filter(|key| !raw.is_set(key))
        .collect();
    config::add_placeholder_secrets(&mut with_generated);
    with_generated.validate()?.check_ready_to_serve()?;
    if generated.is_empty() {
        println!("configuration is valid; the service will listen on {}", settings.listen);
    } else {
        println!(
            "configuration is valid for local development on {}; these settings are not configured, so \
             the service uses generated ones from {} (written at its first start): {}",
            settings.listen,
            settings.data_dir.join("dev-secrets.toml").display(),
            generated
                .iter()
                .map(|key| format!("ALLIANCE_{}", key.to_ascii_uppercase()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// Returns the secret that a secret file holds: the whole file, or the
/// first of `webhook_secrets` when the file is TOML with that key, as the
/// development secrets file `dev-secrets.toml` is.
fn secret_text(text: &str) -> String {
    let first_secret = toml::from_str::<toml::Table>(text).ok().and_then(|table| {
        let first = match table.get("webhook_secrets")? {
            toml::Value::String(secrets) => secrets.split(',').next()?,
            toml::Value::Array(secrets) => secrets.first()?.as_str()?,
            _ => return None,
        };
        Some(first.trim().to_string())
    });
    first_secret.unwrap_or_else(|| text.trim_end_matches(['\n', '\r']).to_string())
}

fn sign(
    config_file: Option<&Path>,
    secret_file: &Path,
    id: &str,
    body_file: &Path,
    url: Option<&str>,
) -> Result<(), CliError> {
    let text = std::fs::read_to_string(secret_file)
        .map_err(|error| format!("cannot read secret file {}: {error}", secret_file.display()))?;
    let secret = WebhookSecret::parse(&secret_text(&text))
        .map_err(|problem| format!("the secret in {} {problem}", secret_file.display()))?;
    let body =
        std::fs::read(body_file).map_err(|error| format!("cannot read body file {}: {error}", body_file.display()))?;
    if id.is_empty() || id.contains(char::is_whitespace) {
        return Err(CliError::Failed(
            "--id must be a non-empty webhook id without white space".into(),
        ));
    }
    let url = match url {
        Some(url) => url.to_string(),
        None => {
            let settings = RawSettings::load(config_file)?.validate()?;
            format!("http://{}/webhooks/chat-ended", settings.listen)
        }
    };
    reqwest::Url::parse(&url).map_err(|error| format!("--url {url:?} is not a URL ({error})"))?;

    let timestamp = startup::now_millis() / 1000;
    let signature = secret.sign(id, timestamp, &body);
    let body_argument = format!("@{}", body_file.display());
    let curl = format!(
        "curl -sS -X POST {} -H 'Content-Type: application/json' -H {} -H {} -H {} --data-binary {}",
        shell_quote(&url),
        shell_quote(&format!("webhook-id: {id}")),
        shell_quote(&format!("webhook-timestamp: {timestamp}")),
        shell_quote(&format!("webhook-signature: {signature}")),
        shell_quote(&body_argument),
    );
    print_to_stdout(&format!(
        "webhook-id: {id}\nwebhook-timestamp: {timestamp}\nwebhook-signature: {signature}\n\n{curl}\n\n\
         The signature is valid for 300 seconds from now.\n"
    ));
    Ok(())
}

/// Quotes a value for a POSIX shell: single quotes, with each `'` written as `'\''`.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

async fn report_command(
    config_file: Option<&Path>,
    filter: ReportFilter,
    format: Format,
    server: Option<String>,
) -> Result<(), CliError> {
    let settings = RawSettings::load(config_file)?.validate()?;
    let built = match server {
        Some(url) => fetch_report(&settings, &url, &filter).await?,
        None => {
            let store = Store::open(&settings.data_dir, settings.cache_bytes).map_err(|error| {
                format!(
                    "cannot open the store in {} ({error}); if a service is running on it, \
                     use --server URL to ask the service instead",
                    settings.data_dir.display()
                )
            })?;
            let options = report::ReportOptions {
                min_cell_size: u64::from(settings.min_cell_size),
                bootstrap: true,
            };
            report::build_with(&store, &filter, startup::now_millis(), &options).map_err(|error| error.to_string())?
        }
    };
    print_report(&built, format);
    Ok(())
}

fn purge_command(config_file: Option<&Path>, dry_run: bool) -> Result<(), CliError> {
    let settings = RawSettings::load(config_file)?.validate()?;
    if !settings.data_dir.exists() {
        return Err(CliError::Failed(format!(
            "no store found: {} does not exist; set ALLIANCE_DATA_DIR to the service's data directory",
            settings.data_dir.display()
        )));
    }
    let store = Store::open(&settings.data_dir, settings.cache_bytes).map_err(|error| {
        format!(
            "cannot open the store in {} ({error}); if a service is running on it, stop it first \
             or let it purge by itself (it does once a day)",
            settings.data_dir.display()
        )
    })?;
    let mut reported = 0;
    let summary = crate::retention::purge(
        &store,
        startup::now_millis(),
        settings.retention_days,
        dry_run,
        |done| {
            // Progress comes per batch: a line each time it passes 10 000 more.
            if done / 10_000 > reported / 10_000 {
                let verb = if dry_run { "counted" } else { "purged" };
                eprintln!("{done} chats {verb}");
                reported = done;
            }
        },
    )
    .map_err(|error| format!("the purge stopped: {error}; what was purged so far is saved, run it again"))?;
    store
        .flush_blocking()
        .map_err(|error| format!("cannot write the store: {error}"))?;
    print_to_stdout(&summary.to_string());
    Ok(())
}

/// Describes an HTTP client error with its causes, such as "error sending
/// request …: client error (Connect): tcp connect error: Connection refused",
/// because the error's own message leaves out why the request failed.
pub fn describe_http_error(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Writes `text` to standard output. A closed pipe (`alliance purge | head -1`)
/// ends the output without a panic, because the command's work is done.
fn print_to_stdout(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

pub fn print_report(built: &report::Report, format: Format) {
    let text = match format {
        Format::Text => report::text::render(built),
        Format::Json => serde_json::to_string_pretty(built).expect("the report serialises") + "\n",
    };
    print_to_stdout(&text);
}

async fn fetch_report(settings: &Settings, server: &str, filter: &ReportFilter) -> Result<report::Report, CliError> {
    let token = settings
        .admin_token
        .as_ref()
        .ok_or_else(|| CliError::Failed("set ALLIANCE_ADMIN_TOKEN to ask a running service for the report (a service that generated its own secrets wrote the admin token to dev-secrets.toml in its data directory)".into()))?;
    let mut url = reqwest::Url::parse(server)
        .map_err(|error| format!("--server {server:?} is not a URL ({error})"))?
        .join("api/admin/report")
        .map_err(|error| format!("--server {server:?} cannot be joined with the report path ({error})"))?;
    {
        let mut query = url.query_pairs_mut();
        if let Some(from) = filter.from {
            query.append_pair("from", &from.to_string());
        }
        if let Some(to) = filter.to {
            query.append_pair("to", &to.to_string());
        }
    }
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(token.expose())
        .send()
        .await
        .map_err(|error| format!("cannot reach {server}: {}", describe_http_error(&error)))?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        return Err(CliError::Failed(format!("{server} answered {status}: {body}")));
    }
    let value: serde_json::Value = response
        .json()
        .await
        .map_err(|error| format!("the report from {server} is not JSON: {error}"))?;
    report::Report::from_json(value)
        .map_err(|error| CliError::Failed(format!("the report from {server} has an unexpected shape: {error}")))
}
