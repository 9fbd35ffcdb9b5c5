//! Fixed-window rate limits kept in memory: failed signatures per client
//! address, and questionnaire calls per token. Counting only failures per
//! address means a busy platform that signs correctly is never throttled.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::HttpRequest;

/// Entries kept before stale windows are swept, so a flood of addresses
/// cannot grow the map without bound.
const SWEEP_AT: usize = 50_000;

/// Counts events per key in windows of `window`; a key may have `limit` events per window.
pub struct RateLimiter<K> {
    limit: u32,
    window: Duration,
    counts: Mutex<HashMap<K, (Instant, u32)>>,
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one event for `key` and returns `Err(retry_after)` when the
    /// key is over its limit in the current window.
    pub fn hit(&self, key: &K) -> Result<(), Duration> {
        let now = Instant::now();
        let mut counts = self.counts.lock().expect("rate limiter lock");
        if counts.len() >= SWEEP_AT {
            let window = self.window;
            counts.retain(|_, (started, _)| now.duration_since(*started) < window);
        }
        let entry = counts.entry(key.clone()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        if entry.1 > self.limit {
            Err(self.window.saturating_sub(now.duration_since(entry.0)))
        } else {
            Ok(())
        }
    }

    /// Whether `key` is over its limit now, without counting an event.
    pub fn is_limited(&self, key: &K) -> Option<Duration> {
        let now = Instant::now();
        let counts = self.counts.lock().expect("rate limiter lock");
        let (started, count) = counts.get(key)?;
        let elapsed = now.duration_since(*started);
        (elapsed < self.window && *count >= self.limit).then(|| self.window - elapsed)
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy,
/// the rightmost `X-Forwarded-For` entry that is not a trusted proxy.
pub fn client_address(request: &HttpRequest, trusted_proxies: &[IpAddr]) -> Option<IpAddr> {
    let peer = request.peer_addr()?.ip();
    if !trusted_proxies.contains(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = request
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|entry| entry.trim().parse().ok())
        .collect();
    forwarded
        .into_iter()
        .rev()
        .find(|address| !trusted_proxies.contains(address))
        .or(Some(peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_applies_per_key_and_window() {
        let limiter = RateLimiter::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(limiter.hit(&"a").is_ok());
        }
        assert!(
            limiter.hit(&"a").is_err(),
            "the fourth event in a window is over the limit"
        );
        assert!(limiter.is_limited(&"a").is_some());
        assert!(limiter.hit(&"b").is_ok(), "another key has its own count");
        assert!(limiter.is_limited(&"b").is_none());
    }

    #[test]
    fn window_resets() {
        let limiter = RateLimiter::new(1, Duration::from_millis(20));
        assert!(limiter.hit(&1).is_ok());
        assert!(limiter.hit(&1).is_err());
        std::thread::sleep(Duration::from_millis(30));
        assert!(limiter.hit(&1).is_ok());
    }
}
