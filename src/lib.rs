//! mailroom: watches a job-application mailbox, files every candidate's documents, acknowledges.
//!
//! # Map of the crate
//!
//! The work is one pipeline, whose stage order lives in [`pipeline`]:
//!
//! ```text
//!  fetch ──▶ understand ──▶ file ──▶ acknowledge ──▶ record ══▶ (commit point) ──▶ flag on server
//!  mailbox    understand     filing    reply           store                        outbox sender ──▶ courier
//! ```
//!
//! | module | role | may touch |
//! |---|---|---|
//! | [`mailbox`] | the `Mailbox` trait (where applications arrive) and its IMAP implementation | network |
//! | [`understand`] | parse one raw message into a typed [`understand::Understood`]: candidate, posting, documents, missing kinds, robot signals | nothing (PDF text is read by a sandboxed child process of itself) |
//! | [`filing`] | write documents, the original `.eml` and `metadata.json` into the candidate's folder; safe names; atomic writes | the data root only |
//! | [`reply`] | decide whether and how to answer, render the acknowledgement from `templates/` | nothing: pure |
//! | [`store`] | the `Ledger` trait and its SQLite implementation: the commit point, high-water marks, outbox | the state file |
//! | [`courier`] | the `Courier` trait (the way out) and its SMTP implementation; the outbox sender | network |
//! | [`pipeline`] | runs the stages in order, in batches, and owns the loops of `once` and `run` | through the above |
//! | [`antivirus`] | the `Scanner` role and its clamd client (INSTREAM over a unix socket or TCP), used before filing | network |
//! | [`config`] | one serde tree: file, then `MAILROOM__SECTION__KEY` environment, validated at start | config files, password files |
//! | [`tls`] | the rustls client configuration shared by IMAP and SMTP | CA files |
//! | [`error`] | the transient/permanent split every boundary error reports | — |
//! | [`digest`] | the team's daily digest: a scheduled job beside the pipeline (DST-safe schedule, windows claimed in the store, sent through the outbox) | the store, the outbox |
//! | [`service`] | readiness, status, watchdog and progress reports (sd_notify); logging set-up | the notify socket |
//! | [`cli`] | the command line; the only place `anyhow` is used | — |
//!
//! The SQLite store is the commit point: a message's row, its documents and its outbox entry
//! commit in one transaction, together with the mailbox's high-water mark. Everything a stage does
//! before that point must be safe to do again after a crash (filing is idempotent), and nothing
//! leaves the machine before it (the courier only reads the outbox).

#![forbid(unsafe_code)]

pub mod antivirus;
pub mod cli;
pub mod config;
pub mod courier;
pub mod digest;
pub mod error;
pub mod filing;
pub mod mailbox;
pub mod pipeline;
pub mod reply;
pub mod service;
pub mod store;
pub mod tls;
pub mod understand;
