//! Step 2a, content features, on the worker thread: for every block the content model runs
//! over the new 16 kHz samples plus a limited left context, and only the frames that became
//! complete are kept. RVC recomputes 2.5 s of context on every block; here the context is a
//! control (default 1 s). Frame `f` covers 16 kHz samples `[320 f, 320 f + 400)` of the stream,
//! whatever the block size: windows start on a frame boundary so the model's frames line up
//! with the stream's. A model cut after its conv front end runs the front end over the new
//! samples only and the transformer over cached front-end frames.

use super::to_model_rate::Audio16k;
use super::Frames;
use crate::features::{frames_for, ModelReader, HOP};

/// Left context given to the model for each block, by default (1 s at 16 kHz, 50 frames).
pub const DEFAULT_CONTEXT_FRAMES: usize = 50;

pub struct ContentFeatures {
    /// The model in use, taken up between blocks when the user picks another.
    model: ModelReader,
    /// Frames handed out since the stream started (the next frame's number).
    produced: u64,
    /// Front-end frames (frame-major) from `conv_start` on, for split models: the context the
    /// transformer needs, computed once.
    conv: Vec<f32>,
    conv_start: u64,
    /// Whether the model in use runs cut in two (decides what audio the next block needs).
    split: bool,
    /// Values per frame of the model in use (read once, when it is taken up).
    dim: Option<usize>,
    /// The context of the last block, which decides what audio the next one needs.
    context_frames: usize,
    scratch: Vec<f32>,
}

impl ContentFeatures {
    pub fn new(model: ModelReader) -> Self {
        ContentFeatures {
            model,
            produced: 0,
            conv: Vec::new(),
            conv_start: 0,
            split: false,
            dim: None,
            context_frames: DEFAULT_CONTEXT_FRAMES,
            scratch: Vec::new(),
        }
    }

    /// Values per frame of the model in use.
    pub fn dim(&self) -> Option<usize> {
        self.dim
    }

    /// Takes up a newly chosen model; its frames start from the first one whose audio is still
    /// held, with a fresh front-end cache.
    pub fn take_up_model(&mut self, audio: &Audio16k) {
        if self.model.refresh() {
            self.dim = self.model.get().map(|model| model.lock().unwrap_or_else(|e| e.into_inner()).dim());
            self.produced = self.produced.max(audio.start().div_ceil(HOP as u64));
            self.conv.clear();
            self.conv_start = self.produced;
        }
    }

    /// Offline, before a block: wait for a model still loading.
    pub fn settle(&mut self, wait: &crate::engine::FileWait) {
        self.model.settle(wait);
    }

    /// Computes the frames `audio` completed with `context_frames` of left context and puts
    /// them in `out` (none without a model). When the model fails, those frames are skipped and
    /// the next block starts a fresh context, so a failure never leaves a half-updated cache
    /// nor holds on to audio.
    pub fn frames(&mut self, audio: &Audio16k, context_frames: usize, out: &mut Frames) -> Result<(), String> {
        out.clear(self.produced);
        self.context_frames = context_frames;
        let complete = frames_for(audio.end() as usize) as u64;
        if self.model.get().is_none() || complete <= self.produced {
            return Ok(());
        }
        let computed = self.compute(audio, complete, out);
        if computed.is_err() {
            self.conv.clear();
            self.conv_start = complete;
        }
        self.produced = complete;
        self.trim_conv();
        computed
    }

    /// The frames `audio` completed, skipped without running the model (a silent block): none
    /// are computed, and the next block starts a fresh context. Returns the first skipped
    /// frame and the count.
    pub fn skip(&mut self, audio: &Audio16k, out: &mut Frames) -> (u64, u64) {
        out.clear(self.produced);
        let complete = (frames_for(audio.end() as usize) as u64).max(self.produced);
        let skipped = (self.produced, complete - self.produced);
        self.produced = complete;
        self.conv.clear();
        self.conv_start = complete;
        skipped
    }

    /// Runs the model for the frames up to `complete`.
    fn compute(&mut self, audio: &Audio16k, complete: u64, out: &mut Frames) -> Result<(), String> {
        let model = self.model.get().expect("checked by the caller");
        let mut model = model.lock().unwrap_or_else(|e| e.into_inner());
        let dim = model.dim();
        self.scratch.clear();
        let context_start = self.produced.saturating_sub(self.context_frames as u64);
        self.split = model.is_split();
        let (first, computed) = if self.split {
            let new = audio.since(self.produced * HOP as u64);
            let (_, channels) = model.front_end(new, &mut self.conv).map_err(|e| e.to_string())?;
            let first = context_start.max(self.conv_start);
            let window = &self.conv[(first - self.conv_start) as usize * channels..];
            (first, model.transformer(window, &mut self.scratch).map_err(|e| e.to_string())?)
        } else {
            let first = context_start.max(audio.start().div_ceil(HOP as u64));
            (first, model.run(audio.since(first * HOP as u64), &mut self.scratch).map_err(|e| e.to_string())?)
        };
        let wanted = (complete - first) as usize;
        if computed < wanted {
            return Err(format!("the model gave {computed} frames where {wanted} were due"));
        }
        let skip = (self.produced - first) as usize;
        out.set(self.produced, dim, &self.scratch[skip * dim..wanted * dim]);
        Ok(())
    }

    /// The earliest 16 kHz sample the next block needs: the next frame's window (split model)
    /// or the context's (whole model). `None` without a model.
    pub fn keep_from(&self) -> Option<u64> {
        self.model.get()?;
        let first = if self.split { self.produced } else { self.produced.saturating_sub(self.context_frames as u64) };
        Some(first * HOP as u64)
    }

    /// Keeps only the context's front-end frames.
    fn trim_conv(&mut self) {
        let context_start = self.produced.saturating_sub(self.context_frames as u64);
        if self.conv_start < context_start && !self.conv.is_empty() {
            let channels = self.conv.len() / (self.produced - self.conv_start) as usize;
            self.conv.drain(..(context_start - self.conv_start) as usize * channels);
            self.conv_start = context_start;
        }
    }

    pub fn reset(&mut self) {
        self.produced = 0;
        self.conv.clear();
        self.conv_start = 0;
    }
}
