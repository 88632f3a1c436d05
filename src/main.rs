//! The `mailroom` binary: everything lives in the library; see `mailroom --help`.

fn main() -> std::process::ExitCode {
    mailroom::cli::main()
}
