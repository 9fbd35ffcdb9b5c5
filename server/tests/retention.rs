//! The retention purge deletes old answers and comments while every report
//! figure over the purged period stays the same.

use std::path::Path;

use alliance::bench::fill::write_chat;
use alliance::questionnaire::Role;
use alliance::report::{self, Report, ReportFilter, ReportOptions};
use alliance::retention::purge;
use alliance::startup::now_millis;
use alliance::store::records::{ChatRecord, DeliveryStatus, InvitationRecord, QueuedDelivery, Response};
use alliance::store::{NewChat, Store};
use alliance::token::{InvitationId, PseudonymKey, ServerKey};

const DAY: i64 = 24 * 3_600_000;
const OLD_CHATS: usize = 6_000;
const NEW_CHATS: usize = 500;
const CACHE: u64 = 16 << 20;

fn reports(store: &Store, now: i64) -> [Report; 3] {
    let options = ReportOptions {
        min_cell_size: 10,
        bootstrap: true,
    };
    let whole_weeks = ReportFilter::parse(Some("2022-01-03"), Some("2022-06-26"), None, None, None).expect("valid");
    let one_organization =
        ReportFilter::parse(None, None, Some("GGD Regio Utrecht".into()), None, None).expect("valid");
    [ReportFilter::default(), whole_weeks, one_organization]
        .map(|filter| report::build_with(store, &filter, now, &options).expect("report builds"))
}

fn open(dir: &Path) -> Store {
    Store::open(dir, CACHE).expect("store opens")
}

fn pseudonym_key() -> PseudonymKey {
    ServerKey::from_bytes(vec![7; 32]).expect("32 bytes").pseudonym_key()
}

/// Writes `old` chats received 800 days before `now` (past the default
/// retention of 730 days) and `recent` chats received a day before, and
/// flushes the store.
fn fill(store: &Store, key: &PseudonymKey, now: i64, old: usize, recent: usize) {
    for number in 0..old {
        write_chat(store, key, number, now - 800 * DAY).expect("old chat written");
    }
    for number in old..old + recent {
        write_chat(store, key, number, now - DAY).expect("recent chat written");
    }
    store.flush_blocking().expect("flushed");
}

#[test]
fn purge_keeps_every_report_figure() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open(dir.path());
    let key = pseudonym_key();
    let now = now_millis();
    fill(&store, &key, now, OLD_CHATS, NEW_CHATS);

    let old_keys: Vec<String> = (0..OLD_CHATS)
        .map(|n| key.pseudonym("chat", &format!("fill-{n}")))
        .collect();
    let old_invitations: Vec<_> = old_keys
        .iter()
        .map(|chat_key| {
            let chat = store.chat(chat_key).expect("readable").expect("old chat stored");
            (chat.parent_invitation, chat.professional_invitation)
        })
        .collect();
    let before = reports(&store, now);
    assert!(
        before[0].pairs >= 80,
        "the fill makes enough pairs to compare: {}",
        before[0].pairs
    );
    assert!(before[1].pairs >= 10, "whole-week filter pairs: {}", before[1].pairs);
    assert!(before[2].pairs >= 10, "organization filter pairs: {}", before[2].pairs);

    let dry = purge(&store, now, 730, true, |_| {}).expect("dry run");
    assert_eq!(dry.chats, OLD_CHATS as u64);
    assert!(
        dry.answers > 0 && dry.comments > 0,
        "the old chats hold answers and comments: {dry:?}"
    );
    assert!(
        store.chat(&old_keys[0]).expect("readable").is_some(),
        "a dry run deletes nothing"
    );
    assert_eq!(reports(&store, now), before);

    let done = purge(&store, now, 730, false, |_| {}).expect("purge");
    assert_eq!(
        (done.chats, done.invitations, done.answers, done.comments),
        (dry.chats, dry.invitations, dry.answers, dry.comments)
    );
    store.flush_blocking().expect("flushed");

    for (chat_key, (parent, professional)) in old_keys.iter().zip(&old_invitations) {
        assert!(
            store.chat(chat_key).expect("readable").is_none(),
            "purged chat still stored"
        );
        assert!(
            store.invitation(parent).expect("readable").is_none(),
            "parent answers still stored"
        );
        assert!(
            store.invitation(professional).expect("readable").is_none(),
            "nurse answers still stored"
        );
    }
    let recent = key.pseudonym("chat", &format!("fill-{OLD_CHATS}"));
    assert!(
        store.chat(&recent).expect("readable").is_some(),
        "a recent chat was purged"
    );
    assert_eq!(store.chat_count(), NEW_CHATS);

    assert_eq!(reports(&store, now), before, "the report changed after the purge");

    // A second purge finds nothing, and the totals survive a restart.
    assert_eq!(purge(&store, now, 730, false, |_| {}).expect("purge").chats, 0);
    drop(store);
    let reopened = open(dir.path());
    assert_eq!(
        reports(&reopened, now),
        before,
        "the report changed after reopening the store"
    );
}

#[test]
fn purged_week_needs_whole_week_filter() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open(dir.path());
    let key = pseudonym_key();
    let now = now_millis();
    // Chats 0..730 end on consecutive days from Saturday 2022-01-01.
    for number in 0..730 {
        write_chat(&store, &key, number, now - 800 * DAY).expect("chat written");
    }
    let options = ReportOptions {
        min_cell_size: 0,
        bootstrap: false,
    };
    // Monday 2022-01-03 to Sunday 2022-01-09 is one whole ISO week; Wednesday to Sunday is not.
    let week = ReportFilter::parse(Some("2022-01-03"), Some("2022-01-09"), None, None, None).expect("valid");
    let part = ReportFilter::parse(Some("2022-01-05"), Some("2022-01-09"), None, None, None).expect("valid");
    let before_week = report::build_with(&store, &week, now, &options).expect("report");
    assert_eq!(before_week.chats, 7);
    assert_eq!(
        report::build_with(&store, &part, now, &options).expect("report").chats,
        5
    );

    purge(&store, now, 730, false, |_| {}).expect("purge");
    assert_eq!(
        report::build_with(&store, &week, now, &options).expect("report"),
        before_week
    );
    assert_eq!(
        report::build_with(&store, &part, now, &options).expect("report").chats,
        0
    );
}

/// Sorts strata and their patterns, so totals counted in different orders compare equal.
fn normalized(
    mut strata: Vec<(alliance::store::facts::Stratum, report::StratumCounts)>,
) -> Vec<(alliance::store::facts::Stratum, report::StratumCounts)> {
    for (_, counts) in &mut strata {
        counts.patterns.sort_unstable();
    }
    strata.sort_by(|a, b| a.0.cmp(&b.0));
    strata
}

#[test]
fn running_totals_match_a_scan() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open(dir.path());
    let key = pseudonym_key();
    let now = now_millis();
    for number in 0..2_000 {
        write_chat(&store, &key, number, now - 800 * DAY).expect("old chat written");
    }
    for number in 2_000..4_000 {
        write_chat(&store, &key, number, now - DAY).expect("new chat written");
    }
    store.settle();
    let by_scan = |store: &Store, at: i64| normalized(report::count_strata_by_scan(store, at).expect("scan"));
    let running = |store: &Store, at: i64| normalized(report::count_strata(store, at).expect("totals"));

    // Change answers of recent chats: complete some, decline others.
    for number in 2_000..2_200 {
        let chat = store
            .chat(&key.pseudonym("chat", &format!("fill-{number}")))
            .expect("readable")
            .expect("stored");
        store
            .update_invitation(&chat.parent_invitation, |record| -> Result<(), ()> {
                if number % 2 == 0 {
                    for answer in record.response.answers.iter_mut() {
                        *answer = Some(alliance::store::records::Answer {
                            rating: alliance::questionnaire::Rating::Sufficient,
                            at: now,
                        });
                    }
                } else {
                    record.response.declined_at = Some(now);
                }
                Ok(())
            })
            .expect("updated");
    }
    // Before, at and after the recent chats' expiry.
    for at in [now, now + 6 * DAY, now + 8 * DAY] {
        assert_eq!(running(&store, at), by_scan(&store, at), "totals at {at}");
    }

    purge(&store, now, 730, false, |_| {}).expect("purge");
    assert_eq!(running(&store, now), by_scan(&store, now), "totals after the purge");

    drop(store);
    let reopened = open(dir.path());
    assert_eq!(
        running(&reopened, now),
        by_scan(&reopened, now),
        "totals after reopening"
    );
}

#[test]
fn filter_leaving_out_few_pairs_is_suppressed() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open(dir.path());
    let key = pseudonym_key();
    let now = now_millis();
    for number in 0..4_000 {
        write_chat(&store, &key, number, now - DAY).expect("chat written");
    }
    let counting = ReportOptions {
        min_cell_size: 0,
        bootstrap: false,
    };
    let guarded = ReportOptions {
        min_cell_size: 10,
        bootstrap: false,
    };
    let all = report::build_with(&store, &ReportFilter::default(), now, &counting)
        .expect("report")
        .pairs;

    // Chats end on the 730 days from 2022-01-01: cut days off the end until
    // the filter leaves out some pairs, first fewer than 10, then 10 or more.
    let mut few = None;
    let mut enough = None;
    let mut last_day = time::Date::from_calendar_date(2023, time::Month::December, 31).expect("valid date");
    while enough.is_none() {
        let filter = ReportFilter::parse(None, Some(&last_day.to_string()), None, None, None).expect("valid");
        let left_out = all
            - report::build_with(&store, &filter, now, &counting)
                .expect("report")
                .pairs;
        if (1..10).contains(&left_out) && few.is_none() {
            few = Some(filter);
        } else if left_out >= 10 {
            enough = Some(filter);
        }
        last_day = last_day.previous_day().expect("valid date");
    }
    let few = few.expect("a cut that leaves out 1 to 9 pairs");
    let enough = enough.expect("a cut that leaves out 10 or more pairs");

    let report = report::build_with(&store, &few, now, &guarded).expect("report");
    assert!(
        report.suppression.suppressed,
        "a filter leaving out fewer than 10 pairs was shown"
    );
    assert_eq!(report.agreement.overall.category.pairs, 0);
    let report = report::build_with(&store, &enough, now, &guarded).expect("report");
    assert!(
        !report.suppression.suppressed,
        "a filter leaving out 10 or more pairs was hidden"
    );
}

/// A backup taken while the retention purge runs must count each chat once:
/// either as a copied chat or in the copied totals, never as both. Whether
/// the two overlap depends on timing, so the copy starts after several delays.
#[test]
fn backup_during_purge_counts_each_chat_once() {
    const CHATS: usize = 6_000;
    let key = pseudonym_key();
    let options = ReportOptions {
        min_cell_size: 0,
        bootstrap: false,
    };
    for delay_ms in [0, 100, 300, 600] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = open(&dir.path().join("store"));
        let now = now_millis();
        for number in 0..CHATS {
            write_chat(&store, &key, number, now - 800 * DAY).expect("old chat written");
        }
        store.flush_blocking().expect("flushed");
        let before = report::build_with(&store, &ReportFilter::default(), now, &options).expect("report");
        assert_eq!(before.chats, CHATS as u64);

        let copy_dir = dir.path().join("copy");
        let purging = {
            let store = store.clone();
            std::thread::spawn(move || purge(&store, now, 730, false, |_| {}).expect("purge"))
        };
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        store.copy_to(&copy_dir).expect("copied");
        assert_eq!(purging.join().expect("purge thread").chats, CHATS as u64);

        let copy = open(&copy_dir);
        let copied = report::build_with(&copy, &ReportFilter::default(), now, &options).expect("report");
        assert_eq!(
            copied.chats, CHATS as u64,
            "chats counted in the backup, copy started {delay_ms} ms into the purge"
        );
        assert_eq!(
            copied.pairs, before.pairs,
            "pairs counted in the backup, copy started {delay_ms} ms into the purge"
        );
    }
}

/// Exports run back to back must not hold off the retention purge. The
/// purge lock passes to the longest waiting thread, and the purge purges as
/// many chats as fit in 50 ms each time it holds the lock. So each hold
/// waits for at most the reads of every chat that run or wait before it.
/// With an unfair lock taken per chat, two exporting threads held off a
/// purge of 2 000 chats for 76 s.
#[test]
fn purge_gets_its_turn_while_exports_run() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    const CHATS: usize = 1_500;
    // Recent chats the purge keeps, so every read takes a few milliseconds
    // also after the purge, while this thread may wait for a core.
    const RECENT: usize = 1_000;
    const EXPORTERS: usize = 2;
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open(dir.path());
    let key = pseudonym_key();
    let now = now_millis();
    fill(&store, &key, now, CHATS, RECENT);

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let exporters: Vec<_> = (0..EXPORTERS)
        .map(|_| {
            let (store, stop, reads) = (store.clone(), stop.clone(), reads.clone());
            std::thread::spawn(move || {
                // Stops after a minute, so the test ends even if the purge never gets the lock.
                let started = Instant::now();
                while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(60) {
                    let chats = store.chats().count();
                    assert!(chats <= CHATS + RECENT, "a read found {chats} chats");
                    reads.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    while reads.load(Ordering::SeqCst) < EXPORTERS {
        std::thread::yield_now();
    }

    let before = reads.load(Ordering::SeqCst);
    // Progress comes once per hold of the purge lock.
    let mut lock_turns = 0usize;
    let started = Instant::now();
    let purged = purge(&store, now, 730, false, |_| lock_turns += 1).expect("purge");
    let took = started.elapsed();
    let during = reads.load(Ordering::SeqCst) - before;
    stop.store(true, Ordering::SeqCst);
    for exporter in exporters {
        exporter.join().expect("exporter thread");
    }

    assert_eq!(purged.chats, CHATS as u64);
    // Every hold but the last purges for at least 50 ms, so a purge that
    // took the lock per chat would need far more holds.
    assert!(
        lock_turns as u128 <= took.as_millis() / 50 + 1,
        "{lock_turns} holds of the lock in a purge of {took:?}"
    );
    // Each hold waits for at most one read per exporter. The bound leaves
    // as much again for reads that end while this thread waits for a core.
    assert!(
        during <= 2 * EXPORTERS * (lock_turns + 2),
        "{during} reads of every chat ran during a purge in {lock_turns} holds of the lock"
    );
}

/// A report built while the retention purge runs counts each chat once:
/// among the live chats or in the totals of the purged weeks, never in both.
#[test]
fn report_during_purge_counts_each_chat_once() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    const CHATS: usize = 3_000;
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open(dir.path());
    let now = now_millis();
    fill(&store, &pseudonym_key(), now, CHATS, 0);
    let options = ReportOptions {
        min_cell_size: 0,
        bootstrap: false,
    };
    let before = report::build_with(&store, &ReportFilter::default(), now, &options).expect("report");
    assert_eq!(before.chats, CHATS as u64);

    let done = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(std::sync::Barrier::new(3));
    let readers: Vec<_> = (0..2)
        .map(|reader| {
            let (store, done, options, ready) = (store.clone(), done.clone(), options.clone(), ready.clone());
            std::thread::spawn(move || {
                let mut counted = Vec::new();
                let mut first = true;
                while !done.load(Ordering::SeqCst) || first {
                    if reader == 0 {
                        let built =
                            report::build_with(&store, &ReportFilter::default(), now, &options).expect("report");
                        counted.push((built.chats, built.pairs));
                    } else {
                        let strata = report::count_strata_by_scan(&store, now).expect("scan");
                        let chats = strata.iter().map(|(_, counts)| counts.chats).sum::<u64>();
                        counted.push((chats, 0));
                    }
                    if std::mem::take(&mut first) {
                        // The purge starts once each reader has counted once.
                        ready.wait();
                    }
                }
                counted
            })
        })
        .collect();
    ready.wait();
    let purged = purge(&store, now, 730, false, |_| {}).expect("purge");
    done.store(true, Ordering::SeqCst);
    assert_eq!(purged.chats, CHATS as u64);

    for (reader, handle) in readers.into_iter().enumerate() {
        let counted = handle.join().expect("reader thread");
        assert!(!counted.is_empty(), "reader {reader} built no report");
        for (chats, pairs) in counted {
            assert_eq!(chats, CHATS as u64, "chats counted by reader {reader} during the purge");
            if reader == 0 {
                assert_eq!(pairs, before.pairs, "pairs counted during the purge");
            }
        }
    }
}

/// Writes chat `pending-{number}`, received at `received_at`, with both
/// deliveries still queued, as a platform outage leaves them.
fn write_pending_chat(store: &Store, key: &PseudonymKey, number: usize, received_at: i64) {
    let chat_id = format!("pending-{number}");
    let chat_key = key.pseudonym("chat", &chat_id);
    let [parent, professional] = store.new_invitation_ids(&chat_key);
    let chat = ChatRecord {
        received_at,
        ended_at: "2022-03-01T10:00:00Z".into(),
        organization: Some("GGD Regio Utrecht".into()),
        topic: None,
        child_age_group: None,
        locale: "nl".into(),
        eligible: true,
        parent_invitation: parent.clone(),
        professional_invitation: professional.clone(),
        professional_participant: Some(key.pseudonym("participant", "nurse-1")),
        professional_unassigned: false,
    };
    let invitation = |id: &InvitationId, role: Role| InvitationRecord {
        id: id.clone(),
        chat: chat_key.clone(),
        role,
        locale: "nl".into(),
        created_at: received_at,
        expires_at: received_at + 7 * DAY,
        delivery: DeliveryStatus::Pending,
        delivered_at: None,
        response: Response::default(),
    };
    let delivery = |id: &InvitationId, role: Role, participant: &str| QueuedDelivery {
        invitation_id: id.clone(),
        role,
        chat_id: chat_id.clone(),
        participant_id: participant.into(),
        locale: "nl".into(),
        attempts: 3,
        created_at: received_at,
        next_attempt_at: received_at,
        last_error: Some("platform answered 503".into()),
    };
    store
        .accept_chat(NewChat {
            webhook_id: None,
            webhook_digest: None,
            chat_key: &chat_key,
            chat: &chat,
            invitations: &[
                invitation(&parent, Role::Parent),
                invitation(&professional, Role::Professional),
            ],
            deliveries: &[
                delivery(&parent, Role::Parent, &format!("parent-{number}")),
                delivery(&professional, Role::Professional, "nurse-1"),
            ],
            now: received_at,
        })
        .expect("chat written");
}

#[test]
fn purge_deletes_queued_deliveries_of_old_chats() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open(dir.path());
    let key = pseudonym_key();
    let now = now_millis();
    write_pending_chat(&store, &key, 0, now - 800 * DAY);
    write_pending_chat(&store, &key, 1, now - DAY);
    store.settle();
    assert_eq!(store.pending_deliveries().expect("readable").len(), 4);
    // The delivery worker is trying one of the old chat's deliveries while the purge runs.
    let due = store.due_deliveries(now, 10, |_| false).expect("readable");
    let (attempt_key, mut attempt) = due
        .into_iter()
        .find(|(_, delivery)| delivery.chat_id == "pending-0")
        .expect("the old chat's delivery is due");

    let dry = purge(&store, now, 730, true, |_| {}).expect("dry run");
    assert_eq!((dry.chats, dry.pending_deliveries), (1, 2));
    assert_eq!(
        store.pending_deliveries().expect("readable").len(),
        4,
        "a dry run deletes nothing"
    );

    let done = purge(&store, now, 730, false, |_| {}).expect("purge");
    assert_eq!((done.chats, done.pending_deliveries), (1, 2));
    let left: Vec<String> = store
        .pending_deliveries()
        .expect("readable")
        .into_iter()
        .map(|delivery| delivery.chat_id)
        .collect();
    assert_eq!(
        left,
        ["pending-1", "pending-1"],
        "the old chat's raw ids are still queued"
    );
    assert_eq!(store.queue_len(), 2);

    // The attempt fails after the purge: it must not queue the delivery again
    // nor keep it as a dead letter.
    attempt.next_attempt_at = now + 60_000;
    store.reschedule_delivery(&attempt_key, &attempt).expect("reschedule");
    store.dead_letter(&attempt_key, &attempt).expect("dead letter");
    assert_eq!(store.pending_deliveries().expect("readable").len(), 2);
    assert!(store.dead_deliveries().expect("readable").is_empty());
    assert_eq!(store.queue_len(), 2);
}
