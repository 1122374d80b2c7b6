//! Pitch: the fundamental frequency of every 10 ms of the voice, as RVC's synthesizer takes it
//! (`pitchf` in Hz, 0 = unvoiced, and its coarse code `pitch`, 1…255). This module holds the
//! parts fixed by RVC's published formulas — the log-mel spectrogram RMVPE models take
//! ([`MelSpectrogram`]), the decoding of their 360-bin salience ([`decode_salience`]) and the
//! coarse quantisation with transposition ([`coarse_pitch`], [`transpose`]). Pure functions and
//! preallocated state, run on the worker thread. The estimators and the pipeline's pitch step
//! that use them are not built yet (issue 10).

mod coarse;
mod mel;
mod salience;

pub use coarse::{coarse_pitch, transpose, F0_MAX, F0_MIN};
pub use mel::{MelSpectrogram, MEL_BANDS, MEL_HOP};
pub use salience::{decode_salience, SALIENCE_BINS, UNVOICED_THRESHOLD};
