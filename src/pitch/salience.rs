//! RMVPE's output decoded as RVC does (`infer/lib/rmvpe.py`, `to_local_average_cents`): per
//! frame, the weighted mean of the 9 bins around the strongest of 360 (20 cents apart, bin `i`
//! at `20 i + 1997.379…` cents above 10 Hz), unvoiced when the strongest is at most the
//! threshold; `f0 = 10 · 2^(cents / 1200)`, and 10 Hz (no cents) is 0.

/// Pitch bins per frame of RMVPE's salience.
pub const SALIENCE_BINS: usize = 360;
/// The threshold RVC's real-time path passes.
pub const UNVOICED_THRESHOLD: f32 = 0.03;
/// RVC's cents of salience bin 0 (1997.3794084376191, to f64 precision).
const CENTS_OFFSET: f64 = 1_997.379_408_437_619;

/// f0 in Hz of each frame of `salience` (`[frames, 360]`, row-major) into `f0`.
pub fn decode_salience(salience: &[f32], threshold: f32, f0: &mut Vec<f32>) {
    f0.clear();
    f0.extend(salience.chunks_exact(SALIENCE_BINS).map(|bins| {
        let (peak, max) =
            bins.iter().copied().enumerate().fold(
                (0, f32::NEG_INFINITY),
                |best, (i, s)| {
                    if s > best.1 {
                        (i, s)
                    } else {
                        best
                    }
                },
            );
        if max <= threshold {
            return 0.0;
        }
        let (mut weighted, mut total) = (0.0f64, 0.0f64);
        let first = peak.saturating_sub(4);
        for (i, &bin) in bins.iter().enumerate().take((peak + 5).min(SALIENCE_BINS)).skip(first) {
            weighted += f64::from(bin) * (20.0 * i as f64 + CENTS_OFFSET);
            total += f64::from(bin);
        }
        let f0 = 10.0 * 2f64.powf(weighted / total / 1200.0);
        if f0 == 10.0 {
            0.0
        } else {
            f0 as f32
        }
    }));
}
