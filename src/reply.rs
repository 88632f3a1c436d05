//! Stage 4, acknowledge: decide whether to answer, and render the answer.
//!
//! May: read the application and what filing did, render templates. May not: send anything.
//! The rendered reply becomes an outbox entry that commits with the message (stage 5); the
//! courier sends it after the commit. Robots, lists, bounces, our own addresses and the backlog
//! found at first start are never answered; each skip is recorded with its reason.
//!
//! Templates live in `templates/<language>/acknowledgement.{subject,txt,html}.j2`. They are built
//! into the binary, and `replies.templates_dir` can override any of them. All are loaded and
//! compiled at start, so a broken template stops the start with its file and line.

use std::path::Path;

use chrono::{DateTime, Timelike, Utc};
use minijinja::{Environment, context};
use serde::Serialize;

use crate::config::{Config, LANGUAGES};
use crate::courier::OutgoingMail;
use crate::filing::Filed;
use crate::understand::{Application, DocKind};

/// The templates shipped with mailroom, as `(name, source)`.
const BUILT_IN: &[(&str, &str)] = &[
    ("fr/acknowledgement.subject.j2", include_str!("../templates/fr/acknowledgement.subject.j2")),
    ("fr/acknowledgement.txt.j2", include_str!("../templates/fr/acknowledgement.txt.j2")),
    ("fr/acknowledgement.html.j2", include_str!("../templates/fr/acknowledgement.html.j2")),
    ("en/acknowledgement.subject.j2", include_str!("../templates/en/acknowledgement.subject.j2")),
    ("en/acknowledgement.txt.j2", include_str!("../templates/en/acknowledgement.txt.j2")),
    ("en/acknowledgement.html.j2", include_str!("../templates/en/acknowledgement.html.j2")),
];

#[derive(Debug, thiserror::Error)]
#[error("template {name}: {message}")]
pub struct TemplateError {
    pub name: String,
    pub message: String,
}

/// What the acknowledge stage decided for one application.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyDecision {
    Queue(Box<OutgoingMail>),
    Skip(String),
}

impl ReplyDecision {
    /// The short note kept in the store's `reply` column.
    pub fn note(&self, kind: &str) -> String {
        match self {
            ReplyDecision::Queue(_) => format!("queued: {kind}"),
            ReplyDecision::Skip(reason) => format!("skipped: {reason}"),
        }
    }
}

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
    organisation: String,
    contact: String,
    domain: String,
    privacy_notice: String,
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
        ("en", _) => "other document",
        (_, DocKind::Cv) => "CV",
        (_, DocKind::CoverLetter) => "lettre de motivation",
        (_, _) => "autre document",
    }
}

impl Replier {
    pub fn new(cfg: &Config) -> Result<Replier, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(false);
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
            organisation: cfg.identity.organisation.clone(),
            contact: cfg.identity.from.clone(),
            domain: cfg.identity.from.rsplit('@').next().unwrap_or("localhost").to_owned(),
            privacy_notice: cfg.replies.privacy_notice.clone(),
        };
        // Render every template once with a sample, so an error in a branch shows now, not at 3 a.m.
        for lang in LANGUAGES {
            replier
                .render_parts(lang, &sample_context(lang))
                .map_err(|e| TemplateError { name: template_location(cfg, &e.name), message: e.message })?;
        }
        Ok(replier)
    }

    /// Decides for one filed application. `first_start`: mail older than this is backlog.
    pub fn decide(&self, app: &Application, filed: &Filed, first_start: DateTime<Utc>) -> ReplyDecision {
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
        let lang = app.posting.language.as_str();
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
        let missing: Vec<&str> = app.missing.iter().map(|k| kind_label(*k, lang)).collect();
        let ctx = context! {
            candidate => context! {
                name => app.candidate.name,
                given_name => app.candidate.given_name,
                family_name => app.candidate.family_name,
                email => app.candidate.email,
            },
            posting => context! { title => app.posting.title, slug => app.posting.slug },
            documents => documents,
            missing => missing,
            complete => app.missing.is_empty(),
            received_at => format_time(app.received_at, lang),
            subject => app.subject,
            organisation => self.organisation,
            contact => self.contact,
            privacy_notice => self.privacy_notice,
        };
        match self.render_parts(lang, &ctx) {
            Ok((subject, text, html)) => {
                let mut references = app.references.clone();
                if let Some(mid) = &app.message_id {
                    references.push(mid.clone());
                }
                ReplyDecision::Queue(Box::new(OutgoingMail {
                    to: app.candidate.email.clone(),
                    to_name: app.candidate.name.clone(),
                    subject,
                    text,
                    html: Some(html),
                    message_id: format!("mailroom.ack.{}@{}", &app.sha256[..32], self.domain),
                    in_reply_to: app.message_id.clone(),
                    references,
                }))
            }
            // Templates were proven at start; a failure here is data we did not foresee.
            Err(e) => ReplyDecision::Skip(format!("could not render the reply: {e}")),
        }
    }

    fn render_parts(&self, lang: &str, ctx: &minijinja::Value) -> Result<(String, String, String), TemplateError> {
        let render = |part: &str| {
            let name = format!("{lang}/acknowledgement.{part}.j2");
            self.env
                .get_template(&name)
                .and_then(|t| t.render(ctx))
                .map_err(|e| TemplateError { name: name.clone(), message: describe(&e) })
        };
        let subject = render("subject")?.split_whitespace().collect::<Vec<_>>().join(" ");
        Ok((subject, render("txt")?, render("html")?))
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

fn format_time(t: DateTime<Utc>, lang: &str) -> String {
    match lang {
        "en" => t.format("%B %-d, %Y at %H:%M UTC").to_string(),
        _ => t.format("%d/%m/%Y à %H:%M (UTC)").to_string(),
    }
}

fn sample_context(lang: &str) -> minijinja::Value {
    context! {
        candidate => context! { name => "Jeanne Dupré", given_name => "Jeanne", family_name => "Dupré", email => "jeanne@example.test" },
        posting => context! { title => "Sample posting", slug => "sample" },
        documents => vec![DocumentView { kind: DocKind::Cv, label: kind_label(DocKind::Cv, lang), original_name: Some("cv.pdf") }],
        missing => vec![kind_label(DocKind::CoverLetter, lang)],
        complete => false,
        received_at => format_time(Utc::now(), lang),
        subject => "Candidature",
        organisation => "Organisation",
        contact => "contact@example.test",
        privacy_notice => "Privacy notice.",
    }
}
