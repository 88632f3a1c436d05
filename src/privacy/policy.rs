//! The retention rules: until when each person is kept, and why.
//!
//! A candidate's applications are each kept for their posting's period (`retention_months`, or
//! the posting's own), counted from the posting's closing date, or from the application itself
//! when the posting has none or it came in after the closing date. A person is kept until the
//! last of their applications' windows ends: a newer application keeps the older ones with it.
//! A candidate who consented to be kept is kept at least `consent_retention_months` after the
//! last contact (their last application, or the consent itself). A held person is never purged.

use std::collections::HashMap;

use chrono::{DateTime, Months, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::config::{Config, PurgeMailbox};
use crate::lang::Lang;
use crate::render::format_date;
use crate::store::PersonRow;

/// The retention policy, read from the configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    default_months: u32,
    pub consent_months: u32,
    /// Per posting: its closing date and its own period.
    postings: HashMap<String, (Option<NaiveDate>, Option<u32>)>,
    tz: Tz,
    pub quarantine_days: u32,
    pub history_days: u32,
    pub audit_days: u32,
    pub announce_days: u32,
    pub mailbox: PurgeMailbox,
}

/// What keeps a person until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Rule {
    /// `months` after the posting's closing date.
    ClosingDate { posting: String, closing_date: NaiveDate, months: u32 },
    /// `months` after this application (the posting has no closing date, or it came in after it).
    Application { posting: String, received_at: DateTime<Utc>, months: u32 },
    /// `months` after the last contact, by consent.
    Consent { last_contact: DateTime<Utc>, months: u32 },
}

/// Until when a person is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "keep", rename_all = "snake_case")]
pub enum Keep {
    /// Exempt from purges until released.
    Held { reason: String, since: DateTime<Utc> },
    /// Purged at the first purge after `until`.
    Until { until: DateTime<Utc>, rule: Rule },
}

impl Keep {
    /// The instant the person becomes due, if they ever do.
    pub fn until(&self) -> Option<DateTime<Utc>> {
        match self {
            Keep::Held { .. } => None,
            Keep::Until { until, .. } => Some(*until),
        }
    }

    /// Said for a person (the export's summary, `candidate show`), dates in the organisation's zone.
    pub fn describe(&self, lang: Lang, tz: Tz) -> String {
        let day = |t: DateTime<Utc>| format_date(t.with_timezone(&tz).date_naive(), lang);
        match (self, lang) {
            (Keep::Held { reason, since }, Lang::Fr) => {
                format!(
                    "sont conservées tant que dure la suspension des suppressions (depuis le {}, motif : {reason})",
                    day(*since)
                )
            }
            (Keep::Held { reason, since }, Lang::En) => {
                format!("is kept for as long as the hold lasts (since {}, reason: {reason})", day(*since))
            }
            (Keep::Until { until, rule }, _) => {
                let why = match (rule, lang) {
                    (Rule::ClosingDate { posting, closing_date, months }, Lang::Fr) => format!(
                        "{months} mois après la clôture de l'offre « {posting} » le {}",
                        format_date(*closing_date, lang)
                    ),
                    (Rule::ClosingDate { posting, closing_date, months }, Lang::En) => format!(
                        "{months} month{} after the posting {posting} closed on {}",
                        plural(*months),
                        format_date(*closing_date, lang)
                    ),
                    (Rule::Application { posting, received_at, months }, Lang::Fr) => {
                        format!("{months} mois après la candidature du {} à l'offre « {posting} »", day(*received_at))
                    }
                    (Rule::Application { posting, received_at, months }, Lang::En) => format!(
                        "{months} month{} after the application of {} to {posting}",
                        plural(*months),
                        day(*received_at)
                    ),
                    (Rule::Consent { last_contact, months }, Lang::Fr) => {
                        format!("{months} mois après le dernier contact, le {}, avec votre accord", day(*last_contact))
                    }
                    (Rule::Consent { last_contact, months }, Lang::En) => format!(
                        "{months} month{} after the last contact on {}, with your consent",
                        plural(*months),
                        day(*last_contact)
                    ),
                };
                match lang {
                    Lang::Fr => format!("seront supprimées le {} ({why})", day(*until)),
                    Lang::En => format!("will be deleted on {} ({why})", day(*until)),
                }
            }
        }
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

impl Policy {
    pub fn from_config(cfg: &Config) -> Policy {
        Policy {
            default_months: cfg.privacy.retention_months,
            consent_months: cfg.privacy.consent_retention_months,
            postings: cfg.postings.iter().map(|p| (p.slug.clone(), (p.closing_date, p.retention_months))).collect(),
            tz: cfg.identity.timezone(),
            quarantine_days: cfg.privacy.quarantine_days,
            history_days: cfg.privacy.history_days,
            audit_days: cfg.privacy.audit_days,
            announce_days: cfg.privacy.announce_days,
            mailbox: cfg.privacy.purge_mailbox.clone(),
        }
    }

    /// The period of a posting's candidates, in months.
    pub fn months_for(&self, posting: &str) -> u32 {
        self.postings.get(posting).and_then(|(_, m)| *m).unwrap_or(self.default_months)
    }

    /// The default period (the one the notice names for a posting without its own).
    pub fn default_months(&self) -> u32 {
        self.default_months
    }

    /// The end of a closing day, in the organisation's zone: the posting is open all that day.
    fn end_of(&self, day: NaiveDate) -> DateTime<Utc> {
        let next = day.succ_opt().unwrap_or(day).and_hms_opt(0, 0, 0).unwrap_or_default();
        self.tz.from_local_datetime(&next).earliest().map(|t| t.with_timezone(&Utc)).unwrap_or_else(|| next.and_utc())
    }

    /// Until when this person is kept, and by which rule.
    pub fn keep(&self, p: &PersonRow) -> Keep {
        if let Some(hold) = &p.hold {
            return Keep::Held { reason: hold.reason.clone(), since: hold.at };
        }
        let mut best: Option<(DateTime<Utc>, Rule)> = None;
        let mut consider = |until: DateTime<Utc>, rule: Rule| {
            if best.as_ref().is_none_or(|(b, _)| until > *b) {
                best = Some((until, rule));
            }
        };
        for a in &p.applications {
            let months = self.months_for(&a.posting);
            let closing = self.postings.get(&a.posting).and_then(|(d, _)| *d);
            let (start, rule) = match closing {
                Some(day) if self.end_of(day) >= a.received_at => {
                    (self.end_of(day), Rule::ClosingDate { posting: a.posting.clone(), closing_date: day, months })
                }
                _ => (
                    a.received_at,
                    Rule::Application { posting: a.posting.clone(), received_at: a.received_at, months },
                ),
            };
            consider(add_months(start, months), rule);
        }
        if let Some(consent) = p.consent_at {
            let last_contact = p.last_application().map_or(consent, |l| l.max(consent));
            consider(
                add_months(last_contact, self.consent_months),
                Rule::Consent { last_contact, months: self.consent_months },
            );
        }
        match best {
            Some((until, rule)) => Keep::Until { until, rule },
            // Nobody without an application is listed; should one be, they are due at once.
            None => Keep::Until {
                until: DateTime::<Utc>::MIN_UTC,
                rule: Rule::Application { posting: String::new(), received_at: DateTime::<Utc>::MIN_UTC, months: 0 },
            },
        }
    }

    /// Whether this person is due for purge at `now`.
    pub fn is_due(&self, p: &PersonRow, now: DateTime<Utc>) -> bool {
        self.keep(p).until().is_some_and(|until| until <= now)
    }

    /// The people due for purge at `now`.
    pub fn due<'a>(&self, people: &'a [PersonRow], now: DateTime<Utc>) -> Vec<&'a PersonRow> {
        people.iter().filter(|p| self.is_due(p, now)).collect()
    }

    /// The people who become due after `now` and by `now + days`, soonest first.
    pub fn upcoming(&self, people: &[PersonRow], now: DateTime<Utc>, days: u32) -> Vec<(PersonRow, DateTime<Utc>)> {
        let horizon = now + chrono::Duration::days(days.into());
        let mut out: Vec<(PersonRow, DateTime<Utc>)> = people
            .iter()
            .filter_map(|p| {
                let until = self.keep(p).until()?;
                (until > now && until <= horizon).then(|| (p.clone(), until))
            })
            .collect();
        out.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.address.cmp(&b.0.address)));
        out
    }

    /// A bound for reading fewer people than everyone on file: whoever becomes due by `now +
    /// days` received their last application at or before it. Each application keeps its person
    /// at least the shortest period of any posting after it came in (a closing date or a consent
    /// only keeps them longer), and `months` calendar months are at least `28 × months` days. The
    /// decision stays [`Policy::upcoming`]'s: the bound only narrows what it is given.
    pub fn upcoming_bound(&self, now: DateTime<Utc>, days: u32) -> DateTime<Utc> {
        let months = self.postings.values().filter_map(|(_, m)| *m).fold(self.default_months, u32::min);
        let ahead = i64::from(days) - 28 * i64::from(months);
        chrono::Duration::try_days(ahead).and_then(|d| now.checked_add_signed(d)).unwrap_or(if ahead > 0 {
            DateTime::<Utc>::MAX_UTC
        } else {
            DateTime::<Utc>::MIN_UTC
        })
    }

    /// The organisation's zone, for showing dates.
    pub fn timezone(&self) -> Tz {
        self.tz
    }
}

/// `t` plus whole calendar months (the 31st becomes the month's last day).
pub fn add_months(t: DateTime<Utc>, months: u32) -> DateTime<Utc> {
    t.checked_add_months(Months::new(months)).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AppRow, Hold};

    fn cfg(extra: &str) -> Config {
        let toml = format!(
            r#"
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
organisation = "Org"
timezone = "Europe/Paris"
{extra}
[[postings]]
slug = "open"
title = "Open"
[[postings]]
slug = "closed"
title = "Closed"
closing_date = "2026-03-31"
[[postings]]
slug = "long"
title = "Long"
retention_months = 6
"#
        );
        Config::from_toml(&toml, std::path::Path::new("."), std::iter::empty()).unwrap()
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn person(apps: &[(&str, &str)]) -> PersonRow {
        PersonRow {
            address: "jeanne@example.test".into(),
            name: "Jeanne".into(),
            consent_at: None,
            hold: None,
            applications: apps
                .iter()
                .enumerate()
                .map(|(i, (posting, at))| AppRow {
                    id: i as i64 + 1,
                    posting: (*posting).into(),
                    folder: format!("{posting}/Jeanne--00000000"),
                    received_at: t(at),
                    documents: 1,
                })
                .collect(),
        }
    }

    #[test]
    fn counted_from_the_last_application_without_a_closing_date() {
        let policy = Policy::from_config(&cfg(""));
        let p = person(&[("open", "2026-01-10T09:00:00Z")]);
        assert_eq!(policy.keep(&p).until(), Some(t("2026-04-10T09:00:00Z")));
        assert!(!policy.is_due(&p, t("2026-04-10T08:59:59Z")));
        assert!(policy.is_due(&p, t("2026-04-10T09:00:00Z")));
        // The 31st plus three months is the last day of June, not July the 1st.
        let p = person(&[("open", "2026-03-31T12:00:00Z")]);
        assert_eq!(policy.keep(&p).until(), Some(t("2026-06-30T12:00:00Z")));
    }

    #[test]
    fn counted_from_the_end_of_the_closing_day_in_the_organisations_zone() {
        let policy = Policy::from_config(&cfg(""));
        let p = person(&[("closed", "2026-02-01T10:00:00Z")]);
        // 2026-04-01 00:00 in Paris (summer time) is 2026-03-31 22:00 UTC; plus 3 months.
        assert_eq!(policy.keep(&p).until(), Some(t("2026-06-30T22:00:00Z")));
        assert!(matches!(policy.keep(&p), Keep::Until { rule: Rule::ClosingDate { .. }, .. }));
        // Late: after the closing date, the application itself counts.
        let late = person(&[("closed", "2026-05-02T10:00:00Z")]);
        assert_eq!(policy.keep(&late).until(), Some(t("2026-08-02T10:00:00Z")));
    }

    #[test]
    fn a_newer_application_keeps_the_person_and_a_posting_may_keep_longer() {
        let policy = Policy::from_config(&cfg(""));
        let p = person(&[("open", "2025-01-10T09:00:00Z"), ("open", "2026-01-10T09:00:00Z")]);
        assert!(!policy.is_due(&p, t("2026-02-01T00:00:00Z")), "the newer application is inside its window");
        let p = person(&[("open", "2026-01-10T09:00:00Z"), ("long", "2026-01-01T09:00:00Z")]);
        assert_eq!(policy.keep(&p).until(), Some(t("2026-07-01T09:00:00Z")));
    }

    #[test]
    fn consent_keeps_longer_from_the_last_contact_and_a_hold_for_ever() {
        let policy = Policy::from_config(&cfg("[privacy]\nconsent_retention_months = 24\n"));
        let mut p = person(&[("open", "2026-01-10T09:00:00Z")]);
        p.consent_at = Some(t("2026-03-01T00:00:00Z"));
        assert_eq!(policy.keep(&p).until(), Some(t("2028-03-01T00:00:00Z")));
        p.hold = Some(Hold { reason: "hired".into(), at: t("2026-03-02T00:00:00Z") });
        assert_eq!(policy.keep(&p).until(), None);
        assert!(!policy.is_due(&p, t("2099-01-01T00:00:00Z")));
    }

    #[test]
    fn upcoming_lists_who_becomes_due_within_the_days_soonest_first() {
        let policy = Policy::from_config(&cfg(""));
        let mut a = person(&[("open", "2026-01-10T09:00:00Z")]);
        a.address = "a@example.test".into();
        let mut b = person(&[("open", "2026-01-05T09:00:00Z")]);
        b.address = "b@example.test".into();
        let mut gone = person(&[("open", "2025-01-05T09:00:00Z")]);
        gone.address = "gone@example.test".into();
        let people = vec![a, b, gone];
        let soon = policy.upcoming(&people, t("2026-04-04T00:00:00Z"), 7);
        let who: Vec<&str> = soon.iter().map(|(p, _)| p.address.as_str()).collect();
        assert_eq!(who, ["b@example.test", "a@example.test"]);
        assert_eq!(policy.due(&people, t("2026-04-04T00:00:00Z")).len(), 1);
    }

    #[test]
    fn a_month_is_at_least_28_days_so_the_upcoming_bound_never_leaves_anyone_out() {
        // Every day of four years (two leap days, every month end clamped), 0 to 30 months on.
        let mut day = t("2025-01-01T12:34:56Z");
        while day < t("2029-01-01T00:00:00Z") {
            for months in 0..=30u32 {
                assert!(
                    add_months(day, months) >= day + chrono::Duration::days(28 * i64::from(months)),
                    "{day} {months}"
                );
            }
            day += chrono::Duration::days(1);
        }
        // The shortest period of any posting bounds: here the default 3 months (84 days).
        let policy = Policy::from_config(&cfg(""));
        let now = t("2026-04-04T00:00:00Z");
        assert_eq!(policy.upcoming_bound(now, 7), now - chrono::Duration::days(84 - 7));
        // Whoever is upcoming applied last at or before the bound, whatever their postings, a
        // closing date or a consent.
        let mut people = Vec::new();
        for (i, posting) in ["open", "closed", "long"].iter().enumerate() {
            for d in 0..200 {
                let mut p = person(&[(posting, "2025-09-01T09:00:00Z")]);
                p.applications[0].received_at += chrono::Duration::days(d);
                p.address = format!("{i}-{d}@example.test");
                if d % 3 == 0 {
                    p.consent_at = Some(p.applications[0].received_at - chrono::Duration::days(700));
                }
                people.push(p);
            }
        }
        for days in [1, 7, 30] {
            let bound = policy.upcoming_bound(now, days);
            let soon = policy.upcoming(&people, now, days);
            assert!(!soon.is_empty());
            assert!(soon.iter().all(|(p, _)| p.last_application().unwrap() <= bound), "{days}");
        }
        // A huge default never panics; the posting with its own 6 months is then the shortest.
        let huge = Policy::from_config(&cfg(
            "[privacy]\nretention_months = 4000000000\nconsent_retention_months = 4000000000\n",
        ));
        assert_eq!(huge.upcoming_bound(now, 7), now - chrono::Duration::days(6 * 28 - 7));
    }
}
