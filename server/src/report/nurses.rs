//! Per-nurse figures of the peer-review view: matched pairs and category
//! agreement per nurse, within one group of chats.
//!
//! A nurse is known only by the stored pseudonym of her participant id
//! (`professional_participant`), shown as a short label derived from it.
//! Every nurse cell under the minimum cell size is suppressed, together with
//! the cells that would let it be recomputed from the group's totals (the
//! rule of [`suppressed_cells`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::agreement::wilson;
use super::breakdown::{CellAgreement, suppressed_cells};
use super::{percent, round2};

/// Domain separator of the label hash, so a label never equals a prefix of
/// another hash of the same pseudonym.
const LABEL_DOMAIN: &[u8] = b"alliance/nurse-label/v1\0";

/// Hex digits of the label hash: 32 bits, so collisions are unlikely below
/// some thousands of nurses.
const LABEL_HEX_DIGITS: usize = 8;

/// Returns the short stable label of a nurse, e.g. `nurse-3f9a1c02`, from the
/// pseudonym stored with her chats. The label is a hash of the pseudonym, so
/// it contains no platform id and does not reveal the pseudonym.
pub fn nurse_label(participant_pseudonym: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(LABEL_DOMAIN);
    hasher.update(participant_pseudonym.as_bytes());
    let digest = crate::token::hex(&hasher.finalize());
    format!("nurse-{}", &digest[..LABEL_HEX_DIGITS])
}

/// The figures of one nurse in one group.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NurseFigures {
    /// Label from [`nurse_label`]; `null` for the chats of no known nurse:
    /// chats without an assignee and chats stored without the nurse's pseudonym.
    pub label: Option<String>,
    pub suppressed: bool,
    /// Category agreement over this nurse's pairs; `null` when suppressed.
    pub category: Option<CellAgreement>,
}

#[derive(Default)]
struct NurseCounts {
    pairs: u64,
    agreeing: u64,
}

/// Counts pairs and agreeing pairs per nurse during the peer-review scan.
#[derive(Default)]
pub struct NurseAccumulator {
    nurses: BTreeMap<Option<String>, NurseCounts>,
}

impl NurseAccumulator {
    /// Adds one matched pair of the nurse with this pseudonym; `None` counts
    /// it for no known nurse.
    pub fn add(&mut self, participant_pseudonym: Option<&str>, category_agrees: bool) {
        let label = participant_pseudonym.map(nurse_label);
        let counts = self.nurses.entry(label).or_default();
        counts.pairs += 1;
        counts.agreeing += u64::from(category_agrees);
    }

    /// Turns the counts into rows, labelled nurses first in label order,
    /// and suppresses small cells.
    pub fn finish(self, min_cell_size: u64) -> Vec<NurseFigures> {
        let mut entries: Vec<(Option<String>, NurseCounts)> = self.nurses.into_iter().collect();
        // BTreeMap puts None first; list chats without a nurse pseudonym last.
        entries.sort_by(|(a, _), (b, _)| match (a, b) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(_), None) => std::cmp::Ordering::Less,
            (Some(a), Some(b)) => a.cmp(b),
        });

        let sizes: Vec<u64> = entries.iter().map(|(_, counts)| counts.pairs).collect();
        let hidden = suppressed_cells(&sizes, min_cell_size);
        entries
            .into_iter()
            .zip(hidden)
            .map(|((label, counts), suppressed)| NurseFigures {
                label,
                suppressed,
                category: (!suppressed).then(|| CellAgreement {
                    agreeing: counts.agreeing,
                    pairs: counts.pairs,
                    percent: percent(counts.agreeing, counts.pairs),
                    ci95: wilson(counts.agreeing, counts.pairs)
                        .map(|(lo, hi)| [round2(lo * 100.0), round2(hi * 100.0)]),
                }),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_is_short_stable_and_hides_the_pseudonym() {
        let pseudonym = "9c1185a5c5e9fc54612808977ee8f548b2258d31a3c2f1b7d0d0e7c4e2d1f0aa";
        let label = nurse_label(pseudonym);
        assert_eq!(label, nurse_label(pseudonym));
        assert_eq!(label.len(), "nurse-".len() + LABEL_HEX_DIGITS);
        assert!(!pseudonym.contains(&label["nurse-".len()..]));
        assert_ne!(label, nurse_label("another pseudonym"));
    }

    #[test]
    fn small_nurse_cells_are_suppressed_with_a_complement() {
        let mut nurses = NurseAccumulator::default();
        for index in 0..12 {
            nurses.add(Some("a"), index % 3 != 0);
        }
        for _ in 0..15 {
            nurses.add(Some("b"), true);
        }
        for _ in 0..3 {
            nurses.add(Some("c"), false);
        }
        let rows = nurses.finish(10);
        assert_eq!(rows.len(), 3);

        let by_label = |pseudonym: &str| {
            rows.iter()
                .find(|row| row.label.as_deref() == Some(nurse_label(pseudonym).as_str()))
                .unwrap()
        };
        // c has 3 pairs, under 10; a (12) is the smallest visible cell, so it
        // is hidden too, or c would follow from the group total.
        assert!(by_label("c").suppressed);
        assert!(by_label("c").category.is_none());
        assert!(by_label("a").suppressed);
        assert!(!by_label("b").suppressed);
        let b = by_label("b").category.as_ref().unwrap();
        assert_eq!(b.pairs, 15);
        assert_eq!(b.agreeing, 15);
        assert_eq!(b.percent, Some(100.0));
    }

    #[test]
    fn nurses_without_pseudonym_come_last() {
        let mut nurses = NurseAccumulator::default();
        for _ in 0..10 {
            nurses.add(None, true);
            nurses.add(Some("a"), false);
        }
        let rows = nurses.finish(10);
        assert_eq!(rows[0].label, Some(nurse_label("a")));
        assert_eq!(rows[1].label, None);
        assert_eq!(rows[0].category.as_ref().unwrap().agreeing, 0);
        assert_eq!(rows[1].category.as_ref().unwrap().agreeing, 10);
    }
}
