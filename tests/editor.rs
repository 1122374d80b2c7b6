//! The editor in a host: embedded in an X11 window (Xvfb, with Mesa's software OpenGL) through
//! the CLAP harness, as a DAW embeds it, while the audio thread runs under nice-plug's
//! `assert_process_allocs` (this debug test binary links the plugin in process). A binary of its
//! own, so no other test loads the machine while the X server serves it.

#[path = "../xtask/src/clap_host.rs"]
#[allow(dead_code)] // each test binary uses part of the host
mod clap_host;
mod common;

use std::time::Duration;

use clap_host::{check_clean, Plugin, Settings};
use common::{in_process_entry, noise};

/// A synthesizer for the 256-value content model: w-okada's export with float16 features.
fn synth() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/synth-tiny-wokada-f16-256.onnx")
}

/// The editor open in an X11 window (Xvfb) while the audio thread runs under the allocation
/// guard with a model and a synthesizer loaded, a state round trip with it open, then opened and
/// closed many times: its window really appears and goes, and no thread or memory is left
/// behind. Runs in a child process that has the virtual display.
#[test]
fn with_the_editor_open_the_audio_thread_still_allocates_nothing_and_reopening_leaks_nothing() {
    if let Ok(display) = std::env::var("RVC_STAGE_EDITOR_CHILD") {
        render_with_editor(&display);
        return;
    }
    let x = common::xvfb::Xvfb::start(0);
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "with_the_editor_open_the_audio_thread_still_allocates_nothing_and_reopening_leaks_nothing",
            "--exact",
            "--nocapture",
        ])
        .env("RVC_STAGE_EDITOR_CHILD", &x.display)
        .env("DISPLAY", &x.display)
        .env("LIBGL_ALWAYS_SOFTWARE", "1")
        .env("XDG_CONFIG_HOME", common::scratch("editor-config"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    let summary = text.lines().find(|line| line.contains("editor reopened"));
    eprintln!("{}", summary.expect("the child ran the test"));
}

fn render_with_editor(display: &str) {
    use common::xvfb::{root_window, windows_named};
    let editors = || windows_named(display, "RVC Stage");
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models");
    let mut plugin = Plugin::new(&in_process_entry()).unwrap();
    plugin.set_persisted_path("hubert-path", &models.join("hubert-tiny-256.onnx")).unwrap();
    plugin.set_persisted_path("synth-path", &synth()).unwrap();
    let root = root_window(display);
    let (width, height) = plugin.open_gui(root).unwrap();
    assert!(width >= 560 && height >= 420, "editor size {width}×{height}");
    wait_until("the editor's window appears", || editors() == 1);

    let input = vec![noise(9, 96_000, 0.5); 2];
    let mut sizes = common::random_sizes(23, 2048);
    let render =
        plugin.render(Settings::new(48_000.0, 2048, false), &input, &[("Transpose", "5")], &mut sizes).unwrap();
    check_clean(&render.output).unwrap();
    // What validators check, with the editor open: other rates and buffer sizes, offline.
    for (rate, max_frames) in [(22_050.0, 16_384), (96_000.0, 17), (44_100.0, 1)] {
        let input = vec![noise(10, rate as usize / 2, 0.5); 2];
        let render = plugin.render(Settings::new(rate, max_frames, true), &input, &[], || max_frames as usize).unwrap();
        check_clean(&render.output).unwrap();
        assert_eq!(render.latency, plugin.latency().unwrap(), "at {rate} Hz");
    }
    let state = plugin.save_state().unwrap();
    assert!(String::from_utf8_lossy(&state).contains("editor-size"), "the editor's size is in the state");
    plugin.load_state(&state).unwrap();
    plugin.close_gui().unwrap();
    wait_until("the editor's window goes", || editors() == 0);

    let (threads, memory, files) = (process_status("Threads:"), process_status("VmRSS:"), open_files());
    for _ in 0..15 {
        plugin.open_gui(root).unwrap();
        wait_until("the editor's window appears", || editors() == 1);
        plugin.close_gui().unwrap();
        wait_until("the editor's window goes", || editors() == 0);
    }
    wait_until("the editor's threads end", || process_status("Threads:") <= threads);
    let grown_kb = process_status("VmRSS:").saturating_sub(memory);
    assert!(grown_kb < 20_000, "15 openings kept {grown_kb} kB");
    let kept_files = open_files().saturating_sub(files);
    eprintln!(
        "editor reopened 15 times: {grown_kb} kB kept, {kept_files} files (X connections) kept, threads {threads}"
    );
    assert!(kept_files <= 2, "15 openings kept {kept_files} open files");
}

/// Open file descriptors of this process (X connections among them).
fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// A number from /proc/self/status (kB for memory).
fn process_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with(field)).unwrap();
    line[field.len()..].split_whitespace().next().unwrap().parse().unwrap()
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(20), "{what}: not within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}
