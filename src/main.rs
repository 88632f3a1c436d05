//! The `mailroom` binary: everything lives in the library; see `mailroom --help`.

/// mimalloc rather than glibc's malloc: after a backlog, more of the daemon's memory goes back to
/// the system (glibc keeps what the understanding threads freed in their arenas): 46-62 MB a
/// minute after a 2,000-message backlog against 109 MB, though its peak is higher (142-182 MiB
/// against 128 MiB). Neither meets issue 16's goals; measured in the README ("Performance,
/// measured"). The extractor children run the same binary, so they use it too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    mailroom::cli::main()
}
