//! Prints the resident memory of this process after opening a store and
//! after each scan that the service runs, to see which one holds memory.
//!
//! Run with `cargo run --release -p alliance --example store_memory -- DIR [CACHE_MB]`,
//! where DIR is a store that no service has open and CACHE_MB the page
//! cache (16 MB unless given).

use std::path::PathBuf;

use alliance::store::Store;

/// The service's allocator, set up as `main.rs` does, so the figures match the service's.
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Waits long enough for the allocator's background thread to give freed
/// memory back (jemalloc returns unused pages after 10 s by default).
fn settle() {
    std::thread::sleep(std::time::Duration::from_secs(12));
}

/// Returns the `VmRSS` line of `/proc/self/status`, or a note where there is none.
fn resident_memory() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| status.lines().find(|line| line.starts_with("VmRSS")).map(str::to_owned))
        .unwrap_or_else(|| "VmRSS not available (Linux only)".into())
}

fn main() {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: store_memory DIR [CACHE_MB] (a store directory that no service has open)");
        std::process::exit(2);
    };
    let cache_mb: u64 = match std::env::args().nth(2).map(|text| text.parse()) {
        None => 16,
        Some(Ok(megabytes)) => megabytes,
        Some(Err(_)) => {
            eprintln!("CACHE_MB must be a whole number of megabytes");
            std::process::exit(2);
        }
    };
    #[cfg(unix)]
    tikv_jemalloc_ctl::background_thread::write(true).expect("the allocator's background thread starts");
    println!("before opening: {}", resident_memory());
    let started = std::time::Instant::now();
    let store = Store::open(&dir, cache_mb << 20).unwrap_or_else(|error| {
        eprintln!("cannot open the store in {}: {error}", dir.display());
        std::process::exit(1);
    });
    let opened_in = started.elapsed().as_secs_f64();
    println!(
        "store opened in {opened_in:.1} s, {cache_mb} MB cache: {}",
        resident_memory()
    );
    settle();
    println!("12 s later: {}", resident_memory());
    // A cutoff of 0 removes nothing but reads every webhook id, as the hourly pruning does.
    let pruned = store.prune_webhook_ids(0).expect("webhook ids readable");
    println!(
        "after reading every webhook id ({pruned} removed): {}",
        resident_memory()
    );
    let (facts, _) = store.scan_facts_bytes().expect("facts readable");
    println!("after reading the report facts of {facts} chats: {}", resident_memory());
    let (chats, _) = store.scan_chats_bytes().expect("chats readable");
    println!("after reading {chats} chat records: {}", resident_memory());
    settle();
    println!("12 s later: {}", resident_memory());
}
