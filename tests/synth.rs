//! The synthesizer: both export contracts read from committed tiny fixtures with RVC v2's
//! architecture (tests/fixtures/make_synth.py) and equal to ONNX Runtime's Python API on the
//! same inputs; w-okada's in-graph noise made repeatable; bad files explained; SOLA equal to a
//! numpy implementation of RVC's; and the whole pipeline converting a voice with the demo voice
//! (tests/fixtures/make_demo_voice.py): transposition measured on the output (by the built-in
//! estimator and by librosa.pyin), onsets where the reported latency says, no clicks at block
//! joins, identical renders, model swaps mid-stream, Formant, the silence threshold.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use npyz::WriterBuilder;
use rvc_stage::engine::slot::{Slot, SlotStatus};
use rvc_stage::engine::{Controls, Engine, EngineConfig, RenderMode};
use rvc_stage::features::{model_slot, ModelOptions};
use rvc_stage::retrieval::IndexSlot;
use rvc_stage::synth::{synth_slot, Sola, SynthInput, SynthModel, SynthSlot, NOISE_SCALE};
use rvc_stage::voice::{VoiceControls, VoiceFiles, VoiceStage};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models").join(name)
}

fn runtime() -> Option<PathBuf> {
    std::env::var_os("RVC_STAGE_ONNXRUNTIME").map(PathBuf::from)
}

fn load_model(name: &str) -> Result<SynthModel, String> {
    SynthModel::load(&fixture(name), runtime().as_deref(), ModelOptions::default()).map_err(|e| e.to_string())
}

fn python(args: &[&dyn AsRef<std::ffi::OsStr>]) {
    let status = std::process::Command::new(common::reference_python()).args(args).status().unwrap();
    assert!(status.success(), "the reference script failed");
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Smooth pseudo-features, a gliding voiced track with an unvoiced gap, RVC's coarse codes.
fn inputs(frames: usize, dim: usize) -> (Vec<f32>, Vec<f32>, Vec<i64>) {
    let features = (0..frames * dim).map(|i| ((i / dim) as f32 * 0.13 + (i % dim) as f32 * 0.71).sin() * 0.8).collect();
    let f0: Vec<f32> = (0..frames).map(|t| if (20..26).contains(&t) { 0.0 } else { 140.0 + t as f32 }).collect();
    let mut coarse = Vec::new();
    rvc_stage::pitch::coarse_pitch(&f0, &mut coarse);
    (features, f0, coarse)
}

#[test]
fn both_exports_are_recognised_with_rate_width_and_speakers() {
    let cases = [
        ("synth-tiny-rvc-768.onnx", "RVC", 768, true, Some(4), false),
        ("synth-tiny-wokada-768.onnx", "w-okada", 768, true, None, false),
        ("synth-tiny-wokada-f16-256.onnx", "w-okada", 256, true, None, true),
        ("synth-tiny-wokada-nof0-768.onnx", "w-okada", 768, false, None, false),
        ("demo-voice-768.onnx", "RVC", 768, true, Some(4), false),
    ];
    for (name, export, dim, uses_pitch, speakers, half) in cases {
        let model = load_model(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let info = model.info();
        assert_eq!(
            (info.export, info.dim, info.uses_pitch, info.half_features),
            (export, dim, uses_pitch, half),
            "{name}"
        );
        if speakers.is_some() {
            assert_eq!(info.speakers, speakers, "{name}");
        }
        let rate = if name.starts_with("demo") { 40_000 } else { 32_000 };
        assert_eq!(info.rate, rate, "{name}: {info}");
        // RVC's architecture is cut before its decoder; the demo voice has none.
        assert_eq!(info.decoder_cut, !name.starts_with("demo"), "{name}");
    }
}

#[test]
fn the_rvc_export_equals_onnx_runtime_in_python() {
    let dir = common::scratch("synth-python");
    let mut model = load_model("synth-tiny-rvc-768.onnx").unwrap();
    let frames = 57;
    let (features, f0, coarse) = inputs(frames, 768);
    let mut rng = fastrand::Rng::with_seed(7);
    let noise: Vec<f32> = (0..192 * frames).map(|_| (rng.f32() - 0.5) * 2.0 * NOISE_SCALE).collect();
    let input = SynthInput { features: &features, coarse: &coarse, f0: &f0, speaker: 2, noise: &noise, seed: 0.0 };
    let mut ours = Vec::new();
    model.run(&input, &mut ours).unwrap();
    assert_eq!(ours.len(), frames * 320);

    let npz = dir.join("inputs");
    write_arrays(
        &npz,
        &[
            ("phone", vec![1, frames, 768], Values::F32(&features)),
            ("phone_lengths", vec![1], Values::I64(&[frames as i64])),
            ("pitch", vec![1, frames], Values::I64(&coarse)),
            ("pitchf", vec![1, frames], Values::F32(&f0)),
            ("ds", vec![1], Values::I64(&[2])),
            ("rnd", vec![1, 192, frames], Values::F32(&noise)),
        ],
    );
    let out = dir.join("audio.npy");
    python(&[&script("run_synth.py"), &npz, &out, &fixture("synth-tiny-rvc-768.onnx")]);
    let reference: Vec<f32> = npyz::NpyFile::new(std::fs::File::open(&out).unwrap()).unwrap().into_vec().unwrap();
    assert_eq!(reference.len(), ours.len());
    let worst = ours.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-4, "largest difference from Python's ONNX Runtime: {worst}");
}

/// The decoder run over the last frames of a window only gives the samples the whole model
/// gives for them, beyond the decoder's reach (10 frames) from where it starts. Unvoiced, so
/// the sine source, whose phase starts with the decoder's window, is silent.
#[test]
fn decoding_part_of_a_window_equals_the_whole_model_there() {
    let mut model = load_model("synth-tiny-rvc-768.onnx").unwrap();
    assert!(model.decodes_separately());
    let frames = 80;
    let (features, _, _) = inputs(frames, 768);
    let (f0, coarse) = (vec![0.0; frames], vec![1; frames]);
    let mut rng = fastrand::Rng::with_seed(3);
    let noise: Vec<f32> = (0..192 * frames).map(|_| (rng.f32() - 0.5) * NOISE_SCALE).collect();
    let input = SynthInput { features: &features, coarse: &coarse, f0: &f0, speaker: 1, noise: &noise, seed: 0.0 };
    let (mut whole, mut part) = (Vec::new(), Vec::new());
    model.run(&input, &mut whole).unwrap();
    let first = 30;
    model.run_decoding_from(&input, first, &mut part).unwrap();
    let upp = 320;
    assert_eq!(part.len(), (frames - first) * upp);
    let reach = 12 * upp;
    let worst = part[reach..part.len() - reach]
        .iter()
        .zip(&whole[first * upp + reach..])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "largest difference from the whole model: {worst}");
    let near_cut = part[..upp].iter().zip(&whole[first * upp..]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(near_cut > worst, "the decoder's edge shows nowhere ({near_cut}): the test measures nothing");
}

#[test]
fn wokada_noise_repeats_with_the_seed_and_changes_with_it() {
    for name in ["synth-tiny-wokada-768.onnx", "synth-tiny-wokada-f16-256.onnx"] {
        let mut model = load_model(name).unwrap();
        let dim = model.info().dim;
        let (features, f0, coarse) = inputs(40, dim);
        let run = |model: &mut SynthModel, seed: f32| {
            let input = SynthInput { features: &features, coarse: &coarse, f0: &f0, speaker: 0, noise: &[], seed };
            let mut audio = Vec::new();
            model.run(&input, &mut audio).unwrap();
            audio
        };
        let (a, b, c) = (run(&mut model, 3.0), run(&mut model, 3.0), run(&mut model, 4.0));
        assert_eq!(a, b, "{name}: the same seed must give the same audio");
        assert_ne!(a, c, "{name}: another seed must give other noise");
        assert!(a.iter().all(|x| x.is_finite()) && a.iter().any(|x| x.abs() > 1e-3), "{name}");
    }
}

#[test]
fn a_speaker_out_of_range_is_refused_in_words() {
    let mut model = load_model("synth-tiny-rvc-768.onnx").unwrap();
    let (features, f0, coarse) = inputs(10, 768);
    let noise = vec![0.0; 1920];
    let input = SynthInput { features: &features, coarse: &coarse, f0: &f0, speaker: 4, noise: &noise, seed: 0.0 };
    let error = model.run(&input, &mut Vec::new()).unwrap_err().to_string();
    assert!(error.contains("speaker 4 does not exist") && error.contains("0 to 3"), "{error}");
}

#[test]
fn bad_files_are_explained() {
    let dir = common::scratch("synth-bad");
    python(&[&script("make_bad_synths.py"), &dir]);
    let truncated = dir.join("truncated.onnx");
    let bytes = std::fs::read(fixture("synth-tiny-rvc-768.onnx")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let cases: [(PathBuf, &str); 6] = [
        (fixture("hubert-tiny-768.onnx"), "does not look like an RVC synthesizer"),
        (truncated, "is not a model ONNX Runtime can load"),
        (dir.join("nan.onnx"), "not a number"),
        (dir.join("silent.onnx"), "silent"),
        (dir.join("float-pitch.onnx"), "must be int64"),
        (dir.join("odd-rate.onnx"), "RVC's synthesizers give 32, 40 or 48 kHz"),
    ];
    for (path, expected) in cases {
        let error = SynthModel::load(&path, runtime().as_deref(), ModelOptions::default()).unwrap_err().to_string();
        assert!(error.contains(expected), "{}: {error}", path.display());
    }
}

#[test]
fn sola_equals_rvcs_numpy_stitching() {
    let (overlap, search) = (160, 40);
    let emits = [400usize, 250, 400, 90, 400];
    let mut rng = fastrand::Rng::with_seed(11);
    let pieces: Vec<Vec<f32>> = emits
        .iter()
        .enumerate()
        .map(|(i, emit)| {
            let len = emit + overlap + search + i * 7;
            let phase = rng.f32() * 6.0;
            (0..len).map(|n| (n as f32 * 0.05 + phase).sin() * 0.5 + (rng.f32() - 0.5) * 0.05).collect()
        })
        .collect();
    let mut sola = Sola::new(overlap, search);
    let (mut ours, mut offsets) = (Vec::new(), Vec::new());
    for (piece, &emit) in pieces.iter().zip(&emits) {
        offsets.push(sola.stitch(piece, emit, &mut ours) as f32);
    }
    let dir = common::scratch("sola");
    let npz = dir.join("pieces");
    let emits_i64: Vec<i64> = emits.iter().map(|&e| e as i64).collect();
    let (overlap_i64, search_i64) = ([overlap as i64], [search as i64]);
    let mut arrays = vec![
        ("overlap".to_string(), vec![], Values::I64(&overlap_i64)),
        ("search".to_string(), vec![], Values::I64(&search_i64)),
        ("emits".to_string(), vec![emits.len()], Values::I64(&emits_i64)),
    ];
    for (i, piece) in pieces.iter().enumerate() {
        arrays.push((format!("piece_{i}"), vec![piece.len()], Values::F32(piece)));
    }
    let named: Vec<(&str, Vec<usize>, Values)> = arrays.iter().map(|(n, s, v)| (n.as_str(), s.clone(), *v)).collect();
    write_arrays(&npz, &named);
    let out = dir.join("out.npy");
    python(&[&script("rvc_sola.py"), &npz, &out]);
    let read = |path: &Path| -> Vec<f32> {
        npyz::NpyFile::new(std::fs::File::open(path).unwrap()).unwrap().into_vec().unwrap()
    };
    assert_eq!(read(&dir.join("out.offsets.npy")), offsets);
    let reference = read(&out);
    assert_eq!(reference.len(), ours.len());
    let worst = ours.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-5, "largest difference from numpy: {worst}");
}

// ---- The pipeline with a synthesizer ----

fn loaded<T: Send + Sync + 'static>(slot: Slot<T>, path: &Path) -> Slot<T> {
    slot.request(Some(path.to_path_buf()));
    slot.wait();
    assert!(matches!(slot.status(), SlotStatus::Ready { .. }), "{:?}", slot.status());
    slot
}

fn synth_with(name: &str) -> SynthSlot {
    let runtime = runtime().map(|p| p.to_string_lossy().into_owned());
    loaded(synth_slot(Arc::new(RwLock::new(runtime)), ModelOptions::default()), &fixture(name))
}

struct Voice {
    content: Slot<std::sync::Mutex<rvc_stage::features::ContentModel>>,
    index: IndexSlot,
    synth: SynthSlot,
}

fn demo_voice() -> Voice {
    let runtime = runtime().map(|p| p.to_string_lossy().into_owned());
    let content =
        loaded(model_slot(Arc::new(RwLock::new(runtime)), ModelOptions::default()), &fixture("hubert-tiny-768.onnx"));
    Voice { content, index: IndexSlot::default(), synth: synth_with("demo-voice-768.onnx") }
}

fn voice_with_synth(name: &str) -> Voice {
    Voice { synth: synth_with(name), ..demo_voice() }
}

/// Converts `input` offline at `rate` in calls of `call` samples; returns the output with the
/// reported latency removed, and that latency. Fails on any error on the status board.
fn convert(voice: &Voice, input: &[f32], rate: f64, call: usize, controls: VoiceControls) -> (Vec<f32>, usize) {
    let (output, latency, errors) = render_voice(voice, input, rate, call, controls);
    assert!(errors.is_empty(), "{errors:?}");
    (output, latency)
}

/// [`convert`], returning the status board's errors instead of failing on them.
fn render_voice(
    voice: &Voice,
    input: &[f32],
    rate: f64,
    call: usize,
    controls: VoiceControls,
) -> (Vec<f32>, usize, Vec<String>) {
    let files = VoiceFiles::new(voice.content.reader(), voice.index.reader()).with_synth(voice.synth.reader());
    let config = EngineConfig {
        sample_rate: rate,
        max_buffer: call,
        channels: 1,
        mode: RenderMode::Offline,
        ..EngineConfig::default()
    };
    let stage = VoiceStage::new(files, rate, config.block_samples());
    let status = stage.status();
    let mut engine = Engine::start(config, stage).unwrap();
    let latency = engine.latency_samples();
    let mut padded = input.to_vec();
    padded.resize(input.len() + latency, 0.0);
    let controls = Controls { stage: controls, ..Controls::default() };
    let mut output = common::render(&mut engine, &[padded], controls, || call).remove(0);
    drop(engine);
    output.drain(..latency);
    (output, latency, status.errors())
}

/// A sung vowel at `f0` Hz for `seconds`, after `silence` seconds of silence.
fn vowel(rate: f64, f0: f32, seconds: f64, silence: f64) -> Vec<f32> {
    let signal = common::voices::voice("vowel", seconds as f32, |_| f0, None, 5);
    let resampled = resample(&signal.audio, f64::from(common::voices::RATE), rate);
    let mut out = vec![0.0; (silence * rate) as usize];
    out.extend(resampled.iter().map(|x| x * 0.5));
    out
}

/// Linear-interpolation resampling (test signals only).
fn resample(x: &[f32], from: f64, to: f64) -> Vec<f32> {
    let len = (x.len() as f64 * to / from) as usize;
    (0..len)
        .map(|n| {
            let t = n as f64 * from / to;
            let (i, frac) = (t.floor() as usize, (t - t.floor()) as f32);
            let a = x[i.min(x.len() - 1)];
            let b = x[(i + 1).min(x.len() - 1)];
            a + (b - a) * frac
        })
        .collect()
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
}

/// Median f0 of the voiced 10 ms frames of `audio` (at `rate`), by the built-in estimator.
fn median_f0(audio: &[f32], rate: f64) -> f32 {
    let audio_16k = resample(audio, rate, 16_000.0);
    let mut f0: Vec<f32> = common::voices::track(&audio_16k).into_iter().filter(|f| *f > 0.0).collect();
    assert!(f0.len() > 50, "too few voiced frames: {}", f0.len());
    f0.sort_by(f32::total_cmp);
    f0[f0.len() / 2]
}

#[test]
fn transposing_by_an_octave_doubles_the_output_pitch() {
    let voice = demo_voice();
    let rate = 48_000.0;
    let input = vowel(rate, 150.0, 2.0, 0.2);
    let controls = |transpose| VoiceControls { transpose, ..VoiceControls::default() };
    let (plain, _) = convert(&voice, &input, rate, 512, controls(0.0));
    let (octave, _) = convert(&voice, &input, rate, 512, controls(12.0));
    let (base, up) = (median_f0(&plain[9600..], rate), median_f0(&octave[9600..], rate));
    assert!((base / 150.0 - 1.0).abs() < 0.01, "untransposed output at {base} Hz for a 150 Hz input");
    assert!((up / base / 2.0 - 1.0).abs() < 0.01, "+12 gave {up} Hz against {base} Hz");
    // The same, measured by an independent estimator: librosa.pyin (the reference Python).
    let dir = common::scratch("synth-pyin");
    for (name, audio) in [("plain", &plain), ("octave", &octave)] {
        let audio_16k = resample(&audio[9600..], rate, 16_000.0);
        let matrix = rvc_stage::npy::Matrix { rows: 1, cols: audio_16k.len(), data: audio_16k };
        rvc_stage::npy::write_matrix(&dir.join(format!("{name}.npy")), &matrix).unwrap();
    }
    python(&[&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/benches/pyin_reference.py"), &dir]);
    let pyin_median = |name: &str| {
        let f0 = rvc_stage::npy::read_matrix(&dir.join(format!("{name}.pyin.npy"))).unwrap().data;
        let mut voiced: Vec<f32> = f0.into_iter().filter(|f| *f > 0.0).collect();
        assert!(voiced.len() > 50, "pyin found {} voiced frames in {name}", voiced.len());
        voiced.sort_by(f32::total_cmp);
        voiced[voiced.len() / 2]
    };
    let (base, up) = (pyin_median("plain"), pyin_median("octave"));
    assert!((up / base / 2.0 - 1.0).abs() < 0.01, "pyin: +12 gave {up} Hz against {base} Hz");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn formant_moves_the_spectrum_and_keeps_the_pitch() {
    let voice = demo_voice();
    let rate = 48_000.0;
    let input = vowel(rate, 150.0, 2.0, 0.2);
    let render = |formant| {
        let (out, _) = convert(&voice, &input, rate, 512, VoiceControls { formant, ..VoiceControls::default() });
        let steady = &out[(0.5 * rate) as usize..(2.0 * rate) as usize];
        (median_f0(steady, rate), spectral_centroid(steady, rate))
    };
    let ((f0, centroid), (f0_up, centroid_up), (f0_down, centroid_down)) = (render(0.0), render(2.0), render(-2.0));
    for shifted in [f0_up, f0_down] {
        assert!((shifted / f0 - 1.0).abs() < 0.01, "the pitch moved: {shifted} Hz against {f0} Hz");
    }
    assert!(centroid_up > centroid * 1.05, "+2 semitones: centroid {centroid_up} Hz against {centroid} Hz");
    assert!(centroid_down < centroid / 1.05, "-2 semitones: centroid {centroid_down} Hz against {centroid} Hz");
}

/// The magnitude-weighted mean frequency of `audio` (2048-point frames, Hann window).
fn spectral_centroid(audio: &[f32], rate: f64) -> f64 {
    let mut planner = realfft::RealFftPlanner::<f32>::new();
    let fft = planner.plan_fft_forward(2048);
    let mut spectrum = fft.make_output_vec();
    let (mut weighted, mut total) = (0.0f64, 0.0f64);
    for frame in audio.chunks_exact(2048) {
        let mut windowed: Vec<f32> = frame
            .iter()
            .enumerate()
            .map(|(i, x)| x * (std::f32::consts::PI * i as f32 / 2048.0).sin().powi(2))
            .collect();
        fft.process(&mut windowed, &mut spectrum).unwrap();
        for (k, bin) in spectrum.iter().enumerate() {
            let magnitude = f64::from(bin.norm());
            weighted += magnitude * k as f64 * rate / 2048.0;
            total += magnitude;
        }
    }
    weighted / total
}

/// Protect acts on unvoiced frames only: with every frame voiced it changes nothing; over a
/// noise burst it keeps the unblended features there.
#[test]
fn protect_changes_unvoiced_frames_only() {
    let index = common::generated("reference_search.py").join("fast_scan_768.index");
    let voice = Voice { index: loaded(IndexSlot::default(), &index), ..demo_voice() };
    let rate = 48_000.0;
    let render = |input: &[f32], protect| {
        let controls = VoiceControls { index_ratio: 1.0, protect, ..VoiceControls::default() };
        convert(&voice, input, rate, 512, controls).0
    };
    // The first and last frames of a stream are unvoiced (the estimator's window reaches into
    // silence): compare the middle, 0.5 s from either end, beyond the 24 frames of context
    // the demo voice's window has.
    let voiced = vowel(rate, 150.0, 2.0, 0.0);
    let middle = (0.5 * rate) as usize..(1.5 * rate) as usize;
    let (protected, open) = (render(&voiced, 0.0), render(&voiced, 0.5));
    let changed = protected[middle.clone()].iter().zip(&open[middle]).filter(|(a, b)| a != b).count();
    assert_eq!(changed, 0, "Protect changed {changed} samples of a voiced vowel");
    let mut burst = voiced.clone();
    let noise = common::noise(5, (0.3 * rate) as usize, 0.3);
    burst[(1.0 * rate) as usize..][..noise.len()].copy_from_slice(&noise);
    let (protected, open) = (render(&burst, 0.0), render(&burst, 0.5));
    let changed = protected.iter().zip(&open).filter(|(a, b)| (*a - *b).abs() > 1e-4).count();
    assert!(changed > noise.len() / 4, "Protect changed {changed} samples around a {} sample burst", noise.len());
}

/// RMS Mix 0 gives the voice the input's loudness contour; 1 keeps the synthesizer's own.
#[test]
fn rms_mix_follows_the_input_loudness() {
    let voice = demo_voice();
    let rate = 48_000.0;
    let mut input = vowel(rate, 150.0, 2.0, 0.0);
    let half = input.len() / 2;
    for x in &mut input[half..] {
        *x *= 0.1; // 20 dB quieter
    }
    let ratio = |rms_mix| {
        let (out, _) = convert(&voice, &input, rate, 512, VoiceControls { rms_mix, ..VoiceControls::default() });
        let steady = (0.3 * rate) as usize;
        rms(&out[half - 2 * steady..half - steady]) / rms(&out[input.len() - 2 * steady..input.len() - steady])
    };
    let (following, own) = (ratio(0.0), ratio(1.0));
    eprintln!("loudness ratio: RMS Mix 0 {following}, RMS Mix 1 {own}");
    assert!((following / 10.0).ln().abs() < 0.25, "RMS Mix 0: the voice got {following}x quieter, the input 10x");
    assert!(own < 3.0, "RMS Mix 1: the synthesizer's own loudness changed {own}x");
}

#[test]
fn a_voiced_onset_comes_out_where_the_reported_latency_says() {
    let voice = demo_voice();
    for rate in [44_100.0, 48_000.0, 96_000.0] {
        let input = vowel(rate, 180.0, 0.8, 0.5);
        let controls = VoiceControls { rms_mix: 0.0, ..VoiceControls::default() };
        let (output, latency) = convert(&voice, &input, rate, 480, controls);
        // Where the loudness (RMS over 5 ms) first reaches half its steady level.
        let onset = |audio: &[f32]| {
            let window = (0.005 * rate) as usize;
            let envelope: Vec<f32> = audio.windows(window).step_by(window / 5).map(rms).collect();
            let mut sorted = envelope.clone();
            sorted.sort_by(f32::total_cmp);
            let steady = sorted[sorted.len() * 9 / 10];
            let first = envelope.iter().position(|&e| e > steady * 0.5).unwrap();
            (first * (window / 5) + window / 2) as f64 / rate
        };
        let (at_input, at_output) = (onset(&input), onset(&output));
        eprintln!("{rate} Hz: onset at {at_input:.4} s in, {at_output:.4} s out");
        assert!(
            (at_output - at_input).abs() <= 0.010,
            "{rate} Hz: onset at {at_input:.4} s in, {at_output:.4} s out (latency {latency} samples)"
        );
    }
}

#[test]
fn block_joins_leave_no_clicks() {
    let voice = demo_voice();
    let rate = 48_000.0;
    // Not a whole number of periods per block: a restarted phase would jump at the joins.
    let input = vowel(rate, 173.0, 3.0, 0.0);
    let (output, _) = convert(&voice, &input, rate, 512, VoiceControls::default());
    // The linear-prediction residual (order 32, fitted to the steady part) is what no smooth
    // continuation explains: clicks. Folded over the worker's block period (100 ms) and
    // smoothed over 0.5 ms, its energy must not rise at any phase of the block — where the
    // joins are — above 8 times its median. (The demo voice restarts its phase on every run:
    // without SOLA's search and crossfade this measured 152, with them about 3.)
    let steady = &output[(0.3 * rate) as usize..(2.7 * rate) as usize];
    let residual = prediction_residual(steady, 32);
    let period = (0.1 * rate) as usize;
    let mut folded = vec![0.0; period];
    for (i, e) in residual.iter().enumerate().take(residual.len() / period * period) {
        folded[i % period] += e * e;
    }
    let smoothing = (0.0005 * rate) as usize;
    let smoothed: Vec<f64> =
        (0..period).map(|i| (0..smoothing).map(|k| folded[(i + k) % period]).sum::<f64>() / smoothing as f64).collect();
    let mut sorted = smoothed.clone();
    sorted.sort_by(f64::total_cmp);
    let ratio = sorted[period - 1] / sorted[period / 2];
    assert!(ratio < 8.0, "residual energy at the joins is {ratio:.1} times its median");
}

/// `x` minus its linear prediction of order `order` (autocorrelation method, Levinson–Durbin),
/// from sample `order` on.
fn prediction_residual(x: &[f32], order: usize) -> Vec<f64> {
    let x: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let r: Vec<f64> = (0..=order).map(|lag| x[lag..].iter().zip(&x).map(|(a, b)| a * b).sum()).collect();
    let (mut a, mut error) = (vec![0.0; order + 1], r[0]);
    a[0] = 1.0;
    for i in 1..=order {
        let k = -(0..i).map(|j| a[j] * r[i - j]).sum::<f64>() / error;
        let previous = a.clone();
        for j in 1..i {
            a[j] = previous[j] + k * previous[i - j];
        }
        a[i] = k;
        error *= 1.0 - k * k;
    }
    (order..x.len()).map(|n| (0..=order).map(|j| a[j] * x[n - j]).sum()).collect()
}

#[test]
fn renders_repeat_exactly_whatever_the_host_buffer() {
    // The demo voice runs whole; RVC's architecture runs cut before its decoder.
    for voice in [demo_voice(), voice_with_synth("synth-tiny-rvc-768.onnx")] {
        let rate = 44_100.0;
        let input = vowel(rate, 200.0, 1.5, 0.1);
        let (a, _) = convert(&voice, &input, rate, 512, VoiceControls::default());
        let (b, _) = convert(&voice, &input, rate, 512, VoiceControls::default());
        let (c, _) = convert(&voice, &input, rate, 37, VoiceControls::default());
        assert!(a.iter().any(|x| x.abs() > 0.01));
        assert_eq!(a, b);
        assert_eq!(a, c);
    }
}

#[test]
fn a_synthesizer_of_another_width_is_reported_and_audio_passes_dry() {
    let runtime = runtime().map(|p| p.to_string_lossy().into_owned());
    let content =
        loaded(model_slot(Arc::new(RwLock::new(runtime)), ModelOptions::default()), &fixture("hubert-tiny-256.onnx"));
    let voice = Voice { content, index: IndexSlot::default(), synth: synth_with("synth-tiny-rvc-768.onnx") };
    let rate = 48_000.0;
    let input = vowel(rate, 150.0, 1.0, 0.0);
    let (output, _, errors) = render_voice(&voice, &input, rate, 512, VoiceControls::default());
    assert!(errors.iter().any(|e| e.contains("takes 768 values per frame, the content model gives 256")), "{errors:?}");
    // Dry, latency-compensated.
    assert_eq!(&output[..input.len() / 2], &input[..input.len() / 2]);
}

#[test]
fn a_synthesizer_swapped_mid_stream_takes_over_without_a_dry_block() {
    // A second voice of the same rate (another seed of the demo voice).
    let dir = common::scratch("synth-swap");
    let other = dir.join("other-voice.onnx");
    python(&[&script("make_demo_voice.py"), &other, &"--seed", &"1"]);
    let input = vowel(48_000.0, 150.0, 4.0, 0.0);
    let (kept, failed_kept, _) = blocks_swapping(&input, None);
    let (swapped, failed, latency) = blocks_swapping(&input, Some(&other));
    // The voice starts once the stage's latency has passed; from then on every block is
    // voiced, the swap included.
    let first_voiced = latency / BLOCK + 1;
    assert!(failed.iter().chain(&failed_kept).all(|&i| i < first_voiced), "blocks {failed:?} passed dry");
    let half = input.len() / BLOCK / 2 * BLOCK;
    let (early, late) = (half - BLOCK, half + latency + 2 * BLOCK);
    assert_eq!(kept[..early], swapped[..early], "the swap changed audio from before it");
    let changed = kept[late..].iter().zip(&swapped[late..]).filter(|(a, b)| (*a - *b).abs() > 1e-3).count();
    assert!(changed > (kept.len() - late) / 2, "the new voice is not in use ({changed} samples changed)");
}

#[test]
fn below_the_silence_threshold_no_model_runs_and_silence_comes_out() {
    use rvc_stage::engine::Stage;
    let rate = 48_000.0;
    let mut input = vowel(rate, 150.0, 1.0, 0.0);
    let silence_from = input.len();
    input.extend(common::noise(9, 2 * 48_000, 1e-4)); // -86 dB
    input.extend(vowel(rate, 150.0, 1.0, 0.0));
    // A copy of the demo voice of its own: tests running at the same time share models loaded
    // from the same file, and their runs would count here too.
    let dir = common::scratch("synth-silence");
    let own = dir.join("demo-voice.onnx");
    std::fs::copy(fixture("demo-voice-768.onnx"), &own).unwrap();
    let runs = |threshold: f32| {
        let runtime = runtime().map(|p| p.to_string_lossy().into_owned());
        let voice = Voice {
            synth: loaded(synth_slot(Arc::new(RwLock::new(runtime)), ModelOptions::default()), &own),
            ..demo_voice()
        };
        let files = VoiceFiles::new(voice.content.reader(), voice.index.reader()).with_synth(voice.synth.reader());
        let mut stage = VoiceStage::new(files, rate, BLOCK);
        let mut synth = voice.synth.reader();
        synth.refresh();
        let runs = || synth.get().unwrap().lock().unwrap().runs();
        let controls = VoiceControls { silence_db: threshold, ..VoiceControls::default() };
        // Blocks wholly silent, once the voiced audio before them has come out.
        let quiet = (silence_from + stage.latency_samples()) / BLOCK + 1..(silence_from + 2 * 48_000) / BLOCK;
        let (mut counted, mut output) = (0, vec![0.0; BLOCK]);
        let mut quiet_output = Vec::new();
        for (i, block) in input.chunks_exact(BLOCK).enumerate() {
            let before = runs();
            let _ = stage.process(block, &controls, &mut output);
            if quiet.contains(&i) {
                counted += runs() - before;
                quiet_output.extend_from_slice(&output);
            }
        }
        (counted, quiet_output.iter().fold(0f32, |m, x| m.max(x.abs())))
    };
    let (gated_runs, gated_peak) = runs(-40.0);
    let (open_runs, _) = runs(rvc_stage::voice::SILENCE_OFF_DB);
    assert_eq!(gated_runs, 0, "the synthesizer ran on silent blocks");
    assert!(open_runs > 10, "without the gate the synthesizer runs on every block ({open_runs} runs)");
    assert_eq!(gated_peak, 0.0, "silent blocks put out sound");
}

const BLOCK: usize = 4800;

/// `input` (48 kHz) through the voice stage block by block with the demo voice, replaced by
/// `swap` halfway when given; returns the output, the blocks that failed, and the latency.
fn blocks_swapping(input: &[f32], swap: Option<&Path>) -> (Vec<f32>, Vec<usize>, usize) {
    use rvc_stage::engine::Stage;
    let voice = demo_voice();
    let files = VoiceFiles::new(voice.content.reader(), voice.index.reader()).with_synth(voice.synth.reader());
    let mut stage = VoiceStage::new(files, 48_000.0, BLOCK);
    let (mut output, mut failed) = (vec![0.0; input.len()], Vec::new());
    let blocks = input.len() / BLOCK;
    for (i, (x, y)) in input.chunks_exact(BLOCK).zip(output.chunks_exact_mut(BLOCK)).enumerate() {
        if let Some(path) = swap.filter(|_| i == blocks / 2) {
            voice.synth.request(Some(path.to_path_buf()));
            voice.synth.wait();
            assert!(matches!(voice.synth.status(), SlotStatus::Ready { .. }));
        }
        if stage.process(x, &VoiceControls::default(), y).is_err() {
            failed.push(i);
        }
    }
    assert!(stage.status().errors().is_empty(), "{:?}", stage.status().errors());
    (output, failed, stage.latency_samples())
}

// ---- Arrays for the Python reference ----

#[derive(Clone, Copy)]
enum Values<'a> {
    F32(&'a [f32]),
    I64(&'a [i64]),
}

/// Writes each array as `<dir>/<name>.npy`.
fn write_arrays(dir: &Path, arrays: &[(&str, Vec<usize>, Values)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, shape, values) in arrays {
        let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let file = std::fs::File::create(dir.join(format!("{name}.npy"))).unwrap();
        match values {
            Values::F32(v) => {
                let mut w = npyz::WriteOptions::new().default_dtype().shape(&shape).writer(file).begin_nd().unwrap();
                w.extend(v.iter().copied()).unwrap();
                w.finish().unwrap();
            }
            Values::I64(v) => {
                let mut w = npyz::WriteOptions::new().default_dtype().shape(&shape).writer(file).begin_nd().unwrap();
                w.extend(v.iter().copied()).unwrap();
                w.finish().unwrap();
            }
        }
    }
}
