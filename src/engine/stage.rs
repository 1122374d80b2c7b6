//! The `Stage` trait: the contract between the block scheduler and the processing the worker
//! runs (the voice pipeline of [`crate::voice`], or the identity stage that makes latency
//! measurable). Stages run on the **worker thread** only, so they may allocate, block and take
//! their time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// One processing step over fixed-size blocks of mono host-rate audio.
pub trait Stage: Send {
    /// Host-automated values the stage reads (the voice pipeline's index ratio, its context).
    /// The engine carries them without looking inside: the audio thread samples them at the
    /// first sample of every worker block and sends them with that block, so what a block
    /// sees never depends on how the host cut its buffers.
    type Controls: StageControls;

    /// Algorithmic delay in samples between a block's input and its output. Known before the
    /// stage runs (from the host rate and block length it was built for) and constant for its
    /// lifetime: it is part of the reported latency.
    fn latency_samples(&self) -> usize {
        0
    }

    /// Processes one block. `input` and `output` have the engine's block length. Blocks arrive
    /// in stream order without gaps, except across [`reset`](Self::reset). A block the stage
    /// could not make (it has said why, e.g. in its status) passes dry: the output crossfades
    /// to the delayed dry signal around it, as in an under-run.
    fn process(&mut self, input: &[f32], controls: &Self::Controls, output: &mut [f32]) -> Result<(), BlockFailed>;

    /// Forgets all history: the next block starts a new stream.
    fn reset(&mut self) {}

    /// Offline renders only, before each block: waits for resources still being loaded, so
    /// what a bounce renders does not depend on how fast files load. Must return once
    /// [`FileWait::is_over`] says so.
    fn settle(&mut self, _wait: &FileWait) {}

    /// Called when the worker has nothing to do, between blocks: a chance to take up new
    /// resources (e.g. a newly loaded index) while no audio flows.
    fn idle(&mut self) {}

    /// What lightens this stage's load, for the log line that reports late output.
    fn lag_advice(&self) -> &'static str {
        "a longer Block Size lightens it"
    }
}

/// What stage controls must be: small values the audio thread copies without allocating.
pub trait StageControls: Copy + Default + Send + 'static {}

impl<T: Copy + Default + Send + 'static> StageControls for T {}

/// A block the stage could not make: it passes dry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockFailed;

/// How long an offline render may still wait for files being loaded: one deadline shared by
/// every file a block waits for, cut short when the worker is told to stop (deactivation must
/// not wait for a slow disk).
pub struct FileWait<'a> {
    deadline: Instant,
    stop: &'a AtomicBool,
}

impl<'a> FileWait<'a> {
    pub fn new(deadline: Instant, stop: &'a AtomicBool) -> Self {
        Self { deadline, stop }
    }

    /// Whether waiting must end now.
    pub fn is_over(&self) -> bool {
        self.stop.load(Ordering::Acquire) || Instant::now() >= self.deadline
    }
}

/// Passes audio through unchanged: the reference that makes latency measurable exactly.
#[derive(Debug, Default, Clone, Copy)]
pub struct Identity;

impl Stage for Identity {
    type Controls = ();

    fn process(&mut self, input: &[f32], _controls: &(), output: &mut [f32]) -> Result<(), BlockFailed> {
        output.copy_from_slice(input);
        Ok(())
    }
}
