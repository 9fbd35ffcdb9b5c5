//! Breakdowns of the report by organization, topic, child age group and ISO
//! week, with small-cell suppression. Also the pairing odds ratio, funnel
//! rates with Wilson intervals, and completers compared with non-completers.
//!
//! Suppression rule: a cell with fewer matched pairs than the minimum cell
//! size shows no figures. When that leaves a single suppressed cell in a
//! breakdown, or suppressed cells that hold fewer pairs together than the
//! minimum, the next smallest cells are suppressed too, because the report's
//! totals would otherwise give the hidden figures back by subtraction. A
//! filtered report also hides the cells that [`super::differencing`] finds
//! too close to the same cell of a wider selection.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Funnel, Pairing, Rate, Rates, StratumCounts, percent, round2};
use crate::questionnaire::ITEM_COUNT;
use crate::report::agreement::wilson;
use crate::report::calendar;
use crate::store::facts::Stratum;

/// z for a two-sided 95% interval, the same value the Wilson intervals use.
const Z95: f64 = 1.959964;

/// Category agreement in one cell.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CellAgreement {
    pub agreeing: u64,
    pub pairs: u64,
    pub percent: Option<f64>,
    pub ci95: Option<[f64; 2]>,
}

/// The figures of one unsuppressed cell.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CellFigures {
    pub chats: u64,
    pub parent: Funnel,
    pub professional: Funnel,
    pub rates: Rates,
    pub pairing: Pairing,
    pub category: CellAgreement,
}

/// One value of a breakdown, e.g. one organization. `value` is `null` for
/// chats that came without the label.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Cell {
    pub value: Option<String>,
    pub suppressed: bool,
    /// `null` when the cell is suppressed.
    pub figures: Option<CellFigures>,
}

/// The four breakdowns of the report.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Breakdowns {
    /// Cells with fewer matched pairs than this are suppressed.
    pub min_cell_size: u64,
    pub organization: Vec<Cell>,
    pub topic: Vec<Cell>,
    pub child_age_group: Vec<Cell>,
    /// ISO weeks (`2022-W27`) of the chat's end, Europe/Amsterdam time, in calendar order.
    pub iso_week: Vec<Cell>,
}

impl Breakdowns {
    /// The breakdowns as (dimension name, cells) pairs, in a fixed order.
    pub fn dimensions(&self) -> [(&'static str, &[Cell]); 4] {
        [
            ("organization", &self.organization),
            ("topic", &self.topic),
            ("child_age_group", &self.child_age_group),
            ("iso_week", &self.iso_week),
        ]
    }
}

/// One of the four breakdowns, in the order of [`Breakdowns::dimensions`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Breakdown {
    Organization,
    Topic,
    ChildAgeGroup,
    IsoWeek,
}

impl Breakdown {
    pub const ALL: [Breakdown; 4] = [
        Breakdown::Organization,
        Breakdown::Topic,
        Breakdown::ChildAgeGroup,
        Breakdown::IsoWeek,
    ];

    /// Position in [`Breakdown::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

#[derive(Default)]
struct CellCounts {
    chats: u64,
    parent: Funnel,
    professional: Funnel,
    pairing: Pairing,
    agreeing: u64,
}

impl CellCounts {
    fn figures(&self) -> CellFigures {
        let pairs = self.pairing.both;
        CellFigures {
            chats: self.chats,
            parent: self.parent.clone(),
            professional: self.professional.clone(),
            rates: Rates {
                parent: Rate::new(self.parent.complete, self.chats),
                professional: Rate::new(self.professional.complete, self.chats),
                pairs: Rate::new(pairs, self.chats),
            },
            pairing: self.pairing.clone(),
            category: CellAgreement {
                agreeing: self.agreeing,
                pairs,
                percent: percent(self.agreeing, pairs),
                ci95: percent_interval(self.agreeing, pairs),
            },
        }
    }
}

/// Collects the breakdown cells from the report's strata.
#[derive(Default)]
pub struct Accumulator {
    organization: BTreeMap<Option<String>, CellCounts>,
    topic: BTreeMap<Option<String>, CellCounts>,
    child_age_group: BTreeMap<Option<String>, CellCounts>,
    iso_week: BTreeMap<Option<String>, CellCounts>,
}

fn cell_for<'m>(map: &'m mut BTreeMap<Option<String>, CellCounts>, value: &Option<String>) -> &'m mut CellCounts {
    if !map.contains_key(value) {
        map.insert(value.clone(), CellCounts::default());
    }
    map.get_mut(value).expect("inserted above")
}

impl Accumulator {
    /// Adds the eligible chats of one stratum to every breakdown;
    /// `agreeing` is the number of its pairs whose categories are equal.
    pub fn add_stratum(&mut self, stratum: &Stratum, counts: &StratumCounts, agreeing: u64) {
        let week = stratum.day.map(calendar::Date::iso_week);
        let cells = [
            cell_for(&mut self.organization, &stratum.organization),
            cell_for(&mut self.topic, &stratum.topic),
            cell_for(&mut self.child_age_group, &stratum.child_age_group),
            cell_for(&mut self.iso_week, &week),
        ];
        for cell in cells {
            cell.chats += counts.chats;
            cell.parent.merge(&counts.parent);
            cell.professional.merge(&counts.professional);
            cell.pairing.merge(&counts.pairing);
            cell.agreeing += agreeing;
        }
    }

    /// Turns the counts into cells and applies suppression. `hide` names the
    /// cells to suppress whatever their size; the complementary cells that
    /// protect them are then suppressed as well.
    pub fn finish(self, min_cell_size: u64, hide: &dyn Fn(Breakdown, &Option<String>) -> bool) -> Breakdowns {
        Breakdowns {
            min_cell_size,
            organization: cells(self.organization, Breakdown::Organization, min_cell_size, hide),
            topic: cells(self.topic, Breakdown::Topic, min_cell_size, hide),
            child_age_group: cells(self.child_age_group, Breakdown::ChildAgeGroup, min_cell_size, hide),
            iso_week: cells(self.iso_week, Breakdown::IsoWeek, min_cell_size, hide),
        }
    }
}

fn cells(
    map: BTreeMap<Option<String>, CellCounts>,
    breakdown: Breakdown,
    min_cell_size: u64,
    hide: &dyn Fn(Breakdown, &Option<String>) -> bool,
) -> Vec<Cell> {
    // BTreeMap puts None first; list chats without the label last.
    let mut entries: Vec<(Option<String>, CellCounts)> = map.into_iter().collect();
    entries.sort_by(|(a, _), (b, _)| match (a, b) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (Some(_), None) => std::cmp::Ordering::Less,
        (Some(a), Some(b)) => a.cmp(b),
    });

    let sizes: Vec<u64> = entries.iter().map(|(_, counts)| counts.pairing.both).collect();
    let forced: Vec<bool> = entries.iter().map(|(value, _)| hide(breakdown, value)).collect();
    let hidden = suppressed_cells_with(&sizes, &forced, min_cell_size);
    entries
        .into_iter()
        .zip(hidden)
        .map(|((value, counts), suppressed)| Cell {
            value,
            suppressed,
            figures: (!suppressed).then(|| counts.figures()),
        })
        .collect()
}

/// Decides which cells of one breakdown to suppress, given each cell's size
/// (matched pairs). Primary: every cell under `min_cell_size`. Secondary:
/// while exactly one cell is hidden, or the hidden cells hold fewer than
/// `min_cell_size` together, the smallest visible cell is hidden as well, so
/// that no hidden figure follows from the total minus the visible cells.
pub fn suppressed_cells(sizes: &[u64], min_cell_size: u64) -> Vec<bool> {
    suppressed_cells_with(sizes, &vec![false; sizes.len()], min_cell_size)
}

/// Decides which cells to suppress like [`suppressed_cells`], where the cells
/// marked in `forced` are suppressed whatever their size.
pub fn suppressed_cells_with(sizes: &[u64], forced: &[bool], min_cell_size: u64) -> Vec<bool> {
    let mut hidden: Vec<bool> = sizes
        .iter()
        .zip(forced)
        .map(|(size, forced)| *forced || *size < min_cell_size)
        .collect();
    loop {
        let hidden_count = hidden.iter().filter(|h| **h).count();
        if hidden_count == 0 || hidden_count == sizes.len() {
            return hidden;
        }
        let hidden_total: u64 = sizes.iter().zip(&hidden).filter(|(_, h)| **h).map(|(s, _)| *s).sum();
        if hidden_count >= 2 && hidden_total >= min_cell_size {
            return hidden;
        }
        let smallest_visible = (0..sizes.len())
            .filter(|index| !hidden[*index])
            .min_by_key(|index| sizes[*index])
            .expect("a visible cell exists");
        hidden[smallest_visible] = true;
    }
}

/// A share in percent with its Wilson 95% interval, rounded to two decimals.
fn percent_interval(count: u64, of: u64) -> Option<[f64; 2]> {
    wilson(count, of).map(|(lo, hi)| [round2(lo * 100.0), round2(hi * 100.0)])
}

/// The odds ratio of completion by the two roles: how much more likely the
/// professional completes when the parent did than when the parent did not.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OddsRatio {
    /// (both × neither) / (parent only × professional only).
    pub value: Option<f64>,
    /// Woolf's logit interval: exp(ln OR ± 1.959964 · √(1/a + 1/b + 1/c + 1/d)).
    pub ci95: Option<[f64; 2]>,
    /// True when a cell was 0 and 0.5 was added to all four cells
    /// (Haldane–Anscombe correction) before computing value and interval.
    pub corrected: bool,
}

/// Computes the co-completion odds ratio of the pairing table.
pub fn odds_ratio(pairing: &Pairing) -> OddsRatio {
    let cells = [
        pairing.both,
        pairing.neither,
        pairing.parent_only,
        pairing.professional_only,
    ];
    if cells.iter().all(|cell| *cell == 0) {
        return OddsRatio {
            value: None,
            ci95: None,
            corrected: false,
        };
    }
    let corrected = cells.contains(&0);
    let shift = if corrected { 0.5 } else { 0.0 };
    let [a, d, b, c] = cells.map(|cell| cell as f64 + shift);

    let ratio = (a * d) / (b * c);
    let log_se = (1.0 / a + 1.0 / b + 1.0 / c + 1.0 / d).sqrt();
    let log_ratio = ratio.ln();
    OddsRatio {
        value: Some(round4(ratio)),
        ci95: Some([
            round4((log_ratio - Z95 * log_se).exp()),
            round4((log_ratio + Z95 * log_se).exp()),
        ]),
        corrected,
    }
}

fn round4(value: f64) -> f64 {
    (value * 1e4).round() / 1e4
}

/// One stage of a role's funnel as a share of the invitations.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StageRate {
    /// `opened`, `started`, `item_1` … `item_11`, `complete`, `submitted`, `declined` or `expired`.
    pub stage: String,
    #[serde(flatten)]
    pub rate: Rate,
}

/// Both roles' funnel stages as shares of the invitations, with Wilson intervals.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FunnelRates {
    pub parent: Vec<StageRate>,
    pub professional: Vec<StageRate>,
}

/// Lists a funnel's stages as rates of its invitations.
pub fn stage_rates(funnel: &Funnel) -> Vec<StageRate> {
    let mut stages = vec![
        ("opened".to_string(), funnel.opened),
        ("started".to_string(), funnel.started),
    ];
    for (index, count) in funnel.items_answered.iter().enumerate() {
        stages.push((format!("item_{}", index + 1), *count));
    }
    stages.extend([
        ("complete".to_string(), funnel.complete),
        ("submitted".to_string(), funnel.submitted),
        ("declined".to_string(), funnel.declined),
        ("expired".to_string(), funnel.expired),
    ]);
    debug_assert_eq!(stages.len(), ITEM_COUNT + 6);
    stages
        .into_iter()
        .map(|(stage, count)| StageRate {
            stage,
            rate: Rate::new(count, funnel.invited),
        })
        .collect()
}

/// One label value in a completers versus non-completers comparison.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ComparisonRow {
    pub value: Option<String>,
    pub suppressed: bool,
    /// Chats of this value whose questionnaire this role completed; `null` when suppressed.
    pub completers: Option<u64>,
    pub non_completers: Option<u64>,
    /// Share of all completers, 0–100.
    pub completers_percent: Option<f64>,
    /// Share of all non-completers, 0–100.
    pub non_completers_percent: Option<f64>,
}

/// How completers and non-completers of one role spread over one label, with
/// Pearson's chi-square test of independence over all values.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Comparison {
    pub rows: Vec<ComparisonRow>,
    pub chi_square: Option<f64>,
    pub df: u64,
    pub p_value: Option<f64>,
}

/// Completers compared with non-completers, per role, on topic and age group.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CompleterComparisons {
    pub parent: Option<RoleComparisons>,
    pub professional: Option<RoleComparisons>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RoleComparisons {
    pub topic: Comparison,
    pub child_age_group: Comparison,
}

impl Accumulator {
    /// Finishes the breakdowns and compares completers with non-completers,
    /// per role, on topic and age group. Comparison rows whose completer
    /// count is under `min_cell_size` are suppressed by the same rule as
    /// breakdown cells; the chi-square test uses every row. `hide` is passed
    /// to [`Accumulator::finish`].
    pub fn finish_with_comparisons(
        self,
        min_cell_size: u64,
        hide: &dyn Fn(Breakdown, &Option<String>) -> bool,
    ) -> (Breakdowns, CompleterComparisons) {
        let role = |pick: fn(&CellCounts) -> &Funnel| RoleComparisons {
            topic: comparison(&self.topic, pick, min_cell_size),
            child_age_group: comparison(&self.child_age_group, pick, min_cell_size),
        };
        let comparisons = CompleterComparisons {
            parent: Some(role(|counts| &counts.parent)),
            professional: Some(role(|counts| &counts.professional)),
        };
        (self.finish(min_cell_size, hide), comparisons)
    }
}

fn comparison(
    rows: &BTreeMap<Option<String>, CellCounts>,
    pick: fn(&CellCounts) -> &Funnel,
    min_cell_size: u64,
) -> Comparison {
    let counts: Vec<(u64, u64)> = rows
        .values()
        .map(|counts| {
            let funnel = pick(counts);
            (funnel.complete, funnel.invited.saturating_sub(funnel.complete))
        })
        .collect();
    let total_completers: u64 = counts.iter().map(|(c, _)| c).sum();
    let total_others: u64 = counts.iter().map(|(_, n)| n).sum();
    let sizes: Vec<u64> = counts.iter().map(|(completers, _)| *completers).collect();
    let hidden = suppressed_cells(&sizes, min_cell_size);

    let table_rows = rows
        .iter()
        .zip(&counts)
        .zip(hidden)
        .map(|(((value, _), (completers, others)), suppressed)| ComparisonRow {
            value: value.clone(),
            suppressed,
            completers: (!suppressed).then_some(*completers),
            non_completers: (!suppressed).then_some(*others),
            completers_percent: if suppressed {
                None
            } else {
                percent(*completers, total_completers)
            },
            non_completers_percent: if suppressed {
                None
            } else {
                percent(*others, total_others)
            },
        })
        .collect();

    let (chi_square, df) = chi_square_2xk(&counts);
    Comparison {
        rows: table_rows,
        chi_square: chi_square.map(round4),
        df,
        p_value: chi_square.map(|value| round4(chi_square_upper_tail(value, df))),
    }
}

/// Pearson's chi-square for a k × 2 table (rows: label values; columns:
/// completers, non-completers), over the rows with any chat. `None` when
/// either column or fewer than two rows are empty.
fn chi_square_2xk(counts: &[(u64, u64)]) -> (Option<f64>, u64) {
    let rows: Vec<(f64, f64)> = counts
        .iter()
        .filter(|(a, b)| a + b > 0)
        .map(|(a, b)| (*a as f64, *b as f64))
        .collect();
    let first: f64 = rows.iter().map(|(a, _)| a).sum();
    let second: f64 = rows.iter().map(|(_, b)| b).sum();
    let total = first + second;
    if rows.len() < 2 || first == 0.0 || second == 0.0 {
        return (None, 0);
    }
    let mut statistic = 0.0;
    for (a, b) in &rows {
        let row_total = a + b;
        let expected_a = row_total * first / total;
        let expected_b = row_total * second / total;
        statistic += (a - expected_a).powi(2) / expected_a + (b - expected_b).powi(2) / expected_b;
    }
    (Some(statistic), rows.len() as u64 - 1)
}

/// P(X ≥ x) for a chi-square distribution with `df` degrees of freedom: the
/// regularized upper incomplete gamma function Q(df/2, x/2).
fn chi_square_upper_tail(x: f64, df: u64) -> f64 {
    if df == 0 {
        return f64::NAN;
    }
    upper_regularized_gamma(df as f64 / 2.0, x / 2.0)
}

/// Q(a, x) = Γ(a, x) / Γ(a). Below x = a + 1 from the power series of the
/// lower function P, above it from the Legendre continued fraction (evaluated
/// with the modified Lentz method), both to a relative 1e-14.
fn upper_regularized_gamma(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let log_prefactor = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        let mut term = 1.0 / a;
        let mut sum = term;
        let mut denominator = a;
        for _ in 0..1000 {
            denominator += 1.0;
            term *= x / denominator;
            sum += term;
            if term.abs() < sum.abs() * 1e-14 {
                break;
            }
        }
        (1.0 - sum * log_prefactor.exp()).clamp(0.0, 1.0)
    } else {
        const TINY: f64 = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / TINY;
        let mut d = 1.0 / b;
        let mut fraction = d;
        for n in 1..1000 {
            let an = -(n as f64) * (n as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < TINY {
                d = TINY;
            }
            c = b + an / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            let step = d * c;
            fraction *= step;
            if (step - 1.0).abs() < 1e-14 {
                break;
            }
        }
        (log_prefactor.exp() * fraction).clamp(0.0, 1.0)
    }
}

/// ln Γ(x) for x > 0 by the Lanczos approximation (g = 7, 9 coefficients),
/// accurate to about 15 significant digits.
fn ln_gamma(x: f64) -> f64 {
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = COEFFICIENTS[0];
    for (index, coefficient) in COEFFICIENTS.iter().enumerate().skip(1) {
        sum += coefficient / (x + index as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suppression_hides_small_cells() {
        assert_eq!(suppressed_cells(&[20, 30, 40], 10), [false, false, false]);
        assert_eq!(suppressed_cells(&[], 10), Vec::<bool>::new());
    }

    #[test]
    fn suppression_adds_a_complementary_cell() {
        // One small cell alone could be recomputed from the total, so the
        // next smallest (15) goes too.
        assert_eq!(suppressed_cells(&[3, 40, 15, 30], 10), [true, false, true, false]);
    }

    #[test]
    fn suppression_needs_hidden_total_at_minimum() {
        // 2 + 3 = 5 < 10 hidden in total, so the next smallest (12) goes too.
        assert_eq!(suppressed_cells(&[2, 3, 12, 50], 10), [true, true, true, false]);
        // 4 + 8 = 12 ≥ 10: two hidden cells suffice.
        assert_eq!(suppressed_cells(&[4, 8, 12, 50], 10), [true, true, false, false]);
    }

    #[test]
    fn forced_cell_gets_a_complementary_cell() {
        // The 40-pair cell is forced; alone it would follow from the total,
        // so the smallest visible cell (15) goes too.
        assert_eq!(
            suppressed_cells_with(&[40, 15, 30], &[true, false, false], 10),
            [true, true, false]
        );
        assert_eq!(
            suppressed_cells_with(&[3, 40, 15, 30], &[false, false, true, false], 10),
            [true, false, true, false]
        );
    }

    #[test]
    fn suppression_of_all_cells_stops() {
        assert_eq!(suppressed_cells(&[1, 2], 10), [true, true]);
        assert_eq!(suppressed_cells(&[5], 10), [true]);
        assert_eq!(suppressed_cells(&[0, 25], 10), [true, true]);
    }

    #[test]
    fn odds_ratio_of_study_pairing() {
        // Study: 218 both, 269 parent only, 2116 professional only, 5924 neither.
        let pairing = Pairing {
            both: 218,
            parent_only: 269,
            professional_only: 2116,
            neither: 5924,
        };
        let ratio = odds_ratio(&pairing);
        let expected = 218.0 * 5924.0 / (269.0 * 2116.0);
        assert!((ratio.value.unwrap() - expected).abs() < 1e-4);
        let [lo, hi] = ratio.ci95.unwrap();
        assert!(lo < expected && expected < hi);
        assert!(!ratio.corrected);
    }

    #[test]
    fn odds_ratio_corrects_zero_cells() {
        let pairing = Pairing {
            both: 5,
            parent_only: 0,
            professional_only: 3,
            neither: 10,
        };
        let ratio = odds_ratio(&pairing);
        assert!(ratio.corrected);
        let expected = 5.5 * 10.5 / (0.5 * 3.5);
        assert!((ratio.value.unwrap() - expected).abs() < 1e-3);
        assert_eq!(odds_ratio(&Pairing::default()).value, None);
    }

    #[test]
    fn chi_square_tail_matches_tables() {
        // Upper 5% points of the chi-square distribution.
        assert!((chi_square_upper_tail(3.841459, 1) - 0.05).abs() < 1e-6);
        assert!((chi_square_upper_tail(5.991465, 2) - 0.05).abs() < 1e-6);
        assert!((chi_square_upper_tail(18.307038, 10) - 0.05).abs() < 1e-6);
        assert!((chi_square_upper_tail(0.0, 3) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn chi_square_of_independent_table_is_zero() {
        let (statistic, df) = chi_square_2xk(&[(10, 20), (5, 10), (0, 0)]);
        assert!(statistic.unwrap().abs() < 1e-12);
        assert_eq!(df, 1);
        assert_eq!(chi_square_2xk(&[(10, 0), (5, 0)]).0, None);
    }

    #[test]
    fn stage_rates_list_every_stage() {
        let funnel = Funnel {
            invited: 100,
            opened: 40,
            started: 30,
            complete: 20,
            ..Funnel::default()
        };
        let stages = stage_rates(&funnel);
        assert_eq!(stages.len(), 17);
        assert_eq!(stages[0].stage, "opened");
        assert_eq!(stages[0].rate.percent, Some(40.0));
        assert_eq!(stages[13].stage, "complete");
        assert_eq!(stages[13].rate.count, 20);
    }
}
