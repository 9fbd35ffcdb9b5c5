//! Moving a store of the earlier format (a chat, its report facts and each
//! invitation under keys of their own) into one record per chat.

use std::time::Instant;

use super::chat_value::{self, Salt, StoredChat};
use super::journal::TreeId;
use super::records::{ChatRecord, QueuedDelivery};
use super::{StoreError, TREE_NAMES, TREES, decode};

/// Present in `meta` once every chat is in `chat_records`.
const DONE_KEY: &[u8] = b"chat_records_version";
const SALT_KEY: &[u8] = b"record_salt";
/// Present in `meta` of an earlier-format store once every chat had report
/// facts; the retention purge came with them.
const FACTS_VERSION_KEY: &[u8] = b"facts_version";
/// Chats written into sled at a time.
const BATCH: usize = 1_000;
/// Chats between two progress lines in the log.
const PROGRESS_EVERY: u64 = 100_000;

/// Returns the salt of the record keys, making one for a new store. Open
/// flushes sled before it returns, so the salt is on disk before any record
/// keyed with it.
pub(super) fn salt(meta: &sled::Tree) -> Result<Salt, StoreError> {
    if let Some(bytes) = meta.get(SALT_KEY)? {
        return Salt::try_from(bytes.as_ref()).map_err(|_| StoreError::CorruptMeta("record_salt"));
    }
    let salt: Salt = rand::random();
    meta.insert(SALT_KEY, &salt)?;
    Ok(salt)
}

/// Moves every chat of the earlier format into `chat_records` and
/// `chat_facts`, with an alias for each of its invitations (their ids do not carry the record
/// key), and then drops the old trees. A move that stopped half-way starts
/// again from the old trees, which stay until the move is complete.
/// Returns whether old trees were dropped, so the caller opens them again.
pub(super) fn to_chat_records(db: &sled::Db, trees: &[sled::Tree; TREES], salt: &Salt) -> Result<bool, StoreError> {
    let tree = |id: TreeId| &trees[id as usize];
    let (chats, invitations) = (tree(TreeId::Chats), tree(TreeId::Invitations));
    let meta = tree(TreeId::Meta);
    if meta.get(DONE_KEY)?.is_none() {
        if chats.first()?.is_some() || invitations.first()?.is_some() {
            move_chats(db, trees, salt)?;
        }
        meta.insert(DONE_KEY, &[1])?;
        db.flush()?;
    }
    let mut dropped = false;
    for id in [TreeId::Chats, TreeId::Invitations, TreeId::Facts] {
        if tree(id).first()?.is_some() {
            dropped |= db.drop_tree(TREE_NAMES[id as usize])?;
        }
    }
    if dropped {
        db.flush()?;
    }
    Ok(dropped)
}

fn move_chats(db: &sled::Db, trees: &[sled::Tree; TREES], salt: &Salt) -> Result<(), StoreError> {
    let tree = |id: TreeId| &trees[id as usize];
    let (records, aliases) = (tree(TreeId::Records), tree(TreeId::Aliases));
    let chat_facts = tree(TreeId::ChatFacts);
    let (chats, invitations) = (tree(TreeId::Chats), tree(TreeId::Invitations));
    let old_facts = tree(TreeId::Facts);
    // Set once every chat had facts; stores from before it never purged.
    let facts_complete = tree(TreeId::Meta).get(FACTS_VERSION_KEY)?.is_some();
    let started = Instant::now();
    records.clear()?;
    aliases.clear()?;
    chat_facts.clear()?;
    tracing::info!("moving each chat of this store into one record; this runs once");

    // Written in key order, each page of the new tree is filled once. In a
    // move of 200 000 chats that lowered the peak memory from 643 to 596 MB.
    let mut order = Vec::new();
    for key in chats.iter().keys() {
        let key = key?;
        let record_key = chat_value::record_key(salt, &String::from_utf8_lossy(&key));
        order.push((record_key, key));
    }
    order.sort_unstable_by_key(|(record_key, _)| *record_key);

    let total = order.len();
    let mut batch = sled::Batch::default();
    let mut facts_batch = sled::Batch::default();
    let mut pending = 0;
    let mut moved = 0u64;
    let mut half_purged = 0u64;
    for (record_key, key) in order {
        let Some(value) = chats.get(&key)? else {
            continue;
        };
        let chat: ChatRecord = decode(&key, &value)?;
        let mut stored = StoredChat {
            key: String::from_utf8_lossy(&key).into_owned(),
            invitations: Vec::with_capacity(2),
            chat,
        };
        for id in [&stored.chat.parent_invitation, &stored.chat.professional_invitation] {
            if let Some(bytes) = invitations.get(id.as_str())? {
                stored.invitations.push(decode(id.as_str().as_bytes(), &bytes)?);
            }
        }
        if facts_complete && purge_started(&stored, old_facts.contains_key(&key)?) {
            // Its purge had folded it into the totals already, so moving it
            // would count it twice.
            half_purged += 1;
            continue;
        }
        for invitation in &stored.invitations {
            aliases.insert(invitation.id.as_str().as_bytes(), &record_key[..])?;
        }

        facts_batch.insert(&record_key[..], chat_value::facts_value(&stored));
        batch.insert(&record_key[..], stored.encode());
        pending += 1;
        moved += 1;
        if pending == BATCH {
            chat_facts.apply_batch(std::mem::take(&mut facts_batch))?;
            records.apply_batch(std::mem::take(&mut batch))?;
            pending = 0;
        }
        if moved % PROGRESS_EVERY == 0 {
            tracing::info!(
                chats = moved,
                of = total,
                seconds = started.elapsed().as_secs(),
                "moving chats into one record each"
            );
        }
    }

    chat_facts.apply_batch(facts_batch)?;
    records.apply_batch(batch)?;
    if half_purged > 0 {
        tracing::warn!(
            chats = half_purged,
            "left out chats whose retention purge a crash had interrupted; the totals count them already"
        );
    }
    remove_orphan_deliveries(trees)?;
    db.flush()?;
    tracing::info!(
        chats = moved,
        seconds = started.elapsed().as_secs(),
        "moved every chat into one record"
    );
    Ok(())
}

/// Returns whether the earlier format had started to purge this chat when
/// it stopped. Its purge folded the chat into the totals first, then
/// deleted the invitations, the facts and the chat, each on its own, so a
/// crash could leave a prefix. Accepting wrote the invitations and facts
/// before the chat, so in a store whose chats all had facts, a chat
/// without its facts, or an eligible chat without both invitations, is
/// left from a purge.
///
/// NOTE: a purge that stopped right after the fold left the chat whole, so
/// it cannot be detected, and such a chat is counted twice.
fn purge_started(stored: &StoredChat, has_facts: bool) -> bool {
    !has_facts || (stored.chat.eligible && stored.invitations.len() < 2)
}

/// Deletes queued and dead-lettered deliveries whose invitation did not
/// move. The earlier format wrote a chat's invitations and deliveries before
/// the chat, so a crash could leave them without it, and the move keeps only
/// invitations of stored chats. Every moved invitation has an alias. A
/// queued delivery without one would post a link to a questionnaire that is
/// not stored, and a dead letter without one, which contains raw platform
/// ids, would never be purged with its chat.
fn remove_orphan_deliveries(trees: &[sled::Tree; TREES]) -> Result<(), StoreError> {
    let aliases = &trees[TreeId::Aliases as usize];
    let mut removed = 0u64;
    for list in [TreeId::Queue, TreeId::Dead] {
        let tree = &trees[list as usize];
        for entry in tree.iter() {
            let (key, value) = entry?;
            let delivery: QueuedDelivery = decode(&key, &value)?;
            if !aliases.contains_key(delivery.invitation_id.as_str())? {
                tree.remove(&key)?;
                removed += 1;
            }
        }
    }
    if removed > 0 {
        tracing::warn!(
            removed,
            "removed deliveries whose chat the earlier store format had lost in a crash"
        );
    }
    Ok(())
}
