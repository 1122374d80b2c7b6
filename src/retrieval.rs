//! Retrieval: RVC's feature index. The file inspector checks a faiss index file byte by byte
//! before faiss may read it and [`FeatureIndex`] loads it (main or loader thread); the
//! [`Retriever`] searches whole blocks and applies the index-ratio blend (worker thread: the
//! voice pipeline's index-blend step); [`IndexSlot`] swaps indexes under running audio (main,
//! loader and worker threads); `build` trains new indexes and `tune` measures settings (CLI,
//! main thread). Never on the audio thread.

mod blend;
pub mod build;
mod faiss_index;
mod index_file;
mod kernels;
mod search;

use std::sync::{Arc, LazyLock};

use crate::engine::slot::{SharedFiles, Slot, SlotReader};

/// The feature index in use, loaded off the audio thread (see [`Slot`]).
pub type IndexSlot = Slot<FeatureIndex>;
/// The worker's handle on the [`IndexSlot`].
pub type IndexReader = SlotReader<FeatureIndex>;

/// Indexes loaded in this process, shared by every instance that loads the same file with the
/// same settings (searches only read an index).
static INDEXES: LazyLock<SharedFiles<FeatureIndex>> = LazyLock::new(SharedFiles::default);

/// A slot that loads indexes with `settings`.
pub fn index_slot(settings: SearchSettings) -> IndexSlot {
    Slot::new(Arc::new(move |path| {
        INDEXES.get_or_load(path, &format!("{settings:?}"), || {
            FeatureIndex::load(path, settings).map_err(|e| e.to_string())
        })
    }))
    .describing(|index| index.summary().to_string())
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
