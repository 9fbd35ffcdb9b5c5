//! Accepted chats on their way into sled.
//!
//! A chat-ended webhook is acknowledged once its write is in the journal on
//! disk; writing it into sled can wait. [`Store::accept_chat`](super::Store::accept_chat)
//! therefore appends the write to the journal and to this inbox, and one
//! applier thread, at a lower CPU priority than the request handlers, moves
//! inbox entries into sled in batches. While a burst of webhooks arrives, the
//! processor goes to acknowledging them; sled and the deliveries catch up
//! when it ends. This is the pattern webhook senders ask receivers to
//! follow: store the event durably, respond, and process it afterwards.
//!
//! The journal contains every inbox entry before it is acknowledged, so a crash
//! loses nothing: opening the store replays the journal into sled. A
//! checkpoint writes the inbox into sled and starts a new journal with the
//! records of entries that arrived meanwhile.
//!
//! Deduplication must see entries that are not in sled yet, so the inbox
//! keeps their webhook ids and chat keys. An entry's keys leave those sets
//! only after the entry is in sled, and [`Inbox::seen`] looks in the sets
//! before it looks in sled, both under the inbox lock, so no duplicate slips
//! through between the two.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::seen::SeenFilter;
use super::webhook_ids::EventDigest;

/// Bytes of journal payload the inbox may hold before new webhooks wait.
/// Roughly 2 KB per chat, so a burst of about 30 000 chats fits.
pub(super) const MAX_BYTES: usize = 64 << 20;

/// Maximum time a read waits for the inbox to reach sled.
pub(super) const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// Entries the applier writes into sled under one hold of the write lock.
pub(super) const BATCH: usize = 256;

/// Entries in the inbox from which on the applier looks for a burst. With
/// fewer, the applier keeps up and writes at once.
pub(super) const BURST_BACKLOG: usize = 64;

/// Webhooks per second from which on arrivals count as a burst: twice the
/// rate of the acknowledgement latency goal (1 000 a second), so ordinary
/// traffic does not wait for sled.
pub(super) const BURST_RATE: f64 = 2_000.0;

/// How often the applier looks again whether a burst goes on.
pub(super) const BURST_TICK: Duration = Duration::from_millis(10);

/// Maximum time the applier waits out one burst before it writes anyway.
pub(super) const BURST_LIMIT: Duration = Duration::from_secs(10);

/// Inbox bytes at which the applier stops waiting. The rest, about 2 000
/// chats, is acknowledged while the applier starts, so acknowledgements
/// do not stall for room.
pub(super) const BURST_BYTES: usize = MAX_BYTES - MAX_BYTES / 16;

/// One accepted webhook: its journal payload and the keys it deduplicates on.
pub(super) struct Entry {
    pub payload: Vec<u8>,
    pub webhook_id: Option<Box<str>>,
    /// Digest of the webhook's event, compared when the id comes again.
    pub webhook_digest: Option<EventDigest>,
    /// The record key, set when the entry stores a new chat.
    pub chat_key: Option<Box<[u8]>>,
}

#[derive(Default)]
pub(super) struct Queue {
    pub entries: VecDeque<Entry>,
    bytes: usize,
    webhook_ids: HashMap<Box<str>, Option<EventDigest>>,
    chat_keys: HashSet<Box<[u8]>>,
    /// Entries ever pushed and ever written into sled; [`Inbox::settle`] waits for the second to reach the first.
    pushed: u64,
    applied: u64,
    pub closing: bool,
    /// Set by the flusher when the journal should be emptied; the applier runs the checkpoint.
    pub checkpoint_due: bool,
    /// Every webhook id and chat key that sled has held or the inbox holds,
    /// so most duplicate checks of a new key need not read sled.
    pub seen_webhooks: SeenFilter,
    pub seen_chats: SeenFilter,
    /// Whether the applier sleeps in [`Inbox::wait_for_work`], so a push
    /// must wake it. Waking costs a system call, which a burst would pay on
    /// every webhook while the applier is busy or waits out the burst.
    applier_idle: bool,
    /// Readers waiting in [`Inbox::settle`]. While there are any, the
    /// applier does not wait out a burst.
    settling: usize,
    /// Webhook ids of answer webhooks whose write is running, each with the
    /// number of such writes. A chat-ended webhook with one of these ids
    /// waits for the write before it checks the id.
    pub answering: HashMap<Box<str>, usize>,
}

impl Queue {
    pub fn push(&mut self, entry: Entry) {
        self.bytes += entry.payload.len();
        if let Some(webhook_id) = &entry.webhook_id {
            self.seen_webhooks.insert(webhook_id.as_bytes());
            self.webhook_ids.insert(webhook_id.clone(), entry.webhook_digest);
        }
        if let Some(chat_key) = &entry.chat_key {
            self.seen_chats.insert(chat_key);
            self.chat_keys.insert(chat_key.clone());
        }
        self.entries.push_back(entry);
        self.pushed += 1;
    }

    /// Returns the event digest of a webhook id in the inbox: `None` when the
    /// id is not there, and `Some(None)` when it came without a digest.
    pub fn webhook(&self, id: &str) -> Option<Option<EventDigest>> {
        self.webhook_ids.get(id).copied()
    }

    pub fn has_chat(&self, key: &[u8]) -> bool {
        self.chat_keys.contains(key)
    }

    /// Forgets the keys of entries that are now in sled.
    pub fn applied(&mut self, entries: &[Entry]) {
        for entry in entries {
            self.bytes -= entry.payload.len();
            if let Some(webhook_id) = &entry.webhook_id {
                self.webhook_ids.remove(webhook_id);
            }
            if let Some(chat_key) = &entry.chat_key {
                self.chat_keys.remove(chat_key);
            }
        }
        self.applied += entries.len() as u64;
    }

    /// Returns whether the applier keeps up: fewer than [`BURST_BACKLOG`] entries wait.
    pub fn keeps_up(&self) -> bool {
        self.entries.len() < BURST_BACKLOG
    }

    pub fn is_full(&self) -> bool {
        self.bytes >= MAX_BYTES
    }
}

/// The inbox shared by request handlers, the applier and checkpoints.
#[derive(Default)]
pub(super) struct Inbox {
    queue: Mutex<Queue>,
    /// Signalled when entries arrive, when entries reach sled and at close.
    changed: Condvar,
    /// Wakes handlers that wait for room.
    room: Notify,
    /// Wakes the delivery worker when entries with queued deliveries reach sled.
    pub reached_sled: Notify,
}

impl Inbox {
    pub fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the applier after a push or at close.
    pub fn notify_pushed(&self) {
        self.changed.notify_all();
    }

    /// Wakes the applier after `push` if it sleeps. Takes the queue, so
    /// the wake-up comes after the lock is released.
    pub fn notify_pushed_by(&self, queue: MutexGuard<'_, Queue>) {
        let idle = queue.applier_idle;
        drop(queue);
        if idle {
            self.changed.notify_all();
        }
    }

    /// Tells waiters that entries reached sled.
    pub fn notify_applied(&self) {
        self.changed.notify_all();
        self.room.notify_waiters();
        self.reached_sled.notify_one();
    }

    /// Waits, up to `timeout`, until the inbox has entries, a checkpoint is
    /// due or the inbox is closing.
    pub fn wait_for_work<'a>(&self, mut queue: MutexGuard<'a, Queue>, timeout: Duration) -> MutexGuard<'a, Queue> {
        queue.applier_idle = true;
        let mut queue = self
            .changed
            .wait_timeout_while(queue, timeout, |queue| {
                queue.entries.is_empty() && !queue.checkpoint_due && !queue.closing
            })
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        queue.applier_idle = false;
        queue
    }

    /// Waits while a burst of webhooks goes on, so that acknowledging them
    /// gets the processor and sled catches up when the burst ends. A burst
    /// is a backlog of at least [`BURST_BACKLOG`] entries while webhooks
    /// keep arriving at [`BURST_RATE`] or faster. The wait ends when the
    /// arrivals slow down, when the inbox contains [`BURST_BYTES`], after
    /// [`BURST_LIMIT`], when a reader waits for the inbox, or at close.
    /// Returns how long it waited, `None` when there was no burst.
    pub fn wait_out_burst(&self) -> Option<Duration> {
        let started = Instant::now();
        let mut queue = self.lock();
        if queue.keeps_up() {
            return None;
        }
        loop {
            if queue.closing || queue.settling > 0 || queue.bytes >= BURST_BYTES || started.elapsed() >= BURST_LIMIT {
                return Some(started.elapsed());
            }
            let pushed = queue.pushed;
            let tick = Instant::now();
            drop(queue);
            // A sleep rather than the condition variable: every push
            // signals that, and a burst would wake this thread each time.
            thread::sleep(BURST_TICK);
            queue = self.lock();
            let arrived = (queue.pushed - pushed) as f64;
            if arrived < BURST_RATE * tick.elapsed().as_secs_f64() {
                return Some(started.elapsed());
            }
        }
    }

    /// Blocks until every entry pushed before the call is in sled, or for
    /// at most [`SETTLE_LIMIT`]: when sled keeps failing, a read goes on with
    /// what sled has rather than hang.
    pub fn settle(&self) {
        let mut queue = self.lock();
        let target = queue.pushed;
        if queue.applied >= target {
            return;
        }
        queue.settling += 1;
        let (mut queue, waited) = self
            .changed
            .wait_timeout_while(queue, SETTLE_LIMIT, |queue| queue.applied < target && !queue.closing)
            .unwrap_or_else(PoisonError::into_inner);
        queue.settling -= 1;
        if waited.timed_out() {
            tracing::warn!(
                waiting = queue.entries.len(),
                "a read went on after waiting {} s for accepted chats to reach the store",
                SETTLE_LIMIT.as_secs()
            );
        }
    }

    /// Waits until the inbox has room for more entries.
    pub async fn room(&self) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            // Registered before the check, so a wake-up between the two is not missed.
            notified.as_mut().enable();
            if !self.lock().is_full() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, chat: Option<&str>, bytes: usize) -> Entry {
        Entry {
            payload: vec![0; bytes],
            webhook_id: Some(id.into()),
            webhook_digest: None,
            chat_key: chat.map(|key| key.as_bytes().into()),
        }
    }

    #[test]
    fn keys_stay_until_the_entry_is_applied() {
        let mut queue = Queue::default();
        queue.push(entry("msg_1", Some("chat-a"), 10));
        queue.push(entry("msg_2", None, 5));
        assert_eq!(queue.webhook("msg_1"), Some(None));
        assert_eq!(queue.webhook("msg_2"), Some(None));
        assert!(queue.has_chat(b"chat-a"));
        assert!(!queue.has_chat(b"chat-b"));

        let drained: Vec<Entry> = queue.entries.drain(..).collect();
        assert!(queue.webhook("msg_1").is_some(), "drained but not applied yet");
        queue.applied(&drained);
        assert_eq!(queue.webhook("msg_1"), None);
        assert!(!queue.has_chat(b"chat-a"));
        assert_eq!((queue.pushed, queue.applied, queue.bytes), (2, 2, 0));
    }

    fn inbox_with(entries: usize, bytes: usize) -> Inbox {
        let inbox = Inbox::default();
        for number in 0..entries {
            inbox.lock().push(entry(&format!("msg_{number}"), None, bytes));
        }
        inbox
    }

    #[test]
    fn no_burst_without_a_backlog() {
        let inbox = inbox_with(BURST_BACKLOG - 1, 10);
        assert_eq!(inbox.wait_out_burst(), None);
    }

    #[test]
    fn backlog_without_arrivals_ends_wait() {
        let inbox = inbox_with(BURST_BACKLOG, 10);
        let waited = inbox.wait_out_burst().expect("a backlog");
        assert!(waited < BURST_LIMIT / 2, "waited {waited:?}");
    }

    /// The applier waits while webhooks keep arriving fast, and writes
    /// soon after they stop.
    #[test]
    fn waits_while_arrivals_go_on() {
        let inbox = std::sync::Arc::new(inbox_with(BURST_BACKLOG, 10));
        let pusher = {
            let inbox = inbox.clone();
            thread::spawn(move || {
                let started = Instant::now();
                let mut number = 0;
                while started.elapsed() < Duration::from_millis(300) {
                    inbox.lock().push(entry(&format!("burst_{number}"), None, 10));
                    number += 1;
                }
            })
        };
        let waited = inbox.wait_out_burst().expect("a backlog");
        pusher.join().expect("pusher ends");
        assert!(waited >= Duration::from_millis(30), "waited only {waited:?}");
        assert!(
            waited < Duration::from_millis(300) + BURST_LIMIT / 5,
            "waited {waited:?}"
        );
    }

    /// A reader that waits for the inbox, or an inbox close to full, ends the wait.
    #[test]
    fn readers_and_a_full_inbox_end_the_wait() {
        let inbox = inbox_with(BURST_BACKLOG, BURST_BYTES / BURST_BACKLOG + 1);
        assert!(inbox.wait_out_burst().expect("a backlog") < BURST_TICK);

        let inbox = inbox_with(BURST_BACKLOG, 10);
        inbox.lock().settling = 1;
        assert!(inbox.wait_out_burst().expect("a backlog") < BURST_TICK);
    }

    #[test]
    fn full_at_the_byte_limit() {
        let mut queue = Queue::default();
        queue.push(entry("msg_1", None, MAX_BYTES - 1));
        assert!(!queue.is_full());
        queue.push(entry("msg_2", None, 1));
        assert!(queue.is_full());
    }
}
