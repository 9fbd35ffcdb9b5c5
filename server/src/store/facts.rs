//! Report facts: a compact binary record of what a report needs of one
//! chat, kept beside the chat. A report reads one short value per chat
//! instead of a chat and two invitations in JSON.
//!
//! The store rewrites a chat's facts in the same write that changes the
//! chat or one of its invitations, so they never disagree with the records.
//!
//! Layout (all integers little-endian):
//! `[version = 1][day: i32, Julian day of the end in Europe/Amsterdam, i32::MIN if unknown]`
//! `[organization][topic][child age group]`, each `[0]` for none or
//! `[1][length: u16][UTF-8 bytes]`, then `[eligible: u8]` and, for the
//! parent and then the professional, `[flags: u8][answered: u16][ratings: u32][expires_at: i64]`.
//! Everything before `eligible` is the chat's stratum: the day and the three labels.

use crate::questionnaire::{ITEM_COUNT, Role};
use crate::report::calendar::{self, Date};
use crate::store::records::{ChatRecord, InvitationRecord, Millis};

const VERSION: u8 = 1;
const ROLE_BYTES: usize = 1 + 2 + 4 + 8;

const INVITED: u8 = 1;
const OPENED: u8 = 2;
const SUBMITTED: u8 = 4;
const DECLINED: u8 = 8;

/// One role's questionnaire as the report counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoleFacts {
    /// Whether the chat has an invitation for this role.
    pub invited: bool,
    pub opened: bool,
    pub submitted: bool,
    pub declined: bool,
    /// Bit `i` set when item `i + 1` is answered.
    pub answered: u16,
    /// Score (0–2) of item `i + 1` in bits `2i` and `2i + 1`; 0 where unanswered.
    pub ratings: u32,
    pub expires_at: Millis,
}

const ALL_ANSWERED: u16 = (1 << ITEM_COUNT) - 1;

impl RoleFacts {
    pub fn from_invitation(invitation: &InvitationRecord) -> Self {
        let response = &invitation.response;
        let mut answered = 0u16;
        let mut ratings = 0u32;
        for (index, answer) in response.answers.iter().enumerate() {
            if let Some(answer) = answer {
                answered |= 1 << index;
                ratings |= u32::from(answer.rating.score()) << (2 * index);
            }
        }
        Self {
            invited: true,
            opened: response.opened_at.is_some(),
            submitted: response.submitted_at.is_some(),
            declined: response.declined_at.is_some(),
            answered,
            ratings,
            expires_at: invitation.expires_at,
        }
    }

    pub fn is_started(&self) -> bool {
        self.answered != 0
    }

    pub fn is_complete(&self) -> bool {
        self.answered == ALL_ANSWERED
    }

    pub fn is_answered(&self, index: usize) -> bool {
        self.answered & (1 << index) != 0
    }

    /// Mirrors [`InvitationRecord::status`]: an invitation neither submitted
    /// nor declined expires at `expires_at`.
    pub fn is_expired(&self, now: Millis) -> bool {
        self.invited && !self.submitted && !self.declined && now >= self.expires_at
    }

    /// The 11 scores when every item is answered.
    pub fn scores(&self) -> Option<[u8; ITEM_COUNT]> {
        self.is_complete()
            .then(|| std::array::from_fn(|index| ((self.ratings >> (2 * index)) & 0b11) as u8))
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let flags = [
            (self.invited, INVITED),
            (self.opened, OPENED),
            (self.submitted, SUBMITTED),
            (self.declined, DECLINED),
        ]
        .iter()
        .filter(|(set, _)| *set)
        .fold(0, |flags, (_, bit)| flags | bit);
        out.push(flags);
        out.extend_from_slice(&self.answered.to_le_bytes());
        out.extend_from_slice(&self.ratings.to_le_bytes());
        out.extend_from_slice(&self.expires_at.to_le_bytes());
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; ROLE_BYTES] = bytes.try_into().ok()?;
        let flags = bytes[0];
        let answered = u16::from_le_bytes([bytes[1], bytes[2]]);
        let ratings = u32::from_le_bytes(bytes[3..7].try_into().ok()?);
        let valid_scores = (0..ITEM_COUNT).all(|index| (ratings >> (2 * index)) & 0b11 <= 2);
        if answered > ALL_ANSWERED || !valid_scores {
            return None;
        }
        Some(Self {
            invited: flags & INVITED != 0,
            opened: flags & OPENED != 0,
            submitted: flags & SUBMITTED != 0,
            declined: flags & DECLINED != 0,
            answered,
            ratings,
            expires_at: i64::from_le_bytes(bytes[7..15].try_into().ok()?),
        })
    }
}

/// The report's view of one chat, borrowed from its encoded bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatFacts<'a> {
    /// The encoded day and labels; equal for chats of the same stratum.
    pub stratum: &'a [u8],
    pub eligible: bool,
    pub roles: [RoleFacts; 2],
}

impl ChatFacts<'_> {
    pub fn role(&self, role: Role) -> &RoleFacts {
        match role {
            Role::Parent => &self.roles[0],
            Role::Professional => &self.roles[1],
        }
    }
}

/// The day and labels of a stratum, decoded from [`ChatFacts::stratum`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Stratum {
    pub day: Option<Date>,
    pub organization: Option<String>,
    pub topic: Option<String>,
    pub child_age_group: Option<String>,
    /// True for the totals of purged chats, which are kept per ISO week:
    /// `day` is then the week's Monday.
    pub purged_week: bool,
}

/// Encodes the facts of `chat` with its invitations (parent first).
pub fn encode(chat: &ChatRecord, invitations: [Option<&InvitationRecord>; 2]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(VERSION);
    let day = calendar::amsterdam_date(&chat.ended_at).map_or(i32::MIN, |date| date.inner().to_julian_day());
    out.extend_from_slice(&day.to_le_bytes());
    for label in [&chat.organization, &chat.topic, &chat.child_age_group] {
        match label {
            None => out.push(0),
            Some(text) => {
                // Labels are at most a few hundred bytes (intake limits them);
                // a longer one is cut at a character boundary rather than lost.
                let mut end = text.len().min(usize::from(u16::MAX));
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                out.push(1);
                out.extend_from_slice(&(end as u16).to_le_bytes());
                out.extend_from_slice(&text.as_bytes()[..end]);
            }
        }
    }
    out.push(u8::from(chat.eligible));
    for invitation in invitations {
        invitation
            .map(RoleFacts::from_invitation)
            .unwrap_or_default()
            .encode(&mut out);
    }
    out
}

/// Replaces one role's part of encoded facts.
pub fn with_role(bytes: &[u8], role: Role, facts: &RoleFacts) -> Option<Vec<u8>> {
    let decoded = decode(bytes)?;
    let start = decoded.stratum.len() + 1 + ROLE_BYTES * usize::from(role == Role::Professional);
    let mut out = bytes.to_vec();
    let mut encoded = Vec::with_capacity(ROLE_BYTES);
    facts.encode(&mut encoded);
    out[start..start + ROLE_BYTES].copy_from_slice(&encoded);
    Some(out)
}

/// Decodes facts; `None` when the bytes are damaged.
pub fn decode(bytes: &[u8]) -> Option<ChatFacts<'_>> {
    if bytes.first() != Some(&VERSION) {
        return None;
    }
    let mut at = 5;
    for _ in 0..3 {
        match *bytes.get(at)? {
            0 => at += 1,
            1 => {
                let length = u16::from_le_bytes([*bytes.get(at + 1)?, *bytes.get(at + 2)?]);
                at += 3 + usize::from(length);
            }
            _ => return None,
        }
    }
    let stratum = bytes.get(..at)?;
    let eligible = *bytes.get(at)? != 0;
    let roles = bytes.get(at + 1..)?;
    if roles.len() != 2 * ROLE_BYTES {
        return None;
    }
    Some(ChatFacts {
        stratum,
        eligible,
        roles: [
            RoleFacts::decode(&roles[..ROLE_BYTES])?,
            RoleFacts::decode(&roles[ROLE_BYTES..])?,
        ],
    })
}

/// Returns the stratum of the same labels in the ISO week of `stratum`'s day: the
/// day becomes that week's Monday. Purged chats are counted by week.
pub fn week_stratum(stratum: &[u8]) -> Option<Vec<u8>> {
    let day = i32::from_le_bytes(stratum.get(1..5)?.try_into().ok()?);
    let monday = if day == i32::MIN {
        day
    } else {
        let date = time::Date::from_julian_day(day).ok()?;
        day - i32::from(date.weekday().number_days_from_monday())
    };
    let mut week = stratum.to_vec();
    week[1..5].copy_from_slice(&monday.to_le_bytes());
    Some(week)
}

/// Decodes the day and labels of a stratum.
pub fn decode_stratum(stratum: &[u8]) -> Option<Stratum> {
    let day = i32::from_le_bytes(stratum.get(1..5)?.try_into().ok()?);
    let mut at = 5;
    let mut labels: [Option<String>; 3] = [None, None, None];
    for label in &mut labels {
        match *stratum.get(at)? {
            0 => at += 1,
            _ => {
                let length = usize::from(u16::from_le_bytes([*stratum.get(at + 1)?, *stratum.get(at + 2)?]));
                let text = std::str::from_utf8(stratum.get(at + 3..at + 3 + length)?).ok()?;
                *label = Some(text.to_owned());
                at += 3 + length;
            }
        }
    }
    let [organization, topic, child_age_group] = labels;
    Some(Stratum {
        day: (day != i32::MIN)
            .then(|| time::Date::from_julian_day(day).ok().map(Date::from))
            .flatten(),
        organization,
        topic,
        child_age_group,
        purged_week: false,
    })
}

/// Scores of a complete pair packed into one number: the parent's 11 scores
/// in bits 0–21, the professional's in bits 22–43.
pub fn pair_pattern(parent: &[u8; ITEM_COUNT], professional: &[u8; ITEM_COUNT]) -> u64 {
    let pack = |scores: &[u8; ITEM_COUNT]| {
        scores
            .iter()
            .enumerate()
            .fold(0u64, |bits, (index, score)| bits | (u64::from(*score) << (2 * index)))
    };
    pack(parent) | (pack(professional) << (2 * ITEM_COUNT))
}

/// Unpacks the parent's and the professional's scores of a packed pair.
pub fn unpack_pattern(pattern: u64) -> ([u8; ITEM_COUNT], [u8; ITEM_COUNT]) {
    let side = |bits: u64| std::array::from_fn(|index| ((bits >> (2 * index)) & 0b11) as u8);
    (side(pattern), side(pattern >> (2 * ITEM_COUNT)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::questionnaire::Rating;
    use crate::store::records::{Answer, DeliveryStatus, Response};
    use crate::token::InvitationId;

    fn chat(organization: Option<&str>) -> ChatRecord {
        ChatRecord {
            received_at: 0,
            ended_at: "2022-07-04T10:00:00Z".into(),
            organization: organization.map(str::to_owned),
            topic: Some("sleep".into()),
            child_age_group: None,
            locale: "nl".into(),
            eligible: true,
            parent_invitation: InvitationId::generate(),
            professional_invitation: InvitationId::generate(),
            professional_participant: None,
            professional_unassigned: false,
        }
    }

    fn invitation(answers: &[(usize, Rating)]) -> InvitationRecord {
        let mut response = Response::default();
        for (index, rating) in answers {
            response.answers[*index] = Some(Answer { rating: *rating, at: 5 });
        }
        response.opened_at = Some(1);
        InvitationRecord {
            id: InvitationId::generate(),
            chat: "c".into(),
            role: Role::Parent,
            locale: "nl".into(),
            created_at: 0,
            expires_at: 1_000,
            delivery: DeliveryStatus::Delivered,
            delivered_at: Some(0),
            response,
        }
    }

    #[test]
    fn facts_round_trip() {
        let full: Vec<(usize, Rating)> = (0..ITEM_COUNT).map(|index| (index, Rating::Good)).collect();
        let parent = invitation(&full);
        let professional = invitation(&[(0, Rating::Sufficient), (10, Rating::Insufficient)]);
        let bytes = encode(&chat(Some("org-01")), [Some(&parent), Some(&professional)]);
        let facts = decode(&bytes).expect("decodes");
        assert!(facts.eligible);
        assert_eq!(facts.roles[0].scores(), Some([2; ITEM_COUNT]));
        assert_eq!(facts.roles[1].scores(), None);
        assert!(facts.roles[1].is_answered(10));
        assert!(!facts.roles[1].is_answered(1));
        assert!(!facts.roles[0].is_expired(999));
        assert!(facts.roles[0].is_expired(1_000));
        let stratum = decode_stratum(facts.stratum).expect("stratum decodes");
        assert_eq!(stratum.organization.as_deref(), Some("org-01"));
        assert_eq!(stratum.topic.as_deref(), Some("sleep"));
        assert_eq!(stratum.child_age_group, None);
        assert_eq!(stratum.day.map(|day| day.to_string()).as_deref(), Some("2022-07-04"));
    }

    #[test]
    fn replacing_a_role_keeps_the_rest() {
        let bytes = encode(&chat(None), [None, None]);
        let answered = RoleFacts::from_invitation(&invitation(&[(3, Rating::Good)]));
        let changed = with_role(&bytes, Role::Professional, &answered).expect("valid facts");
        let facts = decode(&changed).expect("decodes");
        assert_eq!(facts.roles[0], RoleFacts::default());
        assert_eq!(facts.roles[1], answered);
        assert_eq!(facts.stratum, decode(&bytes).expect("decodes").stratum);
    }

    #[test]
    fn damaged_facts_do_not_decode() {
        let bytes = encode(&chat(Some("org")), [None, None]);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_none(), "cut at {cut}");
        }
        let mut wrong = bytes.clone();
        wrong[0] = 9;
        assert!(decode(&wrong).is_none());
    }

    #[test]
    fn week_strata_start_on_monday() {
        let bytes = encode(&chat(Some("org")), [None, None]);
        let stratum = decode(&bytes).expect("decodes").stratum;
        let week = week_stratum(stratum).expect("valid stratum");
        let decoded = decode_stratum(&week).expect("decodes");
        // 2022-07-04 is a Monday; its week starts on itself.
        assert_eq!(decoded.day.map(|day| day.to_string()).as_deref(), Some("2022-07-04"));
        let mut thursday = chat(Some("org"));
        thursday.ended_at = "2022-07-07T23:30:00Z".into();
        let bytes = encode(&thursday, [None, None]);
        let week = week_stratum(decode(&bytes).expect("decodes").stratum).expect("valid");
        let decoded = decode_stratum(&week).expect("decodes");
        assert_eq!(decoded.day.map(|day| day.to_string()).as_deref(), Some("2022-07-04"));
        assert_eq!(decoded.organization.as_deref(), Some("org"));
    }

    #[test]
    fn patterns_round_trip() {
        let parent = [0, 1, 2, 2, 2, 1, 0, 0, 1, 2, 2];
        let professional = [2, 2, 2, 1, 1, 1, 0, 2, 2, 2, 0];
        assert_eq!(
            unpack_pattern(pair_pattern(&parent, &professional)),
            (parent, professional)
        );
    }
}
