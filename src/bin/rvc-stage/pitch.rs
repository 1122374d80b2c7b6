//! `rvc-stage pitch`: the worker's pitch path, offline, on a WAV file — the same engine, block
//! scheduler and pitch step the plugin runs, with the built-in estimator or an RMVPE model — written as CSV (time, f0, voiced, coarse code per
//! 10 ms), optionally drawn over a spectrogram. Main thread (the engine's worker does the work).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{ensure, Result};
use rvc_stage::engine::BLOCK_MS_RANGE;
use rvc_stage::features::{model_slot, ModelOptions};
use rvc_stage::pitch::{coarse_pitch, pitch_model_slot};
use rvc_stage::retrieval::IndexSlot;
use rvc_stage::voice::{FeatureTap, Frames, PitchFrames, VoiceControls, VoiceFiles, PITCH_HOP};

use crate::{read_mono, run_pipeline};

#[derive(clap::Args)]
pub struct PitchArgs {
    /// Input WAV (any rate; channels are averaged).
    input: PathBuf,
    /// Output CSV: time_s, f0_hz, voiced, coarse (RVC's 1-255 code), one row per 10 ms.
    #[arg(short, long)]
    output: PathBuf,
    /// Shift in semitones (-24…24; fractions are cents), as Transpose + Fine Tune.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    transpose: f32,
    /// Worker block length in milliseconds, as the plugin's Block Size.
    #[arg(long, default_value_t = 100.0)]
    block_ms: f64,
    /// Also draw the f0 track over a spectrogram of the input (PNG).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// An RMVPE pitch model (RVC's `rmvpe.onnx` or w-okada's export) instead of the built-in
    /// estimator, as the plugin's pitch model path.
    #[arg(long)]
    pitch_model: Option<PathBuf>,
}

/// Keeps every pitch frame the pipeline decides.
#[derive(Clone, Default)]
struct PitchRecorder(Arc<Mutex<Vec<f32>>>);

impl FeatureTap for PitchRecorder {
    fn frames(&mut self, _frames: &Frames, _ratios: &[f32]) {}

    fn wants_pitch(&self) -> bool {
        true
    }

    fn pitch(&mut self, pitch: &PitchFrames) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(pitch.f0());
    }
}

pub fn pitch(args: &PitchArgs) -> Result<()> {
    ensure!(BLOCK_MS_RANGE.contains(&args.block_ms), "--block-ms must be within 50-500, got {}", args.block_ms);
    ensure!(
        (-24.0..=24.0).contains(&args.transpose),
        "--transpose must be within -24…24 semitones, got {}",
        args.transpose
    );
    let (mono, rate) = read_mono(&args.input)?;
    let f0 = track(&mono, rate, args.block_ms, args.transpose, args.pitch_model.as_deref())?;
    let frames = f0.len();
    let mut codes = Vec::new();
    coarse_pitch(&f0, &mut codes);
    let mut csv = String::from("time_s,f0_hz,voiced,coarse\n");
    for (k, (f, code)) in f0.iter().zip(&codes).enumerate() {
        csv += &format!("{:.2},{f:.3},{},{code}\n", k as f64 / 100.0, u8::from(*f > 0.0));
    }
    std::fs::write(&args.output, csv)?;
    let voiced = f0.iter().filter(|f| **f > 0.0).count();
    println!("{frames} frames of 10 ms, {voiced} voiced → {}", args.output.display());
    if let Some(plot) = &args.plot {
        draw(plot, &[("input", &mono, &f0)], rate, &[])?;
        println!("plot: {}", plot.display());
    }
    Ok(())
}

/// The f0 of every 10 ms of `mono` (at `rate`), as the worker's pitch step decides it (the
/// built-in estimator, or the RMVPE model at `pitch_model`), transposed by `semitones`.
pub fn track(mono: &[f32], rate: f64, block_ms: f64, semitones: f32, pitch_model: Option<&Path>) -> Result<Vec<f32>> {
    let (model, index) = (model_slot(Arc::default(), ModelOptions::default()), IndexSlot::default());
    let recorder = PitchRecorder::default();
    let pitch_models = crate::loaded(pitch_model_slot(Arc::default()), pitch_model)?;
    let files = VoiceFiles::new(model.reader(), index.reader()).with_pitch_model(pitch_models.reader());
    let controls = VoiceControls { transpose: semitones, ..VoiceControls::default() };
    // The engine's flush (its latency in silence) covers the estimator's look-ahead.
    run_pipeline(files, mono, rate, block_ms, Box::new(recorder.clone()), controls)?;
    let frames = (mono.len() as f64 * 16_000.0 / rate) as usize / PITCH_HOP + 1;
    let mut f0 = recorder.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    ensure!(f0.len() >= frames, "only {} of {frames} pitch frames were decided", f0.len());
    f0.truncate(frames);
    Ok(f0)
}

/// One panel per `(name, audio, f0)`: a spectrogram (0-1 kHz, 64 ms windows every 10 ms) with
/// the f0 track over it; below them, when `steps` has any, the worker's milliseconds per block
/// for each step `(name, ms)`.
pub fn draw(path: &Path, panels: &[(&str, &[f32], &[f32])], rate: f64, steps: &[(String, f64)]) -> Result<()> {
    use plotters::prelude::*;
    rvc_stage::plot::register_font().map_err(anyhow::Error::msg)?;
    let height = 560 * panels.len() as u32 + if steps.is_empty() { 0 } else { 320 };
    let root = BitMapBackend::new(path, (1200, height)).into_drawing_area();
    let draw_error = |e: DrawingAreaErrorKind<_>| anyhow::anyhow!("cannot draw {}: {e:?}", path.display());
    root.fill(&WHITE).map_err(draw_error)?;
    let (spectrograms, times) = root.split_vertically(560 * panels.len() as u32);
    for (area, (name, audio, f0)) in spectrograms.split_evenly((panels.len(), 1)).iter().zip(panels) {
        let (columns, bin_hz) = spectrogram(audio, rate)?;
        let (low, high) =
            columns.iter().flatten().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), v| (l.min(*v), h.max(*v)));
        let seconds = audio.len() as f64 / rate;
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{name} spectrogram (0-1 kHz) with the pitch track"), ("sans-serif", 18))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..seconds, 0.0..1000.0)
            .map_err(draw_error)?;
        chart.configure_mesh().x_desc("time (s)").y_desc("Hz").draw().map_err(draw_error)?;
        let hop = 1.0 / 100.0;
        chart
            .draw_series(columns.iter().enumerate().flat_map(|(t, column)| {
                column.iter().enumerate().map(move |(bin, v)| {
                    let shade = (255.0 * (1.0 - (v - low) / (high - low).max(1e-6))) as u8;
                    let x = t as f64 * hop;
                    Rectangle::new(
                        [(x, bin as f64 * bin_hz), (x + hop, (bin + 1) as f64 * bin_hz)],
                        RGBColor(shade, shade, shade).filled(),
                    )
                })
            }))
            .map_err(draw_error)?;
        let voiced_runs = f0.split(|f| *f == 0.0).scan(0usize, |at, run| {
            let start = *at;
            *at += run.len() + 1;
            Some((start, run))
        });
        for (start, run) in voiced_runs.filter(|(_, run)| !run.is_empty()) {
            let points = run.iter().enumerate().map(move |(i, f)| ((start + i) as f64 / 100.0, f64::from(*f)));
            chart.draw_series(LineSeries::new(points, RED.stroke_width(2))).map_err(draw_error)?;
        }
    }
    if !steps.is_empty() {
        let most = steps.iter().map(|(_, ms)| *ms).fold(0.1, f64::max) * 1.15;
        let mut chart = ChartBuilder::on(&times)
            .caption("worker milliseconds per block, by step", ("sans-serif", 18))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(230)
            .build_cartesian_2d(0.0..most, (0..steps.len()).into_segmented())
            .map_err(draw_error)?;
        let names: Vec<String> = steps.iter().map(|(name, _)| name.clone()).collect();
        chart
            .configure_mesh()
            .x_desc("ms")
            .y_label_formatter(&|segment| match segment {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => names.get(*i).cloned().unwrap_or_default(),
                SegmentValue::Last => String::new(),
            })
            .draw()
            .map_err(draw_error)?;
        chart
            .draw_series(steps.iter().enumerate().map(|(i, (_, ms))| {
                Rectangle::new(
                    [(0.0, SegmentValue::Exact(i)), (*ms, SegmentValue::Exact(i + 1))],
                    BLUE.mix(0.6).filled(),
                )
            }))
            .map_err(draw_error)?;
    }
    root.present().map_err(draw_error)?;
    Ok(())
}

/// Log magnitudes up to 1 kHz of 64 ms windows every 10 ms, and the width of a bin in Hz.
fn spectrogram(audio: &[f32], rate: f64) -> Result<(Vec<Vec<f32>>, f64)> {
    let size = ((0.064 * rate) as usize).next_power_of_two().max(64);
    let hop = (rate / 100.0).round().max(1.0) as usize;
    let fft = realfft::RealFftPlanner::<f32>::new().plan_fft_forward(size);
    let (mut frame, mut spectrum) = (fft.make_input_vec(), fft.make_output_vec());
    let top_bin = ((1000.0 / rate * size as f64) as usize).min(size / 2);
    let mut columns = Vec::new();
    for start in (0..audio.len()).step_by(hop) {
        for (n, x) in frame.iter_mut().enumerate() {
            let window = 0.5 - 0.5 * (std::f32::consts::TAU * n as f32 / size as f32).cos();
            *x = audio.get((start + n).wrapping_sub(size / 2)).copied().unwrap_or(0.0) * window;
        }
        fft.process(&mut frame, &mut spectrum).map_err(|e| anyhow::anyhow!("{e}"))?;
        columns.push(spectrum[..top_bin].iter().map(|c| (c.norm() + 1e-6).log10()).collect::<Vec<f32>>());
    }
    Ok((columns, rate / size as f64))
}
