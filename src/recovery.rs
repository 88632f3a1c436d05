//! After a crash: the acknowledgements a crash caught mid-send, looked up in the Sent folder.
//!
//! An outbox entry is claimed (`sending`) just before it is handed to SMTP and marked `sent` as
//! soon as the server accepts it, so a crash can catch only the few in flight. Those may or may
//! not have left; at the next start they become `uncertain` and are never sent again blindly
//! ([`crate::store::OutboxStore::recover_interrupted`]). Many submission servers (Gmail,
//! Microsoft 365, or Postfix with a `Sent` copy) keep a copy of what they accept in the account's
//! Sent folder: this looks there for each uncertain entry's Message-ID, for a while after the
//! start (the copy can lag behind), and an entry found there is `sent`. What is not found stays
//! `uncertain`: "may not have been sent", for a person to check.
//!
//! May: read the Sent folder (never change it), settle uncertain entries. May not: send.

use std::time::{Duration, Instant};

use chrono::Utc;

use crate::mailbox::{Mailbox, MailboxError};
use crate::store::SentCheck;

/// How often the Sent folder is read while uncertain entries are still looked for.
pub const LOOK_AGAIN: Duration = Duration::from_secs(30);

/// Looks for the uncertain acknowledgements in the Sent folder, if it is time to (`last`: when
/// this was last done; `None`: never). Returns how many were found there and are `sent` now.
/// The mailbox's selected folder changes: the caller's next pass selects its own again.
pub async fn look_up_sent<S: SentCheck, M: Mailbox>(
    store: &S,
    mailbox: &mut M,
    last: &mut Option<Instant>,
) -> Result<usize, MailboxError> {
    if last.is_some_and(|t| t.elapsed() < LOOK_AGAIN) {
        return Ok(0);
    }
    *last = Some(Instant::now());
    let wanted = match store.to_look_up(Utc::now()) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the uncertain acknowledgements; looking later");
            return Ok(0);
        }
    };
    if wanted.is_empty() {
        return Ok(0);
    }
    let ids: Vec<String> = wanted.iter().map(|(_, id)| id.clone()).collect();
    let found = mailbox.find_sent(&ids).await?;
    let mut settled = 0;
    for (id, message_id) in &wanted {
        if found.contains(message_id) {
            match store.found_sent(*id, Utc::now()) {
                Ok(()) => settled += 1,
                Err(e) => {
                    tracing::warn!(outbox_id = id, error = %e, "found in the Sent folder, but could not record it");
                }
            }
        }
    }
    tracing::info!(
        looked_for = wanted.len(),
        found = settled,
        "acknowledgements interrupted by a crash, looked for in the Sent folder"
    );
    Ok(settled)
}
