//! Link settings for the plugin library (runs at build time, on the build machine).
//!
//! faiss links `libblas.so.3` and `liblapack.so.3`. On Debian and Ubuntu these resolve to
//! OpenBLAS's pthread build, which starts a pool of threads the moment it is loaded — inside the
//! host's process, for a plugin that never calls BLAS while processing audio. The plugin
//! therefore looks for OpenBLAS's serial build first (package `libopenblas0-serial`, installed
//! by `cargo xtask setup`); where that directory is missing the system's BLAS is used as before.
//! The command-line tools keep the threaded BLAS: index training benefits from it.

const SERIAL_OPENBLAS: &str = "/usr/lib/x86_64-linux-gnu/openblas-serial";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target == "x86_64-unknown-linux-gnu" {
        // RUNPATH (new dtags) is searched before the system's library cache.
        println!("cargo:rustc-link-arg-cdylib=-Wl,--enable-new-dtags,-rpath,{SERIAL_OPENBLAS}");
    }
}
