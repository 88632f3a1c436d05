//! Running as a service: what the pipeline tells the world while it works (readiness, status
//! lines, watchdog pings, progress), and where logs go.
//!
//! The pipeline only knows the [`Monitor`] trait; under systemd it is [`SystemdMonitor`]
//! (`sd_notify`: `READY=1`, `STATUS=…`, `WATCHDOG=1`, `STOPPING=1`), on a terminal
//! [`TerminalProgress`], elsewhere [`Quiet`].

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use crate::config::{Config, LogFormat};

/// What the pipeline reports while it works. Every method defaults to doing nothing.
pub trait Monitor: Send + Sync {
    /// The store is open and the first login succeeded (or failed transiently and is retried).
    fn ready(&self) {}
    /// One line for a person: what the daemon is doing now.
    fn status(&self, _line: &str) {}
    /// Called from the loop that does the work, never from a side task, so a stuck loop stops
    /// the pings and systemd restarts it. `None`: no watchdog asked for.
    fn watchdog_interval(&self) -> Option<Duration> {
        None
    }
    fn watchdog(&self) {}
    fn stopping(&self) {}
    /// `done` of `total` messages of the current backlog are committed.
    fn progress(&self, _done: usize, _total: usize) {}
}

/// Reports nothing.
pub struct Quiet;
impl Monitor for Quiet {}

/// `sd_notify` to the service manager; a no-op when not started by systemd.
pub struct SystemdMonitor {
    watchdog: Option<Duration>,
}

impl SystemdMonitor {
    pub fn new() -> SystemdMonitor {
        SystemdMonitor { watchdog: sd_notify::watchdog_enabled() }
    }
}

impl Default for SystemdMonitor {
    fn default() -> Self {
        Self::new()
    }
}

impl Monitor for SystemdMonitor {
    fn ready(&self) {
        let _ = sd_notify::notify(&[NotifyState::Ready]);
    }
    fn status(&self, line: &str) {
        let _ = sd_notify::notify(&[NotifyState::Status(line)]);
    }
    fn watchdog_interval(&self) -> Option<Duration> {
        // Ping at a third of the deadline: a slow pass still gets two chances.
        self.watchdog.map(|d| d / 3)
    }
    fn watchdog(&self) {
        if self.watchdog.is_some() {
            let _ = sd_notify::notify(&[NotifyState::Watchdog]);
        }
    }
    fn stopping(&self) {
        let _ = sd_notify::notify(&[NotifyState::Stopping]);
    }
    fn progress(&self, done: usize, total: usize) {
        self.status(&format!("processing the backlog: {done}/{total} messages"));
    }
}

/// A progress line on the terminal, for a person watching `mailroom once` work through a backlog.
pub struct TerminalProgress {
    started: Instant,
    last: Mutex<Option<Instant>>,
}

impl TerminalProgress {
    /// `Some` only when standard error is a terminal.
    pub fn if_terminal() -> Option<TerminalProgress> {
        std::io::stderr().is_terminal().then(|| TerminalProgress { started: Instant::now(), last: Mutex::new(None) })
    }
}

impl Monitor for TerminalProgress {
    fn progress(&self, done: usize, total: usize) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        // Redraw at most 10 times a second, and always the last time.
        if done < total && last.is_some_and(|t| t.elapsed() < Duration::from_millis(100)) {
            return;
        }
        *last = Some(Instant::now());
        let width = 30;
        let filled = (done * width).checked_div(total).unwrap_or(width).min(width);
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r[{}{}] {done}/{total} messages, {rate:.0}/s{}",
            "#".repeat(filled),
            " ".repeat(width - filled),
            if done >= total { "\n" } else { "" }
        );
        let _ = err.flush();
    }
}

/// Runs `work` unless a stop is asked for first (or before it ends): `None` then, and `work` is
/// dropped where it waits. Network I/O (a login, a download, a send) is cut this way at a stop,
/// so that a stop stays bounded when a server hangs; nothing before the commit point is lost by
/// it, and what is cut is simply done again at the next start.
pub async fn unless_stopped<T>(stop: &tokio::sync::watch::Receiver<bool>, work: impl Future<Output = T>) -> Option<T> {
    let mut stop = stop.clone();
    if *stop.borrow_and_update() {
        return None;
    }
    tokio::select! {
        biased;
        _ = stopped(&mut stop) => None,
        r = work => Some(r),
    }
}

/// Resolves once `stop` turns true (never, if its sender goes away without saying so).
pub async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Logs to journald when systemd connected our stderr to it (`JOURNAL_STREAM`), otherwise text
/// (colours only on a terminal) or JSON lines on stderr.
pub fn init_logging(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::prelude::*;
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.log.level));
    if cfg.log.format == LogFormat::Auto
        && std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journald) = tracing_journald::layer()
    {
        let _ = tracing_subscriber::registry()
            .with(filter())
            .with(journald.with_syslog_identifier("mailroom".into()))
            .try_init();
        return;
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter()).with_writer(std::io::stderr);
    let _ = match cfg.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text | LogFormat::Auto => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
}
