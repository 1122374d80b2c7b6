//! The synthesizer's prior noise, as RVC draws it: N(0, 1) · 0.66666 per latent channel and
//! frame. Drawn once per frame of the stream, in order, from a generator seeded when the stream
//! starts, so a frame gets the same noise in every window it is part of and offline renders
//! repeat exactly. Worker thread. `fastrand` gives uniform numbers; the normal ones come from
//! the Box–Muller transform (two lines, no crate needed for that).

use std::collections::VecDeque;

/// RVC's scale of the prior noise (`randn · 0.66666`).
pub const NOISE_SCALE: f32 = 0.66666;
/// The seed every stream starts from.
const STREAM_SEED: u64 = 0x5256_4353_7461_6765;

pub struct PriorNoise {
    rng: fastrand::Rng,
    channels: usize,
    /// Frame-major values of frames `first ..`.
    frames: VecDeque<f32>,
    first: u64,
}

impl PriorNoise {
    pub fn new() -> Self {
        PriorNoise { rng: fastrand::Rng::with_seed(STREAM_SEED), channels: 0, frames: VecDeque::new(), first: 0 }
    }

    /// The stream restarts: the same noise again.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// A value for seeding noise a model draws itself, from the same generator.
    pub fn seed(&mut self) -> f32 {
        (self.rng.u32(..) % 1_000_000) as f32 / 1000.0
    }

    /// The noise of frames `from .. to` (`channels` per frame), channel-major into `out`. A
    /// change of `channels` (another model) starts afresh; frames before those held (forgotten,
    /// or before a fresh start) are silent.
    pub fn window(&mut self, from: u64, to: u64, channels: usize, out: &mut Vec<f32>) {
        out.clear();
        if channels == 0 {
            return;
        }
        if channels != self.channels || self.frames.is_empty() {
            self.channels = channels;
            self.frames.clear();
            self.first = self.first.max(from);
        }
        while self.first + (self.frames.len() / channels.max(1)) as u64 <= to {
            for _ in 0..channels {
                let normal = self.normal();
                self.frames.push_back(normal * NOISE_SCALE);
            }
        }
        let frames = (to - from) as usize;
        out.clear();
        out.resize(frames * channels, 0.0);
        for t in (self.first.saturating_sub(from) as usize)..frames {
            let held = (from + t as u64 - self.first) as usize * channels;
            for c in 0..channels {
                out[c * frames + t] = self.frames[held + c];
            }
        }
    }

    /// Forgets the frames before `frame` (no window will reach back to them).
    pub fn forget_before(&mut self, frame: u64) {
        let drop = (frame.saturating_sub(self.first) as usize * self.channels).min(self.frames.len());
        self.frames.drain(..drop);
        self.first += (drop / self.channels.max(1)) as u64;
    }

    fn normal(&mut self) -> f32 {
        let u1 = 1.0 - self.rng.f32(); // (0, 1]
        let u2 = self.rng.f32();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
}

impl Default for PriorNoise {
    fn default() -> Self {
        Self::new()
    }
}
