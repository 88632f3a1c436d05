//! The privacy commands: `mailroom purge`, `mailroom candidate …`, `mailroom audit`. The work is
//! in [`crate::privacy`]; this is the wiring and what the operator reads. Addresses and names are
//! printed to the operator's terminal (they asked about that person); the logs get counts only.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use super::{FORCED_EXIT, block_on, load_config, shutdown_signal, usage};
use crate::config::{Config, PurgeMailbox};
use crate::lang::Lang;
use crate::mailbox::ImapMailbox;
use crate::privacy::{Exporter, Keep, Plan, PrivacyError, PurgeReport, Purger};
use crate::schedule::SystemClock;
use crate::store::{PersonRow, PrivacyStore, PurgeLock, PurgeTotals, Store};
use crate::understand::normalise_address;

/// What `mailroom candidate` was asked to do.
#[derive(Debug)]
pub(crate) enum CandidateAction {
    List { json: bool },
    Show { email: String, json: bool },
    Export { email: String, out: PathBuf, lang: String },
    Forget { email: String, yes: bool },
    Hold { email: String, reason: String },
    Release { email: String },
    Consent { email: String, withdraw: bool },
    Unforget { email: String },
}

/// The data root 0700 and the state 0600, also when an older version (or an admin) made them
/// with looser modes: the umask only governs what is created from now on. Below a 0700 root,
/// folders made earlier are out of reach of other users too.
pub(crate) fn tighten_permissions(cfg: &Config) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let state = cfg.storage.state_path.to_string_lossy().into_owned();
        let targets = [
            (cfg.storage.data_dir.clone(), 0o700),
            (cfg.storage.state_path.clone(), 0o600),
            (PathBuf::from(format!("{state}-wal")), 0o600),
            (PathBuf::from(format!("{state}-shm")), 0o600),
        ];
        for (path, mode) in targets {
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            if meta.permissions().mode() & 0o777 & !mode != 0 {
                match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)) {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), mode = format!("{mode:o}"), "tightened permissions");
                    }
                    Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot tighten permissions"),
                }
            }
        }
    }
}

/// The state, for a command that reads or changes what is on file (beside a running daemon).
fn open_state(cfg: &Config) -> anyhow::Result<Store> {
    let state = &cfg.storage.state_path;
    if !state.exists() {
        return Err(usage(format!(
            "no state at {} (storage.state_path): mailroom has not run yet, so nothing is on file",
            state.display()
        )));
    }
    Ok(Store::open_unlocked(state)?)
}

/// Connects to a folder of the configured account (the purge's mailbox steps).
fn connector(
    cfg: &Config,
) -> impl FnMut(String) -> std::pin::Pin<Box<dyn Future<Output = Result<ImapMailbox, crate::mailbox::MailboxError>>>> + use<>
{
    let cfg = cfg.clone();
    move |folder: String| {
        let cfg = cfg.clone();
        Box::pin(async move { ImapMailbox::connect(&cfg, &folder).await })
    }
}

/// The purge lock, saying so when another process holds it.
fn take_lock(purger: &Purger<Store>) -> anyhow::Result<PurgeLock> {
    if let Some(lock) = purger.lock(false)? {
        return Ok(lock);
    }
    eprintln!("another mailroom is purging (the daemon's scheduled purge, or a command); waiting for it to finish…");
    purger.lock(true)?.context("the purge lock")
}

fn local_day(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d").to_string()
}

/// The address as the store keys it, or a usage error that says what is wrong with it.
fn address(email: &str) -> anyhow::Result<String> {
    let a = normalise_address(email.trim().trim_start_matches('<').trim_end_matches('>'));
    if !a.contains('@') || a.chars().any(char::is_whitespace) {
        return Err(usage(format!("{email:?} is not an email address")));
    }
    Ok(a)
}

/// The person, or a usage error that says clearly that the address is not on file (and whether
/// it was erased).
fn known(store: &Store, address: &str) -> anyhow::Result<PersonRow> {
    if let Some(p) = store.person(address)? {
        return Ok(p);
    }
    if store.is_forgotten(&store.keyed(address)?)? {
        return Err(usage(format!(
            "{address} was erased on request (candidate forget): nothing is on file, and mail from it is not filed \
             (`mailroom candidate unforget {address}` lifts that)"
        )));
    }
    Err(usage(format!(
        "no candidate with the address {address} is on file (addresses are compared in lower case; \
         `mailroom candidate list` shows who is)"
    )))
}

fn describe_totals(t: &PurgeTotals) -> String {
    format!(
        "{} candidate(s): {} folder(s), {} application(s), {} document(s), {} acknowledgement(s), {} digest(s) naming them; \
         {} set-aside message(s); mailbox: {} deleted, {} moved, {} not found, {} out of reach; {} old record(s) of the store",
        t.people,
        t.folders,
        t.messages,
        t.documents,
        t.acknowledgements,
        t.digests,
        t.quarantined,
        t.mailbox_deleted,
        t.mailbox_moved,
        t.mailbox_not_found,
        t.mailbox_unreachable,
        t.history + t.audit
    )
}

/// Says what a run left undone; exit 1 when something was.
fn finish(report: &PurgeReport) -> ExitCode {
    if report.resumed > 0 {
        println!("took up {} interrupted purge(s)", report.resumed);
    }
    if report.unfinished == 0 {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "unfinished: {}; what is on this machine is removed, the rest is tried again at the next purge \
         (`mailroom purge`, or the daemon within minutes)",
        if report.errors.is_empty() { "stopped".into() } else { report.errors.join("; ") }
    );
    ExitCode::from(1)
}

/// The purger of the commands: a purge or an erasure also removes the published copy (queued; the
/// daemon's publisher does it).
pub(super) fn purger(cfg: &Config, store: &Store) -> Purger<Store> {
    Purger::new(cfg, store.clone())
        .with_other_copies(std::sync::Arc::new(crate::publish::PublishedCopies::new(store.clone())))
}

/// `mailroom purge`.
pub(crate) fn purge(path: &Path, dry_run: bool) -> anyhow::Result<ExitCode> {
    let cfg = load_config(path)?;
    crate::service::init_logging(&cfg);
    let store = open_state(&cfg)?;
    let purger = purger(&cfg, &store);
    let tz = cfg.identity.timezone();
    if dry_run {
        let now = Utc::now();
        let plan = purger.plan(now)?;
        print_plan(&cfg, &plan, tz);
        let soon = purger.policy.upcoming(&store.people()?, now, cfg.privacy.announce_days);
        println!(
            "{} more candidate(s) become due within {} days (`mailroom candidate list` shows when)",
            soon.len(),
            cfg.privacy.announce_days
        );
        let unfinished = store.unfinished_purges()?.len();
        if unfinished > 0 {
            println!("{unfinished} interrupted purge(s) would be taken up first");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let lock = take_lock(&purger)?;
    block_on(async {
        let shutdown = shutdown_signal();
        let work = purger.purge(&lock, connector(&cfg), "purge", &SystemClock, &shutdown.stop);
        let report = tokio::select! {
            r = work => r?,
            _ = shutdown.forced => return Ok(ExitCode::from(FORCED_EXIT)),
        };
        println!("purged {}", describe_totals(&report.totals));
        Ok(finish(&report))
    })?
}

fn print_plan(cfg: &Config, plan: &Plan, tz: Tz) {
    println!("dry run: nothing is removed");
    if plan.people.is_empty() {
        println!("no candidate is past their retention period");
    } else {
        println!("would purge {} candidate(s):", plan.people.len());
        for (p, keep) in &plan.people {
            let postings = postings_of(p).join(", ");
            let since = keep.until().map(|t| local_day(t, tz)).unwrap_or_default();
            println!("  {:<32} {:<24} {:<24} due since {since}", p.address, p.name, postings);
        }
    }
    println!(
        "would remove {} set-aside message(s) older than {} days (privacy.quarantine_days)",
        plan.quarantined, cfg.privacy.quarantine_days
    );
    let what = match &cfg.privacy.purge_mailbox {
        PurgeMailbox::Delete => "deleted".to_owned(),
        PurgeMailbox::Move(f) => format!("moved to {f}"),
        PurgeMailbox::Keep => "kept (privacy.purge_mailbox = \"keep\")".to_owned(),
    };
    println!("mailbox: {} message(s) would be {what}", plan.mailbox_messages);
}

fn postings_of(p: &PersonRow) -> Vec<String> {
    let mut v: Vec<String> = p.applications.iter().map(|a| a.posting.clone()).collect();
    v.sort();
    v.dedup();
    v
}

fn keep_short(keep: &Keep, tz: Tz) -> String {
    match keep {
        Keep::Held { reason, .. } => format!("HELD ({reason})"),
        Keep::Until { until, rule } => {
            let why = match rule {
                crate::privacy::Rule::ClosingDate { .. } => "closing date",
                crate::privacy::Rule::Application { .. } => "last application",
                crate::privacy::Rule::Consent { .. } => "consent",
            };
            format!("{} ({why})", local_day(*until, tz))
        }
    }
}

/// `mailroom candidate …`.
pub(crate) fn candidate(path: &Path, action: CandidateAction) -> anyhow::Result<ExitCode> {
    let cfg = load_config(path)?;
    crate::service::init_logging(&cfg);
    let store = open_state(&cfg)?;
    let purger = purger(&cfg, &store);
    let tz = cfg.identity.timezone();
    let now = Utc::now();
    match action {
        CandidateAction::List { json } => {
            let people = store.people()?;
            if json {
                let out: Vec<_> = people
                    .iter()
                    .map(|p| {
                        serde_json::json!({
                            "address": p.address,
                            "name": p.name,
                            "postings": postings_of(p),
                            "applications": p.applications.len(),
                            "last_application": p.last_application(),
                            "folders": p.folders(),
                            "consent_at": p.consent_at,
                            "hold": p.hold,
                            "keep": purger.policy.keep(p),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(ExitCode::SUCCESS);
            }
            if people.is_empty() {
                println!("nobody is on file");
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:<32} {:<24} {:<24} {:>4} {:<10} KEPT UNTIL", "ADDRESS", "NAME", "POSTINGS", "APPS", "LAST");
            for p in &people {
                println!(
                    "{:<32} {:<24} {:<24} {:>4} {:<10} {}",
                    p.address,
                    p.name,
                    postings_of(p).join(","),
                    p.applications.len(),
                    p.last_application().map(|t| local_day(t, tz)).unwrap_or_default(),
                    keep_short(&purger.policy.keep(p), tz)
                );
            }
            println!("{} candidate(s)", people.len());
            Ok(ExitCode::SUCCESS)
        }
        CandidateAction::Show { email, json } => {
            let address = address(&email)?;
            let p = known(&store, &address)?;
            let keep = purger.policy.keep(&p);
            let acks = store.acknowledgements_to(&address)?;
            if json {
                let value = serde_json::json!({
                    "address": p.address, "name": p.name, "applications": p.applications, "folders": p.folders(),
                    "consent_at": p.consent_at, "hold": p.hold, "keep": keep, "acknowledgements": acks.len(),
                });
                println!("{}", serde_json::to_string_pretty(&value)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("{} <{}>", p.name, p.address);
            println!("applications");
            for a in &p.applications {
                println!(
                    "  {}  {:<24} {} document(s)  {}",
                    a.received_at.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
                    a.posting,
                    a.documents,
                    cfg.storage.data_dir.join(&a.folder).display()
                );
            }
            println!("acknowledgements  {} ({} sent)", acks.len(), acks.iter().filter(|a| a.state == "sent").count());
            println!(
                "consent           {}",
                p.consent_at.map_or("none (`mailroom candidate consent` records it)".into(), |t| format!(
                    "given on {}",
                    local_day(t, tz)
                ))
            );
            println!(
                "hold              {}",
                p.hold.as_ref().map_or("none".into(), |h| format!("since {}: {}", local_day(h.at, tz), h.reason))
            );
            println!("retention         their data {}", keep.describe(Lang::En, tz));
            Ok(ExitCode::SUCCESS)
        }
        CandidateAction::Export { email, out, lang } => {
            let address = address(&email)?;
            let lang = Lang::parse(&lang).ok_or_else(|| usage(format!("--lang {lang:?}: one of fr, en")))?;
            known(&store, &address)?;
            let exporter = Exporter::new(&cfg).map_err(usage)?;
            let summary = match exporter.export(&store, &address, lang, &out, "candidate export", now) {
                Err(PrivacyError::Io { path, source }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(usage(format!("{}: {source}", path.display())));
                }
                other => other?,
            };
            println!(
                "wrote {}: {} application(s), {} document(s), {} message(s), {} acknowledgement(s), {} bytes",
                out.display(),
                summary.applications,
                summary.documents,
                summary.messages,
                summary.acknowledgements,
                summary.bytes
            );
            if !summary.missing.is_empty() {
                eprintln!(
                    "warning: {} file(s) the store knows were not on the disk (the summary says which): {}",
                    summary.missing.len(),
                    summary.missing.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        CandidateAction::Forget { email, yes } => {
            let address = address(&email)?;
            let p = known(&store, &address)?;
            if let Some(h) = &p.hold {
                return Err(usage(format!(
                    "{address} is held ({}): lift the hold first (`mailroom candidate release {address}`) if the erasure must proceed",
                    h.reason
                )));
            }
            if !yes {
                confirm(&p)?;
            }
            let lock = take_lock(&purger)?;
            block_on(async {
                let shutdown = shutdown_signal();
                let work =
                    purger.forget(&lock, &address, connector(&cfg), "candidate forget", &SystemClock, &shutdown.stop);
                let report = tokio::select! {
                    r = work => r.map_err(|e| match e {
                        PrivacyError::Unknown(_) | PrivacyError::Held { .. } => usage(e),
                        other => other.into(),
                    })?,
                    _ = shutdown.forced => return Ok(ExitCode::from(FORCED_EXIT)),
                };
                println!("erased {address}: {}", describe_totals(&report.totals));
                println!(
                    "a tombstone (a keyed hash of the address, not the address) keeps mail from it from being filed again"
                );
                Ok(finish(&report))
            })?
        }
        CandidateAction::Hold { email, reason } => {
            let address = address(&email)?;
            known(&store, &address)?;
            if reason.trim().is_empty() {
                return Err(usage("--reason must say why (a hire, a dispute); it is shown in `candidate show`"));
            }
            let _lock = take_lock(&purger)?;
            store.set_hold(&address, Some(reason.trim()), now)?;
            store.record_audit("hold", "candidate hold", Some(&store.keyed(&address)?), &serde_json::json!({}), now)?;
            println!("{address} is held: no purge removes them until `mailroom candidate release {address}`");
            Ok(ExitCode::SUCCESS)
        }
        CandidateAction::Release { email } => {
            let address = address(&email)?;
            known(&store, &address)?;
            let _lock = take_lock(&purger)?;
            if !store.set_hold(&address, None, now)? {
                println!("{address} was not held; nothing changed");
                return Ok(ExitCode::SUCCESS);
            }
            store.record_audit(
                "release",
                "candidate release",
                Some(&store.keyed(&address)?),
                &serde_json::json!({}),
                now,
            )?;
            let p = known(&store, &address)?;
            println!("released: their data {}", purger.policy.keep(&p).describe(Lang::En, tz));
            Ok(ExitCode::SUCCESS)
        }
        CandidateAction::Consent { email, withdraw } => {
            let address = address(&email)?;
            known(&store, &address)?;
            let _lock = take_lock(&purger)?;
            let changed = store.set_consent(&address, (!withdraw).then_some(now))?;
            let action = if withdraw { "withdraw" } else { "consent" };
            if changed {
                store.record_audit(
                    action,
                    &format!("candidate consent{}", if withdraw { " --withdraw" } else { "" }),
                    Some(&store.keyed(&address)?),
                    &serde_json::json!({}),
                    now,
                )?;
            }
            let p = known(&store, &address)?;
            let keep = purger.policy.keep(&p).describe(Lang::En, tz);
            match (withdraw, changed) {
                (true, false) => println!("{address} had not consented; nothing changed"),
                (true, true) => println!("consent withdrawn: their data {keep}"),
                (false, _) => println!("consent recorded: their data {keep}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        CandidateAction::Unforget { email } => {
            let address = address(&email)?;
            let hash = store.keyed(&address)?;
            if !store.remove_tombstone(&hash)? {
                return Err(usage(format!("{address} was not erased (no tombstone): mail from it is filed as usual")));
            }
            store.record_audit("unforget", "candidate unforget", Some(&hash), &serde_json::json!({}), now)?;
            println!("mail from {address} is filed again from now on");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Asks the operator to type the address before an erasure.
fn confirm(p: &PersonRow) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(usage("an erasure cannot be undone: confirm it with --yes (for scripts), or run it in a terminal"));
    }
    let folders = p.folders().len();
    eprint!(
        "This erases every copy of {} <{}>: {} application(s) in {folders} folder(s), their messages in the mailbox, \
         the acknowledgements sent to them and every mention in the store. It cannot be undone, and mail from this \
         address will not be filed again.\nType the address to confirm: ",
        p.name,
        p.address,
        p.applications.len()
    );
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("cannot read the confirmation")?;
    if normalise_address(line.trim()) != p.address {
        return Err(usage("not confirmed: nothing was erased"));
    }
    Ok(())
}

/// `mailroom audit`.
pub(crate) fn audit(path: &Path, since: Option<NaiveDate>, json: bool) -> anyhow::Result<ExitCode> {
    let cfg = load_config(path)?;
    let store = open_state(&cfg)?;
    let tz = cfg.identity.timezone();
    let from = match since {
        Some(day) => chrono::TimeZone::from_local_datetime(&tz, &day.and_hms_opt(0, 0, 0).unwrap_or_default())
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| usage(format!("--since {day}: no such local time")))?,
        None => DateTime::<Utc>::UNIX_EPOCH,
    };
    let rows = store.audit_since(from)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("the audit trail is empty");
    }
    for r in &rows {
        let counts = match &r.counts {
            serde_json::Value::Object(map) => map
                .iter()
                .filter(|(_, v)| v.as_u64() != Some(0))
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
            other => other.to_string(),
        };
        println!(
            "{}  {:<9} {:<28} {}{}",
            r.at.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
            r.action,
            r.command,
            r.person.as_deref().map(|h| format!("person={} ", &h[..16.min(h.len())])).unwrap_or_default(),
            counts
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The privacy part of `mailroom status`.
pub(crate) fn status_value(cfg: &Config, store: &Store) -> anyhow::Result<serde_json::Value> {
    let o = store.privacy_overview()?;
    let next = cfg
        .privacy
        .enabled
        .then(|| crate::schedule::Schedule::parse(&cfg.privacy.schedule, cfg.identity.timezone()).ok())
        .flatten()
        .and_then(|s| s.next_after(Utc::now()));
    let mut v = serde_json::to_value(&o)?;
    v["next_purge"] = serde_json::json!(next);
    Ok(v)
}

/// The lines `mailroom status` prints for privacy.
pub(crate) fn status_lines(cfg: &Config, store: &Store) -> anyhow::Result<()> {
    let o = store.privacy_overview()?;
    let tz = cfg.identity.timezone();
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string();
    let v = status_value(cfg, store)?;
    let next: Option<DateTime<Utc>> = serde_json::from_value(v["next_purge"].clone()).unwrap_or(None);
    println!(
        "privacy          {} held, {} consented, {} erased; last purge {}; next {}",
        o.held,
        o.consented,
        o.forgotten,
        o.last_purge.map_or("never".into(), local),
        next.map_or("not scheduled (privacy.enabled = false)".into(), local)
    );
    if o.unfinished_purges > 0 {
        println!(
            "  unfinished     {} purge(s), {} step(s) left{}",
            o.unfinished_purges,
            o.steps_left,
            o.last_error.map(|e| format!(": {e}")).unwrap_or_default()
        );
    }
    Ok(())
}
