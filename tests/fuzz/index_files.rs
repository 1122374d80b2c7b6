//! Long fuzzing runs of index loading, beyond what the tests do (`cargo xtask fuzz [SECONDS]`).
//! Mutates reference index files (bit flips, truncation, hostile size fields, splices) and
//! feeds each through the inspector, faiss's loader and a search on the worker path. A Rust
//! panic, a non-finite result or a crash is a bug. Every input follows from its iteration
//! number, so a crash is reproduced with `--replay N`, which writes the input to a file.
//!
//! Usage: fuzz_index_files SEEDS_DIR SECONDS [STATE_FILE] | fuzz_index_files SEEDS_DIR --replay N OUT

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rvc_stage::retrieval::{inspect, FeatureIndex, Retriever, SearchSettings};

/// Values that break naive size arithmetic.
const HOSTILE: [u64; 9] = [0, 1, 2, 31, 1 << 31, 1 << 32, 1 << 40, u64::MAX, i64::MAX as u64];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seeds = read_seeds(Path::new(&args[0]));
    assert!(!seeds.is_empty(), "no .index files in {}", args[0]);
    if args[1] == "--replay" {
        let iteration: u64 = args[2].parse().expect("iteration number");
        std::fs::write(&args[3], mutate(&seeds, iteration)).expect("write the input");
        println!("wrote iteration {iteration}'s input to {}", args[3]);
        return;
    }
    let seconds: u64 = args[1].parse().expect("seconds");
    let state = args.get(2).map(PathBuf::from);
    let (start, mut last_report) = (Instant::now(), Instant::now());
    let (mut iteration, mut inspected, mut loaded) = (0u64, 0u64, 0u64);
    while start.elapsed() < Duration::from_secs(seconds) {
        if let Some(state) = &state {
            // Where a crash happened, for the parent to report.
            std::fs::write(state, iteration.to_string()).expect("write the state file");
        }
        let (passed, faiss_loaded) = exercise(&mutate(&seeds, iteration));
        inspected += u64::from(passed);
        loaded += u64::from(faiss_loaded);
        iteration += 1;
        if last_report.elapsed() > Duration::from_secs(5) {
            println!("{iteration} inputs: {inspected} passed the inspector, {loaded} loaded and searched");
            last_report = Instant::now();
        }
    }
    println!("done: {iteration} inputs, {inspected} passed the inspector, {loaded} loaded and searched, no failure");
}

fn read_seeds(dir: &Path) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("seed directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "index"))
        .collect();
    paths.sort();
    // Small files only: each iteration copies one, and faiss loads it.
    paths.iter().map(|p| std::fs::read(p).expect("seed")).filter(|b| b.len() < 4 << 20).collect()
}

/// The input of iteration `n`: a seed with one to three mutations.
fn mutate(seeds: &[Vec<u8>], n: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(n);
    let mut bytes = seeds[rng.usize(..seeds.len())].clone();
    for _ in 0..rng.usize(1..=3) {
        if bytes.is_empty() {
            break;
        }
        match rng.u8(..5) {
            0 => {
                let at = rng.usize(..bytes.len().min(1024));
                bytes[at] ^= 1 << rng.u8(..8);
            }
            1 => {
                let at = rng.usize(..bytes.len());
                bytes[at] ^= 1 << rng.u8(..8);
            }
            2 => bytes.truncate(rng.usize(..bytes.len())),
            3 if bytes.len() >= 8 => {
                let at = rng.usize(..(bytes.len() - 8).min(1024) + 1);
                bytes[at..at + 8].copy_from_slice(&HOSTILE[rng.usize(..HOSTILE.len())].to_le_bytes());
            }
            _ => {
                let other = &seeds[rng.usize(..seeds.len())];
                let (from, to) = (rng.usize(..other.len()), rng.usize(..bytes.len()));
                let len = rng.usize(..=64).min(other.len() - from).min(bytes.len() - to);
                bytes[to..to + len].copy_from_slice(&other[from..from + len]);
            }
        }
    }
    bytes
}

/// Runs one input through the loading and search path; returns (inspector accepted, faiss loaded).
fn exercise(bytes: &[u8]) -> (bool, bool) {
    if inspect(bytes).is_err() {
        return (false, false);
    }
    let Ok(index) = FeatureIndex::from_bytes(bytes, SearchSettings::default()) else { return (true, false) };
    let d = index.dim();
    let frames: Vec<f32> = (0..4 * d).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
    let mut out = vec![0.0; frames.len()];
    if Retriever::new(&index, 4).retrieve(&index, &frames, &[1.0; 4], &mut out).is_ok() {
        assert!(out.iter().all(|x| x.is_finite()), "non-finite output");
    }
    (true, true)
}
