//! The peer-review view as a dashboard page, `GET /report/peer-review`, in
//! Dutch or English. Like the report page it has no script and no inline
//! style, so it works under the dashboard's Content-Security-Policy.

use std::fmt::Write;

use super::html::{escape, leaves_out_cause, localized, page_start, with_lang};
use super::nurses::NurseFigures;
use super::peer_review::{DisagreeingChat, Group, PeerReview};
use crate::questionnaire::{Instrument, Lang, Rating, Role};

/// Every text on the page in one language.
struct Words {
    lang: &'static str,
    title: &'static str,
    generated: &'static str,
    back: &'static str,
    other_language: &'static str,
    other_language_code: &'static str,
    log_out: &'static str,
    filters: &'static str,
    from: &'static str,
    to: &'static str,
    organization: &'static str,
    all: &'static str,
    apply: &'static str,
    intro: &'static str,
    privacy: &'static str,
    difference_explained: &'static str,
    minimum: &'static str,
    suppressed_view: &'static str,
    suppressed_effect: &'static str,
    suppressed_group: &'static str,
    pairs: &'static str,
    pairs_heading: &'static str,
    disagreeing: &'static str,
    no_pairs: &'static str,
    no_disagreement: &'static str,
    week: &'static str,
    parent: &'static str,
    professional: &'static str,
    category_of: &'static str,
    largest: &'static str,
    difference: &'static str,
    ratings: [&'static str; 3],
    not_given: &'static str,
    unknown_week: &'static str,
    nurses_title: &'static str,
    nurses_explained: &'static str,
    nurse: &'static str,
    same_category: &'static str,
    unknown_nurse: &'static str,
    hidden: &'static str,
}

const NL: Words = Words {
    lang: "nl",
    title: "Intervisie: waar ouder en jeugdverpleegkundige verschillen",
    generated: "Gemaakt op",
    back: "Terug naar het rapport",
    other_language: "English",
    other_language_code: "en",
    log_out: "Afmelden",
    filters: "Filters",
    from: "Van",
    to: "Tot en met",
    organization: "Organisatie",
    all: "alle",
    apply: "Toepassen",
    intro: "Hier staan de chats waarin de ouder en de jeugdverpleegkundige een ander totaaloordeel gaven. Het totaaloordeel is de middelste van de 11 antwoorden. Bij elke chat staan de vragen met het grootste verschil. Gebruik deze pagina om samen te leren.",
    privacy: "Om ouders te beschermen tonen we geen chatnummers, geen tijden en geen opmerkingen. Je ziet alleen de week van de chat.",
    difference_explained: "Verschil: het antwoord van de ouder min het antwoord van de jeugdverpleegkundige. Onvoldoende telt als 0, voldoende als 1 en goed als 2. Een plus betekent: de ouder was positiever. Een min betekent: de jeugdverpleegkundige was positiever.",
    minimum: "Groepen met minder paren dan het minimum tonen we niet. Minimum:",
    suppressed_view: "Deze selectie heeft te weinig paren. Om ouders en jeugdverpleegkundigen te beschermen tonen we hier niets.",
    suppressed_effect: "Om ouders en jeugdverpleegkundigen te beschermen tonen we hier niets.",
    suppressed_group: "Verborgen. Deze groep heeft te weinig paren, of hij is verborgen om een kleine groep te beschermen.",
    pairs: "paren",
    pairs_heading: "Paren",
    disagreeing: "met een ander totaaloordeel",
    no_pairs: "Geen paren in deze selectie.",
    no_disagreement: "Geen chats met een ander totaaloordeel.",
    week: "Week",
    parent: "ouder",
    professional: "jeugdverpleegkundige",
    category_of: "Totaaloordeel",
    largest: "Vragen met het grootste verschil",
    difference: "verschil",
    ratings: ["onvoldoende", "voldoende", "goed"],
    not_given: "niet opgegeven",
    unknown_week: "onbekend",
    nurses_title: "Per jeugdverpleegkundige",
    nurses_explained: "Elke jeugdverpleegkundige heeft een vaste code. De code is geen naam en geen nummer uit het chatplatform. We tonen alleen cijfers bij genoeg paren. Anders zijn ze verborgen.",
    nurse: "Code",
    same_category: "Zelfde totaaloordeel",
    unknown_nurse: "onbekend",
    hidden: "verborgen",
};

const EN: Words = Words {
    lang: "en",
    title: "Peer review: where parent and nurse differ",
    generated: "Generated",
    back: "Back to the report",
    other_language: "Nederlands",
    other_language_code: "nl",
    log_out: "Log out",
    filters: "Filters",
    from: "From",
    to: "To",
    organization: "Organization",
    all: "all",
    apply: "Apply",
    intro: "This page lists the chats in which the parent and the nurse gave a different overall category. The overall category is the middle one of the 11 answers. Each chat shows the questions with the largest difference. Use this page to learn together.",
    privacy: "To protect parents, we show no chat numbers, no times and no comments. You only see the week of the chat.",
    difference_explained: "Difference: the parent's answer minus the nurse's answer. Insufficient counts as 0, sufficient as 1 and good as 2. A plus means the parent was more positive. A minus means the nurse was more positive.",
    minimum: "Groups with fewer pairs than the minimum are not shown. Minimum:",
    suppressed_view: "This selection has too few pairs. To protect parents and nurses, nothing is shown here.",
    suppressed_effect: "To protect parents and nurses, nothing is shown here.",
    suppressed_group: "Hidden. This group has too few pairs, or it is hidden to protect a small group.",
    pairs: "pairs",
    pairs_heading: "Pairs",
    disagreeing: "with a different overall category",
    no_pairs: "No pairs in this selection.",
    no_disagreement: "No chats with a different overall category.",
    week: "Week",
    parent: "parent",
    professional: "nurse",
    category_of: "Overall category",
    largest: "Questions with the largest difference",
    difference: "difference",
    ratings: ["insufficient", "sufficient", "good"],
    not_given: "not given",
    unknown_week: "unknown",
    nurses_title: "Per nurse",
    nurses_explained: "Each nurse has a fixed code. The code is not a name and not a number from the chat platform. Figures are shown only with enough pairs. Otherwise they are hidden.",
    nurse: "Code",
    same_category: "Same overall category",
    unknown_nurse: "unknown",
    hidden: "hidden",
};

/// Targets of the page's links and form, and the filter values it offers.
pub struct PageContext<'a> {
    pub lang: Lang,
    /// URL of the dashboard stylesheet, versioned.
    pub stylesheet: &'a str,
    /// Query string of the current filters without `lang`, already URL-encoded.
    pub filter_query: &'a str,
    /// Organizations offered in the filter list.
    pub organizations: &'a [String],
}

fn rating_text(words: &Words, rating: Rating) -> &'static str {
    words.ratings[usize::from(rating.score())]
}

/// Renders the whole peer-review page.
pub fn render(view: &PeerReview, context: &PageContext<'_>) -> String {
    let words = match context.lang {
        Lang::Nl => &NL,
        Lang::En => &EN,
    };
    let mut page = page_start(words.lang, words.title, context.stylesheet);
    header(&mut page, view, context, words);
    page.push_str("<main class=\"peer-review\">\n");
    let _ = writeln!(
        page,
        "<p class=\"explain\">{}</p>\n<p class=\"explain\">{}</p>\n<p class=\"explain\">{}</p>\n\
         <p class=\"explain\">{} {}.</p>",
        words.intro, words.privacy, words.difference_explained, words.minimum, view.min_cell_size
    );

    if view.suppressed {
        let notice = match leaves_out_cause(view.suppression_reason.as_ref(), context.lang) {
            Some(cause) => format!("{cause} {}", words.suppressed_effect),
            None => words.suppressed_view.to_string(),
        };
        let _ = writeln!(page, "<p class=\"notice\">{notice}</p>");
    } else if view.groups.is_empty() {
        let _ = writeln!(page, "<p>{}</p>", words.no_pairs);
    } else {
        if let (Some(pairs), Some(disagreeing)) = (view.pairs, view.disagreeing) {
            let _ = writeln!(
                page,
                "<p class=\"figure\">{pairs} {}, {disagreeing} {}</p>",
                words.pairs, words.disagreeing
            );
        }
        for group in &view.groups {
            group_section(&mut page, group, context.lang, words);
        }
    }
    page.push_str("</main>\n</body>\n</html>\n");
    page
}

fn header(page: &mut String, view: &PeerReview, context: &PageContext<'_>, words: &Words) {
    let filter = &view.filter;
    let _ = writeln!(
        page,
        "<header>\n<h1>{}</h1>\n<p class=\"meta\">{} {} · <a href=\"/report?{}\">{}</a> · \
         <a href=\"/report/peer-review?{}\" lang=\"{}\">{}</a></p>",
        words.title,
        words.generated,
        escape(&view.generated_at),
        escape(&with_lang(context.filter_query, words.lang)),
        words.back,
        escape(&with_lang(context.filter_query, words.other_language_code)),
        words.other_language_code,
        words.other_language
    );
    let _ = writeln!(
        page,
        "<form class=\"logout\" method=\"post\" action=\"/report/logout\"><button type=\"submit\">{}</button></form>",
        words.log_out
    );
    let _ = write!(
        page,
        "<form class=\"filters\" method=\"get\" action=\"/report/peer-review\">\n<fieldset><legend>{}</legend>\n\
         <input type=\"hidden\" name=\"lang\" value=\"{}\">\n\
         <label>{}<input type=\"date\" name=\"from\" value=\"{}\"></label>\n\
         <label>{}<input type=\"date\" name=\"to\" value=\"{}\"></label>\n\
         <label>{}<select name=\"organization\"><option value=\"\">{}</option>",
        words.filters,
        words.lang,
        words.from,
        filter.from.map(|d| d.to_string()).unwrap_or_default(),
        words.to,
        filter.to.map(|d| d.to_string()).unwrap_or_default(),
        words.organization,
        words.all
    );
    for value in context.organizations {
        let mark = if filter.organization.as_deref() == Some(value.as_str()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(page, "<option value=\"{0}\"{mark}>{0}</option>", escape(value));
    }
    page.push_str("</select></label>\n");
    // Topic and age group have no list on this page, so a chosen value is kept as a hidden field.
    for (name, value) in [("topic", &filter.topic), ("child_age_group", &filter.child_age_group)] {
        if let Some(value) = value {
            let _ = writeln!(
                page,
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                escape(value)
            );
        }
    }
    let _ = writeln!(
        page,
        "<button type=\"submit\">{}</button>\n</fieldset>\n</form>\n</header>",
        words.apply
    );
}

fn group_section(page: &mut String, group: &Group, lang: Lang, words: &Words) {
    let name = group.name.as_deref().unwrap_or(words.not_given);
    let _ = writeln!(page, "<section class=\"group\">\n<h2>{}</h2>", escape(name));
    let (Some(pairs), Some(disagreeing)) = (group.pairs, group.disagreeing) else {
        let _ = writeln!(page, "<p class=\"hidden\">{}</p>\n</section>", words.suppressed_group);
        return;
    };
    let _ = writeln!(
        page,
        "<p class=\"figure\">{pairs} {}, {disagreeing} {}</p>",
        words.pairs, words.disagreeing
    );
    if group.chats.is_empty() {
        let _ = writeln!(page, "<p>{}</p>", words.no_disagreement);
    } else {
        chats_table(page, &group.chats, lang, words);
    }
    if let Some(nurses) = &group.nurses {
        nurses_table(page, nurses, words);
    }
    page.push_str("</section>\n");
}

fn chats_table(page: &mut String, chats: &[DisagreeingChat], lang: Lang, words: &Words) {
    let stem = Instrument::get().stem(Role::Parent, lang);
    let _ = write!(
        page,
        "<table class=\"peer\"><thead><tr><th>{}</th><th>{} {}</th><th>{} {}</th><th>{}</th></tr></thead><tbody>",
        words.week, words.category_of, words.parent, words.category_of, words.professional, words.largest
    );
    for chat in chats {
        let week = chat.iso_week.as_deref().unwrap_or(words.unknown_week);
        let _ = write!(
            page,
            "<tr><th>{}</th><td>{}</td><td>{}</td><td><ul class=\"differences\">",
            escape(week),
            rating_text(words, chat.parent_category),
            rating_text(words, chat.professional_category)
        );
        for item in &chat.largest_differences {
            let _ = write!(
                page,
                "<li><strong>{}. {}</strong>: {} {}, {} {} ({} {:+})\
                 <span class=\"wording\">{} {}</span></li>",
                item.item,
                escape(&item.element),
                words.parent,
                rating_text(words, item.parent),
                words.professional,
                rating_text(words, item.professional),
                words.difference,
                item.difference,
                escape(stem),
                escape(&item.parent_text)
            );
        }
        page.push_str("</ul></td></tr>");
    }
    page.push_str("</tbody></table>\n");
}

fn nurses_table(page: &mut String, nurses: &[NurseFigures], words: &Words) {
    let _ = write!(
        page,
        "<table class=\"breakdown nurses\"><caption>{}</caption><thead><tr><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        words.nurses_title, words.nurse, words.pairs_heading, words.same_category
    );
    for nurse in nurses {
        let label = nurse.label.as_deref().unwrap_or(words.unknown_nurse);
        let _ = write!(page, "<tr><th>{}</th>", escape(label));
        match &nurse.category {
            None => {
                let _ = write!(page, "<td colspan=\"2\" class=\"hidden\">{}</td>", words.hidden);
            }
            Some(category) => {
                let percent = category
                    .percent
                    .map(|value| localized(format!("{:.1}%", (value * 10.0).round() / 10.0), words.lang))
                    .unwrap_or_else(|| "–".into());
                let interval = category
                    .ci95
                    .map(|[lo, hi]| {
                        let range = localized(format!("{lo:.1}–{hi:.1}"), words.lang);
                        format!(" <span class=\"ci\">({range})</span>")
                    })
                    .unwrap_or_default();
                let _ = write!(
                    page,
                    "<td>{}</td><td>{} ({percent}){interval}</td>",
                    category.pairs, category.agreeing
                );
            }
        }
        page.push_str("</tr>");
    }
    let _ = writeln!(
        page,
        "</tbody></table>\n<p class=\"explain\">{}</p>",
        words.nurses_explained
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::ReportFilter;
    use crate::report::peer_review::ItemDifference;

    fn view(groups: Vec<Group>) -> PeerReview {
        PeerReview {
            generated_at: "2022-09-06T10:00:00Z".into(),
            filter: ReportFilter::default(),
            lang: Lang::Nl,
            group_by: "organization".into(),
            min_cell_size: 10,
            per_nurse_figures: false,
            filtered: false,
            suppressed: false,
            suppression_reason: None,
            pairs: Some(12),
            disagreeing: Some(1),
            groups,
        }
    }

    fn context(lang: Lang) -> PageContext<'static> {
        PageContext {
            lang,
            stylesheet: "/report/dashboard.css",
            filter_query: "",
            organizations: &[],
        }
    }

    #[test]
    fn page_shows_rows_and_hides_suppressed_groups() {
        let visible = Group {
            name: Some("GGD <Noord>".into()),
            suppressed: false,
            pairs: Some(12),
            disagreeing: Some(1),
            chats: vec![DisagreeingChat {
                iso_week: Some("2022-W27".into()),
                parent_category: Rating::Good,
                professional_category: Rating::Sufficient,
                largest_differences: vec![ItemDifference {
                    item: 4,
                    element: "Sensitiviteit".into(),
                    parent_text: "speelde goed in op mijn (minderheids-)positie".into(),
                    professional_text: "speelde goed in op de (minderheids-)positie".into(),
                    parent: Rating::Good,
                    professional: Rating::Insufficient,
                    difference: 2,
                }],
            }],
            nurses: None,
        };
        let hidden = Group {
            name: None,
            suppressed: true,
            pairs: None,
            disagreeing: None,
            chats: Vec::new(),
            nurses: None,
        };
        let page = render(&view(vec![visible, hidden]), &context(Lang::Nl));
        assert!(page.contains("GGD &lt;Noord&gt;"), "names are escaped");
        assert!(page.contains("2022-W27"));
        assert!(page.contains("4. Sensitiviteit</strong>: ouder goed, jeugdverpleegkundige onvoldoende (verschil +2)"));
        assert!(page.contains(NL.suppressed_group));
        assert!(
            !page.contains(NL.nurses_title),
            "no nurse table without per-nurse figures"
        );
        assert!(!page.contains("style="), "no inline style");
        assert!(!page.contains("<script"), "no script");
    }

    #[test]
    fn suppressed_view_shows_only_the_notice() {
        let mut suppressed = view(Vec::new());
        suppressed.suppressed = true;
        suppressed.pairs = None;
        let page = render(&suppressed, &context(Lang::En));
        assert!(page.contains(EN.suppressed_view));
        assert!(page.contains("<html lang=\"en\">"));
    }
}
