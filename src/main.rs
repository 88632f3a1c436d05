//! The `mailroom` binary: everything lives in the library; see `mailroom --help`.

/// mimalloc rather than glibc's malloc: after a backlog, the daemon's memory goes back to the
/// system (glibc keeps what the understanding threads freed in their arenas), and its peak is
/// lower. Measured in the README ("Performance, measured"). The extractor children run the same
/// binary, so they use it too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    mailroom::cli::main()
}
