//! The report as an HTML page for the dashboard, in Dutch or English, with
//! SVG charts drawn here. The page has no script and no inline style, so it
//! works under a strict Content-Security-Policy: the charts are styled by
//! class from the dashboard's stylesheet.

use std::fmt::Write;

use super::breakdown::Cell;
use super::{Dimension, Funnel, RatingCounts, Report, SuppressionReason, TableAgreement};
use crate::questionnaire::{Instrument, Lang, Rating, Role};

/// Every text on the page in one language.
struct Words {
    lang: &'static str,
    title: &'static str,
    generated: &'static str,
    filters: &'static str,
    from: &'static str,
    to: &'static str,
    organization: &'static str,
    topic: &'static str,
    age_group: &'static str,
    all: &'static str,
    apply: &'static str,
    other_language: &'static str,
    other_language_code: &'static str,
    log_out: &'static str,
    peer_review: &'static str,
    print: &'static str,
    suppressed_report: &'static str,
    suppressed_effect: &'static str,
    summary: &'static str,
    chats: &'static str,
    parents: &'static str,
    professionals: &'static str,
    pairs: &'static str,
    complete: &'static str,
    category_agreement: &'static str,
    summary_explained: &'static str,
    items_title: &'static str,
    items_explained: &'static str,
    ratings: [&'static str; 3],
    heatmap_title: &'static str,
    heatmap_explained: &'static str,
    rows_parent: &'static str,
    columns_professional: &'static str,
    coefficients_title: &'static str,
    coefficients_explained: &'static str,
    coefficient_names: [&'static str; 7],
    category_table: &'static str,
    pooled_table: &'static str,
    funnel_title: &'static str,
    funnel_explained: &'static str,
    stages: [&'static str; 7],
    trend_title: &'static str,
    trend_explained: &'static str,
    breakdown_title: &'static str,
    breakdown_explained: &'static str,
    suppressed_cell: &'static str,
    not_given: &'static str,
    odds_title: &'static str,
    odds_explained: &'static str,
    no_pairs: &'static str,
    interval: &'static str,
    item: &'static str,
    of: &'static str,
    pairs_unit: &'static str,
    agree: &'static str,
}

const NL: Words = Words {
    lang: "nl",
    title: "Online alliantie: rapport",
    generated: "Gemaakt op",
    filters: "Filters",
    from: "Van",
    to: "Tot en met",
    organization: "Organisatie",
    topic: "Onderwerp",
    age_group: "Leeftijd kind",
    all: "alle",
    apply: "Toepassen",
    other_language: "English",
    other_language_code: "en",
    log_out: "Afmelden",
    peer_review: "Intervisie",
    print: "Afdrukken of opslaan als PDF: gebruik het afdrukmenu van de browser.",
    suppressed_report: "Deze selectie heeft te weinig gekoppelde paren. Om ouders en jeugdverpleegkundigen te beschermen tonen we geen antwoorden en geen overeenstemming.",
    suppressed_effect: "Om ouders en jeugdverpleegkundigen te beschermen tonen we geen antwoorden en geen overeenstemming.",
    summary: "Samenvatting",
    chats: "Chats",
    parents: "Ouders",
    professionals: "Jeugdverpleegkundigen",
    pairs: "Paren (beide ingevuld)",
    complete: "volledig ingevuld",
    category_agreement: "Overeenstemming op het totaaloordeel",
    summary_explained: "Een paar is een chat waarin zowel de ouder als de jeugdverpleegkundige alle 11 vragen beantwoordde. Het totaaloordeel is de middelste van de 11 antwoorden. Tussen haken staat het 95%-betrouwbaarheidsinterval.",
    items_title: "Antwoorden per vraag: ouder en jeugdverpleegkundige",
    items_explained: "Per vraag twee balken: boven de ouder, onder de jeugdverpleegkundige. Rechts van de middenlijn staat 'goed', links 'onvoldoende'; 'voldoende' staat half links en half rechts. Alleen paren tellen mee.",
    ratings: ["onvoldoende", "voldoende", "goed"],
    heatmap_title: "Totaaloordeel: ouder tegenover jeugdverpleegkundige",
    heatmap_explained: "Elk vak telt de paren met dat oordeel van de ouder (rij) en van de jeugdverpleegkundige (kolom). De diagonaal is overeenstemming. Hoe donkerder het vak, hoe meer paren.",
    rows_parent: "ouder",
    columns_professional: "jeugdverpleegkundige",
    coefficients_title: "Overeenstemming en toeval",
    coefficients_explained: "Als bijna alle antwoorden 'goed' zijn, zoals in de meting van 2022, dan zijn ouder en jeugdverpleegkundige het vaak eens door toeval alleen: de ruwe overeenstemming ligt dicht bij de kansovereenstemming, en kappa kan niet hoog worden (zie kappa max). AC1 corrigeert minder sterk voor toeval bij zulke scheve antwoorden. Lees de ruwe overeenstemming daarom altijd samen met kans, kappa max en AC1.",
    coefficient_names: [
        "overeenstemming",
        "kans",
        "kappa",
        "kappa max",
        "AC1",
        "alfa (ordinaal)",
        "verschil ouder − jvk",
    ],
    category_table: "totaaloordeel per paar",
    pooled_table: "alle antwoorden samen",
    funnel_title: "Respons: van uitnodiging tot volledig",
    funnel_explained: "Hoeveel uitnodigingen werden geopend, begonnen, tot vraag 1 en vraag 11 beantwoord, volledig ingevuld en verstuurd. Percentages zijn van de uitnodigingen.",
    stages: [
        "uitgenodigd",
        "geopend",
        "begonnen",
        "vraag 1",
        "vraag 11",
        "volledig",
        "verstuurd",
    ],
    trend_title: "Per week",
    trend_explained: "Staven: aantal paren per ISO-week. Punten: overeenstemming op het totaaloordeel in die week (0–100%). Weken met te weinig paren tonen we niet.",
    breakdown_title: "Per organisatie, onderwerp en leeftijd",
    breakdown_explained: "Groepen met minder paren dan de minimumgrootte zijn verborgen, samen met een groep die anders het verborgen getal zou verraden.",
    suppressed_cell: "verborgen",
    not_given: "niet opgegeven",
    odds_title: "Vullen ouder en jeugdverpleegkundige samen in?",
    odds_explained: "De odds ratio zegt hoeveel vaker de jeugdverpleegkundige invult als de ouder dat deed dan als de ouder dat niet deed. 1 betekent: geen verband.",
    no_pairs: "Geen paren in deze selectie.",
    interval: "95%-interval",
    item: "Vraag",
    of: "van",
    pairs_unit: "paren",
    agree: "eens",
};

const EN: Words = Words {
    lang: "en",
    title: "Online alliance: report",
    generated: "Generated",
    filters: "Filters",
    from: "From",
    to: "To",
    organization: "Organization",
    topic: "Topic",
    age_group: "Child age group",
    all: "all",
    apply: "Apply",
    other_language: "Nederlands",
    other_language_code: "nl",
    log_out: "Log out",
    peer_review: "Peer review",
    print: "To print or save as PDF, use the browser's print menu.",
    suppressed_report: "This selection has too few matched pairs. To protect parents and nurses, no answers and no agreement are shown.",
    suppressed_effect: "To protect parents and nurses, no answers and no agreement are shown.",
    summary: "Summary",
    chats: "Chats",
    parents: "Parents",
    professionals: "Nurses",
    pairs: "Pairs (both complete)",
    complete: "complete",
    category_agreement: "Agreement on the overall category",
    summary_explained: "A pair is a chat in which both the parent and the nurse answered all 11 items. The overall category is the middle one of the 11 answers. The 95% confidence interval is in brackets.",
    items_title: "Answers per item: parent and nurse",
    items_explained: "Two bars per item: the parent above, the nurse below. 'Good' lies right of the centre line, 'insufficient' left; 'sufficient' is split half left, half right. Only pairs count.",
    ratings: ["insufficient", "sufficient", "good"],
    heatmap_title: "Overall category: parent against nurse",
    heatmap_explained: "Each cell counts the pairs with that category from the parent (row) and the nurse (column). The diagonal is agreement. Darker cells hold more pairs.",
    rows_parent: "parent",
    columns_professional: "nurse",
    coefficients_title: "Agreement and chance",
    coefficients_explained: "When nearly all answers are 'good', as in the 2022 measurement, parent and nurse often agree by chance alone: raw agreement sits close to chance agreement, and kappa cannot become high (see kappa max). AC1 corrects less strongly for chance with such skewed answers. So always read raw agreement together with chance, kappa max and AC1.",
    coefficient_names: [
        "agreement",
        "chance",
        "kappa",
        "kappa max",
        "AC1",
        "alpha (ordinal)",
        "parent − nurse",
    ],
    category_table: "overall category per pair",
    pooled_table: "all answers pooled",
    funnel_title: "Response: from invitation to complete",
    funnel_explained: "How many invitations were opened, started, answered up to item 1 and item 11, completed and submitted. Percentages are of the invitations.",
    stages: [
        "invited",
        "opened",
        "started",
        "item 1",
        "item 11",
        "complete",
        "submitted",
    ],
    trend_title: "Per week",
    trend_explained: "Bars: matched pairs per ISO week. Dots: agreement on the overall category in that week (0–100%). Weeks with too few pairs are not shown.",
    breakdown_title: "By organization, topic and age group",
    breakdown_explained: "Groups with fewer pairs than the minimum size are hidden, together with a group that would otherwise give the hidden number away.",
    suppressed_cell: "hidden",
    not_given: "not given",
    odds_title: "Do parent and nurse complete together?",
    odds_explained: "The odds ratio says how much more often the nurse completes when the parent did than when the parent did not. 1 means no relation.",
    no_pairs: "No pairs in this selection.",
    interval: "95% interval",
    item: "Item",
    of: "of",
    pairs_unit: "pairs",
    agree: "agree",
};

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// Where the page's links and form point, and which filter values to offer.
pub struct PageContext<'a> {
    pub lang: Lang,
    /// URL of the stylesheet, versioned.
    pub stylesheet: &'a str,
    /// Query string of the current filters without `lang`, already URL-encoded.
    pub filter_query: &'a str,
    /// Values offered in the filter lists.
    pub organizations: &'a [String],
    pub topics: &'a [String],
    pub age_groups: &'a [String],
}

/// One decimal, rounded half away from zero: the report's percentages carry
/// two decimals already (82.35), and formatting those with `{:.1}` would
/// round the binary value 82.349… down.
fn percent_text(value: Option<f64>, words: &Words) -> String {
    value
        .map(|v| localized(format!("{:.1}%", (v * 10.0).round() / 10.0), words.lang))
        .unwrap_or_else(|| "–".into())
}

fn decimal(value: Option<f64>, words: &Words) -> String {
    value
        .map(|v| localized(format!("{v:.3}"), words.lang))
        .unwrap_or_else(|| "–".into())
}

fn interval(ci: Option<[f64; 2]>, digits: usize, words: &Words) -> String {
    ci.map(|[lo, hi]| localized(format!(" ({lo:.digits$}–{hi:.digits$})"), words.lang))
        .unwrap_or_default()
}

/// Writes the decimal separator of the page's language into a formatted
/// number: a comma in Dutch, a point in English.
pub(crate) fn localized(text: String, lang: &str) -> String {
    if lang == "nl" { text.replace('.', ",") } else { text }
}

/// Formats the attribute ` data-percent="61.93"` with the report's exact
/// value, or returns nothing when there is no percentage.
fn data_percent(value: Option<f64>) -> String {
    value.map(|v| format!(" data-percent=\"{v}\"")).unwrap_or_default()
}

/// Returns the role's name in lower case, as it reads inside a sentence.
fn role_word(words: &Words, role: Role) -> &'static str {
    match role {
        Role::Parent => words.rows_parent,
        Role::Professional => words.columns_professional,
    }
}

fn counts_text(words: &Words, counts: &RatingCounts) -> String {
    format!(
        "{} {}, {} {}, {} {}",
        words.ratings[0], counts.insufficient, words.ratings[1], counts.sufficient, words.ratings[2], counts.good
    )
}

fn capitalized(word: &str) -> String {
    let mut characters = word.chars();
    match characters.next() {
        Some(first) => first.to_uppercase().chain(characters).collect(),
        None => String::new(),
    }
}

/// Writes a chart's text alternative: the SVG has `role="img"`, so screen
/// readers skip its shapes and read this description instead. `sentences`
/// must be escaped already.
fn description(page: &mut String, id: &str, sentences: &[String]) {
    let _ = write!(page, "<desc id=\"{id}\">{}.</desc>", sentences.join(". "));
}

/// Starts a dashboard page: the document head with its title and stylesheet, up to `<body>`.
pub(crate) fn page_start(lang: &str, title: &str, stylesheet: &str) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<link rel=\"stylesheet\" href=\"{}\">\n</head>\n<body>\n",
        escape(stylesheet)
    );
    page
}

/// Explains, in `lang`, that a selection is hidden because a wider selection
/// has only a few pairs more. Returns `None` for any other reason.
pub(crate) fn leaves_out_cause(reason: Option<&SuppressionReason>, lang: Lang) -> Option<String> {
    let Some(SuppressionReason::LeavesOutTooFewPairs {
        left_out,
        without,
        shared_labels,
    }) = reason
    else {
        return None;
    };
    let names = |dimensions: &[Dimension]| {
        let names: Vec<&str> = dimensions
            .iter()
            .map(|dimension| dimension_name(*dimension, lang))
            .collect();
        let and = match lang {
            Lang::Nl => " en ",
            Lang::En => " and ",
        };
        match names.split_last() {
            None => String::new(),
            Some((last, [])) => last.to_string(),
            Some((last, rest)) => format!("{}{and}{last}", rest.join(", ")),
        }
    };
    let cause = match lang {
        Lang::Nl => {
            let unit = if *left_out == 1 {
                "gekoppeld paar"
            } else {
                "gekoppelde paren"
            };
            let shared = if shared_labels.is_empty() {
                String::new()
            } else {
                format!(", met dezelfde waarde voor {} als al haar paren", names(shared_labels))
            };
            format!(
                "Deze selectie verschilt maar {left_out} {unit} van dezelfde selectie zonder {}{shared}. \
                 Wie de twee van elkaar aftrekt, ziet die paren.",
                names(without)
            )
        }
        Lang::En => {
            let unit = if *left_out == 1 {
                "matched pair"
            } else {
                "matched pairs"
            };
            let shared = if shared_labels.is_empty() {
                String::new()
            } else {
                format!(", keeping the {} that all its pairs share", names(shared_labels))
            };
            format!(
                "This selection differs by only {left_out} {unit} from the same selection without {}{shared}. \
                 Subtracting the two would show those pairs.",
                names(without)
            )
        }
    };
    Some(cause)
}

/// Returns the name of a filter dimension as it reads inside a sentence.
pub(super) fn dimension_name(dimension: Dimension, lang: Lang) -> &'static str {
    match (lang, dimension) {
        (Lang::Nl, Dimension::Organization) => "organisatie",
        (Lang::Nl, Dimension::Topic) => "onderwerp",
        (Lang::Nl, Dimension::ChildAgeGroup) => "leeftijd kind",
        (Lang::Nl, Dimension::From) => "begindatum",
        (Lang::Nl, Dimension::To) => "einddatum",
        (Lang::En, Dimension::Organization) => "organization",
        (Lang::En, Dimension::Topic) => "topic",
        (Lang::En, Dimension::ChildAgeGroup) => "child's age group",
        (Lang::En, Dimension::From) => "start date",
        (Lang::En, Dimension::To) => "end date",
    }
}

/// Appends `lang` to an already encoded filter query string.
pub(crate) fn with_lang(filter_query: &str, lang: &str) -> String {
    if filter_query.is_empty() {
        format!("lang={lang}")
    } else {
        format!("{filter_query}&lang={lang}")
    }
}

/// Renders the whole dashboard page.
pub fn render(report: &Report, context: &PageContext<'_>) -> String {
    let words = match context.lang {
        Lang::Nl => &NL,
        Lang::En => &EN,
    };
    let mut page = page_start(words.lang, words.title, context.stylesheet);
    header(&mut page, report, context, words);
    page.push_str("<main>\n");
    if report.suppression.suppressed {
        let notice = match leaves_out_cause(report.suppression.reason.as_ref(), context.lang) {
            Some(cause) => format!("{cause} {}", words.suppressed_effect),
            None => words.suppressed_report.to_string(),
        };
        let _ = writeln!(page, "<p class=\"notice\">{notice}</p>");
    }
    summary(&mut page, report, words);
    items_chart(&mut page, report, context.lang, words);
    category_section(&mut page, report, words);
    funnel_section(&mut page, report, words);
    trend_section(&mut page, report, words);
    breakdown_section(&mut page, report, words);
    odds_section(&mut page, report, words);
    page.push_str("</main>\n</body>\n</html>\n");
    page
}

fn options(page: &mut String, name: &str, label: &str, values: &[String], selected: Option<&str>, words: &Words) {
    let _ = write!(
        page,
        "<label>{label}<select name=\"{name}\"><option value=\"\">{}</option>",
        words.all
    );
    for value in values {
        let mark = if selected == Some(value.as_str()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(page, "<option value=\"{0}\"{mark}>{0}</option>", escape(value));
    }
    page.push_str("</select></label>\n");
}

fn header(page: &mut String, report: &Report, context: &PageContext<'_>, words: &Words) {
    let filter = &report.filter;
    let other_query = with_lang(context.filter_query, words.other_language_code);
    let peer_review_query = with_lang(context.filter_query, words.lang);
    let _ = writeln!(
        page,
        "<header>\n<h1>{}</h1>\n<p class=\"meta\">{} {}<span class=\"language\"> · <a href=\"/report?{}\" lang=\"{}\">{}</a></span>\
         <span class=\"pages\"> · <a href=\"/report/peer-review?{}\">{}</a></span></p>",
        words.title,
        words.generated,
        escape(&report.generated_at),
        escape(&other_query),
        words.other_language_code,
        words.other_language,
        escape(&peer_review_query),
        words.peer_review
    );
    let _ = writeln!(
        page,
        "<form class=\"logout\" method=\"post\" action=\"/report/logout\"><button type=\"submit\">{}</button></form>",
        words.log_out
    );
    let _ = writeln!(
        page,
        "<form class=\"filters\" method=\"get\" action=\"/report\">\n<fieldset><legend>{}</legend>\n\
         <input type=\"hidden\" name=\"lang\" value=\"{}\">\n\
         <label>{}<input type=\"date\" name=\"from\" value=\"{}\"></label>\n\
         <label>{}<input type=\"date\" name=\"to\" value=\"{}\"></label>",
        words.filters,
        words.lang,
        words.from,
        filter.from.map(|d| d.to_string()).unwrap_or_default(),
        words.to,
        filter.to.map(|d| d.to_string()).unwrap_or_default(),
    );
    options(
        page,
        "organization",
        words.organization,
        context.organizations,
        filter.organization.as_deref(),
        words,
    );
    options(
        page,
        "topic",
        words.topic,
        context.topics,
        filter.topic.as_deref(),
        words,
    );
    options(
        page,
        "child_age_group",
        words.age_group,
        context.age_groups,
        filter.child_age_group.as_deref(),
        words,
    );
    let _ = writeln!(
        page,
        "<button type=\"submit\">{}</button>\n</fieldset>\n</form>\n<p class=\"print-hint\">{}</p>\n</header>",
        words.apply, words.print
    );
}

fn summary(page: &mut String, report: &Report, words: &Words) {
    let category = &report.agreement.overall.category;
    let rate = |rate: &super::Rate| {
        format!(
            "{} {}{}",
            percent_text(rate.percent, words),
            words.complete,
            interval(rate.ci95, 1, words)
        )
    };
    // The data attributes carry the exact counts and percentages for
    // scripts and tests, and the text shows them rounded.
    let figure = |name: &str, rate: &super::Rate| {
        format!(
            "data-figure=\"{name}\" data-count=\"{}\" data-of=\"{}\"{}",
            rate.count,
            rate.of,
            data_percent(rate.percent)
        )
    };
    let _ = writeln!(
        page,
        "<section id=\"summary\">\n<h2>{}</h2>\n<dl class=\"figures\">\n\
         <div data-figure=\"chats\" data-count=\"{}\"><dt>{}</dt><dd>{}</dd></div>\n\
         <div {}><dt>{}</dt><dd>{} · {}</dd></div>\n\
         <div {}><dt>{}</dt><dd>{} · {}</dd></div>\n\
         <div {}><dt>{}</dt><dd>{} · {}</dd></div>\n\
         <div data-figure=\"category-agreement\" data-count=\"{}\" data-of=\"{}\"{}><dt>{}</dt>\
         <dd>{}{} · {} {} {} {}</dd></div>\n</dl>\n<p class=\"explain\">{}</p>\n</section>",
        words.summary,
        report.chats,
        words.chats,
        report.chats,
        figure("parent-complete", &report.rates.parent),
        words.parents,
        report.questionnaires.parent.complete,
        rate(&report.rates.parent),
        figure("professional-complete", &report.rates.professional),
        words.professionals,
        report.questionnaires.professional.complete,
        rate(&report.rates.professional),
        figure("pairs", &report.rates.pairs),
        words.pairs,
        report.pairs,
        percent_text(report.rates.pairs.percent, words),
        category.agreeing,
        category.pairs,
        data_percent(category.percent),
        words.category_agreement,
        percent_text(category.percent, words),
        interval(category.ci95, 1, words),
        category.agreeing,
        words.of,
        category.pairs,
        words.pairs_unit,
        words.summary_explained
    );
}

/// Per item, the parent's and the nurse's answers as diverging stacked bars.
fn items_chart(page: &mut String, report: &Report, lang: Lang, words: &Words) {
    let _ = writeln!(page, "<section id=\"items\">\n<h2>{}</h2>", words.items_title);
    let _ = writeln!(page, "<p class=\"explain\">{}</p>", words.items_explained);
    let pairs = report.items.first().map(|item| counts_total(&item.parent)).unwrap_or(0);
    if pairs == 0 {
        let _ = writeln!(page, "<p>{}</p>\n</section>", words.no_pairs);
        return;
    }

    let elements = Instrument::get().items(Role::Parent, lang);
    let (label_width, centre, half) = (250.0, 390.0, 330.0);
    let bar = 14.0;
    let row = 2.0 * bar + 12.0;
    let height = 40.0 + row * report.items.len() as f64;
    let _ = writeln!(
        page,
        "<svg class=\"chart items\" viewBox=\"0 0 800 {height}\" role=\"img\" aria-labelledby=\"items-title\" \
         aria-describedby=\"items-desc\"><title id=\"items-title\">{}</title>",
        words.items_title
    );
    legend(page, words, label_width, 12.0);
    // Drawn before the bars, so the bars cover it and it does not strike
    // through the counts printed on them.
    let _ = write!(
        page,
        "<line class=\"axis\" x1=\"{centre}\" y1=\"28\" x2=\"{centre}\" y2=\"{}\"/>",
        height - 4.0
    );
    let mut sentences = Vec::new();
    for (index, item) in report.items.iter().enumerate() {
        let y = 34.0 + row * index as f64;
        let element = elements.get(index).map(|text| text.element).unwrap_or("");
        let _ = write!(
            page,
            "<text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}. {}</text>",
            label_width - 8.0,
            y + bar + 4.0,
            item.number,
            escape(element)
        );
        for (offset, counts, role) in [
            (0.0, &item.parent, Role::Parent),
            (bar + 2.0, &item.professional, Role::Professional),
        ] {
            let place = BarPlace {
                y: y + offset,
                height: bar,
                centre,
                half,
            };
            let label = format!(
                "{} {} ({}), {}",
                words.item,
                item.number,
                escape(element),
                role_word(words, role)
            );
            sentences.push(diverging_bar(page, counts, &place, item.number, role, &label, words));
        }
    }
    description(page, "items-desc", &sentences);
    page.push_str("</svg>\n</section>\n");
}

fn counts_total(counts: &RatingCounts) -> u64 {
    counts.insufficient + counts.sufficient + counts.good
}

fn legend(page: &mut String, words: &Words, x: f64, y: f64) {
    for (index, label) in words.ratings.iter().enumerate() {
        let left = x + 150.0 * index as f64;
        let _ = write!(
            page,
            "<rect class=\"r{index}\" x=\"{left}\" y=\"{}\" width=\"12\" height=\"12\"/>\
             <text class=\"label\" x=\"{}\" y=\"{}\">{label}</text>",
            y - 10.0,
            left + 16.0,
            y
        );
    }
}

/// Position of one diverging bar in the items chart, in SVG units: its top,
/// its height, the x of the centre line, and the width of the whole bar.
struct BarPlace {
    y: f64,
    height: f64,
    centre: f64,
    half: f64,
}

/// Draws one role's rating counts for one item and returns the sentence that
/// describes them, `label` followed by the count per rating.
fn diverging_bar(
    page: &mut String,
    counts: &RatingCounts,
    place: &BarPlace,
    item: u8,
    role: Role,
    label: &str,
    words: &Words,
) -> String {
    let sentence = format!("{label}: {}", counts_text(words, counts));
    let total = counts_total(counts);
    if total == 0 {
        return sentence;
    }
    let scale = place.half / total as f64;
    let insufficient = counts.insufficient as f64 * scale;
    let sufficient = counts.sufficient as f64 * scale;
    let good = counts.good as f64 * scale;
    let left = place.centre - sufficient / 2.0 - insufficient;
    let segments = [
        (0, left, insufficient, counts.insufficient),
        (1, place.centre - sufficient / 2.0, sufficient, counts.sufficient),
        (2, place.centre + sufficient / 2.0, good, counts.good),
    ];
    let _ = write!(
        page,
        "<g data-item=\"{item}\" data-role=\"{}\" data-insufficient=\"{}\" \
         data-sufficient=\"{}\" data-good=\"{}\"><title>{sentence}</title>",
        role.as_str(),
        counts.insufficient,
        counts.sufficient,
        counts.good
    );
    for (class, x, width, count) in segments {
        if width <= 0.0 {
            continue;
        }
        let rating = Rating::ALL[class].as_str();
        let _ = write!(
            page,
            "<rect class=\"r{class}\" data-rating=\"{rating}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{width:.1}\" height=\"{}\"/>",
            place.y, place.height
        );
        if width >= 22.0 {
            let _ = write!(
                page,
                "<text class=\"count c{class}\" data-rating=\"{rating}\" x=\"{:.1}\" y=\"{:.1}\" \
                 text-anchor=\"middle\">{count}</text>",
                x + width / 2.0,
                place.y + place.height - 3.0
            );
        }
    }
    page.push_str("</g>");
    sentence
}

fn category_section(page: &mut String, report: &Report, words: &Words) {
    let _ = writeln!(page, "<section id=\"agreement\">\n<h2>{}</h2>", words.heatmap_title);
    let _ = writeln!(page, "<p class=\"explain\">{}</p>", words.heatmap_explained);
    heat_map(page, &report.agreement.overall.category.table, words, "heat-category");
    let _ = writeln!(
        page,
        "<h2>{}</h2>\n<p class=\"explain\">{}</p>",
        words.coefficients_title, words.coefficients_explained
    );
    let _ = write!(page, "<table class=\"coefficients\"><thead><tr><th></th>");
    for name in words.coefficient_names {
        let _ = write!(page, "<th>{name}</th>");
    }
    page.push_str("</tr></thead><tbody>");
    for (name, table) in [
        (words.category_table, &report.agreement.category_coefficients),
        (words.pooled_table, &report.agreement.pooled),
    ] {
        coefficient_row(page, name, table, words);
    }
    let _ = writeln!(
        page,
        "</tbody></table>\n<p class=\"explain\">{}: bootstrap, {} × {}.</p>\n</section>",
        words.interval, report.bootstrap.resamples, report.bootstrap.unit
    );
}

fn coefficient_row(page: &mut String, name: &str, table: &TableAgreement, words: &Words) {
    let _ = write!(
        page,
        "<tr><th>{name} (n = {})</th><td>{}</td><td>{}</td>",
        table.n,
        percent_text(table.percent, words),
        percent_text(table.chance, words)
    );
    for coefficient in [
        &table.kappa,
        &table.kappa_max,
        &table.ac1,
        &table.alpha_ordinal,
        &table.mean_difference,
    ] {
        let _ = write!(
            page,
            "<td>{}<span class=\"ci\">{}</span></td>",
            decimal(coefficient.value, words),
            interval(coefficient.ci95, 2, words)
        );
    }
    page.push_str("</tr>");
}

/// The 3×3 parent × nurse table as a heat map with counts.
fn heat_map(page: &mut String, table: &[[u64; 3]; 3], words: &Words, id: &str) {
    let max = table.iter().flatten().copied().max().unwrap_or(0).max(1);
    let (left, top, size) = (150.0, 50.0, 90.0);
    let _ = write!(
        page,
        "<svg class=\"chart heat\" viewBox=\"0 0 460 360\" role=\"img\" aria-labelledby=\"{id}\" \
         aria-describedby=\"{id}-desc\"><title id=\"{id}\">{}</title>\
         <text class=\"label\" x=\"{}\" y=\"18\" text-anchor=\"middle\">{}</text>\
         <text class=\"label\" x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">{}</text>",
        words.heatmap_title,
        left + 1.5 * size,
        words.columns_professional,
        top + 1.5 * size,
        top + 1.5 * size,
        words.rows_parent
    );
    for (index, rating) in words.ratings.iter().enumerate() {
        let _ = write!(
            page,
            "<text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{rating}</text>\
             <text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{rating}</text>",
            left + size * (index as f64 + 0.5),
            top - 8.0,
            left - 8.0,
            top + size * (index as f64 + 0.5) + 4.0
        );
    }
    let mut sentences = Vec::new();
    for (row, counts) in table.iter().enumerate() {
        for (column, count) in counts.iter().enumerate() {
            let level = if *count == 0 { 0 } else { 1 + (count * 4 / max).min(4) };
            let diagonal = if row == column { " diagonal" } else { "" };
            let sentence = format!(
                "{} {}, {} {}: {count} {}",
                capitalized(words.rows_parent),
                words.ratings[row],
                words.columns_professional,
                words.ratings[column],
                words.pairs_unit
            );
            let _ = write!(
                page,
                "<g data-parent=\"{}\" data-professional=\"{}\" data-count=\"{count}\">\
                 <title>{sentence}</title>\
                 <rect class=\"h{level}{diagonal}\" x=\"{}\" y=\"{}\" width=\"{size}\" height=\"{size}\"/>\
                 <text class=\"cell t{level}\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{count}</text></g>",
                Rating::ALL[row].as_str(),
                Rating::ALL[column].as_str(),
                left + size * column as f64,
                top + size * row as f64,
                left + size * (column as f64 + 0.5),
                top + size * (row as f64 + 0.5) + 6.0
            );
            sentences.push(sentence);
        }
    }
    description(page, &format!("{id}-desc"), &sentences);
    page.push_str("</svg>\n");
}

fn funnel_section(page: &mut String, report: &Report, words: &Words) {
    let _ = writeln!(
        page,
        "<section id=\"funnel\">\n<h2>{}</h2>\n<p class=\"explain\">{}</p>",
        words.funnel_title, words.funnel_explained
    );
    for (funnel, role, role_name) in [
        (&report.questionnaires.parent, Role::Parent, words.parents),
        (
            &report.questionnaires.professional,
            Role::Professional,
            words.professionals,
        ),
    ] {
        funnel_chart(page, funnel, role, role_name, words);
    }
    page.push_str("</section>\n");
}

/// Names of the funnel's stages in `data-stage`, in the order drawn.
const STAGE_KEYS: [&str; 7] = [
    "invited",
    "opened",
    "started",
    "item_1",
    "item_11",
    "complete",
    "submitted",
];

fn funnel_chart(page: &mut String, funnel: &Funnel, role: Role, role_name: &str, words: &Words) {
    let stages = [
        funnel.invited,
        funnel.opened,
        funnel.started,
        funnel.items_answered[0],
        funnel.items_answered[10],
        funnel.complete,
        funnel.submitted,
    ];
    let (label_width, width, bar, gap) = (130.0, 520.0, 20.0, 6.0);
    let height = 30.0 + (bar + gap) * stages.len() as f64;
    let _ = write!(
        page,
        "<svg class=\"chart funnel\" viewBox=\"0 0 800 {height}\" data-role=\"{role}\" role=\"img\" \
         aria-label=\"{}\" aria-describedby=\"funnel-{role}-desc\"><text class=\"heading\" x=\"0\" y=\"16\">{}</text>",
        escape(role_name),
        escape(role_name),
        role = role.as_str()
    );
    let invited = funnel.invited.max(1) as f64;
    let mut sentences = Vec::new();
    for (index, ((count, stage), key)) in stages.iter().zip(words.stages).zip(STAGE_KEYS).enumerate() {
        let y = 26.0 + (bar + gap) * index as f64;
        let length = (*count as f64 / invited * width).max(if *count > 0 { 1.0 } else { 0.0 });
        let share = if funnel.invited > 0 {
            localized(
                format!("{:.1}%", *count as f64 * 100.0 / funnel.invited as f64),
                words.lang,
            )
        } else {
            "–".into()
        };
        let sentence = format!(
            "{}, {stage}: {count} {} {} ({share})",
            escape(role_name),
            words.of,
            funnel.invited
        );
        let _ = write!(
            page,
            "<g data-stage=\"{key}\" data-count=\"{count}\"><title>{sentence}</title>\
             <text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{stage}</text>\
             <rect class=\"stage\" x=\"{label_width}\" y=\"{y}\" width=\"{length:.1}\" height=\"{bar}\"/>\
             <text class=\"label\" x=\"{:.1}\" y=\"{}\">{count} ({share})</text></g>",
            label_width - 8.0,
            y + bar - 5.0,
            label_width + length + 6.0,
            y + bar - 5.0
        );
        sentences.push(sentence);
    }
    description(page, &format!("funnel-{}-desc", role.as_str()), &sentences);
    page.push_str("</svg>\n");
}

fn trend_section(page: &mut String, report: &Report, words: &Words) {
    let weeks = &report.breakdowns.iso_week;
    let _ = writeln!(
        page,
        "<section id=\"trend\">\n<h2>{}</h2>\n<p class=\"explain\">{}</p>",
        words.trend_title, words.trend_explained
    );
    if weeks.is_empty() {
        let _ = writeln!(page, "<p>{}</p>\n</section>", words.no_pairs);
        return;
    }
    let (left, top, plot_height, width) = (50.0, 20.0, 200.0, 700.0);
    let step = width / weeks.len() as f64;
    let max_pairs = weeks
        .iter()
        .filter_map(|cell| cell.figures.as_ref().map(|figures| figures.pairing.both))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let _ = write!(
        page,
        "<svg class=\"chart trend\" viewBox=\"0 0 800 {}\" role=\"img\" aria-label=\"{}\" \
         aria-describedby=\"trend-desc\">\
         <line class=\"axis\" x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>\
         <text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"end\">100%</text>\
         <text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"end\">0%</text>",
        top + plot_height + 60.0,
        words.trend_title,
        top + plot_height,
        left + width,
        top + plot_height,
        left - 4.0,
        top + 4.0,
        left - 4.0,
        top + plot_height
    );
    let mut points = Vec::new();
    let mut sentences = Vec::new();
    for (index, cell) in weeks.iter().enumerate() {
        let x = left + step * index as f64;
        let centre = x + step / 2.0;
        let label = escape(cell.value.as_deref().unwrap_or(words.not_given));
        let _ = write!(
            page,
            "<text class=\"label small\" x=\"{centre:.1}\" y=\"{}\" text-anchor=\"end\" transform=\"rotate(-45 {centre:.1} {})\">{label}</text>",
            top + plot_height + 14.0,
            top + plot_height + 14.0,
        );
        // A suppressed week is marked, so that it does not read as a week without pairs.
        let Some(figures) = &cell.figures else {
            let sentence = format!("{label}: {}", words.suppressed_cell);
            let _ = write!(
                page,
                "<g data-week=\"{label}\" data-suppressed=\"true\"><title>{sentence}</title>\
                 <text class=\"label small muted\" x=\"{centre:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text></g>",
                top + plot_height - 6.0,
                words.suppressed_cell
            );
            sentences.push(sentence);
            continue;
        };
        let pairs = figures.pairing.both;
        let agreement = &figures.category;
        let bar_height = pairs as f64 / max_pairs * plot_height * 0.6;
        let mut sentence = format!("{label}: {pairs} {}", words.pairs_unit);
        let _ = write!(
            page,
            "<g data-week=\"{label}\" data-pairs=\"{pairs}\" data-agreeing=\"{}\"{}>\
             <rect class=\"week\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bar_height:.1}\"><title>{sentence}</title></rect>",
            agreement.agreeing,
            data_percent(agreement.percent),
            x + step * 0.2,
            top + plot_height - bar_height,
            step * 0.6,
        );
        if let Some(percent) = agreement.percent {
            let y = top + plot_height - percent / 100.0 * plot_height;
            points.push(format!("{centre:.1},{y:.1}"));
            sentence = format!(
                "{label}: {} {} {} {} {} ({})",
                agreement.agreeing,
                words.of,
                agreement.pairs,
                words.pairs_unit,
                words.agree,
                percent_text(Some(percent), words)
            );
            let _ = write!(
                page,
                "<circle class=\"point\" cx=\"{centre:.1}\" cy=\"{y:.1}\" r=\"4\"><title>{sentence}</title></circle>"
            );
        }
        page.push_str("</g>");
        sentences.push(sentence);
    }
    if points.len() > 1 {
        let _ = write!(page, "<polyline class=\"line\" points=\"{}\"/>", points.join(" "));
    }
    description(page, "trend-desc", &sentences);
    page.push_str("</svg>\n</section>\n");
}

fn breakdown_section(page: &mut String, report: &Report, words: &Words) {
    let _ = writeln!(
        page,
        "<section id=\"breakdowns\">\n<h2>{}</h2>\n<p class=\"explain\">{} (minimum: {})</p>",
        words.breakdown_title, words.breakdown_explained, report.breakdowns.min_cell_size
    );
    for (title, cells) in [
        (words.organization, &report.breakdowns.organization),
        (words.topic, &report.breakdowns.topic),
        (words.age_group, &report.breakdowns.child_age_group),
    ] {
        breakdown_table(page, title, cells, words);
    }
    page.push_str("</section>\n");
}

fn breakdown_table(page: &mut String, title: &str, cells: &[Cell], words: &Words) {
    let _ = write!(
        page,
        "<table class=\"breakdown\"><caption>{title}</caption><thead><tr><th></th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        words.chats, words.parents, words.professionals, words.pairs, words.category_agreement
    );
    for cell in cells {
        let label = cell.value.as_deref().unwrap_or(words.not_given);
        let _ = write!(page, "<tr><th>{}</th>", escape(label));
        match &cell.figures {
            None => {
                let _ = write!(
                    page,
                    "<td colspan=\"5\" class=\"hidden\">{}</td>",
                    words.suppressed_cell
                );
            }
            Some(figures) => {
                let _ = write!(
                    page,
                    "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td>",
                    figures.chats,
                    percent_text(figures.rates.parent.percent, words),
                    percent_text(figures.rates.professional.percent, words),
                    figures.pairing.both,
                    percent_text(figures.category.percent, words),
                    interval(figures.category.ci95, 1, words)
                );
            }
        }
        page.push_str("</tr>");
    }
    page.push_str("</tbody></table>\n");
}

fn odds_section(page: &mut String, report: &Report, words: &Words) {
    let Some(odds) = &report.pairing_odds_ratio else { return };
    let _ = writeln!(
        page,
        "<section id=\"pairing\">\n<h2>{}</h2>\n<p class=\"figure\">odds ratio {}{}</p>\n<p class=\"explain\">{}</p>\n</section>",
        words.odds_title,
        odds.value
            .map(|v| localized(format!("{v:.2}"), words.lang))
            .unwrap_or_else(|| "–".into()),
        interval(odds.ci95, 2, words),
        words.odds_explained
    );
}

/// The login page: a form that exchanges an admin token for a session.
pub fn login_page(lang: Lang, stylesheet: &str, problem: Option<&str>) -> String {
    let (title, label, button, hint) = match lang {
        Lang::Nl => (
            "Online alliantie: aanmelden",
            "Beheertoken",
            "Aanmelden",
            "Plak het beheertoken. Daarna blijft u 8 uur aangemeld in deze browser.",
        ),
        Lang::En => (
            "Online alliance: log in",
            "Admin token",
            "Log in",
            "Paste the admin token. You then stay logged in for 8 hours in this browser.",
        ),
    };
    let problem = problem
        .map(|text| format!("<p class=\"notice\">{}</p>\n", escape(text)))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title}</title>\n\
         <link rel=\"stylesheet\" href=\"{}\">\n</head>\n<body>\n<main class=\"login\">\n<h1>{title}</h1>\n{problem}\
         <form method=\"post\" action=\"/report/login\">\n<input type=\"hidden\" name=\"lang\" value=\"{}\">\n\
         <label>{label}<input type=\"password\" name=\"token\" autocomplete=\"off\" required></label>\n\
         <button type=\"submit\">{button}</button>\n</form>\n<p class=\"explain\">{hint}</p>\n</main>\n</body>\n</html>\n",
        lang.as_str(),
        escape(stylesheet),
        lang.as_str()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn heat_map_shows_counts() {
        let mut page = String::new();
        heat_map(&mut page, &[[0, 0, 0], [0, 20, 18], [0, 65, 115]], &NL, "t");
        for count in ["20", "18", "65", "115"] {
            assert!(page.contains(&format!(">{count}</text>")), "{count} missing");
        }
        assert!(
            page.contains("<g data-parent=\"good\" data-professional=\"sufficient\" data-count=\"65\">"),
            "cells carry their ratings and count"
        );
        assert!(
            page.contains("Ouder goed, jeugdverpleegkundige voldoende: 65 paren."),
            "the description gives each count"
        );
        assert!(!page.contains("style="), "no inline style");
    }
}
