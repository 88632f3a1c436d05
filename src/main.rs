//! The `mailroom` binary: everything lives in the library; see `mailroom --help`.
//!
//! The allocator is glibc's. mimalloc was measured (README, "Performance, measured"): it gave
//! back more after a backlog, but the extractor children (this same binary, under an address-space
//! limit) died of SIGSEGV when its reservations were refused.

fn main() -> std::process::ExitCode {
    mailroom::cli::main()
}
