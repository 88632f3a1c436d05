//! scripts/install stages everything a running service needs, and never overwrites an admin's
//! configuration.

use std::path::Path;
use std::process::Command;

#[test]
fn install_stages_the_service_and_keeps_an_existing_config() {
    let dest = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install");
    let run = || {
        let out = Command::new(&script)
            .args(["--destdir", dest.path().to_str().unwrap(), "--binary", env!("CARGO_BIN_EXE_mailroom")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    run();
    for f in [
        "usr/bin/mailroom",
        "etc/systemd/system/mailroom.service",
        "etc/mailroom/mailroom.toml",
        "usr/share/mailroom/templates/fr/complete.j2",
        "usr/share/mailroom/templates/fr/digest.html.j2",
        "usr/share/doc/mailroom/README.md",
        "usr/lib/sysusers.d/mailroom.conf",
        "usr/share/man/man1/mailroom.1.gz",
        "usr/share/man/man1/mailroom-run.1.gz",
        "usr/share/bash-completion/completions/mailroom",
    ] {
        assert!(dest.path().join(f).is_file(), "{f} not installed");
    }
    let config = dest.path().join("etc/mailroom/mailroom.toml");
    std::fs::write(&config, "# the admin's own\n").unwrap();
    run();
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "# the admin's own\n");
    let out = Command::new(dest.path().join("usr/bin/mailroom")).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("check-config"));
}
