//! Retrieval: RVC's feature index. The file inspector checks a faiss index file byte by byte
//! before faiss may read it and [`FeatureIndex`] loads it (main or loader thread); the
//! [`Retriever`] searches whole blocks and applies the index-ratio blend (worker thread);
//! [`IndexSlot`] swaps indexes under running audio (main, loader and worker threads) and
//! [`RetrievalStage`] runs it all per block (worker thread);
//! `build` trains new indexes and `tune` measures settings (CLI, main thread). Never on the
//! audio thread.

mod blend;
pub mod build;
mod faiss_index;
mod index_file;
mod kernels;
mod search;
mod stage;

use std::sync::Arc;

use crate::engine::slot::{Slot, SlotReader};

/// The feature index in use, loaded off the audio thread (see [`Slot`]).
pub type IndexSlot = Slot<FeatureIndex>;
/// The worker's handle on the [`IndexSlot`].
pub type IndexReader = SlotReader<FeatureIndex>;

/// A slot that loads indexes with `settings`.
pub fn index_slot(settings: SearchSettings) -> IndexSlot {
    Slot::new(Arc::new(move |path| FeatureIndex::load(path, settings).map_err(|e| e.to_string())))
}

impl Default for IndexSlot {
    /// Loads with the default search settings.
    fn default() -> Self {
        index_slot(SearchSettings::default())
    }
}
pub mod tune;

pub use blend::{blend_frame, Neighbours};
pub use faiss_index::{FeatureIndex, RetrievalError, SearchScratch, SearchSettings, DEFAULT_K_FACTOR};
pub use index_file::{inspect, IndexFileError, IndexLayout, IndexSummary, Metric};
pub use search::Retriever;
pub(crate) use stage::report_problem;
pub use stage::{
    DiscardFeatures, FeatureRecorder, FeatureSink, FeatureSource, RetrievalProblem, RetrievalStage, SharedStageTimes,
    StageTimes, FRAME_RATE,
};
