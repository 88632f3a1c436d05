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
    /// Documents mailroom could not tell apart, and the CV or the letter not found among the
    /// others: "we received N documents; the team will check them". Neither "complete" nor a
    /// request for what may already be there.
    Unsure,
}

impl ReplyKind {
    pub const ALL: [ReplyKind; 7] = [
        ReplyKind::Complete,
        ReplyKind::MissingCv,
        ReplyKind::MissingLetter,
        ReplyKind::NoDocuments,
        ReplyKind::Closed,
        ReplyKind::Repeat,
        ReplyKind::Unsure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReplyKind::Complete => "complete",
            ReplyKind::MissingCv => "missing_cv",
            ReplyKind::MissingLetter => "missing_letter",
            ReplyKind::NoDocuments => "no_documents",
            ReplyKind::Closed => "closed",
            ReplyKind::Repeat => "repeat",
            ReplyKind::Unsure => "unsure",
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

/// Longest Message-ID an acknowledgement copies into `In-Reply-To` or `References`, without its
/// angle brackets. Real ids are well under 100 characters; a longer one is left out rather than
/// cut (a cut id names nothing) or folded inside (which makes the header invalid).
pub const MAX_MESSAGE_ID: usize = 250;

/// How many ids an acknowledgement's `References` carries: the last ones, the closest to it.
pub const MAX_REFERENCES: usize = 10;

/// A Message-ID as RFC 5322 §3.6.4 writes it (`id-left "@" id-right`, ASCII, no spaces, at most
/// [`MAX_MESSAGE_ID`] characters), without angle brackets; `None` for anything else.
/// `id-left` also takes the dots real mailers put where `dot-atom-text` would not.
pub fn message_id(id: &str) -> Option<String> {
    let id = id.trim();
    let id = id.strip_prefix('<').and_then(|i| i.strip_suffix('>')).unwrap_or(id);
    if id.is_empty() || id.len() > MAX_MESSAGE_ID {
        return None;
    }
    let (left, right) = id.rsplit_once('@')?;
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c);
    let literal = |r: &str| {
        r.strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .is_some_and(|d| d.chars().all(|c| c.is_ascii_graphic() && !"[]\\".contains(c)))
    };
    let ok = !left.is_empty()
        && left.chars().all(atext)
        && !right.is_empty()
        && (right.chars().all(|c| atext(c) && c != '@') && !right.starts_with('.') && !right.ends_with('.')
            || literal(right));
    ok.then(|| id.to_owned())
}

/// The `References` of a reply to a message that carried `references` and had the id
/// `message_id`: the valid ids only, once each, the last [`MAX_REFERENCES`] of them.
pub fn reply_references<'a>(references: impl IntoIterator<Item = &'a str>, message_id: Option<&'a str>) -> Vec<String> {
    // From the end: a message may carry thousands, and only the last few are kept.
    let given: Vec<&str> = references.into_iter().chain(message_id).collect();
    let mut ids: Vec<String> = Vec::with_capacity(MAX_REFERENCES);
    for id in given.into_iter().rev().filter_map(self::message_id) {
        if !ids.contains(&id) {
            ids.push(id);
            if ids.len() == MAX_REFERENCES {
                break;
            }
        }
    }
    ids.reverse();
    ids
}

/// A person's name as we may write it to them: letters (any script), spaces, hyphens and
/// apostrophes, starting each word with a letter, at most `max_words` words and `max_chars`
/// characters; anything else is not a name and gives `None`. A name written all in lower or
/// upper case is written with capitals ("JEANNE" → "Jeanne").
///
/// The sender is not authenticated: a display name is whatever they chose (a sentence, a URL, a
/// phone number, a megabyte), and what we write back goes out under the organisation's name.
pub fn person_name(name: &str, max_words: usize, max_chars: usize) -> Option<String> {
    use unicode_normalization::UnicodeNormalization;
    // Even with combining accents, a name this many bytes long is not within the bounds.
    if name.trim().len() > max_chars.saturating_mul(8) {
        return None;
    }
    let name: String = name.nfc().collect();
    let words: Vec<&str> = name.split_whitespace().collect();
    if words.is_empty() || words.len() > max_words {
        return None;
    }
    let joined = words.join(" ");
    if joined.chars().count() > max_chars {
        return None;
    }
    let allowed = |c: char| {
        c.is_alphabetic() || unicode_normalization::char::is_combining_mark(c) || matches!(c, '-' | '\'' | '\u{2019}')
    };
    if !words.iter().all(|w| w.chars().next().is_some_and(char::is_alphabetic) && w.chars().all(allowed)) {
        return None;
    }
    let letters = || joined.chars().filter(|c| c.is_alphabetic());
    let all_lower = letters().all(|c| !c.is_uppercase());
    let all_upper = letters().all(|c| !c.is_lowercase());
    if !(all_lower || all_upper) || letters().count() < 2 {
        return (letters().count() >= 2).then_some(joined);
    }
    // Capitals at the start of each part: "jean-paul" → "Jean-Paul", "D'ARC" → "D'Arc".
    let mut out = String::with_capacity(joined.len());
    let mut start = true;
    for c in joined.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.extend(c.to_lowercase());
        }
        start = !c.is_alphabetic() && !unicode_normalization::char::is_combining_mark(c);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_copied_only_when_they_are_message_ids() {
        for good in [
            "CAGp7x3v+abc=de@mail.gmail.com",
            "<4c1f0e2d8a7b4e6f9d3c2b1a0f9e8d7c@EXCH02.agglo.local>",
            "20261123232350.029806@vm",
            "a.b..c@[192.0.2.1]",
            "031d01d3a466$dcb58760$96209620$@abcs.co.nz",
        ] {
            assert!(message_id(good).is_some(), "{good}");
        }
        let huge = format!("{}@example.test", "x".repeat(MAX_MESSAGE_ID));
        for bad in [
            "",
            "<>",
            "no-at-sign",
            "@example.test",
            "left@",
            "two words@example.test",
            "a@b@",
            "é@example.test",
            "a@exa mple",
            "a@.example",
            &huge,
        ] {
            assert_eq!(message_id(bad), None, "{bad:.40}");
        }
        assert_eq!(message_id(" <a@b> ").as_deref(), Some("a@b"));
    }

    #[test]
    fn references_keep_the_last_valid_ids_once() {
        let refs: Vec<String> = (0..20_000).map(|i| format!("r{i}@x")).collect();
        let out = reply_references(refs.iter().map(String::as_str).chain(["not an id", "r5@x"]), Some("orig@x"));
        assert_eq!(out.len(), MAX_REFERENCES);
        assert_eq!(out.last().map(String::as_str), Some("orig@x"));
        assert_eq!(out[MAX_REFERENCES - 2], "r5@x", "a repeated id moves to its last place");
        assert_eq!(reply_references([], None), Vec::<String>::new());
    }

    #[test]
    fn only_names_that_look_like_names() {
        for (given, want) in [
            ("Jeanne", Some("Jeanne")),
            ("Marie-Claire", Some("Marie-Claire")),
            ("jean paul", Some("Jean Paul")),
            ("JEANNE", Some("Jeanne")),
            ("D'ARC", Some("D'Arc")),
            ("Zoé", Some("Zoé")),
            ("Zoe\u{301}", Some("Zoé")),
            ("  Chloé   ", Some("Chloé")),
            ("Ørjan", Some("Ørjan")),
            ("李", None),
            ("J", None),
            ("Jeanne2", None),
            ("http://evil.example", None),
            ("Appelez le 0899", None),
            ("Jean Paul Marie Joseph", None),
            ("J.", None),
            ("-Jeanne", None),
            ("Jeanne <x@y>", None),
            ("Jeanne\u{202E}", None),
            ("", None),
        ] {
            assert_eq!(person_name(given, 3, 32).as_deref(), want, "{given:?}");
        }
        assert_eq!(person_name(&"Jeanne ".repeat(100_000), 6, 64), None);
        assert_eq!(person_name("Abcdefghijklmnopqrstuvwxyzabcdefghij", 3, 32), None);
    }

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
