//! The log-mel spectrogram RVC's `rmvpe.onnx` takes, computed exactly as RVC does
//! (`infer/lib/rmvpe.py`, `MelSpectrogram`): 16 kHz audio, a 1024-point periodic Hann window
//! every 160 samples, centred (the signal reflected by 512 samples at both ends), magnitude
//! spectrum, 128 triangular bands on the HTK mel scale from 30 to 8000 Hz with Slaney area
//! normalisation (librosa's `mel(sr=16000, n_fft=1024, n_mels=128, fmin=30, fmax=8000,
//! htk=True)`), then `ln(max(x, 1e-5))`. `N` samples give `N / 160 + 1` frames. The FFT plan,
//! window, filterbank and scratch are made once; a call allocates only when its output grows.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

/// Mel bands.
pub const MEL_BANDS: usize = 128;
/// Samples between frames (10 ms at 16 kHz).
pub const MEL_HOP: usize = 160;
const FFT: usize = 1024;
const BINS: usize = FFT / 2 + 1;
const RATE: f64 = 16_000.0;
const F_MIN: f64 = 30.0;
const F_MAX: f64 = 8_000.0;
const FLOOR: f32 = 1e-5;

pub struct MelSpectrogram {
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    /// `MEL_BANDS × BINS`, row-major; most entries are 0, so each band keeps its non-zero span.
    filters: Vec<f32>,
    spans: Vec<(usize, usize)>,
    frame: Vec<f32>,
    spectrum: Vec<realfft::num_complex::Complex<f32>>,
    magnitude: Vec<f32>,
    scratch: Vec<realfft::num_complex::Complex<f32>>,
}

impl Default for MelSpectrogram {
    fn default() -> Self {
        Self::new()
    }
}

impl MelSpectrogram {
    pub fn new() -> Self {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(FFT);
        let window =
            (0..FFT).map(|n| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / FFT as f64).cos()) as f32).collect();
        let filters = filterbank();
        let spans = filters
            .chunks(BINS)
            .map(|band| {
                let first = band.iter().position(|w| *w != 0.0).unwrap_or(0);
                let last = band.iter().rposition(|w| *w != 0.0).map_or(0, |last| last + 1);
                (first, last.max(first))
            })
            .collect();
        MelSpectrogram {
            spectrum: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            fft,
            window,
            filters,
            spans,
            frame: vec![0.0; FFT],
            magnitude: vec![0.0; BINS],
        }
    }

    /// The log-mel spectrogram of `audio` (16 kHz) into `out`, band-major (`[128, T]`, as the
    /// model takes it); returns the frame count `T = N / 160 + 1` (0 for no audio).
    pub fn compute(&mut self, audio: &[f32], out: &mut Vec<f32>) -> usize {
        out.clear();
        if audio.is_empty() {
            return 0;
        }
        let frames = audio.len() / MEL_HOP + 1;
        out.resize(MEL_BANDS * frames, 0.0);
        for t in 0..frames {
            let start = (t * MEL_HOP) as isize - (FFT / 2) as isize;
            for (n, sample) in self.frame.iter_mut().enumerate() {
                *sample = audio[reflect(start + n as isize, audio.len())] * self.window[n];
            }
            self.fft
                .process_with_scratch(&mut self.frame, &mut self.spectrum, &mut self.scratch)
                .expect("the buffers were made by this plan");
            for (m, c) in self.magnitude.iter_mut().zip(&self.spectrum) {
                *m = (c.re * c.re + c.im * c.im).sqrt();
            }
            for (band, &(first, last)) in self.spans.iter().enumerate() {
                let weights = &self.filters[band * BINS + first..band * BINS + last];
                let energy: f32 = weights.iter().zip(&self.magnitude[first..last]).map(|(w, m)| w * m).sum();
                out[band * frames + t] = energy.max(FLOOR).ln();
            }
        }
        frames
    }
}

/// Index `i` of a signal of `len` samples reflected at both ends without repeating the edge
/// sample (torch's and numpy's "reflect").
fn reflect(mut i: isize, len: usize) -> usize {
    let last = len as isize - 1;
    if last == 0 {
        return 0;
    }
    loop {
        if i < 0 {
            i = -i;
        } else if i > last {
            i = 2 * last - i;
        } else {
            return i as usize;
        }
    }
}

fn hz_to_mel(hz: f64) -> f64 {
    2595.0 * (1.0 + hz / 700.0).log10()
}

fn mel_to_hz(mel: f64) -> f64 {
    700.0 * (10f64.powf(mel / 2595.0) - 1.0)
}

/// librosa's mel filterbank with `htk=True, norm="slaney"`: triangles between mel-spaced
/// points over the FFT bin frequencies, each scaled by 2 / (its width in Hz).
fn filterbank() -> Vec<f32> {
    let (low, high) = (hz_to_mel(F_MIN), hz_to_mel(F_MAX));
    let points: Vec<f64> =
        (0..MEL_BANDS + 2).map(|i| mel_to_hz(low + (high - low) * i as f64 / (MEL_BANDS + 1) as f64)).collect();
    let bin_hz = |k: usize| k as f64 * RATE / FFT as f64;
    let mut filters = vec![0.0; MEL_BANDS * BINS];
    for band in 0..MEL_BANDS {
        let (left, centre, right) = (points[band], points[band + 1], points[band + 2]);
        let area = 2.0 / (right - left);
        for k in 0..BINS {
            let rising = (bin_hz(k) - left) / (centre - left);
            let falling = (right - bin_hz(k)) / (right - centre);
            filters[band * BINS + k] = (rising.min(falling).max(0.0) * area) as f32;
        }
    }
    filters
}
