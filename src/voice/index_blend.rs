//! Step 3, the index blend, on the worker thread: a plain transform of a block of content
//! frames. Each frame is pulled towards its nearest training-voice vectors in the chosen index
//! by the index ratio, which follows the Index Ratio control frame by frame (never in one jump).
//! A newly loaded index is taken up between blocks; a features/index width mismatch leaves the
//! frames unblended and says why.

use super::Frames;
use crate::retrieval::{IndexReader, Retriever};

/// Frames the index ratio takes to cross its whole range (100 ms): automation moves it
/// smoothly, frame by frame, never in one jump.
const RATIO_RAMP_FRAMES: f32 = 5.0;

/// Frames per block the search buffers are first sized for (a 500 ms block has 25); larger
/// blocks grow them once, on the worker.
const FRAMES_PREPARED: usize = 32;

pub struct IndexBlend {
    index: IndexReader,
    retriever: Option<Retriever>,
    /// The feature width the retriever was sized for.
    dim: Option<usize>,
    /// Why retrieval is off although an index is loaded.
    mismatch: Option<String>,
    /// The ratio of the last frame; `None` at the start of a stream, where the control applies
    /// at once.
    ratio: Option<f32>,
    ratios: Vec<f32>,
}

impl IndexBlend {
    pub fn new(index: IndexReader) -> Self {
        IndexBlend { index, retriever: None, dim: None, mismatch: None, ratio: None, ratios: Vec::new() }
    }

    /// Takes up a newly published index, or a content model whose width changed, and sizes
    /// the search buffers for them.
    pub fn take_up(&mut self, dim: Option<usize>) {
        if !self.index.refresh() && dim == self.dim {
            return;
        }
        self.dim = dim;
        self.retriever = None;
        self.mismatch = None;
        let (Some(index), Some(dim)) = (self.index.get(), dim) else { return };
        if index.dim() == dim {
            self.retriever = Some(Retriever::new(index, FRAMES_PREPARED));
        } else {
            self.mismatch = Some(format!(
                "the content features have {dim} values per frame but the index holds {}-dimensional vectors; retrieval is off",
                index.dim()
            ));
        }
    }

    /// Offline, before a block: wait for an index still loading.
    pub fn settle(&mut self, wait: &crate::engine::FileWait) {
        self.index.settle(wait);
    }

    /// Blends `frames` into `out` with the ratio heading for `target` (0 ..= 1). Without an
    /// index, or when it cannot be used, `out` holds the frames unchanged.
    pub fn apply(&mut self, frames: &Frames, target: f32, out: &mut Frames) -> Result<(), String> {
        out.copy_from(frames);
        let target = if target.is_finite() { target.clamp(0.0, 1.0) } else { 0.0 };
        self.advance_ratios(frames.count(), target);
        if let Some(mismatch) = &self.mismatch {
            return Err(mismatch.clone());
        }
        let (Some(index), Some(retriever)) = (self.index.get(), self.retriever.as_mut()) else { return Ok(()) };
        if frames.count() == 0 {
            return Ok(());
        }
        if !retriever.fits_frames(frames.count()) {
            *retriever = Retriever::new(index, frames.count());
        }
        retriever.retrieve(index, frames.values(), &self.ratios, out.values_mut()).map_err(|error| {
            out.copy_from(frames);
            format!("the search failed, features pass unblended: {error}")
        })
    }

    /// The ratio each frame of the last block was blended with.
    pub fn ratios(&self) -> &[f32] {
        &self.ratios
    }

    fn advance_ratios(&mut self, frames: usize, target: f32) {
        self.ratios.clear();
        for _ in 0..frames {
            let step = 1.0 / RATIO_RAMP_FRAMES;
            let ratio = self.ratio.map_or(target, |ratio| ratio + (target - ratio).clamp(-step, step));
            self.ratio = Some(ratio);
            self.ratios.push(ratio);
        }
    }

    pub fn reset(&mut self) {
        self.ratio = None;
    }
}
