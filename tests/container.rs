//! Container tier: the Debian package in a booted Debian 12 (`systemd-nspawn --boot`), against the
//! mail stack on the host's loopback. One container and one test, in the order an admin lives
//! it: install; configure as the README says; enable and start (active only through READY=1); an
//! application filed and acknowledged; the STATUS line; the journal, with no candidate in it; the
//! metrics endpoint (turned on as the README says; a reload says it needs a restart); `systemctl
//! reload` with a changed template changing the next acknowledgement; the watchdog restarting a frozen daemon and the mail sent meanwhile filed after the restart; a
//! clean stop; a broken config (exit 2, no restart loop); the exposure score; an upgrade that
//! keeps the edited config and the state; a purge.
//!
//! Inputs, all provided by `scripts/test`: the mail stack (`MAILSTACK_*`), the packages built by
//! `scripts/deb` (`MAILROOM_DEB`, and `MAILROOM_DEB_UPGRADE` with a higher version), and the root
//! file system cached by `scripts/rootfs` (`MAILROOM_ROOTFS`). Needs root. Outside `scripts/test`
//! the test says SKIPPED; under `CI=true` anything missing is a failure.
//!
//! The container runs on a throwaway overlay of the cached tree (`--volatile=overlay`: the tree is
//! the read-only lower layer, every change goes to a tmpfs that vanishes with the container; no
//! copy, so it boots in about a second). It is powered off from inside when the test ends, passes
//! or fails (a `Drop` guard), and only its own nspawn process is ever signalled.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Stack, application_eml, pdf, wait_for};

/// The commands the README's "Install" section tells an admin to type, verbatim; the test checks
/// that the README still says them and then runs them (with the real passwords and CA file).
const README_IMAP_PASSWORD: &str = "( umask 077; printf '%s\\n' 'the IMAP password' > /etc/mailroom/imap-password )";
const README_SMTP_PASSWORD: &str = "( umask 077; printf '%s\\n' 'the SMTP password' > /etc/mailroom/smtp-password )";
const README_CA: &str = "install -m 0640 -g mailroom ca.pem /etc/mailroom/ca.pem";
const README_CHECK: &str = "mailroom check-config";
const README_ENABLE: &str = "systemctl enable --now mailroom";
/// The README's metrics: the line of the shipped config to change, and the scrape.
const README_METRICS_OFF: &str = "listen = \"\"";
const README_METRICS_ON: &str = "listen = \"127.0.0.1:9464\"";
const README_SCRAPE: &str = "curl -s http://127.0.0.1:9464/metrics";

/// Deadline for mail to travel (Postfix → Dovecot → mailroom → Postfix → Dovecot).
const MAIL_DEADLINE: Duration = Duration::from_secs(90);

struct Inputs {
    rootfs: PathBuf,
    deb: PathBuf,
    upgrade: PathBuf,
}

/// What the tier needs, or `None` (SKIPPED) outside `scripts/test`; under CI a failure.
fn inputs() -> Option<Inputs> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let skip = |why: String| {
        if ci {
            panic!("CI=true but the container tier cannot run: {why}. Run the tests through scripts/test.");
        }
        eprintln!("SKIPPED: container tier: {why} (scripts/test provides it)");
        None
    };
    let path = |k: &str| std::env::var_os(k).map(PathBuf::from).filter(|p| p.exists());
    let (Some(rootfs), Some(deb), Some(upgrade)) =
        (path("MAILROOM_ROOTFS"), path("MAILROOM_DEB"), path("MAILROOM_DEB_UPGRADE"))
    else {
        return skip("MAILROOM_ROOTFS, MAILROOM_DEB or MAILROOM_DEB_UPGRADE is unset or missing".into());
    };
    let uid = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if uid.as_deref().ok() != Some("0") {
        return skip("not running as root".into());
    }
    if Command::new("systemd-nspawn").arg("--version").output().is_err() {
        return skip("systemd-nspawn is not installed".into());
    }
    Some(Inputs { rootfs, deb, upgrade })
}

/// A booted container. Dropping it powers it off from inside (and, only if that fails, stops the
/// nspawn process this test started, by its pid).
struct Container {
    nspawn: Child,
    init: Option<u32>,
    console: PathBuf,
}

impl Container {
    /// Boots `rootfs` on a throwaway overlay; `files` are bound read-only into it.
    fn boot(rootfs: &Path, name: &str, files: &[(&Path, String)], console: &Path) -> Container {
        let log = std::fs::File::create(console).unwrap();
        let mut cmd = Command::new("systemd-nspawn");
        // No machined on the host: --register=no --keep-unit (see ../shared/systemd-container-facts.md).
        cmd.args(["--quiet", "--volatile=overlay", "--boot", "--register=no", "--keep-unit", "--console=read-only"])
            .arg(format!("--machine={name}"))
            .arg("--directory")
            .arg(rootfs);
        for (host, inside) in files {
            cmd.arg(format!("--bind-ro={}:{inside}", host.display()));
        }
        let nspawn = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("systemd-nspawn starts");
        let mut c = Container { nspawn, init: None, console: console.to_owned() };
        let pid = c.nspawn.id();
        let init = wait_for("the container's init (systemd, child of nspawn)", Duration::from_secs(60), || {
            if let Ok(Some(status)) = c.nspawn.try_wait() {
                panic!("systemd-nspawn exited with {status}:\n{}", c.console_tail());
            }
            child_running(pid, "systemd")
        });
        c.init = Some(init);
        // `--wait` blocks until the boot is over, once the manager answers at all (right after
        // the fork it does not yet: then the output is empty, or "offline" when systemctl reached
        // no manager, and we ask again).
        let state = wait_for("the container's boot to finish", Duration::from_secs(120), || {
            let out = c.run("systemctl is-system-running --wait", b"");
            let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            (!state.is_empty() && state != "offline" && state != "unknown").then_some(state)
        });
        assert!(
            matches!(state.as_str(), "running" | "degraded"),
            "the container did not boot: {state}\n{}\n{}",
            c.sh("systemctl --failed --no-pager || true"),
            c.console_tail()
        );
        c
    }

    fn console_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.console).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Runs a shell script inside, as root, with a clean environment; never waits longer than 3 min.
    fn run(&self, script: &str, stdin: &[u8]) -> Output {
        use std::io::Write;
        let init = self.init.expect("the container is up").to_string();
        let mut child = Command::new("timeout")
            .args(["--kill-after=5", "180", "nsenter", "-t", &init, "-a"])
            .args(["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "SYSTEMD_PAGER=", "HOME=/root"])
            .args(["DEBIAN_FRONTEND=noninteractive", "SYSTEMD_COLORS=0", "sh", "-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nsenter runs");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs a script that must succeed; its standard output.
    fn sh(&self, script: &str) -> String {
        self.sh_in(script, b"")
    }

    fn sh_in(&self, script: &str, stdin: &[u8]) -> String {
        let out = self.run(script, stdin);
        assert!(
            out.status.success(),
            "in the container: `{script}` failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `systemctl show -p KEY --value mailroom`.
    fn prop(&self, key: &str) -> String {
        self.sh(&format!("systemctl show -p {key} --value mailroom")).trim().to_owned()
    }

    fn exists(&self, path: &str) -> bool {
        self.run(&format!("test -e '{path}' || test -L '{path}'"), b"").status.success()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() && self.init.is_some() {
            let journal = self.run("journalctl -u mailroom --no-pager -n 60 -o short-precise", b"");
            eprintln!("--- mailroom journal in the container ---\n{}", String::from_utf8_lossy(&journal.stdout));
            eprintln!("--- container console (tail) ---\n{}", self.console_tail());
        }
        if let Some(init) = self.init {
            let _ = Command::new("timeout")
                .args(["20", "nsenter", "-t", &init.to_string(), "-a", "systemctl", "poweroff", "--no-block"])
                .output();
        }
        if poll(Duration::from_secs(40), || matches!(self.nspawn.try_wait(), Ok(Some(_)))) {
            return;
        }
        // nspawn powers the container off on SIGTERM; SIGKILL only if even that hangs.
        let _ = Command::new("kill").args(["-TERM", &self.nspawn.id().to_string()]).status();
        if !poll(Duration::from_secs(20), || matches!(self.nspawn.try_wait(), Ok(Some(_)))) {
            let _ = self.nspawn.kill();
            let _ = self.nspawn.wait();
        }
    }
}

/// Polls `done` until it holds or `deadline` passes (no panic: usable in `Drop`).
fn poll(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done()
}

/// The pid of a child of `parent` whose command name is `comm`.
fn child_running(parent: u32, comm: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        // pid (comm) state ppid …: comm may hold spaces, so split after the last ')'.
        let (head, rest) = stat.rsplit_once(')')?;
        let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == parent && head.split_once('(')?.1 == comm).then_some(pid)
    })
}

/// Prints how long each step took (shown with --nocapture, and on failure).
struct Steps {
    start: Instant,
    last: Instant,
}

impl Steps {
    fn new() -> Steps {
        Steps { start: Instant::now(), last: Instant::now() }
    }
    fn done(&mut self, what: &str) {
        eprintln!(
            "container: {what}: {:.1} s (total {:.1} s)",
            self.last.elapsed().as_secs_f64(),
            self.start.elapsed().as_secs_f64()
        );
        self.last = Instant::now();
    }
}

/// The admin's edits of the shipped example: each `from` line must be there, as shipped.
fn edit_example(example: &str, edits: &[(&str, String)]) -> String {
    let mut text = example.to_owned();
    for (from, to) in edits {
        assert!(text.contains(from), "the shipped configuration no longer has the line {from:?}");
        text = text.replace(from, to);
    }
    text
}

fn unique_id(tag: &str) -> String {
    format!("{tag}.{}.{}@example.test", std::process::id(), chrono::Utc::now().timestamp_nanos_opt().unwrap())
}

/// An application as a candidate's client sends it; its name appears nowhere but in the message.
fn application(from: &str, to: &str, message_id: &str, given: &str) -> Vec<u8> {
    application_eml(
        from,
        to,
        "Candidature – stage gestion de projet",
        message_id,
        &[],
        &format!("Bonjour,\r\n\r\nVeuillez trouver ci-joint mon CV et ma lettre de motivation.\r\n\r\n{given}"),
        &[
            (&format!("CV_{given}.pdf"), "application/pdf", &pdf("curriculum vitae")),
            ("Lettre de motivation.pdf", "application/pdf", &pdf("lettre")),
        ],
    )
}

fn wait_for_ack(stack: &Stack, user: &str, message_id: &str) {
    wait_for(&format!("the acknowledgement of {message_id} in {user}'s INBOX"), MAIL_DEADLINE, || {
        (!stack.messages_with(user, "INBOX", "In-Reply-To", message_id).is_empty()).then_some(())
    });
}

fn deb_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn the_package_installs_runs_upgrades_and_purges_under_systemd() {
    let Some(stack) = Stack::get() else { return };
    let Some(inputs) = inputs() else { return };
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for line in [
        README_IMAP_PASSWORD,
        README_SMTP_PASSWORD,
        README_CA,
        README_CHECK,
        README_ENABLE,
        README_METRICS_ON,
        README_SCRAPE,
    ] {
        assert!(readme.contains(line), "the README's Install section no longer says: {line}");
    }
    let mut steps = Steps::new();
    let (deb, upgrade) = (deb_name(&inputs.deb), deb_name(&inputs.upgrade));
    let c = Container::boot(
        &inputs.rootfs,
        &format!("mailroom-test-{}", std::process::id()),
        &[(&inputs.deb, format!("/srv/new/{deb}")), (&inputs.upgrade, format!("/srv/upgrade/{upgrade}"))],
        // Kept after the run (overwritten by the next one), for whoever debugs a failure.
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("target/container-console.log"),
    );
    steps.done("boot");

    // Install: the files land with their owners and modes, the user exists, and the service is
    // neither enabled nor started (the shipped config is only an example).
    c.sh(&format!("apt-get install -y -q --no-install-recommends /srv/new/{deb}"));
    assert_eq!(c.sh("systemctl is-enabled mailroom || true").trim(), "disabled");
    assert_eq!(c.sh("systemctl is-active mailroom || true").trim(), "inactive");
    assert_eq!(c.sh("stat -c '%U:%G %a' /etc/mailroom/mailroom.toml").trim(), "root:mailroom 640");
    let user = c.sh("getent passwd mailroom");
    assert!(user.trim_end().ends_with(":/var/lib/mailroom:/usr/sbin/nologin"), "{user}");
    for f in [
        "/usr/bin/mailroom",
        "/usr/lib/systemd/system/mailroom.service",
        "/usr/lib/sysusers.d/mailroom.conf",
        "/usr/share/mailroom/templates/fr/complete.j2",
        "/usr/share/mailroom/templates/en/digest.html.j2",
        "/usr/share/man/man1/mailroom.1.gz",
        "/usr/share/man/man1/mailroom-run.1.gz",
        "/usr/share/man/man1/mailroom-check-config.1.gz",
        "/usr/share/bash-completion/completions/mailroom",
        "/usr/share/zsh/vendor-completions/_mailroom",
        "/usr/share/fish/vendor_completions.d/mailroom.fish",
        "/usr/share/doc/mailroom/copyright",
        "/usr/share/doc/mailroom/changelog.Debian.gz",
        "/usr/share/doc/mailroom/README.md",
        "/usr/share/doc/mailroom/examples/mailroom.example.toml",
    ] {
        assert!(c.exists(f), "{f} is not installed");
    }
    steps.done("install");

    // Configure as the README says: edit the shipped file in place (an editor keeps its owner
    // and mode), the passwords, the CA of a private mail server, check, enable and start.
    let folder = stack.fresh_folder("contact@example.test", "ctr");
    let example = c.sh("cat /etc/mailroom/mailroom.toml");
    let config = edit_example(
        &example,
        &[
            ("host = \"imap.example.test\"", "host = \"localhost\"".into()),
            ("port = 993", format!("port = {}", stack.port("MAILSTACK_IMAPS_PORT"))),
            ("host = \"smtp.example.test\"", "host = \"localhost\"".into()),
            ("port = 465", format!("port = {}", stack.port("MAILSTACK_SUBMISSIONS_PORT"))),
            ("# ca_file = \"/etc/mailroom/ca.pem\"", "ca_file = \"/etc/mailroom/ca.pem\"".into()),
            ("folder = \"INBOX\"", format!("folder = \"{folder}\"")),
            ("team = [\"recrutement@example.test\"]", "team = [\"team@example.test\"]".into()),
            ("closing_date = \"2020-09-30\"\n", String::new()),
        ],
    );
    c.sh_in("cat > /etc/mailroom/mailroom.toml", config.as_bytes());
    let password = format!("'{}'", stack.password());
    c.sh(&README_IMAP_PASSWORD.replace("'the IMAP password'", &password));
    c.sh(&README_SMTP_PASSWORD.replace("'the SMTP password'", &password));
    c.sh_in("cat > /root/ca.pem", &std::fs::read(stack.ca()).unwrap());
    c.sh(&format!("cd /root && {README_CA}"));
    assert_eq!(c.sh("stat -c '%U:%G %a' /etc/mailroom/imap-password").trim(), "root:root 600");
    c.sh(README_CHECK);
    // Type=notify: `systemctl start` returns, and the unit is active, only once READY=1 came.
    c.sh(README_ENABLE);
    assert_eq!(c.prop("ActiveState"), "active");
    assert_eq!(c.prop("Type"), "notify");
    assert_eq!(c.sh("systemctl is-enabled mailroom").trim(), "enabled");
    steps.done("configure, enable --now, READY=1");

    // An application through Postfix is filed and acknowledged.
    let to = format!("contact+{folder}@example.test");
    let alice_id = unique_id("app1");
    stack.submit(
        "alice@example.test",
        &[&to],
        &application("Alice Martin <alice@example.test>", &to, &alice_id, "Alice"),
    );
    wait_for_ack(&stack, "alice@example.test", &alice_id);
    let status = wait_for("STATUS= to count the filed application", MAIL_DEADLINE, || {
        let s = c.prop("StatusText");
        s.contains("1 filed").then_some(s)
    });
    let filed = c.sh("cd /var/lib/mailroom/applications && find . -type f | sort");
    assert!(filed.contains("/Martin-Alice--") && filed.contains("CV - Alice Martin.pdf"), "{filed}");
    // Only the service may read what it files: folders 0700, files 0600 (the privacy promise).
    let person = c.sh("cd /var/lib/mailroom/applications && ls -d stage-gestion-projet/Martin-Alice--*");
    let modes = c.sh(&format!(
        "cd /var/lib/mailroom/applications && stat -c '%U:%G %a' {} '{}/CV - Alice Martin.pdf'",
        person.trim(),
        person.trim()
    ));
    assert_eq!(modes, "mailroom:mailroom 700\nmailroom:mailroom 600\n");
    steps.done("application filed and acknowledged");

    // systemctl status shows the STATUS line; the journal shows the work and no candidate.
    let shown = c.sh("systemctl status mailroom --no-pager || true");
    assert!(shown.contains(&format!("Status: \"{status}")), "{shown}");
    let journal = c.sh("journalctl -u mailroom --no-pager -o cat");
    assert!(journal.contains("application filed") && journal.contains("sent"), "{journal}");
    let everything = c.sh("journalctl -u mailroom --no-pager -o json").to_lowercase();
    for secret in ["alice", "martin", "candidature", "lettre de motivation", "cv_"] {
        assert!(!everything.contains(secret), "the journal mentions {secret:?}:\n{journal}");
    }
    steps.done("status line and journal");

    // Metrics, as the README turns them on: a reload says the address needs a restart (and keeps
    // running); after the restart the endpoint answers inside the container, only on /metrics.
    let pid = c.prop("MainPID");
    let config = c.sh("cat /etc/mailroom/mailroom.toml");
    c.sh_in(
        "cat > /etc/mailroom/mailroom.toml",
        edit_example(&config, &[(README_METRICS_OFF, README_METRICS_ON.into())]).as_bytes(),
    );
    c.sh("systemctl reload mailroom");
    let status = wait_for("the reload to say metrics.listen needs a restart", MAIL_DEADLINE, || {
        let s = c.prop("StatusText");
        s.contains("a restart is needed to apply metrics.listen").then_some(s)
    });
    assert_eq!(c.prop("MainPID"), pid, "a reload keeps the process: {status}");
    assert_eq!(c.prop("ActiveState"), "active");
    assert!(c.run("curl -sf http://127.0.0.1:9464/metrics", b"").stdout.is_empty(), "not listening before a restart");
    c.sh("systemctl restart mailroom");
    let metrics = c.sh(README_SCRAPE);
    let series = |name: &str| {
        metrics.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit_once(' ')).map(|(_, v)| v.to_owned())
    };
    let mailbox = format!("{{mailbox=\"contact@example.test@localhost/{folder}\"}}");
    assert_eq!(
        series(&format!("mailroom_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))).as_deref(),
        Some("1")
    );
    assert_eq!(series(&format!("mailroom_messages_filed_total{mailbox}")).as_deref(), Some("1"), "{metrics}");
    assert_eq!(series("mailroom_outbox_depth ").as_deref(), Some("0"), "{metrics}");
    let not_found = c.sh("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9464/");
    assert_eq!(not_found, "404");
    steps.done("metrics: reload says restart, endpoint answers after it");

    // `systemctl reload` with a changed template: the next acknowledgement uses it, from the same
    // process.
    c.sh("mkdir -p /etc/mailroom/templates/fr && sed 's/{% block subject %}/{% block subject %}[v2] /' \
          /usr/share/mailroom/templates/fr/complete.j2 > /etc/mailroom/templates/fr/complete.j2");
    let config = c.sh("cat /etc/mailroom/mailroom.toml");
    c.sh_in(
        "cat > /etc/mailroom/mailroom.toml",
        edit_example(
            &config,
            &[("# templates_dir = \"/etc/mailroom/templates\"", "templates_dir = \"/etc/mailroom/templates\"".into())],
        )
        .as_bytes(),
    );
    let pid = c.prop("MainPID");
    c.sh("systemctl reload mailroom");
    wait_for("the reload to be in force", MAIL_DEADLINE, || {
        c.prop("StatusText").contains("configuration reloaded").then_some(())
    });
    assert_eq!(c.prop("MainPID"), pid);
    let journal = c.sh("journalctl -u mailroom --no-pager -o cat");
    assert!(journal.contains("reloading the configuration and the templates"), "{journal}");
    let carol_id = unique_id("app-reload");
    stack.submit(
        "carol@example.test",
        &[&to],
        &application("Carol Petit <carol@example.test>", &to, &carol_id, "Carol"),
    );
    wait_for_ack(&stack, "carol@example.test", &carol_id);
    let ack = stack.messages_with("carol@example.test", "INBOX", "In-Reply-To", &carol_id).remove(0);
    let subject = mailroom::understand::parse::parse(ack.as_bytes()).unwrap().subject.unwrap_or_default();
    assert!(subject.starts_with("[v2] "), "the reloaded template: {subject:?}");
    assert_eq!(c.prop("MainPID"), pid, "no restart");
    steps.done("reload with a changed template");

    // The watchdog: a frozen daemon is killed and restarted, and mail sent meanwhile is filed.
    c.sh("mkdir -p /etc/systemd/system/mailroom.service.d && printf '[Service]\\nWatchdogSec=5s\\n' > /etc/systemd/system/mailroom.service.d/test-watchdog.conf && systemctl daemon-reload && systemctl restart mailroom");
    let frozen = c.prop("MainPID");
    c.sh("systemctl kill --kill-whom=main --signal=SIGSTOP mailroom");
    let bob_id = unique_id("app2");
    stack.submit("bob@example.test", &[&to], &application("Bob Durand <bob@example.test>", &to, &bob_id, "Bob"));
    wait_for("the watchdog to restart the frozen daemon", Duration::from_secs(90), || {
        let (restarts, pid, state) = (c.prop("NRestarts"), c.prop("MainPID"), c.prop("ActiveState"));
        (restarts != "0" && pid != frozen && pid != "0" && state == "active").then_some(())
    });
    let journal = c.sh("journalctl -u mailroom --no-pager -o cat");
    assert!(journal.contains("Watchdog timeout"), "{journal}");
    wait_for_ack(&stack, "bob@example.test", &bob_id);
    wait_for("STATUS= to count the three applications", MAIL_DEADLINE, || {
        c.prop("StatusText").contains("3 filed").then_some(())
    });
    steps.done("watchdog restart, mail filed after it");

    // A clean stop, well within TimeoutStopSec.
    let limit = c.prop("TimeoutStopUSec");
    let started = Instant::now();
    c.sh("systemctl stop mailroom");
    let took = started.elapsed();
    assert_eq!(limit, "30s");
    assert!(took < Duration::from_secs(30), "stop took {took:?}");
    assert_eq!(
        (c.prop("Result"), c.prop("ExecMainCode"), c.prop("ExecMainStatus")),
        ("success".into(), "1".into(), "0".into()),
        "the daemon exits 0 on SIGTERM (code 1 = exited)"
    );
    steps.done(&format!("stop ({:.1} s)", took.as_secs_f64()));

    // A broken config: exit 2, the unit failed, no restart scheduled; the good one brings it back.
    let good = c.sh("cat /etc/mailroom/mailroom.toml");
    let imaps = format!("port = {}", stack.port("MAILSTACK_IMAPS_PORT"));
    c.sh_in(
        "cat > /etc/mailroom/mailroom.toml",
        good.replacen(&imaps, &format!("prot = {}", stack.port("MAILSTACK_IMAPS_PORT")), 1).as_bytes(),
    );
    let start = c.run("systemctl start mailroom", b"");
    assert!(!start.status.success(), "a broken config must not start");
    assert_eq!(
        (c.prop("ActiveState"), c.prop("SubState"), c.prop("ExecMainStatus"), c.prop("NRestarts")),
        ("failed".into(), "failed".into(), "2".into(), "0".into()),
        "exit 2 and no restart (SubState would be auto-restart)"
    );
    let journal = c.sh("journalctl -u mailroom --no-pager -o cat -n 20");
    assert!(journal.contains("unknown field `prot`"), "the error names the key: {journal}");
    c.sh_in("cat > /etc/mailroom/mailroom.toml", good.as_bytes());
    c.sh("systemctl reset-failed mailroom && systemctl start mailroom");
    assert_eq!(c.prop("ActiveState"), "active");
    steps.done("broken config: exit 2, no restart loop");

    // The exposure score, measured by the running systemd.
    let security = c.sh("systemd-analyze security mailroom.service --no-pager");
    let level: f64 = security
        .lines()
        .find_map(|l| l.split("Overall exposure level for mailroom.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{security}"));
    assert!(level <= 1.5, "exposure {level} > 1.5:\n{security}");
    steps.done(&format!("systemd-analyze security: {level}"));

    // An upgrade keeps the edited config (no prompt, no .dpkg-dist) and the state, and restarts
    // the running service with the new binary.
    let state_of = || {
        c.sh("sha256sum /etc/mailroom/mailroom.toml; stat -c '%U:%G %a' /etc/mailroom/mailroom.toml; \
              cd /var/lib/mailroom && find . -type f -not -name '*.sqlite3*' -not -name '*.lock' | sort | xargs -d '\\n' sha256sum; \
              mailroom status --json | grep -E '\"(filed|quarantined)' ")
    };
    let before = state_of();
    let pid = c.prop("MainPID");
    c.sh(&format!("apt-get install -y -q --no-install-recommends /srv/upgrade/{upgrade} </dev/null"));
    let version = c.sh("dpkg-query -W -f '${Version}' mailroom");
    assert!(upgrade.contains(&format!("_{version}_")), "installed {version}, expected {upgrade}");
    assert_eq!(state_of(), before, "the config, the filed applications and the state survive the upgrade");
    assert_eq!(
        c.sh("ls /etc/mailroom").split_whitespace().collect::<Vec<_>>(),
        ["ca.pem", "imap-password", "mailroom.toml", "smtp-password", "templates"]
    );
    assert_eq!(c.prop("ActiveState"), "active");
    assert_ne!(c.prop("MainPID"), pid, "the running service is restarted after an upgrade");
    steps.done(&format!("upgrade to {version}"));

    // Purge: configuration, passwords, state, drop-ins and enablement go; the system user stays.
    c.sh("apt-get purge -y -q mailroom");
    for gone in [
        "/etc/mailroom",
        "/var/lib/mailroom",
        "/var/lib/private/mailroom",
        "/usr/bin/mailroom",
        "/usr/lib/systemd/system/mailroom.service",
        "/etc/systemd/system/multi-user.target.wants/mailroom.service",
        "/etc/systemd/system/mailroom.service.d",
        "/usr/share/doc/mailroom",
    ] {
        assert!(!c.exists(gone), "{gone} is left after purge");
    }
    assert_eq!(c.sh("dpkg-statoverride --list | grep -c mailroom || true").trim(), "0");
    assert_eq!(
        c.sh("dpkg-query -W -f '${db:Status-Status}' mailroom 2>/dev/null || echo not-installed").trim(),
        "not-installed"
    );
    assert_eq!(c.sh("find /proc -maxdepth 1 -user mailroom | wc -l").trim(), "0", "no process of the service is left");
    assert_eq!(c.sh("systemctl list-unit-files --no-legend mailroom.service | wc -l").trim(), "0");
    assert!(c.run("getent passwd mailroom", b"").status.success(), "the system user stays (README: Remove)");
    steps.done("purge");
    drop(c);
    steps.done("poweroff");
}
