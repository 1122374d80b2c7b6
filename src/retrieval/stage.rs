//! The retrieval stage, on the worker thread: every block's content-feature frames (from a
//! [`FeatureSource`]) are blended with their nearest index vectors at the index ratio,
//! smoothed per frame, and handed to a [`FeatureSink`] — the synthesizer, once it exists.
//! Until then the audio passes through unchanged. A newly loaded index is taken up between
//! blocks; a features/index mismatch turns retrieval off with a reason instead of failing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::search::Retriever;
use super::IndexReader;
use crate::engine::{Stage, StageControls};
use crate::npy::Matrix;

/// Content-feature frames per second (HuBERT / ContentVec: hop 320 at 16 kHz).
pub const FRAME_RATE: f64 = 50.0;

/// Frames the index ratio takes to cross its whole range (100 ms): automation moves it
/// smoothly, frame by frame, never in one jump.
const RATIO_RAMP_FRAMES: f32 = 5.0;

/// Frames per block the search buffers are first sized for (a 500 ms block has 25); larger
/// blocks grow them once, on the worker.
const FRAMES_PREPARED: usize = 32;

/// Produces content features from the audio stream.
pub trait FeatureSource: Send {
    /// Values per frame; `None` while the source produces nothing (no content model loaded).
    fn dim(&self) -> Option<usize>;
    /// Appends to `frames` the frames (row-major) that this block of host-rate audio completes.
    fn frames_for(&mut self, block: &[f32], frames: &mut Vec<f32>);
    /// The worker has nothing to do (a chance to take up a new model).
    fn idle(&mut self) {}
    /// Offline, before each block: wait for a model still being loaded (see [`Stage::settle`]).
    fn settle(&mut self) {}
    /// New control values, effective from the next block on.
    fn set_controls(&mut self, _controls: &StageControls) {}
    /// The stream restarts.
    fn reset(&mut self) {}
}

/// Consumes blended features.
pub trait FeatureSink: Send {
    /// One block's blended frames and the index ratio each was blended with.
    fn accept(&mut self, frames: &[f32], ratios: &[f32]);
    /// The stream restarts.
    fn reset(&mut self) {}
}

/// Why retrieval is not applied although an index is loaded, for display.
pub type RetrievalProblem = Arc<Mutex<Option<String>>>;

/// Records the stage's current problem (`None`: all is well) and logs a new one once. Worker
/// thread; never waits for whoever is reading it.
pub(crate) fn report_problem(problem: &RetrievalProblem, new: Option<String>) {
    let Ok(mut current) = problem.try_lock() else { return };
    if *current != new {
        if let Some(text) = &new {
            tracing::warn!("RVC Stage: {text}");
        }
        *current = new;
    }
}

/// Where the worker's time goes, summed over blocks (for the CLI report and the demo).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes {
    pub blocks: u64,
    /// Resampling and the content model.
    pub features: Duration,
    /// Search and blend.
    pub retrieval: Duration,
}

/// A [`StageTimes`] shared with whoever reports it.
pub type SharedStageTimes = Arc<Mutex<StageTimes>>;

pub struct RetrievalStage {
    source: Box<dyn FeatureSource>,
    sink: Box<dyn FeatureSink>,
    index: IndexReader,
    retriever: Option<Retriever>,
    times: SharedStageTimes,
    /// The source's feature width the retriever was sized for.
    source_dim: Option<usize>,
    problem: RetrievalProblem,
    /// Where the ratio is heading and where it is.
    target: f32,
    ratio: f32,
    /// Whether a frame has been blended since the stream started (before that, a new ratio
    /// applies at once).
    started: bool,
    frames: Vec<f32>,
    ratios: Vec<f32>,
    blended: Vec<f32>,
}

impl RetrievalStage {
    pub fn new(source: Box<dyn FeatureSource>, sink: Box<dyn FeatureSink>, index: IndexReader) -> Self {
        let ratio = StageControls::default().index_ratio;
        RetrievalStage {
            source,
            sink,
            index,
            retriever: None,
            times: SharedStageTimes::default(),
            source_dim: None,
            problem: RetrievalProblem::default(),
            target: ratio,
            ratio,
            started: false,
            frames: Vec::new(),
            ratios: Vec::new(),
            blended: Vec::new(),
        }
    }

    /// Where this stage sums up its time.
    pub fn times(&self) -> SharedStageTimes {
        self.times.clone()
    }

    /// Where this stage reports a features/index mismatch or a failed search.
    pub fn problem(&self) -> RetrievalProblem {
        self.problem.clone()
    }

    /// Takes up a newly published index, or a source whose feature width changed, and sizes
    /// the search buffers for them.
    fn take_up_new_index(&mut self) {
        let source_dim = self.source.dim();
        if !self.index.refresh() && source_dim == self.source_dim {
            return;
        }
        self.source_dim = source_dim;
        self.retriever = None;
        self.report(None);
        let (Some(index), Some(dim)) = (self.index.get(), self.source.dim()) else { return };
        if index.dim() == dim {
            self.retriever = Some(Retriever::new(index, FRAMES_PREPARED));
        } else {
            self.report(Some(format!(
                "the content features have {dim} values per frame but the index holds {}-dimensional vectors; retrieval is off",
                index.dim()
            )));
        }
    }

    fn report(&self, problem: Option<String>) {
        report_problem(&self.problem, problem);
    }

    fn advance_ratios(&mut self, frames: usize) {
        self.ratios.clear();
        for _ in 0..frames {
            if self.started {
                let step = (self.target - self.ratio).clamp(-1.0 / RATIO_RAMP_FRAMES, 1.0 / RATIO_RAMP_FRAMES);
                self.ratio += step;
            } else {
                self.ratio = self.target;
                self.started = true;
            }
            self.ratios.push(self.ratio);
        }
    }

    fn blend(&mut self, dim: usize) {
        self.blended.clear();
        self.blended.extend_from_slice(&self.frames);
        let (Some(index), Some(retriever)) = (self.index.get(), self.retriever.as_mut()) else { return };
        let count = self.frames.len() / dim;
        if !retriever.fits_frames(count) {
            *retriever = Retriever::new(index, count);
        }
        if let Err(error) = retriever.retrieve(index, &self.frames, &self.ratios, &mut self.blended) {
            self.blended.copy_from_slice(&self.frames);
            self.report(Some(format!("retrieval failed, features pass unchanged: {error}")));
        }
    }
}

impl Stage for RetrievalStage {
    fn process(&mut self, input: &[f32], output: &mut [f32]) {
        output.copy_from_slice(input);
        // The source sees every block (it keeps its own stream position), even while it has
        // nothing to give.
        let start = Instant::now();
        self.frames.clear();
        self.source.frames_for(input, &mut self.frames);
        let features = start.elapsed();
        self.take_up_new_index();
        if let Some(dim) = self.source.dim().filter(|d| *d > 0) {
            self.advance_ratios(self.frames.len() / dim);
            self.blend(dim);
            self.sink.accept(&self.blended, &self.ratios);
        }
        if let Ok(mut times) = self.times.try_lock() {
            times.blocks += 1;
            times.features += features;
            times.retrieval += start.elapsed() - features;
        }
    }

    fn reset(&mut self) {
        self.source.reset();
        self.sink.reset();
        self.ratio = self.target;
        self.started = false;
    }

    fn set_controls(&mut self, controls: StageControls) {
        self.source.set_controls(&controls);
        self.target = if controls.index_ratio.is_finite() { controls.index_ratio.clamp(0.0, 1.0) } else { 0.0 };
    }

    fn idle(&mut self) {
        self.source.idle();
        self.take_up_new_index();
    }

    fn settle(&mut self) {
        self.source.settle();
        self.index.settle();
    }
}

/// The plugin's sink until the synthesizer exists: blended features go nowhere.
#[derive(Debug, Default)]
pub struct DiscardFeatures;

impl FeatureSink for DiscardFeatures {
    fn accept(&mut self, _frames: &[f32], _ratios: &[f32]) {}
}

/// Keeps every blended frame of the stream since the last reset: the output of
/// `rvc-stage features`, and the plugin's feature dump. Grows without bound (150 KB per second
/// of 768-value frames), so it is for tools and diagnostics, not a live session.
#[derive(Debug, Clone, Default)]
pub struct FeatureRecorder(Arc<Mutex<Matrix>>);

impl FeatureRecorder {
    /// The frames recorded so far (`cols` is 0 before the first frame), leaving it empty.
    pub fn take(&self) -> Matrix {
        let mut recorded = self.0.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *recorded)
    }
}

impl FeatureSink for FeatureRecorder {
    fn accept(&mut self, frames: &[f32], ratios: &[f32]) {
        if ratios.is_empty() {
            return;
        }
        let mut recorded = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let dim = frames.len() / ratios.len();
        if recorded.cols != dim {
            // A model of another width was taken up: the recording starts over with it.
            *recorded = Matrix { rows: 0, cols: dim, data: Vec::new() };
        }
        recorded.rows += ratios.len();
        recorded.data.extend_from_slice(frames);
    }

    fn reset(&mut self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Matrix::default();
    }
}
