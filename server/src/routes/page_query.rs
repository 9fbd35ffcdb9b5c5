//! Query strings of the HTML pages. The pages read them here instead of with
//! `web::Query`, because the service's `web::QueryConfig` turns every query
//! that `web::Query` rejects into the API's JSON `invalid_query` error, which
//! a browser shows as raw text.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// A problem with a query parameter that a page reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryError {
    /// The parameter is given more than once. `values` are all its decoded
    /// values, in the order of the query string.
    Repeated {
        parameter: &'static str,
        values: Vec<String>,
    },
    /// The parameter's value is not UTF-8 once percent-decoded. `raw` is
    /// the value as it is in the query string, still percent-encoded.
    NotUtf8 { parameter: &'static str, raw: String },
}

/// The parameters of a query string that a page reads, each given once.
#[derive(Debug, Default)]
pub struct PageQuery {
    values: Vec<(&'static str, String)>,
}

impl PageQuery {
    /// Parses `raw`, an `application/x-www-form-urlencoded` query string as
    /// `web::Query` reads it: pairs split on `&`, `+` as a space, and names
    /// and values percent-decoded. Only the parameters in `names` are kept.
    /// Any other parameter is ignored, as `web::Query` ignores fields that
    /// its type does not have, also when it is repeated or not UTF-8.
    ///
    /// The error names the first kept value that is not UTF-8, in query
    /// order, or otherwise the first parameter of `names` given more than once.
    pub fn parse(raw: &str, names: &[&'static str]) -> Result<Self, QueryError> {
        let mut values: Vec<(&'static str, String)> = Vec::new();
        for pair in raw.split('&').filter(|pair| !pair.is_empty()) {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded_name = decode_lossy(raw_name);
            let Some(&name) = names.iter().find(|name| **name == decoded_name) else {
                continue;
            };
            let value = decode(raw_value).ok_or_else(|| QueryError::NotUtf8 {
                parameter: name,
                raw: raw_value.to_string(),
            })?;
            values.push((name, value));
        }

        for &name in names {
            let values_of_name: Vec<String> = values
                .iter()
                .filter(|(given_name, _)| *given_name == name)
                .map(|(_, value)| value.clone())
                .collect();
            if values_of_name.len() > 1 {
                return Err(QueryError::Repeated {
                    parameter: name,
                    values: values_of_name,
                });
            }
        }
        Ok(Self { values })
    }

    /// Returns the value of `name`, or `None` when the query does not give it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(given_name, _)| *given_name == name)
            .map(|(_, value)| value.as_str())
    }

    /// Removes `name` from the query and returns its value.
    pub fn take(&mut self, name: &str) -> Option<String> {
        let index = self.values.iter().position(|(given_name, _)| *given_name == name)?;
        Some(self.values.swap_remove(index).1)
    }
}

fn plus_as_space(raw: &str) -> Cow<'_, str> {
    if raw.contains('+') {
        Cow::Owned(raw.replace('+', " "))
    } else {
        Cow::Borrowed(raw)
    }
}

/// Returns the name of the first parameter of the query string `raw` whose
/// value is not UTF-8 once percent-decoded. `web::Query` would read such a
/// value with replacement characters instead of rejecting it.
pub fn first_not_utf8(raw: &str) -> Option<String> {
    raw.split('&').filter(|pair| !pair.is_empty()).find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        decode(value).is_none().then(|| decode_lossy(name))
    })
}

/// Returns the name of the first parameter given more than once in the
/// query string `raw`, in query order.
pub fn first_repeated(raw: &str) -> Option<String> {
    let names: Vec<String> = raw
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| decode_lossy(pair.split_once('=').map_or(pair, |(name, _)| name)))
        .collect();
    names
        .iter()
        .enumerate()
        .find(|(index, name)| names[..*index].contains(name))
        .map(|(_, name)| name.clone())
}

/// Percent-decodes a value, or returns `None` when the bytes are not UTF-8.
/// A `%` without two hex digits after it stays as it is, as in `web::Query`.
fn decode(raw: &str) -> Option<String> {
    let spaced = plus_as_space(raw);
    percent_decode_str(&spaced).decode_utf8().ok().map(Cow::into_owned)
}

fn decode_lossy(raw: &str) -> String {
    percent_decode_str(&plus_as_space(raw)).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: [&str; 3] = ["lang", "from", "organization"];

    #[test]
    fn first_not_utf8_names_the_parameter() {
        assert_eq!(
            first_not_utf8("from=2022-07-01&organization=%FF"),
            Some("organization".into())
        );
        assert_eq!(first_not_utf8("a=%C3%A9&b=x+y"), None);
        assert_eq!(first_not_utf8(""), None);
    }

    #[test]
    fn first_repeated_names_the_parameter() {
        assert_eq!(first_repeated("from=1&to=2&from=3"), Some("from".into()));
        assert_eq!(first_repeated("from=1&to=2"), None);
        assert_eq!(first_repeated("a&a"), Some("a".into()));
    }

    #[test]
    fn parse_decodes_like_web_query() {
        let raw = "from=2022-07-01&organization=GGD+Frysl%C3%A2n%2B1&f%72om2=x&lang";
        let query = PageQuery::parse(raw, &NAMES).unwrap();
        assert_eq!(query.get("from"), Some("2022-07-01"));
        assert_eq!(query.get("organization"), Some("GGD Fryslân+1"));
        assert_eq!(query.get("lang"), Some(""), "a name without = has an empty value");
        assert_eq!(query.get("from2"), None, "parameters outside the names are not kept");

        let expected = actix_web::web::Query::<std::collections::HashMap<String, String>>::from_query(raw).unwrap();
        for name in NAMES {
            assert_eq!(
                query.get(name),
                expected.get(name).map(String::as_str),
                "web::Query reads the same value of {name}"
            );
        }
    }

    #[test]
    fn parse_rejects_repeated_name() {
        let error = PageQuery::parse("lang=en&from=2022-01-01&from=2022-02-01", &NAMES).unwrap_err();
        assert_eq!(
            error,
            QueryError::Repeated {
                parameter: "from",
                values: vec!["2022-01-01".into(), "2022-02-01".into()],
            }
        );
        let encoded = PageQuery::parse("from=1&fr%6Fm=2", &NAMES).unwrap_err();
        assert!(
            matches!(encoded, QueryError::Repeated { parameter: "from", .. }),
            "a percent-encoded name counts as the same name"
        );
        let empty = PageQuery::parse("from=&from=", &NAMES).unwrap_err();
        assert!(matches!(empty, QueryError::Repeated { parameter: "from", .. }));
    }

    #[test]
    fn parse_ignores_other_names() {
        let raw = "utm_source=a&utm_source=b&x=%FF&from=2022-07-01";
        let query = PageQuery::parse(raw, &NAMES).unwrap();
        assert_eq!(query.get("from"), Some("2022-07-01"));
    }

    #[test]
    fn parse_rejects_value_not_utf8() {
        let error = PageQuery::parse("lang=en&organization=GGD%E2n", &NAMES).unwrap_err();
        assert_eq!(
            error,
            QueryError::NotUtf8 {
                parameter: "organization",
                raw: "GGD%E2n".into(),
            }
        );
    }

    #[test]
    fn parse_keeps_invalid_escape() {
        let query = PageQuery::parse("from=%ZZ&organization=100%", &NAMES).unwrap();
        assert_eq!(query.get("from"), Some("%ZZ"));
        assert_eq!(query.get("organization"), Some("100%"));
    }

    #[test]
    fn take_removes_value() {
        let mut query = PageQuery::parse("from=2022-07-01&lang=en", &NAMES).unwrap();
        assert_eq!(query.take("from"), Some("2022-07-01".into()));
        assert_eq!(query.take("from"), None);
        assert_eq!(query.get("lang"), Some("en"));
    }
}
