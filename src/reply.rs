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

use std::path::Path;

use chrono::{DateTime, Duration, Timelike, Utc};
use chrono_tz::Tz;
use minijinja::{Environment, Value, context};
use serde::Serialize;

use crate::config::{Config, LANGUAGES};
use crate::courier::OutgoingMail;
use crate::filing::Filed;
use crate::understand::classify::fold;
use crate::understand::{Application, DocKind};

/// Which acknowledgement an application gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    fn asked_for_more(self) -> bool {
        matches!(self, ReplyKind::MissingCv | ReplyKind::MissingLetter | ReplyKind::NoDocuments)
    }
}

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
    ("fr/unsure.j2", include_str!("../templates/fr/unsure.j2")),
    ("en/layout.txt.j2", include_str!("../templates/en/layout.txt.j2")),
    ("en/layout.html.j2", include_str!("../templates/en/layout.html.j2")),
    ("en/complete.j2", include_str!("../templates/en/complete.j2")),
    ("en/missing_cv.j2", include_str!("../templates/en/missing_cv.j2")),
    ("en/missing_letter.j2", include_str!("../templates/en/missing_letter.j2")),
    ("en/no_documents.j2", include_str!("../templates/en/no_documents.j2")),
    ("en/closed.j2", include_str!("../templates/en/closed.j2")),
    ("en/repeat.j2", include_str!("../templates/en/repeat.j2")),
    ("en/unsure.j2", include_str!("../templates/en/unsure.j2")),
];

#[derive(Debug, thiserror::Error)]
#[error("template {name}: {message}")]
pub struct TemplateError {
    pub name: String,
    pub message: String,
}

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
    Queue(Box<OutgoingMail>, ReplyKind),
    Skip(String),
}

impl ReplyDecision {
    /// The short note kept in the store's `reply` column.
    pub fn note(&self) -> String {
        match self {
            ReplyDecision::Queue(_, kind) => format!("queued: {}", kind.as_str()),
            ReplyDecision::Skip(reason) => format!("skipped: {reason}"),
        }
    }
}

/// Reply skips that mean the hourly cap tripped (the digest counts them).
pub const CAP_REASON: &str = "hourly cap reached";

#[derive(Serialize)]
struct DocumentView<'a> {
    kind: DocKind,
    label: &'static str,
    original_name: Option<&'a str>,
}

/// Renders acknowledgements; built once at start.
pub struct Replier {
    env: Environment<'static>,
    enabled: bool,
    acknowledge_backlog: bool,
    once_per_days: u32,
    max_per_hour: u64,
    default_language: String,
    organisation: String,
    contact: String,
    domain: String,
    privacy_notice: String,
    timezone: Tz,
    closing_dates: std::collections::HashMap<String, chrono::NaiveDate>,
}

impl std::fmt::Debug for Replier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replier").field("enabled", &self.enabled).finish_non_exhaustive()
    }
}

/// Human names of the kinds, per language.
pub fn kind_label(kind: DocKind, language: &str) -> &'static str {
    match (language, kind) {
        ("en", DocKind::Cv) => "CV",
        ("en", DocKind::CoverLetter) => "cover letter",
        ("en", DocKind::Unknown) => "document to check",
        ("en", _) => "other document",
        (_, DocKind::Cv) => "CV",
        (_, DocKind::CoverLetter) => "lettre de motivation",
        (_, DocKind::Unknown) => "document à vérifier",
        (_, _) => "autre document",
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
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, builtin) in BUILT_IN {
            let source = match &cfg.replies.templates_dir {
                Some(dir) => read_override(dir, name)?.unwrap_or_else(|| builtin.to_string()),
                None => builtin.to_string(),
            };
            env.add_template_owned(name.to_string(), source)
                .map_err(|e| TemplateError { name: template_location(cfg, name), message: describe(&e) })?;
        }
        let replier = Replier {
            env,
            enabled: cfg.replies.enabled,
            acknowledge_backlog: cfg.replies.acknowledge_backlog,
            once_per_days: cfg.replies.once_per_days,
            max_per_hour: cfg.replies.max_per_hour,
            default_language: cfg.replies.default_language.clone(),
            organisation: cfg.identity.organisation.clone(),
            contact: cfg.identity.from.clone(),
            domain: cfg.identity.from.rsplit('@').next().unwrap_or("localhost").to_owned(),
            privacy_notice: cfg.replies.privacy_notice.clone(),
            timezone: cfg.identity.timezone(),
            closing_dates: cfg.postings.iter().filter_map(|p| Some((p.slug.clone(), p.closing_date?))).collect(),
        };
        // Render every template once with a sample, so an error in a branch shows now, not at 3 a.m.
        for lang in LANGUAGES {
            for kind in ReplyKind::ALL {
                replier
                    .render(lang, kind, &replier.sample_context(lang))
                    .map_err(|e| TemplateError { name: template_location(cfg, &e.name), message: e.message })?;
            }
        }
        Ok(replier)
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
            return ReplyDecision::Skip("replies are disabled (replies.enabled = false)".into());
        }
        if let Some(why) = &app.automated {
            return ReplyDecision::Skip(why.clone());
        }
        // INTERNALDATE has whole seconds: mail from the first start's own second is new mail.
        let first_second = first_start.with_nanosecond(0).unwrap_or(first_start);
        if !self.acknowledge_backlog && app.received_at < first_second {
            return ReplyDecision::Skip(
                "backlog: arrived before mailroom's first start (replies.acknowledge_backlog = false)".into(),
            );
        }
        if app.candidate.email.parse::<lettre::Address>().is_err() {
            return ReplyDecision::Skip(format!("{:?} is not a deliverable address", app.candidate.email));
        }
        if history.replies_last_hour >= self.max_per_hour {
            return ReplyDecision::Skip(format!("{CAP_REASON} (replies.max_per_hour = {})", self.max_per_hour));
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
                return ReplyDecision::Skip(format!(
                    "already answered on {} (replies.once_per_days = {})",
                    at.with_timezone(&self.timezone).format("%Y-%m-%d %H:%M"),
                    self.once_per_days
                ));
            }
        }
        let lang = self.language(app);
        match self.render(&lang, kind, &self.context(app, filed, &lang)) {
            Ok(r) => {
                let mut references = app.references.clone();
                if let Some(mid) = &app.message_id {
                    references.push(mid.clone());
                }
                ReplyDecision::Queue(
                    Box::new(OutgoingMail {
                        to: app.candidate.email.clone(),
                        to_name: app.candidate.name.clone(),
                        subject: r.subject,
                        text: r.text,
                        html: Some(r.html),
                        message_id: format!("mailroom.ack.{}@{}", &app.sha256[..32], self.domain),
                        in_reply_to: app.message_id.clone(),
                        references,
                        kind: kind.as_str().to_owned(),
                        attachments: Vec::new(),
                    }),
                    kind,
                )
            }
            // Templates were proven at start; a failure here is data we did not foresee.
            Err(e) => ReplyDecision::Skip(format!("could not render the reply: {e}")),
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
    fn language(&self, app: &Application) -> String {
        if app.posting.language != "auto" {
            return app.posting.language.clone();
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
        detect_language(&text).unwrap_or(&self.default_language).to_owned()
    }

    fn context(&self, app: &Application, filed: &Filed, lang: &str) -> Value {
        let documents: Vec<DocumentView> = filed
            .application
            .documents
            .iter()
            .filter(|d| d.filename.is_some())
            .map(|d| DocumentView {
                kind: d.kind,
                label: kind_label(d.kind, lang),
                original_name: d.original_name.as_deref(),
            })
            .collect();
        // For a repeat, what the whole file still lacks; otherwise what this message lacked.
        let missing = if filed.application.repeat { &filed.folder_missing } else { &app.missing };
        let missing: Vec<&str> = missing.iter().map(|k| kind_label(*k, lang)).collect();
        context! {
            candidate => context! {
                name => app.candidate.name,
                given_name => app.candidate.given_name,
                family_name => app.candidate.family_name,
                email => app.candidate.email,
            },
            posting => context! {
                title => app.posting.title,
                slug => app.posting.slug,
                closing_date => self.closing_dates.get(&app.posting.slug).map(|d| format_date(*d, lang)),
            },
            documents => documents,
            missing => missing,
            received_at => format_time(app.received_at.with_timezone(&self.timezone), lang),
            subject => app.subject,
            organisation => self.organisation,
            contact => self.contact,
            privacy_notice => self.privacy_notice,
        }
    }

    /// Renders one kind in one language.
    pub fn render(&self, lang: &str, kind: ReplyKind, ctx: &Value) -> Result<Rendered, TemplateError> {
        let fail = |name: String| move |e: minijinja::Error| TemplateError { name, message: describe(&e) };
        let name = format!("{lang}/{}.j2", kind.as_str());
        let template = self.env.get_template(&name).map_err(fail(name.clone()))?;
        let mut captured = template.render_captured(ctx).map_err(fail(name.clone()))?;
        let (subject, message) = captured
            .with_state_mut(|state| {
                Ok::<_, minijinja::Error>((state.render_block("subject")?, state.render_block("message")?))
            })
            .map_err(fail(name.clone()))?;
        let message = message.trim().to_owned();
        let paragraphs: Vec<&str> = message.split("\n\n").map(str::trim).filter(|p| !p.is_empty()).collect();
        let layout = |part: &str| {
            let name = format!("{lang}/layout.{part}.j2");
            self.env
                .get_template(&name)
                .and_then(|t| t.render(context! { message => message, paragraphs => paragraphs, ..ctx.clone() }))
                .map_err(fail(name.clone()))
        };
        Ok(Rendered {
            subject: subject.split_whitespace().collect::<Vec<_>>().join(" "),
            text: layout("txt")?.trim_end().to_owned() + "\n",
            html: layout("html")?,
        })
    }

    /// The context `mailroom render --sample` and the start-up check use.
    pub fn sample_context(&self, lang: &str) -> Value {
        context! {
            candidate => context! { name => "Jeanne Dupré", given_name => "Jeanne", family_name => "Dupré", email => "jeanne.dupre@example.test" },
            posting => context! { title => "Stage – Assistant·e gestion de projet", slug => "stage-gestion-projet", closing_date => format_date(chrono::NaiveDate::from_ymd_opt(2020, 9, 30).unwrap_or_default(), lang) },
            documents => vec![
                DocumentView { kind: DocKind::Cv, label: kind_label(DocKind::Cv, lang), original_name: Some("CV_Jeanne_Dupre.pdf") },
            ],
            missing => vec![kind_label(DocKind::CoverLetter, lang)],
            received_at => format_time(Utc::now().with_timezone(&self.timezone), lang),
            subject => "Candidature stage",
            organisation => self.organisation,
            contact => self.contact,
            privacy_notice => if self.privacy_notice.is_empty() { "(replies.privacy_notice)".to_owned() } else { self.privacy_notice.clone() },
        }
    }
}

/// French or English, from common words; `None` when the text does not say.
pub fn detect_language(text: &str) -> Option<&'static str> {
    const FR: &[&str] = &[
        "le",
        "la",
        "les",
        "de",
        "des",
        "du",
        "et",
        "je",
        "vous",
        "pour",
        "madame",
        "monsieur",
        "bonjour",
        "candidature",
        "stage",
        "lettre",
        "motivation",
        "mon",
        "ma",
        "mes",
        "cordialement",
        "veuillez",
        "avec",
        "est",
        "une",
        "un",
    ];
    const EN: &[&str] = &[
        "the",
        "and",
        "i",
        "you",
        "for",
        "dear",
        "hello",
        "application",
        "internship",
        "letter",
        "cover",
        "my",
        "resume",
        "regards",
        "sincerely",
        "with",
        "is",
        "a",
        "an",
        "to",
        "of",
    ];
    let folded = fold(text);
    let (mut fr, mut en) = (0, 0);
    for w in folded.split(' ') {
        fr += FR.contains(&w) as usize;
        en += EN.contains(&w) as usize;
    }
    match fr.cmp(&en) {
        std::cmp::Ordering::Greater => Some("fr"),
        std::cmp::Ordering::Less => Some("en"),
        std::cmp::Ordering::Equal => None,
    }
}

fn read_override(dir: &Path, name: &str) -> Result<Option<String>, TemplateError> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TemplateError { name: path.display().to_string(), message: e.to_string() }),
    }
}

fn template_location(cfg: &Config, name: &str) -> String {
    match &cfg.replies.templates_dir {
        Some(dir) if dir.join(name).is_file() => dir.join(name).display().to_string(),
        _ => format!("templates/{name} (built in)"),
    }
}

fn describe(e: &minijinja::Error) -> String {
    match e.line() {
        Some(line) => format!("line {line}: {}", e.detail().unwrap_or(&e.kind().to_string())),
        None => e.to_string(),
    }
}

fn format_time(t: DateTime<Tz>, lang: &str) -> String {
    match lang {
        "en" => t.format("%B %-d, %Y at %H:%M (%Z)").to_string(),
        _ => t.format("%d/%m/%Y à %H:%M (%Z)").to_string(),
    }
}

fn format_date(d: chrono::NaiveDate, lang: &str) -> String {
    match lang {
        "en" => d.format("%B %-d, %Y").to_string(),
        _ => d.format("%d/%m/%Y").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_french_from_english() {
        assert_eq!(detect_language("Candidature pour le stage de gestion de projet"), Some("fr"));
        assert_eq!(detect_language("Application for the service design internship"), Some("en"));
        assert_eq!(detect_language("CV.pdf"), None);
    }
}
