//! `rvc-stage features`: the worker's content-feature and retrieval path, offline, on a WAV
//! file. Main thread (the engine's worker does the work).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use anyhow::{ensure, Result};
use rvc_stage::engine::slot::SlotStatus;
use rvc_stage::engine::{Controls, Engine, EngineConfig, RenderMode, StageControls, BLOCK_MS_RANGE};
use rvc_stage::features::{
    frames_for, model_slot, runtime_path, ContentFeatures, ModelOptions, DEFAULT_CONTEXT_FRAMES, HOP, SAMPLE_RATE,
};
use rvc_stage::npy::{write_matrix, Matrix};
use rvc_stage::retrieval::{FeatureSink, RetrievalStage};

use crate::{loaded_index, read_wav, run_offline};

#[derive(clap::Args)]
pub struct FeaturesArgs {
    /// Input WAV (any rate; channels are averaged).
    input: PathBuf,
    /// Output `.npy`, float32 `[frames, dim]`.
    #[arg(short, long)]
    output: PathBuf,
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
    /// Left context the model sees for each block, in milliseconds (RVC uses 2500).
    #[arg(long, default_value_t = DEFAULT_CONTEXT_FRAMES as f64 * 20.0)]
    context_ms: f64,
    /// `libonnxruntime.so.1.31.1` to use instead of the usual places.
    #[arg(long)]
    onnxruntime: Option<PathBuf>,
    /// ONNX Runtime intra-op threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// Collects the blended frames.
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<f32>>>);

impl FeatureSink for Collect {
    fn accept(&mut self, frames: &[f32], _ratios: &[f32]) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(frames);
    }
}

pub fn features(args: &FeaturesArgs) -> Result<()> {
    ensure!(BLOCK_MS_RANGE.contains(&args.block_ms), "--block-ms must be within 50-500, got {}", args.block_ms);
    ensure!((0.0..=1.0).contains(&args.ratio), "--ratio must be within 0-1, got {}", args.ratio);
    ensure!(args.context_ms >= 0.0, "--context-ms cannot be negative");
    let (spec, channels) = read_wav(&args.input)?;
    let mono: Vec<f32> =
        (0..channels[0].len()).map(|n| channels.iter().map(|c| c[n]).sum::<f32>() / channels.len() as f32).collect();
    let rate = f64::from(spec.sample_rate);
    let runtime = args.onnxruntime.as_ref().map(|p| p.to_string_lossy().into_owned());
    let models = model_slot(Arc::new(RwLock::new(runtime)), ModelOptions { intra_threads: args.threads });
    models.request(Some(args.hubert.clone()));
    models.wait();
    if let SlotStatus::Failed { reason, .. } = models.status() {
        anyhow::bail!("{reason}");
    }
    let reader = models.reader();
    let context_frames = (args.context_ms / 1000.0 * f64::from(SAMPLE_RATE) / HOP as f64).round() as usize;
    let slot = loaded_index(args.index.as_deref())?;
    let collect = Collect::default();
    let source = ContentFeatures::new(reader, rate, context_frames);
    let model_problem = source.problem();
    let stage = RetrievalStage::new(Box::new(source), Box::new(collect.clone()), slot.reader());
    let problem = stage.problem();
    let config = EngineConfig {
        sample_rate: rate,
        max_buffer: 1024,
        channels: 1,
        block_ms: args.block_ms,
        mode: RenderMode::Offline,
    };
    let mut engine = Engine::start(config, Box::new(stage))?;
    let controls = Controls { stage: StageControls { index_ratio: args.ratio }, ..Controls::default() };
    run_offline(&mut engine, &mut [mono.clone()], 1024, controls)?;
    drop(engine);
    for problem in [model_problem, problem] {
        if let Some(problem) = problem.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            anyhow::bail!("{problem}");
        }
    }
    let mut check = models.reader();
    check.refresh();
    let dim = check.get().map_or(0, |model| model.lock().unwrap_or_else(|e| e.into_inner()).dim());
    // The frames of the input itself; the engine's flush adds some of the silence after it.
    let frames = frames_for((mono.len() as f64 * f64::from(SAMPLE_RATE) / rate).floor() as usize);
    let mut data = std::mem::take(&mut *collect.0.lock().unwrap_or_else(|e| e.into_inner()));
    ensure!(data.len() >= frames * dim, "only {} of {frames} frames were computed", data.len() / dim.max(1));
    data.truncate(frames * dim);
    write_matrix(&args.output, &Matrix { rows: frames, cols: dim, data })?;
    let runtime = runtime_path().map_or_else(String::new, |path| format!(", ONNX Runtime {}", path.display()));
    println!("{frames} frames of {dim} values ({:.2} s) → {}{runtime}", frames as f64 / 50.0, args.output.display());
    Ok(())
}
