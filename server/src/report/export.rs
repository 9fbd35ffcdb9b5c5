//! Research exports: CSV in three layouts, each with a codebook and an SPSS
//! syntax file generated from the same column list.
//!
//! - `wide`: one row per chat, both roles' answers side by side.
//! - `long`: one row per chat × role × item, for every started response.
//! - `funnel`: one row per stratum (overall, then each breakdown cell),
//!   suppressed as the report's breakdowns are.
//!
//! Chats appear only under their stored pseudonym. Comments are written only
//! when asked for. Dates are ISO 8601: `ended_date` is the Europe/Amsterdam
//! day, times are RFC 3339 in UTC. The Excel variant uses semicolons, decimal
//! commas, CRLF line ends and a UTF-8 byte-order mark, as Dutch Excel expects.

use std::fmt;
use std::io::{self, Write};

use super::breakdown::Cell;
use super::differencing::{Relaxations, SuppressionReason};
use super::{ALL_ITEMS, Funnel, Rate, Report, ReportFilter, ReportOptions, build_with, calendar, category};
use crate::questionnaire::{INSTRUMENT_VERSION, ITEM_COUNT, Instrument, Lang, Role};
use crate::routes::questionnaire::time_text;
use crate::store::records::{ChatRecord, InvitationRecord, Millis, Response, ResponseStatus};
use crate::store::{ChatEntry, Store, StoreError};

/// The three export layouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Wide,
    Long,
    Funnel,
}

impl Layout {
    /// Parses `wide`, `long` or `funnel`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "wide" => Ok(Layout::Wide),
            "long" => Ok(Layout::Long),
            "funnel" => Ok(Layout::Funnel),
            other => Err(format!("layout {other:?} is not one of \"wide\", \"long\", \"funnel\"")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Wide => "wide",
            Layout::Long => "long",
            Layout::Funnel => "funnel",
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Returns the usual file name of an export's data, e.g. `alliance-wide.csv` or
/// `alliance-wide-excel.csv`.
pub fn file_name(layout: Layout, excel: bool) -> String {
    if excel {
        format!("alliance-{layout}-excel.csv")
    } else {
        format!("alliance-{layout}.csv")
    }
}

/// What to export and how.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    pub layout: Layout,
    /// Semicolons, decimal commas, CRLF and a byte-order mark.
    pub excel: bool,
    /// Adds the free-text comments (wide layout only).
    pub include_comments: bool,
    /// Smallest number of matched pairs a filtered export or a funnel cell may rest on.
    pub min_cell_size: u64,
}

/// Why an export was not written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the export failed: {0}")]
    Io(#[from] io::Error),
    /// A filtered export that small-cell suppression forbids.
    #[error("{}; widen the filter or export without one", reason.message(*min_cell_size))]
    Suppressed {
        reason: SuppressionReason,
        min_cell_size: u64,
    },
}

/// Width of a comment column in bytes: UTF-8 takes up to 4 bytes a
/// character, and the Excel layout may put a quote before the comment.
const COMMENT_BYTES: u16 = 4 * crate::routes::questionnaire::MAX_COMMENT_CHARS as u16 + 1;

/// How a column's values are written and read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Free text of at most this many bytes.
    Text(u16),
    /// A whole number.
    Integer,
    /// A number with decimals; a decimal comma in the Excel variant.
    Decimal,
    /// A calendar day, `YYYY-MM-DD`.
    Date,
    /// An RFC 3339 time in UTC, read as text by SPSS.
    Time,
}

/// One column of an export, with what its codebook says about it.
#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub label: String,
    pub kind: Kind,
    /// Value labels: code and meaning.
    pub values: &'static [(&'static str, &'static str)],
}

const RATING_VALUES: &[(&str, &str)] = &[
    ("0", "insufficient (onvoldoende)"),
    ("1", "sufficient (voldoende)"),
    ("2", "good (goed)"),
];
const FLAG_VALUES: &[(&str, &str)] = &[("0", "no"), ("1", "yes")];
const NO_VALUES: &[(&str, &str)] = &[];

fn column(name: impl Into<String>, label: impl Into<String>, kind: Kind) -> Column {
    Column {
        name: name.into(),
        label: label.into(),
        kind,
        values: NO_VALUES,
    }
}

fn labelled(
    name: impl Into<String>,
    label: impl Into<String>,
    values: &'static [(&'static str, &'static str)],
) -> Column {
    Column {
        name: name.into(),
        label: label.into(),
        kind: Kind::Integer,
        values,
    }
}

fn chat_columns() -> Vec<Column> {
    vec![
        column(
            "chat",
            "Chat pseudonym (keyed hash of the platform's chat id)",
            Kind::Text(64),
        ),
        column("ended_date", "Day the chat ended, Europe/Amsterdam", Kind::Date),
        column("iso_week", "ISO week the chat ended, Europe/Amsterdam", Kind::Text(8)),
        column(
            "organization",
            "Organization label sent by the platform",
            Kind::Text(100),
        ),
        column("topic", "Topic label sent by the platform", Kind::Text(100)),
        column(
            "child_age_group",
            "Child age group label sent by the platform",
            Kind::Text(100),
        ),
    ]
}

/// Returns the columns of `layout`, in file order.
pub fn columns(layout: Layout, include_comments: bool) -> Vec<Column> {
    match layout {
        Layout::Wide => wide_columns(include_comments),
        Layout::Long => long_columns(),
        Layout::Funnel => funnel_columns(),
    }
}

fn role_label(role: Role) -> &'static str {
    match role {
        Role::Parent => "Parent",
        Role::Professional => "Professional",
    }
}

fn wide_columns(include_comments: bool) -> Vec<Column> {
    let mut columns = chat_columns();
    columns.push(column(
        "locale",
        "Locale of the chat sent by the platform",
        Kind::Text(16),
    ));
    columns.push(labelled("eligible", "Chat was eligible for invitations", FLAG_VALUES));
    for role in Role::BOTH {
        let role_name = role_label(role);
        let prefix = role.as_str();
        columns.push(column(
            format!("{prefix}_status"),
            format!("{role_name}: response status (open, complete, submitted, declined, expired, not_invited)"),
            Kind::Text(12),
        ));
        columns.push(column(
            format!("{prefix}_lang"),
            format!("{role_name}: language of the wording answered"),
            Kind::Text(8),
        ));
        columns.push(column(
            format!("{prefix}_instrument_version"),
            format!("{role_name}: version of the questionnaire"),
            Kind::Text(16),
        ));
        for (stage, what) in [
            ("opened_at", "first opened"),
            ("completed_at", "11th item answered"),
            ("submitted_at", "submitted"),
            ("declined_at", "declined"),
        ] {
            columns.push(column(
                format!("{prefix}_{stage}"),
                format!("{role_name}: time {what}, UTC"),
                Kind::Time,
            ));
        }
        for item in 1..=ITEM_COUNT {
            columns.push(labelled(
                format!("{prefix}_item_{item:02}"),
                format!("{role_name}: item {item}"),
                RATING_VALUES,
            ));
        }
        columns.push(column(
            format!("{prefix}_items_answered"),
            format!("{role_name}: items answered, 0-11"),
            Kind::Integer,
        ));
        columns.push(labelled(
            format!("{prefix}_complete"),
            format!("{role_name}: all 11 items answered"),
            FLAG_VALUES,
        ));
        columns.push(column(
            format!("{prefix}_sum"),
            format!("{role_name}: sum of the 11 items, 0-22"),
            Kind::Integer,
        ));
        columns.push(column(
            format!("{prefix}_personal_bond_sum"),
            format!("{role_name}: sum of personal bond items 1-5, 7-9, 0-16"),
            Kind::Integer,
        ));
        columns.push(column(
            format!("{prefix}_goals_and_approach_sum"),
            format!("{role_name}: sum of goals and approach items 6, 10, 11, 0-6"),
            Kind::Integer,
        ));
        columns.push(labelled(
            format!("{prefix}_category"),
            format!("{role_name}: overall category, the median of the 11 items"),
            RATING_VALUES,
        ));
        columns.push(labelled(
            format!("{prefix}_personal_bond_category"),
            format!("{role_name}: personal bond category, the 4th of the 8 sorted items"),
            RATING_VALUES,
        ));
        columns.push(labelled(
            format!("{prefix}_goals_and_approach_category"),
            format!("{role_name}: goals and approach category, the 2nd of the 3 sorted items"),
            RATING_VALUES,
        ));
        if include_comments {
            columns.push(column(
                format!("{prefix}_comment"),
                format!("{role_name}: free-text comment"),
                Kind::Text(COMMENT_BYTES),
            ));
        }
    }
    columns.push(labelled("pair", "Both sides complete (a matched pair)", FLAG_VALUES));
    columns.push(labelled(
        "category_agree",
        "Pair: overall categories equal",
        FLAG_VALUES,
    ));
    columns.push(labelled(
        "personal_bond_category_agree",
        "Pair: personal bond categories equal",
        FLAG_VALUES,
    ));
    columns.push(labelled(
        "goals_and_approach_category_agree",
        "Pair: goals and approach categories equal",
        FLAG_VALUES,
    ));
    columns.push(column(
        "items_agreeing",
        "Pair: items with identical answers, 0-11",
        Kind::Integer,
    ));
    columns.push(labelled(
        "all_items_agree",
        "Pair: all 11 answers identical",
        FLAG_VALUES,
    ));
    columns
}

fn long_columns() -> Vec<Column> {
    let mut columns = chat_columns();
    columns.push(column("role", "Role: parent or professional", Kind::Text(12)));
    columns.push(column("item", "Item number, 1-11", Kind::Integer));
    columns.push(column(
        "subscale",
        "Subscale of the item: personal_bond or goals_and_approach",
        Kind::Text(20),
    ));
    columns.push(labelled(
        "rating",
        "Answer; empty when the item was not answered",
        RATING_VALUES,
    ));
    columns.push(column("answered_at", "Time of the answer, UTC", Kind::Time));
    columns.push(column("lang", "Language of the wording answered", Kind::Text(8)));
    columns.push(column(
        "instrument_version",
        "Version of the questionnaire",
        Kind::Text(16),
    ));
    columns.push(labelled("complete", "This role answered all 11 items", FLAG_VALUES));
    columns.push(labelled("pair", "Both sides of the chat complete", FLAG_VALUES));
    columns
}

fn funnel_columns() -> Vec<Column> {
    let mut columns = vec![
        column(
            "dimension",
            "Breakdown: overall, organization, topic, child_age_group or iso_week",
            Kind::Text(16),
        ),
        column(
            "stratum",
            "Value of the breakdown; empty for overall or a missing label",
            Kind::Text(100),
        ),
        labelled(
            "suppressed",
            "Figures hidden: fewer matched pairs than the minimum cell size, or needed to keep such a cell hidden",
            FLAG_VALUES,
        ),
        column("chats", "Eligible chats", Kind::Integer),
    ];
    for role in Role::BOTH {
        let role_name = role_label(role);
        let prefix = role.as_str();
        for (stage, what) in [
            ("invited", "invited"),
            ("opened", "opened"),
            ("started", "answered at least one item"),
        ] {
            columns.push(column(
                format!("{prefix}_{stage}"),
                format!("{role_name}: {what}"),
                Kind::Integer,
            ));
        }
        for item in 1..=ITEM_COUNT {
            columns.push(column(
                format!("{prefix}_item_{item:02}_answered"),
                format!("{role_name}: responses with item {item} answered"),
                Kind::Integer,
            ));
        }
        for (stage, what) in [
            ("complete", "all 11 items answered"),
            ("submitted", "submitted"),
            ("declined", "declined"),
            ("expired", "expired unsubmitted"),
        ] {
            columns.push(column(
                format!("{prefix}_{stage}"),
                format!("{role_name}: {what}"),
                Kind::Integer,
            ));
        }
        columns.push(column(
            format!("{prefix}_complete_percent"),
            format!("{role_name}: complete per chat, percent"),
            Kind::Decimal,
        ));
        columns.push(column(
            format!("{prefix}_complete_ci_low"),
            format!("{role_name}: complete per chat, Wilson 95% lower bound, percent"),
            Kind::Decimal,
        ));
        columns.push(column(
            format!("{prefix}_complete_ci_high"),
            format!("{role_name}: complete per chat, Wilson 95% upper bound, percent"),
            Kind::Decimal,
        ));
    }
    for (name, label) in [
        ("pairs", "Matched pairs (both complete)"),
        ("parent_only", "Only the parent complete"),
        ("professional_only", "Only the professional complete"),
        ("neither", "Neither complete"),
        ("category_agreeing", "Pairs whose overall categories are equal"),
    ] {
        columns.push(column(name, label, Kind::Integer));
    }
    for (name, label) in [
        ("pairs_percent", "Matched pairs per chat, percent"),
        ("category_percent", "Category agreement, percent of pairs"),
        ("category_ci_low", "Category agreement, Wilson 95% lower bound, percent"),
        (
            "category_ci_high",
            "Category agreement, Wilson 95% upper bound, percent",
        ),
    ] {
        columns.push(column(name, label, Kind::Decimal));
    }
    columns
}

/// Writes CSV cells: quotes where needed, separator and decimal mark by variant.
struct CsvWriter<'w> {
    out: &'w mut dyn Write,
    excel: bool,
    rows: u64,
}

impl<'w> CsvWriter<'w> {
    fn new(out: &'w mut dyn Write, excel: bool) -> io::Result<Self> {
        if excel {
            out.write_all("\u{feff}".as_bytes())?;
        }
        Ok(Self { out, excel, rows: 0 })
    }

    fn separator(&self) -> char {
        if self.excel { ';' } else { ',' }
    }

    fn write_row(&mut self, cells: &[String]) -> io::Result<()> {
        let separator = self.separator();
        let mut line = String::new();
        for (index, cell) in cells.iter().enumerate() {
            if index > 0 {
                line.push(separator);
            }
            let text = if self.excel {
                neutralize_formula(cell)
            } else {
                cell.clone()
            };
            if text.contains([separator, '"', '\n', '\r']) {
                line.push('"');
                line.push_str(&text.replace('"', "\"\""));
                line.push('"');
            } else {
                line.push_str(&text);
            }
        }
        line.push_str("\r\n");
        self.out.write_all(line.as_bytes())?;
        self.rows += 1;
        Ok(())
    }

    fn decimal(&self, value: Option<f64>) -> String {
        match value {
            Some(value) if self.excel => format!("{value}").replace('.', ","),
            Some(value) => format!("{value}"),
            None => String::new(),
        }
    }
}

/// Prefixes text that Excel would run as a formula with an apostrophe.
fn neutralize_formula(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@']) && cell.parse::<f64>().is_err() {
        format!("'{cell}")
    } else {
        cell.to_string()
    }
}

fn number(value: impl Into<u64>) -> String {
    value.into().to_string()
}

fn optional<T: ToString>(value: Option<T>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

fn flag(value: bool) -> String {
    if value { "1".into() } else { "0".into() }
}

fn label(value: &Option<String>) -> String {
    value.clone().unwrap_or_default()
}

/// Writes the export to `out` and returns the number of data rows.
pub fn write(
    store: &Store,
    filter: &ReportFilter,
    now: Millis,
    options: &ExportOptions,
    out: &mut dyn Write,
) -> Result<u64, ExportError> {
    if options.layout == Layout::Funnel {
        let report = build_with(
            store,
            filter,
            now,
            &ReportOptions {
                min_cell_size: options.min_cell_size,
                bootstrap: false,
            },
        )?;
        return write_funnel(&report, options, out);
    }

    if *filter != ReportFilter::default() {
        let min_cell_size = options.min_cell_size;
        // Purged chats are not exported, so only the live chats count.
        let relaxations = Relaxations::count(filter, &store.live_strata(now)?, false);
        if let Some(reason) = relaxations.suppression(min_cell_size) {
            return Err(ExportError::Suppressed { reason, min_cell_size });
        }
    }

    let columns = columns(options.layout, options.include_comments);
    let mut writer = CsvWriter::new(out, options.excel)?;
    let header: Vec<String> = columns.iter().map(|column| column.name.clone()).collect();
    writer.write_row(&header)?;

    for entry in store.chats() {
        let entry = entry?;
        if !filter.matches(&entry.chat) {
            continue;
        }
        let invitations = [Role::Parent, Role::Professional].map(|role| stored_invitation(&entry, role));
        let (key, chat) = (&entry.key, &entry.chat);
        match options.layout {
            Layout::Wide => write_wide_row(&mut writer, key, chat, &invitations, now, options)?,
            Layout::Long => write_long_rows(&mut writer, key, chat, &invitations)?,
            Layout::Funnel => unreachable!("handled above"),
        }
    }
    writer.out.flush()?;
    Ok(writer.rows - 1)
}

fn stored_invitation(entry: &ChatEntry, role: Role) -> Option<InvitationRecord> {
    if !entry.chat.eligible {
        return None;
    }
    entry.invitation(role).cloned()
}

fn day_and_week(chat: &ChatRecord) -> (String, String) {
    match calendar::amsterdam_date(&chat.ended_at) {
        Some(day) => (day.to_string(), day.iso_week()),
        None => (String::new(), String::new()),
    }
}

fn scores(invitation: &Option<InvitationRecord>) -> Option<[u8; ITEM_COUNT]> {
    invitation
        .as_ref()
        .and_then(|invitation| invitation.response.ratings())
        .map(|ratings| ratings.map(|rating| rating.score()))
}

fn status_text(invitation: &Option<InvitationRecord>, now: Millis) -> &'static str {
    match invitation.as_ref().map(|invitation| invitation.status(now)) {
        None => "not_invited",
        Some(ResponseStatus::Open) => "open",
        Some(ResponseStatus::Complete) => "complete",
        Some(ResponseStatus::Submitted) => "submitted",
        Some(ResponseStatus::Declined) => "declined",
        Some(ResponseStatus::Expired) => "expired",
    }
}

/// Returns the language a response was given in: the one its questionnaire was
/// last shown in, or for responses stored before that was kept, the
/// language the invitation's locale selects.
fn response_lang(invitation: Option<&InvitationRecord>) -> String {
    let Some(invitation) = invitation else {
        return String::new();
    };
    match &invitation.response.lang {
        Some(lang) => lang.clone(),
        None => Lang::from_locale(&invitation.locale).as_str().to_string(),
    }
}

fn sum_of(scores: &[u8; ITEM_COUNT], items: &[u8]) -> u64 {
    items.iter().map(|item| u64::from(scores[usize::from(*item) - 1])).sum()
}

fn write_wide_row(
    writer: &mut CsvWriter<'_>,
    key: &str,
    chat: &ChatRecord,
    invitations: &[Option<InvitationRecord>; 2],
    now: Millis,
    options: &ExportOptions,
) -> io::Result<()> {
    let instrument = Instrument::get();
    let bond = instrument.personal_bond();
    let goals = instrument.goals_and_approach();
    let (day, week) = day_and_week(chat);

    let mut cells = vec![
        key.to_string(),
        day,
        week,
        label(&chat.organization),
        label(&chat.topic),
        label(&chat.child_age_group),
        chat.locale.clone(),
        flag(chat.eligible),
    ];
    for invitation in invitations {
        let response = invitation.as_ref().map(|invitation| &invitation.response);
        let started = response.is_some_and(|response| response.is_started());
        let complete = scores(invitation);
        let time = |pick: fn(&Response) -> Option<Millis>| optional(response.and_then(pick).map(time_text));

        cells.push(status_text(invitation, now).to_string());
        cells.push(if started {
            response_lang(invitation.as_ref())
        } else {
            String::new()
        });
        cells.push(if started {
            INSTRUMENT_VERSION.to_string()
        } else {
            String::new()
        });
        cells.push(time(|response| response.opened_at));
        cells.push(time(|response| response.completed_at));
        cells.push(time(|response| response.submitted_at));
        cells.push(time(|response| response.declined_at));
        for index in 0..ITEM_COUNT {
            let answer = response.and_then(|response| response.answers[index]);
            cells.push(optional(answer.map(|answer| answer.rating.score())));
        }
        cells.push(optional(response.map(|response| response.answered())));
        cells.push(flag(complete.is_some()));
        cells.push(optional(complete.map(|s| sum_of(&s, &ALL_ITEMS))));
        cells.push(optional(complete.map(|s| sum_of(&s, bond))));
        cells.push(optional(complete.map(|s| sum_of(&s, goals))));
        cells.push(optional(complete.map(|s| category(&s, &ALL_ITEMS))));
        cells.push(optional(complete.map(|s| category(&s, bond))));
        cells.push(optional(complete.map(|s| category(&s, goals))));
        if options.include_comments {
            cells.push(optional(response.and_then(|response| response.comment.clone())));
        }
    }

    match (scores(&invitations[0]), scores(&invitations[1])) {
        (Some(parent), Some(professional)) => {
            let agrees = |items: &[u8]| flag(category(&parent, items) == category(&professional, items));
            let identical = parent.iter().zip(&professional).filter(|(p, q)| p == q).count();
            cells.push(flag(true));
            cells.push(agrees(&ALL_ITEMS));
            cells.push(agrees(bond));
            cells.push(agrees(goals));
            cells.push(number(identical as u64));
            cells.push(flag(identical == ITEM_COUNT));
        }
        _ => {
            cells.push(flag(false));
            cells.extend(std::iter::repeat_n(String::new(), 5));
        }
    }
    writer.write_row(&cells)
}

fn write_long_rows(
    writer: &mut CsvWriter<'_>,
    key: &str,
    chat: &ChatRecord,
    invitations: &[Option<InvitationRecord>; 2],
) -> io::Result<()> {
    let instrument = Instrument::get();
    let (day, week) = day_and_week(chat);
    let pair = invitations.iter().all(|invitation| {
        invitation
            .as_ref()
            .is_some_and(|invitation| invitation.response.is_complete())
    });

    for (invitation, role) in invitations.iter().zip(Role::BOTH) {
        let Some(invitation) = invitation else { continue };
        let response = &invitation.response;
        if !response.is_started() {
            continue;
        }
        let lang = response_lang(Some(invitation));
        for (index, answer) in response.answers.iter().enumerate() {
            let item = index as u8 + 1;
            let subscale = if instrument.goals_and_approach().contains(&item) {
                "goals_and_approach"
            } else {
                "personal_bond"
            };
            let cells = vec![
                key.to_string(),
                day.clone(),
                week.clone(),
                label(&chat.organization),
                label(&chat.topic),
                label(&chat.child_age_group),
                role.as_str().to_string(),
                item.to_string(),
                subscale.to_string(),
                optional(answer.map(|answer| answer.rating.score())),
                optional(answer.map(|answer| time_text(answer.at))),
                lang.clone(),
                INSTRUMENT_VERSION.to_string(),
                flag(response.is_complete()),
                flag(pair),
            ];
            writer.write_row(&cells)?;
        }
    }
    Ok(())
}

fn write_funnel(report: &Report, options: &ExportOptions, out: &mut dyn Write) -> Result<u64, ExportError> {
    let columns = funnel_columns();
    let mut writer = CsvWriter::new(out, options.excel)?;
    let header: Vec<String> = columns.iter().map(|column| column.name.clone()).collect();
    writer.write_row(&header)?;

    let overall_category = &report.agreement.overall.category;
    let overall = FunnelRow {
        chats: report.chats,
        parent: &report.questionnaires.parent,
        professional: &report.questionnaires.professional,
        parent_rate: &report.rates.parent,
        professional_rate: &report.rates.professional,
        pairs_rate: &report.rates.pairs,
        pairing: [
            report.pairing.both,
            report.pairing.parent_only,
            report.pairing.professional_only,
            report.pairing.neither,
        ],
        agreeing: overall_category.agreeing,
        category_percent: overall_category.percent,
        category_ci95: overall_category.ci95,
    };
    let mut cells = vec![
        "overall".to_string(),
        String::new(),
        flag(report.suppression.suppressed),
    ];
    cells.extend(overall.cells(&writer, report.suppression.suppressed));
    writer.write_row(&cells)?;

    for (dimension, breakdown) in report.breakdowns.dimensions() {
        for cell in breakdown {
            let mut cells = vec![dimension.to_string(), label(&cell.value), flag(cell.suppressed)];
            cells.extend(cell_values(&writer, cell));
            writer.write_row(&cells)?;
        }
    }
    writer.out.flush()?;
    Ok(writer.rows - 1)
}

struct FunnelRow<'a> {
    chats: u64,
    parent: &'a Funnel,
    professional: &'a Funnel,
    parent_rate: &'a Rate,
    professional_rate: &'a Rate,
    pairs_rate: &'a Rate,
    /// Both, parent only, professional only, neither.
    pairing: [u64; 4],
    agreeing: u64,
    category_percent: Option<f64>,
    category_ci95: Option<[f64; 2]>,
}

impl FunnelRow<'_> {
    /// Builds the cells after `dimension`, `stratum` and `suppressed`. With
    /// `agreement_hidden` the category agreement cells stay empty.
    fn cells(&self, writer: &CsvWriter<'_>, agreement_hidden: bool) -> Vec<String> {
        let mut cells = vec![number(self.chats)];
        for (funnel, rate) in [
            (self.parent, self.parent_rate),
            (self.professional, self.professional_rate),
        ] {
            cells.extend([number(funnel.invited), number(funnel.opened), number(funnel.started)]);
            cells.extend(funnel.items_answered.iter().map(|count| number(*count)));
            cells.extend([
                number(funnel.complete),
                number(funnel.submitted),
                number(funnel.declined),
                number(funnel.expired),
            ]);
            cells.push(writer.decimal(rate.percent));
            cells.push(writer.decimal(rate.ci95.map(|[lo, _]| lo)));
            cells.push(writer.decimal(rate.ci95.map(|[_, hi]| hi)));
        }
        cells.extend(self.pairing.iter().map(|count| number(*count)));
        if agreement_hidden {
            cells.push(String::new());
            cells.push(writer.decimal(self.pairs_rate.percent));
            cells.extend(std::iter::repeat_n(String::new(), 3));
        } else {
            cells.push(number(self.agreeing));
            cells.push(writer.decimal(self.pairs_rate.percent));
            cells.push(writer.decimal(self.category_percent));
            cells.push(writer.decimal(self.category_ci95.map(|[lo, _]| lo)));
            cells.push(writer.decimal(self.category_ci95.map(|[_, hi]| hi)));
        }
        cells
    }
}

fn cell_values(writer: &CsvWriter<'_>, cell: &Cell) -> Vec<String> {
    let Some(figures) = &cell.figures else {
        return vec![String::new(); funnel_columns().len() - 3];
    };
    let row = FunnelRow {
        chats: figures.chats,
        parent: &figures.parent,
        professional: &figures.professional,
        parent_rate: &figures.rates.parent,
        professional_rate: &figures.rates.professional,
        pairs_rate: &figures.rates.pairs,
        pairing: [
            figures.pairing.both,
            figures.pairing.parent_only,
            figures.pairing.professional_only,
            figures.pairing.neither,
        ],
        agreeing: figures.category.agreeing,
        category_percent: figures.category.percent,
        category_ci95: figures.category.ci95,
    };
    row.cells(writer, false)
}

/// Writes the codebook of `layout` as CSV: one row per column with its label, type
/// and value labels. Written in the same variant as the data.
pub fn codebook(layout: Layout, options: &ExportOptions) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut writer = CsvWriter::new(&mut bytes, options.excel).expect("writing to memory succeeds");
    let header = ["variable", "label", "type", "values"].map(String::from);
    writer.write_row(&header).expect("writing to memory succeeds");
    for column in columns(layout, options.include_comments) {
        let kind = match column.kind {
            Kind::Text(width) => format!("text, at most {width} bytes"),
            Kind::Integer => "integer".to_string(),
            Kind::Decimal => "decimal".to_string(),
            Kind::Date => "date YYYY-MM-DD".to_string(),
            Kind::Time => "time RFC 3339, UTC".to_string(),
        };
        let values = column
            .values
            .iter()
            .map(|(code, meaning)| format!("{code} = {meaning}"))
            .collect::<Vec<_>>()
            .join("; ");
        writer
            .write_row(&[column.name, column.label, kind, values])
            .expect("writing to memory succeeds");
    }
    bytes
}

/// Value labels of one column: each code with its label.
type ValueLabels = &'static [(&'static str, &'static str)];
/// Writes an SPSS syntax file that reads `data_file` (the export of `layout` in the
/// same variant) and sets variable and value labels.
pub fn spss_syntax(layout: Layout, options: &ExportOptions, data_file: &str) -> String {
    let columns = columns(layout, options.include_comments);
    let quote = |text: &str| format!("'{}'", text.replace('\'', "''"));
    let mut syntax = String::new();

    syntax.push_str("* Encoding: UTF-8.\n");
    syntax.push_str(&format!(
        "* Reads the alliance {layout} export; written by `alliance export --codebook`.\n"
    ));
    if options.excel {
        syntax.push_str("SET DECIMAL=COMMA.\n");
    } else {
        syntax.push_str("SET DECIMAL=DOT.\n");
    }
    let delimiter = if options.excel { ";" } else { "," };
    syntax.push_str(&format!(
        "GET DATA\n  /TYPE=TXT\n  /FILE={}\n  /ENCODING='UTF8'\n  /DELCASE=LINE\n  /DELIMITERS=\"{delimiter}\"\n  \
         /QUALIFIER='\"'\n  /ARRANGEMENT=DELIMITED\n  /FIRSTCASE=2\n  /VARIABLES=\n",
        quote(data_file)
    ));
    for column in &columns {
        let format = match column.kind {
            Kind::Text(width) => format!("A{width}"),
            Kind::Integer => "F8.0".to_string(),
            Kind::Decimal => "F8.2".to_string(),
            Kind::Date => "SDATE10".to_string(),
            Kind::Time => "A25".to_string(),
        };
        syntax.push_str(&format!("    {} {format}\n", column.name));
    }
    syntax.push_str(".\n\nVARIABLE LABELS\n");
    let labels: Vec<String> = columns
        .iter()
        .map(|column| format!("  {} {}", column.name, quote(&column.label)))
        .collect();
    syntax.push_str(&labels.join("\n  /"));
    syntax.push_str(".\n");

    let mut by_values: Vec<(ValueLabels, Vec<&str>)> = Vec::new();
    for column in columns.iter().filter(|column| !column.values.is_empty()) {
        match by_values
            .iter_mut()
            .find(|(values, _)| std::ptr::eq(*values, column.values))
        {
            Some((_, names)) => names.push(&column.name),
            None => by_values.push((column.values, vec![&column.name])),
        }
    }
    if !by_values.is_empty() {
        syntax.push_str("\nVALUE LABELS\n");
        let groups: Vec<String> = by_values
            .iter()
            .map(|(values, names)| {
                let pairs: Vec<String> = values
                    .iter()
                    .map(|(code, meaning)| format!("{code} {}", quote(meaning)))
                    .collect();
                format!("  {}\n    {}", names.join(" "), pairs.join(" "))
            })
            .collect();
        syntax.push_str(&groups.join("\n  /"));
        syntax.push_str(".\n");
    }
    syntax.push_str("EXECUTE.\n");
    syntax
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(layout: Layout, excel: bool) -> ExportOptions {
        ExportOptions {
            layout,
            excel,
            include_comments: false,
            min_cell_size: 10,
        }
    }

    #[test]
    fn csv_quotes_separators_and_quotes() {
        let mut bytes = Vec::new();
        let mut writer = CsvWriter::new(&mut bytes, false).unwrap();
        writer
            .write_row(&["a,b".into(), "say \"hi\"".into(), "line\nbreak".into(), "plain".into()])
            .unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "\"a,b\",\"say \"\"hi\"\"\",\"line\nbreak\",plain\r\n"
        );
    }

    #[test]
    fn excel_variant_uses_bom_semicolon_decimal_comma() {
        let mut bytes = Vec::new();
        let mut writer = CsvWriter::new(&mut bytes, true).unwrap();
        let decimal = writer.decimal(Some(61.93));
        writer
            .write_row(&["a;b".into(), decimal, "=SUM(A1)".into(), "-1".into()])
            .unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with('\u{feff}'));
        assert_eq!(&text[3..], "\"a;b\";61,93;'=SUM(A1);-1\r\n");
    }

    #[test]
    fn comment_column_fits_longest_comment() {
        let longest = "😀".repeat(crate::routes::questionnaire::MAX_COMMENT_CHARS);
        let comments: Vec<Kind> = columns(Layout::Wide, true)
            .into_iter()
            .filter(|column| column.name.ends_with("_comment"))
            .map(|column| column.kind)
            .collect();
        assert_eq!(comments.len(), 2, "a comment column for each role");
        for kind in comments {
            let Kind::Text(bytes) = kind else {
                panic!("a comment column is not text");
            };
            assert!(usize::from(bytes) > longest.len(), "{bytes} bytes");
        }
    }

    #[test]
    fn wide_columns_are_unique_and_spss_safe() {
        for layout in [Layout::Wide, Layout::Long, Layout::Funnel] {
            let columns = columns(layout, true);
            let mut names: Vec<&str> = columns.iter().map(|column| column.name.as_str()).collect();
            for name in &names {
                assert!(name.len() <= 64, "{name} is longer than SPSS allows");
                assert!(name.starts_with(|c: char| c.is_ascii_lowercase()), "{name}");
                assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{name}");
            }
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), columns.len(), "{layout} has duplicate column names");
        }
    }

    #[test]
    fn comments_only_when_asked() {
        let without = columns(Layout::Wide, false);
        assert!(!without.iter().any(|column| column.name.ends_with("_comment")));
        let with = columns(Layout::Wide, true);
        assert_eq!(
            with.iter().filter(|column| column.name.ends_with("_comment")).count(),
            2
        );
    }

    #[test]
    fn codebook_lists_every_column() {
        let codebook = String::from_utf8(codebook(Layout::Wide, &options(Layout::Wide, false))).unwrap();
        assert_eq!(codebook.lines().count(), columns(Layout::Wide, false).len() + 1);
        assert!(codebook.contains("parent_item_01,Parent: item 1,integer,0 = insufficient (onvoldoende)"));
    }

    #[test]
    fn spss_syntax_labels_values() {
        let syntax = spss_syntax(Layout::Wide, &options(Layout::Wide, true), "alliance-wide.csv");
        assert!(syntax.contains("SET DECIMAL=COMMA."));
        assert!(syntax.contains("/DELIMITERS=\";\""));
        assert!(syntax.contains("  chat 'Chat pseudonym (keyed hash of the platform''s chat id)'"));
        assert!(syntax.contains("parent_item_01 parent_item_02"));
        assert!(syntax.contains("0 'insufficient (onvoldoende)' 1 'sufficient (voldoende)' 2 'good (goed)'"));
        assert!(syntax.trim_end().ends_with("EXECUTE."));
    }
}
