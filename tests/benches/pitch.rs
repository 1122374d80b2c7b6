//! `cargo xtask bench`: the built-in pitch estimator's cost per worker block of 0.1 and 0.25 s
//! (ten and twenty-five 10 ms frames, each analysed over 1024 samples at 16 kHz, plus the
//! fixed-lag Viterbi step), as milliseconds and as a share of the block's real time (the
//! target is under 2 %), next to a plain 1024-point FFT per frame measured the same way.

use std::hint::black_box;
use std::time::Instant;

use rvc_stage::pitch::{PitchTracker, TRACKER_FRAME};

const RATE: f64 = 16_000.0;
const HOP: usize = 160;

fn main() {
    let audio: Vec<f32> = {
        let mut phase = 0.0f64;
        (0..16_000 * 20)
            .map(|n| {
                let t = n as f64 / RATE;
                phase += std::f64::consts::TAU * (140.0 + 60.0 * (0.5 * t).sin()) / RATE;
                ((1..8).map(|h| (h as f64 * phase).sin() / h as f64).sum::<f64>() * 0.2) as f32
            })
            .collect()
    };
    println!("built-in pitch estimator per worker block (16 kHz, 10 ms frames, one thread)");
    println!();
    println!("| block | estimator ms (median) | share of real time | FFT-only reference ms | × FFT-only |");
    println!("|---:|---:|---:|---:|---:|");
    for block_s in [0.1, 0.25] {
        let frames = (block_s * 100.0) as usize;
        let (ours, reference) = (measure_tracker(&audio, frames), measure_fft(&audio, frames));
        println!(
            "| {block_s} s | {ours:.3} | {:.2} % | {reference:.3} | {:.1} |",
            ours / (block_s * 1000.0) * 100.0,
            ours / reference
        );
    }
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn measure_tracker(audio: &[f32], frames: usize) -> f64 {
    let mut tracker = PitchTracker::new();
    let mut times = Vec::new();
    let mut frame = 0;
    while (frame + frames) * HOP + TRACKER_FRAME <= audio.len() {
        let start = Instant::now();
        for k in frame..frame + frames {
            black_box(tracker.push(&audio[k * HOP..][..TRACKER_FRAME]));
        }
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        frame += frames;
    }
    median(times)
}

/// One forward 1024-point real FFT per frame: the least any frame-wise estimator does.
fn measure_fft(audio: &[f32], frames: usize) -> f64 {
    let fft = realfft::RealFftPlanner::<f32>::new().plan_fft_forward(TRACKER_FRAME);
    let (mut input, mut output, mut scratch) = (fft.make_input_vec(), fft.make_output_vec(), fft.make_scratch_vec());
    let mut times = Vec::new();
    let mut frame = 0;
    while (frame + frames) * HOP + TRACKER_FRAME <= audio.len() {
        let start = Instant::now();
        for k in frame..frame + frames {
            input.copy_from_slice(&audio[k * HOP..][..TRACKER_FRAME]);
            fft.process_with_scratch(&mut input, &mut output, &mut scratch).unwrap();
            black_box(&output);
        }
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        frame += frames;
    }
    median(times)
}
