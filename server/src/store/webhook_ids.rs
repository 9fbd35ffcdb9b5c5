//! Values of the `webhook_ids` tree: when a `webhook-id` was accepted and a
//! digest of the event it came with.
//!
//! A sender retries an event with the same id and the same content. An id that
//! comes back with another event is a sender fault: a new event under an old
//! id, which deduplication would drop silently. The digest distinguishes
//! the two, so the service rejects the second with `409`, as payment APIs
//! reject an idempotency key reused with other parameters.
//!
//! Value: `[receive time: i64 BE][first 16 bytes of SHA-256 of the event]`,
//! where the event is the parsed JSON body written again in one canonical
//! form (see [`event_digest`]).
//! Values written before the digest, and ids remembered without one
//! (Chatwoot's delivery ids), have only the 8-byte time; they match any event.

use sha2::{Digest, Sha256};

use super::records::Millis;

/// The first 16 bytes of SHA-256 of a webhook event (see [`event_digest`]).
pub type EventDigest = [u8; 16];

/// Digest of a webhook event as parsed JSON, written again with sorted keys
/// and no spaces, so a retry whose sender formats the same event another way
/// still matches.
pub fn event_digest(event: &serde_json::Value) -> EventDigest {
    // serde_json writes a `Value` to memory without error, because its map keys are strings.
    body_digest(&serde_json::to_vec(event).unwrap_or_default())
}

/// Digest of body bytes.
pub fn body_digest(body: &[u8]) -> EventDigest {
    let hash = Sha256::digest(body);
    let mut digest = [0; 16];
    digest.copy_from_slice(&hash[..16]);
    digest
}

/// Result of comparing a `webhook-id` with the ids accepted before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookSeen {
    /// Not accepted before.
    New,
    /// Accepted before with the same event, or with nothing to compare: a retry.
    Retry,
    /// Accepted before with a different event.
    Reused,
}

impl WebhookSeen {
    /// Compares the digest stored with an accepted id with the digest of a new request.
    pub(super) fn of_accepted(stored: Option<EventDigest>, request: Option<EventDigest>) -> Self {
        match (stored, request) {
            (Some(stored), Some(request)) if stored != request => Self::Reused,
            _ => Self::Retry,
        }
    }
}

/// Encodes the stored value for an id accepted at `now`.
pub(super) fn value(now: Millis, digest: Option<&EventDigest>) -> Vec<u8> {
    let mut value = now.to_be_bytes().to_vec();
    if let Some(digest) = digest {
        value.extend_from_slice(digest);
    }
    value
}

/// Returns the receive time of a stored value, or `None` when the value is damaged.
pub(super) fn received_at(value: &[u8]) -> Option<Millis> {
    Some(Millis::from_be_bytes(value.get(..8)?.try_into().ok()?))
}

/// Returns the event digest of a stored value, if it has one.
pub(super) fn digest(value: &[u8]) -> Option<EventDigest> {
    value.get(8..24)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let digest = body_digest(b"{\"type\":\"chat.ended\"}");
        let stored = value(1_700_000_000_000, Some(&digest));
        assert_eq!(stored.len(), 24);
        assert_eq!(received_at(&stored), Some(1_700_000_000_000));
        assert_eq!(super::digest(&stored), Some(digest));

        let old = 1_600_000_000_000_i64.to_be_bytes();
        assert_eq!(received_at(&old), Some(1_600_000_000_000));
        assert_eq!(super::digest(&old), None);
        assert_eq!(received_at(b"short"), None);
    }

    #[test]
    fn event_digest_ignores_key_order_and_spaces() {
        let compact: serde_json::Value =
            serde_json::from_str(r#"{"type":"chat.ended","data":{"a":1,"b":"x"}}"#).unwrap();
        let spread: serde_json::Value =
            serde_json::from_str("{ \"data\": { \"b\": \"x\", \"a\": 1 },\n  \"type\": \"chat.ended\" }").unwrap();
        let other: serde_json::Value = serde_json::from_str(r#"{"type":"chat.ended","data":{"a":2,"b":"x"}}"#).unwrap();
        assert_eq!(event_digest(&compact), event_digest(&spread));
        assert_ne!(event_digest(&compact), event_digest(&other));
    }

    #[test]
    fn different_digests_mean_reuse() {
        let first = body_digest(b"first body");
        let second = body_digest(b"second body");
        assert_ne!(first, second);
        assert_eq!(WebhookSeen::of_accepted(Some(first), Some(first)), WebhookSeen::Retry);
        assert_eq!(WebhookSeen::of_accepted(Some(first), Some(second)), WebhookSeen::Reused);
        assert_eq!(WebhookSeen::of_accepted(None, Some(second)), WebhookSeen::Retry);
        assert_eq!(WebhookSeen::of_accepted(Some(first), None), WebhookSeen::Retry);
    }
}
