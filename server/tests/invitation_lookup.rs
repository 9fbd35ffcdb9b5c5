//! The questionnaire API finds a chat by the record key that an invitation
//! id carries, or through an alias for ids made before one record per
//! chat. An id must find only its own invitation.

mod common;

use alliance::questionnaire::Role;
use alliance::store::{Store, UpdateError};
use alliance::token::InvitationId;
use common::ChatBuilder;

const CACHE: u64 = 16 << 20;

/// Stores chat `chat_key` with invitations under `ids`, without a webhook id
/// or queued deliveries, and returns the ids.
fn store_chat(store: &Store, chat_key: &str, ids: [InvitationId; 2]) -> [InvitationId; 2] {
    ChatBuilder::new(chat_key)
        .invitation_ids(ids.clone())
        .without_deliveries()
        .accept(store);
    ids
}

/// Returns `id` with its 8 random hex digits replaced by `random`.
fn with_random(id: &InvitationId, random: &str) -> InvitationId {
    InvitationId::parse(&format!("inv_{random}{}", &id.as_str()[12..])).expect("valid id")
}

fn is_found(store: &Store, id: &InvitationId) -> bool {
    store.invitation(id).expect("readable").is_some()
}

fn update_finds(store: &Store, id: &InvitationId) -> bool {
    match store.update_invitation(id, |_| Ok::<_, ()>(())) {
        Ok(_) => true,
        Err(UpdateError::NotFound) => false,
        Err(_) => panic!("update of {id} failed"),
    }
}

#[test]
fn ids_find_only_their_invitation() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Store::open(dir.path(), CACHE).expect("store opens");
    let ids = store.new_invitation_ids("chat-a");
    let [parent, professional] = store_chat(&store, "chat-a", ids);
    let [other_parent, _] = store_chat(&store, "chat-b", store.new_invitation_ids("chat-b"));
    let [legacy, _] = store_chat(
        &store,
        "chat-legacy",
        [InvitationId::generate(), InvitationId::generate()],
    );
    store.settle();

    for id in [&parent, &professional, &other_parent, &legacy] {
        assert!(is_found(&store, id), "{id} not found");
        assert!(update_finds(&store, id), "{id} not found for an update");
    }
    assert_eq!(store.invitation(&parent).unwrap().unwrap().role, Role::Parent);
    assert_eq!(
        store.invitation(&professional).unwrap().unwrap().role,
        Role::Professional
    );

    // The record key of chat A with another random part: a guessed id.
    let random = if &parent.as_str()[4..12] == "00000000" {
        "00000001"
    } else {
        "00000000"
    };
    let forged = with_random(&parent, random);
    assert!(!is_found(&store, &forged), "a forged id found chat A");
    assert!(!update_finds(&store, &forged), "a forged id updated chat A");

    // Chat B's random part with chat A's record key.
    let mixed = with_random(&parent, &other_parent.as_str()[4..12]);
    assert!(!is_found(&store, &mixed), "an id mixing two chats was found");

    // A legacy id with its last digit changed, and an id never stored.
    let mut legacy_text = legacy.as_str().to_string();
    let last = if legacy_text.ends_with('0') { "1" } else { "0" };
    legacy_text.replace_range(legacy_text.len() - 1.., last);
    let near_legacy = InvitationId::parse(&legacy_text).expect("valid id");
    assert!(
        !is_found(&store, &near_legacy),
        "an id one digit off a legacy id was found"
    );
    assert!(!is_found(&store, &InvitationId::generate()), "an unknown id was found");
}
