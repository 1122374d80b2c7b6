//! `rvc-stage features`: the worker's content-feature and retrieval path, offline, on a WAV
//! file. Main thread (the engine's worker does the work).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use anyhow::{ensure, Result};
use rvc_stage::engine::BLOCK_MS_RANGE;
use rvc_stage::features::{
    frames_for, model_slot, runtime_path, to_synth_rate, ModelOptions, ModelSlot, Precision, SAMPLE_RATE,
};
use rvc_stage::npy::{write_matrix, Matrix};
use rvc_stage::retrieval::{FeatureIndex, IndexSlot, SearchSettings};
use rvc_stage::voice::{FeatureRecorder, Step, StepStatus, VoiceControls, VoiceFiles};

use crate::{context_frames, loaded, read_mono, run_pipeline, DEFAULT_CONTEXT_MS};

#[derive(clap::Args)]
pub struct FeaturesArgs {
    /// Input WAV (any rate; channels are averaged).
    input: PathBuf,
    /// Output `.npy`, float32 `[frames, dim]`.
    #[arg(short, long)]
    output: PathBuf,
    /// Frames per second written: 50 (the content model's) or 100 (the synthesizer's: RVC's
    /// last-frame padding and ×2 repetition).
    #[arg(long, default_value_t = 50)]
    fps: u32,
    /// The content model: HuBERT / ContentVec ONNX (input `[1, 1, N]` or `[1, N]` at 16 kHz,
    /// output `[1, T, 256 or 768]`).
    #[arg(long)]
    hubert: PathBuf,
    /// Blend with this index, as the plugin does.
    #[arg(long)]
    index: Option<PathBuf>,
    /// Index ratio for `--index`, 0-1.
    #[arg(long, default_value_t = 0.75)]
    ratio: f32,
    /// Worker block length in milliseconds, as the plugin's Block Size.
    #[arg(long, default_value_t = 100.0)]
    block_ms: f64,
    /// Left context the model sees for each block, in milliseconds (0-2500; RVC uses 2500).
    #[arg(long, default_value_t = DEFAULT_CONTEXT_MS)]
    context_ms: f64,
    /// `libonnxruntime.so.1.31.1` to use instead of the usual places.
    #[arg(long)]
    onnxruntime: Option<PathBuf>,
    /// ONNX Runtime intra-op threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Run the model whole over each window instead of cutting it after the conv front end
    /// (for comparison; models that cannot be cut always run whole).
    #[arg(long)]
    whole_model: bool,
    /// Run the model's matrix products in int8 (quantized at load): faster, slightly different
    /// features.
    #[arg(long)]
    int8: bool,
    /// Also write a PNG of each frame's distance to the index before and after the blend, with
    /// the worker's time per block (needs `--index`).
    #[arg(long)]
    plot: Option<PathBuf>,
}

pub fn features(args: &FeaturesArgs) -> Result<()> {
    ensure!(BLOCK_MS_RANGE.contains(&args.block_ms), "--block-ms must be within 50-500, got {}", args.block_ms);
    ensure!((0.0..=1.0).contains(&args.ratio), "--ratio must be within 0-1, got {}", args.ratio);
    let context_frames = context_frames(args.context_ms)?;
    ensure!(matches!(args.fps, 50 | 100), "--fps must be 50 or 100, got {}", args.fps);
    ensure!(args.plot.is_none() || args.index.is_some(), "--plot shows distances to the index: give --index too");
    let (mono, rate) = read_mono(&args.input)?;
    let runtime = args.onnxruntime.as_ref().map(|p| p.to_string_lossy().into_owned());
    let models = model_slot(
        Arc::new(RwLock::new(runtime)),
        ModelOptions {
            intra_threads: args.threads,
            split_front_end: !args.whole_model,
            precision: if args.int8 { Precision::Int8 } else { Precision::Float32 },
        },
    );
    let models = loaded(models, Some(&args.hubert))?;
    let index = loaded(IndexSlot::default(), args.index.as_deref())?;
    let (blended, steps) = run_chain(args, context_frames, &mono, rate, &models, &index)?;
    let at_synth_rate = (args.fps == 100).then(|| {
        let mut data = Vec::new();
        to_synth_rate(&blended.data, blended.cols, model_rate_samples(mono.len(), rate), &mut data);
        Matrix { rows: data.len() / blended.cols.max(1), cols: blended.cols, data }
    });
    let written = at_synth_rate.as_ref().unwrap_or(&blended);
    write_matrix(&args.output, written)?;
    let runtime = runtime_path().map_or_else(String::new, |path| format!(", ONNX Runtime {}", path.display()));
    println!("{}", describe_model(&models));
    println!(
        "{} frames of {} values ({:.2} s at {} fps) → {}{runtime}",
        written.rows,
        written.cols,
        written.rows as f64 / f64::from(args.fps),
        args.fps,
        args.output.display()
    );
    let per_block = |step: Step| steps[step as usize].times.mean().as_secs_f64() * 1000.0;
    let (features_ms, blend_ms) =
        (per_block(Step::ToModelRate) + per_block(Step::ContentFeatures), per_block(Step::IndexBlend));
    println!(
        "worker per {} ms block: content features {features_ms:.2} ms, index blend {blend_ms:.2} ms",
        args.block_ms
    );
    if let (Some(plot), Some(path)) = (&args.plot, &args.index) {
        let (plain, _) = run_chain(args, context_frames, &mono, rate, &models, &IndexSlot::default())?;
        let nearest = FeatureIndex::load(path, SearchSettings { k: 1, ..SearchSettings::default() })?;
        let before = nearest_distances(&nearest, &plain)?;
        let after = nearest_distances(&nearest, &blended)?;
        draw(plot, &before, &after, args, features_ms, blend_ms)?;
        println!("plot: {}", plot.display());
    }
    Ok(())
}

/// Runs the worker's voice pipeline offline over `mono`; returns the frames of the input (the
/// engine's flush adds some of the silence after it, dropped here) and the steps' status.
fn run_chain(
    args: &FeaturesArgs,
    context_frames: usize,
    mono: &[f32],
    rate: f64,
    models: &ModelSlot,
    index: &IndexSlot,
) -> Result<(Matrix, Vec<StepStatus>)> {
    let recorder = FeatureRecorder::default();
    let files = VoiceFiles::new(models.reader(), index.reader());
    let controls = VoiceControls { index_ratio: args.ratio, context_frames, ..VoiceControls::default() };
    let status = run_pipeline(files, mono, rate, args.block_ms, Box::new(recorder.clone()), controls)?;
    let frames = frames_for(model_rate_samples(mono.len(), rate));
    let mut recorded = recorder.take();
    ensure!(recorded.rows >= frames, "only {} of {frames} frames were computed", recorded.rows);
    recorded.data.truncate(frames * recorded.cols);
    recorded.rows = frames;
    Ok((recorded, status.snapshot()))
}

/// What the model is and how it ran: cut or whole, float32 or int8.
fn describe_model(models: &ModelSlot) -> String {
    let mut reader = models.reader();
    reader.refresh();
    let Some(model) = reader.get() else { return String::new() };
    let description = model.lock().unwrap_or_else(|e| e.into_inner()).describe();
    format!("model: {description}")
}

/// How many 16 kHz samples `len` samples at `rate` become.
fn model_rate_samples(len: usize, rate: f64) -> usize {
    (len as f64 * f64::from(SAMPLE_RATE) / rate).floor() as usize
}

/// Euclidean distance from each frame to its nearest index vector.
fn nearest_distances(index: &FeatureIndex, frames: &Matrix) -> Result<Vec<f64>> {
    let (mut distances, mut labels) = (vec![0.0; frames.rows], vec![0; frames.rows]);
    index.search_into(&frames.data, &mut distances, &mut labels)?;
    let mut stored = vec![0.0; frames.cols];
    let mut out = Vec::with_capacity(frames.rows);
    for (row, label) in labels.iter().enumerate() {
        index.vector_into(*label, &mut stored)?;
        let squared: f64 = frames.row(row).iter().zip(&stored).map(|(a, b)| f64::from(a - b).powi(2)).sum();
        out.push(squared.sqrt());
    }
    Ok(out)
}

/// Distance to the index per frame, before and after the blend, with the stage timings.
fn draw(
    path: &std::path::Path,
    before: &[f64],
    after: &[f64],
    args: &FeaturesArgs,
    features_ms: f64,
    retrieval_ms: f64,
) -> Result<()> {
    use plotters::prelude::*;
    rvc_stage::plot::register_font().map_err(anyhow::Error::msg)?;
    let top = before.iter().chain(after).copied().fold(0.0, f64::max) * 1.1;
    let root = BitMapBackend::new(path, (1000, 560)).into_drawing_area();
    let draw_error = |e: DrawingAreaErrorKind<_>| anyhow::anyhow!("cannot draw {}: {e:?}", path.display());
    root.fill(&WHITE).map_err(draw_error)?;
    let caption = format!(
        "distance to the nearest index vector, index ratio {} — per {} ms block: features {features_ms:.2} ms, index blend {retrieval_ms:.2} ms",
        args.ratio, args.block_ms
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 16))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..before.len() as f64 / 50.0, 0.0..top.max(1e-6))
        .map_err(draw_error)?;
    chart.configure_mesh().x_desc("time (s), 50 frames per second").y_desc("L2 distance").draw().map_err(draw_error)?;
    for (values, colour, label) in [(before, RED, "content features"), (after, BLUE, "after the index blend")] {
        let points = values.iter().enumerate().map(|(f, d)| (f as f64 / 50.0, *d));
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(draw_error)?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2)));
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.85)).draw().map_err(draw_error)?;
    root.present().map_err(draw_error)?;
    Ok(())
}
