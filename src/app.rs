//! Wiring: each command of the command line, built from the parts. The only place (with
//! the `cli` module) that uses `anyhow`: below, errors are typed.
//!
//! May: open the store, the transports and the data root, start the runtime and the signal
//! handler, print. Everything a command does to a message, it does through the pipeline and the
//! jobs beside it.

mod privacy;

pub(crate) use privacy::{CandidateAction, audit, candidate, purge};

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::auth::{Auth, AuthPart, AuthRecord};
use crate::config::{Config, ConfigError};
use crate::courier::SmtpCourier;
use crate::digest::Digest;
use crate::lang::Lang;
use crate::mail::ReplyKind;
use crate::mailbox::ImapMailbox;
use crate::outbox::SendReport;
use crate::pipeline::{Pipeline, Report};
use crate::publish::{PublishReport, Publisher, WebDav};
use crate::reply::Replier;
use crate::schedule::{SystemClock, Timer};
use crate::service::{Monitor, Quiet, SystemdMonitor, TerminalProgress};
use crate::store::{AuthStore, DigestStore, Ledger, OutboxStore, PublishStore, Store};
use crate::understand::Rules;

/// A failure the command line maps to exit code 2: the configuration or the command is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub String);

fn usage(e: impl std::fmt::Display) -> anyhow::Error {
    UsageError(e.to_string()).into()
}

pub(crate) fn load_config(path: &Path) -> anyhow::Result<Config> {
    private_files();
    Config::load(path).map_err(|e| in_file(e, path))
}

/// What mailroom writes (documents, messages, metadata.json, the state and its lock) is for its
/// own user: directories 0700, files 0600, as the unit's `UMask=0077` does, also when run by hand
/// under the usual 022. The one place the umask is set: every command that writes loads its
/// configuration first.
fn private_files() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// A configuration error, said with its file (a load error names it already).
fn in_file(e: ConfigError, path: &Path) -> anyhow::Error {
    match e {
        ConfigError::Load { .. } => anyhow::Error::new(e),
        ConfigError::Invalid { .. } => anyhow::Error::new(e).context(format!("configuration {}", path.display())),
    }
}

/// The configuration, or when there is no file at all, a sample (for `inspect` and `render`,
/// which can say something useful without one).
fn config_or_sample(path: &Path) -> anyhow::Result<Config> {
    match Config::load(path) {
        Ok(cfg) => Ok(cfg),
        Err(ConfigError::Load { .. }) if !path.exists() => Ok(Config::sample()),
        Err(e) => Err(in_file(e, path)),
    }
}

/// Runs a command's async part on a one-thread runtime. The CPU and disk work (parsing, hashing,
/// filing, SQLite) runs on the blocking pool, so a second async worker would only cost memory
/// (the idle target is 15 MB).
fn block_on<F: Future>(work: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(4)
        .thread_keep_alive(Duration::from_secs(10))
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let out = rt.block_on(work);
    // A batch still being filed on a blocking thread after a forced stop is not waited for: the
    // store never committed it, so the next start files it again.
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(out)
}

/// The one cancellation path: the first SIGINT or SIGTERM turns `stop` true (every loop stops at
/// its next safe point); a second one resolves `forced`, and the command returns at once.
struct Shutdown {
    stop: watch::Receiver<bool>,
    forced: tokio::sync::oneshot::Receiver<()>,
}

fn shutdown_signal() -> Shutdown {
    let (tx, stop) = watch::channel(false);
    let (force_tx, forced) = tokio::sync::oneshot::channel();
    // Caught from here on (not from the task's first poll): once `run` logs that it is watching,
    // a SIGTERM stops it at a safe point rather than killing it.
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::spawn(async move {
        let mut force_tx = Some(force_tx);
        for n in 0.. {
            #[cfg(unix)]
            let got = tokio::select! {
                r = tokio::signal::ctrl_c() => r.is_ok(),
                r = async { match term.as_mut() { Some(t) => t.recv().await, None => std::future::pending().await } } => r.is_some(),
            };
            #[cfg(not(unix))]
            let got = tokio::signal::ctrl_c().await.is_ok();
            if !got {
                return;
            }
            if n == 0 {
                tracing::info!("stopping at the next safe point (send the signal again to exit at once)");
                let _ = tx.send(true);
            } else if let Some(force) = force_tx.take() {
                let _ = force.send(());
            }
        }
    });
    Shutdown { stop, forced }
}

/// Exit code for a second signal: the conventional 128 + SIGINT.
const FORCED_EXIT: u8 = 130;

fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    let store = Store::open(&cfg.storage.state_path)?;
    let uncertain = store.recover_interrupted()?;
    if uncertain > 0 {
        tracing::warn!(
            count = uncertain,
            "acknowledgements interrupted mid-send by a crash are marked uncertain and not resent"
        );
    }
    std::fs::create_dir_all(&cfg.storage.data_dir)
        .with_context(|| format!("cannot create storage.data_dir {}", cfg.storage.data_dir.display()))?;
    privacy::tighten_permissions(cfg);
    Ok(store)
}

/// The process's credentials, keeping their state in the store.
fn open_auth(cfg: &Config, store: &Store) -> anyhow::Result<Auth> {
    Ok(Auth::from_config(cfg)?.with_journal(Arc::new(store.clone())))
}

fn open_pipeline(cfg: &Config) -> anyhow::Result<Pipeline<Store>> {
    crate::privacy::check_custom_notice(cfg).map_err(|m| usage(format!("replies.privacy_notice: {m}")))?;
    let replier = Replier::new(cfg).map_err(usage)?;
    Ok(Pipeline::new(cfg, replier, open_store(cfg)?))
}

/// Notes in the store which command took it, for `mailroom status`.
fn record_start(store: &Store, command: &str) {
    if let Err(e) = crate::store::Health::record_start(store, command) {
        tracing::warn!(error = %e, "could not record the start in the state");
    }
}

/// The publisher, when `[publish]` is configured.
fn open_publisher(cfg: &Config, store: &Store) -> anyhow::Result<Option<Publisher<Store, WebDav>>> {
    if !cfg.publish.enabled() {
        return Ok(None);
    }
    let backend = WebDav::new(&cfg.publish).map_err(|e| usage(format!("publish: {e}")))?;
    Ok(Some(Publisher::new(store.clone(), backend, &cfg.storage.data_dir, cfg.publish.root_components())))
}

/// `mailroom check-config`, and with `--connect` a real login to IMAP and SMTP.
pub(crate) fn check_config(path: &Path, connect: bool) -> anyhow::Result<ExitCode> {
    let cfg = load_config(path)?;
    Replier::new(&cfg).map_err(usage)?;
    Digest::new(&cfg).map_err(usage)?;
    crate::privacy::check_custom_notice(&cfg)
        .map_err(|m| usage(format!("configuration {}: replies.privacy_notice: {m}", path.display())))?;
    crate::privacy::Exporter::new(&cfg).and_then(|e| e.check()).map_err(usage)?;
    if cfg.privacy.retention_months > 3 {
        eprintln!(
            "warning: privacy.retention_months = {}: the CNIL's recruitment guidance keeps an unsuccessful candidate's \
             data at most 3 months after the process ends, unless they consent",
            cfg.privacy.retention_months
        );
    }
    if cfg.privacy.consent_retention_months > 24 {
        eprintln!(
            "warning: privacy.consent_retention_months = {}: the CNIL's guidance is at most 2 years after the last contact",
            cfg.privacy.consent_retention_months
        );
    }
    if cfg.digest.enabled && cfg.digest_recipients().is_empty() {
        eprintln!("warning: digest.recipients and identity.team are empty: no digest will be sent");
    }
    if !connect {
        println!("{cfg:#?}");
        eprintln!("configuration {} is valid", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("configuration {} is valid; logging in…", path.display());
    let auth = Auth::from_config(&cfg)?;
    let ok = block_on(crate::connect::check(&cfg, &auth))?;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `mailroom auth login`.
pub(crate) fn auth_login(path: &Path) -> anyhow::Result<ExitCode> {
    let cfg = load_config(path)?;
    if cfg.oauth2.is_none() {
        return Err(usage(format!(
            "configuration {}: there is no [oauth2] section, so nothing to sign in for",
            path.display()
        )));
    }
    match block_on(crate::connect::login(&cfg))? {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(crate::auth::login::LoginError::Config(e)) => Err(in_file(e, path)),
        Err(e) => Err(anyhow::anyhow!("sign-in failed: {e}")),
    }
}

/// `mailroom once`.
pub(crate) fn once(path: &Path) -> anyhow::Result<ExitCode> {
    let cfg = load_config(path)?;
    crate::service::init_logging(&cfg);
    block_on(async {
        let pipeline = open_pipeline(&cfg)?;
        record_start(pipeline.store(), "once");
        let auth = open_auth(&cfg, pipeline.store())?;
        let courier = SmtpCourier::with_auth(&cfg, auth.clone())?;
        let publisher = open_publisher(&cfg, pipeline.store())?;
        let shutdown = shutdown_signal();
        let progress = TerminalProgress::if_terminal();
        let monitor: &dyn Monitor = match &progress {
            Some(p) => p,
            None => &Quiet,
        };
        let work = async {
            let (mut report, mut sent) = (Report::default(), SendReport::default());
            for folder in cfg.folders() {
                // A stop while connecting to a server that does not answer ends the command at once.
                let connect =
                    crate::service::unless_stopped(&shutdown.stop, ImapMailbox::connect_with(&cfg, &folder, &auth));
                let Some(mailbox) = connect.await else { break };
                let mut mailbox = mailbox?;
                let (r, s) =
                    crate::daemon::once(&pipeline, &mut mailbox, &courier, monitor, shutdown.stop.clone()).await?;
                crate::mailbox::Mailbox::logout(&mut mailbox).await;
                report.add(r);
                sent.add(s);
            }
            let mut published = PublishReport::default();
            if let Some(publisher) = &publisher {
                publisher.backfill()?;
                publisher.sweep_uploads().await;
                published = publisher.publish_due().await?;
            }
            anyhow::Ok((report, sent, published))
        };
        let (report, sent, published) = tokio::select! {
            r = work => r?,
            _ = shutdown.forced => return Ok(ExitCode::from(FORCED_EXIT)),
        };
        let totals = pipeline.store().totals()?;
        if report.forgotten > 0 {
            eprintln!("{} message(s) from erased addresses were not filed (candidate forget)", report.forgotten);
        }
        println!(
            "fetched {}, filed {}, quarantined {}, duplicates {}; replies queued {}, skipped {}; sent {}, retrying {}, failed {}; outbox waiting {}",
            report.fetched,
            report.filed,
            report.quarantined,
            report.duplicates,
            report.replies_queued,
            report.replies_skipped,
            sent.sent,
            sent.retrying,
            sent.failed,
            totals.outbox_pending
        );
        if publisher.is_some() {
            let status = pipeline.store().publish_status()?;
            let why = match (status.waiting, &status.last_error) {
                (1.., Some(error)) => format!(" (last error: {error})"),
                _ => String::new(),
            };
            println!(
                "published {}, removed {}, retrying {}, failed {}; publish queue waiting {}{why}",
                published.published, published.removed, published.retrying, published.failed, status.waiting
            );
        }
        Ok(ExitCode::SUCCESS)
    })?
}

/// `mailroom run`: the daemon.
pub(crate) fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let cfg = load_config(path)?;
    let log = crate::service::init_logging(&cfg);
    block_on(async {
        let pipeline = open_pipeline(&cfg)?;
        record_start(pipeline.store(), "run");
        let auth = open_auth(&cfg, pipeline.store())?;
        let courier = SmtpCourier::with_auth(&cfg, auth.clone())?;
        let digest = Digest::new(&cfg).map_err(usage)?;
        let metrics = crate::metrics::Endpoint::bind(&cfg).await?;
        let hangups = crate::reload::hangups().context("cannot catch SIGHUP")?;
        let timer = Timer::start().await?;
        let shutdown = shutdown_signal();
        tracing::info!(poll_interval_s = cfg.imap.poll_interval_secs, "watching the mailbox");
        let connectors: Vec<_> = cfg
            .folders()
            .into_iter()
            .map(|folder| {
                let (cfg, auth) = (cfg.clone(), auth.clone());
                move || {
                    let (cfg, folder, auth) = (cfg.clone(), folder.clone(), auth.clone());
                    async move { ImapMailbox::connect_with(&cfg, &folder, &auth).await }
                }
            })
            .collect();
        let monitor = crate::reload::NotedMonitor::new(SystemdMonitor::new());
        let stop = shutdown.stop.clone();
        let poll = Duration::from_secs(cfg.imap.poll_interval_secs);
        let (digest_tx, digest_rx) = watch::channel(Arc::new(digest));
        let reloader = crate::reload::Reloader::new(path, cfg.clone(), &pipeline, digest_tx, log, &monitor);
        let publisher = open_publisher(&cfg, pipeline.store())?;
        let watch =
            crate::daemon::run(&pipeline, connectors, &courier, publisher.as_ref(), poll, &monitor, stop.clone());
        let digests = crate::reload::digest_job(
            digest_rx,
            pipeline.store(),
            pipeline.outbox_ready(),
            &timer,
            &SystemClock,
            stop.clone(),
        );
        let tokens = auth.maintain(stop.clone());
        let purger = privacy::purger(&cfg, pipeline.store());
        let purges = purger.run_scheduled(
            pipeline.store().first_start(),
            &timer,
            &SystemClock,
            {
                let (cfg, auth) = (cfg.clone(), auth.clone());
                move |folder: String| {
                    let (cfg, auth) = (cfg.clone(), auth.clone());
                    async move { ImapMailbox::connect_with(&cfg, &folder, &auth).await }
                }
            },
            shutdown.stop.clone(),
        );
        let reloads = reloader.run(hangups, stop.clone());
        let scrapes = crate::metrics::serve(metrics, pipeline.store().clone(), stop);
        tokio::select! {
            _ = async { tokio::join!(watch, digests, tokens, purges, reloads, scrapes) } => {}
            _ = shutdown.forced => return Ok(ExitCode::from(FORCED_EXIT)),
        }
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })?
}

/// `mailroom inspect`.
pub(crate) fn inspect(config: &Path, file: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let raw = if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).context("cannot read standard input")?;
        buf
    } else {
        std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    // Without a config file, postings and limits take their defaults: inspect still says what it can.
    let cfg = config_or_sample(config)?;
    let replier = Replier::new(&cfg).map_err(usage)?;
    let report = crate::inspect::inspect(&raw, &Rules::from_config(&cfg), &replier);
    let out = if json { serde_json::to_string_pretty(&report)? + "\n" } else { report.text() };
    // `mailroom inspect x.eml | head` closing the pipe early is not a failure.
    match std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("cannot write to standard output"),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// `mailroom render`.
pub(crate) fn render(config: &Path, template: &str, lang: &str, html: bool) -> anyhow::Result<ExitCode> {
    let kind = ReplyKind::parse(template).ok_or_else(|| {
        usage(format!(
            "unknown template {template:?}; one of: {}",
            ReplyKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
        ))
    })?;
    let lang = Lang::parse(lang).ok_or_else(|| {
        usage(format!(
            "unknown language {lang:?}; one of: {}",
            Lang::ALL.iter().map(|l| l.as_str()).collect::<Vec<_>>().join(", ")
        ))
    })?;
    let cfg = config_or_sample(config)?;
    let replier = Replier::new(&cfg).map_err(usage)?;
    let rendered = replier.render(lang, kind, &replier.sample_context(lang)).map_err(usage)?;
    if html {
        print!("{}", rendered.html);
    } else {
        println!("Subject: {}\n\n{}", rendered.subject, rendered.text);
    }
    Ok(ExitCode::SUCCESS)
}

/// `mailroom status`: reads the state and nothing else. It works on a read-only state folder and
/// without the password files (it talks to no server), and says "running" only when a daemon
/// holds the state's lock.
pub(crate) fn status(path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let cfg = Config::load_without_secrets(path).map_err(|e| in_file(e, path))?;
    let state = &cfg.storage.state_path;
    if !state.exists() {
        return Err(usage(format!("no state at {} (storage.state_path): mailroom has not run yet", state.display())));
    }
    let running = Store::in_use(state);
    let store = Store::open_read_only(state)?;
    let snapshot = store.snapshot()?;
    let last_digest = store.last_digest_end()?;
    let next_digest = cfg.digest.enabled.then(|| crate::digest::next_digest(&cfg, last_digest, Utc::now())).flatten();
    let started = store.last_start()?;
    let problems = store.problems()?;
    let auth = store.auth_records()?;
    let publish = store.publish_status()?;
    if json {
        let mut value = serde_json::to_value(&snapshot)?;
        value["digest"] = serde_json::json!({ "last_window_end": last_digest, "next": next_digest });
        value["daemon"] = serde_json::json!({
            "running": running,
            "command": started.as_ref().map(|s| s.command.clone()),
            "pid": started.as_ref().map(|s| s.pid),
            "started_at": started.as_ref().map(|s| s.at),
        });
        value["problems"] = serde_json::to_value(&problems)?;
        value["auth"] = auth_json(&auth);
        value["privacy"] = privacy::status_value(&cfg, &store)?;
        value["publish"] = serde_json::to_value(&publish)?;
        value["publish"]["enabled"] = cfg.publish.enabled().into();
        value["metrics"] = crate::metrics::to_json(&crate::metrics::from_store(&store)?);
        // `mailroom status --json | head` closing the pipe early is not a failure.
        let out = serde_json::to_string_pretty(&value)? + "\n";
        return match std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("cannot write to standard output"),
            _ => Ok(ExitCode::SUCCESS),
        };
    }
    let when = |t: Option<DateTime<Utc>>| match t {
        Some(t) => {
            let ago = (Utc::now() - t).num_seconds().max(0);
            format!("{} ({} ago)", t.format("%Y-%m-%d %H:%M:%S UTC"), human_duration(ago))
        }
        None => "never".into(),
    };
    println!("state            {}", state.display());
    match (&started, running) {
        (Some(s), true) => {
            println!("daemon           running since {} (mailroom {}, pid {})", when(Some(s.at)), s.command, s.pid);
        }
        (None, true) => println!("daemon           running"),
        (Some(s), false) => {
            println!("daemon           not running (last started {}, mailroom {})", when(Some(s.at)), s.command);
        }
        (None, false) => println!("daemon           not running"),
    }
    for p in &problems {
        let then = if running { "" } else { " (when it last ran)" };
        println!("problem{then:<10} {} since {}: {}", p.label, when(Some(p.since)), p.message);
    }
    println!("in use since     {}", snapshot.first_start.format("%Y-%m-%d %H:%M:%S UTC"));
    for m in &snapshot.mailboxes {
        println!("mailbox          {} (uidvalidity {}, up to uid {})", m.name, m.uidvalidity, m.high_water);
        println!("  last contact   {}", when(m.last_contact));
    }
    let t = &snapshot.totals;
    println!(
        "filed            {} today, {} in all (last {})",
        snapshot.filed_today,
        t.filed,
        when(snapshot.last_message)
    );
    println!("quarantined      {}", t.quarantined);
    println!("duplicates       {}", t.duplicates);
    println!(
        "outbox           {} waiting, {} sent, {} failed, {} uncertain",
        t.outbox_pending, t.outbox_sent, t.outbox_failed, t.outbox_uncertain
    );
    for l in auth_lines(&cfg, &auth, Utc::now()) {
        println!("{l}");
    }
    let tz = cfg.identity.timezone();
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string();
    println!(
        "digest           last window ended {}; next {}",
        last_digest.map_or("never".into(), local),
        next_digest.map_or("not scheduled (digest.enabled = false)".into(), local)
    );
    privacy::status_lines(&cfg, &store)?;
    if cfg.publish.enabled() || publish.waiting + publish.done + publish.failed > 0 {
        let oldest = publish.oldest_waiting.map(|t| format!(" (oldest queued {})", when(Some(t)))).unwrap_or_default();
        println!(
            "publish          {} waiting{oldest}, {} done, {} failed{}",
            publish.waiting,
            publish.done,
            publish.failed,
            if cfg.publish.enabled() { "" } else { " (publish.url is not set: nothing is published)" }
        );
        if let Some(error) = &publish.last_error {
            println!("  last error     {error}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `auth: ok`, the refresh token's remaining days, or `failing since T: reason` per part.
fn auth_lines(cfg: &Config, records: &[AuthRecord], now: DateTime<Utc>) -> Vec<String> {
    let mut out = Vec::new();
    let failing: Vec<&AuthRecord> = records.iter().filter(|r| !r.ok).collect();
    if records.is_empty() {
        out.push("auth             not tried yet".to_owned());
    } else if let Some(since) = failing.iter().map(|r| r.since).min() {
        let ago = (now - since).num_seconds().max(0);
        out.push(format!(
            "auth             failing since {} ({} ago)",
            since.format("%Y-%m-%d %H:%M:%S UTC"),
            human_duration(ago)
        ));
        for r in &failing {
            out.push(format!("  {:<14} {}", r.part.label(), r.reason.as_deref().unwrap_or("failing")));
        }
    } else {
        let how: Vec<String> =
            records.iter().map(|r| format!("{} {}", r.part.label(), r.detail.as_deref().unwrap_or(""))).collect();
        out.push(format!("auth             ok ({})", how.join(", ")));
    }
    let warning = cfg.oauth2.as_ref().map_or(14, |o| o.refresh_warning_days);
    if let Some(r) = records.iter().find(|r| r.part == AuthPart::Provider)
        && let (Some(days), Some(at)) = (r.refresh_days_left(now), r.refresh_expires_at)
    {
        let act = if days < i64::from(warning) { ": run `mailroom auth login` before it does" } else { "" };
        out.push(format!("  refresh token  expires in {days} days ({}){act}", at.format("%Y-%m-%d")));
    }
    out
}

fn auth_json(records: &[AuthRecord]) -> serde_json::Value {
    let state = if records.is_empty() {
        "unknown"
    } else if records.iter().any(|r| !r.ok) {
        "failing"
    } else {
        "ok"
    };
    let refresh = records.iter().find(|r| r.part == AuthPart::Provider).and_then(|r| r.refresh_expires_at);
    serde_json::json!({
        "state": state,
        "failing_since": records.iter().filter(|r| !r.ok).map(|r| r.since).min(),
        "refresh_token_expires_at": refresh,
        "refresh_token_days_left": refresh.map(|t| (t - Utc::now()).num_days()),
        "parts": records,
    })
}

fn human_duration(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// What `mailroom digest` was asked to do.
#[derive(Debug)]
pub(crate) struct DigestRequest {
    pub now: bool,
    pub dry_run: bool,
    pub html: Option<PathBuf>,
    pub since: Option<chrono::NaiveDate>,
}

/// `mailroom digest`.
pub(crate) fn digest(path: &Path, req: DigestRequest) -> anyhow::Result<ExitCode> {
    let cfg = load_config(path)?;
    crate::service::init_logging(&cfg);
    if !req.now && !req.dry_run && req.since.is_none() {
        return Err(usage("say what to do: --now (send), --dry-run (print), or --since DATE"));
    }
    let digest = Digest::new(&cfg).map_err(usage)?;
    // Not the daemon's lock: a window is claimed in the store, so this can run beside it.
    let store = Store::open_unlocked(&cfg.storage.state_path)?;
    let end = Utc::now();
    let start = match req.since {
        Some(day) => {
            let local = day.and_hms_opt(0, 0, 0).unwrap_or_default();
            match chrono::TimeZone::from_local_datetime(&cfg.identity.timezone(), &local).earliest() {
                Some(t) => t.with_timezone(&Utc),
                None => return Err(usage(format!("--since {day}: no such local time"))),
            }
        }
        None => store.last_digest_end()?.unwrap_or_else(|| DigestStore::first_start(&store)),
    };
    if req.dry_run {
        let built = digest.build(&store, start, end)?;
        println!("Subject: {}\n\n{}", built.subject, built.text);
        if let Some(path) = req.html {
            std::fs::write(&path, &built.html).with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("HTML part written to {}", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if cfg.digest_recipients().is_empty() {
        return Err(usage("nobody to send the digest to: set digest.recipients or identity.team"));
    }
    let built = if req.since.is_some() {
        // A past window, rebuilt on request: sent, but the stored window does not move.
        let built = digest.build(&store, start, end)?;
        store.queue_mails(&digest.mails(&built, start))?;
        built
    } else {
        match digest.send_window(&store, start, end)? {
            Some(built) => built,
            None => {
                eprintln!("this window was just sent by another process; nothing to do");
                return Ok(ExitCode::SUCCESS);
            }
        }
    };
    // lettre's connection pool starts a task when it is built: inside the runtime.
    let sent = block_on(async {
        let courier = SmtpCourier::with_auth(&cfg, open_auth(&cfg, &store)?)?;
        anyhow::Ok(crate::outbox::send_due(&store, &courier).await?)
    })??;
    let tz = cfg.identity.timezone();
    println!(
        "digest from {} to {}: {} new application(s){}; sent {}, retrying {}, failed {}",
        start.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
        end.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
        built.new_candidates,
        if built.empty { " (an empty window)" } else { "" },
        sent.sent,
        sent.retrying,
        sent.failed
    );
    Ok(ExitCode::SUCCESS)
}
