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
mod slot;
mod stage;
pub mod tune;

pub use blend::{blend_frame, Neighbours};
pub use faiss_index::{FeatureIndex, RetrievalError, SearchScratch, SearchSettings, DEFAULT_K_FACTOR};
pub use index_file::{inspect, IndexFileError, IndexLayout, IndexSummary, Metric};
pub use search::Retriever;
pub use slot::{IndexReader, IndexSlot, IndexStatus};
pub use stage::{
    DiscardFeatures, FeatureSink, FeatureSource, NoFeatures, RetrievalProblem, RetrievalStage, FRAME_RATE,
};
