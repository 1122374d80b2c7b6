//! RVC's pitch formulas against numpy implementations of the same formulas
//! (`tests/fixtures/rvc_pitch.py`): the log-mel spectrogram RMVPE takes, the decoding of its
//! salience, and the coarse pitch code.

mod common;

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

/// One test signal at 16 kHz with its truth per 10 ms frame: f0 (0 = unvoiced) and whether the
/// frame is scored (frames within 30 ms of a voicing change or an octave leap are not).
struct Signal {
    name: &'static str,
    audio: Vec<f32>,
    f0: Vec<f32>,
    scored: Vec<bool>,
}

const RATE: f32 = 16_000.0;

/// A voice-like signal: a glottal pulse train following `f0_at(t)` (0 = unvoiced: noise
/// instead), with 1 % period jitter, through three vowel formants (/a/), plus noise at `snr_db`.
fn voice(name: &'static str, seconds: f32, f0_at: impl Fn(f32) -> f32, snr_db: Option<f32>, seed: u64) -> Signal {
    let mut rng = fastrand::Rng::with_seed(seed);
    let len = (seconds * RATE) as usize;
    let (mut source, mut phase, mut jitter) = (vec![0.0f32; len], 0.0f32, 1.0f32);
    for (n, x) in source.iter_mut().enumerate() {
        let f0 = f0_at(n as f32 / RATE);
        if f0 > 0.0 {
            phase += f0 * jitter / RATE;
            if phase >= 1.0 {
                phase -= 1.0;
                jitter = 1.0 + (rng.f32() - 0.5) * 0.02;
            }
            // A Rosenberg-like pulse: rise over 40 % of the period, fall over 16 %.
            *x = if phase < 0.4 {
                0.5 * (1.0 - (std::f32::consts::PI * phase / 0.4).cos())
            } else if phase < 0.56 {
                (std::f32::consts::FRAC_PI_2 * (phase - 0.4) / 0.16).cos()
            } else {
                0.0
            };
        } else {
            *x = (rng.f32() - 0.5) * 0.6;
        }
    }
    // Differentiated (lip radiation), then the formants.
    let mut audio: Vec<f32> = (0..len).map(|n| source[n] - if n > 0 { source[n - 1] } else { 0.0 }).collect();
    for (centre, bandwidth) in [(700.0, 110.0), (1220.0, 120.0), (2600.0, 160.0)] {
        resonate(&mut audio, centre, bandwidth);
    }
    let peak = audio.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    audio.iter_mut().for_each(|x| *x *= 0.5 / peak);
    if let Some(snr) = snr_db {
        let power = audio.iter().map(|x| x * x).sum::<f32>() / len as f32;
        let amplitude = (3.0 * power / 10f32.powf(snr / 10.0)).sqrt();
        audio.iter_mut().for_each(|x| *x += (rng.f32() * 2.0 - 1.0) * amplitude);
    }
    let frames = len / 160 + 1;
    let f0: Vec<f32> = (0..frames).map(|k| f0_at(k as f32 / 100.0)).collect();
    let scored = (0..frames)
        .map(|k| {
            // Before the start and after the end the signal is silent (unvoiced).
            let near = |d: i64| usize::try_from(k as i64 + d).ok().and_then(|k| f0.get(k)).copied().unwrap_or(0.0);
            (-3..=3)
                .all(|d| (near(d) > 0.0) == (f0[k] > 0.0) && (near(d) == 0.0 || (near(d) / f0[k]).log2().abs() < 0.5))
        })
        .collect();
    Signal { name, audio, f0, scored }
}

/// A two-pole resonator at `centre` Hz with `bandwidth` Hz, in place, unit gain at its peak.
fn resonate(audio: &mut [f32], centre: f32, bandwidth: f32) {
    let r = (-std::f32::consts::PI * bandwidth / RATE).exp();
    let (a1, a2) = (2.0 * r * (2.0 * std::f32::consts::PI * centre / RATE).cos(), -r * r);
    let gain = 1.0 - r;
    let (mut y1, mut y2) = (0.0, 0.0);
    for x in audio.iter_mut() {
        let y = gain * *x + a1 * y1 + a2 * y2;
        (y2, y1) = (y1, y);
        *x = y;
    }
}

fn signals() -> Vec<Signal> {
    let tau = std::f32::consts::TAU;
    vec![
        voice("steady 120 Hz", 2.0, |_| 120.0, None, 1),
        voice("glide 80 → 400 Hz", 2.0, |t| 80.0 * 5f32.powf(t / 2.0), None, 2),
        voice("vibrato 220 Hz ± 50 cents", 2.0, |t| 220.0 * 2f32.powf(0.5 / 12.0 * (tau * 5.5 * t).sin()), None, 3),
        voice("octave leaps 150 ↔ 300 Hz", 2.4, |t| if (t / 0.4) as i32 % 2 == 0 { 150.0 } else { 300.0 }, None, 4),
        voice("voiced 180 Hz / noise bursts", 2.5, |t| if t % 0.5 < 0.3 { 180.0 } else { 0.0 }, None, 5),
        voice("glide, 20 dB SNR", 2.0, |t| 90.0 * 4f32.powf(t / 2.0), Some(20.0), 6),
        voice("steady 260 Hz, 20 dB SNR", 2.0, |_| 260.0, Some(20.0), 7),
        voice("200 Hz, then noise to the end", 1.5, |t| if t < 1.2 { 200.0 } else { 0.0 }, None, 8),
    ]
}

/// The tracker's f0 for every frame of `audio` (frame k at sample 160 k, silence before the
/// start and after the end).
fn track(audio: &[f32]) -> Vec<f32> {
    use rvc_stage::pitch::{PitchTracker, LOOKAHEAD, TRACKER_FRAME, WINDOW_BEFORE};
    let mut tracker = PitchTracker::new();
    let frames = audio.len() / 160 + 1;
    let mut padded = vec![0.0; WINDOW_BEFORE];
    padded.extend_from_slice(audio);
    padded.resize(frames * 160 + TRACKER_FRAME, 0.0);
    let mut f0 = Vec::new();
    for k in 0..frames {
        let decided = nice_assert_no_alloc::assert_no_alloc(|| tracker.push(&padded[k * 160..][..TRACKER_FRAME]));
        f0.extend(decided);
    }
    assert_eq!(f0.len(), frames - LOOKAHEAD);
    tracker.finish(&mut f0);
    f0
}

/// Gross pitch errors (> 20 % off) among voiced frames, median error in cents over frames both
/// call voiced, voicing decision errors among all frames — scored frames only.
fn score(signal: &Signal, f0: &[f32]) -> (f32, f32, f32) {
    let (mut voiced, mut gross, mut decisions, mut wrong) = (0, 0, 0, 0);
    let mut cents = Vec::new();
    for k in (0..signal.f0.len()).filter(|&k| signal.scored[k]) {
        let (truth, estimate) = (signal.f0[k], f0[k]);
        decisions += 1;
        wrong += usize::from((truth > 0.0) != (estimate > 0.0));
        if truth > 0.0 {
            voiced += 1;
            if estimate > 0.0 {
                let error = 1200.0 * (estimate / truth).log2();
                gross += usize::from((estimate / truth - 1.0).abs() > 0.2);
                cents.push(error.abs());
            } else {
                gross += 1;
            }
        }
    }
    cents.sort_by(f32::total_cmp);
    let median = cents.get(cents.len() / 2).copied().unwrap_or(f32::INFINITY);
    (gross as f32 / voiced.max(1) as f32, median, wrong as f32 / decisions as f32)
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
    let files = VoiceFiles { model: model.reader(), index: index.reader() };
    let stage = VoiceStage::new(files, config.sample_rate, config.block_samples()).with_tap(Box::new(tap.clone()));
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
    f0
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
    std::fs::remove_dir_all(dir).unwrap();
}
