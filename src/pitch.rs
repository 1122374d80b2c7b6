//! Pitch: the fundamental frequency of every 10 ms of the voice, as RVC's synthesizer takes it
//! (`pitchf` in Hz, 0 = unvoiced, and its coarse code `pitch`, 1…255). This module holds the
//! parts fixed by RVC's published formulas — the log-mel spectrogram RMVPE models take
//! ([`MelSpectrogram`]), the decoding of their 360-bin salience ([`decode_salience`]) and the
//! coarse quantisation with transposition ([`coarse_pitch`], [`transpose`]) — and the built-in
//! estimator that needs no model file ([`PitchTracker`], probabilistic YIN). Pure functions and
//! preallocated state, run on the worker thread; the pipeline's pitch step
//! (`voice/pitch.rs`) runs the estimator, or an RMVPE model ([`RmvpeModel`], either contract)
//! when the user chose one ([`PitchModelSlot`]).

mod coarse;
mod mel;
mod rmvpe;
mod salience;
mod tracker;

pub use coarse::{coarse_pitch, transpose, F0_MAX, F0_MIN};
pub use mel::{MelSpectrogram, MEL_BANDS, MEL_HOP};
pub use rmvpe::{PitchModelError, RmvpeContract, RmvpeModel};
pub use salience::{decode_salience, SALIENCE_BINS, UNVOICED_THRESHOLD};
pub use tracker::{PitchTracker, FRAME as TRACKER_FRAME, LOOKAHEAD, WINDOW_BEFORE};

use std::sync::{Arc, LazyLock, Mutex, RwLock};

use crate::engine::slot::{SharedFiles, Slot, SlotReader};

/// The RMVPE model in use, loaded off the audio thread (see [`Slot`]); without one the
/// built-in estimator runs. Runs lock it (instances using the same file share one copy).
pub type PitchModelSlot = Slot<Mutex<RmvpeModel>>;
/// The worker's handle on the [`PitchModelSlot`].
pub type PitchModelReader = SlotReader<Mutex<RmvpeModel>>;

static PITCH_MODELS: LazyLock<SharedFiles<Mutex<RmvpeModel>>> = LazyLock::new(SharedFiles::default);

/// A slot that loads RMVPE models, finding ONNX Runtime at `runtime` first if set.
pub fn pitch_model_slot(runtime: Arc<RwLock<Option<String>>>) -> PitchModelSlot {
    crate::features::onnx_slot(&PITCH_MODELS, runtime, String::new(), |path, runtime| {
        RmvpeModel::load(path, runtime).map(Mutex::new).map_err(|e| e.to_string())
    })
    .describing(|model| model.lock().unwrap_or_else(|e| e.into_inner()).contract().to_string())
}
