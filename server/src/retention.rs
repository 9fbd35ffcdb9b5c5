//! The retention job: deletes the raw answers and comments of chats older
//! than the retention period and keeps what reports need as totals.
//!
//! Each purged chat is folded into the totals of its stratum (organization ×
//! topic × child age group × ISO week of the chat's end) in the same write
//! that deletes it. The totals keep the counts of every funnel stage, the
//! pairing and, for each matched pair, its 22 scores packed into one number
//! without chat, time or comment. Reports add the totals to the live chats,
//! so their counts, coefficients and bootstrap intervals stay the same after
//! a purge. Age is measured on the service's clock, from when the service
//! received the chat-ended webhook.

use serde::Serialize;

use crate::report::StratumCounts;
use crate::store::records::Millis;
use crate::store::{Store, StoreError, facts};

const DAY_MILLIS: Millis = 24 * 3_600_000;

/// The counts of a purge: what it deleted, or would delete in a dry run.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct PurgeSummary {
    pub dry_run: bool,
    pub retention_days: u32,
    /// Chats received before this time (RFC 3339) were purged.
    pub cutoff: String,
    pub chats: u64,
    pub invitations: u64,
    pub answers: u64,
    pub comments: u64,
}

/// Purges every chat received more than `retention_days` before `now`.
/// With `dry_run` it only counts them. `progress` is called after each chat.
pub fn purge(
    store: &Store,
    now: Millis,
    retention_days: u32,
    dry_run: bool,
    mut progress: impl FnMut(u64),
) -> Result<PurgeSummary, StoreError> {
    let cutoff = now - Millis::from(retention_days) * DAY_MILLIS;
    let mut summary = PurgeSummary {
        dry_run,
        retention_days,
        cutoff: crate::routes::questionnaire::time_text(cutoff),
        ..PurgeSummary::default()
    };
    let mut old = Vec::new();
    for entry in store.chat_receive_times() {
        let (key, received_at) = entry?;
        if received_at < cutoff {
            old.push(key);
        }
    }
    for key in old {
        let purged = if dry_run {
            dry_run_counts(store, &key)?
        } else {
            store.purge_chat(&key, |chat| fold(store, chat, now))?
        };
        if let Some(purged) = purged {
            summary.chats += 1;
            summary.invitations += purged.invitations;
            summary.answers += purged.answers;
            summary.comments += purged.comments;
            progress(summary.chats);
        }
    }
    Ok(summary)
}

/// Counts what purging the chat `key` would delete.
fn dry_run_counts(store: &Store, key: &str) -> Result<Option<crate::store::PurgedChat>, StoreError> {
    let Some(chat) = store.chat(key)? else {
        return Ok(None);
    };
    let mut counts = crate::store::PurgedChat::default();
    for id in [&chat.parent_invitation, &chat.professional_invitation] {
        if let Some(invitation) = store.invitation(id)? {
            counts.add(&invitation);
        }
    }
    Ok(Some(counts))
}

/// Adds one chat to the totals of its week stratum; returns the key and the new value.
fn fold(store: &Store, chat: &facts::ChatFacts<'_>, now: Millis) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
    let key = facts::week_stratum(chat.stratum).ok_or_else(|| StoreError::CorruptFacts {
        key: format!("stratum {}", crate::token::hex(chat.stratum)),
    })?;
    let mut totals: StratumCounts = match store.totals(&key)? {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|_| StoreError::CorruptFacts {
            key: format!("totals {}", crate::token::hex(&key)),
        })?,
        None => StratumCounts::default(),
    };
    // Expiry is decided now, once: every purged invitation is long past it.
    totals.add(chat, now);
    let value = serde_json::to_vec(&totals).expect("totals serialise");
    Ok((key, value))
}
