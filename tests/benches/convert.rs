//! `cargo xtask bench`: the whole voice conversion per worker block of 0.1 and 0.25 s on this
//! machine — milliseconds per step (resampling, content, pitch, retrieval, synthesizer with its
//! SOLA stitching, resampling back) and the end-to-end real-time factor — with the
//! HuBERT-base-size content model, the built-in pitch estimator and RVC v2 synthesizers of the
//! 48, 40 and 32 kHz architectures (random weights, tests/fixtures/make_synth.py), next to RVC's
//! own schedule measured in the same run with the same models: the content model and the ONNX
//! synthesizer over the whole 2.5 s window every block. Both with two ONNX Runtime threads per
//! model. Also the latency the plugin reports at its defaults next to RVC's (2 × block +
//! crossfade + 10 ms).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use rvc_stage::engine::slot::{Slot, SlotStatus};
use rvc_stage::engine::{EngineConfig, LatencyPlan, Stage};
use rvc_stage::features::{model_slot, ContentModel, ModelOptions};
use rvc_stage::retrieval::IndexSlot;
use rvc_stage::synth::{synth_slot, SynthInput, SynthModel};
use rvc_stage::voice::{Step, VoiceControls, VoiceFiles, VoiceStage};

#[path = "shared/cache.rs"]
mod cache;
#[path = "../common/voices.rs"]
mod voices;

const RATE: f64 = 48_000.0;
const SECONDS: f32 = 8.0;
/// RVC's real-time window: extra_time 2.5 s, crossfade 0.05 s and SOLA search 0.01 s before
/// the block.
const RVC_EXTRA_S: f64 = 2.5 + 0.05 + 0.01;
const THREADS: usize = 2;

fn main() {
    let content = cache::base_model();
    let voice = voice_at_48k();
    let options = ModelOptions { intra_threads: THREADS, ..ModelOptions::default() };
    println!("voice conversion per worker block, {RATE} Hz host, {THREADS} ONNX Runtime threads per model");
    println!("(content: HuBERT-base size; pitch: built-in; synthesizer: RVC v2 architecture, random weights)");
    println!();
    println!("| synthesizer | block | to 16 kHz | content | pitch | index blend | synthesizer + SOLA | to host rate | total ms | RTF | RVC's schedule ms | RVC's RTF | × faster |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for arch in ["v2-48k", "v2-40k", "v2-32k"] {
        let synth = synth_fixture(arch);
        for block_s in [0.1, 0.25] {
            let steps = ours(&content, &synth, &voice, block_s, options);
            let total: f64 = steps.iter().sum();
            let rvc = rvc_schedule(&content, &synth, block_s, options);
            let cells: Vec<String> = steps.iter().map(|ms| format!("{ms:.1}")).collect();
            println!(
                "| {arch} | {block_s} s | {} | {total:.0} | {:.2} | {rvc:.0} | {:.2} | {:.1} |",
                cells.join(" | "),
                total / (block_s * 1000.0),
                rvc / (block_s * 1000.0),
                rvc / total
            );
        }
    }
    println!();
    latency_table();
}

/// 8 s of a voice-like signal (glottal pulses through vowel formants, a glide with unvoiced
/// gaps), made at 16 kHz and taken to 48 kHz by linear interpolation.
fn voice_at_48k() -> Vec<f32> {
    let signal = voices::voice(
        "bench",
        SECONDS,
        |t| if (t * 2.0).fract() < 0.15 { 0.0 } else { 110.0 + 40.0 * (t * 0.7).sin() },
        Some(30.0),
        7,
    );
    let ratio = f64::from(voices::RATE) / RATE;
    (0..(signal.audio.len() as f64 / ratio) as usize)
        .map(|n| {
            let t = n as f64 * ratio;
            let i = t as usize;
            let (a, b) = (signal.audio[i], signal.audio[(i + 1).min(signal.audio.len() - 1)]);
            (a + (b - a) * (t - i as f64) as f32) * 0.5
        })
        .collect()
}

/// An RVC-export synthesizer of `arch` (768 features), generated into the cache once.
fn synth_fixture(arch: &str) -> PathBuf {
    let path = cache::cache().join(format!("synth-{arch}-rvc-768.onnx"));
    if !path.exists() {
        let python = std::env::var_os("RVC_STAGE_PYTHON").expect("run through `cargo xtask bench`");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_synth.py");
        let status = Command::new(python)
            .arg(script)
            .arg(&path)
            .args(["--arch", arch, "--contract", "rvc", "--no-check"])
            .status()
            .unwrap();
        assert!(status.success(), "generating the {arch} synthesizer failed");
    }
    path
}

fn loaded<T: Send + Sync + 'static>(slot: Slot<T>, path: &Path) -> Slot<T> {
    slot.request(Some(path.to_path_buf()));
    slot.wait();
    assert!(matches!(slot.status(), SlotStatus::Ready { .. }), "{:?}", slot.status());
    slot
}

/// Mean milliseconds per block of each step, converting `voice` block by block.
fn ours(content: &Path, synth: &Path, voice: &[f32], block_s: f64, options: ModelOptions) -> Vec<f64> {
    let runtime = Arc::new(RwLock::new(std::env::var("RVC_STAGE_ONNXRUNTIME").ok()));
    let content = loaded(model_slot(runtime.clone(), options), content);
    let synth = loaded(synth_slot(runtime, options), synth);
    let index = IndexSlot::default();
    let files = VoiceFiles::new(content.reader(), index.reader()).with_synth(synth.reader());
    let block = (block_s * RATE) as usize;
    let mut stage = VoiceStage::new(files, RATE, block);
    let status = stage.status();
    let mut output = vec![0.0; block];
    let mut voiced = 0;
    for chunk in voice.chunks_exact(block) {
        // The first blocks, before the voice's delay has passed, pass dry.
        voiced += usize::from(stage.process(chunk, &VoiceControls::default(), &mut output).is_ok());
    }
    assert!(voiced > voice.len() / block / 2, "only {voiced} blocks were voiced");
    drop(stage);
    assert!(status.errors().is_empty(), "{:?}", status.errors());
    let snapshot = status.snapshot();
    Step::ALL
        .iter()
        .map(|step| {
            let times = snapshot.iter().find(|s| s.step == *step).unwrap().times;
            times.mean().as_secs_f64() * 1000.0
        })
        .collect()
}

/// Milliseconds per block of RVC's real-time schedule: the content model over the 16 kHz
/// window (2.56 s + block) and the synthesizer over the same window at 100 frames per second
/// (median of three blocks).
fn rvc_schedule(content: &Path, synth: &Path, block_s: f64, options: ModelOptions) -> f64 {
    let runtime = std::env::var_os("RVC_STAGE_ONNXRUNTIME").map(PathBuf::from);
    let mut content =
        ContentModel::load(content, runtime.as_deref(), ModelOptions { split_front_end: false, ..options }).unwrap();
    let mut synth = SynthModel::load(synth, runtime.as_deref(), options).unwrap();
    let window_s = RVC_EXTRA_S + block_s;
    let samples: Vec<f32> = (0..(window_s * 16_000.0) as usize).map(|n| (n as f32 * 0.05).sin() * 0.3).collect();
    let frames = (window_s * 100.0) as usize;
    let features: Vec<f32> = (0..frames * 768).map(|i| (i as f32 * 0.37).sin()).collect();
    let f0 = vec![140.0; frames];
    let mut coarse = Vec::new();
    rvc_stage::pitch::coarse_pitch(&f0, &mut coarse);
    let noise = vec![0.1; 192 * frames];
    let (mut scratch, mut audio) = (Vec::new(), Vec::new());
    let mut times: Vec<f64> = (0..3)
        .map(|_| {
            let started = Instant::now();
            content.run(&samples, &mut scratch).unwrap();
            let input =
                SynthInput { features: &features, coarse: &coarse, f0: &f0, speaker: 0, noise: &noise, seed: 0.0 };
            synth.run(&input, &mut audio).unwrap();
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[1]
}

/// The latency the plugin reports at its defaults (Block Size 100 ms, 512-sample host buffer)
/// and at 250 ms blocks, next to RVC's algorithmic delay at the same block.
fn latency_table() {
    println!("| block | plugin reports (512-sample host buffer) | of which the voice pipeline | RVC (2 × block + 50 ms crossfade + 10 ms) |");
    println!("|---:|---:|---:|---:|");
    for block_ms in [100.0, 250.0] {
        let config = EngineConfig { sample_rate: RATE, max_buffer: 512, block_ms, ..EngineConfig::default() };
        let files = VoiceFiles::new(
            model_slot(Arc::default(), ModelOptions::default()).reader(),
            IndexSlot::default().reader(),
        );
        let stage = VoiceStage::new(files, RATE, config.block_samples());
        let plan = LatencyPlan::new(RATE, 512, block_ms, stage.latency_samples());
        let ms = |samples: usize| samples as f64 * 1000.0 / RATE;
        println!(
            "| {block_ms} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
            ms(plan.total()),
            ms(stage.latency_samples()),
            2.0 * block_ms + 50.0 + 10.0
        );
    }
}
