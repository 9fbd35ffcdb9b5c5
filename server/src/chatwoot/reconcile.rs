//! Reconciliation with Chatwoot. Chatwoot sends an account webhook once,
//! with a 5-second timeout, so a webhook can be lost. This task polls the
//! conversations API for conversations resolved since the last sync and
//! accepts any that the webhook missed; chat deduplication makes a
//! conversation seen both ways count once.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::client::ChatwootClient;
use super::{ConversationEvent, conversation_event};
use crate::startup::AppState;

/// Overlap with the previous poll, so a conversation resolved while a poll
/// ran is not missed. It never reaches back past the service's first start.
const OVERLAP_SECS: i64 = 300;

/// Most pages read in one poll (Chatwoot returns 25 conversations a page).
const MAX_PAGES: u32 = 40;

/// Runs until the process ends: one poll every `interval`.
pub async fn run(state: actix_web::web::Data<AppState>, client: Arc<ChatwootClient>, interval: Duration) {
    tracing::info!(interval_secs = interval.as_secs(), "Chatwoot reconciliation started");
    loop {
        match poll(&state, &client).await {
            Ok(0) => {}
            Ok(accepted) => tracing::warn!(
                accepted,
                "reconciliation found resolved conversations the webhook missed"
            ),
            Err(error) => tracing::warn!(%error, "Chatwoot reconciliation failed; trying again at the next poll"),
        }
        tokio::time::sleep(interval).await;
    }
}

/// Polls once and returns how many new chats it accepted.
pub async fn poll(state: &AppState, client: &ChatwootClient) -> Result<usize, String> {
    let now = state.now_millis();
    let started = now / 1000;
    let first_started = state.store.first_started_at(now).map_err(|error| error.to_string())? / 1000;
    let synced_until = state.store.chatwoot_synced_until().map_err(|error| error.to_string())?;
    let oldest = oldest_activity(first_started, synced_until);

    let mut accepted = 0;
    for page in 1..=MAX_PAGES {
        let conversations = client.resolved_conversations(page).await?;
        if conversations.is_empty() {
            break;
        }
        let mut any_recent = false;
        for conversation in &conversations {
            let active_at = activity_secs(conversation);
            if active_at < oldest {
                continue;
            }
            any_recent = true;
            accepted += accept(state, client, conversation).await?;
        }
        if !any_recent {
            break;
        }
    }

    state
        .store
        .set_chatwoot_synced_until(started)
        .map_err(|error| error.to_string())?;
    Ok(accepted)
}

/// Returns the earliest last activity (Unix seconds) of a conversation that
/// this poll may invite: the previous sync minus the overlap, but never
/// earlier than the service's first start, so conversations resolved before
/// the service ran are never invited.
fn oldest_activity(first_started_secs: i64, synced_until_secs: i64) -> i64 {
    (synced_until_secs - OVERLAP_SECS).max(first_started_secs)
}

fn activity_secs(conversation: &Value) -> i64 {
    ["timestamp", "last_activity_at", "updated_at", "created_at"]
        .iter()
        .find_map(|key| conversation.get(*key).and_then(Value::as_i64))
        .unwrap_or(0)
}

async fn accept(state: &AppState, client: &ChatwootClient, conversation: &Value) -> Result<usize, String> {
    let now = state.now_millis() / 1000;
    let event = conversation_event(
        conversation,
        Some(client.account_id()),
        &state.settings.chatwoot_attributes,
        now,
    );
    let chat = match event {
        Ok(ConversationEvent::Resolved(chat)) => chat,
        Ok(ConversationEvent::Ignored(_)) => return Ok(0),
        Err(problem) => {
            tracing::warn!(%problem, "skipped a conversation from Chatwoot's list");
            return Ok(0);
        }
    };
    // Keyed by the pseudonym: the store and the log never see a raw conversation id.
    let dedup_key = format!(
        "chatwoot-reconcile-{}",
        state.pseudonym_key.pseudonym("chat", &chat.chat_id)
    );
    let acceptance = crate::intake::accept(state, &dedup_key, None, &chat)
        .await
        .map_err(|error| error.to_string())?;
    Ok(usize::from(acceptance == crate::store::ChatAcceptance::New))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST_START: i64 = 1_800_000_000;

    #[test]
    fn first_poll_starts_at_the_first_start() {
        // Before the first poll, the sync time is the first start itself.
        assert_eq!(oldest_activity(FIRST_START, FIRST_START), FIRST_START);
    }

    #[test]
    fn overlap_never_reaches_before_the_first_start() {
        assert_eq!(oldest_activity(FIRST_START, FIRST_START + 60), FIRST_START);
        assert_eq!(oldest_activity(FIRST_START, FIRST_START + OVERLAP_SECS), FIRST_START);
    }

    #[test]
    fn later_polls_keep_the_overlap() {
        let synced_until = FIRST_START + 3600;
        assert_eq!(oldest_activity(FIRST_START, synced_until), synced_until - OVERLAP_SECS);
    }
}
