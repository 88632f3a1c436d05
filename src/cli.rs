//! The command line. The only module that uses `anyhow`: below it, errors are typed.
//!
//! Exit codes: 0 success; 1 the work failed (a server unreachable, a disk error); 2 the
//! configuration or the command line is wrong (systemd is told not to restart on 2).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::{self, DigestRequest, UsageError};
use crate::config::ConfigError;

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
    /// Print an acknowledgement rendered with sample data (Jeanne Dupré, a CV and no letter), to
    /// proofread a template.
    ///
    /// TEMPLATE is one of: complete, missing_cv, missing_letter, no_documents, closed, repeat.
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
    /// Show what mailroom understands of one message, without filing or sending anything.
    Inspect {
        /// The message (.eml), or - for standard input.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
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
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            let usage = e.downcast_ref::<UsageError>().is_some() || e.downcast_ref::<ConfigError>().is_some();
            eprintln!("mailroom: error: {e:#}");
            if usage { ExitCode::from(2) } else { ExitCode::from(1) }
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = &cli.config;
    match cli.command {
        Command::CheckConfig => app::check_config(config),
        Command::Inspect { file, json } => app::inspect(config, &file, json),
        Command::Render { template, lang, html } => app::render(config, &template, &lang, html),
        Command::Status { json } => app::status(config, json),
        Command::Digest { now, dry_run, html, since } => {
            app::digest(config, DigestRequest { now, dry_run, html, since })
        }
        Command::Once => app::once(config),
        Command::Run => app::run(config),
    }
}
