//! Times a full report against a bare scan of the same store.
//!
//! The store is the one in `ALLIANCE_BENCH_STORE`, for example one filled
//! with `alliance bench --fill 1000000 --data-dir DIR`. Without it, the
//! benchmark fills a temporary store with `ALLIANCE_BENCH_CHATS` chats
//! (default 100 000). Measured:
//!
//! - `scan_facts`: read every chat's report facts without decoding them;
//! - `scan_chats`: the same over the chat records, for comparison;
//! - `report_without_bootstrap`: the whole report from the store's running
//!   totals, intervals left out;
//! - `report_by_scan_without_bootstrap`: the same report counted in one scan
//!   of the report facts instead of the running totals;
//! - `report_filtered_without_bootstrap`: a report filtered on all five
//!   dimensions, which also counts the 31 wider selections that its
//!   small-cell suppression compares it with;
//! - `report_with_bootstrap`: the whole report with its 2,000-resample bootstrap intervals.
//!
//! Run with `cargo bench -p alliance --bench report`.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use alliance::bench::fill::write_chat;
use alliance::report::{self, ReportFilter, ReportOptions};
use alliance::startup::now_millis;
use alliance::store::Store;
use alliance::token::ServerKey;
use criterion::{Criterion, criterion_group, criterion_main};

const CACHE: u64 = 16 << 20;

fn open_store() -> (Store, Option<tempfile::TempDir>) {
    if let Some(path) = std::env::var_os("ALLIANCE_BENCH_STORE") {
        let path = PathBuf::from(path);
        let store = Store::open(&path, CACHE)
            .unwrap_or_else(|error| panic!("cannot open the store in {}: {error}", path.display()));
        return (store, None);
    }
    let chats: usize = std::env::var("ALLIANCE_BENCH_CHATS")
        .ok()
        .map(|text| text.parse().expect("ALLIANCE_BENCH_CHATS is a number"))
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Store::open(dir.path(), CACHE).expect("store opens");
    let key = ServerKey::from_bytes(vec![3; 32]).expect("32 bytes").pseudonym_key();
    let now = now_millis();
    let started = Instant::now();
    for number in 0..chats {
        write_chat(&store, &key, number, now).expect("chat written");
    }
    store.flush_blocking().expect("flushed");
    eprintln!("filled {chats} chats in {:.1} s", started.elapsed().as_secs_f64());
    (store, Some(dir))
}

fn report(criterion: &mut Criterion) {
    let (store, _dir) = open_store();
    let now = now_millis();
    let filter = ReportFilter::default();
    let quick = ReportOptions {
        min_cell_size: 10,
        bootstrap: false,
    };
    let (chats, bytes) = store.scan_facts_bytes().expect("scan");
    let built = report::build_with(&store, &filter, now, &quick).expect("report");
    eprintln!(
        "store: {chats} chats, {bytes} bytes of report facts, {} matched pairs",
        built.pairs
    );

    let mut group = criterion.benchmark_group(format!("report_{chats}_chats"));
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    group.bench_function("scan_facts", |bench| {
        bench.iter(|| black_box(store.scan_facts_bytes().expect("scan")))
    });
    group.bench_function("scan_chats", |bench| {
        bench.iter(|| black_box(store.scan_chats_bytes().expect("scan")))
    });
    group.bench_function("report_without_bootstrap", |bench| {
        bench.iter(|| black_box(report::build_with(&store, &filter, now, &quick).expect("report")))
    });
    group.bench_function("report_by_scan_without_bootstrap", |bench| {
        bench.iter(|| {
            let strata = report::count_strata_by_scan(&store, now).expect("scan");
            black_box(report::from_strata(&strata, &filter, now, &quick))
        })
    });
    let five_dimensions = ReportFilter::parse(
        Some("2022-03-01"),
        Some("2023-06-30"),
        Some("GGD Regio Utrecht".into()),
        Some("slapen".into()),
        Some("0-1".into()),
    )
    .expect("valid filter");
    group.bench_function("report_filtered_without_bootstrap", |bench| {
        bench.iter(|| black_box(report::build_with(&store, &five_dimensions, now, &quick).expect("report")))
    });
    group.bench_function("report_with_bootstrap", |bench| {
        bench.iter(|| black_box(report::build(&store, &filter, now).expect("report")))
    });
    group.finish();
}

criterion_group!(benches, report);
criterion_main!(benches);
