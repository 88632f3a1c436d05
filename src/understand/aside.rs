//! Stage 2's slow lane: messages whose documents only OCR can read, understood aside.
//!
//! OCR costs about a second a page, a thousand times what the rest of understanding costs. The
//! pipeline first understands every message with a reader that will not run OCR
//! ([`super::extract::TextReader::deferring_ocr`]); a message that needed it is handed here and
//! read again, with OCR, on threads of its own, while the messages after it are filed and
//! committed. The pipeline takes each one back when it is read and files it then.
//!
//! This module only reads: what is handed here is not filed, recorded or acknowledged, and the
//! pipeline keeps the high-water mark below every message still here ([`AsideQueue::lowest`]),
//! so a crash replays exactly these. Memory stays bounded: at most `max_messages` messages and
//! `max_bytes` bytes wait here; past that [`AsideQueue::try_hand`] refuses, and the pipeline
//! drops the message's bytes and notes its UID ([`AsideQueue::leave`]): it is downloaded again
//! once the lane has room, so a backlog of scans costs memory for a few of them only. Dropping
//! the [`Aside`] (the pass ends or stops) closes the lane: nothing more is read, and what was
//! being read is dropped.
//!
//! One person's messages keep their order: a message from an address with a message still here
//! (or left) waits here behind it ([`AsideQueue::follow`]), already understood, and
//! [`AsideQueue::take`] hands nothing back before the same address's earlier messages. Otherwise
//! a cover letter sent after a scanned CV would be filed first, name the folder, and get an
//! acknowledgement that says the CV is missing.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Rules, Understood, understand};

/// One message read aside: its UID, what it is (or why reading it failed), its bytes.
pub struct ReadAside {
    pub uid: u32,
    sender: Option<String>,
    /// `Err`: understanding panicked (a bug): the message stays unfiled and is tried again.
    pub understood: Result<Understood, String>,
    pub raw: Vec<u8>,
}

struct Job {
    uid: u32,
    sender: Option<String>,
    internal_date: Option<DateTime<Utc>>,
    raw: Vec<u8>,
    rules: Arc<Rules>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    read: VecDeque<ReadAside>,
    /// Handed here and not yet taken back (the queue, the ones being read, the ones read), with
    /// the candidate's address when the message is an application.
    outstanding: BTreeMap<u32, Option<String>>,
    bytes: u64,
    /// Needed OCR (or followed one) when the lane was full: not held here, downloaded again later.
    left: BTreeMap<u32, Option<String>>,
    workers: usize,
    closed: bool,
}

struct Inner {
    state: Mutex<State>,
    changed: Condvar,
    threads: usize,
    max_messages: usize,
    max_bytes: u64,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The lane, owned by one pass; dropping it closes the lane.
pub struct Aside {
    inner: Arc<Inner>,
}

/// A handle on the lane for the batches of the pass.
#[derive(Clone)]
pub struct AsideQueue {
    inner: Arc<Inner>,
}

impl Aside {
    /// A lane read by up to `threads` threads (started when first needed), holding at most
    /// `max_messages` messages and `max_bytes` bytes.
    pub fn new(threads: usize, max_messages: usize, max_bytes: u64) -> Aside {
        Aside {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                changed: Condvar::new(),
                threads: threads.max(1),
                max_messages,
                max_bytes,
            }),
        }
    }

    pub fn queue(&self) -> AsideQueue {
        AsideQueue { inner: Arc::clone(&self.inner) }
    }

    /// Stops the lane: nothing more is read, a waiting [`AsideQueue::wait`] returns, and what
    /// is still here is dropped (never filed, so replayed by the next pass; their UIDs stay in
    /// [`AsideQueue::lowest`]).
    pub fn close(&self) {
        let mut state = self.inner.lock();
        state.closed = true;
        state.queue.clear();
        state.read.clear();
        drop(state);
        self.inner.changed.notify_all();
    }
}

impl Drop for Aside {
    fn drop(&mut self) {
        self.close();
    }
}

impl AsideQueue {
    /// Hands a message over to be read with `rules` (`sender`: the candidate's address, when the
    /// reading without OCR found an application); gives its bytes back when the lane is full or
    /// closed, or one of the sender's messages was left: the caller then
    /// [`leave`](AsideQueue::leave)s it.
    pub fn try_hand(
        &self,
        uid: u32,
        sender: Option<String>,
        internal_date: Option<DateTime<Utc>>,
        raw: Vec<u8>,
        rules: &Arc<Rules>,
    ) -> Result<(), Vec<u8>> {
        let inner = &self.inner;
        let mut state = inner.lock();
        if state.closed || inner.is_full(&state, raw.len() as u64) || state.has_left(sender.as_deref()) {
            return Err(raw);
        }
        if state.workers < inner.threads && state.workers < state.queue.len() + 1 {
            let lane = Arc::clone(inner);
            let spawned = std::thread::Builder::new().name("mailroom-ocr".into()).spawn(move || work(&lane));
            match spawned {
                Ok(_) => state.workers += 1,
                // No thread to read it: the caller leaves it for later (if no worker runs at all).
                Err(_) if state.workers == 0 => return Err(raw),
                Err(_) => {}
            }
        }
        state.bytes += raw.len() as u64;
        state.outstanding.insert(uid, sender.clone());
        state.queue.push_back(Job { uid, sender, internal_date, raw, rules: Arc::clone(rules) });
        drop(state);
        inner.changed.notify_all();
        Ok(())
    }

    /// Whether a message from `sender` must wait behind one of theirs still here (or left).
    pub fn holds(&self, sender: &str) -> bool {
        let state = self.inner.lock();
        let is = |s: &Option<String>| s.as_deref() == Some(sender);
        state.outstanding.values().any(is) || state.left.values().any(is)
    }

    /// A message understood already whose sender [`holds`](AsideQueue::holds) here: it waits
    /// here, and is handed back after that sender's earlier messages. False (and the message
    /// dropped) when [`try_hand`](AsideQueue::try_hand) would give it back.
    pub fn follow(&self, uid: u32, sender: String, understood: Understood, raw: Vec<u8>) -> bool {
        let inner = &self.inner;
        let mut state = inner.lock();
        if state.closed || inner.is_full(&state, raw.len() as u64) || state.has_left(Some(&sender)) {
            return false;
        }
        state.bytes += raw.len() as u64;
        state.outstanding.insert(uid, Some(sender.clone()));
        state.read.push_back(ReadAside { uid, sender: Some(sender), understood: Ok(understood), raw });
        drop(state);
        inner.changed.notify_all();
        true
    }

    /// A message read (or followed) since the last call, if any, and not behind an earlier one
    /// of its sender's still here; oldest read first. It is no longer here.
    pub fn take(&self) -> Option<ReadAside> {
        let mut state = self.inner.lock();
        let ready = state.first_ready()?;
        let read = state.read.remove(ready)?;
        state.outstanding.remove(&read.uid);
        state.bytes = state.bytes.saturating_sub(read.raw.len() as u64);
        Some(read)
    }

    /// Waits at most `timeout` until a message can be [`take`](AsideQueue::take)n, or none is
    /// left, or the lane is closed; whether one can.
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut state = self.inner.lock();
        loop {
            if state.closed || state.outstanding.is_empty() {
                return false;
            }
            if state.first_ready().is_some() {
                return true;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self.inner.changed.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// A message that needs OCR (or follows one) while the lane is full: its bytes are dropped,
    /// and the pass downloads it again once the lane has room ([`AsideQueue::take_left`]).
    pub fn leave(&self, uid: u32, sender: Option<String>) {
        self.inner.lock().left.insert(uid, sender);
    }

    /// The messages left since the last call; the caller downloads them again.
    pub fn take_left(&self) -> BTreeSet<u32> {
        std::mem::take(&mut self.inner.lock().left).into_keys().collect()
    }

    /// The lowest UID handed here (or left) and not taken back: the high-water mark must stay
    /// below it, also after the lane is closed (what it dropped was never filed).
    pub fn lowest(&self) -> Option<u32> {
        let state = self.inner.lock();
        [state.outstanding.keys().next(), state.left.keys().next()].into_iter().flatten().min().copied()
    }

    /// How many messages are here (queued, being read, or read and not taken back); none once
    /// the lane is closed, since none of them will come back.
    pub fn len(&self) -> usize {
        let state = self.inner.lock();
        if state.closed { 0 } else { state.outstanding.len() }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl State {
    /// Whether one of `sender`'s messages was left (to download again): their later ones must be
    /// left too, or one could be filed before it.
    fn has_left(&self, sender: Option<&str>) -> bool {
        sender.is_some_and(|sender| self.left.values().any(|s| s.as_deref() == Some(sender)))
    }

    /// The first message read that may be handed back: none of its sender's earlier messages is
    /// still here or left.
    fn first_ready(&self) -> Option<usize> {
        self.read.iter().position(|r| {
            let Some(sender) = &r.sender else { return true };
            let earlier = |(_, s): (&u32, &Option<String>)| s.as_ref() == Some(sender);
            !(self.outstanding.range(..r.uid).any(earlier) || self.left.range(..r.uid).any(earlier))
        })
    }
}

impl Inner {
    /// No room for `size` more bytes or one more message (one message always fits an empty lane).
    fn is_full(&self, state: &State, size: u64) -> bool {
        state.outstanding.len() >= self.max_messages
            || (!state.outstanding.is_empty() && state.bytes + size > self.max_bytes)
    }
}

fn work(lane: &Inner) {
    loop {
        let job = {
            let mut state = lane.lock();
            loop {
                if state.closed {
                    state.workers -= 1;
                    return;
                }
                if let Some(job) = state.queue.pop_front() {
                    break job;
                }
                state = lane.changed.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        };
        let Job { uid, sender, internal_date, raw, rules } = job;
        let understood =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| understand(&raw, internal_date, &rules))).map_err(
                |p| {
                    p.downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "understanding panicked".into())
                },
            );
        let mut state = lane.lock();
        if state.closed {
            state.workers -= 1;
            return;
        }
        state.read.push_back(ReadAside { uid, sender, understood, raw });
        drop(state);
        lane.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::Lang;

    fn rules() -> Arc<Rules> {
        Arc::new(Rules {
            postings: Vec::new(),
            limits: Default::default(),
            default_language: Lang::Fr,
            own_addresses: Vec::new(),
            text: super::super::extract::TextReader::with_program(None),
        })
    }

    fn message(from: &str) -> Vec<u8> {
        format!("From: {from}\r\nReturn-Path: <{from}>\r\nSubject: Candidature\r\n\r\nBonjour\r\n").into_bytes()
    }

    /// Takes everything the lane hands back, waiting for it (deadline 30 s).
    fn drain(queue: &AsideQueue) -> Vec<u32> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut out = Vec::new();
        while !queue.is_empty() {
            assert!(std::time::Instant::now() < deadline, "still here: {}", queue.len());
            queue.wait(Duration::from_millis(100));
            while let Some(r) = queue.take() {
                assert!(r.understood.is_ok());
                out.push(r.uid);
            }
        }
        out
    }

    #[test]
    fn a_follower_comes_back_after_its_senders_earlier_message() {
        let aside = Aside::new(1, 16, 1 << 20);
        let queue = aside.queue();
        let rules = rules();
        queue.try_hand(1, Some("a@example.test".into()), None, message("a@example.test"), &rules).unwrap();
        assert!(queue.holds("a@example.test"));
        assert!(!queue.holds("b@example.test"));
        let understood = understand(&message("a@example.test"), None, &rules);
        // Queued at once as read, yet never handed back before UID 1.
        assert!(queue.follow(2, "a@example.test".into(), understood, message("a@example.test")));
        assert_eq!(queue.lowest(), Some(1));
        assert_eq!(drain(&queue), vec![1, 2]);
        assert_eq!(queue.lowest(), None);
    }

    #[test]
    fn a_full_lane_refuses_and_a_left_sender_stays_left() {
        let aside = Aside::new(1, 1, 1 << 20);
        let queue = aside.queue();
        let rules = rules();
        queue.try_hand(1, Some("a@example.test".into()), None, message("a@example.test"), &rules).unwrap();
        // Full (one message): the next is given back, and noted as left.
        let back = queue.try_hand(2, Some("b@example.test".into()), None, message("b@example.test"), &rules);
        assert!(back.is_err());
        queue.leave(2, Some("b@example.test".into()));
        assert_eq!(drain(&queue), vec![1]);
        // Room again, but b's UID 2 is still left: b's UID 3 may not overtake it.
        let back = queue.try_hand(3, Some("b@example.test".into()), None, message("b@example.test"), &rules);
        assert!(back.is_err(), "a later message of a sender with one left is left too");
        let understood = understand(&message("b@example.test"), None, &rules);
        assert!(!queue.follow(3, "b@example.test".into(), understood, message("b@example.test")));
        queue.leave(3, Some("b@example.test".into()));
        assert_eq!(queue.lowest(), Some(2), "the mark stays below what was left");
        assert_eq!(queue.take_left().into_iter().collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(queue.lowest(), None);
    }

    #[test]
    fn closing_drops_what_is_here_but_the_mark_stays_below_it() {
        let aside = Aside::new(1, 16, 1 << 20);
        let queue = aside.queue();
        queue.try_hand(5, None, None, message("c@example.test"), &rules()).unwrap();
        drop(aside);
        assert!(queue.take().is_none());
        assert!(!queue.wait(Duration::from_secs(5)), "a closed lane does not keep a waiter");
        assert_eq!(queue.lowest(), Some(5), "never filed, so replayed by the next pass");
        assert!(queue.try_hand(6, None, None, message("c@example.test"), &rules()).is_err());
    }
}
