//! A fixed delay line for one channel: the latency-compensated dry path. Runs on the audio
//! thread; the buffer is allocated once by `new` and only overwritten afterwards.

/// Delays a stream of samples by exactly `delay` samples, processing any number of samples
/// per call.
#[derive(Debug, Clone)]
pub struct DelayLine {
    /// Circular storage of the last `delay` input samples.
    buffer: Vec<f32>,
    /// Index of the oldest sample, which is the next one to come out.
    position: usize,
}

impl DelayLine {
    /// A delay line of `delay` samples (at least one), initially silent. Called on the main
    /// thread; the engine's latency is never zero.
    pub fn new(delay: usize) -> Self {
        assert!(delay > 0, "a delay line needs at least one sample of delay");
        Self { buffer: vec![0.0; delay], position: 0 }
    }

    /// Silences the line without reallocating.
    pub fn clear(&mut self) {
        self.buffer.fill(0.0);
        self.position = 0;
    }

    /// Visits `samples` in runs that do not wrap around the line's buffer and calls
    /// `visit(run, line, offset)`, where `line` holds the delayed samples for `run` (which
    /// starts at `offset` within `samples`). `visit` must leave the new input in `line`; what it
    /// leaves in `run` is up to it. Runs let callers fuse their per-sample work into the delay
    /// in one vectorisable loop.
    pub fn process_runs(&mut self, samples: &mut [f32], mut visit: impl FnMut(&mut [f32], &mut [f32], usize)) {
        let mut offset = 0;
        while offset < samples.len() {
            let run = (samples.len() - offset).min(self.buffer.len() - self.position);
            visit(&mut samples[offset..offset + run], &mut self.buffer[self.position..self.position + run], offset);
            self.position = (self.position + run) % self.buffer.len();
            offset += run;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain delay: every sample replaced by the one that entered `delay` samples earlier.
    fn delay_in_place(line: &mut DelayLine, samples: &mut [f32]) {
        line.process_runs(samples, |run, line, _| run.swap_with_slice(line));
    }

    fn delayed_through(delay: usize, input: &[f32], chunk: usize) -> Vec<f32> {
        let mut line = DelayLine::new(delay);
        let mut out = input.to_vec();
        for part in out.chunks_mut(chunk) {
            delay_in_place(&mut line, part);
        }
        out
    }

    #[test]
    fn delays_by_exactly_the_requested_samples_for_any_chunking() {
        let input: Vec<f32> = (1..=50).map(|i| i as f32).collect();
        for delay in [1, 7, 13, 49, 50, 64] {
            let expected: Vec<f32> = (0..50).map(|i| if i >= delay { input[i - delay] } else { 0.0 }).collect();
            for chunk in [1, 3, 7, 16, 50] {
                assert_eq!(delayed_through(delay, &input, chunk), expected, "delay {delay} chunk {chunk}");
            }
        }
    }

    #[test]
    fn runs_expose_delayed_samples_and_take_new_input() {
        for delay in [1, 5] {
            let mut line = DelayLine::new(delay);
            let input: Vec<f32> = (1..=12).map(|i| i as f32).collect();
            let mut out = input.clone();
            for part in out.chunks_mut(7) {
                line.process_runs(part, |run, line, _| {
                    for (x, slot) in run.iter_mut().zip(line.iter_mut()) {
                        let delayed = std::mem::replace(slot, *x);
                        *x = delayed * 10.0;
                    }
                });
            }
            let expected: Vec<f32> = (0..12).map(|i| if i >= delay { input[i - delay] * 10.0 } else { 0.0 }).collect();
            assert_eq!(out, expected, "delay {delay}");
        }
    }

    #[test]
    fn clear_silences_the_line() {
        let mut line = DelayLine::new(3);
        let mut block = [1.0, 2.0, 3.0];
        delay_in_place(&mut line, &mut block);
        line.clear();
        let mut block = [0.0; 3];
        delay_in_place(&mut line, &mut block);
        assert_eq!(block, [0.0; 3]);
    }
}
