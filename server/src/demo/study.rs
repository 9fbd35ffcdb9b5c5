//! Rebuilds one dataset from the published aggregates of the 2022 GroeiGids
//! measurement, deterministically. Only the demo reads the study data; the
//! report sees nothing but the answers replayed through the API.
//!
//! The 218 matched pairs follow a fixed construction that reproduces the
//! published per-item counts for both roles without moving any pair away from
//! its base category, so category agreement is 135 of 218 (61.9%).

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use time::{Duration, Month, PrimitiveDateTime, Time, Weekday};

use crate::questionnaire::{ITEM_COUNT, Rating};
use crate::report::calendar::amsterdam_offset;

const STUDY_JSON: &str = include_str!("../../data/groeigids-2022-study.json");

/// Seed of every random choice in the dataset, so each run is identical.
pub const SEED: u64 = 2022;

/// Base categories of the pairs, in four blocks of consecutive pairs:
/// (pairs, parent base, professional base). Together 135 agreeing pairs.
const BASE_BLOCKS: [(usize, u8, u8); 4] = [(115, 2, 2), (65, 2, 1), (18, 1, 2), (20, 1, 1)];

/// Where the parent's cursor into the pairs with base "goed" starts; every
/// other cursor starts at 0. Chosen so that no pair moves off its base.
const PARENT_GOOD_CURSOR_START: usize = 101;

#[derive(Deserialize)]
struct Study {
    period: Period,
    service_hours: ServiceHours,
    organizations: Vec<String>,
    chats: usize,
    complete_questionnaires: Completes,
    matched_pairs: MatchedPairs,
}

#[derive(Deserialize)]
struct Period {
    first_day: String,
    last_day: String,
}

#[derive(Deserialize)]
struct ServiceHours {
    monday: [String; 2],
    tuesday: [String; 2],
    wednesday: [String; 2],
    thursday: [String; 2],
    friday: [String; 2],
}

#[derive(Deserialize)]
struct Completes {
    parent: usize,
    professional: usize,
    both_for_same_chat: usize,
}

#[derive(Deserialize)]
struct MatchedPairs {
    n: usize,
    child_age_group: std::collections::BTreeMap<String, usize>,
    topic_as_categorized_by_the_nurse: std::collections::BTreeMap<String, usize>,
    item_counts: ItemCounts,
}

#[derive(Deserialize)]
struct ItemCounts {
    rows: std::collections::BTreeMap<String, [usize; 6]>,
}

/// What one side of a chat does with its questionnaire in the replay.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Never opens the link.
    Ignore,
    /// Opens the questionnaire and leaves without answering.
    Open,
    /// Answers the first items, then leaves.
    Partial(Vec<Rating>),
    /// Opens it and says "nee, liever niet".
    Decline,
    /// Answers all 11 items; submits unless `submit` is false.
    Complete {
        answers: [Rating; ITEM_COUNT],
        submit: bool,
        comment: Option<String>,
    },
}

impl Plan {
    pub fn is_complete(&self) -> bool {
        matches!(self, Plan::Complete { .. })
    }
}

/// One chat of the rebuilt study.
#[derive(Clone, Debug)]
pub struct DemoChat {
    pub chat_id: String,
    pub ended_at: String,
    pub organization: String,
    pub topic: String,
    pub child_age_group: String,
    pub parent_participant: String,
    pub professional_participant: String,
    pub parent: Plan,
    pub professional: Plan,
    /// Number of the matched pair (0–217) when both sides complete.
    pub pair: Option<usize>,
}

/// The rebuilt study.
pub struct Dataset {
    pub chats: Vec<DemoChat>,
}

/// Scores of the 218 pairs, built as the construction above describes:
/// (parent, professional), each 11 scores 0–2.
pub fn pair_scores() -> Vec<([u8; ITEM_COUNT], [u8; ITEM_COUNT])> {
    let study: Study = serde_json::from_str(STUDY_JSON).expect("embedded study JSON is valid");
    let n = study.matched_pairs.n;

    let mut parent_base = Vec::with_capacity(n);
    let mut professional_base = Vec::with_capacity(n);
    for (count, parent, professional) in BASE_BLOCKS {
        parent_base.extend(std::iter::repeat_n(parent, count));
        professional_base.extend(std::iter::repeat_n(professional, count));
    }
    assert_eq!(parent_base.len(), n, "base blocks cover every pair");

    let counts = |item: usize, offset: usize| -> [usize; 3] {
        let row = &study.matched_pairs.item_counts.rows[&item.to_string()];
        [row[offset], row[offset + 1], row[offset + 2]]
    };
    let parent = assign_side(&parent_base, PARENT_GOOD_CURSOR_START, |item| counts(item, 0));
    let professional = assign_side(&professional_base, 0, |item| counts(item, 3));
    parent.into_iter().zip(professional).collect()
}

/// Gives every pair of one side its 11 answers: all start at the base, then
/// per item the cursors move just enough pairs to reach the published counts.
fn assign_side(base: &[u8], good_cursor_start: usize, counts: impl Fn(usize) -> [usize; 3]) -> Vec<[u8; ITEM_COUNT]> {
    let good: Vec<usize> = (0..base.len()).filter(|&pair| base[pair] == 2).collect();
    let sufficient: Vec<usize> = (0..base.len()).filter(|&pair| base[pair] == 1).collect();
    let mut answers: Vec<[u8; ITEM_COUNT]> = base.iter().map(|&score| [score; ITEM_COUNT]).collect();

    let mut good_cursor = good_cursor_start;
    let mut sufficient_cursor = 0;
    for item in 1..=ITEM_COUNT {
        let [insufficient, _, good_count] = counts(item);
        let index = item - 1;
        let difference = good_count as i64 - good.len() as i64;
        if difference > 0 {
            for _ in 0..difference {
                answers[sufficient[sufficient_cursor % sufficient.len()]][index] = 2;
                sufficient_cursor += 1;
            }
        } else {
            for _ in 0..-difference {
                answers[good[good_cursor % good.len()]][index] = 1;
                good_cursor += 1;
            }
        }
        for _ in 0..insufficient {
            answers[sufficient[sufficient_cursor % sufficient.len()]][index] = 0;
            sufficient_cursor += 1;
        }
    }
    answers
}

/// Sum over pairs c and items i of (c+1) · i · (3 · parent score + professional score).
pub fn fingerprint(pairs: &[([u8; ITEM_COUNT], [u8; ITEM_COUNT])]) -> u64 {
    let mut sum = 0u64;
    for (c, (parent, professional)) in pairs.iter().enumerate() {
        for i in 0..ITEM_COUNT {
            let value = 3 * u64::from(parent[i]) + u64::from(professional[i]);
            sum += (c as u64 + 1) * (i as u64 + 1) * value;
        }
    }
    sum
}

fn ratings(scores: [u8; ITEM_COUNT]) -> [Rating; ITEM_COUNT] {
    scores.map(|score| Rating::from_score(score).expect("scores are 0 to 2"))
}

/// Draws 11 answers for a response outside the matched pairs, with the
/// given probabilities of "goed" and "voldoende" (the rest "onvoldoende").
fn random_answers(rng: &mut StdRng, good: f64, sufficient: f64) -> [Rating; ITEM_COUNT] {
    std::array::from_fn(|_| {
        let draw: f64 = rng.r#gen();
        if draw < good {
            Rating::Good
        } else if draw < good + sufficient {
            Rating::Sufficient
        } else {
            Rating::Insufficient
        }
    })
}

fn parse_day(text: &str) -> time::Date {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, &format).expect("study dates are YYYY-MM-DD")
}

fn parse_clock(text: &str) -> Time {
    let format = time::macros::format_description!("[hour]:[minute]");
    Time::parse(text, &format).expect("service hours are HH:MM")
}

/// Comments some parents leave; the report never shows them, they show that comments travel.
const COMMENTS: [&str; 4] = [
    "Fijn dat ik zo snel antwoord kreeg.",
    "Duidelijk advies, dank je wel!",
    "Ik had graag een langere chat gehad.",
    "Goed geholpen met de voeding van mijn baby.",
];

/// Builds the whole dataset: 8527 chats with the published response counts.
pub fn build() -> Dataset {
    let study: Study = serde_json::from_str(STUDY_JSON).expect("embedded study JSON is valid");
    let mut rng = StdRng::seed_from_u64(SEED);

    let total = study.chats;
    let pairs = study.complete_questionnaires.both_for_same_chat;
    let parent_only = study.complete_questionnaires.parent - pairs;
    let professional_only = study.complete_questionnaires.professional - pairs;

    // Which chats are pairs, parent-only or professional-only: a seeded shuffle.
    let mut order: Vec<usize> = (0..total).collect();
    order.shuffle(&mut rng);
    let mut role_of = vec![0u8; total]; // 0 neither, 1 pair, 2 parent only, 3 professional only
    let mut pair_number = vec![None; total];
    for (rank, &chat) in order.iter().enumerate() {
        role_of[chat] = if rank < pairs {
            pair_number[chat] = Some(rank);
            1
        } else if rank < pairs + parent_only {
            2
        } else if rank < pairs + parent_only + professional_only {
            3
        } else {
            0
        };
    }

    // Topics and age groups of the pairs follow the published counts.
    let mut pair_topics: Vec<String> = Vec::new();
    for (topic, count) in &study.matched_pairs.topic_as_categorized_by_the_nurse {
        pair_topics.extend(std::iter::repeat_n(topic.clone(), *count));
    }
    let mut pair_ages: Vec<String> = Vec::new();
    for (age, count) in &study.matched_pairs.child_age_group {
        pair_ages.extend(std::iter::repeat_n(age.clone(), *count));
    }
    pair_topics.shuffle(&mut rng);
    pair_ages.shuffle(&mut rng);
    let topic_pool = pair_topics.clone();

    let days = service_days(&study);
    let scores = pair_scores();
    let mut chats = Vec::with_capacity(total);
    for index in 0..total {
        let (day, opens, closes) = days[index * days.len() / total];
        let minutes = (closes - opens).whole_minutes();
        let local = PrimitiveDateTime::new(day, opens)
            + Duration::minutes(rng.gen_range(10..minutes))
            + Duration::seconds(rng.gen_range(0..60));
        let offset = amsterdam_offset(local.assume_utc());
        let utc = local.assume_offset(offset).to_offset(time::UtcOffset::UTC);
        let ended_at = utc
            .format(&time::format_description::well_known::Rfc3339)
            .expect("times format as RFC 3339");
        let chat_id = format!(
            "c-{:04}{:02}{:02}-{index:04}",
            day.year(),
            u8::from(day.month()),
            day.day()
        );

        let (topic, child_age_group) = match pair_number[index] {
            Some(pair) => (pair_topics[pair].clone(), pair_ages[pair].clone()),
            None => (
                topic_pool[rng.gen_range(0..topic_pool.len())].clone(),
                if rng.gen_bool(0.9) {
                    "0-5".to_string()
                } else {
                    "5-12".to_string()
                },
            ),
        };

        let comment = |rng: &mut StdRng| -> Option<String> {
            rng.gen_bool(0.15)
                .then(|| COMMENTS[rng.gen_range(0..COMMENTS.len())].to_string())
        };
        let (parent, professional) = match role_of[index] {
            1 => {
                let (p, q) = scores[pair_number[index].expect("pairs have a number")];
                (
                    Plan::Complete {
                        answers: ratings(p),
                        submit: true,
                        comment: comment(&mut rng),
                    },
                    Plan::Complete {
                        answers: ratings(q),
                        submit: true,
                        comment: None,
                    },
                )
            }
            2 => (
                Plan::Complete {
                    answers: random_answers(&mut rng, 0.80, 0.17),
                    submit: rng.gen_bool(0.97),
                    comment: comment(&mut rng),
                },
                incomplete_plan(&mut rng, Side::Professional),
            ),
            3 => (
                incomplete_plan(&mut rng, Side::Parent),
                Plan::Complete {
                    answers: random_answers(&mut rng, 0.60, 0.395),
                    submit: rng.gen_bool(0.99),
                    comment: None,
                },
            ),
            _ => (
                incomplete_plan(&mut rng, Side::Parent),
                incomplete_plan(&mut rng, Side::Professional),
            ),
        };

        chats.push(DemoChat {
            chat_id,
            ended_at,
            organization: study.organizations[rng.gen_range(0..study.organizations.len())].clone(),
            topic,
            child_age_group,
            parent_participant: format!("v-{index}"),
            professional_participant: format!("n-{}", rng.gen_range(1..=48)),
            parent,
            professional,
            pair: pair_number[index],
        });
    }
    Dataset { chats }
}

#[derive(Clone, Copy)]
enum Side {
    Parent,
    Professional,
}

/// Draws the plan of a side that does not complete: most never open the link, some open it,
/// some answer a few items and stop, a few decline.
fn incomplete_plan(rng: &mut StdRng, side: Side) -> Plan {
    let (open, partial, decline) = match side {
        Side::Parent => (0.075, 0.035, 0.015),
        Side::Professional => (0.04, 0.03, 0.005),
    };
    let draw: f64 = rng.r#gen();
    if draw < open {
        Plan::Open
    } else if draw < open + partial {
        // Stopping is likelier early in the questionnaire.
        let answered = 1 + (rng.r#gen::<f64>().powi(2) * 10.0) as usize;
        let answers = random_answers(rng, 0.75, 0.2);
        Plan::Partial(answers[..answered.min(ITEM_COUNT - 1)].to_vec())
    } else if draw < open + partial + decline {
        Plan::Decline
    } else {
        Plan::Ignore
    }
}

/// Weekdays of the study period with their service hours, in Amsterdam time.
fn service_days(study: &Study) -> Vec<(time::Date, Time, Time)> {
    let first = parse_day(&study.period.first_day);
    let last = parse_day(&study.period.last_day);
    let hours = &study.service_hours;
    let mut days = Vec::new();
    let mut day = first;
    while day <= last {
        let window = match day.weekday() {
            Weekday::Monday => Some(&hours.monday),
            Weekday::Tuesday => Some(&hours.tuesday),
            Weekday::Wednesday => Some(&hours.wednesday),
            Weekday::Thursday => Some(&hours.thursday),
            Weekday::Friday => Some(&hours.friday),
            _ => None,
        };
        if let Some([opens, closes]) = window {
            days.push((day, parse_clock(opens), parse_clock(closes)));
        }
        day = day.next_day().expect("the study period is inside the calendar");
    }
    debug_assert!(days.iter().all(|(day, _, _)| day.month() >= Month::June));
    days
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_matches_construction() {
        assert_eq!(fingerprint(&pair_scores()), 9_953_281);
    }

    #[test]
    fn pairs_reproduce_published_item_counts() {
        let study: Study = serde_json::from_str(STUDY_JSON).unwrap();
        let pairs = pair_scores();
        for item in 1..=ITEM_COUNT {
            let row = study.matched_pairs.item_counts.rows[&item.to_string()];
            let mut counts = [0usize; 6];
            for (parent, professional) in &pairs {
                counts[usize::from(parent[item - 1])] += 1;
                counts[3 + usize::from(professional[item - 1])] += 1;
            }
            assert_eq!(counts, row, "item {item}");
        }
    }

    #[test]
    fn no_pair_leaves_its_base_category() {
        let pairs = pair_scores();
        let median = |scores: &[u8; ITEM_COUNT]| {
            let mut sorted = *scores;
            sorted.sort_unstable();
            sorted[5]
        };
        let mut agreeing = 0;
        let mut pair = 0;
        for (count, parent_base, professional_base) in BASE_BLOCKS {
            for _ in 0..count {
                let (parent, professional) = &pairs[pair];
                assert_eq!(median(parent), parent_base, "pair {pair} parent");
                assert_eq!(median(professional), professional_base, "pair {pair} professional");
                agreeing += usize::from(median(parent) == median(professional));
                pair += 1;
            }
        }
        assert_eq!(agreeing, 135);
    }

    #[test]
    fn dataset_has_published_completion_counts() {
        let dataset = build();
        assert_eq!(dataset.chats.len(), 8527);
        let parent = dataset.chats.iter().filter(|chat| chat.parent.is_complete()).count();
        let professional = dataset
            .chats
            .iter()
            .filter(|chat| chat.professional.is_complete())
            .count();
        let both = dataset
            .chats
            .iter()
            .filter(|chat| chat.parent.is_complete() && chat.professional.is_complete())
            .count();
        assert_eq!((parent, professional, both), (487, 2334, 218));
    }

    #[test]
    fn chats_end_on_weekdays_inside_the_period() {
        let dataset = build();
        for chat in &dataset.chats {
            let day = crate::report::calendar::amsterdam_date(&chat.ended_at)
                .expect("valid time")
                .inner();
            assert!(
                !matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday),
                "{}",
                chat.ended_at
            );
            assert!(
                day >= parse_day("2022-06-30") && day <= parse_day("2022-09-05"),
                "{}",
                chat.ended_at
            );
        }
    }
}
