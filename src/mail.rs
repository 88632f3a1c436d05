//! An outgoing mail as plain data: what the acknowledge stage and the digest put in the outbox,
//! and what the courier turns into MIME. It survives a restart unchanged (it is stored as JSON).
//!
//! May: nothing but data. Everything that sends mail depends on this module, never the other way.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which acknowledgement an application gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    Complete,
    MissingCv,
    MissingLetter,
    /// Neither a CV nor a letter (nothing attached, or only other documents).
    NoDocuments,
    /// The posting's closing date has passed; filed all the same.
    Closed,
    /// A later message from someone already on file: "we have updated your file".
    Repeat,
}

impl ReplyKind {
    pub const ALL: [ReplyKind; 6] = [
        ReplyKind::Complete,
        ReplyKind::MissingCv,
        ReplyKind::MissingLetter,
        ReplyKind::NoDocuments,
        ReplyKind::Closed,
        ReplyKind::Repeat,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReplyKind::Complete => "complete",
            ReplyKind::MissingCv => "missing_cv",
            ReplyKind::MissingLetter => "missing_letter",
            ReplyKind::NoDocuments => "no_documents",
            ReplyKind::Closed => "closed",
            ReplyKind::Repeat => "repeat",
        }
    }

    pub fn parse(s: &str) -> Option<ReplyKind> {
        ReplyKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// A reply that asked the candidate for something.
    pub fn asked_for_more(self) -> bool {
        matches!(self, ReplyKind::MissingCv | ReplyKind::MissingLetter | ReplyKind::NoDocuments)
    }
}

/// What an outbox entry is: an acknowledgement of one application, or the team's digest.
///
/// Stored as its name (`complete`, `missing_cv`, …, `digest`), which is also what the outbox's
/// `kind` column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum MailKind {
    Ack(ReplyKind),
    Digest,
}

impl MailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MailKind::Ack(k) => k.as_str(),
            MailKind::Digest => "digest",
        }
    }

    pub fn parse(s: &str) -> Option<MailKind> {
        match s {
            "digest" => Some(MailKind::Digest),
            other => ReplyKind::parse(other).map(MailKind::Ack),
        }
    }

    /// RFC 3834's `Auto-Submitted` value: a reply to a message, or mail we generate ourselves.
    pub fn auto_submitted(self) -> &'static str {
        match self {
            MailKind::Ack(_) => "auto-replied",
            MailKind::Digest => "auto-generated",
        }
    }
}

impl fmt::Display for MailKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<MailKind> for String {
    fn from(k: MailKind) -> String {
        k.as_str().to_owned()
    }
}

impl TryFrom<String> for MailKind {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        MailKind::parse(&s).ok_or_else(|| format!("unknown mail kind {s:?}"))
    }
}

/// A rendered mail, as stored in the outbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutgoingMail {
    pub to: String,
    pub to_name: Option<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// Without angle brackets. Derived from the application, so a duplicate is recognisable.
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub kind: MailKind,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<TextAttachment>,
}

/// A small text attachment (the digest's CSV).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TextAttachment {
    pub filename: String,
    /// With its charset, e.g. `text/csv; charset=utf-8`.
    pub content_type: String,
    pub content: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_stored_by_name() {
        for k in ReplyKind::ALL.map(MailKind::Ack).into_iter().chain([MailKind::Digest]) {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
            assert_eq!(serde_json::from_str::<MailKind>(&json).unwrap(), k);
        }
        assert!(serde_json::from_str::<MailKind>("\"bogus\"").is_err());
    }
}
