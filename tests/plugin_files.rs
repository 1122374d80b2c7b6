//! Files in the state of the built `.clap`, each outcome observed: a good index is loaded and
//! used (the features the worker computes, recorded through `RVC_STAGE_FEATURE_DUMP`, change),
//! a corrupt or missing one is refused with its reason in the log (`NICE_LOG`) and the features
//! stay unblended, the audio passes with its exact latency in every case, and that latency does
//! not depend on which files are loaded. Its own test binary: both are switched on through the
//! process environment.

#[path = "../xtask/src/clap_host.rs"]
#[allow(dead_code)] // each test binary uses part of the host
mod clap_host;
mod common;

use std::path::{Path, PathBuf};

use clap_host::{check_clean, load, Plugin, Settings};
use rvc_stage::npy::{read_matrix, Matrix};
use rvc_stage::plugin::FEATURE_DUMP_VAR;

const RATE: f64 = 44_100.0;

/// Renders an impulse (after 1.5 s of noise, so the model has frames to compute) with `files`
/// (persisted key, path) in the state; returns the latency, where the impulse came out, and
/// the features the worker recorded.
fn render_with(
    entry: &clack_host::prelude::PluginEntry,
    files: &[(&str, &Path)],
    dump: &Path,
) -> (usize, usize, Matrix) {
    let mut plugin = Plugin::new(entry).unwrap();
    for (key, path) in files {
        plugin.set_persisted_path(key, path).unwrap();
    }
    // The state with its files saves, restores and saves again byte-identically.
    let saved = plugin.save_state().unwrap();
    let mut restored = Plugin::new(entry).unwrap();
    restored.load_state(&saved).unwrap();
    assert_eq!(restored.save_state().unwrap(), saved, "{files:?}");
    let settings = Settings::new(RATE, 512, true);
    let latency =
        plugin.render(settings, &[vec![0.0; 1], vec![0.0; 1]], &[("Index Ratio", "1")], || 1).unwrap().latency;
    let at = 66_150;
    let mut input = common::noise(4, at, 0.3);
    input.resize(at + latency as usize + 5_000, 0.0);
    input[at] = 1.0;
    let render = plugin.render(settings, &[input.clone(), input.clone()], &[], || 512).unwrap();
    check_clean(&render.output).unwrap();
    let out = &render.output[0];
    assert!(out[latency as usize..] == input[..input.len() - latency as usize], "the audio passes, delayed exactly");
    let features = read_matrix(dump).unwrap_or_default();
    (latency as usize, at + latency as usize, features)
}

#[test]
fn every_file_outcome_is_observed_and_the_latency_never_depends_on_the_files() {
    let dir = common::scratch("plugin-files");
    let (dump, log) = (dir.join("dump.npy"), dir.join("plugin.log"));
    // The only test in this binary, and set before the plugin is loaded.
    std::env::set_var(FEATURE_DUMP_VAR, &dump);
    std::env::set_var("NICE_LOG", &log);
    let entry = load(&common::bundled("rvc-stage.clap")).unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/hubert-tiny-768.onnx");
    let good = common::generated("reference_search.py").join("fast_scan_768.index");
    let corrupt = dir.join("corrupt.index");
    std::fs::write(&corrupt, vec![0x49; 4096]).unwrap();
    let missing: PathBuf = dir.join("does-not-exist.index");

    let (no_files, _, nothing) = render_with(&entry, &[], &dump);
    assert_eq!(nothing.rows, 0, "no model, no features");
    let (plain_latency, _, plain) = render_with(&entry, &[("hubert-path", &model)], &dump);
    assert!(plain.rows >= 70 && plain.cols == 768, "the model was loaded and ran: {} frames", plain.rows);
    let (good_latency, _, blended) = render_with(&entry, &[("hubert-path", &model), ("index-path", &good)], &dump);
    assert_eq!(blended.rows, plain.rows);
    assert_ne!(blended.data, plain.data, "the good index was loaded and used");
    for bad in [&corrupt, &missing] {
        let (latency, _, features) = render_with(&entry, &[("hubert-path", &model), ("index-path", bad)], &dump);
        assert_eq!(latency, no_files);
        assert!(
            features == plain,
            "{}: refused, the features must stay unblended: {} × {} frames against {} × {}, {} values differ",
            bad.display(),
            features.rows,
            features.cols,
            plain.rows,
            plain.cols,
            features.data.iter().zip(&plain.data).filter(|(a, b)| a != b).count()
        );
    }
    assert_eq!((plain_latency, good_latency), (no_files, no_files), "the latency does not depend on the files");

    let logged = std::fs::read_to_string(&log).unwrap();
    let line = |path: &Path| {
        logged
            .lines()
            .find(|line| line.contains(&*path.to_string_lossy()))
            .unwrap_or_else(|| panic!("{}:\n{logged}", path.display()))
            .to_string()
    };
    assert!(line(&good).contains("loaded"), "{}", line(&good));
    assert!(line(&corrupt).contains("is not a usable index"), "{}", line(&corrupt));
    assert!(line(&missing).contains("No such file"), "{}", line(&missing));
    std::fs::remove_dir_all(dir).unwrap();
}
