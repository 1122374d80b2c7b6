//! RVC Stage: real-time retrieval-based voice conversion as a VST3 and CLAP plugin.
//!
//! Layers, from the host inwards:
//! - [`plugin`] — nice-plug glue (the only module that knows plugin types): parameters, the
//!   editor (GUI thread) and the live app's entry; main and audio threads.
//! - [`engine`] — the real-time scheme shared by the plugin, the CLI and the tests: an
//!   audio-thread half and a worker thread joined by lock-free rings.
//! - [`voice`] — the voice-conversion pipeline the plugin and the CLI share: the one
//!   [`engine::Stage`], built from typed steps in the order audio flows.
//! - [`features`] — content models (HuBERT / ContentVec ONNX) through ONNX Runtime.
//! - [`retrieval`] — the feature index: validating, loading, searching, blending, building.
//! - [`pitch`] — the built-in pitch estimator and RVC's pitch formulas (RMVPE's log-mel input and
//!   salience decoding, coarse codes).
//! - [`synth`] — RVC synthesizer models (both exports), their prior noise and SOLA stitching.
//! - [`plot`] — the font the CLI's plots use.
//! - [`npy`] — feature matrices as `.npy` files for the CLI.
//! - [`rt`] — allocation-free primitives the audio thread is built from.

pub mod engine;
pub mod features;
pub mod npy;
pub mod pitch;
pub mod plot;
pub mod plugin;
pub mod retrieval;
pub mod rt;
pub mod synth;
pub mod voice;

pub use plugin::RvcStage;
