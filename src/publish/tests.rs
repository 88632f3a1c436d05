//! The publisher on a fake backend (an in-memory WebDAV tree) and the real store: order,
//! idempotence, temporary names, failures. tests/publish.rs repeats the paths that matter on the
//! real WebDAV server.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use super::*;
use crate::store::Store;

/// An in-memory WebDAV tree that checks what a real server checks (parents exist) and can be
/// told to fail.
#[derive(Default)]
struct Fake {
    files: Mutex<BTreeMap<Vec<String>, Vec<u8>>>,
    dirs: Mutex<BTreeSet<Vec<String>>>,
    /// Every operation, in order: ("PUT", path).
    log: Mutex<Vec<(&'static str, String)>>,
    /// The next operations fail with this status class.
    fail: Mutex<Option<(Retry, usize)>>,
}

impl Fake {
    fn record(&self, op: &'static str, path: &RemotePath) -> Result<(), PublishError> {
        self.log.lock().unwrap().push((op, path.0.join("/")));
        let mut fail = self.fail.lock().unwrap();
        if let Some((retry, left)) = fail.as_mut() {
            let retry = *retry;
            *left -= 1;
            if *left == 0 {
                *fail = None;
            }
            return Err(PublishError::new(retry, format!("{op}: injected")));
        }
        Ok(())
    }

    fn parent_exists(&self, path: &RemotePath) -> bool {
        let parent = &path.0[..path.0.len() - 1];
        parent.is_empty() || self.dirs.lock().unwrap().contains(parent)
    }

    fn file(&self, path: &str) -> Option<Vec<u8>> {
        self.files.lock().unwrap().get(&path.split('/').map(str::to_owned).collect::<Vec<_>>()).cloned()
    }

    fn names(&self) -> Vec<String> {
        self.files.lock().unwrap().keys().map(|k| k.join("/")).collect()
    }

    fn ops(&self, op: &str) -> usize {
        self.log.lock().unwrap().iter().filter(|(o, _)| *o == op).count()
    }
}

impl Backend for Fake {
    async fn put(&self, to: &RemotePath, upload: &Upload) -> Result<(), PublishError> {
        self.record("PUT", to)?;
        if !self.parent_exists(to) {
            return Err(PublishError::missing_parent("PUT"));
        }
        self.files.lock().unwrap().insert(to.0.clone(), std::fs::read(&upload.local).unwrap());
        Ok(())
    }
    async fn mkcol(&self, path: &RemotePath) -> Result<(), PublishError> {
        self.record("MKCOL", path)?;
        if !self.parent_exists(path) {
            return Err(PublishError::missing_parent("MKCOL"));
        }
        self.dirs.lock().unwrap().insert(path.0.clone());
        Ok(())
    }
    async fn move_to(&self, from: &RemotePath, to: &RemotePath) -> Result<(), PublishError> {
        self.record("MOVE", from)?;
        if !self.parent_exists(to) {
            return Err(PublishError::missing_parent("MOVE"));
        }
        let bytes = self.files.lock().unwrap().remove(&from.0).expect("moving a file that was uploaded");
        self.files.lock().unwrap().insert(to.0.clone(), bytes);
        Ok(())
    }
    async fn delete(&self, path: &RemotePath) -> Result<(), PublishError> {
        self.record("DELETE", path)?;
        self.files.lock().unwrap().retain(|k, _| !k.starts_with(&path.0));
        self.dirs.lock().unwrap().retain(|k| !k.starts_with(&path.0));
        Ok(())
    }
    async fn list(&self, path: &RemotePath) -> Result<Vec<String>, PublishError> {
        self.record("PROPFIND", path)?;
        let files = self.files.lock().unwrap();
        Ok(files
            .keys()
            .filter(|k| k.len() == path.0.len() + 1 && k.starts_with(&path.0))
            .map(|k| k[path.0.len()].clone())
            .collect())
    }
}

struct World {
    dir: tempfile::TempDir,
    store: Store,
    publisher: Publisher<Store, Fake>,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state.sqlite3")).unwrap();
    let publisher = Publisher::new(store.clone(), Fake::default(), dir.path().join("data"), vec!["Recrutement".into()]);
    World { dir, store, publisher }
}

impl World {
    /// Files a file locally and queues it as the batch commit would.
    fn file(&self, folder: &str, name: &str, bytes: &[u8], hashed: bool) {
        let path = self.dir.path().join("data").join(folder);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join(name), bytes).unwrap();
        let sha = hashed.then(|| crate::understand::sha256_hex(bytes));
        self.store.queue_for_test(folder, &PublishFile { name: name.into(), sha256: sha }).unwrap();
    }

    fn fake(&self) -> &Fake {
        self.publisher.backend()
    }
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

#[test]
fn a_folder_appears_under_its_names_through_temporary_uploads() {
    let w = world();
    w.file("stage/Dupré-Jeanne--1a2b3c4d", "CV - Jeanne Dupré.pdf", b"%PDF cv", true);
    w.file("stage/Dupré-Jeanne--1a2b3c4d", "desktop.ini", b"[x]", true);
    w.file("stage/Dupré-Jeanne--1a2b3c4d", "metadata.json", b"{\"v\":1}", false);
    let report = block_on(w.publisher.publish_due()).unwrap();
    assert_eq!(report, PublishReport { published: 3, ..Default::default() });
    let f = w.fake();
    assert_eq!(f.file("Recrutement/stage/Dupré-Jeanne--1a2b3c4d/CV - Jeanne Dupré.pdf").unwrap(), b"%PDF cv");
    assert_eq!(f.file("Recrutement/stage/Dupré-Jeanne--1a2b3c4d/metadata.json").unwrap(), b"{\"v\":1}");
    let odd = format!("Recrutement/stage/Dupré-Jeanne--1a2b3c4d/{}", names::remote_name("desktop.ini"));
    assert_eq!(f.file(&odd).unwrap(), b"[x]");
    // Every file went up under a temporary name first; none is left there.
    assert_eq!(f.ops("PUT"), 3);
    assert!(
        f.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(o, _)| *o == "PUT")
            .all(|(_, p)| p.starts_with("Recrutement/.mailroom-uploads/"))
    );
    assert_eq!(f.names().len(), 3, "{:?}", f.names());
    // Each folder was made once.
    assert_eq!(f.ops("MKCOL"), 4, "Recrutement, its upload folder, stage, the candidate");
    assert_eq!(w.store.publish_status().unwrap().done, 3);
}

#[test]
fn metadata_json_goes_up_as_it_is_when_its_turn_comes_and_the_newest_wins() {
    let w = world();
    w.file("p/a", "metadata.json", b"one", false);
    w.file("p/a", "metadata.json", b"two", false);
    block_on(w.publisher.publish_due()).unwrap();
    assert_eq!(w.fake().file("Recrutement/p/a/metadata.json").unwrap(), b"two");
    assert_eq!(w.fake().ops("PUT"), 1, "the older one was superseded before it went up");
}

#[test]
fn a_transient_failure_keeps_the_item_and_the_next_try_publishes_it_once() {
    let w = world();
    w.file("p/a", "cv.pdf", b"cv", true);
    *w.fake().fail.lock().unwrap() = Some((Retry::Transient, 1));
    let report = block_on(w.publisher.publish_due()).unwrap();
    assert_eq!(report.retrying, 1);
    let status = w.store.publish_status().unwrap();
    assert_eq!(status.waiting, 1);
    assert!(status.last_error.unwrap().contains("injected"));
    assert!(w.store.due_publish(Utc::now(), 10).unwrap().is_empty(), "it waits out its backoff");
    w.store.due_now_for_test();
    let report = block_on(w.publisher.publish_due()).unwrap();
    assert_eq!(report.published, 1);
    assert_eq!(w.fake().file("Recrutement/p/a/cv.pdf").unwrap(), b"cv");
    assert_eq!(w.fake().names(), ["Recrutement/p/a/cv.pdf"]);
}

#[test]
fn permanent_failures_are_recorded_and_the_rest_goes_on() {
    let w = world();
    w.file("p/a", "cv.pdf", b"cv", true);
    w.file("p/b", "cv.pdf", b"cv b", true);
    w.file("p/c", "cv.pdf", b"cv c", true);
    // p/b's file changed on disk after it was filed; p/c's was removed by hand.
    std::fs::write(w.dir.path().join("data/p/b/cv.pdf"), b"tampered").unwrap();
    std::fs::remove_file(w.dir.path().join("data/p/c/cv.pdf")).unwrap();
    let report = block_on(w.publisher.publish_due()).unwrap();
    assert_eq!((report.published, report.failed), (1, 2));
    let status = w.store.publish_status().unwrap();
    assert_eq!((status.waiting, status.failed), (0, 2));
    let errors: Vec<String> = status.recent_failures.iter().map(|f| f.error.clone()).collect();
    assert!(errors.iter().any(|e| e.contains("no longer holds")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("missing")), "{errors:?}");
    assert_eq!(w.fake().names(), ["Recrutement/p/a/cv.pdf"]);
}

#[test]
fn a_removal_deletes_the_remote_folder_after_what_came_before_it() {
    let w = world();
    w.file("p/a", "cv.pdf", b"cv", true);
    w.file("p/b", "cv.pdf", b"cv b", true);
    block_on(w.publisher.publish_due()).unwrap();
    assert!(w.store.queue_folder_removal("p/a").unwrap());
    let report = block_on(w.publisher.publish_due()).unwrap();
    assert_eq!(report.removed, 1);
    assert_eq!(w.fake().names(), ["Recrutement/p/b/cv.pdf"]);
    // Applying again after being forgotten: the folder is made again.
    w.file("p/a", "cv.pdf", b"cv again", true);
    block_on(w.publisher.publish_due()).unwrap();
    assert_eq!(w.fake().file("Recrutement/p/a/cv.pdf").unwrap(), b"cv again");
}

#[test]
fn a_folder_deleted_behind_our_back_is_made_again() {
    let w = world();
    w.file("p/a", "cv.pdf", b"cv", true);
    block_on(w.publisher.publish_due()).unwrap();
    // Someone deletes the candidate's folder in the web interface; a letter comes later.
    block_on(w.fake().delete(&RemotePath(vec!["Recrutement".into(), "p".into()]))).unwrap();
    w.file("p/a", "letter.pdf", b"letter", true);
    let report = block_on(w.publisher.publish_due()).unwrap();
    assert_eq!(report.published, 1);
    assert_eq!(w.fake().file("Recrutement/p/a/letter.pdf").unwrap(), b"letter");
}

#[test]
fn leftover_uploads_are_swept_at_start() {
    let w = world();
    let fake = w.fake();
    fake.dirs.lock().unwrap().insert(vec!["Recrutement".into()]);
    fake.dirs.lock().unwrap().insert(vec!["Recrutement".into(), STAGING.into()]);
    fake.files
        .lock()
        .unwrap()
        .insert(vec!["Recrutement".into(), STAGING.into(), "7-0011223344556677".into()], b"half".to_vec());
    block_on(w.publisher.sweep_uploads());
    assert!(fake.names().is_empty());
}

#[test]
fn queued_paths_never_leave_the_data_root() {
    let w = world();
    w.store.queue_for_test("../outside", &PublishFile { name: "x".into(), sha256: None }).unwrap();
    w.store.queue_for_test("p/a", &PublishFile { name: "../../etc/passwd".into(), sha256: None }).unwrap();
    let report = block_on(w.publisher.publish_due()).unwrap();
    assert_eq!(report.failed, 2);
    assert_eq!(w.fake().ops("PUT"), 0);
}

#[test]
fn files_of_an_application_are_its_documents_its_message_and_the_metadata() {
    use crate::filing::FiledDocument;
    use crate::understand::DocKind;
    let doc = |name: Option<&str>, sha: &str| FiledDocument {
        kind: DocKind::Cv,
        filename: name.map(str::to_owned),
        original_name: None,
        content_type: "application/pdf".into(),
        size: 1,
        sha256: sha.into(),
        confidence: 1.0,
        reason: String::new(),
    };
    let app = FiledApplication {
        sha256: "m".repeat(64),
        message_id: None,
        subject: String::new(),
        received_at: Utc::now(),
        eml: "message.eml".into(),
        repeat: false,
        posting: "p".into(),
        documents: vec![doc(Some("CV.pdf"), "c"), doc(None, "logo")],
        missing: vec![],
    };
    let files = files_of(&app);
    let names: Vec<(&str, Option<&str>)> = files.iter().map(|f| (f.name.as_str(), f.sha256.as_deref())).collect();
    assert_eq!(names, [("CV.pdf", Some("c")), ("message.eml", Some(&*"m".repeat(64))), ("metadata.json", None)]);
}
