//! Fuzzes Standard Webhooks and Chatwoot verification with arbitrary headers
//! and bodies. Neither may panic, a forged input must not verify, and a
//! message signed here must always verify.

#![no_main]

use std::sync::LazyLock;

use alliance::signature::{self, VerifyError, WebhookSecret};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_800_000_000;

static SECRET: LazyLock<WebhookSecret> =
    LazyLock::new(|| WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid example secret"));

/// Splits the input at the first three 0x00 bytes into id, timestamp,
/// signature header and body. Missing parts are empty.
fn split(data: &[u8]) -> (&[u8], &[u8], &[u8], &[u8]) {
    let mut parts = data.splitn(4, |&byte| byte == 0);
    let id = parts.next().unwrap_or_default();
    let timestamp = parts.next().unwrap_or_default();
    let header = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    (id, timestamp, header, body)
}

fuzz_target!(|data: &[u8]| {
    let (id, timestamp, header, body) = split(data);
    let id = String::from_utf8_lossy(id);
    let timestamp = String::from_utf8_lossy(timestamp);
    let header = String::from_utf8_lossy(header);
    let secrets = std::slice::from_ref(&*SECRET);

    let parsed = signature::parse_timestamp(&timestamp);
    if let Some(value) = parsed {
        assert_eq!(value.to_string(), *timestamp, "accepted a non-canonical timestamp");
    }

    // An arbitrary header verifies only if it contains the correct
    // signature, because forging an HMAC is out of the fuzzer's reach.
    let result = signature::verify(secrets, &id, &timestamp, body, &header, NOW);
    if parsed.is_none() {
        assert_eq!(result, Err(VerifyError::InvalidTimestamp));
    }
    let correct = parsed.map(|sent_at| SECRET.sign(&id, sent_at, body));
    let header_contains_correct = correct
        .as_deref()
        .is_some_and(|correct| header.split(' ').any(|entry| entry == correct));
    if result.is_ok() {
        assert!(header_contains_correct, "a forged signature verified");
    }

    // A message signed with the configured secret verifies at its own time.
    if let Some(sent_at) = parsed {
        let signed = SECRET.sign(&id, sent_at, body);
        let with_noise = format!("{header} {signed}");
        assert_eq!(
            signature::verify(secrets, &id, &timestamp, body, &with_noise, sent_at),
            Ok(())
        );
    }

    // Chatwoot verification takes the same timestamp rules.
    let chatwoot = alliance::chatwoot::verify("chatwoot-secret", &timestamp, body, &header, NOW);
    if parsed.is_none() {
        assert!(chatwoot.is_err());
    }
});
