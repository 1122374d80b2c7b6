//! Content features: HuBERT / ContentVec ONNX models run through ONNX Runtime. The runtime
//! library is found and loaded once per process ([`runtime`]); models are checked against
//! RVC's contract and run ([`ContentModel`]), optionally cut after their conv front end
//! ([`split`]) and quantized to int8 ([`quantize`]). Loading happens on the main or a loader
//! thread, running on the worker thread (the voice pipeline's content step); never on the
//! audio thread. [`to_synth_rate`] shapes frames for the synthesizer (100 fps).

mod model;
pub(crate) mod onnx_wire;
mod quantize;
pub(crate) mod runtime;
mod split;
mod synth_rate;

pub(crate) use model::session;
pub use model::{frames_for, ContentModel, ModelError, ModelOptions, Precision, HOP, RECEPTIVE_FIELD, SAMPLE_RATE};
pub use runtime::{prefer_runtime_from_state, runtime_candidates, runtime_path, RuntimeError, LIBRARY_NAME};
pub use split::{split_after_front_end, Halves};
pub use synth_rate::{to_synth_rate, SYNTH_HOP};

use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, RwLock};

use crate::engine::slot::{SharedFiles, Slot, SlotReader};

/// The content model in use, loaded off the audio thread (see [`Slot`]). Runs lock it: the
/// workers of every instance using the same file share one copy and take turns.
pub type ModelSlot = Slot<Mutex<ContentModel>>;
/// The worker's handle on the [`ModelSlot`].
pub type ModelReader = SlotReader<Mutex<ContentModel>>;

/// Models loaded in this process, shared by every instance that loads the same file with the
/// same options.
static MODELS: LazyLock<SharedFiles<Mutex<ContentModel>>> = LazyLock::new(SharedFiles::default);

/// A slot that loads models with `options`, finding ONNX Runtime at `runtime` first if set.
pub fn model_slot(runtime: Arc<RwLock<Option<String>>>, options: ModelOptions) -> ModelSlot {
    onnx_slot(&MODELS, runtime, format!("{options:?}"), move |path, runtime| {
        ContentModel::load(path, runtime, options).map(Mutex::new).map_err(|e| e.to_string())
    })
    .describing(|model| model.lock().unwrap_or_else(|e| e.into_inner()).describe())
}

/// A slot for ONNX models of any kind: `load` gets the file and the ONNX Runtime library the
/// state names (`runtime`, read at each load); instances loading the same file with the same
/// `settings` share one copy through `files`.
pub(crate) fn onnx_slot<T: Send + Sync + 'static>(
    files: &'static SharedFiles<T>,
    runtime: Arc<RwLock<Option<String>>>,
    settings: String,
    load: impl Fn(&std::path::Path, Option<&std::path::Path>) -> Result<T, String> + Send + Sync + 'static,
) -> Slot<T> {
    Slot::new(Arc::new(move |path| {
        let runtime = runtime.read().unwrap_or_else(|e| e.into_inner()).clone().map(PathBuf::from);
        let loaded = files.get_or_load(path, &settings, || load(path, runtime.as_deref()));
        // Loading builds and drops the file's bytes, sessions and rewritten graphs: hundreds of
        // MB in small heap blocks that glibc keeps mapped. Hand them back.
        // SAFETY: malloc_trim only releases free heap memory; any thread may call it.
        unsafe { libc::malloc_trim(0) };
        loaded
    }))
}
