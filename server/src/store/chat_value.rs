//! One sled record per chat, containing the chat and its invitations, and
//! beside it a small value with the chat's receive time and report facts,
//! both under one short key.
//!
//! sled 0.34 keeps a few hundred bytes in memory for every leaf page, and a
//! leaf contains at most 16 keys, so the memory of an open store follows the
//! number of keys. A chat used to take five: chat, facts, two invitations
//! and its webhook id. It now takes two, and the webhook id only for the
//! days that platforms retry, until it settles and moves into the archive
//! (see [`super::archive`]). The facts stay apart from the record because
//! every page a scan reads stays in memory for a while (sled accounts for
//! pages in batches): the scans at open and for the retention purge read
//! 90-byte facts, not the records of about 1.3 KB.
//!
//! The key is the first 16 bytes of SHA-256 over a random salt of the store
//! and the chat pseudonym. An invitation id carries the first 12 bytes of it
//! (`inv_` + 8 random hex digits + 24 hex digits of the key), so a
//! questionnaire request finds its chat without an index. The salt keeps the invitation id from
//! being computed from a chat pseudonym in an export.
//!
//! Record value: a format byte and the JSON of [`StoredChat`]. Facts value:
//! the receive time (i64, big-endian) and the facts ([`super::facts`]).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::facts;
use super::records::{ChatRecord, InvitationRecord, Millis};
use crate::questionnaire::Role;
use crate::token::InvitationId;

const FORMAT: u8 = 2;
const RECEIVED_BYTES: usize = 8;

/// Bytes of the record key.
pub(super) const KEY_BYTES: usize = 16;
/// Bytes of the record key that an invitation id carries.
pub(super) const ID_PREFIX_BYTES: usize = 12;
/// Hex digits of the random part of an invitation id, before the record key.
const ID_RANDOM_HEX: usize = 8;

/// The salt of a store: random, kept in its `meta` tree.
pub(super) type Salt = [u8; 16];

/// Returns the sled key of the chat with pseudonym `chat_key`.
pub(super) fn record_key(salt: &Salt, chat_key: &str) -> [u8; KEY_BYTES] {
    let digest = Sha256::new()
        .chain_update(salt)
        .chain_update(chat_key.as_bytes())
        .finalize();
    let mut key = [0; KEY_BYTES];
    key.copy_from_slice(&digest[..KEY_BYTES]);
    key
}

/// Returns the record-key prefix an invitation id carries, if it has the shape of one.
pub(super) fn id_prefix(id: &InvitationId) -> Option<[u8; ID_PREFIX_BYTES]> {
    let hex = id
        .as_str()
        .strip_prefix("inv_")?
        .get(ID_RANDOM_HEX..ID_RANDOM_HEX + 2 * ID_PREFIX_BYTES)?;
    let mut prefix = [0; ID_PREFIX_BYTES];
    for (slot, pair) in prefix.iter_mut().zip(hex.as_bytes().chunks(2)) {
        *slot = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(prefix)
}

/// The content of a record value, stored as JSON.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(super) struct StoredChat {
    /// The chat pseudonym.
    pub key: String,
    pub chat: ChatRecord,
    /// None for an ineligible chat, otherwise both roles.
    pub invitations: Vec<InvitationRecord>,
}

impl StoredChat {
    /// Encodes the record value.
    pub fn encode(&self) -> Vec<u8> {
        self.view().encode()
    }

    fn view(&self) -> StoredChatView<'_> {
        StoredChatView {
            key: &self.key,
            chat: &self.chat,
            invitations: &self.invitations,
        }
    }

    /// Decodes a record value; `None` when its format is unknown.
    pub fn decode(value: &[u8]) -> Option<Result<Self, serde_json::Error>> {
        match value.split_first() {
            Some((&FORMAT, json)) => Some(serde_json::from_slice(json)),
            _ => None,
        }
    }
}

/// A [`StoredChat`] made of borrowed parts, which encodes to the same
/// values without copying them. It serialises with the same field names.
#[derive(Serialize)]
pub(super) struct StoredChatView<'a> {
    pub key: &'a str,
    pub chat: &'a ChatRecord,
    pub invitations: &'a [InvitationRecord],
}

impl<'a> StoredChatView<'a> {
    pub fn invitation(&self, role: Role) -> Option<&'a InvitationRecord> {
        self.invitations.iter().find(|invitation| invitation.role == role)
    }

    /// Encodes the record value.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1536);
        out.push(FORMAT);
        serde_json::to_writer(&mut out, self).expect("records serialise");
        out
    }

    /// Encodes the facts value: the receive time and the report facts.
    pub fn facts_value(&self) -> Vec<u8> {
        let chat_facts = facts::encode(
            self.chat,
            [self.invitation(Role::Parent), self.invitation(Role::Professional)],
        );
        let mut out = Vec::with_capacity(RECEIVED_BYTES + chat_facts.len());
        out.extend_from_slice(&self.chat.received_at.to_be_bytes());
        out.extend_from_slice(&chat_facts);
        out
    }
}

/// Encodes the facts value of a chat: its receive time and report facts.
pub(super) fn facts_value(stored: &StoredChat) -> Vec<u8> {
    stored.view().facts_value()
}

/// Returns the report facts of a facts value.
pub(super) fn facts_of(value: &[u8]) -> Option<&[u8]> {
    value.get(RECEIVED_BYTES..)
}

/// Returns the receive time of a facts value.
pub(super) fn received_at(value: &[u8]) -> Option<Millis> {
    Some(Millis::from_be_bytes(value.get(..RECEIVED_BYTES)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{DeliveryStatus, Response};

    fn stored() -> StoredChat {
        let salt = [3; 16];
        let key = record_key(&salt, "chat-pseudonym");
        let id = |_: Role| InvitationId::with_locator(key[..ID_PREFIX_BYTES].try_into().unwrap());
        let (parent, professional) = (id(Role::Parent), id(Role::Professional));
        let invitation = |id: &InvitationId, role| InvitationRecord {
            id: id.clone(),
            chat: "chat-pseudonym".into(),
            role,
            locale: "nl".into(),
            created_at: 1,
            expires_at: 2,
            delivery: DeliveryStatus::Pending,
            delivered_at: None,
            response: Response::default(),
        };
        StoredChat {
            key: "chat-pseudonym".into(),
            chat: ChatRecord {
                received_at: 1,
                ended_at: "2022-07-01T10:14:31Z".into(),
                organization: Some("GGD".into()),
                topic: None,
                child_age_group: None,
                locale: "nl".into(),
                eligible: true,
                parent_invitation: parent.clone(),
                professional_invitation: professional.clone(),
                professional_participant: None,
                professional_unassigned: false,
            },
            invitations: vec![
                invitation(&parent, Role::Parent),
                invitation(&professional, Role::Professional),
            ],
        }
    }

    #[test]
    fn values_round_trip() {
        let chat = stored();
        assert_eq!(StoredChat::decode(&chat.encode()).unwrap().unwrap(), chat);
        let view = StoredChatView {
            key: &chat.key,
            chat: &chat.chat,
            invitations: &chat.invitations,
        };
        assert_eq!(view.encode(), chat.encode(), "a view encodes as the record");
        assert_eq!(view.facts_value(), facts_value(&chat));
        let value = facts_value(&chat);
        let expected = facts::encode(
            &chat.chat,
            [
                chat.view().invitation(Role::Parent),
                chat.view().invitation(Role::Professional),
            ],
        );
        assert_eq!(facts_of(&value), Some(expected.as_slice()));
        assert_eq!(received_at(&value), Some(chat.chat.received_at));
    }

    #[test]
    fn damaged_values_are_rejected() {
        let mut wrong_format = stored().encode();
        wrong_format[0] = 9;
        assert!(StoredChat::decode(&wrong_format).is_none());
        assert!(StoredChat::decode(&[]).is_none());
        assert!(StoredChat::decode(&[FORMAT, b'{']).unwrap().is_err());
        assert_eq!(received_at(&[1, 2, 3]), None);
    }

    #[test]
    fn invitation_ids_carry_the_record_key() {
        let salt = [9; 16];
        let key = record_key(&salt, "abc");
        let id = InvitationId::with_locator(key[..ID_PREFIX_BYTES].try_into().unwrap());
        assert_eq!(id_prefix(&id).unwrap(), key[..ID_PREFIX_BYTES]);
        assert_ne!(record_key(&[8; 16], "abc"), key, "the salt changes the key");
        let other = InvitationId::with_locator(key[..ID_PREFIX_BYTES].try_into().unwrap());
        assert_ne!(id, other, "the random tail keeps ids of one chat apart");
    }
}
