//! The example configuration is the admin's reference: it must load, and the defaults it states
//! must be the defaults the code has.

use std::path::Path;

use mailroom::config::{Config, Limits};

#[test]
fn example_config_loads_and_states_the_real_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/mailroom.example.toml")).unwrap();
    let path = dir.path().join("mailroom.toml");
    std::fs::write(&path, &example).unwrap();
    std::fs::write(dir.path().join("imap-password"), "secret\n").unwrap();
    std::fs::write(dir.path().join("smtp-password"), "secret\n").unwrap();
    let cfg = Config::load_with_env(&path, std::iter::empty()).expect("the example config is valid");

    let d = Limits::default();
    assert_eq!(cfg.limits.max_message_bytes, d.max_message_bytes);
    assert_eq!(cfg.limits.max_parts, d.max_parts);
    assert_eq!(cfg.limits.max_depth, d.max_depth);
    assert_eq!(cfg.limits.max_document_bytes, d.max_document_bytes);
    let replies = mailroom::config::Replies::default();
    assert_eq!(cfg.replies.enabled, replies.enabled);
    assert_eq!(cfg.replies.acknowledge_backlog, replies.acknowledge_backlog);
    assert_eq!(cfg.replies.default_language, replies.default_language);
    let storage = mailroom::config::Storage::default();
    assert_eq!(cfg.storage.data_dir, storage.data_dir);
    assert_eq!(cfg.storage.state_path, storage.state_path);

    // The same file with only the required keys gives the same values: the comments do not lie.
    let minimal = r#"
[imap]
host = "imap.example.test"
username = "contact@example.test"
password_file = "imap-password"
[smtp]
host = "smtp.example.test"
username = "contact@example.test"
password_file = "smtp-password"
[identity]
from = "contact@example.test"
organisation = "La 27e Région"
"#;
    let min_path = dir.path().join("minimal.toml");
    std::fs::write(&min_path, minimal).unwrap();
    let min = Config::load_with_env(&min_path, std::iter::empty()).unwrap();
    assert_eq!(
        (min.imap.port, min.imap.tls, &min.imap.folder, &min.imap.filed_keyword, min.imap.poll_interval_secs),
        (cfg.imap.port, cfg.imap.tls, &cfg.imap.folder, &cfg.imap.filed_keyword, cfg.imap.poll_interval_secs)
    );
    assert_eq!(
        (min.imap.timeout_secs, min.imap.batch_messages, min.imap.batch_bytes),
        (cfg.imap.timeout_secs, cfg.imap.batch_messages, cfg.imap.batch_bytes)
    );
    assert_eq!(
        (min.smtp.port, min.smtp.tls, min.smtp.timeout_secs),
        (cfg.smtp.port, cfg.smtp.tls, cfg.smtp.timeout_secs)
    );
    assert_eq!((&min.log.level, min.log.format), (&cfg.log.level, cfg.log.format));
    let (p, d) = (&cfg.privacy, &min.privacy);
    assert_eq!(
        (p.enabled, &p.schedule, p.retention_months, p.consent_retention_months, p.quarantine_days),
        (d.enabled, &d.schedule, d.retention_months, d.consent_retention_months, d.quarantine_days)
    );
    assert_eq!(
        (p.history_days, p.audit_days, &p.purge_mailbox, p.announce_days, &p.controller, &p.contact, &p.purpose),
        (d.history_days, d.audit_days, &d.purge_mailbox, d.announce_days, &d.controller, &d.contact, &d.purpose)
    );
    assert_eq!((min.metrics.listen.as_str(), cfg.metrics.address()), ("", None), "metrics are off by default");
    // [publish] is commented out (publishing is off until url is set): its commented defaults,
    // uncommented, are the code's.
    assert!(!cfg.publish.enabled(), "the example does not publish until url is set");
    let section = &example[example.find("\n[publish]\n").unwrap()..];
    let section = &section[..section[1..].find("\n[").unwrap()];
    let defaults: String = section
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| {
            ["root =", "nextcloud_trash =", "trash_url =", "timeout_secs =", "stuck_after_minutes ="]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(defaults.lines().count(), 5, "{defaults}");
    let with_defaults = min_path.with_file_name("publish.toml");
    std::fs::write(&with_defaults, format!("{minimal}[publish]\n{defaults}")).unwrap();
    let stated = Config::load_with_env(&with_defaults, std::iter::empty()).unwrap().publish;
    let publish = mailroom::config::Publish::default();
    assert_eq!(
        (&stated.root, stated.nextcloud_trash, &stated.trash_url, stated.timeout_secs, stated.stuck_after_minutes),
        (&publish.root, publish.nextcloud_trash, &publish.trash_url, publish.timeout_secs, publish.stuck_after_minutes)
    );

    // And the templates it would use compile.
    mailroom::reply::Replier::new(&cfg).expect("built-in templates compile");
}

#[test]
fn check_config_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[imap]\nhost = \"h\"\nusername = \"u\"\npassword = \"p\"\nport = 0\n[smtp]\nhost = \"h\"\nusername = \"u\"\npassword = \"p\"\n[identity]\nfrom = \"a@example.test\"\norganisation = \"O\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .args(["check-config", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("imap.port"), "{err}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .args(["check-config", "--config", "/nonexistent/mailroom.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/mailroom.toml"));
}

/// Every field of every configuration struct appears in the example, set or commented out: the
/// admin's reference cannot fall behind the code. (Read from the source, because the structs
/// have no serialisable form that lists optional keys.)
#[test]
fn example_config_lists_every_key() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(root.join("src/config.rs")).unwrap();
    let example = std::fs::read_to_string(root.join("config/mailroom.example.toml")).unwrap();
    let sections = [
        ("ImapConfig", "[imap]"),
        ("SmtpConfig", "[smtp]"),
        ("Identity", "[identity]"),
        ("Storage", "[storage]"),
        ("Replies", "[replies]"),
        ("Limits", "[limits]"),
        ("AntivirusConfig", "[antivirus]"),
        ("DigestConfig", "[digest]"),
        ("Log", "[log]"),
        ("PrivacyConfig", "[privacy]"),
        ("MetricsConfig", "[metrics]"),
        ("Publish", "[publish]"),
        ("Posting", "[[postings]]"),
    ];
    for (name, header) in sections {
        let start = source.find(&format!("pub struct {name} {{")).unwrap_or_else(|| panic!("struct {name}"));
        let body = &source[start..start + source[start..].find("\n}").unwrap()];
        let line = format!("\n{header}\n");
        let section_start = example.find(&line).unwrap_or_else(|| panic!("{header} missing from the example"));
        let rest = &example[section_start + line.len() - 1..];
        let section = &rest[..rest.find("\n[").unwrap_or(rest.len())];
        for line in body.lines() {
            let Some(field) = line
                .trim()
                .strip_prefix("pub ")
                .filter(|l| !l.starts_with("struct "))
                .and_then(|l| l.split(':').next())
            else {
                continue;
            };
            let listed = section.lines().any(|l| {
                let l = l.trim_start_matches(['#', ' ']);
                l.starts_with(&format!("{field} =")) || l.starts_with(&format!("{field}="))
            });
            assert!(listed, "{header} {field}: not in config/mailroom.example.toml");
        }
    }
}

/// A template with an error stops the start (exit 2), naming the file and the line.
#[test]
fn a_broken_template_stops_the_start_with_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("templates/fr")).unwrap();
    std::fs::write(
        dir.path().join("templates/fr/complete.j2"),
        "{% block subject %}Bien reçu{% endblock %}\n{% block message %}\nBonjour {{ candidate.name \n{% endblock %}\n",
    )
    .unwrap();
    let config = dir.path().join("mailroom.toml");
    std::fs::write(
        &config,
        "[imap]\nhost = \"h\"\nusername = \"u\"\npassword = \"p\"\n[smtp]\nhost = \"h\"\nusername = \"u\"\npassword = \"p\"\n[identity]\nfrom = \"a@example.test\"\norganisation = \"O\"\n[replies]\ntemplates_dir = \"templates\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .args(["check-config", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    // The unclosed `{{` of line 3 is noticed at the `{%` that opens line 4.
    assert!(err.contains("templates/fr/complete.j2: line 4:"), "{err}");
}
