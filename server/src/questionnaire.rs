//! The instrument: the 11 items of the Vragenlijst Online Alliantie, the two
//! roles, their wording and the three-point rating scale.
//!
//! The Dutch wording is a validated instrument and is shown verbatim from
//! `server/data/voa-questionnaire.json`, which is compiled into the binary.

use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// Number of items in the instrument.
pub const ITEM_COUNT: usize = 11;

/// Version tag stored with each response, so exports can name the wording used.
pub const INSTRUMENT_VERSION: &str = "voa-2022";

const INSTRUMENT_JSON: &str = include_str!("../data/voa-questionnaire.json");

/// Who answers: the parent (hulpvrager) or the professional (hulpverlener).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Parent,
    Professional,
}

impl Role {
    pub const BOTH: [Role; 2] = [Role::Parent, Role::Professional];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Parent => "parent",
            Role::Professional => "professional",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One answer on the three-point scale; scores are 0, 1 and 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rating {
    Insufficient,
    Sufficient,
    Good,
}

impl Rating {
    pub const ALL: [Rating; 3] = [Rating::Insufficient, Rating::Sufficient, Rating::Good];

    /// Parses the API spelling (`insufficient`, `sufficient`, `good`).
    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "insufficient" => Ok(Rating::Insufficient),
            "sufficient" => Ok(Rating::Sufficient),
            "good" => Ok(Rating::Good),
            other => Err(format!(
                "rating {other:?} is not one of \"insufficient\", \"sufficient\", \"good\""
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Rating::Insufficient => "insufficient",
            Rating::Sufficient => "sufficient",
            Rating::Good => "good",
        }
    }

    /// The score used in all statistics: onvoldoende 0, voldoende 1, goed 2.
    pub fn score(self) -> u8 {
        match self {
            Rating::Insufficient => 0,
            Rating::Sufficient => 1,
            Rating::Good => 2,
        }
    }

    pub fn from_score(score: u8) -> Option<Self> {
        Rating::ALL.get(usize::from(score)).copied()
    }
}

/// An item number, 1 to 11.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ItemNumber(u8);

impl ItemNumber {
    pub fn parse(value: &str) -> Result<Self, String> {
        let invalid = || format!("item number {value:?} is not a whole number from 1 to {ITEM_COUNT}");
        let canonical = !value.starts_with('0');
        if value.is_empty() || value.len() > 2 || !canonical || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let number: u8 = value.parse().map_err(|_| invalid())?;
        Self::new(number).ok_or_else(invalid)
    }

    pub fn new(number: u8) -> Option<Self> {
        (1..=ITEM_COUNT as u8).contains(&number).then_some(Self(number))
    }

    pub fn get(self) -> u8 {
        self.0
    }

    /// Zero-based position in an array of 11 answers.
    pub fn index(self) -> usize {
        usize::from(self.0) - 1
    }

    pub fn all() -> impl Iterator<Item = ItemNumber> {
        (1..=ITEM_COUNT as u8).map(ItemNumber)
    }
}

/// Language of the wording shown: Dutch (validated) or English (working translation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Lang {
    #[default]
    Nl,
    En,
}

impl Lang {
    /// Maps a locale such as `nl`, `nl-NL` or `en-GB` to a language; anything
    /// that is not English falls back to Dutch, the instrument's language.
    pub fn from_locale(locale: &str) -> Lang {
        if locale.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("en")) {
            Lang::En
        } else {
            Lang::Nl
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Nl => "nl",
            Lang::En => "en",
        }
    }
}

#[derive(Deserialize)]
struct Localized {
    nl: String,
    en: String,
}

impl Localized {
    fn get(&self, lang: Lang) -> &str {
        match lang {
            Lang::Nl => &self.nl,
            Lang::En => &self.en,
        }
    }
}

#[derive(Deserialize)]
struct RoleWording {
    nl: RoleText,
    en: RoleText,
}

#[derive(Deserialize)]
struct RoleText {
    stem: String,
}

#[derive(Deserialize)]
struct ScalePoint {
    value: String,
    nl: String,
    en: String,
}

#[derive(Deserialize)]
struct Item {
    number: u8,
    element: Localized,
    parent: Localized,
    professional: Localized,
}

#[derive(Deserialize)]
struct Roles {
    parent: RoleWording,
    professional: RoleWording,
}

#[derive(Deserialize)]
struct Subscale {
    items: Vec<u8>,
}

#[derive(Deserialize)]
struct Subscales {
    personal_bond: Subscale,
    goals_and_approach: Subscale,
}

/// The instrument as read from the embedded JSON.
#[derive(Deserialize)]
pub struct Instrument {
    roles: Roles,
    scale: Vec<ScalePoint>,
    subscales: Subscales,
    items: Vec<Item>,
}

/// One item in the wording of one role and language.
#[derive(Serialize, Clone, Debug)]
pub struct ItemText<'a> {
    pub number: u8,
    pub element: &'a str,
    pub text: &'a str,
}

/// One point of the rating scale with its label in one language.
#[derive(Serialize, Clone, Debug)]
pub struct ScaleLabel<'a> {
    pub value: &'a str,
    pub label: &'a str,
}

impl Instrument {
    /// Returns the instrument compiled into the binary.
    pub fn get() -> &'static Instrument {
        static INSTRUMENT: OnceLock<Instrument> = OnceLock::new();
        INSTRUMENT.get_or_init(|| {
            let instrument: Instrument =
                serde_json::from_str(INSTRUMENT_JSON).expect("embedded questionnaire JSON is valid");
            assert_eq!(instrument.items.len(), ITEM_COUNT, "the instrument has 11 items");
            instrument
        })
    }

    /// The stem shown before the items, e.g. "De hulpverlener…" for parents.
    pub fn stem(&self, role: Role, lang: Lang) -> &str {
        let wording = match role {
            Role::Parent => &self.roles.parent,
            Role::Professional => &self.roles.professional,
        };
        match lang {
            Lang::Nl => &wording.nl.stem,
            Lang::En => &wording.en.stem,
        }
    }

    pub fn items(&self, role: Role, lang: Lang) -> Vec<ItemText<'_>> {
        self.items
            .iter()
            .map(|item| {
                let text = match role {
                    Role::Parent => &item.parent,
                    Role::Professional => &item.professional,
                };
                ItemText {
                    number: item.number,
                    element: item.element.get(lang),
                    text: text.get(lang),
                }
            })
            .collect()
    }

    pub fn scale(&self, lang: Lang) -> Vec<ScaleLabel<'_>> {
        self.scale
            .iter()
            .map(|point| ScaleLabel {
                value: &point.value,
                label: match lang {
                    Lang::Nl => &point.nl,
                    Lang::En => &point.en,
                },
            })
            .collect()
    }

    /// Item numbers of the personal bond subscale (items 1–5 and 7–9).
    pub fn personal_bond(&self) -> &[u8] {
        &self.subscales.personal_bond.items
    }

    /// Item numbers of the goals and approach subscale (items 6, 10 and 11).
    pub fn goals_and_approach(&self) -> &[u8] {
        &self.subscales.goals_and_approach.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instrument_has_verbatim_dutch_wording() {
        let instrument = Instrument::get();
        let parent = instrument.items(Role::Parent, Lang::Nl);
        assert_eq!(parent.len(), 11);
        assert_eq!(parent[0].text, "begreep mijn situatie");
        assert_eq!(instrument.stem(Role::Parent, Lang::Nl), "De hulpverlener…");
        let professional = instrument.items(Role::Professional, Lang::Nl);
        assert_eq!(professional[6].text, "denk dat de hulpvrager mij aardig vond");
    }

    #[test]
    fn subscales_cover_all_items_once() {
        let instrument = Instrument::get();
        let mut all: Vec<u8> = instrument.personal_bond().to_vec();
        all.extend_from_slice(instrument.goals_and_approach());
        all.sort_unstable();
        assert_eq!(all, (1..=11).collect::<Vec<u8>>());
    }

    #[test]
    fn item_number_rejects_out_of_range() {
        assert!(ItemNumber::parse("1").is_ok());
        assert!(ItemNumber::parse("11").is_ok());
        for bad in ["0", "12", "", "-1", "1.0", "01", "999"] {
            assert!(ItemNumber::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn rating_parse_and_score() {
        assert_eq!(Rating::parse("good").unwrap().score(), 2);
        assert_eq!(Rating::parse("insufficient").unwrap().score(), 0);
        assert!(Rating::parse("Good").is_err());
        assert_eq!(Rating::from_score(1), Some(Rating::Sufficient));
    }
}
