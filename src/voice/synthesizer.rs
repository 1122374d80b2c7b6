//! Step 4, the synthesizer, on the worker thread: turns blended features and pitch into the
//! converted voice at the model's rate. Not built yet (its own issue): until then it returns
//! the block's input, delayed by the delay of the steps before it (the 16 kHz resampler's), at
//! the host rate, so audio passes through. The real synthesizer will need more: content frames
//! complete up to 25 ms and pitch frames 50 ms + 45 ms after their audio, and its own look-ahead;
//! the pipeline's latency grows with it.

use std::collections::VecDeque;

use super::{Frames, PitchFrames};

/// Audio at a given rate, as the synthesizer makes it.
#[derive(Debug, Default)]
pub struct ModelAudio {
    pub rate: f64,
    pub samples: Vec<f32>,
}

pub struct Synthesizer {
    /// The input of the last `delay` samples, oldest first.
    delayed: VecDeque<f32>,
    delay: usize,
    host_rate: f64,
}

impl Synthesizer {
    /// A stand-in that delays host-rate audio by `delay` samples.
    pub fn new(host_rate: f64, delay: usize) -> Self {
        Synthesizer { delayed: std::iter::repeat_n(0.0, delay).collect(), delay, host_rate }
    }

    /// Whether it reads the f0 track (the stand-in does not, so pitch is not computed for it).
    pub fn needs_pitch(&self) -> bool {
        false
    }

    /// The voice for one block: for now `dry`, delayed.
    pub fn render(
        &mut self,
        _features: &Frames,
        _pitch: &PitchFrames,
        dry: &[f32],
        voice: &mut ModelAudio,
    ) -> Result<(), String> {
        voice.rate = self.host_rate;
        voice.samples.clear();
        self.delayed.extend(dry);
        voice.samples.extend(self.delayed.drain(..dry.len()));
        Ok(())
    }

    pub fn reset(&mut self) {
        self.delayed.clear();
        self.delayed.resize(self.delay, 0.0);
    }
}
