//! The command line. The only module that uses `anyhow`: below it, errors are typed.
//!
//! Exit codes: 0 success; 1 the work failed (a server unreachable, a disk error); 2 the
//! configuration or the command line is wrong (systemd is told not to restart on 2).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::sync::watch;

use crate::config::{Config, ConfigError};
use crate::courier::SmtpCourier;
use crate::digest::{Digest, DigestStore, SystemClock};
use crate::mailbox::ImapMailbox;
use crate::pipeline::Pipeline;
use crate::reply::Replier;
use crate::service::{Monitor, Quiet, SystemdMonitor};
use crate::store::{Ledger, SqliteLedger};
use crate::understand::{Rules, Understood, understand};

const AFTER_HELP: &str = "\
Configuration: a TOML file (default /etc/mailroom/mailroom.toml, or $MAILROOM_CONFIG); any key
can be overridden from the environment as MAILROOM__SECTION__KEY, e.g. MAILROOM__IMAP__PORT=993.
See config/mailroom.example.toml for every key with its default.

Examples:
  mailroom check-config --config ./mailroom.toml
  mailroom once         # file everything new, send acknowledgements, exit
  mailroom run          # keep watching (this is what mailroom.service runs)
  mailroom inspect message.eml --json

Exit codes: 0 ok, 1 the work failed (see the log), 2 bad configuration or usage.";

#[derive(Debug, Parser)]
#[command(
    name = "mailroom",
    version,
    about = "Files job applications that arrive by email, and acknowledges them.",
    long_about = "mailroom watches a contact mailbox over IMAP, files every application (CV, cover letter, \
                  the original message and a metadata.json) into one folder per candidate, and answers each \
                  candidate with a templated acknowledgement over SMTP. Robots, lists and bounces are never answered.",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Configuration file.
    #[arg(long, short, global = true, env = "MAILROOM_CONFIG", default_value = crate::config::DEFAULT_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Process every message not yet handled, send the acknowledgements, and exit.
    ///
    /// Safe to run again at any time: what was committed is never filed or answered twice.
    Once,
    /// Keep watching the mailbox (every imap.poll_interval_secs) until SIGTERM or Ctrl-C.
    Run,
    /// Load and validate the configuration, then print it with secrets redacted.
    CheckConfig,
    /// Build the team's digest now: send it for the window since the last one (--now), print it
    /// (--dry-run), or rebuild a past window (--since) without moving the stored one.
    ///
    /// The daemon sends it on digest.schedule by itself; this is for a person who wants it now.
    Digest {
        /// Claim the window since the last digest (up to now), queue it and send it.
        #[arg(long, conflicts_with = "dry_run")]
        now: bool,
        /// Print the digest instead of sending it; the stored window does not move.
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: also write the HTML part to this file.
        #[arg(long, requires = "dry_run")]
        html: Option<PathBuf>,
        /// Cover from this date (YYYY-MM-DD, in identity.timezone) to now, without moving the
        /// stored window.
        #[arg(long, conflicts_with = "now")]
        since: Option<chrono::NaiveDate>,
    },
    /// What the daemon has done: mailboxes and their last contact, messages filed today and in
    /// all, quarantined, outbox waiting and failed. Reads the state; safe while the daemon runs.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print an acknowledgement rendered with sample data, to proofread a template.
    ///
    /// TEMPLATE is one of: complete, missing_cv, missing_letter, no_documents, closed, repeat, unsure.
    /// Uses the templates of the configuration (replies.templates_dir) when it can be read,
    /// else the built-in ones.
    Render {
        template: String,
        /// Render with sample data (the only mode for now; kept explicit for later real data).
        #[arg(long, default_value_t = true)]
        sample: bool,
        /// fr or en.
        #[arg(long, default_value = "fr")]
        lang: String,
        /// Print the HTML part instead of the subject and text.
        #[arg(long)]
        html: bool,
    },
    /// Show what mailroom understands of one message, without filing or sending anything.
    Inspect {
        /// The message (.eml), or - for standard input.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// A failure the CLI maps to exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

pub fn main() -> ExitCode {
    // The PDF text extractor child (see understand::extract): not a command for people, so not
    // in the help, and answered before anything else starts.
    if std::env::args_os().nth(1).is_some_and(|a| a == crate::understand::extract::SUBCOMMAND) {
        let args: Vec<String> = std::env::args_os().skip(2).map(|a| a.to_string_lossy().into_owned()).collect();
        return crate::understand::extract::child_main(&args);
    }
    crate::understand::extract::running_as_cli();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            let usage = e.downcast_ref::<UsageError>().is_some() || e.downcast_ref::<ConfigError>().is_some();
            eprintln!("mailroom: error: {e:#}");
            if usage { ExitCode::from(2) } else { ExitCode::from(1) }
        }
    }
}

fn load_config(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| anyhow::Error::new(e).context(format!("configuration {}", path.display())))
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::CheckConfig => {
            let cfg = load_config(&cli.config)?;
            Replier::new(&cfg).map_err(|e| UsageError(e.to_string()))?;
            Digest::new(&cfg).map_err(|e| UsageError(e.to_string()))?;
            if cfg.digest.enabled && cfg.digest_recipients().is_empty() {
                eprintln!("warning: digest.recipients and identity.team are empty: no digest will be sent");
            }
            println!("{cfg:#?}");
            eprintln!("configuration {} is valid", cli.config.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect { file, json } => inspect(&cli.config, &file, json),
        Command::Render { template, sample: _, lang, html } => render(&cli.config, &template, &lang, html),
        Command::Status { json } => status(&load_config(&cli.config)?, json),
        Command::Digest { now, dry_run, html, since } => {
            let cfg = load_config(&cli.config)?;
            crate::service::init_logging(&cfg);
            runtime()?.block_on(digest(cfg, now, dry_run, html, since))
        }
        Command::Once => {
            let cfg = load_config(&cli.config)?;
            crate::service::init_logging(&cfg);
            runtime()?.block_on(once(cfg))
        }
        Command::Run => {
            let cfg = load_config(&cli.config)?;
            crate::service::init_logging(&cfg);
            runtime()?.block_on(run(cfg))
        }
    }
}

/// One thread for the network: the CPU and disk work (parsing, hashing, filing, SQLite) runs on
/// the blocking pool, so a second async worker would only cost memory (the idle target is 15 MB).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(4)
        .thread_keep_alive(Duration::from_secs(10))
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The one cancellation path: SIGINT or SIGTERM turns the watch to true; a second one exits at once.
fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
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
            } else {
                std::process::exit(130);
            }
        }
    });
    rx
}

fn open_pipeline(cfg: &Config) -> anyhow::Result<Pipeline<SqliteLedger>> {
    let replier = Replier::new(cfg).map_err(|e| UsageError(e.to_string()))?;
    let mut ledger = SqliteLedger::open(&cfg.storage.state_path)?;
    let uncertain = ledger.recover_interrupted()?;
    if uncertain > 0 {
        tracing::warn!(
            count = uncertain,
            "acknowledgements interrupted mid-send by a crash are marked uncertain and not resent"
        );
    }
    std::fs::create_dir_all(&cfg.storage.data_dir)
        .with_context(|| format!("cannot create storage.data_dir {}", cfg.storage.data_dir.display()))?;
    Ok(Pipeline::new(cfg, replier, ledger))
}

async fn once(cfg: Config) -> anyhow::Result<ExitCode> {
    let pipeline = open_pipeline(&cfg)?;
    let courier = SmtpCourier::new(&cfg)?;
    let stop = shutdown_signal();
    let progress = crate::service::TerminalProgress::if_terminal();
    let monitor: &dyn Monitor = match &progress {
        Some(p) => p,
        None => &Quiet,
    };
    let (mut report, mut sent) = (crate::pipeline::Report::default(), crate::courier::SendReport::default());
    for folder in cfg.folders() {
        let mut mailbox = ImapMailbox::connect(&cfg, &folder).await?;
        let (r, s) = pipeline.once(&mut mailbox, &courier, monitor, stop.clone()).await?;
        crate::mailbox::Mailbox::logout(&mut mailbox).await;
        report.add(r);
        sent.add(s);
    }
    let totals = crate::courier::lock(pipeline.ledger()).totals()?;
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
    Ok(ExitCode::SUCCESS)
}

async fn run(cfg: Config) -> anyhow::Result<ExitCode> {
    let pipeline = open_pipeline(&cfg)?;
    let courier = SmtpCourier::new(&cfg)?;
    let stop = shutdown_signal();
    tracing::info!(poll_interval_s = cfg.imap.poll_interval_secs, "watching the mailbox");
    let connectors: Vec<_> = cfg
        .folders()
        .into_iter()
        .map(|folder| {
            let cfg = cfg.clone();
            move || {
                let (cfg, folder) = (cfg.clone(), folder.clone());
                async move { ImapMailbox::connect(&cfg, &folder).await }
            }
        })
        .collect();
    let digest = Digest::new(&cfg).map_err(|e| UsageError(e.to_string()))?;
    let monitor = SystemdMonitor::new();
    let watch =
        pipeline.run(connectors, &courier, Duration::from_secs(cfg.imap.poll_interval_secs), &monitor, stop.clone());
    let digests = digest.run(pipeline.ledger(), pipeline.outbox_ready(), &SystemClock, stop);
    tokio::join!(watch, digests);
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// JSON shape of `mailroom inspect --json`.
#[derive(serde::Serialize)]
struct Inspection {
    outcome: &'static str,
    reason: Option<String>,
    sha256: String,
    message_id: Option<String>,
    candidate: Option<crate::understand::Candidate>,
    posting: Option<crate::understand::PostingRef>,
    documents: Vec<InspectedDocument>,
    missing: Vec<crate::understand::DocKind>,
    /// Kinds not found that an `unknown` document may be.
    unsure: Vec<crate::understand::DocKind>,
    reply: String,
}

/// One part as `inspect` shows it: what understand decided, and the name filing would give it.
#[derive(serde::Serialize)]
struct InspectedDocument {
    kind: crate::understand::DocKind,
    /// The name in the candidate folder (as filed into a folder with nothing in it yet); `None`
    /// for ignored parts, which are not filed.
    filename: Option<String>,
    original_name: Option<String>,
    content_type: String,
    size: u64,
    sha256: String,
    confidence: f32,
    /// Which reader decided the kind: name, part, container, text, OCR, body, or nothing.
    decided_by: crate::understand::Reader,
    reason: String,
    also_cover_letter: bool,
}

fn inspect(config: &Path, file: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let raw = if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).context("cannot read standard input")?;
        buf
    } else {
        std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    // Without a config, postings and limits take their defaults: inspect still says what it can.
    let rules = match Config::load(config) {
        Ok(cfg) => Rules::from_config(&cfg),
        Err(ConfigError::Load { .. }) if !config.exists() => Rules {
            postings: Vec::new(),
            limits: Default::default(),
            default_language: "fr".into(),
            own_addresses: Vec::new(),
            text: crate::understand::extract::TextReader::locate(),
        },
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("configuration {}", config.display())));
        }
    };
    let report = match understand(&raw, None, &rules) {
        Understood::Quarantine(q) => Inspection {
            outcome: "quarantined",
            reason: Some(q.reason),
            sha256: q.sha256,
            message_id: q.message_id,
            candidate: None,
            posting: None,
            documents: Vec::new(),
            missing: Vec::new(),
            unsure: Vec::new(),
            reply: "none: quarantined".into(),
        },
        Understood::Application(app) => {
            let reply = match &app.automated {
                Some(why) => format!("none: {why}"),
                None if !app.unsure.is_empty() => format!(
                    "acknowledgement: unsure (the team will check; not found: {})",
                    app.unsure.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
                ),
                None if app.missing.is_empty() => "acknowledgement: complete".into(),
                None => format!(
                    "acknowledgement: missing {}",
                    app.missing.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
                ),
            };
            let names = crate::filing::planned_names(&app);
            let app = *app;
            let documents = app
                .documents
                .into_iter()
                .zip(names)
                .map(|(d, filename)| InspectedDocument {
                    kind: d.kind,
                    filename,
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
                sha256: app.sha256,
                message_id: app.message_id,
                candidate: Some(app.candidate),
                posting: Some(app.posting),
                missing: app.missing,
                unsure: app.unsure,
                documents,
                reply,
            }
        }
    };
    use std::fmt::Write as _;
    let mut out = String::new();
    if json {
        out = serde_json::to_string_pretty(&report)?;
        out.push('\n');
    } else {
        let reason = report.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
        writeln!(out, "outcome:   {}{reason}", report.outcome)?;
        if let Some(c) = &report.candidate {
            writeln!(out, "candidate: {} <{}>", c.display(), c.email)?;
        }
        if let Some(p) = &report.posting {
            writeln!(out, "posting:   {} [{}] ({})", p.title, p.slug, p.matched_by)?;
        }
        for d in &report.documents {
            let from =
                d.original_name.as_deref().map(|n| format!("{n:?}")).unwrap_or_else(|| "the message body".into());
            let filed = d.filename.as_deref().unwrap_or("(not filed)");
            writeln!(out, "document:  {:<12} {filed} ← {from} ({} bytes)", d.kind.as_str(), d.size)?;
            writeln!(out, "           by {}, {:.0}%: {}", d.decided_by.as_str(), d.confidence * 100.0, d.reason)?;
        }
        if !report.missing.is_empty() {
            let missing = report.missing.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ");
            writeln!(out, "missing:   {missing}")?;
        }
        if !report.unsure.is_empty() {
            let unsure = report.unsure.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ");
            writeln!(out, "unsure:    {unsure} (not found, but a document could not be told apart)")?;
        }
        writeln!(out, "reply:     {}", report.reply)?;
    }
    // `mailroom inspect x.eml | head` closing the pipe early is not a failure.
    match std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("cannot write to standard output"),
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn status(cfg: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let path = &cfg.storage.state_path;
    if !path.exists() {
        return Err(UsageError(format!(
            "no state at {} (storage.state_path): mailroom has not run yet",
            path.display()
        ))
        .into());
    }
    let store = SqliteLedger::open_unlocked(path)?;
    let snapshot = store.snapshot()?;
    let last_digest = store.last_digest_end()?;
    let next_digest =
        cfg.digest.enabled.then(|| crate::digest::next_digest(cfg, last_digest, chrono::Utc::now())).flatten();
    if json {
        let mut value = serde_json::to_value(&snapshot)?;
        value["digest"] = serde_json::json!({ "last_window_end": last_digest, "next": next_digest });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    let when = |t: Option<chrono::DateTime<chrono::Utc>>| match t {
        Some(t) => {
            let ago = (chrono::Utc::now() - t).num_seconds().max(0);
            format!("{} ({} ago)", t.format("%Y-%m-%d %H:%M:%S UTC"), human_duration(ago))
        }
        None => "never".into(),
    };
    println!("state            {}", path.display());
    println!("running since    {}", cfg_time(snapshot.first_start));
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
    let tz = cfg.identity.timezone();
    let local = |t: chrono::DateTime<chrono::Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string();
    println!(
        "digest           last window ended {}; next {}",
        last_digest.map_or("never".into(), local),
        next_digest.map_or("not scheduled (digest.enabled = false)".into(), local)
    );
    Ok(ExitCode::SUCCESS)
}

fn cfg_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn human_duration(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

fn render(config: &Path, template: &str, lang: &str, html: bool) -> anyhow::Result<ExitCode> {
    use crate::reply::ReplyKind;
    let kind = ReplyKind::parse(template).ok_or_else(|| {
        UsageError(format!(
            "unknown template {template:?}; one of: {}",
            ReplyKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
        ))
    })?;
    if !crate::config::LANGUAGES.contains(&lang) {
        return Err(
            UsageError(format!("unknown language {lang:?}; one of: {}", crate::config::LANGUAGES.join(", "))).into()
        );
    }
    let cfg = match Config::load(config) {
        Ok(cfg) => cfg,
        Err(ConfigError::Load { .. }) if !config.exists() => sample_config(),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("configuration {}", config.display()))),
    };
    let replier = Replier::new(&cfg).map_err(|e| UsageError(e.to_string()))?;
    let rendered = replier.render(lang, kind, &replier.sample_context(lang)).map_err(|e| UsageError(e.to_string()))?;
    if html {
        print!("{}", rendered.html);
    } else {
        println!("Subject: {}\n\n{}", rendered.subject, rendered.text);
    }
    Ok(ExitCode::SUCCESS)
}

/// Enough of a configuration to render templates when there is none.
fn sample_config() -> Config {
    let toml = r#"
[imap]
host = "imap.example.test"
username = "contact@example.test"
password = "-"
[smtp]
host = "smtp.example.test"
username = "contact@example.test"
password = "-"
[identity]
from = "contact@example.test"
organisation = "La 27e Région"
"#;
    Config::from_toml(toml, Path::new("."), std::iter::empty()).expect("the sample configuration is valid")
}

async fn digest(
    cfg: Config,
    now: bool,
    dry_run: bool,
    html: Option<PathBuf>,
    since: Option<chrono::NaiveDate>,
) -> anyhow::Result<ExitCode> {
    if !now && !dry_run && since.is_none() {
        return Err(UsageError("say what to do: --now (send), --dry-run (print), or --since DATE".into()).into());
    }
    let digest = Digest::new(&cfg).map_err(|e| UsageError(e.to_string()))?;
    // Not the daemon's lock: a window is claimed in the store, so this can run beside it.
    let mut store = SqliteLedger::open_unlocked(&cfg.storage.state_path)?;
    let end = chrono::Utc::now();
    let start = match since {
        Some(day) => {
            let local = day.and_hms_opt(0, 0, 0).unwrap_or_default();
            match chrono::TimeZone::from_local_datetime(&cfg.identity.timezone(), &local).earliest() {
                Some(t) => t.with_timezone(&chrono::Utc),
                None => return Err(UsageError(format!("--since {day}: no such local time")).into()),
            }
        }
        None => store.last_digest_end()?.unwrap_or_else(|| DigestStore::first_start(&store)),
    };
    if dry_run {
        let built = digest.build(&store, start, end)?;
        println!("Subject: {}\n\n{}", built.subject, built.text);
        if let Some(path) = html {
            std::fs::write(&path, &built.html).with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("HTML part written to {}", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if cfg.digest_recipients().is_empty() {
        return Err(UsageError("nobody to send the digest to: set digest.recipients or identity.team".into()).into());
    }
    let built = if since.is_some() {
        // A past window, rebuilt on request: sent, but the stored window does not move.
        let built = digest.build(&store, start, end)?;
        store.queue_mails(&digest.mails(&built, start))?;
        built
    } else {
        match digest.send_window(&mut store, start, end)? {
            Some(built) => built,
            None => {
                eprintln!("this window was just sent by another process; nothing to do");
                return Ok(ExitCode::SUCCESS);
            }
        }
    };
    let ledger = std::sync::Arc::new(std::sync::Mutex::new(store));
    let courier = SmtpCourier::new(&cfg)?;
    let sent = crate::courier::send_due(&ledger, &courier).await?;
    println!(
        "digest from {} to {}: {} new application(s){}; sent {}, retrying {}, failed {}",
        start.with_timezone(&cfg.identity.timezone()).format("%Y-%m-%d %H:%M"),
        end.with_timezone(&cfg.identity.timezone()).format("%Y-%m-%d %H:%M"),
        built.new_candidates,
        if built.empty { " (an empty window)" } else { "" },
        sent.sent,
        sent.retrying,
        sent.failed
    );
    Ok(ExitCode::SUCCESS)
}
