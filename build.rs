//! Link settings of the `mailroom` executable (nothing is generated).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=MAILROOM_NO_RELR");
    let target = |key: &str| std::env::var(key).unwrap_or_default();
    // Relative relocations packed (DT_RELR): the position-independent executable's relocation
    // table shrinks from 1.3 MB to a few kB. The loader reads that table at every start and it
    // stays resident, a tenth of the idle daemon's 15 MB budget. Needs glibc ≥ 2.36 at run time
    // and binutils ≥ 2.38 to link (Debian 12 has 2.36 and 2.40); `MAILROOM_NO_RELR=1` builds
    // without it on an older toolchain.
    if target("CARGO_CFG_TARGET_OS") == "linux"
        && target("CARGO_CFG_TARGET_ENV") == "gnu"
        && std::env::var_os("MAILROOM_NO_RELR").is_none()
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
