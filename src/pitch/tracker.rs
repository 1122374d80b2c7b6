//! The built-in pitch estimator, on the worker thread: probabilistic YIN (pYIN, Mauch & Dixon
//! 2014) with a fixed-lag Viterbi pass, written here because no crate fits (one builds an FFT
//! planner per call and cannot move between threads, one is batch-only with a dense Viterbi,
//! one is AGPL).
//!
//! Every 10 ms frame (160 samples at 16 kHz) is analysed over 1024 samples, from
//! [`WINDOW_BEFORE`] samples before the frame's centre on: the YIN difference function over a
//! 512-sample integration window for lags up to 512 samples (31 Hz), by FFT (the sample pairs
//! YIN compares are centred about `τ / 2` into the lag range, so a window starting 312 samples
//! before the frame measures the pitch within ±3 ms of the frame's centre for 80…400 Hz, and the
//! decided track's slope over ±20 ms moves the estimate to the centre itself); its
//! cumulative-mean-normalised form; and for each of 100 thresholds (Beta(2,
//! 18) weighted) the first trough below it becomes a candidate period, refined by parabolic
//! interpolation. Candidates between 50 and 1100 Hz (RVC's range) give a probability per
//! 20-cent pitch bin and a voicing probability. A hidden Markov model over (bin, voiced) states
//! — pitch moves at most ~4 semitones per frame, voicing switches with probability 0.01 —
//! removes octave errors and isolated voicing flips; its decision for a frame is taken
//! [`LOOKAHEAD`] frames later, from the best path at that point, so a frame's f0 never depends on
//! how the stream was cut into blocks. The f0 reported is the candidate nearest the decided bin.
//! FFT plans and every buffer are made once; a frame allocates nothing.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use super::coarse::{F0_MAX, F0_MIN};

/// Samples each frame is analysed over.
pub const FRAME: usize = 1024;
/// Of those, the samples before the frame's centre (the rest, 712, come after it).
pub const WINDOW_BEFORE: usize = 312;
/// Frames a decision waits for (50 ms): how much later than its audio a frame's f0 is known.
pub const LOOKAHEAD: usize = 5;
/// Frames on either side of a decided one whose f0 give the track's slope (±20 ms), with which
/// the estimate is moved to the frame's centre.
const SLOPE_SPAN: usize = 2;
/// Frames whose back-pointers and candidates are kept: the look-ahead, the frame decided, and the
/// older ones the slope needs.
const HISTORY: usize = LOOKAHEAD + 1 + SLOPE_SPAN;
const RATE: f32 = 16_000.0;
const WINDOW: usize = FRAME / 2;
const MAX_LAG: usize = FRAME - WINDOW;
const FFT: usize = 2048;
const THRESHOLDS: usize = 100;
const CENTS_PER_BIN: f32 = 20.0;
/// Largest pitch move per frame, in bins (35.92 octaves per second, pYIN's, at 100 frames/s).
const MAX_STEP: usize = 22;
const SWITCH: f32 = 0.01;
/// Weight given to the global minimum when no trough is below a threshold (pYIN's).
const NO_TROUGH: f32 = 0.01;
/// Each unvoiced state's observation is the unvoiced probability times this. pYIN spreads it
/// over the bins (here 1/268 ≈ 0.004), which calls long stretches of formant-filtered noise
/// voiced; the whole of it (1) turns noisy voiced frames unvoiced. On the test signals 0.01 to
/// 0.04 met every target and 0.1 did not (the 20 dB SNR glide); on a real recording (codec2's
/// speech sample) higher values left more voiced frames unvoiced, so the lowest that works.
const UNVOICED_WEIGHT: f32 = 0.01;

pub struct PitchTracker {
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
    head: Vec<f32>,
    whole: Vec<f32>,
    head_spectrum: Vec<Complex<f32>>,
    whole_spectrum: Vec<Complex<f32>>,
    correlation: Vec<f32>,
    scratch_forward: Vec<Complex<f32>>,
    scratch_inverse: Vec<Complex<f32>>,
    cmnd: Vec<f32>,
    /// Lags of the normalised difference's troughs in RVC's range, in lag order.
    troughs: Vec<usize>,
    /// Probability weight of each threshold (Beta(2, 18) over (0, 1]).
    threshold_weights: Vec<f32>,
    /// Centre frequency of each pitch bin.
    bin_hz: Vec<f32>,
    /// log of the pitch-move weights, indexed by |move| in bins.
    log_step: Vec<f32>,
    observation: Vec<f32>,
    /// Log probability of the best path ending in each state (bins voiced, then bins unvoiced).
    score: Vec<f32>,
    next_score: Vec<f32>,
    /// Back-pointers of the last [`HISTORY`] frames, and their candidates (Hz, weight).
    back: Vec<Vec<u16>>,
    candidates: Vec<Vec<(f32, f32)>>,
    frames: u64,
}

impl Default for PitchTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl PitchTracker {
    pub fn new() -> Self {
        let mut planner = RealFftPlanner::<f32>::new();
        let (forward, inverse) = (planner.plan_fft_forward(FFT), planner.plan_fft_inverse(FFT));
        let bins = (1200.0 * (F0_MAX / F0_MIN).log2() / CENTS_PER_BIN).ceil() as usize + 1;
        let bin_hz = (0..bins).map(|b| F0_MIN * 2f32.powf(b as f32 * CENTS_PER_BIN / 1200.0)).collect();
        let total: f32 = (0..=MAX_STEP).map(|d| (MAX_STEP + 1 - d) as f32 * if d == 0 { 1.0 } else { 2.0 }).sum();
        let log_step = (0..=MAX_STEP).map(|d| ((MAX_STEP + 1 - d) as f32 / total).ln()).collect();
        PitchTracker {
            head: vec![0.0; FFT],
            whole: vec![0.0; FFT],
            head_spectrum: forward.make_output_vec(),
            whole_spectrum: forward.make_output_vec(),
            correlation: vec![0.0; FFT],
            scratch_forward: forward.make_scratch_vec(),
            scratch_inverse: inverse.make_scratch_vec(),
            forward,
            inverse,
            cmnd: vec![0.0; MAX_LAG + 1],
            troughs: Vec::with_capacity(MAX_LAG),
            threshold_weights: beta_weights(),
            bin_hz,
            log_step,
            observation: vec![0.0; 2 * bins],
            score: vec![(1.0 / (2 * bins) as f32).ln(); 2 * bins],
            next_score: vec![0.0; 2 * bins],
            back: vec![vec![0; 2 * bins]; HISTORY],
            candidates: (0..HISTORY).map(|_| Vec::with_capacity(THRESHOLDS + 1)).collect(),
            frames: 0,
        }
    }

    /// Analyses the next frame (`FRAME` samples from `WINDOW_BEFORE` before its centre) and
    /// returns the f0 of the frame
    /// [`LOOKAHEAD`] frames back (Hz, 0 = unvoiced), once there is one.
    pub fn push(&mut self, window: &[f32]) -> Option<f32> {
        assert_eq!(window.len(), FRAME, "one frame's window");
        let slot = (self.frames % HISTORY as u64) as usize;
        self.difference(window);
        let mut candidates = std::mem::take(&mut self.candidates[slot]);
        self.candidates_of_frame(&mut candidates);
        self.observe(&candidates);
        self.candidates[slot] = candidates;
        self.step(slot);
        self.frames += 1;
        (self.frames > LOOKAHEAD as u64).then(|| self.decide(LOOKAHEAD))
    }

    /// The f0 of the frames still waiting for their look-ahead (at the end of a file), oldest
    /// first; the tracker then starts over.
    pub fn finish(&mut self, f0: &mut Vec<f32>) {
        let waiting = self.frames.min(LOOKAHEAD as u64) as usize;
        for back in (0..waiting).rev() {
            f0.push(self.decide(back));
        }
        self.reset();
    }

    pub fn reset(&mut self) {
        let start = (1.0 / self.score.len() as f32).ln();
        self.score.fill(start);
        self.frames = 0;
    }

    /// The cumulative-mean-normalised difference function of `window` into `cmnd`.
    fn difference(&mut self, window: &[f32]) {
        self.head[..WINDOW].copy_from_slice(&window[..WINDOW]);
        self.head[WINDOW..].fill(0.0);
        self.whole[..FRAME].copy_from_slice(window);
        self.whole[FRAME..].fill(0.0);
        let fft = &self.forward;
        fft.process_with_scratch(&mut self.head, &mut self.head_spectrum, &mut self.scratch_forward).expect("sizes");
        fft.process_with_scratch(&mut self.whole, &mut self.whole_spectrum, &mut self.scratch_forward).expect("sizes");
        // Cross-correlation r(τ) = Σ_j head[j] · whole[j + τ].
        for (w, h) in self.whole_spectrum.iter_mut().zip(&self.head_spectrum) {
            *w *= h.conj();
        }
        self.whole_spectrum[0].im = 0.0;
        self.whole_spectrum[FFT / 2].im = 0.0;
        self.inverse
            .process_with_scratch(&mut self.whole_spectrum, &mut self.correlation, &mut self.scratch_inverse)
            .expect("sizes");
        let scale = 1.0 / FFT as f32;
        let energy_head: f32 = window[..WINDOW].iter().map(|x| x * x).sum();
        let mut energy_shifted = energy_head;
        let mut running = 0.0;
        self.cmnd[0] = 1.0;
        for lag in 1..=MAX_LAG {
            energy_shifted += window[lag + WINDOW - 1].powi(2) - window[lag - 1].powi(2);
            let d = (energy_head + energy_shifted - 2.0 * self.correlation[lag] * scale).max(0.0);
            running += d;
            self.cmnd[lag] = if running > 0.0 { d * lag as f32 / running } else { 1.0 };
        }
    }

    /// pYIN's candidates, as (Hz, weight): for each threshold, the first trough (in RVC's f0
    /// range) of the normalised difference below it takes the threshold's weight; thresholds no
    /// trough gets under give theirs, scaled down, to the deepest trough.
    fn candidates_of_frame(&mut self, candidates: &mut Vec<(f32, f32)>) {
        candidates.clear();
        let d = &self.cmnd;
        let (lowest, highest) = ((RATE / F0_MAX).floor() as usize, ((RATE / F0_MIN).ceil() as usize).min(MAX_LAG - 1));
        self.troughs.clear();
        self.troughs.extend((lowest.max(1)..=highest).filter(|&lag| d[lag] < d[lag - 1] && d[lag] <= d[lag + 1]));
        let Some(&deepest) = self.troughs.iter().min_by(|a, b| d[**a].total_cmp(&d[**b])) else { return };
        let mut unclaimed = 0.0;
        for (i, weight) in self.threshold_weights.iter().enumerate() {
            match self.troughs.iter().find(|&&lag| d[lag] < threshold(i)) {
                Some(&lag) => add(candidates, RATE / refine(d, lag), *weight),
                None => unclaimed += weight,
            }
        }
        if unclaimed > 0.0 {
            add(candidates, RATE / refine(d, deepest), NO_TROUGH * unclaimed);
        }
    }

    /// Observation probabilities: each candidate's weight in its pitch bin, and the rest,
    /// weighted, for every unvoiced state.
    fn observe(&mut self, candidates: &[(f32, f32)]) {
        let bins = self.bin_hz.len();
        self.observation.fill(0.0);
        let mut voiced = 0.0;
        for &(hz, weight) in candidates {
            if let Some(bin) = self.bin_of(hz) {
                self.observation[bin] += weight;
                voiced += weight;
            }
        }
        let unvoiced = (1.0 - voiced.min(1.0)) * UNVOICED_WEIGHT;
        self.observation[bins..].fill(unvoiced);
    }

    fn bin_of(&self, hz: f32) -> Option<usize> {
        if !(hz.is_finite() && (F0_MIN..=F0_MAX).contains(&hz)) {
            return None;
        }
        let bin = (1200.0 * (hz / F0_MIN).log2() / CENTS_PER_BIN).round() as usize;
        Some(bin.min(self.bin_hz.len() - 1))
    }

    /// One Viterbi step into back-pointer slot `slot`.
    fn step(&mut self, slot: usize) {
        let bins = self.bin_hz.len();
        let (stay, switch) = ((1.0 - SWITCH).ln(), SWITCH.ln());
        let floor = 1e-30f32.ln();
        for state in 0..2 * bins {
            let (voiced, bin) = (state < bins, state % bins);
            let (low, high) = (bin.saturating_sub(MAX_STEP), (bin + MAX_STEP).min(bins - 1));
            let (mut best, mut from) = (f32::NEG_INFINITY, 0);
            for previous_bin in low..=high {
                let step = self.log_step[previous_bin.abs_diff(bin)];
                for previous_voiced in [true, false] {
                    let previous = previous_bin + if previous_voiced { 0 } else { bins };
                    let score = self.score[previous] + step + if previous_voiced == voiced { stay } else { switch };
                    if score > best {
                        (best, from) = (score, previous);
                    }
                }
            }
            self.next_score[state] = best + self.observation[state].max(1e-30).ln().max(floor);
            self.back[slot][state] = from as u16;
        }
        // Keep the scores near zero: only differences matter.
        let top = self.next_score.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for (score, next) in self.score.iter_mut().zip(&self.next_score) {
            *score = next - top;
        }
    }

    /// The f0 of the frame `back` frames before the newest, on the best path ending now.
    fn decide(&self, back: usize) -> f32 {
        let kept = self.frames.min(HISTORY as u64) as usize;
        // The path's states from the newest frame back, as far as the slope needs.
        let mut state = self.score.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(state, _)| state);
        let (mut newer, mut here, mut older) = (None, 0.0, None);
        for k in 0..kept.min(back + SLOPE_SPAN + 1) {
            let f0 = self.f0_on_path(k, state);
            if k + SLOPE_SPAN == back {
                newer = Some(f0);
            } else if k == back {
                here = f0;
            } else if k == back + SLOPE_SPAN {
                older = Some(f0);
            }
            state = usize::from(self.back[self.slot_of(k)][state]);
        }
        match (newer, older) {
            (Some(newer), Some(older)) if here > 0.0 => at_frame_centre(here, newer, older),
            _ => here,
        }
    }

    /// The ring slot of the frame `back` frames before the newest.
    fn slot_of(&self, back: usize) -> usize {
        ((self.frames - 1 - back as u64) % HISTORY as u64) as usize
    }

    /// The f0 of the frame `back` frames before the newest in path state `state` (0 when
    /// unvoiced): the candidate nearest the state's bin, at full resolution.
    fn f0_on_path(&self, back: usize, state: usize) -> f32 {
        let Some(&centre) = self.bin_hz.get(state) else { return 0.0 };
        self.candidates[self.slot_of(back)]
            .iter()
            .map(|c| c.0)
            .filter(|hz| (1200.0 * (hz / centre).log2()).abs() <= CENTS_PER_BIN)
            .min_by(|a, b| (a / centre).ln().abs().total_cmp(&(b / centre).ln().abs()))
            .unwrap_or(centre)
    }
}

/// Largest f0 change over the slope's span that is still a glide, in cents (more is a leap or
/// a voicing edge, where no slope applies).
const MAX_GLIDE_CENTS: f32 = 200.0;

/// `hz` measured in a frame moved to the frame's centre along the track's slope (from the f0
/// `newer` and `older`, [`SLOPE_SPAN`] frames either side). YIN compares samples centred
/// `τ / 2` into the lag range, so a frame's estimate belongs to a moment up to 3 ms off its
/// centre (later for low voices, earlier for high ones); on a glide that is a bias of a few cents.
fn at_frame_centre(hz: f32, newer: f32, older: f32) -> f32 {
    if newer <= 0.0 || older <= 0.0 {
        return hz;
    }
    let change_cents = 1200.0 * (newer / older).log2();
    if change_cents.abs() > MAX_GLIDE_CENTS {
        return hz;
    }
    let cents_per_second = change_cents / (2 * SLOPE_SPAN) as f32 * 100.0;
    let lag = RATE / hz;
    let offset_seconds = (WINDOW as f32 / 2.0 + lag / 2.0 - WINDOW_BEFORE as f32) / RATE;
    hz * 2f32.powf(-cents_per_second * offset_seconds / 1200.0)
}

/// Adds `weight` to the candidate at `hz`, or a new candidate.
fn add(candidates: &mut Vec<(f32, f32)>, hz: f32, weight: f32) {
    match candidates.iter_mut().find(|c| c.0 == hz) {
        Some(candidate) => candidate.1 += weight,
        None => candidates.push((hz, weight)),
    }
}

/// The `i`-th of the thresholds 0.01, 0.02, … 1.0.
fn threshold(i: usize) -> f32 {
    (i + 1) as f32 / THRESHOLDS as f32
}

/// Probability of each threshold under Beta(2, 18) (mean 0.1, pYIN's), as the mass of its
/// interval ((i)/100, (i+1)/100].
fn beta_weights() -> Vec<f32> {
    let pdf = |x: f64| x * (1.0 - x).powi(17);
    let steps = 64;
    let masses: Vec<f64> = (0..THRESHOLDS)
        .map(|i| {
            let (a, width) = (i as f64 / THRESHOLDS as f64, 1.0 / (THRESHOLDS * steps) as f64);
            (0..steps).map(|s| pdf(a + (s as f64 + 0.5) * width) * width).sum()
        })
        .collect();
    let total: f64 = masses.iter().sum();
    masses.iter().map(|m| (m / total) as f32).collect()
}

/// The trough's lag refined by a parabola through it and its neighbours.
fn refine(d: &[f32], lag: usize) -> f32 {
    let (a, b, c) = (d[lag - 1], d[lag], d[lag + 1]);
    let curvature = a - 2.0 * b + c;
    let shift = if curvature > 0.0 { 0.5 * (a - c) / curvature } else { 0.0 };
    lag as f32 + shift.clamp(-1.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cents(a: f32, b: f32) -> f32 {
        1200.0 * (a / b).log2()
    }

    #[test]
    fn on_a_glide_an_estimate_moves_back_by_the_slope_times_its_time_offset() {
        // 100 Hz: lag 160, so YIN's pairs are centred 256 + 80 − 312 = 24 samples (1.5 ms) after
        // the frame's centre. Rising 40 cents over ±20 ms is 1000 cents per second: 1.5 cents.
        let (newer, older) = (100.0 * 2f32.powf(20.0 / 1200.0), 100.0 * 2f32.powf(-20.0 / 1200.0));
        assert!((cents(at_frame_centre(100.0, newer, older), 100.0) + 1.5).abs() < 1e-3);
        // 400 Hz: lag 40, centred 36 samples (2.25 ms) before the centre: moved up 2.25 cents.
        let (newer, older) = (400.0 * 2f32.powf(20.0 / 1200.0), 400.0 * 2f32.powf(-20.0 / 1200.0));
        assert!((cents(at_frame_centre(400.0, newer, older), 400.0) - 2.25).abs() < 1e-3);
    }

    #[test]
    fn steady_pitch_leaps_and_voicing_edges_are_left_alone() {
        assert_eq!(at_frame_centre(150.0, 150.0, 150.0), 150.0);
        assert_eq!(at_frame_centre(150.0, 300.0, 150.0), 150.0, "an octave leap is no glide");
        assert_eq!(at_frame_centre(150.0, 0.0, 148.0), 150.0, "an unvoiced neighbour gives no slope");
    }
}
