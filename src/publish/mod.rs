//! The publisher: each candidate's folder, copied to where the team already works (a Nextcloud
//! folder, or any WebDAV server), the way the outbox sender delivers mail.
//!
//! The local data root stays the truth and the store stays the commit point. The batch commit
//! queues what must appear remotely (an application's new documents, its `.eml`, the rewritten
//! `metadata.json`), and a purge or forget queues a folder's removal in the transaction that
//! deletes it locally ([`crate::store::PublishStore`] documents the queue and the removal API).
//! This loop works from the committed items:
//!
//! - a file is uploaded under a temporary name in `<root>/.mailroom-uploads/`, then moved to its
//!   name (`MOVE`, overwriting): a crash, a kill or a cut connection can leave a partial file
//!   only under a temporary name, never under a final one, and the next start sweeps those away;
//! - every upload carries its content hash (see [`webdav`]), and a committed document is uploaded
//!   only if the local file still has the bytes the store recorded;
//! - doing an item twice is harmless (same temporary name, same final name), so an item
//!   interrupted by a crash is simply done again: at least once, never a duplicate file;
//! - a transient failure (server away, quota, credentials) keeps the item waiting and pauses the
//!   publisher with exponential backoff and jitter; the status and the digest show the queue;
//!   a permanent one (the server refuses the file, the local file is gone) marks it failed and
//!   reports it;
//! - names are mapped so that Nextcloud and its clients take them ([`names`]).
//!
//! May: read the publish queue and update it, read the data root, talk to the backend. May not:
//! write the data root or decide what to publish (the pipeline does, at the commit).

pub mod names;
pub mod webdav;

pub use webdav::WebDav;

use std::cell::Cell;
use std::collections::HashSet;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use tokio::sync::{Notify, watch};

use crate::privacy::OtherCopies;

use crate::error::{Classified, Retry, backoff};
use crate::filing::{FiledApplication, METADATA_FILE};
use crate::store::{PublishFile, PublishItem, PublishOp, PublishStore, StoreError};

/// Items in flight at once (each in a different folder).
pub const CONCURRENCY: usize = 4;
/// The folder below `publish.root` where files are uploaded before they are moved to their name.
pub const STAGING: &str = ".mailroom-uploads";
const RETRY_BASE: Duration = Duration::from_secs(1);
/// One probe a minute at most while the server is away: cheap for the server, and the folders
/// appear within a minute of its return.
const RETRY_CAP: Duration = Duration::from_secs(60);
/// How often an idle publisher looks at the queue: another process (a purge) may have queued.
const IDLE_POLL: Duration = Duration::from_secs(30);

/// A backend error that knows whether trying again can help.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PublishError {
    pub retry: Retry,
    /// The parent folder does not exist (it is created and the operation tried once more).
    pub missing_parent: bool,
    /// Says the method and the status, never a path or a name.
    pub message: String,
}

impl PublishError {
    pub fn new(retry: Retry, message: String) -> PublishError {
        PublishError { retry, missing_parent: false, message }
    }

    fn missing_parent(what: &str) -> PublishError {
        PublishError {
            retry: Retry::Transient,
            missing_parent: true,
            message: format!("{what}: 409 Conflict: the parent folder is missing"),
        }
    }
}

impl Classified for PublishError {
    fn retry(&self) -> Retry {
        self.retry
    }
}

/// A path below the backend's root, one (already mapped) name per component.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemotePath(pub Vec<String>);

impl RemotePath {
    pub fn join(&self, name: &str) -> RemotePath {
        let mut parts = self.0.clone();
        parts.push(name.to_owned());
        RemotePath(parts)
    }

    fn starts_with(&self, other: &RemotePath) -> bool {
        self.0.starts_with(&other.0)
    }

    /// This path's folders from the top: `a`, `a/b`, `a/b/c`.
    fn ancestors_and_self(&self) -> impl Iterator<Item = RemotePath> + '_ {
        (1..=self.0.len()).map(|n| RemotePath(self.0[..n].to_vec()))
    }
}

/// A local file to upload, with the hashes its upload carries.
#[derive(Debug, Clone)]
pub struct Upload {
    pub local: PathBuf,
    pub size: u64,
    pub sha256: String,
    /// For `OC-Checksum`, the algorithm Nextcloud's and ownCloud's clients use.
    pub sha1: String,
}

/// Where folders are published, by role: the five operations the publisher needs.
pub trait Backend: Send + Sync {
    /// Uploads a file (replacing what is there). Its parent folder must exist.
    fn put(&self, to: &RemotePath, upload: &Upload) -> impl Future<Output = Result<(), PublishError>> + Send;
    /// Creates a folder; one that exists already is fine.
    fn mkcol(&self, path: &RemotePath) -> impl Future<Output = Result<(), PublishError>> + Send;
    /// Moves a file, replacing the destination.
    fn move_to(&self, from: &RemotePath, to: &RemotePath) -> impl Future<Output = Result<(), PublishError>> + Send;
    /// Removes a file or a folder and everything in it, for good (emptying the server's trash
    /// bin where the backend is told to); one that is gone already is fine.
    fn delete(&self, path: &RemotePath) -> impl Future<Output = Result<(), PublishError>> + Send;
    /// The names in a folder (none if it does not exist).
    fn list(&self, path: &RemotePath) -> impl Future<Output = Result<Vec<String>, PublishError>> + Send;
}

/// The files of a newly filed application to publish: its documents, its `.eml`, and the
/// folder's `metadata.json` (published as it is when its turn comes).
pub fn files_of(application: &FiledApplication) -> Vec<PublishFile> {
    let documents = application
        .documents
        .iter()
        .filter_map(|d| Some(PublishFile { name: d.filename.clone()?, sha256: Some(d.sha256.clone()) }));
    documents
        .chain([
            PublishFile { name: application.eml.clone(), sha256: Some(application.sha256.clone()) },
            PublishFile { name: METADATA_FILE.to_owned(), sha256: None },
        ])
        .collect()
}

/// What a pass (or a run) of the publisher did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PublishReport {
    pub published: usize,
    pub removed: usize,
    pub retrying: usize,
    pub failed: usize,
}

impl PublishReport {
    pub fn add(&mut self, o: PublishReport) {
        self.published += o.published;
        self.removed += o.removed;
        self.retrying += o.retrying;
        self.failed += o.failed;
    }
}

enum Settled {
    Published,
    Removed,
    Retrying,
    Failed,
    /// Not tried: the server went away during this pass.
    Skipped,
}

/// The publisher over one store, one data root and one backend.
pub struct Publisher<S, B> {
    store: S,
    backend: B,
    data_dir: PathBuf,
    root: RemotePath,
    /// Folders known to exist remotely (created, or found), so each is made once per run. Held
    /// while folders are made: two MKCOLs of one folder at once can fail (Apache answers the
    /// loser 403), and the uploads in flight often share their posting's folder.
    made: tokio::sync::Mutex<HashSet<RemotePath>>,
}

impl<S: PublishStore, B: Backend> Publisher<S, B> {
    /// `root`: `publish.root`'s components.
    pub fn new(store: S, backend: B, data_dir: impl Into<PathBuf>, root: Vec<String>) -> Publisher<S, B> {
        Publisher {
            store,
            backend,
            data_dir: data_dir.into(),
            root: RemotePath(root),
            made: tokio::sync::Mutex::new(HashSet::new()),
        }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Where a candidate folder (as the ledger keys it) is published: its names mapped.
    pub fn remote_folder(&self, folder: &str) -> RemotePath {
        let mut path = self.root.clone();
        path.0.extend(folder.split('/').filter(|c| !c.is_empty()).map(names::remote_name));
        path
    }

    /// Queues what was filed before publishing was turned on, or while it was off: the files of
    /// every candidate folder still on disk that are neither waiting nor published with the same
    /// bytes. Cheap when there is nothing to do; run at every start (so an item that failed for
    /// good is tried again after a restart).
    pub fn backfill(&self) -> Result<usize, StoreError> {
        let mut folders: Vec<(String, Vec<PublishFile>)> = Vec::new();
        for (folder, application) in self.store.filed_applications()? {
            if self.local_path(&folder, METADATA_FILE).is_err() || !self.data_dir.join(&folder).is_dir() {
                continue; // purged, or forgotten: nothing to publish
            }
            let files = files_of(&application).into_iter().filter(|f| f.sha256.is_some());
            match folders.iter_mut().find(|(f, _)| *f == folder) {
                Some((_, list)) => list.extend(files),
                None => folders.push((folder, files.collect())),
            }
        }
        for (_, files) in &mut folders {
            files.push(PublishFile { name: METADATA_FILE.to_owned(), sha256: None });
        }
        let queued = self.store.queue_backfill(&folders)?;
        if queued > 0 {
            tracing::info!(queued, "publish: queued what was filed while publishing was off");
        }
        Ok(queued)
    }

    /// Removes what an interrupted run left in the upload folder. Nothing is in flight when it
    /// runs (at start), so everything there is a leftover. Best effort: the server may be away.
    pub async fn sweep_uploads(&self) {
        let staging = self.root.join(STAGING);
        let left = match self.backend.list(&staging).await {
            Ok(left) => left,
            Err(e) => {
                tracing::debug!(error = %e, "publish: could not look for leftover uploads");
                return;
            }
        };
        for name in left {
            match self.backend.delete(&staging.join(&name)).await {
                Ok(()) => tracing::info!("publish: removed an upload an interrupted run left behind"),
                Err(e) => tracing::debug!(error = %e, "publish: could not remove a leftover upload"),
            }
        }
    }

    /// Does every item that is due, [`CONCURRENCY`] at a time, until none is left or the server
    /// goes away (then the items not tried stay due).
    pub async fn publish_due(&self) -> Result<PublishReport, StoreError> {
        let mut report = PublishReport::default();
        loop {
            let due = self.store.due_publish(Utc::now(), 64)?;
            if due.is_empty() {
                return Ok(report);
            }
            // All futures of the stream run in this one task: a Cell is enough.
            let away = Cell::new(false);
            let outcomes: Vec<Result<Settled, StoreError>> = futures::stream::iter(due)
                .map(|item| {
                    let away = &away;
                    async move {
                        if away.get() {
                            return Ok(Settled::Skipped);
                        }
                        let result = self.process(&item).await;
                        let settled = self.settle(&item, result)?;
                        if matches!(settled, Settled::Retrying) {
                            away.set(true);
                        }
                        Ok(settled)
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            for outcome in outcomes {
                match outcome? {
                    Settled::Published => report.published += 1,
                    Settled::Removed => report.removed += 1,
                    Settled::Retrying => report.retrying += 1,
                    Settled::Failed => report.failed += 1,
                    Settled::Skipped => {}
                }
            }
            if away.get() {
                return Ok(report);
            }
        }
    }

    /// Publishes until `stop` turns true: at start, queues what was filed while publishing was
    /// off ([`Publisher::backfill`]) and sweeps leftover uploads; then does what is
    /// due, and sleeps until the next item is due, a commit queues more (`ready`), or the
    /// idle poll. While the server is away it pauses with backoff and jitter and logs once per
    /// change of state. A stop cuts an upload short: it never reached its name, and is done again
    /// at the next start.
    pub async fn run(&self, ready: &Notify, mut stop: watch::Receiver<bool>) -> PublishReport {
        let mut total = PublishReport::default();
        if let Err(e) = self.backfill() {
            tracing::error!(error = %e, "publish: could not queue what was filed while publishing was off");
        }
        self.sweep_uploads().await;
        let mut streak: u32 = 0;
        loop {
            if *stop.borrow() {
                return total;
            }
            let result = tokio::select! {
                r = self.publish_due() => r,
                _ = stop.changed() => return total,
            };
            let pause = match result {
                Ok(r) if r.retrying > 0 => {
                    total.add(r);
                    streak = streak.saturating_add(1);
                    let pause = backoff(streak - 1, RETRY_BASE, RETRY_CAP);
                    if streak == 1 {
                        let why = self.store.publish_status().ok().and_then(|s| s.last_error).unwrap_or_default();
                        tracing::warn!(error = %why, "publishing paused: the server is away or refuses; retrying with backoff");
                    }
                    Some(pause)
                }
                Ok(r) => {
                    total.add(r);
                    if streak > 0 && r.published + r.removed > 0 {
                        tracing::info!(after_failures = streak, "publishing resumed");
                        streak = 0;
                    }
                    None
                }
                Err(e) => {
                    tracing::error!(error = %e, "publish: store error");
                    Some(Duration::from_secs(5))
                }
            };
            let wait = match pause {
                Some(p) => p,
                None => {
                    let next = self.store.next_publish_due().ok().flatten();
                    next.map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                        .unwrap_or(IDLE_POLL)
                        .clamp(Duration::from_millis(50), IDLE_POLL)
                }
            };
            tokio::select! {
                _ = ready.notified(), if pause.is_none() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }

    async fn process(&self, item: &PublishItem) -> Result<Settled, PublishError> {
        match &item.op {
            PublishOp::Put(file) => self.put(item, file).await.map(|()| Settled::Published),
            PublishOp::Remove => self.remove(item).await.map(|()| Settled::Removed),
        }
    }

    /// Records what became of one item, at once.
    fn settle(&self, item: &PublishItem, result: Result<Settled, PublishError>) -> Result<Settled, StoreError> {
        let op = match item.op {
            PublishOp::Put(_) => "put",
            PublishOp::Remove => "remove",
        };
        match result {
            Ok(settled) => {
                self.store.publish_done(item.id, Utc::now())?;
                tracing::info!(publish_id = item.id, op, attempt = item.attempts + 1, "published");
                Ok(settled)
            }
            Err(e) if e.is_transient() => {
                let wait = backoff(item.attempts, RETRY_BASE, RETRY_CAP);
                let next = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                self.store.publish_retry(item.id, &e.message, next)?;
                tracing::debug!(publish_id = item.id, op, attempt = item.attempts + 1, retry_in_ms = wait.as_millis() as u64, error = %e, "publishing failed; will retry");
                Ok(Settled::Retrying)
            }
            Err(e) => {
                self.store.publish_failed(item.id, &e.message, Utc::now())?;
                tracing::error!(publish_id = item.id, op, error = %e, "publishing failed for good; reported in the status and the digest");
                Ok(Settled::Failed)
            }
        }
    }

    async fn put(&self, item: &PublishItem, file: &PublishFile) -> Result<(), PublishError> {
        let local = self.local_path(&item.folder, &file.name)?;
        let upload = hash_file(local).await?;
        if let Some(expected) = &file.sha256
            && *expected != upload.sha256
        {
            return Err(PublishError::new(
                Retry::Permanent,
                format!("the local file no longer holds the bytes that were filed (SHA-256 {})", upload.sha256),
            ));
        }
        let staging_dir = self.root.join(STAGING);
        let staging = staging_dir.join(&format!("{}-{}", item.id, &upload.sha256[..16]));
        let folder = self.remote_folder(&item.folder);
        let target = folder.join(&names::remote_name(&file.name));
        self.with_parents(&staging_dir, || self.backend.put(&staging, &upload)).await?;
        self.with_parents(&folder, || self.backend.move_to(&staging, &target)).await
    }

    async fn remove(&self, item: &PublishItem) -> Result<(), PublishError> {
        let folder = self.remote_folder(&item.folder);
        self.backend.delete(&folder).await?;
        self.made.lock().await.retain(|p| !p.starts_with(&folder));
        Ok(())
    }

    /// Runs `op` once `dir` exists; if the server says a parent is missing after all (someone
    /// deleted the folder), makes `dir` again and tries once more.
    async fn with_parents<F, Fut>(&self, dir: &RemotePath, op: F) -> Result<(), PublishError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(), PublishError>>,
    {
        self.ensure(dir).await?;
        match op().await {
            Err(e) if e.missing_parent => {
                self.made.lock().await.retain(|p| !dir.starts_with(p));
                self.ensure(dir).await?;
                op().await
            }
            other => other,
        }
    }

    /// Makes `dir` and the folders above it, those not known to exist.
    async fn ensure(&self, dir: &RemotePath) -> Result<(), PublishError> {
        let mut made = self.made.lock().await;
        for path in dir.ancestors_and_self() {
            if !made.contains(&path) {
                self.backend.mkcol(&path).await?;
                made.insert(path);
            }
        }
        Ok(())
    }

    /// The local file of an item: below the data root, or refused (the store's names come from
    /// filing, which never makes others; this holds even if the state file was tampered with).
    fn local_path(&self, folder: &str, name: &str) -> Result<PathBuf, PublishError> {
        let rel = Path::new(folder).join(name);
        if rel.components().all(|c| matches!(c, Component::Normal(_))) && Path::new(name).components().count() == 1 {
            Ok(self.data_dir.join(rel))
        } else {
            Err(PublishError::new(Retry::Permanent, "a queued path leaves the data root; refused".into()))
        }
    }
}

/// Size and hashes of a local file, read in chunks on a blocking thread.
async fn hash_file(local: PathBuf) -> Result<Upload, PublishError> {
    let work = tokio::task::spawn_blocking(move || -> std::io::Result<Upload> {
        let mut file = std::fs::File::open(&local)?;
        let mut sha256 = ring::digest::Context::new(&ring::digest::SHA256);
        let mut sha1 = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
        let mut buf = vec![0u8; 64 * 1024];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            sha256.update(&buf[..n]);
            sha1.update(&buf[..n]);
            size += n as u64;
        }
        Ok(Upload { local, size, sha256: hex::encode(sha256.finish()), sha1: hex::encode(sha1.finish()) })
    });
    match work.await {
        Ok(Ok(upload)) => Ok(upload),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Err(PublishError::new(
            Retry::Permanent,
            "the local file is missing (removed by hand?); nothing to publish".into(),
        )),
        Ok(Err(e)) => Err(PublishError::new(Retry::Transient, format!("reading the local file: {}", e.kind()))),
        Err(e) => Err(PublishError::new(Retry::Transient, format!("reading the local file: {e}"))),
    }
}

#[cfg(test)]
mod tests;

/// The remote copy of a candidate folder, as a purge or an erasure sees it ([`OtherCopies`]):
/// removing it queues the remote deletion (and empties Nextcloud's trash bin of it) in the
/// publish queue, which the publisher carries out, retried until done. Queueing twice is harmless
/// (the same folder may come again after a crash); a folder never published queues nothing.
#[derive(Debug, Clone)]
pub struct PublishedCopies<S> {
    store: S,
}

impl<S: PublishStore> PublishedCopies<S> {
    pub fn new(store: S) -> PublishedCopies<S> {
        PublishedCopies { store }
    }
}

impl<S: PublishStore + Send + Sync> OtherCopies for PublishedCopies<S> {
    fn remove_copies_of(&self, folder: &str) -> Result<u64, String> {
        self.store.queue_folder_removal(folder).map(u64::from).map_err(|e| e.to_string())
    }
}
