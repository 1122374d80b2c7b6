//! Step 1, host rate → 16 kHz, on the worker thread: one resampler ([`MonoResampler`]) whose
//! output every 16 kHz step (content features, pitch) reads from the shared [`Audio16k`] buffer.
//! Input comes in the engine's fixed blocks, one resampler chunk each. 16 kHz sample `n` lines
//! up with host time `n / 16000` s — and the newest `delay` samples of a block only arrive with
//! the next block: that is this step's contribution to the latency.

use super::resampler::MonoResampler;
use crate::features::SAMPLE_RATE;

/// 16 kHz audio of the stream from sample `start` on: what the 16 kHz steps read. Trimmed after
/// every block to what the steps still need.
#[derive(Debug, Default)]
pub struct Audio16k {
    start: u64,
    samples: Vec<f32>,
}

impl Audio16k {
    /// Stream position (16 kHz samples since the stream started) of the first sample held.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Stream position just past the newest sample.
    pub fn end(&self) -> u64 {
        self.start + self.samples.len() as u64
    }

    /// The samples from stream position `from` on (`from` at least [`start`](Self::start)).
    pub fn since(&self, from: u64) -> &[f32] {
        let offset = from.saturating_sub(self.start).min(self.samples.len() as u64) as usize;
        &self.samples[offset..]
    }

    /// Appends 16 kHz samples (what the resampler does; tests feed known audio this way).
    pub fn append(&mut self, samples: &[f32]) {
        self.samples.extend_from_slice(samples);
    }

    /// Forgets the samples before stream position `keep_from`.
    pub fn trim_before(&mut self, keep_from: u64) {
        let drop = (keep_from.saturating_sub(self.start) as usize).min(self.samples.len());
        self.samples.drain(..drop);
        self.start += drop as u64;
    }
}

pub struct ToModelRate(MonoResampler);

impl ToModelRate {
    /// A resampler from `host_rate` for input blocks of exactly `block` samples.
    pub fn new(host_rate: f64, block: usize) -> Result<Self, String> {
        MonoResampler::new(host_rate, f64::from(SAMPLE_RATE), block).map(ToModelRate)
    }

    /// The filter's delay in 16 kHz samples: how much later than the block's end its last 16
    /// kHz samples become available.
    pub fn delay(&self) -> usize {
        self.0.delay()
    }

    /// Resamples one block (the length given to [`new`](Self::new)) and appends the 16 kHz
    /// samples to `audio`.
    pub fn push(&mut self, block: &[f32], audio: &mut Audio16k) -> Result<(), String> {
        audio.append(self.0.process(block)?);
        Ok(())
    }

    /// Starts a new stream.
    pub fn reset(&mut self) {
        self.0.reset();
    }
}
