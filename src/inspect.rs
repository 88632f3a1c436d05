//! `mailroom inspect`: what the daemon would do with one message, without doing it.
//!
//! It runs the same functions the pipeline runs, on the same configuration: [`understand`], the
//! names filing would give ([`filing::planned`]), and the reply decision of
//! [`Replier::decide`]: shared code, not a copy, so the two cannot disagree. The only differences
//! are the state it does not have: the folder is taken to be empty and nobody answered before.
//!
//! May: nothing but compute. No disk, no network, no store.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::filing;
use crate::lang::Lang;
use crate::reply::{History, Replier, ReplyDecision};
use crate::understand::{Candidate, DocKind, PostingRef, Reader, Rules, Understood, understand};

/// What `inspect` reports, also as its JSON.
#[derive(Debug, Serialize)]
pub(crate) struct Inspection {
    pub outcome: &'static str,
    /// Why it was set aside (for a quarantine).
    pub reason: Option<String>,
    pub reason_code: Option<&'static str>,
    pub sha256: String,
    pub message_id: Option<String>,
    pub candidate: Option<Candidate>,
    pub posting: Option<PostingRef>,
    pub documents: Vec<InspectedDocument>,
    pub missing: Vec<DocKind>,
    /// Kinds not found that an `unknown` document may be.
    pub unsure: Vec<DocKind>,
    /// The daemon's decision, in words: `acknowledgement: complete`, or `none: <why>`.
    pub reply: String,
    /// `queued`, or the code of the reason it would not answer.
    pub reply_code: &'static str,
}

/// One part as `inspect` shows it: what understand decided, and the name filing would give it.
#[derive(Debug, Serialize)]
pub(crate) struct InspectedDocument {
    pub kind: DocKind,
    /// The name in the candidate folder (as filed into a folder with nothing in it yet); `None`
    /// for ignored parts, which are not filed.
    pub filename: Option<String>,
    pub original_name: Option<String>,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
    pub confidence: f32,
    /// Which reader decided the kind: name, part, container, text, OCR, body, or nothing.
    pub decided_by: Reader,
    pub reason: String,
    pub also_cover_letter: bool,
}

/// Understands `raw` and decides as the daemon would, for a first message from this person.
pub(crate) fn inspect(raw: &[u8], rules: &Rules, replier: &Replier) -> Inspection {
    match understand(raw, None, rules) {
        Understood::Quarantine(q) => Inspection {
            outcome: "quarantined",
            reason: Some(q.reason.describe(Lang::En)),
            reason_code: Some(q.reason.code()),
            sha256: q.sha256,
            message_id: q.message_id,
            candidate: None,
            posting: None,
            documents: Vec::new(),
            missing: Vec::new(),
            unsure: Vec::new(),
            reply: "none: quarantined".into(),
            reply_code: "quarantined",
        },
        Understood::Application(app) => {
            let filed = filing::planned(&app);
            // No backlog, nobody answered before: what a new message from a new person gets.
            let decision = replier.decide(&app, &filed, DateTime::<Utc>::MIN_UTC, &History::default());
            let note = decision.note();
            let reply = match &decision {
                ReplyDecision::Queue { kind, .. } => format!("acknowledgement: {}", kind.as_str()),
                ReplyDecision::Skip(reason) => format!("none: {}", reason.describe(Lang::En)),
            };
            let app = *app;
            let documents = app
                .documents
                .into_iter()
                .zip(filed.application.documents)
                .map(|(d, f)| InspectedDocument {
                    kind: d.kind,
                    filename: f.filename,
                    original_name: d.original_name,
                    content_type: d.content_type,
                    size: d.size,
                    sha256: d.sha256,
                    confidence: d.confidence,
                    decided_by: d.decided_by,
                    reason: d.reason,
                    also_cover_letter: d.also_cover_letter,
                })
                .collect();
            Inspection {
                outcome: "filed",
                reason: None,
                reason_code: None,
                sha256: app.sha256,
                message_id: app.message_id,
                candidate: Some(app.candidate),
                posting: Some(app.posting),
                missing: app.missing,
                unsure: app.unsure,
                documents,
                reply,
                reply_code: note.code(),
            }
        }
    }
}

impl Inspection {
    /// The report for a person.
    pub(crate) fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let reason = self.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
        let _ = writeln!(out, "outcome:   {}{reason}", self.outcome);
        if let Some(c) = &self.candidate {
            let _ = writeln!(out, "candidate: {} <{}>", c.display(), c.email);
        }
        if let Some(p) = &self.posting {
            let _ = writeln!(out, "posting:   {} [{}] ({})", p.title, p.slug, p.matched_by);
        }
        for d in &self.documents {
            let from =
                d.original_name.as_deref().map(|n| format!("{n:?}")).unwrap_or_else(|| "the message body".into());
            let filed = d.filename.as_deref().unwrap_or("(not filed)");
            let _ = writeln!(out, "document:  {:<12} {filed} ← {from} ({} bytes)", d.kind.as_str(), d.size);
            let _ =
                writeln!(out, "           by {}, {:.0}%: {}", d.decided_by.as_str(), d.confidence * 100.0, d.reason);
        }
        if !self.missing.is_empty() {
            let missing = self.missing.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ");
            let _ = writeln!(out, "missing:   {missing}");
        }
        if !self.unsure.is_empty() {
            let unsure = self.unsure.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ");
            let _ = writeln!(out, "unsure:    {unsure} (not found, but a document could not be told apart)");
        }
        let _ = writeln!(out, "reply:     {}", self.reply);
        out
    }
}
