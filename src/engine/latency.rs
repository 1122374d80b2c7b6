//! Latency arithmetic: how many samples each part of the real-time scheme needs, and the one
//! constant the plugin reports. Computed on the main thread at activation.
//!
//! Input sample `n` can leave the plugin as processed audio only once
//! 1. its whole worker block has arrived (`block`),
//! 2. the host call that completes that block has returned — a call may deliver up to
//!    `host_buffer` samples at once and the audio thread cannot wait inside it (`host_buffer`),
//! 3. the worker has processed the block (`compute_budget`, one block's duration: a stage that
//!    keeps up with real time on average fits into it),
//! 4. the audio thread can see `fade` samples ahead, so a late block is faded out instead of
//!    cut (`fade`), and
//! 5. the stage's own algorithmic delay has passed (`stage`, e.g. resampling filters).
//!
//! The sum is reported to the host and never changes while active.

/// Length of the wet/dry crossfade used when the worker is late (and when it recovers).
pub const FADE_MS: f64 = 10.0;

/// The latency budget of one activation, every term in host-rate samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyPlan {
    /// Samples per worker block.
    pub block: usize,
    /// Largest host buffer.
    pub host_buffer: usize,
    /// Time the worker has to process one block.
    pub compute_budget: usize,
    /// Under-run crossfade length, which is also the audio thread's look-ahead into wet audio.
    pub fade: usize,
    /// Algorithmic delay of the stage itself.
    pub stage: usize,
}

/// Converts a duration to a whole number of samples (at least one).
pub fn samples_for_ms(ms: f64, sample_rate: f64) -> usize {
    ((ms * sample_rate / 1000.0).round() as usize).max(1)
}

impl LatencyPlan {
    pub fn new(sample_rate: f64, max_buffer: usize, block_ms: f64, stage_latency: usize) -> Self {
        let block = samples_for_ms(block_ms, sample_rate);
        Self {
            block,
            host_buffer: max_buffer,
            compute_budget: block,
            fade: samples_for_ms(FADE_MS, sample_rate),
            stage: stage_latency,
        }
    }

    /// The latency reported to the host: an impulse at input sample `n` appears at output
    /// sample `n + total()`.
    pub fn total(&self) -> usize {
        self.block + self.host_buffer + self.compute_budget + self.fade + self.stage
    }

    /// Capacity of each handoff ring: twice what is in flight at any time (latency plus one
    /// host buffer on either side), so a worker stall of about one latency more than the budget
    /// is absorbed before the stream restarts. Not more: every slot is touched cyclically, and
    /// rings that stay in the cache keep the audio thread's slowest calls about five times
    /// faster (measured with `cargo xtask bench`, p99 at 64 frames).
    pub fn ring_capacity(&self) -> usize {
        2 * (self.total() + 2 * self.host_buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_is_the_sum_of_the_documented_terms() {
        let plan = LatencyPlan::new(48_000.0, 512, 100.0, 7);
        assert_eq!(plan.block, 4800);
        assert_eq!(plan.compute_budget, 4800);
        assert_eq!(plan.fade, 480);
        assert_eq!(plan.total(), 4800 + 512 + 4800 + 480 + 7);
    }

    #[test]
    fn odd_rates_round_to_whole_samples() {
        let plan = LatencyPlan::new(1234.5678, 1, 50.0, 0);
        assert_eq!(plan.block, 62); // 61.73 samples
        assert_eq!(plan.fade, 12); // 12.35 samples
        let plan = LatencyPlan::new(45_678.901, 17, 100.0, 0);
        assert_eq!(plan.block, 4568);
        assert_eq!(plan.fade, 457);
    }

    #[test]
    fn tiny_rates_still_get_one_sample_per_term() {
        let plan = LatencyPlan::new(1.0, 1, 50.0, 0);
        assert_eq!((plan.block, plan.fade), (1, 1));
    }
}
