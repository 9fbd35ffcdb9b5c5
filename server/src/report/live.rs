//! Running totals of the live chats, kept in memory per stratum so that a
//! report does not read every chat.
//!
//! The store builds them from the report facts when it opens, and changes
//! them in the same write as each facts record, under its write lock. Expiry
//! depends on the time a report is made, so each stratum keeps the expiry
//! times of its open invitations and a report counts those already past.

use std::collections::HashMap;

use super::StratumCounts;
use crate::store::facts::{self, ChatFacts, Stratum};
use crate::store::records::Millis;

/// The totals of one stratum.
#[derive(Debug, Default)]
struct LiveStratum {
    /// Counts without expiry; the patterns are kept sorted.
    counts: StratumCounts,
    /// Sorted expiry times of the invitations that are neither submitted nor
    /// declined, for the parent and for the professional.
    expiring: [Vec<Millis>; 2],
}

/// Running totals of every live chat, by stratum.
#[derive(Debug, Default)]
pub struct LiveTotals {
    strata: HashMap<Vec<u8>, LiveStratum>,
}

/// Counts one chat without expiry: no expiry time is before `Millis::MIN`.
fn chat_counts(chat: &ChatFacts<'_>) -> StratumCounts {
    let mut counts = StratumCounts::default();
    counts.add(chat, Millis::MIN);
    counts
}

/// The expiry time of each role's invitation that can still expire.
fn expiries(chat: &ChatFacts<'_>) -> [Option<Millis>; 2] {
    chat.roles
        .map(|role| (chat.eligible && role.invited && !role.submitted && !role.declined).then_some(role.expires_at))
}

impl LiveTotals {
    /// Replaces the facts `old` of one chat with `new`; either may be absent.
    /// Damaged facts are skipped, because the store reports them on the next scan.
    pub fn replace(&mut self, old: Option<&[u8]>, new: Option<&[u8]>) {
        if let Some(chat) = old.and_then(facts::decode) {
            self.remove(&chat);
        }
        if let Some(chat) = new.and_then(facts::decode) {
            self.add(&chat);
        }
    }

    fn add(&mut self, chat: &ChatFacts<'_>) {
        let stratum = match self.strata.get_mut(chat.stratum) {
            Some(stratum) => stratum,
            None => self.strata.entry(chat.stratum.to_vec()).or_default(),
        };
        let counts = chat_counts(chat);
        for pattern in &counts.patterns {
            let at = stratum.counts.patterns.partition_point(|known| known < pattern);
            stratum.counts.patterns.insert(at, *pattern);
        }
        stratum.counts.chats += counts.chats;
        stratum.counts.chats_ineligible += counts.chats_ineligible;
        stratum.counts.parent.merge(&counts.parent);
        stratum.counts.professional.merge(&counts.professional);
        stratum.counts.pairing.merge(&counts.pairing);
        for (times, expiry) in stratum.expiring.iter_mut().zip(expiries(chat)) {
            if let Some(expiry) = expiry {
                let at = times.partition_point(|time| *time < expiry);
                times.insert(at, expiry);
            }
        }
    }

    fn remove(&mut self, chat: &ChatFacts<'_>) {
        let Some(stratum) = self.strata.get_mut(chat.stratum) else {
            return;
        };
        let counts = chat_counts(chat);
        for pattern in &counts.patterns {
            if let Ok(at) = stratum.counts.patterns.binary_search(pattern) {
                stratum.counts.patterns.remove(at);
            }
        }
        stratum.counts.chats -= counts.chats;
        stratum.counts.chats_ineligible -= counts.chats_ineligible;
        stratum.counts.parent.subtract(&counts.parent);
        stratum.counts.professional.subtract(&counts.professional);
        stratum.counts.pairing.subtract(&counts.pairing);
        for (times, expiry) in stratum.expiring.iter_mut().zip(expiries(chat)) {
            if let Some(expiry) = expiry {
                if let Ok(at) = times.binary_search(&expiry) {
                    times.remove(at);
                }
            }
        }
        if stratum.counts.chats == 0 && stratum.counts.chats_ineligible == 0 {
            self.strata.remove(chat.stratum);
        }
    }

    /// Returns the counts of every stratum as a report at `now` sees them.
    pub fn snapshot(&self, now: Millis) -> Result<Vec<(Stratum, StratumCounts)>, Vec<u8>> {
        let mut strata = Vec::with_capacity(self.strata.len());
        for (key, live) in &self.strata {
            let stratum = facts::decode_stratum(key).ok_or_else(|| key.clone())?;
            let mut counts = live.counts.clone();
            counts.parent.expired = live.expiring[0].partition_point(|time| *time <= now) as u64;
            counts.professional.expired = live.expiring[1].partition_point(|time| *time <= now) as u64;
            strata.push((stratum, counts));
        }
        Ok(strata)
    }
}
