//! Protection for the platform: a circuit breaker that pauses delivery while
//! the platform fails and probes it before resuming, and a rate gate that
//! spaces requests. Paused deliveries stay in the queue; nothing is dropped.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Whether the worker may start an attempt now.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// The breaker is half open: this one attempt probes the platform.
    Probe,
    /// The breaker is open or a probe is under way; look again after this long.
    Paused(Duration),
}

#[derive(Debug)]
enum State {
    Closed { consecutive_failures: u32 },
    Open { until: Instant, cooldown: Duration },
    HalfOpen { cooldown: Duration, probing: bool },
}

/// Opens after `threshold` consecutive temporary failures; stays open for a
/// cooldown that starts at `first_cooldown` and doubles, up to
/// `max_cooldown`, each time a probe fails.
pub struct CircuitBreaker {
    threshold: u32,
    first_cooldown: Duration,
    max_cooldown: Duration,
    state: Mutex<State>,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, first_cooldown: Duration, max_cooldown: Duration) -> Self {
        Self {
            threshold,
            first_cooldown,
            max_cooldown,
            state: Mutex::new(State::Closed {
                consecutive_failures: 0,
            }),
        }
    }

    pub fn admit(&self, now: Instant) -> Admission {
        let mut state = self.state.lock().expect("breaker lock");
        match *state {
            State::Closed { .. } => Admission::Allowed,
            State::Open { until, cooldown } if now >= until => {
                *state = State::HalfOpen {
                    cooldown,
                    probing: true,
                };
                tracing::info!("platform circuit half open; sending one probe");
                Admission::Probe
            }
            State::Open { until, .. } => Admission::Paused(until - now),
            State::HalfOpen { probing: true, .. } => Admission::Paused(Duration::from_millis(200)),
            State::HalfOpen {
                cooldown,
                probing: false,
            } => {
                *state = State::HalfOpen {
                    cooldown,
                    probing: true,
                };
                Admission::Probe
            }
        }
    }

    /// Records an attempt that reached a healthy platform (accepted, or
    /// rejected for its content).
    pub fn record_success(&self) {
        let mut state = self.state.lock().expect("breaker lock");
        if !matches!(*state, State::Closed { .. }) {
            tracing::info!("platform circuit closed; delivery resumes");
        }
        *state = State::Closed {
            consecutive_failures: 0,
        };
    }

    /// Records a temporary failure: a network error, a timeout, `429` or `5xx`.
    pub fn record_failure(&self, now: Instant) {
        let mut state = self.state.lock().expect("breaker lock");
        match *state {
            State::Closed { consecutive_failures } => {
                let failures = consecutive_failures + 1;
                if failures >= self.threshold {
                    tracing::warn!(
                        failures,
                        pause_secs = self.first_cooldown.as_secs_f64(),
                        "platform failing; circuit open, delivery paused"
                    );
                    *state = State::Open {
                        until: now + self.first_cooldown,
                        cooldown: self.first_cooldown,
                    };
                } else {
                    *state = State::Closed {
                        consecutive_failures: failures,
                    };
                }
            }
            State::HalfOpen { cooldown, .. } => {
                let cooldown = (cooldown * 2).min(self.max_cooldown);
                tracing::warn!(pause_secs = cooldown.as_secs_f64(), "probe failed; circuit open again");
                *state = State::Open {
                    until: now + cooldown,
                    cooldown,
                };
            }
            // Attempts started before the breaker opened may still fail; they change nothing.
            State::Open { .. } => {}
        }
    }

    /// 0 closed, 1 open, 2 half open; for `/metrics`.
    pub fn state_code(&self) -> u8 {
        match *self.state.lock().expect("breaker lock") {
            State::Closed { .. } => 0,
            State::Open { .. } => 1,
            State::HalfOpen { .. } => 2,
        }
    }
}

/// Spaces attempts to at most `per_second`, allowing a burst of one
/// second's worth; `per_second` 0 means no limit.
pub struct RateGate {
    interval: Option<Duration>,
    burst: Duration,
    next_free: Mutex<Option<Instant>>,
}

impl RateGate {
    pub fn new(per_second: u32) -> Self {
        let interval = (per_second > 0).then(|| Duration::from_secs(1) / per_second);
        Self {
            interval,
            burst: Duration::from_secs(1),
            next_free: Mutex::new(None),
        }
    }

    /// Takes a slot, or returns how long to wait for one.
    pub fn take(&self, now: Instant) -> Result<(), Duration> {
        let Some(interval) = self.interval else {
            return Ok(());
        };
        let mut next_free = self.next_free.lock().expect("rate gate lock");
        let theoretical = next_free.map_or(now, |at| at.max(now));
        let ahead = theoretical.saturating_duration_since(now);
        if ahead > self.burst {
            return Err(ahead - self.burst);
        }
        *next_free = Some(theoretical + interval);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_probes_and_closes() {
        let breaker = CircuitBreaker::new(3, Duration::from_secs(5), Duration::from_secs(60));
        let start = Instant::now();
        for _ in 0..2 {
            breaker.record_failure(start);
            assert_eq!(breaker.admit(start), Admission::Allowed);
        }
        breaker.record_failure(start);
        assert!(
            matches!(breaker.admit(start), Admission::Paused(_)),
            "open after three failures"
        );

        let later = start + Duration::from_secs(5);
        assert_eq!(breaker.admit(later), Admission::Probe);
        assert!(
            matches!(breaker.admit(later), Admission::Paused(_)),
            "one probe at a time"
        );

        breaker.record_failure(later);
        match breaker.admit(later + Duration::from_secs(9)) {
            Admission::Paused(left) => assert!(left <= Duration::from_secs(1), "cooldown doubled to 10 s"),
            other => panic!("expected a pause, got {other:?}"),
        }
        assert_eq!(breaker.admit(later + Duration::from_secs(10)), Admission::Probe);
        breaker.record_success();
        assert_eq!(breaker.admit(later + Duration::from_secs(10)), Admission::Allowed);
        assert_eq!(breaker.state_code(), 0);
    }

    #[test]
    fn rate_gate_spaces_attempts() {
        let gate = RateGate::new(10);
        let now = Instant::now();
        let mut allowed = 0;
        while gate.take(now).is_ok() {
            allowed += 1;
            assert!(allowed < 100, "the gate never closed");
        }
        assert_eq!(allowed, 11, "one second's burst plus the first slot");
        assert!(
            gate.take(now + Duration::from_millis(150)).is_ok(),
            "a slot frees every 100 ms"
        );
        assert!(RateGate::new(0).take(now).is_ok(), "0 means no limit");
    }
}
