//! The retention job: deletes chats older than the retention period whole,
//! with their answers and comments, and keeps what reports need as totals.
//!
//! Each purged chat is folded into the totals of its stratum (organization ×
//! topic × child age group × ISO week of the chat's end) in the same write
//! that deletes it. The totals keep the counts of every funnel stage, the
//! pairing and, for each matched pair, its 22 scores packed into one number
//! without chat, time or comment. Reports add the totals to the live chats,
//! so their counts, coefficients and bootstrap intervals stay the same after
//! a purge. Age is measured on the service's clock, from when the service
//! received the chat-ended webhook.

use std::fmt;
use std::time::Duration;

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
    pub dead_letters: u64,
    pub pending_deliveries: u64,
}

impl fmt::Display for PurgeSummary {
    /// Writes what the purge deleted (or would delete) and what it kept, one
    /// line each, for operators who must match it with their retention policy.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run { "would delete" } else { "deleted" };
        writeln!(
            f,
            "retention period {} day{}: chats the service received before {}",
            self.retention_days,
            if self.retention_days == 1 { "" } else { "s" },
            self.cutoff
        )?;
        writeln!(f, "{verb} these chats whole: {}", self.chats)?;
        writeln!(
            f,
            "  chat records (pseudonym, end time, organization, topic, child age group, locale) with their \
             report facts: {}",
            self.chats
        )?;
        writeln!(
            f,
            "  questionnaires: {}, with {} answers and their times, and {} comments",
            self.invitations, self.answers, self.comments
        )?;
        writeln!(
            f,
            "  dead letters, which hold the platform's raw chat and participant ids: {}",
            self.dead_letters
        )?;
        writeln!(
            f,
            "  deliveries still queued, which hold the same raw ids and are then not sent: {}",
            self.pending_deliveries
        )?;
        writeln!(
            f,
            "kept: the totals per organization, topic, child age group and ISO week (funnel counts and \
             the 22 ratings of each matched pair, without pseudonym, times or comments), so reports over \
             the purged weeks stay the same"
        )?;
        writeln!(
            f,
            "not touched: chats received on or after the cutoff, and the accepted webhook ids, which the \
             service deletes 8 days after receipt"
        )?;
        if self.dry_run {
            writeln!(f, "dry run: nothing was changed")?;
        }
        Ok(())
    }
}

/// Maximum time the purge holds the store's purge lock at a time, so an
/// export, a report or a backup waits for at most about this long. On the
/// development machine about 1 000 chats are purged in it.
const PURGE_HOLD: Duration = Duration::from_millis(50);

/// Chats a dry run counts between two progress calls.
const DRY_RUN_BATCH: usize = 256;

/// Purges every chat received more than `retention_days` before `now`.
/// With `dry_run` it only counts them. `progress` gets the number of chats
/// purged so far after each hold of the purge lock (see [`PURGE_HOLD`]), or
/// counted after each [`DRY_RUN_BATCH`].
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
    let keys = store.chats_received_before(cutoff)?;
    let mut rest = &keys[..];
    while !rest.is_empty() {
        let purged = if dry_run {
            rest.iter()
                .take(DRY_RUN_BATCH)
                .map(|key| dry_run_counts(store, key))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            store.purge_chats(rest, PURGE_HOLD, |chat| fold(store, chat, now))?
        };
        rest = &rest[purged.len()..];
        for purged in purged.into_iter().flatten() {
            summary.chats += 1;
            summary.invitations += purged.invitations;
            summary.answers += purged.answers;
            summary.comments += purged.comments;
            summary.dead_letters += purged.dead_letters;
            summary.pending_deliveries += purged.pending_deliveries;
        }
        progress(summary.chats);
    }
    Ok(summary)
}

/// Counts what purging the chat `key` would delete.
fn dry_run_counts(store: &Store, key: &str) -> Result<Option<crate::store::PurgedChat>, StoreError> {
    let Some(chat) = store.chat(key)? else {
        return Ok(None);
    };
    let mut counts = crate::store::PurgedChat::default();
    let mut invitations = Vec::new();
    for id in [&chat.parent_invitation, &chat.professional_invitation] {
        if let Some(invitation) = store.invitation(id)? {
            counts.add(&invitation);
            invitations.push(invitation);
        }
        counts.dead_letters += u64::from(store.is_dead_letter(id)?);
    }
    counts.pending_deliveries = store.queued_keys(&invitations)?.len() as u64;
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
