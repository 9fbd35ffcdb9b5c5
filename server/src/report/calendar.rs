//! Dates in Europe/Amsterdam time, where reports place chats.
//!
//! Amsterdam is UTC+1, and UTC+2 from 01:00 UTC on the last Sunday of March
//! until 01:00 UTC on the last Sunday of October (the EU rule since 1996).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::{Month, OffsetDateTime, UtcOffset, Weekday};

/// A calendar day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(time::Date);

impl Date {
    /// Parses `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Option<Self> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        time::Date::parse(text, &format).ok().map(Date)
    }

    pub fn inner(self) -> time::Date {
        self.0
    }

    /// ISO year and week, e.g. `2022-W27`.
    pub fn iso_week(self) -> String {
        let (year, week, _) = self.0.to_iso_week_date();
        format!("{year}-W{week:02}")
    }
}

impl From<time::Date> for Date {
    fn from(date: time::Date) -> Self {
        Date(date)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}",
            self.0.year(),
            u8::from(self.0.month()),
            self.0.day()
        )
    }
}

impl Serialize for Date {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Date::parse(&text).ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a YYYY-MM-DD date")))
    }
}

fn last_sunday(year: i32, month: Month) -> time::Date {
    let mut day = time::Date::from_calendar_date(year, month, month.length(year)).expect("valid month end");
    while day.weekday() != Weekday::Sunday {
        day = day.previous_day().expect("not the first day");
    }
    day
}

/// The UTC offset of Amsterdam at the UTC instant `utc`.
pub fn amsterdam_offset(utc: OffsetDateTime) -> UtcOffset {
    let utc = utc.checked_to_offset(UtcOffset::UTC).unwrap_or(utc);
    let year = utc.year();
    let one_am = time::Time::from_hms(1, 0, 0).expect("valid time");
    let summer_start = last_sunday(year, Month::March).with_time(one_am).assume_utc();
    let summer_end = last_sunday(year, Month::October).with_time(one_am).assume_utc();
    let hours = if utc >= summer_start && utc < summer_end { 2 } else { 1 };
    UtcOffset::from_hms(hours, 0, 0).expect("valid offset")
}

/// The Amsterdam calendar day of an RFC 3339 time.
pub fn amsterdam_date(rfc3339: &str) -> Option<Date> {
    let instant = OffsetDateTime::parse(rfc3339, &Rfc3339).ok()?;
    let local = instant.checked_to_offset(amsterdam_offset(instant))?;
    Some(Date(local.date()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summer_and_winter_offsets() {
        assert_eq!(amsterdam_date("2022-07-01T22:30:00Z"), Date::parse("2022-07-02"));
        assert_eq!(amsterdam_date("2022-07-01T21:59:59Z"), Date::parse("2022-07-01"));
        assert_eq!(amsterdam_date("2022-01-01T22:59:59Z"), Date::parse("2022-01-01"));
        assert_eq!(amsterdam_date("2022-01-01T23:00:00Z"), Date::parse("2022-01-02"));
    }

    #[test]
    fn switch_moments_follow_the_eu_rule() {
        let before = OffsetDateTime::parse("2022-03-27T00:59:59Z", &Rfc3339).unwrap();
        let after = OffsetDateTime::parse("2022-03-27T01:00:00Z", &Rfc3339).unwrap();
        assert_eq!(amsterdam_offset(before).whole_hours(), 1);
        assert_eq!(amsterdam_offset(after).whole_hours(), 2);
        let autumn = OffsetDateTime::parse("2022-10-30T01:00:00Z", &Rfc3339).unwrap();
        assert_eq!(amsterdam_offset(autumn).whole_hours(), 1);
    }

    #[test]
    fn times_at_the_calendar_edge_give_none() {
        assert_eq!(amsterdam_date("9999-12-31T23:59:59Z"), None);
        assert_eq!(amsterdam_date("not a time"), None);
    }

    #[test]
    fn iso_week_of_study_start() {
        assert_eq!(Date::parse("2022-06-30").unwrap().iso_week(), "2022-W26");
    }
}
