//! Pitch: the fundamental frequency of every 10 ms of the voice, as RVC's synthesizer takes it
//! (`pitchf` in Hz, 0 = unvoiced, and its coarse code `pitch`, 1…255). This module holds the
//! parts fixed by RVC's published formulas — the log-mel spectrogram RMVPE models take
//! ([`MelSpectrogram`]), the decoding of their 360-bin salience ([`decode_salience`]) and the
//! coarse quantisation with transposition ([`coarse_pitch`], [`transpose`]) — and the built-in
//! estimator that needs no model file ([`PitchTracker`], probabilistic YIN). Pure functions and
//! preallocated state, run on the worker thread; the pipeline's pitch step
//! (`voice/pitch.rs`) runs the estimator. RMVPE models are not supported yet (issue 10): the
//! mel and the decoding are ready for them.

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
