//! Accepted chats go through the store's inbox before they reach sled:
//! deduplication must see them there, reads must wait for them, and closing
//! the store must write them.

use std::sync::Arc;

use alliance::questionnaire::Role;
use alliance::report::{self, ReportFilter, ReportOptions};
use alliance::startup::now_millis;
use alliance::store::records::{ChatRecord, DeliveryStatus, InvitationRecord, QueuedDelivery, Response};
use alliance::store::{ChatAcceptance, NewChat, Store};
use alliance::token::InvitationId;

const CACHE: u64 = 16 << 20;

/// Accepts chat `chat` under webhook id `webhook`, with both invitations queued.
fn accept(store: &Store, webhook: &str, chat: &str) -> ChatAcceptance {
    let now = now_millis();
    let ids = [InvitationId::generate(), InvitationId::generate()];
    let record = ChatRecord {
        received_at: now,
        ended_at: "2022-07-01T10:14:31Z".into(),
        organization: None,
        topic: None,
        child_age_group: None,
        locale: "nl".into(),
        eligible: true,
        parent_invitation: ids[0].clone(),
        professional_invitation: ids[1].clone(),
        professional_participant: None,
    };
    let roles = [Role::Parent, Role::Professional];
    let invitations = [0, 1].map(|n| InvitationRecord {
        id: ids[n].clone(),
        chat: chat.into(),
        role: roles[n],
        locale: "nl".into(),
        created_at: now,
        expires_at: now + 3_600_000,
        delivery: DeliveryStatus::Pending,
        delivered_at: None,
        response: Response::default(),
    });
    let deliveries = [0, 1].map(|n| QueuedDelivery {
        invitation_id: ids[n].clone(),
        role: roles[n],
        chat_id: format!("raw-{chat}"),
        participant_id: format!("participant-{n}"),
        locale: "nl".into(),
        attempts: 0,
        created_at: now,
        next_attempt_at: now,
        last_error: None,
    });
    store
        .accept_chat(NewChat {
            webhook_id: webhook,
            chat_key: chat,
            chat: &record,
            invitations: &invitations,
            deliveries: &deliveries,
            now,
        })
        .expect("accepted")
}

fn reported_chats(store: &Store) -> u64 {
    let options = ReportOptions {
        min_cell_size: 1,
        bootstrap: false,
    };
    report::build_with(store, &ReportFilter::default(), now_millis(), &options)
        .expect("report builds")
        .chats
}

#[test]
fn duplicates_found_in_inbox_and_sled() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Store::open(dir.path(), CACHE).expect("store opens");

    assert_eq!(accept(&store, "msg_1", "chat-a"), ChatAcceptance::New);
    // Straight after: the chat may still be in the inbox.
    assert_eq!(accept(&store, "msg_1", "chat-a"), ChatAcceptance::DuplicateWebhook);
    assert_eq!(accept(&store, "msg_2", "chat-a"), ChatAcceptance::KnownChat);
    assert!(store.webhook_seen("msg_2").expect("readable"));

    store.settle();
    assert_eq!(accept(&store, "msg_1", "chat-b"), ChatAcceptance::DuplicateWebhook);
    assert_eq!(accept(&store, "msg_3", "chat-a"), ChatAcceptance::KnownChat);
    assert_eq!(accept(&store, "msg_4", "chat-b"), ChatAcceptance::New);

    // Reads wait for the inbox, so the report counts both chats at once.
    assert_eq!(reported_chats(&store), 2);
    assert_eq!(store.chat_count(), 2);
    assert_eq!(store.pending_deliveries().expect("readable").len(), 4);
}

#[test]
fn concurrent_webhooks_create_chat_once() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Arc::new(Store::open(dir.path(), CACHE).expect("store opens"));
    let threads: Vec<_> = (0..8)
        .map(|thread| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                (0..200)
                    .map(|chat| accept(&store, &format!("msg_{thread}_{chat}"), &format!("chat-{chat}")))
                    .filter(|acceptance| *acceptance == ChatAcceptance::New)
                    .count()
            })
        })
        .collect();
    let created: usize = threads.into_iter().map(|thread| thread.join().expect("no panic")).sum();
    assert_eq!(created, 200, "every chat created exactly once");
    store.settle();
    assert_eq!(store.inbox_len(), 0);
    assert_eq!(store.chat_count(), 200);
    assert_eq!(store.pending_deliveries().expect("readable").len(), 400);
}

#[test]
fn close_writes_inbox() {
    let dir = tempfile::tempdir().expect("temporary directory");
    {
        let store = Store::open(dir.path(), CACHE).expect("store opens");
        for chat in 0..2_000 {
            assert_eq!(
                accept(&store, &format!("msg_{chat}"), &format!("chat-{chat}")),
                ChatAcceptance::New
            );
        }
    }
    let store = Store::open(dir.path(), CACHE).expect("store opens again");
    assert_eq!(store.chat_count(), 2_000);
    assert_eq!(reported_chats(&store), 2_000);
    assert_eq!(accept(&store, "msg_1999", "chat-new"), ChatAcceptance::DuplicateWebhook);
}
