//! A backup taken while deliveries complete, fail and give up, and while
//! comments arrive by webhook, is consistent. In the copy, every pending
//! invitation has exactly one queue entry, every dead one a dead letter, no
//! delivered one is queued, and the webhook id of every comment is there.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use alliance::startup::now_millis;
use alliance::store::records::DeliveryStatus;
use alliance::store::webhook_ids::{WebhookSeen, body_digest};
use alliance::store::{ChatAcceptance, Store};
use common::ChatBuilder;

const CACHE: u64 = 16 << 20;
const CHATS: usize = 3_000;

/// Accepts chat `chat` with both invitations queued, under ids that carry its record key.
fn accept(store: &Store, chat: &str) {
    let ids = store.new_invitation_ids(chat);
    let acceptance = ChatBuilder::new(chat).invitation_ids(ids).accept(store);
    assert_eq!(acceptance, ChatAcceptance::New);
}

/// Completes, reschedules or dead-letters queued deliveries, one by one,
/// and brings a comment by webhook to every fourth invitation, until `stop`
/// is set. The comment is the webhook id. Returns how many it changed.
fn work_the_queue(store: &Store, stop: &AtomicBool) -> usize {
    let mut changed = 0;
    while !stop.load(Ordering::Relaxed) {
        let due = store
            .due_deliveries(now_millis() + 3_600_000, 64, |_| false)
            .expect("queue readable");
        if due.is_empty() {
            break;
        }
        for (key, mut delivery) in due {
            match changed % 3 {
                0 => store
                    .complete_delivery(&key, &delivery.invitation_id, now_millis())
                    .expect("completed"),
                1 if delivery.attempts == 0 => {
                    delivery.attempts = 1;
                    delivery.next_attempt_at += 1_000;
                    store.reschedule_delivery(&key, &delivery).expect("rescheduled");
                }
                _ => store.dead_letter(&key, &delivery).expect("dead-lettered"),
            }
            if changed % 4 == 0 {
                let webhook = format!("msg_answer_{changed}");
                store
                    .update_invitation_once(
                        &webhook,
                        Some(body_digest(webhook.as_bytes())),
                        now_millis(),
                        &delivery.invitation_id,
                        |record| {
                            record.response.comment = Some(webhook.clone());
                            Ok::<_, ()>(())
                        },
                    )
                    .expect("answered")
                    .expect("a new webhook id");
            }
            changed += 1;
        }
    }
    changed
}

#[test]
fn backup_during_deliveries_is_consistent() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Arc::new(Store::open(&dir.path().join("source"), CACHE).expect("store opens"));
    for chat in 0..CHATS {
        accept(&store, &format!("chat-{chat}"));
    }
    store.settle();

    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        std::thread::spawn(move || work_the_queue(&store, &stop))
    };
    let copy_dir = dir.path().join("copy");
    let copied = store.copy_to(&copy_dir).expect("copied");
    stop.store(true, Ordering::Relaxed);
    let changed = worker.join().expect("no panic");
    assert_eq!(copied, CHATS);
    assert!(changed > 0, "the queue changed during the copy");
    drop(store);

    let copy = Store::open(&copy_dir, CACHE).expect("copy opens");
    let mut queued: HashMap<String, usize> = HashMap::new();
    for delivery in copy.pending_deliveries().expect("queue readable") {
        *queued.entry(delivery.invitation_id.as_str().to_owned()).or_default() += 1;
    }
    let mut dead: HashMap<String, usize> = HashMap::new();
    for delivery in copy.dead_deliveries().expect("dead letters readable") {
        *dead.entry(delivery.invitation_id.as_str().to_owned()).or_default() += 1;
    }
    let mut invitations = 0;
    for chat in copy.chats() {
        let record = chat.expect("chat readable").chat;
        for id in [&record.parent_invitation, &record.professional_invitation] {
            let invitation = copy.invitation(id).expect("readable").expect("invitation in the copy");
            let in_queue = queued.remove(id.as_str()).unwrap_or(0);
            let in_dead = dead.remove(id.as_str()).unwrap_or(0);
            let expected = match invitation.delivery {
                DeliveryStatus::Pending => (1, 0),
                DeliveryStatus::Dead => (0, 1),
                _ => (0, 0),
            };
            assert_eq!((in_queue, in_dead), expected, "{id}: {:?}", invitation.delivery);
            if let Some(webhook) = &invitation.response.comment {
                let seen = copy
                    .webhook_seen(webhook, Some(body_digest(webhook.as_bytes())))
                    .expect("readable");
                assert_eq!(seen, WebhookSeen::Retry, "{webhook} brought an answer in the copy");
            }
            invitations += 1;
        }
    }
    assert_eq!(invitations, 2 * CHATS);
    assert!(queued.is_empty(), "queued deliveries without their chat: {queued:?}");
    assert!(dead.is_empty(), "dead letters without their chat: {dead:?}");
}
