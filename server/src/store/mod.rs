//! The only code that knows sled: trees, keys, transactions and durability.
//!
//! Trees:
//! - `chats`: chat pseudonym → [`ChatRecord`]
//! - `invitations`: invitation id → [`InvitationRecord`]
//! - `webhook_ids`: accepted `webhook-id` → receive time (big-endian millis)
//! - `queue`: due time (big-endian millis) ++ invitation id → [`QueuedDelivery`]
//! - `dead`: invitation id → [`QueuedDelivery`] that will not be retried by itself
//! - `meta`: store-wide values such as the first start time
//!
//! sled writes are durable only after a flush. [`Store::flush`] hands the
//! request to one flusher thread, which flushes once for every request that
//! is waiting, so concurrent writers share one fsync. Accepted chats reach
//! sled later, through the inbox (see [`inbox`]).

pub mod facts;
mod inbox;
mod journal;
pub mod records;
mod seen;

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use crate::questionnaire::Role;
use crate::report::StratumCounts;
use crate::report::live::LiveTotals;
use crate::token::InvitationId;
use journal::{Journal, Op, TreeId};
use records::{ChatRecord, InvitationRecord, Millis, QueuedDelivery};

/// A store failure: an I/O error or a damaged record. Shown to HTTP clients
/// only as an opaque 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O failed: {0}")]
    Sled(#[from] sled::Error),
    #[error("store journal I/O failed: {0}")]
    Journal(#[from] std::io::Error),
    #[error("stored record {key} is damaged: {source}")]
    Corrupt { key: String, source: serde_json::Error },
    #[error("stored report facts of chat {key} are damaged")]
    CorruptFacts { key: String },
    #[error("store flush failed: {0}")]
    Flush(String),
}

type FlushReply = oneshot::Sender<Result<(), String>>;

/// A checkpoint runs at least this often while the journal has records.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(30);
/// A checkpoint also runs as soon as the journal reaches this many bytes.
const CHECKPOINT_BYTES: u64 = 64 << 20;

/// State shared by the flusher thread, the applier and every writer.
struct Shared {
    /// Held while a write changes sled and appends to the journal, so the
    /// journal's order is sled's order, while the applier writes inbox
    /// entries into sled, and while a checkpoint runs.
    write_lock: Mutex<()>,
    journal: Journal,
    inbox: inbox::Inbox,
}

/// The writer of inbox entries into sled, shared by the applier thread and checkpoints.
#[derive(Clone)]
struct Sink {
    db: sled::Db,
    /// In [`TreeId`] order.
    trees: [sled::Tree; 8],
    live: Arc<Mutex<LiveTotals>>,
    shared: Arc<Shared>,
}

/// The open store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    chats: sled::Tree,
    invitations: sled::Tree,
    webhook_ids: sled::Tree,
    queue: sled::Tree,
    dead: sled::Tree,
    meta: sled::Tree,
    facts: sled::Tree,
    totals: sled::Tree,
    shared: Arc<Shared>,
    flusher: Arc<Flusher>,
    /// Running totals of the live chats, changed with every facts record.
    live: Arc<Mutex<LiveTotals>>,
    sink: Sink,
}

/// The handles of the flusher and applier threads. Dropping the last one
/// stops the applier, lets the flusher run a final checkpoint and waits for
/// both, so the store can be opened again as soon as every [`Store`] is gone.
struct Flusher {
    requests: Option<mpsc::Sender<FlushReply>>,
    thread: Option<thread::JoinHandle<()>>,
    applier: Option<(Arc<Shared>, thread::JoinHandle<()>)>,
}

impl Drop for Flusher {
    fn drop(&mut self) {
        if let Some((shared, applier)) = self.applier.take() {
            shared.inbox.lock().closing = true;
            shared.inbox.notify_pushed();
            let _ = applier.join();
        }
        self.requests.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What accepting a chat-ended webhook did.
#[derive(Debug, PartialEq, Eq)]
pub enum ChatAcceptance {
    /// A new chat with its two invitations queued.
    New,
    /// The `webhook-id` was accepted before; nothing changed.
    DuplicateWebhook,
    /// Another webhook already brought this chat; its id is now remembered too.
    KnownChat,
}

/// A new chat with everything written in the same write.
pub struct NewChat<'a> {
    pub webhook_id: &'a str,
    pub chat_key: &'a str,
    pub chat: &'a ChatRecord,
    /// Empty for an ineligible chat, which gets no invitations.
    pub invitations: &'a [InvitationRecord],
    pub deliveries: &'a [QueuedDelivery],
    pub now: Millis,
}

/// Counts of the records [`Store::purge_chat`] deleted besides the chat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurgedChat {
    pub invitations: u64,
    pub answers: u64,
    pub comments: u64,
    /// Dead letters of the chat, which hold its raw platform ids.
    pub dead_letters: u64,
}

impl PurgedChat {
    /// Counts one invitation with its answers and comment.
    pub fn add(&mut self, invitation: &InvitationRecord) {
        self.invitations += 1;
        self.answers += invitation.response.answered() as u64;
        self.comments += u64::from(invitation.response.comment.is_some());
    }
}

/// One of the two lists of deliveries: the queue or the dead letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryList {
    /// The `queue` tree, keyed by due time and invitation id.
    Pending,
    /// The `dead` tree, keyed by invitation id.
    Dead,
}

/// The result of a read-modify-write on one invitation.
#[derive(Debug)]
pub enum UpdateError<E> {
    NotFound,
    Rejected(E),
    Store(StoreError),
}

impl<E> From<StoreError> for UpdateError<E> {
    fn from(error: StoreError) -> Self {
        UpdateError::Store(error)
    }
}

impl<E> From<sled::Error> for UpdateError<E> {
    fn from(error: sled::Error) -> Self {
        UpdateError::Store(error.into())
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialise")
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    })
}

/// Key of a queued delivery: due time first so a range scan finds due ones.
pub fn queue_key(due: Millis, id: &InvitationId) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + id.as_str().len());
    key.extend_from_slice(&(due.max(0) as u64).to_be_bytes());
    key.extend_from_slice(id.as_str().as_bytes());
    key
}

/// The changes of one write: applied to sled at once and recorded for the journal.
struct Writes<'s> {
    store: &'s Store,
    payload: Vec<u8>,
}

impl Writes<'_> {
    fn insert(&mut self, tree: TreeId, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let previous = self.store.tree(tree).insert(key, value)?;
        journal::push_op(&mut self.payload, tree, key, Some(value));
        if tree == TreeId::Facts {
            self.store.live_totals().replace(previous.as_deref(), Some(value));
        }
        Ok(())
    }

    /// Removes `key`; returns the value it had.
    fn remove(&mut self, tree: TreeId, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        let previous = self.store.tree(tree).remove(key)?;
        if previous.is_some() {
            journal::push_op(&mut self.payload, tree, key, None);
        }
        if tree == TreeId::Facts {
            self.store.live_totals().replace(previous.as_deref(), None);
        }
        Ok(previous)
    }
}

/// Creates `dir` and its missing parents, readable by the owner only,
/// because a store contains answers and pseudonyms. Leaves existing directories as they are.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

impl Store {
    /// Opens (or creates) the store in `dir` with a page cache of
    /// `cache_bytes`, replaying what the journal of an earlier run still holds.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        create_private_dir(dir)?;
        // sled's own periodic flush is off: the journal makes writes durable,
        // and checkpoints flush sled.
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .flush_every_ms(None)
            .open()?;
        let (flush_requests, receiver) = mpsc::channel();
        let journal_path = dir.join("journal");
        let leftover = Journal::read_leftover(&journal_path)?;
        let trees = [
            db.open_tree("chats")?,
            db.open_tree("invitations")?,
            db.open_tree("webhook_ids")?,
            db.open_tree("queue")?,
            db.open_tree("dead")?,
            db.open_tree("meta")?,
            db.open_tree("totals")?,
            db.open_tree("facts")?,
        ];
        if !leftover.is_empty() {
            replay(&trees, &leftover)?;
            db.flush()?;
        }
        let shared = Arc::new(Shared {
            write_lock: Mutex::new(()),
            journal: Journal::open_empty(&journal_path)?,
            inbox: inbox::Inbox::default(),
        });
        let sink = Sink {
            db: db.clone(),
            trees: trees.clone(),
            live: Arc::default(),
            shared: Arc::clone(&shared),
        };
        let [chats, invitations, webhook_ids, queue, dead, meta, totals, facts] = trees;
        let store = Self {
            chats,
            invitations,
            webhook_ids,
            queue,
            dead,
            meta,
            facts,
            totals,
            live: Arc::clone(&sink.live),
            shared,
            flusher: Arc::new(Flusher {
                requests: None,
                thread: None,
                applier: None,
            }),
            sink: sink.clone(),
            db,
        };
        store.ensure_facts()?;
        if !leftover.is_empty() {
            store.remove_unacknowledged_orphans()?;
        }
        store.build_live_totals()?;
        store.build_seen_filters()?;
        store.db.flush()?;
        let applier = spawn_applier(sink.clone());
        let thread = spawn_flusher(sink, receiver);
        Ok(Self {
            flusher: Arc::new(Flusher {
                requests: Some(flush_requests),
                thread: Some(thread),
                applier: Some((Arc::clone(&store.shared), applier)),
            }),
            ..store
        })
    }

    fn tree(&self, id: TreeId) -> &sled::Tree {
        match id {
            TreeId::Chats => &self.chats,
            TreeId::Invitations => &self.invitations,
            TreeId::WebhookIds => &self.webhook_ids,
            TreeId::Queue => &self.queue,
            TreeId::Dead => &self.dead,
            TreeId::Meta => &self.meta,
            TreeId::Totals => &self.totals,
            TreeId::Facts => &self.facts,
        }
    }

    /// Deletes what a write that was never acknowledged may have left after
    /// a crash: sled can keep a prefix of such a write (queue entries or
    /// facts without their chat) that the journal does not hold. Without
    /// this, a queued invitation of a lost chat would reach the platform,
    /// and the platform's retry would then create the chat again under new ids.
    fn remove_unacknowledged_orphans(&self) -> Result<(), StoreError> {
        let mut removed = 0u64;
        for entry in self.queue.iter() {
            let (key, value) = entry?;
            let delivery: QueuedDelivery = decode(&key, &value)?;
            let chat_exists = match self.invitation(&delivery.invitation_id)? {
                Some(invitation) => self.chats.contains_key(invitation.chat.as_bytes())?,
                None => false,
            };
            if !chat_exists {
                self.queue.remove(&key)?;
                self.invitations.remove(delivery.invitation_id.as_str())?;
                removed += 1;
            }
        }
        for entry in self.facts.iter() {
            let (key, _) = entry?;
            if !self.chats.contains_key(&key)? {
                self.facts.remove(&key)?;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::warn!(
                removed,
                "removed records of writes that were never acknowledged before a crash"
            );
        }
        Ok(())
    }

    /// Writes report facts for every chat of a store made before they
    /// existed. Runs once, when the store is opened.
    fn ensure_facts(&self) -> Result<(), StoreError> {
        const FACTS_VERSION: &[u8] = b"facts_version";
        if self.meta.get(FACTS_VERSION)?.is_some() || self.chats.is_empty() {
            self.meta.insert(FACTS_VERSION, &[1])?;
            return Ok(());
        }
        let mut written = 0u64;
        for entry in self.chats.iter() {
            let (key, value) = entry?;
            let chat: ChatRecord = decode(&key, &value)?;
            let parent = self.invitation(&chat.parent_invitation)?;
            let professional = self.invitation(&chat.professional_invitation)?;
            self.facts
                .insert(&key, facts::encode(&chat, [parent.as_ref(), professional.as_ref()]))?;
            written += 1;
        }
        self.meta.insert(FACTS_VERSION, &[1])?;
        tracing::info!(chats = written, "wrote report facts for the chats of an older store");
        Ok(())
    }

    /// Counts every chat's facts into the running totals, once at open.
    fn build_live_totals(&self) -> Result<(), StoreError> {
        let mut live = self.live_totals();
        for entry in self.facts.iter() {
            let (_, value) = entry?;
            live.replace(None, Some(&value));
        }
        live.shrink_to_fit();
        Ok(())
    }

    /// Adds every stored webhook id and chat key to the filters that spare
    /// duplicate checks a read of sled. Runs once, when the store is opened.
    fn build_seen_filters(&self) -> Result<(), StoreError> {
        let mut queue = self.shared.inbox.lock();
        for key in self.webhook_ids.iter().keys() {
            queue.seen_webhooks.insert(&key?);
        }
        for key in self.chats.iter().keys() {
            queue.seen_chats.insert(&key?);
        }
        Ok(())
    }

    fn live_totals(&self) -> std::sync::MutexGuard<'_, LiveTotals> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns the running totals of the live chats per stratum, with the
    /// invitations expired at `now` counted.
    pub fn live_strata(&self, now: Millis) -> Result<Vec<(facts::Stratum, StratumCounts)>, StoreError> {
        self.settle();
        self.live_totals()
            .snapshot(now)
            .map_err(|key| StoreError::CorruptFacts {
                key: format!("stratum {}", crate::token::hex(&key)),
            })
    }

    /// Runs one write: its changes reach sled at once and the journal in the
    /// same order. Not durable until [`Store::flush`].
    fn write<T, E: From<StoreError>>(&self, change: impl FnOnce(&mut Writes<'_>) -> Result<T, E>) -> Result<T, E> {
        let _guard = self.shared.write_lock.lock().unwrap_or_else(PoisonError::into_inner);
        let mut writes = Writes {
            store: self,
            payload: Vec::new(),
        };
        let result = change(&mut writes);
        // Even a failed write journals what it already changed in sled.
        self.shared.journal.append(&writes.payload);
        result
    }

    /// Waits until everything written before the call is on disk.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (reply, done) = oneshot::channel();
        self.flusher
            .requests
            .as_ref()
            .ok_or_else(|| StoreError::Flush("flusher stopped".into()))?
            .send(reply)
            .map_err(|_| StoreError::Flush("flusher stopped".into()))?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(StoreError::Flush(error)),
            Err(_) => Err(StoreError::Flush("flusher stopped".into())),
        }
    }

    /// Flushes on the calling thread, for commands that run without the service.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.sink.checkpoint()
    }

    /// Blocks until every chat accepted before the call is in sled, so reads
    /// of chats, facts and running totals see it. Returns at once when the
    /// inbox is empty, which it is except during bursts of webhooks.
    pub fn settle(&self) {
        self.shared.inbox.settle();
    }

    /// Waits until the inbox has room for another accepted chat. Webhook
    /// handlers call it before [`Store::accept_chat`], so a burst that the
    /// applier cannot keep up with slows the senders instead of growing memory.
    pub async fn inbox_room(&self) {
        self.shared.inbox.room().await;
    }

    /// Resolves when accepted chats with queued deliveries have reached sled.
    pub async fn deliveries_queued(&self) {
        self.shared.inbox.reached_sled.notified().await;
    }

    /// Returns the time of the first start, recording `now` if there is none yet.
    pub fn first_started_at(&self, now: Millis) -> Result<Millis, StoreError> {
        self.write(|writes| {
            if let Some(bytes) = self.meta.get(b"first_started_at")? {
                return Ok(i64::from_be_bytes(bytes.as_ref().try_into().unwrap_or([0; 8])));
            }
            writes.insert(TreeId::Meta, b"first_started_at", &now.to_be_bytes())?;
            Ok(now)
        })
    }

    /// Accepts a chat-ended webhook: deduplicates on the webhook id and on
    /// the chat, then appends one write with the chat, its report facts, its
    /// two invitations and their queued deliveries to the journal and the
    /// inbox. The webhook id is written last, so a store that has it has the
    /// rest. Not durable until [`Store::flush`]; in sled once the applier
    /// has taken it from the inbox (see [`Store::settle`]).
    pub fn accept_chat(&self, new: NewChat<'_>) -> Result<ChatAcceptance, StoreError> {
        let received = new.now.to_be_bytes();
        let mut payload = Vec::with_capacity(2048);
        for invitation in new.invitations {
            journal::push_op(
                &mut payload,
                TreeId::Invitations,
                invitation.id.as_str().as_bytes(),
                Some(&encode(invitation)),
            );
        }
        for delivery in new.deliveries {
            let key = queue_key(delivery.next_attempt_at, &delivery.invitation_id);
            journal::push_op(&mut payload, TreeId::Queue, &key, Some(&encode(delivery)));
        }
        let by_role = |role: Role| new.invitations.iter().find(|invitation| invitation.role == role);
        let chat_facts = facts::encode(new.chat, [by_role(Role::Parent), by_role(Role::Professional)]);
        journal::push_op(&mut payload, TreeId::Facts, new.chat_key.as_bytes(), Some(&chat_facts));
        journal::push_op(
            &mut payload,
            TreeId::Chats,
            new.chat_key.as_bytes(),
            Some(&encode(new.chat)),
        );
        journal::push_op(
            &mut payload,
            TreeId::WebhookIds,
            new.webhook_id.as_bytes(),
            Some(&received),
        );

        let mut queue = self.shared.inbox.lock();
        if self.has_webhook(&queue, new.webhook_id)? {
            return Ok(ChatAcceptance::DuplicateWebhook);
        }
        let known_chat = queue.has_chat(new.chat_key)
            || (queue.seen_chats.may_contain(new.chat_key.as_bytes()) && self.chats.contains_key(new.chat_key)?);
        let (acceptance, chat_key) = if known_chat {
            payload.clear();
            journal::push_op(
                &mut payload,
                TreeId::WebhookIds,
                new.webhook_id.as_bytes(),
                Some(&received),
            );
            (ChatAcceptance::KnownChat, None)
        } else {
            (ChatAcceptance::New, Some(new.chat_key.into()))
        };
        self.shared.journal.append(&payload);
        queue.push(inbox::Entry {
            payload,
            webhook_id: new.webhook_id.into(),
            chat_key,
        });
        drop(queue);
        self.shared.inbox.notify_pushed();
        Ok(acceptance)
    }

    /// Returns whether a webhook id was accepted before.
    pub fn webhook_seen(&self, id: &str) -> Result<bool, StoreError> {
        self.has_webhook(&self.shared.inbox.lock(), id)
    }

    /// Looks for a webhook id in the inbox and, unless the filter rules it
    /// out, in sled. The caller has locked the inbox.
    fn has_webhook(&self, queue: &inbox::Queue, id: &str) -> Result<bool, StoreError> {
        Ok(queue.has_webhook(id)
            || (queue.seen_webhooks.may_contain(id.as_bytes()) && self.webhook_ids.contains_key(id)?))
    }

    /// Remembers an accepted webhook id; not durable until [`Store::flush`].
    pub fn remember_webhook(&self, id: &str, now: Millis) -> Result<(), StoreError> {
        self.write(|writes| {
            // Into the filter first, so that no check can pass it while sled has the id.
            self.shared.inbox.lock().seen_webhooks.insert(id.as_bytes());
            writes.insert(TreeId::WebhookIds, id.as_bytes(), &now.to_be_bytes())
        })
    }

    /// Deletes webhook ids received before `cutoff` and returns how many.
    /// Platforms retry with the same id for days, so callers keep at least 7.
    pub fn prune_webhook_ids(&self, cutoff: Millis) -> Result<usize, StoreError> {
        let mut removed = 0;
        let mut old = Vec::new();
        for entry in self.webhook_ids.iter() {
            let (key, value) = entry?;
            let received = value.as_ref().try_into().map(i64::from_be_bytes).unwrap_or(0);
            if received < cutoff {
                old.push(key);
            }
            if old.len() == 1_000 {
                removed += self.remove_webhook_ids(&std::mem::take(&mut old))?;
            }
        }
        removed += self.remove_webhook_ids(&old)?;
        Ok(removed)
    }

    fn remove_webhook_ids(&self, keys: &[sled::IVec]) -> Result<usize, StoreError> {
        self.write(|writes| {
            let mut removed = 0;
            for key in keys {
                removed += usize::from(writes.remove(TreeId::WebhookIds, key)?.is_some());
            }
            Ok(removed)
        })
    }

    /// Reads a chat from sled. A chat still in the inbox is not found; the
    /// callers look up chats of delivered invitations, which are in sled.
    pub fn chat(&self, key: &str) -> Result<Option<ChatRecord>, StoreError> {
        self.chats
            .get(key)?
            .map(|bytes| decode(key.as_bytes(), &bytes))
            .transpose()
    }

    /// Iterates over all chats, in key order.
    pub fn chats(&self) -> impl Iterator<Item = Result<(String, ChatRecord), StoreError>> + '_ {
        self.settle();
        self.chats.iter().map(|entry| {
            let (key, value) = entry?;
            let record = decode(&key, &value)?;
            Ok((String::from_utf8_lossy(&key).into_owned(), record))
        })
    }

    /// Calls `visit` with the report facts of every chat, in key order, and
    /// returns how many there were.
    pub fn for_each_facts(&self, mut visit: impl FnMut(&facts::ChatFacts<'_>)) -> Result<u64, StoreError> {
        self.settle();
        let mut count = 0;
        for entry in self.facts.iter() {
            let (key, value) = entry?;
            let chat_facts = facts::decode(&value).ok_or_else(|| StoreError::CorruptFacts {
                key: String::from_utf8_lossy(&key).into_owned(),
            })?;
            visit(&chat_facts);
            count += 1;
        }
        Ok(count)
    }

    /// Reads every stored chat record without decoding it, for comparison
    /// with [`Store::scan_facts_bytes`]. Returns the number of records and their total size.
    pub fn scan_chats_bytes(&self) -> Result<(u64, u64), StoreError> {
        scan_bytes(&self.chats)
    }

    /// Reads every stored fact value without decoding it, for measuring the
    /// cost of a scan. Returns the number of values and their total size.
    pub fn scan_facts_bytes(&self) -> Result<(u64, u64), StoreError> {
        scan_bytes(&self.facts)
    }

    /// Keys and receive times of every chat, in key order.
    pub fn chat_receive_times(&self) -> impl Iterator<Item = Result<(String, Millis), StoreError>> + '_ {
        self.chats()
            .map(|entry| entry.map(|(key, chat)| (key, chat.received_at)))
    }

    /// Returns the purged totals stored under `key`.
    pub fn totals(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.totals.get(key)?.map(|bytes| bytes.to_vec()))
    }

    /// Iterates over every purged stratum: its key and its totals.
    pub fn all_totals(&self) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + '_ {
        self.totals.iter().map(|entry| {
            entry
                .map(|(key, value)| (key.to_vec(), value.to_vec()))
                .map_err(StoreError::from)
        })
    }

    /// Deletes a chat with its invitations (answers and comments), its report
    /// facts and any delivery of it in the dead-letter list, and in the same
    /// write stores the totals that `fold` returns as `(key, value)`. `fold`
    /// gets the chat's facts and may read the current totals with
    /// [`Store::totals`]. Returns what was deleted, or `None` when the chat
    /// is not stored.
    pub fn purge_chat(
        &self,
        chat_key: &str,
        fold: impl FnOnce(&facts::ChatFacts<'_>) -> Result<(Vec<u8>, Vec<u8>), StoreError>,
    ) -> Result<Option<PurgedChat>, StoreError> {
        self.write(|writes| {
            let Some(chat_bytes) = self.chats.get(chat_key)? else {
                return Ok(None);
            };
            let chat: ChatRecord = decode(chat_key.as_bytes(), &chat_bytes)?;
            let corrupt = || StoreError::CorruptFacts {
                key: chat_key.to_owned(),
            };
            let facts_bytes = self.facts.get(chat_key)?.ok_or_else(corrupt)?;
            let chat_facts = facts::decode(&facts_bytes).ok_or_else(corrupt)?;
            let (totals_key, totals) = fold(&chat_facts)?;
            writes.insert(TreeId::Totals, &totals_key, &totals)?;

            let mut purged = PurgedChat::default();
            for id in [&chat.parent_invitation, &chat.professional_invitation] {
                if let Some(bytes) = writes.remove(TreeId::Invitations, id.as_str().as_bytes())? {
                    purged.add(&decode(id.as_str().as_bytes(), &bytes)?);
                }
                if writes.remove(TreeId::Dead, id.as_str().as_bytes())?.is_some() {
                    purged.dead_letters += 1;
                }
            }
            writes.remove(TreeId::Facts, chat_key.as_bytes())?;
            writes.remove(TreeId::Chats, chat_key.as_bytes())?;
            Ok(Some(purged))
        })
    }

    /// Counts the chats in sled, without those still in the inbox.
    pub fn chat_count(&self) -> usize {
        self.chats.len()
    }

    /// Counts the accepted webhooks waiting in the inbox to be written into sled.
    pub fn inbox_len(&self) -> usize {
        self.shared.inbox.lock().entries.len()
    }

    pub fn invitation(&self, id: &InvitationId) -> Result<Option<InvitationRecord>, StoreError> {
        self.invitations
            .get(id.as_str())?
            .map(|bytes| decode(id.as_str().as_bytes(), &bytes))
            .transpose()
    }

    /// Reads, changes and writes one invitation, and the report facts of its
    /// chat, in one write. `change` returns `Err` to reject the change
    /// without writing.
    pub fn update_invitation<T, E>(
        &self,
        id: &InvitationId,
        change: impl FnOnce(&mut InvitationRecord) -> Result<T, E>,
    ) -> Result<(T, InvitationRecord), UpdateError<E>> {
        self.write(|writes| {
            let Some(current) = self.invitations.get(id.as_str())? else {
                return Err(UpdateError::NotFound);
            };
            let mut record: InvitationRecord = decode(id.as_str().as_bytes(), &current)?;
            let before = record.clone();
            let outcome = change(&mut record).map_err(UpdateError::Rejected)?;
            if record == before {
                return Ok((outcome, record));
            }
            // Facts first: after a crash sled may keep a prefix of this write,
            // and a retried change rewrites the facts only while the invitation differs.
            if let Some(stored) = self.facts.get(record.chat.as_bytes())? {
                let role_facts = facts::RoleFacts::from_invitation(&record);
                let updated =
                    facts::with_role(&stored, record.role, &role_facts).ok_or_else(|| StoreError::CorruptFacts {
                        key: record.chat.clone(),
                    })?;
                writes.insert(TreeId::Facts, record.chat.as_bytes(), &updated)?;
            }
            writes.insert(TreeId::Invitations, id.as_str().as_bytes(), &encode(&record))?;
            Ok((outcome, record))
        })
    }

    /// Queued deliveries due at or before `now`, oldest first, at most
    /// `limit`, leaving out those whose queue key `skip` accepts without
    /// decoding them.
    pub fn due_deliveries(
        &self,
        now: Millis,
        limit: usize,
        skip: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<(Vec<u8>, QueuedDelivery)>, StoreError> {
        let end = (now.max(0) as u64 + 1).to_be_bytes();
        let mut due = Vec::new();
        if limit == 0 {
            return Ok(due);
        }
        for entry in self.queue.range(..end.to_vec()) {
            let (key, value) = entry?;
            if skip(&key) {
                continue;
            }
            due.push((key.to_vec(), decode(&key, &value)?));
            if due.len() >= limit {
                break;
            }
        }
        Ok(due)
    }

    /// Returns whether a queue entry still exists. An attempt removes its
    /// entry before it stops counting as in flight.
    pub fn is_queued(&self, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.queue.contains_key(key)?)
    }

    /// Due time of the earliest queued delivery.
    pub fn next_due(&self) -> Result<Option<Millis>, StoreError> {
        let Some((key, _)) = self.queue.first()? else {
            return Ok(None);
        };
        let mut due = [0u8; 8];
        due.copy_from_slice(&key[..8]);
        Ok(Some(u64::from_be_bytes(due) as Millis))
    }

    pub fn pending_deliveries(&self) -> Result<Vec<QueuedDelivery>, StoreError> {
        self.settle();
        self.queue
            .iter()
            .map(|entry| {
                let (key, value) = entry?;
                decode(&key, &value)
            })
            .collect()
    }

    pub fn dead_deliveries(&self) -> Result<Vec<QueuedDelivery>, StoreError> {
        self.dead
            .iter()
            .map(|entry| {
                let (key, value) = entry?;
                decode(&key, &value)
            })
            .collect()
    }

    /// Reads up to `limit` deliveries of `list` in key order, starting after
    /// the key `after`, and keeps those for which `keep` returns true. Each
    /// comes with its key, which a later call takes as `after`.
    pub fn deliveries_page(
        &self,
        list: DeliveryList,
        after: Option<&[u8]>,
        limit: usize,
        mut keep: impl FnMut(&QueuedDelivery) -> Result<bool, StoreError>,
    ) -> Result<Vec<(Vec<u8>, QueuedDelivery)>, StoreError> {
        let tree = match list {
            DeliveryList::Pending => {
                self.settle();
                &self.queue
            }
            DeliveryList::Dead => &self.dead,
        };
        let start = match after {
            Some(key) => std::ops::Bound::Excluded(key.to_vec()),
            None => std::ops::Bound::Unbounded,
        };
        let mut page = Vec::new();
        for entry in tree.range((start, std::ops::Bound::Unbounded)) {
            if page.len() >= limit {
                break;
            }
            let (key, value) = entry?;
            let delivery: QueuedDelivery = decode(&key, &value)?;
            if keep(&delivery)? {
                page.push((key.to_vec(), delivery));
            }
        }
        Ok(page)
    }

    /// Returns whether the invitation is in the dead-letter list.
    pub fn is_dead_letter(&self, id: &InvitationId) -> Result<bool, StoreError> {
        Ok(self.dead.contains_key(id.as_str())?)
    }

    /// Creation time of the oldest queued delivery.
    pub fn oldest_pending(&self) -> Result<Option<Millis>, StoreError> {
        let mut oldest: Option<Millis> = None;
        for entry in self.queue.iter() {
            let (key, value) = entry?;
            let delivery: QueuedDelivery = decode(&key, &value)?;
            oldest = Some(oldest.map_or(delivery.created_at, |at| at.min(delivery.created_at)));
        }
        Ok(oldest)
    }

    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Records that the platform accepted a delivery: removes it from the
    /// queue and marks the invitation delivered, in one write.
    pub fn complete_delivery(&self, key: &[u8], id: &InvitationId, now: Millis) -> Result<(), StoreError> {
        self.write(|writes| {
            writes.remove(TreeId::Queue, key)?;
            self.set_delivery(writes, id, |record| {
                record.delivery = records::DeliveryStatus::Delivered;
                record.delivered_at = Some(now);
            })
        })
    }

    /// Changes the delivery fields of an invitation within a write. The
    /// report facts do not depend on them.
    fn set_delivery(
        &self,
        writes: &mut Writes<'_>,
        id: &InvitationId,
        change: impl FnOnce(&mut InvitationRecord),
    ) -> Result<(), StoreError> {
        if let Some(bytes) = self.invitations.get(id.as_str())? {
            let mut record: InvitationRecord = decode(id.as_str().as_bytes(), &bytes)?;
            change(&mut record);
            writes.insert(TreeId::Invitations, id.as_str().as_bytes(), &encode(&record))?;
        }
        Ok(())
    }

    /// Moves a delivery to a new due time after a failed attempt.
    pub fn reschedule_delivery(&self, key: &[u8], delivery: &QueuedDelivery) -> Result<(), StoreError> {
        let new_key = queue_key(delivery.next_attempt_at, &delivery.invitation_id);
        self.write(|writes| {
            writes.remove(TreeId::Queue, key)?;
            writes.insert(TreeId::Queue, &new_key, &encode(delivery))
        })
    }

    /// Moves a delivery from the queue to the dead-letter list.
    pub fn dead_letter(&self, key: &[u8], delivery: &QueuedDelivery) -> Result<(), StoreError> {
        let id = &delivery.invitation_id;
        self.write(|writes| {
            writes.remove(TreeId::Queue, key)?;
            writes.insert(TreeId::Dead, id.as_str().as_bytes(), &encode(delivery))?;
            self.set_delivery(writes, id, |record| record.delivery = records::DeliveryStatus::Dead)
        })
    }

    /// Puts a dead-lettered delivery back in the queue, due `now`. Returns
    /// false when the invitation is not in the dead-letter list.
    pub fn retry_dead(&self, id: &InvitationId, now: Millis) -> Result<bool, StoreError> {
        self.write(|writes| {
            let Some(bytes) = self.dead.get(id.as_str())? else {
                return Ok(false);
            };
            let mut delivery: QueuedDelivery = decode(id.as_str().as_bytes(), &bytes)?;
            delivery.next_attempt_at = now;
            delivery.attempts = 0;
            delivery.created_at = now;
            writes.remove(TreeId::Dead, id.as_str().as_bytes())?;
            writes.insert(TreeId::Queue, &queue_key(now, id), &encode(&delivery))?;
            self.set_delivery(writes, id, |record| record.delivery = records::DeliveryStatus::Pending)?;
            Ok(true)
        })
    }

    /// Unix seconds up to which Chatwoot's resolved conversations were
    /// reconciled; before the first poll, the first start of the service,
    /// so conversations from before it are never invited.
    pub fn chatwoot_synced_until(&self) -> Result<i64, StoreError> {
        match self.meta.get(b"chatwoot_synced_until")? {
            Some(bytes) => Ok(i64::from_be_bytes(bytes.as_ref().try_into().unwrap_or([0; 8]))),
            None => Ok(self.first_started_at(crate::startup::now_millis())? / 1000),
        }
    }

    pub fn set_chatwoot_synced_until(&self, seconds: i64) -> Result<(), StoreError> {
        self.write(|writes| writes.insert(TreeId::Meta, b"chatwoot_synced_until", &seconds.to_be_bytes()))
    }

    /// Copies every tree into a new store in `dir`, which must not hold a
    /// store yet, and flushes it. Trees are copied in the order chats,
    /// invitations, queue, dead letters, webhook ids, meta: a chat and its
    /// invitations are written in one transaction, so every chat in the copy
    /// has its invitations. Returns the number of chats copied.
    ///
    /// NOTE: the copy is taken while the service runs, tree by tree, not as
    /// one snapshot. A chat accepted during the copy may appear only with its
    /// invitations or queue entries, which reports ignore.
    pub fn copy_to(&self, dir: &Path) -> Result<usize, StoreError> {
        self.settle();
        let copy = sled::Config::new().path(dir).create_new(true).open()?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let trees = [
            ("chats", &self.chats),
            ("facts", &self.facts),
            ("totals", &self.totals),
            ("invitations", &self.invitations),
            ("queue", &self.queue),
            ("dead", &self.dead),
            ("webhook_ids", &self.webhook_ids),
            ("meta", &self.meta),
        ];
        let mut chats = 0;
        for (name, tree) in trees {
            let target = copy.open_tree(name)?;
            let mut batch = sled::Batch::default();
            let mut pending = 0;
            for entry in tree.iter() {
                let (key, value) = entry?;
                batch.insert(key, value);
                pending += 1;
                if name == "chats" {
                    chats += 1;
                }
                if pending == 10_000 {
                    target.apply_batch(std::mem::take(&mut batch))?;
                    pending = 0;
                }
            }
            target.apply_batch(batch)?;
        }
        copy.flush()?;
        Ok(chats)
    }

    /// Records `fingerprint` of the server key on first use and returns
    /// whether the stored one matches, so a store is never served with a key
    /// other than the one its tokens and pseudonyms were made with.
    pub fn key_matches(&self, fingerprint: &str) -> Result<bool, StoreError> {
        self.write(|writes| match self.meta.get(b"key_fingerprint")? {
            Some(existing) => Ok(existing.as_ref() == fingerprint.as_bytes()),
            None => {
                writes.insert(TreeId::Meta, b"key_fingerprint", fingerprint.as_bytes())?;
                Ok(true)
            }
        })
    }

    /// Returns whether the store serves reads; `/readyz` uses it.
    pub fn is_healthy(&self) -> bool {
        self.meta.get(b"first_started_at").is_ok()
    }
}

/// Reads every value of `tree`; returns their number and total size.
fn scan_bytes(tree: &sled::Tree) -> Result<(u64, u64), StoreError> {
    let mut count = 0;
    let mut bytes = 0;
    for entry in tree.iter() {
        let (_, value) = entry?;
        count += 1;
        bytes += value.len() as u64;
    }
    Ok((count, bytes))
}

/// Applies the journal records an earlier run left to `trees` (in
/// [`TreeId`] order), in order. Each record contains whole values, so records
/// that sled already has change nothing.
fn replay(trees: &[sled::Tree; 8], bytes: &[u8]) -> Result<(), StoreError> {
    let (payloads, left_over) = journal::records(bytes);
    for payload in &payloads {
        apply_payload(trees, None, payload)?;
    }
    tracing::info!(
        records = payloads.len(),
        unacknowledged_bytes = left_over,
        "replayed the store journal of the previous run"
    );
    Ok(())
}

/// Writes the operations of one journal payload into sled, and into the
/// running totals when given.
fn apply_payload(trees: &[sled::Tree; 8], live: Option<&Mutex<LiveTotals>>, payload: &[u8]) -> Result<(), StoreError> {
    let ops = journal::parse_ops(payload).ok_or_else(|| StoreError::Journal(std::io::Error::other("bad payload")))?;
    for op in ops {
        let (tree, previous, value) = match op {
            Op::Insert { tree, key, value } => (tree, trees[tree as usize].insert(key, value)?, Some(value)),
            Op::Remove { tree, key } => (tree, trees[tree as usize].remove(key)?, None),
        };
        if let (TreeId::Facts, Some(live)) = (tree, live) {
            live.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .replace(previous.as_deref(), value);
        }
    }
    Ok(())
}

impl Sink {
    /// Writes inbox entries into sled, in order, stopping at the first
    /// failure. Returns how many were written.
    fn apply_entries(&self, entries: &[inbox::Entry]) -> (usize, Result<(), StoreError>) {
        for (done, entry) in entries.iter().enumerate() {
            if let Err(error) = apply_payload(&self.trees, Some(&self.live), &entry.payload) {
                return (done, Err(error));
            }
        }
        (entries.len(), Ok(()))
    }

    /// Takes up to [`inbox::BATCH`] entries from the inbox and writes them into
    /// sled under the write lock. Entries that failed go back to the front.
    fn apply_batch(&self) -> Result<usize, StoreError> {
        // The write lock comes first, so a checkpoint never finds an entry
        // that has left the inbox without being in sled.
        let _guard = self.shared.write_lock.lock().unwrap_or_else(PoisonError::into_inner);
        let mut batch: Vec<inbox::Entry> = {
            let mut queue = self.shared.inbox.lock();
            let count = queue.entries.len().min(inbox::BATCH);
            queue.entries.drain(..count).collect()
        };
        let (done, result) = self.apply_entries(&batch);
        let mut queue = self.shared.inbox.lock();
        queue.applied(&batch[..done]);
        for entry in batch.drain(done..).rev() {
            queue.entries.push_front(entry);
        }
        drop(queue);
        if done > 0 {
            self.shared.inbox.notify_applied();
        }
        result.map(|()| done)
    }

    /// Writes the inbox into sled, flushes sled and replaces the journal by
    /// one with only the records that sled does not have yet. The inbox is
    /// written and flushed first without blocking anyone. The last flush and
    /// the new journal follow under the write lock and the inbox, so that no
    /// write or accepted chat lands in the old journal after that flush.
    fn checkpoint(&self) -> Result<(), StoreError> {
        let started = Instant::now();
        // Only the entries there now: senders that keep the inbox full must
        // not keep this step from ever ending.
        let batches = self.shared.inbox.lock().entries.len().div_ceil(inbox::BATCH);
        for _ in 0..batches {
            if self.apply_batch()? == 0 {
                break;
            }
        }
        self.db.flush()?;
        let unlocked = started.elapsed();

        let _guard = self.shared.write_lock.lock().unwrap_or_else(PoisonError::into_inner);
        let queue = self.shared.inbox.lock();
        if !self.shared.journal.has_records() {
            return Ok(());
        }
        self.db.flush()?;
        // Entries that arrived since the first step stay in the inbox, and the
        // new journal keeps their records. Senders therefore never wait for sled here.
        self.shared
            .journal
            .rewrite(queue.entries.iter().map(|entry| entry.payload.as_slice()))?;
        tracing::debug!(
            unlocked_ms = unlocked.as_millis() as u64,
            locked_ms = (started.elapsed() - unlocked).as_millis() as u64,
            "store checkpoint"
        );
        Ok(())
    }
}

/// Starts the applier: the thread that writes inbox entries into sled. It
/// runs at a lower CPU priority than the request handlers (nice 10 on
/// Linux), so a burst of webhooks is acknowledged first and written into
/// sled after. The inbox limit keeps the lag bounded. It also runs the
/// checkpoints that the flusher requests.
fn spawn_applier(sink: Sink) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .name("store-applier".into())
        .spawn(move || {
            #[cfg(target_os = "linux")]
            if let Err(error) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10) {
                tracing::debug!(%error, "could not lower the priority of the store applier");
            }
            loop {
                let checkpoint_due = {
                    let queue = sink.shared.inbox.lock();
                    let mut queue = sink.shared.inbox.wait_for_work(queue, Duration::from_secs(1));
                    if queue.closing {
                        // The flusher's final checkpoint writes what is left.
                        return;
                    }
                    std::mem::take(&mut queue.checkpoint_due)
                };
                if let Err(error) = sink.apply_batch() {
                    tracing::error!(%error, "writing accepted chats into the store failed; the journal keeps them; retrying in 1 s");
                    // The checkpoint waits for the retry instead of the next interval.
                    sink.shared.inbox.lock().checkpoint_due |= checkpoint_due;
                    thread::sleep(Duration::from_secs(1));
                    continue;
                }
                if checkpoint_due && let Err(error) = sink.checkpoint() {
                    tracing::error!(%error, "store checkpoint failed; the journal keeps every write");
                }
            }
        })
        .expect("the applier thread starts")
}

/// Starts the thread that makes writes durable: it takes every waiting flush
/// request, writes the journal once with one `fdatasync`, and answers them
/// all. It requests a checkpoint from the applier every 30 seconds or 64 MiB of
/// journal, and runs the last one itself when the store closes.
fn spawn_flusher(sink: Sink, requests: mpsc::Receiver<FlushReply>) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .name("store-flusher".into())
        .spawn(move || {
            let mut last_checkpoint = Instant::now();
            loop {
                let wait = CHECKPOINT_INTERVAL.saturating_sub(last_checkpoint.elapsed());
                let journal_size = match requests.recv_timeout(wait) {
                    Ok(first) => {
                        let mut waiting = vec![first];
                        waiting.extend(requests.try_iter());
                        let result = sink.shared.journal.sync().map_err(|error| error.to_string());
                        if let Err(error) = &result {
                            tracing::error!(%error, waiting = waiting.len(), "store journal sync failed");
                        }
                        for reply in waiting {
                            let _ = reply.send(result.as_ref().map(|_| ()).map_err(String::clone));
                        }
                        result.unwrap_or(0)
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => 0,
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        // Every handle of the store is gone: leave sled complete
                        // and the journal empty.
                        if let Err(error) = sink.checkpoint() {
                            tracing::error!(%error, "store checkpoint at close failed");
                        }
                        return;
                    }
                };
                if journal_size >= CHECKPOINT_BYTES || last_checkpoint.elapsed() >= CHECKPOINT_INTERVAL {
                    // The applier runs it, so this thread goes on syncing
                    // the journal for requests while sled is flushed.
                    sink.shared.inbox.lock().checkpoint_due = true;
                    sink.shared.inbox.notify_pushed();
                    last_checkpoint = Instant::now();
                }
            }
        })
        .expect("the flusher thread starts")
}
