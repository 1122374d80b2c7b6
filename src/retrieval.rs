//! Retrieval: RVC's feature index. So far the file inspector, which checks a faiss index file
//! byte by byte before faiss is allowed to read it. Runs wherever an index is loaded — the
//! main thread or a loader thread, never the audio thread.

mod index_file;

pub use index_file::{inspect, IndexFileError, IndexLayout, IndexSummary, Metric};
