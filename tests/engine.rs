//! The engine driven directly, as the plugin and the CLI drive it: exact latency, offline
//! determinism, under-run crossfades, bad samples, reset and odd call sizes.

mod common;

use common::*;
use rvc_stage::engine::{BlockFailed, Controls, Engine, EngineConfig, Identity, RenderMode, Stage};

fn config(sample_rate: f64, max_buffer: usize, channels: usize, mode: RenderMode) -> EngineConfig {
    EngineConfig { sample_rate, max_buffer, channels, block_ms: 50.0, mode, ..EngineConfig::default() }
}

fn offline(
    sample_rate: f64,
    max_buffer: usize,
    channels: usize,
    stage: impl Stage<Controls = ()> + 'static,
) -> Engine<()> {
    Engine::start(config(sample_rate, max_buffer, channels, RenderMode::Offline), stage).unwrap()
}

#[test]
fn impulse_appears_exactly_after_the_reported_latency() {
    let rates = [8_000.0, 1_234.567_8, 44_100.0, 45_678.901, 48_000.0, 192_000.0];
    for (i, &rate) in rates.iter().enumerate() {
        for (max_buffer, channels) in [(1, 1), (17, 2), (512, 2), (2027, 1)] {
            let mut engine = offline(rate, max_buffer, channels, Identity);
            let latency = engine.latency_samples();
            let at = 123 + i;
            let mut input = vec![vec![0.0; at + latency + 200]; channels];
            for channel in &mut input {
                channel[at] = 1.0;
            }
            let output = render(&mut engine, &input, Controls::default(), random_sizes(i as u64, max_buffer));
            for (c, channel) in output.iter().enumerate() {
                let peaks: Vec<usize> = (0..channel.len()).filter(|&n| channel[n] != 0.0).collect();
                assert_eq!(peaks, [at + latency], "rate {rate} buffer {max_buffer} channel {c}");
                assert_eq!(channel[at + latency], 1.0);
            }
            assert_eq!(engine.stats().underruns(), 0, "offline renders never under-run");
        }
    }
}

#[test]
fn offline_output_does_not_depend_on_call_sizes() {
    let input = vec![noise(1, 30_000, 0.5), noise(2, 30_000, 0.5)];
    let controls = Controls { mix: 0.7, gain: 0.8, ..Controls::default() };
    let mut renders = Vec::new();
    for sizes in [0, 1, 2] {
        let mut engine = offline(44_100.0, 1024, 2, OnePole::default());
        let output = match sizes {
            0 => render(&mut engine, &input, controls, || 1024),
            1 => render(&mut engine, &input, controls, random_sizes(7, 1024)),
            _ => render(&mut engine, &input, controls, random_sizes(8, 3)),
        };
        renders.push(output);
    }
    assert!(renders[0][0].iter().any(|x| *x != 0.0));
    assert_eq!(renders[0], renders[1]);
    assert_eq!(renders[0], renders[2]);
}

/// With a stage that halves the signal, output = dry × (1 − g/2) where g is the wet
/// weight. Recovering g from every sample checks alignment of both paths and that g only
/// ever moves by one fade step per sample, i.e. every under-run is a crossfade, never a jump.
#[test]
fn realtime_underruns_crossfade_to_delayed_dry_without_allocating() {
    let rate = 48_000.0;
    let stage = Stalling { inner: Scale(0.5), every: 20, stall: std::time::Duration::from_millis(60), blocks: 0 };
    let mut engine = Engine::start(config(rate, 256, 1, RenderMode::Realtime), stage).unwrap();
    let latency = engine.latency_samples();
    let fade = engine.plan().fade;
    // A positive signal, so g can be recovered at every sample.
    let signal: Vec<f32> = (0..1_400_000).map(|n| 0.5 + 0.25 * (n as f32 * 0.001).sin()).collect();
    let mut output = signal.clone();
    let mut sizes = random_sizes(3, 256);
    let (mut start, mut calls) = (0, 0);
    while start < signal.len() && calls < 10_000 {
        let end = (start + sizes()).min(signal.len());
        let mut channels = [&mut output[start..end]];
        nice_assert_no_alloc::assert_no_alloc(|| engine.process(&mut channels, Controls::default()));
        // Run about four times faster than real time, so the worker keeps up between stalls.
        if calls % 8 == 7 {
            std::thread::sleep(std::time::Duration::from_secs_f64(8.0 * 128.0 / rate / 4.0));
        }
        start = end;
        calls += 1;
    }
    assert_eq!(calls, 10_000);
    let weights: Vec<f32> = (latency..start).map(|n| 2.0 * (1.0 - output[n] / signal[n - latency])).collect();
    let step = 1.0 / fade as f32;
    for (i, pair) in weights.windows(2).enumerate() {
        assert!((-1e-4..=1.0 + 1e-4).contains(&pair[1]), "weight {} at {}", pair[1], i + latency);
        assert!((pair[1] - pair[0]).abs() <= step + 1e-4, "jump {} -> {} at {}", pair[0], pair[1], i + latency);
    }
    let fully_wet = weights.iter().filter(|w| (**w - 1.0).abs() < 1e-4).count();
    let fully_dry = weights.iter().filter(|w| w.abs() < 1e-4).count();
    assert!(engine.stats().underruns() > 0, "stalls must be counted");
    eprintln!(
        "{fully_wet} fully wet, {fully_dry} fully dry of {} samples; {} under-runs",
        weights.len(),
        engine.stats().underruns()
    );
    // Proportions depend on how the machine schedules the worker; both states must occur.
    assert!(fully_wet > 0 && fully_dry > 0);
}

#[test]
fn non_finite_and_subnormal_input_never_reaches_the_output() {
    let mut input = vec![noise(4, 20_000, 1.0), noise(5, 20_000, 1.0)];
    for (i, bad) in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e-40, -1e-39, f32::MAX, f32::MIN].iter().enumerate() {
        for n in (i * 97..20_000).step_by(701) {
            input[n % 2][n] = *bad;
        }
    }
    for gain in [1.0, 3.98] {
        let mut engine = offline(96_000.0, 333, 2, Identity);
        let output =
            render(&mut engine, &input, Controls { mix: 0.5, gain, ..Controls::default() }, random_sizes(9, 333));
        assert_clean(&output);
        assert!(output[0].iter().any(|x| *x != 0.0));
    }
}

#[test]
fn reset_mid_stream_clears_history_without_allocating() {
    let mut engine = offline(22_050.0, 64, 1, Identity);
    let latency = engine.latency_samples();
    let input = noise(6, 3 * latency, 0.5);
    let mut output = input.clone();
    let mut sizes = random_sizes(10, 64);
    let (mut start, mut reset_at) = (0, None);
    while start < input.len() {
        if reset_at.is_none() && start >= latency + 1000 {
            nice_assert_no_alloc::assert_no_alloc(|| engine.reset());
            reset_at = Some(start);
        }
        let end = (start + sizes()).min(input.len());
        engine.process(&mut [&mut output[start..end]], Controls::default());
        start = end;
    }
    // Everything sent before the reset is gone; everything after comes out delayed.
    let reset_at = reset_at.unwrap();
    for n in reset_at..input.len() {
        let expected = if n >= reset_at + latency { input[n - latency] } else { 0.0 };
        assert_eq!(output[n], expected, "sample {n}");
    }
    assert_eq!(output[reset_at - 1], input[reset_at - 1 - latency]);
    assert_eq!(engine.stats().restarts(), 1);
}

#[test]
fn calls_larger_than_announced_are_split_and_stay_exact() {
    let mut engine = offline(48_000.0, 64, 1, Identity);
    let latency = engine.latency_samples();
    let input = noise(11, latency + 40_000, 0.5);
    let output = render(&mut engine, std::slice::from_ref(&input), Controls::default(), || 16_384);
    assert_eq!(&output[0][latency..], &input[..input.len() - latency]);
}

#[test]
fn dry_mix_and_bypass_keep_each_channels_own_signal_delayed() {
    let input = vec![noise(12, 20_000, 0.5), noise(13, 20_000, 0.5)];
    for controls in
        [Controls { mix: 0.0, ..Controls::default() }, Controls { bypass: true, gain: 0.1, ..Controls::default() }]
    {
        let mut engine = offline(16_000.0, 128, 2, Scale(-1.0));
        let latency = engine.latency_samples();
        let output = render(&mut engine, &input, controls, random_sizes(14, 128));
        for c in 0..2 {
            assert_eq!(&output[c][latency..], &input[c][..20_000 - latency], "{controls:?}");
        }
    }
}

#[test]
fn engine_rejects_configurations_it_cannot_run_with_a_clear_error() {
    let bad = [
        (EngineConfig { sample_rate: 0.0, ..config(48_000.0, 64, 2, RenderMode::Realtime) }, "sample rate 0 Hz"),
        (EngineConfig { sample_rate: f64::NAN, ..config(48_000.0, 64, 2, RenderMode::Realtime) }, "sample rate NaN Hz"),
        (EngineConfig { block_ms: 10.0, ..config(48_000.0, 64, 2, RenderMode::Realtime) }, "block length 10 ms"),
        (EngineConfig { max_buffer: 0, ..config(48_000.0, 64, 2, RenderMode::Realtime) }, "maximum buffer of 0"),
        (EngineConfig { channels: 0, ..config(48_000.0, 64, 2, RenderMode::Realtime) }, "no audio channels"),
    ];
    for (config, message) in bad {
        let error = Engine::start(config, Identity).err().expect("must be rejected");
        assert!(error.to_string().contains(message), "{error}");
    }
}

#[test]
fn wet_is_the_channel_average_for_any_channel_count() {
    for channels in [1, 2, 3, 6] {
        let input: Vec<Vec<f32>> = (0..channels).map(|c| noise(20 + c as u64, 12_000, 0.5)).collect();
        let mut engine = offline(32_000.0, 256, channels, Identity);
        let latency = engine.latency_samples();
        let output = render(&mut engine, &input, Controls::default(), random_sizes(15, 256));
        for n in latency..12_000 {
            let sum: f32 = input.iter().map(|c| c[n - latency]).sum();
            let average = if channels == 2 { sum * 0.5 } else { sum * (1.0 / channels as f32) };
            for (c, channel) in output.iter().enumerate() {
                assert_eq!(channel[n], average, "{channels} channels, channel {c}, sample {n}");
            }
        }
    }
}

/// A stage's own delay is part of the reported latency and compensated exactly.
#[test]
fn stage_latency_is_reported_and_compensated() {
    for stage_delay in [1, 37, 5000] {
        let mut engine = offline(44_100.0, 128, 1, DelayedHalf::new(stage_delay));
        let without_stage = offline(44_100.0, 128, 1, Identity).latency_samples();
        let latency = engine.latency_samples();
        assert_eq!(latency, without_stage + stage_delay);
        let at = 300;
        let mut input = vec![0.0; at + latency + 500];
        input[at] = 1.0;
        let output = render(&mut engine, &[input], Controls::default(), random_sizes(stage_delay as u64, 128));
        let peaks: Vec<(usize, f32)> = output[0].iter().copied().enumerate().filter(|(_, x)| *x != 0.0).collect();
        assert_eq!(peaks, [(at + latency, 0.5)], "stage delay {stage_delay}");
    }
}

/// Halves its input, and panics on block `panic_on` (counted from 0 in its life).
struct PanicsOnce {
    panic_on: usize,
    blocks: usize,
}

impl Stage for PanicsOnce {
    type Controls = ();
    fn process(&mut self, input: &[f32], _: &(), output: &mut [f32]) -> Result<(), BlockFailed> {
        self.blocks += 1;
        if self.blocks == self.panic_on + 1 {
            panic!("a test stage gave up on block {}", self.panic_on);
        }
        for (out, x) in output.iter_mut().zip(input) {
            *out = 0.5 * x;
        }
        Ok(())
    }
}

/// A stage that panics costs two blocks: that one and the next (where the reset stage warms
/// up) pass dry (crossfaded, counted as an under-run), the ones after are wet again, and an
/// offline render goes on at once instead of waiting for a worker that would never deliver.
#[test]
fn a_panicking_stage_passes_dry_while_it_recovers_and_wet_after() {
    for mode in [RenderMode::Offline, RenderMode::Realtime] {
        let stage = PanicsOnce { panic_on: 5, blocks: 0 };
        let mut engine = Engine::start(config(48_000.0, 256, 1, mode), stage).unwrap();
        let (latency, block) = (engine.latency_samples(), engine.plan().block);
        // Constant 1.0 input: output = 1 − g/2 for wet weight g.
        let input = vec![vec![1.0f32; 20 * block]];
        let mut output = input.clone();
        let mut start = 0;
        while start < input[0].len() {
            let end = (start + 256).min(input[0].len());
            engine.process(&mut [&mut output[0][start..end]], Controls::default());
            if mode == RenderMode::Realtime {
                std::thread::sleep(std::time::Duration::from_secs_f64(256.0 / 48_000.0));
                // real time
            }
            start = end;
        }
        let weights: Vec<f32> = output[0][latency..].iter().map(|out| 2.0 * (1.0 - out)).collect();
        // The crashed block and the next one (the reset stage warms up in it) pass dry.
        let gap = 5 * block..7 * block;
        assert!(weights[gap.clone()].iter().all(|g| *g == 0.0), "{mode:?}: the crashed block passes dry");
        let after = &weights[gap.end + block..];
        if mode == RenderMode::Offline {
            assert!(after.iter().all(|g| *g == 1.0), "wet again");
            assert!(weights[..gap.start - block].iter().all(|g| *g == 1.0), "wet before");
        } else {
            // Live, the machine's scheduling may add under-runs of its own.
            assert!(after.contains(&1.0), "wet again");
        }
        assert_eq!(engine.stats().crashes(), 1, "{mode:?}");
        assert!(engine.stats().underruns() >= 1, "{mode:?}: counted as an under-run");
    }
}

/// Waits, in the worker's offline settle, for a load that blocks until the test lets it go.
struct WaitsForLoad(rvc_stage::engine::slot::SlotReader<u32>);

impl Stage for WaitsForLoad {
    type Controls = ();
    fn process(&mut self, input: &[f32], _: &(), output: &mut [f32]) -> Result<(), BlockFailed> {
        output.copy_from_slice(input);
        Ok(())
    }
    fn settle(&mut self, wait: &rvc_stage::engine::FileWait) {
        self.0.settle(wait);
    }
}

/// Deactivation (dropping the engine) and dropping the file's slot return while a load is
/// still blocked, with the worker's wait for loads unbounded; the load's thread ends once it
/// is let go. (The test would hang, not fail, if either waited: each is given 30 s.)
#[test]
fn stopping_returns_while_a_load_is_blocked_and_the_load_ends_later() {
    use rvc_stage::engine::slot::{Loader, Slot};
    use std::sync::{mpsc, Arc, Mutex};
    let gate = Arc::new(Mutex::new(()));
    let closed = gate.lock().unwrap();
    let loader: Loader<u32> = {
        let gate = gate.clone();
        Arc::new(move |_: &std::path::Path| {
            drop(gate.lock().unwrap_or_else(|e| e.into_inner()));
            Ok(Arc::new(1))
        })
    };
    let slot = Slot::new(loader.clone());
    slot.request(Some("/blocked.bin".into()));
    let config = EngineConfig {
        file_wait: std::time::Duration::from_secs(24 * 3600),
        ..config(48_000.0, 4800, 1, RenderMode::Offline)
    };
    let mut engine = Engine::start(config, WaitsForLoad(slot.reader())).unwrap();
    // A whole block reaches the worker, which starts waiting for the load.
    let mut block = vec![0.0f32; 4800];
    engine.process(&mut [&mut block[..]], Controls::default());
    std::thread::sleep(std::time::Duration::from_millis(100));
    let (done, stopped) = mpsc::channel();
    std::thread::spawn(move || {
        drop(engine);
        drop(slot);
        done.send(()).unwrap();
    });
    stopped.recv_timeout(std::time::Duration::from_secs(30)).expect("deactivation waited for the blocked load");
    assert_eq!(Arc::strong_count(&loader), 2, "the load is still running, abandoned");
    drop(closed);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while Arc::strong_count(&loader) > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert_eq!(Arc::strong_count(&loader), 1, "the loader thread ended once let go");
}
