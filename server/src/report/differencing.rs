//! Protection of filtered figures against differencing.
//!
//! A reader who sees the figures of a filter F and of a wider selection W
//! that contains all of F's pairs can subtract the two and get the figures of
//! the pairs in W but not in F. So before F is shown, every such W that the
//! service also shows must have either no more pairs than F or at least the
//! minimum cell size more.
//!
//! The wider selections checked are F with any non-empty set of its
//! dimensions left out (organization, topic, child age group, first day,
//! last day). Several at once matter too, because leaving out one dimension
//! may add no pair while leaving out two adds one. Sometimes all of F's
//! pairs have the same value of a label that F does not set (one topic, or
//! no age group). The selection on that value then contains F too, so the
//! value counts as a condition of F as well.
//!
//! Every selection is counted per breakdown cell as well, so that a cell of
//! a filtered report can be compared with the same cell of a wider report.
//! The counting takes two passes over the report's totals per stratum (day ×
//! labels) and reads no chat.
//!
//! NOTE: periods are checked only by leaving `from` or `to` out. Two
//! overlapping periods, such as 1–31 and 1–30 July, can still be subtracted.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::breakdown::Breakdown;
use super::{FilterSuppression, ReportFilter, StratumCounts, filter_suppression};
use crate::store::facts::Stratum;

/// A dimension of the report's filter, named as its query parameter. A
/// reader may leave any of them out of a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Organization,
    Topic,
    ChildAgeGroup,
    /// The first day of the period.
    From,
    /// The last day of the period.
    To,
}

impl Dimension {
    pub const ALL: [Dimension; 5] = [
        Dimension::Organization,
        Dimension::Topic,
        Dimension::ChildAgeGroup,
        Dimension::From,
        Dimension::To,
    ];

    /// Returns the query parameter that sets this dimension.
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Organization => "organization",
            Dimension::Topic => "topic",
            Dimension::ChildAgeGroup => "child_age_group",
            Dimension::From => "from",
            Dimension::To => "to",
        }
    }

    /// Returns the chat label this dimension selects on; `None` for the dates.
    fn label(self, stratum: &Stratum) -> Option<&Option<String>> {
        match self {
            Dimension::Organization => Some(&stratum.organization),
            Dimension::Topic => Some(&stratum.topic),
            Dimension::ChildAgeGroup => Some(&stratum.child_age_group),
            Dimension::From | Dimension::To => None,
        }
    }
}

/// Joins dimension names for a message, e.g. "organization and topic".
fn dimension_list(dimensions: &[Dimension]) -> String {
    let names: Vec<&str> = dimensions.iter().map(|dimension| dimension.as_str()).collect();
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// Why a filtered report shows no answers and no agreement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum SuppressionReason {
    /// The filter selects fewer matched pairs than the minimum cell size.
    TooFewPairs { pairs: u64 },
    /// A wider selection, which the reader may also see, has between 1 and
    /// `min_cell_size - 1` matched pairs more than the filter, so
    /// subtracting the two would show those pairs.
    LeavesOutTooFewPairs {
        /// Matched pairs in the wider selection and not in the filter's.
        left_out: u64,
        /// The filter's dimensions that the wider selection leaves out.
        without: Vec<Dimension>,
        /// Labels the filter does not set but on which all its pairs have the
        /// same value; the wider selection keeps that value.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        shared_labels: Vec<Dimension>,
    },
}

impl SuppressionReason {
    /// Describes the reason in a sentence, in English.
    pub fn message(&self, min_cell_size: u64) -> String {
        match self {
            SuppressionReason::TooFewPairs { pairs } => {
                let noun = if *pairs == 1 { "pair" } else { "pairs" };
                format!("the filter selects {pairs} matched {noun}, fewer than the minimum cell size {min_cell_size}")
            }
            SuppressionReason::LeavesOutTooFewPairs {
                left_out,
                without,
                shared_labels,
            } => {
                let shared = if shared_labels.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (keeping the one {} that all selected pairs have)",
                        dimension_list(shared_labels)
                    )
                };
                let unit = if *left_out == 1 {
                    "matched pair"
                } else {
                    "matched pairs"
                };
                format!(
                    "the same filter without {}{shared} selects only {left_out} {unit} more, fewer than \
                     the minimum cell size {min_cell_size}, so subtracting the two would show those pairs",
                    dimension_list(without)
                )
            }
        }
    }
}

/// One condition of a selection: a dimension that the filter sets, or a
/// label that it does not set and on which all its pairs have one value.
#[derive(Clone, Debug)]
enum Condition {
    Set(Dimension),
    Shared(Dimension, Option<String>),
}

impl Condition {
    fn matches(&self, filter: &ReportFilter, stratum: &Stratum) -> bool {
        match self {
            Condition::Set(dimension) => filter.matches_dimension(*dimension, stratum),
            Condition::Shared(dimension, value) => dimension.label(stratum) == Some(value),
        }
    }
}

/// Pairs per breakdown cell of one selection, in the order of [`Breakdown::ALL`].
type CellPairs = [HashMap<Option<String>, u64>; 4];

/// The matched pairs of a filter's selection and of every wider selection
/// that leaves out some of its conditions, in total and optionally per
/// breakdown cell.
#[derive(Debug)]
pub struct Relaxations {
    conditions: Vec<Condition>,
    /// Pairs per set of left-out conditions, indexed by its bit mask (bit
    /// i: condition i left out). Index 0 is the filter's own selection.
    pairs: Vec<u64>,
    /// The same per breakdown cell; empty unless cells are counted.
    cells: Vec<CellPairs>,
    /// The masks that leave out at least one dimension the filter sets,
    /// fewest conditions first. Leaving out only shared labels changes
    /// nothing, because every selected pair has them.
    wider: Vec<usize>,
}

impl Relaxations {
    /// Counts the matched pairs that `filter` selects from `strata`, and
    /// those of every wider selection; with `count_cells`, per breakdown cell
    /// as well. The organizations a token is limited to always apply.
    pub fn count(filter: &ReportFilter, strata: &[(Stratum, StratumCounts)], count_cells: bool) -> Self {
        let mut conditions: Vec<Condition> = filter.dimensions().into_iter().map(Condition::Set).collect();
        let set_count = conditions.len();
        if set_count > 0 {
            conditions.extend(
                shared_labels(filter, strata)
                    .into_iter()
                    .map(|(dimension, value)| Condition::Shared(dimension, value)),
            );
        }

        let masks = 1usize << conditions.len();
        let set_bits = (1usize << set_count) - 1;
        let mut wider: Vec<usize> = (1..masks).filter(|mask| mask & set_bits != 0).collect();
        wider.sort_by_key(|mask| (mask.count_ones(), *mask));
        let mut relaxations = Self {
            conditions,
            pairs: vec![0; masks],
            // Without a wider selection no cell is compared, so none is counted.
            cells: if count_cells && !wider.is_empty() {
                (0..masks).map(|_| CellPairs::default()).collect()
            } else {
                Vec::new()
            },
            wider,
        };
        for (stratum, counts) in strata {
            let pairs = counts.pairing.both;
            if pairs > 0 && filter.within_scope(stratum) {
                relaxations.add(filter, stratum, pairs);
            }
        }
        relaxations
    }

    /// Adds the pairs of one stratum to every selection it belongs to: those
    /// that leave out at least the conditions the stratum misses.
    fn add(&mut self, filter: &ReportFilter, stratum: &Stratum, pairs: u64) {
        let mut missed = 0usize;
        for (bit, condition) in self.conditions.iter().enumerate() {
            if !condition.matches(filter, stratum) {
                missed |= 1 << bit;
            }
        }
        let week = if self.cells.is_empty() {
            None
        } else {
            stratum.day.map(super::calendar::Date::iso_week)
        };
        let values = [&stratum.organization, &stratum.topic, &stratum.child_age_group, &week];

        let all = self.pairs.len() - 1;
        let mut mask = missed;
        loop {
            self.pairs[mask] += pairs;
            if let Some(cells) = self.cells.get_mut(mask) {
                for (cell_pairs, value) in cells.iter_mut().zip(values) {
                    match cell_pairs.get_mut(value) {
                        Some(count) => *count += pairs,
                        None => {
                            cell_pairs.insert(value.clone(), pairs);
                        }
                    }
                }
            }
            if mask == all {
                break;
            }
            // The next superset of `missed`.
            mask = (mask + 1) | missed;
        }
    }

    /// Matched pairs of the filter's own selection.
    pub fn selected(&self) -> u64 {
        self.pairs[0]
    }

    /// Decides whether a filtered selection must be suppressed at
    /// `min_cell_size`. The unfiltered report is exempt; do not ask for it.
    pub fn suppression(&self, min_cell_size: u64) -> Option<SuppressionReason> {
        let selected = self.selected();
        if let Some(FilterSuppression::TooFew { pairs }) = filter_suppression(selected, selected, min_cell_size) {
            return Some(SuppressionReason::TooFewPairs { pairs });
        }
        for mask in &self.wider {
            if let Some(FilterSuppression::LeavesOutTooFew { left_out }) =
                filter_suppression(selected, self.pairs[*mask], min_cell_size)
            {
                return Some(self.leaves_out(*mask, left_out));
            }
        }
        None
    }

    fn leaves_out(&self, mask: usize, left_out: u64) -> SuppressionReason {
        let mut without = Vec::new();
        let mut shared_labels = Vec::new();
        for (bit, condition) in self.conditions.iter().enumerate() {
            let left_out = mask & (1 << bit) != 0;
            match condition {
                Condition::Set(dimension) if left_out => without.push(*dimension),
                Condition::Shared(dimension, _) if !left_out => shared_labels.push(*dimension),
                _ => {}
            }
        }
        SuppressionReason::LeavesOutTooFewPairs {
            left_out,
            without,
            shared_labels,
        }
    }

    /// Returns whether the cell `value` of `breakdown` must be hidden because
    /// the same cell of a wider selection has between 1 and
    /// `min_cell_size - 1` matched pairs more. False when cells were not counted.
    pub fn cell_leaves_out_too_few(&self, breakdown: Breakdown, value: &Option<String>, min_cell_size: u64) -> bool {
        let Some(own_cells) = self.cells.first() else {
            return false;
        };
        let pairs_in = |cells: &CellPairs| cells[breakdown.index()].get(value).copied().unwrap_or(0);
        let own = pairs_in(own_cells);
        self.wider.iter().any(|mask| {
            let left_out = pairs_in(&self.cells[*mask]).saturating_sub(own);
            left_out > 0 && left_out < min_cell_size
        })
    }
}

/// Finds the labels that `filter` does not set and on which all of its
/// matched pairs have the same value, with that value.
fn shared_labels(filter: &ReportFilter, strata: &[(Stratum, StratumCounts)]) -> Vec<(Dimension, Option<String>)> {
    let candidates: Vec<Dimension> = [Dimension::Organization, Dimension::Topic, Dimension::ChildAgeGroup]
        .into_iter()
        .filter(|dimension| !filter.dimensions().contains(dimension))
        .collect();
    // Per candidate: the one value seen so far, or `None` once two differ.
    let mut seen: Vec<Option<Option<&Option<String>>>> = vec![Some(None); candidates.len()];
    for (stratum, counts) in strata {
        if counts.pairing.both == 0 || !filter.matches_stratum(stratum) {
            continue;
        }
        for (dimension, state) in candidates.iter().zip(seen.iter_mut()) {
            let value = dimension.label(stratum).expect("candidates are labels");
            match state {
                Some(None) => *state = Some(Some(value)),
                Some(Some(known)) if *known != value => *state = None,
                _ => {}
            }
        }
    }
    candidates
        .into_iter()
        .zip(seen)
        .filter_map(|(dimension, state)| match state {
            Some(Some(value)) => Some((dimension, value.clone())),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{ReportOptions, calendar, from_strata};
    use crate::store::facts;

    const MIN: u64 = 10;

    fn stratum(organization: &str, topic: &str, age: &str, day: &str) -> Stratum {
        Stratum {
            day: calendar::Date::parse(day),
            organization: Some(organization.into()),
            topic: Some(topic.into()),
            child_age_group: Some(age.into()),
            purged_week: false,
        }
    }

    /// `pairs` matched pairs that all agree, in one stratum.
    fn with_pairs(stratum: Stratum, pairs: u64) -> (Stratum, StratumCounts) {
        let mut counts = StratumCounts {
            chats: pairs,
            ..StratumCounts::default()
        };
        counts.pairing.both = pairs;
        counts.patterns = vec![facts::pair_pattern(&[2; 11], &[2; 11]); pairs as usize];
        (stratum, counts)
    }

    fn filter(organization: Option<&str>, topic: Option<&str>, age: Option<&str>) -> ReportFilter {
        ReportFilter::parse(
            None,
            None,
            organization.map(String::from),
            topic.map(String::from),
            age.map(String::from),
        )
        .expect("valid filter")
    }

    /// DiffOrg has 12 pairs of topic A and age 0-5 and one of topic A and
    /// age 5-12; another organization has 20.
    fn diff_org_store() -> Vec<(Stratum, StratumCounts)> {
        vec![
            with_pairs(stratum("DiffOrg", "A", "0-5", "2022-07-01"), 12),
            with_pairs(stratum("DiffOrg", "A", "5-12", "2022-07-01"), 1),
            with_pairs(stratum("OtherOrg", "A", "0-5", "2022-07-01"), 10),
            with_pairs(stratum("OtherOrg", "B", "5-12", "2022-07-01"), 10),
        ]
    }

    fn suppression(filter: &ReportFilter, strata: &[(Stratum, StratumCounts)]) -> Option<SuppressionReason> {
        Relaxations::count(filter, strata, false).suppression(MIN)
    }

    #[test]
    fn tester_case_is_suppressed() {
        let strata = diff_org_store();
        let narrow = filter(Some("DiffOrg"), Some("A"), Some("0-5"));
        assert_eq!(
            suppression(&narrow, &strata),
            Some(SuppressionReason::LeavesOutTooFewPairs {
                left_out: 1,
                without: vec![Dimension::ChildAgeGroup],
                shared_labels: Vec::new(),
            })
        );
        let single = filter(Some("DiffOrg"), Some("A"), Some("5-12"));
        assert_eq!(
            suppression(&single, &strata),
            Some(SuppressionReason::TooFewPairs { pairs: 1 })
        );
    }

    #[test]
    fn large_differences_are_shown() {
        let strata = diff_org_store();
        // 13 pairs; leaving out the organization adds 10, both dimensions 20.
        let wide = filter(Some("DiffOrg"), Some("A"), None);
        assert_eq!(suppression(&wide, &strata), None);
        // 23 pairs; the whole store has 10 more.
        assert_eq!(suppression(&filter(None, Some("A"), None), &strata), None);
    }

    #[test]
    fn suppressed_report_hides_answers_and_cells() {
        let strata = diff_org_store();
        let options = ReportOptions {
            min_cell_size: MIN,
            bootstrap: false,
        };
        let report = from_strata(&strata, &filter(Some("DiffOrg"), Some("A"), Some("0-5")), 0, &options);
        assert!(report.suppression.suppressed);
        assert!(matches!(
            report.suppression.reason,
            Some(SuppressionReason::LeavesOutTooFewPairs { left_out: 1, .. })
        ));
        assert_eq!(report.agreement.overall.category.pairs, 0);
        assert!(report.items.iter().all(|item| item.parent.good == 0));
        for (name, cells) in report.breakdowns.dimensions() {
            assert!(cells.iter().all(|cell| cell.suppressed), "{name} cells shown");
        }
        assert_eq!(report.pairs, 12, "pair counts stay");

        let wide = from_strata(&strata, &filter(Some("DiffOrg"), Some("A"), None), 0, &options);
        assert!(!wide.suppression.suppressed);
        assert_eq!(wide.suppression.reason, None);
        assert_eq!(wide.agreement.overall.category.pairs, 13);
    }

    #[test]
    fn several_dimensions_left_out_at_once() {
        // Leaving out the topic or the age group alone adds no pair, but
        // leaving out both adds the one pair of topic B and age 5-12.
        let strata = vec![
            with_pairs(stratum("X", "A", "0-5", "2022-07-01"), 12),
            with_pairs(stratum("X", "B", "5-12", "2022-07-01"), 1),
            with_pairs(stratum("Y", "A", "0-5", "2022-07-01"), 30),
            with_pairs(stratum("Y", "B", "5-12", "2022-07-01"), 30),
        ];
        assert_eq!(
            suppression(&filter(Some("X"), Some("A"), Some("0-5")), &strata),
            Some(SuppressionReason::LeavesOutTooFewPairs {
                left_out: 1,
                without: vec![Dimension::Topic, Dimension::ChildAgeGroup],
                shared_labels: Vec::new(),
            })
        );
    }

    #[test]
    fn shared_label_counts_as_condition() {
        // All of X's pairs have topic A, so the report on topic A contains
        // them, and 3 pairs more.
        let strata = vec![
            with_pairs(stratum("X", "A", "0-5", "2022-07-01"), 12),
            with_pairs(stratum("Y", "A", "0-5", "2022-07-01"), 3),
            with_pairs(stratum("Y", "B", "0-5", "2022-07-01"), 30),
        ];
        assert_eq!(
            suppression(&filter(Some("X"), None, None), &strata),
            Some(SuppressionReason::LeavesOutTooFewPairs {
                left_out: 3,
                without: vec![Dimension::Organization],
                shared_labels: vec![Dimension::Topic, Dimension::ChildAgeGroup],
            })
        );
    }

    #[test]
    fn date_bounds_are_dimensions() {
        let strata = vec![
            with_pairs(stratum("X", "A", "0-5", "2022-07-01"), 10),
            with_pairs(stratum("Y", "B", "5-12", "2022-07-01"), 10),
            with_pairs(stratum("X", "A", "0-5", "2022-07-02"), 2),
            with_pairs(stratum("X", "A", "0-5", "2022-06-01"), 30),
        ];
        let until_first = ReportFilter::parse(Some("2022-06-15"), Some("2022-07-01"), None, None, None).expect("valid");
        // Without `to` the selection has the 2 pairs of 2 July more; without
        // `from`, 30 more.
        assert_eq!(
            suppression(&until_first, &strata),
            Some(SuppressionReason::LeavesOutTooFewPairs {
                left_out: 2,
                without: vec![Dimension::To],
                shared_labels: Vec::new(),
            })
        );
        let whole_days = ReportFilter::parse(Some("2022-06-15"), Some("2022-07-02"), None, None, None).expect("valid");
        assert_eq!(suppression(&whole_days, &strata), None);
    }

    #[test]
    fn token_scope_is_never_left_out() {
        let strata = diff_org_store();
        let scoped = |filter: ReportFilter| filter.limited_to(Some(vec!["DiffOrg".into()]));
        assert_eq!(suppression(&scoped(filter(None, None, None)), &strata), None);
        assert_eq!(
            suppression(&scoped(filter(None, None, Some("0-5"))), &strata),
            Some(SuppressionReason::LeavesOutTooFewPairs {
                left_out: 1,
                without: vec![Dimension::ChildAgeGroup],
                shared_labels: vec![Dimension::Organization, Dimension::Topic],
            })
        );
    }

    #[test]
    fn cell_close_to_wider_cell_is_hidden() {
        // DiffOrg's topic B pads the age difference to 15 pairs, so the
        // report on DiffOrg and age 0-5 is shown. Its topic A cell (12
        // pairs) is 1 pair short of the topic A cell of the DiffOrg report.
        let mut strata = diff_org_store();
        strata.push(with_pairs(stratum("DiffOrg", "B", "0-5", "2022-07-01"), 15));
        strata.push(with_pairs(stratum("DiffOrg", "B", "5-12", "2022-07-01"), 15));
        let options = ReportOptions {
            min_cell_size: MIN,
            bootstrap: false,
        };
        let report = from_strata(&strata, &filter(Some("DiffOrg"), None, Some("0-5")), 0, &options);
        assert!(!report.suppression.suppressed, "{:?}", report.suppression);
        let topic = |value: &str| {
            report
                .breakdowns
                .topic
                .iter()
                .find(|cell| cell.value.as_deref() == Some(value))
                .expect("topic cell")
                .clone()
        };
        assert!(topic("A").suppressed, "the topic A cell is 1 pair short of a wider one");
        assert!(topic("B").suppressed, "the only other cell would give topic A back");

        let relaxations = Relaxations::count(&filter(Some("DiffOrg"), None, Some("0-5")), &strata, true);
        let b = Some("B".to_string());
        assert!(!relaxations.cell_leaves_out_too_few(Breakdown::Topic, &b, MIN));
    }

    #[test]
    fn reasons_read_as_sentences() {
        let reason = SuppressionReason::LeavesOutTooFewPairs {
            left_out: 1,
            without: vec![Dimension::Topic, Dimension::ChildAgeGroup],
            shared_labels: vec![Dimension::Organization],
        };
        assert_eq!(
            reason.message(10),
            "the same filter without topic and child_age_group (keeping the one organization that all \
             selected pairs have) selects only 1 matched pair more, fewer than the minimum cell size 10, \
             so subtracting the two would show those pairs"
        );
        let json = serde_json::to_value(&reason).expect("serialises");
        assert_eq!(json["code"], "leaves_out_too_few_pairs");
        assert_eq!(json["without"], serde_json::json!(["topic", "child_age_group"]));
        assert_eq!(json["shared_labels"], serde_json::json!(["organization"]));
    }
}
