//! The load client: pre-signed webhooks, closed-loop and open-loop phases,
//! and latency percentiles.
//!
//! Both request kinds go through the same `reqwest` client, with the same
//! connection pool and the same number of requests in flight, so a webhook
//! phase and a `/healthz` phase differ only in what the service does.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::signature::WebhookSecret;
use crate::startup::now_millis;

/// One signed `POST /webhooks/chat-ended`, ready to send.
pub struct PreparedWebhook {
    pub chat_id: String,
    /// Shared, so sending it does not copy it.
    body: actix_web::web::Bytes,
    /// The three signature headers, checked once here rather than on every send.
    headers: [(HeaderName, HeaderValue); 3],
}

/// Signs `count` chat-ended webhooks with fresh ids and the current time.
/// Chat ids are `{run}-{first + n}`, so they never repeat within a run.
pub fn prepare_webhooks(secret: &WebhookSecret, run: &str, first: usize, count: usize) -> Vec<PreparedWebhook> {
    let timestamp = now_millis() / 1000;
    let ended_at = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .expect("the current time formats as RFC 3339");
    (first..first + count)
        .map(|number| {
            let chat_id = format!("{run}-{number}");
            let id = format!("msg_{chat_id}");
            let body = json!({
                "type": "chat.ended",
                "data": {
                    "chat_id": chat_id,
                    "ended_at": ended_at,
                    "organization": "GGD Bench",
                    "topic": "slapen",
                    "child_age_group": "0-5",
                    "locale": "nl",
                    "message_counts": { "parent": 9, "professional": 11 },
                    "parent": { "participant_id": format!("p-{number}") },
                    "professional": { "participant_id": format!("n-{}", number % 50) }
                }
            });
            let body = serde_json::to_vec(&body).expect("JSON serialises");
            let signature = secret.sign(&id, timestamp, &body);
            let timestamp = timestamp.to_string();
            let header = |name: &'static str, value: &str| {
                let value = HeaderValue::from_str(value).expect("ids, timestamps and signatures are ASCII");
                (HeaderName::from_static(name), value)
            };
            PreparedWebhook {
                headers: [
                    header("webhook-id", &id),
                    header("webhook-timestamp", &timestamp),
                    header("webhook-signature", &signature),
                ],
                chat_id,
                body: body.into(),
            }
        })
        .collect()
}

/// The requests of one phase. Both send the same prepared requests, so the
/// client does the same work for each: a baseline request is `GET /healthz`
/// with a signed webhook's headers and body, which the health check ignores.
pub enum Workload {
    Healthz(Vec<PreparedWebhook>),
    Webhooks(Vec<PreparedWebhook>),
}

impl Workload {
    fn len(&self) -> usize {
        match self {
            Workload::Healthz(requests) | Workload::Webhooks(requests) => requests.len(),
        }
    }
}

/// The pacing of requests.
#[derive(Clone, Copy, Debug)]
pub enum Pace {
    /// `concurrency` requests in flight at all times (closed loop).
    Concurrency(usize),
    /// A new request every `1 / per_second` seconds, at most `max_in_flight`
    /// at once (open loop).
    Rate { per_second: f64, max_in_flight: usize },
}

/// One finished request.
#[derive(Clone, Copy)]
struct Sample {
    /// From just before the request was sent until the response body was read.
    latency: Duration,
    /// How late the request started against its schedule (open loop only).
    start_lag: Duration,
    /// When the response arrived.
    finished: Instant,
    ok: bool,
    /// Index of the webhook in the phase's workload.
    index: usize,
}

/// The outcome of one phase.
pub struct PhaseResult {
    pub sent: usize,
    pub ok: usize,
    pub failed: usize,
    /// First unexpected response, for the error message.
    pub first_failure: Option<String>,
    pub elapsed: Duration,
    /// Latencies of successful requests in microseconds, sorted.
    pub latencies_us: Vec<u64>,
    pub max_start_lag: Duration,
    /// Chat id, send time and acknowledgement time of each acknowledged webhook.
    pub acknowledged: Vec<(String, Instant, Instant)>,
    /// True when the phase stopped at its time limit before sending everything.
    pub timed_out: bool,
}

impl PhaseResult {
    pub fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Nearest-rank percentile in milliseconds; 0 when nothing succeeded.
    pub fn percentile_ms(&self, percent: f64) -> f64 {
        percentile_us(&self.latencies_us, percent) as f64 / 1000.0
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile_us(sorted: &[u64], percent: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((percent / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The target service and the client that loads it.
#[derive(Clone)]
pub struct Target {
    pub client: reqwest::Client,
    pub base_url: String,
}

impl Target {
    pub fn new(base_url: &str, concurrency: usize) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(concurrency)
            // Below actix-web's default keep-alive of 5 s, so the client never
            // reuses a connection that the service is closing.
            .pool_idle_timeout(Duration::from_secs(3))
            .tcp_nodelay(true)
            .build()
            .map_err(|error| format!("cannot build the HTTP client: {error}"))?;
        Ok(Self {
            client,
            base_url: base_url.trim_end_matches('/').to_string(),
        })
    }

    /// Builds the request for `index` of the workload and returns it with the
    /// expected status. Both phases send the same headers and body, and only
    /// the method and path differ.
    fn request(&self, workload: &Workload, index: usize) -> (reqwest::RequestBuilder, StatusCode) {
        let (request, prepared, expected) = match workload {
            Workload::Healthz(requests) => (
                self.client.get(format!("{}/healthz", self.base_url)),
                &requests[index],
                StatusCode::OK,
            ),
            Workload::Webhooks(webhooks) => (
                self.client.post(format!("{}/webhooks/chat-ended", self.base_url)),
                &webhooks[index],
                StatusCode::ACCEPTED,
            ),
        };
        let mut request = request
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(prepared.body.clone());
        for (name, value) in &prepared.headers {
            request = request.header(name.clone(), value.clone());
        }
        (request, expected)
    }

    /// Sends one request and reads the whole response. Returns whether the
    /// status was the expected one, and a description when it was not.
    async fn send(&self, workload: &Workload, index: usize) -> Result<(), String> {
        let (request, expected) = self.request(workload, index);
        let response = request
            .send()
            .await
            .map_err(|error| format!("request failed: {error}"))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| format!("reading the response failed: {error}"))?;
        if status == expected {
            Ok(())
        } else {
            Err(format!(
                "status {status} (expected {expected}): {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ))
        }
    }

    /// Runs one phase: sends the workload at `pace`, stopping early after `time_limit`.
    pub async fn run_phase(&self, workload: Workload, pace: Pace, time_limit: Duration) -> PhaseResult {
        let total = workload.len();
        let workload = Arc::new(workload);
        let started = Instant::now();
        let deadline = started + time_limit;
        let mut tasks = JoinSet::new();

        match pace {
            Pace::Concurrency(concurrency) => {
                let next = Arc::new(AtomicUsize::new(0));
                for _ in 0..concurrency.min(total) {
                    let target = self.clone();
                    let workload = workload.clone();
                    let next = next.clone();
                    tasks.spawn(async move {
                        let mut samples = Vec::new();
                        loop {
                            let index = next.fetch_add(1, Ordering::Relaxed);
                            if index >= total || Instant::now() >= deadline {
                                break;
                            }
                            samples.push(target.timed_send(&workload, index, Duration::ZERO).await);
                        }
                        samples
                    });
                }
            }
            Pace::Rate {
                per_second,
                max_in_flight,
            } => {
                let permits = Arc::new(Semaphore::new(max_in_flight));
                let interval = Duration::from_secs_f64(1.0 / per_second);
                for index in 0..total {
                    let scheduled = started + interval.mul_f64(index as f64);
                    if scheduled >= deadline {
                        break;
                    }
                    tokio::time::sleep_until(scheduled.into()).await;
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        break;
                    };
                    let target = self.clone();
                    let workload = workload.clone();
                    let start_lag = Instant::now().saturating_duration_since(scheduled);
                    tasks.spawn(async move {
                        let sample = target.timed_send(&workload, index, start_lag).await;
                        drop(permit);
                        vec![sample]
                    });
                }
            }
        }

        let mut samples: Vec<(Sample, Option<String>)> = Vec::with_capacity(total);
        while let Some(joined) = tasks.join_next().await {
            samples.extend(joined.expect("a load task panicked"));
        }
        summarise(&workload, samples, started, total)
    }

    async fn timed_send(&self, workload: &Workload, index: usize, start_lag: Duration) -> (Sample, Option<String>) {
        let sent = Instant::now();
        let outcome = self.send(workload, index).await;
        let finished = Instant::now();
        let sample = Sample {
            latency: finished - sent,
            start_lag,
            finished,
            ok: outcome.is_ok(),
            index,
        };
        (sample, outcome.err())
    }
}

fn summarise(
    workload: &Workload,
    samples: Vec<(Sample, Option<String>)>,
    started: Instant,
    total: usize,
) -> PhaseResult {
    let last_finish = samples
        .iter()
        .map(|(sample, _)| sample.finished)
        .max()
        .unwrap_or(started);
    let mut latencies_us: Vec<u64> = samples
        .iter()
        .filter(|(sample, _)| sample.ok)
        .map(|(sample, _)| sample.latency.as_micros() as u64)
        .collect();
    latencies_us.sort_unstable();
    let acknowledged = match workload {
        Workload::Healthz(_) => Vec::new(),
        Workload::Webhooks(webhooks) => samples
            .iter()
            .filter(|(sample, _)| sample.ok)
            .map(|(sample, _)| {
                let sent = sample.finished - sample.latency;
                (webhooks[sample.index].chat_id.clone(), sent, sample.finished)
            })
            .collect(),
    };
    let ok = latencies_us.len();
    PhaseResult {
        sent: samples.len(),
        ok,
        failed: samples.len() - ok,
        first_failure: samples.iter().find_map(|(_, failure)| failure.clone()),
        elapsed: last_finish - started,
        max_start_lag: samples
            .iter()
            .map(|(sample, _)| sample.start_lag)
            .max()
            .unwrap_or_default(),
        latencies_us,
        acknowledged,
        timed_out: samples.len() < total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_uses_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile_us(&values, 50.0), 50);
        assert_eq!(percentile_us(&values, 99.0), 99);
        assert_eq!(percentile_us(&values, 100.0), 100);
        assert_eq!(percentile_us(&[7], 99.0), 7);
        assert_eq!(percentile_us(&[], 50.0), 0);
    }

    #[test]
    fn prepared_webhooks_verify() {
        let (secret, _) = WebhookSecret::generate();
        let webhooks = prepare_webhooks(&secret, "run", 10, 3);
        assert_eq!(webhooks.len(), 3);
        assert_eq!(webhooks[0].chat_id, "run-10");
        let header = |webhook: &PreparedWebhook, name: &str| {
            let (_, value) = webhook
                .headers
                .iter()
                .find(|(header, _)| header == name)
                .expect("header set");
            value.to_str().expect("ASCII").to_string()
        };
        assert_eq!(header(&webhooks[2], "webhook-id"), "msg_run-12");
        for webhook in &webhooks {
            let id = header(webhook, "webhook-id");
            let verified = crate::signature::verify(
                std::slice::from_ref(&secret),
                &id,
                &header(webhook, "webhook-timestamp"),
                &webhook.body,
                &header(webhook, "webhook-signature"),
                now_millis() / 1000,
            );
            assert!(verified.is_ok(), "webhook {id} does not verify");
        }
    }

    #[test]
    fn baseline_requests_carry_the_same_bytes_as_webhooks() {
        let (secret, _) = WebhookSecret::generate();
        let target = Target::new("http://127.0.0.1:9", 1).expect("client builds");
        let baseline = Workload::Healthz(prepare_webhooks(&secret, "probe-1a2b", 0, 1));
        let webhooks = Workload::Webhooks(prepare_webhooks(&secret, "bench-1a2b", 0, 1));
        let build = |workload: &Workload| {
            let (request, expected) = target.request(workload, 0);
            (request.build().expect("request builds"), expected)
        };
        let (health, health_status) = build(&baseline);
        let (webhook, webhook_status) = build(&webhooks);
        assert_eq!((health.method().as_str(), health.url().path()), ("GET", "/healthz"));
        assert_eq!(
            (webhook.method().as_str(), webhook.url().path()),
            ("POST", "/webhooks/chat-ended")
        );
        assert_eq!((health_status, webhook_status), (StatusCode::OK, StatusCode::ACCEPTED));
        let names = |request: &reqwest::Request| {
            let mut names: Vec<_> = request.headers().keys().map(|name| name.as_str().to_string()).collect();
            names.sort();
            names
        };
        assert_eq!(names(&health), names(&webhook));
        assert!(names(&health).contains(&"webhook-signature".to_string()));
        let body = |request: &reqwest::Request| request.body().and_then(reqwest::Body::as_bytes).map(<[u8]>::len);
        // Run ids of the same length give bodies of the same length.
        assert_eq!(body(&health), body(&webhook));
        assert!(body(&health).is_some_and(|length| length > 200));
    }
}
