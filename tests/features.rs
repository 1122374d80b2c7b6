//! The content-feature path (`rvc-stage features` runs the worker's stage chain offline): one
//! frame per 320 samples at 16 kHz whatever the host rate and block size, deterministic, blended
//! exactly like `rvc-stage retrieve`, shaped for the synthesizer (100 fps) as RVC does, and a
//! features/index mismatch is an error in words.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rvc_stage::engine::{Controls, Engine, EngineConfig, RenderMode};
use rvc_stage::features::{frames_for, model_slot, ModelOptions};
use rvc_stage::npy::read_matrix;
use rvc_stage::retrieval::IndexSlot;
use rvc_stage::voice::{FeatureRecorder, VoiceFiles, VoiceStage};

fn model(dim: usize) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/models/hubert-tiny-{dim}.onnx"))
}

#[test]
fn one_frame_per_320_samples_at_every_rate_and_block_size() {
    let dir = common::scratch("features-frames");
    for (rate, block_ms) in [(44_100, "100"), (48_000, "50"), (22_050, "230"), (96_000, "500"), (8_000, "75")] {
        let samples = (1.7 * rate as f64) as usize;
        let wav = dir.join(format!("{rate}.wav"));
        common::write_wav(&wav, rate, &[common::noise(rate as u64, samples, 0.3)]);
        let out = dir.join(format!("{rate}.npy"));
        let (ok, text) = common::rvc_stage_cli(&[
            &"features",
            &wav,
            &"-o",
            &out,
            &"--hubert",
            &model(768),
            &"--block-ms",
            &block_ms,
        ]);
        assert!(ok, "{text}");
        let features = read_matrix(&out).unwrap();
        let expected = frames_for((samples as f64 * 16_000.0 / rate as f64).floor() as usize);
        assert_eq!((features.rows, features.cols), (expected, 768), "{rate} Hz, {block_ms} ms");
        assert!(features.data.iter().all(|x| x.is_finite()));
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn features_are_deterministic_and_blend_like_retrieve() {
    let dir = common::scratch("features-blend");
    let wav = dir.join("in.wav");
    common::write_wav(&wav, 44_100, &[common::noise(7, 88_200, 0.4)]);
    let index = common::generated("reference_search.py").join("fast_scan_256.index");
    let run = |name: &str, extra: &[&dyn AsRef<std::ffi::OsStr>]| {
        let out = dir.join(name);
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"features", &wav, &"-o", &out, &"--hubert"];
        let hubert = model(256);
        args.push(&hubert);
        args.extend_from_slice(extra);
        let (ok, text) = common::rvc_stage_cli(&args);
        assert!(ok, "{text}");
        read_matrix(&out).unwrap()
    };
    let plain = run("plain.npy", &[]);
    assert_eq!(run("again.npy", &[]), plain, "offline features are deterministic");
    assert_eq!(run("ratio0.npy", &[&"--index", &index, &"--ratio", &"0"]), plain);
    let blended = run("ratio1.npy", &[&"--index", &index, &"--ratio", &"1"]);
    assert_ne!(blended, plain);
    let retrieved = dir.join("retrieved.npy");
    let (ok, text) = common::rvc_stage_cli(&[
        &"retrieve",
        &"--index",
        &index,
        &"--features",
        &dir.join("plain.npy"),
        &"--ratio",
        &"1",
        &"-o",
        &retrieved,
    ]);
    assert!(ok, "{text}");
    assert_eq!(read_matrix(&retrieved).unwrap(), blended);

    // At the synthesizer's rate: RVC's shaping (in numpy) of the same blended frames.
    let synth = run("synth.npy", &[&"--index", &index, &"--ratio", &"1", &"--fps", &"100"]);
    let reference = dir.join("reference-synth.npy");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rvc_synth_rate.py");
    let status = std::process::Command::new(common::reference_python())
        .args([script.as_os_str(), dir.join("ratio1.npy").as_os_str(), "32000".as_ref(), reference.as_os_str()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!((synth.rows, blended.rows), (200, 99), "2 s: 200 frames at 100 fps, 99 at 50 fps");
    assert_eq!(synth, read_matrix(&reference).unwrap());

    let int8_out = dir.join("int8.npy");
    let (ok, text) = common::rvc_stage_cli(&[&"features", &wav, &"-o", &int8_out, &"--hubert", &model(256), &"--int8"]);
    assert!(ok && text.contains("cut after its conv front end, int8 matrix products"), "{text}");
    let int8 = read_matrix(&int8_out).unwrap();
    assert_eq!((int8.rows, int8.cols), (plain.rows, plain.cols));
    assert_ne!(int8, plain, "int8 features are close to float32 ones, not equal");

    let plot = dir.join("plot.png");
    run("plotted.npy", &[&"--index", &index, &"--ratio", &"0.75", &"--plot", &plot]);
    assert!(std::fs::read(&plot).unwrap().starts_with(b"\x89PNG"), "the plot is a PNG");

    let other = common::generated("reference_search.py").join("fast_scan_768.index");
    let (ok, text) = common::rvc_stage_cli(&[
        &"features",
        &wav,
        &"-o",
        &dir.join("x.npy"),
        &"--hubert",
        &model(256),
        &"--index",
        &other,
    ]);
    assert!(!ok && text.contains("256 values per frame but the index holds 768-dimensional vectors"), "{text}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Hosts run at rates no WAV file has (clap-validator uses 1234.5678 Hz).
#[test]
fn fractional_host_rates_resample_to_50_frames_per_second() {
    let runtime = std::env::var_os("RVC_STAGE_ONNXRUNTIME").map(|p| p.to_string_lossy().into_owned());
    let models = model_slot(Arc::new(RwLock::new(runtime)), ModelOptions::default());
    models.request(Some(model(256)));
    models.wait();
    let rate = 1234.5678;
    let recorder = FeatureRecorder::default();
    let slot = IndexSlot::default();
    let config = EngineConfig {
        sample_rate: rate,
        max_buffer: 64,
        channels: 1,
        block_ms: 100.0,
        mode: RenderMode::Offline,
        ..EngineConfig::default()
    };
    let files = VoiceFiles::new(models.reader(), slot.reader());
    let stage = VoiceStage::new(files, rate, config.block_samples()).with_tap(Box::new(recorder.clone()));
    let mut engine = Engine::start(config, stage).unwrap();
    let seconds = 4.0;
    let mut audio = common::noise(3, (seconds * rate) as usize, 0.3);
    for chunk in audio.chunks_mut(64) {
        engine.process(&mut [chunk], Controls::default());
    }
    drop(engine);
    // Blocks still in flight (one block plus the compute budget) are not counted.
    let recorded = recorder.take();
    assert!(recorded.data.iter().all(|x| x.is_finite()));
    let frames = recorded.rows as f64;
    assert!((180.0..=200.0).contains(&frames), "{frames} frames for {seconds} s");
}
