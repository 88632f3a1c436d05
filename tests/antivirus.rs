//! Antivirus tier: the clamd client against a real clamd from Debian's clamav-daemon, started by
//! `scripts/mailstack up` with a signature database made for the tests (freshclam cannot reach
//! its mirrors here): the EICAR test string, and `Mailroom.Test.Custom`, which matches any file
//! holding the ASCII string `MAILROOM-TEST-VIRUS-7d1c5a`.
//!
//! The stack exports `MAILSTACK_CLAMD_SOCKET` (its unix socket) and `MAILSTACK_CLAMD_TCP`
//! (`127.0.0.1:PORT`). Without them the tests say SKIPPED; under `CI=true` that is a failure.

mod common;

use std::time::Duration;

use mailroom::antivirus::{AvError, Clamd, ClamdAddress, Decision, ScanResult, Scanner, decide};
use mailroom::config::OnUnreachable;
use mailroom::error::Classified;

/// The EICAR test file (a standard, harmless string every antivirus reports).
const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
const CUSTOM_MARKER: &[u8] = b"MAILROOM-TEST-VIRUS-7d1c5a";

/// The clamd of the test stack over its unix socket and over TCP, or `None` outside
/// `scripts/test` (a failure under CI).
fn clamds() -> Option<[Clamd; 2]> {
    let socket = std::env::var("MAILSTACK_CLAMD_SOCKET").ok().filter(|v| !v.is_empty());
    let tcp = std::env::var("MAILSTACK_CLAMD_TCP").ok().filter(|v| !v.is_empty());
    let (Some(socket), Some(tcp)) = (socket, tcp) else {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("CI=true but MAILSTACK_CLAMD_SOCKET / MAILSTACK_CLAMD_TCP are not set: run through scripts/test");
        }
        eprintln!("SKIPPED: no clamd (MAILSTACK_CLAMD_SOCKET / MAILSTACK_CLAMD_TCP unset); run scripts/test");
        return None;
    };
    let client = |address: &str| {
        let address = ClamdAddress::parse(address).unwrap_or_else(|e| panic!("{e}")).expect("an address");
        Clamd::new(address, Duration::from_secs(30), 64 << 20)
    };
    Some([client(&socket), client(&tcp)])
}

/// A PDF-shaped file of `size` bytes holding `marker` at its very end.
fn file_with(marker: &[u8], size: usize) -> Vec<u8> {
    let mut v = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut x: u32 = 0x9e37_79b9;
    while v.len() + marker.len() < size {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push((x % 251) as u8);
    }
    v.extend_from_slice(marker);
    v
}

fn signature(result: Result<ScanResult, AvError>, what: &str) -> String {
    match result {
        Ok(ScanResult::Infected { signature }) => signature,
        other => panic!("{what}: expected a virus, got {other:?}"),
    }
}

#[test]
fn clamd_answers_ping_and_version_over_its_socket_and_tcp() {
    let Some(clamds) = clamds() else { return };
    for clamd in &clamds {
        clamd.ping().unwrap_or_else(|e| panic!("{}: {e}", clamd.address()));
        let version = clamd.version().unwrap();
        assert!(version.starts_with("ClamAV "), "{version}");
    }
}

#[test]
fn the_eicar_string_and_the_custom_signature_are_found() {
    let Some(clamds) = clamds() else { return };
    for clamd in &clamds {
        let at = clamd.address().to_string();
        let eicar = signature(clamd.scan(EICAR), &format!("EICAR via {at}"));
        assert!(eicar.to_ascii_lowercase().contains("eicar"), "{eicar}");
        let custom = signature(clamd.scan(&file_with(CUSTOM_MARKER, 4096)), &format!("custom via {at}"));
        // clamd adds ".UNOFFICIAL" to signatures from a database it did not sign.
        assert!(custom.starts_with("Mailroom.Test.Custom"), "{custom}");
        assert_eq!(clamd.scan(&file_with(b"%%EOF\n", 4096)).unwrap(), ScanResult::Clean, "{at}");
    }
}

#[test]
fn a_stream_of_many_chunks_is_scanned_whole() {
    let Some([clamd, _]) = clamds() else { return };
    // 600 KB: about ten chunks; the marker is in the last one.
    let big = file_with(CUSTOM_MARKER, 600_000);
    assert!(signature(clamd.scan(&big), "marker at the end").starts_with("Mailroom.Test.Custom"));
    // The marker cut across two chunks (64 KiB each) is still found.
    let mut across = file_with(b"", 65_536 - 10);
    across.extend_from_slice(CUSTOM_MARKER);
    across.extend(std::iter::repeat_n(b' ', 1000));
    assert!(signature(clamd.scan(&across), "marker across chunks").starts_with("Mailroom.Test.Custom"));
}

#[test]
fn a_virus_inside_an_archive_is_found() {
    let Some([clamd, _]) = clamds() else { return };
    let zip = common::stored_zip(&[("CV.pdf", &file_with(CUSTOM_MARKER, 2048), false)]);
    assert!(signature(clamd.scan(&zip), "in a zip").starts_with("Mailroom.Test.Custom"));
}

#[test]
fn a_stream_over_clamds_limit_is_an_error_from_clamd_not_a_broken_connection() {
    let Some([clamd, _]) = clamds() else { return };
    // Stock clamd refuses streams over 25 MiB (StreamMaxLength); the test stack's may allow
    // more, in which case the file is simply clean. What must never happen is a transport error.
    match clamd.scan(&file_with(b"%%EOF\n", 30 << 20)) {
        Ok(ScanResult::Error { message }) => assert!(message.contains("StreamMaxLength"), "{message}"),
        Ok(ScanResult::Clean) => eprintln!("this clamd accepts 30 MiB streams: its limit was not reached"),
        other => panic!("expected clamd's own answer, got {other:?}"),
    }
    clamd.ping().expect("clamd is still up after a refused stream");
}

#[test]
fn several_workers_scan_at_once() {
    let Some([clamd, tcp]) = clamds() else { return };
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let c = if i % 2 == 0 { &clamd } else { &tcp };
                s.spawn(move || {
                    let infected = i % 3 == 0;
                    let bytes =
                        if infected { file_with(CUSTOM_MARKER, 20_000 + i) } else { file_with(b"", 20_000 + i) };
                    (infected, c.scan(&bytes).unwrap())
                })
            })
            .collect();
        for h in handles {
            let (infected, result) = h.join().unwrap();
            assert_eq!(matches!(result, ScanResult::Infected { .. }), infected, "{result:?}");
        }
    });
}

#[test]
fn decide_quarantines_an_infected_message_and_files_a_clean_one() {
    let Some([clamd, _]) = clamds() else { return };
    let cv = file_with(b"%%EOF\n", 5000);
    let letter = file_with(CUSTOM_MARKER, 5000);
    match decide(&clamd, [cv.as_slice(), letter.as_slice()], OnUnreachable::FailClosed) {
        Decision::Infected { document, signature } => {
            assert_eq!(document, 1);
            assert!(signature.starts_with("Mailroom.Test.Custom"), "{signature}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(decide(&clamd, [cv.as_slice()], OnUnreachable::FailClosed), Decision::File);
}

#[test]
fn an_unreachable_clamd_is_transient_and_fails_closed_by_policy() {
    // Needs no clamd: a socket nobody listens on, and a closed TCP port.
    let dir = tempfile::tempdir().unwrap();
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    for address in [dir.path().join("clamd.ctl").display().to_string(), format!("127.0.0.1:{closed_port}")] {
        let clamd = Clamd::new(ClamdAddress::parse(&address).unwrap().unwrap(), Duration::from_secs(2), 1 << 20);
        let err = clamd.scan(EICAR).unwrap_err();
        assert!(matches!(err, AvError::Unreachable { .. }) && err.is_transient(), "{address}: {err}");
        assert!(matches!(decide(&clamd, [EICAR], OnUnreachable::FailClosed), Decision::Wait { transient: true, .. }));
        assert!(matches!(decide(&clamd, [EICAR], OnUnreachable::FailOpen), Decision::FileUnscanned { .. }));
    }
}

/// The whole job with the real clamd: an application carrying the EICAR file is set aside with
/// the signature as its reason and gets no reply; the clean one beside it is filed and answered.
#[test]
fn the_daemon_sets_an_infected_application_aside_and_files_the_clean_one() {
    let Some(stack) = common::Stack::get() else { return };
    if clamds().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = std::env::var("MAILSTACK_CLAMD_SOCKET").unwrap();
    let extra = format!("[antivirus]\nclamd = \"{socket}\"\n");
    let (folder, to, config) = stack.contact_folder_config(dir.path(), "av", &extra);
    let once = || {
        let out = common::mailroom(&["once", "--config", config.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    once();
    let id = |who: &str| format!("av.{}.{}@example.test", who.split('@').next().unwrap(), std::process::id());
    let (eicar_pdf, clean_pdf) = (file_with(EICAR, 4096), common::pdf("clean cv"));
    for (from, name, cv) in
        [("frank@example.test", "Frank Moreau", &eicar_pdf), ("erin@example.test", "Erin Petit", &clean_pdf)]
    {
        let raw = common::application_eml(
            &format!("{name} <{from}>"),
            &to,
            "Candidature stage",
            &id(from),
            &[],
            "Bonjour, veuillez trouver ci-joint mon CV et ma lettre de motivation.",
            &[("CV.pdf", "application/pdf", cv), ("Lettre de motivation.pdf", "application/pdf", &common::pdf("lm"))],
        );
        stack.submit(from, &[&to], &raw);
    }
    common::wait_for("both applications delivered", Duration::from_secs(60), || {
        (stack.count("contact@example.test", &folder) == 2).then_some(())
    });
    let summary = once();
    assert!(summary.contains("filed 1, quarantined 1"), "{summary}");
    let files = common::files_under(&dir.path().join("data"));
    let reason = files.iter().find(|f| f.ends_with(".reason.txt")).unwrap_or_else(|| panic!("{files:#?}"));
    let reason = std::fs::read_to_string(dir.path().join("data").join(reason)).unwrap();
    assert!(reason.contains("code: infected") && reason.contains("Eicar"), "{reason}");
    assert!(!files.iter().any(|f| f.contains("Moreau-Frank")), "{files:#?}");
    assert!(files.iter().any(|f| f.contains("Petit-Erin")), "{files:#?}");
    // Erin is answered; Frank never is.
    common::wait_for("Erin's acknowledgement", Duration::from_secs(60), || {
        (!stack.messages_with("erin@example.test", "INBOX", "In-Reply-To", &id("erin@example.test")).is_empty())
            .then_some(())
    });
    assert!(stack.messages_with("frank@example.test", "INBOX", "In-Reply-To", &id("frank@example.test")).is_empty());
}
