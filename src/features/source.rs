//! Content features for the retrieval stage, block by block, on the worker thread: host audio
//! is resampled to 16 kHz, and for every block the model runs over the new samples plus a
//! limited left context, keeping only the frames that became complete. RVC recomputes 2.5 s of
//! context on every block; here the context is a setting (default 1 s). Frame `f` covers 16 kHz
//! samples `[320 f, 320 f + 400)` of the stream, whatever the block size: windows start on a
//! frame boundary so the model's frames line up with the stream's.

use super::model::{frames_for, HOP};
use super::resample::ToModelRate;
use super::ModelReader;
use crate::engine::StageControls;
use crate::retrieval::{report_problem, FeatureSource, RetrievalProblem};

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
    /// Front-end frames (frame-major) from `conv_start` on, for split models: the context the
    /// transformer needs, computed once.
    conv: Vec<f32>,
    conv_start: u64,
    /// Whether the model in use runs cut in two (decides what history the next block needs).
    split: bool,
    scratch: Vec<f32>,
    /// The last failure (cleared by a block that works), for display; frames are skipped
    /// while the model fails.
    problem: RetrievalProblem,
}

impl ContentFeatures {
    /// Features of audio at `host_rate`, with the default left context until the controls say
    /// otherwise.
    pub fn new(model: ModelReader, host_rate: f64) -> Self {
        ContentFeatures {
            model,
            host_rate,
            context_frames: DEFAULT_CONTEXT_FRAMES,
            resampler: None,
            history: Vec::new(),
            history_start: 0,
            produced: 0,
            conv: Vec::new(),
            conv_start: 0,
            split: false,
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

    /// Computes the frames that became complete and appends them. A split model runs its
    /// front end over the new samples only and the transformer over the cached front-end
    /// frames of the context; a whole model runs over context + new samples.
    fn new_frames(&mut self, frames: &mut Vec<f32>) -> Result<(), String> {
        let total = self.history_start + self.history.len() as u64;
        let complete = frames_for(total as usize) as u64;
        let Some(model) = self.model.get() else { return Ok(()) };
        if complete <= self.produced {
            return Ok(());
        }
        let mut model = model.lock().unwrap_or_else(|e| e.into_inner());
        let dim = model.dim();
        self.scratch.clear();
        let context_start = self.produced.saturating_sub(self.context_frames as u64);
        self.split = model.is_split();
        let (first, computed) = if self.split {
            let start = (self.produced * HOP as u64 - self.history_start) as usize;
            model.front_end(&self.history[start..], &mut self.conv).map_err(|e| e.to_string())?;
            let channels = self.conv.len() / (complete - self.conv_start).max(1) as usize;
            let first = context_start.max(self.conv_start);
            let window = &self.conv[(first - self.conv_start) as usize * channels..];
            (first, model.transformer(window, &mut self.scratch).map_err(|e| e.to_string())?)
        } else {
            let first = context_start.max(self.history_start / HOP as u64);
            let start = (first * HOP as u64 - self.history_start) as usize;
            (first, model.run(&self.history[start..], &mut self.scratch).map_err(|e| e.to_string())?)
        };
        drop(model);
        let wanted = (complete - first) as usize;
        if computed < wanted {
            return Err(format!("the model gave {computed} frames where {wanted} were due"));
        }
        let skip = (self.produced - first) as usize;
        frames.extend_from_slice(&self.scratch[skip * dim..wanted * dim]);
        self.produced = complete;
        self.trim();
        Ok(())
    }

    /// Takes up a newly chosen model; its front end's frames start from here.
    fn take_up_model(&mut self) {
        if self.model.refresh() {
            self.conv.clear();
            self.conv_start = self.produced;
        }
    }

    /// Keeps only what the next block needs: the context's front-end frames and the samples
    /// from the next frame on (split model), or the context's samples (whole model).
    fn trim(&mut self) {
        let context_start = self.produced.saturating_sub(self.context_frames as u64);
        if self.conv_start < context_start && !self.conv.is_empty() {
            let channels = self.conv.len() / (self.produced - self.conv_start) as usize;
            self.conv.drain(..(context_start - self.conv_start) as usize * channels);
            self.conv_start = context_start;
        }
        let keep_from = if self.split { self.produced } else { context_start } * HOP as u64;
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
        self.take_up_model();
        if self.model.get().is_none() {
            // Nothing to compute: no resampling either. A model chosen later starts a fresh
            // feature stream.
            self.reset();
            return;
        }
        let result = self.resample(block).and_then(|()| self.new_frames(frames));
        report_problem(&self.problem, result.err().map(|e| format!("content features failed: {e}")));
    }

    fn idle(&mut self) {
        self.take_up_model();
    }

    fn settle(&mut self) {
        self.model.settle();
    }

    /// A new context length applies from the next block; a longer one fills up as audio comes.
    fn set_controls(&mut self, controls: &StageControls) {
        self.context_frames = controls.context_frames;
    }

    fn reset(&mut self) {
        if let Some(resampler) = &mut self.resampler {
            resampler.reset();
        }
        self.history.clear();
        self.history_start = 0;
        self.produced = 0;
        self.conv.clear();
        self.conv_start = 0;
    }
}
