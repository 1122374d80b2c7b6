//! `cargo xtask demo`: the main job end to end on this machine. Sets up, builds and bundles,
//! then loads the built `rvc-stage.clap` like a DAW, renders an embedded default — a generated
//! voice-like test signal — offline, measures the latency with an impulse and prints a report.
//! Then runs the feature stage on the same voice with the tiny test model and an index built by
//! `rvc-stage index build` from another generated voice, and plots each frame's distance to the
//! index before and after the blend. Writes WAVs, features and `features.png` under
//! `target/demo/`.

use std::path::Path;
use std::time::Instant;

use anyhow::{ensure, Result};

use crate::clap_host::{check_clean, load, Plugin, Settings};

const SAMPLE_RATE: f64 = 48_000.0;
const SECONDS: f64 = 4.0;

pub fn run() -> Result<()> {
    crate::setup::run()?;
    let bundle = crate::bundle()?;
    let entry = load(&bundle)?;
    let started = Instant::now();
    let mut plugin = Plugin::new(&entry)?;
    let instantiate = started.elapsed();
    let settings = Settings::new(SAMPLE_RATE, 512, true);

    let reported = plugin.render(settings, &[vec![0.0; 1], vec![0.0; 1]], &[], || 1)?.latency as usize;
    let impulse_at = 1000;
    let mut impulse = vec![0.0f32; impulse_at + reported + 1000];
    impulse[impulse_at] = 1.0;
    let response = plugin.render(settings, &[impulse.clone(), impulse], &[], || 512)?;
    let peak =
        response.output[0].iter().enumerate().max_by(|a, b| a.1.abs().total_cmp(&b.1.abs())).map_or(0, |(i, _)| i);
    let measured = peak.saturating_sub(impulse_at);

    let voice = test_voice((SECONDS * SAMPLE_RATE) as usize + reported, 1.0);
    let input = vec![voice.clone(), voice];
    let started = Instant::now();
    let render = plugin.render(settings, &input, &[], || 512)?;
    let render_time = started.elapsed();
    check_clean(&render.output)?;
    let max_error =
        render.output[0][reported..].iter().zip(&input[0]).map(|(out, x)| (out - x).abs()).fold(0.0f32, f32::max);

    let out_dir = crate::target_dir().join("demo");
    std::fs::create_dir_all(&out_dir)?;
    write_wav(&out_dir.join("input.wav"), &input)?;
    write_wav(&out_dir.join("output.wav"), &render.output)?;

    let ms = |samples: usize| samples as f64 * 1000.0 / SAMPLE_RATE;
    println!();
    println!("RVC Stage demo — {SECONDS} s of audio rendered offline through {}", bundle.display());
    println!("  stages               all (no files in this state: the voice passes through unconverted)");
    println!("  instantiate          {:.2} ms", instantiate.as_secs_f64() * 1000.0);
    println!(
        "  reported latency     {reported} samples ({:.1} ms at {SAMPLE_RATE} Hz, 100 ms blocks, 512-frame buffers)",
        ms(reported)
    );
    println!("  measured latency     {measured} samples (impulse at {impulse_at} came out at {peak})");
    println!("  output vs input      max |difference| {max_error:e} after latency compensation");
    println!("  render speed         {:.0}x real time", SECONDS / render_time.as_secs_f64());
    println!("  files                {}/{{input,output}}.wav", out_dir.display());
    ensure!(measured == reported, "measured latency {measured} differs from the reported {reported}");
    ensure!(max_error == 0.0, "the pass-through changed the audio");
    let cli = feature_stage(&out_dir)?;
    conversion(&out_dir, &cli)
}

/// Transposition the demo converts with, in semitones.
const DEMO_TRANSPOSE: i32 = 7;

/// Real speech (or, where it cannot be fetched, the generated voice) converted with the demo
/// voice at +7 semitones by the very worker path the plugin runs (`rvc-stage convert`); both
/// f0 tracks plotted over their spectrograms, and the measured f0 ratio.
fn conversion(out_dir: &Path, cli: &Path) -> Result<()> {
    let speech = out_dir.join("speech.wav");
    let source = match crate::speech::recording() {
        Ok((samples, rate, name)) => {
            write_wav(&speech, &[upsample(&samples, rate)])?;
            name
        }
        Err(why) => {
            println!("(no recorded speech: {why:#}; converting the generated voice instead)");
            write_wav(&speech, &[test_voice((4.0 * SAMPLE_RATE) as usize, 0.8)])?;
            "the generated test voice".to_string()
        }
    };
    let fixture = |name: &str| crate::workspace_root().join("tests/fixtures/models").join(name);
    let path = |name: &str| out_dir.join(name).to_string_lossy().into_owned();
    let (hubert, voice) = (fixture("hubert-tiny-768.onnx"), fixture("demo-voice-768.onnx"));
    let transpose = DEMO_TRANSPOSE.to_string();
    let steps: [Vec<String>; 3] = [
        vec![
            "convert".into(),
            path("speech.wav"),
            "-o".into(),
            path("converted.wav"),
            "--hubert".into(),
            hubert.to_string_lossy().into_owned(),
            "--synth".into(),
            voice.to_string_lossy().into_owned(),
            "--transpose".into(),
            transpose,
            "--plot".into(),
            path("conversion.png"),
        ],
        vec![
            "pitch".into(),
            path("speech.wav"),
            "-o".into(),
            path("speech-f0.csv"),
            "--plot".into(),
            path("speech-f0.png"),
        ],
        vec![
            "pitch".into(),
            path("converted.wav"),
            "-o".into(),
            path("converted-f0.csv"),
            "--plot".into(),
            path("converted-f0.png"),
        ],
    ];
    println!();
    println!("Voice conversion: {source}, through the demo voice (a stand-in synthesizer, not a trained model) at +{DEMO_TRANSPOSE} semitones:");
    for args in &steps {
        println!("$ rvc-stage {}", args.join(" "));
        let status = std::process::Command::new(cli).args(args).status()?;
        ensure!(status.success(), "rvc-stage {} failed", args.join(" "));
    }
    let (before, after) = (read_f0(&out_dir.join("speech-f0.csv"))?, read_f0(&out_dir.join("converted-f0.csv"))?);
    let mut ratios: Vec<f64> =
        before.iter().zip(&after).filter(|(a, b)| **a > 0.0 && **b > 0.0).map(|(a, b)| b / a).collect();
    ensure!(ratios.len() > 50, "too few frames voiced in both the speech and the conversion ({})", ratios.len());
    ratios.sort_by(f64::total_cmp);
    let expected = 2f64.powf(f64::from(DEMO_TRANSPOSE) / 12.0);
    println!(
        "  median output/input f0 ratio {:.4} over {} frames voiced in both (expected 2^(7/12) = {expected:.4})",
        ratios[ratios.len() / 2],
        ratios.len()
    );
    println!(
        "  files                {}/{{speech,converted}}.wav, conversion.png (both spectrograms and f0 tracks, ms per step)",
        out_dir.display()
    );
    Ok(())
}

/// The f0 column of a `rvc-stage pitch` CSV.
fn read_f0(path: &Path) -> Result<Vec<f64>> {
    let text = std::fs::read_to_string(path)?;
    text.lines().skip(1).map(|line| Ok(line.split(',').nth(1).unwrap_or("0").parse()?)).collect()
}

/// `samples` at `rate` taken to the demo's rate by linear interpolation (speech for a demo).
fn upsample(samples: &[f32], rate: u32) -> Vec<f32> {
    let step = f64::from(rate) / SAMPLE_RATE;
    (0..(samples.len() as f64 / step) as usize)
        .map(|n| {
            let t = n as f64 * step;
            let i = t as usize;
            let (a, b) = (samples[i], samples[(i + 1).min(samples.len() - 1)]);
            a + (b - a) * (t - i as f64) as f32
        })
        .collect()
}

/// Content features of the demo voice, blended with an index of another voice, plotted.
/// Returns the release CLI it built.
fn feature_stage(out_dir: &Path) -> Result<std::path::PathBuf> {
    let status = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--quiet", "--release", "--bin", "rvc-stage"])
        .current_dir(crate::workspace_root())
        .status()?;
    ensure!(status.success(), "building rvc-stage failed");
    let cli = crate::target_dir().join("release/rvc-stage");
    let model = crate::workspace_root().join("tests/fixtures/models/hubert-tiny-768.onnx");
    let training = out_dir.join("training-voice.wav");
    write_wav(&training, &[test_voice((20.0 * SAMPLE_RATE) as usize, 1.6)])?;
    let path = |name: &str| out_dir.join(name).to_string_lossy().into_owned();
    let model = model.to_string_lossy().into_owned();
    let steps: [&[&str]; 3] = [
        &["features", &path("training-voice.wav"), "-o", &path("training-features.npy"), "--hubert", &model],
        &["index", "build", &path("training-features.npy"), "-o", &path("training-voice.index")],
        &[
            "features",
            &path("input.wav"),
            "-o",
            &path("features.npy"),
            "--hubert",
            &model,
            "--index",
            &path("training-voice.index"),
            "--ratio",
            "0.75",
            "--plot",
            &path("features.png"),
        ],
    ];
    println!();
    println!("Feature stage (tiny random-weight HuBERT-shaped model, index of another generated voice):");
    for args in steps {
        println!("$ rvc-stage {}", args.join(" "));
        let status = std::process::Command::new(&cli).args(args).status()?;
        ensure!(status.success(), "rvc-stage {} failed", args.join(" "));
    }
    Ok(cli)
}

/// A voice-like signal: a glottal-ish harmonic series on a gliding pitch (scaled by `pitch`)
/// with vibrato and a syllable envelope. Deterministic, so every demo renders the same input.
fn test_voice(len: usize, pitch: f64) -> Vec<f32> {
    let mut phase = 0.0f64;
    (0..len)
        .map(|n| {
            let t = n as f64 / SAMPLE_RATE;
            let f0 =
                pitch * (140.0 + 60.0 * (0.5 + 0.5 * (t * 0.7).sin()) + 4.0 * (t * 5.5 * std::f64::consts::TAU).sin());
            phase += f0 / SAMPLE_RATE;
            let harmonics: f64 = (1..=12).map(|k| (phase * k as f64 * std::f64::consts::TAU).sin() / k as f64).sum();
            let syllables = (t * 2.5 * std::f64::consts::PI).sin().abs().powf(0.5);
            (0.25 * harmonics * syllables) as f32
        })
        .collect()
}

fn write_wav(path: &Path, channels: &[Vec<f32>]) -> Result<()> {
    let spec = hound::WavSpec {
        channels: channels.len() as u16,
        sample_rate: SAMPLE_RATE as u32,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut writer = hound::WavWriter::create(path, spec)?;
    for n in 0..channels[0].len() {
        for channel in channels {
            writer.write_sample(channel[n])?;
        }
    }
    writer.finalize()?;
    Ok(())
}
