//! `cargo xtask setup`: makes a bare Debian machine able to build and test the project.
//! Idempotent — each step checks first and says what it did — and it fails with a message
//! naming what could not be installed. Runs on the developer's or CI's machine.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use sha2::{Digest, Sha256};

/// Debian packages the build needs (faiss is built from source by the retrieval stage),
/// OpenBLAS's serial build, which the plugin loads in place of the threaded one (build.rs),
/// patchelf, with which bundling lets the libraries shipped beside the plugin find each other,
/// ALSA's and JACK's headers for the live app's audio backends (found through pkg-config), and
/// what the editor tests use: a virtual X server with Mesa's software OpenGL, xwininfo,
/// ImageMagick and Tesseract OCR.
const APT_PACKAGES: &[&str] = &[
    "cmake",
    "libopenblas-dev",
    "liblapack-dev",
    "libopenblas0-serial",
    "patchelf",
    "fonts-dejavu-core",
    "pkg-config",
    "libasound2-dev",
    "libjack-jackd2-dev",
    "xvfb",
    "libgl1-mesa-dri",
    "libglx-mesa0",
    "x11-utils",
    "imagemagick",
    "tesseract-ocr",
    "tesseract-ocr-eng",
];

/// ONNX Runtime comes from the PyPI wheel: prebuilt-binary downloads cannot work here, and
/// PyPI can. The wheel is pinned by file name and hash.
const ORT_REQUIREMENT: &str = "onnxruntime==1.31.1";
const ORT_WHEEL: &str = "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl";
const ORT_WHEEL_SHA256: &str = "5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f";
const ORT_LIBRARY_IN_WHEEL: &str = "onnxruntime/capi/libonnxruntime.so.1.31.1";
const ORT_LIBRARY: &str = "libonnxruntime.so.1.31.1";

/// Where setup put things.
pub struct Installed {
    /// Python of the test venv.
    pub python: PathBuf,
    /// Absolute path of `libonnxruntime.so.1.31.1`, if this platform has a pinned wheel.
    pub onnxruntime: Option<PathBuf>,
}

pub fn run() -> Result<Installed> {
    let cache = cache_dir()?;
    fs::create_dir_all(&cache).with_context(|| format!("creating the setup cache {}", cache.display()))?;
    apt_packages()?;
    let python = python_venv(&cache)?;
    let onnxruntime = onnxruntime(&cache, &python)?;
    Ok(Installed { python, onnxruntime })
}

/// `$RVC_STAGE_CACHE`, else `$XDG_CACHE_HOME/rvc-stage`, else `~/.cache/rvc-stage`: outside the
/// checkout, so fresh clones on the same machine reuse it.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("RVC_STAGE_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("rvc-stage"));
    }
    let home = std::env::var_os("HOME").context("neither RVC_STAGE_CACHE, XDG_CACHE_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cache/rvc-stage"))
}

fn apt_packages() -> Result<()> {
    let mut missing: Vec<&str> = APT_PACKAGES.iter().copied().filter(|package| !dpkg_installed(package)).collect();
    // The test venv needs a python3 that can create venvs; Debian splits that off.
    if !python_can_create_venvs() {
        missing.extend(["python3", "python3-venv"]);
    }
    if missing.is_empty() {
        println!("setup: system packages present ({})", APT_PACKAGES.join(", "));
        return Ok(());
    }
    println!("setup: installing {} with apt-get", missing.join(", "));
    let apt = |args: &[&str]| -> Result<()> {
        let mut command = if is_root() { Command::new("apt-get") } else { Command::new("sudo") };
        if !is_root() {
            command.args(["-n", "apt-get"]);
        }
        let status = command.args(args).env("DEBIAN_FRONTEND", "noninteractive").status();
        ensure!(
            status.is_ok_and(|s| s.success()),
            "could not install {}: run `apt-get install {}` as root, then run setup again",
            missing.join(", "),
            missing.join(" ")
        );
        Ok(())
    };
    apt(&["update", "-qq"])?;
    apt(&[&["install", "-y", "-qq", "--no-install-recommends"][..], &missing].concat())
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
}

fn python_can_create_venvs() -> bool {
    Command::new("python3").args(["-c", "import ensurepip, venv"]).output().is_ok_and(|out| out.status.success())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// A venv with the pinned test-only packages, rebuilt when the pins change.
fn python_venv(cache: &Path) -> Result<PathBuf> {
    let requirements_path = crate::workspace_root().join("xtask/requirements-test.txt");
    let requirements =
        fs::read(&requirements_path).with_context(|| format!("reading {}", requirements_path.display()))?;
    let venv = cache.join("venv");
    let python = venv.join("bin/python");
    let stamp = venv.join("requirements.sha256");
    let wanted = hex_sha256(&requirements);
    if python.exists() && fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        println!("setup: Python test venv up to date ({})", venv.display());
        return Ok(python);
    }
    println!("setup: creating the Python test venv in {}", venv.display());
    run_command(
        Command::new("python3").args(["-m", "venv", "--clear"]).arg(&venv),
        "python3 -m venv (on Debian: apt-get install python3-venv)",
    )?;
    run_command(
        Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--only-binary=:all:", "-r"])
            .arg(&requirements_path),
        "pip install of the pinned test packages (is PyPI reachable?)",
    )?;
    fs::write(&stamp, wanted)?;
    Ok(python)
}

/// Extracts `libonnxruntime.so` from the pinned wheel into the cache.
/// The ONNX Runtime library a previous setup installed, if any (no downloading).
pub fn installed_onnxruntime() -> Result<Option<PathBuf>> {
    let library = cache_dir()?.join("onnxruntime-1.31.1").join(ORT_LIBRARY);
    Ok(library.exists().then_some(library))
}

fn onnxruntime(cache: &Path, python: &Path) -> Result<Option<PathBuf>> {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        println!("setup: no pinned ONNX Runtime wheel for this platform; set ORT_DYLIB_PATH yourself");
        return Ok(None);
    }
    let dir = cache.join("onnxruntime-1.31.1");
    let library = dir.join(ORT_LIBRARY);
    let stamp = dir.join("wheel.sha256");
    if library.exists() && fs::read_to_string(&stamp).is_ok_and(|s| s == ORT_WHEEL_SHA256) {
        println!("setup: ONNX Runtime present ({})", library.display());
        return Ok(Some(library));
    }
    println!("setup: downloading {ORT_WHEEL} from PyPI");
    let download = dir.join("download");
    fs::create_dir_all(&download)?;
    run_command(
        Command::new(python)
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--only-binary=:all:",
            ])
            .args(["--python-version", "3.11", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64", "-d"])
            .arg(&download)
            .arg(ORT_REQUIREMENT),
        "pip download of the ONNX Runtime wheel (is PyPI reachable?)",
    )?;
    let wheel_path = download.join(ORT_WHEEL);
    let wheel = fs::read(&wheel_path).with_context(|| format!("pip did not save {}", wheel_path.display()))?;
    let actual = hex_sha256(&wheel);
    ensure!(
        actual == ORT_WHEEL_SHA256,
        "{ORT_WHEEL} has sha256 {actual}, expected {ORT_WHEEL_SHA256}: refusing to use it"
    );
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(wheel))?;
    let mut entry =
        archive.by_name(ORT_LIBRARY_IN_WHEEL).with_context(|| format!("{ORT_LIBRARY_IN_WHEEL} is not in the wheel"))?;
    let mut out = fs::File::create(&library)?;
    std::io::copy(&mut entry, &mut out)?;
    fs::remove_dir_all(&download)?;
    fs::write(&stamp, ORT_WHEEL_SHA256)?;
    println!("setup: ONNX Runtime installed ({})", library.display());
    Ok(Some(library))
}

fn run_command(command: &mut Command, what: &str) -> Result<()> {
    let status = command.status().with_context(|| format!("{what}: could not start"))?;
    ensure!(status.success(), "{what} failed ({status})");
    Ok(())
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
