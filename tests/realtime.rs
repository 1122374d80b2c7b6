//! Real-time proof through the real CLAP wrapper, in process: this debug test binary links the
//! plugin with nice-plug's `assert_process_allocs`, which aborts the process if `process` or
//! `reset` allocates. Ten thousand calls with random buffer sizes, paced near real time with
//! bursts far ahead of it, so the worker falls behind at times and the under-run crossfade runs.

#[path = "../xtask/src/clap_host.rs"]
#[allow(dead_code)] // each test binary uses part of the host
mod clap_host;
mod common;

use std::time::Duration;

use clap_host::{check_clean, Plugin, Settings};
use common::{in_process_entry, noise};

const CALLS: usize = 10_000;

/// The debug allocator guard really is active: a child process that allocates inside it must
/// abort. Without this, the test below could pass with the guard silently missing.
#[test]
fn allocation_guard_aborts_on_allocation() {
    if std::env::var_os("RVC_STAGE_ALLOCATE_UNDER_GUARD").is_some() {
        nice_assert_no_alloc::assert_no_alloc(|| std::hint::black_box(vec![1u8; 64]));
        return;
    }
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["allocation_guard_aborts_on_allocation", "--exact", "--nocapture"])
        .env("RVC_STAGE_ALLOCATE_UNDER_GUARD", "1")
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "allocating under assert_no_alloc must abort");
}

#[test]
fn ten_thousand_random_calls_allocate_nothing_and_fall_back_smoothly() {
    let sample_rate = 48_000.0;
    let max_frames = 2048;
    let mut plugin = Plugin::new(&in_process_entry()).unwrap();
    let mut rng = fastrand::Rng::with_seed(42);
    let sizes: Vec<usize> = (0..CALLS).map(|_| rng.usize(1..=max_frames)).collect();
    let total: usize = sizes.iter().sum();
    // Different channels: wet (their mono mix) and dry (each channel alone) are distinguishable.
    let input = vec![noise(1, total, 0.5), noise(2, total, 0.5)];
    let mut call = 0;
    let render = plugin
        .render(Settings::new(sample_rate, max_frames as u32, false), &input, &[], || {
            let size = sizes[call];
            call += 1;
            // Mostly forty times faster than real time; every 500th call starts a burst of 100
            // unpaced calls that runs seconds of audio ahead of the worker's polling.
            if call % 500 >= 100 {
                std::thread::sleep(Duration::from_secs_f64(size as f64 / sample_rate / 40.0));
            }
            size
        })
        .unwrap();
    assert_eq!(call, CALLS);
    check_clean(&render.output).unwrap();

    // Each output sample is dry + (wet − dry)·g; recover g where wet and dry differ clearly.
    let latency = render.latency as usize;
    let fade = (0.010 * sample_rate) as f32;
    let (mut wet_samples, mut dry_samples, mut last) = (0, 0, None::<(usize, f32)>);
    for n in latency..total {
        let dry = input[0][n - latency];
        let wet = 0.5 * (input[0][n - latency] + input[1][n - latency]);
        if (wet - dry).abs() < 0.05 {
            continue;
        }
        let g = (render.output[0][n] - dry) / (wet - dry);
        assert!((-1e-3..=1.0 + 1e-3).contains(&g), "sample {n} is not between dry and wet (g = {g})");
        if let Some((at, previous)) = last {
            let allowed = (n - at) as f32 / fade + 1e-3;
            assert!((g - previous).abs() <= allowed, "jump from {previous} to {g} between {at} and {n}");
        }
        last = Some((n, g));
        wet_samples += usize::from(g > 1.0 - 1e-3);
        dry_samples += usize::from(g < 1e-3);
    }
    eprintln!("{wet_samples} wet and {dry_samples} dry samples of {total}");
    assert!(wet_samples > 0, "the worker's output must be used");
    assert!(dry_samples > 0, "bursts must run ahead of the worker and fall back to dry audio");
}

/// The host's `reset` on the audio thread, under the same allocation guard: history is cleared
/// and processing resumes exactly `latency` samples later.
#[test]
fn reset_through_the_wrapper_allocates_nothing_and_clears_history() {
    let mut plugin = Plugin::new(&in_process_entry()).unwrap();
    let (call, every) = (480, 50);
    let settings = Settings { reset_every: Some(every), ..Settings::new(48_000.0, call as u32, true) };
    let input = vec![noise(3, 150_000, 0.5); 2];
    let render = plugin.render(settings, &input, &[], || call).unwrap();
    let latency = render.latency as usize;
    let period = call * every;
    for n in 0..input[0].len() {
        let last_reset = n / period * period;
        let expected = if n >= last_reset + latency { input[0][n - latency] } else { 0.0 };
        assert_eq!(render.output[0][n], expected, "sample {n}");
    }
}

/// With all four files loaded — content model, index, pitch model and synthesizer — the worker
/// runs ONNX Runtime and faiss on every block while the audio thread, under the allocation
/// guard, only moves samples: random buffer sizes, Index Ratio automation, clean output, the
/// voice converted (not the dry input). The render runs in
/// a child process whose log (`NICE_LOG`) and feature dump (`RVC_STAGE_FEATURE_DUMP`) this test
/// reads afterwards: both files must have loaded and the worker must have blended features, so
/// the test fails when ONNX Runtime (or anything else the files need) is missing.
#[test]
fn with_a_model_and_an_index_the_audio_thread_still_allocates_nothing() {
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/hubert-tiny-256.onnx");
    if let Some(index) = std::env::var_os("RVC_STAGE_REALTIME_CHILD") {
        render_with_files(&model, std::path::Path::new(&index));
        return;
    }
    let index = common::generated("reference_search.py").join("fast_scan_256.index");
    let dir = common::scratch("realtime-files");
    let (log, dump) = (dir.join("plugin.log"), dir.join("features.npy"));
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["with_a_model_and_an_index_the_audio_thread_still_allocates_nothing", "--exact", "--nocapture"])
        .env("RVC_STAGE_REALTIME_CHILD", &index)
        .env("NICE_LOG", &log)
        .env(rvc_stage::plugin::FEATURE_DUMP_VAR, &dump)
        .env("RVC_STAGE_PYTHON", common::reference_python())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    for file in [&model, &index, &pitch_model(), &synth()] {
        let loaded = format!("loaded {}", file.display());
        assert!(logged.contains(&loaded), "{loaded:?} missing from the log:\n{logged}");
    }
    let features = rvc_stage::npy::read_matrix(&dump).unwrap();
    assert!(features.rows > 50 && features.cols == 256, "the worker computed {} frames", features.rows);
    std::fs::remove_dir_all(dir).unwrap();
}

fn render_with_files(model: &std::path::Path, index: &std::path::Path) {
    let mut plugin = Plugin::new(&in_process_entry()).unwrap();
    plugin.set_persisted_path("index-path", index).unwrap();
    plugin.set_persisted_path("hubert-path", model).unwrap();
    plugin.set_persisted_path("pitch-model-path", &pitch_model()).unwrap();
    plugin.set_persisted_path("synth-path", &synth()).unwrap();
    let input = vec![noise(8, 96_000, 0.5); 2];
    // The offline render first: it waits for the loads, so the live ones run with the files.
    for (offline, ratio) in [(true, "0.3"), (false, "1"), (true, "0")] {
        let settings = Settings::new(48_000.0, 1024, offline);
        let mut sizes = common::random_sizes(17, 1024);
        let render = plugin.render(settings, &input, &[("Index Ratio", ratio)], &mut sizes).unwrap();
        check_clean(&render.output).unwrap();
        let latency = render.latency as usize;
        if offline {
            let converted = &render.output[0][latency..];
            let moved = converted.iter().zip(&input[0]).filter(|(out, dry)| (*out - *dry).abs() > 1e-3).count();
            assert!(
                moved > converted.len() / 2,
                "only {moved} of {} samples differ from the dry input",
                converted.len()
            );
        }
    }
}

/// A synthesizer for the 256-value content model: w-okada's export with float16 features.
fn synth() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/synth-tiny-wokada-f16-256.onnx")
}

fn pitch_model() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/rmvpe-tiny-rvc.onnx")
}
