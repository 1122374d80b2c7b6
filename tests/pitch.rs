//! RVC's pitch formulas against numpy implementations of the same formulas
//! (`tests/fixtures/rvc_pitch.py`): the log-mel spectrogram RMVPE takes, the decoding of its
//! salience, and the coarse pitch code.

mod common;

use common::voices::{score, signals, track, voice, Signal};

use std::path::Path;

use rvc_stage::pitch::{coarse_pitch, decode_salience, MelSpectrogram, MEL_BANDS, UNVOICED_THRESHOLD};

fn fixtures() -> &'static Path {
    common::generated("rvc_pitch.py")
}

fn array<T: npyz::Deserialize>(name: &str) -> (Vec<u64>, Vec<T>) {
    let bytes = std::fs::read(fixtures().join(name)).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec().unwrap())
}

#[test]
fn log_mel_equals_rvcs_within_1e_4() {
    let (_, audio) = array::<f32>("audio.npy");
    let (shape, expected) = array::<f32>("mel.npy");
    let mut mel = MelSpectrogram::new();
    let mut ours = Vec::new();
    let frames = mel.compute(&audio, &mut ours);
    assert_eq!(vec![MEL_BANDS as u64, frames as u64], shape, "[128, N / 160 + 1]");
    let worst = ours.iter().zip(&expected).map(|(a, b)| (a - b).abs() / b.abs().max(1.0)).fold(0.0, f32::max);
    assert!(worst <= 1e-4, "largest difference {worst}");
    // Computed again, the same (nothing carried over between calls).
    let mut again = Vec::new();
    mel.compute(&audio, &mut again);
    assert_eq!(again, ours);
}

#[test]
fn salience_decodes_like_rvc() {
    let (_, salience) = array::<f32>("salience.npy");
    let (_, expected) = array::<f32>("f0.npy");
    let mut f0 = Vec::new();
    decode_salience(&salience, UNVOICED_THRESHOLD, &mut f0);
    assert_eq!(f0.len(), expected.len());
    for (frame, (a, b)) in f0.iter().zip(&expected).enumerate() {
        assert!((a - b).abs() <= 1e-4 * b.max(1.0), "frame {frame}: {a} vs {b}");
    }
    assert!(f0.contains(&0.0) && f0.iter().any(|f| *f > 0.0), "voiced and unvoiced frames both tested");
}

#[test]
fn coarse_pitch_equals_get_f0_post() {
    let (_, f0) = array::<f32>("f0_in.npy");
    let (_, expected) = array::<i64>("coarse.npy");
    let mut codes = Vec::new();
    coarse_pitch(&f0, &mut codes);
    assert_eq!(codes, expected);
}

/// The built-in estimator on signals with known f0: ≤ 2 % gross errors, median error ≤ 10
/// cents, ≤ 5 % voicing errors on every signal — the targets.
#[test]
fn the_built_in_estimator_meets_its_accuracy_targets() {
    let mut failures = Vec::new();
    for signal in signals() {
        let f0 = track(&signal.audio);
        let (gross, median, voicing) = score(&signal, &f0);
        eprintln!(
            "{:<32} gross {:5.2} %  median {:5.2} cents  voicing {:5.2} %",
            signal.name,
            gross * 100.0,
            median,
            voicing * 100.0
        );
        if gross > 0.02 || median > 10.0 || voicing > 0.05 {
            failures.push(signal.name);
        }
    }
    assert!(failures.is_empty(), "targets missed on {failures:?}");
}

/// Records the pitch frames the pipeline decides, in stream order.
#[derive(Clone, Default)]
struct PitchTap(std::sync::Arc<std::sync::Mutex<Vec<f32>>>);

impl rvc_stage::voice::FeatureTap for PitchTap {
    fn frames(&mut self, _: &rvc_stage::voice::Frames, _: &[f32]) {}
    fn wants_pitch(&self) -> bool {
        true
    }
    fn pitch(&mut self, pitch: &rvc_stage::voice::PitchFrames) {
        let mut f0 = self.0.lock().unwrap();
        assert_eq!(pitch.first() as usize, f0.len(), "pitch frames come in stream order, none missing");
        f0.extend_from_slice(pitch.f0());
    }
}

/// The voice pipeline's pitch step at a host rate: `signal` (16 kHz) resampled to `rate`,
/// rendered offline in `block_ms` blocks and 333-frame calls, transposed by `semitones`.
fn pipeline_pitch(signal: &Signal, rate: u32, block_ms: f64, semitones: f32) -> Vec<f32> {
    pipeline_pitch_with(signal, rate, block_ms, semitones, None).0
}

/// [`pipeline_pitch`] with an RMVPE model; also returns the pitch step's status.
fn pipeline_pitch_with(
    signal: &Signal,
    rate: u32,
    block_ms: f64,
    semitones: f32,
    pitch_model: Option<&Path>,
) -> (Vec<f32>, rvc_stage::voice::StepStatus) {
    use rvc_stage::engine::{Controls, Engine, EngineConfig, RenderMode};
    use rvc_stage::voice::{VoiceControls, VoiceFiles, VoiceStage};
    let config = EngineConfig {
        sample_rate: f64::from(rate),
        max_buffer: 333,
        channels: 1,
        block_ms,
        mode: RenderMode::Offline,
        ..Default::default()
    };
    let (model, index) = (
        rvc_stage::features::model_slot(Default::default(), Default::default()),
        rvc_stage::retrieval::IndexSlot::default(),
    );
    let tap = PitchTap::default();
    let pitch_models = rvc_stage::pitch::pitch_model_slot(std::sync::Arc::new(std::sync::RwLock::new(Some(
        runtime().to_string_lossy().into_owned(),
    ))));
    if let Some(path) = pitch_model {
        pitch_models.request(Some(path.to_path_buf()));
    }
    let files = VoiceFiles::new(model.reader(), index.reader()).with_pitch_model(pitch_models.reader());
    let stage = VoiceStage::new(files, config.sample_rate, config.block_samples()).with_tap(Box::new(tap.clone()));
    let status = stage.status();
    let mut engine = Engine::start(config, stage).unwrap();
    // Linear interpolation to the host rate is enough for a band-limited voice below 4 kHz.
    let len = (signal.audio.len() as f64 * f64::from(rate) / 16_000.0) as usize;
    let mut audio: Vec<f32> = (0..len)
        .map(|n| {
            let at = n as f64 * 16_000.0 / f64::from(rate);
            let (i, frac) = (at as usize, (at - at.floor()) as f32);
            let next = signal.audio.get(i + 1).copied().unwrap_or(0.0);
            signal.audio[i] * (1.0 - frac) + next * frac
        })
        .collect();
    // Then a second of silence, so every frame of the signal is decided.
    audio.resize(len + rate as usize, 0.0);
    let controls =
        Controls { stage: VoiceControls { transpose: semitones, ..VoiceControls::default() }, ..Controls::default() };
    for chunk in audio.chunks_mut(333) {
        engine.process(&mut [chunk], controls);
    }
    drop(engine);
    let mut f0 = tap.0.lock().unwrap().clone();
    f0.truncate(signal.f0.len());
    (f0, status.snapshot()[rvc_stage::voice::Step::Pitch as usize].clone())
}

/// Through the voice pipeline at 44.1, 48 and 22.05 kHz and odd block sizes, the pitch step
/// meets the same targets; the same audio in other blocks gives the same track (within 1 cent:
/// only the resampler's rounding differs); Transpose +12 doubles and −12 halves every voiced f0.
#[test]
fn the_pipelines_pitch_step_is_accurate_at_host_rates_whatever_the_blocks_and_transposes() {
    let signals = signals();
    for (signal, rate, block_ms) in
        [(&signals[1], 44_100, 100.0), (&signals[3], 48_000, 230.0), (&signals[4], 22_050, 75.0)]
    {
        let f0 = pipeline_pitch(signal, rate, block_ms, 0.0);
        assert_eq!(f0.len(), signal.f0.len(), "{}: every frame decided", signal.name);
        let (gross, median, voicing) = score(signal, &f0);
        assert!(
            gross <= 0.02 && median <= 10.0 && voicing <= 0.05,
            "{} at {rate} Hz: {gross} {median} {voicing}",
            signal.name
        );
        let other_blocks = pipeline_pitch(signal, rate, 500.0, 0.0);
        for (k, (a, b)) in f0.iter().zip(&other_blocks).enumerate() {
            assert_eq!(*a > 0.0, *b > 0.0, "{}: frame {k} voicing differs with 500 ms blocks", signal.name);
            if *a > 0.0 {
                assert!((1200.0 * (a / b).log2()).abs() < 1.0, "{}: frame {k}: {a} vs {b} Hz", signal.name);
            }
        }
        for (semitones, factor) in [(12.0, 2.0), (-12.0, 0.5)] {
            let shifted = pipeline_pitch(signal, rate, block_ms, semitones);
            for (a, b) in f0.iter().zip(&shifted) {
                assert_eq!(*b, *a * factor, "{}: transposed by {semitones}", signal.name);
            }
        }
    }
}

/// `rvc-stage pitch` runs the worker's pitch path on a WAV file: one CSV row per 10 ms with the
/// f0 the pipeline decides (and its coarse code), transposed on request, plotted on request.
#[test]
fn the_pitch_command_writes_the_track_transposes_and_plots() {
    let dir = common::scratch("pitch-cli");
    let signal = voice("steady 200 Hz", 1.5, |t| if t < 1.2 { 200.0 } else { 0.0 }, None, 8);
    let wav = dir.join("voice.wav");
    let rate = 44_100;
    let resampled: Vec<f32> = (0..(1.5 * rate as f32) as usize)
        .map(|n| signal.audio[((n as f64 * 16_000.0 / f64::from(rate)) as usize).min(signal.audio.len() - 1)])
        .collect();
    common::write_wav(&wav, rate, &[resampled]);
    let read = |path: &Path| -> Vec<(f32, i64)> {
        let text = std::fs::read_to_string(path).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("time_s,f0_hz,voiced,coarse"));
        lines
            .map(|line| {
                let fields: Vec<&str> = line.split(',').collect();
                assert_eq!(fields[2] == "1", fields[1].parse::<f32>().unwrap() > 0.0, "{line}");
                (fields[1].parse().unwrap(), fields[3].parse().unwrap())
            })
            .collect()
    };
    let (csv, shifted, plot) = (dir.join("f0.csv"), dir.join("up.csv"), dir.join("f0.png"));
    let (ok, text) = common::rvc_stage_cli(&[&"pitch", &wav, &"-o", &csv, &"--plot", &plot]);
    assert!(ok, "{text}");
    let rows = read(&csv);
    assert_eq!(rows.len(), 150 + 1, "one row per 10 ms");
    let voiced: Vec<f32> = rows[10..110].iter().map(|r| r.0).collect();
    assert!(voiced.iter().all(|f| (f / 200.0 - 1.0).abs() < 0.02), "{voiced:?}");
    assert!(rows[130..].iter().all(|r| r.0 == 0.0 && r.1 == 1), "unvoiced after 1.2 s: {:?}", &rows[120..]);
    assert!(std::fs::read(&plot).unwrap().starts_with(b"\x89PNG"));
    let (ok, text) = common::rvc_stage_cli(&[&"pitch", &wav, &"-o", &shifted, &"--transpose", &"12"]);
    assert!(ok, "{text}");
    for (a, b) in rows.iter().zip(read(&shifted)) {
        assert!((b.0 - a.0 * 2.0).abs() <= 0.002, "{} is not twice {} (the CSV keeps 3 decimals)", b.0, a.0);
    }
    let (ok, text) = common::rvc_stage_cli(&[&"pitch", &wav, &"-o", &shifted, &"--transpose", &"30"]);
    assert!(!ok && text.contains("--transpose must be within -24…24 semitones"), "{text}");
    // An RMVPE model instead of the built-in estimator: its (random-weight) track, same grid.
    let modelled = dir.join("rmvpe.csv");
    let (ok, text) =
        common::rvc_stage_cli(&[&"pitch", &wav, &"-o", &modelled, &"--pitch-model", &rmvpe_model("wokada")]);
    assert!(ok, "{text}");
    let by_model = read(&modelled);
    assert_eq!(by_model.len(), rows.len());
    assert!(by_model.iter().zip(&rows).filter(|(a, b)| a.0 != b.0).count() > 50, "the model's track is not used");
    let (ok, text) = common::rvc_stage_cli(&[&"pitch", &wav, &"-o", &modelled, &"--pitch-model", &wav]);
    assert!(!ok && text.contains("is not a model ONNX Runtime can load"), "{text}");
    std::fs::remove_dir_all(dir).unwrap();
}

fn rmvpe_model(contract: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/models/rmvpe-tiny-{contract}.onnx"))
}

fn runtime() -> std::path::PathBuf {
    std::env::var_os("RVC_STAGE_ONNXRUNTIME").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::PathBuf::from(std::env::var_os("HOME").unwrap())
            .join(".cache/rvc-stage/onnxruntime-1.31.1/libonnxruntime.so.1.31.1")
    })
}

/// Both RMVPE contracts, read from the models' inputs, give the f0 ONNX Runtime's Python API
/// gives for the same audio run as RVC (our mel, padded to 32 frames, our decode) and w-okada
/// run them.
#[test]
fn rmvpe_models_of_both_contracts_equal_onnxruntime_in_python() {
    use rvc_stage::pitch::{RmvpeContract, RmvpeModel};
    let (_, audio) = array::<f32>("audio.npy");
    for (contract, expected) in [("rvc", "rmvpe_rvc_f0.npy"), ("wokada", "rmvpe_wokada_f0.npy")] {
        let mut model = RmvpeModel::load(&rmvpe_model(contract), Some(&runtime())).unwrap();
        assert_eq!(matches!(model.contract(), RmvpeContract::Mel { .. }), contract == "rvc");
        let mut f0 = Vec::new();
        model.f0(&audio, &mut f0).unwrap();
        let (_, expected) = array::<f32>(expected);
        assert_eq!(f0.len(), audio.len() / 160 + 1, "{contract}: one frame per 160 samples");
        assert_eq!(f0.len(), expected.len(), "{contract}");
        for (frame, (a, b)) in f0.iter().zip(&expected).enumerate() {
            assert!((a - b).abs() <= 1e-3 * b.max(1.0), "{contract}, frame {frame}: {a} vs {b}");
        }
        assert!(f0.iter().any(|f| *f > 0.0), "{contract}: voiced frames tested");
    }
}

/// A file of another kind, a truncated one, a missing one and one whose output is NaN are
/// errors in words.
#[test]
fn wrong_pitch_model_files_are_explained() {
    use rvc_stage::engine::slot::SlotStatus;
    use rvc_stage::pitch::RmvpeModel;
    let dir = common::scratch("pitch-model-wrong");
    let status = std::process::Command::new(common::reference_python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_bad_synths.py"))
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    let truncated = dir.join("truncated.onnx");
    let bytes = std::fs::read(rmvpe_model("rvc")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let content_model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/hubert-tiny-256.onnx");
    let cases = [
        (content_model, "does not look like an RMVPE pitch model: its inputs are"),
        (truncated, "is not a model ONNX Runtime can load"),
        (dir.join("missing.onnx"), "is not a model ONNX Runtime can load"),
        (dir.join("nan-rmvpe.onnx"), "its output is not a number"),
    ];
    for (path, expected) in cases {
        let error = RmvpeModel::load(&path, Some(&runtime())).unwrap_err().to_string();
        assert!(error.contains(expected) && error.contains(&*path.to_string_lossy()), "{error}");
    }
    // Chosen in the pipeline, a bad model is refused and the built-in estimator runs meanwhile.
    let signal = &signals()[0];
    let (f0, status) = pipeline_pitch_with(signal, 48_000, 100.0, 0.0, Some(&dir.join("nan-rmvpe.onnx")));
    assert!(matches!(&status.file, Some(SlotStatus::Failed { .. })), "{status:?}");
    assert_eq!(f0, pipeline_pitch(signal, 48_000, 100.0, 0.0), "the built-in estimator's track");
    std::fs::remove_dir_all(dir).unwrap();
}

/// With an RMVPE model chosen, the pipeline's pitch step runs it (offline renders wait for it to
/// load): its track is the model's, not the built-in estimator's, the same for 100 and 330 ms
/// blocks (each block runs the model over its new audio plus 4 frames on either side), every
/// frame decided, transposed like the built-in one, and the status board shows the file.
#[test]
fn the_pitch_step_runs_a_chosen_rmvpe_model_whatever_the_blocks() {
    use rvc_stage::engine::slot::SlotStatus;
    let signal = &signals()[1];
    let model = rmvpe_model("wokada");
    let (f0, status) = pipeline_pitch_with(signal, 48_000, 100.0, 0.0, Some(&model));
    assert!(matches!(&status.file, Some(SlotStatus::Ready { path, .. }) if *path == model), "{status:?}");
    assert_eq!((f0.len(), status.error), (signal.f0.len(), None), "every frame decided");
    let (other_blocks, _) = pipeline_pitch_with(signal, 48_000, 330.0, 0.0, Some(&model));
    assert_eq!(f0, other_blocks, "the same track whatever the block size");
    assert_ne!(f0, pipeline_pitch(signal, 48_000, 100.0, 0.0), "the model's track, not the built-in one");
    let (shifted, _) = pipeline_pitch_with(signal, 48_000, 100.0, 12.0, Some(&model));
    assert!(f0.iter().zip(&shifted).all(|(a, b)| *b == a * 2.0));
    assert!(f0.iter().any(|f| *f > 0.0));
}
