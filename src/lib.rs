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
//! | [`error`] | the transient/permanent split every boundary error reports; backoff | — |
//! | [`lang`] | the languages we write in: `Lang`, a posting's `PostingLang`, detection | — |
//! | [`mail`] | an outgoing mail as data: `OutgoingMail`, `MailKind`, `ReplyKind` | — |
//! | [`reason`] | why things happened, typed: quarantine, robot, reply-skip reasons, in both languages | — |
//! | [`schedule`] | cron in the organisation's zone, and the timer (tokio-cron-scheduler) that fires jobs | the clock |
//! | [`tls`] | the rustls client configuration shared by IMAP and SMTP | CA files |
//! | [`config`] | one serde tree: file, then `MAILROOM__SECTION__KEY` environment, validated at start | config and password files |
//! | [`render`] | the template set shared by replies and the digest | the override directory |
//! | [`service`] | readiness, status, watchdog, progress (the `Monitor` trait); logging set-up | the notify socket |
//! | **the stages, in order** | | |
//! | [`mailbox`] | 1 fetch: the `Mailbox` trait (where applications arrive) and its IMAP implementation | network |
//! | [`understand`] | 2 understand: one raw message to a typed `Understood` | nothing (PDF text is read by a sandboxed child process) |
//! | [`filing`] | 3 file: documents, the original `.eml` and `metadata.json` in the candidate's folder | the data root only |
//! | [`reply`] | 4 acknowledge: decide whether and how to answer, render the reply | nothing: pure |
//! | [`store`] | 5 record: all SQL, behind the `Store` handle; `Ledger`, `OutboxStore`, `DigestStore` by role | the state file |
//! | **after the commit point, and around the stages** | | |
//! | [`courier`] | the `Courier` trait (the way out) and its SMTP implementation | network |
//! | [`outbox`] | the outbox sender: committed mail to the courier, at most once | the store, the courier |
//! | [`publish`] | the publisher: committed folders to the team's cloud (WebDAV: Nextcloud…), in order, retried; the `Backend` trait; names that survive the trip | the publish queue, the data root (read only), network |
//! | [`pipeline`] | the stage order, in batches: one function per stage | through the above |
//! | [`digest`] | the team's daily digest: a scheduled job beside the pipeline | the store, the outbox |
//! | [`daemon`] | the `once` and `run` loops: reconnection, watchdog, status line | through the pipeline |
//! | [`inspect`] | what the daemon would do with one message, from the daemon's own functions | — |
//! | [`app`] | wiring: each command built from the parts | everything, through the parts |
//! | [`cli`] | the command line: arguments, exit codes; with `app`, the only user of `anyhow` | — |
//!
//! The SQLite store is the commit point: a message's row, its documents and its outbox entry
//! commit in one transaction, together with the mailbox's high-water mark. Everything a stage does
//! before that point must be safe to do again after a crash (filing is idempotent), and nothing
//! leaves the machine before it (the courier only ever sends what the outbox hands it).

#![forbid(unsafe_code)]

pub(crate) mod app;
pub mod cli;
pub mod config;
pub mod courier;
pub mod daemon;
pub mod digest;
pub mod error;
pub mod filing;
pub(crate) mod inspect;
pub mod lang;
pub mod mail;
pub mod mailbox;
pub mod outbox;
pub mod pipeline;
pub mod publish;
pub mod reason;
pub(crate) mod render;
pub mod reply;
pub mod schedule;
pub mod service;
pub mod store;
pub(crate) mod tls;
pub mod understand;
