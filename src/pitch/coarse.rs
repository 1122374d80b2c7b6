//! f0 → RVC's coarse pitch code, and transposition. RVC (`get_f0_post`): the mel-scale pitch
//! `1127 · ln(1 + f0 / 700)` mapped linearly from its value at 50 Hz (code 1) to its value at
//! 1100 Hz (code 255), clipped and rounded; unvoiced frames (f0 = 0) get 1. Transposition
//! multiplies f0 before quantisation.

/// The lowest and highest f0 RVC's coarse code covers, in Hz.
pub const F0_MIN: f32 = 50.0;
pub const F0_MAX: f32 = 1100.0;

fn mel(f0: f32) -> f32 {
    1127.0 * (1.0 + f0 / 700.0).ln()
}

/// The coarse code (1…255) of each f0 in Hz.
pub fn coarse_pitch(f0: &[f32], codes: &mut Vec<i64>) {
    let (low, high) = (mel(F0_MIN), mel(F0_MAX));
    codes.clear();
    codes.extend(f0.iter().map(|&f| {
        let m = mel(f.max(0.0));
        let scaled = if m > 0.0 { (m - low) * 254.0 / (high - low) + 1.0 } else { m };
        // numpy's rint: halves to even.
        scaled.clamp(1.0, 255.0).round_ties_even() as i64
    }));
}

/// Shifts every voiced f0 by `semitones` (fractions give cents); unvoiced frames stay 0.
pub fn transpose(f0: &mut [f32], semitones: f32) {
    let factor = 2f32.powf(semitones / 12.0);
    for f in f0 {
        *f *= factor;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_maps_to_1_through_255_and_unvoiced_to_1() {
        let mut codes = Vec::new();
        coarse_pitch(&[0.0, 50.0, 1100.0, 20.0, 5000.0], &mut codes);
        assert_eq!(codes, [1, 1, 255, 1, 255]);
    }

    #[test]
    fn an_octave_up_doubles_voiced_frames_only() {
        let mut f0 = [0.0, 110.0, 220.5];
        transpose(&mut f0, 12.0);
        assert_eq!(f0, [0.0, 220.0, 441.0]);
    }
}
