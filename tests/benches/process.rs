//! `cargo xtask bench`: the audio thread's `process` cost per call, next to a plain copy of the
//! same block measured in the same run (what a pass-through plugin costs). Stereo, realtime
//! mode, identity stage, a live worker; calls are paced at four times real time so the worker
//! keeps up and the steady-state path is what gets measured, as in a host.

use std::hint::black_box;
use std::time::{Duration, Instant};

use rvc_stage::engine::{Controls, Engine, EngineConfig, Identity, RenderMode};

const SAMPLE_RATE: f64 = 48_000.0;
const PACE: f64 = 4.0;
/// Copies are timed in batches: one copy of 64 frames is shorter than the clock's resolution.
const COPY_BATCH: u32 = 16;

fn main() {
    println!("audio-thread process() per call, stereo {SAMPLE_RATE} Hz, realtime mode, identity stage");
    println!("| frames | calls | process median ns | process p99 ns | copy median ns | copy p99 ns | median ratio | p99 ratio | under-runs |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (frames, calls) in [(64, 6000), (128, 4000), (512, 1500)] {
        bench(frames, calls);
    }
}

fn bench(frames: usize, calls: usize) {
    let config = EngineConfig { sample_rate: SAMPLE_RATE, max_buffer: frames, channels: 2, block_ms: 100.0, mode: RenderMode::Realtime };
    let mut engine = Engine::start(config, Box::new(Identity)).expect("engine starts");
    let input: Vec<Vec<f32>> = (0..2).map(|c| (0..frames).map(|n| ((n + c) as f32 * 0.01).sin() * 0.5).collect()).collect();
    let mut output = input.clone();
    let mut process_ns = Vec::with_capacity(calls);
    let mut copy_ns = Vec::with_capacity(calls);
    let period = Duration::from_secs_f64(frames as f64 / SAMPLE_RATE / PACE);
    // Let the worker stream start and the wet path take over before measuring.
    let warmup = (engine.latency_samples() / frames + 1) * 2;
    for call in 0..warmup + calls {
        let next = Instant::now() + period;
        let started = Instant::now();
        for _ in 0..COPY_BATCH {
            for (out, inp) in output.iter_mut().zip(&input) {
                out.copy_from_slice(black_box(inp));
            }
            black_box(&mut output);
        }
        let copied = started.elapsed();
        let mut channels: Vec<&mut [f32]> = output.iter_mut().map(Vec::as_mut_slice).collect();
        let started = Instant::now();
        engine.process(black_box(&mut channels), Controls::default());
        let processed = started.elapsed();
        if call >= warmup {
            copy_ns.push(copied.as_nanos() as f64 / f64::from(COPY_BATCH));
            process_ns.push(processed.as_nanos() as f64);
        }
        while Instant::now() < next {
            std::hint::spin_loop();
        }
    }
    let (pm, p99) = percentiles(&mut process_ns);
    let (cm, c99) = percentiles(&mut copy_ns);
    println!(
        "| {frames} | {calls} | {pm:.0} | {p99:.0} | {cm:.0} | {c99:.0} | {:.2} | {:.2} | {} |",
        pm / cm,
        p99 / c99,
        engine.stats().underruns()
    );
}

fn percentiles(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}
