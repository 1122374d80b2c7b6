//! Step 5, model rate → host rate, on the worker thread: the synthesizer's voice becomes the
//! stage's output block. The stand-in synthesizer already speaks at the host rate, so this
//! step copies; resampling from the models' 32 / 40 / 48 kHz arrives with the synthesizer.

use super::synthesizer::ModelAudio;

pub struct ToHostRate {
    host_rate: f64,
}

impl ToHostRate {
    pub fn new(host_rate: f64) -> Self {
        ToHostRate { host_rate }
    }

    /// Writes `voice` to `output` (one block). A voice at another rate, or of another length,
    /// cannot be used yet: that block then passes dry, and the error says why.
    pub fn convert(&mut self, voice: &ModelAudio, output: &mut [f32]) -> Result<(), String> {
        if voice.rate != self.host_rate || voice.samples.len() != output.len() {
            return Err(format!(
                "the voice came at {} Hz, {} samples, where {} Hz and {} samples were due",
                voice.rate,
                voice.samples.len(),
                self.host_rate,
                output.len()
            ));
        }
        output.copy_from_slice(&voice.samples);
        Ok(())
    }
}
