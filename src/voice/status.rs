//! The voice pipeline's status board: for every step, the file it reads (content model,
//! index), the last error in words, and its time per block. The one place problems are
//! reported: the worker records each step's outcome, logs an error when it appears or changes,
//! and publishes the board after every block without waiting (when a reader holds the lock, the
//! update comes with the next block). Displays — the CLI's report, a future editor — read
//! snapshots from any thread.

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

/// One step's outcome as the worker last recorded it.
#[derive(Debug, Clone, Default, PartialEq)]
struct StepReport {
    /// Why the step did not do its work on the last block; `None` when it did.
    error: Option<String>,
    times: StepTimes,
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
    reports: Mutex<[StepReport; 6]>,
    files: [Option<SlotWatch>; 6],
}

impl VoiceStatus {
    /// Every step's status, in pipeline order.
    pub fn snapshot(&self) -> Vec<StepStatus> {
        let reports = self.reports.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Step::ALL
            .iter()
            .zip(reports)
            .zip(&self.files)
            .map(|((step, report), file)| StepStatus {
                step: *step,
                file: file.as_ref().map(SlotWatch::status),
                error: report.error,
                times: report.times,
            })
            .collect()
    }

    /// The errors of the last block, each named by its step.
    pub fn errors(&self) -> Vec<String> {
        self.snapshot().into_iter().filter_map(|s| s.error.map(|e| format!("{}: {e}", s.step.name()))).collect()
    }
}

/// The worker's side of the board: outcomes are recorded here and published once per block.
pub struct StatusWriter {
    shared: Arc<VoiceStatus>,
    local: [StepReport; 6],
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
        let shared = Arc::new(VoiceStatus { reports: Mutex::default(), files });
        StatusWriter { shared, local: Default::default() }
    }

    pub fn board(&self) -> Arc<VoiceStatus> {
        self.shared.clone()
    }

    /// Runs one step, timing it and recording its outcome; returns whether it succeeded.
    pub fn run(&mut self, step: Step, work: impl FnOnce() -> Result<(), String>) -> bool {
        let started = Instant::now();
        let outcome = work();
        let report = &mut self.local[step as usize];
        let took = started.elapsed();
        report.times = StepTimes { blocks: report.times.blocks + 1, last: took, total: report.times.total + took };
        let error = outcome.err();
        if error.is_some() && error != report.error {
            tracing::warn!("RVC Stage, {}: {}", step.name(), error.as_deref().unwrap_or_default());
        }
        report.error = error;
        report.error.is_none()
    }

    /// Makes this block's outcomes visible to readers, unless one is reading right now.
    pub fn publish(&self) {
        if let Ok(mut reports) = self.shared.reports.try_lock() {
            reports.clone_from(&self.local);
        }
    }
}

impl Drop for StatusWriter {
    /// The last block's outcomes are published even if a reader was busy then.
    fn drop(&mut self) {
        self.shared.reports.lock().unwrap_or_else(|e| e.into_inner()).clone_from(&self.local);
    }
}
