//! A HuBERT / ContentVec content model as the community exports it: input `source` float32
//! `[1, 1, N]` (or `[1, N]`) of 16 kHz audio, output `[1, T, C]` with C = 256 (v1) or 768
//! (v2), one frame per 320 samples. Names and shapes are read from the model and the contract
//! is checked at load with a probe run, so a wrong file is a plain error instead of garbage
//! later. Created on the main or a loader thread, run on the worker thread.

use std::path::{Path, PathBuf};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef, ValueType};
use thiserror::Error;

use super::runtime::{environment, RuntimeError};

/// Sample rate the content models take.
pub const SAMPLE_RATE: u32 = 16_000;
/// Samples per feature frame (50 frames per second).
pub const HOP: usize = 320;
/// Samples the first frame needs (the conv front end's receptive field).
pub const RECEPTIVE_FIELD: usize = 400;
/// Feature widths of RVC v1 (layer 9 + final_proj) and v2 (layer 12).
const DIMS: [i64; 2] = [256, 768];

/// Frames a model makes from `samples` samples: ⌊(N − 400) / 320⌋ + 1, none below 400.
pub fn frames_for(samples: usize) -> usize {
    if samples < RECEPTIVE_FIELD {
        0
    } else {
        (samples - RECEPTIVE_FIELD) / HOP + 1
    }
}

/// How sessions run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelOptions {
    /// ONNX Runtime intra-op threads per model. 1 by default: the worker is one thread per
    /// plugin instance, and a DAW runs many instances next to its own audio threads. Raise it
    /// for a single instance on a machine with idle cores.
    pub intra_threads: usize,
    /// Cut the model after its conv front end when it allows it, so streaming computes the
    /// front end once per sample and only the transformer over the context.
    pub split_front_end: bool,
    pub precision: Precision,
}

impl Default for ModelOptions {
    fn default() -> Self {
        Self { intra_threads: 1, split_front_end: true, precision: Precision::Float32 }
    }
}

/// The arithmetic of the model's matrix products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// As the file stores them.
    Float32,
    /// Quantized to int8 at load (weights once, activations per run; see `quantize.rs`):
    /// faster on one core, features slightly different (the benchmark reports both).
    Int8,
}

/// The model's two halves, when it was cut.
#[derive(Debug)]
struct Halves {
    front: Session,
    back: Session,
    /// The tensor between them.
    cut: String,
    /// Values per frame between the halves (the front end's channels).
    channels: usize,
    /// Scratch for the transformer's `[1, C, T]` input.
    channel_major: Vec<f32>,
}

#[derive(Debug, Error)]
pub enum ModelError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("{path} is not a model ONNX Runtime can load: {message}")]
    Load { path: PathBuf, message: String },
    #[error("{path} does not look like a HuBERT / ContentVec model: {problem}")]
    Contract { path: PathBuf, problem: String },
    #[error("the content model failed: {0}")]
    Run(String),
}

/// A loaded content model, ready to run: whole, or cut in two after its front end (then only
/// the halves are kept, not the whole-model session: one copy of the weights).
#[derive(Debug)]
pub struct ContentModel {
    /// The whole model; dropped once the model is cut.
    session: Option<Session>,
    halves: Option<Halves>,
    input: String,
    /// 3 for `[1, 1, N]`, 2 for `[1, N]`.
    input_rank: usize,
    output: String,
    dim: usize,
    /// What it runs in (float32 when int8 was asked for but the model has nothing to quantize).
    precision: Precision,
}

impl ContentModel {
    /// Loads ONNX Runtime if needed (`runtime`: a user-chosen library path, see
    /// [`runtime_candidates`](super::runtime_candidates)), then the model, and checks it.
    pub fn load(path: &Path, runtime: Option<&Path>, options: ModelOptions) -> Result<Self, ModelError> {
        let environment = environment(runtime)?;
        let load_error = |message: String| ModelError::Load { path: path.into(), message };
        let mut bytes = std::fs::read(path).map_err(|e| load_error(e.to_string()))?;
        let mut precision = Precision::Float32;
        if options.precision == Precision::Int8 {
            match super::quantize::quantize_matmuls(&bytes) {
                Some(quantized) => (bytes, precision) = (quantized, Precision::Int8),
                None => tracing::warn!("{}: nothing to quantize to int8; it runs in float32", path.display()),
            }
        }
        let session = session(environment, &bytes, options).map_err(load_error)?;
        let contract = |problem: String| ModelError::Contract { path: path.into(), problem };
        let (input, input_rank) = input_of(&session).map_err(contract)?;
        let (output, dim) = output_of(&session).map_err(contract)?;
        let mut model = ContentModel {
            session: Some(session),
            halves: None,
            input,
            input_rank,
            output,
            dim: dim.unwrap_or(0),
            precision,
        };
        model.probe().map_err(contract)?;
        if options.split_front_end {
            model.try_split(environment, &bytes, options);
        }
        Ok(model)
    }

    /// Cuts the model after its front end, keeping the halves only if they compute what the
    /// whole model does.
    fn try_split(&mut self, environment: &ort::environment::Environment, bytes: &[u8], options: ModelOptions) {
        let Some(halves) = super::split::split_after_front_end(bytes, HOP as u64) else { return };
        let (Ok(front), Ok(back)) =
            (session(environment, &halves.front, options), session(environment, &halves.back, options))
        else {
            return;
        };
        let probe: Vec<f32> =
            (0..RECEPTIVE_FIELD + 20 * HOP).map(|n| ((n * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.3).collect();
        let mut whole = Vec::new();
        if self.run(&probe, &mut whole).is_err() {
            return;
        }
        self.halves = Some(Halves { front, back, cut: halves.cut, channels: 0, channel_major: Vec::new() });
        let (mut conv, mut split) = (Vec::new(), Vec::new());
        let channels = self.front_end(&probe, &mut conv).map(|(_, channels)| channels).unwrap_or(0);
        if let Some(halves) = self.halves.as_mut() {
            halves.channels = channels;
        }
        let agrees = channels > 0
            && self.transformer(&conv, &mut split).is_ok()
            && split.len() == whole.len()
            && split.iter().zip(&whole).all(|(a, b)| (a - b).abs() <= 1e-3 * b.abs().max(1.0));
        if agrees {
            self.session = None;
        } else {
            self.halves = None;
        }
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Whether the model runs as front end + transformer.
    pub fn is_split(&self) -> bool {
        self.halves.is_some()
    }

    /// Runs the conv front end alone on `samples` and appends its frames (frame-major,
    /// `channels` values each) to `conv`; returns (frames, channels). Split models only.
    pub fn front_end(&mut self, samples: &[f32], conv: &mut Vec<f32>) -> Result<(usize, usize), ModelError> {
        let run_error = |e: ort::Error| ModelError::Run(e.to_string());
        let Some(halves) = self.halves.as_mut() else { return Err(ModelError::Run("the model is not split".into())) };
        if samples.len() < RECEPTIVE_FIELD {
            return Ok((0, 0));
        }
        let shape = if self.input_rank == 3 { vec![1, 1, samples.len()] } else { vec![1, samples.len()] };
        let input = TensorRef::from_array_view((shape, samples)).map_err(run_error)?;
        let outputs = halves.front.run(ort::inputs![self.input.as_str() => input]).map_err(run_error)?;
        let (shape, values) = outputs[halves.cut.as_str()].try_extract_tensor::<f32>().map_err(run_error)?;
        let [1, channels, frames] = **shape else {
            return Err(ModelError::Run(format!("front end output shape {:?}", &**shape)));
        };
        let (channels, frames) = (channels as usize, frames as usize);
        // [1, C, T] → frame-major, so frames can be cached and trimmed one by one.
        for frame in 0..frames {
            conv.extend((0..channels).map(|c| values[c * frames + frame]));
        }
        Ok((frames, channels))
    }

    /// Runs the transformer on conv frames (frame-major, as [`front_end`](Self::front_end)
    /// gives them) and appends the features; returns how many frames.
    pub fn transformer(&mut self, conv: &[f32], features: &mut Vec<f32>) -> Result<usize, ModelError> {
        let run_error = |e: ort::Error| ModelError::Run(e.to_string());
        let Some(halves) = self.halves.as_mut() else { return Err(ModelError::Run("the model is not split".into())) };
        let channels = halves.channels;
        let frames = conv.len() / channels.max(1);
        if frames == 0 {
            return Ok(0);
        }
        halves.channel_major.clear();
        for c in 0..channels {
            halves.channel_major.extend((0..frames).map(|f| conv[f * channels + c]));
        }
        let input =
            TensorRef::from_array_view(([1, channels, frames], halves.channel_major.as_slice())).map_err(run_error)?;
        let outputs = halves.back.run(ort::inputs![halves.cut.as_str() => input]).map_err(run_error)?;
        let (shape, values) = outputs[self.output.as_str()].try_extract_tensor::<f32>().map_err(run_error)?;
        match **shape {
            [1, count, dim] if dim as usize == self.dim => {
                features.extend_from_slice(values);
                Ok(count as usize)
            }
            ref other => Err(ModelError::Run(format!("transformer output shape {other:?}"))),
        }
    }

    /// What the model is and how it runs, for displays.
    pub fn describe(&self) -> String {
        let version = if self.dim == 768 { "v2" } else { "v1" };
        let scheme = if self.is_split() { "cut after its conv front end" } else { "run whole" };
        let precision = match self.precision {
            Precision::Float32 => "",
            Precision::Int8 => ", int8 matrix products",
        };
        format!("HuBERT / ContentVec {}-d (RVC {version}), {scheme}{precision}", self.dim)
    }

    /// Values per frame: 256 or 768.
    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn input_name(&self) -> &str {
        &self.input
    }

    pub fn output_name(&self) -> &str {
        &self.output
    }

    /// Runs on `samples` (16 kHz mono) and appends the frames (row-major, [`dim`](Self::dim)
    /// values each) to `features`; returns how many. A cut model runs its two halves.
    pub fn run(&mut self, samples: &[f32], features: &mut Vec<f32>) -> Result<usize, ModelError> {
        if samples.len() < RECEPTIVE_FIELD {
            return Ok(0);
        }
        let Some(session) = self.session.as_mut() else {
            let mut conv = Vec::new();
            self.front_end(samples, &mut conv)?;
            return self.transformer(&conv, features);
        };
        let run_error = |e: ort::Error| ModelError::Run(e.to_string());
        let shape = if self.input_rank == 3 { vec![1, 1, samples.len()] } else { vec![1, samples.len()] };
        let input = TensorRef::from_array_view((shape, samples)).map_err(run_error)?;
        let outputs = session.run(ort::inputs![self.input.as_str() => input]).map_err(run_error)?;
        let (shape, values) = outputs[self.output.as_str()].try_extract_tensor::<f32>().map_err(run_error)?;
        let frames = match **shape {
            [1, frames, dim] if dim as usize == self.dim || self.dim == 0 => frames as usize,
            ref other => {
                return Err(ModelError::Run(format!("output shape {other:?}, expected [1, frames, {}]", self.dim)))
            }
        };
        features.extend_from_slice(values);
        Ok(frames)
    }

    /// One run on two frames' worth of silence: the model must produce exactly two frames of a
    /// supported width, i.e. hop 320 with a 400-sample receptive field.
    fn probe(&mut self) -> Result<(), String> {
        let samples = vec![0.0; RECEPTIVE_FIELD + HOP];
        let mut features = Vec::new();
        let frames = self.run(&samples, &mut features).map_err(|e| e.to_string())?;
        let dim = features.len() / frames.max(1);
        if self.dim == 0 {
            self.dim = dim;
        }
        if frames != 2 || !DIMS.contains(&(dim as i64)) || dim != self.dim {
            return Err(format!(
                "{} samples gave {frames} frames of {dim} values; RVC's models give 2 frames (one per 320 samples) of 256 or 768",
                samples.len()
            ));
        }
        Ok(())
    }
}

/// A session over model `bytes`: full optimisation, `intra_threads`, no spinning (spinning
/// threads would burn a core next to the host's audio threads).
pub(crate) fn session(
    environment: &ort::environment::Environment,
    bytes: &[u8],
    options: ModelOptions,
) -> Result<Session, String> {
    Session::builder(environment)
        .and_then(|b| b.with_optimization_level(GraphOptimizationLevel::Level3).map_err(Into::into))
        .and_then(|b| b.with_intra_threads(options.intra_threads.max(1)).map_err(Into::into))
        .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
        .and_then(|b| b.with_intra_op_spinning(false).map_err(Into::into))
        .and_then(|mut b| b.commit_from_memory(bytes))
        .map_err(|e| e.to_string())
}

/// The audio input: one float32 tensor `[1, 1, N]` or `[1, N]`.
fn input_of(session: &Session) -> Result<(String, usize), String> {
    let [input] = session.inputs() else {
        let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        return Err(format!("it has {} inputs ({names:?}); a content model has one, the audio", names.len()));
    };
    match input.dtype() {
        ValueType::Tensor { ty: TensorElementType::Float32, shape, .. } if matches!(shape.len(), 2 | 3) => {
            Ok((input.name().to_string(), shape.len()))
        }
        other => Err(format!(
            "its input {:?} is {other}; expected float32 audio [1, 1, samples] or [1, samples]",
            input.name()
        )),
    }
}

/// The features: the first float32 output `[1, T, C]`; C when the model states it.
fn output_of(session: &Session) -> Result<(String, Option<usize>), String> {
    for output in session.outputs() {
        if let ValueType::Tensor { ty: TensorElementType::Float32, shape, .. } = output.dtype() {
            if shape.len() == 3 {
                let dim = shape[2];
                if dim > 0 && !DIMS.contains(&dim) {
                    return Err(format!(
                        "its output {:?} has {dim} values per frame; RVC uses 256 or 768",
                        output.name()
                    ));
                }
                return Ok((output.name().to_string(), (dim > 0).then_some(dim as usize)));
            }
        }
    }
    let outputs: Vec<String> = session.outputs().iter().map(|o| format!("{:?}: {}", o.name(), o.dtype())).collect();
    Err(format!("no float32 output [1, frames, dim] among {outputs:?}"))
}
