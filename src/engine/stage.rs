//! The `Stage` trait: the contract between the block scheduler and the processing the worker
//! runs (today the identity stage; the feature, retrieval and synthesis stages plug in here).
//! Stages run on the **worker thread** only, so they may allocate, block and take their time.

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
