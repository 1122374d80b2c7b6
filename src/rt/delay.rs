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
    /// A delay line of `delay` samples, initially silent. A delay of 0 passes samples through.
    pub fn new(delay: usize) -> Self {
        Self { buffer: vec![0.0; delay], position: 0 }
    }

    /// The delay in samples.
    pub fn delay(&self) -> usize {
        self.buffer.len()
    }

    /// Silences the line without reallocating.
    pub fn clear(&mut self) {
        self.buffer.fill(0.0);
        self.position = 0;
    }

    /// Replaces every sample of `samples` by the sample that entered the line `delay`
    /// samples earlier.
    pub fn process_in_place(&mut self, samples: &mut [f32]) {
        if self.buffer.is_empty() {
            return;
        }
        let mut rest = samples;
        while !rest.is_empty() {
            // Swap runs that end at the buffer's wrap point, so each run is one tight loop.
            let run = rest.len().min(self.buffer.len() - self.position);
            let (head, tail) = rest.split_at_mut(run);
            head.swap_with_slice(&mut self.buffer[self.position..self.position + run]);
            self.position = (self.position + run) % self.buffer.len();
            rest = tail;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delayed_through(delay: usize, input: &[f32], chunk: usize) -> Vec<f32> {
        let mut line = DelayLine::new(delay);
        let mut out = input.to_vec();
        for part in out.chunks_mut(chunk) {
            line.process_in_place(part);
        }
        out
    }

    #[test]
    fn delays_by_exactly_the_requested_samples_for_any_chunking() {
        let input: Vec<f32> = (1..=50).map(|i| i as f32).collect();
        for delay in [0, 1, 7, 13, 49, 50, 64] {
            let expected: Vec<f32> =
                (0..50).map(|i| if i >= delay { input[i - delay] } else { 0.0 }).collect();
            for chunk in [1, 3, 7, 16, 50] {
                assert_eq!(delayed_through(delay, &input, chunk), expected, "delay {delay} chunk {chunk}");
            }
        }
    }

    #[test]
    fn clear_silences_the_line() {
        let mut line = DelayLine::new(3);
        let mut block = [1.0, 2.0, 3.0];
        line.process_in_place(&mut block);
        line.clear();
        let mut block = [0.0; 3];
        line.process_in_place(&mut block);
        assert_eq!(block, [0.0; 3]);
    }
}
