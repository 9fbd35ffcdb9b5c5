//! Agreement between a parent's and a professional's ratings of the same units.
//!
//! Every unit is rated on a three-point scale stored as a score: 0 = insufficient,
//! 1 = sufficient, 2 = good. A [`Table3`] cross-tabulates the pairs (rows = parent,
//! columns = professional) and computes the agreement coefficients from it.
//! [`bootstrap`] resamples whole chats to give percentile intervals.
//!
//! Coefficients that are undefined for a table (no units, or a chance agreement of 1)
//! are returned as `None`, so no public function returns NaN or an infinity.
//!
//! Sources for the formulas:
//! - Cohen's (weighted) kappa, Gwet's AC1/AC2 and their standard errors follow the R
//!   package irrCAC 1.0 (K. L. Gwet, 2019), functions `kappa2.table` and `gwet.ac1.table`.
//! - Krippendorff's alpha is computed from the coincidence matrix of the two raters'
//!   values with Krippendorff's nominal and ordinal difference functions.
//! - The unit tests check all of these against irrCAC's published results for its
//!   `cont3x3abstractors` table.

use std::error::Error;
use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign};

/// Number of rating categories (scores 0, 1 and 2).
pub const CATEGORIES: usize = 3;

/// Number of bootstrap resamples that reports use unless they have a reason to change it.
pub const DEFAULT_RESAMPLES: usize = 2000;

/// Agreement weight matrix: 1 on the diagonal, lower for pairs further apart.
type Weights = [[f64; CATEGORIES]; CATEGORIES];

/// Unweighted analysis: only identical scores count as agreement.
const IDENTITY_WEIGHTS: Weights = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

/// Linear weights `1 - |k - l| / (q - 1)`.
const LINEAR_WEIGHTS: Weights = [[1.0, 0.5, 0.0], [0.5, 1.0, 0.5], [0.0, 0.5, 1.0]];

/// Quadratic weights `1 - (k - l)^2 / (q - 1)^2`.
const QUADRATIC_WEIGHTS: Weights = [[1.0, 0.75, 0.0], [0.75, 1.0, 0.75], [0.0, 0.75, 1.0]];

/// Error for a score pair in which at least one score is not 0, 1 or 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScoreOutOfRange {
    /// Parent's score as passed in.
    pub parent: u8,
    /// Professional's score as passed in.
    pub professional: u8,
}

impl fmt::Display for ScoreOutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid score pair (parent {}, professional {}): scores must be 0, 1 or 2",
            self.parent, self.professional
        )
    }
}

impl Error for ScoreOutOfRange {}

/// 3×3 contingency table of score pairs: `counts[parent][professional]` units.
///
/// All three categories are always present, also when a category is unused, so
/// coefficients such as AC1 count q = 3 categories whatever the data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Table3 {
    /// Unit counts. The row index is the parent's score and the column index the professional's.
    pub counts: [[u64; CATEGORIES]; CATEGORIES],
}

/// Cell and margin proportions of a non-empty table.
struct Proportions {
    n: f64,
    cells: [[f64; CATEGORIES]; CATEGORIES],
    parent: [f64; CATEGORIES],
    professional: [f64; CATEGORIES],
}

/// Observed and chance agreement under one weight matrix, with the resulting coefficient.
struct WeightedAgreement {
    observed: f64,
    chance: f64,
    coefficient: f64,
}

impl Table3 {
    /// Creates a table from unit counts indexed `[parent][professional]`.
    pub const fn new(counts: [[u64; CATEGORIES]; CATEGORIES]) -> Self {
        Self { counts }
    }

    /// Builds a table from `(parent, professional)` score pairs.
    ///
    /// Returns the first pair with a score above 2 as an error.
    pub fn from_pairs<I>(pairs: I) -> Result<Self, ScoreOutOfRange>
    where
        I: IntoIterator<Item = (u8, u8)>,
    {
        let mut table = Self::default();
        for (parent, professional) in pairs {
            table.record(parent, professional)?;
        }
        Ok(table)
    }

    /// Adds one unit rated `parent` by the parent and `professional` by the professional.
    ///
    /// Leaves the table unchanged and returns an error if either score is above 2.
    pub fn record(&mut self, parent: u8, professional: u8) -> Result<(), ScoreOutOfRange> {
        let (row, column) = (usize::from(parent), usize::from(professional));
        if row >= CATEGORIES || column >= CATEGORIES {
            return Err(ScoreOutOfRange { parent, professional });
        }
        self.counts[row][column] += 1;
        Ok(())
    }

    /// Returns the number of units n.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// Returns the number of units on which both raters gave the same score.
    pub fn agreements(&self) -> u64 {
        (0..CATEGORIES).map(|k| self.counts[k][k]).sum()
    }

    /// Returns the parent's score distribution (row sums).
    pub fn parent_margins(&self) -> [u64; CATEGORIES] {
        self.counts.map(|row| row.iter().sum())
    }

    /// Returns the professional's score distribution (column sums).
    pub fn professional_margins(&self) -> [u64; CATEGORIES] {
        std::array::from_fn(|l| self.counts.iter().map(|row| row[l]).sum())
    }

    /// Returns the table with the raters' roles swapped (rows and columns exchanged).
    pub fn transposed(&self) -> Self {
        Self::new(std::array::from_fn(|k| std::array::from_fn(|l| self.counts[l][k])))
    }
}

/// Agreement coefficients. Kappa and AC1/AC2 follow irrCAC's formulas for a contingency
/// table, and all of them treat the three scores as the full category set.
impl Table3 {
    /// Computes percent agreement on a 0–100 scale: the share of units with identical
    /// scores.
    ///
    /// `None` when the table is empty.
    pub fn percent(&self) -> Option<f64> {
        let n = self.total();
        if n == 0 {
            return None;
        }
        Some(100.0 * self.agreements() as f64 / n as f64)
    }

    /// Computes Cohen's chance agreement `Σ_k p_k. p_.k` from the two margins, on a 0–100
    /// scale.
    ///
    /// `None` when the table is empty.
    pub fn chance(&self) -> Option<f64> {
        let p = self.proportions()?;
        let chance: f64 = (0..CATEGORIES).map(|k| p.parent[k] * p.professional[k]).sum();
        Some(100.0 * chance)
    }

    /// Computes Cohen's unweighted kappa.
    ///
    /// `None` when the table is empty or every unit lies in one diagonal cell, because
    /// the chance agreement is then 1 and kappa is 0/0.
    pub fn kappa(&self) -> Option<f64> {
        Some(self.cohen(&IDENTITY_WEIGHTS)?.coefficient)
    }

    /// Computes Cohen's weighted kappa with linear weights `1 - |k - l| / 2`.
    ///
    /// `None` under the same conditions as [`Table3::kappa`].
    pub fn kappa_linear(&self) -> Option<f64> {
        Some(self.cohen(&LINEAR_WEIGHTS)?.coefficient)
    }

    /// Computes Cohen's weighted kappa with quadratic weights `1 - (k - l)^2 / 4`.
    ///
    /// `None` under the same conditions as [`Table3::kappa`].
    pub fn kappa_quadratic(&self) -> Option<f64> {
        Some(self.cohen(&QUADRATIC_WEIGHTS)?.coefficient)
    }

    /// Computes the maximum unweighted kappa attainable with this table's margins:
    /// `(p_max - p_e) / (1 - p_e)` with `p_max = Σ_k min(p_k., p_.k)`.
    ///
    /// `None` under the same conditions as [`Table3::kappa`].
    pub fn kappa_max(&self) -> Option<f64> {
        let chance = self.cohen(&IDENTITY_WEIGHTS)?.chance;
        let p = self.proportions()?;
        let max_observed: f64 = (0..CATEGORIES).map(|k| p.parent[k].min(p.professional[k])).sum();
        Some((max_observed - chance) / (1.0 - chance))
    }

    /// Computes the analytic standard error of Cohen's unweighted kappa with the formula
    /// of irrCAC's `kappa2.table` (infinite population, no finite population correction).
    ///
    /// `None` under the same conditions as [`Table3::kappa`]. Where rounding makes the
    /// variance negative this returns 0, while irrCAC floors the variance at 1e-100.
    pub fn kappa_se(&self) -> Option<f64> {
        let agreement = self.cohen(&IDENTITY_WEIGHTS)?;
        let p = self.proportions()?;
        let w = &IDENTITY_WEIGHTS;
        let kappa = agreement.coefficient;

        // Weighted margins: w̄_k. = Σ_j w_kj p_.j and w̄_.l = Σ_j w_jl p_j.
        let row_weighted: [f64; CATEGORIES] =
            std::array::from_fn(|k| (0..CATEGORIES).map(|j| w[k][j] * p.professional[j]).sum());
        let column_weighted: [f64; CATEGORIES] =
            std::array::from_fn(|l| (0..CATEGORIES).map(|j| w[j][l] * p.parent[j]).sum());

        let mut sum = 0.0;
        for (k, l) in cell_indices() {
            let deviation = w[k][l] - (1.0 - kappa) * (row_weighted[k] + column_weighted[l]);
            sum += p.cells[k][l] * deviation * deviation;
        }

        let centre = agreement.observed - 2.0 * (1.0 - kappa) * agreement.chance;
        let variance = (sum - centre * centre) / (p.n * (1.0 - agreement.chance) * (1.0 - agreement.chance));
        Some(variance.max(0.0).sqrt())
    }

    /// Computes Gwet's AC1 (unweighted, q = 3 categories).
    ///
    /// `None` only for an empty table, because with q = 3 the chance agreement of AC1
    /// is at most 1/3.
    pub fn ac1(&self) -> Option<f64> {
        Some(self.gwet(&IDENTITY_WEIGHTS)?.coefficient)
    }

    /// Computes Gwet's AC2 with quadratic weights `1 - (k - l)^2 / 4`.
    ///
    /// `None` only for an empty table, because with these weights its chance agreement
    /// is at most 2/3.
    pub fn ac2_quadratic(&self) -> Option<f64> {
        Some(self.gwet(&QUADRATIC_WEIGHTS)?.coefficient)
    }

    /// Computes the analytic standard error of Gwet's AC1 with the formula of irrCAC's
    /// `gwet.ac1.table` (infinite population, no finite population correction).
    ///
    /// `None` for an empty table. Where rounding makes the variance negative this returns 0,
    /// while irrCAC floors the variance at 1e-100.
    pub fn ac1_se(&self) -> Option<f64> {
        let agreement = self.gwet(&IDENTITY_WEIGHTS)?;
        let p = self.proportions()?;
        let w = &IDENTITY_WEIGHTS;
        let ac1 = agreement.coefficient;
        let weight_total: f64 = w.iter().flatten().sum();
        let q = CATEGORIES as f64;
        let pooled = pooled_margins(&p);

        let mut sum = 0.0;
        for (k, l) in cell_indices() {
            let chance_term = weight_total * (1.0 - (pooled[k] + pooled[l]) / 2.0) / (q * (q - 1.0));
            let deviation = w[k][l] - 2.0 * (1.0 - ac1) * chance_term;
            sum += p.cells[k][l] * deviation * deviation;
        }

        let centre = agreement.observed - 2.0 * (1.0 - ac1) * agreement.chance;
        let variance = (sum - centre * centre) / (p.n * (1.0 - agreement.chance) * (1.0 - agreement.chance));
        Some(variance.max(0.0).sqrt())
    }

    /// Computes Krippendorff's alpha with the nominal metric (two coders, no missing
    /// values).
    ///
    /// `None` when the table is empty or both raters used one and the same score for
    /// every unit, because the expected disagreement is then 0.
    pub fn alpha_nominal(&self) -> Option<f64> {
        let metric: [[f64; CATEGORIES]; CATEGORIES] =
            std::array::from_fn(|c| std::array::from_fn(|k| if c == k { 0.0 } else { 1.0 }));
        self.krippendorff(&metric)
    }

    /// Computes Krippendorff's alpha with the ordinal metric (two coders, no missing
    /// values).
    ///
    /// The squared ordinal difference between scores c ≤ k is
    /// `(Σ_{g=c..=k} n_g - (n_c + n_k) / 2)^2`, where n_g are the margins of the
    /// coincidence matrix, so it depends on how often each score was used. `None` under
    /// the same conditions as [`Table3::alpha_nominal`].
    pub fn alpha_ordinal(&self) -> Option<f64> {
        let values = self.coincidence_margins();
        let metric: [[f64; CATEGORIES]; CATEGORIES] = std::array::from_fn(|c| {
            std::array::from_fn(|k| {
                let (low, high) = (c.min(k), c.max(k));
                let between: u64 = values[low..=high].iter().sum();
                let distance = between as f64 - (values[c] + values[k]) as f64 / 2.0;
                distance * distance
            })
        });
        self.krippendorff(&metric)
    }

    /// Computes the mean of parent score minus professional score, in score points
    /// (−2 to 2).
    ///
    /// Positive when the parent rates higher than the professional. `None` when the
    /// table is empty.
    pub fn mean_difference(&self) -> Option<f64> {
        let n = self.total();
        if n == 0 {
            return None;
        }
        let mut difference: i128 = 0;
        for (k, row) in self.counts.iter().enumerate() {
            for (l, &count) in row.iter().enumerate() {
                difference += (k as i128 - l as i128) * i128::from(count);
            }
        }
        Some(difference as f64 / n as f64)
    }

    /// Computes every coefficient of this module for the table.
    pub fn coefficients(&self) -> Coefficients {
        Coefficients {
            n: self.total(),
            percent: self.percent(),
            chance: self.chance(),
            kappa: self.kappa(),
            kappa_se: self.kappa_se(),
            kappa_linear: self.kappa_linear(),
            kappa_quadratic: self.kappa_quadratic(),
            kappa_max: self.kappa_max(),
            ac1: self.ac1(),
            ac1_se: self.ac1_se(),
            ac2_quadratic: self.ac2_quadratic(),
            alpha_nominal: self.alpha_nominal(),
            alpha_ordinal: self.alpha_ordinal(),
            mean_difference: self.mean_difference(),
        }
    }
}

/// Shared steps of the coefficients.
impl Table3 {
    fn proportions(&self) -> Option<Proportions> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let n = total as f64;
        Some(Proportions {
            n,
            cells: self.counts.map(|row| row.map(|count| count as f64 / n)),
            parent: self.parent_margins().map(|count| count as f64 / n),
            professional: self.professional_margins().map(|count| count as f64 / n),
        })
    }

    /// Reports whether kappa, the weighted kappas and both alphas are undefined (0/0):
    /// true for an empty table and for a table whose units all lie in one diagonal cell.
    ///
    /// This integer test is exact, where comparing a floating-point chance agreement
    /// with 1 is not. For the identity, linear and quadratic weights every off-diagonal
    /// weight is below 1, so the weighted chance agreement is 1 only in this case.
    fn is_degenerate(&self) -> bool {
        let n = self.total();
        n == 0 || (0..CATEGORIES).any(|k| self.counts[k][k] == n)
    }

    /// Computes Cohen's (weighted) kappa with chance agreement `Σ w_kl p_k. p_.l`.
    fn cohen(&self, w: &Weights) -> Option<WeightedAgreement> {
        if self.is_degenerate() {
            return None;
        }
        let p = self.proportions()?;

        let mut observed = 0.0;
        let mut chance = 0.0;
        for (k, l) in cell_indices() {
            observed += w[k][l] * p.cells[k][l];
            chance += w[k][l] * p.parent[k] * p.professional[l];
        }

        Some(WeightedAgreement {
            observed,
            chance,
            coefficient: (observed - chance) / (1.0 - chance),
        })
    }

    /// Computes Gwet's AC1 (identity weights) or AC2 (other weights) with chance
    /// agreement `T_w / (q (q - 1)) · Σ_k π_k (1 - π_k)`, where π_k averages both margins.
    fn gwet(&self, w: &Weights) -> Option<WeightedAgreement> {
        let p = self.proportions()?;
        let q = CATEGORIES as f64;
        let weight_total: f64 = w.iter().flatten().sum();
        let pooled = pooled_margins(&p);

        let mut observed = 0.0;
        for (k, l) in cell_indices() {
            observed += w[k][l] * p.cells[k][l];
        }
        let spread: f64 = pooled.iter().map(|pi| pi * (1.0 - pi)).sum();
        let chance = weight_total * spread / (q * (q - 1.0));

        Some(WeightedAgreement {
            observed,
            chance,
            coefficient: (observed - chance) / (1.0 - chance),
        })
    }

    /// Returns the margins n_c of the coincidence matrix: how often score c was given
    /// by either rater (so they sum to 2n).
    fn coincidence_margins(&self) -> [u64; CATEGORIES] {
        let parent = self.parent_margins();
        let professional = self.professional_margins();
        std::array::from_fn(|c| parent[c] + professional[c])
    }

    /// Computes `alpha = 1 - D_o / D_e = 1 - (N - 1) Σ o_ck δ_ck / Σ n_c n_k δ_ck`, where
    /// o is the coincidence matrix (each unit contributes both ordered pairs of its two
    /// values) and N = 2n is the number of pairable values.
    fn krippendorff(&self, metric: &[[f64; CATEGORIES]; CATEGORIES]) -> Option<f64> {
        if self.is_degenerate() {
            return None;
        }
        let values = self.coincidence_margins();
        let pairable = (2 * self.total()) as f64;

        let mut observed = 0.0;
        let mut expected = 0.0;
        for (c, k) in cell_indices() {
            let coincidences = (self.counts[c][k] + self.counts[k][c]) as f64;
            observed += coincidences * metric[c][k];
            expected += values[c] as f64 * values[k] as f64 * metric[c][k];
        }

        Some(1.0 - (pairable - 1.0) * observed / expected)
    }
}

/// Returns every `(row, column)` index pair of a 3×3 table in row-major order.
fn cell_indices() -> impl Iterator<Item = (usize, usize)> {
    (0..CATEGORIES).flat_map(|row| (0..CATEGORIES).map(move |column| (row, column)))
}

/// Returns π_k = (p_k. + p_.k) / 2, the share of all ratings that are score k.
fn pooled_margins(p: &Proportions) -> [f64; CATEGORIES] {
    std::array::from_fn(|k| (p.parent[k] + p.professional[k]) / 2.0)
}

impl AddAssign<&Table3> for Table3 {
    fn add_assign(&mut self, other: &Table3) {
        for (row, other_row) in self.counts.iter_mut().zip(&other.counts) {
            for (count, other_count) in row.iter_mut().zip(other_row) {
                *count += other_count;
            }
        }
    }
}

impl AddAssign for Table3 {
    fn add_assign(&mut self, other: Table3) {
        *self += &other;
    }
}

impl Add for Table3 {
    type Output = Table3;

    fn add(mut self, other: Table3) -> Table3 {
        self += &other;
        self
    }
}

impl<'a> Sum<&'a Table3> for Table3 {
    fn sum<I: Iterator<Item = &'a Table3>>(tables: I) -> Table3 {
        let mut total = Table3::default();
        for table in tables {
            total += table;
        }
        total
    }
}

impl Sum for Table3 {
    fn sum<I: Iterator<Item = Table3>>(tables: I) -> Table3 {
        let mut total = Table3::default();
        for table in tables {
            total += &table;
        }
        total
    }
}

/// All coefficients of one table, as plain fields for a report.
///
/// Each `Option` is `None` where the coefficient's method on [`Table3`] documents it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coefficients {
    /// Number of units (score pairs) in the table.
    pub n: u64,
    /// Percent agreement, 0–100.
    pub percent: Option<f64>,
    /// Cohen's chance agreement from the margins, 0–100.
    pub chance: Option<f64>,
    /// Cohen's unweighted kappa.
    pub kappa: Option<f64>,
    /// Analytic standard error of `kappa` (irrCAC `kappa2.table`).
    pub kappa_se: Option<f64>,
    /// Cohen's kappa with linear weights.
    pub kappa_linear: Option<f64>,
    /// Cohen's kappa with quadratic weights.
    pub kappa_quadratic: Option<f64>,
    /// Maximum unweighted kappa attainable with the observed margins.
    pub kappa_max: Option<f64>,
    /// Gwet's AC1.
    pub ac1: Option<f64>,
    /// Analytic standard error of `ac1` (irrCAC `gwet.ac1.table`).
    pub ac1_se: Option<f64>,
    /// Gwet's AC2 with quadratic weights.
    pub ac2_quadratic: Option<f64>,
    /// Krippendorff's alpha, nominal metric.
    pub alpha_nominal: Option<f64>,
    /// Krippendorff's alpha, ordinal metric.
    pub alpha_ordinal: Option<f64>,
    /// Mean of parent minus professional score, in score points.
    pub mean_difference: Option<f64>,
}

/// Computes the Wilson score 95% interval for a binomial proportion, without
/// continuity correction, with z = 1.959964.
///
/// Returns `(lower, upper)` as proportions in [0, 1]. `None` when `n` is 0 or
/// `successes` exceeds `n`.
pub fn wilson(successes: u64, n: u64) -> Option<(f64, f64)> {
    const Z: f64 = 1.959964;
    if n == 0 || successes > n {
        return None;
    }
    let trials = n as f64;
    let proportion = successes as f64 / trials;
    let z_squared = Z * Z;

    let denominator = 1.0 + z_squared / trials;
    let centre = (proportion + z_squared / (2.0 * trials)) / denominator;
    let half_width =
        Z / denominator * (proportion * (1.0 - proportion) / trials + z_squared / (4.0 * trials * trials)).sqrt();

    // At 0 or n successes the bound is exactly 0 or 1, but the subtraction can round
    // to a few ulps on either side, so set it directly.
    let lower = if successes == 0 {
        0.0
    } else {
        (centre - half_width).max(0.0)
    };
    let upper = if successes == n {
        1.0
    } else {
        (centre + half_width).min(1.0)
    };
    Some((lower, upper))
}

/// Percentile bootstrap 95% intervals for every coefficient that [`bootstrap`] resamples.
///
/// An interval is `(lower, upper)` in the unit of the coefficient (0–100 for `percent`
/// and `chance`, score points for `mean_difference`). It is `None` when no resample
/// had the coefficient defined.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BootstrapIntervals {
    /// Number of resamples drawn.
    pub resamples: usize,
    /// Seed of the pseudo-random generator.
    pub seed: u64,
    /// Resamples without any unit, for which no coefficient is defined.
    pub empty_resamples: usize,
    /// Non-empty resamples whose units all lie in one diagonal cell, for which kappa,
    /// the weighted kappas, kappa max and both alphas are undefined. Their intervals
    /// come from the remaining resamples only.
    pub degenerate_resamples: usize,
    /// Interval for percent agreement, 0–100.
    pub percent: Option<(f64, f64)>,
    /// Interval for chance agreement, 0–100.
    pub chance: Option<(f64, f64)>,
    /// Interval for Cohen's unweighted kappa.
    pub kappa: Option<(f64, f64)>,
    /// Interval for linearly weighted kappa.
    pub kappa_linear: Option<(f64, f64)>,
    /// Interval for quadratically weighted kappa.
    pub kappa_quadratic: Option<(f64, f64)>,
    /// Interval for the maximum kappa given the margins.
    pub kappa_max: Option<(f64, f64)>,
    /// Interval for Gwet's AC1.
    pub ac1: Option<(f64, f64)>,
    /// Interval for Gwet's AC2 with quadratic weights.
    pub ac2_quadratic: Option<(f64, f64)>,
    /// Interval for Krippendorff's alpha, nominal metric.
    pub alpha_nominal: Option<(f64, f64)>,
    /// Interval for Krippendorff's alpha, ordinal metric.
    pub alpha_ordinal: Option<(f64, f64)>,
    /// Interval for the mean of parent minus professional score.
    pub mean_difference: Option<(f64, f64)>,
}

/// Number of coefficients that [`bootstrap`] resamples.
const RESAMPLED_COEFFICIENTS: usize = 11;

/// Returns the resampled coefficients in the field order of [`BootstrapIntervals`].
fn resampled_values(table: &Table3) -> [Option<f64>; RESAMPLED_COEFFICIENTS] {
    [
        table.percent(),
        table.chance(),
        table.kappa(),
        table.kappa_linear(),
        table.kappa_quadratic(),
        table.kappa_max(),
        table.ac1(),
        table.ac2_quadratic(),
        table.alpha_nominal(),
        table.alpha_ordinal(),
        table.mean_difference(),
    ]
}

/// Computes percentile bootstrap 95% intervals by resampling chats with replacement.
///
/// `chats` contains one table per chat: for a per-item analysis a table with that item's
/// single score pair (or none, if the chat lacks it), and for a pooled analysis the
/// table of all the chat's item pairs. Each resample draws `chats.len()` chats, sums
/// their tables and computes the coefficients, so units of one chat stay together.
///
/// The bounds are the 2.5th and 97.5th percentiles of the resampled values with
/// linear interpolation between order statistics (R's `quantile` type 7: position
/// `h = (m - 1) p` in the m sorted values). Resamples where a coefficient is undefined
/// are left out of that coefficient's percentiles and counted in `empty_resamples` or
/// `degenerate_resamples`.
///
/// The result depends only on `chats`, `resamples` and `seed`: the generator is
/// xoshiro256** seeded through SplitMix64, and the coefficients use only IEEE 754 basic
/// operations and `sqrt`, which Rust rounds the same way on every platform. Changing
/// the order of the draws changes the intervals for a given seed. With no chats or
/// zero resamples every interval is `None`.
pub fn bootstrap(chats: &[Table3], resamples: usize, seed: u64) -> BootstrapIntervals {
    let mut rng = Xoshiro256StarStar::from_seed(seed);
    let mut samples: [Vec<f64>; RESAMPLED_COEFFICIENTS] = std::array::from_fn(|_| Vec::with_capacity(resamples));
    let mut empty_resamples = 0;
    let mut degenerate_resamples = 0;

    if !chats.is_empty() {
        let chat_count = chats.len() as u64;
        for _ in 0..resamples {
            let mut table = Table3::default();
            for _ in 0..chats.len() {
                table += &chats[rng.below(chat_count) as usize];
            }

            if table.total() == 0 {
                empty_resamples += 1;
            } else if table.is_degenerate() {
                degenerate_resamples += 1;
            }

            // NOTE: skipping undefined values conditions the percentiles on the resample
            // being non-degenerate, so with many degenerate resamples the interval misstates
            // the uncertainty.
            for (sample, value) in samples.iter_mut().zip(resampled_values(&table)) {
                if let Some(value) = value {
                    sample.push(value);
                }
            }
        }
    }

    let [
        percent,
        chance,
        kappa,
        kappa_linear,
        kappa_quadratic,
        kappa_max,
        ac1,
        ac2_quadratic,
        alpha_nominal,
        alpha_ordinal,
        mean_difference,
    ] = samples.map(|mut sample| {
        sample.sort_by(f64::total_cmp);
        Some((percentile(&sample, 0.025)?, percentile(&sample, 0.975)?))
    });

    BootstrapIntervals {
        resamples: if chats.is_empty() { 0 } else { resamples },
        seed,
        empty_resamples,
        degenerate_resamples,
        percent,
        chance,
        kappa,
        kappa_linear,
        kappa_quadratic,
        kappa_max,
        ac1,
        ac2_quadratic,
        alpha_nominal,
        alpha_ordinal,
        mean_difference,
    }
}

/// Returns the `probability` quantile of ascending `sorted` values by linear
/// interpolation (R type 7), or `None` for no values.
fn percentile(sorted: &[f64], probability: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let position = last as f64 * probability;
    let below = position.floor() as usize;
    let above = (below + 1).min(last);
    let fraction = position - below as f64;
    Some(sorted[below] + fraction * (sorted[above] - sorted[below]))
}

/// xoshiro256** pseudo-random generator, seeded by expanding a u64 with SplitMix64.
///
/// Kept in this file so that bootstrap results for a seed do not change with a
/// dependency's version.
struct Xoshiro256StarStar {
    state: [u64; 4],
}

impl Xoshiro256StarStar {
    fn from_seed(seed: u64) -> Self {
        let mut splitmix = seed;
        Self {
            state: std::array::from_fn(|_| splitmix64(&mut splitmix)),
        }
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;

        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);

        result
    }

    /// Returns a uniform integer in `0..bound` without modulo bias (Lemire's
    /// multiply-and-reject method). `bound` must be positive.
    fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0, "bound must be positive");
        let mut product = u128::from(self.next_u64()) * u128::from(bound);
        let mut low = product as u64;
        if low < bound {
            // Reject the 2^64 mod bound lowest values, which would otherwise be overrepresented.
            let threshold = bound.wrapping_neg() % bound;
            while low < threshold {
                product = u128::from(self.next_u64()) * u128::from(bound);
                low = product as u64;
            }
        }
        (product >> 64) as u64
    }
}

/// Advances a SplitMix64 state and returns the next output.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// irrCAC's `cont3x3abstractors` data set (n = 100).
    const ABSTRACTORS: Table3 = Table3::new([[13, 0, 0], [0, 20, 7], [0, 4, 56]]);

    /// Category table with an unused score 0 (n = 218).
    const UNUSED_CATEGORY: Table3 = Table3::new([[0, 0, 0], [0, 20, 18], [0, 65, 115]]);

    const SIX_DECIMALS: f64 = 5e-7;

    fn assert_close(actual: Option<f64>, expected: f64, tolerance: f64) {
        let actual = actual.expect("coefficient should be defined");
        assert!(
            (actual - expected).abs() < tolerance,
            "expected {expected}, got {actual} (tolerance {tolerance})"
        );
    }

    fn round3(value: Option<f64>) -> f64 {
        (value.expect("coefficient should be defined") * 1000.0).round() / 1000.0
    }

    /// Draws a table with `n` units and random cell weights, so that some tables are
    /// sparse or concentrated.
    fn random_table(rng: &mut Xoshiro256StarStar, n: u64) -> Table3 {
        let weights: [u64; 9] = std::array::from_fn(|_| rng.below(4) * rng.below(10));
        let total: u64 = weights.iter().sum::<u64>().max(1);
        let mut table = Table3::default();
        for _ in 0..n {
            let mut pick = rng.below(total);
            let mut cell = 0;
            while cell < 8 && pick >= weights[cell] {
                pick -= weights[cell];
                cell += 1;
            }
            table.counts[cell / 3][cell % 3] += 1;
        }
        table
    }

    fn random_chats(rng: &mut Xoshiro256StarStar, chats: usize, items: usize) -> Vec<Table3> {
        (0..chats)
            .map(|_| {
                let pairs: Vec<(u8, u8)> = (0..items).map(|_| (rng.below(3) as u8, rng.below(3) as u8)).collect();
                Table3::from_pairs(pairs).expect("generated scores are 0..=2")
            })
            .collect()
    }

    #[test]
    fn abstractors_percent_agreement() {
        assert_close(ABSTRACTORS.percent(), 89.0, 100.0 * SIX_DECIMALS);
    }

    #[test]
    fn abstractors_cohen_kappa() {
        assert_close(ABSTRACTORS.kappa(), 0.7964094, SIX_DECIMALS);
    }

    #[test]
    fn abstractors_kappa_standard_error() {
        assert_close(ABSTRACTORS.kappa_se(), 0.05891072, SIX_DECIMALS);
    }

    #[test]
    fn abstractors_gwet_ac1() {
        assert_close(ABSTRACTORS.ac1(), 0.8493305, SIX_DECIMALS);
    }

    #[test]
    fn abstractors_ac1_standard_error() {
        assert_close(ABSTRACTORS.ac1_se(), 0.04321747, SIX_DECIMALS);
    }

    #[test]
    fn abstractors_alpha_nominal() {
        assert_close(ABSTRACTORS.alpha_nominal(), 0.7972585, SIX_DECIMALS);
    }

    #[test]
    fn abstractors_linear_kappa() {
        assert_close(ABSTRACTORS.kappa_linear(), 0.8429020, SIX_DECIMALS);
    }

    #[test]
    fn abstractors_quadratic_kappa() {
        assert_close(ABSTRACTORS.kappa_quadratic(), 0.8921569, SIX_DECIMALS);
    }

    #[test]
    fn abstractors_quadratic_ac2() {
        assert_close(ABSTRACTORS.ac2_quadratic(), 0.9402369, SIX_DECIMALS);
    }

    #[test]
    fn abstractors_alpha_ordinal() {
        assert_close(ABSTRACTORS.alpha_ordinal(), 0.8340077, SIX_DECIMALS);
    }

    #[test]
    fn abstractors_chance_agreement() {
        // Margins: parent 13, 27, 60 and professional 13, 24, 63.
        let expected = 100.0 * (13.0 * 13.0 + 27.0 * 24.0 + 60.0 * 63.0) / 10_000.0;
        assert_close(ABSTRACTORS.chance(), expected, 1e-12);
    }

    #[test]
    fn abstractors_kappa_max() {
        // p_max = (13 + 24 + 60) / 100 and p_e = 0.4597.
        assert_close(ABSTRACTORS.kappa_max(), 5103.0 / 5403.0, 1e-12);
    }

    #[test]
    fn abstractors_mean_difference() {
        // 7 units where the parent scored 1 and the professional 2, 4 the other way round.
        assert_close(ABSTRACTORS.mean_difference(), -0.03, 1e-12);
    }

    #[test]
    fn unused_category_kappa() {
        assert_eq!(round3(UNUSED_CATEGORY.kappa()), 0.111);
    }

    #[test]
    fn unused_category_ac1() {
        assert_eq!(round3(UNUSED_CATEGORY.ac1()), 0.523);
    }

    #[test]
    fn coefficients_match_methods() {
        let coefficients = ABSTRACTORS.coefficients();
        assert_eq!(coefficients.n, 100);
        assert_eq!(coefficients.percent, ABSTRACTORS.percent());
        assert_eq!(coefficients.chance, ABSTRACTORS.chance());
        assert_eq!(coefficients.kappa, ABSTRACTORS.kappa());
        assert_eq!(coefficients.kappa_se, ABSTRACTORS.kappa_se());
        assert_eq!(coefficients.kappa_linear, ABSTRACTORS.kappa_linear());
        assert_eq!(coefficients.kappa_quadratic, ABSTRACTORS.kappa_quadratic());
        assert_eq!(coefficients.kappa_max, ABSTRACTORS.kappa_max());
        assert_eq!(coefficients.ac1, ABSTRACTORS.ac1());
        assert_eq!(coefficients.ac1_se, ABSTRACTORS.ac1_se());
        assert_eq!(coefficients.ac2_quadratic, ABSTRACTORS.ac2_quadratic());
        assert_eq!(coefficients.alpha_nominal, ABSTRACTORS.alpha_nominal());
        assert_eq!(coefficients.alpha_ordinal, ABSTRACTORS.alpha_ordinal());
        assert_eq!(coefficients.mean_difference, ABSTRACTORS.mean_difference());
    }

    #[test]
    fn from_pairs_counts_cells() {
        let table = Table3::from_pairs([(0, 0), (1, 2), (1, 2), (2, 1)]).unwrap();
        assert_eq!(table.counts, [[1, 0, 0], [0, 0, 2], [0, 1, 0]]);
        assert_eq!(table.total(), 4);
        assert_eq!(table.agreements(), 1);
        assert_eq!(table.parent_margins(), [1, 2, 1]);
        assert_eq!(table.professional_margins(), [1, 1, 2]);
    }

    #[test]
    fn from_pairs_rejects_score_three() {
        let error = Table3::from_pairs([(0, 0), (1, 3)]).unwrap_err();
        assert_eq!(
            error,
            ScoreOutOfRange {
                parent: 1,
                professional: 3
            }
        );
        assert!(error.to_string().contains("professional 3"));
    }

    #[test]
    fn record_leaves_table_unchanged_on_error() {
        let mut table = ABSTRACTORS;
        assert!(table.record(3, 0).is_err());
        assert_eq!(table, ABSTRACTORS);
    }

    #[test]
    fn chat_tables_sum_to_pooled_table() {
        let chats = [vec![(0, 0), (1, 2), (2, 2)], vec![(2, 1)], vec![], vec![(1, 1), (0, 2)]];
        let per_chat: Vec<Table3> = chats
            .iter()
            .map(|pairs| Table3::from_pairs(pairs.iter().copied()).unwrap())
            .collect();
        let pooled = Table3::from_pairs(chats.iter().flatten().copied()).unwrap();
        assert_eq!(per_chat.iter().sum::<Table3>(), pooled);
        assert_eq!(per_chat.into_iter().sum::<Table3>(), pooled);
    }

    #[test]
    fn empty_table_has_no_coefficients() {
        let coefficients = Table3::default().coefficients();
        assert_eq!(coefficients.n, 0);
        assert_eq!(coefficients.percent, None);
        assert_eq!(coefficients.chance, None);
        assert_eq!(coefficients.kappa, None);
        assert_eq!(coefficients.kappa_se, None);
        assert_eq!(coefficients.kappa_linear, None);
        assert_eq!(coefficients.kappa_quadratic, None);
        assert_eq!(coefficients.kappa_max, None);
        assert_eq!(coefficients.ac1, None);
        assert_eq!(coefficients.ac1_se, None);
        assert_eq!(coefficients.ac2_quadratic, None);
        assert_eq!(coefficients.alpha_nominal, None);
        assert_eq!(coefficients.alpha_ordinal, None);
        assert_eq!(coefficients.mean_difference, None);
    }

    #[test]
    fn single_diagonal_cell_leaves_kappa_undefined() {
        let table = Table3::new([[0, 0, 0], [0, 0, 0], [0, 0, 40]]);
        assert_eq!(table.percent(), Some(100.0));
        assert_eq!(table.chance(), Some(100.0));
        assert_eq!(table.kappa(), None);
        assert_eq!(table.kappa_se(), None);
        assert_eq!(table.kappa_linear(), None);
        assert_eq!(table.kappa_quadratic(), None);
        assert_eq!(table.kappa_max(), None);
        assert_eq!(table.alpha_nominal(), None);
        assert_eq!(table.alpha_ordinal(), None);
        assert_eq!(table.ac1(), Some(1.0));
        assert_eq!(table.ac2_quadratic(), Some(1.0));
        assert_eq!(table.mean_difference(), Some(0.0));
    }

    #[test]
    fn single_off_diagonal_cell_is_defined() {
        // Every unit scored 0 by the parent and 2 by the professional.
        let table = Table3::new([[0, 0, 5], [0, 0, 0], [0, 0, 0]]);
        assert_eq!(table.kappa(), Some(0.0));
        assert_eq!(table.kappa_max(), Some(0.0));
        assert_eq!(table.mean_difference(), Some(-2.0));
        // alpha = 1 - (N - 1) * 2n / (2 n^2) with n = 5 and N = 10.
        assert_close(table.alpha_nominal(), -0.8, 1e-12);
        assert_close(table.alpha_ordinal(), -0.8, 1e-12);
    }

    #[test]
    fn identical_ratings_give_perfect_agreement() {
        let mut rng = Xoshiro256StarStar::from_seed(1);
        for _ in 0..500 {
            let diagonal: [u64; 3] = std::array::from_fn(|_| rng.below(3) * rng.below(20));
            let table = Table3::new([[diagonal[0], 0, 0], [0, diagonal[1], 0], [0, 0, diagonal[2]]]);
            if table.total() == 0 {
                continue;
            }
            assert_eq!(table.percent(), Some(100.0), "{table:?}");
            assert_eq!(table.mean_difference(), Some(0.0), "{table:?}");
            assert_close(table.ac1(), 1.0, 1e-12);
            assert_close(table.ac2_quadratic(), 1.0, 1e-12);
            if table.is_degenerate() {
                assert_eq!(table.kappa(), None, "{table:?}");
                continue;
            }
            assert_close(table.kappa(), 1.0, 1e-12);
            assert_close(table.kappa_linear(), 1.0, 1e-12);
            assert_close(table.kappa_quadratic(), 1.0, 1e-12);
            assert_close(table.kappa_max(), 1.0, 1e-12);
            assert_close(table.alpha_nominal(), 1.0, 1e-12);
            assert_close(table.alpha_ordinal(), 1.0, 1e-12);
        }
    }

    #[test]
    fn swapping_roles_negates_mean_difference() {
        let mut rng = Xoshiro256StarStar::from_seed(2);
        for n in 1..300 {
            let table = random_table(&mut rng, n);
            let swapped = table.transposed();
            let difference = table.mean_difference().unwrap();
            assert_close(swapped.mean_difference(), -difference, 1e-12);
        }
    }

    #[test]
    fn swapping_roles_keeps_symmetric_coefficients() {
        let mut rng = Xoshiro256StarStar::from_seed(3);
        for n in 1..300 {
            let table = random_table(&mut rng, n);
            let swapped = table.transposed();
            let pairs = [
                (table.percent(), swapped.percent()),
                (table.chance(), swapped.chance()),
                (table.kappa(), swapped.kappa()),
                (table.kappa_se(), swapped.kappa_se()),
                (table.kappa_linear(), swapped.kappa_linear()),
                (table.kappa_quadratic(), swapped.kappa_quadratic()),
                (table.kappa_max(), swapped.kappa_max()),
                (table.ac1(), swapped.ac1()),
                (table.ac1_se(), swapped.ac1_se()),
                (table.ac2_quadratic(), swapped.ac2_quadratic()),
                (table.alpha_nominal(), swapped.alpha_nominal()),
                (table.alpha_ordinal(), swapped.alpha_ordinal()),
            ];
            for (index, (original, transposed)) in pairs.into_iter().enumerate() {
                assert_eq!(
                    original.is_some(),
                    transposed.is_some(),
                    "coefficient {index} of {table:?}"
                );
                if let (Some(original), Some(transposed)) = (original, transposed) {
                    assert!(
                        (original - transposed).abs() < 1e-12,
                        "coefficient {index} of {table:?}: {original} vs {transposed}"
                    );
                }
            }
        }
    }

    #[test]
    fn coefficients_are_finite_and_bounded() {
        let mut rng = Xoshiro256StarStar::from_seed(4);
        for n in 0..400 {
            let table = random_table(&mut rng, n % 60);
            let c = table.coefficients();
            for value in [
                c.percent,
                c.chance,
                c.kappa,
                c.kappa_se,
                c.kappa_linear,
                c.kappa_quadratic,
                c.kappa_max,
                c.ac1,
                c.ac1_se,
                c.ac2_quadratic,
                c.alpha_nominal,
                c.alpha_ordinal,
                c.mean_difference,
            ]
            .into_iter()
            .flatten()
            {
                assert!(value.is_finite(), "{table:?}: {c:?}");
            }
            if let (Some(kappa), Some(kappa_max)) = (c.kappa, c.kappa_max) {
                assert!(kappa <= kappa_max + 1e-12, "{table:?}");
                assert!(kappa_max <= 1.0 + 1e-12, "{table:?}");
            }
            if let Some(percent) = c.percent {
                assert!((0.0..=100.0).contains(&percent), "{table:?}");
            }
        }
    }

    #[test]
    fn wilson_contains_estimate_within_unit_interval() {
        for n in 1..=120 {
            for successes in 0..=n {
                let (lower, upper) = wilson(successes, n).unwrap();
                let estimate = successes as f64 / n as f64;
                assert!(lower <= estimate, "{successes}/{n}");
                assert!(estimate <= upper, "{successes}/{n}");
                assert!(0.0 <= lower, "{successes}/{n}");
                assert!(upper <= 1.0, "{successes}/{n}");
                assert!(lower < upper, "{successes}/{n}");
            }
        }
    }

    #[test]
    fn wilson_matches_textbook_values() {
        // 0 of 10: the upper bound is z^2 / (n + z^2) = 0.2775.
        let (lower, upper) = wilson(0, 10).unwrap();
        assert_eq!(lower, 0.0);
        assert!((upper - 0.277_53).abs() < 5e-6, "{upper}");

        // 89 of 100: centre 0.909207 / 1.038415 = 0.875572 and half-width 0.061884.
        let (lower, upper) = wilson(89, 100).unwrap();
        assert!((lower - 0.813_69).abs() < 5e-5, "{lower}");
        assert!((upper - 0.937_46).abs() < 5e-5, "{upper}");
    }

    #[test]
    fn wilson_rejects_invalid_counts() {
        assert_eq!(wilson(0, 0), None);
        assert_eq!(wilson(11, 10), None);
    }

    #[test]
    fn percentile_interpolates_like_r_type_7() {
        let values = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&values, 0.0), Some(1.0));
        assert_eq!(percentile(&values, 1.0), Some(5.0));
        assert_eq!(percentile(&values, 0.5), Some(3.0));
        // h = 4 * 0.025 = 0.1, so 1 + 0.1 * (2 - 1).
        assert_close(percentile(&values, 0.025), 1.1, 1e-12);
        assert_eq!(percentile(&[7.0], 0.975), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn splitmix64_matches_reference_output() {
        // Published first outputs of SplitMix64 for seed 0.
        let mut state = 0;
        assert_eq!(splitmix64(&mut state), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(&mut state), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(splitmix64(&mut state), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn xoshiro256starstar_matches_reference_output() {
        // First outputs of the reference C implementation started from state [1, 2, 3, 4].
        let mut rng = Xoshiro256StarStar { state: [1, 2, 3, 4] };
        let outputs: [u64; 4] = std::array::from_fn(|_| rng.next_u64());
        assert_eq!(outputs, [11520, 0, 1_509_978_240, 1_215_971_899_390_074_240]);
    }

    #[test]
    fn below_stays_within_bound() {
        let mut rng = Xoshiro256StarStar::from_seed(5);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            let value = rng.below(7);
            assert!(value < 7);
            seen[value as usize] += 1;
        }
        assert!(seen.iter().all(|&count| count > 800), "{seen:?}");
    }

    #[test]
    fn bootstrap_repeats_for_same_seed() {
        let mut rng = Xoshiro256StarStar::from_seed(6);
        let chats = random_chats(&mut rng, 218, 11);
        let first = bootstrap(&chats, DEFAULT_RESAMPLES, 42);
        let second = bootstrap(&chats, DEFAULT_RESAMPLES, 42);
        assert_eq!(first, second);
    }

    #[test]
    fn bootstrap_differs_for_other_seed() {
        let mut rng = Xoshiro256StarStar::from_seed(6);
        let chats = random_chats(&mut rng, 218, 11);
        let first = bootstrap(&chats, DEFAULT_RESAMPLES, 42);
        let other = bootstrap(&chats, DEFAULT_RESAMPLES, 43);
        assert_ne!(first.kappa, other.kappa);
        assert_ne!(first.ac1, other.ac1);
        assert_ne!(first.percent, other.percent);
    }

    #[test]
    fn bootstrap_pooled_intervals_cover_estimates() {
        let mut rng = Xoshiro256StarStar::from_seed(7);
        let chats = random_chats(&mut rng, 218, 11);
        let pooled: Table3 = chats.iter().sum();
        let intervals = bootstrap(&chats, DEFAULT_RESAMPLES, 1);
        assert_eq!(intervals.resamples, DEFAULT_RESAMPLES);
        assert_eq!(intervals.empty_resamples, 0);
        assert_eq!(intervals.degenerate_resamples, 0);

        let cases = [
            ("percent", pooled.percent(), intervals.percent),
            ("chance", pooled.chance(), intervals.chance),
            ("kappa", pooled.kappa(), intervals.kappa),
            ("kappa_linear", pooled.kappa_linear(), intervals.kappa_linear),
            ("kappa_quadratic", pooled.kappa_quadratic(), intervals.kappa_quadratic),
            ("kappa_max", pooled.kappa_max(), intervals.kappa_max),
            ("ac1", pooled.ac1(), intervals.ac1),
            ("ac2_quadratic", pooled.ac2_quadratic(), intervals.ac2_quadratic),
            ("alpha_nominal", pooled.alpha_nominal(), intervals.alpha_nominal),
            ("alpha_ordinal", pooled.alpha_ordinal(), intervals.alpha_ordinal),
            ("mean_difference", pooled.mean_difference(), intervals.mean_difference),
        ];
        for (name, estimate, interval) in cases {
            let estimate = estimate.unwrap();
            let (lower, upper) = interval.unwrap();
            assert!(lower < upper, "{name}: ({lower}, {upper})");
            assert!(lower <= estimate, "{name}: {estimate} below ({lower}, {upper})");
            assert!(estimate <= upper, "{name}: {estimate} above ({lower}, {upper})");
        }
    }

    #[test]
    fn bootstrap_per_item_tables() {
        // One unit per chat, all agreeing on score 2 except for a few disagreements.
        let mut chats = vec![Table3::from_pairs([(2, 2)]).unwrap(); 200];
        chats.extend(vec![Table3::from_pairs([(1, 2)]).unwrap(); 3]);
        chats.push(Table3::default());

        let intervals = bootstrap(&chats, 500, 9);
        let (lower, upper) = intervals.percent.unwrap();
        assert!(lower < 100.0, "({lower}, {upper})");
        assert!(upper <= 100.0, "({lower}, {upper})");
        // About (201/204)^204 ≈ 4.9% of resamples draw no disagreeing chat.
        assert!(intervals.degenerate_resamples > 0);
        assert_eq!(intervals.empty_resamples, 0);
        assert!(intervals.kappa.is_some());
        let (lower, upper) = intervals.mean_difference.unwrap();
        assert!(lower < 0.0, "({lower}, {upper})");
        assert!(upper <= 0.0, "({lower}, {upper})");
    }

    #[test]
    fn bootstrap_without_chats_has_no_intervals() {
        let intervals = bootstrap(&[], DEFAULT_RESAMPLES, 1);
        assert_eq!(intervals.resamples, 0);
        assert_eq!(intervals.percent, None);
        assert_eq!(intervals.kappa, None);
        assert_eq!(intervals.mean_difference, None);
    }

    #[test]
    fn bootstrap_counts_empty_resamples() {
        let intervals = bootstrap(&[Table3::default(); 5], 100, 1);
        assert_eq!(intervals.empty_resamples, 100);
        assert_eq!(intervals.percent, None);
        assert_eq!(intervals.ac1, None);
    }
}
