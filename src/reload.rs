//! `systemctl reload mailroom` (SIGHUP to `mailroom run`): the configuration file and the
//! templates are read again and put in force without dropping the IMAP sessions or the outbox.
//!
//! **What a reload replaces**, all or nothing: how messages are understood and answered (the
//! pipeline's [`Rulebook`]: postings, `limits`, `replies`, the templates), the digest (schedule,
//! recipients, language, templates; [`digest_job`] restarts it with the new one), the team and
//! the time zone (`identity.team`, `identity.timezone`), and `log.level`. Everything is built and
//! checked from the new file first (templates compiled and rendered on samples, as at start); only
//! then is anything swapped. The pipeline takes its rulebook once per batch, so the batch in hand
//! finishes with the old one and the next starts with the new one: no message is lost or answered
//! twice, and the mailbox connections never notice.
//!
//! **What needs a restart** (read once at start): `storage.*`, `imap.*`, `smtp.*`,
//! `identity.from` and `identity.organisation` (the sender the SMTP transport was built with),
//! `metrics.listen` and `log.format`, and any setting outside the reloadable ones. A reload that
//! changes them says so (log and status line), names the keys, applies the rest, and keeps their
//! running values until the next restart.
//!
//! **A bad file or template** is rejected whole: the log and the status line name the key or the
//! file and line, and the running configuration stays in force.
//!
//! systemd hears `RELOADING=1` (with `MONOTONIC_USEC`) before and `READY=1` after, and the status
//! line keeps the outcome of the last reload until the next one.
//!
//! May: read the configuration file and the templates, swap the parts above, talk to the service
//! manager through [`Monitor`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use tokio::sync::{Notify, watch};

use crate::config::{Config, ConfigError};
use crate::digest::Digest;
use crate::gauges;
use crate::pipeline::{Pipeline, Rulebook};
use crate::reply::Replier;
use crate::schedule::{Clock, Timer};
use crate::service::{LogControl, Monitor};
use crate::store::{DigestStore, Ledger, PrivacyStore};
use crate::understand::Rules;

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// The new configuration is in force. `changed`: the reloadable settings that differ (the
    /// templates are read again either way).
    Applied { changed: Vec<&'static str> },
    /// In force, except `keys`: they keep their running values until a restart.
    RestartNeeded { changed: Vec<&'static str>, keys: Vec<&'static str> },
    /// Nothing changed: the file or a template is wrong (`error` names the key or the file).
    Rejected { error: String },
}

/// The running configuration with the reloadable settings of `new`: everything else keeps its
/// running value, including settings this module does not know about.
pub fn reloadable_from(running: &Config, new: &Config) -> Config {
    let mut next = running.clone();
    next.replies = new.replies.clone();
    next.limits = new.limits.clone();
    next.digest = new.digest.clone();
    next.postings = new.postings.clone();
    next.identity.team = new.identity.team.clone();
    next.identity.timezone = new.identity.timezone.clone();
    next.log.level = new.log.level.clone();
    next
}

/// The reloadable settings that differ between two configurations.
pub fn changed_settings(old: &Config, new: &Config) -> Vec<&'static str> {
    let differs = |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    [
        ("replies", differs(&old.replies, &new.replies)),
        ("limits", differs(&old.limits, &new.limits)),
        ("digest", differs(&old.digest, &new.digest)),
        ("postings", differs(&old.postings, &new.postings)),
        ("identity.team", old.identity.team != new.identity.team),
        ("identity.timezone", old.identity.timezone != new.identity.timezone),
        ("log.level", old.log.level != new.log.level),
    ]
    .into_iter()
    .filter_map(|(name, d)| d.then_some(name))
    .collect()
}

/// The settings read only at start whose value in `asked` differs from the one in force.
pub fn restart_keys(asked: &Config, in_force: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut check = |key: &'static str, differs: bool| {
        if differs {
            keys.push(key);
        }
    };
    let (s, r) = (&asked.storage, &in_force.storage);
    check("storage.data_dir", s.data_dir != r.data_dir);
    check("storage.state_path", s.state_path != r.state_path);
    let (a, b) = (&asked.imap, &in_force.imap);
    check("imap.host", a.host != b.host);
    check("imap.port", a.port != b.port);
    check("imap.tls", a.tls != b.tls);
    check("imap.username", a.username != b.username);
    check("imap.password", a.password != b.password);
    check("imap.password_file", a.password_file != b.password_file);
    check("imap.ca_file", a.ca_file != b.ca_file);
    check("imap.folder", a.folder != b.folder);
    check("imap.also_watch", a.also_watch != b.also_watch);
    check("imap.filed_keyword", a.filed_keyword != b.filed_keyword);
    check("imap.idle", a.idle != b.idle);
    check("imap.poll_interval_secs", a.poll_interval_secs != b.poll_interval_secs);
    check("imap.timeout_secs", a.timeout_secs != b.timeout_secs);
    check("imap.batch_messages", a.batch_messages != b.batch_messages);
    check("imap.batch_bytes", a.batch_bytes != b.batch_bytes);
    let (a, b) = (&asked.smtp, &in_force.smtp);
    check("smtp.host", a.host != b.host);
    check("smtp.port", a.port != b.port);
    check("smtp.tls", a.tls != b.tls);
    check("smtp.username", a.username != b.username);
    check("smtp.password", a.password != b.password);
    check("smtp.password_file", a.password_file != b.password_file);
    check("smtp.ca_file", a.ca_file != b.ca_file);
    check("smtp.timeout_secs", a.timeout_secs != b.timeout_secs);
    check("identity.from", asked.identity.from != in_force.identity.from);
    check("identity.organisation", asked.identity.organisation != in_force.identity.organisation);
    check("metrics.listen", asked.metrics.listen != in_force.metrics.listen);
    check("log.format", asked.log.format != in_force.log.format);
    // A setting added to the configuration later, and not named above, is still noticed.
    if keys.is_empty() && format!("{asked:?}") != format!("{in_force:?}") {
        keys.push("a setting read only at start");
    }
    keys
}

/// The service monitor, with the outcome of the last reload appended to every status line, so
/// `systemctl status` shows a rejected reload or a pending restart until the next reload.
pub struct NotedMonitor {
    inner: Box<dyn Monitor>,
    last: Mutex<String>,
    note: Mutex<Option<String>>,
}

impl NotedMonitor {
    pub fn new(inner: impl Monitor + 'static) -> NotedMonitor {
        NotedMonitor { inner: Box::new(inner), last: Mutex::new(String::new()), note: Mutex::new(None) }
    }

    /// Replaces the note and says the status line again with it.
    fn note(&self, note: String) {
        *self.note.lock().unwrap_or_else(|p| p.into_inner()) = Some(note);
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
        self.status(&last);
    }
}

impl Monitor for NotedMonitor {
    crate::service::forward_monitor!(inner; ready);
    fn status(&self, line: &str) {
        line.clone_into(&mut self.last.lock().unwrap_or_else(|p| p.into_inner()));
        match self.note.lock().unwrap_or_else(|p| p.into_inner()).as_deref() {
            Some(note) if line.is_empty() => self.inner.status(note),
            Some(note) => self.inner.status(&format!("{line}; {note}")),
            None => self.inner.status(line),
        }
    }
    crate::service::forward_monitor!(inner; watchdog_interval, watchdog, stopping, progress, reloading);
}

const RELOADS: &str = "mailroom_config_reloads_total";
const RELOADS_HELP: &str = "Configuration reloads (SIGHUP) by result: applied, restart_needed (applied except settings read at start), rejected.";
const LAST_OK: &str = "mailroom_config_last_reload_successful";
const LAST_OK_HELP: &str = "Whether the last reload was applied (1) or rejected (0).";
const LAST_OK_AT: &str = "mailroom_config_last_reload_success_timestamp_seconds";
const LAST_OK_AT_HELP: &str =
    "When the configuration in force was last read (start or reload), seconds since the epoch.";

/// Reloads the configuration of a running daemon on request.
pub struct Reloader<'a, L: Ledger> {
    path: PathBuf,
    running: Config,
    pipeline: &'a Pipeline<L>,
    digest: watch::Sender<Arc<Digest>>,
    log: Option<LogControl>,
    monitor: &'a NotedMonitor,
}

impl<'a, L: Ledger> Reloader<'a, L> {
    /// `running`: the configuration the daemon started with, read from `path`.
    pub fn new(
        path: &Path,
        running: Config,
        pipeline: &'a Pipeline<L>,
        digest: watch::Sender<Arc<Digest>>,
        log: Option<LogControl>,
        monitor: &'a NotedMonitor,
    ) -> Reloader<'a, L> {
        let now = Utc::now();
        gauges::set(
            "mailroom_start_timestamp_seconds",
            "When the daemon started (seconds since the epoch).",
            &[],
            gauges::epoch_seconds(now),
        );
        gauges::set(LAST_OK, LAST_OK_HELP, &[], 1.0);
        gauges::set(LAST_OK_AT, LAST_OK_AT_HELP, &[], gauges::epoch_seconds(now));
        Reloader { path: path.to_owned(), running, pipeline, digest, log, monitor }
    }

    /// The configuration in force.
    pub fn running(&self) -> &Config {
        &self.running
    }

    /// One reload, reported to systemd, the log, the status line and the metrics.
    pub fn reload(&mut self) -> Reloaded {
        self.monitor.reloading();
        tracing::info!("reloading the configuration and the templates");
        let outcome = self.try_reload();
        let tz = self.running.identity.timezone();
        let at = Utc::now().with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z");
        let shown =
            |changed: &[&str]| if changed.is_empty() { "templates read again".to_owned() } else { changed.join(", ") };
        match &outcome {
            Reloaded::Applied { changed } => {
                tracing::info!(changed = %shown(changed), "configuration reloaded");
                self.monitor.note(format!("configuration reloaded {at}"));
            }
            Reloaded::RestartNeeded { changed, keys } => {
                let keys = keys.join(", ");
                tracing::warn!(
                    changed = %shown(changed),
                    restart_needed = %keys,
                    "configuration reloaded, except settings read only at start: they keep their running values until `systemctl restart mailroom`"
                );
                self.monitor.note(format!("reloaded {at}, but a restart is needed to apply {keys}"));
            }
            Reloaded::Rejected { error } => {
                tracing::error!(error = %error, "reload rejected; the running configuration stays in force");
                self.monitor.note(format!("reload rejected {at}: {error}; running with the previous configuration"));
            }
        }
        let (result, ok) = match &outcome {
            Reloaded::Applied { .. } => ("applied", true),
            Reloaded::RestartNeeded { .. } => ("restart_needed", true),
            Reloaded::Rejected { .. } => ("rejected", false),
        };
        gauges::increment(RELOADS, RELOADS_HELP, &[("result", result)]);
        gauges::set(LAST_OK, LAST_OK_HELP, &[], if ok { 1.0 } else { 0.0 });
        if ok {
            gauges::set(LAST_OK_AT, LAST_OK_AT_HELP, &[], gauges::epoch_seconds(Utc::now()));
        }
        self.monitor.ready();
        outcome
    }

    /// Builds everything from the file, then swaps; nothing is swapped when anything fails.
    fn try_reload(&mut self) -> Reloaded {
        let rejected = |error: String| Reloaded::Rejected { error };
        let asked = match Config::load(&self.path) {
            Ok(c) => c,
            Err(e @ ConfigError::Load { .. }) => return rejected(e.to_string()),
            Err(e) => return rejected(format!("configuration {}: {e}", self.path.display())),
        };
        let next = reloadable_from(&self.running, &asked);
        if let Err(e) = next.validate() {
            return rejected(format!("configuration {}: {e}", self.path.display()));
        }
        let replier = match Replier::new(&next) {
            Ok(r) => r,
            Err(e) => return rejected(e.to_string()),
        };
        let digest = match Digest::new(&next) {
            Ok(d) => d,
            Err(e) => return rejected(e.to_string()),
        };
        let level_changed = next.log.level != self.running.log.level;
        if level_changed && let Err(e) = LogControl::check_level(&next.log.level) {
            return rejected(format!("configuration {}: log.level: {e}", self.path.display()));
        }
        // Everything is built: from here nothing can fail.
        let changed = changed_settings(&self.running, &next);
        let keys = restart_keys(&asked, &next);
        self.pipeline.replace_rulebook(Rulebook { rules: Rules::from_config(&next), replier });
        self.digest.send_replace(Arc::new(digest));
        if level_changed
            && let Some(log) = &self.log
            && let Err(e) = log.set_level(&next.log.level)
        {
            tracing::warn!(error = %e, "log.level could not be changed");
        }
        self.running = next;
        if keys.is_empty() { Reloaded::Applied { changed } } else { Reloaded::RestartNeeded { changed, keys } }
    }

    /// Reloads at every SIGHUP until `stop` turns true. The handler is installed by [`hangups`]
    /// before the daemon says READY=1: a SIGHUP that came before it would end the process.
    pub async fn run(mut self, mut hangups: tokio::signal::unix::Signal, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            tokio::select! {
                got = hangups.recv() => match got {
                    Some(()) => { self.reload(); }
                    None => return,
                },
                _ = stop.changed() => {}
            }
        }
    }
}

/// Catches SIGHUP from now on (its default action would end the process).
pub fn hangups() -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
}

/// The digest job with the digest in force: started again with the new one after each reload.
/// Starting again sends nothing twice: its catch-up only claims a window a firing has passed for,
/// and a window is claimed once, in the store.
pub async fn digest_job<S: DigestStore + PrivacyStore>(
    mut current: watch::Receiver<Arc<Digest>>,
    store: &S,
    ready: &Notify,
    timer: &Timer,
    clock: &dyn Clock,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let digest = Arc::clone(&current.borrow_and_update());
        let replaced = tokio::select! {
            _ = digest.run(store, ready, timer, clock, stop.clone()) => {
                // It ended by itself: a stop, or nothing to do (disabled, nobody to send to)
                // until a reload says otherwise.
                if *stop.borrow() {
                    return;
                }
                tokio::select! {
                    r = current.changed() => r.is_ok(),
                    _ = stop.changed() => false,
                }
            }
            r = current.changed() => r.is_ok(),
        };
        if !replaced || *stop.borrow() {
            return;
        }
        tracing::debug!("digest: the reloaded schedule and templates are in force");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[imap]
host = "imap.example.test"
username = "contact@example.test"
password = "pw"
[smtp]
host = "smtp.example.test"
username = "contact@example.test"
password = "pw"
[identity]
from = "contact@example.test"
organisation = "Example"
[storage]
data_dir = "data"
state_path = "state.sqlite3"
"#;

    fn cfg(extra: &str, edit: &[(&str, &str)]) -> Config {
        let mut text = BASE.to_owned();
        for (from, to) in edit {
            assert!(text.contains(from));
            text = text.replace(from, to);
        }
        text.push_str(extra);
        Config::from_toml(&text, Path::new("/etc/mailroom"), std::iter::empty()).unwrap()
    }

    #[test]
    fn settings_read_at_start_keep_their_running_values_and_are_named() {
        let running = cfg("", &[]);
        let asked = cfg(
            "[replies]\nonce_per_days = 3\n[metrics]\nlisten = \"127.0.0.1:9464\"\n",
            &[("data_dir = \"data\"", "data_dir = \"elsewhere\""), ("password = \"pw\"", "password = \"new\"")],
        );
        let next = reloadable_from(&running, &asked);
        assert_eq!(next.replies.once_per_days, 3, "replies are reloadable");
        assert_eq!(next.storage.data_dir, running.storage.data_dir, "the data dir keeps its running value");
        assert_eq!(next.metrics.listen, "");
        assert_eq!(
            restart_keys(&asked, &next),
            ["storage.data_dir", "imap.password", "smtp.password", "metrics.listen"]
        );
        assert_eq!(changed_settings(&running, &next), ["replies"]);
    }

    #[test]
    fn a_reload_of_the_same_file_changes_nothing_and_needs_no_restart() {
        let running = cfg("", &[]);
        let next = reloadable_from(&running, &cfg("", &[]));
        assert!(restart_keys(&cfg("", &[]), &next).is_empty());
        assert!(changed_settings(&running, &next).is_empty());
    }

    #[test]
    fn reloadable_settings_are_taken_whole() {
        let running = cfg("", &[]);
        let posting = "[[postings]]\nslug = \"new\"\ntitle = \"New\"\n";
        let asked = cfg(
            &format!(
                "[limits]\nmax_parts = 5\n[digest]\nschedule = \"0 9 * * 1\"\n[log]\nlevel = \"debug\"\n{posting}"
            ),
            &[(
                "organisation = \"Example\"",
                "organisation = \"Example\"\nteam = [\"t@example.test\"]\ntimezone = \"UTC\"",
            )],
        );
        let next = reloadable_from(&running, &asked);
        assert!(restart_keys(&asked, &next).is_empty());
        assert_eq!(
            changed_settings(&running, &next),
            ["limits", "digest", "postings", "identity.team", "identity.timezone", "log.level"]
        );
        assert_eq!((next.limits.max_parts, next.postings.len()), (5, 1));
    }

    struct Lines(Mutex<Vec<String>>);
    impl Monitor for Lines {
        fn status(&self, line: &str) {
            self.0.lock().unwrap().push(line.to_owned());
        }
    }

    #[test]
    fn the_note_follows_every_status_line() {
        let lines = Arc::new(Lines(Mutex::new(Vec::new())));
        struct Shared(Arc<Lines>);
        impl Monitor for Shared {
            fn status(&self, line: &str) {
                self.0.status(line);
            }
        }
        let m = NotedMonitor::new(Shared(Arc::clone(&lines)));
        m.status("watching; 1 filed");
        m.note("reload rejected: x".into());
        m.status("watching; 2 filed");
        assert_eq!(
            *lines.0.lock().unwrap(),
            ["watching; 1 filed", "watching; 1 filed; reload rejected: x", "watching; 2 filed; reload rejected: x"]
        );
    }
}
