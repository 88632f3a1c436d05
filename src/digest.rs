//! The daily digest: a scheduled job beside the pipeline that tells the recruiting team what
//! arrived and what needs a human.
//!
//! **Schedule.** [`crate::schedule`]: a cron expression evaluated in the organisation's named time
//! zone at every firing (so 08:00 Europe/Paris stays 08:00 across both DST changes), fired by
//! tokio-cron-scheduler as a one-shot timer re-armed after each firing.
//!
//! **Windows.** A digest covers exactly the time since the previous one: `[last end, now)`. The
//! window is claimed in the store (its start is unique) in the same transaction as the outbox
//! entries that carry it, so a restart or a second process can never send a window twice, and
//! the outbox sender delivers it with the same retries as acknowledgements. A firing missed while
//! the daemon was down is caught up once at start: one digest covering the whole gap.
//!
//! May: read the store ([`DigestStore`]), render, and queue mail in the outbox. May not: send.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use minijinja::{Value, context};
use tokio::sync::{Notify, watch};

use crate::auth::{AuthPart, AuthRecord};
use crate::config::{Config, Posting, WhenEmpty};
use crate::lang::Lang;
use crate::mail::{MailKind, OutgoingMail, ReplyKind, TextAttachment};
use crate::privacy::Policy;
use crate::publish::names::web_link;
use crate::reason::{QuarantineReason, ReplyNote};
use crate::render::{self, TemplateError, Templates};
use crate::schedule::{Clock, Schedule, Timer};
use crate::store::{
    ApplicationRow, DigestRows, DigestStore, FailedReply, OutboxState, PrivacyStore, PublishFailure, PublishStatus,
    PurgeTotals, QuarantineRow, StaleCandidate, StoreError, UpcomingPurge,
};
use crate::understand::DocKind;

/// A rendered digest.
#[derive(Debug, Clone)]
pub struct Built {
    pub subject: String,
    pub text: String,
    pub html: String,
    pub csv: String,
    pub new_candidates: usize,
    pub empty: bool,
}

const BUILT_IN: &[(&str, &str)] = &[
    ("fr/digest.txt.j2", include_str!("../templates/fr/digest.txt.j2")),
    ("fr/digest.html.j2", include_str!("../templates/fr/digest.html.j2")),
    ("en/digest.txt.j2", include_str!("../templates/en/digest.txt.j2")),
    ("en/digest.html.j2", include_str!("../templates/en/digest.html.j2")),
];

const SUBJECT_FR: &str =
    "Candidatures – {{ new_count }} nouvelle{{ 's' if new_count != 1 }} du {{ window.start }} au {{ window.end }}";
const SUBJECT_EN: &str = "Applications – {{ new_count }} new from {{ window.start }} to {{ window.end }}";

/// The digest job: schedule, content, and the loop that runs it.
pub struct Digest {
    pub schedule: Schedule,
    templates: Templates,
    tz: Tz,
    enabled: bool,
    language: Lang,
    recipients: Vec<String>,
    when_empty: WhenEmpty,
    stale_after_days: u32,
    organisation: String,
    from: String,
    data_dir: String,
    postings: Vec<Posting>,
    refresh_warning_days: u32,
    /// Privacy: the digest says what was purged and who is purged soon.
    policy: Policy,
    /// `publish.web_url`: each candidate's folder as a link (empty: none).
    web_url: String,
    /// How long a publish item may wait before the digest calls it stuck (`None`: not publishing).
    publish_stuck_after: Option<chrono::Duration>,
}

impl Digest {
    pub fn new(cfg: &Config) -> Result<Digest, TemplateError> {
        let tz = cfg.identity.timezone();
        let schedule = Schedule::parse(&cfg.digest.schedule, tz)
            .map_err(|message| TemplateError { name: "digest.schedule".into(), message })?;
        let mut templates = Templates::load(BUILT_IN, cfg.replies.templates_dir.as_deref())?;
        let subject = match cfg.digest.subject.is_empty() {
            false => cfg.digest.subject.clone(),
            true => cfg.digest.language.pick(SUBJECT_FR, SUBJECT_EN).to_owned(),
        };
        templates
            .add("subject", subject)
            .map_err(|e| TemplateError { name: "digest.subject".into(), message: e.message })?;
        let digest = Digest {
            schedule,
            templates,
            tz,
            enabled: cfg.digest.enabled,
            language: cfg.digest.language,
            recipients: cfg.digest_recipients(),
            when_empty: cfg.digest.when_empty,
            stale_after_days: cfg.digest.stale_after_days,
            organisation: cfg.identity.organisation.clone(),
            from: cfg.identity.from.clone(),
            data_dir: cfg.storage.data_dir.display().to_string(),
            postings: cfg.postings.clone(),
            refresh_warning_days: cfg.oauth2.as_ref().map_or(14, |o| o.refresh_warning_days),
            policy: Policy::from_config(cfg),
            web_url: if cfg.publish.enabled() { cfg.publish.web_url.clone() } else { String::new() },
            publish_stuck_after: cfg
                .publish
                .enabled()
                .then(|| chrono::Duration::minutes(cfg.publish.stuck_after_minutes.min(i64::MAX as u64) as i64)),
        };
        // Prove the templates on an empty and a full sample now, not at 8 a.m.
        let now = Utc::now();
        digest.render(&DigestRows::default(), now, now)?;
        digest.render(&sample_rows(now), now, now)?;
        // Compiled again for each digest: once a day is not worth keeping them (render.rs).
        digest.templates.release();
        Ok(digest)
    }

    /// The window due at `now`, if any: `[last end, now)` once a firing has passed since the last end.
    pub fn due(
        &self,
        last_end: Option<DateTime<Utc>>,
        first_start: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let start = last_end.unwrap_or(first_start);
        let fired = self.schedule.last_at_or_before(now)?;
        (fired > start).then_some((start, now))
    }

    /// Reads, renders.
    pub fn build<S: DigestStore + PrivacyStore>(
        &self,
        store: &S,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Built, DigestError> {
        let stale_before = end - chrono::Duration::days(self.stale_after_days.into());
        let mut rows = store.digest_rows(start, end, stale_before)?;
        rows.purged = store.purged_between(start, end)?;
        rows.upcoming_purges = self
            .policy
            .upcoming(
                &store.people_last_applied_by(self.policy.upcoming_bound(end, self.policy.announce_days))?,
                end,
                self.policy.announce_days,
            )
            .into_iter()
            .map(|(p, at)| {
                let mut postings: Vec<String> = p.applications.iter().map(|a| a.posting.clone()).collect();
                postings.sort();
                postings.dedup();
                UpcomingPurge { candidate: p.address, name: p.name, postings, at }
            })
            .collect();
        let built = self.render(&rows, start, end);
        self.templates.release();
        Ok(built?)
    }

    /// The outbox entries that carry a built digest, one per recipient.
    pub fn mails(&self, built: &Built, start: DateTime<Utc>) -> Vec<OutgoingMail> {
        let domain = self.from.rsplit('@').next().unwrap_or("localhost");
        self.recipients
            .iter()
            .enumerate()
            .map(|(i, to)| OutgoingMail {
                to: to.clone(),
                to_name: None,
                subject: built.subject.clone(),
                text: built.text.clone(),
                html: Some(built.html.clone()),
                message_id: format!(
                    "mailroom.digest.{}.{i}.{}@{domain}",
                    start.timestamp(),
                    Utc::now().timestamp_millis()
                ),
                in_reply_to: None,
                references: Vec::new(),
                kind: MailKind::Digest,
                attachments: vec![TextAttachment {
                    filename: format!("candidatures-{}.csv", start.with_timezone(&self.tz).format("%Y-%m-%d")),
                    content_type: "text/csv; charset=utf-8".into(),
                    content: built.csv.clone(),
                }],
            })
            .collect()
    }

    /// Builds the window and queues it, if it is still unclaimed. Returns what was queued.
    pub fn send_window<S: DigestStore + PrivacyStore>(
        &self,
        store: &S,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Option<Built>, DigestError> {
        let built = self.build(store, start, end)?;
        let mails =
            if built.empty && self.when_empty == WhenEmpty::Skip { Vec::new() } else { self.mails(&built, start) };
        if store.claim_digest(start, end, built.new_candidates, &mails)? { Ok(Some(built)) } else { Ok(None) }
    }

    /// The job: catch up once at start if a firing was missed, then fire on schedule, until stop.
    pub async fn run<S: DigestStore + PrivacyStore>(
        &self,
        store: &S,
        outbox_ready: &Notify,
        timer: &Timer,
        clock: &dyn Clock,
        mut stop: watch::Receiver<bool>,
    ) {
        if !self.enabled {
            return;
        }
        if self.recipients.is_empty() {
            tracing::warn!("the digest has no recipients (digest.recipients, identity.team): it is not sent");
            return;
        }
        loop {
            let now = clock.now();
            let result = store.last_digest_end().map_err(DigestError::from).and_then(|last_end| {
                match self.due(last_end, store.first_start(), now) {
                    Some((start, end)) => self.send_window(store, start, end).map(|b| b.map(|b| (b, start, end))),
                    None => Ok(None),
                }
            });
            match result {
                Ok(Some((built, start, end))) => {
                    tracing::info!(from = %start, to = %end, new_candidates = built.new_candidates, "digest queued");
                    outbox_ready.notify_one();
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "digest: could not build or queue; trying again at the next firing");
                }
            }
            let Some(next) = self.schedule.next_after(now) else {
                tracing::warn!("digest.schedule never fires again");
                return;
            };
            tokio::select! {
                r = timer.sleep_until(next, clock) => if let Err(e) = r {
                    tracing::error!(error = %e, "digest: the timer failed; the digest stops until the next start");
                    return;
                },
                _ = stop.changed() => return,
            }
        }
    }

    fn render(&self, rows: &DigestRows, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Built, TemplateError> {
        let lang = self.language;
        let local = |t: DateTime<Utc>| t.with_timezone(&self.tz).format("%d/%m/%Y %H:%M").to_string();
        let title = |slug: &str| {
            self.postings.iter().find(|p| p.slug == slug).map(|p| p.title.clone()).unwrap_or_else(|| slug.to_owned())
        };
        let labels = |kinds: &[DocKind]| kinds.iter().map(|k| k.label(lang)).collect::<Vec<_>>();
        let mut slugs: Vec<String> = rows.applications.iter().map(|a| a.posting.clone()).collect();
        slugs.extend(rows.totals.keys().cloned());
        slugs.sort();
        slugs.dedup();
        let postings: Vec<Value> = slugs
            .iter()
            .map(|slug| {
                let apps: Vec<Value> = rows
                    .applications
                    .iter()
                    .filter(|a| &a.posting == slug)
                    .map(|a| {
                        context! {
                            name => a.name, email => a.candidate, when => local(a.received_at),
                            documents => a.documents.iter().map(|(k, n)| context! { label => k.label(lang), original_name => n }).collect::<Vec<_>>(),
                            missing => labels(&a.missing), repeat => a.repeat, folder => a.folder, reply => a.reply.describe(lang),
                            link => web_link(&self.web_url, &a.folder),
                        }
                    })
                    .collect();
                context! { slug => slug, title => title(slug), applications => apps, total => rows.totals.get(slug).copied().unwrap_or(0) }
            })
            .collect();
        let new_count = rows.applications.len();
        let auth = auth_problems(&rows.auth, self.refresh_warning_days, end, lang, &local);
        let publish = &rows.publish;
        let publish_stuck = self
            .publish_stuck_after
            .is_some_and(|after| publish.waiting > 0 && publish.oldest_waiting.is_some_and(|t| t < end - after));
        let publish_failures: Vec<Value> = if self.publish_stuck_after.is_some() {
            publish
                .recent_failures
                .iter()
                .map(|f| {
                    let path = match &f.name {
                        Some(name) => format!("{}/{name}", f.folder),
                        None => f.folder.clone(),
                    };
                    context! { path => path, removal => f.name.is_none(), error => f.error, when => f.at.map(local) }
                })
                .collect()
        } else {
            Vec::new()
        };
        let empty = new_count == 0
            && rows.quarantined.is_empty()
            && rows.failed_replies.is_empty()
            && rows.held_by_cap == 0
            && auth.is_empty()
            && !publish_stuck
            && publish_failures.is_empty();
        // Who is purged soon is worth a digest on its own: the team may want to hold someone.
        let empty = empty && rows.upcoming_purges.is_empty() && rows.purged.people == 0;
        let ctx = context! {
            organisation => self.organisation,
            window => context! { start => local(start), end => local(end) },
            new_count => new_count,
            empty => empty,
            postings => postings,
            quarantined => rows.quarantined.iter().map(|q| context! { when => local(q.received_at), reason => q.reason.describe(lang), path => q.path }).collect::<Vec<_>>(),
            failed_replies => rows.failed_replies.iter().map(|f| context! { recipient => f.recipient, state => state_label(f.state, lang), error => f.error }).collect::<Vec<_>>(),
            held_by_cap => rows.held_by_cap,
            stale => rows.stale.iter().map(|s| context! { name => s.name, email => s.candidate, posting => title(&s.posting), folder => s.folder, link => web_link(&self.web_url, &s.folder), missing => labels(&s.missing), since => local(s.since) }).collect::<Vec<_>>(),
            // Applications with documents mailroom could not tell apart: the team checks them.
            unsure => rows.applications.iter().filter_map(|a| {
                let names: Vec<&str> = a.documents.iter().filter(|(k, _)| *k == DocKind::Unknown).map(|(_, n)| n.as_deref().unwrap_or("(no name)")).collect();
                (!names.is_empty()).then(|| context! { name => a.name, email => a.candidate, posting => title(&a.posting), folder => a.folder, documents => names })
            }).collect::<Vec<_>>(),
            publish => context! {
                stuck => publish_stuck,
                waiting => publish.waiting,
                since => publish.oldest_waiting.map(local),
                error => publish.last_error,
                failures => publish_failures,
            },
            stale_after_days => self.stale_after_days,
            auth => auth,
            data_dir => self.data_dir,
            purged => purged_view(&rows.purged),
            upcoming_purges => rows.upcoming_purges.iter().map(|u| context! {
                name => u.name, email => u.candidate, postings => u.postings.iter().map(|s| title(s)).collect::<Vec<_>>(), when => local(u.at),
            }).collect::<Vec<_>>(),
            announce_days => self.policy.announce_days,
        };
        let render = |name: &str| self.templates.render(name, &ctx);
        Ok(Built {
            subject: render::one_line(&render("subject")?),
            text: render(&format!("{lang}/digest.txt.j2"))?,
            html: render(&format!("{lang}/digest.html.j2"))?,
            csv: self.csv(rows),
            new_candidates: new_count,
            empty,
        })
    }

    /// The window's applications for a spreadsheet (RFC 4180, UTF-8 with a BOM for Excel).
    fn csv(&self, rows: &DigestRows) -> String {
        let lang = self.language;
        let field = |s: &str| {
            // A leading = + - @ would be a formula in a spreadsheet: candidates write these fields.
            let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_owned() };
            if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
        };
        let header = lang.pick(
            "offre,reçue le,nom,adresse,documents,manquant,déjà candidat,dossier",
            "posting,received,name,email,documents,missing,repeat,folder",
        );
        let links = !self.web_url.is_empty();
        let link_header = if links { lang.pick(",lien", ",link") } else { "" };
        let mut out = format!("\u{feff}{header}{link_header}\r\n");
        for a in &rows.applications {
            let docs = a.documents.iter().map(|(k, _)| k.label(lang)).collect::<Vec<_>>().join(" + ");
            let missing = a.missing.iter().map(|k| k.label(lang)).collect::<Vec<_>>().join(" + ");
            let mut line = vec![
                a.posting.clone(),
                a.received_at.with_timezone(&self.tz).format("%Y-%m-%d %H:%M").to_string(),
                a.name.clone(),
                a.candidate.clone(),
                docs,
                missing,
                if a.repeat { "1".into() } else { "0".into() },
                a.folder.clone(),
            ];
            if links {
                line.push(web_link(&self.web_url, &a.folder).unwrap_or_default());
            }
            out.push_str(&line.iter().map(|f| field(f)).collect::<Vec<_>>().join(","));
            out.push_str("\r\n");
        }
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Template(#[from] TemplateError),
}

fn sample_rows(now: DateTime<Utc>) -> DigestRows {
    DigestRows {
        applications: vec![ApplicationRow {
            candidate: "jeanne@example.test".into(),
            name: "Jeanne Dupré".into(),
            posting: "sample".into(),
            folder: "sample/Dupré-Jeanne--00000000".into(),
            received_at: now,
            missing: vec![DocKind::CoverLetter],
            repeat: true,
            reply: ReplyNote::Queued(ReplyKind::MissingLetter),
            documents: vec![(DocKind::Cv, Some("CV.pdf".into())), (DocKind::Unknown, Some("scan.heic".into()))],
        }],
        quarantined: vec![QuarantineRow {
            received_at: now,
            reason: QuarantineReason::NotMail,
            path: "_quarantine/x".into(),
        }],
        failed_replies: vec![FailedReply {
            recipient: "x@example.test".into(),
            state: OutboxState::Failed,
            error: "550".into(),
        }],
        held_by_cap: 1,
        stale: vec![StaleCandidate {
            candidate: "x@example.test".into(),
            name: "X".into(),
            posting: "sample".into(),
            folder: "sample/X".into(),
            missing: vec![DocKind::Cv],
            since: now,
        }],
        totals: BTreeMap::from([("sample".to_owned(), 1)]),
        auth: vec![AuthRecord {
            part: AuthPart::Provider,
            ok: false,
            since: now,
            code: Some("invalid_grant".into()),
            reason: Some("the identity provider refused: invalid_grant".into()),
            detail: None,
            refresh_expires_at: None,
            updated_at: now,
        }],
        purged: PurgeTotals {
            people: 2,
            folders: 2,
            messages: 3,
            documents: 5,
            mailbox_deleted: 3,
            ..Default::default()
        },
        upcoming_purges: vec![UpcomingPurge {
            candidate: "y@example.test".into(),
            name: "Y".into(),
            postings: vec!["sample".into()],
            at: now,
        }],
        publish: PublishStatus {
            waiting: 3,
            oldest_waiting: Some(now - chrono::Duration::hours(2)),
            done: 1,
            failed: 1,
            last_error: Some("PUT: 503 Service Unavailable".into()),
            recent_failures: vec![PublishFailure {
                folder: "sample/X".into(),
                name: Some("CV.pdf".into()),
                error: "PUT: 413 Payload Too Large".into(),
                at: Some(now),
            }],
        },
    }
}

/// What the digest says of the window's purges: counts only.
fn purged_view(t: &PurgeTotals) -> Value {
    let any = t.people + t.quarantined + t.mailbox_deleted + t.mailbox_moved > 0;
    context! {
        any => any,
        people => t.people,
        documents => t.documents,
        messages => t.messages,
        quarantined => t.quarantined,
        mailbox => t.mailbox_deleted + t.mailbox_moved,
        not_found => t.mailbox_not_found + t.mailbox_unreachable,
    }
}

/// What the digest says about authentication: each failing part, and a refresh token that
/// expires within the warning.
fn auth_problems(
    records: &[AuthRecord],
    warning_days: u32,
    now: DateTime<Utc>,
    lang: Lang,
    local: &dyn Fn(DateTime<Utc>) -> String,
) -> Vec<Value> {
    let mut out = Vec::new();
    for r in records {
        let what = match r.part {
            AuthPart::Provider => lang.pick("fournisseur d'identité (OAuth2)", "identity provider (OAuth2)"),
            AuthPart::Imap => lang.pick("connexion IMAP", "IMAP login"),
            AuthPart::Smtp => lang.pick("connexion SMTP", "SMTP login"),
        };
        if !r.ok {
            out.push(
                context! { what => what, since => local(r.since), reason => r.reason.clone().unwrap_or_default() },
            );
        } else if let Some(days) = r.refresh_days_left(now).filter(|d| *d < i64::from(warning_days)) {
            let expires = r.refresh_expires_at.map(local).unwrap_or_default();
            out.push(context! {
                what => lang.pick("jeton de renouvellement OAuth2", "OAuth2 refresh token"),
                since => Value::from(()),
                reason => match lang {
                    Lang::Fr => format!("expire le {expires} (dans {days} jours) : lancer `mailroom auth login` avant"),
                    Lang::En => format!("expires on {expires} (in {days} days): run `mailroom auth login` before"),
                },
            });
        }
    }
    out
}

/// How the digest names what became of a reply that did not go out.
fn state_label(state: OutboxState, lang: Lang) -> &'static str {
    match state {
        OutboxState::Uncertain => lang.pick("peut-être non envoyé", "may not have been sent"),
        OutboxState::Failed => lang.pick("échec", "failed"),
        OutboxState::Pending | OutboxState::Sending => lang.pick("en attente", "waiting"),
        OutboxState::Sent => lang.pick("envoyé", "sent"),
    }
}

/// The next firing after the last window, for `mailroom status`.
pub fn next_digest(cfg: &Config, last_end: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let schedule = Schedule::parse(&cfg.digest.schedule, cfg.identity.timezone()).ok()?;
    schedule.next_after(last_end.map_or(now, |e| e.max(now)))
}
