//! Publishing to the team's cloud, on the real WebDAV server of the mail stack (Apache httpd with
//! mod_dav over TLS, basic auth, a Nextcloud-like path): folders appear with identical bytes, a
//! repeat application updates them, an outage is waited out with nothing published twice, a
//! kill -9 mid-upload leaves no partial file under a final name, a removal removes (and empties
//! the trash bin), and the digest links to the right folders.
//!
//! Run through `scripts/test` (it exports the `MAILSTACK_*` facts); alone they say SKIPPED, and
//! fail under `CI=true`. Each test publishes below a root folder of its own; the tests that take
//! the server away run a stack of their own.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Daemon, Stack, application_eml, files_under, mailroom, pdf, status_json, wait_for};
use mailroom::publish::names::remote_name;
use mailroom::store::{PublishStore, Store};
use mailroom::understand::sha256_hex;

const DEADLINE: Duration = Duration::from_secs(120);
const WEBDAV_VARS: &[&str] =
    &["MAILSTACK_WEBDAV_URL", "MAILSTACK_WEBDAV_USER", "MAILSTACK_WEBDAV_PASSWORD", "MAILSTACK_WEBDAV_DIR"];

/// True (after saying so) when the stack runs no WebDAV server (an older stack: restart it).
fn lacks_webdav(stack: &Stack) -> bool {
    let missing: Vec<&str> = WEBDAV_VARS.iter().copied().filter(|k| !stack.vars.contains_key(*k)).collect();
    if missing.is_empty() {
        return false;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("CI=true but the mail stack does not export {missing:?}: run `scripts/mailstack down` and `up` again");
    }
    eprintln!("SKIPPED: the mail stack does not export {missing:?}");
    true
}

fn unique(tag: &str) -> String {
    format!("{tag}-{}-{}", std::process::id(), chrono::Utc::now().timestamp_nanos_opt().unwrap() % 1_000_000_000)
}

/// The `[publish]` section for this stack, publishing below `root`.
fn publish_section(stack: &Stack, root: &str, extra: &str) -> String {
    format!(
        "[publish]\nurl = \"{}\"\nusername = \"{}\"\npassword = \"{}\"\nca_file = \"{}\"\nroot = \"{root}\"\n{extra}\n",
        stack.var("MAILSTACK_WEBDAV_URL"),
        stack.var("MAILSTACK_WEBDAV_USER"),
        stack.var("MAILSTACK_WEBDAV_PASSWORD"),
        stack.ca(),
    )
}

/// Where the server keeps what is published below `root`.
fn remote_root(stack: &Stack, root: &str) -> PathBuf {
    Path::new(stack.var("MAILSTACK_WEBDAV_DIR")).join(root)
}

fn once(config: &Path) -> String {
    let out = mailroom(&["once", "--config", config.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "mailroom once: {}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    stdout
}

fn deliver_and_wait(stack: &Stack, from: &str, folder: &str, raw: &[u8]) {
    let before = stack.count("contact@example.test", folder);
    stack.submit(from, &[&format!("contact+{folder}@example.test")], raw);
    wait_for("delivery into the contact folder", DEADLINE, || {
        (stack.count("contact@example.test", folder) > before).then_some(())
    });
}

fn application(from: &str, name: &str, to: &str, attachments: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let id = format!("{}.{}@example.test", unique("pub"), from.split('@').next().unwrap());
    application_eml(
        &format!("{name} <{from}>"),
        to,
        "Candidature stage",
        &id,
        &[],
        "Bonjour, voici mon dossier.",
        attachments,
    )
}

/// The candidate folders below the data root (relative, `posting/person`), sorted.
fn candidate_folders(data: &Path) -> Vec<String> {
    let mut folders: Vec<String> =
        files_under(data).iter().filter_map(|f| f.strip_suffix("/metadata.json").map(str::to_owned)).collect();
    folders.sort();
    folders
}

/// Name → SHA-256 of the files directly in `dir`.
fn hashes(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), sha256_hex(&std::fs::read(&p).unwrap())))
        .collect()
}

/// The remote copy of a candidate folder holds exactly the local files, under their remote
/// names, with identical bytes.
fn assert_published(data: &Path, remote: &Path, folder: &str) {
    let local = hashes(&data.join(folder));
    let expected: BTreeMap<String, String> = local.into_iter().map(|(name, sha)| (remote_name(&name), sha)).collect();
    let remote_folder: PathBuf = folder.split('/').map(remote_name).collect();
    let found = hashes(&remote.join(remote_folder));
    assert_eq!(found, expected, "remote copy of {folder}");
}

/// Nothing is left under a temporary name.
fn assert_no_uploads_left(remote: &Path) {
    let staging = remote.join(".mailroom-uploads");
    let left: Vec<String> = match std::fs::read_dir(&staging) {
        Ok(entries) => entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    assert!(left.is_empty(), "leftover uploads: {left:?}");
}

#[test]
fn an_application_appears_remotely_with_identical_bytes_and_a_repeat_updates_it() {
    let Some(stack) = Stack::get() else { return };
    if lacks_webdav(&stack) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = unique("Recrutement");
    let publish = publish_section(&stack, &root, "nextcloud_trash = \"keep\"");
    let (folder, to, config) = stack.contact_folder_config(dir.path(), "pub", &publish);
    once(&config);
    let cv = pdf("curriculum vitae de Jeanne");
    let raw = application(
        "alice@example.test",
        "Jeanne Dupré",
        &to,
        &[
            ("CV_Jeanne_Dupre.pdf", "application/pdf", &cv),
            ("Lettre de motivation.pdf", "application/pdf", &pdf("lettre")),
            // Legal on ext4, refused by Nextcloud (".part") and Windows (":"): mapped remotely.
            ("notes:v2.part", "application/octet-stream", b"notes"),
        ],
    );
    deliver_and_wait(&stack, "alice@example.test", &folder, &raw);
    let out = once(&config);
    assert!(out.contains("filed 1"), "{out}");
    assert!(out.contains("published 5,") && out.contains("publish queue waiting 0"), "{out}");

    let data = dir.path().join("data");
    let remote = remote_root(&stack, &root);
    let folders = candidate_folders(&data);
    assert_eq!(folders.len(), 1, "{folders:?}");
    let person = &folders[0];
    assert!(person.starts_with("stage-gestion-projet/Dupré-Jeanne--"), "{person}");
    assert_published(&data, &remote, person);
    let remote_names: Vec<String> = hashes(&remote.join(person)).into_keys().collect();
    assert!(remote_names.iter().any(|n| n.starts_with("notes_v2_part-")), "{remote_names:?}");
    assert!(!remote_names.iter().any(|n| n.ends_with(".part") || n.contains(':')), "{remote_names:?}");
    assert_no_uploads_left(&remote);

    // A repeat application: a new document, the same CV again, metadata.json rewritten.
    let raw = application(
        "alice@example.test",
        "Jeanne Dupré",
        &to,
        &[("CV_Jeanne_Dupre.pdf", "application/pdf", &cv), ("Diplôme master.pdf", "application/pdf", &pdf("diplôme"))],
    );
    deliver_and_wait(&stack, "alice@example.test", &folder, &raw);
    let out = once(&config);
    // The CV's bytes were published already: the diploma, the message and metadata.json go up.
    assert!(out.contains("published 3,") && out.contains("publish queue waiting 0"), "{out}");
    assert_published(&data, &remote, person);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(remote.join(person).join("metadata.json")).unwrap()).unwrap();
    let applications = meta["applications"].as_array().unwrap();
    assert_eq!(applications.len(), 2);
    assert_eq!(applications.iter().filter(|a| a["repeat"] == true).count(), 1, "{meta:#}");
    assert_no_uploads_left(&remote);

    // Nothing twice: another run publishes nothing.
    let out = once(&config);
    assert!(out.contains("published 0,"), "{out}");
    let status = status_json(&config);
    assert_eq!(status["publish"]["waiting"], 0);
    assert_eq!(status["publish"]["done"], 8);
}

#[test]
fn turning_publishing_on_publishes_what_was_filed_before() {
    let Some(stack) = Stack::get() else { return };
    if lacks_webdav(&stack) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (folder, to, config) = stack.contact_folder_config(dir.path(), "publater", "");
    once(&config);
    let raw = application("erin@example.test", "Erin Moreau", &to, &[("CV.pdf", "application/pdf", &pdf("cv erin"))]);
    deliver_and_wait(&stack, "erin@example.test", &folder, &raw);
    let out = once(&config);
    assert!(out.contains("filed 1") && !out.contains("published"), "{out}");

    // The admin connects the cloud folder afterwards: the same state, now with [publish].
    let root = unique("Recrutement");
    let text = std::fs::read_to_string(&config).unwrap();
    let publish = publish_section(&stack, &root, "nextcloud_trash = \"keep\"");
    std::fs::write(&config, text.replacen("[[postings]]", &format!("{publish}\n[[postings]]"), 1)).unwrap();
    let out = once(&config);
    assert!(out.contains("fetched 0,") && out.contains("published 3,"), "{out}");
    let data = dir.path().join("data");
    let person = candidate_folders(&data).pop().unwrap();
    assert_published(&data, &remote_root(&stack, &root), &person);
    let out = once(&config);
    assert!(out.contains("published 0,"), "nothing twice: {out}");
}

#[test]
fn the_digest_links_each_candidate_to_the_published_folder() {
    let Some(stack) = Stack::get() else { return };
    if lacks_webdav(&stack) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = unique("Recrutement digest");
    let web = format!("web_url = \"https://cloud.example.org/apps/files/?dir=/{root}/{{posting}}/{{folder}}\"");
    let publish = publish_section(&stack, &root, &format!("nextcloud_trash = \"keep\"\n{web}"));
    let (folder, to, config) = stack.contact_folder_config(dir.path(), "publink", &publish);
    once(&config);
    let raw = application("bob@example.test", "Bob O'Brien", &to, &[("CV.pdf", "application/pdf", &pdf("cv bob"))]);
    deliver_and_wait(&stack, "bob@example.test", &folder, &raw);
    once(&config);

    let cfg = mailroom::config::Config::load(&config).unwrap();
    let store = Store::open_unlocked(&cfg.storage.state_path).unwrap();
    let digest = mailroom::digest::Digest::new(&cfg).unwrap();
    let start = mailroom::store::DigestStore::first_start(&store);
    let built = digest.build(&store, start, chrono::Utc::now()).unwrap();

    let link = built
        .text
        .lines()
        .find_map(|l| l.trim().strip_prefix("ouvrir : "))
        .unwrap_or_else(|| panic!("no link in the text part:\n{}", built.text))
        .to_owned();
    // The link opens the folder the recruiter sees: decode its path and find it on the server.
    let dir_param = link.split_once("?dir=").unwrap().1;
    let path = percent_encoding::percent_decode_str(dir_param).decode_utf8().unwrap().into_owned();
    let on_server = Path::new(stack.var("MAILSTACK_WEBDAV_DIR")).join(path.trim_start_matches('/'));
    assert!(on_server.join("CV - Bob O'Brien.pdf").is_file(), "{link} → {}", on_server.display());
    assert!(link.contains("Recrutement%20digest") || link.contains("Recrutement digest"), "{link}");
    assert!(link.contains("O%27Brien-Bob--"), "names are URL-encoded: {link}");
    // The same link in the HTML row (escaped for HTML) and in the CSV.
    let html = built.html.replace("&#x2f;", "/").replace("&amp;", "&").replace("&#x27;", "'");
    assert!(html.contains(&format!("<a href=\"{link}\"")), "{html}");
    let csv_row = built.csv.lines().nth(1).unwrap();
    assert!(built.csv.lines().next().unwrap().ends_with(",lien"), "{}", built.csv);
    assert!(csv_row.ends_with(&link), "{csv_row}");
}

/// A small WebDAV client for the test's own fixtures (the trash bin's entries).
struct Dav {
    client: reqwest::Client,
    user: String,
    password: String,
    rt: tokio::runtime::Runtime,
}

impl Dav {
    fn new(stack: &Stack) -> Dav {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(stack.ca()).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Dav {
            client: reqwest::Client::builder().tls_backend_preconfigured(tls).build().unwrap(),
            user: stack.var("MAILSTACK_WEBDAV_USER").to_owned(),
            password: stack.var("MAILSTACK_WEBDAV_PASSWORD").to_owned(),
            rt: tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(),
        }
    }

    fn request(&self, method: &str, url: &str, body: &str) -> u16 {
        let request = self
            .client
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url)
            .basic_auth(&self.user, Some(&self.password))
            .body(body.to_owned());
        self.rt.block_on(request.send()).unwrap().status().as_u16()
    }

    /// A trash bin entry as Nextcloud lists it: an item with its original location.
    fn trash_entry(&self, url: &str, folder: bool, original: &str) {
        let status = if folder { self.request("MKCOL", url, "") } else { self.request("PUT", url, "deleted bytes") };
        assert_eq!(status, 201, "{url}");
        let body = format!(
            r#"<?xml version="1.0" encoding="utf-8"?>
<d:propertyupdate xmlns:d="DAV:" xmlns:nc="http://nextcloud.org/ns"><d:set><d:prop>
<nc:trashbin-original-location>{}</nc:trashbin-original-location></d:prop></d:set></d:propertyupdate>"#,
            quick_xml::escape::escape(original)
        );
        assert_eq!(self.request("PROPPATCH", url, &body), 207, "PROPPATCH {url}");
    }
}

#[test]
fn a_remote_folder_removal_removes_it_and_its_trash_bin_entries() {
    let Some(stack) = Stack::get() else { return };
    if lacks_webdav(&stack) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = unique("Recrutement");
    let trash = unique("trashbin");
    let trash_url = format!("{}{trash}/", stack.var("MAILSTACK_WEBDAV_URL"));
    let extra = format!("nextcloud_trash = \"empty\"\ntrash_url = \"{trash_url}\"");
    let (folder, to, config) =
        stack.contact_folder_config(dir.path(), "pubrm", &publish_section(&stack, &root, &extra));
    once(&config);
    for (from, name) in [("carol@example.test", "Carol Leroy"), ("dave@example.test", "Dave Smith")] {
        let raw = application(from, name, &to, &[("CV.pdf", "application/pdf", &pdf(name))]);
        deliver_and_wait(&stack, from, &folder, &raw);
    }
    let out = once(&config);
    assert!(out.contains("filed 2") && out.contains("publish queue waiting 0"), "{out}");
    let data = dir.path().join("data");
    let remote = remote_root(&stack, &root);
    let folders = candidate_folders(&data);
    let (carol, dave) = (&folders[0], &folders[1]);
    assert!(carol.contains("Leroy-Carol") && dave.contains("Smith-Dave"), "{folders:?}");
    assert_published(&data, &remote, carol);

    // What Nextcloud's trash bin would hold: Carol's folder deleted by hand earlier, one of her
    // files, Dave's folder, and someone else's document.
    let dav = Dav::new(&stack);
    assert_eq!(dav.request("MKCOL", &trash_url, ""), 201);
    let entries = [
        ("carol.d1764672000", true, format!("{root}/{carol}"), false),
        ("CV.pdf.d1764672001", false, format!("{root}/{carol}/CV - Carol Leroy.pdf"), false),
        ("dave.d1764672002", true, format!("{root}/{dave}"), true),
        ("notes.txt.d1764672003", false, "Documents/notes.txt".to_owned(), true),
    ];
    for (name, is_folder, original, _) in &entries {
        dav.trash_entry(&format!("{trash_url}{name}"), *is_folder, original);
    }

    // The purge's call, made here directly: queue the removal of Carol's folder.
    let store = Store::open_unlocked(&dir.path().join("state/mailroom.sqlite3")).unwrap();
    assert!(store.queue_folder_removal(carol).unwrap());
    drop(store);
    let out = once(&config);
    assert!(out.contains("removed 1,") && out.contains("publish queue waiting 0"), "{out}");

    assert!(!remote.join(carol).exists(), "Carol's remote folder is gone");
    assert_published(&data, &remote, dave);
    assert!(data.join(carol).is_dir(), "the local folder is the purge's to delete, not the publisher's");
    let trash_dir = Path::new(stack.var("MAILSTACK_WEBDAV_DIR")).join(&trash);
    for (name, _, _, kept) in &entries {
        assert_eq!(trash_dir.join(name).exists(), *kept, "trash bin entry {name}");
    }
}

/// Waits until the daemon has completed a pass on its folder (its status shows a contact).
fn wait_ready(config: &Path) {
    wait_for("the daemon's first pass", DEADLINE, || {
        if !config.with_file_name("state").join("mailroom.sqlite3").exists() {
            return None;
        }
        let s = status_json(config);
        s["mailboxes"].as_array().filter(|m| !m.is_empty() && !m[0]["last_contact"].is_null()).map(|_| ())
    });
}

/// [`wait_for`], printing the daemon's log if the deadline passes.
fn wait_while_daemon_runs<T>(daemon: &Daemon, what: &str, mut condition: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = condition() {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}; the daemon's log:\n{}", daemon.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn access_log(stack: &Stack) -> PathBuf {
    Path::new(stack.var("MAILSTACK_DIR")).join("log/webdav-access.log")
}

/// `(status, path)` of the access log's requests (from byte `from` on: the log outlives a
/// stack's restarts) with this method below the upload folder.
fn uploads_in_access_log(stack: &Stack, from: usize, method: &str) -> Vec<(u16, String)> {
    let text = std::fs::read(access_log(stack)).unwrap_or_default();
    String::from_utf8_lossy(text.get(from..).unwrap_or_default())
        .lines()
        .filter_map(|l| {
            let request = l.split('"').nth(1)?;
            let status = l.split('"').nth(2)?.split_whitespace().next()?.parse().ok()?;
            let path = request.strip_prefix(&format!("{method} "))?.split(' ').next()?;
            path.contains("/.mailroom-uploads/").then(|| (status, path.to_owned()))
        })
        .collect()
}

#[test]
fn an_outage_grows_the_queue_which_drains_once_the_server_is_back_with_nothing_twice() {
    let Some(stack) = Stack::own("publish-outage") else { return };
    if lacks_webdav(&stack) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = unique("Recrutement");
    let (_, to, config) = stack.contact_folder_config(
        dir.path(),
        "outage",
        &publish_section(&stack, &root, "nextcloud_trash = \"keep\""),
    );
    let log_from = std::fs::metadata(access_log(&stack)).map_or(0, |m| m.len() as usize);
    let mut daemon = Daemon::start(&config);
    wait_ready(&config);

    stack.service("stop", "webdav");
    // Delivered straight over LMTP: the outage lasts no longer than the test needs.
    let messages: Vec<Vec<u8>> = [("erin@example.test", "Erin Moreau"), ("frank@example.test", "Frank Petit")]
        .into_iter()
        .map(|(from, name)| {
            application(
                from,
                name,
                &to,
                &[("CV.pdf", "application/pdf", &pdf(name)), ("LM.pdf", "application/pdf", &pdf("lm"))],
            )
        })
        .collect();
    stack.lmtp_deliver(&to, &messages);
    // Two applications of two documents, a message and metadata.json each: 8 items wait, tried.
    let status = wait_for("the publish queue to grow and be tried", DEADLINE, || {
        let s = status_json(&config);
        (s["totals"]["filed"] == 2 && s["publish"]["waiting"] == 8 && !s["publish"]["last_error"].is_null())
            .then_some(s)
    });
    assert!(status["publish"]["oldest_waiting"].is_string(), "{status:#}");
    let text = mailroom(&["status", "--config", config.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(text.contains("publish          8 waiting (oldest queued"), "{text}");
    assert!(text.contains("last error"), "{text}");
    assert!(uploads_in_access_log(&stack, log_from, "PUT").is_empty(), "nothing reached the stopped server");

    stack.service("start", "webdav");
    let status = wait_while_daemon_runs(&daemon, "the publish queue to drain", || {
        let s = status_json(&config);
        (s["publish"]["waiting"] == 0).then_some(s)
    });
    assert_eq!(status["publish"]["done"], 8, "{status:#}");
    assert_eq!(status["publish"]["failed"], 0, "{status:#}");
    let data = dir.path().join("data");
    let remote = remote_root(&stack, &root);
    for person in candidate_folders(&data) {
        assert_published(&data, &remote, &person);
    }
    assert_no_uploads_left(&remote);
    // Nothing twice: each item went up once and was moved once.
    let puts = uploads_in_access_log(&stack, log_from, "PUT");
    let moves = uploads_in_access_log(&stack, log_from, "MOVE");
    assert!(puts.iter().chain(&moves).all(|(status, _)| *status == 201 || *status == 204), "{puts:?} {moves:?}");
    let distinct: std::collections::BTreeSet<&String> = puts.iter().map(|(_, p)| p).collect();
    assert_eq!((puts.len(), distinct.len(), moves.len()), (8, 8, 8), "{puts:?}");
    assert!(daemon.terminate(Duration::from_secs(30)).success());
}

#[test]
fn kill_9_mid_upload_leaves_no_partial_file_under_a_final_name_and_the_restart_completes_it() {
    let Some(stack) = Stack::own("publish-kill") else { return };
    if lacks_webdav(&stack) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = unique("Recrutement");
    let (_, to, config) =
        stack.contact_folder_config(dir.path(), "kill", &publish_section(&stack, &root, "nextcloud_trash = \"keep\""));
    let mut daemon = Daemon::start(&config);
    wait_ready(&config);

    // An 8 MiB CV: long enough to catch its upload under way (a debug build sends a few MB a second).
    let mut big = vec![0u8; 8 * 1024 * 1024];
    fastrand::Rng::with_seed(15).fill(&mut big);
    let raw = application("alice@example.test", "Alice Martin", &to, &[("CV_Alice.pdf", "application/pdf", &big)]);
    stack.lmtp_deliver(&to, &[raw]);

    // Kill the daemon while the server has part of the CV (Apache receives into a temporary
    // file of its own, in the upload folder, then renames it).
    let remote = remote_root(&stack, &root);
    let staging = remote.join(".mailroom-uploads");
    let started = Instant::now();
    let partial = loop {
        let found = std::fs::read_dir(&staging).ok().and_then(|entries| {
            entries.flatten().find_map(|e| {
                let size = e.metadata().ok()?.len();
                (size > 0 && size < big.len() as u64).then_some(size)
            })
        });
        if let Some(size) = found {
            break size;
        }
        assert!(started.elapsed() < DEADLINE, "no upload of the CV was seen in progress ({})", daemon.log_text());
        std::thread::sleep(Duration::from_millis(2));
    };
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    eprintln!("killed with {partial} of {} bytes uploaded", big.len());

    // Whatever is under a final name is whole; the CV is not there yet.
    let data = dir.path().join("data");
    let person = candidate_folders(&data).pop().expect("the application was filed before the kill");
    let remote_folder = remote.join(&person);
    let local = hashes(&data.join(&person));
    if remote_folder.exists() {
        for (name, sha) in hashes(&remote_folder) {
            let original = local.keys().find(|n| remote_name(n) == name).unwrap_or_else(|| panic!("{name}?"));
            assert_eq!(&sha, &local[original], "{name} is whole under its name");
        }
    }
    let published = if remote_folder.exists() { hashes(&remote_folder).len() } else { 0 };
    assert!(published < local.len(), "killed mid-upload: the folder was not complete");

    // The restart sweeps what the kill left and completes the folder.
    let mut daemon = Daemon::start(&config);
    wait_for("the publish queue to drain after the restart", DEADLINE, || {
        (status_json(&config)["publish"]["waiting"] == 0).then_some(())
    });
    assert_published(&data, &remote, &person);
    assert_eq!(sha256_hex(&std::fs::read(remote_folder.join("CV - Alice Martin.pdf")).unwrap()), sha256_hex(&big));
    assert_no_uploads_left(&remote);
    assert!(daemon.terminate(Duration::from_secs(30)).success());
}

/// Erasure is erasure everywhere: `candidate forget` (and the retention purge, through the same
/// step) queues the removal of the published copy, and the next pass removes it from the server.
#[test]
fn forgetting_a_candidate_removes_the_published_folder_too() {
    let Some(stack) = Stack::get() else { return };
    if lacks_webdav(&stack) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = unique("Recrutement");
    let extra = "nextcloud_trash = \"keep\"";
    let (folder, to, config) =
        stack.contact_folder_config(dir.path(), "pubforget", &publish_section(&stack, &root, extra));
    once(&config);
    let from = "erin@example.test";
    let raw = application(from, "Erin Petit", &to, &[("CV.pdf", "application/pdf", &pdf("Erin Petit"))]);
    deliver_and_wait(&stack, from, &folder, &raw);
    let out = once(&config);
    assert!(out.contains("filed 1"), "{out}");
    let data = dir.path().join("data");
    let remote = remote_root(&stack, &root);
    let folders = candidate_folders(&data);
    let [erin] = folders.as_slice() else { panic!("{folders:?}") };
    assert_published(&data, &remote, erin);
    let remote_folder: PathBuf = erin.split('/').map(remote_name).collect();
    assert!(remote.join(&remote_folder).is_dir());

    let forget = mailroom(&["candidate", "forget", from, "--yes", "--config", config.to_str().unwrap()]);
    assert!(forget.status.success(), "forget: {}", String::from_utf8_lossy(&forget.stderr));
    assert!(!data.join(erin).exists(), "the local folder is gone at once");
    // The daemon's publisher (here: the next `once`) carries the removal out.
    once(&config);
    assert!(!remote.join(&remote_folder).exists(), "the published copy is gone too");
}
