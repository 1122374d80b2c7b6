//! The product's stage chain, built in one place so the plugin and the CLI run the same one.
//! Constructed on the main thread; the stages run on the worker thread.

use crate::engine::Stage;
use crate::features::{ContentFeatures, ModelReader, DEFAULT_CONTEXT_FRAMES};
use crate::retrieval::{DiscardFeatures, IndexReader, RetrievalStage};

/// The voice-conversion stages for a host running at `sample_rate`: content features from the
/// chosen model, blended with the chosen index. The synthesizer that turns them into a voice
/// does not exist yet, so the blended features are discarded and the audio passes through
/// unchanged (with the engine's latency). Without a model or an index those steps are skipped.
pub fn voice_stages(model: ModelReader, index: IndexReader, sample_rate: f64) -> Box<dyn Stage> {
    let features = ContentFeatures::new(model, sample_rate, DEFAULT_CONTEXT_FRAMES);
    Box::new(RetrievalStage::new(Box::new(features), Box::new(DiscardFeatures), index))
}
