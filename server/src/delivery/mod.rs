//! The invitation queue: a worker that posts queued invitations to the
//! platform, at-least-once, with retries, backoff and a dead-letter list.
//!
//! The queue lives in the store, so it survives restarts. The worker wakes
//! when a chat is enqueued or an attempt finishes, and otherwise sleeps until
//! the next delivery is due; it does not poll.

mod generic;
pub mod guard;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Notify, Semaphore};

use guard::{Admission, CircuitBreaker, RateGate};

use crate::config::Settings;
use crate::questionnaire::{Lang, Role};
use crate::startup::now_millis;
use crate::store::Store;
use crate::store::records::{Millis, QueuedDelivery};
use crate::token::TokenKey;

pub use generic::{GenericPlatform, classify, describe};

use crate::chatwoot::client::ChatwootClient;
use crate::config::PlatformKind;

/// Builds the HTTP client for platform calls: the delivery timeout on the
/// whole request, at most 5 s to connect, and no redirects, because a
/// redirect means a wrong platform URL.
pub fn platform_http_client(settings: &Settings) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(settings.delivery_timeout)
        .connect_timeout(settings.delivery_timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("alliance/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| format!("cannot build the HTTP client: {error}"))
}

/// The platform an invitation is posted to; one engine serves both, and each
/// platform's own rules live in its client.
pub enum Platform {
    Generic(GenericPlatform),
    Chatwoot(ChatwootClient),
}

impl Platform {
    pub fn new(settings: &Settings, token_key: TokenKey) -> Result<Self, String> {
        match settings.platform_kind {
            PlatformKind::Generic => Ok(Platform::Generic(GenericPlatform::new(settings, token_key)?)),
            PlatformKind::Chatwoot => Ok(Platform::Chatwoot(ChatwootClient::new(settings, token_key)?)),
        }
    }

    /// Makes one delivery attempt.
    pub async fn send(&self, delivery: &QueuedDelivery) -> Outcome {
        match self {
            Platform::Generic(platform) => platform.send(delivery).await,
            Platform::Chatwoot(client) => client.send(delivery).await,
        }
    }
}

/// What one delivery attempt came to.
#[derive(Debug)]
pub enum Outcome {
    /// The platform accepted the invitation (`2xx`, or `409` for a repeated idempotency key).
    Accepted,
    /// A temporary failure; try again, no sooner than `retry_after` if given.
    Retry {
        error: String,
        retry_after: Option<Duration>,
    },
    /// The platform rejected the request; retrying the same request will not help.
    Permanent { error: String },
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Counters {
    pub accepted: u64,
    pub retried: u64,
    pub dead: u64,
}

struct Shared {
    breaker: CircuitBreaker,
    gate: RateGate,
    wake: Notify,
    running: AtomicBool,
    stopping: AtomicBool,
    stopped: Notify,
    accepted: AtomicU64,
    retried: AtomicU64,
    dead: AtomicU64,
    /// The worker's thread, joined by [`DeliveryHandle::stop`] so that no store
    /// handle outlives it.
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Handle to the running delivery worker.
#[derive(Clone)]
pub struct DeliveryHandle {
    shared: Arc<Shared>,
}

impl DeliveryHandle {
    /// Wakes the worker because a delivery was queued.
    pub fn wake(&self) {
        self.shared.wake.notify_one();
    }

    pub fn is_running(&self) -> bool {
        self.shared.running.load(Ordering::Relaxed)
    }

    /// 0 closed, 1 open, 2 half open.
    pub fn breaker_state(&self) -> u8 {
        self.shared.breaker.state_code()
    }

    pub fn counters(&self) -> Counters {
        Counters {
            accepted: self.shared.accepted.load(Ordering::Relaxed),
            retried: self.shared.retried.load(Ordering::Relaxed),
            dead: self.shared.dead.load(Ordering::Relaxed),
        }
    }

    /// Stops taking new deliveries and waits up to 10 seconds for the worker
    /// to end. Attempts still in flight are retried after a restart with the
    /// same invitation id.
    pub async fn stop(&self) {
        let stopped = self.shared.stopped.notified();
        tokio::pin!(stopped);
        // Registers interest before the worker can signal, so the signal is not missed.
        stopped.as_mut().enable();
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
        if self.is_running() {
            let _ = tokio::time::timeout(Duration::from_secs(10), stopped).await;
        }
        let thread = self.shared.thread.lock().expect("delivery thread handle").take();
        if let Some(thread) = thread
            && (thread.is_finished() || !self.is_running())
        {
            // The thread ends as soon as its runtime has dropped the attempts.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Starts the worker on a thread of its own with its own tokio runtime, at a
/// lower CPU priority than the request handlers (nice 10 on Linux). While a
/// burst of webhooks arrives, acknowledging them comes first, and the
/// invitations follow as soon as the processor has time.
pub fn start(settings: &Settings, store: Store, token_key: TokenKey) -> Result<DeliveryHandle, String> {
    let platform = Platform::new(settings, token_key)?;
    let shared = Arc::new(Shared {
        breaker: CircuitBreaker::new(
            settings.breaker_threshold,
            Duration::from_secs(5),
            Duration::from_secs(300),
        ),
        gate: RateGate::new(settings.delivery_rate_per_second),
        wake: Notify::new(),
        running: AtomicBool::new(true),
        stopping: AtomicBool::new(false),
        stopped: Notify::new(),
        accepted: AtomicU64::new(0),
        retried: AtomicU64::new(0),
        dead: AtomicU64::new(0),
        thread: Mutex::new(None),
    });
    let worker = Worker {
        shared: shared.clone(),
        store,
        platform: Arc::new(platform),
        permits: Arc::new(Semaphore::new(settings.delivery_concurrency)),
        concurrency: settings.delivery_concurrency,
        horizon: settings.delivery_horizon,
        in_flight: Arc::new(Mutex::new(HashSet::new())),
    };
    let thread = std::thread::Builder::new()
        .name("delivery".into())
        .spawn(move || {
            #[cfg(target_os = "linux")]
            if let Err(error) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10) {
                tracing::debug!(%error, "could not lower the priority of the delivery worker");
            }
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime.block_on(worker.run()),
                Err(error) => {
                    tracing::error!(%error, "the delivery worker cannot start its runtime");
                    worker.shared.running.store(false, Ordering::SeqCst);
                }
            }
        })
        .map_err(|error| format!("cannot start the delivery thread: {error}"))?;
    *shared.thread.lock().expect("delivery thread handle") = Some(thread);
    Ok(DeliveryHandle { shared })
}

struct Worker {
    shared: Arc<Shared>,
    store: Store,
    platform: Arc<Platform>,
    permits: Arc<Semaphore>,
    concurrency: usize,
    horizon: Duration,
    /// Queue keys of the deliveries being attempted.
    in_flight: Arc<Mutex<HashSet<Vec<u8>>>>,
}

/// Maximum sleep when nothing is queued: a safety net, since enqueueing wakes the worker.
const IDLE_WAIT: Duration = Duration::from_secs(60);

impl Worker {
    async fn run(self) {
        tracing::info!(concurrency = self.concurrency, "delivery worker started");
        while !self.shared.stopping.load(Ordering::SeqCst) {
            let wait = match self.dispatch_due() {
                Ok(wait) => wait,
                Err(error) => {
                    tracing::error!(%error, "delivery worker could not read the queue; trying again in 1 s");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = self.shared.wake.notified() => {}
                _ = self.store.deliveries_queued() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }

        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            self.permits.acquire_many(self.concurrency as u32),
        )
        .await;
        self.shared.running.store(false, Ordering::SeqCst);
        self.shared.stopped.notify_waiters();
        tracing::info!("delivery worker stopped");
    }

    /// Starts an attempt for every due delivery that is not in flight, as far
    /// as permits allow, and returns how long to wait before looking again.
    fn dispatch_due(&self) -> Result<Duration, crate::store::StoreError> {
        let now = now_millis();
        let free = self.permits.available_permits();
        let due = {
            // Entries in flight are skipped by key, before they are decoded.
            let in_flight = self.in_flight.lock().expect("in-flight set");
            self.store.due_deliveries(now, free, |key| in_flight.contains(key))?
        };

        for (key, delivery) in due {
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                break;
            };
            {
                // The scan above may be older than an attempt that finished
                // since: an attempt removes its queue entry before it leaves
                // the in-flight set, so checking both under the lock detects it.
                let mut in_flight = self.in_flight.lock().expect("in-flight set");
                if in_flight.contains(&key) || !self.store.is_queued(&key)? {
                    continue;
                }
                in_flight.insert(key.clone());
            }
            // The breaker is asked last, because a half-open breaker hands
            // out its one probe when it admits; that probe must then be sent.
            let now_instant = std::time::Instant::now();
            let refused = match self.shared.gate.take(now_instant) {
                Err(wait) => Some(wait),
                Ok(()) => match self.shared.breaker.admit(now_instant) {
                    Admission::Allowed | Admission::Probe => None,
                    Admission::Paused(wait) => Some(wait),
                },
            };
            if let Some(wait) = refused {
                self.in_flight.lock().expect("in-flight set").remove(&key);
                return Ok(wait);
            }

            let attempt = Attempt {
                shared: self.shared.clone(),
                store: self.store.clone(),
                platform: self.platform.clone(),
                horizon: self.horizon,
                in_flight: self.in_flight.clone(),
            };
            tokio::spawn(async move {
                attempt.run(key, delivery).await;
                drop(permit);
            });
        }

        let next_due = self.store.next_due()?;
        let now = now_millis();
        Ok(match next_due {
            Some(due) if due > now => Duration::from_millis((due - now) as u64).min(IDLE_WAIT),
            // Everything due is in flight or waiting for a permit; a finished attempt wakes us.
            Some(_) => Duration::from_secs(1),
            None => IDLE_WAIT,
        })
    }
}

struct Attempt {
    shared: Arc<Shared>,
    store: Store,
    platform: Arc<Platform>,
    horizon: Duration,
    /// Queue keys of the deliveries being attempted.
    in_flight: Arc<Mutex<HashSet<Vec<u8>>>>,
}

impl Attempt {
    async fn run(self, key: Vec<u8>, mut delivery: QueuedDelivery) {
        let id = delivery.invitation_id.clone();
        // The queue entry may come from a write that is not durable yet. Wait
        // for it, so the platform never gets an invitation that a crash could
        // still undo, with its chat created again under new ids on the retry.
        // A failed flush is logged and the attempt goes on: the store then
        // fails other writes too, and a breaker probe must not be left unsent.
        if let Err(error) = self.store.flush().await {
            tracing::error!(invitation = %id, %error, "store flush before delivery failed; delivering anyway");
        }
        let outcome = self.platform.send(&delivery).await;
        let now = now_millis();

        let result = match outcome {
            Outcome::Accepted => {
                self.shared.breaker.record_success();
                self.shared.accepted.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(invitation = %id, attempts = delivery.attempts + 1, "invitation delivered");
                self.store.complete_delivery(&key, &id, now)
            }
            Outcome::Retry { error, retry_after } => {
                self.shared.breaker.record_failure(std::time::Instant::now());
                delivery.attempts += 1;
                delivery.last_error = Some(error.clone());
                let delay = backoff(delivery.attempts, retry_after);
                let deadline = delivery.created_at + self.horizon.as_millis() as Millis;
                if now + delay.as_millis() as Millis > deadline {
                    self.shared.dead.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(invitation = %id, attempts = delivery.attempts, %error, "delivery horizon passed; moved to dead letters");
                    self.store.dead_letter(&key, &delivery)
                } else {
                    self.shared.retried.fetch_add(1, Ordering::Relaxed);
                    delivery.next_attempt_at = now + delay.as_millis() as Millis;
                    tracing::warn!(invitation = %id, attempts = delivery.attempts, retry_in_ms = delay.as_millis() as u64, %error, "delivery failed; will retry");
                    self.store.reschedule_delivery(&key, &delivery)
                }
            }
            Outcome::Permanent { error } => {
                // The platform answered, so it is up, even though it rejected this request.
                self.shared.breaker.record_success();
                delivery.attempts += 1;
                delivery.last_error = Some(error.clone());
                self.shared.dead.fetch_add(1, Ordering::Relaxed);
                tracing::error!(invitation = %id, %error, "platform rejected the invitation; moved to dead letters");
                self.store.dead_letter(&key, &delivery)
            }
        };
        if let Err(error) = result {
            tracing::error!(invitation = %id, %error, "could not record a delivery attempt; it will be tried again");
        }

        self.in_flight.lock().expect("in-flight set").remove(&key);
        self.shared.wake.notify_one();
    }
}

/// Builds the link to the questionnaire page of `token`. A parent whose
/// chat was in English gets the page in English. Everyone else gets the
/// page's default, Dutch.
pub fn questionnaire_link(public_url: &str, token: &str, delivery: &QueuedDelivery) -> String {
    match (delivery.role, Lang::from_locale(&delivery.locale)) {
        (Role::Parent, Lang::En) => format!("{public_url}/q/{token}?lang=en"),
        _ => format!("{public_url}/q/{token}"),
    }
}

/// Builds the message that invites the parent, in the language of the chat.
pub fn parent_invitation(link: &str, locale: &str) -> String {
    match Lang::from_locale(locale) {
        Lang::En => format!(
            "Would you help us make the chat better? Answer 11 short questions about this conversation. \
             It takes about a minute and is anonymous: {link}"
        ),
        Lang::Nl => format!(
            "Wil je ons helpen om de chat beter te maken? Beantwoord 11 korte vragen over dit gesprek. \
             Het duurt ongeveer een minuut en is anoniem: {link}"
        ),
    }
}

/// Delay before the next attempt: 0.5 s doubled per attempt, at most 10
/// minutes, with jitter between half and the whole delay. A `Retry-After`
/// from the platform is honoured up to one hour.
pub fn backoff(attempts: u32, retry_after: Option<Duration>) -> Duration {
    const BASE_MS: u64 = 500;
    const MAX_MS: u64 = 10 * 60 * 1000;
    let exponent = attempts.saturating_sub(1).min(20);
    let ceiling = (BASE_MS << exponent).min(MAX_MS);
    let jittered = rand::thread_rng().gen_range(ceiling / 2..=ceiling);
    let delay = Duration::from_millis(jittered);
    match retry_after {
        Some(asked) => delay.max(asked.min(Duration::from_secs(3600))),
        None => delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempts in 1..40 {
            let delay = backoff(attempts, None);
            let ceiling = (500u64 << attempts.saturating_sub(1).min(20)).min(600_000);
            assert!(delay.as_millis() as u64 <= ceiling, "attempt {attempts}: {delay:?}");
            assert!(delay.as_millis() as u64 >= ceiling / 2, "attempt {attempts}: {delay:?}");
        }
    }

    #[test]
    fn backoff_honours_retry_after_within_bounds() {
        assert!(backoff(1, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
        assert!(backoff(1, Some(Duration::from_secs(86_400))) <= Duration::from_secs(3600));
    }
}
