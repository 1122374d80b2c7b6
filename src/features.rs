//! Content features: HuBERT / ContentVec ONNX models run through ONNX Runtime. The runtime
//! library is found and loaded once per process ([`runtime`]); models are checked against
//! RVC's contract and run ([`ContentModel`]). Loading happens on the main or a loader thread,
//! running on the worker thread; never on the audio thread.
//!
//! [`ContentFeatures`] turns the worker's blocks of host audio into frames (resampling, a
//! bounded left context, the model cut after its conv front end when it allows it) for the
//! retrieval stage; [`to_synth_rate`] shapes them for the synthesizer (100 fps).

mod model;
mod onnx_wire;
mod quantize;
mod resample;
mod runtime;
mod source;
mod split;
mod synth_rate;

pub use model::{frames_for, ContentModel, ModelError, ModelOptions, Precision, HOP, RECEPTIVE_FIELD, SAMPLE_RATE};
pub use runtime::{runtime_candidates, runtime_path, RuntimeError, LIBRARY_NAME};
pub use source::{ContentFeatures, DEFAULT_CONTEXT_FRAMES};
pub use synth_rate::{to_synth_rate, SYNTH_HOP};

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use crate::engine::slot::{Slot, SlotReader};

/// The content model in use, loaded off the audio thread (see [`Slot`]). Runs lock it: only
/// the worker does, so the lock is never contended.
pub type ModelSlot = Slot<Mutex<ContentModel>>;
/// The worker's handle on the [`ModelSlot`].
pub type ModelReader = SlotReader<Mutex<ContentModel>>;

/// A slot that loads models with `options`, finding ONNX Runtime at `runtime` first if set.
pub fn model_slot(runtime: Arc<RwLock<Option<String>>>, options: ModelOptions) -> ModelSlot {
    Slot::new(Arc::new(move |path| {
        let runtime = runtime.read().unwrap_or_else(|e| e.into_inner()).clone().map(PathBuf::from);
        ContentModel::load(path, runtime.as_deref(), options).map(Mutex::new).map_err(|e| e.to_string())
    }))
}
