//! Feedback to the nurse (`ALLIANCE_NURSE_FEEDBACK`, off by default). Once
//! the nurse has submitted her own answers for a chat, her questionnaire
//! shows the parent's answers for that chat.
//!
//! Rules, all enforced here:
//! - only the professional's questionnaire ever carries the other side's
//!   answers, never the parent's;
//! - only after the professional submitted hers;
//! - only when the parent's answers are final: submitted, or complete and
//!   expired, so the nurse never watches them change;
//! - only when the parent's questionnaire was first opened with the notice
//!   that the nurse reads the answers. A parent who opened it without that
//!   notice, or answered through a platform that renders its own form, is
//!   never shown to the nurse.
//!
//! The parent's comment is never shown.

use crate::questionnaire::{ITEM_COUNT, Rating, Role};
use crate::store::records::{InvitationRecord, Millis, ResponseStatus};
use crate::store::{Store, StoreError};

/// Records that a parent's questionnaire is being opened for the first time
/// with the notice that the nurse reads the answers. Call it on every
/// opening, before `opened_at` is set: later openings change nothing, so
/// a parent who first saw the questionnaire without the notice stays
/// without it.
pub fn record_notice(record: &mut InvitationRecord, enabled: bool, now: Millis) {
    if enabled && record.role == Role::Parent && record.response.opened_at.is_none() {
        record.response.feedback_notice_at = Some(now);
    }
}

/// Returns the value of `nurse_feedback` in a questionnaire. For the parent it
/// says whether the introduction states that the nurse reads the answers. For
/// the professional it says whether feedback is switched on.
pub fn flag_for(record: &InvitationRecord, enabled: bool) -> bool {
    match record.role {
        Role::Parent => enabled && record.response.feedback_notice_at.is_some(),
        Role::Professional => enabled,
    }
}

/// Returns the parent's ratings that the nurse may see, or `None` when any
/// rule of this module forbids it. `nurse` and `parent` must be the two
/// invitations of one chat.
pub fn visible_parent_ratings(
    nurse: &InvitationRecord,
    parent: &InvitationRecord,
    now: Millis,
) -> Option<[Rating; ITEM_COUNT]> {
    if nurse.role != Role::Professional || parent.role != Role::Parent || nurse.chat != parent.chat {
        return None;
    }
    nurse.response.submitted_at?;
    parent.response.feedback_notice_at?;
    let final_answers = match parent.status(now) {
        ResponseStatus::Submitted => true,
        ResponseStatus::Expired => parent.response.is_complete(),
        ResponseStatus::Open | ResponseStatus::Complete | ResponseStatus::Declined => false,
    };
    if !final_answers {
        return None;
    }
    parent.response.ratings()
}

/// Reads the parent's invitation of the nurse's chat and returns the
/// ratings the nurse may see. `None` for a parent's invitation.
pub fn parent_ratings_for_nurse(
    store: &Store,
    nurse: &InvitationRecord,
    now: Millis,
) -> Result<Option<[Rating; ITEM_COUNT]>, StoreError> {
    if nurse.role != Role::Professional || nurse.response.submitted_at.is_none() {
        return Ok(None);
    }
    let Some(chat) = store.chat(&nurse.chat)? else {
        return Ok(None);
    };
    let Some(parent) = store.invitation(&chat.parent_invitation)? else {
        return Ok(None);
    };
    Ok(visible_parent_ratings(nurse, &parent, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{Answer, DeliveryStatus, Response};
    use crate::token::InvitationId;

    const NOW: Millis = 1_000_000;

    fn invitation(role: Role) -> InvitationRecord {
        InvitationRecord {
            id: InvitationId::generate(),
            chat: "chat-pseudonym".into(),
            role,
            locale: "nl".into(),
            created_at: 0,
            expires_at: NOW + 1000,
            delivery: DeliveryStatus::Delivered,
            delivered_at: Some(1),
            response: Response::default(),
        }
    }

    fn answer_all(record: &mut InvitationRecord, rating: Rating) {
        record.response.answers = [Some(Answer { rating, at: 5 }); ITEM_COUNT];
        record.response.completed_at = Some(5);
    }

    /// A submitted nurse and a submitted parent who saw the notice.
    fn both_submitted() -> (InvitationRecord, InvitationRecord) {
        let mut nurse = invitation(Role::Professional);
        answer_all(&mut nurse, Rating::Sufficient);
        nurse.response.submitted_at = Some(10);
        let mut parent = invitation(Role::Parent);
        record_notice(&mut parent, true, 2);
        parent.response.opened_at = Some(2);
        answer_all(&mut parent, Rating::Good);
        parent.response.submitted_at = Some(9);
        (nurse, parent)
    }

    #[test]
    fn nurse_sees_parent_after_both_submitted() {
        let (nurse, parent) = both_submitted();
        assert_eq!(
            visible_parent_ratings(&nurse, &parent, NOW),
            Some([Rating::Good; ITEM_COUNT])
        );
    }

    #[test]
    fn nothing_before_the_nurse_submitted() {
        let (mut nurse, parent) = both_submitted();
        nurse.response.submitted_at = None;
        assert_eq!(visible_parent_ratings(&nurse, &parent, NOW), None);
    }

    #[test]
    fn nothing_while_the_parent_can_still_change() {
        let (nurse, mut parent) = both_submitted();
        parent.response.submitted_at = None;
        assert_eq!(
            visible_parent_ratings(&nurse, &parent, NOW),
            None,
            "complete, not submitted"
        );
        assert_eq!(
            visible_parent_ratings(&nurse, &parent, parent.expires_at),
            Some([Rating::Good; ITEM_COUNT]),
            "complete and expired is final"
        );
    }

    #[test]
    fn nothing_when_the_parent_was_not_told() {
        let (nurse, mut parent) = both_submitted();
        parent.response.feedback_notice_at = None;
        assert_eq!(visible_parent_ratings(&nurse, &parent, NOW), None);
    }

    #[test]
    fn parent_never_sees_the_nurse() {
        let (nurse, parent) = both_submitted();
        assert_eq!(visible_parent_ratings(&parent, &nurse, NOW), None);
    }

    #[test]
    fn notice_is_recorded_only_at_first_opening() {
        let mut parent = invitation(Role::Parent);
        parent.response.opened_at = Some(1);
        record_notice(&mut parent, true, 2);
        assert_eq!(
            parent.response.feedback_notice_at, None,
            "opened before without the notice"
        );
        assert!(!flag_for(&parent, true));

        let mut parent = invitation(Role::Parent);
        record_notice(&mut parent, false, 2);
        assert_eq!(parent.response.feedback_notice_at, None, "setting off");

        let mut parent = invitation(Role::Parent);
        record_notice(&mut parent, true, 3);
        assert_eq!(parent.response.feedback_notice_at, Some(3));
        assert!(flag_for(&parent, true));
        assert!(!flag_for(&parent, false), "the setting switched off again");

        let mut nurse = invitation(Role::Professional);
        record_notice(&mut nurse, true, 3);
        assert_eq!(nurse.response.feedback_notice_at, None, "only parents get the notice");
    }
}
