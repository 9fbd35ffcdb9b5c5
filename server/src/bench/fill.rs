//! Fills a new store with chats through the store API, without HTTP, so
//! that memory and report times can be measured on a large store.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::questionnaire::Role;
use crate::startup::now_millis;
use crate::store::records::{ChatRecord, DeliveryStatus, InvitationRecord, Response};
use crate::store::{NewChat, Store};
use crate::token::{InvitationId, PseudonymKey, ServerKey};

/// Chats written between two flushes.
const FLUSH_EVERY: usize = 50_000;

/// Writes `count` delivered chats, each with its two invitations and its
/// webhook id, into a new store in `dir` on `threads` threads. Stops early
/// when `time_limit` passes and returns how many chats were written.
pub fn fill(dir: &Path, cache_bytes: u64, count: usize, threads: usize, time_limit: Duration) -> Result<usize, String> {
    let occupied = dir.exists()
        && std::fs::read_dir(dir)
            .map_err(|error| format!("cannot read {}: {error}", dir.display()))?
            .next()
            .is_some();
    if occupied {
        return Err(format!(
            "{} is not empty; --fill writes into a new or empty directory only, so it never mixes \
             generated chats into a real store",
            dir.display()
        ));
    }
    std::fs::create_dir_all(dir).map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    let store = Store::open(dir, cache_bytes).map_err(|error| format!("cannot open the store: {error}"))?;
    // The pseudonyms only need to be distinct, so a random key will do.
    let key = ServerKey::from_bytes(rand::random::<[u8; 32]>().to_vec())
        .expect("32 bytes are enough")
        .pseudonym_key();
    let key = Arc::new(key);
    let next = Arc::new(AtomicUsize::new(0));
    let written = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + time_limit;

    let workers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let (store, key, next, written) = (store.clone(), key.clone(), next.clone(), written.clone());
            std::thread::spawn(move || -> Result<(), String> {
                loop {
                    let number = next.fetch_add(1, Ordering::Relaxed);
                    if number >= count || Instant::now() >= deadline {
                        return Ok(());
                    }
                    write_chat(&store, &key, number)?;
                    let done = written.fetch_add(1, Ordering::Relaxed) + 1;
                    if done % FLUSH_EVERY == 0 {
                        store
                            .flush_blocking()
                            .map_err(|error| format!("flush failed: {error}"))?;
                        eprintln!("{done} chats written in {:.1} s", started.elapsed().as_secs_f64());
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().map_err(|_| "a fill thread panicked".to_string())??;
    }
    store
        .flush_blocking()
        .map_err(|error| format!("flush failed: {error}"))?;
    let written = written.load(Ordering::Relaxed);
    if written < count {
        eprintln!(
            "stopped at the time limit of {} s after {written} of {count} chats",
            time_limit.as_secs()
        );
    }
    Ok(written)
}

/// Writes chat `number`: ended on one of 730 days from 2022-01-01, with
/// both invitations delivered and nothing queued, as in a store that has
/// run for a while.
fn write_chat(store: &Store, key: &PseudonymKey, number: usize) -> Result<(), String> {
    let now = now_millis();
    let chat_key = key.pseudonym("chat", &format!("fill-{number}"));
    let day = time::Date::from_ordinal_date(2022, 1).expect("valid date") + time::Duration::days((number % 730) as i64);
    let ended_at = format!("{day}T{:02}:{:02}:00Z", 8 + number % 12, number % 60);
    let organizations = ["GGD Regio Utrecht", "GGD Hollands Noorden", "JGZ Zuid-Holland West"];
    let parent_id = InvitationId::generate();
    let professional_id = InvitationId::generate();
    let chat = ChatRecord {
        received_at: now,
        ended_at,
        organization: Some(organizations[number % organizations.len()].to_string()),
        topic: Some("slapen".into()),
        child_age_group: Some("0-5".into()),
        locale: "nl".into(),
        eligible: true,
        parent_invitation: parent_id.clone(),
        professional_invitation: professional_id.clone(),
        professional_participant: Some(key.pseudonym("participant", &format!("n-{}", number % 400))),
    };
    let invitation = |id: &InvitationId, role: Role| InvitationRecord {
        id: id.clone(),
        chat: chat_key.clone(),
        role,
        locale: "nl".into(),
        created_at: now,
        expires_at: now + 168 * 3_600_000,
        delivery: DeliveryStatus::Delivered,
        delivered_at: Some(now),
        response: Response::default(),
    };
    let invitations = [
        invitation(&parent_id, Role::Parent),
        invitation(&professional_id, Role::Professional),
    ];
    let webhook_id = format!("msg_fill-{number}");
    store
        .accept_chat(NewChat {
            webhook_id: &webhook_id,
            chat_key: &chat_key,
            chat: &chat,
            invitations: &invitations,
            deliveries: &[],
            now,
        })
        .map_err(|error| format!("writing chat {number} failed: {error}"))?;
    Ok(())
}
