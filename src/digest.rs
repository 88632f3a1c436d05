//! The daily digest: a scheduled job beside the pipeline that tells the recruiting team what
//! arrived and what needs a human.
//!
//! **Schedule.** A cron expression evaluated in the organisation's named time zone each time the
//! next firing is computed, so 08:00 Europe/Paris stays 08:00 across both DST changes. We do not
//! use tokio-cron-scheduler for this: its time-zone jobs fix the UTC offset when the job is
//! created (upstream issues #87 and #107), so a job made in winter fires an hour late all summer.
//! The `cron` crate (which tokio-cron-scheduler itself uses to parse) does the calendar work; the
//! loop is ours, with an injectable [`Clock`] so the DST cases are tested by computation.
//!
//! **Windows.** A digest covers exactly the time since the previous one: `[last end, now)`. The
//! window is claimed in the store (its start is unique) in the same transaction as the outbox
//! entries that carry it, so a restart or a second process can never send a window twice, and
//! the outbox sender delivers it with the same retries as acknowledgements. A firing missed while
//! the daemon was down is caught up once at start: one digest covering the whole gap.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use minijinja::{Environment, Value, context};
use rusqlite::params;
use serde::Serialize;
use tokio::sync::{Notify, watch};

use crate::config::{Config, Posting, WhenEmpty};
use crate::courier::{DIGEST_KIND, OutgoingMail, TextAttachment, lock};
use crate::reply::{TemplateError, kind_label};
use crate::store::{SqliteLedger, StoreError};
use crate::understand::DocKind;

/// When the digest fires: a cron expression in a named time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: cron::Schedule,
    tz: Tz,
}

impl Schedule {
    /// Accepts the usual 5 fields (`min hour day month weekday`) or 6 with seconds first.
    pub fn parse(expr: &str, tz: Tz) -> Result<Schedule, String> {
        let fields = expr.split_whitespace().count();
        let full = match fields {
            5 => format!("0 {expr}"),
            6 | 7 => expr.to_owned(),
            _ => return Err(format!("{expr:?}: expected 5 cron fields (min hour day month weekday), found {fields}")),
        };
        let cron = full.parse::<cron::Schedule>().map_err(|e| format!("{expr:?}: {e}"))?;
        Ok(Schedule { cron, tz })
    }

    /// The first firing strictly after `t`. Local times that do not exist (the spring gap) are
    /// skipped; the repeated hour of autumn fires once.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.after(&t.with_timezone(&self.tz)).next().map(|d| d.with_timezone(&Utc))
    }

    /// The last firing at or before `t`.
    pub fn last_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let just_after = (t + chrono::Duration::seconds(1)).with_timezone(&self.tz);
        self.cron.after(&just_after).next_back().map(|d| d.with_timezone(&Utc))
    }
}

/// Where "now" comes from: the system, or a test.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// One application of the window, as the digest shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ApplicationRow {
    pub candidate: String,
    pub name: String,
    pub posting: String,
    pub folder: String,
    pub received_at: DateTime<Utc>,
    pub missing: Vec<DocKind>,
    pub repeat: bool,
    pub reply: String,
    pub documents: Vec<(DocKind, Option<String>)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QuarantineRow {
    pub received_at: DateTime<Utc>,
    pub reason: String,
    pub path: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailedReply {
    pub recipient: String,
    pub state: String,
    pub error: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StaleCandidate {
    pub candidate: String,
    pub name: String,
    pub posting: String,
    pub folder: String,
    pub missing: Vec<DocKind>,
    pub since: DateTime<Utc>,
}

/// Everything a digest says, read from the store.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DigestRows {
    pub applications: Vec<ApplicationRow>,
    pub quarantined: Vec<QuarantineRow>,
    pub failed_replies: Vec<FailedReply>,
    /// Replies held back by the hourly cap in the window.
    pub held_by_cap: u64,
    pub stale: Vec<StaleCandidate>,
    /// Distinct candidates per posting, since the beginning.
    pub totals: BTreeMap<String, u64>,
}

/// The store, in the digest's role.
pub trait DigestStore {
    fn first_start(&self) -> DateTime<Utc>;
    /// The end of the last digest window claimed.
    fn last_digest_end(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    fn digest_rows(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<DigestRows, StoreError>;
    /// Claims `[start, end)` and queues its mails, atomically. False: already claimed.
    fn claim_digest(
        &mut self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        candidates: usize,
        mails: &[OutgoingMail],
    ) -> Result<bool, StoreError>;
    /// Queues mails outside any window (a past window rebuilt on request).
    fn queue_mails(&mut self, mails: &[OutgoingMail]) -> Result<(), StoreError>;
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).unwrap_or_default()
}

fn parse_kinds(s: Option<String>) -> Vec<DocKind> {
    s.unwrap_or_default()
        .split(',')
        .filter_map(|k| match k {
            "cv" => Some(DocKind::Cv),
            "cover_letter" => Some(DocKind::CoverLetter),
            _ => None,
        })
        .collect()
}

impl DigestStore for SqliteLedger {
    fn first_start(&self) -> DateTime<Utc> {
        crate::store::Ledger::first_start(self)
    }

    fn last_digest_end(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let end: Option<String> = self.conn().query_row("SELECT max(window_end) FROM digests", [], |r| r.get(0))?;
        Ok(end.map(|s| parse_ts(&s)))
    }

    fn digest_rows(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<DigestRows, StoreError> {
        let conn = self.conn();
        let mut rows = DigestRows::default();
        let mut docs_of: HashMap<i64, Vec<(DocKind, Option<String>)>> = HashMap::new();
        {
            let mut stmt = conn.prepare(
                "SELECT d.message, d.kind, d.original_name FROM documents d JOIN messages m ON m.id = d.message
                 WHERE m.recorded_at >= ?1 AND m.recorded_at < ?2 AND d.filename IS NOT NULL ORDER BY d.rowid",
            )?;
            let found = stmt.query_map(params![ts(start), ts(end)], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?))
            })?;
            for row in found {
                let (id, kind, name) = row?;
                let kind = match kind.as_str() {
                    "cv" => DocKind::Cv,
                    "cover_letter" => DocKind::CoverLetter,
                    "unknown" => DocKind::Unknown,
                    _ => DocKind::Other,
                };
                docs_of.entry(id).or_default().push((kind, name));
            }
        }
        let mut stmt = conn.prepare(
            "SELECT id, candidate, coalesce(candidate_name, candidate), posting, path, received_at, missing, repeat, reply
             FROM messages WHERE outcome = 'filed' AND recorded_at >= ?1 AND recorded_at < ?2 ORDER BY posting, received_at",
        )?;
        let found = stmt.query_map(params![ts(start), ts(end)], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                ApplicationRow {
                    candidate: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    name: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    posting: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                    folder: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                    received_at: parse_ts(&r.get::<_, String>(5)?),
                    missing: parse_kinds(r.get(6)?),
                    repeat: r.get(7)?,
                    reply: r.get(8)?,
                    documents: Vec::new(),
                },
            ))
        })?;
        for row in found {
            let (id, mut app) = row?;
            app.documents = docs_of.remove(&id).unwrap_or_default();
            rows.applications.push(app);
        }
        let mut stmt = conn.prepare(
            "SELECT received_at, coalesce(reason, ''), coalesce(path, '') FROM messages
             WHERE outcome = 'quarantined' AND recorded_at >= ?1 AND recorded_at < ?2 ORDER BY received_at",
        )?;
        rows.quarantined = stmt
            .query_map(params![ts(start), ts(end)], |r| {
                Ok(QuarantineRow { received_at: parse_ts(&r.get::<_, String>(0)?), reason: r.get(1)?, path: r.get(2)? })
            })?
            .collect::<Result<_, _>>()?;
        let mut stmt = conn.prepare(
            "SELECT recipient, state, coalesce(last_error, '') FROM outbox
             WHERE state IN ('failed', 'uncertain') AND created_at < ?2 AND (created_at >= ?1 OR sent_at IS NULL) ORDER BY id",
        )?;
        rows.failed_replies = stmt
            .query_map(params![ts(start), ts(end)], |r| {
                Ok(FailedReply { recipient: r.get(0)?, state: r.get(1)?, error: r.get(2)? })
            })?
            .collect::<Result<_, _>>()?;
        rows.held_by_cap = conn.query_row(
            "SELECT count(*) FROM messages WHERE reply LIKE 'skipped: hourly cap%' AND recorded_at >= ?1 AND recorded_at < ?2",
            params![ts(start), ts(end)],
            |r| r.get::<_, i64>(0),
        )? as u64;
        // Per person, what every application lacked, and since when.
        let mut stmt = conn.prepare(
            "SELECT candidate, coalesce(candidate_name, candidate), posting, path, missing, recorded_at FROM messages
             WHERE outcome = 'filed' AND candidate IS NOT NULL AND recorded_at < ?1 ORDER BY recorded_at",
        )?;
        let mut people: BTreeMap<String, StaleCandidate> = BTreeMap::new();
        let found = stmt.query_map(params![ts(end)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                parse_kinds(r.get(4)?),
                parse_ts(&r.get::<_, String>(5)?),
            ))
        })?;
        for row in found {
            let (candidate, name, posting, folder, missing, at) = row?;
            *rows.totals.entry(posting.clone()).or_default() += !people.contains_key(&candidate) as u64;
            people
                .entry(candidate.clone())
                .and_modify(|p| p.missing.retain(|k| missing.contains(k)))
                .or_insert(StaleCandidate { candidate, name, posting, folder, missing, since: at });
        }
        rows.stale = people.into_values().filter(|p| !p.missing.is_empty() && p.since < stale_before).collect();
        Ok(rows)
    }

    fn claim_digest(
        &mut self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        candidates: usize,
        mails: &[OutgoingMail],
    ) -> Result<bool, StoreError> {
        let tx = self.conn_mut().transaction()?;
        let claimed = tx.execute(
            "INSERT OR IGNORE INTO digests (window_start, window_end, created_at, candidates) VALUES (?1, ?2, ?3, ?4)",
            params![ts(start), ts(end), ts(Utc::now()), candidates as i64],
        )?;
        if claimed == 0 {
            return Ok(false);
        }
        insert_mails(&tx, mails)?;
        tx.commit()?;
        Ok(true)
    }

    fn queue_mails(&mut self, mails: &[OutgoingMail]) -> Result<(), StoreError> {
        let tx = self.conn_mut().transaction()?;
        insert_mails(&tx, mails)?;
        tx.commit()?;
        Ok(())
    }
}

fn insert_mails(tx: &rusqlite::Transaction<'_>, mails: &[OutgoingMail]) -> Result<(), StoreError> {
    for mail in mails {
        let json = serde_json::to_string(mail).expect("outgoing mail serialises");
        tx.execute(
            "INSERT INTO outbox (message, reply_message_id, recipient, mail, next_attempt_at, created_at, kind) VALUES (NULL, ?1, ?2, ?3, ?4, ?4, ?5)",
            params![mail.message_id, mail.to, json, ts(Utc::now()), DIGEST_KIND],
        )?;
    }
    Ok(())
}

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
    env: Environment<'static>,
    tz: Tz,
    enabled: bool,
    language: String,
    recipients: Vec<String>,
    when_empty: WhenEmpty,
    stale_after_days: u32,
    organisation: String,
    from: String,
    data_dir: String,
    postings: Vec<Posting>,
}

impl Digest {
    pub fn new(cfg: &Config) -> Result<Digest, TemplateError> {
        let tz = cfg.identity.timezone();
        let schedule = Schedule::parse(&cfg.digest.schedule, tz)
            .map_err(|message| TemplateError { name: "digest.schedule".into(), message })?;
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, builtin) in BUILT_IN {
            let source = cfg
                .replies
                .templates_dir
                .as_ref()
                .and_then(|d| std::fs::read_to_string(d.join(name)).ok())
                .unwrap_or_else(|| builtin.to_string());
            env.add_template_owned(name.to_string(), source)
                .map_err(|e| TemplateError { name: name.to_string(), message: e.to_string() })?;
        }
        let subject = match (cfg.digest.subject.is_empty(), cfg.digest.language.as_str()) {
            (false, _) => cfg.digest.subject.clone(),
            (true, "en") => SUBJECT_EN.to_owned(),
            (true, _) => SUBJECT_FR.to_owned(),
        };
        env.add_template_owned("subject", subject)
            .map_err(|e| TemplateError { name: "digest.subject".into(), message: e.to_string() })?;
        let digest = Digest {
            schedule,
            env,
            tz,
            enabled: cfg.digest.enabled,
            language: cfg.digest.language.clone(),
            recipients: cfg.digest_recipients(),
            when_empty: cfg.digest.when_empty,
            stale_after_days: cfg.digest.stale_after_days,
            organisation: cfg.identity.organisation.clone(),
            from: cfg.identity.from.clone(),
            data_dir: cfg.storage.data_dir.display().to_string(),
            postings: cfg.postings.clone(),
        };
        // Prove the templates on an empty and a full sample now, not at 8 a.m.
        let now = Utc::now();
        digest
            .render(&DigestRows::default(), now, now)
            .map_err(|e| TemplateError { name: e.name, message: e.message })?;
        digest.render(&sample_rows(now), now, now)?;
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
    pub fn build<S: DigestStore>(
        &self,
        store: &S,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Built, DigestError> {
        let stale_before = end - chrono::Duration::days(self.stale_after_days.into());
        let rows = store.digest_rows(start, end, stale_before)?;
        Ok(self.render(&rows, start, end)?)
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
                kind: DIGEST_KIND.into(),
                attachments: vec![TextAttachment {
                    filename: format!("candidatures-{}.csv", start.with_timezone(&self.tz).format("%Y-%m-%d")),
                    content_type: "text/csv; charset=utf-8".into(),
                    content: built.csv.clone(),
                }],
            })
            .collect()
    }

    /// Builds the window and queues it, if it is still unclaimed. Returns what was queued.
    pub fn send_window<S: DigestStore>(
        &self,
        store: &mut S,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Option<Built>, DigestError> {
        let built = self.build(store, start, end)?;
        let mails =
            if built.empty && self.when_empty == WhenEmpty::Skip { Vec::new() } else { self.mails(&built, start) };
        if store.claim_digest(start, end, built.new_candidates, &mails)? { Ok(Some(built)) } else { Ok(None) }
    }

    /// The job: catch up once at start if a firing was missed, then fire on schedule, until stop.
    pub async fn run(
        &self,
        ledger: &Arc<Mutex<SqliteLedger>>,
        outbox_ready: &Notify,
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
            let result = {
                let mut store = lock(ledger);
                let last_end = store.last_digest_end();
                match last_end {
                    Ok(last_end) => match self.due(last_end, DigestStore::first_start(&*store), now) {
                        Some((start, end)) => {
                            self.send_window(&mut *store, start, end).map(|b| b.map(|b| (b, start, end)))
                        }
                        None => Ok(None),
                    },
                    Err(e) => Err(e.into()),
                }
            };
            match result {
                Ok(Some((built, start, end))) => {
                    tracing::info!(from = %start, to = %end, new_candidates = built.new_candidates, "digest queued");
                    outbox_ready.notify_one();
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "digest: could not build or queue; trying again at the next firing")
                }
            }
            let Some(next) = self.schedule.next_after(now) else {
                tracing::warn!("digest.schedule never fires again");
                return;
            };
            let wait = (next - clock.now()).to_std().unwrap_or(Duration::ZERO);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
    }

    fn render(&self, rows: &DigestRows, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Built, TemplateError> {
        let lang = self.language.as_str();
        let local = |t: DateTime<Utc>| t.with_timezone(&self.tz).format("%d/%m/%Y %H:%M").to_string();
        let title = |slug: &str| {
            self.postings.iter().find(|p| p.slug == slug).map(|p| p.title.clone()).unwrap_or_else(|| slug.to_owned())
        };
        let labels = |kinds: &[DocKind]| kinds.iter().map(|k| kind_label(*k, lang)).collect::<Vec<_>>();
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
                            documents => a.documents.iter().map(|(k, n)| context! { label => kind_label(*k, lang), original_name => n }).collect::<Vec<_>>(),
                            missing => labels(&a.missing), repeat => a.repeat, folder => a.folder, reply => a.reply,
                        }
                    })
                    .collect();
                context! { slug => slug, title => title(slug), applications => apps, total => rows.totals.get(slug).copied().unwrap_or(0) }
            })
            .collect();
        let new_count = rows.applications.len();
        let empty =
            new_count == 0 && rows.quarantined.is_empty() && rows.failed_replies.is_empty() && rows.held_by_cap == 0;
        let ctx = context! {
            organisation => self.organisation,
            window => context! { start => local(start), end => local(end) },
            new_count => new_count,
            empty => empty,
            postings => postings,
            quarantined => rows.quarantined.iter().map(|q| context! { when => local(q.received_at), reason => q.reason, path => q.path }).collect::<Vec<_>>(),
            failed_replies => rows.failed_replies,
            held_by_cap => rows.held_by_cap,
            stale => rows.stale.iter().map(|s| context! { name => s.name, email => s.candidate, posting => title(&s.posting), folder => s.folder, missing => labels(&s.missing), since => local(s.since) }).collect::<Vec<_>>(),
            // Applications with documents mailroom could not tell apart: the team checks them.
            unsure => rows.applications.iter().filter_map(|a| {
                let names: Vec<&str> = a.documents.iter().filter(|(k, _)| *k == DocKind::Unknown).map(|(_, n)| n.as_deref().unwrap_or("(no name)")).collect();
                (!names.is_empty()).then(|| context! { name => a.name, email => a.candidate, posting => title(&a.posting), folder => a.folder, documents => names })
            }).collect::<Vec<_>>(),
            stale_after_days => self.stale_after_days,
            data_dir => self.data_dir,
        };
        let render = |name: &str| {
            self.env
                .get_template(name)
                .and_then(|t| t.render(&ctx))
                .map_err(|e| TemplateError { name: name.to_owned(), message: e.to_string() })
        };
        Ok(Built {
            subject: render("subject")?.split_whitespace().collect::<Vec<_>>().join(" "),
            text: render(&format!("{lang}/digest.txt.j2"))?,
            html: render(&format!("{lang}/digest.html.j2"))?,
            csv: self.csv(rows),
            new_candidates: new_count,
            empty,
        })
    }

    /// The window's applications for a spreadsheet (RFC 4180, UTF-8 with a BOM for Excel).
    fn csv(&self, rows: &DigestRows) -> String {
        let lang = self.language.as_str();
        let field = |s: &str| {
            // A leading = + - @ would be a formula in a spreadsheet: candidates write these fields.
            let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_owned() };
            if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
        };
        let header = if lang == "en" {
            "posting,received,name,email,documents,missing,repeat,folder"
        } else {
            "offre,reçue le,nom,adresse,documents,manquant,déjà candidat,dossier"
        };
        let mut out = format!("\u{feff}{header}\r\n");
        for a in &rows.applications {
            let docs = a.documents.iter().map(|(k, _)| kind_label(*k, lang)).collect::<Vec<_>>().join(" + ");
            let missing = a.missing.iter().map(|k| kind_label(*k, lang)).collect::<Vec<_>>().join(" + ");
            let line = [
                a.posting.clone(),
                a.received_at.with_timezone(&self.tz).format("%Y-%m-%d %H:%M").to_string(),
                a.name.clone(),
                a.candidate.clone(),
                docs,
                missing,
                if a.repeat { "1".into() } else { "0".into() },
                a.folder.clone(),
            ];
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
            reply: "queued: missing_letter".into(),
            documents: vec![(DocKind::Cv, Some("CV.pdf".into())), (DocKind::Unknown, Some("scan.heic".into()))],
        }],
        quarantined: vec![QuarantineRow { received_at: now, reason: "sample".into(), path: "_quarantine/x".into() }],
        failed_replies: vec![FailedReply {
            recipient: "x@example.test".into(),
            state: "failed".into(),
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
    }
}

/// The next firing after the last window, for `mailroom status`.
pub fn next_digest(cfg: &Config, last_end: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let schedule = Schedule::parse(&cfg.digest.schedule, cfg.identity.timezone()).ok()?;
    schedule.next_after(last_end.map_or(now, |e| e.max(now)))
}
