//! Fills a new store with chats through the store API, without HTTP, so
//! that memory and report times can be measured on a large store.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::questionnaire::{ITEM_COUNT, Rating, Role};
use crate::startup::now_millis;
use crate::store::records::{Answer, ChatRecord, DeliveryStatus, InvitationRecord, Millis, Response};
use crate::store::{NewChat, Store};
use crate::token::{InvitationId, PseudonymKey, ServerKey};

/// Chats written between two flushes.
const FLUSH_EVERY: usize = 50_000;

/// Writes `count` delivered chats, each with its two invitations, and the
/// webhook ids of the chats of the last 8 days, into a new store in `dir` on `threads` threads. Stops early
/// when `time_limit` passes and returns how many chats were written. Moves
/// the settled chats into the archive after every [`FLUSH_EVERY`] chats and
/// at the end, as the service does daily.
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
    let today = now_millis();

    let workers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let (store, key, next, written) = (store.clone(), key.clone(), next.clone(), written.clone());
            std::thread::spawn(move || -> Result<(), String> {
                loop {
                    let number = next.fetch_add(1, Ordering::Relaxed);
                    if number >= count || Instant::now() >= deadline {
                        return Ok(());
                    }
                    write_chat(&store, &key, number, received_at(number, today))?;
                    let done = written.fetch_add(1, Ordering::Relaxed) + 1;
                    if done % FLUSH_EVERY == 0 {
                        // As the service moves settled chats daily, the hot
                        // trees never hold more than a few days of chats.
                        store
                            .archive_settled(now_millis(), |_| {})
                            .map_err(|error| format!("moving settled chats into the archive failed: {error}"))?;
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
    let archiving = Instant::now();
    let mut logged = 0;
    let archived = store
        .archive_settled(now_millis(), |moved| {
            if moved >= logged + 100_000 {
                logged = moved;
                eprintln!("{moved} settled chats moved into the archive");
            }
        })
        .map_err(|error| format!("moving settled chats into the archive failed: {error}"))?;
    store
        .flush_blocking()
        .map_err(|error| format!("flush failed: {error}"))?;
    eprintln!(
        "moved {archived} settled chats into the archive in {:.1} s",
        archiving.elapsed().as_secs_f64()
    );
    let written = written.load(Ordering::Relaxed);
    if written < count {
        eprintln!(
            "stopped at the time limit of {} s after {written} of {count} chats",
            time_limit.as_secs()
        );
    }
    Ok(written)
}

/// Returns when chat `number` was received: on the same one of the 730 days
/// up to `today` as the day it ended on (see [`write_chat`]). So a
/// retention period of 730 days keeps every chat, and only the chats of the
/// last 8 days have invitations that did not expire a day ago.
fn received_at(number: usize, today: Millis) -> Millis {
    const DAY: Millis = 24 * 3_600_000;
    today - (729 - (number % 730) as Millis) * DAY
}

/// A well-mixed 64-bit hash (splitmix64), so a chat's answers follow from its number.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Builds the response of one role of chat `number`, at rates like the 2022
/// study's: about 6% of parents and 27% of nurses complete the
/// questionnaire, a few more start it, and answers lean to "goed".
fn response(number: usize, role: Role, now: Millis) -> Response {
    let seed = mix(number as u64 ^ if role == Role::Parent { 0 } else { 0xA5A5_A5A5 });
    let roll = seed % 1000;
    let (complete_below, started_below) = match role {
        Role::Parent => (57, 82),
        Role::Professional => (274, 290),
    };
    let mut response = Response::default();
    if roll >= started_below + 60 {
        return response;
    }
    response.opened_at = Some(now);
    if roll >= started_below {
        return response;
    }
    let answered = if roll < complete_below {
        ITEM_COUNT
    } else {
        1 + (seed >> 10) as usize % (ITEM_COUNT - 1)
    };
    for (index, slot) in response.answers.iter_mut().take(answered).enumerate() {
        let draw = mix(seed ^ index as u64) % 100;
        let rating = match draw {
            0..=1 => Rating::Insufficient,
            2..=24 => Rating::Sufficient,
            _ => Rating::Good,
        };
        *slot = Some(Answer { rating, at: now });
    }
    if answered == ITEM_COUNT {
        response.completed_at = Some(now);
        response.submitted_at = Some(now);
        response.lang = Some("nl".into());
        if seed % 7 == 0 {
            response.comment = Some("Fijn gesprek, dank je wel.".into());
        }
    }
    response
}

/// Writes chat `number`, received by the service at `received_at`: ended on
/// one of 730 days from 2022-01-01, with both invitations delivered and
/// expiring 7 days after receipt, nothing queued, and answers at rates like
/// the study's (see [`response`]).
pub fn write_chat(store: &Store, key: &PseudonymKey, number: usize, received_at: Millis) -> Result<(), String> {
    let now = received_at;
    let chat_key = key.pseudonym("chat", &format!("fill-{number}"));
    let day = time::Date::from_ordinal_date(2022, 1).expect("valid date") + time::Duration::days((number % 730) as i64);
    let ended_at = format!("{day}T{:02}:{:02}:00Z", 8 + number % 12, number % 60);
    let organizations = ["GGD Regio Utrecht", "GGD Hollands Noorden", "JGZ Zuid-Holland West"];
    let [parent_id, professional_id] = store.new_invitation_ids(&chat_key);
    let chat = ChatRecord {
        received_at: now,
        ended_at,
        organization: Some(organizations[number % organizations.len()].to_string()),
        topic: Some(["slapen", "eten", "huilen", "opvoeden", "zindelijkheid"][number % 5].into()),
        child_age_group: Some(["0-1", "1-4", "4-12", "12-18"][(number / 5) % 4].into()),
        locale: "nl".into(),
        eligible: true,
        parent_invitation: parent_id.clone(),
        professional_invitation: professional_id.clone(),
        professional_participant: Some(key.pseudonym("participant", &format!("n-{}", number % 400))),
        professional_unassigned: false,
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
        response: response(number, role, now),
    };
    let invitations = [
        invitation(&parent_id, Role::Parent),
        invitation(&professional_id, Role::Professional),
    ];
    // The service deletes webhook ids after 8 days, so a store of chats
    // spread over 730 days contains those of the last 8 days only.
    let webhook_id = format!("msg_fill-{number}");
    let recent = number % 730 >= 730 - 8;
    store
        .accept_chat(NewChat {
            webhook_id: recent.then_some(webhook_id.as_str()),
            webhook_digest: None,
            chat_key: &chat_key,
            chat: &chat,
            invitations: &invitations,
            deliveries: &[],
            now,
        })
        .map_err(|error| format!("writing chat {number} failed: {error}"))?;
    Ok(())
}
