//! Content features at the synthesizer's frame rate, shaped as RVC hands them over. Pure
//! functions over a window of frames; called on the worker thread (and by the CLI).
//!
//! RVC's synthesizer, its pitch track and its output framing run at 100 frames per second
//! (160 samples at 16 kHz); content models give 50. RVC's real-time path (`rtrvc.py`) appends
//! a copy of the window's last frame (the model's receptive field overhangs the window end, so
//! it gives one frame short of `samples / 320`), repeats every frame twice (nearest-neighbour
//! ×2) and cuts the result to `samples / 160` frames.

/// Samples per synthesizer frame at 16 kHz (100 frames per second).
pub const SYNTH_HOP: usize = 160;

/// Frames at 100 fps for a window of `samples` 16 kHz samples whose content frames (`dim`
/// values each, row-major) are `frames`, written to `out`: RVC's last-frame padding, ×2
/// repetition and cut to `samples / 160`. Empty when `frames` is.
pub fn to_synth_rate(frames: &[f32], dim: usize, samples: usize, out: &mut Vec<f32>) {
    out.clear();
    let Some(last) = frames.len().checked_sub(dim).filter(|_| dim > 0) else { return };
    let wanted = samples / SYNTH_HOP;
    let padded = frames.chunks_exact(dim).chain(std::iter::once(&frames[last..]));
    for frame in padded.flat_map(|frame| [frame, frame]).take(wanted) {
        out.extend_from_slice(frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(values: &[f32]) -> Vec<f32> {
        values.iter().flat_map(|&v| [v, -v]).collect()
    }

    #[test]
    fn pads_the_last_frame_repeats_each_twice_and_cuts_to_the_window() {
        let mut out = Vec::new();
        // 1600 samples: the model gives 4 frames (receptive field 400, hop 320), RVC wants 10.
        to_synth_rate(&frames(&[1.0, 2.0, 3.0, 4.0]), 2, 1600, &mut out);
        assert_eq!(out, frames(&[1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 4.0, 4.0]));
        // 1440 samples want 9: the cut takes half a padded frame.
        to_synth_rate(&frames(&[1.0, 2.0, 3.0, 4.0]), 2, 1440, &mut out);
        assert_eq!(out, frames(&[1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 4.0]));
        // More frames than the window needs: cut, nothing padded.
        to_synth_rate(&frames(&[1.0, 2.0, 3.0]), 2, 320, &mut out);
        assert_eq!(out, frames(&[1.0, 1.0]));
    }

    #[test]
    fn no_frames_give_nothing() {
        let mut out = vec![1.0];
        to_synth_rate(&[], 2, 16_000, &mut out);
        assert!(out.is_empty());
        to_synth_rate(&[1.0], 0, 16_000, &mut out);
        assert!(out.is_empty());
    }
}
