//! The built `.clap` with the tiny content model and a real index, in the CLAP host harness:
//! the features its worker computes (recorded through `RVC_STAGE_FEATURE_DUMP`) are the ones
//! `rvc-stage features` writes for the same audio, offline renders repeat exactly, and a file
//! it cannot use is explained in its log (`NICE_LOG`). Its own test binary: both are switched
//! on through the process environment, which the other plugin tests must not see.

#[path = "../xtask/src/clap_host.rs"]
#[allow(dead_code)] // each test binary uses part of the host
mod clap_host;
mod common;

use std::ffi::OsStr;
use std::path::Path;

use clap_host::{check_clean, load, Plugin, Settings};
use common::{noise, random_sizes, rvc_stage_cli, scratch};
use rvc_stage::npy::{read_matrix, Matrix};
use rvc_stage::plugin::FEATURE_DUMP_VAR;

const RATE: u32 = 44_100;

/// Renders `voice` (on both channels, then 1.7 s of silence so every frame of it is computed)
/// offline through `plugin` with calls of random sizes from `seed`; returns the output, the
/// latency and the features its worker recorded.
fn render_with_dump(plugin: &mut Plugin, voice: &[f32], dump: &Path, seed: u64) -> (Vec<Vec<f32>>, u32, Matrix) {
    let settings = Settings::new(f64::from(RATE), 512, true);
    let mut input = voice.to_vec();
    input.resize(voice.len() + RATE as usize + 30_000, 0.0);
    let params = [("Index Ratio", "0.6"), ("Block Size", "100"), ("Context", "500 ms")];
    let render = plugin.render(settings, &[input.clone(), input], &params, random_sizes(seed, 512)).unwrap();
    (render.output, render.latency, read_matrix(dump).unwrap())
}

#[test]
fn the_plugin_worker_computes_what_the_cli_writes_renders_repeat_and_bad_files_are_logged() {
    let dir = scratch("plugin-features");
    let dump = dir.join("dump.npy");
    let log = dir.join("plugin.log");
    // The only test in this binary, and set before the plugin is loaded.
    std::env::set_var(FEATURE_DUMP_VAR, &dump);
    std::env::set_var("NICE_LOG", &log);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = root.join("tests/fixtures/models/hubert-tiny-768.onnx");
    let index = common::generated("reference_search.py").join("fast_scan_768.index");
    let voice = noise(11, 3 * RATE as usize + 1234, 0.5);
    let wav = dir.join("voice.wav");
    common::write_wav(&wav, RATE, std::slice::from_ref(&voice));

    let entry = load(&common::bundled("rvc-stage.clap")).unwrap();
    let mut plugin = Plugin::new(&entry).unwrap();
    plugin.set_persisted_path("index-path", &index).unwrap();
    plugin.set_persisted_path("hubert-path", &model).unwrap();
    // Rendered right after the state is restored, while the model and index may still be
    // loading: an offline render waits for them.
    let (output, latency, plugin_features) = render_with_dump(&mut plugin, &voice, &dump, 1);
    check_clean(&output).unwrap();
    let delayed = &output[0][latency as usize..][..voice.len()];
    assert!(delayed == voice.as_slice(), "until the synthesizer exists the audio passes through");

    let cli_features = dir.join("cli.npy");
    let (ok, text) = rvc_stage_cli(&[
        &"features",
        &wav,
        &"-o",
        &cli_features,
        &"--hubert",
        &model,
        &"--index",
        &index,
        &"--ratio",
        &"0.6",
        &"--block-ms",
        &"100",
        &"--context-ms",
        &"500",
    ]);
    assert!(ok, "{text}");
    let cli = read_matrix(&cli_features).unwrap();
    assert_eq!((cli.rows, cli.cols), (3 * 50 + 1, 768), "every complete frame of the input");
    assert_eq!(plugin_features.cols, cli.cols);
    assert!(plugin_features.rows > cli.rows, "the plugin saw the silence after the voice too");
    let plugin_head = &plugin_features.data[..cli.data.len()];
    let differing = plugin_head.iter().zip(&cli.data).filter(|(a, b)| a != b).count();
    assert_eq!(
        differing,
        0,
        "of {} values, {differing} differ between the plugin's worker and the CLI",
        cli.data.len()
    );
    // Without the index, or with the default context, the features differ: the plugin's
    // Index Ratio and Context reached its worker.
    let variants: [&[&dyn AsRef<OsStr>]; 2] = [&[&"--context-ms", &"500"], &[&"--index", &index, &"--ratio", &"0.6"]];
    for (i, extra) in variants.iter().enumerate() {
        let other = dir.join(format!("variant-{i}.npy"));
        let mut args: Vec<&dyn AsRef<OsStr>> = vec![&"features", &wav, &"-o", &other, &"--hubert", &model];
        args.extend_from_slice(extra);
        let (ok, text) = rvc_stage_cli(&args);
        assert!(ok, "{text}");
        assert_ne!(read_matrix(&other).unwrap().data, cli.data, "variant {i}");
    }

    // Other call sizes, same output and the same features.
    let (again, _, again_features) = render_with_dump(&mut plugin, &voice, &dump, 2);
    assert!(again == output, "offline renders must repeat exactly");
    // The worker may still be busy with the trailing silence when the host deactivates, so the
    // recordings are compared over the voice's frames.
    assert!(again_features.rows >= cli.rows);
    let voice_values = cli.data.len();
    assert!(
        again_features.data[..voice_values] == plugin_features.data[..voice_values],
        "and so must the features the worker computes"
    );

    // Index Ratio automated every 97 samples (sample-accurately): whatever the host's buffer
    // sizes (1…64 frames, or 4096), every worker block gets the value at its first sample, so
    // offline renders and the features behind them are identical. (Not every sample: nice-plug
    // would then split every buffer into single samples, whatever the host sent.)
    let (ratio_id, quarter) = plugin.param_from_text("Index Ratio", "0.25").unwrap();
    assert_eq!(quarter, 0.25, "CLAP values of Index Ratio are its plain values");
    let len = voice.len() + RATE as usize + 30_000;
    let automation = clap_host::Automation(
        (0..len)
            .step_by(97)
            .map(|n| (n, ratio_id, 0.5 + 0.5 * (n as f64 * 2.0 * std::f64::consts::PI / 16_317.0).sin()))
            .collect(),
    );
    let mut automated = Vec::new();
    let host_buffers: [Box<dyn FnMut() -> usize + Send>; 3] =
        [Box::new(random_sizes(5, 64)), Box::new(random_sizes(6, 64)), Box::new(|| 4096)];
    for sizes in host_buffers {
        let settings = Settings::new(f64::from(RATE), 4096, true);
        let mut input = voice.clone();
        input.resize(len, 0.0);
        let params = [("Block Size", "100"), ("Context", "500 ms")];
        let render = plugin.render_automated(settings, &[input.clone(), input], &params, &automation, sizes).unwrap();
        automated.push((render.output, read_matrix(&dump).unwrap()));
    }
    for (i, (output, features)) in automated.iter().enumerate() {
        assert!(*output == automated[0].0, "render {i}: output differs");
        assert!(
            features.data[..voice_values] == automated[0].1.data[..voice_values],
            "render {i}: the worker's features differ"
        );
    }
    assert_ne!(
        automated[0].1.data[..voice_values],
        plugin_features.data[..voice_values],
        "the automation reached the worker"
    );

    // A model that cannot be used: the audio still passes, and the log says why.
    let broken = dir.join("broken.onnx");
    std::fs::write(&broken, b"not a model").unwrap();
    let mut plugin = Plugin::new(&entry).unwrap();
    plugin.set_persisted_path("hubert-path", &broken).unwrap();
    let (output, latency, _) = render_with_dump(&mut plugin, &voice, &dump, 3);
    assert!(&output[0][latency as usize..][..voice.len()] == voice.as_slice());
    let logged = std::fs::read_to_string(&log).unwrap();
    let line = logged.lines().find(|line| line.contains("broken.onnx")).unwrap_or_else(|| panic!("log:\n{logged}"));
    assert!(line.contains("is not a model ONNX Runtime can load"), "{line}");
    std::fs::remove_dir_all(dir).unwrap();
}
