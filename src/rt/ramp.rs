//! A linear gain ramp: the one smoothing primitive of the real-time path. It drives parameter
//! smoothing (dry/wet, output gain, bypass) and the under-run crossfade between wet and delayed
//! dry audio, so every gain change the audio thread makes is click-free in the same way.
//! Runs on the audio thread; no allocation.

/// A value that moves towards a target by a fixed step per sample.
#[derive(Debug, Clone, Copy)]
pub struct Ramp {
    value: f32,
    step: f32,
}

impl Ramp {
    /// A ramp resting at `value` that covers the full range 0..=1 in `length_samples` samples.
    pub fn new(value: f32, length_samples: usize) -> Self {
        Self { value, step: 1.0 / length_samples.max(1) as f32 }
    }

    /// The current value.
    pub fn value(&self) -> f32 {
        self.value
    }

    /// Jumps to `value` without ramping (used by `reset`, where a discontinuity is expected).
    pub fn jump_to(&mut self, value: f32) {
        self.value = value;
    }

    /// True when the ramp rests at `target`, i.e. the next samples need no per-sample gain.
    pub fn is_at(&self, target: f32) -> bool {
        self.value == target
    }

    /// Advances one sample towards `target` and returns the new value. Lands exactly on the
    /// target (no overshoot), so `is_at` becomes true and callers can take their fast path.
    #[inline(always)]
    pub fn next(&mut self, target: f32) -> f32 {
        let distance = target - self.value;
        self.value = if distance.abs() <= self.step { target } else { self.value + self.step.copysign(distance) };
        self.value
    }

    /// Fills `out` with the next `out.len()` values towards `target`.
    pub fn fill(&mut self, target: f32, out: &mut [f32]) {
        if self.is_at(target) {
            out.fill(target);
        } else {
            for slot in out {
                *slot = self.next(target);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reaches_target_in_length_samples_without_overshoot() {
        let mut ramp = Ramp::new(0.0, 4);
        let values: Vec<f32> = (0..6).map(|_| ramp.next(1.0)).collect();
        assert_eq!(values, [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
        assert!(ramp.is_at(1.0));
    }

    #[test]
    fn reverses_direction_mid_way_with_the_same_slope() {
        let mut ramp = Ramp::new(0.0, 4);
        ramp.next(1.0);
        ramp.next(1.0);
        assert_eq!(ramp.next(0.0), 0.25);
        assert_eq!(ramp.next(0.0), 0.0);
        assert_eq!(ramp.next(0.0), 0.0);
    }

    #[test]
    fn moves_between_arbitrary_gains() {
        let mut ramp = Ramp::new(2.0, 2);
        let mut out = [0.0; 4];
        ramp.fill(0.5, &mut out);
        assert_eq!(out, [1.5, 1.0, 0.5, 0.5]);
    }
}
