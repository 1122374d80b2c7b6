//! The built `.clap` converts a voice exactly as `rvc-stage convert` does: the same file, the
//! same files in the state and the same controls give byte-identical output, offline, through
//! the host harness (the plugin's own state and parameters, not the library's API).

#[path = "../xtask/src/clap_host.rs"]
#[allow(dead_code)] // each test binary uses part of the host
mod clap_host;
mod common;

use std::path::Path;

use clap_host::{check_clean, load, Plugin, Settings};

const RATE: u32 = 44_100;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models").join(name)
}

#[test]
fn the_plugin_renders_what_the_cli_converts_byte_for_byte() {
    let dir = common::scratch("plugin-convert");
    let (hubert, synth) = (fixture("hubert-tiny-768.onnx"), fixture("demo-voice-768.onnx"));
    let signal = common::voices::voice("glide", 2.0, |t| 120.0 + 60.0 * t, Some(30.0), 3);
    let input: Vec<f32> = signal.audio.iter().flat_map(|&x| [x * 0.5; 2]).take(RATE as usize * 2).collect();
    // (16 kHz audio read as 44.1 kHz: a faster, higher voice; any voice will do.)
    let wav = dir.join("in.wav");
    common::write_wav(&wav, RATE, &[input.clone(), input.clone()]);

    let out = dir.join("out.wav");
    let (ok, text) = common::rvc_stage_cli(&[
        &"convert",
        &wav,
        &"-o",
        &out,
        &"--hubert",
        &hubert,
        &"--synth",
        &synth,
        &"--transpose",
        &"7",
        &"--protect",
        &"0.2",
    ]);
    assert!(ok, "{text}");
    let mut reader = hound::WavReader::open(&out).unwrap();
    let cli: Vec<f32> = reader.samples::<f32>().map(Result::unwrap).step_by(2).collect();

    let entry = load(&common::bundled("rvc-stage.clap")).unwrap();
    let mut plugin = Plugin::new(&entry).unwrap();
    plugin.set_persisted_paths(&[("hubert-path", &hubert), ("synth-path", &synth)]).unwrap();
    let settings = Settings::new(f64::from(RATE), 512, true);
    let latency = plugin.render(settings, &[vec![0.0; 1], vec![0.0; 1]], &[], || 1).unwrap().latency as usize;
    let mut padded = input.clone();
    padded.resize(input.len() + latency, 0.0);
    let params = [("Transpose", "7"), ("Protect", "0.2")];
    let render = plugin.render(settings, &[padded.clone(), padded], &params, || 480).unwrap();
    check_clean(&render.output).unwrap();
    let plugin_out = &render.output[0][latency..];

    assert_eq!(plugin_out.len(), cli.len());
    let moved = cli.iter().zip(&input).filter(|(a, b)| (*a - *b).abs() > 1e-3).count();
    assert!(moved > cli.len() / 2, "the CLI's output is not converted ({moved} samples differ from the input)");
    let first_difference = plugin_out.iter().zip(&cli).position(|(a, b)| a.to_bits() != b.to_bits());
    assert_eq!(first_difference, None, "the plugin's output differs from the CLI's");
    std::fs::remove_dir_all(dir).unwrap();
}
