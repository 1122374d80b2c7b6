//! Benchmark inputs that take minutes to make, generated once into
//! `~/.cache/rvc-stage/bench` (or `$RVC_STAGE_CACHE/bench`) and shared by the benchmarks.
#![allow(dead_code)] // each benchmark uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;

/// The benchmarks' cache directory.
pub fn cache() -> PathBuf {
    let base = std::env::var_os("RVC_STAGE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/rvc-stage"));
    base.join("bench")
}

/// A HuBERT-base-size content model (random weights, 768 wide), made by the fixture script.
pub fn base_model() -> PathBuf {
    use std::hash::{Hash, Hasher};
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_hubert.py");
    // Named after the script that writes it, so a changed fixture is generated anew.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::fs::read(&script).unwrap().hash(&mut hasher);
    let dir = cache();
    let path = dir.join(format!("hubert-base-768-{:016x}.onnx", hasher.finish()));
    if !path.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        // The older ones are 360 MB each.
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            if entry.file_name().to_string_lossy().starts_with("hubert-base-768") {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
        let python =
            std::env::var_os("RVC_STAGE_PYTHON").expect("run through `cargo xtask bench`, which sets up Python");
        let status =
            Command::new(python).arg(script).arg(&path).args(["--size", "base", "--dim", "768"]).status().unwrap();
        assert!(status.success(), "generating the base-size model failed");
    }
    path
}
