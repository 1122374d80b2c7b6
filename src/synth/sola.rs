//! SOLA stitching as RVC's real-time GUI joins its blocks: each new piece of voice is rendered
//! with some audio before the block (the overlap and a search range); the piece is shifted by
//! the offset, within the search range, where it correlates best with the previous piece's
//! tail (normalised cross-correlation), and its head is crossfaded into that tail with sin²
//! fades. The synthesizer's sine source restarts its phase on every call; this is what hides
//! the seam. Worker thread; buffers are sized once.

/// Joins rendered pieces into one continuous voice.
pub struct Sola {
    overlap: usize,
    search: usize,
    fade_in: Vec<f32>,
    tail: Vec<f32>,
}

impl Sola {
    /// Crossfades over `overlap` samples after searching `search` samples of offsets.
    pub fn new(overlap: usize, search: usize) -> Self {
        // RVC: sin(π/2 · t)² over linspace(0, 1, overlap).
        let step = 1.0 / overlap.saturating_sub(1).max(1) as f64;
        let fade_in =
            (0..overlap).map(|i| ((std::f64::consts::FRAC_PI_2 * i as f64 * step).sin().powi(2)) as f32).collect();
        Sola { overlap, search, fade_in, tail: vec![0.0; overlap] }
    }

    /// Samples each piece needs besides the ones it emits: the overlap and the search range.
    pub fn extra(&self) -> usize {
        self.overlap + self.search
    }

    /// The best offset for `piece`, crossfaded into the previous tail; appends `emit` samples
    /// to `out` and keeps the next tail. `piece` must hold `emit +` [`extra`](Self::extra)
    /// samples. Returns the offset.
    pub fn stitch(&mut self, piece: &[f32], emit: usize, out: &mut Vec<f32>) -> usize {
        assert!(piece.len() >= emit + self.extra(), "a SOLA piece of {} samples cannot emit {emit}", piece.len());
        let offset = self.best_offset(piece);
        let start = out.len();
        out.extend_from_slice(&piece[offset..offset + emit + self.overlap]);
        let shifted = &mut out[start..];
        for ((x, fade), old) in shifted.iter_mut().zip(&self.fade_in).zip(&self.tail) {
            *x = *x * fade + old * (1.0 - fade);
        }
        // As RVC: the next tail is what follows the emitted samples, the crossfade included
        // when a piece is shorter than the overlap.
        self.tail.copy_from_slice(&shifted[emit..]);
        out.truncate(start + emit);
        offset
    }

    /// argmax over `o` in `0..=search` of Σ piece[o + i]·tail[i] / √(Σ piece[o + i]² + 1e-8).
    fn best_offset(&self, piece: &[f32]) -> usize {
        let mut best = (0, f64::NEG_INFINITY);
        for offset in 0..=self.search {
            let window = &piece[offset..offset + self.overlap];
            let dot: f64 = window.iter().zip(&self.tail).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
            let energy: f64 = window.iter().map(|a| f64::from(*a).powi(2)).sum();
            let score = dot / (energy + 1e-8).sqrt();
            if score > best.1 {
                best = (offset, score);
            }
        }
        best.0
    }

    /// The stream restarts: the next piece fades in from silence.
    pub fn reset(&mut self) {
        self.tail.fill(0.0);
    }
}
