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
    /// Expiry times of the invitations that are neither submitted nor
    /// declined, for the parent and for the professional.
    expiring: [ExpiryTimes; 2],
}

/// A sorted multiset of expiry times, exact to the millisecond, in about 4
/// bytes each. The chats of one stratum ended on the same day, so their
/// expiry times lie close together: those within `u32` milliseconds (49
/// days) of `base` are kept as offsets from it, any others in full.
#[derive(Debug, Default)]
struct ExpiryTimes {
    base: Millis,
    near: Vec<u32>,
    far: Vec<Millis>,
}

impl ExpiryTimes {
    fn offset(&self, time: Millis) -> Option<u32> {
        time.checked_sub(self.base)
            .and_then(|offset| u32::try_from(offset).ok())
    }

    fn insert(&mut self, time: Millis) {
        if self.near.is_empty() && self.far.is_empty() {
            // Leaves room for times up to 24 days either side of the first.
            self.base = time.saturating_sub(1 << 31);
        }
        match self.offset(time) {
            Some(offset) => insert_sorted(&mut self.near, offset),
            None => insert_sorted(&mut self.far, time),
        }
    }

    fn remove(&mut self, time: Millis) {
        match self.offset(time) {
            Some(offset) => remove_sorted(&mut self.near, offset),
            None => remove_sorted(&mut self.far, time),
        }
    }

    /// Counts the times at or before `now`.
    fn count_until(&self, now: Millis) -> u64 {
        let near = self
            .near
            .partition_point(|offset| self.base + Millis::from(*offset) <= now);
        let far = self.far.partition_point(|time| *time <= now);
        (near + far) as u64
    }

    fn shrink_to_fit(&mut self) {
        self.near.shrink_to_fit();
        self.far.shrink_to_fit();
    }
}

fn insert_sorted<T: Ord>(values: &mut Vec<T>, value: T) {
    let at = values.partition_point(|known| *known < value);
    values.insert(at, value);
}

fn remove_sorted<T: Ord>(values: &mut Vec<T>, value: T) {
    if let Ok(at) = values.binary_search(&value) {
        values.remove(at);
    }
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
            insert_sorted(&mut stratum.counts.patterns, *pattern);
        }
        stratum.counts.chats += counts.chats;
        stratum.counts.chats_ineligible += counts.chats_ineligible;
        stratum.counts.parent.merge(&counts.parent);
        stratum.counts.professional.merge(&counts.professional);
        stratum.counts.pairing.merge(&counts.pairing);
        for (times, expiry) in stratum.expiring.iter_mut().zip(expiries(chat)) {
            if let Some(expiry) = expiry {
                times.insert(expiry);
            }
        }
    }

    fn remove(&mut self, chat: &ChatFacts<'_>) {
        let Some(stratum) = self.strata.get_mut(chat.stratum) else {
            return;
        };
        let counts = chat_counts(chat);
        for pattern in &counts.patterns {
            remove_sorted(&mut stratum.counts.patterns, *pattern);
        }
        stratum.counts.chats -= counts.chats;
        stratum.counts.chats_ineligible -= counts.chats_ineligible;
        stratum.counts.parent.subtract(&counts.parent);
        stratum.counts.professional.subtract(&counts.professional);
        stratum.counts.pairing.subtract(&counts.pairing);
        for (times, expiry) in stratum.expiring.iter_mut().zip(expiries(chat)) {
            if let Some(expiry) = expiry {
                times.remove(expiry);
            }
        }
        if stratum.counts.chats == 0 && stratum.counts.chats_ineligible == 0 {
            self.strata.remove(chat.stratum);
        }
    }

    /// Gives back the room that the vectors grew beyond their contents, after
    /// the totals of every stored chat were added at once.
    pub fn shrink_to_fit(&mut self) {
        for stratum in self.strata.values_mut() {
            stratum.counts.patterns.shrink_to_fit();
            stratum.expiring.iter_mut().for_each(ExpiryTimes::shrink_to_fit);
        }
    }

    /// Returns the counts of every stratum as a report at `now` sees them.
    pub fn snapshot(&self, now: Millis) -> Result<Vec<(Stratum, StratumCounts)>, Vec<u8>> {
        let mut strata = Vec::with_capacity(self.strata.len());
        for (key, live) in &self.strata {
            let stratum = facts::decode_stratum(key).ok_or_else(|| key.clone())?;
            let mut counts = live.counts.clone();
            counts.parent.expired = live.expiring[0].count_until(now);
            counts.professional.expired = live.expiring[1].count_until(now);
            strata.push((stratum, counts));
        }
        Ok(strata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts like a sorted list of every time, at each time and on either side.
    #[test]
    fn expiry_times_count_exactly_near_and_far() {
        let first = 1_700_000_000_000;
        let day = 86_400_000;
        let times = [
            first,
            first,
            first + 1,
            first - 20 * day,
            first + 20 * day,
            first - 30 * day,
            first + 60 * day,
            Millis::MIN + 5,
        ];
        let mut expiring = ExpiryTimes::default();
        times.iter().for_each(|time| expiring.insert(*time));
        expiring.remove(first + 20 * day);
        expiring.remove(first - 30 * day);
        expiring.remove(first + 2);
        let mut remaining = times.to_vec();
        remaining.retain(|time| ![first + 20 * day, first - 30 * day].contains(time));
        for time in times.iter().flat_map(|time| [*time - 1, *time, *time + 1]) {
            let expected = remaining.iter().filter(|other| **other <= time).count() as u64;
            assert_eq!(expiring.count_until(time), expected, "at {time}");
        }
        assert!(expiring.far.contains(&(first + 60 * day)));
        assert!(expiring.far.contains(&(Millis::MIN + 5)));
    }
}
