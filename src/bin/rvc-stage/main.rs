//! `rvc-stage`: the command-line face of the engine. Runs on the main thread and drives the
//! very engine the plugin runs (audio half plus worker thread), in offline mode.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use rvc_stage::engine::slot::{Slot, SlotStatus};
use rvc_stage::engine::{Controls, Engine, EngineConfig, RenderMode, BLOCK_MS_RANGE};
use rvc_stage::features::{model_slot, ModelOptions};
use rvc_stage::pitch::pitch_model_slot;
use rvc_stage::retrieval::IndexSlot;
use rvc_stage::synth::synth_slot;
use rvc_stage::voice::{VoiceControls, VoiceFiles, VoiceStage, CONTEXT_FRAMES_MAX, SILENCE_OFF_DB};

mod features;
mod index;
mod pitch;

#[derive(Parser)]
#[command(version, about = "RVC Stage: real-time retrieval-based voice conversion", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render a WAV file offline through the engine, exactly as the plugin processes it in a
    /// bounce. The output is latency-compensated: same length and alignment as the input.
    /// Without `--synth` the voice passes dry.
    Render(RenderArgs),
    /// Convert the voice in a WAV file: `render` with a content model (`--hubert`) and a
    /// synthesizer (`--synth`), exactly the plugin's worker path in an offline bounce.
    Convert(RenderArgs),
    /// Work with faiss feature indexes (RVC `.index` files).
    #[command(subcommand)]
    Index(IndexCommand),
    /// Compute content features of a WAV file with a HuBERT / ContentVec ONNX model, exactly as
    /// the plugin's worker does: resampled to 16 kHz, block by block with a bounded left
    /// context, optionally blended with an index. Writes float32 `[frames, dim]` at 50 frames
    /// per second.
    Features(features::FeaturesArgs),
    /// Track the pitch of a WAV file exactly as the plugin's worker does (the built-in
    /// estimator or an RMVPE model, block by block): f0 per 10 ms as CSV, optionally plotted
    /// over a spectrogram.
    Pitch(pitch::PitchArgs),
    /// Blend a feature file with its nearest index vectors, exactly as the plugin's worker does:
    /// k nearest neighbours at nprobe 1, weights 1/d², `ratio·retrieved + (1−ratio)·original`.
    Retrieve {
        /// The `.index` file.
        #[arg(long)]
        index: PathBuf,
        /// Content features, float32 `[frames, dim]` `.npy`.
        #[arg(long)]
        features: PathBuf,
        /// Index ratio, 0 (features unchanged) to 1 (fully retrieved).
        #[arg(long)]
        ratio: f32,
        /// Output `.npy`, float32 `[frames, dim]`.
        #[arg(short, long)]
        output: PathBuf,
        /// Frames searched per call, as the worker's block (25 frames = 0.5 s).
        #[arg(long, default_value_t = 25)]
        block_frames: usize,
        #[command(flatten)]
        search: index::SearchArgs,
    },
}

#[derive(Subcommand)]
enum IndexCommand {
    /// Check an index file completely and describe it: type, dimension, vector count, lists,
    /// nprobe, refine k_factor, bytes per vector. A damaged or unsupported file is explained.
    Info {
        /// The `.index` file.
        path: PathBuf,
    },
    /// Train an index from RVC feature files (`*.npy`, float32 [frames, dim], e.g. a
    /// `3_feature768` directory; files sorted by name and concatenated), following RVC's faiss
    /// tuning tips: `IVF{n},PQ{d/2}x4fs,RFlat`, nprobe 1, refine k_factor 4. Vectors are
    /// shuffled (seeded, so builds repeat), trained on, added in batches and written.
    Build {
        /// `.npy` files or directories of them.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        #[command(flatten)]
        build: index::BuildArgs,
    },
    /// Find the list count and refine depth for your data: on frames held out of trial
    /// indexes, measure recall@8 against exact search and the worker's time per 25-frame block
    /// at nprobe 1, print the table, plot recall against time, and recommend the fastest
    /// setting with recall ≥ 0.95. RVC's tips leave both open; at nprobe 1 fewer, longer lists
    /// find more true neighbours, and k_factor > 1 lets the exact refine repair fast-scan's
    /// 4-bit approximation.
    Tune {
        /// An `.index` file (its vectors are used), or `.npy` feature files / directories.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        #[command(flatten)]
        tune: index::TuneArgs,
    },
    /// Rebuild an existing index (e.g. RVC's IVF-Flat `added_*.index`) as IVF-PQ fast-scan with
    /// flat refine, from the vectors stored in it. The metric is kept.
    Convert {
        /// The index to convert.
        input: PathBuf,
        #[command(flatten)]
        build: index::BuildArgs,
    },
}

#[derive(clap::Args)]
struct RenderArgs {
    /// Input WAV (any rate, any channel count, integer or float samples).
    input: PathBuf,
    /// Output WAV (32-bit float, same rate and channels as the input).
    #[arg(short, long)]
    output: PathBuf,
    /// Worker block length in milliseconds (50-500), as the plugin's Block Size parameter.
    #[arg(long, default_value_t = 100.0)]
    block_ms: f64,
    /// Share of processed signal, 0-1.
    #[arg(long, default_value_t = 1.0)]
    mix: f32,
    /// Output gain in dB.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    gain_db: f32,
    /// Frames handed to the engine per call, like a host's buffer size.
    #[arg(long, default_value_t = 512)]
    buffer: usize,
    /// The content model (HuBERT / ContentVec ONNX), as the plugin's saved model path.
    #[arg(long)]
    hubert: Option<PathBuf>,
    /// Feature index (`.index`), as the plugin's saved index path; blends the content
    /// features, so it needs `--hubert`.
    #[arg(long)]
    index: Option<PathBuf>,
    /// Index ratio, 0-1, as the plugin's Index Ratio parameter.
    #[arg(long, default_value_t = 0.75)]
    index_ratio: f32,
    /// Left context of the content model, in milliseconds (0-2500), as the plugin's Context.
    #[arg(long, default_value_t = DEFAULT_CONTEXT_MS)]
    context_ms: f64,
    /// The RVC synthesizer ONNX (RVC's or w-okada's export), as the plugin's saved path.
    #[arg(long)]
    synth: Option<PathBuf>,
    /// An RMVPE pitch model (RVC's or w-okada's export); without one the built-in estimator.
    #[arg(long)]
    pitch_model: Option<PathBuf>,
    /// Pitch shift in semitones (-24 to 24; fractions are cents), as Transpose + Fine Tune.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    transpose: f32,
    /// RVC's protect, 0-0.5 (0.5 = off), as the plugin's Protect.
    #[arg(long, default_value_t = VoiceControls::default().protect)]
    protect: f32,
    /// RVC's RMS mix, 0 (input loudness) to 1 (the synthesizer's own), as the plugin's RMS Mix.
    #[arg(long, default_value_t = VoiceControls::default().rms_mix)]
    rms_mix: f32,
    /// The synthesizer's speaker id.
    #[arg(long, default_value_t = 0)]
    speaker: i64,
    /// Also draw the input's and the output's spectrograms with their pitch tracks, and the
    /// worker's milliseconds per block for each step (PNG).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// RVC's formant shift in semitones (-2 to 2), as the plugin's Formant.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    formant: f32,
    /// Blocks quieter than this (dB) skip all inference and put out silence, as the plugin's
    /// Silence Threshold; -60 = off.
    #[arg(long, default_value_t = SILENCE_OFF_DB, allow_hyphen_values = true)]
    silence_db: f32,
}

/// The plugin's default Context, in milliseconds.
const DEFAULT_CONTEXT_MS: f64 = rvc_stage::voice::DEFAULT_CONTEXT_FRAMES as f64 * CONTENT_FRAME_MS;
/// One content frame (50 per second).
const CONTENT_FRAME_MS: f64 = 20.0;

/// `--context-ms` in content frames, refused outside the plugin's Context range.
fn context_frames(context_ms: f64) -> Result<usize> {
    let max_ms = CONTEXT_FRAMES_MAX as f64 * CONTENT_FRAME_MS;
    ensure!(
        (0.0..=max_ms).contains(&context_ms),
        "--context-ms must be within 0-{max_ms} (the plugin's Context range), got {context_ms}"
    );
    Ok((context_ms / CONTENT_FRAME_MS).round() as usize)
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Render(args) => render(&args),
        Command::Convert(args) => convert(&args),
        Command::Features(args) => features::features(&args),
        Command::Pitch(args) => pitch::pitch(&args),
        Command::Index(IndexCommand::Info { path }) => index::info(&path),
        Command::Index(IndexCommand::Build { inputs, build }) => index::build(&inputs, &build),
        Command::Index(IndexCommand::Convert { input, build }) => index::convert(&input, &build),
        Command::Index(IndexCommand::Tune { inputs, tune }) => index::tune(&inputs, &tune),
        Command::Retrieve { index, features, ratio, output, block_frames, search } => {
            index::retrieve(&index, &features, ratio, &output, block_frames, &search)
        }
    };
    // One plain line per failure, causes included; no backtrace, whatever RUST_BACKTRACE says.
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn convert(args: &RenderArgs) -> Result<()> {
    ensure!(args.hubert.is_some(), "convert needs the content model: give it with --hubert");
    ensure!(args.synth.is_some(), "convert needs the synthesizer: give it with --synth");
    render(args)
}

fn render(args: &RenderArgs) -> Result<()> {
    ensure!(BLOCK_MS_RANGE.contains(&args.block_ms), "--block-ms must be within 50-500, got {}", args.block_ms);
    ensure!((0.0..=1.0).contains(&args.mix), "--mix must be within 0-1, got {}", args.mix);
    ensure!(args.buffer > 0, "--buffer must be at least 1");
    ensure!((0.0..=1.0).contains(&args.index_ratio), "--index-ratio must be within 0-1, got {}", args.index_ratio);
    let context_frames = context_frames(args.context_ms)?;
    ensure!(
        args.index.is_none() || args.hubert.is_some(),
        "--index blends the content model's features: give the model with --hubert too"
    );
    ensure!((-24.0..=24.0).contains(&args.transpose), "--transpose must be within -24-24, got {}", args.transpose);
    ensure!((0.0..=0.5).contains(&args.protect), "--protect must be within 0-0.5, got {}", args.protect);
    ensure!((0.0..=1.0).contains(&args.rms_mix), "--rms-mix must be within 0-1, got {}", args.rms_mix);
    ensure!((-2.0..=2.0).contains(&args.formant), "--formant must be within -2-2, got {}", args.formant);
    ensure!((-60.0..=0.0).contains(&args.silence_db), "--silence-db must be within -60-0, got {}", args.silence_db);
    let (spec, mut channels) = read_wav(&args.input)?;
    let frames = channels[0].len();
    let config = EngineConfig {
        sample_rate: f64::from(spec.sample_rate),
        max_buffer: args.buffer,
        channels: channels.len(),
        block_ms: args.block_ms,
        mode: RenderMode::Offline,
        ..EngineConfig::default()
    };
    let models = loaded(model_slot(Arc::default(), ModelOptions::default()), args.hubert.as_deref())?;
    let index = loaded(IndexSlot::default(), args.index.as_deref())?;
    let pitch_models = loaded(pitch_model_slot(Arc::default()), args.pitch_model.as_deref())?;
    let synths = loaded(synth_slot(Arc::default(), ModelOptions::default()), args.synth.as_deref())?;
    let files = VoiceFiles::new(models.reader(), index.reader())
        .with_pitch_model(pitch_models.reader())
        .with_synth(synths.reader());
    let stage = VoiceStage::new(files, config.sample_rate, config.block_samples());
    let status = stage.status();
    let mut engine = Engine::start(config, stage)?;
    let latency = engine.latency_samples();
    let controls = Controls {
        mix: args.mix,
        gain: 10f32.powf(args.gain_db / 20.0),
        bypass: false,
        stage: VoiceControls {
            index_ratio: args.index_ratio,
            context_frames,
            transpose: args.transpose,
            protect: args.protect,
            rms_mix: args.rms_mix,
            speaker: args.speaker,
            silence_db: args.silence_db,
            formant: args.formant,
        },
    };

    run_offline(&mut engine, &mut channels, args.buffer, controls)?;
    let underruns = engine.stats().underruns();
    drop(engine);
    if let Some(error) = status.errors().first() {
        anyhow::bail!("{error}");
    }
    write_wav(&args.output, spec.sample_rate, &channels)?;
    let steps: Vec<(String, f64)> = status
        .snapshot()
        .iter()
        .filter(|step| step.times.blocks > 0)
        .map(|step| (step.step.name().to_string(), step.times.mean().as_secs_f64() * 1000.0))
        .collect();
    let listed: Vec<String> = steps.iter().map(|(name, ms)| format!("{name} {ms:.2}")).collect();
    println!("worker ms per {} ms block: {}", args.block_ms, listed.join(", "));
    if let Some(plot) = &args.plot {
        let (input, rate) = read_mono(&args.input)?;
        let output: Vec<f32> =
            (0..frames).map(|n| channels.iter().map(|c| c[n]).sum::<f32>() / channels.len() as f32).collect();
        let track = |mono: &[f32]| pitch::track(mono, rate, args.block_ms, 0.0, None);
        let (before, after) = (track(&input)?, track(&output)?);
        pitch::draw(plot, &[("input", &input, &before), ("output", &output, &after)], rate, &steps)?;
        println!("plot: {}", plot.display());
    }
    println!(
        "rendered {:.2} s at {} Hz, {} channel(s); engine latency {latency} samples ({:.1} ms), compensated; {} under-runs",
        frames as f64 / f64::from(spec.sample_rate),
        spec.sample_rate,
        channels.len(),
        latency as f64 * 1000.0 / f64::from(spec.sample_rate),
        underruns
    );
    Ok(())
}

/// `slot` with the file at `path` loaded (empty without one), or the reason it fails.
fn loaded<T: Send + Sync + 'static>(slot: Slot<T>, path: Option<&Path>) -> Result<Slot<T>> {
    if let Some(path) = path {
        slot.request(Some(path.to_path_buf()));
        slot.wait();
        if let SlotStatus::Failed { reason, .. } = slot.status() {
            anyhow::bail!("{reason}");
        }
    }
    Ok(slot)
}

/// Runs `channels` through an offline engine in calls of `buffer` frames, latency compensated:
/// `latency` samples of silence follow the input and the first `latency` output samples are
/// dropped, so the result lines up with the input.
fn run_offline(
    engine: &mut Engine<VoiceControls>,
    channels: &mut [Vec<f32>],
    buffer: usize,
    controls: Controls<VoiceControls>,
) -> Result<()> {
    let (frames, latency) = (channels[0].len(), engine.latency_samples());
    for channel in channels.iter_mut() {
        channel.resize(frames + latency, 0.0);
    }
    let progress = ProgressBar::new((frames + latency) as u64)
        .with_style(ProgressStyle::with_template("{bar:40} {percent:>3}% {elapsed} {msg}")?);
    let mut start = 0;
    while start < frames + latency {
        let end = (start + buffer).min(frames + latency);
        let mut block: Vec<&mut [f32]> = channels.iter_mut().map(|c| &mut c[start..end]).collect();
        engine.process(&mut block, controls);
        progress.set_position(end as u64);
        start = end;
    }
    progress.finish_and_clear();
    for channel in channels.iter_mut() {
        channel.drain(..latency);
    }
    Ok(())
}

/// The channels' average (what the plugin's worker hears) and the sample rate.
fn read_mono(path: &Path) -> Result<(Vec<f32>, f64)> {
    let (spec, channels) = read_wav(path)?;
    let mono =
        (0..channels[0].len()).map(|n| channels.iter().map(|c| c[n]).sum::<f32>() / channels.len() as f32).collect();
    Ok((mono, f64::from(spec.sample_rate)))
}

/// Runs `mono` offline through the voice pipeline reading `files`, in `block_ms` blocks with
/// `controls`, handing what it computes to `tap`; fails naming the step that failed.
fn run_pipeline(
    files: VoiceFiles,
    mono: &[f32],
    rate: f64,
    block_ms: f64,
    tap: Box<dyn rvc_stage::voice::FeatureTap>,
    controls: VoiceControls,
) -> Result<Arc<rvc_stage::voice::VoiceStatus>> {
    let config = EngineConfig {
        sample_rate: rate,
        max_buffer: 1024,
        channels: 1,
        block_ms,
        mode: RenderMode::Offline,
        ..EngineConfig::default()
    };
    let stage = VoiceStage::new(files, rate, config.block_samples()).with_tap(tap);
    let status = stage.status();
    let mut engine = Engine::start(config, stage)?;
    run_offline(&mut engine, &mut [mono.to_vec()], 1024, Controls { stage: controls, ..Controls::default() })?;
    drop(engine);
    if let Some(error) = status.errors().first() {
        anyhow::bail!("{error}");
    }
    Ok(status)
}

/// Reads every channel as f32 in [-1, 1].
fn read_wav(path: &Path) -> Result<(hound::WavSpec, Vec<Vec<f32>>)> {
    let mut reader =
        hound::WavReader::open(path).with_context(|| format!("cannot read {} as a WAV file", path.display()))?;
    let spec = reader.spec();
    ensure!(spec.channels > 0, "{} has no channels", path.display());
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader.samples::<f32>().collect::<Result<_, _>>(),
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            reader.samples::<i32>().map(|s| s.map(|s| s as f32 * scale)).collect::<Result<_, _>>()
        }
    }
    .with_context(|| format!("{} is truncated or corrupt", path.display()))?;
    let count = usize::from(spec.channels);
    let channels = (0..count).map(|c| interleaved.iter().skip(c).step_by(count).copied().collect()).collect();
    Ok((spec, channels))
}

fn write_wav(path: &Path, sample_rate: u32, channels: &[Vec<f32>]) -> Result<()> {
    let spec = hound::WavSpec {
        channels: channels.len() as u16,
        sample_rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut writer =
        hound::WavWriter::create(path, spec).with_context(|| format!("cannot create {}", path.display()))?;
    for frame in 0..channels[0].len() {
        for channel in channels {
            writer.write_sample(channel[frame])?;
        }
    }
    writer.finalize()?;
    Ok(())
}
