//! `alliance bench`: a load tool for the webhook intake on loopback.
//!
//! Each round runs a `GET /healthz` phase as the baseline and then a phase of
//! freshly signed chat-ended webhooks, with the same client, connection pool
//! and number of requests in flight. A baseline request carries a signed
//! webhook's headers and body too, so the client does the same work for
//! both and the ratio compares the service's work only. Between rounds it waits until a
//! recording platform has accepted every invitation, so background delivery
//! of one round does not slow the next baseline. `--delivery-latency`
//! measures the time from each `202` to both invitations accepted.
//! `--fill N` writes chats straight into a new store instead.

pub mod fill;
mod load;
mod recorder;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;

use crate::cli::CliError;
use crate::config::{RawSettings, Settings};
use crate::demo::loopback::{self, LoopbackSecrets};
use crate::shutdown::StopSignals;
use crate::startup;
use load::{Pace, PhaseResult, Target, Workload};
use recorder::RecordingPlatform;

/// Maximum length of a phase in seconds. Every webhook of a phase is signed just before it
/// starts, and the service rejects signatures older than 300 seconds.
const MAX_PHASE_SECONDS: u64 = 240;
/// Largest number of requests in one phase; every webhook is kept in memory.
const MAX_REQUESTS: usize = 500_000;
/// How long a round waits for the platform to accept the round's invitations.
const DELIVERY_WAIT: Duration = Duration::from_secs(120);

#[derive(Args)]
pub struct BenchArgs {
    /// Load this running service (loopback only, e.g. http://127.0.0.1:8080)
    /// instead of starting one on a temporary store. The recording platform
    /// then listens on the service's ALLIANCE_PLATFORM_URL, and the secrets
    /// come from the same configuration as the service's. The bench's chats
    /// stay in that service's store, so use a test store, never a real one.
    #[arg(long, value_name = "URL")]
    target: Option<String>,
    /// Requests per phase: webhooks in a webhook phase, health checks in a baseline phase.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Requests in flight (closed loop); with --rate, the most in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Start requests at this rate per second (open loop) instead of keeping
    /// --concurrency requests in flight.
    #[arg(long, value_name = "PER_SECOND")]
    rate: Option<f64>,
    /// Rounds; each runs a baseline phase and a webhook phase.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Time limit of one phase in seconds, at most 240.
    #[arg(long, default_value_t = 60)]
    max_seconds: u64,
    /// Measure the time from each acknowledged webhook (202) to both of its
    /// invitations accepted by the platform; skips the baseline phases.
    #[arg(long)]
    delivery_latency: bool,
    /// Instead of loading a service, write this many chats (with delivered
    /// invitations) into the new or empty store directory given by --data-dir.
    #[arg(long, value_name = "CHATS", requires = "data_dir")]
    fill: Option<usize>,
    /// Store directory for --fill.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Writer threads for --fill.
    #[arg(long, default_value_t = 2)]
    fill_threads: usize,
}

/// The loaded service and what must be stopped afterwards.
struct Setup {
    base_url: String,
    secrets: LoopbackSecrets,
    platform: RecordingPlatform,
    in_process: Option<(actix_web::dev::ServerHandle, actix_web::web::Data<startup::AppState>)>,
    /// Keeps the temporary store until the run ends.
    temporary_store: Option<tempfile::TempDir>,
}

pub async fn run(config_file: Option<&Path>, arguments: BenchArgs) -> Result<(), CliError> {
    if let Some(count) = arguments.fill {
        return run_fill(config_file, &arguments, count);
    }
    validate(&arguments)?;
    // From here on a stop signal no longer ends the process at once, so the
    // bench can stop its service and remove its temporary store first.
    let mut signals = StopSignals::listen();
    let setup = set_up(config_file, &arguments).await?;
    // `Err` contains a stop signal that came before the rounds were done.
    let finished = tokio::select! {
        outcome = run_rounds(&setup, &arguments) => Ok(outcome),
        signal = signals.next() => Err(signal),
    };
    let outcome = match finished {
        Ok(outcome) => outcome,
        Err(signal) => {
            let Setup {
                in_process,
                temporary_store,
                ..
            } = setup;
            return Err(loopback::stop_on_signal(signal, in_process, temporary_store).await);
        }
    };

    if let Some((handle, state)) = &setup.in_process {
        handle.stop(false).await;
        state.stop().await;
    }
    setup.platform.stop().await;
    outcome
}

fn validate(arguments: &BenchArgs) -> Result<(), CliError> {
    let fail = |message: &str| Err(CliError::Failed(message.into()));
    if arguments.requests == 0 || arguments.requests > MAX_REQUESTS {
        return fail("--requests must be between 1 and 500000");
    }
    if !(1..=1024).contains(&arguments.concurrency) {
        return fail("--concurrency must be between 1 and 1024");
    }
    if !(1..=20).contains(&arguments.rounds) {
        return fail("--rounds must be between 1 and 20");
    }
    if !(1..=MAX_PHASE_SECONDS).contains(&arguments.max_seconds) {
        return fail("--max-seconds must be between 1 and 240, because webhook signatures expire after 300 s");
    }
    let valid_rate = |rate: f64| rate.is_finite() && (0.1..=1_000_000.0).contains(&rate);
    if arguments.rate.is_some_and(|rate| !valid_rate(rate)) {
        return fail("--rate must be between 0.1 and 1000000 requests per second");
    }
    Ok(())
}

fn run_fill(config_file: Option<&Path>, arguments: &BenchArgs, count: usize) -> Result<(), CliError> {
    if count == 0 || count > 10_000_000 {
        return Err(CliError::Failed("--fill must be between 1 and 10000000 chats".into()));
    }
    let dir = arguments
        .data_dir
        .as_deref()
        .expect("clap requires --data-dir with --fill");
    let settings = RawSettings::load(config_file)?.validate()?;
    let started = Instant::now();
    let written = fill::fill(
        dir,
        settings.cache_bytes,
        count,
        arguments.fill_threads.clamp(1, 16),
        Duration::from_secs(3_600),
    )?;
    println!(
        "wrote {written} chats into {} in {:.1} s ({:.0} chats per second)",
        dir.display(),
        started.elapsed().as_secs_f64(),
        written as f64 / started.elapsed().as_secs_f64().max(1e-9)
    );
    Ok(())
}

async fn set_up(config_file: Option<&Path>, arguments: &BenchArgs) -> Result<Setup, CliError> {
    match &arguments.target {
        None => {
            let directory = tempfile::Builder::new()
                .prefix("alliance-bench-")
                .tempdir()
                .map_err(|error| format!("cannot create a temporary store: {error}"))?;
            let secrets = LoopbackSecrets::generate();
            let platform = RecordingPlatform::start(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                "",
                secrets.platform_token.clone(),
                secrets.signing_secret.clone(),
            )?;
            let settings = bench_settings(config_file, directory.path(), &secrets, platform.address)?;
            let application = startup::build(settings)?;
            let base_url = format!("http://{}", application.address);
            let in_process = Some((application.handle.clone(), application.state.clone()));
            tokio::spawn(application.server);
            Ok(Setup {
                base_url,
                secrets,
                platform,
                in_process,
                temporary_store: Some(directory),
            })
        }
        Some(target) => {
            let base_url = loopback_target(target)?;
            let (settings, _) = crate::cli::service_settings(config_file)?;
            let secrets = LoopbackSecrets::from_settings(&settings)?;
            let location = loopback::platform_location(&settings, "recording platform")?;
            let platform = RecordingPlatform::start(
                location.address,
                &location.path,
                secrets.platform_token.clone(),
                secrets.signing_secret.clone(),
            )?;
            Ok(Setup {
                base_url,
                secrets,
                platform,
                in_process: None,
                temporary_store: None,
            })
        }
    }
}

/// Settings of the bench's own service: loopback, a temporary store and the
/// recording platform. Other settings (such as ALLIANCE_CACHE_MB) come from
/// the environment and the config file. Delivery is not rate-limited unless
/// ALLIANCE_DELIVERY_RATE_PER_SECOND says so, because the platform is ours.
fn bench_settings(
    config_file: Option<&Path>,
    data_dir: &Path,
    secrets: &LoopbackSecrets,
    platform: SocketAddr,
) -> Result<Settings, CliError> {
    let mut raw = RawSettings::load(config_file)?;
    let source = || "alliance bench".to_string();
    let own = [
        ("listen", "127.0.0.1:0".to_string()),
        ("admin_token", crate::token::hex(&rand::random::<[u8; 32]>())),
    ];
    for (key, value) in own.into_iter().chain(secrets.service_settings(data_dir, platform)) {
        raw.set(key, value, source());
    }
    raw.set_default("delivery_rate_per_second", "0".into(), source());
    let settings = raw.validate()?;
    settings.check_ready_to_serve()?;
    Ok(settings)
}

/// Checks that `target` is an http URL on a loopback IP address.
fn loopback_target(target: &str) -> Result<String, CliError> {
    let url = reqwest::Url::parse(target).map_err(|error| format!("--target {target:?} is not a URL ({error})"))?;
    let loopback = url
        .host_str()
        .map(|host| host.trim_start_matches('[').trim_end_matches(']'))
        .and_then(|host| host.parse::<std::net::IpAddr>().ok())
        .is_some_and(|address| address.is_loopback());
    if url.scheme() != "http" || !loopback {
        return Err(CliError::Failed(format!(
            "--target {target:?} must be an http URL on a loopback address such as http://127.0.0.1:8080; \
             the bench never loads other hosts"
        )));
    }
    Ok(target.trim_end_matches('/').to_string())
}

/// Results of all rounds.
#[derive(Default)]
struct Totals {
    healthz_rates: Vec<f64>,
    webhook_rates: Vec<f64>,
    ratios: Vec<f64>,
    webhook_p99_ms: Vec<f64>,
    delivery_us: Vec<u64>,
    delivery_from_send_us: Vec<u64>,
    undelivered: usize,
}

async fn run_rounds(setup: &Setup, arguments: &BenchArgs) -> Result<(), CliError> {
    let target = Target::new(&setup.base_url, arguments.concurrency)?;
    let pace = match arguments.rate {
        Some(per_second) => Pace::Rate {
            per_second,
            max_in_flight: arguments.concurrency,
        },
        None => Pace::Concurrency(arguments.concurrency),
    };
    let time_limit = Duration::from_secs(arguments.max_seconds);
    let run = crate::token::hex(&rand::random::<[u8; 4]>());
    let run_id = format!("bench-{run}");
    // The baseline's ids have the same length, so its requests have the same bytes.
    let baseline_id = format!("probe-{run}");
    let in_process = if setup.in_process.is_some() {
        "in-process service on a temporary store"
    } else {
        "running service"
    };
    println!(
        "alliance bench: {} ({in_process}), {} rounds of {} requests, {}; load average {}",
        setup.base_url,
        arguments.rounds,
        arguments.requests,
        describe(pace),
        load_average()
    );
    println!(
        "{:<6} {:<9} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "round", "phase", "ok", "per s", "p50 ms", "p90 ms", "p99 ms", "max ms", "failed"
    );

    let mut totals = Totals::default();
    let mut acknowledged_so_far = 0u64;
    let mut all_delivered = true;
    for round in 1..=arguments.rounds {
        let prepare = |run: &str| {
            let first = (round - 1) * arguments.requests;
            load::prepare_webhooks(&setup.secrets.webhook_secret, run, first, arguments.requests)
        };
        let mut healthz_rate = None;
        if !arguments.delivery_latency {
            // Signed like the webhooks, so the client does the same work for
            // each request; the health check ignores headers and body.
            let result = target
                .run_phase(Workload::Healthz(prepare(&baseline_id)), pace, time_limit)
                .await;
            print_phase(round, "healthz", &result);
            check_failures("GET /healthz", &result)?;
            healthz_rate = Some(result.per_second());
            totals.healthz_rates.push(result.per_second());
        }

        let webhooks = prepare(&run_id);
        let result = target.run_phase(Workload::Webhooks(webhooks), pace, time_limit).await;
        print_phase(round, "webhook", &result);
        check_failures("POST /webhooks/chat-ended", &result)?;
        totals.webhook_rates.push(result.per_second());
        totals.webhook_p99_ms.push(result.percentile_ms(99.0));
        // At a set rate both phases run at that rate, so their ratio says nothing.
        if let (Some(healthz_rate), Pace::Concurrency(_)) = (healthz_rate, pace) {
            let ratio = result.per_second() / healthz_rate;
            totals.ratios.push(ratio);
            println!("{round:<6} {:<9} {ratio:>8.2}", "ratio");
        }

        acknowledged_so_far += result.ok as u64;
        let drained = wait_for_delivery(&setup.platform, acknowledged_so_far * 2).await;
        if arguments.delivery_latency {
            let (mut from_ack, from_send) = delivery_latencies(&setup.platform, &result);
            totals.undelivered += result.ok - from_ack.len();
            from_ack.sort_unstable();
            print_delivery(round, &from_ack, result.ok);
            totals.delivery_us.extend(from_ack);
            totals.delivery_from_send_us.extend(from_send);
        }
        if !drained {
            all_delivered = false;
            println!(
                "{round:<6} the platform accepted {} of {} invitations within {} s",
                setup.platform.accepted(),
                acknowledged_so_far * 2,
                DELIVERY_WAIT.as_secs()
            );
        }
    }

    print_summary(&totals, setup, arguments);
    if !all_delivered {
        return Err(CliError::Failed(format!(
            "the platform accepted {} of {} invitations; the service log says why the others were not \
             delivered (with --target, check that ALLIANCE_PLATFORM_URL is where the bench's platform listens, \
             and that the service's ALLIANCE_DELIVERY_RATE_PER_SECOND, 200 by default, can deliver two \
             invitations per request within {} s)",
            setup.platform.accepted(),
            acknowledged_so_far * 2,
            DELIVERY_WAIT.as_secs()
        )));
    }
    Ok(())
}

fn describe(pace: Pace) -> String {
    match pace {
        Pace::Concurrency(concurrency) => format!("{concurrency} in flight"),
        Pace::Rate {
            per_second,
            max_in_flight,
        } => format!("{per_second} per second, at most {max_in_flight} in flight"),
    }
}

/// The 1, 5 and 15 minute load averages from /proc/loadavg, or "unknown".
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn print_phase(round: usize, phase: &str, result: &PhaseResult) {
    println!(
        "{round:<6} {phase:<9} {:>8} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7}{}",
        result.ok,
        result.per_second(),
        result.percentile_ms(50.0),
        result.percentile_ms(90.0),
        result.percentile_ms(99.0),
        result.percentile_ms(100.0),
        result.failed,
        if result.timed_out {
            format!("  (stopped at the time limit after {} requests)", result.sent)
        } else {
            String::new()
        }
    );
    if result.max_start_lag > Duration::from_millis(5) {
        println!(
            "{round:<6} {phase:<9} the client started a request up to {:.1} ms late; the rate was not held",
            result.max_start_lag.as_secs_f64() * 1000.0
        );
    }
}

/// Fails the run when more than 1 % of a phase's requests failed, because
/// the rates would then measure error answers.
fn check_failures(what: &str, result: &PhaseResult) -> Result<(), CliError> {
    if let Some(failure) = &result.first_failure {
        eprintln!(
            "{what}: {} of {} requests failed; the first: {failure}",
            result.failed, result.sent
        );
    }
    if result.failed * 100 > result.sent {
        return Err(CliError::Failed(format!(
            "{what}: {} of {} requests failed, so the figures are not valid",
            result.failed, result.sent
        )));
    }
    Ok(())
}

/// Waits until the platform has accepted `expected` invitations, at most
/// [`DELIVERY_WAIT`]. Returns whether it did.
async fn wait_for_delivery(platform: &RecordingPlatform, expected: u64) -> bool {
    let started = Instant::now();
    while started.elapsed() < DELIVERY_WAIT {
        if platform.accepted() >= expected {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rejected = platform.rejected();
    if rejected > 0 {
        eprintln!("the recording platform rejected {rejected} requests; check the platform token and signing secret");
    }
    false
}

/// Microseconds to the second invitation's arrival, from each
/// acknowledgement and from each webhook's send, for the webhooks whose
/// invitations both arrived. An invitation can arrive before the client has
/// read the `202`; that counts as 0.
fn delivery_latencies(platform: &RecordingPlatform, result: &PhaseResult) -> (Vec<u64>, Vec<u64>) {
    let mut from_ack = Vec::with_capacity(result.acknowledged.len());
    let mut from_send = Vec::with_capacity(result.acknowledged.len());
    for (chat_id, sent, acknowledged) in &result.acknowledged {
        let Some(both) = platform.arrivals(chat_id).both() else {
            continue;
        };
        from_ack.push(both.saturating_duration_since(*acknowledged).as_micros() as u64);
        from_send.push(both.saturating_duration_since(*sent).as_micros() as u64);
    }
    (from_ack, from_send)
}

fn print_delivery(round: usize, sorted_us: &[u64], acknowledged: usize) {
    let ms = |percent: f64| load::percentile_us(sorted_us, percent) as f64 / 1000.0;
    println!(
        "{round:<6} {:<9} {:>8} {:>10} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7}",
        "delivery",
        sorted_us.len(),
        "",
        ms(50.0),
        ms(90.0),
        ms(99.0),
        ms(100.0),
        acknowledged - sorted_us.len()
    );
}

/// Median of sorted, non-empty values: the mean of the middle two for an even count.
fn median(sorted: &[f64]) -> f64 {
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 0 {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    }
}

fn print_summary(totals: &Totals, setup: &Setup, arguments: &BenchArgs) {
    println!();
    let spread = |values: &[f64], decimals: usize| {
        if values.is_empty() {
            return "none".to_string();
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        format!(
            "median {:.*} (min {:.*}, max {:.*})",
            decimals,
            median(&sorted),
            decimals,
            sorted[0],
            decimals,
            sorted[sorted.len() - 1]
        )
    };
    if !totals.healthz_rates.is_empty() {
        println!("GET /healthz per second:     {}", spread(&totals.healthz_rates, 0));
    }
    println!("webhooks acknowledged per s: {}", spread(&totals.webhook_rates, 0));
    println!("webhook p99 latency (ms):    {}", spread(&totals.webhook_p99_ms, 2));
    if !totals.ratios.is_empty() {
        println!("webhook / healthz ratio:     {}", spread(&totals.ratios, 2));
    }
    if arguments.delivery_latency {
        let mut all = totals.delivery_us.clone();
        all.sort_unstable();
        let ms = |percent: f64| load::percentile_us(&all, percent) as f64 / 1000.0;
        println!(
            "delivery latency, all rounds: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} chats; \
             {} chats without both invitations",
            ms(50.0),
            ms(90.0),
            ms(99.0),
            ms(100.0),
            all.len(),
            totals.undelivered
        );
        let mut from_send = totals.delivery_from_send_us.clone();
        from_send.sort_unstable();
        let ms = |percent: f64| load::percentile_us(&from_send, percent) as f64 / 1000.0;
        println!(
            "the same from sending the webhook: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(50.0),
            ms(90.0),
            ms(99.0),
            ms(100.0)
        );
    }
    println!(
        "platform accepted {} invitations, rejected {} requests; load average now {}",
        setup.platform.accepted(),
        setup.platform.rejected(),
        load_average()
    );
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_even_count_is_middle_mean() {
        assert_eq!(median(&[0.3, 0.5]), 0.4);
        assert_eq!(median(&[1.0, 2.0, 3.0, 10.0]), 2.5);
        assert_eq!(median(&[0.2, 0.4, 0.9]), 0.4);
        assert_eq!(median(&[7.0]), 7.0);
    }
}
