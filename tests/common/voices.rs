//! Voice-like test signals with known f0 for the pitch estimator, shared by the pitch tests and
//! the pitch benchmark: glottal pulses with jitter through vowel formants, and the scores the
//! issue's targets are stated in (gross errors, median cents, voicing errors).
#![allow(dead_code)] // each user takes part of it

/// One test signal at 16 kHz with its truth per 10 ms frame: f0 (0 = unvoiced) and whether the
/// frame is scored (frames within 30 ms of a voicing change or an octave leap are not).
pub struct Signal {
    pub name: &'static str,
    pub audio: Vec<f32>,
    pub f0: Vec<f32>,
    pub scored: Vec<bool>,
}

pub const RATE: f32 = 16_000.0;

/// A voice-like signal: a glottal pulse train following `f0_at(t)` (0 = unvoiced: noise
/// instead), with 1 % period jitter, through three vowel formants (/a/), plus noise at `snr_db`.
pub fn voice(name: &'static str, seconds: f32, f0_at: impl Fn(f32) -> f32, snr_db: Option<f32>, seed: u64) -> Signal {
    let mut rng = fastrand::Rng::with_seed(seed);
    let len = (seconds * RATE) as usize;
    let (mut source, mut phase, mut jitter) = (vec![0.0f32; len], 0.0f32, 1.0f32);
    for (n, x) in source.iter_mut().enumerate() {
        let f0 = f0_at(n as f32 / RATE);
        if f0 > 0.0 {
            phase += f0 * jitter / RATE;
            if phase >= 1.0 {
                phase -= 1.0;
                jitter = 1.0 + (rng.f32() - 0.5) * 0.02;
            }
            // A Rosenberg-like pulse: rise over 40 % of the period, fall over 16 %.
            *x = if phase < 0.4 {
                0.5 * (1.0 - (std::f32::consts::PI * phase / 0.4).cos())
            } else if phase < 0.56 {
                (std::f32::consts::FRAC_PI_2 * (phase - 0.4) / 0.16).cos()
            } else {
                0.0
            };
        } else {
            *x = (rng.f32() - 0.5) * 0.6;
        }
    }
    // Differentiated (lip radiation), then the formants.
    let mut audio: Vec<f32> = (0..len).map(|n| source[n] - if n > 0 { source[n - 1] } else { 0.0 }).collect();
    for (centre, bandwidth) in [(700.0, 110.0), (1220.0, 120.0), (2600.0, 160.0)] {
        resonate(&mut audio, centre, bandwidth);
    }
    let peak = audio.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    audio.iter_mut().for_each(|x| *x *= 0.5 / peak);
    if let Some(snr) = snr_db {
        let power = audio.iter().map(|x| x * x).sum::<f32>() / len as f32;
        let amplitude = (3.0 * power / 10f32.powf(snr / 10.0)).sqrt();
        audio.iter_mut().for_each(|x| *x += (rng.f32() * 2.0 - 1.0) * amplitude);
    }
    let frames = len / 160 + 1;
    let f0: Vec<f32> = (0..frames).map(|k| f0_at(k as f32 / 100.0)).collect();
    let scored = (0..frames)
        .map(|k| {
            // Before the start and after the end the signal is silent (unvoiced).
            let near = |d: i64| usize::try_from(k as i64 + d).ok().and_then(|k| f0.get(k)).copied().unwrap_or(0.0);
            (-3..=3)
                .all(|d| (near(d) > 0.0) == (f0[k] > 0.0) && (near(d) == 0.0 || (near(d) / f0[k]).log2().abs() < 0.5))
        })
        .collect();
    Signal { name, audio, f0, scored }
}

/// A two-pole resonator at `centre` Hz with `bandwidth` Hz, in place, unit gain at its peak.
fn resonate(audio: &mut [f32], centre: f32, bandwidth: f32) {
    let r = (-std::f32::consts::PI * bandwidth / RATE).exp();
    let (a1, a2) = (2.0 * r * (2.0 * std::f32::consts::PI * centre / RATE).cos(), -r * r);
    let gain = 1.0 - r;
    let (mut y1, mut y2) = (0.0, 0.0);
    for x in audio.iter_mut() {
        let y = gain * *x + a1 * y1 + a2 * y2;
        (y2, y1) = (y1, y);
        *x = y;
    }
}

pub fn signals() -> Vec<Signal> {
    let tau = std::f32::consts::TAU;
    vec![
        voice("steady 120 Hz", 2.0, |_| 120.0, None, 1),
        voice("glide 80 → 400 Hz", 2.0, |t| 80.0 * 5f32.powf(t / 2.0), None, 2),
        voice("vibrato 220 Hz ± 50 cents", 2.0, |t| 220.0 * 2f32.powf(0.5 / 12.0 * (tau * 5.5 * t).sin()), None, 3),
        voice("octave leaps 150 ↔ 300 Hz", 2.4, |t| if (t / 0.4) as i32 % 2 == 0 { 150.0 } else { 300.0 }, None, 4),
        voice("voiced 180 Hz / noise bursts", 2.5, |t| if t % 0.5 < 0.3 { 180.0 } else { 0.0 }, None, 5),
        voice("glide, 20 dB SNR", 2.0, |t| 90.0 * 4f32.powf(t / 2.0), Some(20.0), 6),
        voice("steady 260 Hz, 20 dB SNR", 2.0, |_| 260.0, Some(20.0), 7),
        voice("200 Hz, then noise to the end", 1.5, |t| if t < 1.2 { 200.0 } else { 0.0 }, None, 8),
    ]
}

/// The tracker's f0 for every frame of `audio` (frame k at sample 160 k, silence before the
/// start and after the end).
pub fn track(audio: &[f32]) -> Vec<f32> {
    use rvc_stage::pitch::{PitchTracker, LOOKAHEAD, TRACKER_FRAME, WINDOW_BEFORE};
    let mut tracker = PitchTracker::new();
    let frames = audio.len() / 160 + 1;
    let mut padded = vec![0.0; WINDOW_BEFORE];
    padded.extend_from_slice(audio);
    padded.resize(frames * 160 + TRACKER_FRAME, 0.0);
    let mut f0 = Vec::new();
    for k in 0..frames {
        let decided = nice_assert_no_alloc::assert_no_alloc(|| tracker.push(&padded[k * 160..][..TRACKER_FRAME]));
        f0.extend(decided);
    }
    assert_eq!(f0.len(), frames - LOOKAHEAD);
    tracker.finish(&mut f0);
    f0
}

/// Gross pitch errors (> 20 % off) among voiced frames, median error in cents over frames both
/// call voiced, voicing decision errors among all frames — scored frames only.
pub fn score(signal: &Signal, f0: &[f32]) -> (f32, f32, f32) {
    let (mut voiced, mut gross, mut decisions, mut wrong) = (0, 0, 0, 0);
    let mut cents = Vec::new();
    for k in (0..signal.f0.len()).filter(|&k| signal.scored[k]) {
        let (truth, estimate) = (signal.f0[k], f0[k]);
        decisions += 1;
        wrong += usize::from((truth > 0.0) != (estimate > 0.0));
        if truth > 0.0 {
            voiced += 1;
            if estimate > 0.0 {
                let error = 1200.0 * (estimate / truth).log2();
                gross += usize::from((estimate / truth - 1.0).abs() > 0.2);
                cents.push(error.abs());
            } else {
                gross += 1;
            }
        }
    }
    cents.sort_by(f32::total_cmp);
    let median = cents.get(cents.len() / 2).copied().unwrap_or(f32::INFINITY);
    (gross as f32 / voiced.max(1) as f32, median, wrong as f32 / decisions as f32)
}
