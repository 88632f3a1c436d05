//! Privacy that keeps its promises: the retention policy ([`policy`]), the purge that applies it
//! and the erasure of one person ([`purge`]), the export of one person's data ([`export`]), and the
//! check that a custom privacy notice names the policy's periods ([`check_custom_notice`]).
//!
//! The organisation is the data controller; the CNIL's recruitment guidance sets the rules
//! (unsuccessful candidates kept at most 3 months after the process, up to 2 years with their
//! consent; requests answered within a month). Every copy mailroom makes is listed here, and the
//! purge removes each: the candidate folder, the rows of the store (applications, documents,
//! outbox entries, the digests that name them, their hold and consent), any other copy of the
//! folder ([`OtherCopies`]), and the source messages in the mailbox.
//!
//! **Crash-safe.** A purge is planned under the filing lock (no batch is between filing and commit)
//! and recorded before it acts: its steps, and a keyed-hash mark per person so that the pipeline
//! files nothing for them until their rows are gone. Then each step runs and is marked done; every
//! step can run twice without harm, so a purge killed at any point resumes where it stopped, and
//! the audit trail gets its counts when the last step is done.
//!
//! May: read and change the store ([`crate::store::PrivacyStore`]), remove files below the data
//! root, and remove the recorded messages through [`crate::mailbox::Mailbox`]. Logs carry counts
//! and step ids, never a name, an address or a file name.

pub mod export;
mod notice;
pub mod policy;
pub mod purge;
mod zip;

use std::path::PathBuf;

pub use export::{ExportSummary, Exporter};
pub use notice::{check_custom_notice, periods};
pub use policy::{Keep, Policy, Rule};
pub use purge::{MailboxAction, Plan, PurgeReport, Purger, Step};

use crate::error::{Classified, Retry};
use crate::mailbox::MailboxError;
use crate::render::TemplateError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Mailbox(#[from] MailboxError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("refusing to remove {0:?}: not a candidate folder or quarantine entry below the data root")]
    UnsafePath(String),
    #[error("step {step} of an unfinished purge cannot be read: {message}")]
    BadStep { step: i64, message: String },
    #[error("other copies of a folder: {0}")]
    OtherCopies(String),
    #[error("no candidate with the address {0} is on file")]
    Unknown(String),
    #[error("{address} is held ({reason}): lift the hold first (mailroom candidate release {address})")]
    Held { address: String, reason: String },
    #[error("the purge worker stopped: {0}")]
    Worker(String),
    #[error(transparent)]
    Template(#[from] TemplateError),
}

impl PrivacyError {
    /// The error as the logs may say it: without addresses, names or paths (which hold names).
    pub fn loggable(&self) -> String {
        match self {
            PrivacyError::Io { source, .. } => format!("file system: {}", source.kind()),
            PrivacyError::UnsafePath(_) => "refused to remove a path outside the candidate folders".into(),
            PrivacyError::Unknown(_) => "unknown address".into(),
            PrivacyError::Held { .. } => "the person is held".into(),
            other => other.to_string(),
        }
    }
}

impl Classified for PrivacyError {
    fn retry(&self) -> Retry {
        match self {
            PrivacyError::Store(e) => e.retry(),
            PrivacyError::Mailbox(e) => e.retry(),
            PrivacyError::Io { .. } | PrivacyError::OtherCopies(_) | PrivacyError::Worker(_) => Retry::Transient,
            _ => Retry::Permanent,
        }
    }
}

/// **The extension point for every other copy of a candidate folder.** A purge or an erasure
/// calls [`OtherCopies::remove_copies_of`] once for each folder it removes, right after the local
/// folder, as a step of its own (recorded, resumed after a crash, run again harmlessly). Today
/// mailroom makes no other copy, so [`NoOtherCopies`] does nothing. A feature that copies folders
/// elsewhere (publishing to a WebDAV share, say) implements this trait, typically by queueing the
/// remote deletion in its own queue in the store, and is handed to [`Purger::with_other_copies`].
/// It must be idempotent: the same folder may come twice after a crash.
pub trait OtherCopies: Send + Sync {
    /// Removes (or queues the removal of) every copy of `folder` (relative to the data root,
    /// `<posting>/<Family-Given>--<hash>`); returns how many copies it took care of.
    fn remove_copies_of(&self, folder: &str) -> Result<u64, String>;
}

/// There are no other copies (yet).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoOtherCopies;

impl OtherCopies for NoOtherCopies {
    fn remove_copies_of(&self, _folder: &str) -> Result<u64, String> {
        Ok(0)
    }
}
