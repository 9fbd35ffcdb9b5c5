//! The report: response funnels, matched pairs, per-item counts and agreement.
//!
//! Built by one scan over the stored chats. No report code reads the study
//! data; the figures come only from what was answered through the API.

pub mod agreement;
pub mod breakdown;
pub mod calendar;
pub mod differencing;
pub mod error_page;
pub mod export;
pub mod export_command;
pub mod html;
pub mod live;
pub mod nurses;
pub mod peer_review;
pub mod peer_review_page;
pub mod text;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::questionnaire::{ITEM_COUNT, Instrument, Rating};
use crate::routes::questionnaire::time_text;
use crate::store::facts::{self, ChatFacts, RoleFacts, Stratum};
use crate::store::records::{ChatRecord, Millis};
use crate::store::{Store, StoreError};
use agreement::{Table3, bootstrap, wilson};
pub use differencing::{Dimension, Relaxations, SuppressionReason};

/// Seed of the bootstrap; fixed so that a report repeats exactly.
pub const BOOTSTRAP_SEED: u64 = 20_220_630;

/// Which chats a report covers.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ReportFilter {
    /// First day included (Europe/Amsterdam), by the chat's end time.
    pub from: Option<calendar::Date>,
    /// Last day included.
    pub to: Option<calendar::Date>,
    pub organization: Option<String>,
    pub topic: Option<String>,
    pub child_age_group: Option<String>,
    /// Organizations an admin token is limited to; `None` means all.
    #[serde(skip)]
    pub allowed_organizations: Option<Vec<String>>,
}

/// A report filter value that [`ReportFilter::parse`] rejects. The message
/// is the `message` of the API's `invalid_filter` error.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FilterError {
    /// `from` or `to` is not a `YYYY-MM-DD` date.
    #[error("{} = {value:?} is not a date; use YYYY-MM-DD, e.g. 2022-07-01", parameter.as_str())]
    InvalidDate { parameter: Dimension, value: String },
    /// `from` is a later day than `to`.
    #[error("from ({from}) is after to ({to})")]
    FromAfterTo { from: calendar::Date, to: calendar::Date },
}

impl ReportFilter {
    /// Parses the query values; dates are `YYYY-MM-DD`.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        organization: Option<String>,
        topic: Option<String>,
        child_age_group: Option<String>,
    ) -> Result<Self, FilterError> {
        let date = |parameter: Dimension, value: Option<&str>| -> Result<Option<calendar::Date>, FilterError> {
            value
                .map(|text| {
                    calendar::Date::parse(text).ok_or_else(|| FilterError::InvalidDate {
                        parameter,
                        value: text.to_string(),
                    })
                })
                .transpose()
        };
        let filter = Self {
            from: date(Dimension::From, from)?,
            to: date(Dimension::To, to)?,
            organization,
            topic,
            child_age_group,
            allowed_organizations: None,
        };
        if let (Some(from), Some(to)) = (filter.from, filter.to) {
            if from > to {
                return Err(FilterError::FromAfterTo { from, to });
            }
        }
        Ok(filter)
    }

    pub fn limited_to(mut self, organizations: Option<Vec<String>>) -> Self {
        self.allowed_organizations = organizations;
        self
    }

    /// Returns whether the filter selects `chat`.
    pub fn matches(&self, chat: &ChatRecord) -> bool {
        self.matches_stratum(&Stratum {
            day: calendar::amsterdam_date(&chat.ended_at),
            organization: chat.organization.clone(),
            topic: chat.topic.clone(),
            child_age_group: chat.child_age_group.clone(),
            purged_week: false,
        })
    }

    /// Returns whether the filter selects the chats of `stratum`.
    pub fn matches_stratum(&self, stratum: &Stratum) -> bool {
        self.within_scope(stratum)
            && Dimension::ALL
                .iter()
                .all(|dimension| self.matches_dimension(*dimension, stratum))
    }

    /// Returns whether `stratum` belongs to an organization the reader's
    /// token may see.
    pub fn within_scope(&self, stratum: &Stratum) -> bool {
        match &self.allowed_organizations {
            Some(allowed) => stratum
                .organization
                .as_ref()
                .is_some_and(|organization| allowed.contains(organization)),
            None => true,
        }
    }

    /// Lists the dimensions this filter sets, in the order of [`Dimension::ALL`].
    /// The organizations a token is limited to are not among them, because
    /// its reader cannot leave them out.
    pub fn dimensions(&self) -> Vec<Dimension> {
        Dimension::ALL
            .into_iter()
            .filter(|dimension| match dimension {
                Dimension::Organization => self.organization.is_some(),
                Dimension::Topic => self.topic.is_some(),
                Dimension::ChildAgeGroup => self.child_age_group.is_some(),
                Dimension::From => self.from.is_some(),
                Dimension::To => self.to.is_some(),
            })
            .collect()
    }

    /// Returns whether the chats of `stratum` meet this filter's condition on
    /// `dimension`; true when the filter does not set it.
    pub fn matches_dimension(&self, dimension: Dimension, stratum: &Stratum) -> bool {
        let label_matches = |wanted: &Option<String>, actual: &Option<String>| match wanted {
            Some(wanted) => actual.as_ref() == Some(wanted),
            None => true,
        };
        match dimension {
            Dimension::Organization => label_matches(&self.organization, &stratum.organization),
            Dimension::Topic => label_matches(&self.topic, &stratum.topic),
            Dimension::ChildAgeGroup => label_matches(&self.child_age_group, &stratum.child_age_group),
            Dimension::From => match self.from {
                Some(from) => stratum.day.is_some_and(|day| day >= from),
                None => true,
            },
            // Purged chats are only known by week: the week counts when all
            // of its days are inside the period.
            Dimension::To => match (self.to, stratum.day) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(to), Some(day)) if stratum.purged_week => {
                    calendar::Date::from(day.inner() + time::Duration::days(6)) <= to
                }
                (Some(to), Some(day)) => day <= to,
            },
        }
    }
}

/// One role's response funnel.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Funnel {
    pub invited: u64,
    pub opened: u64,
    /// Responses with at least one answer.
    pub started: u64,
    /// Responses with item n answered, for n = 1 to 11.
    pub items_answered: [u64; ITEM_COUNT],
    pub complete: u64,
    pub submitted: u64,
    pub declined: u64,
    pub expired: u64,
}

impl Funnel {
    /// Counts one invitation; `now` decides whether an open one has expired.
    fn add(&mut self, role: &RoleFacts, now: Millis) {
        if !role.invited {
            return;
        }
        self.invited += 1;
        self.opened += u64::from(role.opened);
        self.started += u64::from(role.is_started());
        for (index, count) in self.items_answered.iter_mut().enumerate() {
            *count += u64::from(role.is_answered(index));
        }
        self.complete += u64::from(role.is_complete());
        self.submitted += u64::from(role.submitted);
        self.declined += u64::from(role.declined);
        self.expired += u64::from(role.is_expired(now));
    }

    /// Takes away counts that [`Funnel::merge`] added.
    pub fn subtract(&mut self, other: &Funnel) {
        self.invited -= other.invited;
        self.opened -= other.opened;
        self.started -= other.started;
        for (count, less) in self.items_answered.iter_mut().zip(&other.items_answered) {
            *count -= less;
        }
        self.complete -= other.complete;
        self.submitted -= other.submitted;
        self.declined -= other.declined;
        self.expired -= other.expired;
    }

    /// Adds another funnel's counts.
    pub fn merge(&mut self, other: &Funnel) {
        self.invited += other.invited;
        self.opened += other.opened;
        self.started += other.started;
        for (count, more) in self.items_answered.iter_mut().zip(&other.items_answered) {
            *count += more;
        }
        self.complete += other.complete;
        self.submitted += other.submitted;
        self.declined += other.declined;
        self.expired += other.expired;
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Questionnaires {
    pub parent: Funnel,
    pub professional: Funnel,
}

/// A share with its Wilson 95% interval, in percent.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Rate {
    pub count: u64,
    pub of: u64,
    pub percent: Option<f64>,
    pub ci95: Option<[f64; 2]>,
}

impl Rate {
    fn new(count: u64, of: u64) -> Self {
        Self {
            count,
            of,
            percent: percent(count, of),
            ci95: wilson(count, of).map(|(lo, hi)| [round2(lo * 100.0), round2(hi * 100.0)]),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Rates {
    /// Complete parent responses per chat.
    pub parent: Rate,
    /// Complete professional responses per chat.
    pub professional: Rate,
    /// Matched pairs per chat.
    pub pairs: Rate,
}

/// How chats split by which sides completed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Pairing {
    pub both: u64,
    pub parent_only: u64,
    pub professional_only: u64,
    pub neither: u64,
}

impl Pairing {
    fn add(&mut self, parent_complete: bool, professional_complete: bool) {
        match (parent_complete, professional_complete) {
            (true, true) => self.both += 1,
            (true, false) => self.parent_only += 1,
            (false, true) => self.professional_only += 1,
            (false, false) => self.neither += 1,
        }
    }

    pub fn subtract(&mut self, other: &Pairing) {
        self.both -= other.both;
        self.parent_only -= other.parent_only;
        self.professional_only -= other.professional_only;
        self.neither -= other.neither;
    }

    pub fn merge(&mut self, other: &Pairing) {
        self.both += other.both;
        self.parent_only += other.parent_only;
        self.professional_only += other.professional_only;
        self.neither += other.neither;
    }
}

/// Everything a report counts about the chats of one stratum: one day of
/// chat ends and one value of each label.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StratumCounts {
    pub chats: u64,
    pub chats_ineligible: u64,
    pub parent: Funnel,
    pub professional: Funnel,
    pub pairing: Pairing,
    /// The matched pairs' answers, packed by [`facts::pair_pattern`].
    pub patterns: Vec<u64>,
}

impl StratumCounts {
    /// Counts one chat.
    pub fn add(&mut self, chat: &ChatFacts<'_>, now: Millis) {
        if !chat.eligible {
            self.chats_ineligible += 1;
            return;
        }
        self.chats += 1;
        let [parent, professional] = &chat.roles;
        self.parent.add(parent, now);
        self.professional.add(professional, now);
        self.pairing.add(parent.is_complete(), professional.is_complete());
        if let (Some(parent), Some(professional)) = (parent.scores(), professional.scores()) {
            self.patterns.push(facts::pair_pattern(&parent, &professional));
        }
    }

    /// Adds another stratum's counts.
    pub fn merge(&mut self, other: &StratumCounts) {
        self.chats += other.chats;
        self.chats_ineligible += other.chats_ineligible;
        self.parent.merge(&other.parent);
        self.professional.merge(&other.professional);
        self.pairing.merge(&other.pairing);
        self.patterns.extend_from_slice(&other.patterns);
    }

    /// Matched pairs whose overall categories are equal.
    fn agreeing(&self) -> u64 {
        self.patterns
            .iter()
            .filter(|pattern| {
                let (parent, professional) = facts::unpack_pattern(**pattern);
                category(&parent, &ALL_ITEMS) == category(&professional, &ALL_ITEMS)
            })
            .count() as u64
    }
}

/// Why a filtered selection of pairs may not be shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterSuppression {
    /// The filter selects fewer pairs than the minimum cell size.
    TooFew { pairs: u64 },
    /// The filter leaves out fewer pairs than the minimum cell size (but at
    /// least one), so the unfiltered figures minus the filtered ones would
    /// show them.
    LeavesOutTooFew { left_out: u64 },
}

/// Decides whether a filter that selects `selected` of the `visible` pairs
/// its reader sees without it must be suppressed at `min_cell_size`.
pub fn filter_suppression(selected: u64, visible: u64, min_cell_size: u64) -> Option<FilterSuppression> {
    let left_out = visible.saturating_sub(selected);
    if selected < min_cell_size {
        Some(FilterSuppression::TooFew { pairs: selected })
    } else if left_out > 0 && left_out < min_cell_size {
        Some(FilterSuppression::LeavesOutTooFew { left_out })
    } else {
        None
    }
}

/// Counts every chat of the store by stratum, from the store's running
/// totals of live chats and the totals of purged weeks.
pub fn count_strata(store: &Store, now: Millis) -> Result<Vec<(Stratum, StratumCounts)>, StoreError> {
    let (mut strata, purged) = store.live_and_purged_totals(now)?;
    for (key, value) in purged {
        strata.push(purged_stratum(&key, &value)?);
    }
    strata.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(strata)
}

/// Counts every chat of the store by stratum like [`count_strata`], but in
/// one scan of the report facts. Used to check the running totals and to
/// compare the two in the benchmark.
pub fn count_strata_by_scan(store: &Store, now: Millis) -> Result<Vec<(Stratum, StratumCounts)>, StoreError> {
    let mut by_key: HashMap<Vec<u8>, StratumCounts> = HashMap::new();
    let mut purged = Vec::new();
    store.for_each_facts(
        |chat| match by_key.get_mut(chat.stratum) {
            Some(counts) => counts.add(chat, now),
            None => by_key.entry(chat.stratum.to_vec()).or_default().add(chat, now),
        },
        |key, value| {
            purged.push(purged_stratum(key, value)?);
            Ok(())
        },
    )?;
    let mut strata = Vec::with_capacity(by_key.len() + purged.len());
    for (key, counts) in by_key {
        let stratum = facts::decode_stratum(&key).ok_or_else(|| StoreError::CorruptFacts {
            key: format!("stratum {}", crate::token::hex(&key)),
        })?;
        strata.push((stratum, counts));
    }
    strata.extend(purged);
    strata.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(strata)
}

/// Decodes one entry of the totals of the purged weeks.
fn purged_stratum(key: &[u8], value: &[u8]) -> Result<(Stratum, StratumCounts), StoreError> {
    let corrupt = || StoreError::CorruptFacts {
        key: format!("totals {}", crate::token::hex(key)),
    };
    let mut stratum = facts::decode_stratum(key).ok_or_else(corrupt)?;
    stratum.purged_week = true;
    let counts: StratumCounts = serde_json::from_slice(value).map_err(|_| corrupt())?;
    Ok((stratum, counts))
}

/// Answers per rating for one item and role.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RatingCounts {
    pub insufficient: u64,
    pub sufficient: u64,
    pub good: u64,
}

impl RatingCounts {
    fn add(&mut self, rating: Rating) {
        match rating {
            Rating::Insufficient => self.insufficient += 1,
            Rating::Sufficient => self.sufficient += 1,
            Rating::Good => self.good += 1,
        }
    }
}

/// One coefficient with its bootstrap interval (and analytic standard error
/// where one is defined).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Coefficient {
    pub value: Option<f64>,
    pub ci95: Option<[f64; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub se: Option<f64>,
}

/// Agreement between parent and professional on one 3×3 table.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TableAgreement {
    /// Rows: parent insufficient, sufficient, good; columns: the same for the professional.
    pub table: [[u64; 3]; 3],
    pub n: u64,
    pub percent: Option<f64>,
    pub chance: Option<f64>,
    pub kappa: Coefficient,
    pub kappa_linear: Coefficient,
    pub kappa_quadratic: Coefficient,
    pub kappa_max: Coefficient,
    pub ac1: Coefficient,
    pub ac2_quadratic: Coefficient,
    pub alpha_ordinal: Coefficient,
    pub mean_difference: Coefficient,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ItemReport {
    pub number: u8,
    pub parent: RatingCounts,
    pub professional: RatingCounts,
    pub agreement: TableAgreement,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CategoryAgreement {
    pub agreeing: u64,
    pub pairs: u64,
    pub percent: Option<f64>,
    pub ci95: Option<[f64; 2]>,
    /// Rows: the parent's overall category; columns: the professional's.
    pub table: [[u64; 3]; 3],
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ItemAgreement {
    pub agreeing: u64,
    pub answers: u64,
    pub percent: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AllItemsAgreement {
    pub agreeing: u64,
    pub pairs: u64,
    pub percent: Option<f64>,
}

/// Category, item and all-items agreement over a set of items.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AgreementSet {
    pub category: CategoryAgreement,
    pub items: ItemAgreement,
    pub all_items: AllItemsAgreement,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Subscales {
    pub personal_bond: AgreementSet,
    pub goals_and_approach: AgreementSet,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Agreement {
    #[serde(flatten)]
    pub overall: AgreementSet,
    /// Chance-corrected coefficients on the pooled table of every pair's 11 item answers.
    pub pooled: TableAgreement,
    /// Chance-corrected coefficients on the table of the pairs' overall categories.
    pub category_coefficients: TableAgreement,
    pub subscales: Subscales,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Bootstrap {
    pub resamples: usize,
    pub seed: u64,
    pub unit: String,
}

/// The whole report; the JSON of `GET /api/admin/report`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub generated_at: String,
    pub filter: ReportFilter,
    pub chats: u64,
    pub chats_ineligible: u64,
    pub questionnaires: Questionnaires,
    pub rates: Rates,
    pub pairs: u64,
    pub pairing: Pairing,
    pub items: Vec<ItemReport>,
    pub agreement: Agreement,
    pub bootstrap: Bootstrap,
    /// Each funnel stage as a share of the invitations, with Wilson intervals.
    #[serde(default)]
    pub funnel_rates: breakdown::FunnelRates,
    /// Co-completion odds ratio of the pairing table.
    pub pairing_odds_ratio: Option<breakdown::OddsRatio>,
    #[serde(default)]
    pub breakdowns: breakdown::Breakdowns,
    /// Completers compared with non-completers on topic and age group.
    #[serde(default)]
    pub completers: breakdown::CompleterComparisons,
    #[serde(default)]
    pub suppression: Suppression,
}

/// How small-cell suppression applied to this report.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Suppression {
    /// Smallest number of matched pairs a figure may rest on.
    pub min_cell_size: u64,
    /// Whether a filter or an organization-limited token narrowed the report.
    pub filtered: bool,
    /// True when a filtered report has fewer pairs than `min_cell_size`, or
    /// when a wider selection that its reader may also see (the same filter
    /// with one or more dimensions left out) has between 1 and
    /// `min_cell_size - 1` pairs more, which subtraction would give back.
    /// Then `items` and `agreement` are computed over no pairs, and every
    /// breakdown cell is suppressed. Chat and funnel counts stay.
    pub suppressed: bool,
    /// The reason the report is suppressed; absent when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<SuppressionReason>,
}

/// Options of [`build_with`].
#[derive(Clone, Debug)]
pub struct ReportOptions {
    /// Smallest number of matched pairs shown in a breakdown cell or a filtered report.
    pub min_cell_size: u64,
    /// Whether to compute the bootstrap intervals (`ci95` of each
    /// coefficient). Without them the report takes a fraction of the time.
    pub bootstrap: bool,
}

impl Default for ReportOptions {
    /// The default of `ALLIANCE_MIN_CELL_SIZE`, 10, with bootstrap intervals.
    fn default() -> Self {
        Self {
            min_cell_size: 10,
            bootstrap: true,
        }
    }
}

impl Report {
    /// Reads a report from its JSON, as a running service returns it.
    pub fn from_json(value: serde_json::Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(value)
    }
}

/// The two complete responses of one matched pair, as scores 0–2.
struct Pair {
    parent: [u8; ITEM_COUNT],
    professional: [u8; ITEM_COUNT],
}

/// Builds the report over the chats that `filter` selects, with the default
/// [`ReportOptions`]. `now` decides which open invitations count as expired.
pub fn build(store: &Store, filter: &ReportFilter, now: Millis) -> Result<Report, StoreError> {
    build_with(store, filter, now, &ReportOptions::default())
}

/// The items every overall category is the median of.
const ALL_ITEMS: [u8; ITEM_COUNT] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];

/// Builds the report over the chats that `filter` selects, suppressing
/// small cells below `options.min_cell_size`.
pub fn build_with(
    store: &Store,
    filter: &ReportFilter,
    now: Millis,
    options: &ReportOptions,
) -> Result<Report, StoreError> {
    let strata = count_strata(store, now)?;
    Ok(from_strata(&strata, filter, now, options))
}

/// Builds the report from counted strata; see [`count_strata`].
pub fn from_strata(
    strata: &[(Stratum, StratumCounts)],
    filter: &ReportFilter,
    now: Millis,
    options: &ReportOptions,
) -> Report {
    let mut breakdowns = breakdown::Accumulator::default();
    let mut total = StratumCounts::default();
    for (stratum, counts) in strata {
        if !filter.matches_stratum(stratum) {
            continue;
        }
        breakdowns.add_stratum(stratum, counts, counts.agreeing());
        total.merge(counts);
    }
    // A canonical order, so that the bootstrap resamples the same list
    // whatever order the strata came in.
    let mut patterns = std::mem::take(&mut total.patterns);
    patterns.sort_unstable();

    let filtered = *filter != ReportFilter::default();
    let relaxations = Relaxations::count(filter, strata, filtered);
    let reason = if filtered {
        relaxations.suppression(options.min_cell_size)
    } else {
        None
    };
    let suppression = Suppression {
        min_cell_size: options.min_cell_size,
        filtered,
        suppressed: reason.is_some(),
        reason,
    };
    let hide_cell = |breakdown: breakdown::Breakdown, value: &Option<String>| {
        suppression.suppressed || relaxations.cell_leaves_out_too_few(breakdown, value, options.min_cell_size)
    };
    let (breakdowns, completers) = breakdowns.finish_with_comparisons(options.min_cell_size, &hide_cell);
    if suppression.suppressed {
        patterns.clear();
    }
    let pairs: Vec<Pair> = patterns
        .iter()
        .map(|pattern| {
            let (parent, professional) = facts::unpack_pattern(*pattern);
            Pair { parent, professional }
        })
        .collect();

    let instrument = Instrument::get();
    let all_items: Vec<u8> = (1..=ITEM_COUNT as u8).collect();
    let overall = agreement_set(&pairs, &all_items);
    let personal_bond = agreement_set(&pairs, instrument.personal_bond());
    let goals_and_approach = agreement_set(&pairs, instrument.goals_and_approach());

    let items = (0..ITEM_COUNT)
        .map(|index| item_report(&pairs, index, options.bootstrap))
        .collect();

    let pooled_per_chat: Vec<Table3> = pairs
        .iter()
        .map(|pair| {
            let mut table = Table3::default();
            for (parent, professional) in pair.parent.iter().zip(&pair.professional) {
                record(&mut table, *parent, *professional);
            }
            table
        })
        .collect();
    let category_per_chat: Vec<Table3> = pairs
        .iter()
        .map(|pair| {
            let mut table = Table3::default();
            record(
                &mut table,
                category(&pair.parent, &all_items),
                category(&pair.professional, &all_items),
            );
            table
        })
        .collect();

    let chats = total.chats;
    let questionnaires = Questionnaires {
        parent: total.parent,
        professional: total.professional,
    };
    let pairing = total.pairing;
    Report {
        generated_at: time_text(now),
        filter: filter.clone(),
        chats,
        chats_ineligible: total.chats_ineligible,
        rates: Rates {
            parent: Rate::new(questionnaires.parent.complete, chats),
            professional: Rate::new(questionnaires.professional.complete, chats),
            pairs: Rate::new(pairing.both, chats),
        },
        funnel_rates: breakdown::FunnelRates {
            parent: breakdown::stage_rates(&questionnaires.parent),
            professional: breakdown::stage_rates(&questionnaires.professional),
        },
        questionnaires,
        pairs: pairing.both,
        pairing_odds_ratio: Some(breakdown::odds_ratio(&pairing)),
        pairing,
        breakdowns,
        completers,
        suppression,
        items,
        agreement: Agreement {
            overall,
            pooled: table_agreement(&pooled_per_chat, options.bootstrap),
            category_coefficients: table_agreement(&category_per_chat, options.bootstrap),
            subscales: Subscales {
                personal_bond,
                goals_and_approach,
            },
        },
        bootstrap: Bootstrap {
            resamples: if options.bootstrap {
                agreement::DEFAULT_RESAMPLES
            } else {
                0
            },
            seed: BOOTSTRAP_SEED,
            unit: "chat".into(),
        },
    }
}

fn record(table: &mut Table3, parent: u8, professional: u8) {
    table.record(parent, professional).expect("scores are 0 to 2");
}

/// Returns a side's overall category over `items` (numbers 1–11): the lower median
/// of its scores, i.e. the 6th of 11, the 4th of 8 and the 2nd of 3 sorted values.
fn category(scores: &[u8; ITEM_COUNT], items: &[u8]) -> u8 {
    let mut selected: Vec<u8> = items.iter().map(|item| scores[usize::from(*item) - 1]).collect();
    selected.sort_unstable();
    selected[(selected.len() - 1) / 2]
}

fn agreement_set(pairs: &[Pair], items: &[u8]) -> AgreementSet {
    let mut category_table = Table3::default();
    let mut item_agreeing = 0;
    let mut all_agreeing = 0;
    for pair in pairs {
        record(
            &mut category_table,
            category(&pair.parent, items),
            category(&pair.professional, items),
        );
        let same = items
            .iter()
            .filter(|item| pair.parent[usize::from(**item) - 1] == pair.professional[usize::from(**item) - 1])
            .count() as u64;
        item_agreeing += same;
        all_agreeing += u64::from(same == items.len() as u64);
    }
    let n = pairs.len() as u64;
    let agreeing = category_table.agreements();
    let answers = n * items.len() as u64;
    AgreementSet {
        category: CategoryAgreement {
            agreeing,
            pairs: n,
            percent: percent(agreeing, n),
            ci95: wilson(agreeing, n).map(|(lo, hi)| [round2(lo * 100.0), round2(hi * 100.0)]),
            table: category_table.counts,
        },
        items: ItemAgreement {
            agreeing: item_agreeing,
            answers,
            percent: percent(item_agreeing, answers),
        },
        all_items: AllItemsAgreement {
            agreeing: all_agreeing,
            pairs: n,
            percent: percent(all_agreeing, n),
        },
    }
}

fn item_report(pairs: &[Pair], index: usize, with_bootstrap: bool) -> ItemReport {
    let mut parent = RatingCounts::default();
    let mut professional = RatingCounts::default();
    let per_chat: Vec<Table3> = pairs
        .iter()
        .map(|pair| {
            let (p, q) = (pair.parent[index], pair.professional[index]);
            parent.add(Rating::from_score(p).expect("score 0 to 2"));
            professional.add(Rating::from_score(q).expect("score 0 to 2"));
            let mut table = Table3::default();
            record(&mut table, p, q);
            table
        })
        .collect();
    ItemReport {
        number: index as u8 + 1,
        parent,
        professional,
        agreement: table_agreement(&per_chat, with_bootstrap),
    }
}

/// Coefficients on the sum of per-chat tables, with intervals from a
/// bootstrap that resamples chats.
fn table_agreement(per_chat: &[Table3], with_bootstrap: bool) -> TableAgreement {
    let table: Table3 = per_chat.iter().sum();
    let values = table.coefficients();
    let intervals = if with_bootstrap {
        bootstrap(per_chat, agreement::DEFAULT_RESAMPLES, BOOTSTRAP_SEED)
    } else {
        agreement::BootstrapIntervals::default()
    };
    let coefficient = |value: Option<f64>, ci: Option<(f64, f64)>, se: Option<f64>| Coefficient {
        value: value.map(round6),
        ci95: ci.map(|(lo, hi)| [round6(lo), round6(hi)]),
        se: se.map(round6),
    };
    TableAgreement {
        table: table.counts,
        n: table.total(),
        percent: values.percent.map(round2),
        chance: values.chance.map(round2),
        kappa: coefficient(values.kappa, intervals.kappa, values.kappa_se),
        kappa_linear: coefficient(values.kappa_linear, intervals.kappa_linear, None),
        kappa_quadratic: coefficient(values.kappa_quadratic, intervals.kappa_quadratic, None),
        kappa_max: coefficient(values.kappa_max, intervals.kappa_max, None),
        ac1: coefficient(values.ac1, intervals.ac1, values.ac1_se),
        ac2_quadratic: coefficient(values.ac2_quadratic, intervals.ac2_quadratic, None),
        alpha_ordinal: coefficient(values.alpha_ordinal, intervals.alpha_ordinal, None),
        mean_difference: coefficient(values.mean_difference, intervals.mean_difference, None),
    }
}

/// Share in percent with two decimals; `None` when `of` is 0.
fn percent(count: u64, of: u64) -> Option<f64> {
    (of > 0).then(|| round2(count as f64 * 100.0 / of as f64))
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn round6(value: f64) -> f64 {
    (value * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_is_lower_median() {
        let scores = [2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 0];
        assert_eq!(category(&scores, &(1..=11).collect::<Vec<u8>>()), 1);
        let scores = [2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1];
        assert_eq!(category(&scores, &(1..=11).collect::<Vec<u8>>()), 2);
        // Personal bond items 1–5 and 7–9: four 2s and four 1s give the 4th value, 1.
        let scores = [2, 2, 2, 2, 1, 0, 1, 1, 1, 0, 0];
        assert_eq!(category(&scores, &[1, 2, 3, 4, 5, 7, 8, 9]), 1);
        // Goals and approach items 6, 10, 11: the 2nd of three.
        let scores = [0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 2];
        assert_eq!(category(&scores, &[6, 10, 11]), 2);
    }

    #[test]
    fn agreement_set_counts_items_and_all_items() {
        let pairs = vec![
            Pair {
                parent: [2; 11],
                professional: [2; 11],
            },
            Pair {
                parent: [2; 11],
                professional: [1; 11],
            },
            Pair {
                parent: [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2],
                professional: [1; 11],
            },
        ];
        let set = agreement_set(&pairs, &(1..=11).collect::<Vec<u8>>());
        assert_eq!(set.category.agreeing, 2);
        assert_eq!(set.items.agreeing, 11 + 10);
        assert_eq!(set.items.answers, 33);
        assert_eq!(set.all_items.agreeing, 1);
        assert_eq!(set.category.percent, Some(66.67));
    }

    #[test]
    fn filter_suppression_guards_both_sides() {
        assert_eq!(
            filter_suppression(9, 218, 10),
            Some(FilterSuppression::TooFew { pairs: 9 })
        );
        assert_eq!(
            filter_suppression(210, 218, 10),
            Some(FilterSuppression::LeavesOutTooFew { left_out: 8 })
        );
        assert_eq!(filter_suppression(208, 218, 10), None);
        assert_eq!(filter_suppression(218, 218, 10), None);
        assert_eq!(filter_suppression(0, 0, 0), None);
    }

    #[test]
    fn percent_rounds_to_two_decimals() {
        assert_eq!(percent(135, 218), Some(61.93));
        assert_eq!(percent(1, 0), None);
    }
}
