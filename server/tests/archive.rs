//! Settled chats move into the archive, many to a sled key, and every read,
//! report, change, purge and copy finds them as before.

use std::collections::BTreeSet;
use std::path::Path;

use alliance::bench::fill::write_chat;
use alliance::report::{self, Report, ReportFilter, ReportOptions};
use alliance::retention::purge;
use alliance::startup::now_millis;
use alliance::store::records::{Answer, Millis};
use alliance::store::{ChatAcceptance, NewChat, Store, UpdateError};
use alliance::token::{PseudonymKey, ServerKey};

const DAY: Millis = 24 * 3_600_000;
const CACHE: u64 = 16 << 20;
/// Chats received 30 days ago, settled since.
const SETTLED: usize = 3_000;
/// Chats received yesterday, whose invitations are still open.
const OPEN: usize = 400;

fn open(dir: &Path) -> Store {
    Store::open(dir, CACHE).expect("store opens")
}

fn pseudonym_key() -> PseudonymKey {
    ServerKey::from_bytes(vec![5; 32]).expect("32 bytes").pseudonym_key()
}

fn chat_key(key: &PseudonymKey, number: usize) -> String {
    key.pseudonym("chat", &format!("fill-{number}"))
}

/// Writes the settled and the open chats; returns the time they were written at.
fn fill(store: &Store, key: &PseudonymKey) -> Millis {
    let now = now_millis();
    for number in 0..SETTLED {
        write_chat(store, key, number, now - 30 * DAY).expect("settled chat written");
    }
    for number in SETTLED..SETTLED + OPEN {
        write_chat(store, key, number, now - DAY).expect("open chat written");
    }
    store.flush_blocking().expect("flushed");
    now
}

fn reports(store: &Store, now: Millis) -> [Report; 2] {
    let options = ReportOptions {
        min_cell_size: 10,
        bootstrap: true,
    };
    let one_organization =
        ReportFilter::parse(None, None, Some("GGD Regio Utrecht".into()), None, None).expect("valid");
    [ReportFilter::default(), one_organization]
        .map(|filter| report::build_with(store, &filter, now, &options).expect("report builds"))
}

/// Returns every chat from [`Store::chats`] with its pseudonym, in a stable order.
fn all_chats(store: &Store) -> BTreeSet<(String, String)> {
    store
        .chats()
        .map(|entry| {
            let entry = entry.expect("readable");
            let invitations = serde_json::to_string(&entry.invitations).expect("serialises");
            (
                entry.key,
                serde_json::to_string(&entry.chat).expect("serialises") + &invitations,
            )
        })
        .collect()
}

fn scan_equals_running_totals(store: &Store, now: Millis) {
    let normalized = |mut strata: Vec<(alliance::store::facts::Stratum, report::StratumCounts)>| {
        for (_, counts) in &mut strata {
            counts.patterns.sort_unstable();
        }
        strata.sort_by(|a, b| a.0.cmp(&b.0));
        strata
    };
    assert_eq!(
        normalized(report::count_strata(store, now).expect("running totals")),
        normalized(report::count_strata_by_scan(store, now).expect("scan")),
        "the running totals differ from a scan of the facts"
    );
}

#[test]
fn archived_chats_read_and_report_as_before() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open(dir.path());
    let key = pseudonym_key();
    let now = fill(&store, &key);
    let before = reports(&store, now);
    let chats_before = all_chats(&store);
    let settled_chat = store.chat(&chat_key(&key, 7)).expect("readable").expect("stored");
    let settled_parent = store
        .invitation(&settled_chat.parent_invitation)
        .expect("readable")
        .expect("stored");
    assert!(before[0].pairs >= 40, "enough pairs to compare: {}", before[0].pairs);

    let mut progress = Vec::new();
    let moved = store
        .archive_settled(now, |moved| progress.push(moved))
        .expect("archived");
    assert_eq!(moved, SETTLED as u64, "every settled chat moves, and no open one");
    assert_eq!(progress.last(), Some(&moved));
    assert_eq!(store.archived_count(), SETTLED);
    assert_eq!(store.chat_count(), SETTLED + OPEN);
    assert_eq!(store.archive_settled(now, |_| {}).expect("archived again"), 0);

    assert_eq!(reports(&store, now), before, "the report changed in the archive");
    assert_eq!(
        all_chats(&store),
        chats_before,
        "the chats read differently from the archive"
    );
    scan_equals_running_totals(&store, now);
    assert_eq!(
        store.chat(&chat_key(&key, 7)).expect("readable"),
        Some(settled_chat.clone())
    );
    assert_eq!(
        store.invitation(&settled_chat.parent_invitation).expect("readable"),
        Some(settled_parent)
    );
    let (count, _) = store.scan_facts_bytes().expect("scan");
    assert_eq!(count, (SETTLED + OPEN) as u64);

    drop(store);
    let store = open(dir.path());
    assert_eq!(store.archived_count(), SETTLED, "counted again at open");
    assert_eq!(store.chat_count(), SETTLED + OPEN);
    assert_eq!(reports(&store, now), before, "the report changed after reopening");
    assert_eq!(all_chats(&store), chats_before);
}

#[test]
fn archived_chat_known_to_second_webhook() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open(dir.path());
    let key = pseudonym_key();
    let now = fill(&store, &key);
    store.archive_settled(now, |_| {}).expect("archived");
    let pseudonym = chat_key(&key, 11);
    let chat = store.chat(&pseudonym).expect("readable").expect("stored");
    let again = |store: &Store, webhook_id: &str| {
        store
            .accept_chat(NewChat {
                webhook_id: Some(webhook_id),
                webhook_digest: None,
                chat_key: &pseudonym,
                chat: &chat,
                invitations: &[],
                deliveries: &[],
                now,
            })
            .expect("accepted")
    };

    assert_eq!(again(&store, "msg_second"), ChatAcceptance::KnownChat);
    store.settle();
    assert_eq!(store.chat_count(), SETTLED + OPEN, "no second chat");

    drop(store);
    // After a restart the filter of known chats is built from the archive too.
    let store = open(dir.path());
    assert_eq!(again(&store, "msg_third"), ChatAcceptance::KnownChat);
    store.settle();
    assert_eq!(store.chat_count(), SETTLED + OPEN);
    assert_eq!(store.archived_count(), SETTLED);
}

#[test]
fn archived_chat_moves_back_when_changed() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open(dir.path());
    let key = pseudonym_key();
    let now = fill(&store, &key);
    store.archive_settled(now, |_| {}).expect("archived");
    // A settled chat whose parent did not submit.
    let chat = (0..SETTLED)
        .map(|number| store.chat(&chat_key(&key, number)).expect("readable").expect("stored"))
        .find(|chat| {
            let parent = store
                .invitation(&chat.parent_invitation)
                .expect("readable")
                .expect("stored");
            parent.response.submitted_at.is_none()
        })
        .expect("most parents do not submit");

    // A change that the caller rejects leaves the chat where it is.
    let refused = store.update_invitation(&chat.parent_invitation, |_| Err::<(), _>("expired"));
    assert!(matches!(refused, Err(UpdateError::Rejected("expired"))));
    assert_eq!(store.archived_count(), SETTLED);

    let before = reports(&store, now);
    let (_, record) = store
        .update_invitation(&chat.parent_invitation, |record| -> Result<(), ()> {
            for answer in record.response.answers.iter_mut() {
                *answer = Some(Answer {
                    rating: alliance::questionnaire::Rating::Insufficient,
                    at: now,
                });
            }
            record.response.submitted_at = Some(now);
            Ok(())
        })
        .expect("changed");
    assert_eq!(store.archived_count(), SETTLED - 1, "the changed chat left the archive");
    assert_eq!(store.chat_count(), SETTLED + OPEN);
    assert_eq!(
        store.invitation(&chat.parent_invitation).expect("readable"),
        Some(record)
    );
    let after = reports(&store, now);
    assert_eq!(after[0].chats, before[0].chats);
    assert_eq!(
        after[0].questionnaires.parent.submitted,
        before[0].questionnaires.parent.submitted + 1,
        "the change counts"
    );
    scan_equals_running_totals(&store, now);

    // It is settled still, so the next run moves it back.
    assert_eq!(store.archive_settled(now, |_| {}).expect("archived"), 1);
    assert_eq!(reports(&store, now), after);
    drop(store);
    let store = open(dir.path());
    assert_eq!(reports(&store, now), after, "the change survives a restart");
}

#[test]
fn purge_and_copy_handle_archived_chats() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open(dir.path());
    let key = pseudonym_key();
    let now = fill(&store, &key);
    store.archive_settled(now, |_| {}).expect("archived");
    let before = reports(&store, now);

    let copy_dir = tempfile::tempdir().expect("temporary directory");
    let copy_path = copy_dir.path().join("copy");
    assert_eq!(store.copy_to(&copy_path).expect("copied"), SETTLED + OPEN);
    let copy = open(&copy_path);
    assert_eq!(copy.archived_count(), SETTLED);
    assert_eq!(reports(&copy, now), before, "the copy reports the same");
    assert_eq!(all_chats(&copy), all_chats(&store));
    drop(copy);

    // A retention period of 20 days purges the archived chats, which were
    // received 30 days ago, and keeps every report figure.
    let dry = purge(&store, now, 20, true, |_| {}).expect("dry run");
    assert_eq!(dry.chats, SETTLED as u64);
    let done = purge(&store, now, 20, false, |_| {}).expect("purge");
    assert_eq!(
        (done.chats, done.answers, done.comments),
        (dry.chats, dry.answers, dry.comments)
    );
    assert!(
        done.answers > 0 && done.comments > 0,
        "archived answers were purged: {done:?}"
    );
    assert_eq!(store.archived_count(), 0);
    assert_eq!(store.chat_count(), OPEN);
    assert!(store.chat(&chat_key(&key, 7)).expect("readable").is_none());
    assert_eq!(
        reports(&store, now),
        before,
        "the report changed after purging archived chats"
    );
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.archived_count(), 0);
    assert_eq!(reports(&store, now), before);
}

/// A read of every chat takes the hot chats first, then the archive. An
/// archived chat that changes during the read stays in the archive, so the
/// read finds it once. Its next change, with no read running, moves it out.
#[test]
fn chat_changed_during_read_found_once() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open(dir.path());
    let key = pseudonym_key();
    let now = fill(&store, &key);
    store.archive_settled(now, |_| {}).expect("archived");
    let changed: Vec<_> = (0..SETTLED)
        .step_by(30)
        .map(|number| store.chat(&chat_key(&key, number)).expect("readable").expect("stored"))
        .collect();
    let open_change = |record: &mut alliance::store::records::InvitationRecord| -> Result<(), ()> {
        record.response.opened_at = Some(record.response.opened_at.map_or(now, |at| at + 1));
        Ok(())
    };

    let mut read = store.chats();
    let mut keys: Vec<String> = (&mut read)
        .take(OPEN)
        .map(|entry| entry.expect("readable").key)
        .collect();
    for chat in &changed {
        store
            .update_invitation(&chat.parent_invitation, open_change)
            .expect("changed during the read");
    }
    keys.extend(read.map(|entry| entry.expect("readable").key));
    let unique: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "a chat was read twice");
    assert_eq!(keys.len(), SETTLED + OPEN, "a chat changed during the read was missed");
    assert_eq!(
        store.archived_count(),
        SETTLED,
        "the changed chats stayed in the archive"
    );
    scan_equals_running_totals(&store, now);
    for chat in &changed {
        let parent = store
            .invitation(&chat.parent_invitation)
            .expect("readable")
            .expect("stored");
        assert!(parent.response.opened_at.is_some(), "the change was kept");
    }

    // With no read running, the next change moves the chat out as before.
    store
        .update_invitation(&changed[0].parent_invitation, open_change)
        .expect("changed");
    assert_eq!(store.archived_count(), SETTLED - 1);
    assert_eq!(all_chats(&store).len(), SETTLED + OPEN);
    scan_equals_running_totals(&store, now);
    drop(store);
    let store = open(dir.path());
    assert_eq!(
        store.archived_count(),
        SETTLED - 1,
        "the in-place changes survive a restart"
    );
    scan_equals_running_totals(&store, now);
}
