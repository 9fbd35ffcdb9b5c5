//! The only code that knows sled: trees, keys, transactions and durability.
//!
//! Trees:
//! - `chat_records`: record key → the chat, its invitations and its report
//!   facts in one value (see [`chat_value`])
//! - `invitation_aliases`: invitation id → record key, for ids that do not
//!   carry their record key (those made before one record per chat)
//! - `chat_facts`: record key → receive time and report facts (see
//!   [`chat_value::facts_value`]). These values are small, so the scans at
//!   open and for the retention purge read little.
//! - `archive_records` and `archive_facts`: the same two values of every
//!   settled chat, many chats to a key (see [`archive`]). A chat is in the
//!   three trees above or in these two, never in both.
//! - `webhook_ids`: accepted `webhook-id` → receive time and event digest (see [`webhook_ids`])
//! - `queue`: due time (big-endian millis) ++ invitation id → [`QueuedDelivery`]
//! - `dead`: invitation id → [`QueuedDelivery`] that will not be retried by itself
//! - `meta`: store-wide values such as the first start time
//! - `totals`: report totals of purged chats, per week
//! - `chats`, `invitations` and `facts`: the format before one record per
//!   chat; [`Store::open`] moves them into `chat_records` and empties them
//!
//! sled writes are durable only after a flush. [`Store::flush`] hands the
//! request to one flusher thread, which flushes once for every request that
//! is waiting, so concurrent writers share one fsync. Accepted chats reach
//! sled later, through the inbox (see [`inbox`]).

pub mod archive;
mod chat_value;
pub mod facts;
mod inbox;
mod journal;
mod migrate;
pub mod records;
mod seen;
pub mod webhook_ids;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::{FairMutex, FairMutexGuard, RwLock};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use crate::report::StratumCounts;
use crate::report::live::LiveTotals;
use crate::token::InvitationId;
use chat_value::{KEY_BYTES, Salt, StoredChat};
use journal::{Journal, Op, TreeId};
use records::{ChatRecord, InvitationRecord, Millis, QueuedDelivery};
use webhook_ids::{EventDigest, WebhookSeen};

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
    #[error("the stored setting {0} of the store is damaged")]
    CorruptMeta(&'static str),
    #[error("store flush failed: {0}")]
    Flush(String),
}

type FlushReply = oneshot::Sender<Result<(), String>>;

/// A key and its value, copied out of sled.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Counts of chats per report stratum.
pub type Strata = Vec<(facts::Stratum, StratumCounts)>;

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
    /// Lock that keeps chats in place. Purges, moves into the archive,
    /// reads of all chats ([`ScanGuard`]) and a whole [`Store::copy_to`]
    /// hold it, so a copy never has a chat both in its records and in its
    /// totals. It is fair: it passes to the longest waiting thread, so
    /// exports run back to back do not hold off a purge, an archive move or
    /// a backup for longer than the reads already running or waiting.
    purge_lock: FairMutex<()>,
    /// Taken for writing by each purge write and for reading by
    /// [`Store::live_and_purged_totals`], so a report never finds a purged
    /// chat both in the running totals and in the purged weeks' totals.
    /// Reports wait for at most one purge write, not for exports or backups.
    totals_lock: RwLock<()>,
    journal: Journal,
    inbox: inbox::Inbox,
    /// Keys written while [`Store::copy_to`] runs in the trees that the copy
    /// takes again at its end. `None` while no copy runs.
    copy_changes: Mutex<Option<ChangedKeys>>,
    /// Number of chats in the archive, counted at open and changed with
    /// every write of an archive bucket.
    archived: AtomicI64,
    /// Number of chats in the hot trees, counted at open and changed with
    /// every write of a chat's facts, because sled's `len` reads every key.
    hot: AtomicI64,
    /// Number of queued deliveries, kept like `hot`.
    queued: AtomicI64,
    /// Odd while a write that moves chats into or out of the archive is
    /// applied, and one higher after it, so a reader outside the write lock
    /// can tell that a chat moved while it looked in both places.
    archive_moves: AtomicU64,
    /// Number of reads of every chat now running (see [`ScanGuard`]).
    scans: AtomicUsize,
}

/// Guard of a read of every chat, hot and archived. It holds the purge
/// lock, so no chat moves into the archive or is purged meanwhile. While it
/// is held, a change to an archived chat is written inside the archive
/// instead of moving the chat back to the hot trees (see
/// [`Store::write_archived_chat`]). So no chat changes place under the read,
/// which then neither misses a chat nor reads one twice.
struct ScanGuard<'s> {
    scans: &'s AtomicUsize,
    _no_moves: FairMutexGuard<'s, ()>,
}

impl Drop for ScanGuard<'_> {
    fn drop(&mut self) {
        self.scans.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    /// Notes the keys that `ops` wrote in the trees a copy takes again,
    /// while a copy runs. Called under the write lock, after the ops reached sled.
    fn note_copy_changes(&self, ops: &[Op<'_>]) {
        let mut changes = self.copy_changes.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(changes) = changes.as_mut() else {
            return;
        };
        for op in ops {
            let (tree, key) = match *op {
                Op::Insert { tree, key, .. } | Op::Remove { tree, key } => (tree, key),
                // The copy takes the whole bucket again.
                Op::Entry { tree, key, .. } => match archive::bucket_of(key) {
                    Some(bucket_key) => {
                        changes.insert((tree, bucket_key.to_vec()));
                        continue;
                    }
                    None => continue,
                },
            };
            if matches!(
                tree,
                TreeId::Records
                    | TreeId::WebhookIds
                    | TreeId::Aliases
                    | TreeId::Queue
                    | TreeId::Dead
                    | TreeId::ArchiveRecords
                    | TreeId::ArchiveFacts
            ) {
                changes.insert((tree, key.to_vec()));
            }
        }
    }
}

/// The trees of a backup copy that [`Store::chat_copied`] reads.
struct CopyTrees {
    records: sled::Tree,
    aliases: sled::Tree,
    archive_records: sled::Tree,
}

/// Keys written while a copy runs, with their tree.
type ChangedKeys = HashSet<(TreeId, Vec<u8>)>;

/// Stops noting changes for a copy when the copy ends, also by an error.
struct CopyChanges<'a>(&'a Shared);

impl<'a> CopyChanges<'a> {
    fn start(shared: &'a Shared) -> Self {
        *shared.copy_changes.lock().unwrap_or_else(PoisonError::into_inner) = Some(HashSet::new());
        Self(shared)
    }

    /// Returns the keys noted so far and stops noting. Call under the write lock.
    fn take(&self) -> ChangedKeys {
        self.0
            .copy_changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_default()
    }
}

impl Drop for CopyChanges<'_> {
    fn drop(&mut self) {
        self.take();
    }
}

/// Inbox entries the applier writes in one sled transaction. Each
/// transaction has a fixed cost, and every sled read waits while one runs,
/// so the groups are small but not single entries.
const ENTRIES_PER_TRANSACTION: usize = 32;

/// Number of sled trees, in [`TreeId`] order.
const TREES: usize = 13;
const TREE_NAMES: [&str; TREES] = [
    "chats",
    "invitations",
    "webhook_ids",
    "queue",
    "dead",
    "meta",
    "totals",
    "facts",
    "chat_records",
    "invitation_aliases",
    "chat_facts",
    "archive_records",
    "archive_facts",
];

/// The writer of inbox entries into sled, shared by the applier thread and checkpoints.
#[derive(Clone)]
struct Sink {
    db: sled::Db,
    /// In [`TreeId`] order.
    trees: [sled::Tree; TREES],
    live: Arc<Mutex<LiveTotals>>,
    shared: Arc<Shared>,
}

/// The open store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    records: sled::Tree,
    aliases: sled::Tree,
    chat_facts: sled::Tree,
    webhook_ids: sled::Tree,
    queue: sled::Tree,
    dead: sled::Tree,
    meta: sled::Tree,
    totals: sled::Tree,
    /// Mixed into every record key (see [`chat_value`]).
    salt: Salt,
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
    /// The `webhook-id` was accepted before with the same event; nothing changed.
    DuplicateWebhook,
    /// The `webhook-id` was accepted before with a different event; nothing changed.
    WebhookIdReused,
    /// Another webhook already brought this chat; its id is now remembered too.
    KnownChat,
}

/// A new chat with everything written in the same write.
pub struct NewChat<'a> {
    /// `None` only for chats written without a webhook (`bench --fill`).
    pub webhook_id: Option<&'a str>,
    /// Digest of the webhook's event, when the sender promises the same event
    /// for every retry (Standard Webhooks); see [`webhook_ids`].
    pub webhook_digest: Option<EventDigest>,
    pub chat_key: &'a str,
    pub chat: &'a ChatRecord,
    /// Empty for an ineligible chat, which gets no invitations.
    pub invitations: &'a [InvitationRecord],
    pub deliveries: &'a [QueuedDelivery],
    pub now: Millis,
}

/// Counts of the records [`Store::purge_chats`] deleted besides a chat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurgedChat {
    pub invitations: u64,
    pub answers: u64,
    pub comments: u64,
    /// Dead letters of the chat, which hold its raw platform ids.
    pub dead_letters: u64,
    /// Deliveries of the chat still in the queue, which contain its raw platform
    /// ids too. The platform does not get them, unless an attempt was under way.
    pub pending_deliveries: u64,
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

/// The changes of one write, recorded as a journal payload. [`Store::write`]
/// applies them to sled as one transaction when the write succeeds.
struct Writes<'s> {
    store: &'s Store,
    payload: Vec<u8>,
}

impl Writes<'_> {
    fn insert(&mut self, tree: TreeId, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        journal::push_op(&mut self.payload, tree, key, Some(value));
        Ok(())
    }

    /// Removes `key`; returns the value it has, counting the earlier
    /// changes of this write.
    fn remove(&mut self, tree: TreeId, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        let previous = self.current(tree, key)?;
        if previous.is_some() {
            journal::push_op(&mut self.payload, tree, key, None);
        }
        Ok(previous)
    }

    /// Sets (or removes, without a value) the chat `key` in its bucket of
    /// the archive tree `tree`.
    fn set_entry(&mut self, tree: TreeId, key: &[u8], value: Option<&[u8]>) {
        journal::push_entry_op(&mut self.payload, tree, key, value);
    }

    /// Returns the value of `key` after the changes recorded so far. Not
    /// for the archive trees, whose changes are per chat.
    fn current(&self, tree: TreeId, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        let ops = journal::parse_ops(&self.payload).expect("the payload of this write parses");
        for op in ops.iter().rev() {
            match *op {
                Op::Insert {
                    tree: op_tree,
                    key: op_key,
                    value,
                } if op_tree == tree && op_key == key => return Ok(Some(value.into())),
                Op::Remove {
                    tree: op_tree,
                    key: op_key,
                } if op_tree == tree && op_key == key => return Ok(None),
                _ => {}
            }
        }
        Ok(self.store.tree(tree).get(key)?)
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
        let (db, mut trees) = open_sled(dir, cache_bytes)?;
        let (flush_requests, receiver) = mpsc::channel();
        let journal_path = dir.join("journal");
        let leftover = Journal::read_leftover(&journal_path)?;
        if !leftover.is_empty() {
            replay(&trees, &leftover)?;
            db.flush()?;
        }
        let salt = migrate::salt(&trees[TreeId::Meta as usize])?;
        if migrate::to_chat_records(&db, &trees, &salt)? {
            // Fresh handles of the emptied trees of the old format.
            for id in [TreeId::Chats, TreeId::Invitations, TreeId::Facts] {
                trees[id as usize] = db.open_tree(TREE_NAMES[id as usize])?;
            }
        }
        let shared = Arc::new(Shared {
            write_lock: Mutex::new(()),
            purge_lock: FairMutex::new(()),
            totals_lock: RwLock::new(()),
            journal: Journal::open_empty(&journal_path)?,
            inbox: inbox::Inbox::default(),
            copy_changes: Mutex::new(None),
            archived: AtomicI64::new(0),
            hot: AtomicI64::new(0),
            queued: AtomicI64::new(0),
            archive_moves: AtomicU64::new(0),
            scans: AtomicUsize::new(0),
        });
        let store = Self::assemble(db, trees, salt, Arc::default(), shared);
        if !leftover.is_empty() {
            store.remove_unacknowledged_orphans()?;
        }
        store.build_live_totals()?;
        store.build_seen_filters()?;
        store.db.flush()?;
        // sled keeps most pages that a scan reads in memory, beyond its cache
        // size (see the memory section of docs/benchmarks.md). The scans above
        // read every chat's facts, so sled is opened again without them.
        let (salt, live, shared) = {
            // Moved into this block, so its sled handles are dropped at its end.
            let store = store;
            (store.salt, Arc::clone(&store.live), Arc::clone(&store.shared))
        };
        let (db, trees) = open_sled(dir, cache_bytes)?;
        let store = Self::assemble(db, trees, salt, live, shared);
        let sink = store.sink.clone();
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

    /// Builds a store, without its flusher and applier threads, from sled
    /// handles and the state kept in memory.
    fn assemble(
        db: sled::Db,
        trees: [sled::Tree; TREES],
        salt: Salt,
        live: Arc<Mutex<LiveTotals>>,
        shared: Arc<Shared>,
    ) -> Self {
        let tree = |id: TreeId| trees[id as usize].clone();
        Self {
            records: tree(TreeId::Records),
            aliases: tree(TreeId::Aliases),
            chat_facts: tree(TreeId::ChatFacts),
            webhook_ids: tree(TreeId::WebhookIds),
            queue: tree(TreeId::Queue),
            dead: tree(TreeId::Dead),
            meta: tree(TreeId::Meta),
            totals: tree(TreeId::Totals),
            salt,
            live: Arc::clone(&live),
            shared: Arc::clone(&shared),
            flusher: Arc::new(Flusher {
                requests: None,
                thread: None,
                applier: None,
            }),
            sink: Sink {
                db: db.clone(),
                trees,
                live,
                shared,
            },
            db,
        }
    }

    fn tree(&self, id: TreeId) -> &sled::Tree {
        &self.sink.trees[id as usize]
    }

    /// Returns the sled key of the chat with pseudonym `chat_key`.
    fn record_key(&self, chat_key: &str) -> [u8; KEY_BYTES] {
        chat_value::record_key(&self.salt, chat_key)
    }

    /// Makes the two new invitation ids, parent's and professional's, of the
    /// chat with pseudonym `chat_key`. Each carries the chat's record key, so
    /// the questionnaire API finds the chat with one read.
    pub fn new_invitation_ids(&self, chat_key: &str) -> [InvitationId; 2] {
        let key = self.record_key(chat_key);
        let mut prefix = [0; chat_value::ID_PREFIX_BYTES];
        prefix.copy_from_slice(&key[..chat_value::ID_PREFIX_BYTES]);
        let parent = InvitationId::with_locator(prefix);
        loop {
            // Both ids carry the same record key, and only 4 random bytes tell
            // them apart: one chat in 2^32 would otherwise get one id twice.
            let professional = InvitationId::with_locator(prefix);
            if professional != parent {
                return [parent, professional];
            }
        }
    }

    /// Finds the stored chat of an invitation, in the hot trees or in the archive.
    fn locate(&self, id: &InvitationId) -> Result<Option<Located>, StoreError> {
        let has_invitation = |stored: &StoredChat| stored.invitations.iter().any(|invitation| invitation.id == *id);
        if let Some(prefix) = chat_value::id_prefix(id) {
            for entry in self.records.scan_prefix(prefix) {
                let (key, value) = entry?;
                let stored = decode_chat(&key, &value)?;
                if has_invitation(&stored) {
                    return Ok(Some(Located::hot(&key, stored)));
                }
            }
            if let Some(bucket_key) = archive::bucket_of(&prefix)
                && let Some(bucket) = self.tree(TreeId::ArchiveRecords).get(bucket_key)?
            {
                let bucket = plain_bucket(&bucket_key, &bucket)?;
                for (key, value) in archive_entries(&bucket_key, &bucket)? {
                    if key.starts_with(&prefix) {
                        let stored = decode_chat(key, value)?;
                        if has_invitation(&stored) {
                            return Ok(Some(Located::archived(key, stored)));
                        }
                    }
                }
            }
        }
        let Some(key) = self.aliases.get(id.as_str())? else {
            return Ok(None);
        };
        if let Some(value) = self.records.get(&key)? {
            return Ok(Some(Located::hot(&key, decode_chat(&key, &value)?)));
        }
        match self.archived(TreeId::ArchiveRecords, &key)? {
            Some(value) => Ok(Some(Located::archived(&key, decode_chat(&key, &value)?))),
            None => Ok(None),
        }
    }

    /// Returns the value of chat `key` in the archive tree `tree`
    /// (`ArchiveRecords` or `ArchiveFacts`).
    fn archived(&self, tree: TreeId, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(bucket_key) = archive::bucket_of(key) else {
            return Ok(None);
        };
        let Some(bucket) = self.tree(tree).get(bucket_key)? else {
            return Ok(None);
        };
        let bucket = plain_bucket(&bucket_key, &bucket)?;
        archive_entries(&bucket_key, &bucket)?;
        Ok(archive::find(&bucket, key).map(<[u8]>::to_vec))
    }

    /// Returns whether chat `key` is stored, hot or archived. Runs outside
    /// the write lock, so it looks again when a chat moved meanwhile.
    fn contains_chat(&self, key: &[u8]) -> Result<bool, StoreError> {
        loop {
            let before = self.shared.archive_moves.load(Ordering::SeqCst);
            if before % 2 == 0 {
                let found = self.records.contains_key(key)? || self.archived(TreeId::ArchiveFacts, key)?.is_some();
                if self.shared.archive_moves.load(Ordering::SeqCst) == before {
                    return Ok(found);
                }
            }
            thread::yield_now();
        }
    }

    /// Records in `writes` that chat `key` leaves the archive: its entries
    /// in both archive buckets go.
    fn unarchive(&self, writes: &mut Writes<'_>, key: &[u8]) {
        writes.set_entry(TreeId::ArchiveRecords, key, None);
        writes.set_entry(TreeId::ArchiveFacts, key, None);
    }

    /// Records in `writes` the changed archived chat `stored` and its new
    /// facts value. The chat leaves the archive, unless a read of every chat
    /// runs (see [`ScanGuard`]). Called under the write lock, which
    /// [`Store::scan_guard`] waits for.
    fn write_archived_chat(
        &self,
        writes: &mut Writes<'_>,
        key: &[u8],
        stored: &StoredChat,
        facts_value: &[u8],
    ) -> Result<(), StoreError> {
        if self.shared.scans.load(Ordering::SeqCst) > 0 {
            writes.set_entry(TreeId::ArchiveRecords, key, Some(&stored.encode()));
            writes.set_entry(TreeId::ArchiveFacts, key, Some(facts_value));
        } else {
            self.unarchive(writes, key);
            writes.insert(TreeId::ChatFacts, key, facts_value)?;
            writes.insert(TreeId::Records, key, &stored.encode())?;
        }
        Ok(())
    }

    /// Starts a read of every chat (see [`ScanGuard`]).
    fn scan_guard(&self) -> ScanGuard<'_> {
        let no_moves = self.shared.purge_lock.lock();
        self.shared.scans.fetch_add(1, Ordering::SeqCst);
        // A write that began before the count rose may still move a chat out
        // of the archive: it ends before the read begins.
        drop(self.shared.write_lock.lock().unwrap_or_else(PoisonError::into_inner));
        ScanGuard {
            scans: &self.shared.scans,
            _no_moves: no_moves,
        }
    }

    /// Deletes what a write that was never acknowledged may have left after
    /// a crash of an earlier version, which applied each operation of a write
    /// to sled on its own: sled could keep a prefix of such a write (queue
    /// entries or facts without their chat) that the journal lacked. Writes of
    /// this version are sled transactions and leave no prefix. Without this, a
    /// queued invitation of a lost chat would reach the platform, and the
    /// platform's retry would then create the chat again under new ids.
    fn remove_unacknowledged_orphans(&self) -> Result<(), StoreError> {
        let mut removed = 0u64;
        for entry in self.queue.iter() {
            let (key, value) = entry?;
            let delivery: QueuedDelivery = decode(&key, &value)?;
            if self.locate(&delivery.invitation_id)?.is_none() {
                self.queue.remove(&key)?;
                self.aliases.remove(delivery.invitation_id.as_str())?;
                removed += 1;
            }
        }
        for entry in self.chat_facts.iter() {
            let (key, _) = entry?;
            if !self.records.contains_key(&key)? {
                self.chat_facts.remove(&key)?;
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

    /// Counts every chat's facts into the running totals, once at open.
    /// Also counts the hot chats, the archived chats and the queued deliveries.
    fn build_live_totals(&self) -> Result<(), StoreError> {
        let mut live = self.live_totals();
        let mut hot = 0;
        for entry in self.chat_facts.iter() {
            let (_, value) = entry?;
            live.replace(None, chat_value::facts_of(&value));
            hot += 1;
        }
        self.shared.hot.store(hot, Ordering::Relaxed);
        let mut queued = 0;
        for key in self.queue.iter().keys() {
            key?;
            queued += 1;
        }
        self.shared.queued.store(queued, Ordering::Relaxed);
        let mut archived = 0;
        for entry in self.tree(TreeId::ArchiveFacts).iter() {
            let (bucket_key, bucket) = entry?;
            for (_, value) in archive_entries(&bucket_key, &bucket)? {
                live.replace(None, chat_value::facts_of(value));
                archived += 1;
            }
        }
        self.shared.archived.store(archived, Ordering::Relaxed);
        live.shrink_to_fit();
        Ok(())
    }

    /// Adds every stored webhook id and chat record key to the filters that
    /// spare duplicate checks a read of sled. Runs once, when the store is opened.
    fn build_seen_filters(&self) -> Result<(), StoreError> {
        let mut queue = self.shared.inbox.lock();
        for key in self.webhook_ids.iter().keys() {
            queue.seen_webhooks.insert(&key?);
        }
        for key in self.chat_facts.iter().keys() {
            queue.seen_chats.insert(&key?);
        }
        for entry in self.tree(TreeId::ArchiveFacts).iter() {
            let (bucket_key, bucket) = entry?;
            for (key, _) in archive_entries(&bucket_key, &bucket)? {
                queue.seen_chats.insert(key);
            }
        }
        Ok(())
    }

    fn live_totals(&self) -> MutexGuard<'_, LiveTotals> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns the running totals of the live chats per stratum, with the
    /// invitations expired at `now` counted.
    pub fn live_strata(&self, now: Millis) -> Result<Strata, StoreError> {
        self.settle();
        self.live_snapshot(now)
    }

    /// Copies the running totals of live chats without waiting for the inbox.
    fn live_snapshot(&self, now: Millis) -> Result<Strata, StoreError> {
        self.live_totals()
            .snapshot(now)
            .map_err(|key| StoreError::CorruptFacts {
                key: format!("stratum {}", crate::token::hex(&key)),
            })
    }

    /// Runs one write: when `change` succeeds, its changes reach sled at
    /// once as one transaction, and the journal in the same order. A failed
    /// `change` writes nothing. Not durable until [`Store::flush`].
    fn write<T, E: From<StoreError>>(&self, change: impl FnOnce(&mut Writes<'_>) -> Result<T, E>) -> Result<T, E> {
        let _guard = self.shared.write_lock.lock().unwrap_or_else(PoisonError::into_inner);
        let mut writes = Writes {
            store: self,
            payload: Vec::new(),
        };
        let outcome = change(&mut writes)?;
        if !writes.payload.is_empty() {
            let ops = journal::parse_ops(&writes.payload)
                .ok_or_else(|| StoreError::Journal(std::io::Error::other("bad payload")))?;
            apply_ops(&self.sink.trees, Some(self.sink.tally()), &ops)?;
            self.shared.journal.append(&writes.payload);
            self.shared.note_copy_changes(&ops);
        }
        Ok(outcome)
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

    /// Blocks until the chat with pseudonym `key` is in sled, when it is
    /// still in the inbox. Unlike [`Store::settle`], it returns at once for
    /// any other chat, also during a burst.
    pub fn settle_chat(&self, key: &str) {
        let record_key = self.record_key(key);
        let waiting = self.shared.inbox.lock().has_chat(&record_key);
        if waiting {
            self.settle();
        }
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
    /// the chat, then appends one write with the queued deliveries, the chat
    /// record (the chat, its invitations and report facts) and the webhook
    /// id to the journal and the inbox. The webhook id is written last, so a
    /// store that has it has the rest. Not durable until [`Store::flush`];
    /// in sled once the applier has taken it from the inbox (see [`Store::settle`]).
    pub fn accept_chat(&self, new: NewChat<'_>) -> Result<ChatAcceptance, StoreError> {
        let received = webhook_ids::value(new.now, new.webhook_digest.as_ref());
        let record_key = self.record_key(new.chat_key);
        let stored = chat_value::StoredChatView {
            key: new.chat_key,
            chat: new.chat,
            invitations: new.invitations,
        };
        // Room for a chat with both invitations, so the payload is not copied
        // while it grows. It is cut to size before the inbox keeps it.
        let mut payload = Vec::with_capacity(4096);
        for delivery in new.deliveries {
            let key = queue_key(delivery.next_attempt_at, &delivery.invitation_id);
            journal::push_op(&mut payload, TreeId::Queue, &key, Some(&encode(delivery)));
        }
        for invitation in new.invitations {
            // Ids that do not carry the record key are found through an alias.
            if chat_value::id_prefix(&invitation.id).as_ref().map(<[u8; _]>::as_slice)
                != Some(&record_key[..chat_value::ID_PREFIX_BYTES])
            {
                journal::push_op(
                    &mut payload,
                    TreeId::Aliases,
                    invitation.id.as_str().as_bytes(),
                    Some(&record_key),
                );
            }
        }
        journal::push_op(
            &mut payload,
            TreeId::ChatFacts,
            &record_key,
            Some(&stored.facts_value()),
        );
        journal::push_op(&mut payload, TreeId::Records, &record_key, Some(&stored.encode()));
        if let Some(webhook_id) = new.webhook_id {
            journal::push_op(&mut payload, TreeId::WebhookIds, webhook_id.as_bytes(), Some(&received));
        }

        let mut queue = self.shared.inbox.lock();
        if let Some(webhook_id) = new.webhook_id {
            while queue.answering.contains_key(webhook_id) {
                // An answer webhook with this id is being written: its write
                // stores the id only when it ends, so wait for it, outside the inbox.
                drop(queue);
                drop(self.shared.write_lock.lock().unwrap_or_else(PoisonError::into_inner));
                thread::yield_now();
                queue = self.shared.inbox.lock();
            }
            match self.webhook_in(&queue, webhook_id, new.webhook_digest)? {
                WebhookSeen::New => {}
                WebhookSeen::Retry => return Ok(ChatAcceptance::DuplicateWebhook),
                WebhookSeen::Reused => return Ok(ChatAcceptance::WebhookIdReused),
            }
        }
        let known_chat = queue.has_chat(&record_key)
            || (queue.seen_chats.may_contain(&record_key) && self.contains_chat(&record_key)?);
        let (acceptance, chat_key) = if known_chat {
            payload.clear();
            if let Some(webhook_id) = new.webhook_id {
                journal::push_op(&mut payload, TreeId::WebhookIds, webhook_id.as_bytes(), Some(&received));
            }
            (ChatAcceptance::KnownChat, None)
        } else {
            (ChatAcceptance::New, Some(record_key.into()))
        };
        payload.shrink_to_fit();
        self.shared.journal.append(&payload);
        queue.push(inbox::Entry {
            payload,
            webhook_id: new.webhook_id.map(Into::into),
            webhook_digest: new.webhook_digest,
            chat_key,
        });
        self.shared.inbox.notify_pushed_by(queue);
        Ok(acceptance)
    }

    /// Compares a webhook id and the digest of its event with the ids
    /// accepted before.
    pub fn webhook_seen(&self, id: &str, digest: Option<EventDigest>) -> Result<WebhookSeen, StoreError> {
        self.webhook_in(&self.shared.inbox.lock(), id, digest)
    }

    /// Looks for a webhook id in the inbox and, unless the filter rules it
    /// out, in sled. The caller has locked the inbox.
    fn webhook_in(
        &self,
        queue: &inbox::Queue,
        id: &str,
        digest: Option<EventDigest>,
    ) -> Result<WebhookSeen, StoreError> {
        let stored = match queue.webhook(id) {
            Some(stored) => Some(stored),
            None if queue.seen_webhooks.may_contain(id.as_bytes()) => {
                self.webhook_ids.get(id)?.map(|value| webhook_ids::digest(&value))
            }
            None => None,
        };
        Ok(match stored {
            None => WebhookSeen::New,
            Some(stored) => WebhookSeen::of_accepted(stored, digest),
        })
    }

    /// Deletes webhook ids received before `cutoff` and returns how many.
    /// Platforms retry with the same id for days, so callers keep at least 7.
    pub fn prune_webhook_ids(&self, cutoff: Millis) -> Result<usize, StoreError> {
        let mut removed = 0;
        let mut old = Vec::new();
        for entry in self.webhook_ids.iter() {
            let (key, value) = entry?;
            // A damaged value counts as old: the id goes, and nothing else depends on it.
            let received = webhook_ids::received_at(&value).unwrap_or(0);
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
        let record_key = self.record_key(key);
        if let Some(value) = self.records.get(record_key)? {
            return Ok(Some(decode_chat(&record_key, &value)?.chat));
        }
        match self.archived(TreeId::ArchiveRecords, &record_key)? {
            Some(value) => Ok(Some(decode_chat(&record_key, &value)?.chat)),
            None => Ok(None),
        }
    }

    /// Iterates over all chats with their pseudonyms and invitations: the
    /// hot ones in record-key order (which is not the order of the
    /// pseudonyms), then the archived ones.
    ///
    /// Holds a [`ScanGuard`] until the iterator is dropped, so every chat
    /// stored before the call is read once, also when it changes meanwhile.
    pub fn chats(&self) -> impl Iterator<Item = Result<ChatEntry, StoreError>> + '_ {
        self.settle();
        let no_moves = self.scan_guard();
        let hot = self.records.iter().map(|entry| {
            let (key, value) = entry?;
            Ok(ChatEntry::from(decode_chat(&key, &value)?))
        });
        let archived = self.tree(TreeId::ArchiveRecords).iter().flat_map(|entry| {
            let chats = entry.map_err(StoreError::from).and_then(|(bucket_key, bucket)| {
                let bucket = plain_bucket(&bucket_key, &bucket)?;
                archive_entries(&bucket_key, &bucket)?
                    .into_iter()
                    .map(|(key, value)| decode_chat(key, value).map(ChatEntry::from))
                    .collect::<Result<Vec<_>, _>>()
            });
            match chats {
                Ok(chats) => chats.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(error) => vec![Err(error)],
            }
        });
        hot.chain(archived).inspect(move |_| {
            let _ = &no_moves;
        })
    }

    /// Calls `visit` with the key and facts value of every stored chat, hot
    /// and archived.
    fn for_each_facts_value(
        &self,
        visit: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // No chat changes place while the scan runs.
        let _no_moves = self.scan_guard();
        self.visit_facts_values(visit)
    }

    /// Calls `visit` with the key and fact value of every chat, hot and
    /// archived. Call it only under a [`ScanGuard`].
    fn visit_facts_values(
        &self,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        for entry in self.chat_facts.iter() {
            let (key, value) = entry?;
            visit(&key, &value)?;
        }
        for entry in self.tree(TreeId::ArchiveFacts).iter() {
            let (bucket_key, bucket) = entry?;
            for (key, value) in archive_entries(&bucket_key, &bucket)? {
                visit(key, value)?;
            }
        }
        Ok(())
    }

    /// Reads the running totals of live chats and every entry of the purged
    /// weeks' totals at one moment, so each purged chat is in exactly one of
    /// them. Waits for chats accepted before the call to reach sled first.
    pub fn live_and_purged_totals(&self, now: Millis) -> Result<(Strata, Vec<KeyValue>), StoreError> {
        self.settle();
        let _no_purge_write = self.shared.totals_lock.read();
        let live = self.live_snapshot(now)?;
        let purged = self.all_totals().collect::<Result<Vec<_>, _>>()?;
        Ok((live, purged))
    }

    /// Calls `visit` with the report facts of every chat, in record-key
    /// order, and returns how many there were. Then, under the same guard,
    /// calls `totals` with each entry of the purged weeks' totals, so each
    /// purged chat reaches exactly one of the two.
    pub fn for_each_facts(
        &self,
        mut visit: impl FnMut(&facts::ChatFacts<'_>),
        mut totals: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        self.settle();
        // Also keeps purges out until the totals are read.
        let _no_moves = self.scan_guard();
        let mut count = 0;
        self.visit_facts_values(|key, value| {
            let chat_facts =
                chat_value::facts_of(value)
                    .and_then(facts::decode)
                    .ok_or_else(|| StoreError::CorruptFacts {
                        key: crate::token::hex(key),
                    })?;
            visit(&chat_facts);
            count += 1;
            Ok(())
        })?;
        for entry in self.totals.iter() {
            let (key, value) = entry?;
            totals(&key, &value)?;
        }
        Ok(count)
    }

    /// Reads every stored chat record without decoding it, for comparison
    /// with [`Store::scan_facts_bytes`]. Returns the number of records and their total size.
    pub fn scan_chats_bytes(&self) -> Result<(u64, u64), StoreError> {
        let mut count = 0;
        let mut bytes = 0;
        for entry in self.records.iter() {
            let (_, value) = entry?;
            count += 1;
            bytes += value.len() as u64;
        }
        for entry in self.tree(TreeId::ArchiveRecords).iter() {
            let (bucket_key, bucket) = entry?;
            let bucket = plain_bucket(&bucket_key, &bucket)?;
            for (_, value) in archive_entries(&bucket_key, &bucket)? {
                count += 1;
                bytes += value.len() as u64;
            }
        }
        Ok((count, bytes))
    }

    /// Reads every stored fact value without decoding it, for measuring the
    /// cost of a scan. Returns the number of values and their total size.
    pub fn scan_facts_bytes(&self) -> Result<(u64, u64), StoreError> {
        let mut count = 0;
        let mut bytes = 0;
        self.for_each_facts_value(|_, value| {
            count += 1;
            bytes += value.len() as u64;
            Ok(())
        })?;
        Ok((count, bytes))
    }

    /// Pseudonyms of the chats received before `cutoff`. Reads the small
    /// facts of every chat, and the record only of each chat it returns.
    pub fn chats_received_before(&self, cutoff: Millis) -> Result<Vec<String>, StoreError> {
        self.settle();
        let mut old = Vec::new();
        let is_old = |value: &[u8]| chat_value::received_at(value).is_some_and(|received| received < cutoff);
        for entry in self.chat_facts.iter() {
            let (key, value) = entry?;
            if is_old(&value)
                && let Some(record) = self.records.get(&key)?
            {
                old.push(decode_chat(&key, &record)?.key);
            }
        }
        for entry in self.tree(TreeId::ArchiveFacts).iter() {
            let (bucket_key, bucket) = entry?;
            let old_keys: Vec<&[u8]> = archive_entries(&bucket_key, &bucket)?
                .into_iter()
                .filter_map(|(key, value)| is_old(value).then_some(key))
                .collect();
            if old_keys.is_empty() {
                continue;
            }
            let Some(records) = self.tree(TreeId::ArchiveRecords).get(&bucket_key)? else {
                continue;
            };
            let records = plain_bucket(&bucket_key, &records)?;
            for (key, value) in archive_entries(&bucket_key, &records)? {
                if old_keys.contains(&key) {
                    old.push(decode_chat(key, value)?.key);
                }
            }
        }
        Ok(old)
    }

    /// Returns the purged totals stored under `key`.
    pub fn totals(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.totals.get(key)?.map(|bytes| bytes.to_vec()))
    }

    /// Iterates over every purged stratum: its key and its totals.
    pub fn all_totals(&self) -> impl Iterator<Item = Result<KeyValue, StoreError>> + '_ {
        self.totals.iter().map(|entry| {
            entry
                .map(|(key, value)| (key.to_vec(), value.to_vec()))
                .map_err(StoreError::from)
        })
    }

    /// Deletes chats of `chat_keys`, in order, each with its invitations
    /// (answers and comments), its report facts and any delivery of it in the
    /// dead-letter list, one write per chat. Each write also stores the
    /// totals that `fold` returns as `(key, value)`. `fold` gets the chat's
    /// facts and may read the current totals with [`Store::totals`]. Holds
    /// the purge lock once, so it waits once for the reads of every chat that
    /// run or wait before it, and stops taking new chats after `hold`, so
    /// such reads wait at most about that long. Returns for each chat it took,
    /// at least the first, what was deleted, or `None` when the chat is not
    /// stored; the caller passes the rest again.
    pub fn purge_chats(
        &self,
        chat_keys: &[String],
        hold: Duration,
        mut fold: impl FnMut(&facts::ChatFacts<'_>) -> Result<(Vec<u8>, Vec<u8>), StoreError>,
    ) -> Result<Vec<Option<PurgedChat>>, StoreError> {
        let _purging = self.shared.purge_lock.lock();
        let started = Instant::now();
        let mut purged = Vec::new();
        for chat_key in chat_keys {
            if !purged.is_empty() && started.elapsed() >= hold {
                break;
            }
            purged.push(self.purge_chat(chat_key, &mut fold)?);
        }
        Ok(purged)
    }

    /// Queue keys of the deliveries of `invitations` that the platform has
    /// not accepted yet. Scans the queue only when one of them is pending,
    /// because a queue key starts with the due time, not the id.
    // NOTE: the purge calls this under the write lock for each chat with a
    // pending invitation, so a retention shorter than a platform outage with
    // a long queue makes each such chat cost a scan of the whole queue.
    pub fn queued_keys(&self, invitations: &[InvitationRecord]) -> Result<Vec<Vec<u8>>, StoreError> {
        let pending: Vec<&[u8]> = invitations
            .iter()
            .filter(|invitation| invitation.delivery == records::DeliveryStatus::Pending)
            .map(|invitation| invitation.id.as_str().as_bytes())
            .collect();
        let mut keys = Vec::new();
        if pending.is_empty() {
            return Ok(keys);
        }
        for key in self.queue.iter().keys() {
            let key = key?;
            if key.get(8..).is_some_and(|id| pending.contains(&id)) {
                keys.push(key.to_vec());
            }
        }
        Ok(keys)
    }

    /// Purges one chat for [`Store::purge_chats`], which holds the purge lock.
    fn purge_chat(
        &self,
        chat_key: &str,
        fold: &mut impl FnMut(&facts::ChatFacts<'_>) -> Result<(Vec<u8>, Vec<u8>), StoreError>,
    ) -> Result<Option<PurgedChat>, StoreError> {
        let record_key = self.record_key(chat_key);
        let _totals = self.shared.totals_lock.write();
        self.write(|writes| {
            let (value, facts_value, archived) = match self.records.get(record_key)? {
                Some(value) => (
                    value.to_vec(),
                    self.chat_facts.get(record_key)?.map(|v| v.to_vec()),
                    false,
                ),
                None => match self.archived(TreeId::ArchiveRecords, &record_key)? {
                    Some(value) => (value, self.archived(TreeId::ArchiveFacts, &record_key)?, true),
                    None => return Ok(None),
                },
            };
            let stored = decode_chat(&record_key, &value)?;
            let chat_facts = facts_value
                .as_deref()
                .and_then(chat_value::facts_of)
                .and_then(facts::decode)
                .ok_or_else(|| StoreError::CorruptFacts {
                    key: chat_key.to_owned(),
                })?;
            let (totals_key, totals) = fold(&chat_facts)?;
            writes.insert(TreeId::Totals, &totals_key, &totals)?;

            let mut purged = PurgedChat::default();
            for invitation in &stored.invitations {
                purged.add(invitation);
                let id = invitation.id.as_str().as_bytes();
                if writes.remove(TreeId::Dead, id)?.is_some() {
                    purged.dead_letters += 1;
                }
                writes.remove(TreeId::Aliases, id)?;
            }
            for key in self.queued_keys(&stored.invitations)? {
                writes.remove(TreeId::Queue, &key)?;
                purged.pending_deliveries += 1;
            }
            if archived {
                self.unarchive(writes, &record_key);
            } else {
                writes.remove(TreeId::ChatFacts, &record_key)?;
                writes.remove(TreeId::Records, &record_key)?;
            }
            Ok(Some(purged))
        })
    }

    /// Counts the chats in sled, hot and archived, without those still in
    /// the inbox. Reads two counters, again while chats are moving into or
    /// out of the archive, so the sum does not count a moving chat twice.
    /// After 1 000 tries it returns the last sum, so a scrape never hangs.
    pub fn chat_count(&self) -> usize {
        let mut count = 0;
        for _ in 0..1_000 {
            let before = self.shared.archive_moves.load(Ordering::SeqCst);
            count = self.shared.hot.load(Ordering::SeqCst) + self.shared.archived.load(Ordering::SeqCst);
            if before % 2 == 0 && self.shared.archive_moves.load(Ordering::SeqCst) == before {
                break;
            }
            thread::yield_now();
        }
        usize::try_from(count).unwrap_or(0)
    }

    /// Moves every settled chat into the archive (see [`archive`]) and
    /// returns how many moved. A chat is settled when it can no longer
    /// change by itself: every invitation was delivered and expired at least
    /// [`archive::SETTLED_AFTER`] before `now`, or, without invitations, it
    /// was received that long before. Reads the facts of every hot chat and
    /// the record of each candidate; moves [`ARCHIVE_BATCH`] chats per write.
    /// `progress` gets the number moved so far after each write.
    pub fn archive_settled(&self, now: Millis, mut progress: impl FnMut(u64)) -> Result<u64, StoreError> {
        self.settle();
        let mut moved = 0;
        let mut batch = Vec::with_capacity(ARCHIVE_BATCH);
        for entry in self.chat_facts.iter() {
            let (key, value) = entry?;
            if facts_settled(&value, now) {
                batch.push(key);
            }
            if batch.len() == ARCHIVE_BATCH {
                moved += self.archive_chats(&std::mem::take(&mut batch), now)?;
                progress(moved);
            }
        }
        if !batch.is_empty() {
            moved += self.archive_chats(&batch, now)?;
            progress(moved);
        }
        Ok(moved)
    }

    /// Moves the chats `keys` that are settled at `now` into the archive, in
    /// one write; returns how many moved.
    fn archive_chats(&self, keys: &[sled::IVec], now: Millis) -> Result<u64, StoreError> {
        // Held so that a backup copy never finds a chat halfway out of the hot trees.
        let _purging = self.shared.purge_lock.lock();
        self.write(|writes| {
            let mut settled = Vec::new();
            for key in keys {
                // Read under the write lock: the chat may have changed since the scan.
                let (Some(record), Some(facts_value)) = (self.records.get(key)?, self.chat_facts.get(key)?) else {
                    continue;
                };
                if key.len() == KEY_BYTES && is_settled(&decode_chat(key, &record)?, now) {
                    settled.push((key, record, facts_value));
                }
            }
            // The removals first: each reads the payload so far, which the
            // records make large.
            for (key, _, _) in &settled {
                writes.remove(TreeId::ChatFacts, key)?;
                writes.remove(TreeId::Records, key)?;
            }
            // Tree by tree in key order, so the changes to one bucket follow
            // each other and are applied to it at once.
            for (key, record, _) in &settled {
                writes.set_entry(TreeId::ArchiveRecords, key, Some(record));
            }
            for (key, _, facts_value) in &settled {
                writes.set_entry(TreeId::ArchiveFacts, key, Some(facts_value));
            }
            Ok(settled.len() as u64)
        })
    }

    /// Counts the chats in the archive.
    pub fn archived_count(&self) -> usize {
        usize::try_from(self.shared.archived.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// Counts the accepted webhooks waiting in the inbox to be written into sled.
    pub fn inbox_len(&self) -> usize {
        self.shared.inbox.lock().entries.len()
    }

    pub fn invitation(&self, id: &InvitationId) -> Result<Option<InvitationRecord>, StoreError> {
        Ok(self.locate(id)?.and_then(|located| {
            located
                .stored
                .invitations
                .into_iter()
                .find(|invitation| invitation.id == *id)
        }))
    }

    /// Reads, changes and writes one invitation, with the report facts of
    /// its chat, in one write of the chat record. `change` returns `Err` to
    /// reject the change without writing.
    pub fn update_invitation<T, E>(
        &self,
        id: &InvitationId,
        change: impl FnOnce(&mut InvitationRecord) -> Result<T, E>,
    ) -> Result<(T, InvitationRecord), UpdateError<E>> {
        self.write(|writes| self.change_invitation(writes, id, change))
    }

    /// Changes an invitation like [`Store::update_invitation`], for a
    /// webhook that brings the change. The same write compares `webhook_id`
    /// and the digest of its event with the ids accepted before and, when
    /// the change is written, stores the id. So two requests with one id
    /// never both change the invitation, even when they arrive at once.
    /// Returns `Ok(Err(seen))`, and changes nothing, when the id was
    /// accepted before.
    /// A chat-ended webhook with the same id that arrives meanwhile waits
    /// for this write (see [`Store::accept_chat`]).
    pub fn update_invitation_once<T, E>(
        &self,
        webhook_id: &str,
        digest: Option<EventDigest>,
        now: Millis,
        id: &InvitationId,
        change: impl FnOnce(&mut InvitationRecord) -> Result<T, E>,
    ) -> Result<Result<(T, InvitationRecord), WebhookSeen>, UpdateError<E>> {
        let mut registered = false;
        let outcome = self.write(|writes| {
            {
                let mut queue = self.shared.inbox.lock();
                let seen = self.webhook_in(&queue, webhook_id, digest)?;
                if seen != WebhookSeen::New {
                    return Ok(Err(seen));
                }
                *queue.answering.entry(webhook_id.into()).or_default() += 1;
                registered = true;
            }
            let updated = self.change_invitation(writes, id, change)?;
            // Into the filter first, so that no check can pass it while sled has the id.
            self.shared.inbox.lock().seen_webhooks.insert(webhook_id.as_bytes());
            writes.insert(
                TreeId::WebhookIds,
                webhook_id.as_bytes(),
                &webhook_ids::value(now, digest.as_ref()),
            )?;
            Ok(Ok(updated))
        });
        if registered {
            // The write has ended, so sled has the id if the change was written.
            let mut queue = self.shared.inbox.lock();
            if let Some(count) = queue.answering.get_mut(webhook_id) {
                *count -= 1;
                if *count == 0 {
                    queue.answering.remove(webhook_id);
                }
            }
        }
        outcome
    }

    /// Applies the change of [`Store::update_invitation`] and records it in `writes`.
    fn change_invitation<T, E>(
        &self,
        writes: &mut Writes<'_>,
        id: &InvitationId,
        change: impl FnOnce(&mut InvitationRecord) -> Result<T, E>,
    ) -> Result<(T, InvitationRecord), UpdateError<E>> {
        let Some(Located {
            key,
            mut stored,
            archived,
        }) = self.locate(id)?
        else {
            return Err(UpdateError::NotFound);
        };
        let Some(record) = stored.invitations.iter_mut().find(|invitation| invitation.id == *id) else {
            return Err(UpdateError::NotFound);
        };
        let before = record.clone();
        let outcome = change(record).map_err(UpdateError::Rejected)?;
        let record = record.clone();
        if record != before {
            let facts_value = chat_value::facts_value(&stored);
            if archived {
                self.write_archived_chat(writes, &key, &stored, &facts_value)?;
            } else {
                if self.chat_facts.get(&key)?.as_deref() != Some(facts_value.as_slice()) {
                    // A change that leaves the report facts as they are
                    // writes the record alone.
                    writes.insert(TreeId::ChatFacts, &key, &facts_value)?;
                }
                writes.insert(TreeId::Records, &key, &stored.encode())?;
            }
        }
        Ok((outcome, record))
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
        usize::try_from(self.shared.queued.load(Ordering::Relaxed)).unwrap_or(0)
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
        if let Some(Located {
            key,
            mut stored,
            archived,
        }) = self.locate(id)?
            && let Some(record) = stored.invitations.iter_mut().find(|invitation| invitation.id == *id)
        {
            change(record);
            if archived {
                self.write_archived_chat(writes, &key, &stored, &chat_value::facts_value(&stored))?;
            } else {
                writes.insert(TreeId::Records, &key, &stored.encode())?;
            }
        }
        Ok(())
    }

    /// Moves a delivery to a new due time after a failed attempt. Does
    /// nothing when the retention purge deleted its chat during the attempt.
    pub fn reschedule_delivery(&self, key: &[u8], delivery: &QueuedDelivery) -> Result<(), StoreError> {
        let new_key = queue_key(delivery.next_attempt_at, &delivery.invitation_id);
        self.write(|writes| {
            if self.locate(&delivery.invitation_id)?.is_none() {
                return Ok(());
            }
            writes.remove(TreeId::Queue, key)?;
            writes.insert(TreeId::Queue, &new_key, &encode(delivery))
        })
    }

    /// Moves a delivery from the queue to the dead-letter list. Does nothing
    /// when the retention purge deleted its chat during the attempt.
    pub fn dead_letter(&self, key: &[u8], delivery: &QueuedDelivery) -> Result<(), StoreError> {
        let id = &delivery.invitation_id;
        self.write(|writes| {
            if self.locate(id)?.is_none() {
                return Ok(());
            }
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
    /// store yet, and flushes it. Returns the number of chats copied.
    ///
    /// The copy is taken while the service runs and is consistent as of its
    /// last step. Every tree is copied first, without blocking writers,
    /// while every key written meanwhile in the records, aliases, webhook
    /// ids, queue and dead letters is noted. The last step takes the write
    /// lock and copies the noted keys again, records first, and then `meta`.
    /// So a delivery that completes during the copy is neither pending
    /// without a queue entry nor queued twice, and writes wait only for the
    /// keys that changed (25 ms for about 2 900 in `tests/backup_snapshot.rs`).
    /// The copy's report facts are computed from its records, and
    /// deliveries are copied only with their chat, so a restored service
    /// never posts an invitation for a chat it lacks. A retention purge
    /// waits until the copy is done, so no purged chat is in both the
    /// records and the totals. Chats still in the inbox at the last step are
    /// not in the copy, and neither are their webhook ids.
    pub fn copy_to(&self, dir: &Path) -> Result<usize, StoreError> {
        // Before the lock, so that reads of every chat do not wait behind a
        // backup that waits for the inbox during a burst of webhooks.
        self.settle();
        let _no_purge = self.shared.purge_lock.lock();
        // Without sled's periodic flush thread, which would hold the copy
        // open for a moment after it is dropped, so it can be opened at once.
        let copy = sled::Config::new()
            .path(dir)
            .create_new(true)
            .flush_every_ms(None)
            .open()?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let changes = CopyChanges::start(&self.shared);
        let copy_facts = copy.open_tree("chat_facts")?;
        let copy_trees = CopyTrees {
            records: copy.open_tree("chat_records")?,
            aliases: copy.open_tree("invitation_aliases")?,
            archive_records: copy.open_tree("archive_records")?,
        };
        let mut chats = 0;
        for (name, tree) in [
            ("chat_records", &self.records),
            ("invitation_aliases", &self.aliases),
            ("totals", &self.totals),
            ("webhook_ids", &self.webhook_ids),
            // The chats, hot and archived, before the deliveries, which are copied only with their chat.
            ("archive_records", self.tree(TreeId::ArchiveRecords)),
            ("archive_facts", self.tree(TreeId::ArchiveFacts)),
            ("queue", &self.queue),
            ("dead", &self.dead),
        ] {
            let target = copy.open_tree(name)?;
            let mut batch = sled::Batch::default();
            let mut facts_batch = sled::Batch::default();
            let mut pending = 0;
            for entry in tree.iter() {
                let (key, value) = entry?;
                match name {
                    "chat_records" => {
                        // The copy's facts come from the copied record, so the
                        // two agree even when a rating arrives during the copy.
                        facts_batch.insert(&key, chat_value::facts_value(&decode_chat(&key, &value)?));
                        chats += 1;
                    }
                    "archive_records" => chats += archive_entries(&key, &plain_bucket(&key, &value)?)?.len(),
                    "queue" | "dead" if !Self::chat_copied(&copy_trees, &key, &value)? => continue,
                    _ => {}
                }
                batch.insert(key, value);
                pending += 1;
                if pending == 10_000 {
                    target.apply_batch(std::mem::take(&mut batch))?;
                    copy_facts.apply_batch(std::mem::take(&mut facts_batch))?;
                    pending = 0;
                }
            }
            target.apply_batch(batch)?;
            copy_facts.apply_batch(facts_batch)?;
        }

        let write_guard = self.shared.write_lock.lock().unwrap_or_else(PoisonError::into_inner);
        let locked = Instant::now();
        let mut changed: Vec<(TreeId, Vec<u8>)> = changes.take().into_iter().collect();
        // Chats first, so the deliveries after them find their chats.
        changed.sort_unstable_by_key(|(tree, _)| !matches!(tree, TreeId::Records | TreeId::ArchiveRecords));
        for (tree, key) in &changed {
            if *tree == TreeId::Records {
                let had = copy_trees.records.contains_key(key)?;
                match self.records.get(key)? {
                    Some(value) => {
                        copy_facts.insert(key, chat_value::facts_value(&decode_chat(key, &value)?))?;
                        copy_trees.records.insert(key, value)?;
                        chats += usize::from(!had);
                    }
                    None => {
                        copy_facts.remove(key)?;
                        copy_trees.records.remove(key)?;
                        chats -= usize::from(had);
                    }
                }
                continue;
            }
            let target = copy.open_tree(TREE_NAMES[*tree as usize])?;
            let current = self.sink.trees[*tree as usize].get(key)?;
            if *tree == TreeId::ArchiveRecords {
                let count = |bucket: Option<&[u8]>| -> Result<usize, StoreError> {
                    bucket.map_or(Ok(0), |bucket| {
                        Ok(archive_entries(key, &plain_bucket(key, bucket)?)?.len())
                    })
                };
                chats = chats + count(current.as_deref())? - count(target.get(key)?.as_deref())?;
            }
            match current {
                Some(value) if !matches!(tree, TreeId::Queue | TreeId::Dead) => {
                    target.insert(key, value)?;
                }
                Some(value) if Self::chat_copied(&copy_trees, key, &value)? => {
                    target.insert(key, value)?;
                }
                _ => {
                    target.remove(key)?;
                }
            }
        }
        let meta = copy.open_tree("meta")?;
        for entry in self.meta.iter() {
            let (key, value) = entry?;
            meta.insert(key, value)?;
        }
        tracing::info!(
            changed = changed.len(),
            writes_waited_ms = locked.elapsed().as_millis() as u64,
            "store copy copied again the keys changed while it ran"
        );
        drop(write_guard);
        copy.flush()?;
        Ok(chats)
    }

    /// Returns whether the chat of a queued or dead-lettered delivery is in
    /// the copy, so a copy never posts an invitation of a chat it lacks.
    /// Reads the copy only, so it stays cheap for a large queue. The chat is
    /// found by the record key prefix in the invitation id (one in 2^96
    /// could match another chat) or, for an id without one, by its alias.
    fn chat_copied(copy: &CopyTrees, key: &[u8], value: &[u8]) -> Result<bool, StoreError> {
        let delivery: QueuedDelivery = decode(key, value)?;
        let id = &delivery.invitation_id;
        let in_archive = |record_key: &[u8]| -> Result<bool, StoreError> {
            let Some(bucket_key) = archive::bucket_of(record_key) else {
                return Ok(false);
            };
            Ok(match copy.archive_records.get(bucket_key)? {
                Some(bucket) => archive_entries(&bucket_key, &plain_bucket(&bucket_key, &bucket)?)?
                    .iter()
                    .any(|(key, _)| key.starts_with(record_key)),
                None => false,
            })
        };
        if let Some(prefix) = chat_value::id_prefix(id)
            && (copy.records.scan_prefix(prefix).next().transpose()?.is_some() || in_archive(&prefix)?)
        {
            return Ok(true);
        }
        match copy.aliases.get(id.as_str())? {
            Some(record_key) => Ok(copy.records.contains_key(&record_key)? || in_archive(&record_key)?),
            None => Ok(false),
        }
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

/// Opens sled in `dir` with every tree. sled's own periodic flush is off:
/// the journal makes writes durable, and checkpoints flush sled.
///
/// A handle of this process that was just dropped can hold sled's file lock
/// for a moment, while sled's I/O threads finish its last flush. So a busy
/// lock is tried again for up to 2 seconds.
fn open_sled(dir: &Path, cache_bytes: u64) -> Result<(sled::Db, [sled::Tree; TREES]), StoreError> {
    let config = sled::Config::new()
        .path(dir)
        .cache_capacity(cache_bytes)
        .flush_every_ms(None);
    let deadline = Instant::now() + Duration::from_secs(2);
    let db = loop {
        match config.open() {
            Err(sled::Error::Io(error))
                if error.to_string().contains("could not acquire lock") && Instant::now() < deadline =>
            {
                thread::sleep(Duration::from_millis(20));
            }
            opened => break opened?,
        }
    };
    let mut opened = Vec::with_capacity(TREES);
    for name in TREE_NAMES {
        opened.push(db.open_tree(name)?);
    }
    let trees = opened
        .try_into()
        .unwrap_or_else(|_| unreachable!("one handle per tree"));
    Ok((db, trees))
}

/// Settled chats moved into the archive per write: few enough that a
/// write holds the write lock briefly.
const ARCHIVE_BATCH: usize = 128;

/// Tells from a chat's facts value whether it may be settled at `now`,
/// before its record is read: the check of [`is_settled`] without delivery.
fn facts_settled(value: &[u8], now: Millis) -> bool {
    let Some(chat) = chat_value::facts_of(value).and_then(facts::decode) else {
        return false;
    };
    if !chat.eligible {
        return chat_value::received_at(value)
            .is_some_and(|received| received.saturating_add(archive::SETTLED_AFTER) <= now);
    }
    chat.roles
        .iter()
        .all(|role| !role.invited || role.expires_at.saturating_add(archive::SETTLED_AFTER) <= now)
}

/// Tells whether a chat is settled at `now` (see [`Store::archive_settled`]).
fn is_settled(stored: &StoredChat, now: Millis) -> bool {
    if stored.invitations.is_empty() {
        return stored.chat.received_at.saturating_add(archive::SETTLED_AFTER) <= now;
    }
    stored.invitations.iter().all(|invitation| {
        invitation.delivery == records::DeliveryStatus::Delivered
            && invitation.expires_at.saturating_add(archive::SETTLED_AFTER) <= now
    })
}

/// A stored chat with its pseudonym and invitations, as [`Store::chats`] yields it.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatEntry {
    /// The chat pseudonym.
    pub key: String,
    pub chat: ChatRecord,
    /// Empty for an ineligible chat, otherwise both roles.
    pub invitations: Vec<InvitationRecord>,
}

impl ChatEntry {
    /// Returns the invitation of `role`, or `None` for an ineligible chat.
    pub fn invitation(&self, role: crate::questionnaire::Role) -> Option<&InvitationRecord> {
        let id = self.chat.invitation(role);
        self.invitations.iter().find(|invitation| invitation.id == *id)
    }
}

impl From<StoredChat> for ChatEntry {
    fn from(stored: StoredChat) -> Self {
        Self {
            key: stored.key,
            chat: stored.chat,
            invitations: stored.invitations,
        }
    }
}

/// A stored chat found by one of its invitation ids.
struct Located {
    key: Vec<u8>,
    stored: StoredChat,
    /// Whether the chat is in the archive rather than the hot trees.
    archived: bool,
}

impl Located {
    fn hot(key: &[u8], stored: StoredChat) -> Self {
        Self {
            key: key.to_vec(),
            stored,
            archived: false,
        }
    }

    fn archived(key: &[u8], stored: StoredChat) -> Self {
        Self {
            key: key.to_vec(),
            stored,
            archived: true,
        }
    }
}

fn damaged_bucket(bucket_key: &[u8]) -> StoreError {
    StoreError::CorruptFacts {
        key: format!("archive bucket {}", crate::token::hex(bucket_key)),
    }
}

/// Returns an archive bucket in the plain format, inflating a record bucket.
fn plain_bucket<'a>(bucket_key: &[u8], bucket: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>, StoreError> {
    archive::plain(bucket).ok_or_else(|| damaged_bucket(bucket_key))
}

/// Decodes an archive bucket in the plain format into its chats, `(record key, value)`.
fn archive_entries<'a>(bucket_key: &[u8], bucket: &'a [u8]) -> Result<Vec<archive::Entry<'a>>, StoreError> {
    archive::entries(bucket).ok_or_else(|| damaged_bucket(bucket_key))
}

/// Decodes the chat record stored under `key`.
fn decode_chat(key: &[u8], value: &[u8]) -> Result<StoredChat, StoreError> {
    match StoredChat::decode(value) {
        Some(Ok(stored)) => Ok(stored),
        Some(Err(source)) => Err(StoreError::Corrupt {
            key: crate::token::hex(key),
            source,
        }),
        None => Err(StoreError::CorruptFacts {
            key: crate::token::hex(key),
        }),
    }
}

/// Moves a chat's facts in the running totals from its old `chat_facts`
/// value to its new one.
fn replace_facts(live: &Mutex<LiveTotals>, previous: Option<&[u8]>, value: Option<&[u8]>) {
    live.lock().unwrap_or_else(PoisonError::into_inner).replace(
        previous.and_then(chat_value::facts_of),
        value.and_then(chat_value::facts_of),
    );
}

/// Applies the journal records an earlier run left to `trees` (in
/// [`TreeId`] order), in order. Each record contains whole values, so records
/// that sled already has change nothing.
fn replay(trees: &[sled::Tree; TREES], bytes: &[u8]) -> Result<(), StoreError> {
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

/// Writes the operations of one journal payload into sled as one
/// transaction, and into the tally when given. sled recovers a
/// transaction whole or not at all, also when it was not flushed before a
/// crash (sled 0.34.7, `TransactionalTrees::commit` seals one log batch).
/// So no write is left in sled in part, which `tests/crash_prefix.rs`
/// checks with `kill -9`.
fn apply_payload(trees: &[sled::Tree; TREES], tally: Option<Tally<'_>>, payload: &[u8]) -> Result<(), StoreError> {
    let ops = journal::parse_ops(payload).ok_or_else(|| StoreError::Journal(std::io::Error::other("bad payload")))?;
    apply_ops(trees, tally, &ops)
}

/// The state a write changes besides sled: the running totals of every
/// chat's facts and the number of archived chats.
#[derive(Clone, Copy)]
struct Tally<'a> {
    live: &'a Mutex<LiveTotals>,
    archived: &'a AtomicI64,
    hot: &'a AtomicI64,
    queued: &'a AtomicI64,
    archive_moves: &'a AtomicU64,
}

/// Writes `ops` into sled as one transaction, and into the tally when given.
fn apply_ops(trees: &[sled::Tree; TREES], tally: Option<Tally<'_>>, ops: &[Op<'_>]) -> Result<(), StoreError> {
    let moves = tally.filter(|_| ops.iter().any(|op| matches!(op, Op::Entry { .. })));
    if let Some(tally) = moves {
        tally.archive_moves.fetch_add(1, Ordering::SeqCst);
    }
    let applied = apply_atomically(trees, ops);
    if let (Some(tally), Ok(previous)) = (tally, &applied) {
        count_ops(tally, ops, previous);
    }
    // After the counts, so `Store::chat_count` never adds a moving chat twice.
    if let Some(tally) = moves {
        tally.archive_moves.fetch_add(1, Ordering::SeqCst);
    }
    applied.map(drop)
}

/// Changes the running totals and the counts of `tally` by the applied
/// `ops`, given the value each key had before its operation.
fn count_ops(tally: Tally<'_>, ops: &[Op<'_>], previous: &[Option<sled::IVec>]) {
    let count = |counter: &AtomicI64, before: &Option<sled::IVec>, after: bool| {
        counter.fetch_add(i64::from(after) - i64::from(before.is_some()), Ordering::SeqCst);
    };
    for (op, previous) in ops.iter().zip(previous) {
        match *op {
            Op::Insert {
                tree: TreeId::ChatFacts,
                value,
                ..
            } => {
                replace_facts(tally.live, previous.as_deref(), Some(value));
                count(tally.hot, previous, true);
            }
            Op::Remove {
                tree: TreeId::ChatFacts,
                ..
            } => {
                replace_facts(tally.live, previous.as_deref(), None);
                count(tally.hot, previous, false);
            }
            Op::Insert {
                tree: TreeId::Queue, ..
            } => count(tally.queued, previous, true),
            Op::Remove {
                tree: TreeId::Queue, ..
            } => count(tally.queued, previous, false),
            Op::Entry {
                tree: TreeId::ArchiveFacts,
                value,
                ..
            } => {
                replace_facts(tally.live, previous.as_deref(), value);
                count(tally.archived, previous, value.is_some());
            }
            _ => {}
        }
    }
}

/// Applies `ops` in order in one sled transaction over every tree. Returns
/// the value each key had before its operation; for an [`Op::Entry`], the
/// chat's value in its bucket. A run of entries for one bucket is applied to
/// it at once, so a record bucket is inflated and deflated once per run.
fn apply_atomically(trees: &[sled::Tree; TREES], ops: &[Op<'_>]) -> Result<Vec<Option<sled::IVec>>, StoreError> {
    use sled::Transactional;
    use sled::transaction::{ConflictableTransactionError, TransactionError};

    let [t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10, t11, t12] = trees;
    let result = (t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10, t11, t12).transaction(
        |(x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12)| {
            let view = [x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12];
            let mut previous = Vec::with_capacity(ops.len());
            let mut at = 0;
            while at < ops.len() {
                match ops[at] {
                    Op::Insert { tree, key, value } => previous.push(view[tree as usize].insert(key, value)?),
                    Op::Remove { tree, key } => previous.push(view[tree as usize].remove(key)?),
                    Op::Entry { tree, key, .. } => {
                        let bucket_key = archive::bucket_of(key).ok_or(ConflictableTransactionError::Abort(()))?;
                        let run = ops[at..]
                            .iter()
                            .take_while(|op| {
                                matches!(op, Op::Entry { tree: run_tree, key: run_key, .. }
                                    if *run_tree == tree && archive::bucket_of(run_key) == Some(bucket_key))
                            })
                            .count();
                        let bucket = view[tree as usize].get(bucket_key)?;
                        let changes = ops[at..at + run].iter().filter_map(|op| match *op {
                            Op::Entry { key, value, .. } => Some((key, value)),
                            _ => None,
                        });
                        let (changed, before) =
                            archive::with_entries(bucket.as_deref(), changes, tree == TreeId::ArchiveRecords)
                                .map_err(|()| ConflictableTransactionError::Abort(()))?;
                        previous.extend(before.into_iter().map(|value| value.map(sled::IVec::from)));
                        match changed {
                            Some(bucket) => view[tree as usize].insert(&bucket_key, bucket)?,
                            None => view[tree as usize].remove(&bucket_key)?,
                        };
                        at += run;
                        continue;
                    }
                }
                at += 1;
            }
            Ok::<_, ConflictableTransactionError<()>>(previous)
        },
    );
    result.map_err(|error| match error {
        TransactionError::Storage(error) => StoreError::Sled(error),
        TransactionError::Abort(()) => StoreError::CorruptFacts {
            key: "an archive bucket or a record key in a write".into(),
        },
    })
}

impl Sink {
    fn tally(&self) -> Tally<'_> {
        Tally {
            live: &self.live,
            archived: &self.shared.archived,
            hot: &self.shared.hot,
            queued: &self.shared.queued,
            archive_moves: &self.shared.archive_moves,
        }
    }

    /// Writes inbox entries into sled, in order, a group of
    /// [`ENTRIES_PER_TRANSACTION`] in each transaction, stopping at the first
    /// failure. Returns how many were written.
    fn apply_entries(&self, entries: &[inbox::Entry]) -> (usize, Result<(), StoreError>) {
        let mut done = 0;
        for group in entries.chunks(ENTRIES_PER_TRANSACTION) {
            let mut ops = Vec::new();
            for entry in group {
                match journal::parse_ops(&entry.payload) {
                    Some(entry_ops) => ops.extend(entry_ops),
                    None => return (done, Err(StoreError::Journal(std::io::Error::other("bad payload")))),
                }
            }
            if let Err(error) = apply_ops(&self.trees, Some(self.tally()), &ops) {
                return (done, Err(error));
            }
            self.shared.note_copy_changes(&ops);
            done += group.len();
        }
        (done, Ok(()))
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

        let replaced = {
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
                .rewrite(queue.entries.iter().map(|entry| entry.payload.as_slice()))?
        };
        let locked = started.elapsed() - unlocked;
        drop(replaced);
        tracing::debug!(
            unlocked_ms = unlocked.as_millis() as u64,
            locked_ms = locked.as_millis() as u64,
            closed_ms = (started.elapsed() - unlocked - locked).as_millis() as u64,
            "store checkpoint"
        );
        Ok(())
    }
}

/// Starts the applier: the thread that writes inbox entries into sled. It
/// runs at a lower CPU priority than the request handlers (nice 10 on
/// Linux), so a burst of webhooks is acknowledged first and written into
/// sled after. During a burst it does not write at all
/// ([`inbox::Inbox::wait_out_burst`]), and the inbox limits keep the lag
/// bounded. It also runs the checkpoints that the flusher requests.
fn spawn_applier(sink: Sink) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .name("store-applier".into())
        .spawn(move || {
            #[cfg(target_os = "linux")]
            if let Err(error) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10) {
                tracing::debug!(%error, "could not lower the priority of the store applier");
            }
            // Set after a burst, until the applier has caught up with it.
            let mut catching_up = false;
            loop {
                {
                    let queue = sink.shared.inbox.lock();
                    let queue = sink.shared.inbox.wait_for_work(queue, Duration::from_secs(1));
                    if queue.closing {
                        // The flusher's final checkpoint writes what is left.
                        return;
                    }
                }
                if !catching_up && let Some(waited) = sink.shared.inbox.wait_out_burst() {
                    tracing::debug!(
                        waited_ms = waited.as_millis() as u64,
                        waiting = sink.shared.inbox.lock().entries.len(),
                        "a burst of webhooks ended or filled the inbox; writing it into the store"
                    );
                    catching_up = true;
                }
                // Taken after the burst, so a checkpoint requested during it
                // runs once the inbox is written.
                let checkpoint_due = std::mem::take(&mut sink.shared.inbox.lock().checkpoint_due);
                if let Err(error) = sink.apply_batch() {
                    tracing::error!(%error, "writing accepted chats into the store failed; the journal keeps them; retrying in 1 s");
                    // The checkpoint waits for the retry instead of the next interval.
                    sink.shared.inbox.lock().checkpoint_due |= checkpoint_due;
                    thread::sleep(Duration::from_secs(1));
                    continue;
                }
                if catching_up && sink.shared.inbox.lock().keeps_up() {
                    catching_up = false;
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
