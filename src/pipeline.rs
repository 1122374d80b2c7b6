//! The product's stage chain, built in one place so the plugin and the CLI run the same one.
//! Constructed on the main thread; the stages run on the worker thread.

use crate::engine::Stage;
use crate::retrieval::{DiscardFeatures, IndexReader, NoFeatures, RetrievalStage};

/// The voice-conversion stages. Until the content-feature and synthesizer stages exist, the
/// retrieval stage has no frames to blend and the audio passes through unchanged; the index is
/// loaded, taken up and swapped all the same, so that part of the path runs for real.
pub fn voice_stages(index: IndexReader) -> Box<dyn Stage> {
    Box::new(RetrievalStage::new(Box::new(NoFeatures), Box::new(DiscardFeatures), index))
}
