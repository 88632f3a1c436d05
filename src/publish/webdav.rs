//! The WebDAV backend: Nextcloud, ownCloud, or any RFC 4918 server (Apache mod_dav in the tests).
//!
//! One request per operation over reqwest (HTTP/1.1, rustls with the crate's configuration and
//! `publish.ca_file`, basic auth with an app password, no redirects followed):
//!
//! | operation | request | fine |
//! |---|---|---|
//! | put | `PUT`, streamed from the local file, with `Content-Length`, `OC-Checksum: SHA1:…` and `Content-Digest: sha-256=:…:` | 201, 204 |
//! | mkcol | `MKCOL …/` | 201; 405 (already there) |
//! | move | `MOVE` with `Destination` (absolute) and `Overwrite: T` | 201, 204 |
//! | delete | `DELETE`, then the trash bin (below) | 200, 204; 404 (already gone) |
//! | list | `PROPFIND`, `Depth: 1` | 207; 404 (no folder: nothing in it) |
//!
//! The hashes: Nextcloud stores `OC-Checksum` with the file (its clients check downloads against
//! it) and ownCloud 10 refuses an upload that does not match it; Nextcloud (since 19) answers a
//! PUT with the SHA-256 of what it received (`X-Hash-SHA256`), and a mismatch is an error (the
//! file is then not moved under its name). Apache stores neither; there the bytes rest on TLS and
//! `Content-Length`.
//!
//! **The trash bin.** Nextcloud moves what is deleted to the account's trash bin
//! (`/remote.php/dav/trashbin/USER/trash/`), with its original location in
//! `{http://nextcloud.org/ns}trashbin-original-location` (documented in Nextcloud's developer
//! manual, "WebDAV → Trashbin"). With `nextcloud_trash = "empty"`, a delete lists the trash bin
//! and deletes every entry whose original location is the deleted folder or below it; other
//! entries are left alone. Errors are transient: the removal stays queued, and the status and the
//! digest show it, until the trash bin can be emptied.
//!
//! Status codes: 401/403 (credentials, permissions), 3xx (a redirect is a wrong `publish.url`),
//! 408, 423, 425, 429, 5xx and 507 (quota) are transient: the admin or time fixes them and nothing
//! queued is dropped meanwhile. 409 means the parent folder is missing. Other 4xx are permanent.
//! Error messages name the method and the status, never a path (they reach the logs).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use tokio::io::AsyncReadExt;

use super::names::encode_component;
use super::{Backend, PublishError, RemotePath, Upload};
use crate::config::{Publish, Secret};
use crate::error::Retry;

/// The WebDAV backend.
pub struct WebDav {
    client: reqwest::Client,
    /// The account's files folder (`publish.url`), with its trailing slash.
    base: String,
    /// `https://host:port`, for the absolute paths of a multistatus answer.
    origin: String,
    username: String,
    password: Secret,
    trash: Option<Trash>,
}

impl std::fmt::Debug for WebDav {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebDav").field("base", &self.base).field("trash", &self.trash.is_some()).finish_non_exhaustive()
    }
}

struct Trash {
    url: String,
    /// The path of `base` below the account's files root (Nextcloud's original locations are
    /// relative to it): empty for `…/remote.php/dav/files/USER/`.
    prefix: Vec<String>,
}

impl WebDav {
    /// The backend for a validated `[publish]` section.
    pub fn new(cfg: &Publish) -> Result<WebDav, PublishError> {
        let permanent = |m: String| PublishError::new(Retry::Permanent, m);
        let tls = crate::tls::client_config(cfg.ca_file.as_deref()).map_err(|e| permanent(e.to_string()))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .http1_only()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(30))
            .timeout(Duration::from_secs(cfg.timeout_secs))
            // An idle daemon holds no connection (and no TLS session memory) for long.
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(super::CONCURRENCY)
            .user_agent(concat!("mailroom/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| permanent(format!("cannot build the HTTP client: {e}")))?;
        let base = with_slash(cfg.url.trim());
        let origin = match base.find("://").and_then(|i| base[i + 3..].find('/').map(|j| i + 3 + j)) {
            Some(end) => base[..end].to_owned(),
            None => base.trim_end_matches('/').to_owned(),
        };
        let prefix = base
            .split_once("/remote.php/dav/files/")
            .map(|(_, rest)| rest.split('/').skip(1).filter(|c| !c.is_empty()).map(decode).collect())
            .unwrap_or_default();
        Ok(WebDav {
            client,
            base,
            origin,
            username: cfg.username.clone(),
            password: cfg.password().map_err(|e| permanent(e.to_string()))?,
            trash: cfg.trash().map(|url| Trash { url, prefix }),
        })
    }

    fn url(&self, path: &RemotePath) -> String {
        let mut url = self.base.clone();
        url.push_str(&path.0.iter().map(|c| encode_component(c)).collect::<Vec<_>>().join("/"));
        url
    }

    fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        self.client.request(method, url).basic_auth(&self.username, Some(self.password.expose()))
    }

    async fn send(&self, what: &str, request: reqwest::RequestBuilder) -> Result<reqwest::Response, PublishError> {
        request.send().await.map_err(|e| {
            // The error's own text names the URL: say what failed without it.
            let kind = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "cannot connect"
            } else if e.is_body() || e.is_request() {
                "the request failed"
            } else {
                "the connection failed"
            };
            let source = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
            PublishError::new(Retry::Transient, format!("{what}: {kind}{source}"))
        })
    }

    /// Deletes the trash bin's entries that came from `path` (or below it).
    async fn empty_trash(&self, trash: &Trash, path: &RemotePath) -> Result<(), PublishError> {
        let location: Vec<&str> =
            trash.prefix.iter().map(String::as_str).chain(path.0.iter().map(String::as_str)).collect();
        let location = location.join("/");
        let body = r#"<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:" xmlns:nc="http://nextcloud.org/ns" xmlns:oc="http://owncloud.org/ns">
  <d:prop><nc:trashbin-original-location/><oc:trashbin-original-location/><d:resourcetype/></d:prop>
</d:propfind>"#;
        let request = self
            .request(method("PROPFIND"), &trash.url)
            .header("Depth", "1")
            .header("Content-Type", "application/xml; charset=utf-8")
            .body(body);
        let response = self.send("PROPFIND trash bin", request).await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED {
            return Err(PublishError::new(
                Retry::Transient,
                format!(
                    "PROPFIND trash bin: {status}: no trash bin at that address (set publish.trash_url, or \
                     publish.nextcloud_trash = \"keep\" for a server without one)"
                ),
            ));
        }
        check("PROPFIND trash bin", status)?;
        let text = response
            .text()
            .await
            .map_err(|e| PublishError::new(Retry::Transient, format!("PROPFIND trash bin: reading the answer: {e}")))?;
        let entries = parse_multistatus(&text)
            .map_err(|e| PublishError::new(Retry::Transient, format!("PROPFIND trash bin: unreadable answer: {e}")))?;
        let trash_path = path_of(&trash.url);
        for entry in entries {
            let Some(original) = entry.original_location.as_deref().map(|o| o.trim_matches('/')) else { continue };
            let from_here = original == location || original.starts_with(&format!("{location}/"));
            if !from_here || entry.href.trim_end_matches('/') == trash_path.trim_end_matches('/') {
                continue;
            }
            let url = format!("{}{}", self.origin, entry.href);
            let response = self.send("DELETE trash bin entry", self.request(Method::DELETE, &url)).await?;
            if response.status() != StatusCode::NOT_FOUND {
                check("DELETE trash bin entry", response.status())?;
            }
        }
        Ok(())
    }
}

impl Backend for WebDav {
    async fn put(&self, to: &RemotePath, upload: &Upload) -> Result<(), PublishError> {
        let file = tokio::fs::File::open(&upload.local)
            .await
            .map_err(|e| PublishError::new(Retry::Transient, format!("reading the local file: {}", e.kind())))?;
        // Streamed in 16 KiB chunks (a TLS record): a 40 MB CV is never held in memory, and the
        // small buffers leave little behind in the allocator of an idle daemon.
        let chunks = futures::stream::unfold(Some(file), |file| async move {
            let mut file = file?;
            let mut buf = vec![0u8; 16 * 1024];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(buf), Some(file)))
                }
                Err(e) => Some((Err(e), None)),
            }
        });
        let request = self
            .request(Method::PUT, &self.url(to))
            // Set, so the body is not sent chunked (Nextcloud behind php-fpm loses chunked bodies).
            .header("Content-Length", upload.size)
            .header("Content-Type", "application/octet-stream")
            .header("OC-Checksum", format!("SHA1:{}", upload.sha1))
            .header("Content-Digest", format!("sha-256=:{}:", base64_of_hex(&upload.sha256)))
            .body(reqwest::Body::wrap_stream(chunks));
        let response = self.send("PUT", request).await?;
        let status = response.status();
        if status == StatusCode::CONFLICT {
            return Err(PublishError::missing_parent("PUT"));
        }
        check("PUT", status)?;
        if let Some(received) = response.headers().get("X-Hash-SHA256").and_then(|v| v.to_str().ok())
            && !received.eq_ignore_ascii_case(&upload.sha256)
        {
            return Err(PublishError::new(
                Retry::Transient,
                format!("PUT: the server received other bytes (SHA-256 {received}, sent {})", upload.sha256),
            ));
        }
        Ok(())
    }

    async fn mkcol(&self, path: &RemotePath) -> Result<(), PublishError> {
        let response = self.send("MKCOL", self.request(method("MKCOL"), &format!("{}/", self.url(path)))).await?;
        match response.status() {
            StatusCode::METHOD_NOT_ALLOWED => Ok(()),
            StatusCode::CONFLICT => Err(PublishError::missing_parent("MKCOL")),
            status => check("MKCOL", status),
        }
    }

    async fn move_to(&self, from: &RemotePath, to: &RemotePath) -> Result<(), PublishError> {
        let request =
            self.request(method("MOVE"), &self.url(from)).header("Destination", self.url(to)).header("Overwrite", "T");
        let response = self.send("MOVE", request).await?;
        match response.status() {
            StatusCode::CONFLICT => Err(PublishError::missing_parent("MOVE")),
            StatusCode::NOT_FOUND => Err(PublishError::new(
                Retry::Transient,
                "MOVE: 404 Not Found: the uploaded file vanished before it was moved; it is uploaded again".into(),
            )),
            status => check("MOVE", status),
        }
    }

    async fn delete(&self, path: &RemotePath) -> Result<(), PublishError> {
        let response = self.send("DELETE", self.request(Method::DELETE, &self.url(path))).await?;
        if response.status() != StatusCode::NOT_FOUND {
            check("DELETE", response.status())?;
        }
        match &self.trash {
            Some(trash) => self.empty_trash(trash, path).await,
            None => Ok(()),
        }
    }

    async fn list(&self, path: &RemotePath) -> Result<Vec<String>, PublishError> {
        let body = r#"<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:"><d:prop><d:resourcetype/></d:prop></d:propfind>"#;
        let url = format!("{}/", self.url(path));
        let request = self
            .request(method("PROPFIND"), &url)
            .header("Depth", "1")
            .header("Content-Type", "application/xml; charset=utf-8")
            .body(body);
        let response = self.send("PROPFIND", request).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        check("PROPFIND", response.status())?;
        let text = response
            .text()
            .await
            .map_err(|e| PublishError::new(Retry::Transient, format!("PROPFIND: reading the answer: {e}")))?;
        let entries = parse_multistatus(&text)
            .map_err(|e| PublishError::new(Retry::Transient, format!("PROPFIND: unreadable answer: {e}")))?;
        let own = path_of(&url);
        Ok(entries
            .into_iter()
            .filter(|e| e.href.trim_end_matches('/') != own.trim_end_matches('/'))
            .filter_map(|e| e.href.trim_end_matches('/').rsplit('/').next().map(decode))
            .collect())
    }
}

fn method(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).expect("a WebDAV method name is a valid token")
}

/// What a status says: fine, or an error that knows whether trying again can help.
fn check(what: &str, status: StatusCode) -> Result<(), PublishError> {
    if status.is_success() {
        return Ok(());
    }
    let code = status.as_u16();
    let transient =
        status.is_redirection() || status.is_server_error() || matches!(code, 401 | 403 | 408 | 423 | 425 | 429 | 507);
    let hint = match code {
        401 => ": check publish.username and the app password",
        403 => ": the account may not write there (check publish.root and its sharing)",
        300..=399 => ": publish.url redirects elsewhere; give the final address",
        507 => ": the account's quota is full",
        _ => "",
    };
    let retry = if transient { Retry::Transient } else { Retry::Permanent };
    Err(PublishError::new(retry, format!("{what}: {status}{hint}")))
}

fn with_slash(url: &str) -> String {
    if url.ends_with('/') { url.to_owned() } else { format!("{url}/") }
}

/// The path part of an absolute URL (`/remote.php/…`), as a multistatus `href` gives it.
fn path_of(url: &str) -> String {
    match url.find("://").and_then(|i| url[i + 3..].find('/').map(|j| i + 3 + j)) {
        Some(start) => url[start..].to_owned(),
        None => "/".into(),
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn base64_of_hex(hex_digest: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(hex::decode(hex_digest).unwrap_or_default())
}

/// One `<response>` of a multistatus answer.
#[derive(Debug, Default, PartialEq)]
struct Entry {
    /// The absolute path, percent-encoded as the server sent it.
    href: String,
    /// Nextcloud's (or ownCloud's) `trashbin-original-location`, when given.
    original_location: Option<String>,
}

/// The responses of a `207 Multi-Status` body. Elements are matched by their local names, so
/// the namespace prefixes a server picks (`d:`, `D:`, `lp1:`) do not matter.
fn parse_multistatus(xml: &str) -> Result<Vec<Entry>, quick_xml::Error> {
    use quick_xml::events::Event;
    // Text is not trimmed while reading: an entity (`&amp;`) splits it, and the spaces around
    // one belong to it. Whole values are trimmed at the end of their response.
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut entries = Vec::new();
    let mut stack: Vec<String> = Vec::new();
    let mut current = Entry::default();
    loop {
        match reader.read_event()? {
            Event::Start(e) => {
                let name = e.local_name().as_ref().to_owned();
                if name == "response" {
                    current = Entry::default();
                }
                stack.push(name);
            }
            Event::End(e) => {
                stack.pop();
                if e.local_name().as_ref() == "response" {
                    let mut entry = std::mem::take(&mut current);
                    entry.href = entry.href.trim().to_owned();
                    entry.original_location = entry.original_location.map(|o| o.trim().to_owned());
                    entries.push(entry);
                }
            }
            Event::Text(t) => push_text(&mut current, stack.last(), &t),
            Event::GeneralRef(r) => {
                let resolved = quick_xml::escape::unescape(&format!("&{};", &*r)).map(|c| c.into_owned());
                push_text(&mut current, stack.last(), &resolved.unwrap_or_default());
            }
            Event::CData(c) => push_text(&mut current, stack.last(), &c),
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(entries)
}

fn push_text(entry: &mut Entry, element: Option<&String>, text: &str) {
    match element.map(String::as_str) {
        Some("href") => entry.href.push_str(text),
        Some("trashbin-original-location") => {
            entry.original_location.get_or_insert_with(String::new).push_str(text);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of Nextcloud's trash bin listing, as its developer manual documents it.
    const NEXTCLOUD_TRASH: &str = r#"<?xml version="1.0"?>
<d:multistatus xmlns:d="DAV:" xmlns:s="http://sabredav.org/ns" xmlns:oc="http://owncloud.org/ns" xmlns:nc="http://nextcloud.org/ns">
 <d:response>
  <d:href>/remote.php/dav/trashbin/recruiter/trash/</d:href>
  <d:propstat><d:prop><d:resourcetype><d:collection/></d:resourcetype></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>
  <d:propstat><d:prop><nc:trashbin-original-location/></d:prop><d:status>HTTP/1.1 404 Not Found</d:status></d:propstat>
 </d:response>
 <d:response>
  <d:href>/remote.php/dav/trashbin/recruiter/trash/Dupr%C3%A9-Jeanne--1a2b3c4d.d1764672000</d:href>
  <d:propstat><d:prop>
   <nc:trashbin-original-location>Recrutement/stage/Dupré-Jeanne--1a2b3c4d</nc:trashbin-original-location>
   <d:resourcetype><d:collection/></d:resourcetype>
  </d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>
 </d:response>
 <d:response>
  <d:href>/remote.php/dav/trashbin/recruiter/trash/notes%20%26%20co.txt.d1764672001</d:href>
  <d:propstat><d:prop>
   <nc:trashbin-original-location>Documents/notes &amp; co.txt</nc:trashbin-original-location>
   <d:resourcetype/>
  </d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>
 </d:response>
</d:multistatus>"#;

    #[test]
    fn a_trash_bin_listing_gives_each_entry_with_its_original_location() {
        let entries = parse_multistatus(NEXTCLOUD_TRASH).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].original_location, None);
        assert_eq!(entries[1].href, "/remote.php/dav/trashbin/recruiter/trash/Dupr%C3%A9-Jeanne--1a2b3c4d.d1764672000");
        assert_eq!(entries[1].original_location.as_deref(), Some("Recrutement/stage/Dupré-Jeanne--1a2b3c4d"));
        assert_eq!(entries[2].original_location.as_deref(), Some("Documents/notes & co.txt"));
    }

    #[test]
    fn apache_listings_parse_whatever_the_prefixes() {
        let apache = r#"<?xml version="1.0" encoding="utf-8"?>
<D:multistatus xmlns:D="DAV:"><D:response xmlns:lp1="DAV:"><D:href>/dav/x/</D:href><D:propstat><D:prop>
<lp1:resourcetype><D:collection/></lp1:resourcetype></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
<D:response><D:href>/dav/x/CV%20-%20Jeanne%20Dupr%C3%A9.pdf</D:href></D:response></D:multistatus>"#;
        let entries = parse_multistatus(apache).unwrap();
        assert_eq!(
            entries.iter().map(|e| e.href.as_str()).collect::<Vec<_>>(),
            ["/dav/x/", "/dav/x/CV%20-%20Jeanne%20Dupr%C3%A9.pdf"]
        );
        assert_eq!(decode("CV%20-%20Jeanne%20Dupr%C3%A9.pdf"), "CV - Jeanne Dupré.pdf");
    }

    #[test]
    fn statuses_are_transient_when_an_admin_or_time_fixes_them() {
        for code in [301, 401, 403, 408, 423, 429, 500, 502, 503, 507] {
            let e = check("PUT", StatusCode::from_u16(code).unwrap()).unwrap_err();
            assert_eq!(e.retry, Retry::Transient, "{code}");
        }
        for code in [400, 405, 413, 415, 422] {
            let e = check("PUT", StatusCode::from_u16(code).unwrap()).unwrap_err();
            assert_eq!(e.retry, Retry::Permanent, "{code}");
        }
        assert!(check("PUT", StatusCode::CREATED).is_ok());
    }

    /// What the server sees of a PUT: a length, never a chunked body (Nextcloud behind php-fpm
    /// stores an empty file for a chunked one), and both hashes.
    #[test]
    fn a_put_is_sent_with_its_length_and_its_hashes() {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" {
                    break;
                }
                head.push(line.trim_end().to_owned());
            }
            let length: usize = head.iter().find_map(|h| h.strip_prefix("content-length: ")).unwrap().parse().unwrap();
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let mut stream = stream;
            stream.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
            (head, body)
        });
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("cv.pdf");
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&local, &bytes).unwrap();
        let cfg = Publish {
            url: format!("http://127.0.0.1:{port}/remote.php/dav/files/u/"),
            username: "u".into(),
            password: Some(Secret::new("p")),
            nextcloud_trash: crate::config::TrashPolicy::Keep,
            ..Publish::default()
        };
        let upload = Upload {
            local,
            size: bytes.len() as u64,
            sha256: crate::understand::sha256_hex(&bytes),
            sha1: hex::encode(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &bytes)),
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(WebDav::new(&cfg).unwrap().put(&RemotePath(vec!["a b".into()]), &upload)).unwrap();
        let (head, body) = server.join().unwrap();
        assert_eq!(head[0], "PUT /remote.php/dav/files/u/a%20b HTTP/1.1");
        assert!(!head.iter().any(|h| h.starts_with("transfer-encoding")), "{head:?}");
        assert!(head.contains(&format!("content-length: {}", bytes.len())), "{head:?}");
        assert!(head.contains(&format!("oc-checksum: SHA1:{}", upload.sha1)), "{head:?}");
        assert!(head.iter().any(|h| h.starts_with("content-digest: sha-256=:")), "{head:?}");
        assert!(head.iter().any(|h| h.starts_with("authorization: Basic ")), "{head:?}");
        assert_eq!(body, bytes);
    }

    #[test]
    fn paths_are_encoded_one_component_at_a_time() {
        let cfg = Publish {
            url: "https://cloud.example.org/remote.php/dav/files/recruiter".into(),
            username: "recruiter".into(),
            password: Some(Secret::new("x")),
            ..Publish::default()
        };
        let dav = WebDav::new(&cfg).unwrap();
        let path = RemotePath(vec!["Recrutement".into(), "stage".into(), "Dupré #1?".into(), "a/b".into()]);
        assert_eq!(
            dav.url(&path),
            "https://cloud.example.org/remote.php/dav/files/recruiter/Recrutement/stage/Dupr%C3%A9%20%231%3F/a%2Fb"
        );
        assert_eq!(dav.origin, "https://cloud.example.org");
        assert_eq!(
            dav.trash.as_ref().unwrap().url,
            "https://cloud.example.org/remote.php/dav/trashbin/recruiter/trash/"
        );
        assert!(dav.trash.as_ref().unwrap().prefix.is_empty());
        assert_eq!(path_of("https://h:1/a/b/"), "/a/b/");
        assert_eq!(base64_of_hex("00ff"), "AP8=");
    }
}
