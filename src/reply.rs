//! Stage 4, acknowledge: decide whether to answer, which answer, and render it.
//!
//! May: read the application, what filing did, and what the store says about earlier replies
//! (handed in as a [`History`]); render templates. May not: send anything. The rendered reply
//! becomes an outbox entry that commits with the message (stage 5); the courier sends it after
//! the commit. Each skip is recorded with its reason.
//!
//! Templates live in `templates/<language>/`: one file per [`ReplyKind`] with a `subject` and a
//! `message` block, wrapped by `layout.txt.j2` and `layout.html.j2` (auto-escaped), so the text and
//! HTML parts say the same thing. They are built into the binary; `replies.templates_dir` can
//! override any file. All are compiled and rendered once at start, so a broken template stops the
//! start with its file and line.

use chrono::{DateTime, Duration, Timelike, Utc};
use chrono_tz::Tz;
use minijinja::{Value, context};
use serde::Serialize;

use crate::config::Config;
use crate::filing::{Filed, FiledDocument};
use crate::lang::{self, Lang};
use crate::mail::{self, MailKind, OutgoingMail, ReplyKind};
use crate::reason::{ReplyNote, SkipReason};
use crate::render::{self, TemplateError, Templates};
use crate::understand::classify::fold;
use crate::understand::{Application, DocKind};

/// The template files, as `(name, built-in source)`.
const BUILT_IN: &[(&str, &str)] = &[
    ("fr/layout.txt.j2", include_str!("../templates/fr/layout.txt.j2")),
    ("fr/layout.html.j2", include_str!("../templates/fr/layout.html.j2")),
    ("fr/complete.j2", include_str!("../templates/fr/complete.j2")),
    ("fr/missing_cv.j2", include_str!("../templates/fr/missing_cv.j2")),
    ("fr/missing_letter.j2", include_str!("../templates/fr/missing_letter.j2")),
    ("fr/no_documents.j2", include_str!("../templates/fr/no_documents.j2")),
    ("fr/closed.j2", include_str!("../templates/fr/closed.j2")),
    ("fr/repeat.j2", include_str!("../templates/fr/repeat.j2")),
    ("fr/privacy.j2", include_str!("../templates/fr/privacy.j2")),
    ("fr/unsure.j2", include_str!("../templates/fr/unsure.j2")),
    ("en/layout.txt.j2", include_str!("../templates/en/layout.txt.j2")),
    ("en/layout.html.j2", include_str!("../templates/en/layout.html.j2")),
    ("en/complete.j2", include_str!("../templates/en/complete.j2")),
    ("en/missing_cv.j2", include_str!("../templates/en/missing_cv.j2")),
    ("en/missing_letter.j2", include_str!("../templates/en/missing_letter.j2")),
    ("en/no_documents.j2", include_str!("../templates/en/no_documents.j2")),
    ("en/closed.j2", include_str!("../templates/en/closed.j2")),
    ("en/repeat.j2", include_str!("../templates/en/repeat.j2")),
    ("en/privacy.j2", include_str!("../templates/en/privacy.j2")),
    ("en/unsure.j2", include_str!("../templates/en/unsure.j2")),
];

/// What the store knows that the decision needs.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// When this address was last answered, and with what.
    pub last_reply: Option<(DateTime<Utc>, ReplyKind)>,
    /// Replies queued in the last hour, all addresses.
    pub replies_last_hour: u64,
}

/// What the acknowledge stage decided for one application.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyDecision {
    Queue { mail: Box<OutgoingMail>, kind: ReplyKind },
    Skip(SkipReason),
}

impl ReplyDecision {
    /// What the store keeps of it.
    pub fn note(&self) -> ReplyNote {
        match self {
            ReplyDecision::Queue { kind, .. } => ReplyNote::Queued(*kind),
            ReplyDecision::Skip(reason) => ReplyNote::Skipped(reason.clone()),
        }
    }
}

/// A document as an acknowledgement lists it: by kind, type and size ("CV (PDF, 120 Ko)"),
/// never by the name the sender gave it.
#[derive(Serialize)]
struct DocumentView {
    kind: DocKind,
    label: &'static str,
    /// "PDF", "Word", "image JPEG"…, or "dans le message" for a letter written in the body.
    format: &'static str,
    /// "120 Ko", "1,2 Mo" / "120 KB", "1.2 MB".
    size: String,
}

impl DocumentView {
    fn of(d: &FiledDocument, lang: Lang) -> DocumentView {
        DocumentView {
            kind: d.kind,
            label: d.kind.label(lang),
            format: format_label(d, lang),
            size: size_label(d.size, lang),
        }
    }
}

/// The type of a filed document in words, from a fixed list: the extension itself comes from
/// the sender and is not repeated.
fn format_label(d: &FiledDocument, lang: Lang) -> &'static str {
    if d.original_name.is_none() && d.content_type.starts_with("text/plain") {
        return lang.pick("dans le message", "in the message");
    }
    let ext = d.filename.as_deref().and_then(|n| n.rsplit_once('.')).map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("pdf") => "PDF",
        Some("doc" | "docx") => "Word",
        Some("odt") => "OpenDocument",
        Some("rtf") => "RTF",
        Some("pages") => "Pages",
        Some("txt") => lang.pick("texte", "text"),
        Some("jpg" | "jpeg") => lang.pick("image JPEG", "JPEG image"),
        Some("png") => lang.pick("image PNG", "PNG image"),
        Some("heic" | "heif") => lang.pick("image HEIC", "HEIC image"),
        Some("gif" | "tif" | "tiff" | "webp" | "bmp") => "image",
        Some("zip") => lang.pick("archive ZIP", "ZIP archive"),
        Some("xls" | "xlsx" | "ods") => lang.pick("tableur", "spreadsheet"),
        Some("ppt" | "pptx" | "odp") => lang.pick("présentation", "presentation"),
        _ => lang.pick("fichier", "file"),
    }
}

/// A size as people read it, in decimal units: "850 octets", "120 Ko", "1,2 Mo".
fn size_label(bytes: u64, lang: Lang) -> String {
    match bytes {
        0..1_000 => format!("{bytes} {}", lang.pick("octets", "bytes")),
        1_000..1_000_000 => format!("{} {}", bytes.div_ceil(1_000), lang.pick("Ko", "KB")),
        _ => {
            let mb = format!("{:.1}", bytes as f64 / 1_000_000.0);
            match lang {
                Lang::Fr => format!("{} Mo", mb.replace('.', ",")),
                Lang::En => format!("{mb} MB"),
            }
        }
    }
}

/// Renders acknowledgements; built once at start.
pub struct Replier {
    templates: Templates,
    enabled: bool,
    acknowledge_backlog: bool,
    once_per_days: u32,
    max_per_hour: u64,
    default_language: Lang,
    organisation: String,
    contact: String,
    domain: String,
    privacy_notice: String,
    timezone: Tz,
    closing_dates: std::collections::HashMap<String, chrono::NaiveDate>,
    privacy: PrivacyNotice,
}

/// What the privacy notice (`privacy.j2`) says, from the policy.
#[derive(Debug, Clone)]
struct PrivacyNotice {
    controller: String,
    contact: String,
    purpose: String,
    consent_months: u32,
    default_months: u32,
    months: std::collections::HashMap<String, u32>,
}

impl std::fmt::Debug for Replier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replier").field("enabled", &self.enabled).finish_non_exhaustive()
    }
}

/// A rendered reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl Replier {
    pub fn new(cfg: &Config) -> Result<Replier, TemplateError> {
        let replier = Replier {
            templates: Templates::load(BUILT_IN, cfg.replies.templates_dir.as_deref())?,
            enabled: cfg.replies.enabled,
            acknowledge_backlog: cfg.replies.acknowledge_backlog,
            once_per_days: cfg.replies.once_per_days,
            max_per_hour: cfg.replies.max_per_hour,
            default_language: cfg.replies.default_language,
            organisation: cfg.identity.organisation.clone(),
            contact: cfg.identity.from.clone(),
            domain: cfg.identity.from.rsplit('@').next().unwrap_or("localhost").to_owned(),
            privacy_notice: cfg.replies.privacy_notice.clone(),
            timezone: cfg.identity.timezone(),
            closing_dates: cfg.postings.iter().filter_map(|p| Some((p.slug.clone(), p.closing_date?))).collect(),
            privacy: PrivacyNotice {
                controller: cfg.controller().to_owned(),
                contact: cfg.privacy_contact().to_owned(),
                purpose: cfg.privacy.purpose.clone(),
                consent_months: cfg.privacy.consent_retention_months,
                default_months: cfg.privacy.retention_months,
                months: cfg.postings.iter().map(|p| (p.slug.clone(), cfg.retention_months(&p.slug))).collect(),
            },
        };
        // Render every template once with a sample, so an error in a branch shows now, not at 3 a.m.
        for lang in Lang::ALL {
            for kind in ReplyKind::ALL {
                replier.render(lang, kind, &replier.sample_context(lang))?;
            }
        }
        replier.release_memory();
        Ok(replier)
    }

    /// Drops the compiled templates, compiled again at their next use: for an idle daemon
    /// (`crate::memory`), which needs none of them.
    pub fn release_memory(&self) {
        self.templates.release();
    }

    /// Whether acknowledgements are sent at all (`replies.enabled`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Decides for one filed application.
    pub fn decide(
        &self,
        app: &Application,
        filed: &Filed,
        first_start: DateTime<Utc>,
        history: &History,
    ) -> ReplyDecision {
        if !self.enabled {
            return ReplyDecision::Skip(SkipReason::Disabled);
        }
        if let Some(automated) = &app.automated {
            return ReplyDecision::Skip(SkipReason::Automated { automated: automated.clone() });
        }
        if app.evidence.is_none() {
            return ReplyDecision::Skip(SkipReason::NotAnApplication);
        }
        // INTERNALDATE has whole seconds: mail from the first start's own second is new mail.
        let first_second = first_start.with_nanosecond(0).unwrap_or(first_start);
        if !self.acknowledge_backlog && app.received_at < first_second {
            return ReplyDecision::Skip(SkipReason::Backlog);
        }
        if app.candidate.email.parse::<lettre::Address>().is_err() {
            return ReplyDecision::Skip(SkipReason::Undeliverable);
        }
        if history.replies_last_hour >= self.max_per_hour {
            return ReplyDecision::Skip(SkipReason::HourlyCap { limit: self.max_per_hour });
        }
        let kind = self.kind_for(app, filed);
        // 0 days: no window at all (and no whole-second INTERNALDATE against a millisecond reply
        // time deciding that a new message is older than the last reply).
        if let Some((at, last_kind)) = history.last_reply.filter(|_| self.once_per_days > 0) {
            let window = Duration::days(self.once_per_days.into());
            // We asked for a missing document and this message completes the file: say so, even
            // inside the window. It can happen once per file, so it cannot loop.
            let completes = last_kind.asked_for_more() && filed.folder_missing.is_empty();
            if app.received_at < at + window && !completes {
                return ReplyDecision::Skip(SkipReason::AlreadyAnswered { at, days: self.once_per_days });
            }
        }
        let lang = self.language(app);
        match self.render(lang, kind, &self.context(app, filed, lang)) {
            Ok(r) => {
                // What is copied from the application into headers is checked and bounded:
                // a name that is a short name, ids that are Message-IDs, the last references.
                let references =
                    mail::reply_references(app.references.iter().map(String::as_str), app.message_id.as_deref());
                ReplyDecision::Queue {
                    mail: Box::new(OutgoingMail {
                        to: app.candidate.email.clone(),
                        to_name: app.candidate.name.as_deref().and_then(|n| mail::person_name(n, 6, 64)),
                        subject: r.subject,
                        text: r.text,
                        html: Some(r.html),
                        message_id: format!("mailroom.ack.{}@{}", &app.sha256[..32], self.domain),
                        in_reply_to: app.message_id.as_deref().and_then(mail::message_id),
                        references,
                        kind: MailKind::Ack(kind),
                        attachments: Vec::new(),
                    }),
                    kind,
                }
            }
            // Templates were proven at start; a failure here is data we did not foresee.
            Err(e) => ReplyDecision::Skip(SkipReason::RenderFailed { error: e.to_string() }),
        }
    }

    fn kind_for(&self, app: &Application, filed: &Filed) -> ReplyKind {
        if app.posting.closed {
            ReplyKind::Closed
        } else if !app.unsure.is_empty() {
            // Before "repeat": "your file is now complete" would claim what nobody has checked.
            ReplyKind::Unsure
        } else if filed.application.repeat {
            ReplyKind::Repeat
        } else {
            match (app.missing.contains(&DocKind::Cv), app.missing.contains(&DocKind::CoverLetter)) {
                (true, true) => ReplyKind::NoDocuments,
                (true, false) => ReplyKind::MissingCv,
                (false, true) => ReplyKind::MissingLetter,
                (false, false) => ReplyKind::Complete,
            }
        }
    }

    /// The posting's language, or for a bilingual posting (`language = "auto"`) the candidate's,
    /// told from the subject, the file names and a letter written in the body.
    fn language(&self, app: &Application) -> Lang {
        if let Some(lang) = app.posting.language.fixed() {
            return lang;
        }
        let mut text = app.subject.clone();
        for d in &app.documents {
            text.push(' ');
            if let Some(n) = &d.original_name {
                text.push_str(n);
            } else if d.content_type == "text/plain" {
                text.push_str(&String::from_utf8_lossy(&d.bytes));
            }
        }
        lang::detect(&fold(&text)).unwrap_or(self.default_language)
    }

    /// What the templates may say. The sender is not authenticated, so nothing they wrote goes
    /// in: not their display name, subject or file names. The one exception is a given name
    /// that looks like a name ([`greeting_name`]).
    fn context(&self, app: &Application, filed: &Filed, lang: Lang) -> Value {
        let documents: Vec<DocumentView> = filed
            .application
            .documents
            .iter()
            .filter(|d| d.filename.is_some())
            .map(|d| DocumentView::of(d, lang))
            .collect();
        // For a repeat, what the whole file still lacks; otherwise what this message lacked.
        let missing = if filed.application.repeat { &filed.folder_missing } else { &app.missing };
        let missing: Vec<&str> = missing.iter().map(|k| k.label(lang)).collect();
        context! {
            candidate => context! { given_name => greeting_name(app) },
            posting => context! {
                title => app.posting.title,
                slug => app.posting.slug,
                closing_date => self.closing_dates.get(&app.posting.slug).map(|d| render::format_date(*d, lang)),
            },
            documents => documents,
            missing => missing,
            received_at => render::format_time(app.received_at.with_timezone(&self.timezone), lang),
            organisation => self.organisation,
            contact => self.contact,
            privacy_notice => self.privacy_notice,
            privacy => self.privacy_context(&app.posting.slug, Some(app.received_at), lang),
        }
    }

    /// The policy as the notice states it for a posting: its period, and the closing date when
    /// the period counts from it (an application after the closing date counts from itself).
    fn privacy_context(&self, slug: &str, received_at: Option<DateTime<Utc>>, lang: Lang) -> Value {
        let p = &self.privacy;
        let closing = self.closing_dates.get(slug).filter(|d| {
            let next = d.succ_opt().unwrap_or(**d).and_hms_opt(0, 0, 0).unwrap_or_default();
            let end = chrono::TimeZone::from_local_datetime(&self.timezone, &next)
                .earliest()
                .map_or_else(|| next.and_utc(), |t| t.with_timezone(&Utc));
            received_at.is_none_or(|r| r < end)
        });
        context! {
            controller => p.controller,
            contact => p.contact,
            purpose => p.purpose,
            months => p.months.get(slug).copied().unwrap_or(p.default_months),
            consent_months => p.consent_months,
            closing_date => closing.map(|d| render::format_date(*d, lang)),
        }
    }

    /// Renders one kind in one language.
    pub fn render(&self, lang: Lang, kind: ReplyKind, ctx: &Value) -> Result<Rendered, TemplateError> {
        let [subject, message] =
            self.templates.render_blocks(&format!("{lang}/{}.j2", kind.as_str()), ["subject", "message"], ctx)?;
        let message = message.trim().to_owned();
        let paragraphs: Vec<&str> = message.split("\n\n").map(str::trim).filter(|p| !p.is_empty()).collect();
        // The notice is rendered from the policy unless the configuration holds a custom one
        // (which `check-config` holds to the policy's periods).
        let notice = if self.privacy_notice.trim().is_empty() {
            self.templates.render(&format!("{lang}/privacy.j2"), ctx)?.trim().to_owned()
        } else {
            self.privacy_notice.clone()
        };
        let layout = |part: &str| {
            self.templates.render(
                &format!("{lang}/layout.{part}.j2"),
                &context! { message => message, paragraphs => paragraphs, privacy_notice => notice, ..ctx.clone() },
            )
        };
        Ok(Rendered {
            subject: render::one_line(&subject),
            text: layout("txt")?.trim_end().to_owned() + "\n",
            html: layout("html")?,
        })
    }

    /// The context `mailroom render --sample` and the start-up check use.
    pub fn sample_context(&self, lang: Lang) -> Value {
        context! {
            candidate => context! { given_name => "Jeanne" },
            posting => context! { title => "Stage – Assistant·e gestion de projet", slug => "stage-gestion-projet", closing_date => render::format_date(chrono::NaiveDate::from_ymd_opt(2020, 9, 30).unwrap_or_default(), lang) },
            documents => vec![
                DocumentView { kind: DocKind::Cv, label: DocKind::Cv.label(lang), format: "PDF", size: size_label(120_400, lang) },
            ],
            missing => vec![DocKind::CoverLetter.label(lang)],
            received_at => render::format_time(Utc::now().with_timezone(&self.timezone), lang),
            organisation => self.organisation,
            contact => self.contact,
            privacy_notice => self.privacy_notice,
            privacy => self.privacy_context("stage-gestion-projet", None, lang),
        }
    }
}

/// The name an acknowledgement greets: the given name, when it looks like one (letters, spaces,
/// hyphens, apostrophes; at most three words and 32 characters). Otherwise none, and the
/// greeting is "Bonjour," alone.
pub fn greeting_name(app: &Application) -> Option<String> {
    app.candidate.given_name.as_deref().and_then(|g| mail::person_name(g, 3, 32))
}
