//! The dashboard's error pages for a query that a page cannot use, in Dutch
//! and then in English: what is wrong, how to fix it, and a link to the same
//! page without filters.

use std::fmt::Write;

use super::FilterError;
use super::html::{dimension_name, escape, page_start};
use crate::questionnaire::Lang;
use crate::routes::page_query::QueryError;

/// Maximum length, in characters, of a query value that an error page repeats.
const MAX_SHOWN_VALUE_CHARS: usize = 60;

/// Formats `name=value` as the reader typed it in the address, escaped, with
/// a long value cut off.
fn query_pair(name: &str, value: &str) -> String {
    let mut shortened: String = value.chars().take(MAX_SHOWN_VALUE_CHARS).collect();
    if value.chars().count() > MAX_SHOWN_VALUE_CHARS {
        shortened.push('…');
    }
    format!("<code>{}={}</code>", escape(name), escape(&shortened))
}

/// Explains an invalid filter in `lang`: what is wrong, and how to fix it.
fn filter_problem(error: &FilterError, lang: Lang) -> (String, String) {
    match error {
        FilterError::InvalidDate { parameter, value } => {
            let received = query_pair(parameter.as_str(), value);
            let example = query_pair(parameter.as_str(), "2022-07-01");
            let name = dimension_name(*parameter, lang);
            match lang {
                Lang::Nl => (
                    format!("De {name} in het adres, {received}, is geen datum."),
                    format!(
                        "Schrijf de datum als jaar-maand-dag (JJJJ-MM-DD), bijvoorbeeld {example}. \
                         Verbeter het adres, of open deze pagina zonder filters en kies de datums opnieuw."
                    ),
                ),
                Lang::En => (
                    format!("The {name} in the address, {received}, is not a date."),
                    format!(
                        "Write the date as year-month-day (YYYY-MM-DD), for example {example}. \
                         Correct the address, or open this page without filters and choose the dates again."
                    ),
                ),
            }
        }
        FilterError::FromAfterTo { from, to } => {
            let from = query_pair("from", &from.to_string());
            let to = query_pair("to", &to.to_string());
            match lang {
                Lang::Nl => (
                    format!("De begindatum ({from}) ligt na de einddatum ({to})."),
                    "Kies een begindatum op of vóór de einddatum, bijvoorbeeld door de twee datums om te wisselen. \
                     Of open deze pagina zonder filters."
                        .to_string(),
                ),
                Lang::En => (
                    format!("The start date ({from}) is after the end date ({to})."),
                    "Choose a start date on or before the end date, for example by swapping the two dates. \
                     Or open this page without filters."
                        .to_string(),
                ),
            }
        }
    }
}

/// Maximum number of values of a repeated parameter that an error page lists.
const MAX_SHOWN_VALUES: usize = 3;

/// Explains, in `lang`, a query parameter that the page cannot read: what is
/// wrong, and how to fix it.
fn query_problem(error: &QueryError, lang: Lang) -> (String, String) {
    match error {
        QueryError::Repeated { parameter, values } => {
            let name = format!("<code>{}</code>", escape(parameter));
            let mut shown_pairs: Vec<String> = values
                .iter()
                .take(MAX_SHOWN_VALUES)
                .map(|value| query_pair(parameter, value))
                .collect();
            if values.len() > MAX_SHOWN_VALUES {
                shown_pairs.push("…".into());
            }
            let listed = shown_pairs.join(", ");
            let count = values.len();
            match lang {
                Lang::Nl => (
                    format!("Het adres geeft {name} {count} keer: {listed}."),
                    format!(
                        "Geef {name} één keer. Verbeter het adres, \
                         of open deze pagina zonder filters en kies opnieuw."
                    ),
                ),
                Lang::En => (
                    format!("The address gives {name} {count} times: {listed}."),
                    format!(
                        "Give {name} once. Correct the address, \
                         or open this page without filters and choose again."
                    ),
                ),
            }
        }
        QueryError::NotUtf8 { parameter, raw } => {
            let received = query_pair(parameter, raw);
            let example = "<code>%C3%A2</code>";
            match lang {
                Lang::Nl => (
                    format!(
                        "In het adres is {received} geen geldige tekst, want na het decoderen \
                         van de procentcodes (%..) is het geen UTF-8."
                    ),
                    format!(
                        "Schrijf tekens buiten ASCII in UTF-8, bijvoorbeeld â als {example}. \
                         Verbeter het adres, of open deze pagina zonder filters en kies opnieuw."
                    ),
                ),
                Lang::En => (
                    format!(
                        "In the address, {received} is not valid text, because once percent-decoded it is not UTF-8."
                    ),
                    format!(
                        "Write characters outside ASCII in UTF-8, for example â as {example}. \
                         Correct the address, or open this page without filters and choose again."
                    ),
                ),
            }
        }
    }
}

/// Renders the page for a dashboard request with an invalid filter: what is
/// wrong and how to fix it, in Dutch and then in English, each with a link
/// to `unfiltered_path` (such as `/report`) without filters.
pub fn filter_error_page(error: &FilterError, stylesheet: &str, unfiltered_path: &str) -> String {
    let headings = ["Dit filter klopt niet", "This filter is not valid"];
    let page_title = "Filter klopt niet · Invalid filter";
    message_page(page_title, headings, stylesheet, unfiltered_path, |lang| {
        filter_problem(error, lang)
    })
}

/// Renders the page for a dashboard request whose query string the page
/// cannot read, such as a repeated parameter, in the layout of
/// [`filter_error_page`].
pub fn query_error_page(error: &QueryError, stylesheet: &str, unfiltered_path: &str) -> String {
    let headings = ["Dit adres klopt niet", "This address is not valid"];
    let page_title = "Adres klopt niet · Invalid address";
    message_page(page_title, headings, stylesheet, unfiltered_path, |lang| {
        query_problem(error, lang)
    })
}

/// Renders a Dutch section and then an English one, each with its heading
/// from `headings`, the problem and fix that `explain` returns for its
/// language, and a link to `unfiltered_path` in that language.
fn message_page(
    page_title: &str,
    headings: [&str; 2],
    stylesheet: &str,
    unfiltered_path: &str,
    explain: impl Fn(Lang) -> (String, String),
) -> String {
    let mut page = page_start("nl", page_title, stylesheet);
    page.push_str("<main class=\"message\">\n");
    let sections = [
        (Lang::Nl, headings[0], "Open deze pagina zonder filters"),
        (Lang::En, headings[1], "Open this page without filters"),
    ];
    for (lang, heading, link) in sections {
        let (problem, fix) = explain(lang);
        let (open, close, level) = match lang {
            Lang::Nl => ("", "", "h1"),
            Lang::En => ("<section lang=\"en\">\n", "</section>\n", "h2"),
        };
        let _ = write!(
            page,
            "{open}<{level}>{heading}</{level}>\n<p class=\"notice\">{problem}</p>\n<p>{fix}</p>\n\
             <p><a href=\"{}?lang={}\">{link}</a></p>\n{close}",
            escape(unfiltered_path),
            lang.as_str()
        );
    }
    page.push_str("</main>\n</body>\n</html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Dimension;

    #[test]
    fn filter_error_page_is_bilingual() {
        let error = FilterError::InvalidDate {
            parameter: Dimension::From,
            value: "<bad>".into(),
        };
        let page = filter_error_page(&error, "/report/dashboard.css", "/report");
        assert!(page.contains("<html lang=\"nl\">"), "Dutch is the page's language");
        assert!(page.contains("De begindatum in het adres, <code>from=&lt;bad&gt;</code>, is geen datum."));
        assert!(
            page.contains("<section lang=\"en\">"),
            "the English part is marked as English"
        );
        assert!(page.contains("The start date in the address, <code>from=&lt;bad&gt;</code>, is not a date."));
        assert!(
            page.contains("<code>from=2022-07-01</code>"),
            "an example of the expected format"
        );
        assert!(page.contains("<a href=\"/report?lang=nl\">"));
        assert!(page.contains("<a href=\"/report?lang=en\">"));
        assert!(page.find("geen datum") < page.find("not a date"), "Dutch comes first");
        assert!(!page.contains("style="), "no inline style");
    }

    #[test]
    fn query_error_page_names_parameter() {
        let error = QueryError::Repeated {
            parameter: "from",
            values: vec!["2022-01-01".into(), "<2022-02-01>".into()],
        };
        let page = query_error_page(&error, "/report/dashboard.css", "/report/peer-review");
        assert!(page.contains("<html lang=\"nl\">"), "Dutch is the page's language");
        assert!(page.contains(
            "Het adres geeft <code>from</code> 2 keer: <code>from=2022-01-01</code>, <code>from=&lt;2022-02-01&gt;</code>."
        ));
        assert!(page.contains("Geef <code>from</code> één keer."));
        assert!(page.contains("<section lang=\"en\">"));
        assert!(page.contains("Give <code>from</code> once."));
        assert!(page.contains("<a href=\"/report/peer-review?lang=nl\">"));
        assert!(page.contains("<a href=\"/report/peer-review?lang=en\">"));
        assert!(page.find("één keer") < page.find("once"), "Dutch comes first");
    }

    #[test]
    fn query_error_page_lists_few_values() {
        let error = QueryError::Repeated {
            parameter: "topic",
            values: (1..=5).map(|number| number.to_string()).collect(),
        };
        let page = query_error_page(&error, "/report/dashboard.css", "/report");
        assert!(page.contains(
            "<code>topic</code> 5 keer: <code>topic=1</code>, <code>topic=2</code>, <code>topic=3</code>, …."
        ));
        assert!(!page.contains("topic=4"), "values after the third are left out");
    }

    #[test]
    fn query_error_page_explains_utf8() {
        let error = QueryError::NotUtf8 {
            parameter: "organization",
            raw: "GGD%E2n".into(),
        };
        let page = query_error_page(&error, "/report/dashboard.css", "/report");
        assert!(page.contains("In het adres is <code>organization=GGD%E2n</code> geen geldige tekst"));
        assert!(page.contains("In the address, <code>organization=GGD%E2n</code> is not valid text"));
        assert!(page.contains("â als <code>%C3%A2</code>"));
    }
}
