//! The resampler both rate steps use (host → 16 kHz, model → host), worker thread: rubato's
//! asynchronous sinc resampler, which takes any ratio (validators use 1234.5678 Hz) and
//! allocates nothing per chunk, fed fixed-size chunks of mono audio. Its filter delay is dropped
//! from the start of the stream, so output sample `n` lines up with input time `n / to` s.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Async, FixedAsync, Resampler, SincInterpolationParameters, WindowFunction};

pub struct MonoResampler {
    resampler: Async<f32>,
    output: Vec<f32>,
    /// Filter delay still to drop at the start of the stream, in output samples.
    skip: usize,
}

impl MonoResampler {
    /// From `from` Hz to `to` Hz, in chunks of exactly `chunk` input samples.
    pub fn new(from: f64, to: f64, chunk: usize) -> Result<Self, String> {
        let parameters = SincInterpolationParameters::new(128, WindowFunction::BlackmanHarris2);
        let resampler = Async::<f32>::new_sinc(to / from, 1.0, &parameters, chunk.max(1), 1, FixedAsync::Input)
            .map_err(|e| format!("cannot resample {from} Hz to {to} Hz: {e}"))?;
        let output = vec![0.0; resampler.output_frames_max()];
        let skip = resampler.output_delay();
        Ok(MonoResampler { resampler, output, skip })
    }

    /// The filter's delay in output samples: how much later than a chunk's end its last
    /// output samples become available.
    pub fn delay(&self) -> usize {
        self.resampler.output_delay()
    }

    /// Resamples one chunk (the length given to [`new`](Self::new)); returns the new output
    /// samples, the filter delay dropped.
    pub fn process(&mut self, chunk: &[f32]) -> Result<&[f32], String> {
        let input = InterleavedSlice::new(chunk, 1, chunk.len()).map_err(|e| e.to_string())?;
        let frames = self.output.len();
        let mut output = InterleavedSlice::new_mut(&mut self.output, 1, frames).map_err(|e| e.to_string())?;
        let (_, written) = self.resampler.process_into_buffer(&input, &mut output, None).map_err(|e| e.to_string())?;
        let dropped = self.skip.min(written);
        self.skip -= dropped;
        Ok(&self.output[dropped..written])
    }

    /// Starts a new stream.
    pub fn reset(&mut self) {
        self.resampler.reset();
        self.skip = self.resampler.output_delay();
    }
}
