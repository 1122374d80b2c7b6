//! Content features for the retrieval stage, block by block, on the worker thread: host audio
//! is resampled to 16 kHz, and for every block the model runs over the new samples plus a
//! limited left context, keeping only the frames that became complete. RVC recomputes 2.5 s of
//! context on every block; here the context is a setting (default 1 s). Frame `f` covers 16 kHz
//! samples `[320 f, 320 f + 400)` of the stream, whatever the block size: windows start on a
//! frame boundary so the model's frames line up with the stream's.

use super::model::{frames_for, HOP};
use super::resample::ToModelRate;
use super::ModelReader;
use crate::retrieval::{FeatureSource, RetrievalProblem};

/// Left context given to the model for each block, by default (1 s at 16 kHz, 50 frames).
pub const DEFAULT_CONTEXT_FRAMES: usize = 50;

pub struct ContentFeatures {
    /// The model in use, taken up between blocks when the user picks another.
    model: ModelReader,
    host_rate: f64,
    context_frames: usize,
    /// Created on the first block, when the block length is known.
    resampler: Option<ToModelRate>,
    /// 16 kHz samples from `history_start` on.
    history: Vec<f32>,
    history_start: u64,
    /// Frames handed out since the stream started.
    produced: u64,
    scratch: Vec<f32>,
    /// The last failure (cleared by a block that works), for display; frames are skipped
    /// while the model fails.
    problem: RetrievalProblem,
}

impl ContentFeatures {
    pub fn new(model: ModelReader, host_rate: f64, context_frames: usize) -> Self {
        ContentFeatures {
            model,
            host_rate,
            context_frames,
            resampler: None,
            history: Vec::new(),
            history_start: 0,
            produced: 0,
            scratch: Vec::new(),
            problem: RetrievalProblem::default(),
        }
    }

    /// Where a failing model run is reported.
    pub fn problem(&self) -> RetrievalProblem {
        self.problem.clone()
    }

    fn resample(&mut self, block: &[f32]) -> Result<(), String> {
        if self.resampler.is_none() {
            self.resampler = Some(ToModelRate::new(self.host_rate, block.len())?);
        }
        let resampler = self.resampler.as_mut().expect("created above");
        resampler.push(block, &mut self.history)
    }

    /// Runs the model over the new samples plus context; appends the new frames.
    fn new_frames(&mut self, frames: &mut Vec<f32>) -> Result<(), String> {
        let total = self.history_start + self.history.len() as u64;
        let complete = frames_for(total as usize) as u64;
        let Some(model) = self.model.get() else { return Ok(()) };
        if complete <= self.produced {
            return Ok(());
        }
        let first = self.produced.saturating_sub(self.context_frames as u64);
        let start = (first * HOP as u64 - self.history_start) as usize;
        self.scratch.clear();
        let mut model = model.lock().unwrap_or_else(|e| e.into_inner());
        let computed = model.run(&self.history[start..], &mut self.scratch).map_err(|e| e.to_string())?;
        let dim = model.dim();
        drop(model);
        let wanted = (complete - first) as usize;
        if computed < wanted {
            return Err(format!("the model gave {computed} frames where {wanted} were due"));
        }
        let skip = (self.produced - first) as usize;
        frames.extend_from_slice(&self.scratch[skip * dim..wanted * dim]);
        self.produced = complete;
        self.trim_history();
        Ok(())
    }

    /// Keeps only what the next block's context needs.
    fn trim_history(&mut self) {
        let keep_from = self.produced.saturating_sub(self.context_frames as u64) * HOP as u64;
        let drop = (keep_from.saturating_sub(self.history_start) as usize).min(self.history.len());
        self.history.drain(..drop);
        self.history_start += drop as u64;
    }
}

impl FeatureSource for ContentFeatures {
    fn dim(&self) -> Option<usize> {
        self.model.get().map(|model| model.lock().unwrap_or_else(|e| e.into_inner()).dim())
    }

    fn frames_for(&mut self, block: &[f32], frames: &mut Vec<f32>) {
        self.model.refresh();
        if self.model.get().is_none() {
            // Nothing to compute: no resampling either. A model chosen later starts a fresh
            // feature stream.
            self.reset();
            return;
        }
        let result = self.resample(block).and_then(|()| self.new_frames(frames));
        if let Ok(mut problem) = self.problem.try_lock() {
            *problem = result.err().map(|e| format!("content features failed: {e}"));
        }
    }

    fn idle(&mut self) {
        self.model.refresh();
    }

    fn reset(&mut self) {
        if let Some(resampler) = &mut self.resampler {
            resampler.reset();
        }
        self.history.clear();
        self.history_start = 0;
        self.produced = 0;
    }
}
