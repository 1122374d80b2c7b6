//! The ONNX Runtime library named in a plugin state is used whatever order the host restores
//! the state's fields in (they come in key order: `hubert-path` before `onnxruntime-path`), and a
//! failed runtime load is tried again when the state names another library. ONNX Runtime loads
//! once per process, so each case runs in a child process where the library can be found only
//! through the state (no `ORT_DYLIB_PATH`, no setup cache, none next to the test binary); the
//! child renders offline through the in-process CLAP wrapper and reads the feature dump.

#[path = "../xtask/src/clap_host.rs"]
#[allow(dead_code)] // each test binary uses part of the host
mod clap_host;
mod common;

use std::path::{Path, PathBuf};

use clap_host::{Plugin, Settings};
use common::in_process_entry;

fn runtime() -> PathBuf {
    std::env::var_os("RVC_STAGE_ONNXRUNTIME").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap())
            .join(".cache/rvc-stage/onnxruntime-1.31.1/libonnxruntime.so.1.31.1")
    })
}

fn model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/hubert-tiny-256.onnx")
}

/// Renders a second of noise offline (which waits for loads) and returns how many feature
/// frames the worker computed.
fn frames_computed(plugin: &mut Plugin) -> usize {
    let input = vec![common::noise(2, 48_000, 0.3); 2];
    plugin.render(Settings::new(48_000.0, 512, true), &input, &[], || 512).unwrap();
    let dump = std::env::var_os(rvc_stage::plugin::FEATURE_DUMP_VAR).unwrap();
    rvc_stage::npy::read_matrix(Path::new(&dump)).map_or(0, |features| features.rows)
}

/// Runs `case` of this binary in a child process that can find ONNX Runtime only through the
/// plugin state.
fn in_child(case: &str) {
    let dir = common::scratch(&format!("runtime-path-{case}"));
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([case, "--exact", "--nocapture"])
        .env("RVC_STAGE_RUNTIME_PATH_CHILD", "1")
        .env_remove("ORT_DYLIB_PATH")
        .env("RVC_STAGE_CACHE", "/nonexistent")
        .env("RVC_STAGE_ONNXRUNTIME", runtime())
        .env(rvc_stage::plugin::FEATURE_DUMP_VAR, dir.join("features.npy"))
        .env("NICE_LOG", dir.join("plugin.log"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{case}:\n{text}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_state_names_the_runtime_before_its_model_loads() {
    if std::env::var_os("RVC_STAGE_RUNTIME_PATH_CHILD").is_none() {
        return in_child("the_state_names_the_runtime_before_its_model_loads");
    }
    let mut plugin = Plugin::new(&in_process_entry()).unwrap();
    plugin.set_persisted_paths(&[("hubert-path", &model()), ("onnxruntime-path", &runtime())]).unwrap();
    assert!(frames_computed(&mut plugin) > 40, "the model loaded with the state's runtime");
    assert_eq!(rvc_stage::features::runtime_path(), Some(runtime().as_path()));
    // At the first attempt: no load failed on the way (no retry rescued it).
    let log = std::fs::read_to_string(std::env::var_os("NICE_LOG").unwrap()).unwrap_or_default();
    assert!(!log.contains("RVC Stage cannot use") && !log.contains("was not found"), "{log}");
}

#[test]
fn a_failed_runtime_is_tried_again_when_the_state_names_another() {
    if std::env::var_os("RVC_STAGE_RUNTIME_PATH_CHILD").is_none() {
        return in_child("a_failed_runtime_is_tried_again_when_the_state_names_another");
    }
    let mut plugin = Plugin::new(&in_process_entry()).unwrap();
    let missing = Path::new("/nonexistent/libonnxruntime.so.1.31.1");
    plugin.set_persisted_paths(&[("hubert-path", &model()), ("onnxruntime-path", missing)]).unwrap();
    assert_eq!(frames_computed(&mut plugin), 0, "no runtime, no model");
    plugin.set_persisted_paths(&[("onnxruntime-path", &runtime())]).unwrap();
    assert!(frames_computed(&mut plugin) > 40, "the model loaded once the runtime could be found");
}
