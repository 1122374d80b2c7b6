//! Host rate → 16 kHz for the content model, on the worker thread. rubato's asynchronous sinc
//! resampler takes any ratio (validators use 1234.5678 Hz), and `process_into_buffer`
//! allocates nothing. Input comes in the engine's fixed blocks, one resampler chunk each. The
//! filter's own delay is dropped from the start of the stream, so 16 kHz sample `n` lines up
//! with host time `n / 16000` s.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Async, FixedAsync, Resampler, SincInterpolationParameters, WindowFunction};

use super::model::SAMPLE_RATE;

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

    /// Resamples one block (the length given to [`new`](Self::new)) and appends the 16 kHz
    /// samples to `out`.
    pub fn push(&mut self, block: &[f32], out: &mut Vec<f32>) -> Result<(), String> {
        let input = InterleavedSlice::new(block, 1, block.len()).map_err(|e| e.to_string())?;
        let frames = self.output.len();
        let mut output = InterleavedSlice::new_mut(&mut self.output, 1, frames).map_err(|e| e.to_string())?;
        let (_, written) = self.resampler.process_into_buffer(&input, &mut output, None).map_err(|e| e.to_string())?;
        let dropped = self.skip.min(written);
        self.skip -= dropped;
        out.extend_from_slice(&self.output[dropped..written]);
        Ok(())
    }

    /// Starts a new stream.
    pub fn reset(&mut self) {
        self.resampler.reset();
        self.skip = self.resampler.output_delay();
    }
}
