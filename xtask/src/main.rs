//! Project tasks, run on the developer's or CI's machine (`cargo xtask <command>`):
//! `setup` installs what the build and tests need, `bundle` builds the plugin bundles,
//! `test` runs every test against a fresh bundle, `demo` renders audio through the built
//! plugin, and `bench` runs the benchmarks.

#[allow(dead_code)] // shared with the integration tests, which use all of it
mod clap_host;
mod demo;
mod setup;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

const USAGE: &str = "usage: cargo xtask <command>

  setup                      install system packages, the Python test venv and ONNX Runtime
  bundle rvc-stage --release build target/bundled/rvc-stage.clap and rvc-stage.vst3
  test                       setup, bundle, then run every test
  demo                       setup, bundle, then render a test signal through the built plugin
  bench                      run the benchmarks (release build)
  fuzz [SECONDS]             mutate index files through the loader and search (default 600 s)";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match command.as_str() {
        "setup" => setup::run().map(drop),
        "bundle" => {
            nice_plug_xtask::main_with_args("cargo xtask", std::iter::once(command).chain(rest))?;
            copy_runtime_next_to_bundles(setup::installed_onnxruntime()?.as_deref())
        }
        "test" => test(&rest),
        "demo" => demo::run(),
        "bench" => bench(&rest),
        "fuzz" => fuzz(rest.first().map(String::as_str).unwrap_or("600")),
        _ => bail!("{USAGE}"),
    }
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is inside the workspace").to_path_buf()
}

/// The cargo target directory, honouring `CARGO_TARGET_DIR` like cargo does.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// Builds the release bundles (with ONNX Runtime next to the plugin binaries, when setup has
/// it) and returns the path of the CLAP one.
pub fn bundle() -> Result<PathBuf> {
    nice_plug_xtask::main_with_args("cargo xtask", ["bundle", "rvc-stage", "--release"].map(String::from))?;
    copy_runtime_next_to_bundles(setup::installed_onnxruntime()?.as_deref())?;
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
    let bundled = target_dir().join("bundled");
    let name = library.file_name().context("the runtime library has a file name")?;
    for dir in [bundled.clone(), bundled.join("rvc-stage.vst3/Contents/x86_64-linux")] {
        if dir.is_dir() {
            std::fs::copy(library, dir.join(name))
                .with_context(|| format!("copying ONNX Runtime into {}", dir.display()))?;
        }
    }
    Ok(())
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
