//! Stopping the HTTP server on a signal, without actix-web's slow path.
//!
//! actix-server 2.6 handles signals itself, but its graceful stop is slow.
//! It sleeps 300 ms before it stops the runtime, and it checks for open
//! connections only once a second. An idle keep-alive connection keeps it
//! waiting until the keep-alive timeout (5 s) closes that connection. The service
//! therefore turns actix's signal handling off and counts the requests it is
//! handling itself, from the request head until the response body is
//! written. On SIGTERM it stops accepting connections, waits until no
//! request is being handled (at most [`DRAIN_LIMIT`]) and then closes every
//! connection at once, the idle ones included.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::ServerHandle;
use actix_web::web::Bytes;
use tokio::sync::Notify;

/// Maximum time a graceful stop waits for the requests being handled.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// The number of requests being handled, and whether the server is stopping.
#[derive(Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
    draining: AtomicBool,
}

/// One request being handled; dropping it ends the request's count.
pub struct InFlightGuard {
    in_flight: Arc<InFlight>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.in_flight.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.in_flight.idle.notify_waiters();
        }
    }
}

impl InFlightGuard {
    /// Returns whether a graceful stop has begun; responses then close their connection.
    pub fn is_draining(&self) -> bool {
        self.in_flight.is_draining()
    }
}

impl InFlight {
    /// Counts a request until the returned guard is dropped.
    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard {
            in_flight: Arc::clone(self),
        }
    }

    /// Returns the number of requests being handled.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Returns whether a graceful stop has begun; responses then close their connection.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Marks the server as stopping and waits until no request is being
    /// handled, at most `limit`. Returns whether every request finished.
    pub async fn drain(&self, limit: Duration) -> bool {
        self.draining.store(true, Ordering::SeqCst);
        let wait = async {
            loop {
                let idle = self.idle.notified();
                tokio::pin!(idle);
                // Registers before the count is read, so a guard dropped in
                // between still wakes this wait.
                idle.as_mut().enable();
                if self.count() == 0 {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

/// A response body that keeps its request counted until the body is
/// written or the connection is gone.
pub struct InFlightBody {
    body: BoxBody,
    _guard: InFlightGuard,
}

impl InFlightBody {
    pub fn new(body: impl MessageBody + 'static, guard: InFlightGuard) -> Self {
        Self {
            body: body.boxed(),
            _guard: guard,
        }
    }
}

impl MessageBody for InFlightBody {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.body).poll_next(context)
    }
}

/// The signals that stop the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGTERM, as service managers send: finish the requests being handled first.
    Terminate,
    /// SIGINT (Ctrl-C): stop at once.
    Interrupt,
    /// SIGQUIT: stop at once, as on SIGINT.
    Quit,
}

impl StopSignal {
    /// Returns the signal's name, such as `SIGINT`.
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Terminate => "SIGTERM",
            StopSignal::Interrupt => "SIGINT",
            StopSignal::Quit => "SIGQUIT",
        }
    }

    /// Returns the exit code of a command that this signal stopped: 128 plus
    /// the signal's number on Linux and macOS, as shells report it.
    pub fn exit_code(self) -> u8 {
        match self {
            StopSignal::Terminate => 128 + 15,
            StopSignal::Interrupt => 128 + 2,
            StopSignal::Quit => 128 + 3,
        }
    }
}

/// Listeners for the stop signals. While they exist, the signals no longer
/// end the process by themselves.
pub struct StopSignals {
    #[cfg(unix)]
    listeners: [Option<tokio::signal::unix::Signal>; 3],
}

impl StopSignals {
    /// Installs handlers for SIGTERM, SIGINT and SIGQUIT. A handler that
    /// cannot be installed is logged, and its signal keeps its default action.
    pub fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};

            let listen = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(listener) => Some(listener),
                Err(error) => {
                    tracing::error!(%error, signal = name, "cannot listen for a stop signal");
                    None
                }
            };
            Self {
                listeners: [
                    listen(SignalKind::terminate(), "SIGTERM"),
                    listen(SignalKind::interrupt(), "SIGINT"),
                    listen(SignalKind::quit(), "SIGQUIT"),
                ],
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    /// Waits for the next stop signal.
    pub async fn next(&mut self) -> StopSignal {
        #[cfg(unix)]
        {
            async fn receive(listener: &mut Option<tokio::signal::unix::Signal>) {
                match listener {
                    Some(listener) => {
                        listener.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            let [terminate, interrupt, quit] = &mut self.listeners;
            tokio::select! {
                _ = receive(terminate) => StopSignal::Terminate,
                _ = receive(interrupt) => StopSignal::Interrupt,
                _ = receive(quit) => StopSignal::Quit,
            }
        }
        #[cfg(not(unix))]
        {
            if let Err(error) = tokio::signal::ctrl_c().await {
                tracing::error!(%error, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
            StopSignal::Interrupt
        }
    }
}

/// Stops the HTTP server for `signal`. On [`StopSignal::Terminate`] it stops
/// accepting connections and waits for the requests being handled, at most
/// [`DRAIN_LIMIT`] or until a second signal. Then it closes every
/// connection. On SIGINT or SIGQUIT it closes them at once.
pub async fn stop_server(handle: &ServerHandle, in_flight: &InFlight, signals: &mut StopSignals, signal: StopSignal) {
    if signal == StopSignal::Terminate {
        tracing::info!(
            requests = in_flight.count(),
            "SIGTERM received; accepting no new connections and finishing the requests being handled"
        );
        handle.pause().await;
        let finished = tokio::select! {
            finished = in_flight.drain(DRAIN_LIMIT) => finished,
            _ = signals.next() => {
                tracing::warn!("a second stop signal received; stopping at once");
                false
            }
        };
        if !finished {
            tracing::warn!(
                requests = in_flight.count(),
                "closing connections with requests still being handled; their clients get no answer"
            );
        }
    } else {
        tracing::info!(
            requests = in_flight.count(),
            "SIGINT or SIGQUIT received; closing every connection at once"
        );
    }
    handle.stop(false).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_the_last_guard() {
        let in_flight = Arc::new(InFlight::default());
        let guard = in_flight.enter();
        assert_eq!(in_flight.count(), 1);
        assert!(
            !in_flight.drain(Duration::from_millis(20)).await,
            "a request is in flight"
        );
        assert!(in_flight.is_draining());

        let waiting = tokio::spawn({
            let in_flight = Arc::clone(&in_flight);
            async move { in_flight.drain(Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(guard);
        assert!(waiting.await.unwrap(), "the drain ends when the last request ends");
        assert_eq!(in_flight.count(), 0);
    }

    #[tokio::test]
    async fn drain_without_requests_returns_at_once() {
        let in_flight = InFlight::default();
        assert!(in_flight.drain(Duration::from_millis(1)).await);
    }
}
