//! The metrics endpoint on the real mail stack: `mailroom run` with `[metrics] listen` serves
//! /metrics in the Prometheus text format (parsed here by a small parser that also checks the
//! syntax), the counters move as mail is filed, quarantined and seen twice, they say what
//! `mailroom status --json` says, and they survive a restart. Like tests/daemon.rs, this needs
//! `scripts/test` (it fails under CI=true without a stack, and says SKIPPED otherwise).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::{Daemon, Stack, application_eml, pdf, status_json, unique_id, wait_for, write_config};

const DEADLINE: Duration = Duration::from_secs(60);

/// One series of a scrape.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition format (0.0.4), strictly enough to catch what Prometheus would
/// refuse: names, label syntax and escapes, values, TYPE before the samples, no series twice.
fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars()
                .enumerate()
                .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()))
    };
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples: Vec<Sample> = Vec::new();
    let mut seen = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let err = |m: &str| format!("line {}: {m}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("HELP"), Some(name), Some(_)) if valid_name(name) => {}
                (Some("TYPE"), Some(name), Some(kind)) if valid_name(name) => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(err("unknown type"));
                    }
                    if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                        return Err(err("TYPE given twice"));
                    }
                }
                _ => return Err(err("bad comment line")),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').ok_or_else(|| err("no value"))?;
        let value: f64 = value.parse().map_err(|_| err("bad value"))?;
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').ok_or_else(|| err("unclosed labels"))?;
                let mut labels = BTreeMap::new();
                let mut chars = body.chars().peekable();
                while chars.peek().is_some() {
                    let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                    if !valid_name(&key) || chars.next() != Some('"') {
                        return Err(err("bad label"));
                    }
                    let mut v = String::new();
                    loop {
                        match chars.next().ok_or_else(|| err("unterminated label value"))? {
                            '"' => break,
                            '\\' => match chars.next() {
                                Some('\\') => v.push('\\'),
                                Some('"') => v.push('"'),
                                Some('n') => v.push('\n'),
                                _ => return Err(err("bad escape")),
                            },
                            c => v.push(c),
                        }
                    }
                    labels.insert(key, v);
                    match chars.next() {
                        None => break,
                        Some(',') => {}
                        Some(_) => return Err(err("expected , between labels")),
                    }
                }
                (name, labels)
            }
        };
        if !valid_name(name) {
            return Err(err("bad metric name"));
        }
        if !types.contains_key(name) {
            return Err(err("sample before its TYPE"));
        }
        if types[name] == "counter" && (!name.ends_with("_total") || value < 0.0) {
            return Err(err("a counter must end in _total and not be negative"));
        }
        if !seen.insert(format!("{name}{labels:?}")) {
            return Err(err("series given twice"));
        }
        samples.push(Sample { name: name.to_owned(), labels, value });
    }
    Ok(samples)
}

/// `GET path` on the endpoint: (status code, headers, body).
fn get(addr: &str, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, head.to_owned(), body.to_owned())
}

fn scrape(addr: &str) -> Vec<Sample> {
    let (code, head, body) = get(addr, "/metrics");
    assert_eq!(code, 200, "{head}");
    assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
    parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
}

/// The value of one series (0 when absent: a counter nobody has counted yet).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map_or(0.0, |s| s.value)
}

/// Where the daemon's endpoint listens (`listen = "127.0.0.1:0"`: a free port, said in the log).
fn endpoint(daemon: &Daemon) -> String {
    wait_for("the metrics endpoint's address in the log", DEADLINE, || {
        let log = daemon.log_text();
        let line = log.lines().find(|l| l.contains("metrics endpoint listening"))?;
        Some(line.split("address=").nth(1)?.split_whitespace().next()?.to_owned())
    })
}

#[test]
fn metrics_are_scraped_and_move_as_mail_is_filed() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let folder = stack.fresh_folder("contact@example.test", "metrics");
    let to = format!("contact+{folder}@example.test");
    let imap = format!("{}\npoll_interval_secs = 3600", stack.imap_lines("contact@example.test", &folder, false));
    let config = write_config(
        dir.path(),
        &imap,
        &stack.smtp_lines("contact@example.test", false),
        "[metrics]\nlisten = \"127.0.0.1:0\"\n",
    );
    let mut daemon = Daemon::start(&config);
    let addr = endpoint(&daemon);
    let mailbox = format!("contact@example.test@localhost/{folder}");
    let m = [("mailbox", mailbox.as_str())];

    // Before any mail: build info, an empty outbox, and the mailbox's counters at 0 once contacted.
    let first = wait_for("the first pass to show in the metrics", DEADLINE, || {
        let s = scrape(&addr);
        (value(&s, "mailroom_mailbox_last_contact_timestamp_seconds", &m) > 0.0).then_some(s)
    });
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(value(&first, "mailroom_build_info", &[("version", version)]), 1.0);
    assert_eq!(value(&first, "mailroom_outbox_depth", &[]), 0.0);
    assert!(first.iter().any(|s| s.name == "mailroom_messages_filed_total" && s.value == 0.0), "{first:?}");
    let contact = value(&first, "mailroom_mailbox_last_contact_timestamp_seconds", &m);
    let now = chrono::Utc::now().timestamp() as f64;
    assert!(
        (now - 60.0..=now + 1.0).contains(&contact),
        "a timestamp (seconds since the epoch), not an age: {contact}"
    );
    let started = value(&first, "mailroom_start_timestamp_seconds", &[]);
    assert!((now - 120.0..=now + 1.0).contains(&started), "{started}");

    // An application, the same message again, and a robot's note without a document.
    let id = unique_id("metrics");
    let app = application_eml(
        "Alice Martin <alice@example.test>",
        &to,
        "Candidature stage",
        &id,
        &[],
        "Bonjour, voici mon CV et ma lettre.",
        &[("CV.pdf", "application/pdf", &pdf("cv")), ("Lettre de motivation.pdf", "application/pdf", &pdf("lm"))],
    );
    stack.submit("alice@example.test", &[&to], &app);
    wait_for("the acknowledgement", DEADLINE, || {
        (!stack.messages_with("alice@example.test", "INBOX", "In-Reply-To", &id).is_empty()).then_some(())
    });
    stack.submit("alice@example.test", &[&to], &app);
    let robot = format!(
        "From: Vacation <bob@example.test>\r\nTo: {to}\r\nSubject: Absent\r\nMessage-ID: <{}>\r\nAuto-Submitted: auto-replied\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\n\r\nJe suis absent.\r\n",
        unique_id("robot")
    );
    stack.submit("bob@example.test", &[&to], robot.as_bytes());

    let moved = wait_for("the counters to move", DEADLINE, || {
        let s = scrape(&addr);
        (value(&s, "mailroom_messages_fetched_total", &m) == 3.0
            && value(&s, "mailroom_replies_total", &[("kind", "complete"), ("outcome", "sent")]) == 1.0)
            .then_some(s)
    });
    assert_eq!(value(&moved, "mailroom_messages_filed_total", &m), 1.0);
    assert_eq!(value(&moved, "mailroom_messages_duplicates_total", &m), 1.0);
    assert_eq!(
        value(
            &moved,
            "mailroom_messages_quarantined_total",
            &[("mailbox", &mailbox), ("reason", "not_an_application")]
        ),
        1.0
    );
    assert_eq!(value(&moved, "mailroom_replies_total", &[("kind", "complete"), ("outcome", "queued")]), 1.0);
    assert_eq!(value(&moved, "mailroom_replies_total", &[("kind", "complete"), ("outcome", "failed")]), 0.0);
    assert_eq!(value(&moved, "mailroom_outbox_depth", &[]), 0.0);
    assert_eq!(value(&moved, "mailroom_digests_sent_total", &[]), 0.0);
    // No candidate in any label or value.
    let (_, _, body) = get(&addr, "/metrics");
    for personal in ["alice", "Alice", "Martin", "bob@", "Candidature"] {
        assert!(!body.contains(personal), "the metrics mention {personal:?}:\n{body}");
    }

    // Only /metrics is served.
    assert_eq!(get(&addr, "/").0, 404);
    assert_eq!(get(&addr, "/metrics/x").0, 404);

    // `mailroom status --json` says the same numbers.
    let status = status_json(&config);
    let scraped = scrape(&addr);
    let families = status["metrics"].as_object().unwrap_or_else(|| panic!("no metrics in status --json: {status}"));
    assert!(families.contains_key("mailroom_messages_filed_total"), "{status}");
    for (name, series) in families {
        for s in series.as_array().unwrap() {
            let labels: Vec<(&str, &str)> =
                s["labels"].as_object().unwrap().iter().map(|(k, v)| (k.as_str(), v.as_str().unwrap())).collect();
            let want = s["value"].as_f64().unwrap();
            assert_eq!(value(&scraped, name, &labels), want, "{name}{labels:?}: status --json says {want}");
        }
    }
    assert_eq!(status["totals"]["filed"].as_f64(), Some(value(&scraped, "mailroom_messages_filed_total", &m)));

    // The counters come from the store: a restart keeps them.
    assert!(daemon.terminate(Duration::from_secs(15)).success());
    let daemon = Daemon::start(&config);
    let addr = endpoint(&daemon);
    let after = scrape(&addr);
    assert_eq!(value(&after, "mailroom_messages_filed_total", &m), 1.0);
    assert_eq!(value(&after, "mailroom_messages_fetched_total", &m), 3.0);
    assert_eq!(value(&after, "mailroom_replies_total", &[("kind", "complete"), ("outcome", "sent")]), 1.0);
    assert!(Path::new(&config).exists());
}

#[test]
fn the_parser_refuses_what_prometheus_would() {
    assert!(parse("# TYPE a_total counter\na_total{x=\"1\"} 2\n").is_ok());
    assert!(parse("a_total 1\n").is_err(), "sample before TYPE");
    assert!(parse("# TYPE a_total counter\na_total{x=\"1} 2\n").is_err());
    assert!(parse("# TYPE a counter\na 1\n").is_err(), "counter without _total");
    assert!(parse("# TYPE a gauge\na 1\na 2\n").is_err(), "series twice");
    assert!(parse("# TYPE a gauge\na{x=\"\\q\"} 1\n").is_err(), "bad escape");
    let s = parse("# TYPE a gauge\na{x=\"q\\\"uote\",y=\"b\\\\s\"} 1.5\n").unwrap();
    assert_eq!(s[0].labels["x"], "q\"uote");
    assert_eq!(s[0].labels["y"], "b\\s");
}
