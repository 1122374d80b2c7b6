//! Step 5, model rate → host rate, on the worker thread: the synthesizer's voice stream
//! (32, 40 or 48 kHz) is resampled ([`MonoResampler`]), one 10 ms frame per call, and queued; each block takes the stage's output from the queue.
//!
//! Timing is fixed by construction: the voice of frame `j` (host time `j · rate / 100`) goes
//! out [`ToHostRate::queue_delay`] samples later, whatever the model and however far the
//! synthesizer got in a block. That delay covers the worst case of everything before — the 16
//! kHz resampler, content frames, the pitch decision, the synthesizer's look-ahead and this
//! resampler's filter — so the queue never runs dry; the SOLA margin adds to it in the
//! pipeline's latency. Blocks without voice (no synthesizer, or one just taken up) pass dry.

use std::collections::VecDeque;

use super::resampler::MonoResampler;
use super::synthesizer::ModelAudio;

/// The rates RVC's synthesizers speak at; the queue delay covers the slowest resampler.
const MODEL_RATES: [u32; 3] = [32_000, 40_000, 48_000];

/// The resampler of the voice in use and its rate.
struct Converter {
    rate: u32,
    resampler: MonoResampler,
}

impl Converter {
    fn new(rate: u32, host_rate: f64) -> Result<Self, String> {
        Ok(Converter { rate, resampler: MonoResampler::new(f64::from(rate), host_rate, rate as usize / 100)? })
    }
}

pub struct ToHostRate {
    host_rate: f64,
    queue_delay: u64,
    converter: Option<Converter>,
    /// Host-rate voice; its front is output sample `queue_start` of the stage.
    queue: VecDeque<f32>,
    queue_start: u64,
    /// The stage's output sample the next block starts with.
    next_output: u64,
}

impl ToHostRate {
    /// For a host at `host_rate` whose voice frames are decided at most `frame_lag` host
    /// samples after their own end.
    pub fn new(host_rate: f64, frame_lag: f64) -> Self {
        let slowest_filter = MODEL_RATES
            .iter()
            .filter_map(|&rate| Converter::new(rate, host_rate).ok())
            .map(|c| c.resampler.delay())
            .max();
        let frame = host_rate / 100.0;
        // +2: rounding of the frame's start, and of the resampler's output count.
        let queue_delay = (frame_lag + frame).ceil() as u64 + slowest_filter.unwrap_or(0) as u64 + 2;
        ToHostRate { host_rate, queue_delay, converter: None, queue: VecDeque::new(), queue_start: 0, next_output: 0 }
    }

    /// Host samples between a voice frame's start and its output.
    pub fn queue_delay(&self) -> u64 {
        self.queue_delay
    }

    /// Queues `voice` and writes one block of it to `output`. `Ok(false)`: no voice for this
    /// block (it passes dry).
    pub fn convert(&mut self, voice: &ModelAudio, output: &mut [f32]) -> Result<bool, String> {
        let block = (self.next_output, self.next_output + output.len() as u64);
        self.next_output = block.1;
        if voice.rate == 0 {
            self.converter = None;
            self.queue.clear();
            return Ok(false);
        }
        if voice.starts {
            self.start(voice)?;
        }
        let Some(converter) = &mut self.converter else { return Ok(false) };
        for frame in voice.samples.chunks_exact(voice.rate as usize / 100) {
            self.queue.extend(converter.resampler.process(frame)?);
        }
        // Voice meant for before this block (none, unless a stream started late) is dropped.
        let passed = (block.0.saturating_sub(self.queue_start) as usize).min(self.queue.len());
        self.queue.drain(..passed);
        self.queue_start += passed as u64;
        if self.queue_start > block.0 {
            return Ok(false); // the voice starts in a later block
        }
        if self.queue.len() < output.len() {
            let late = output.len() - self.queue.len();
            self.queue_start += self.queue.len() as u64;
            self.queue.clear();
            return Err(format!("the voice came {late} samples late for its block"));
        }
        let wanted = output.len();
        for (out, x) in output.iter_mut().zip(self.queue.drain(..wanted)) {
            *out = x;
        }
        self.queue_start = block.1;
        Ok(true)
    }

    /// A new voice stream whose first sample is the start of frame `voice.first_frame`.
    fn start(&mut self, voice: &ModelAudio) -> Result<(), String> {
        match &mut self.converter {
            Some(converter) if converter.rate == voice.rate => converter.resampler.reset(),
            _ => self.converter = Some(Converter::new(voice.rate, self.host_rate)?),
        }
        self.queue.clear();
        self.queue_start = (voice.first_frame as f64 * self.host_rate / 100.0).round() as u64 + self.queue_delay;
        Ok(())
    }

    pub fn reset(&mut self) {
        self.queue.clear();
        self.queue_start = 0;
        self.next_output = 0;
    }
}
