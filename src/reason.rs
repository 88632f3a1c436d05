//! Why things happened, as types: why a message was set aside ([`QuarantineReason`]), why a
//! sender is a robot ([`Automated`]), why an application was not answered ([`SkipReason`]).
//!
//! Every stage speaks this vocabulary instead of sentences, so the code matches on variants (never
//! on text), the store keeps them as data (JSON, plus a short code SQL can filter on), and each
//! reader gets them in their own language: [`QuarantineReason::describe`] and friends write French
//! or English.
//!
//! May: nothing but data and wording. It sits below every stage.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::lang::Lang;
use crate::mail::ReplyKind;

/// Why a sender must never get an automatic answer (RFC 3834, Dovecot's Sieve vacation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Automated {
    /// No `Return-Path`: we cannot tell who to answer safely.
    NoReturnPath,
    /// `Return-Path: <>`: a bounce or a notification.
    EmptyReturnPath,
    AutoSubmitted {
        value: String,
    },
    /// A `List-*` header.
    MailingList {
        header: String,
    },
    Precedence {
        value: String,
    },
    AutoResponseSuppress {
        value: String,
    },
    /// `X-Autoreply` and its cousins.
    AutoReplyHeader {
        header: String,
    },
    /// `multipart/report`: a delivery or read report.
    Report,
    /// mailer-daemon, postmaster, list software, no-reply addresses.
    SystemSender,
    /// Our own address or the team's.
    OwnAddress,
}

impl Automated {
    pub fn describe(&self, lang: Lang) -> String {
        match (self, lang) {
            (Automated::NoReturnPath, Lang::En) => "no Return-Path header (cannot tell who to answer safely)".into(),
            (Automated::NoReturnPath, Lang::Fr) => {
                "pas d'en-tête Return-Path (destinataire de réponse incertain)".into()
            }
            (Automated::EmptyReturnPath, Lang::En) => "empty return path (a bounce or notification)".into(),
            (Automated::EmptyReturnPath, Lang::Fr) => "adresse de retour vide (rebond ou notification)".into(),
            (Automated::AutoSubmitted { value }, _) => format!("Auto-Submitted: {value}"),
            (Automated::MailingList { header }, Lang::En) => format!("mailing list ({header} header)"),
            (Automated::MailingList { header }, Lang::Fr) => format!("liste de diffusion (en-tête {header})"),
            (Automated::Precedence { value }, _) => format!("Precedence: {value}"),
            (Automated::AutoResponseSuppress { value }, _) => format!("X-Auto-Response-Suppress: {value}"),
            (Automated::AutoReplyHeader { header }, Lang::En) => format!("{header} header (an auto-responder)"),
            (Automated::AutoReplyHeader { header }, Lang::Fr) => format!("en-tête {header} (réponse automatique)"),
            (Automated::Report, Lang::En) => "multipart/report (a delivery or read report)".into(),
            (Automated::Report, Lang::Fr) => "multipart/report (rapport de remise ou de lecture)".into(),
            (Automated::SystemSender, Lang::En) => {
                "system sender (mailer-daemon, list software or no-reply address)".into()
            }
            (Automated::SystemSender, Lang::Fr) => {
                "expéditeur système (mailer-daemon, logiciel de liste ou adresse no-reply)".into()
            }
            (Automated::OwnAddress, Lang::En) => "our own or the team's address".into(),
            (Automated::OwnAddress, Lang::Fr) => "notre propre adresse ou celle de l'équipe".into(),
        }
    }
}

/// Why a message went to `_quarantine/` instead of a candidate folder. It stays in the mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum QuarantineReason {
    /// Over `limits.max_message_bytes`; `announced`: judged from the server's size, never downloaded.
    TooLarge {
        size: u64,
        limit: u64,
        announced: bool,
    },
    /// No header could be parsed.
    NotMail,
    TooManyParts {
        count: usize,
        limit: usize,
    },
    TooDeep {
        depth: usize,
        limit: usize,
    },
    DocumentTooLarge {
        name: String,
        size: u64,
        limit: u64,
    },
    /// Neither From nor Reply-To holds an address.
    NoSender,
    /// A robot, a list or a bounce that carries no document: not an application at all.
    NotAnApplication {
        automated: Automated,
    },
    /// Documents that can run code or hide their content (`limits.dangerous = "quarantine"`):
    /// held for a person. `what`: the first one's kind, never its name.
    Dangerous {
        count: usize,
        what: String,
    },
    /// Filing failed in a way that trying again cannot fix, or kept failing.
    Unfileable {
        error: String,
        attempts: u32,
    },
    /// Text kept from an older version of mailroom.
    Legacy {
        text: String,
    },
}

impl QuarantineReason {
    /// A short, stable name, for logs and metrics (never personal data).
    pub fn code(&self) -> &'static str {
        match self {
            QuarantineReason::TooLarge { .. } => "too_large",
            QuarantineReason::NotMail => "not_mail",
            QuarantineReason::TooManyParts { .. } => "too_many_parts",
            QuarantineReason::TooDeep { .. } => "too_deep",
            QuarantineReason::DocumentTooLarge { .. } => "document_too_large",
            QuarantineReason::NoSender => "no_sender",
            QuarantineReason::NotAnApplication { .. } => "not_an_application",
            QuarantineReason::Dangerous { .. } => "dangerous",
            QuarantineReason::Unfileable { .. } => "unfileable",
            QuarantineReason::Legacy { .. } => "legacy",
        }
    }

    pub fn describe(&self, lang: Lang) -> String {
        use QuarantineReason::*;
        match (self, lang) {
            (TooLarge { size, limit, announced: true }, Lang::En) => format!(
                "announced size {size} bytes is over limits.max_message_bytes ({limit}); not downloaded, left in the mailbox"
            ),
            (TooLarge { size, limit, announced: true }, Lang::Fr) => format!(
                "taille annoncée de {size} octets, au-delà de limits.max_message_bytes ({limit}) ; non téléchargé, laissé dans la boîte"
            ),
            (TooLarge { size, limit, announced: false }, Lang::En) => {
                format!("message of {size} bytes is over limits.max_message_bytes ({limit})")
            }
            (TooLarge { size, limit, announced: false }, Lang::Fr) => {
                format!("message de {size} octets, au-delà de limits.max_message_bytes ({limit})")
            }
            (NotMail, Lang::En) => "not an email message: no header could be parsed".into(),
            (NotMail, Lang::Fr) => "pas un message électronique : aucun en-tête lisible".into(),
            (TooManyParts { count, limit }, Lang::En) => {
                format!("{count} MIME parts, over limits.max_parts ({limit})")
            }
            (TooManyParts { count, limit }, Lang::Fr) => {
                format!("{count} parties MIME, au-delà de limits.max_parts ({limit})")
            }
            (TooDeep { depth, limit }, Lang::En) => format!("nesting depth {depth}, over limits.max_depth ({limit})"),
            (TooDeep { depth, limit }, Lang::Fr) => {
                format!("profondeur d'imbrication {depth}, au-delà de limits.max_depth ({limit})")
            }
            (DocumentTooLarge { name, size, limit }, Lang::En) => {
                format!("attachment {name:?} of {size} bytes is over limits.max_document_bytes ({limit})")
            }
            (DocumentTooLarge { name, size, limit }, Lang::Fr) => {
                format!("pièce jointe {name:?} de {size} octets, au-delà de limits.max_document_bytes ({limit})")
            }
            (NoSender, Lang::En) => "no sender address in From or Reply-To".into(),
            (NoSender, Lang::Fr) => "aucune adresse d'expéditeur (From, Reply-To)".into(),
            (NotAnApplication { automated }, Lang::En) => {
                format!("not an application: {}, and no document", automated.describe(lang))
            }
            (NotAnApplication { automated }, Lang::Fr) => {
                format!("pas une candidature : {}, et aucun document", automated.describe(lang))
            }
            (Dangerous { count, what }, Lang::En) => format!(
                "dangerous attachment: {count} document{} that can run code or hide its content ({what}{}); \
                 held for a person (limits.dangerous = \"quarantine\")",
                if *count == 1 { "" } else { "s" },
                if *count > 1 { ", …" } else { "" },
            ),
            (Dangerous { count, what }, Lang::Fr) => format!(
                "pièce jointe dangereuse : {count} document{} pouvant exécuter du code ou cacher son contenu ({what}{}) ; \
                 mis de côté pour une personne (limits.dangerous = \"quarantine\")",
                if *count == 1 { "" } else { "s" },
                if *count > 1 { ", …" } else { "" },
            ),
            (Unfileable { error, attempts }, Lang::En) => {
                format!("could not be filed after {attempts} attempt(s): {error}")
            }
            (Unfileable { error, attempts }, Lang::Fr) => {
                format!("impossible à classer après {attempts} tentative(s) : {error}")
            }
            (Legacy { text }, _) => text.clone(),
        }
    }

    /// Reads what the store kept (JSON; older versions kept English text).
    pub fn from_stored(s: &str) -> QuarantineReason {
        serde_json::from_str(s).unwrap_or_else(|_| QuarantineReason::Legacy { text: s.to_owned() })
    }
}

/// Why an application got no acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum SkipReason {
    /// `replies.enabled = false`.
    Disabled,
    Automated {
        automated: Automated,
    },
    /// Arrived before mailroom's first start (`replies.acknowledge_backlog = false`).
    Backlog,
    /// The sender's address cannot be written into an SMTP envelope.
    Undeliverable,
    /// `replies.max_per_hour` replies already went out in the last hour.
    HourlyCap {
        limit: u64,
    },
    /// Answered within `replies.once_per_days`.
    AlreadyAnswered {
        at: DateTime<Utc>,
        days: u32,
    },
    /// A template failed on data nobody foresaw (they are proven at start).
    RenderFailed {
        error: String,
    },
    /// Text kept from an older version of mailroom.
    Legacy {
        text: String,
    },
}

impl SkipReason {
    /// A short, stable name: what the store's `reply_code` column and the metrics hold.
    pub fn code(&self) -> &'static str {
        match self {
            SkipReason::Disabled => "disabled",
            SkipReason::Automated { .. } => "automated",
            SkipReason::Backlog => "backlog",
            SkipReason::Undeliverable => "undeliverable",
            SkipReason::HourlyCap { .. } => "hourly_cap",
            SkipReason::AlreadyAnswered { .. } => "already_answered",
            SkipReason::RenderFailed { .. } => "render_failed",
            SkipReason::Legacy { .. } => "legacy",
        }
    }

    pub fn describe(&self, lang: Lang) -> String {
        use SkipReason::*;
        match (self, lang) {
            (Disabled, Lang::En) => "replies are disabled (replies.enabled = false)".into(),
            (Disabled, Lang::Fr) => "réponses désactivées (replies.enabled = false)".into(),
            (Automated { automated }, _) => automated.describe(lang),
            (Backlog, Lang::En) => {
                "backlog: arrived before mailroom's first start (replies.acknowledge_backlog = false)".into()
            }
            (Backlog, Lang::Fr) => {
                "arriéré : arrivé avant le premier démarrage de mailroom (replies.acknowledge_backlog = false)".into()
            }
            (Undeliverable, Lang::En) => "the sender's address is not deliverable".into(),
            (Undeliverable, Lang::Fr) => "l'adresse de l'expéditeur n'est pas utilisable".into(),
            (HourlyCap { limit }, Lang::En) => format!("hourly cap reached (replies.max_per_hour = {limit})"),
            (HourlyCap { limit }, Lang::Fr) => format!("limite horaire atteinte (replies.max_per_hour = {limit})"),
            (AlreadyAnswered { at, days }, Lang::En) => {
                format!("already answered on {} (replies.once_per_days = {days})", at.format("%Y-%m-%d %H:%M UTC"))
            }
            (AlreadyAnswered { at, days }, Lang::Fr) => {
                format!("déjà répondu le {} (replies.once_per_days = {days})", at.format("%d/%m/%Y %H:%M UTC"))
            }
            (RenderFailed { error }, Lang::En) => format!("could not render the reply: {error}"),
            (RenderFailed { error }, Lang::Fr) => format!("réponse impossible à composer : {error}"),
            (Legacy { text }, _) => text.clone(),
        }
    }
}

/// In logs and messages for the admin, reasons read in English.
macro_rules! display_in_english {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.describe(Lang::En))
            }
        }
    )*};
}
display_in_english!(Automated, QuarantineReason, SkipReason);

/// What became of the acknowledgement of one filed application, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyNote {
    Queued(ReplyKind),
    Skipped(SkipReason),
}

impl ReplyNote {
    /// What the store's `reply_code` column holds: `queued`, or the skip's code.
    pub fn code(&self) -> &'static str {
        match self {
            ReplyNote::Queued(_) => "queued",
            ReplyNote::Skipped(reason) => reason.code(),
        }
    }

    /// Reads what the store kept (JSON; older versions kept `queued: kind` / `skipped: text`).
    pub fn from_stored(s: &str) -> ReplyNote {
        if let Ok(note) = serde_json::from_str(s) {
            return note;
        }
        match s.strip_prefix("queued: ").and_then(ReplyKind::parse) {
            Some(kind) => ReplyNote::Queued(kind),
            None => ReplyNote::Skipped(SkipReason::Legacy { text: s.trim_start_matches("skipped: ").to_owned() }),
        }
    }

    pub fn describe(&self, lang: Lang) -> String {
        match (self, lang) {
            (ReplyNote::Queued(kind), Lang::En) => format!("acknowledgement queued ({})", kind.as_str()),
            (ReplyNote::Queued(kind), Lang::Fr) => format!("accusé de réception en file ({})", kind.as_str()),
            (ReplyNote::Skipped(reason), Lang::En) => format!("not answered: {}", reason.describe(lang)),
            (ReplyNote::Skipped(reason), Lang::Fr) => format!("sans réponse : {}", reason.describe(lang)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_survive_the_store_and_read_in_both_languages() {
        let r = QuarantineReason::NotAnApplication { automated: Automated::MailingList { header: "List-Id".into() } };
        let stored = serde_json::to_string(&r).unwrap();
        assert_eq!(QuarantineReason::from_stored(&stored), r);
        assert_eq!(r.describe(Lang::En), "not an application: mailing list (List-Id header), and no document");
        assert!(r.describe(Lang::Fr).starts_with("pas une candidature : liste de diffusion"));
        assert_eq!(
            QuarantineReason::from_stored("something an old version wrote"),
            QuarantineReason::Legacy { text: "something an old version wrote".into() }
        );
        assert_eq!(SkipReason::HourlyCap { limit: 3 }.code(), "hourly_cap");
        assert_eq!(ReplyNote::from_stored("queued: missing_cv"), ReplyNote::Queued(ReplyKind::MissingCv));
        let note = ReplyNote::Skipped(SkipReason::Backlog);
        assert_eq!(ReplyNote::from_stored(&serde_json::to_string(&note).unwrap()), note);
    }
}
