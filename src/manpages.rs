//! Man pages and shell completions, generated from the command line's own definition, so they
//! can never disagree with `--help`. The Debian package (`scripts/deb`) runs the binary it ships
//! as `mailroom __generate-docs DIR` and packages what lands in DIR:
//!
//! ```text
//! DIR/man/man1/mailroom.1, mailroom-run.1, … (one page per visible subcommand)
//! DIR/completions/bash/mailroom   DIR/completions/zsh/_mailroom   DIR/completions/fish/mailroom.fish
//! ```
//!
//! A hidden subcommand rather than a build script: the pages describe exactly the binary that
//! ships (same features, same version), and `build.rs` cannot see the CLI, which lives in the
//! library it would be building. Not a command for people, so it is not in the help.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap_complete::Shell;
use clap_mangen::roff::{Roff, bold, italic, roman};

/// The first argument that selects this mode.
pub(crate) const SUBCOMMAND: &str = "__generate-docs";

const BIN: &str = "mailroom";

/// `mailroom __generate-docs DIR`; `cli` is the command line's definition.
pub(crate) fn main(cli: clap::Command) -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(2).collect();
    let [dir] = args.as_slice() else {
        eprintln!("usage: {BIN} {SUBCOMMAND} DIR");
        return ExitCode::from(2);
    };
    match generate(cli, Path::new(dir)) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{BIN}: error: cannot write the documentation into {}: {e}", Path::new(dir).display());
            ExitCode::from(1)
        }
    }
}

/// Writes every man page and completion script below `out`; returns the files written.
pub(crate) fn generate(cli: clap::Command, out: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut cli = cli.disable_help_subcommand(true);
    cli.build();
    let mut written = Vec::new();

    let man_dir = out.join("man/man1");
    std::fs::create_dir_all(&man_dir)?;
    let subcommands: Vec<clap::Command> = cli.get_subcommands().filter(|s| !s.is_hide_set()).cloned().collect();
    let source = format!("{BIN} {}", cli.get_version().unwrap_or_default());
    written.push(write_page(&man_dir, cli.clone(), &source, &subcommands, true)?);
    for sub in &subcommands {
        written.push(write_page(&man_dir, sub.clone(), &source, &[], false)?);
    }

    for (shell, rel) in [
        (Shell::Bash, "completions/bash/mailroom"),
        (Shell::Zsh, "completions/zsh/_mailroom"),
        (Shell::Fish, "completions/fish/mailroom.fish"),
    ] {
        let path = out.join(rel);
        std::fs::create_dir_all(path.parent().expect("a relative path with a folder"))?;
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cli.clone(), BIN, &mut buf);
        write_file(&path, &buf)?;
        written.push(path);
    }
    Ok(written)
}

/// One page: clap_mangen's sections, then the ones a Debian admin looks for (FILES, EXIT STATUS,
/// SEE ALSO). A subcommand's page sends the reader to mailroom(1) for those.
fn write_page(
    dir: &Path,
    cmd: clap::Command,
    source: &str,
    subcommands: &[clap::Command],
    top: bool,
) -> std::io::Result<PathBuf> {
    // A subcommand has no version of its own: every page names the package's.
    let mut man = clap_mangen::Man::new(cmd).manual("mailroom manual").source(source);
    if let Some(date) = source_date() {
        man = man.date(date);
    }
    let path = dir.join(man.get_filename());
    let mut buf = Vec::new();
    man.render(&mut buf)?;

    let mut extra = Roff::new();
    if top {
        extra.control("SH", ["FILES"]);
        for (file, what) in [
            ("/etc/mailroom/mailroom.toml", "the configuration (root:mailroom, mode 0640)"),
            (
                "/etc/mailroom/imap-password, /etc/mailroom/smtp-password",
                "the passwords (root, mode 0600), handed to the service as systemd credentials",
            ),
            ("/var/lib/mailroom/", "the filed applications and the state (SQLite), owned by the mailroom user"),
            (
                "/usr/share/mailroom/templates/",
                "the built-in reply and digest templates, to copy and edit (replies.templates_dir)",
            ),
            ("/usr/share/doc/mailroom/", "the README and an example configuration with every key and its default"),
        ] {
            extra.control("TP", []).text([bold(file)]).text([roman(what)]);
        }
        extra.control("SH", ["EXIT STATUS"]);
        for (code, what) in [
            ("0", "success"),
            ("1", "the work failed (a server unreachable, a disk error); the log says why"),
            ("2", "the configuration or the command line is wrong (systemd does not restart the service then)"),
        ] {
            extra.control("TP", []).text([bold(code)]).text([roman(what)]);
        }
    }
    extra.control("SH", ["SEE ALSO"]);
    let mut see_also: Vec<String> = if top {
        subcommands.iter().map(|s| format!("{BIN}-{}", s.get_name())).collect()
    } else {
        vec![BIN.to_owned()]
    };
    see_also.extend(["systemctl".to_owned(), "journalctl".to_owned()]);
    let mut refs = Vec::new();
    for (i, name) in see_also.iter().enumerate() {
        if i > 0 {
            refs.push(roman(", "));
        }
        refs.push(bold(name.as_str()));
        refs.push(roman("(1)"));
    }
    extra.text(refs);
    if top {
        extra.control("PP", []).text([
            roman("The README in "),
            italic("/usr/share/doc/mailroom/README.md.gz"),
            roman(" explains installation, the reply rules and the folder layout."),
        ]);
    }
    buf.extend_from_slice(extra.to_roff().as_bytes());
    write_file(&path, &buf)?;
    Ok(path)
}

/// The page date, from `SOURCE_DATE_EPOCH` (set by scripts/deb from the changelog) so that two
/// builds of one version give identical pages; no date otherwise.
fn source_date() -> Option<String> {
    let secs: i64 = std::env::var("SOURCE_DATE_EPOCH").ok()?.trim().parse().ok()?;
    Some(chrono::DateTime::from_timestamp(secs, 0)?.format("%Y-%m-%d").to_string())
}

fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> clap::Command {
        clap::Command::new("mailroom")
            .version("9.9.9")
            .about("Files job applications.")
            .subcommand(clap::Command::new("run").about("Keep watching."))
            .subcommand(clap::Command::new("secret").hide(true))
    }

    #[test]
    fn one_page_per_visible_subcommand_and_three_completions() {
        let dir = tempfile::tempdir().unwrap();
        let files = generate(sample(), dir.path()).unwrap();
        let names: Vec<String> =
            files.iter().map(|f| f.strip_prefix(dir.path()).unwrap().display().to_string()).collect();
        assert_eq!(
            names,
            [
                "man/man1/mailroom.1",
                "man/man1/mailroom-run.1",
                "completions/bash/mailroom",
                "completions/zsh/_mailroom",
                "completions/fish/mailroom.fish"
            ]
        );
        let top = std::fs::read_to_string(dir.path().join("man/man1/mailroom.1")).unwrap();
        assert!(top.contains(".SH FILES") && top.contains("/etc/mailroom/mailroom.toml"), "{top}");
        assert!(top.contains("mailroom\\-run") && !top.contains("secret"), "{top}");
        let run = std::fs::read_to_string(dir.path().join("man/man1/mailroom-run.1")).unwrap();
        assert!(run.contains(".SH \"SEE ALSO\"") && !run.contains(".SH FILES"), "{run}");
        let bash = std::fs::read_to_string(dir.path().join("completions/bash/mailroom")).unwrap();
        assert!(bash.contains("complete -F _mailroom") && bash.contains(" run"), "{bash}");
    }
}
