//! Step 2b, pitch, on the worker thread: the fundamental frequency of every 10 ms of the voice,
//! read from the same 16 kHz buffer as the content features. Not built yet (its own issue):
//! until then the track is empty and the step needs no audio, so the buffer keeps none for it.

use super::to_model_rate::Audio16k;

#[derive(Debug, Default)]
pub struct Pitch;

impl Pitch {
    /// The f0 track (Hz per 10 ms frame, 0 = unvoiced) of what `audio` completed: none yet.
    pub fn track(&mut self, _audio: &Audio16k, f0: &mut Vec<f32>) -> Result<(), String> {
        f0.clear();
        Ok(())
    }

    /// The earliest 16 kHz sample the next block needs: nothing.
    pub fn keep_from(&self) -> Option<u64> {
        None
    }
}
