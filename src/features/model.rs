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
}

impl Default for ModelOptions {
    fn default() -> Self {
        Self { intra_threads: 1 }
    }
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

/// A loaded content model, ready to run.
#[derive(Debug)]
pub struct ContentModel {
    session: Session,
    input: String,
    /// 3 for `[1, 1, N]`, 2 for `[1, N]`.
    input_rank: usize,
    output: String,
    dim: usize,
}

impl ContentModel {
    /// Loads ONNX Runtime if needed (`runtime`: a user-chosen library path, see
    /// [`runtime_candidates`](super::runtime_candidates)), then the model, and checks it.
    pub fn load(path: &Path, runtime: Option<&Path>, options: ModelOptions) -> Result<Self, ModelError> {
        let environment = environment(runtime)?;
        let load_error = |message: String| ModelError::Load { path: path.into(), message };
        let session = Session::builder(environment)
            .and_then(|b| b.with_optimization_level(GraphOptimizationLevel::Level3).map_err(Into::into))
            .and_then(|b| b.with_intra_threads(options.intra_threads.max(1)).map_err(Into::into))
            .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
            // Spinning threads would burn a core next to the host's audio threads.
            .and_then(|b| b.with_intra_op_spinning(false).map_err(Into::into))
            .and_then(|mut b| b.commit_from_file(path))
            .map_err(|e| load_error(e.to_string()))?;
        let contract = |problem: String| ModelError::Contract { path: path.into(), problem };
        let (input, input_rank) = input_of(&session).map_err(contract)?;
        let (output, dim) = output_of(&session).map_err(contract)?;
        let mut model = ContentModel { session, input, input_rank, output, dim: dim.unwrap_or(0) };
        model.probe().map_err(contract)?;
        Ok(model)
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
    /// values each) to `features`; returns how many.
    pub fn run(&mut self, samples: &[f32], features: &mut Vec<f32>) -> Result<usize, ModelError> {
        if samples.len() < RECEPTIVE_FIELD {
            return Ok(0);
        }
        let run_error = |e: ort::Error| ModelError::Run(e.to_string());
        let shape = if self.input_rank == 3 { vec![1, 1, samples.len()] } else { vec![1, samples.len()] };
        let input = TensorRef::from_array_view((shape, samples)).map_err(run_error)?;
        let outputs = self.session.run(ort::inputs![self.input.as_str() => input]).map_err(run_error)?;
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
