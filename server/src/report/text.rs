//! The report as plain text for a terminal, in English.

use std::fmt::Write;

use super::{AgreementSet, Funnel, Rate, Report, TableAgreement};

fn rate(rate: &Rate) -> String {
    match (rate.percent, rate.ci95) {
        (Some(percent), Some([lo, hi])) => {
            format!("{} of {} ({percent:.1}%, 95% CI {lo:.1}–{hi:.1})", rate.count, rate.of)
        }
        _ => format!("{} of {}", rate.count, rate.of),
    }
}

fn share(value: Option<f64>) -> String {
    value.map(|v| format!("{v:.1}%")).unwrap_or_else(|| "–".into())
}

fn number(value: Option<f64>) -> String {
    value.map(|v| format!("{v:.3}")).unwrap_or_else(|| "–".into())
}

fn funnel_line(out: &mut String, role: &str, funnel: &Funnel) {
    let _ = writeln!(
        out,
        "  {role:<13} invited {:>6}  opened {:>6}  started {:>6}  complete {:>6}  submitted {:>6}  declined {:>5}  expired {:>5}",
        funnel.invited,
        funnel.opened,
        funnel.started,
        funnel.complete,
        funnel.submitted,
        funnel.declined,
        funnel.expired
    );
}

fn agreement_lines(out: &mut String, name: &str, set: &AgreementSet) {
    let ci = set
        .category
        .ci95
        .map(|[lo, hi]| format!(" (95% CI {lo:.1}–{hi:.1})"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "  {name:<20} category {} of {} = {}{ci}; items {}; all items {} of {} = {}",
        set.category.agreeing,
        set.category.pairs,
        share(set.category.percent),
        share(set.items.percent),
        set.all_items.agreeing,
        set.all_items.pairs,
        share(set.all_items.percent),
    );
}

fn coefficients_line(out: &mut String, name: &str, table: &TableAgreement) {
    let _ = writeln!(
        out,
        "  {name:<20} agreement {}  chance {}  kappa {}  kappa max {}  AC1 {}  ordinal alpha {}  mean difference {}",
        share(table.percent),
        share(table.chance),
        number(table.kappa.value),
        number(table.kappa_max.value),
        number(table.ac1.value),
        number(table.alpha_ordinal.value),
        number(table.mean_difference.value),
    );
}

/// Renders the report for a terminal.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Online alliance report (generated {})", report.generated_at);
    let _ = writeln!(out);
    if report.suppression.suppressed {
        let cause = match &report.suppression.reason {
            Some(reason) => reason.message(report.suppression.min_cell_size),
            None => "the filter selects too few matched pairs".to_string(),
        };
        let _ = writeln!(
            out,
            "Suppressed: {cause}. Answers and agreement below cover no pairs; chat and funnel counts remain."
        );
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "Chats: {}  (ineligible, not counted: {})",
        report.chats, report.chats_ineligible
    );
    let _ = writeln!(out, "Complete questionnaires:");
    let _ = writeln!(out, "  parent         {}", rate(&report.rates.parent));
    let _ = writeln!(out, "  professional   {}", rate(&report.rates.professional));
    let _ = writeln!(out, "  matched pairs  {}", rate(&report.rates.pairs));
    let _ = writeln!(out);
    let _ = writeln!(out, "Response funnel:");
    funnel_line(&mut out, "parent", &report.questionnaires.parent);
    funnel_line(&mut out, "professional", &report.questionnaires.professional);
    let _ = writeln!(out);

    let _ = writeln!(out, "Answers over matched pairs (n = {}):", report.pairs);
    let _ = writeln!(
        out,
        "  item   parent: insuff.  suff.   good   professional: insuff.  suff.   good   kappa    AC1"
    );
    for item in &report.items {
        let _ = writeln!(
            out,
            "  {:>4}   {:>15} {:>6} {:>6}   {:>21} {:>6} {:>6}  {:>6} {:>6}",
            item.number,
            item.parent.insufficient,
            item.parent.sufficient,
            item.parent.good,
            item.professional.insufficient,
            item.professional.sufficient,
            item.professional.good,
            number(item.agreement.kappa.value),
            number(item.agreement.ac1.value),
        );
    }
    let _ = writeln!(out);

    let _ = writeln!(out, "Agreement between parent and professional:");
    agreement_lines(&mut out, "all items", &report.agreement.overall);
    agreement_lines(&mut out, "personal bond", &report.agreement.subscales.personal_bond);
    agreement_lines(
        &mut out,
        "goals and approach",
        &report.agreement.subscales.goals_and_approach,
    );
    coefficients_line(&mut out, "overall category", &report.agreement.category_coefficients);
    coefficients_line(&mut out, "pooled item answers", &report.agreement.pooled);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "When most answers are \"good\", two sides agree often by chance alone, so raw agreement\n\
         sits near chance agreement and kappa stays low even when both sides are positive.\n\
         Read agreement together with chance agreement, kappa max and AC1."
    );
    out
}
