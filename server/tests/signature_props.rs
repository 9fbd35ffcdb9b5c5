//! Property tests of Standard Webhooks verification: a correctly signed
//! message always verifies, any single changed byte of body, id or
//! timestamp makes it fail, and timestamp parsing never panics.

use alliance::signature::{VerifyError, WebhookSecret, parse_timestamp, verify};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;

fn secret_from(key: &[u8]) -> WebhookSecret {
    WebhookSecret::parse(&format!("whsec_{}", STANDARD.encode(key))).expect("24 to 64 bytes is a valid secret")
}

/// Generates the parts of a message: key, id (printable ASCII, as webhook
/// ids are), timestamp and body.
fn message() -> impl Strategy<Value = (Vec<u8>, String, i64, Vec<u8>)> {
    (
        prop::collection::vec(any::<u8>(), 24..=64),
        "[!-~]{1,64}",
        0..=i64::MAX,
        prop::collection::vec(any::<u8>(), 0..2048),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn signed_message_verifies((key, id, timestamp, body) in message()) {
        let secret = secret_from(&key);
        let header = secret.sign(&id, timestamp, &body);
        let result = verify(std::slice::from_ref(&secret), &id, &timestamp.to_string(), &body, &header, timestamp);
        prop_assert_eq!(result, Ok(()));
    }

    #[test]
    fn signed_message_verifies_with_any_configured_secret(
        (key, id, timestamp, body) in message(),
        other_key in prop::collection::vec(any::<u8>(), 32),
    ) {
        let secret = secret_from(&key);
        let header = format!("v1,AAAA {}", secret.sign(&id, timestamp, &body));
        let secrets = [secret_from(&other_key), secret];
        let result = verify(&secrets, &id, &timestamp.to_string(), &body, &header, timestamp);
        prop_assert_eq!(result, Ok(()));
    }

    #[test]
    fn changed_body_byte_fails(
        (key, id, timestamp, body) in message(),
        position in any::<prop::sample::Index>(),
        flip in 1..=255u8,
    ) {
        prop_assume!(!body.is_empty());
        let secret = secret_from(&key);
        let header = secret.sign(&id, timestamp, &body);
        let mut changed = body.clone();
        changed[position.index(body.len())] ^= flip;
        let result = verify(std::slice::from_ref(&secret), &id, &timestamp.to_string(), &changed, &header, timestamp);
        prop_assert_eq!(result, Err(VerifyError::InvalidSignature));
    }

    #[test]
    fn changed_id_byte_fails(
        (key, id, timestamp, body) in message(),
        position in any::<prop::sample::Index>(),
        replacement in 0..=127u8,
    ) {
        let secret = secret_from(&key);
        let header = secret.sign(&id, timestamp, &body);
        let mut bytes = id.clone().into_bytes();
        let index = position.index(bytes.len());
        prop_assume!(bytes[index] != replacement);
        bytes[index] = replacement;
        let changed = String::from_utf8(bytes).expect("ASCII stays UTF-8");
        let result = verify(std::slice::from_ref(&secret), &changed, &timestamp.to_string(), &body, &header, timestamp);
        prop_assert_eq!(result, Err(VerifyError::InvalidSignature));
    }

    /// A changed timestamp byte may fail any of the three checks, but never verifies.
    #[test]
    fn changed_timestamp_byte_fails(
        (key, id, timestamp, body) in message(),
        position in any::<prop::sample::Index>(),
        replacement in 0..=127u8,
    ) {
        let secret = secret_from(&key);
        let header = secret.sign(&id, timestamp, &body);
        let mut bytes = timestamp.to_string().into_bytes();
        let index = position.index(bytes.len());
        prop_assume!(bytes[index] != replacement);
        bytes[index] = replacement;
        let changed = String::from_utf8(bytes).expect("ASCII stays UTF-8");
        let result = verify(std::slice::from_ref(&secret), &id, &changed, &body, &header, timestamp);
        prop_assert!(result.is_err(), "timestamp {changed:?} verified");
    }

    /// Within the window only the signature can reject a changed timestamp.
    #[test]
    fn changed_last_timestamp_digit_is_an_invalid_signature(
        (key, id, timestamp, body) in message(),
        delta in 1..=9i64,
    ) {
        prop_assume!(timestamp >= 10);
        let secret = secret_from(&key);
        let header = secret.sign(&id, timestamp, &body);
        let last_digit = timestamp % 10;
        let changed = timestamp - last_digit + (last_digit + delta) % 10;
        let result = verify(std::slice::from_ref(&secret), &id, &changed.to_string(), &body, &header, timestamp);
        prop_assert_eq!(result, Err(VerifyError::InvalidSignature));
    }

    #[test]
    fn parse_timestamp_never_panics(text in any::<String>()) {
        if let Some(value) = parse_timestamp(&text) {
            prop_assert_eq!(value.to_string(), text);
        }
    }

    #[test]
    fn parse_timestamp_never_panics_on_number_like_text(text in "[-+0-9 .eE_]{0,25}") {
        if let Some(value) = parse_timestamp(&text) {
            prop_assert!(value >= 0);
            prop_assert_eq!(value.to_string(), text);
        }
    }

    #[test]
    fn parse_timestamp_reads_every_canonical_value(value in 0..=i64::MAX) {
        prop_assert_eq!(parse_timestamp(&value.to_string()), Some(value));
    }
}
