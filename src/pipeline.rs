//! The product's stage chain, built in one place so the plugin and the CLI run the same one.
//! Constructed on the main thread; the stages run on the worker thread.

use crate::features::{ContentFeatures, ModelReader};
use crate::retrieval::{FeatureSink, IndexReader, RetrievalProblem, RetrievalStage};

/// The voice-conversion stages, with the handles that report on them.
pub struct VoiceStages {
    /// Content features blended with the index, handed to the sink.
    pub stage: RetrievalStage,
    /// Why the content model failed on the last block, if it did.
    pub model_problem: RetrievalProblem,
}

/// The voice-conversion stages for a host running at `sample_rate`: content features from the
/// chosen model (its left context set by [`StageControls`](crate::engine::StageControls)),
/// blended with the chosen index and handed to `sink`. The synthesizer that turns them into a voice does not exist yet, so the
/// audio passes through unchanged (with the engine's latency). Without a model or an index
/// those steps are skipped.
pub fn voice_stages(
    model: ModelReader,
    index: IndexReader,
    sample_rate: f64,
    sink: Box<dyn FeatureSink>,
) -> VoiceStages {
    let features = ContentFeatures::new(model, sample_rate);
    let model_problem = features.problem();
    VoiceStages { stage: RetrievalStage::new(Box::new(features), sink, index), model_problem }
}
