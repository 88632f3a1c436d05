//! Values the running daemon knows that the store does not keep, set by the part that learns them
//! and read by the metrics endpoint (the `metrics` module, further down the map) at each scrape:
//! when the daemon started, how its reloads went, and (for OAuth2) when the auth tokens expire.
//!
//! The table is process-wide and sits at the bottom of the map, so any part can set a value
//! without knowing whether metrics are on (when they are off, nobody reads it; a value costs a few
//! bytes). Values are timestamps and small counters, never personal data; labels are few and
//! fixed (a kind, a result), never a candidate.
//!
//! **The hook for OAuth2**: call [`auth_token_expiry`] whenever a token is obtained or refreshed
//! (`kind` = `"access"` or `"refresh"`), and with `None` when the token is dropped. The endpoint
//! then serves `mailroom_auth_token_expiry_timestamp_seconds{kind="…"}`.
//!
//! May: nothing but its own table.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

/// How Prometheus should read a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// One series of a family: its labels (name, value) and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// A metric family: one name, one meaning, its series.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

impl Family {
    pub fn new(name: &'static str, kind: Kind, help: &'static str) -> Family {
        Family { name, help, kind, samples: Vec::new() }
    }

    /// Adds a series (builder style).
    pub fn with(mut self, labels: &[(&'static str, &str)], value: f64) -> Family {
        self.push(labels, value);
        self
    }

    pub fn push(&mut self, labels: &[(&'static str, &str)], value: f64) {
        self.samples.push(Sample { labels: labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(), value });
    }
}

static TABLE: Mutex<BTreeMap<&'static str, Family>> = Mutex::new(BTreeMap::new());

fn table() -> std::sync::MutexGuard<'static, BTreeMap<&'static str, Family>> {
    // A panic elsewhere while holding this lock leaves plain numbers behind: still good to read.
    TABLE.lock().unwrap_or_else(|p| p.into_inner())
}

fn same(have: &[(&'static str, String)], want: &[(&'static str, &str)]) -> bool {
    have.len() == want.len() && have.iter().zip(want).all(|(a, b)| a.0 == b.0 && a.1 == b.1)
}

fn series<'a>(f: &'a mut Family, labels: &[(&'static str, &str)]) -> Option<&'a mut Sample> {
    f.samples.iter_mut().find(|s| same(&s.labels, labels))
}

/// Sets a gauge's series (creating the family on first use).
pub fn set(name: &'static str, help: &'static str, labels: &[(&'static str, &str)], value: f64) {
    let mut t = table();
    let f = t.entry(name).or_insert_with(|| Family::new(name, Kind::Gauge, help));
    match series(f, labels) {
        Some(s) => s.value = value,
        None => f.push(labels, value),
    }
}

/// Removes a gauge's series (a value that no longer means anything, such as a dropped token).
pub fn unset(name: &'static str, labels: &[(&'static str, &str)]) {
    let mut t = table();
    if let Some(f) = t.get_mut(name) {
        f.samples.retain(|s| !same(&s.labels, labels));
    }
}

/// Adds one to a counter's series. Counters here live as long as the process (Prometheus reads a
/// restart as a reset); what must survive a restart is counted in the store instead.
pub fn increment(name: &'static str, help: &'static str, labels: &[(&'static str, &str)]) {
    let mut t = table();
    let f = t.entry(name).or_insert_with(|| Family::new(name, Kind::Counter, help));
    match series(f, labels) {
        Some(s) => s.value += 1.0,
        None => f.push(labels, 1.0),
    }
}

/// Everything set so far, by name.
pub fn snapshot() -> Vec<Family> {
    table().values().cloned().collect()
}

/// Seconds since the epoch, with milliseconds: how timestamps are exposed.
pub fn epoch_seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// The OAuth2 hook: when the current token of `kind` (`"access"`, `"refresh"`) expires, or
/// `None` once there is no such token any more. Served as
/// `mailroom_auth_token_expiry_timestamp_seconds{kind}` (a timestamp, not an age, so an alert
/// can say `mailroom_auth_token_expiry_timestamp_seconds - time() < 86400`).
pub fn auth_token_expiry(kind: &str, expires_at: Option<DateTime<Utc>>) {
    const NAME: &str = "mailroom_auth_token_expiry_timestamp_seconds";
    match expires_at {
        Some(t) => set(
            NAME,
            "When the current OAuth2 token of this kind expires (seconds since the epoch).",
            &[("kind", kind)],
            epoch_seconds(t),
        ),
        None => unset(NAME, &[("kind", kind)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_are_set_replaced_and_unset_and_counters_add() {
        let expires = DateTime::from_timestamp(1_900_000_000, 500_000_000).unwrap();
        auth_token_expiry("access", Some(expires));
        auth_token_expiry("access", Some(expires + chrono::Duration::seconds(10)));
        increment("mailroom_test_total", "test", &[("result", "a")]);
        increment("mailroom_test_total", "test", &[("result", "a")]);
        let all = snapshot();
        let token = all.iter().find(|f| f.name == "mailroom_auth_token_expiry_timestamp_seconds").unwrap();
        assert_eq!(token.samples, vec![Sample { labels: vec![("kind", "access".into())], value: 1_900_000_010.5 }]);
        let counter = all.iter().find(|f| f.name == "mailroom_test_total").unwrap();
        assert_eq!((counter.kind, counter.samples[0].value), (Kind::Counter, 2.0));
        auth_token_expiry("access", None);
        let all = snapshot();
        assert!(
            all.iter().find(|f| f.name == "mailroom_auth_token_expiry_timestamp_seconds").unwrap().samples.is_empty()
        );
    }
}
