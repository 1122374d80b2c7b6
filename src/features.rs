//! Content features: HuBERT / ContentVec ONNX models run through ONNX Runtime. The runtime
//! library is found and loaded once per process ([`runtime`]); models are checked against
//! RVC's contract and run ([`ContentModel`]). Loading happens on the main or a loader thread,
//! running on the worker thread; never on the audio thread.
//!
//! So far: the runtime and the model. Resampling, the block-aligned feature stage with its
//! context window, and the wiring into the plugin come next.

mod model;
mod runtime;

pub use model::{frames_for, ContentModel, ModelError, ModelOptions, HOP, RECEPTIVE_FIELD, SAMPLE_RATE};
pub use runtime::{runtime_candidates, runtime_path, RuntimeError, LIBRARY_NAME};
