//! The command line. The only module that uses `anyhow`: below it, errors are typed.
//!
//! Exit codes: 0 success; 1 the work failed (a server unreachable, a disk error); 2 the
//! configuration or the command line is wrong (systemd is told not to restart on 2).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::{self, CandidateAction, DigestRequest, UsageError};
use crate::config::ConfigError;

const AFTER_HELP: &str = "\
Configuration: a TOML file (default /etc/mailroom/mailroom.toml, or $MAILROOM_CONFIG); any key
can be overridden from the environment as MAILROOM__SECTION__KEY, e.g. MAILROOM__IMAP__PORT=993.
See config/mailroom.example.toml for every key with its default.

Examples:
  mailroom check-config --config ./mailroom.toml
  mailroom check-config --connect   # log in to IMAP and SMTP for real, say what works
  mailroom auth login     # OAuth2 (delegated): sign in once, the daemon renews the tokens
  mailroom once         # file everything new, send acknowledgements, exit
  mailroom run          # keep watching (this is what mailroom.service runs)
  mailroom inspect message.eml --json
  mailroom candidate show jeanne@example.test     # what is on file about one candidate
  mailroom purge --dry-run                         # who the retention policy removes now

Exit codes: 0 ok, 1 the work failed (see the log), 2 bad configuration or usage.";

const PURGE_HELP: &str = "\
Examples:
  mailroom purge --dry-run   # who would go, and why; nothing is removed
  mailroom purge             # do it; exits 1 when a step (the mailbox) must be tried again

The policy is [privacy] in the configuration: retention_months (default 3, from the posting's
closing date or the last application), consent_retention_months (24), quarantine_days (30),
history_days (90), audit_days (365), purge_mailbox (\"delete\", \"move:FOLDER\" or \"keep\").";

const CANDIDATE_HELP: &str = "\
Examples:
  mailroom candidate list
  mailroom candidate show jeanne@example.test
  mailroom candidate export jeanne@example.test --out jeanne.zip --lang fr   # art. 15 and 20
  mailroom candidate forget jeanne@example.test                              # art. 17
  mailroom candidate hold jeanne@example.test --reason \"hired\"
  mailroom candidate release jeanne@example.test
  mailroom candidate consent jeanne@example.test

Answer a request within one month (GDPR art. 12(3)). Each action is recorded in the audit trail
(`mailroom audit`) with a keyed hash of the address, never the address.";

const EXPORT_HELP: &str = "\
Example:
  mailroom candidate export jeanne@example.test --out jeanne.zip --lang fr

The file is created 0600 and never replaces one that exists. The export is recorded in the
audit trail (counts and a keyed hash).";

const HOLD_HELP: &str = "\
Example:
  mailroom candidate hold jeanne@example.test --reason \"hired, contract from 2026-12\"";

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
    ///
    /// SIGHUP (systemctl reload mailroom) reads the configuration and the templates again and puts
    /// them in force between batches, without dropping the IMAP connection. A file or template
    /// with an error is refused (the log and the status line name the key or the file) and the
    /// running configuration stays; settings read only at start ([imap], [smtp], [storage],
    /// identity.from, identity.organisation, [metrics], log.format) keep their values until a
    /// restart, and the reload names them. With [metrics] listen set, GET /metrics serves
    /// Prometheus metrics.
    Run,
    /// Load and validate the configuration, then print it with secrets redacted.
    ///
    /// With --connect, log in for real instead: get a token from the identity provider (OAuth2),
    /// log in to IMAP and select the folders, log in to SMTP (nothing is fetched or sent), and
    /// say what works and what to do about what does not. Exit code 1 if IMAP or SMTP fails.
    CheckConfig {
        /// Log in to IMAP and SMTP with the real credentials.
        #[arg(long)]
        connect: bool,
    },
    /// OAuth2 sign-in: `mailroom auth login` once, for the delegated flows (authorization_code,
    /// device_code); the daemon then renews the tokens by itself.
    Auth {
        #[command(subcommand)]
        command: AuthCommand,
    },
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
    /// Print an acknowledgement rendered with sample data (Jeanne Dupré, a CV and no letter), to
    /// proofread a template.
    ///
    /// TEMPLATE is one of: complete, missing_cv, missing_letter, no_documents, closed, repeat, unsure.
    /// Uses the templates of the configuration (replies.templates_dir) when it can be read,
    /// else the built-in ones.
    Render {
        template: String,
        /// fr or en.
        #[arg(long, default_value = "fr")]
        lang: String,
        /// Print the HTML part instead of the subject and text.
        #[arg(long)]
        html: bool,
    },
    /// Apply the retention policy now: remove every candidate past their period, with every copy
    /// mailroom made (folder, rows, acknowledgements, digests naming them, source messages).
    ///
    /// The daemon does this on privacy.schedule (default daily at 03:00 in identity.timezone); this
    /// is for a person who wants it now. A purge is recorded before it acts and resumes where it
    /// stopped after a crash; running it twice is harmless. Held candidates are never purged, and
    /// a newer application keeps a candidate inside its window. Waits if another process purges.
    #[command(after_help = PURGE_HELP)]
    Purge {
        /// Say who and what would be removed, and why, without removing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Answer a candidate's request (access, erasure) and manage who is kept: list, show, export,
    /// forget, hold, release, consent.
    ///
    /// EMAIL is the candidate's address, as they wrote from (case does not matter). Every command
    /// says clearly when the address is not on file.
    #[command(subcommand, after_help = CANDIDATE_HELP)]
    Candidate(CandidateCommand),
    /// The audit trail: purges, exports, erasures, holds and consents, with their time, command and
    /// counts; a person appears only as a keyed hash, never by name or address.
    Audit {
        /// From this date (YYYY-MM-DD, in identity.timezone). Default: everything kept
        /// (privacy.audit_days).
        #[arg(long)]
        since: Option<chrono::NaiveDate>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
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

#[derive(Debug, Subcommand)]
enum AuthCommand {
    /// Sign in once and store the tokens (mode 0600) in oauth2.token_dir.
    ///
    /// authorization_code: prints an address to open in any browser; after signing in, the
    /// browser comes back to http://localhost:PORT (answered here, if that browser runs on this
    /// machine or reaches it with `ssh -L PORT:localhost:PORT`), or you paste the address it
    /// ended on (the page may not load: the address bar holds the code). device_code: prints a
    /// code to type on the provider's page. Run it as the user the service runs as, or as root
    /// (the token file then takes the owner of its directory).
    Login,
}

#[derive(Debug, Subcommand)]
enum CandidateCommand {
    /// Everyone on file: address, name, postings, applications, and until when they are kept
    /// (or HELD).
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// One candidate: applications, folders, acknowledgements, consent, hold, and the rule that
    /// says until when they are kept.
    Show {
        email: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Everything held about one candidate, as a ZIP for them (GDPR art. 15 and 20): their
    /// documents, original messages, the acknowledgements sent, metadata.json and a readable summary.
    #[command(after_help = EXPORT_HELP)]
    Export {
        email: String,
        /// The ZIP file to write (must not exist).
        #[arg(long)]
        out: PathBuf,
        /// Language of the summary: fr or en.
        #[arg(long, default_value = "fr")]
        lang: String,
    },
    /// Erase one candidate now (GDPR art. 17), mailbox included; asks for confirmation (--yes for
    /// scripts).
    ///
    /// Removes their folders, their rows in the store, the acknowledgements sent to them, the
    /// digests naming them and their messages in the mailbox (always deleted, whatever
    /// privacy.purge_mailbox says). A tombstone, a keyed hash of the address (not the address), keeps mail from it from ever
    /// being filed again (`candidate unforget` lifts it). A held candidate must be released first.
    Forget {
        email: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Exempt a candidate from purges (a hire, a dispute) until released.
    #[command(after_help = HOLD_HELP)]
    Hold {
        email: String,
        /// Why: shown in `candidate show` and the export (not in the audit trail).
        #[arg(long)]
        reason: String,
    },
    /// Lift a hold: the retention rules apply again (the next purge removes a candidate past them).
    Release { email: String },
    /// Record that the candidate agreed to be kept longer (privacy.consent_retention_months from
    /// the last contact); --withdraw when they take it back.
    Consent {
        email: String,
        #[arg(long)]
        withdraw: bool,
    },
    /// Lift an erasure's tombstone, so mail from the address is filed again (the person asked to
    /// apply again).
    Unforget { email: String },
}

pub fn main() -> ExitCode {
    // The PDF text extractor child (see understand::extract): not a command for people, so not
    // in the help, and answered before anything else starts.
    if std::env::args_os().nth(1).is_some_and(|a| a == crate::understand::extract::SUBCOMMAND) {
        let args: Vec<String> = std::env::args_os().skip(2).map(|a| a.to_string_lossy().into_owned()).collect();
        return crate::understand::extract::child_main(&args);
    }
    // Man pages and completions for the Debian package (scripts/deb): hidden like the above.
    if std::env::args_os().nth(1).is_some_and(|a| a == crate::manpages::SUBCOMMAND) {
        return crate::manpages::main(<Cli as clap::CommandFactory>::command());
    }
    crate::understand::extract::running_as_cli();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    if matches!(cli.command, Command::Run | Command::Once) {
        malloc_tunables();
    }
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            let usage = e.downcast_ref::<UsageError>().is_some() || e.downcast_ref::<ConfigError>().is_some();
            eprintln!("mailroom: error: {e:#}");
            if usage { ExitCode::from(2) } else { ExitCode::from(1) }
        }
    }
}

/// glibc's malloc settings for the long jobs (`run`, `once`), set as `GLIBC_TUNABLES`.
///
/// Out of the box glibc raises its mmap threshold each time a large block is freed (up to 32 MiB),
/// so after the first few messages every attachment-sized buffer comes from the heap, and the
/// heap is only ever given back from its top: after a 2,000-message backlog the idle daemon kept
/// about 100 MB. With a fixed 128 KiB threshold every large buffer is mapped and unmapped on its
/// own, a fixed trim threshold gives the top of the heap back, and one arena keeps the blocking
/// threads from each keeping a heap of their own (`scripts/bench-backlog`: 101 MB → 29 MB 60 s
/// after a backlog, peak 137 → 82 MiB; README, "Performance, measured"). And no cache of thread
/// stacks: glibc keeps the stacks of exited threads (up to 40 MiB) for the next thread, each with
/// some 20 kB still resident; after a backlog the idle daemon, down to one thread, kept 15 of
/// them (0.3 MB). Threads are made seldom enough (a batch's workers, the blocking pool after 10 s
/// idle) that mapping a fresh stack costs nothing measurable. And no per-thread cache of freed
/// blocks (tcache): the runtime's thread keeps up to 7 freed blocks of each small size for itself,
/// which `malloc_trim` cannot give back, and each pins a page of the heap: 0.6–0.9 MB after a
/// backlog (RssAnon 4,680–4,812 kB with it, 3,944–3,956 kB without, 4,052–4,204 kB at start). Without
/// it, filing the benchmark's 2,000 applications took no longer (paired runs, `mailroom once`:
/// 0.90 × the wall time, 0.92 × the user time; README, "Memory"), nor with scans being read
/// beside it (9 runs alternating 0, 2 and 7 blocks per size: the same delay within the noise).
const MALLOC_TUNABLES: &str = "glibc.malloc.mmap_threshold=131072:glibc.malloc.trim_threshold=131072:\
                               glibc.malloc.arena_max=1:glibc.pthread.stack_cache_size=0:glibc.malloc.tcache_count=0";

/// glibc reads `GLIBC_TUNABLES` only when a program starts, and setting it takes no unsafe code
/// only for a new program: so the process replaces itself once with the same binary, same
/// arguments, same pid (systemd's `MAINPID` and `NOTIFY_SOCKET` stay right), before any thread
/// exists. A `GLIBC_TUNABLES` already set (by the admin, or by this very step) is left alone; if
/// the exec fails the command runs with glibc's defaults.
fn malloc_tunables() {
    use std::os::unix::process::CommandExt;
    if !cfg!(all(target_os = "linux", target_env = "gnu")) || std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_default();
    let Ok(exe) = std::env::current_exe() else { return };
    // `exec` returns only when it failed; logging is not set up yet, and the defaults still work.
    let _ = std::process::Command::new(exe).arg0(arg0).args(args).env("GLIBC_TUNABLES", MALLOC_TUNABLES).exec();
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = &cli.config;
    match cli.command {
        Command::CheckConfig { connect } => app::check_config(config, connect),
        Command::Auth { command: AuthCommand::Login } => app::auth_login(config),
        Command::Inspect { file, json } => app::inspect(config, &file, json),
        Command::Render { template, lang, html } => app::render(config, &template, &lang, html),
        Command::Status { json } => app::status(config, json),
        Command::Digest { now, dry_run, html, since } => {
            app::digest(config, DigestRequest { now, dry_run, html, since })
        }
        Command::Once => app::once(config),
        Command::Run => app::run(config),
        Command::Purge { dry_run } => app::purge(config, dry_run),
        Command::Audit { since, json } => app::audit(config, since, json),
        Command::Candidate(c) => app::candidate(
            config,
            match c {
                CandidateCommand::List { json } => CandidateAction::List { json },
                CandidateCommand::Show { email, json } => CandidateAction::Show { email, json },
                CandidateCommand::Export { email, out, lang } => CandidateAction::Export { email, out, lang },
                CandidateCommand::Forget { email, yes } => CandidateAction::Forget { email, yes },
                CandidateCommand::Hold { email, reason } => CandidateAction::Hold { email, reason },
                CandidateCommand::Release { email } => CandidateAction::Release { email },
                CandidateCommand::Consent { email, withdraw } => CandidateAction::Consent { email, withdraw },
                CandidateCommand::Unforget { email } => CandidateAction::Unforget { email },
            },
        ),
    }
}
