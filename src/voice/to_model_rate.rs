//! Step 1, host rate → 16 kHz, on the worker thread: one resampler whose output every 16 kHz
//! step (content features, pitch) reads from the shared [`Audio16k`] buffer. rubato's
//! asynchronous sinc resampler takes any ratio (validators use 1234.5678 Hz), and
//! `process_into_buffer` allocates nothing. Input comes in the engine's fixed blocks, one
//! resampler chunk each. The filter's own delay is dropped from the start of the stream, so
//! 16 kHz sample `n` lines up with host time `n / 16000` s — and the newest `delay` samples of
//! a block only arrive with the next block: that is this step's contribution to the latency.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Async, FixedAsync, Resampler, SincInterpolationParameters, WindowFunction};

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

pub struct ToModelRate {
    resampler: Async<f32>,
    output: Vec<f32>,
    /// Filter delay still to drop at the start of the stream, in 16 kHz samples.
    skip: usize,
}

impl ToModelRate {
    /// A resampler from `host_rate` for input blocks of exactly `block` samples.
    pub fn new(host_rate: f64, block: usize) -> Result<Self, String> {
        let ratio = f64::from(SAMPLE_RATE) / host_rate;
        let parameters = SincInterpolationParameters::new(128, WindowFunction::BlackmanHarris2);
        let resampler = Async::<f32>::new_sinc(ratio, 1.0, &parameters, block.max(1), 1, FixedAsync::Input)
            .map_err(|e| format!("cannot resample {host_rate} Hz to 16 kHz: {e}"))?;
        let skip = resampler.output_delay();
        let output = vec![0.0; resampler.output_frames_max()];
        Ok(ToModelRate { resampler, output, skip })
    }

    /// The filter's delay in 16 kHz samples: how much later than the block's end its last 16
    /// kHz samples become available.
    pub fn delay(&self) -> usize {
        self.resampler.output_delay()
    }

    /// Resamples one block (the length given to [`new`](Self::new)) and appends the 16 kHz
    /// samples to `audio`.
    pub fn push(&mut self, block: &[f32], audio: &mut Audio16k) -> Result<(), String> {
        let input = InterleavedSlice::new(block, 1, block.len()).map_err(|e| e.to_string())?;
        let frames = self.output.len();
        let mut output = InterleavedSlice::new_mut(&mut self.output, 1, frames).map_err(|e| e.to_string())?;
        let (_, written) = self.resampler.process_into_buffer(&input, &mut output, None).map_err(|e| e.to_string())?;
        let dropped = self.skip.min(written);
        self.skip -= dropped;
        audio.append(&self.output[dropped..written]);
        Ok(())
    }

    /// Starts a new stream.
    pub fn reset(&mut self) {
        self.resampler.reset();
        self.skip = self.resampler.output_delay();
    }
}
