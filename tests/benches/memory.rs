//! `cargo xtask bench`: resident memory of 1 and 4 plugin instances in one process, each with
//! the HuBERT-base-size content model and a 100k × 768 index (the default `index build`
//! layout), its engine started and a few blocks processed (so every instance's worker has run
//! the model and searched the index). "shared" is the plugin as it is: instances that load the
//! same files share one copy; "separate copies" gives each instance its own (different load
//! settings), which is what every instance cost before. Each row runs in a fresh child process.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use rvc_stage::engine::{Controls, Engine, EngineConfig, RenderMode};
use rvc_stage::features::{model_slot, ModelOptions, ModelSlot};
use rvc_stage::npy::Matrix;
use rvc_stage::retrieval::build::{build_index, BuildOptions};
use rvc_stage::retrieval::{index_slot, IndexSlot, SearchSettings};
use rvc_stage::voice::{VoiceControls, VoiceFiles, VoiceStage};

#[path = "shared/cache.rs"]
mod cache;

const RATE: f64 = 48_000.0;

fn main() {
    if let Some(instances) = std::env::args().skip_while(|a| a != "--child").nth(1) {
        let separate = std::env::args().any(|a| a == "--separate");
        return child(instances.parse().unwrap(), separate);
    }
    let (model, index) = (cache::base_model(), index_100k());
    println!("resident memory (VmRSS) of plugin instances in one process: {} + {}", model.display(), index.display());
    println!();
    println!("| files | instances | resident MB | × one instance |");
    println!("|---|---:|---:|---:|");
    for separate in [false, true] {
        let one = measure(1, separate);
        for instances in [1, 4] {
            let resident = if instances == 1 { one } else { measure(instances, separate) };
            let files = if separate { "separate copies" } else { "shared (the plugin)" };
            println!("| {files} | {instances} | {:.0} | {:.2} |", resident / 1e6, resident / one);
        }
    }
}

/// Runs `instances` in a child process and returns its resident bytes.
fn measure(instances: usize, separate: bool) -> f64 {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command.args(["--child", &instances.to_string()]);
    if separate {
        command.arg("--separate");
    }
    let output = command.output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}{}", String::from_utf8_lossy(&output.stderr));
    text.trim().parse().unwrap()
}

/// What one plugin instance holds while active: its file slots and its running engine.
struct Instance {
    _files: (ModelSlot, IndexSlot),
    _engine: Engine<VoiceControls>,
}

fn child(instances: usize, separate: bool) {
    let (model_path, index_path) = (cache::base_model(), index_100k());
    let mut running = Vec::new();
    for i in 0..instances {
        // Different load settings make different cache keys: separate copies.
        let options = ModelOptions { intra_threads: if separate { 1 + i } else { 1 }, ..ModelOptions::default() };
        let k_factor = if separate { 4.0 + i as f32 } else { 4.0 };
        let model = model_slot(Arc::new(RwLock::new(None)), options);
        let index = index_slot(SearchSettings { k_factor: Some(k_factor), ..SearchSettings::default() });
        model.request(Some(model_path.clone()));
        index.request(Some(index_path.clone()));
        model.wait();
        index.wait();
        let config = EngineConfig {
            sample_rate: RATE,
            max_buffer: 512,
            channels: 2,
            mode: RenderMode::Offline,
            ..Default::default()
        };
        let files = VoiceFiles::new(model.reader(), index.reader());
        let mut engine = Engine::start(config, VoiceStage::new(files, RATE, config.block_samples())).unwrap();
        let mut audio = vec![vec![0.0f32; 512]; 2];
        for call in 0..(RATE as usize) / 512 {
            for channel in &mut audio {
                for (n, x) in channel.iter_mut().enumerate() {
                    *x = 0.3 * (((call * 512 + n) as f32) * 0.05).sin();
                }
            }
            let mut channels: Vec<&mut [f32]> = audio.iter_mut().map(Vec::as_mut_slice).collect();
            engine.process(&mut channels, Controls::default());
        }
        running.push(Instance { _files: (model, index), _engine: engine });
    }
    println!("{}", resident_bytes());
}

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// A 100k × 768 index of clustered synthetic features in the default layout of `index build`.
fn index_100k() -> PathBuf {
    let path = cache::cache().join("memory-100k-768.index");
    if !path.exists() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        build_index(&clustered(100_000, 768), &BuildOptions::default(), &path, |_| ()).unwrap();
    }
    path
}

/// `n` vectors around 200 random centres.
fn clustered(n: usize, d: usize) -> Matrix {
    let mut rng = fastrand::Rng::with_seed(7);
    let centres: Vec<f32> = (0..200 * d).map(|_| rng.f32() * 2.0 - 1.0).collect();
    let data = (0..n)
        .flat_map(|i| {
            let centre = (i * 7919) % 200;
            let offsets: Vec<f32> = (0..d).map(|_| (rng.f32() - 0.5) * 0.4).collect();
            centres[centre * d..][..d].iter().zip(offsets).map(|(c, o)| c + o).collect::<Vec<_>>()
        })
        .collect();
    Matrix { rows: n, cols: d, data }
}
