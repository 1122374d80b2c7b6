//! Link settings for the plugin library (runs at build time, on the build machine).
//!
//! faiss needs libgomp (OpenMP), `libblas.so.3` and `liblapack.so.3` at run time, and those need
//! libopenblas, libgfortran and libquadmath. A DAW user's machine need not have any of them, and
//! when a plugin cannot be loaded the host rarely says why. So the bundles carry them beside the
//! plugin binary (`cargo xtask bundle`, xtask/src/main.rs), and the plugin library's RUNPATH is
//!
//! 1. `$ORIGIN` — the directory of the plugin binary itself: the libraries the bundle ships;
//! 2. `/usr/lib/x86_64-linux-gnu/openblas-serial` — OpenBLAS's serial build (package
//!    `libopenblas0-serial`, installed by `cargo xtask setup`), for the library as cargo leaves
//!    it in `target/`, with nothing beside it. Bundling copies the BLAS it ships from there.
//!
//! Why the serial build: on Debian and Ubuntu `libblas.so.3` normally resolves to OpenBLAS's
//! pthread build, which starts a pool of threads the moment it is loaded — inside the host's
//! process, for a plugin that never calls BLAS while processing audio. The loader searches
//! RUNPATH (new dtags) before its cache, so neither the system's choice of BLAS nor a library
//! missing from the system changes what the bundled plugin loads. Where the serial directory is
//! missing, the unbundled library falls back to the system's BLAS, and bundling refuses.
//!
//! Only the plugin library gets this RUNPATH: the command-line tools keep the system's threaded
//! BLAS, which speeds up index training.

const RUNPATH: &str = "$ORIGIN:/usr/lib/x86_64-linux-gnu/openblas-serial";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target == "x86_64-unknown-linux-gnu" {
        // rustc runs the linker without a shell, so `$ORIGIN` reaches it as written.
        println!("cargo:rustc-link-arg-cdylib=-Wl,--enable-new-dtags,-rpath,{RUNPATH}");
    }
}
