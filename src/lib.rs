//! mailroom: watches a job-application mailbox, files every candidate's documents, acknowledges.
//!
//! # Map of the crate
//!
//! The work is one pipeline, whose stage order lives in [`pipeline`]; the loops that drive it
//! live in [`daemon`], and the jobs beside it (the digest) are fired by [`schedule`]:
//!
//! ```text
//!  fetch ──▶ understand ──▶ file ──▶ acknowledge ──▶ record ══▶ (commit point) ──▶ flag on server
//!  mailbox    understand     filing    reply           store                        outbox ──▶ courier
//!                                                        ▲                          publish ──▶ WebDAV
//!  schedule ──▶ digest ───────────────────────────────────┘ (claims a window with its mail)
//!  schedule ──▶ privacy ──▶ purge: folder, other copies, rows, mailbox (recorded first, resumable)
//! ```
//!
//! Modules import only upward in this table: each may use the ones listed before it, never one
//! after it (so a stage never reaches into a later stage), and nothing imports [`app`] or
//! [`cli`]. `python3 ../shared/tools/modgraph.py src` checks there is no cycle, and
//! `tests/layers.rs` that every `crate::` path points up the table.
//!
//! | module | role | may touch |
//! |---|---|---|
//! | **vocabulary and plumbing** | | |
//! | [`gauges`] | values only the running daemon knows (start, reloads, OAuth2 token expiry), for [`metrics`]; anyone may set one | — |
//! | [`error`] | the transient/permanent split every boundary error reports; backoff | — |
//! | [`lang`] | the languages we write in: `Lang`, a posting's `PostingLang`, detection | — |
//! | [`mail`] | an outgoing mail as data: `OutgoingMail`, `MailKind`, `ReplyKind` | — |
//! | [`reason`] | why things happened, typed: quarantine, robot, reply-skip reasons, in both languages | — |
//! | [`provider`] | the mail providers known by name (hosts, ports, endpoints, scopes) and the OAuth2 flows | — |
//! | [`schedule`] | cron in the organisation's zone, and the timer (tokio-cron-scheduler) that fires jobs | the clock |
//! | [`tls`] | the rustls client configuration shared by IMAP and SMTP | CA files |
//! | [`config`] | one serde tree: file, then `MAILROOM__SECTION__KEY` environment, validated at start | config and password files |
//! | [`render`] | the template set shared by replies and the digest | the override directory |
//! | [`memory`] | freed memory given back to the system after work (glibc's `malloc_trim`, through the `mailroom-trim` crate) | its own process |
//! | [`service`] | readiness, status, watchdog, progress (the `Monitor` trait); logging set-up | the notify socket |
//! | [`auth`] | credentials for IMAP and SMTP: passwords, OAuth2 tokens (flows, the token file, SASL), the auth state | the identity provider, the token directory |
//! | **the stages, in order** | | |
//! | [`mailbox`] | 1 fetch: the `Mailbox` trait (where applications arrive) and its IMAP implementation | network |
//! | [`understand`] | 2 understand: one raw message to a typed `Understood` | nothing (PDF text is read by a sandboxed child process) |
//! | [`antivirus`] | between 2 and 3: the `Scanner` role and its clamd client (INSTREAM over a unix socket or TCP): documents are scanned before they are filed | network |
//! | [`filing`] | 3 file: documents, the original `.eml` and `metadata.json` in the candidate's folder | the data root only |
//! | [`reply`] | 4 acknowledge: decide whether and how to answer, render the reply | nothing: pure |
//! | [`store`] | 5 record: all SQL, behind the `Store` handle; `Ledger`, `OutboxStore`, `DigestStore`, `PrivacyStore` by role | the state file |
//! | **privacy, beside the stages** | | |
//! | [`privacy`] | the retention policy; the purge (scheduled, and on demand), erasure, export; crash-safe, every copy | the store, the data root, the mailbox (the recorded messages only) |
//! | **after the commit point, and around the stages** | | |
//! | [`courier`] | the `Courier` trait (the way out) and its SMTP implementation | network |
//! | [`outbox`] | the outbox sender: committed mail to the courier, at most once | the store, the courier |
//! | [`recovery`] | after a crash: acknowledgements caught mid-send, looked for in the Sent folder | the store, the mailbox (reading) |
//! | [`publish`] | the publisher: committed folders to the team's cloud (WebDAV: Nextcloud…), in order, retried; the `Backend` trait; names that survive the trip | the publish queue, the data root (read only), network |
//! | [`pipeline`] | the stage order, in batches: one function per stage | through the above |
//! | [`digest`] | the team's daily digest: a scheduled job beside the pipeline | the store, the outbox |
//! | [`metrics`] | the opt-in Prometheus endpoint: the store's totals and the gauges, at each scrape | its one listening socket, the store (read) |
//! | [`reload`] | SIGHUP: the configuration and templates read again, swapped between batches, or refused with the key named | the config file, the templates |
//! | [`daemon`] | the `once` and `run` loops: reconnection, watchdog, status line | through the pipeline |
//! | [`connect`] | `check-config --connect` and `auth login`: real logins, said so an admin can act | network, the token directory |
//! | [`inspect`] | what the daemon would do with one message, from the daemon's own functions | — |
//! | [`manpages`] | man pages and shell completions from the CLI definition (hidden `__generate-docs`, for the .deb) | the output folder |
//! | [`app`] | wiring: each command built from the parts | everything, through the parts |
//! | [`cli`] | the command line: arguments, exit codes; with `app`, the only user of `anyhow` | — |
//!
//! The SQLite store is the commit point: a message's row, its documents and its outbox entry
//! commit in one transaction, together with the mailbox's high-water mark. Everything a stage does
//! before that point must be safe to do again after a crash (filing is idempotent), and nothing
//! leaves the machine before it (the courier only ever sends what the outbox hands it).

#![forbid(unsafe_code)]

pub mod antivirus;
pub(crate) mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub(crate) mod connect;
pub mod courier;
pub mod daemon;
pub mod digest;
pub mod error;
pub mod filing;
pub mod gauges;
pub(crate) mod inspect;
pub mod lang;
pub mod mail;
pub mod mailbox;
pub(crate) mod manpages;
pub mod memory;
pub mod metrics;
pub mod outbox;
pub mod pipeline;
pub mod privacy;
pub mod provider;
pub mod publish;
pub mod reason;
pub mod recovery;
pub mod reload;
pub(crate) mod render;
pub mod reply;
pub mod schedule;
pub mod service;
pub mod store;
pub(crate) mod tls;
pub mod understand;
