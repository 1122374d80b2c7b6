//! Step 2b, pitch, on the worker thread: the fundamental frequency of every 10 ms of the voice,
//! read from the same 16 kHz buffer as the content features, transposed by the Transpose and
//! Fine Tune controls. Frame `k` is at 16 kHz sample `160 k` (two pitch frames per content
//! frame). The built-in estimator ([`PitchTracker`]) knows frame `k` once the audio up to
//! `160 k + 712` has arrived and [`LOOKAHEAD`] more frames were analysed. An RMVPE model, when the
//! user chose one, runs over each block's new audio plus [`EDGE`] frames on either side (whose
//! centred windows reach past the audio it is given, so their f0 is not used), never over the
//! whole context. Either way a frame's f0 does not depend on the block size.

use super::to_model_rate::Audio16k;
use crate::engine::FileWait;
use crate::pitch::{transpose, PitchModelReader, PitchTracker, LOOKAHEAD, TRACKER_FRAME, WINDOW_BEFORE};

/// Frames at each end of an RMVPE estimate whose analysis windows (1024 samples, centred) reach
/// past the audio the model was given: recomputed with the next block.
pub const EDGE: u64 = 4;

/// Samples between pitch frames at 16 kHz (100 frames per second).
pub const PITCH_HOP: usize = 160;

/// 16 kHz samples after a frame's start until its f0 is decided, at the latest: the built-in
/// estimator's window end plus its look-ahead (an RMVPE model needs less, [`EDGE`] frames).
pub const DECISION_LAG: u64 = (TRACKER_FRAME - WINDOW_BEFORE + LOOKAHEAD * PITCH_HOP) as u64;

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
    /// The user's RMVPE model, if any.
    model: Option<PitchModelReader>,
    /// Whether the last block ran the model (a change starts tracking afresh).
    using_model: bool,
    model_f0: Vec<f32>,
    tracker: PitchTracker,
    /// The next frame to analyse.
    next: u64,
    /// The first frame the built-in estimator analysed since it last started afresh (its first
    /// decision is for this frame).
    tracker_start: u64,
    /// Whether the last block was tracked (nothing is computed while nobody reads f0).
    active: bool,
    window: Vec<f32>,
}

impl Pitch {
    pub fn new(model: Option<PitchModelReader>) -> Self {
        Pitch {
            model,
            using_model: false,
            model_f0: Vec::new(),
            tracker: PitchTracker::new(),
            next: 0,
            tracker_start: 0,
            active: false,
            window: vec![0.0; TRACKER_FRAME],
        }
    }

    /// Offline, before a block: wait for a pitch model still loading.
    pub fn settle(&mut self, wait: &FileWait) {
        if let Some(model) = &mut self.model {
            model.settle(wait);
        }
    }

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
        let model_changed = self.model.as_mut().is_some_and(|model| model.refresh());
        let use_model = self.model.as_ref().is_some_and(|model| model.get().is_some());
        if wanted && (!self.active || model_changed || use_model != self.using_model) {
            self.tracker.reset();
            // The first frame whose window is still held (before the stream's start: silence).
            self.next = match audio.start() {
                0 => 0,
                start => (start + WINDOW_BEFORE as u64).div_ceil(PITCH_HOP as u64),
            };
            self.tracker_start = self.next;
        }
        (self.active, self.using_model) = (wanted, use_model);
        out.f0.clear();
        if !wanted {
            out.first = self.next;
            return Ok(());
        }
        if use_model {
            out.first = self.next;
            let decided = self.with_model(audio, &mut out.f0);
            transpose(&mut out.f0, semitones);
            return decided;
        }
        out.first = self.next.saturating_sub(LOOKAHEAD as u64).max(self.tracker_start);
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

    /// Decides the frames `audio` completed as unvoiced without analysing them (a silent block);
    /// tracking starts afresh after them.
    pub fn skip(&mut self, audio: &Audio16k, out: &mut PitchFrames) {
        out.first = self.next;
        out.f0.clear();
        if !self.active {
            return;
        }
        let decidable = if self.using_model {
            (audio.end() / PITCH_HOP as u64).saturating_sub(EDGE - 1)
        } else {
            ((audio.end() as i64 + WINDOW_BEFORE as i64 - TRACKER_FRAME as i64) / PITCH_HOP as i64 + 1).max(0) as u64
        };
        let until = decidable.max(self.next);
        out.f0.resize((until - self.next) as usize, 0.0);
        self.next = until;
        self.tracker.reset();
        self.tracker_start = until;
    }

    /// Runs the model over the frames from `next - EDGE` to the audio's end and keeps those
    /// from `next` to `EDGE` frames before the last.
    fn with_model(&mut self, audio: &Audio16k, f0: &mut Vec<f32>) -> Result<(), String> {
        let first = self.next.saturating_sub(EDGE).max(audio.start().div_ceil(PITCH_HOP as u64));
        let start = first * PITCH_HOP as u64;
        if audio.end() < start {
            return Ok(());
        }
        let last = first + (audio.end() - start) / PITCH_HOP as u64;
        if last < EDGE || last - EDGE < self.next {
            return Ok(());
        }
        let model = self.model.as_ref().and_then(|model| model.get()).expect("checked by the caller");
        let mut model = model.lock().unwrap_or_else(|e| e.into_inner());
        let decided = model.f0(audio.since(start), &mut self.model_f0).map_err(|e| e.to_string());
        let until = last - EDGE;
        if decided.is_ok() {
            f0.extend_from_slice(&self.model_f0[(self.next - first) as usize..=(until - first) as usize]);
        }
        // A failure skips these frames (the next block starts after them).
        self.next = until + 1;
        decided
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

    /// The earliest 16 kHz sample the next block needs: the next frame's window (the built-in
    /// estimator) or its leading edge (a model), while tracking.
    pub fn keep_from(&self) -> Option<u64> {
        let start = if self.using_model {
            self.next.saturating_sub(EDGE) * PITCH_HOP as u64
        } else {
            self.window_start(self.next).max(0) as u64
        };
        self.active.then_some(start)
    }

    pub fn reset(&mut self) {
        self.tracker.reset();
        self.next = 0;
        self.tracker_start = 0;
        self.active = false;
    }
}
