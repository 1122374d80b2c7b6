//! Step 2b, pitch, on the worker thread: the fundamental frequency of every 10 ms of the voice,
//! read from the same 16 kHz buffer as the content features, by the built-in estimator
//! ([`PitchTracker`]), transposed by the Transpose and Fine Tune controls. Frame `k` is at 16 kHz
//! sample `160 k` (two pitch frames per content frame); its f0 is known once the audio up to
//! `160 k + 712` has arrived and [`LOOKAHEAD`] more frames were analysed, whatever the block
//! size. RMVPE models are not supported yet (issue 10).

use super::to_model_rate::Audio16k;
use crate::pitch::{transpose, PitchTracker, LOOKAHEAD, TRACKER_FRAME, WINDOW_BEFORE};

/// Samples between pitch frames at 16 kHz (100 frames per second).
pub const PITCH_HOP: usize = 160;

/// The f0 of consecutive pitch frames, the first of them frame number `first` of the stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PitchFrames {
    first: u64,
    f0: Vec<f32>,
}

impl PitchFrames {
    pub fn first(&self) -> u64 {
        self.first
    }

    /// Hz per frame, 0 = unvoiced.
    pub fn f0(&self) -> &[f32] {
        &self.f0
    }
}

pub struct Pitch {
    tracker: PitchTracker,
    /// The next frame to analyse.
    next: u64,
    /// Whether the last block was tracked (nothing is computed while nobody reads f0).
    active: bool,
    window: Vec<f32>,
}

impl Default for Pitch {
    fn default() -> Self {
        Pitch { tracker: PitchTracker::new(), next: 0, active: false, window: vec![0.0; TRACKER_FRAME] }
    }
}

impl Pitch {
    /// The f0 of the frames decided with what `audio` completed, shifted by `semitones`. With
    /// `wanted` false (nothing reads f0 yet: the synthesizer does not exist) nothing is
    /// computed; tracking starts afresh, at the audio still to come, when it is wanted again.
    pub fn track(
        &mut self,
        audio: &Audio16k,
        semitones: f32,
        wanted: bool,
        out: &mut PitchFrames,
    ) -> Result<(), String> {
        if wanted && !self.active {
            self.tracker.reset();
            // The first frame whose window is still held (before the stream's start: silence).
            self.next = match audio.start() {
                0 => 0,
                start => (start + WINDOW_BEFORE as u64).div_ceil(PITCH_HOP as u64),
            };
        }
        self.active = wanted;
        out.first = self.next.saturating_sub(LOOKAHEAD as u64);
        out.f0.clear();
        if !wanted {
            return Ok(());
        }
        while self.window_start(self.next) + TRACKER_FRAME as i64 <= audio.end() as i64 {
            self.fill_window(audio);
            if let Some(f0) = self.tracker.push(&self.window) {
                out.f0.push(f0);
            }
            self.next += 1;
        }
        transpose(&mut out.f0, semitones);
        Ok(())
    }

    /// Stream position of frame `frame`'s first sample (before the stream start for the
    /// first frames: silence there).
    fn window_start(&self, frame: u64) -> i64 {
        (frame * PITCH_HOP as u64) as i64 - WINDOW_BEFORE as i64
    }

    fn fill_window(&mut self, audio: &Audio16k) {
        let start = self.window_start(self.next);
        let silent = (-start).clamp(0, TRACKER_FRAME as i64) as usize;
        self.window[..silent].fill(0.0);
        let samples = audio.since(start.max(0) as u64);
        self.window[silent..].copy_from_slice(&samples[..TRACKER_FRAME - silent]);
    }

    /// The earliest 16 kHz sample the next block needs: the next frame's window, while
    /// tracking.
    pub fn keep_from(&self) -> Option<u64> {
        self.active.then(|| self.window_start(self.next).max(0) as u64)
    }

    pub fn reset(&mut self) {
        self.tracker.reset();
        self.next = 0;
        self.active = false;
    }
}
