//! The built plugin in a CLAP host: loads `target/bundled/rvc-stage.clap` (the binary a DAW
//! loads; `cargo xtask test` builds it and sets `RVC_STAGE_CLAP`) and replays what validators
//! check: every sample rate and buffer size, exact latency, offline determinism, clean output,
//! state round-trips and a cheap instantiation.

#[path = "../xtask/src/clap_host.rs"]
#[allow(dead_code)] // each test binary uses part of the host
mod clap_host;
mod common;

use clap_host::{check_clean, load, Plugin, Settings};
use common::{noise, random_sizes};

fn bundle() -> std::path::PathBuf {
    common::bundled("rvc-stage.clap")
}

/// Sample rates clap-validator uses, fractional ones included.
const RATES: [f64; 13] = [
    8_000.0,
    22_050.0,
    44_100.0,
    48_000.0,
    88_200.0,
    96_000.0,
    192_000.0,
    384_000.0,
    768_000.0,
    1_234.567_8,
    12_345.678,
    45_678.901,
    123_456.78,
];

fn impulse(channels: usize, at: usize, len: usize) -> Vec<Vec<f32>> {
    let mut input = vec![vec![0.0; len]; channels];
    for channel in &mut input {
        channel[at] = 1.0;
    }
    input
}

#[test]
fn latency_is_exact_at_every_rate_and_buffer_size() {
    let entry = load(&bundle()).unwrap();
    let mut plugin = Plugin::new(&entry).unwrap();
    for (i, &sample_rate) in RATES.iter().enumerate() {
        for max_frames in [1, 2027, 16_384] {
            if max_frames == 1 && sample_rate > 100_000.0 {
                continue; // a million single-sample calls in a debug test adds nothing new
            }
            let settings = Settings::new(sample_rate, max_frames, true);
            // Learn the latency first, then render an impulse long enough to come out.
            let latency = plugin.render(settings, &impulse(2, 0, 1), &[], || 1).unwrap().latency as usize;
            let at = 100 + i;
            let input = impulse(2, at, at + latency + 100);
            let render = plugin.render(settings, &input, &[], random_sizes(i as u64, max_frames as usize)).unwrap();
            check_clean(&render.output).unwrap();
            for (c, channel) in render.output.iter().enumerate() {
                let peaks: Vec<usize> = (0..channel.len()).filter(|&n| channel[n] != 0.0).collect();
                assert_eq!(peaks, [at + latency], "{sample_rate} Hz, {max_frames} frames, channel {c}");
                assert_eq!(channel[at + latency], 1.0);
            }
        }
    }
    assert!(plugin.latency_notifications() > 0, "latency changes must be announced from activate");
}

#[test]
fn offline_renders_are_identical_and_clean() {
    let entry = load(&bundle()).unwrap();
    let mut plugin = Plugin::new(&entry).unwrap();
    let settings = Settings::new(44_100.0, 4096, true);
    let mut input = vec![noise(1, 60_000, 0.8), noise(2, 60_000, 0.8)];
    // Garbage in: the output must still be clean.
    for (n, bad) in [(500, f32::NAN), (9000, f32::INFINITY), (12_000, 1e-40), (20_000, f32::NEG_INFINITY)] {
        input[0][n] = bad;
        input[1][n + 1] = bad;
    }
    let params = [("Dry/Wet", "60%"), ("Output Gain", "-3 dB")];
    let first = plugin.render(settings, &input, &params, random_sizes(1, 4096)).unwrap();
    let second = plugin.render(settings, &input, &params, random_sizes(2, 4096)).unwrap();
    check_clean(&first.output).unwrap();
    assert!(first.output[0].iter().any(|x| *x != 0.0));
    assert!(first.output == second.output, "two offline renders differ");
}

#[test]
fn realtime_renders_with_random_buffer_sizes_stay_clean() {
    let entry = load(&bundle()).unwrap();
    let mut plugin = Plugin::new(&entry).unwrap();
    for (sample_rate, max_frames) in [(48_000.0, 16_384), (96_000.0, 1), (12_345.678, 17)] {
        let settings = Settings::new(sample_rate, max_frames, false);
        let input = vec![noise(3, 100_000, 0.5); 2];
        let render = plugin.render(settings, &input, &[], random_sizes(4, max_frames as usize)).unwrap();
        check_clean(&render.output).unwrap();
    }
}

/// Random parameter values, bounds included, as clap-validator's parameter fuzzing sends them.
#[test]
fn parameter_fuzzing_keeps_the_output_clean() {
    let entry = load(&bundle()).unwrap();
    let mut plugin = Plugin::new(&entry).unwrap();
    let mut rng = fastrand::Rng::with_seed(21);
    let input = vec![noise(6, 20_000, 0.9), noise(7, 20_000, 0.9)];
    for round in 0..12 {
        let mix = format!("{}%", [0, 100, rng.u32(0..=100)][round % 3]);
        let gain = format!("{}", [-36.0, 12.0, rng.f32() * 48.0 - 36.0][round % 3]);
        let block = format!("{}", [50, 500, rng.u32(50..=500)][round % 3]);
        let bypass = if rng.bool() { "Bypassed" } else { "Not Bypassed" };
        let ratio = format!("{}", [0.0, 1.0, rng.f32()][round % 3]);
        let params = [
            ("Index Ratio", ratio.as_str()),
            ("Dry/Wet", mix.as_str()),
            ("Output Gain", gain.as_str()),
            ("Block Size", block.as_str()),
            ("Bypass", bypass),
        ];
        let settings = Settings::new(44_100.0, 1024, round % 2 == 0);
        let render = plugin.render(settings, &input, &params, random_sizes(round as u64, 1024)).unwrap();
        check_clean(&render.output).unwrap_or_else(|e| panic!("{params:?}: {e}"));
    }
}

#[test]
fn mono_layout_is_supported() {
    let entry = load(&bundle()).unwrap();
    let mut plugin = Plugin::new(&entry).unwrap();
    let settings = Settings::new(48_000.0, 512, true);
    let latency = plugin.render(settings, &impulse(1, 0, 1), &[], || 1).unwrap().latency as usize;
    let render = plugin.render(settings, &impulse(1, 10, latency + 100), &[], || 512).unwrap();
    assert_eq!(render.output[0][10 + latency], 1.0);
}

#[test]
fn state_round_trips_byte_identically() {
    let entry = load(&bundle()).unwrap();
    let mut plugin = Plugin::new(&entry).unwrap();
    // Change parameters through the audio path, as automation would.
    let settings = Settings::new(48_000.0, 256, false);
    let params = [
        ("Dry/Wet", "25%"),
        ("Output Gain", "6.5"),
        ("Block Size", "250"),
        ("Bypass", "Bypassed"),
        ("Index Ratio", "0.3"),
    ];
    plugin.render(settings, &vec![vec![0.0; 256]; 2], &params, || 256).unwrap();
    let saved = plugin.save_state().unwrap();
    assert_ne!(saved, Plugin::new(&entry).unwrap().save_state().unwrap(), "changed parameters must be saved");

    let mut restored = Plugin::new(&entry).unwrap();
    restored.load_state(&saved).unwrap();
    assert_eq!(restored.save_state().unwrap(), saved);
    for (name, text) in [
        ("Dry/Wet", "25%"),
        ("Output Gain", "6.5 dB"),
        ("Block Size", "250 ms"),
        ("Bypass", "Bypassed"),
        ("Index Ratio", "0.30"),
    ] {
        assert_eq!(restored.param_text(name).unwrap(), text);
    }
    // Loading garbage is refused without crashing, and leaves a working plugin.
    for seed in 0..3 {
        let garbage: Vec<u8> = noise(5 + seed, 1 << 20, 1.0).iter().map(|x| x.to_bits() as u8).collect();
        assert!(restored.load_state(&garbage).is_err());
    }
    assert!(restored.load_state(&[]).is_err());
    assert_eq!(restored.save_state().unwrap(), saved);
}

#[test]
fn block_size_sets_the_reported_latency() {
    let entry = load(&bundle()).unwrap();
    let mut plugin = Plugin::new(&entry).unwrap();
    let settings = Settings::new(48_000.0, 512, true);
    let silence = vec![vec![0.0; 1]; 2];
    let mut latency_with_block = |ms: &str| {
        // The new block size is used from the next activation on.
        plugin.render(settings, &silence, &[("Block Size", ms)], || 1).unwrap();
        plugin.render(settings, &silence, &[], || 1).unwrap().latency
    };
    let short = latency_with_block("50");
    let long = latency_with_block("500");
    assert_eq!(long - short, 2 * (24_000 - 2_400), "two block lengths (accumulation and compute budget)");
}

#[test]
fn instantiating_is_cheap() {
    let entry = load(&bundle()).unwrap();
    Plugin::new(&entry).unwrap(); // warm the dynamic loader
    let start = std::time::Instant::now();
    let mut plugin = Plugin::new(&entry).unwrap();
    let elapsed = start.elapsed();
    plugin.save_state().unwrap();
    // Scan time is what this asserts on, not speed: 100 ms is clap-validator's scan limit.
    assert!(elapsed < std::time::Duration::from_millis(100), "instantiation took {elapsed:?}");
}
