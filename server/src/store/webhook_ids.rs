//! Values of the `webhook_ids` tree: when a `webhook-id` was accepted and a
//! digest of the body it came with.
//!
//! A sender retries an event with the same id and the same body. An id that
//! comes back with another body is a sender fault: a new event under an old
//! id, which deduplication would drop silently. The digest tells the two
//! apart, so the service rejects the second with `409`, as payment APIs
//! reject an idempotency key reused with other parameters.
//!
//! Value: `[receive time: i64 BE][first 16 bytes of SHA-256 of the body]`.
//! Values written before the digest, and ids remembered without a body
//! (Chatwoot's delivery ids), have only the 8-byte time; they match any body.

use sha2::{Digest, Sha256};

use super::records::Millis;

/// The first 16 bytes of SHA-256 of a webhook body.
pub type BodyDigest = [u8; 16];

/// Digest of the exact body bytes of a webhook.
pub fn body_digest(body: &[u8]) -> BodyDigest {
    let hash = Sha256::digest(body);
    let mut digest = [0; 16];
    digest.copy_from_slice(&hash[..16]);
    digest
}

/// How a `webhook-id` compares with the ids accepted before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookSeen {
    /// Not accepted before.
    New,
    /// Accepted before with the same body, or with no body to compare: a retry.
    Retry,
    /// Accepted before with a different body.
    Reused,
}

impl WebhookSeen {
    /// Compares the digest stored with an accepted id with the digest of a new request.
    pub(super) fn of_accepted(stored: Option<BodyDigest>, request: Option<BodyDigest>) -> Self {
        match (stored, request) {
            (Some(stored), Some(request)) if stored != request => Self::Reused,
            _ => Self::Retry,
        }
    }
}

/// The stored value for an id accepted at `now`.
pub(super) fn value(now: Millis, digest: Option<&BodyDigest>) -> Vec<u8> {
    let mut value = now.to_be_bytes().to_vec();
    if let Some(digest) = digest {
        value.extend_from_slice(digest);
    }
    value
}

/// The receive time of a stored value; `None` when the value is damaged.
pub(super) fn received_at(value: &[u8]) -> Option<Millis> {
    Some(Millis::from_be_bytes(value.get(..8)?.try_into().ok()?))
}

/// The body digest of a stored value, if it has one.
pub(super) fn digest(value: &[u8]) -> Option<BodyDigest> {
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
