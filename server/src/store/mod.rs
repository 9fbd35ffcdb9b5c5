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
//! is waiting, so concurrent writers share one fsync.

pub mod records;

use std::path::Path;
use std::sync::mpsc;
use std::thread;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use tokio::sync::oneshot;

use crate::token::InvitationId;
use records::{ChatRecord, InvitationRecord, Millis, QueuedDelivery};

/// A store failure: an I/O error or a damaged record. Shown to HTTP clients
/// only as an opaque 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O failed: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored record {key} is damaged: {source}")]
    Corrupt { key: String, source: serde_json::Error },
    #[error("store flush failed: {0}")]
    Flush(String),
}

type FlushReply = oneshot::Sender<Result<(), String>>;

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
    flush_requests: mpsc::Sender<FlushReply>,
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

/// A new chat with everything written in the same transaction.
pub struct NewChat<'a> {
    pub webhook_id: &'a str,
    pub chat_key: &'a str,
    pub chat: &'a ChatRecord,
    /// Empty for an ineligible chat, which gets no invitations.
    pub invitations: &'a [InvitationRecord],
    pub deliveries: &'a [QueuedDelivery],
    pub now: Millis,
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

impl Store {
    /// Opens (or creates) the store in `dir` with a page cache of `cache_bytes`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let db = sled::Config::new().path(dir).cache_capacity(cache_bytes).open()?;
        let store = Self {
            chats: db.open_tree("chats")?,
            invitations: db.open_tree("invitations")?,
            webhook_ids: db.open_tree("webhook_ids")?,
            queue: db.open_tree("queue")?,
            dead: db.open_tree("dead")?,
            meta: db.open_tree("meta")?,
            flush_requests: spawn_flusher(db.clone()),
            db,
        };
        Ok(store)
    }

    /// Waits until everything written before the call is on disk.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (reply, done) = oneshot::channel();
        self.flush_requests
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
        self.db.flush()?;
        Ok(())
    }

    /// Returns the time of the first start, recording `now` if there is none yet.
    pub fn first_started_at(&self, now: Millis) -> Result<Millis, StoreError> {
        let previous =
            self.meta
                .compare_and_swap(b"first_started_at", None as Option<&[u8]>, Some(&now.to_be_bytes()[..]))?;
        match previous {
            Ok(()) => Ok(now),
            Err(existing) => {
                let bytes = existing.current.expect("compare_and_swap failed on a present value");
                Ok(i64::from_be_bytes(bytes.as_ref().try_into().unwrap_or([0; 8])))
            }
        }
    }

    /// Accepts a chat-ended webhook atomically: deduplicates on the webhook id
    /// and on the chat, then stores the chat, its two invitations and their
    /// queued deliveries. Not durable until [`Store::flush`].
    pub fn accept_chat(&self, new: NewChat<'_>) -> Result<ChatAcceptance, StoreError> {
        let trees = (&self.webhook_ids, &self.chats, &self.invitations, &self.queue);
        let result = trees.transaction(|(webhook_ids, chats, invitations, queue)| {
            if webhook_ids.get(new.webhook_id)?.is_some() {
                return Ok(ChatAcceptance::DuplicateWebhook);
            }
            webhook_ids.insert(new.webhook_id, &new.now.to_be_bytes())?;
            if chats.get(new.chat_key)?.is_some() {
                return Ok(ChatAcceptance::KnownChat);
            }
            chats.insert(new.chat_key, encode(new.chat))?;
            for invitation in new.invitations {
                invitations.insert(invitation.id.as_str(), encode(invitation))?;
            }
            for delivery in new.deliveries {
                queue.insert(
                    queue_key(delivery.next_attempt_at, &delivery.invitation_id),
                    encode(delivery),
                )?;
            }
            Ok::<_, ConflictableTransactionError<()>>(ChatAcceptance::New)
        });
        match result {
            Ok(acceptance) => Ok(acceptance),
            Err(TransactionError::Storage(error)) => Err(error.into()),
            Err(TransactionError::Abort(())) => unreachable!("the transaction never aborts"),
        }
    }

    /// Returns whether a webhook id was accepted before.
    pub fn webhook_seen(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.webhook_ids.contains_key(id)?)
    }

    /// Remembers an accepted webhook id; not durable until [`Store::flush`].
    pub fn remember_webhook(&self, id: &str, now: Millis) -> Result<(), StoreError> {
        self.webhook_ids.insert(id, &now.to_be_bytes())?;
        Ok(())
    }

    /// Deletes webhook ids received before `cutoff` and returns how many.
    /// Platforms retry with the same id for days, so callers keep at least 7.
    pub fn prune_webhook_ids(&self, cutoff: Millis) -> Result<usize, StoreError> {
        let mut removed = 0;
        for entry in self.webhook_ids.iter() {
            let (key, value) = entry?;
            let received = value.as_ref().try_into().map(i64::from_be_bytes).unwrap_or(0);
            if received < cutoff {
                self.webhook_ids.remove(key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub fn chat(&self, key: &str) -> Result<Option<ChatRecord>, StoreError> {
        self.chats
            .get(key)?
            .map(|bytes| decode(key.as_bytes(), &bytes))
            .transpose()
    }

    /// Iterates over all chats, in key order.
    pub fn chats(&self) -> impl Iterator<Item = Result<(String, ChatRecord), StoreError>> + '_ {
        self.chats.iter().map(|entry| {
            let (key, value) = entry?;
            let record = decode(&key, &value)?;
            Ok((String::from_utf8_lossy(&key).into_owned(), record))
        })
    }

    pub fn chat_count(&self) -> usize {
        self.chats.len()
    }

    pub fn invitation(&self, id: &InvitationId) -> Result<Option<InvitationRecord>, StoreError> {
        self.invitations
            .get(id.as_str())?
            .map(|bytes| decode(id.as_str().as_bytes(), &bytes))
            .transpose()
    }

    /// Reads, changes and writes one invitation with compare-and-swap,
    /// retrying when another writer got there first. `change` may run more
    /// than once and returns `Err` to reject the change without writing.
    pub fn update_invitation<T, E>(
        &self,
        id: &InvitationId,
        mut change: impl FnMut(&mut InvitationRecord) -> Result<T, E>,
    ) -> Result<(T, InvitationRecord), UpdateError<E>> {
        loop {
            let Some(current) = self.invitations.get(id.as_str()).map_err(StoreError::from)? else {
                return Err(UpdateError::NotFound);
            };
            let mut record: InvitationRecord = decode(id.as_str().as_bytes(), &current)?;
            let before = record.clone();
            let outcome = change(&mut record).map_err(UpdateError::Rejected)?;
            if record == before {
                return Ok((outcome, record));
            }
            let swapped = self
                .invitations
                .compare_and_swap(id.as_str(), Some(current), Some(encode(&record)))
                .map_err(StoreError::from)?;
            if swapped.is_ok() {
                return Ok((outcome, record));
            }
        }
    }

    /// Queued deliveries due at or before `now`, oldest first, at most `limit`.
    pub fn due_deliveries(&self, now: Millis, limit: usize) -> Result<Vec<(Vec<u8>, QueuedDelivery)>, StoreError> {
        let end = (now.max(0) as u64 + 1).to_be_bytes();
        let mut due = Vec::new();
        for entry in self.queue.range(..end.to_vec()) {
            let (key, value) = entry?;
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
    /// queue and marks the invitation delivered, in one transaction.
    pub fn complete_delivery(&self, key: &[u8], id: &InvitationId, now: Millis) -> Result<(), StoreError> {
        let result = (&self.queue, &self.invitations).transaction(|(queue, invitations)| {
            queue.remove(key)?;
            if let Some(bytes) = invitations.get(id.as_str())? {
                let mut record: InvitationRecord =
                    serde_json::from_slice(&bytes).map_err(|_| ConflictableTransactionError::Abort(()))?;
                record.delivery = records::DeliveryStatus::Delivered;
                record.delivered_at = Some(now);
                invitations.insert(id.as_str(), encode(&record))?;
            }
            Ok(())
        });
        self.finish_transaction(result, id)
    }

    /// Moves a delivery to a new due time after a failed attempt.
    pub fn reschedule_delivery(&self, key: &[u8], delivery: &QueuedDelivery) -> Result<(), StoreError> {
        let new_key = queue_key(delivery.next_attempt_at, &delivery.invitation_id);
        let mut batch = sled::Batch::default();
        batch.remove(key);
        batch.insert(new_key, encode(delivery));
        self.queue.apply_batch(batch)?;
        Ok(())
    }

    /// Moves a delivery from the queue to the dead-letter list.
    pub fn dead_letter(&self, key: &[u8], delivery: &QueuedDelivery) -> Result<(), StoreError> {
        let id = &delivery.invitation_id;
        let result = (&self.queue, &self.dead, &self.invitations).transaction(|(queue, dead, invitations)| {
            queue.remove(key)?;
            dead.insert(id.as_str(), encode(delivery))?;
            if let Some(bytes) = invitations.get(id.as_str())? {
                let mut record: InvitationRecord =
                    serde_json::from_slice(&bytes).map_err(|_| ConflictableTransactionError::Abort(()))?;
                record.delivery = records::DeliveryStatus::Dead;
                invitations.insert(id.as_str(), encode(&record))?;
            }
            Ok(())
        });
        self.finish_transaction(result, id)
    }

    /// Puts a dead-lettered delivery back in the queue, due `now`. Returns
    /// false when the invitation is not in the dead-letter list.
    pub fn retry_dead(&self, id: &InvitationId, now: Millis) -> Result<bool, StoreError> {
        let result = (&self.queue, &self.dead, &self.invitations).transaction(|(queue, dead, invitations)| {
            let Some(bytes) = dead.remove(id.as_str())? else {
                return Ok(false);
            };
            let mut delivery: QueuedDelivery =
                serde_json::from_slice(&bytes).map_err(|_| ConflictableTransactionError::Abort(()))?;
            delivery.next_attempt_at = now;
            delivery.attempts = 0;
            delivery.created_at = now;
            queue.insert(queue_key(now, id), encode(&delivery))?;
            if let Some(bytes) = invitations.get(id.as_str())? {
                let mut record: InvitationRecord =
                    serde_json::from_slice(&bytes).map_err(|_| ConflictableTransactionError::Abort(()))?;
                record.delivery = records::DeliveryStatus::Pending;
                invitations.insert(id.as_str(), encode(&record))?;
            }
            Ok(true)
        });
        match result {
            Ok(found) => Ok(found),
            Err(TransactionError::Storage(error)) => Err(error.into()),
            Err(TransactionError::Abort(())) => Err(StoreError::Flush(format!("dead letter {id} is damaged"))),
        }
    }

    fn finish_transaction(
        &self,
        result: Result<(), TransactionError<()>>,
        id: &InvitationId,
    ) -> Result<(), StoreError> {
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Storage(error)) => Err(error.into()),
            Err(TransactionError::Abort(())) => Err(StoreError::Flush(format!("invitation record {id} is damaged"))),
        }
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
        self.meta.insert(b"chatwoot_synced_until", &seconds.to_be_bytes())?;
        Ok(())
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
        let copy = sled::Config::new().path(dir).create_new(true).open()?;
        let trees = [
            ("chats", &self.chats),
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
        let previous =
            self.meta
                .compare_and_swap(b"key_fingerprint", None as Option<&[u8]>, Some(fingerprint.as_bytes()))?;
        match previous {
            Ok(()) => Ok(true),
            Err(existing) => Ok(existing.current.as_deref() == Some(fingerprint.as_bytes())),
        }
    }

    /// Returns whether the store serves reads; `/readyz` uses it.
    pub fn is_healthy(&self) -> bool {
        self.meta.get(b"first_started_at").is_ok()
    }
}

fn spawn_flusher(db: sled::Db) -> mpsc::Sender<FlushReply> {
    let (sender, receiver) = mpsc::channel::<FlushReply>();
    thread::Builder::new()
        .name("store-flusher".into())
        .spawn(move || {
            while let Ok(first) = receiver.recv() {
                let mut waiting = vec![first];
                while let Ok(next) = receiver.try_recv() {
                    waiting.push(next);
                }
                let result = db.flush().map(|_| ()).map_err(|error| error.to_string());
                if let Err(error) = &result {
                    tracing::error!(%error, waiting = waiting.len(), "store flush failed");
                }
                for reply in waiting {
                    let _ = reply.send(result.clone());
                }
            }
        })
        .expect("the flusher thread starts");
    sender
}
