//! Content features: HuBERT / ContentVec ONNX models run through ONNX Runtime. The runtime
//! library is found and loaded once per process ([`runtime`]); models are checked against
//! RVC's contract and run ([`ContentModel`]). Loading happens on the main or a loader thread,
//! running on the worker thread; never on the audio thread.
//!
//! [`ContentFeatures`] turns the worker's blocks of host audio into frames (resampling, a
//! bounded left context) for the retrieval stage. Not yet: splitting the model so the conv front
//! end is not recomputed over the context, and the wiring into the plugin.

mod model;
mod resample;
mod runtime;
mod source;

pub use model::{frames_for, ContentModel, ModelError, ModelOptions, HOP, RECEPTIVE_FIELD, SAMPLE_RATE};
pub use runtime::{runtime_candidates, runtime_path, RuntimeError, LIBRARY_NAME};
pub use source::{ContentFeatures, DEFAULT_CONTEXT_FRAMES};
