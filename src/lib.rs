//! RVC Stage: real-time retrieval-based voice conversion as a VST3 and CLAP plugin.
//!
//! Layers, from the host inwards:
//! - [`plugin`] — nice-plug glue (the only module that knows plugin types); main and audio
//!   threads.
//! - [`engine`] — the real-time scheme shared by the plugin, the CLI and the tests: an
//!   audio-thread half and a worker thread joined by lock-free rings.
//! - stages ([`engine::Stage`]) — the processing the worker runs on fixed blocks; [`retrieval`]
//!   holds the feature-index side: validating, loading, searching, blending, building.
//! - [`pipeline`] — the stage chain the plugin and the CLI share.
//! - [`features`] — content models (HuBERT / ContentVec ONNX) through ONNX Runtime.
//! - [`plot`] — the font the CLI's plots use.
//! - [`npy`] — feature matrices as `.npy` files for the CLI.
//! - [`rt`] — allocation-free primitives the audio thread is built from.

pub mod engine;
pub mod features;
pub mod npy;
pub mod pipeline;
pub mod plot;
pub mod plugin;
pub mod retrieval;
pub mod rt;

pub use plugin::RvcStage;
