//! The voice pipeline's status board: for every step, the file it reads (content model,
//! index), the last error in words, and its time per block. The one place problems are
//! reported: the worker records each step's outcome, logs an error when it appears or changes,
//! and publishes the board after every block without waiting: times and pitch as atomics,
//! changed errors behind a lock it only tries (when a reader holds it, they come with the next
//! block). Displays — the CLI's report, the editor — read snapshots from any thread.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::engine::slot::{SlotStatus, SlotWatch};

/// The pipeline's steps, in the order audio flows through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    ToModelRate,
    ContentFeatures,
    Pitch,
    IndexBlend,
    Synthesizer,
    ToHostRate,
}

impl Step {
    pub const ALL: [Step; 6] =
        [Step::ToModelRate, Step::ContentFeatures, Step::Pitch, Step::IndexBlend, Step::Synthesizer, Step::ToHostRate];

    /// What the step is called in messages and displays.
    pub fn name(self) -> &'static str {
        match self {
            Step::ToModelRate => "resampling to 16 kHz",
            Step::ContentFeatures => "content features",
            Step::Pitch => "pitch",
            Step::IndexBlend => "index blend",
            Step::Synthesizer => "synthesizer",
            Step::ToHostRate => "resampling to the host rate",
        }
    }
}

/// Time a step spent on blocks.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepTimes {
    pub blocks: u64,
    pub last: Duration,
    pub total: Duration,
}

impl StepTimes {
    /// Mean time per block.
    pub fn mean(&self) -> Duration {
        self.total / self.blocks.max(1) as u32
    }
}

/// One step's times as atomics, so the worker publishes them after every block without a lock.
#[derive(Debug, Default)]
struct SharedTimes {
    blocks: AtomicU64,
    last_ns: AtomicU64,
    total_ns: AtomicU64,
}

impl SharedTimes {
    fn store(&self, times: &StepTimes) {
        self.last_ns.store(times.last.as_nanos() as u64, Ordering::Relaxed);
        self.total_ns.store(times.total.as_nanos() as u64, Ordering::Relaxed);
        self.blocks.store(times.blocks, Ordering::Release);
    }

    fn load(&self) -> StepTimes {
        let blocks = self.blocks.load(Ordering::Acquire);
        StepTimes {
            blocks,
            last: Duration::from_nanos(self.last_ns.load(Ordering::Relaxed)),
            total: Duration::from_nanos(self.total_ns.load(Ordering::Relaxed)),
        }
    }
}

/// A step's status, as displays read it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepStatus {
    pub step: Step,
    /// The file the step reads and how loading it went, for the steps that read one.
    pub file: Option<SlotStatus>,
    /// Why the step did not do its work on the last block, in words.
    pub error: Option<String>,
    pub times: StepTimes,
}

/// The board, shared between the worker (writer) and displays (readers).
pub struct VoiceStatus {
    /// Why each step failed on the last block. Changes rarely; the worker writes it only when
    /// it changed, and never waits for it.
    errors: Mutex<[Option<String>; 6]>,
    times: [SharedTimes; 6],
    /// The newest voiced f0 the pitch step produced (Hz, after transposition; f32 bits, 0 for
    /// none in the last block).
    pitch: AtomicU32,
    files: [Option<SlotWatch>; 6],
}

impl VoiceStatus {
    /// Every step's status, in pipeline order.
    pub fn snapshot(&self) -> Vec<StepStatus> {
        let errors = self.errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Step::ALL
            .iter()
            .zip(errors)
            .zip(self.times.iter().zip(&self.files))
            .map(|((step, error), (times, file))| StepStatus {
                step: *step,
                file: file.as_ref().map(SlotWatch::status),
                error,
                times: times.load(),
            })
            .collect()
    }

    /// The voice's current pitch in Hz (after transposition), if the last block had one.
    pub fn pitch_hz(&self) -> Option<f32> {
        Some(f32::from_bits(self.pitch.load(Ordering::Relaxed))).filter(|hz| *hz > 0.0)
    }

    /// The errors of the last block, each named by its step.
    pub fn errors(&self) -> Vec<String> {
        self.snapshot().into_iter().filter_map(|s| s.error.map(|e| format!("{}: {e}", s.step.name()))).collect()
    }
}

/// The worker's side of the board: outcomes are recorded here and published once per block.
pub struct StatusWriter {
    shared: Arc<VoiceStatus>,
    errors: [Option<String>; 6],
    times: [StepTimes; 6],
    /// Whether `errors` changed since readers last got them.
    errors_changed: bool,
}

impl StatusWriter {
    /// A board whose content-feature, index-blend, pitch and synthesizer steps show the files
    /// behind `model`, `index`, `pitch_model` and `synth` (if the pipeline reads them).
    pub fn new(model: SlotWatch, index: SlotWatch, pitch_model: Option<SlotWatch>, synth: Option<SlotWatch>) -> Self {
        let mut files: [Option<SlotWatch>; 6] = Default::default();
        files[Step::ContentFeatures as usize] = Some(model);
        files[Step::IndexBlend as usize] = Some(index);
        files[Step::Pitch as usize] = pitch_model;
        files[Step::Synthesizer as usize] = synth;
        let shared = Arc::new(VoiceStatus {
            errors: Mutex::default(),
            times: Default::default(),
            pitch: AtomicU32::new(0),
            files,
        });
        StatusWriter { shared, errors: Default::default(), times: Default::default(), errors_changed: false }
    }

    pub fn board(&self) -> Arc<VoiceStatus> {
        self.shared.clone()
    }

    /// Runs one step, timing it and recording its outcome; returns whether it succeeded.
    pub fn run(&mut self, step: Step, work: impl FnOnce() -> Result<(), String>) -> bool {
        let started = Instant::now();
        let outcome = work();
        let took = started.elapsed();
        let times = &mut self.times[step as usize];
        *times = StepTimes { blocks: times.blocks + 1, last: took, total: times.total + took };
        let error = outcome.err();
        let known = &mut self.errors[step as usize];
        if error != *known {
            if let Some(error) = &error {
                tracing::warn!("RVC Stage, {}: {error}", step.name());
            }
            *known = error;
            self.errors_changed = true;
        }
        known.is_none()
    }

    /// Records the block's newest voiced f0 (Hz), or none.
    pub fn pitch(&self, hz: Option<f32>) {
        self.shared.pitch.store(hz.unwrap_or(0.0).to_bits(), Ordering::Relaxed);
    }

    /// Makes this block's outcomes visible to readers: the times at once, changed errors unless
    /// a reader holds them right now (then with a later block).
    pub fn publish(&mut self) {
        for (shared, times) in self.shared.times.iter().zip(&self.times) {
            shared.store(times);
        }
        if self.errors_changed {
            if let Ok(mut errors) = self.shared.errors.try_lock() {
                errors.clone_from(&self.errors);
                self.errors_changed = false;
            }
        }
    }
}

impl Drop for StatusWriter {
    /// The last block's errors are published even if a reader was busy then.
    fn drop(&mut self) {
        self.shared.errors.lock().unwrap_or_else(|e| e.into_inner()).clone_from(&self.errors);
    }
}
