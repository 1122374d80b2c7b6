//! Project tasks, run on the developer's or CI's machine (`cargo xtask <command>`):
//! `setup` installs what the build and tests need, `bundle` builds the plugin bundles,
//! `test` runs every test against a fresh bundle, `demo` renders audio through the built
//! plugin, `bench` runs the benchmarks, `install` puts the plugins and the live app where hosts
//! and shells find them, and `screenshots` photographs the editor for the README.

#[allow(dead_code)] // shared with the integration tests, which use all of it
mod clap_host;
mod demo;
mod setup;
mod speech;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

const USAGE: &str = "usage: cargo xtask <command>

  setup                      install system packages, the Python test venv and ONNX Runtime
  bundle rvc-stage --release build target/bundled/rvc-stage.clap and rvc-stage.vst3
  test                       setup, bundle, then run every test
  demo                       setup, bundle, then render a test signal through the built plugin
  bench                      run the benchmarks (release build)
  install                    bundle, then copy the CLAP and VST3 plugins with their libraries
                             into ~/.clap/rvc-stage/ and ~/.vst3/, and the live app beside
                             them, linked as ~/.local/bin/rvc-stage-live
  uninstall                  remove what install copied
  screenshots                photograph the editor under Xvfb into tests/screenshots/
  fuzz [SECONDS]             mutate index files through the loader and search (default 600 s)";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match command.as_str() {
        "setup" => setup::run().map(drop),
        "bundle" => {
            nice_plug_xtask::main_with_args("cargo xtask", std::iter::once(command).chain(rest))?;
            copy_runtime_next_to_bundles(setup::installed_onnxruntime()?.as_deref())?;
            ship_faiss_libraries()
        }
        "test" => test(&rest),
        "demo" => demo::run(),
        "bench" => bench(&rest),
        "install" => install(),
        "screenshots" => screenshots(),
        "uninstall" => uninstall(),
        "fuzz" => fuzz(rest.first().map(String::as_str).unwrap_or("600")),
        _ => bail!("{USAGE}"),
    }
}

/// The workspace root (xtask lives one level below it). `cargo xtask` (cargo run) says where
/// xtask's manifest is when it runs; the path compiled in is only the fallback, because a
/// binary built in another checkout sharing the target directory can look up to date here.
pub fn workspace_root() -> PathBuf {
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest.parent().expect("xtask is inside the workspace").to_path_buf()
}

/// The cargo target directory, honouring `CARGO_TARGET_DIR` like cargo does.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// Builds the release bundles (with faiss's run-time libraries, and ONNX Runtime when setup has
/// it, next to the plugin binaries) and returns the path of the CLAP one.
pub fn bundle() -> Result<PathBuf> {
    nice_plug_xtask::main_with_args("cargo xtask", ["bundle", "rvc-stage", "--release"].map(String::from))?;
    copy_runtime_next_to_bundles(setup::installed_onnxruntime()?.as_deref())?;
    ship_faiss_libraries()?;
    let clap = target_dir().join("bundled/rvc-stage.clap");
    anyhow::ensure!(clap.exists(), "bundling finished but {} is missing", clap.display());
    Ok(clap)
}

/// The plugin looks for `libonnxruntime.so.1.31.1` next to its own binary: beside the `.clap`
/// file, and in the VST3 bundle's binary directory. Installing the plugin means copying it too.
fn copy_runtime_next_to_bundles(library: Option<&std::path::Path>) -> Result<()> {
    let Some(library) = library else {
        println!("bundle: no ONNX Runtime from setup; the plugin will look for it elsewhere (see README)");
        return Ok(());
    };
    let name = library.file_name().context("the runtime library has a file name")?;
    for dir in plugin_binary_dirs() {
        std::fs::copy(library, dir.join(name))
            .with_context(|| format!("copying ONNX Runtime into {}", dir.display()))?;
    }
    Ok(())
}

/// The plugin binaries bundling made: `rvc-stage.clap`, and the VST3 bundle's `rvc-stage.so`.
fn plugin_binaries() -> Vec<PathBuf> {
    let bundled = target_dir().join("bundled");
    [bundled.join("rvc-stage.clap"), bundled.join("rvc-stage.vst3/Contents/x86_64-linux/rvc-stage.so")]
        .into_iter()
        .filter(|binary| binary.exists())
        .collect()
}

/// The directories holding a plugin binary, where the libraries it loads go.
fn plugin_binary_dirs() -> Vec<PathBuf> {
    plugin_binaries().iter().filter_map(|binary| binary.parent()).map(PathBuf::from).collect()
}

/// Where Debian and Ubuntu put OpenBLAS's serial build: the second entry of the plugin's RUNPATH
/// (build.rs), so the unbundled plugin resolves its BLAS there.
const SERIAL_OPENBLAS: &str = "/usr/lib/x86_64-linux-gnu/openblas-serial";

/// Libraries every Linux desktop has, in versions the plugin's own build already requires
/// (glibc, and the compiler's libstdc++ and libgcc_s): the plugin uses the host machine's.
const BASE_SYSTEM: &[&str] =
    &["libc.so.", "libm.so.", "libpthread.so.", "libdl.so.", "librt.so.", "libstdc++.so.", "libgcc_s.so."];

/// Copies every library the plugin links beyond the base system — faiss's libgomp, BLAS and
/// LAPACK, and what they need — next to the plugin binaries, where its `$ORIGIN` RUNPATH finds
/// them first (build.rs): the plugin then loads on a machine without them.
///
/// The build machine's loader says which libraries those are and where they live: `ldd` on a copy
/// of the plugin alone in a scratch directory (in the bundle, earlier copies would answer). The
/// BLAS must come from OpenBLAS's serial build, or loading the plugin would start threads in the
/// host. A library's RUNPATH only serves its own dependencies, so copies that need another copy
/// (libopenblas needs libgfortran, which needs libquadmath) get an `$ORIGIN` RUNPATH too.
fn ship_faiss_libraries() -> Result<()> {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        return Ok(());
    }
    let Some(plugin) = plugin_binaries().into_iter().next() else { return Ok(()) };
    let libraries = libraries_beyond_base_system(&plugin)?;
    for (name, path) in &libraries {
        let is_blas = ["libblas.", "liblapack.", "libopenblas"].iter().any(|prefix| name.starts_with(prefix));
        anyhow::ensure!(
            !is_blas || path.starts_with(SERIAL_OPENBLAS),
            "the plugin's {name} resolves to {}, not to OpenBLAS's serial build in {SERIAL_OPENBLAS}, \
             and would start a thread pool inside the host: install libopenblas0-serial \
             (`cargo xtask setup` does)",
            path.display()
        );
    }
    let names: Vec<&str> = libraries.iter().map(|(name, _)| name.as_str()).collect();
    for dir in plugin_binary_dirs() {
        for (name, path) in &libraries {
            let copy = dir.join(name);
            std::fs::copy(path, &copy).with_context(|| format!("copying {} into {}", path.display(), dir.display()))?;
            let needs_a_copy = patchelf(&["--print-needed"], &copy)?.lines().any(|needed| names.contains(&needed));
            if needs_a_copy && patchelf(&["--print-rpath"], &copy)?.trim() != "$ORIGIN" {
                patchelf(&["--set-rpath", "$ORIGIN"], &copy)?;
            }
        }
    }
    println!("bundle: shipped {} beside the plugin binaries", names.join(", "));
    Ok(())
}

/// `(name, path)` of each library `plugin` loads that is not part of the base system, as the
/// loader resolves them for a copy of `plugin` with nothing beside it.
fn libraries_beyond_base_system(plugin: &std::path::Path) -> Result<Vec<(String, PathBuf)>> {
    let scratch = std::env::temp_dir().join(format!("rvc-stage-bundle-ldd-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let alone = scratch.join(plugin.file_name().context("the plugin binary has a file name")?);
    std::fs::copy(plugin, &alone)
        .with_context(|| format!("copying {} into {}", plugin.display(), scratch.display()))?;
    let output = Command::new("ldd").arg(&alone).output().context("running ldd (package libc-bin)");
    std::fs::remove_dir_all(&scratch).with_context(|| format!("removing {}", scratch.display()))?;
    let output = output?;
    anyhow::ensure!(
        output.status.success(),
        "ldd {} failed: {}",
        plugin.display(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let mut libraries = Vec::new();
    // Lines read `libgomp.so.1 => /lib/x86_64-linux-gnu/libgomp.so.1 (0x...)`; the loader itself
    // and the vDSO have no `=>`.
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some((name, resolved)) = line.trim().split_once(" => ") else { continue };
        if BASE_SYSTEM.iter().any(|base| name.starts_with(base)) {
            continue;
        }
        let path = resolved.rsplit_once(" (").map_or(resolved, |(path, _)| path);
        anyhow::ensure!(path != "not found", "the plugin links {name}, which this machine does not have");
        libraries.push((name.to_string(), PathBuf::from(path)));
    }
    Ok(libraries)
}

/// Runs patchelf on `library` and returns what it printed.
fn patchelf(args: &[&str], library: &std::path::Path) -> Result<String> {
    let output = Command::new("patchelf")
        .args(args)
        .arg(library)
        .output()
        .context("running patchelf (package patchelf; `cargo xtask setup` installs it)")?;
    anyhow::ensure!(
        output.status.success(),
        "patchelf {} {} failed: {}",
        args.join(" "),
        library.display(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs every test against a fresh release bundle. Tests find what setup installed through
/// `RVC_STAGE_CLAP`, `RVC_STAGE_PYTHON` and `RVC_STAGE_ONNXRUNTIME`.
fn test(extra: &[String]) -> Result<()> {
    let installed = setup::run()?;
    let clap = bundle()?;
    std::env::set_var("RVC_STAGE_CLAP", &clap);
    std::env::set_var("RVC_STAGE_PYTHON", &installed.python);
    if let Some(library) = &installed.onnxruntime {
        std::env::set_var("RVC_STAGE_ONNXRUNTIME", library);
    }
    cargo(&["test", "--workspace"], extra)
}

/// Where `install` puts the plugins: the CLAP one in a folder of its own (hosts search
/// `~/.clap` recursively), so the libraries beside it stay out of other plugins' way. The live
/// app goes into that folder too (it finds ONNX Runtime beside itself), linked from
/// `~/.local/bin`.
struct InstallDirs {
    clap: PathBuf,
    vst3: PathBuf,
    live_link: PathBuf,
}

fn install_dirs() -> Result<InstallDirs> {
    let home = PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?);
    Ok(InstallDirs {
        clap: home.join(".clap/rvc-stage"),
        vst3: home.join(".vst3/rvc-stage.vst3"),
        live_link: home.join(".local/bin").join(LIVE_APP),
    })
}

const LIVE_APP: &str = "rvc-stage-live";

/// Bundles, then copies the bundles and the run-time libraries they need (ONNX Runtime, faiss's
/// BLAS and OpenMP) where hosts look for plugins, and the live app beside them.
fn install() -> Result<()> {
    setup::run()?;
    let clap = bundle()?;
    cargo(&["build", "--release", "--bin", LIVE_APP], &[])?;
    uninstall()?;
    let dirs = install_dirs()?;
    std::fs::create_dir_all(&dirs.clap)?;
    let bundled = clap.parent().context("the bundle has a folder")?;
    for entry in std::fs::read_dir(bundled)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_file() && (name == "rvc-stage.clap" || name.contains(".so")) {
            std::fs::copy(entry.path(), dirs.clap.join(&name))?;
        }
    }
    copy_dir(&bundled.join("rvc-stage.vst3"), &dirs.vst3)?;
    let live = dirs.clap.join(LIVE_APP);
    std::fs::copy(target_dir().join("release").join(LIVE_APP), &live)?;
    std::fs::create_dir_all(dirs.live_link.parent().context("~/.local/bin has a parent")?)?;
    std::os::unix::fs::symlink(&live, &dirs.live_link)?;
    println!(
        "installed {}/rvc-stage.clap and {} (with their libraries), and {} -> {}",
        dirs.clap.display(),
        dirs.vst3.display(),
        dirs.live_link.display(),
        live.display()
    );
    Ok(())
}

fn uninstall() -> Result<()> {
    let dirs = install_dirs()?;
    if dirs.live_link.symlink_metadata().is_ok() {
        std::fs::remove_file(&dirs.live_link).with_context(|| format!("removing {}", dirs.live_link.display()))?;
        println!("removed {}", dirs.live_link.display());
    }
    for dir in [dirs.clap, dirs.vst3] {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
            println!("removed {}", dir.display());
        }
    }
    Ok(())
}

/// Runs the editor tests, which photograph the live app under Xvfb, and copies their pictures
/// into `tests/screenshots/` for the README.
fn screenshots() -> Result<()> {
    let installed = setup::run()?;
    std::env::set_var("RVC_STAGE_PYTHON", &installed.python);
    if let Some(library) = &installed.onnxruntime {
        std::env::set_var("RVC_STAGE_ONNXRUNTIME", library);
    }
    cargo(&["test", "--package", "rvc-stage", "--test", "live_app"], &[])?;
    let committed = workspace_root().join("tests/screenshots");
    std::fs::create_dir_all(&committed)?;
    for name in SCREENSHOTS {
        let from = target_dir().join("screenshots").join(name);
        std::fs::copy(&from, committed.join(name)).with_context(|| format!("copying {}", from.display()))?;
        println!("{}", committed.join(name).display());
    }
    Ok(())
}

/// The pictures `tests/live_app.rs` takes that the README shows.
const SCREENSHOTS: [&str; 3] =
    ["editor-voice-ready.png", "editor-broken-synthesizer.png", "editor-dragging-onto-a-row.png"];

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)?.flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The benchmarks compare against the reference Python, which setup provides.
fn bench(extra: &[String]) -> Result<()> {
    let installed = setup::run()?;
    std::env::set_var("RVC_STAGE_PYTHON", &installed.python);
    cargo(&["bench", "--package", "rvc-stage"], extra)
}

/// Long fuzzing of index loading, seeded with files written by the reference faiss. A crash
/// is reported with the iteration that reproduces it.
fn fuzz(seconds: &str) -> Result<()> {
    let installed = setup::run()?;
    let seeds = target_dir().join("fuzz/seeds");
    std::fs::create_dir_all(&seeds)?;
    let script = workspace_root().join("tests/fixtures/make_indexes.py");
    let status = Command::new(&installed.python).arg(script).arg(&seeds).status()?;
    anyhow::ensure!(status.success(), "writing the seed indexes failed");
    let state = target_dir().join("fuzz/iteration");
    let run = ["run", "--release", "--example", "fuzz_index_files", "--"];
    let args = [seeds.to_string_lossy().into_owned(), seconds.to_string(), state.to_string_lossy().into_owned()];
    if cargo(&run, &args).is_err() {
        let iteration = std::fs::read_to_string(&state).unwrap_or_default();
        bail!(
            "the fuzzer failed at iteration {iteration}; write that input with:\n  \
             cargo run --release --example fuzz_index_files -- {} --replay {iteration} crash.index",
            seeds.display()
        );
    }
    Ok(())
}

fn cargo(args: &[&str], extra: &[String]) -> Result<()> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .args(extra)
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}
