//! Retrieval: RVC's feature index. So far the file inspector, which checks a faiss index file
//! byte by byte before faiss is allowed to read it (wherever an index is loaded: main or
//! loader thread), and the index-ratio blend applied to search results (worker thread). The
//! search itself is not built yet. Never on the audio thread.

mod blend;
mod index_file;

pub use blend::{blend_frame, Neighbours};
pub use index_file::{inspect, IndexFileError, IndexLayout, IndexSummary, Metric};
