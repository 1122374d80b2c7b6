//! `cargo xtask bench`: the audio thread's `process` cost per call, next to a plain copy of the
//! same block (what a pass-through plugin costs) measured in the same run and the same way:
//! one clock reading around each call. Stereo, realtime mode, identity stage, a live worker;
//! calls are paced at four times real time so the worker keeps up and the steady state is
//! measured, as in a host.
//!
//! A third column times the bare handoff — pushing the block's mono samples into one ring and
//! popping as many from another, with a second thread echoing between them — because moving
//! samples between cores is a floor no process() built on a worker thread can go below.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rvc_stage::engine::{Controls, Engine, EngineConfig, Identity, RenderMode};

const SAMPLE_RATE: f64 = 48_000.0;
const PACE: f64 = 4.0;

fn main() {
    println!("audio-thread process() per call: stereo, {SAMPLE_RATE} Hz, realtime mode, identity stage, paced at {PACE}x real time");
    println!();
    println!("times in ns as min / median / p99; ratios of min / median / p99");
    println!();
    println!("| frames | calls | process | copy | handoff | process ÷ copy | process ÷ handoff | under-runs |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (frames, calls) in [(64, 6000), (128, 4000), (512, 1500)] {
        bench(frames, calls);
    }
}

fn bench(frames: usize, calls: usize) {
    let config = EngineConfig {
        sample_rate: SAMPLE_RATE,
        max_buffer: frames,
        channels: 2,
        block_ms: 100.0,
        mode: RenderMode::Realtime,
        ..EngineConfig::default()
    };
    let mut engine = Engine::start(config, Identity).expect("engine starts");
    let mut echo = Echo::start(frames);
    let input: Vec<Vec<f32>> =
        (0..2).map(|c| (0..frames).map(|n| ((n + c) as f32 * 0.01).sin() * 0.5).collect()).collect();
    let mut output = input.clone();
    let mut mono = vec![0.0f32; frames];
    let (mut process_ns, mut copy_ns, mut handoff_ns) = (Vec::new(), Vec::new(), Vec::new());
    let period = Duration::from_secs_f64(frames as f64 / SAMPLE_RATE / PACE);
    // Let the worker stream start and the wet path take over before measuring.
    let warmup = (engine.latency_samples() / frames + 1) * 2;
    for call in 0..warmup + calls {
        let next = Instant::now() + period;
        let copy = timed(|| {
            for (out, inp) in output.iter_mut().zip(&input) {
                out.copy_from_slice(black_box(inp));
            }
        });
        let handoff = timed(|| echo.exchange(black_box(&mut mono)));
        let mut channels: Vec<&mut [f32]> = output.iter_mut().map(Vec::as_mut_slice).collect();
        let process = timed(|| engine.process(black_box(&mut channels), Controls::default()));
        if call >= warmup {
            copy_ns.push(copy);
            handoff_ns.push(handoff);
            process_ns.push(process);
        }
        while Instant::now() < next {
            std::hint::spin_loop();
        }
    }
    let process = Stats::of(&mut process_ns);
    let copy = Stats::of(&mut copy_ns);
    let handoff = Stats::of(&mut handoff_ns);
    println!(
        "| {frames} | {calls} | {process} | {copy} | {handoff} | {} | {} | {} |",
        process.ratio(&copy),
        process.ratio(&handoff),
        engine.stats().underruns()
    );
}

fn timed(f: impl FnOnce()) -> f64 {
    let started = Instant::now();
    f();
    started.elapsed().as_nanos() as f64
}

/// A thread that moves samples from one ring to another, like the worker without a stage.
struct Echo {
    to_echo: rtrb::Producer<f32>,
    from_echo: rtrb::Consumer<f32>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Echo {
    fn start(frames: usize) -> Self {
        let (to_echo, mut echo_in) = rtrb::RingBuffer::new(frames * 64);
        let (mut echo_out, from_echo) = rtrb::RingBuffer::new(frames * 64);
        // Prime the return ring, so every exchange finds a block to pop.
        echo_out.push_entire_slice(&vec![0.0; frames * 32]).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut block = vec![0.0; frames];
            while !stopped.load(Ordering::Relaxed) {
                if echo_in.pop_entire_slice(&mut block).is_ok() {
                    echo_out.push_entire_slice(&block).unwrap();
                } else {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        from_echo.slots(); // first access outside the timed region
        Self { to_echo, from_echo, stop, thread: Some(thread) }
    }

    fn exchange(&mut self, samples: &mut [f32]) {
        self.to_echo.push_entire_slice(samples).expect("the echo keeps up");
        // A late echo thread only makes this cheaper; the ring is primed deep enough that it
        // does not happen in practice.
        let _ = self.from_echo.pop_entire_slice(samples);
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map(std::thread::JoinHandle::join);
    }
}

/// Minimum, median and 99th percentile. The minimum is the cost with warm caches and no
/// interference; the median and p99 show what a shared, noisy machine adds.
struct Stats([f64; 3]);

impl Stats {
    fn of(values: &mut [f64]) -> Self {
        values.sort_by(f64::total_cmp);
        let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
        Self([at(0.0), at(0.5), at(0.99)])
    }

    fn ratio(&self, other: &Self) -> String {
        let [a, b, c] = std::array::from_fn(|i| self.0[i] / other.0[i]);
        format!("{a:.1} / {b:.1} / {c:.1}")
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let [a, b, c] = self.0;
        write!(f, "{a:.0} / {b:.0} / {c:.0}")
    }
}
