//! Compares `alliance::signature::verify` with the `standardwebhooks` crate
//! (the Standard Webhooks reference library for Rust) on the same signed
//! message: one secret, one `v1` signature, 1 KiB and 64 KiB bodies.
//!
//! Run with `cargo bench -p alliance --bench verify`.

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use alliance::signature::{self, WebhookSecret};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";

/// Builds a printable ASCII body of `size` bytes, so that it is valid UTF-8
/// as `standardwebhooks` requires.
fn body_of(size: usize) -> Vec<u8> {
    let pattern = br#"{"type":"chat.ended","data":{"chat_id":"c-20220701-0042","topic":"voeding"}} "#;
    pattern.iter().copied().cycle().take(size).collect()
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn compare(criterion: &mut Criterion) {
    let ours = WebhookSecret::parse(SECRET).expect("valid secret");
    let theirs = standardwebhooks::Webhook::new(SECRET).expect("valid secret");
    let mut group = criterion.benchmark_group("verify");

    for size in [1024, 64 * 1024] {
        let body = body_of(size);
        // standardwebhooks checks the timestamp against the system clock,
        // so sign at the current time; one benchmark takes seconds, well
        // inside the 300 s window.
        let timestamp = now_secs();
        let timestamp_text = timestamp.to_string();
        let signature_header = ours.sign(ID, timestamp, &body);
        assert_eq!(
            theirs.sign(ID, timestamp, &body).unwrap(),
            signature_header,
            "both libraries sign alike"
        );

        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", HeaderValue::from_static(ID));
        headers.insert("webhook-timestamp", HeaderValue::from_str(&timestamp_text).unwrap());
        headers.insert("webhook-signature", HeaderValue::from_str(&signature_header).unwrap());

        let secrets = std::slice::from_ref(&ours);
        assert_eq!(
            signature::verify(secrets, ID, &timestamp_text, &body, &signature_header, timestamp),
            Ok(())
        );
        assert!(theirs.verify(&body, &headers).is_ok());

        group.throughput(Throughput::Bytes(size as u64));
        let label = format!("{} KiB", size / 1024);
        group.bench_with_input(BenchmarkId::new("alliance", &label), &body, |bencher, body| {
            bencher.iter(|| {
                let result = signature::verify(
                    black_box(secrets),
                    black_box(ID),
                    black_box(&timestamp_text),
                    black_box(body),
                    black_box(&signature_header),
                    black_box(timestamp),
                );
                assert!(result.is_ok());
            });
        });
        group.bench_with_input(BenchmarkId::new("standardwebhooks", &label), &body, |bencher, body| {
            bencher.iter(|| {
                let result = theirs.verify(black_box(body), black_box(&headers));
                assert!(result.is_ok());
            });
        });
    }
    group.finish();
}

criterion_group!(benches, compare);
criterion_main!(benches);
