//! The opt-in Prometheus endpoint: `[metrics] listen = "127.0.0.1:9464"` serves `GET /metrics`
//! in the text exposition format (0.0.4), and nothing else (404 for any other path, 405 for any
//! other method). Off by default.
//!
//! **Where the numbers come from.** The counters are the store's totals, read at each scrape
//! ([`MetricsStore`]): they survive restarts and say what `mailroom status` says, and the same
//! families appear in `mailroom status --json` under `metrics` ([`from_store`], [`to_json`]).
//! The daemon's own values (start time, reloads, OAuth2 token expiry) come from
//! [`crate::gauges`]. Labels are a mailbox (`user@host/folder`), a kind or a code: never a
//! candidate, so the number of series stays small.
//!
//! **Why no web framework.** One route, read by one scraper every few seconds: a tokio listener
//! and a few lines of HTTP/1.1 (one request per connection, `Connection: close`) cost almost no
//! memory next to a framework (the daemon's idle target is 15 MB). Requests are bounded (8 KiB of
//! head, 5 s to send it, 4 connections at a time), and the store is read on the blocking pool so
//! a scrape never stalls the mailbox loops.
//!
//! May: listen on its one address, read the store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::config::Config;
use crate::gauges::{self, Family, Kind, epoch_seconds};
use crate::store::{MetricCounts, MetricsStore, StoreError};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const MAX_HEAD: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECTIONS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics.listen: cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// Every family the store can give, plus build info: what `mailroom status --json` shows.
pub fn from_store<S: MetricsStore>(store: &S) -> Result<Vec<Family>, StoreError> {
    Ok(families(&store.metric_counts()?))
}

/// What a scrape serves: [`from_store`] and the daemon's own values ([`crate::gauges`]).
pub fn scrape<S: MetricsStore>(store: &S) -> Result<Vec<Family>, StoreError> {
    let mut all = from_store(store)?;
    all.extend(gauges::snapshot());
    Ok(all)
}

/// The families built from the store's counts.
pub fn families(c: &MetricCounts) -> Vec<Family> {
    use Kind::{Counter, Gauge};
    let mut fetched = Family::new(
        "mailroom_messages_fetched_total",
        Counter,
        "Messages taken from the mailbox and recorded (filed, quarantined or duplicate).",
    );
    let mut filed = Family::new("mailroom_messages_filed_total", Counter, "Applications filed in a candidate folder.");
    let mut quarantined = Family::new(
        "mailroom_messages_quarantined_total",
        Counter,
        "Messages set aside in _quarantine/, by reason code.",
    );
    let mut duplicates = Family::new(
        "mailroom_messages_duplicates_total",
        Counter,
        "Messages recorded before (same bytes or Message-ID): not filed or answered again.",
    );
    let mut contact = Family::new(
        "mailroom_mailbox_last_contact_timestamp_seconds",
        Gauge,
        "When a pass last reached the mailbox (seconds since the epoch).",
    );
    for m in &c.mailboxes {
        let mailbox = [("mailbox", m.name.as_str())];
        fetched.push(&mailbox, (m.filed + m.quarantined + m.duplicates) as f64);
        filed.push(&mailbox, m.filed as f64);
        duplicates.push(&mailbox, m.duplicates as f64);
        if let Some(t) = m.last_contact {
            contact.push(&mailbox, epoch_seconds(t));
        }
    }
    for (mailbox, reason, n) in &c.quarantined {
        quarantined.push(&[("mailbox", mailbox), ("reason", reason)], *n as f64);
    }
    let mut replies = Family::new(
        "mailroom_replies_total",
        Counter,
        "Acknowledgements by kind and outcome: queued (all), and of those sent, failed or uncertain (maybe sent before a crash; never resent).",
    );
    let mut kinds: Vec<&str> = c.replies.iter().map(|(k, _, _)| k.as_str()).collect();
    kinds.dedup();
    for kind in kinds {
        let of = |state: &str| {
            c.replies
                .iter()
                .filter(|(k, s, _)| k == kind && (state == "queued" || s == state))
                .map(|r| r.2)
                .sum::<u64>()
        };
        for outcome in ["queued", "sent", "failed", "uncertain"] {
            replies.push(&[("kind", kind), ("outcome", outcome)], of(outcome) as f64);
        }
    }
    let mut skipped = Family::new(
        "mailroom_replies_skipped_total",
        Counter,
        "Applications filed but not answered, by reason code (backlog, automated, already_answered, hourly_cap, ...).",
    );
    for (reason, n) in &c.skipped {
        skipped.push(&[("reason", reason)], *n as f64);
    }
    let digest_sent = c.digests.iter().filter(|(s, _)| s == "sent").map(|d| d.1).sum::<u64>();
    vec![
        Family::new("mailroom_build_info", Gauge, "The running version of mailroom.")
            .with(&[("version", env!("CARGO_PKG_VERSION"))], 1.0),
        fetched,
        filed,
        quarantined,
        duplicates,
        replies,
        skipped,
        Family::new(
            "mailroom_digests_sent_total",
            Counter,
            "Digest mails accepted by the SMTP server (one per recipient).",
        )
        .with(&[], digest_sent as f64),
        Family::new("mailroom_outbox_depth", Gauge, "Mail waiting to be sent (pending or being sent), all kinds.")
            .with(&[], c.outbox_depth as f64),
        contact,
    ]
}

/// The text exposition format.
pub fn exposition(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families {
        out.push_str(&format!("# HELP {} {}\n# TYPE {} {}\n", f.name, escape(f.help, false), f.name, f.kind.as_str()));
        for s in &f.samples {
            out.push_str(f.name);
            if !s.labels.is_empty() {
                let labels: Vec<String> =
                    s.labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v, true))).collect();
                out.push_str(&format!("{{{}}}", labels.join(",")));
            }
            out.push_str(&format!(" {}\n", s.value));
        }
    }
    out
}

/// `\` and newlines are escaped in help text; label values also escape `"`.
fn escape(s: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

/// The families as JSON (`mailroom status --json`): `{name: [{labels: {…}, value}]}`, whole
/// numbers as integers.
pub fn to_json(families: &[Family]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for f in families {
        let samples: Vec<serde_json::Value> = f
            .samples
            .iter()
            .map(|s| {
                let labels: serde_json::Map<String, serde_json::Value> =
                    s.labels.iter().map(|(k, v)| ((*k).to_owned(), v.clone().into())).collect();
                let value = if s.value.fract() == 0.0 && s.value >= 0.0 && s.value < 9e15 {
                    serde_json::Value::from(s.value as u64)
                } else {
                    serde_json::Value::from(s.value)
                };
                serde_json::json!({ "labels": labels, "value": value })
            })
            .collect();
        out.insert(f.name.to_owned(), samples.into());
    }
    out.into()
}

/// A bound endpoint, not yet serving.
#[derive(Debug)]
pub struct Endpoint {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Endpoint {
    /// Binds `metrics.listen`, or `None` when it is empty (metrics off). Port 0 takes a free port,
    /// which the log says.
    pub async fn bind(cfg: &Config) -> Result<Option<Endpoint>, MetricsError> {
        let Some(addr) = cfg.metrics.address() else { return Ok(None) };
        let listener = TcpListener::bind(addr).await.map_err(|source| MetricsError::Bind { addr, source })?;
        let addr = listener.local_addr().unwrap_or(addr);
        if !addr.ip().is_loopback() {
            tracing::warn!(
                address = %addr,
                "metrics.listen is not a loopback address: anyone who can reach it can read the counters (no authentication); put a firewall or a proxy in front"
            );
        }
        tracing::info!(address = %addr, "metrics endpoint listening (GET /metrics)");
        Ok(Some(Endpoint { listener, addr }))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers scrapes until `stop` turns true.
    pub async fn serve<S: MetricsStore>(self, store: S, mut stop: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(CONNECTIONS));
        loop {
            if *stop.borrow() {
                return;
            }
            // A slot first: beyond CONNECTIONS, clients wait in the kernel's queue.
            let permit = tokio::select! {
                p = Arc::clone(&slots).acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                _ = stop.changed() => return,
            };
            let accepted = tokio::select! {
                a = self.listener.accept() => a,
                _ = stop.changed() => return,
            };
            match accepted {
                Ok((stream, _)) => {
                    let store = store.clone();
                    tokio::spawn(async move {
                        let _permit = permit;
                        if let Err(e) = answer(stream, store).await {
                            tracing::debug!(error = %e, "metrics: a connection ended early");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

/// Serves `endpoint` when there is one; otherwise returns at once.
pub async fn serve<S: MetricsStore>(endpoint: Option<Endpoint>, store: S, stop: watch::Receiver<bool>) {
    if let Some(e) = endpoint {
        e.serve(store, stop).await;
    }
}

/// One request, one response, then the connection closes.
async fn answer<S: MetricsStore>(mut stream: TcpStream, store: S) -> std::io::Result<()> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => head,
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(e)) => return Err(e),
        Err(_) => return respond(&mut stream, 408, "Request Timeout", "text/plain", b"", false, &[]).await,
    };
    let response = route(&head);
    let (code, reason, body, head_only) = match response {
        Route::Metrics { head_only } => {
            match tokio::task::spawn_blocking(move || scrape(&store).map(|f| exposition(&f))).await {
                Ok(Ok(text)) => (200, "OK", text, head_only),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "metrics: the store could not be read");
                    (500, "Internal Server Error", format!("the state database could not be read: {e}\n"), head_only)
                }
                Err(e) => (500, "Internal Server Error", format!("{e}\n"), head_only),
            }
        }
        Route::NotFound => (404, "Not Found", "not found: this endpoint serves /metrics only\n".into(), false),
        Route::BadMethod => (405, "Method Not Allowed", "only GET and HEAD\n".into(), false),
        Route::Bad => (400, "Bad Request", "bad request\n".into(), false),
    };
    let content_type = if code == 200 { CONTENT_TYPE } else { "text/plain; charset=utf-8" };
    let extra: &[(&str, &str)] = if code == 405 { &[("Allow", "GET, HEAD")] } else { &[] };
    respond(&mut stream, code, reason, content_type, body.as_bytes(), head_only, extra).await
}

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics { head_only: bool },
    NotFound,
    BadMethod,
    Bad,
}

/// What a request head asks for.
fn route(head: &str) -> Route {
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::Bad;
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Route::Bad;
    }
    let path = target.split(['?', '#']).next().unwrap_or_default();
    match method {
        "GET" | "HEAD" if path == "/metrics" => Route::Metrics { head_only: method == "HEAD" },
        "GET" | "HEAD" => Route::NotFound,
        _ => Route::BadMethod,
    }
}

/// Reads up to the blank line that ends the head. `None`: the client closed before sending one.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
        }
        if buf.len() > MAX_HEAD {
            return Ok(Some(String::new())); // routed as a bad request
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    code: u16,
    reason: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
    extra: &[(&str, &str)],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(body).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MailboxCounts;

    #[test]
    fn requests_are_routed_to_metrics_or_refused() {
        assert_eq!(route("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Route::Metrics { head_only: false });
        assert_eq!(route("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics { head_only: true });
        assert_eq!(route("GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route("GET /metrics/../etc HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route("POST /metrics HTTP/1.1\r\n\r\n"), Route::BadMethod);
        assert_eq!(route("GET /metrics\r\n\r\n"), Route::Bad);
        assert_eq!(route(""), Route::Bad);
        assert_eq!(route("GET metrics HTTP/1.1\r\n\r\n"), Route::Bad);
    }

    #[test]
    fn counts_become_families_in_the_text_format() {
        let counts = MetricCounts {
            mailboxes: vec![MailboxCounts {
                name: "contact@imap.example.test/IN\"BOX".into(),
                filed: 3,
                quarantined: 1,
                duplicates: 2,
                last_contact: chrono::DateTime::from_timestamp(1_800_000_000, 250_000_000),
            }],
            quarantined: vec![("contact@imap.example.test/IN\"BOX".into(), "too_large".into(), 1)],
            replies: vec![("complete".into(), "sent".into(), 2), ("complete".into(), "pending".into(), 1)],
            skipped: vec![("backlog".into(), 4)],
            digests: vec![("sent".into(), 2), ("failed".into(), 1)],
            outbox_depth: 1,
        };
        let text = exposition(&families(&counts));
        let mbox = r#"mailbox="contact@imap.example.test/IN\"BOX""#;
        for line in [
            format!("mailroom_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")),
            "# TYPE mailroom_messages_fetched_total counter".into(),
            format!("mailroom_messages_fetched_total{{{mbox}}} 6"),
            format!("mailroom_messages_filed_total{{{mbox}}} 3"),
            format!("mailroom_messages_quarantined_total{{{mbox},reason=\"too_large\"}} 1"),
            format!("mailroom_messages_duplicates_total{{{mbox}}} 2"),
            "mailroom_replies_total{kind=\"complete\",outcome=\"queued\"} 3".into(),
            "mailroom_replies_total{kind=\"complete\",outcome=\"sent\"} 2".into(),
            "mailroom_replies_total{kind=\"complete\",outcome=\"failed\"} 0".into(),
            "mailroom_replies_skipped_total{reason=\"backlog\"} 4".into(),
            "mailroom_digests_sent_total 2".into(),
            "# TYPE mailroom_outbox_depth gauge".into(),
            "mailroom_outbox_depth 1".into(),
            format!("mailroom_mailbox_last_contact_timestamp_seconds{{{mbox}}} 1800000000.25"),
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing from:\n{text}");
        }
        let json = to_json(&families(&counts));
        assert_eq!(json["mailroom_messages_filed_total"][0]["value"], 3);
        assert_eq!(json["mailroom_messages_filed_total"][0]["labels"]["mailbox"], "contact@imap.example.test/IN\"BOX");
        assert_eq!(json["mailroom_mailbox_last_contact_timestamp_seconds"][0]["value"], 1_800_000_000.25);
    }

    #[tokio::test]
    async fn the_endpoint_serves_metrics_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("state.sqlite3")).unwrap();
        let mut cfg = Config::sample();
        cfg.metrics.listen = "127.0.0.1:0".into();
        let endpoint = Endpoint::bind(&cfg).await.unwrap().unwrap();
        let addr = endpoint.local_addr();
        let (stop_tx, stop) = watch::channel(false);
        let server = tokio::spawn(endpoint.serve(store, stop));
        let ask = |request: &'static str| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(request.as_bytes()).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let ok = ask("GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")), "{ok}");
        assert!(ok.contains("\r\n\r\n# HELP mailroom_build_info"), "{ok}");
        assert!(ok.contains("\nmailroom_outbox_depth 0\n"), "{ok}");
        let head = ask("HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"), "{head}");
        assert!(ask("GET / HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 404 "));
        assert!(ask("GET /favicon.ico HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 404 "));
        let post = ask("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 405 ") && post.contains("Allow: GET, HEAD\r\n"), "{post}");
        assert!(ask("nonsense\r\n\r\n").await.starts_with("HTTP/1.1 400 "));
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
    }
}
