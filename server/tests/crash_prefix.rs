//! kill -9 while sled contains writes that the journal on disk does not. sled
//! 0.34 writes each full log buffer (one 512 KiB segment) to its file
//! without being flushed, so after a crash it can keep part of a write
//! whose journal record never reached the disk. Opening the store must still
//! give chats, facts, queue and totals that agree.
//!
//! Each test runs this test binary again as a child with
//! `ALLIANCE_CRASH_MODE` set, waits until the child has written its changes
//! into sled without flushing them, and kills it.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use alliance::bench::fill::write_chat;
use alliance::questionnaire::{ITEM_COUNT, Rating};
use alliance::report::{self, ReportFilter, ReportOptions};
use alliance::startup::now_millis;
use alliance::store::Store;
use alliance::store::records::{Answer, Response};
use alliance::token::{PseudonymKey, ServerKey};
use common::ChatBuilder;

const CACHE: u64 = 16 << 20;
const DAY: i64 = 24 * 3_600_000;
/// Chats the accepting child writes without a flush, enough for sled to
/// write many 512 KiB segments before the kill.
const UNFLUSHED_CHATS: usize = 20_000;
/// Chats older than the retention period that the purging child deletes.
const OLD_CHATS: usize = 12_000;
const RETENTION_DAYS: u32 = 730;
/// Chats whose parent the answering child answers, and whose deliveries the
/// rescheduling child moves, each without a flush.
const STORED_CHATS: usize = 12_000;
/// Whether a kill lands inside one write is chance, so each test tries
/// this many times, each on a new store.
const ROUNDS: usize = 3;

fn pseudonym_key() -> PseudonymKey {
    ServerKey::from_bytes(vec![7; 32]).expect("32 bytes").pseudonym_key()
}

/// Counts the chats and the matched pairs in the report: live chats and
/// purged totals together.
fn reported(store: &Store) -> (u64, u64) {
    let options = ReportOptions {
        min_cell_size: 1,
        bootstrap: false,
    };
    let built = report::build_with(store, &ReportFilter::default(), now_millis(), &options).expect("report builds");
    (built.chats, built.pairs)
}

/// Runs `prepare` on a new directory, kills `crash_child` in `mode` on it,
/// and returns the first message of `check`, over at most [`ROUNDS`] rounds.
fn first_failure(
    mode: &str,
    prepare: impl Fn(&Path),
    check: impl Fn(&Path) -> Result<(), String>,
) -> Result<(), String> {
    for round in 1..=ROUNDS {
        let dir = tempfile::tempdir().expect("temporary directory");
        prepare(dir.path());
        run_and_kill(mode, dir.path());
        check(dir.path()).map_err(|message| format!("round {round}: {message}"))?;
    }
    Ok(())
}

fn all_answers(at: i64) -> Response {
    Response {
        answers: [Some(Answer {
            rating: Rating::Good,
            at,
        }); ITEM_COUNT],
        completed_at: Some(at),
        submitted_at: Some(at),
        ..Response::default()
    }
}

/// Opens the store in `dir`, waiting for a killed child's lock to go.
fn open_store(dir: &Path) -> Store {
    let started = Instant::now();
    loop {
        match Store::open(dir, CACHE) {
            Ok(store) => return store,
            Err(error) if started.elapsed() > Duration::from_secs(10) => panic!("store opens: {error}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Runs `crash_child` in `mode` on `dir`, and kills it with SIGKILL once it
/// reports that its changes are in sled.
fn run_and_kill(mode: &str, dir: &Path) {
    let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "crash_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env("ALLIANCE_CRASH_DIR", dir)
        .env("ALLIANCE_CRASH_MODE", mode)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("child starts");
    let ready = dir.join("ready");
    let started = Instant::now();
    while !ready.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the child did not finish its writes"
        );
        if let Some(status) = child.try_wait().expect("child state") {
            panic!("the child ended before its writes were done: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
}

/// Accepts chat `number` with both deliveries queued and, when
/// `professional_answered`, the professional's questionnaire answered.
/// Does not flush.
fn accept(store: &Store, number: usize, professional_answered: bool) {
    let now = now_millis();
    let chat_key = format!("chat-{number}");
    let ids = store.new_invitation_ids(&chat_key);
    let mut chat = ChatBuilder::new(&chat_key)
        .at(now)
        .invitation_ids(ids)
        .webhook(&format!("msg_{number}"), None)
        .organization("GGD A")
        .expires_after(DAY);
    if professional_answered {
        chat = chat.professional_response(all_answers(now));
    }
    chat.accept(store);
}

/// Fills a store in `dir` with [`STORED_CHATS`] chats, each with its
/// professional's answers, flushed and closed.
fn prepare_stored_chats(dir: &Path) {
    let store = open_store(&dir.join("store"));
    for number in 0..STORED_CHATS {
        accept(&store, number, true);
    }
    store.flush_blocking().expect("flushed");
}

/// Chats accepted but not yet flushed when the process is killed were never
/// acknowledged, so losing them is allowed. What survives must be whole: no
/// queued invitation without its chat, which the platform would post as a
/// dead link, and no report facts without a chat.
#[test]
fn unflushed_chats_leave_no_orphans() {
    let result = first_failure(
        "accept",
        |_| {},
        |dir| {
            let store = open_store(&dir.join("store"));
            let chats = store.chat_count();
            if chats == 0 {
                return Err("sled kept none of the unflushed chats, so nothing was tested".into());
            }
            let pending = store.pending_deliveries().expect("queue readable");
            let orphans = pending
                .iter()
                .filter(|delivery| store.invitation(&delivery.invitation_id).expect("readable").is_none())
                .count();
            if orphans > 0 {
                return Err(format!("{orphans} queued deliveries without their invitation"));
            }
            let (reported_chats, _) = reported(&store);
            if reported_chats != chats as u64 {
                return Err(format!(
                    "the report counts {reported_chats} chats, the store has {chats}"
                ));
            }
            Ok(())
        },
    );
    result.unwrap();
}

/// A purge killed half-way and run again must fold each chat into the
/// totals once and delete every old chat.
#[test]
fn purge_killed_and_rerun_counts_once() {
    let key = pseudonym_key();
    let result = first_failure(
        "purge",
        |dir| {
            let store = open_store(&dir.join("store"));
            let received_at = now_millis() - 800 * DAY;
            for number in 0..OLD_CHATS {
                write_chat(&store, &key, number, received_at).expect("old chat written");
            }
            store.flush_blocking().expect("flushed");
        },
        |dir| {
            let store = open_store(&dir.join("store"));
            alliance::retention::purge(&store, now_millis(), RETENTION_DAYS, false, |_| {}).expect("purged again");
            store.flush_blocking().expect("flushed");
            let kept = (0..OLD_CHATS)
                .filter(|number| {
                    let chat_key = key.pseudonym("chat", &format!("fill-{number}"));
                    store.chat(&chat_key).expect("readable").is_some()
                })
                .count();
            if kept > 0 {
                return Err(format!("{kept} old chats left after the purge ran again"));
            }
            let (chats, _) = reported(&store);
            if chats != OLD_CHATS as u64 {
                return Err(format!("the totals count {chats} chats, {OLD_CHATS} were purged"));
            }
            Ok(())
        },
    );
    result.unwrap();
}

/// After answers that were never flushed, the report facts must still match
/// the chat records. A backup computes its facts from the records, so its
/// report shows any difference.
#[test]
fn unflushed_answers_keep_facts_and_records_equal() {
    let result = first_failure("answer", prepare_stored_chats, |dir| {
        let store = open_store(&dir.join("store"));
        let copy_dir = dir.join("copy");
        store.copy_to(&copy_dir).expect("copied");
        let copy = open_store(&copy_dir);
        let (live, copied) = (reported(&store), reported(&copy));
        if live != copied {
            return Err(format!(
                "chats and pairs from the facts {live:?}, from the records {copied:?}"
            ));
        }
        Ok(())
    });
    result.unwrap();
}

/// Moving a delivery to a later attempt replaces its queue entry. A kill
/// during unflushed moves may undo a move, never lose the delivery.
#[test]
fn unflushed_reschedules_keep_every_delivery() {
    let result = first_failure("reschedule", prepare_stored_chats, |dir| {
        let store = open_store(&dir.join("store"));
        let queued = store.pending_deliveries().expect("queue readable").len();
        if queued != 2 * STORED_CHATS {
            return Err(format!("{queued} queued deliveries of {}", 2 * STORED_CHATS));
        }
        Ok(())
    });
    result.unwrap();
}

/// Settled chats that the archiving child moves into the archive.
const SETTLED_CHATS: usize = 12_000;

/// The journal on disk has a first archive move, and sled also a second one
/// into many of the same buckets. Replaying the first must not take the
/// chats of the second out of those buckets.
#[test]
fn archive_move_killed_keeps_every_chat() {
    let key = pseudonym_key();
    let result = first_failure(
        "archive",
        |dir| {
            let store = open_store(&dir.join("store"));
            // Half settled now, half settled only 10 days from now.
            for number in 0..SETTLED_CHATS {
                let days_ago = if number % 2 == 0 { 30 } else { 5 };
                write_chat(&store, &key, number, now_millis() - days_ago * DAY).expect("chat written");
            }
            store.flush_blocking().expect("flushed");
        },
        |dir| {
            let store = open_store(&dir.join("store"));
            let stored = store.chats().count();
            if stored != SETTLED_CHATS {
                return Err(format!("{stored} chats after the kill, {SETTLED_CHATS} written"));
            }
            let (chats, _) = reported(&store);
            if chats != SETTLED_CHATS as u64 {
                return Err(format!("the report counts {chats} chats, {SETTLED_CHATS} written"));
            }
            store
                .archive_settled(now_millis() + 10 * DAY, |_| {})
                .expect("moved again");
            if store.archived_count() != SETTLED_CHATS {
                return Err(format!("{} archived after the move ran again", store.archived_count()));
            }
            Ok(())
        },
    );
    result.unwrap();
}

#[test]
#[ignore = "run by the tests above"]
fn crash_child() {
    let (Some(dir), Some(mode)) = (
        std::env::var_os("ALLIANCE_CRASH_DIR"),
        std::env::var("ALLIANCE_CRASH_MODE").ok(),
    ) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let store = open_store(&dir.join("store"));
    match mode.as_str() {
        "accept" => {
            for number in 0..UNFLUSHED_CHATS {
                accept(&store, number, false);
            }
            // In sled, not in the journal on disk: no flush was requested.
            store.settle();
        }
        "purge" => {
            alliance::retention::purge(&store, now_millis(), RETENTION_DAYS, false, |_| {}).expect("purged");
        }
        "answer" => {
            let now = now_millis();
            for number in 0..STORED_CHATS {
                let chat = store
                    .chat(&format!("chat-{number}"))
                    .expect("readable")
                    .expect("stored");
                store
                    .update_invitation(&chat.parent_invitation, |record| {
                        record.response = all_answers(now);
                        Ok::<_, ()>(())
                    })
                    .expect("answered");
            }
        }
        "reschedule" => {
            let later = now_millis() + DAY;
            let due = store
                .due_deliveries(later, usize::MAX, |_| false)
                .expect("queue readable");
            for (key, mut delivery) in due {
                delivery.attempts += 1;
                delivery.next_attempt_at = later + 1;
                store.reschedule_delivery(&key, &delivery).expect("rescheduled");
            }
        }
        "archive" => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime starts");
            store.archive_settled(now_millis(), |_| {}).expect("first move");
            runtime.block_on(store.flush()).expect("journal synced");
            // The second move reaches sled but not the journal on disk.
            store
                .archive_settled(now_millis() + 10 * DAY, |_| {})
                .expect("second move");
        }
        other => panic!("unknown mode {other}"),
    }
    std::fs::write(dir.join("ready"), b"").expect("ready file written");
    std::thread::sleep(Duration::from_secs(600));
}
