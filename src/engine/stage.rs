//! The `Stage` trait: the contract between the block scheduler and the processing the worker
//! runs (the voice stages of `pipeline`, or the identity stage that makes latency measurable).
//! Stages run on the **worker thread** only, so they may allocate, block and take their time.

/// Host-automated values that stages read. The audio thread sends them with the stream
/// position they take effect at; the worker hands them over between blocks, so an offline
/// render applies them at the same block every time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageControls {
    /// How far content features are pulled towards the index's voice, 0 ..= 1 (RVC's
    /// `index_rate`).
    pub index_ratio: f32,
    /// Left context the content model sees for each block, in 20 ms content frames (RVC
    /// recomputes 2.5 s, 125 frames, every block).
    pub context_frames: usize,
}

impl Default for StageControls {
    fn default() -> Self {
        // RVC's own default index rate.
        Self { index_ratio: 0.75, context_frames: crate::features::DEFAULT_CONTEXT_FRAMES }
    }
}

/// One processing step over fixed-size blocks of mono host-rate audio.
pub trait Stage: Send {
    /// Algorithmic delay in samples between a block's input and its output (e.g. resampling
    /// filters). Must stay constant for the stage's lifetime: it is part of the reported latency.
    fn latency_samples(&self) -> usize {
        0
    }

    /// Processes one block. `input` and `output` have the engine's block length. Blocks arrive
    /// in stream order without gaps, except across [`reset`](Self::reset).
    fn process(&mut self, input: &[f32], output: &mut [f32]);

    /// Forgets all history: the next block starts a new stream.
    fn reset(&mut self) {}

    /// New control values, effective from the next block on.
    fn set_controls(&mut self, _controls: StageControls) {}

    /// Offline renders only, before each block: waits for resources still being loaded, so
    /// what a bounce renders does not depend on how fast files load.
    fn settle(&mut self) {}

    /// Called when the worker has nothing to do, between blocks: a chance to take up new
    /// resources (e.g. a newly loaded index) while no audio flows.
    fn idle(&mut self) {}
}

/// Passes audio through unchanged: the stand-in until the neural stages exist, and the
/// reference that makes latency measurable exactly.
#[derive(Debug, Default, Clone, Copy)]
pub struct Identity;

impl Stage for Identity {
    fn process(&mut self, input: &[f32], output: &mut [f32]) {
        output.copy_from_slice(input);
    }
}
