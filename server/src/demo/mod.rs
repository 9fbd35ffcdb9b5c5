//! `alliance demo`: starts the real service on a temporary store (or uses a
//! running one with `--target`), starts a simulated chat platform on
//! loopback, replays the 2022 study through HTTP and prints the report.

pub mod loopback;
pub mod platform;
pub mod replay;
pub mod study;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use crate::cli::{CliError, Format, print_report};
use crate::config::{RawSettings, Settings};
use crate::report::Report;
use crate::shutdown::StopSignals;
use crate::startup;
use loopback::LoopbackSecrets;
use platform::SimulatedPlatform;
use replay::Replay;

#[derive(Args)]
pub struct DemoArgs {
    /// Exit after printing the report instead of running until Ctrl-C.
    #[arg(long)]
    exit: bool,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Replay against this running service instead of starting one. The
    /// simulated platform then listens on the service's ALLIANCE_PLATFORM_URL,
    /// and the secrets come from the same configuration as the service's.
    #[arg(long, value_name = "URL")]
    target: Option<String>,
    /// Concurrent requests of the replay.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Share of platform requests, 0 to 1, that the simulated platform fails with 503.
    #[arg(long, default_value_t = 0.0)]
    platform_failure_rate: f64,
    /// Write a JSON summary of the replay (fingerprint, platform counts, timing) to this file.
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,
}

/// Secrets shared by the replay, the simulated platform and the service,
/// and the admin token the demo fetches the report with.
struct DemoSecrets {
    loopback: LoopbackSecrets,
    admin_token: String,
}

impl DemoSecrets {
    fn generate() -> Self {
        Self {
            loopback: LoopbackSecrets::generate(),
            admin_token: crate::token::hex(&rand::random::<[u8; 32]>()),
        }
    }

    fn from_settings(settings: &Settings) -> Result<Self, CliError> {
        Ok(Self {
            loopback: LoopbackSecrets::from_settings(settings)?,
            admin_token: settings
                .admin_token
                .as_ref()
                .ok_or_else(|| loopback::missing_for_target("ALLIANCE_ADMIN_TOKEN"))?
                .expose()
                .to_string(),
        })
    }
}

pub async fn run(config_file: Option<&Path>, arguments: DemoArgs) -> Result<(), CliError> {
    if !(0.0..=1.0).contains(&arguments.platform_failure_rate) {
        return Err(CliError::Failed(
            "--platform-failure-rate must be between 0 and 1".into(),
        ));
    }
    if arguments.concurrency == 0 {
        return Err(CliError::Failed("--concurrency must be at least 1".into()));
    }
    let started = Instant::now();
    // From here on a stop signal no longer ends the process at once, so the
    // demo can stop its service and remove its temporary store first.
    let mut signals = StopSignals::listen();

    let mut temporary_store = None;
    let mut running_service = None;
    let (target, secrets, platform) = match &arguments.target {
        None => {
            let directory = tempfile::Builder::new()
                .prefix("alliance-demo-")
                .tempdir()
                .map_err(|error| format!("cannot create a temporary store: {error}"))?;
            let secrets = DemoSecrets::generate();
            let platform = SimulatedPlatform::start(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                "",
                secrets.loopback.platform_token.clone(),
                secrets.loopback.signing_secret.clone(),
                arguments.platform_failure_rate,
            )?;
            let settings = demo_settings(config_file, directory.path(), &secrets, platform.address)?;
            let application = startup::build(settings)?;
            let target = format!("http://{}", application.address);
            let handle = application.handle.clone();
            let state = application.state.clone();
            tokio::spawn(application.server);
            running_service = Some((handle, state));
            temporary_store = Some(directory);
            (target, secrets, platform)
        }
        Some(target) => {
            let (settings, _) = crate::cli::service_settings(config_file)?;
            let secrets = DemoSecrets::from_settings(&settings)?;
            let location = loopback::platform_location(&settings, "simulated platform")?;
            let platform = SimulatedPlatform::start(
                location.address,
                &location.path,
                secrets.loopback.platform_token.clone(),
                secrets.loopback.signing_secret.clone(),
                arguments.platform_failure_rate,
            )?;
            (target.trim_end_matches('/').to_string(), secrets, platform)
        }
    };
    let platform = Arc::new(platform);

    tokio::select! {
        replayed = replay_and_report(&arguments, &target, &secrets, &platform, started) => replayed?,
        signal = signals.next() => {
            return Err(loopback::stop_on_signal(signal, running_service, temporary_store).await);
        }
    }

    if let Some((_, state)) = &running_service {
        if !arguments.exit {
            let link = crate::routes::dashboard::create_login_link(state);
            eprintln!("Dashboard (one-time login link, valid for 15 minutes): {link}");
        }
    }
    let mut stopped_by = None;
    if !arguments.exit {
        eprintln!("The service keeps running at {target}; press Ctrl-C to stop.");
        stopped_by = Some(signals.next().await);
    }
    if let Some((handle, state)) = running_service {
        // Every answer is stored and flushed by now, so nothing waits on a graceful stop.
        handle.stop(false).await;
        state.stop().await;
    }
    platform.stop().await;
    if let (Some(signal), Some(directory)) = (stopped_by, temporary_store) {
        eprintln!(
            "Stopped by {}; {}",
            signal.name(),
            loopback::remove_temporary_store(directory)
        );
    }
    Ok(())
}

/// Replays the study against `target`, prints the report and the replay's
/// figures, and writes the summary file when one is asked for.
async fn replay_and_report(
    arguments: &DemoArgs,
    target: &str,
    secrets: &DemoSecrets,
    platform: &Arc<SimulatedPlatform>,
    started: Instant,
) -> Result<(), CliError> {
    eprintln!("Replaying the 2022 GroeiGids study against {target}");
    let dataset = study::build();
    let fingerprint = study::fingerprint(&study::pair_scores());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(arguments.concurrency)
        .build()
        .map_err(|error| format!("cannot build the HTTP client: {error}"))?;
    let replay = Replay {
        client: client.clone(),
        target: target.to_string(),
        webhook_secret: secrets.loopback.webhook_secret.clone(),
        platform: platform.clone(),
        concurrency: arguments.concurrency,
        retries: AtomicU64::new(0),
    };

    eprintln!(
        "Step 1 of 3: sending {} signed chat-ended webhooks",
        dataset.chats.len()
    );
    replay.send_webhooks(&dataset.chats).await?;
    let webhooks_done = started.elapsed();
    eprintln!("Step 2 of 3: waiting until the platform has both invitations of every chat");
    replay
        .wait_for_invitations(dataset.chats.len() * 2, Duration::from_secs(300))
        .await?;
    eprintln!("Step 3 of 3: answering the questionnaires through the questionnaire API");
    replay.answer(&dataset.chats).await?;
    let replay_done = started.elapsed();

    let report = fetch_report(&client, target, &secrets.admin_token).await?;
    print_report(&report, arguments.format);

    let stats = platform.stats();
    eprintln!(
        "Replayed {} chats in {:.1} s (webhooks {:.1} s); platform accepted {} invitations, \
         {} repeated idempotency keys, {} invitations under several keys; dataset fingerprint {fingerprint}",
        dataset.chats.len(),
        replay_done.as_secs_f64(),
        webhooks_done.as_secs_f64(),
        stats.accepted,
        stats.repeated_keys,
        stats.invitations_with_several_keys,
    );
    if let Some(path) = &arguments.summary {
        let summary = json!({
            "chats": dataset.chats.len(),
            "fingerprint": fingerprint,
            "platform": stats,
            "client_retries": replay.retries.load(std::sync::atomic::Ordering::Relaxed),
            "replay_seconds": replay_done.as_secs_f64(),
            "webhook_seconds": webhooks_done.as_secs_f64(),
        });
        std::fs::write(path, serde_json::to_vec_pretty(&summary).expect("JSON serialises"))
            .map_err(|error| format!("cannot write summary {}: {error}", path.display()))?;
    }
    Ok(())
}

/// Settings of the demo's own service: loopback, a temporary store, the
/// simulated platform, and fresh secrets that are never printed.
fn demo_settings(
    config_file: Option<&Path>,
    data_dir: &Path,
    secrets: &DemoSecrets,
    platform: SocketAddr,
) -> Result<Settings, CliError> {
    // A fixed port, so the questionnaire links and the login link carry the
    // address the service really listens on.
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|error| format!("cannot find a free port on 127.0.0.1: {error}"))?;
    let mut raw = RawSettings::load(config_file)?;
    let own = [
        ("listen", listen.to_string()),
        ("public_url", format!("http://{listen}")),
        ("admin_token", secrets.admin_token.clone()),
    ];
    for (key, value) in own
        .into_iter()
        .chain(secrets.loopback.service_settings(data_dir, platform))
    {
        raw.set(key, value, "the demo".into());
    }
    // The simulated platform takes any rate; the default limit protects real ones.
    raw.set("delivery_rate_per_second", "0".into(), "the demo".into());
    let settings = raw.validate()?;
    settings.check_ready_to_serve()?;
    Ok(settings)
}

async fn fetch_report(client: &reqwest::Client, target: &str, admin_token: &str) -> Result<Report, CliError> {
    // A service that restarts (as the crash test makes it) closes and then
    // refuses connections for a moment, so failed sends of this idempotent
    // GET are retried for 30 s.
    let started = std::time::Instant::now();
    let response = loop {
        let sent = client
            .get(format!("{target}/api/admin/report"))
            .bearer_auth(admin_token)
            .send()
            .await;
        match sent {
            Ok(response) => break response,
            Err(_) if started.elapsed() < std::time::Duration::from_secs(30) => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(error) => return Err(format!("cannot fetch the report from {target}: {error}").into()),
        }
    };
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(CliError::Failed(format!(
            "the report request answered {status}: {text}"
        )));
    }
    let value: serde_json::Value = response
        .json()
        .await
        .map_err(|error| format!("the report is not JSON: {error}"))?;
    Report::from_json(value).map_err(|error| CliError::Failed(format!("the report has an unexpected shape: {error}")))
}
