//! The peer-review view (intervisie): the matched pairs whose parent and
//! professional gave a different overall category, grouped by organization,
//! with the items of largest difference per chat.
//!
//! A row carries no chat id, pseudonym, time or comment: only the ISO week
//! of the chat's end, both categories and the item answers that differ most.
//! Groups follow the small-cell rule of the breakdowns: a group under the
//! minimum cell size, and any group whose figures would give it back by
//! subtraction, shows no figures and no rows. A filtered view that the
//! report's rules would suppress (fewer pairs than the minimum, or a wider
//! selection with only a few pairs more, see [`super::differencing`]) shows
//! no group at all.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::breakdown::{Breakdown, suppressed_cells_with};
use super::differencing::{Relaxations, SuppressionReason};
use super::nurses::{NurseAccumulator, NurseFigures};
use super::{ALL_ITEMS, ReportFilter, calendar, category};
use crate::questionnaire::{ITEM_COUNT, Instrument, Lang, Rating, Role};
use crate::routes::questionnaire::time_text;
use crate::store::records::Millis;
use crate::store::{ChatEntry, Store, StoreError};

/// The label chats are grouped by.
// NOTE: the stored chat has no team label, so groups are organizations. A
// team label would need a new field in the chat-ended webhook and the store.
pub const GROUP_BY: &str = "organization";

/// Options of [`build`].
#[derive(Clone, Debug)]
pub struct PeerReviewOptions {
    /// Smallest number of matched pairs a group or a nurse cell may show.
    pub min_cell_size: u64,
    /// Adds [`Group::nurses`]; `ALLIANCE_PER_NURSE_FIGURES`.
    pub per_nurse_figures: bool,
    /// Language of the item wording.
    pub lang: Lang,
}

/// The whole view; the JSON of `GET /api/admin/peer-review`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PeerReview {
    pub generated_at: String,
    pub filter: ReportFilter,
    /// Language of the item wording in `largest_differences`.
    pub lang: Lang,
    /// Chat label that forms the groups: `organization`.
    pub group_by: String,
    pub min_cell_size: u64,
    /// Whether the view carries per-nurse figures (`ALLIANCE_PER_NURSE_FIGURES`).
    pub per_nurse_figures: bool,
    /// Whether a filter or an organization-limited token narrowed the view.
    pub filtered: bool,
    /// True when a filtered view has fewer pairs than `min_cell_size`, or
    /// when the same filter with one or more dimensions left out selects
    /// between 1 and `min_cell_size - 1` pairs more: then `pairs` and
    /// `disagreeing` are `null` and every group is suppressed.
    pub suppressed: bool,
    /// The reason the view is suppressed; absent when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppression_reason: Option<SuppressionReason>,
    /// Matched pairs in the view.
    pub pairs: Option<u64>,
    /// Pairs whose two overall categories differ.
    pub disagreeing: Option<u64>,
    pub groups: Vec<Group>,
}

/// The pairs of one organization.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Group {
    /// The organization; `null` for chats that came without one.
    pub name: Option<String>,
    pub suppressed: bool,
    /// `null` when suppressed.
    pub pairs: Option<u64>,
    /// `null` when suppressed.
    pub disagreeing: Option<u64>,
    /// The disagreeing pairs, by ISO week and then by the size of the
    /// largest difference. Empty when suppressed.
    pub chats: Vec<DisagreeingChat>,
    /// Figures per nurse; absent unless per-nurse figures are switched on,
    /// and empty when the group is suppressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nurses: Option<Vec<NurseFigures>>,
}

/// One pair whose overall categories differ, without anything that
/// identifies the chat.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DisagreeingChat {
    /// ISO week of the chat's end in Europe/Amsterdam time, e.g. `2022-W27`;
    /// `null` when the end time could not be read.
    pub iso_week: Option<String>,
    pub parent_category: Rating,
    pub professional_category: Rating,
    /// The items whose parent-minus-professional score difference has the
    /// largest absolute value in this pair, in item order.
    pub largest_differences: Vec<ItemDifference>,
}

/// One item's answers in a pair, with the item's wording.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ItemDifference {
    pub item: u8,
    /// The item's short name, e.g. "Begrip".
    pub element: String,
    /// The item as the parent read it, after the stem "De hulpverlener…".
    pub parent_text: String,
    /// The item as the professional read it, after the stem "Ik…".
    pub professional_text: String,
    pub parent: Rating,
    pub professional: Rating,
    /// Parent score minus professional score, from −2 to 2 (scores 0–2).
    pub difference: i8,
}

#[derive(Default)]
struct GroupCounts {
    pairs: u64,
    chats: Vec<DisagreeingChat>,
    nurses: NurseAccumulator,
}

/// Builds the peer-review view over the chats that `filter` selects.
pub fn build(
    store: &Store,
    filter: &ReportFilter,
    now: Millis,
    options: &PeerReviewOptions,
) -> Result<PeerReview, StoreError> {
    let filtered = *filter != ReportFilter::default();
    // The view lists live chats only, because purged chats have no answers.
    let relaxations = Relaxations::count(filter, &store.live_strata(now)?, filtered);
    let mut groups: BTreeMap<Option<String>, GroupCounts> = BTreeMap::new();

    for entry in store.chats() {
        let entry = entry?;
        let chat = &entry.chat;
        if !chat.eligible || !filter.matches(chat) {
            continue;
        }
        let Some((parent, professional)) = pair_scores(&entry) else {
            continue;
        };

        let group = groups.entry(chat.organization.clone()).or_default();
        group.pairs += 1;
        let parent_category = category(&parent, &ALL_ITEMS);
        let professional_category = category(&professional, &ALL_ITEMS);
        let agrees = parent_category == professional_category;
        if options.per_nurse_figures {
            group.nurses.add(chat.nurse_pseudonym(), agrees);
        }
        if !agrees {
            group.chats.push(DisagreeingChat {
                iso_week: calendar::amsterdam_date(&chat.ended_at).map(calendar::Date::iso_week),
                parent_category: rating(parent_category),
                professional_category: rating(professional_category),
                largest_differences: largest_differences(&parent, &professional, options.lang),
            });
        }
    }

    let mut entries: Vec<(Option<String>, GroupCounts)> = groups.into_iter().collect();
    // BTreeMap puts None first; list chats without an organization last.
    entries.sort_by(|(a, _), (b, _)| match (a, b) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (Some(_), None) => std::cmp::Ordering::Less,
        (Some(a), Some(b)) => a.cmp(b),
    });

    let pairs: u64 = entries.iter().map(|(_, counts)| counts.pairs).sum();
    let disagreeing: u64 = entries.iter().map(|(_, counts)| counts.chats.len() as u64).sum();
    // The suppression decision takes both the view's pairs and the wider
    // selections' pairs from the same snapshot of the running totals.
    let suppression_reason = if filtered {
        relaxations.suppression(options.min_cell_size)
    } else {
        None
    };
    let suppressed = suppression_reason.is_some();
    let sizes: Vec<u64> = entries.iter().map(|(_, counts)| counts.pairs).collect();
    let forced: Vec<bool> = entries
        .iter()
        .map(|(name, _)| {
            suppressed || relaxations.cell_leaves_out_too_few(Breakdown::Organization, name, options.min_cell_size)
        })
        .collect();
    let hidden = suppressed_cells_with(&sizes, &forced, options.min_cell_size);

    let groups = entries
        .into_iter()
        .zip(hidden)
        .map(|((name, counts), hidden)| group(name, counts, hidden, options))
        .collect();

    Ok(PeerReview {
        generated_at: time_text(now),
        filter: filter.clone(),
        lang: options.lang,
        group_by: GROUP_BY.into(),
        min_cell_size: options.min_cell_size,
        per_nurse_figures: options.per_nurse_figures,
        filtered,
        suppressed,
        suppression_reason,
        pairs: (!suppressed).then_some(pairs),
        disagreeing: (!suppressed).then_some(disagreeing),
        groups,
    })
}

/// One side's 11 scores, 0–2.
type Scores = [u8; ITEM_COUNT];

/// Returns the parent's and the professional's scores when the chat is a matched pair.
fn pair_scores(entry: &ChatEntry) -> Option<(Scores, Scores)> {
    let [parent, professional] = Role::BOTH.map(|role| {
        entry
            .invitation(role)
            .and_then(|invitation| invitation.response.ratings())
            .map(|ratings| ratings.map(Rating::score))
    });
    Some((parent?, professional?))
}

fn rating(score: u8) -> Rating {
    Rating::from_score(score).expect("categories are scores 0 to 2")
}

/// Lists the items with the largest absolute score difference of one pair.
/// Returns nothing when all 11 answers are equal.
fn largest_differences(parent: &Scores, professional: &Scores, lang: Lang) -> Vec<ItemDifference> {
    let differences: Vec<i8> = parent
        .iter()
        .zip(professional)
        .map(|(p, q)| *p as i8 - *q as i8)
        .collect();
    let largest = differences.iter().map(|d| d.abs()).max().unwrap_or(0);
    if largest == 0 {
        return Vec::new();
    }

    let instrument = Instrument::get();
    let parent_wording = instrument.items(Role::Parent, lang);
    let professional_wording = instrument.items(Role::Professional, lang);
    differences
        .iter()
        .enumerate()
        .filter(|(_, difference)| difference.abs() == largest)
        .map(|(index, difference)| ItemDifference {
            item: index as u8 + 1,
            element: parent_wording[index].element.to_string(),
            parent_text: parent_wording[index].text.to_string(),
            professional_text: professional_wording[index].text.to_string(),
            parent: rating(parent[index]),
            professional: rating(professional[index]),
            difference: *difference,
        })
        .collect()
}

fn group(name: Option<String>, counts: GroupCounts, hidden: bool, options: &PeerReviewOptions) -> Group {
    let nurses = options.per_nurse_figures.then(|| {
        if hidden {
            Vec::new()
        } else {
            counts.nurses.finish(options.min_cell_size)
        }
    });
    if hidden {
        return Group {
            name,
            suppressed: true,
            pairs: None,
            disagreeing: None,
            chats: Vec::new(),
            nurses,
        };
    }

    let mut chats = counts.chats;
    // Rows follow the week and the size of the difference, never the order
    // of arrival, so their position reveals nothing about a single chat.
    chats.sort_by(|a, b| {
        let largest = |chat: &DisagreeingChat| {
            chat.largest_differences
                .first()
                .map(|item| item.difference.abs())
                .unwrap_or(0)
        };
        let items = |chat: &DisagreeingChat| {
            chat.largest_differences
                .iter()
                .map(|item| (item.item, item.difference))
                .collect::<Vec<_>>()
        };
        (a.iso_week.is_none(), &a.iso_week)
            .cmp(&(b.iso_week.is_none(), &b.iso_week))
            .then(largest(b).cmp(&largest(a)))
            .then(a.parent_category.cmp(&b.parent_category))
            .then(a.professional_category.cmp(&b.professional_category))
            .then(items(a).cmp(&items(b)))
    });
    Group {
        name,
        suppressed: false,
        pairs: Some(counts.pairs),
        disagreeing: Some(chats.len() as u64),
        chats,
        nurses,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_differences_keep_ties_and_sign() {
        let parent = [2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 0];
        let professional = [2, 1, 2, 0, 2, 2, 1, 2, 2, 2, 2];
        let items = largest_differences(&parent, &professional, Lang::Nl);
        let found: Vec<(u8, i8)> = items.iter().map(|item| (item.item, item.difference)).collect();
        assert_eq!(found, [(4, 2), (11, -2)]);
        assert_eq!(items[0].element, "Sensitiviteit");
        assert_eq!(items[0].parent, Rating::Good);
        assert_eq!(items[0].professional, Rating::Insufficient);
        assert_eq!(
            items[1].parent_text,
            "hielp me actief gebruik te maken van allerlei mogelijkheden om verder te komen"
        );
    }

    #[test]
    fn equal_answers_have_no_largest_difference() {
        assert!(largest_differences(&[1; ITEM_COUNT], &[1; ITEM_COUNT], Lang::Nl).is_empty());
    }

    #[test]
    fn english_wording_comes_from_the_instrument() {
        let mut parent = [2; ITEM_COUNT];
        parent[0] = 0;
        let items = largest_differences(&parent, &[2; ITEM_COUNT], Lang::En);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].element, "Understanding");
        assert_eq!(items[0].parent_text, "understood my situation");
        assert_eq!(items[0].professional_text, "understand the situation");
        assert_eq!(items[0].difference, -2);
    }
}
