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
use tracing_subscriber::EnvFilter;

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
    /// A reload of the configuration begins; [`Monitor::ready`] says it is over.
    fn reloading(&self) {}
}

/// Writes, inside an `impl Monitor for …` block, the methods named that only hand the call on to
/// `self.<field>`: for adapters that change one or two methods and pass the rest through.
macro_rules! forward_monitor {
    ($inner:ident; $($method:ident),* $(,)?) => { $( $crate::service::forward_monitor!(@one $inner $method); )* };
    (@one $inner:ident ready) => { fn ready(&self) { self.$inner.ready() } };
    (@one $inner:ident status) => { fn status(&self, line: &str) { self.$inner.status(line) } };
    (@one $inner:ident watchdog_interval) => {
        fn watchdog_interval(&self) -> Option<std::time::Duration> { self.$inner.watchdog_interval() }
    };
    (@one $inner:ident watchdog) => { fn watchdog(&self) { self.$inner.watchdog() } };
    (@one $inner:ident stopping) => { fn stopping(&self) { self.$inner.stopping() } };
    (@one $inner:ident progress) => {
        fn progress(&self, done: usize, total: usize) { self.$inner.progress(done, total) }
    };
    (@one $inner:ident reloading) => { fn reloading(&self) { self.$inner.reloading() } };
}
pub(crate) use forward_monitor;

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
    fn reloading(&self) {
        // systemd (notify-reload, 253 and later) matches the reload to the request by this time.
        match NotifyState::monotonic_usec_now() {
            Ok(now) => drop(sd_notify::notify(&[NotifyState::Reloading, now])),
            Err(_) => drop(sd_notify::notify(&[NotifyState::Reloading])),
        }
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

/// Changes the log filter of the running process (a reload's `log.level`).
#[derive(Clone)]
pub struct LogControl(tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>);

impl std::fmt::Debug for LogControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogControl")
    }
}

impl LogControl {
    /// Whether `level` is a filter [`LogControl::set_level`] would take.
    pub fn check_level(level: &str) -> Result<(), String> {
        EnvFilter::try_new(level).map(drop).map_err(|e| format!("{level:?} is not a log filter ({e})"))
    }

    /// Puts `level` in force, unless `RUST_LOG` is set (it wins, as at start). Err: not a filter.
    pub fn set_level(&self, level: &str) -> Result<(), String> {
        if std::env::var_os("RUST_LOG").is_some() {
            return Ok(());
        }
        let filter = EnvFilter::try_new(level).map_err(|e| format!("{level:?} is not a log filter ({e})"))?;
        self.0.reload(filter).map_err(|e| e.to_string())
    }
}

/// Logs to journald when systemd connected our stderr to it (`JOURNAL_STREAM`), otherwise text
/// (colours only on a terminal) or JSON lines on stderr. The filter can be changed later through
/// the [`LogControl`] returned (`None` when a logger was already installed).
pub fn init_logging(cfg: &Config) -> Option<LogControl> {
    use tracing_subscriber::prelude::*;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.log.level));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = if cfg.log.format == LogFormat::Auto
        && std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journald) = tracing_journald::layer()
    {
        registry.with(journald.with_syslog_identifier("mailroom".into())).try_init()
    } else {
        let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
        match cfg.log.format {
            LogFormat::Json => registry.with(fmt.json()).try_init(),
            LogFormat::Text | LogFormat::Auto => {
                registry.with(fmt.with_ansi(std::io::stderr().is_terminal())).try_init()
            }
        }
    };
    installed.ok().map(|()| LogControl(handle))
}
