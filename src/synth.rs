//! The synthesizer: RVC's synthesizer ONNX turned into a stream. Holds what is fixed by RVC —
//! its two export contracts ([`SynthModel`]), its prior noise ([`PriorNoise`]) and its block
//! stitching ([`Sola`]). Models load on a loader thread ([`SynthSlot`]); everything runs on the
//! worker thread, driven by the pipeline's synthesizer step (`voice/synthesizer.rs`).

mod graph;
mod model;
mod noise;
mod sola;

pub use graph::NOISE_SEED_INPUT;
pub use model::{SynthError, SynthInfo, SynthInput, SynthModel};
pub use noise::{PriorNoise, NOISE_SCALE};
pub use sola::Sola;

use std::sync::{Arc, LazyLock, Mutex, RwLock};

use crate::engine::slot::{SharedFiles, Slot, SlotReader};
use crate::features::ModelOptions;

/// The synthesizer in use, loaded off the audio thread (see [`Slot`]). Runs lock it
/// (instances using the same file share one copy).
pub type SynthSlot = Slot<Mutex<SynthModel>>;
/// The worker's handle on the [`SynthSlot`].
pub type SynthReader = SlotReader<Mutex<SynthModel>>;

static SYNTHS: LazyLock<SharedFiles<Mutex<SynthModel>>> = LazyLock::new(SharedFiles::default);

/// A slot that loads synthesizers with `options`, finding ONNX Runtime at `runtime` first if set.
pub fn synth_slot(runtime: Arc<RwLock<Option<String>>>, options: ModelOptions) -> SynthSlot {
    crate::features::onnx_slot(&SYNTHS, runtime, format!("{options:?}"), move |path, runtime| {
        SynthModel::load(path, runtime, options).map(Mutex::new).map_err(|e| e.to_string())
    })
    .describing(|model| model.lock().unwrap_or_else(|e| e.into_inner()).info().to_string())
}
