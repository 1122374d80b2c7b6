//! Sample hygiene: what may leave the plugin is finite and never subnormal. Runs on the audio
//! thread, written so the compiler can vectorise it (a branch-free select per sample).

/// Maps NaN, ±Inf and subnormal values to 0.0 and passes every other value through.
///
/// Validators reject subnormal output (it stalls some CPUs downstream) and any non-finite
/// value; zeroing them is the least surprising repair.
#[inline(always)]
#[allow(clippy::manual_range_contains)] // `&` on purpose: no short-circuit branch
pub fn flush(x: f32) -> f32 {
    let magnitude = x.abs();
    // NaN fails both comparisons. Masking the bits instead of branching keeps the loops that
    // call this vectorised even without AVX.
    let keep = (magnitude >= f32::MIN_POSITIVE) & (magnitude <= f32::MAX);
    f32::from_bits(x.to_bits() & u32::from(keep).wrapping_neg())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_keeps_normal_values_and_zeroes_the_rest() {
        for x in [1.0f32, -1.0, 0.5, f32::MAX, f32::MIN, f32::MIN_POSITIVE, -f32::MIN_POSITIVE] {
            assert_eq!(flush(x), x);
        }
        for x in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e-40, -1e-40, f32::MIN_POSITIVE / 2.0] {
            assert_eq!(flush(x), 0.0, "{x:e} must be flushed");
        }
        assert_eq!(flush(0.0), 0.0);
        assert_eq!(flush(-0.0), 0.0);
    }
}
