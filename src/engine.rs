//! The engine: everything between the host's buffers and the processing stages, free of plugin
//! types so the plugin, the CLI and the tests run the very same code.
//!
//! It is split across two threads:
//! - [`AudioProcessor`] runs on the **audio thread**. It downmixes, hands samples to the worker
//!   through a lock-free ring, takes processed samples back through a second ring and mixes them
//!   with the latency-compensated dry signal.
//! - [`worker`] runs one **worker thread** per engine. It cuts the stream into fixed blocks and
//!   runs them through a [`Stage`].
//!
//! [`Engine`] owns both halves; it is created and dropped on the **main thread**, and dropping it
//! joins the worker, so no thread outlives it.

mod audio;
mod latency;
pub mod slot;
mod stage;
mod worker;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

pub use audio::{AudioProcessor, Controls};
pub use latency::{samples_for_ms, LatencyPlan};
pub use stage::{BlockFailed, FileWait, Identity, Stage, StageControls};

/// Shortest and longest worker block the engine accepts, in milliseconds.
pub const BLOCK_MS_RANGE: std::ops::RangeInclusive<f64> = 50.0..=500.0;

/// Longest an offline render's audio thread waits for the worker before it gives up and falls
/// back to dry audio (counted as an under-run), so a wedged stage cannot hang a bounce. After a
/// timeout the render stops waiting until the worker delivers again, so a hung stage costs one
/// timeout, not one per call.
pub const OFFLINE_WAIT_LIMIT: Duration = Duration::from_secs(30);

/// Longest the worker waits, before an offline block, for files still being loaded — all of
/// them together, one deadline. Below [`OFFLINE_WAIT_LIMIT`], so the audio thread is still
/// waiting when the worker gives up and renders without them.
pub const FILE_WAIT_LIMIT: Duration = Duration::from_secs(20);

const _: () = assert!(FILE_WAIT_LIMIT.as_secs() < OFFLINE_WAIT_LIMIT.as_secs());

/// How the host drives `process`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenderMode {
    /// Live: the audio thread never waits; late worker output is replaced by delayed dry audio.
    Realtime,
    /// Bounce: the audio thread waits (bounded) for the worker, so output is complete and the
    /// same input always renders to the same output.
    Offline,
}

/// What the engine is activated with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineConfig {
    /// Host sample rate in Hz; any finite positive value (validators use 1234.5678).
    pub sample_rate: f64,
    /// The largest buffer the host will pass to one `process` call. Larger calls still work:
    /// they are split, at the cost of possible under-runs in realtime mode.
    pub max_buffer: usize,
    /// Number of audio channels in the host's layout.
    pub channels: usize,
    /// Worker block length in milliseconds, within [`BLOCK_MS_RANGE`].
    pub block_ms: f64,
    pub mode: RenderMode,
    /// Offline: how long the worker waits for files still loading before a block
    /// ([`FILE_WAIT_LIMIT`]; tests raise it).
    pub file_wait: Duration,
}

impl EngineConfig {
    /// Samples per worker block at this configuration's rate: what a stage is built for.
    pub fn block_samples(&self) -> usize {
        samples_for_ms(self.block_ms, self.sample_rate)
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            sample_rate: 48_000.0,
            max_buffer: 512,
            channels: 2,
            block_ms: 100.0,
            mode: RenderMode::Realtime,
            file_wait: FILE_WAIT_LIMIT,
        }
    }
}

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("sample rate {0} Hz is not a positive finite number")]
    InvalidSampleRate(f64),
    #[error("block length {0} ms is outside the supported 50-500 ms")]
    InvalidBlockLength(f64),
    #[error("the host announced a maximum buffer of 0 samples")]
    EmptyBuffer,
    #[error("the host layout has no audio channels")]
    NoChannels,
    #[error("could not start the worker thread: {0}")]
    WorkerSpawn(#[source] std::io::Error),
}

/// Counters the audio thread updates and anyone may read (GUI, tests, the CLI report).
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Times the worker was late and output fell back to delayed dry audio.
    pub underruns: AtomicU64,
    /// Times the worker stream was restarted (reset, or the input ring overflowing during a
    /// long stall).
    pub restarts: AtomicU64,
    /// Blocks the worker has processed and handed back.
    pub blocks: AtomicU64,
    /// Blocks whose stage panicked (they passed dry).
    pub crashes: AtomicU64,
    /// Samples the audio thread has processed since activation.
    processed: AtomicU64,
    /// `processed` when the last under-run began.
    last_underrun_at: AtomicU64,
    /// The largest |sample| of the input and of the output since a display last took them (f32
    /// bits: for non-negative floats their order is the integers' order, so `fetch_max` works).
    input_peak: AtomicU32,
    output_peak: AtomicU32,
}

impl EngineStats {
    pub fn underruns(&self) -> u64 {
        self.underruns.load(Ordering::Relaxed)
    }

    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    pub fn blocks(&self) -> u64 {
        self.blocks.load(Ordering::Acquire)
    }

    pub fn crashes(&self) -> u64 {
        self.crashes.load(Ordering::Relaxed)
    }

    pub fn processed(&self) -> u64 {
        self.processed.load(Ordering::Relaxed)
    }

    /// How many samples ago the last under-run began; `None` before the first.
    pub fn samples_since_underrun(&self) -> Option<u64> {
        (self.underruns() > 0).then(|| self.processed().saturating_sub(self.last_underrun_at.load(Ordering::Relaxed)))
    }

    /// The input and output peaks (linear) since the last call, for a level meter.
    pub fn take_peaks(&self) -> (f32, f32) {
        let take = |peak: &AtomicU32| f32::from_bits(peak.swap(0, Ordering::Relaxed));
        (take(&self.input_peak), take(&self.output_peak))
    }

    /// Audio thread.
    fn count_underrun(&self) {
        self.underruns.fetch_add(1, Ordering::Relaxed);
        self.last_underrun_at.store(self.processed(), Ordering::Relaxed);
    }

    /// Audio thread: one call's samples and levels.
    fn record_call(&self, samples: usize, input_peak: f32, output_peak: f32) {
        self.processed.fetch_add(samples as u64, Ordering::Relaxed);
        self.input_peak.fetch_max(input_peak.to_bits(), Ordering::Relaxed);
        self.output_peak.fetch_max(output_peak.to_bits(), Ordering::Relaxed);
    }
}

/// The largest |sample| in `channels` (NaN ignored, infinity capped), audio thread.
fn peak(channels: &[&mut [f32]]) -> f32 {
    let peak = channels.iter().flat_map(|c| c.iter()).fold(0.0f32, |peak, x| peak.max(x.abs()));
    peak.min(f32::MAX)
}

/// The restart handshake between the audio thread (requests) and the worker (acknowledges).
/// Plain atomics, so neither side ever blocks the other.
#[derive(Debug, Default)]
struct Handshake {
    requested: AtomicU32,
    acknowledged: AtomicU32,
    /// Blocks published plus restarts acknowledged: lets an offline render tell a slow worker
    /// from a hung one.
    progress: AtomicU64,
    stop: std::sync::atomic::AtomicBool,
}

/// A stage's controls as the audio thread sends them: one event per worker block, stamped with
/// the stream position of the block's first sample (the value in effect at that sample).
#[derive(Debug, Clone, Copy, PartialEq)]
struct ControlEvent<C> {
    block_start: u64,
    controls: C,
}

/// Worker blocks that can be in flight at once, so the per-block rings (controls, gaps) can
/// never fill: at most a ring's worth of samples plus the block being assembled.
pub(crate) fn blocks_in_flight(plan: &LatencyPlan) -> usize {
    plan.ring_capacity() / plan.block + 3
}

/// One running engine: the audio-thread half plus the worker thread it feeds.
pub struct Engine<C> {
    audio: AudioProcessor<C>,
    /// Stopped and joined when the engine is dropped. Never touched otherwise: the two halves
    /// talk only through the rings and the handshake.
    _worker: worker::WorkerThread,
}

impl<C: StageControls> Engine<C> {
    /// Validates `config`, preallocates every buffer and starts the worker thread.
    pub fn start(config: EngineConfig, stage: impl Stage<Controls = C> + 'static) -> Result<Self, EngineError> {
        if !(config.sample_rate.is_finite() && config.sample_rate > 0.0) {
            return Err(EngineError::InvalidSampleRate(config.sample_rate));
        }
        if !BLOCK_MS_RANGE.contains(&config.block_ms) {
            return Err(EngineError::InvalidBlockLength(config.block_ms));
        }
        if config.max_buffer == 0 {
            return Err(EngineError::EmptyBuffer);
        }
        if config.channels == 0 {
            return Err(EngineError::NoChannels);
        }
        let plan = LatencyPlan::new(config.sample_rate, config.max_buffer, config.block_ms, stage.latency_samples());
        let capacity = plan.ring_capacity();
        let (to_worker, worker_input) = rtrb::RingBuffer::new(capacity);
        let (worker_output, from_worker) = rtrb::RingBuffer::new(capacity);
        let (control_events, worker_controls) = rtrb::RingBuffer::new(blocks_in_flight(&plan));
        let (worker_gaps, gaps) = rtrb::RingBuffer::new(blocks_in_flight(&plan));
        let handshake = Arc::new(Handshake::default());
        let stats = Arc::new(EngineStats::default());
        let lag = (config.mode == RenderMode::Realtime).then(|| {
            worker::LagWatch::new(stats.clone(), Duration::from_secs_f64(plan.block as f64 / config.sample_rate))
        });
        let rings = worker::WorkerRings {
            input: worker_input,
            output: worker_output,
            controls: worker_controls,
            gaps: worker_gaps,
        };
        let offline = (config.mode == RenderMode::Offline).then_some(config.file_wait);
        let worker = worker::WorkerThread::spawn(
            worker::BlockWorker::new(
                plan.block,
                Box::new(stage),
                rings,
                handshake.clone(),
                stats.clone(),
                offline,
                lag,
            ),
            handshake.clone(),
        )
        .map_err(EngineError::WorkerSpawn)?;
        let rings = audio::AudioRings { to_worker, from_worker, control_events, gaps };
        let audio = AudioProcessor::new(&config, plan, rings, handshake, worker.thread().clone(), stats);
        Ok(Self { audio, _worker: worker })
    }

    /// The constant delay, in samples, between an input sample and its output.
    pub fn latency_samples(&self) -> usize {
        self.audio.latency_samples()
    }

    pub fn plan(&self) -> &LatencyPlan {
        self.audio.plan()
    }

    pub fn stats(&self) -> &Arc<EngineStats> {
        self.audio.stats()
    }

    /// Audio thread: see [`AudioProcessor::process`].
    pub fn process(&mut self, channels: &mut [&mut [f32]], controls: Controls<C>) {
        let input_peak = peak(channels);
        self.audio.process(channels, controls);
        let samples = channels.iter().map(|c| c.len()).min().unwrap_or(0);
        self.audio.stats().record_call(samples, input_peak, peak(channels));
    }

    /// Audio thread: see [`AudioProcessor::reset`].
    pub fn reset(&mut self) {
        self.audio.reset();
    }
}
