//! A store written in the earlier format (a chat, its report facts and each
//! invitation under keys of their own) opens with every chat moved into one
//! record: the same chats, invitations, answers and report, and invitation
//! ids made before the move still work.

use alliance::questionnaire::{ITEM_COUNT, Rating, Role};
use alliance::report::{self, ReportFilter, ReportOptions};
use alliance::startup::now_millis;
use alliance::store::Store;
use alliance::store::facts;
use alliance::store::records::{Answer, ChatRecord, DeliveryStatus, InvitationRecord, QueuedDelivery, Response};
use alliance::token::InvitationId;

const CACHE: u64 = 16 << 20;
const CHATS: usize = 300;

/// A chat of the earlier format with its two invitations; every third
/// parent and every second nurse answered all items.
fn old_chat(number: usize) -> (String, ChatRecord, [InvitationRecord; 2]) {
    let key = format!("chat-{number:04}");
    let ids = [InvitationId::generate(), InvitationId::generate()];
    let chat = ChatRecord {
        received_at: 1_000,
        ended_at: format!("2022-07-{:02}T10:14:31Z", 1 + number % 28),
        organization: Some(["GGD A", "GGD B"][number % 2].into()),
        topic: Some("slapen".into()),
        child_age_group: None,
        locale: "nl".into(),
        eligible: true,
        parent_invitation: ids[0].clone(),
        professional_invitation: ids[1].clone(),
        professional_participant: Some(format!("nurse-{}", number % 7)),
        professional_unassigned: false,
    };
    let invitation = |n: usize, role: Role, answered: bool| {
        let mut response = Response::default();
        if answered {
            let rating = if number % 5 == 0 {
                Rating::Sufficient
            } else {
                Rating::Good
            };
            response.answers = [Some(Answer { rating, at: 2_000 }); ITEM_COUNT];
            response.completed_at = Some(2_000);
            response.submitted_at = Some(2_000);
        }
        InvitationRecord {
            id: ids[n].clone(),
            chat: key.clone(),
            role,
            locale: "nl".into(),
            created_at: 1_000,
            expires_at: i64::MAX / 2,
            delivery: DeliveryStatus::Delivered,
            delivered_at: Some(1_500),
            response,
        }
    };
    let invitations = [
        invitation(0, Role::Parent, number % 3 == 0),
        invitation(1, Role::Professional, number % 2 == 0),
    ];
    (key, chat, invitations)
}

/// Opens sled in `dir`, waiting for the threads of a store closed just
/// before to let go of its lock.
fn open_sled(dir: &std::path::Path) -> sled::Db {
    let started = std::time::Instant::now();
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(error) if started.elapsed() > std::time::Duration::from_secs(10) => panic!("sled opens: {error}"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

/// Opens the store in `dir`, waiting like [`open_sled`].
fn open_store(dir: &std::path::Path) -> Store {
    let started = std::time::Instant::now();
    loop {
        match Store::open(dir, CACHE) {
            Ok(store) => return store,
            Err(error) if started.elapsed() > std::time::Duration::from_secs(10) => panic!("store opens: {error}"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

/// Writes `CHATS` chats in the earlier format with plain sled, with one
/// invitation in the dead-letter list. Returns them.
fn write_old_store(dir: &std::path::Path) -> Vec<(String, ChatRecord, [InvitationRecord; 2])> {
    let db = open_sled(dir);
    let (chats, invitations, facts_tree, dead) = (
        db.open_tree("chats").unwrap(),
        db.open_tree("invitations").unwrap(),
        db.open_tree("facts").unwrap(),
        db.open_tree("dead").unwrap(),
    );
    let written: Vec<_> = (0..CHATS).map(old_chat).collect();
    for (key, chat, pair) in &written {
        chats.insert(key, serde_json::to_vec(chat).unwrap()).unwrap();
        for invitation in pair {
            invitations
                .insert(invitation.id.as_str(), serde_json::to_vec(invitation).unwrap())
                .unwrap();
        }
        facts_tree
            .insert(key, facts::encode(chat, [Some(&pair[0]), Some(&pair[1])]))
            .unwrap();
    }
    let dead_one = &written[1].2[0];
    let delivery = QueuedDelivery {
        invitation_id: dead_one.id.clone(),
        role: Role::Parent,
        chat_id: "raw-1".into(),
        participant_id: "parent-1".into(),
        locale: "nl".into(),
        attempts: 8,
        created_at: 1_000,
        next_attempt_at: 1_000,
        last_error: Some("HTTP 500".into()),
    };
    dead.insert(dead_one.id.as_str(), serde_json::to_vec(&delivery).unwrap())
        .unwrap();
    // Every chat has facts, as the last version of the earlier format marked.
    db.open_tree("meta").unwrap().insert("facts_version", &[1]).unwrap();
    db.flush().unwrap();
    written
}

fn pairs_and_chats(store: &Store) -> (u64, u64) {
    let options = ReportOptions {
        min_cell_size: 1,
        bootstrap: false,
    };
    let built = report::build_with(store, &ReportFilter::default(), now_millis(), &options).expect("report builds");
    (built.pairs, built.chats)
}

#[test]
fn old_store_moves_into_one_record_per_chat() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let written = write_old_store(dir.path());
    let expected_pairs = (0..CHATS).filter(|n| n % 6 == 0).count() as u64;

    {
        let store = open_store(dir.path());
        assert_eq!(store.chat_count(), CHATS);
        assert_eq!(pairs_and_chats(&store), (expected_pairs, CHATS as u64));
        for (key, chat, pair) in &written {
            assert_eq!(store.chat(key).unwrap().as_ref(), Some(chat), "chat {key}");
            for invitation in pair {
                assert_eq!(store.invitation(&invitation.id).unwrap().as_ref(), Some(invitation));
            }
        }
        assert!(store.is_dead_letter(&written[1].2[0].id).unwrap());

        // An old id still takes answers, and the report follows: chat 2's
        // nurse answered, its parent had not.
        let parent = &written[2].2[0];
        store
            .update_invitation(&parent.id, |record| {
                record.response.answers = [Some(Answer {
                    rating: Rating::Good,
                    at: 3_000,
                }); ITEM_COUNT];
                record.response.submitted_at = Some(3_000);
                Ok::<_, ()>(())
            })
            .expect("updated");
        assert_eq!(pairs_and_chats(&store).0, expected_pairs + 1);
    }

    // Opening again finds the same records under the same salt and moves nothing twice.
    let store = open_store(dir.path());
    assert_eq!(store.chat_count(), CHATS);
    assert_eq!(pairs_and_chats(&store).0, expected_pairs + 1);
    let parent = store.invitation(&written[2].2[0].id).unwrap().expect("still found");
    assert_eq!(parent.response.submitted_at, Some(3_000));

    // Purging a moved chat deletes its aliases and dead letter too.
    let purged = store
        .purge_chats(&[written[1].0.clone()], std::time::Duration::from_secs(1), |_| {
            Ok((b"week".to_vec(), b"totals".to_vec()))
        })
        .unwrap()
        .pop()
        .flatten()
        .expect("chat was stored");
    assert_eq!((purged.invitations, purged.dead_letters), (2, 1));
    assert_eq!(store.invitation(&written[1].2[0].id).unwrap(), None);
    drop(store);

    // The old trees are gone.
    let db = open_sled(dir.path());
    for name in ["chats", "invitations", "facts"] {
        assert!(db.open_tree(name).unwrap().is_empty(), "{name} was emptied");
    }
    assert_eq!(db.open_tree("chat_records").unwrap().len(), CHATS - 1);
    assert_eq!(db.open_tree("chat_facts").unwrap().len(), CHATS - 1);
}

#[test]
fn interrupted_move_starts_again() {
    let dir = tempfile::tempdir().expect("temporary directory");
    write_old_store(dir.path());
    {
        // What a move that stopped half-way leaves: some records, no mark of completion.
        let db = open_sled(dir.path());
        let records = db.open_tree("chat_records").unwrap();
        records.insert(b"half-written", b"\x01garbage".to_vec()).unwrap();
        db.flush().unwrap();
    }
    let store = open_store(dir.path());
    assert_eq!(store.chat_count(), CHATS, "the half-written record is gone");
    assert_eq!(
        pairs_and_chats(&store),
        ((0..CHATS).filter(|n| n % 6 == 0).count() as u64, CHATS as u64)
    );
}

#[test]
fn damaged_salt_stops_the_open() {
    let dir = tempfile::tempdir().expect("temporary directory");
    drop(open_store(dir.path()));
    {
        let db = open_sled(dir.path());
        db.open_tree("meta")
            .unwrap()
            .insert(b"record_salt", b"short".to_vec())
            .unwrap();
        db.flush().unwrap();
    }
    let started = std::time::Instant::now();
    let error = loop {
        let error = Store::open(dir.path(), CACHE).err().expect("damaged salt is refused");
        // sled's threads may hold the lock a moment after the close above.
        if !error.to_string().contains("lock") || started.elapsed().as_secs() > 10 {
            break error;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(error.to_string().contains("record_salt"), "{error}");
}

/// The earlier format wrote a chat's invitations and queued deliveries
/// before the chat, so a crash could leave them without it. The move keeps
/// only invitations of stored chats, so such a delivery must not stay: the
/// platform would get a link to a questionnaire that is not stored, and a
/// dead letter with raw platform ids would never be purged.
#[test]
fn move_leaves_no_delivery_without_invitation() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let written = write_old_store(dir.path());
    let (_, _, [lost, lost_professional]) = old_chat(CHATS);
    {
        let db = open_sled(dir.path());
        db.open_tree("invitations")
            .unwrap()
            .insert(lost.id.as_str(), serde_json::to_vec(&lost).unwrap())
            .unwrap();
        let delivery = QueuedDelivery {
            invitation_id: lost.id.clone(),
            role: Role::Parent,
            chat_id: "raw-lost".into(),
            participant_id: "parent-lost".into(),
            locale: "nl".into(),
            attempts: 0,
            created_at: 1_000,
            next_attempt_at: 1_000,
            last_error: None,
        };
        db.open_tree("queue")
            .unwrap()
            .insert(
                alliance::store::queue_key(1_000, &lost.id),
                serde_json::to_vec(&delivery).unwrap(),
            )
            .unwrap();
        db.open_tree("dead")
            .unwrap()
            .insert(lost_professional.id.as_str(), serde_json::to_vec(&delivery).unwrap())
            .unwrap();
        db.flush().unwrap();
    }

    let store = open_store(dir.path());
    assert_eq!(store.chat_count(), CHATS);
    let pending = store.pending_deliveries().expect("queue readable");
    for delivery in &pending {
        assert!(
            store.invitation(&delivery.invitation_id).unwrap().is_some(),
            "queued delivery of {} has no invitation",
            delivery.invitation_id
        );
    }
    assert!(
        !store.is_dead_letter(&lost_professional.id).unwrap(),
        "a dead letter without its invitation would never be purged"
    );
    assert!(
        store.is_dead_letter(&written[1].2[0].id).unwrap(),
        "a moved dead letter stays"
    );
}

/// An ineligible chat of the earlier format has no invitations. It moves
/// as a record without them and the report still counts it.
#[test]
fn ineligible_chat_moves_without_invitations() {
    let dir = tempfile::tempdir().expect("temporary directory");
    write_old_store(dir.path());
    let (key, mut chat, _) = old_chat(CHATS);
    chat.eligible = false;
    {
        let db = open_sled(dir.path());
        db.open_tree("chats")
            .unwrap()
            .insert(&key, serde_json::to_vec(&chat).unwrap())
            .unwrap();
        db.open_tree("facts")
            .unwrap()
            .insert(&key, facts::encode(&chat, [None, None]))
            .unwrap();
        db.flush().unwrap();
    }

    let store = open_store(dir.path());
    assert_eq!(store.chat(&key).unwrap().as_ref(), Some(&chat));
    assert_eq!(store.invitation(&chat.parent_invitation).unwrap(), None);
    assert_eq!(store.chat_count(), CHATS + 1);
    let options = ReportOptions {
        min_cell_size: 1,
        bootstrap: false,
    };
    let built = report::build_with(&store, &ReportFilter::default(), now_millis(), &options).expect("report builds");
    assert_eq!(built.chats_ineligible, 1);
}

/// A retention purge of the earlier format folded a chat into the totals
/// first and then deleted its invitations, facts and chat one by one, so a
/// crash could leave the chat without some of them. Such a chat is counted
/// in the totals already and must not move, or it would be counted twice.
#[test]
fn half_purged_chats_stay_behind() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let written = write_old_store(dir.path());
    let without_parent = &written[3];
    let without_invitations = &written[4];
    let without_facts = &written[5];
    {
        let db = open_sled(dir.path());
        let invitations = db.open_tree("invitations").unwrap();
        invitations.remove(without_parent.2[0].id.as_str()).unwrap();
        for invitation in &without_invitations.2 {
            invitations.remove(invitation.id.as_str()).unwrap();
        }
        for invitation in &without_facts.2 {
            invitations.remove(invitation.id.as_str()).unwrap();
        }
        db.open_tree("facts").unwrap().remove(&without_facts.0).unwrap();
        db.flush().unwrap();
    }

    let store = open_store(dir.path());
    assert_eq!(store.chat_count(), CHATS - 3);
    for (key, _, _) in [without_parent, without_invitations, without_facts] {
        assert_eq!(store.chat(key).unwrap(), None, "{key} moved");
    }
    assert_eq!(
        store.invitation(&without_parent.2[1].id).unwrap(),
        None,
        "the invitation its purge had not reached yet goes too"
    );
    assert!(store.chat(&written[6].0).unwrap().is_some(), "whole chats move");
}

/// Before report facts existed, no chat had facts and nothing was purged,
/// so chats without facts move as before.
#[test]
fn chats_without_facts_move_from_stores_before_facts() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let written = write_old_store(dir.path());
    {
        let db = open_sled(dir.path());
        db.open_tree("meta").unwrap().remove("facts_version").unwrap();
        db.open_tree("facts").unwrap().clear().unwrap();
        db.flush().unwrap();
    }

    let store = open_store(dir.path());
    assert_eq!(store.chat_count(), CHATS);
    assert_eq!(store.chat(&written[5].0).unwrap().as_ref(), Some(&written[5].1));
}
