//! `cargo xtask bench`: retrieval + blend per 25-frame block (0.5 s of audio) on the worker
//! path, next to RVC's own procedure (Python faiss + numpy on RVC's IVF-Flat index, one
//! thread) measured in the same run on the same data, with recall@8 against exact search.
//!
//! Data (`rvc_reference.py`, cached under `~/.cache/rvc-stage/bench`): synthetic clustered
//! features, N = 100k at d = 768 and N = 1M at d = 256, 1000 held-out query frames. Our
//! indexes are built by the library's `index build` path at several list counts; the table
//! shows each next to RVC's procedure.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use rvc_stage::npy::read_matrix;
use rvc_stage::retrieval::build::{build_index, BuildOptions};
use rvc_stage::retrieval::{FeatureIndex, Retriever, SearchSettings};

#[path = "shared/cache.rs"]
mod cache;
use cache::cache;

const BLOCK: usize = 25;
const K: usize = 8;
const RATIO: f32 = 0.75;
const REPEATS: usize = 5;

fn main() {
    let only_small = std::env::args().any(|a| a == "--quick");
    println!("retrieval + blend per {BLOCK}-frame block, k = {K}, nprobe 1, one thread; ms as min / median");
    println!();
    println!("| data | index | ms per block | × faster than RVC (median) | recall@8 |");
    println!("|---|---|---:|---:|---:|");
    // (lists as a multiple of √N, dimensions per PQ sub-quantizer)
    let variants = [(0.5, 4), (0.5, 2), (1.0, 4), (1.0, 2), (4.0, 2)];
    bench(100_000, 768, &variants);
    if !only_small {
        bench(1_000_000, 256, &variants);
    }
}

/// `variants`: our list counts as multiples of √N, with the dimensions per PQ sub-quantizer.
fn bench(n: usize, d: usize, variants: &[(f64, usize)]) {
    let dir = cache().join(format!("retrieval-{n}x{d}"));
    let data_name = format!("{}k × {d}", n / 1000);
    let reference = rvc_reference(&dir, n, d);
    println!(
        "| {data_name} | RVC: Python faiss + numpy, IVF{},Flat | {:.3} / {:.3} | 1.0 | {:.3} |",
        reference.lists, reference.min_ms, reference.median_ms, reference.recall
    );
    let queries = read_matrix(&dir.join("queries.npy")).unwrap();
    let truth = truth(&dir.join("truth.i64"));
    let row = |label: String, path: &Path, settings: SearchSettings| {
        let (min, median, recall) = measure(path, settings, &queries.data, &truth);
        println!(
            "| {data_name} | {label} | {min:.3} / {median:.3} | {:.1} | {recall:.3} |",
            reference.median_ms / median
        );
    };
    row(format!("ours, same IVF{},Flat file", reference.lists), &dir.join("rvc.index"), SearchSettings::default());
    let mut data = None;
    for &(multiple, dims_per_code) in variants {
        let lists = (multiple * (n as f64).sqrt()).round() as usize;
        let factory = format!("IVF{lists},PQ{}x4fs,RFlat", d / dims_per_code);
        let path = dir.join(format!("ours-{factory}.index"));
        if !path.exists() {
            let data = data.get_or_insert_with(|| read_matrix(&dir.join("data.npy")).unwrap());
            let options = BuildOptions { factory: Some(factory.clone()), ..BuildOptions::default() };
            build_index(data, &options, &path, |_| ()).unwrap();
        }
        for k_factor in [4.0, 8.0] {
            let label = format!("ours, {factory}, k_factor {k_factor}");
            row(label, &path, SearchSettings { k_factor: Some(k_factor), ..SearchSettings::default() });
        }
    }
}

struct Reference {
    min_ms: f64,
    median_ms: f64,
    recall: f64,
    lists: usize,
}

fn rvc_reference(dir: &Path, n: usize, d: usize) -> Reference {
    let python = std::env::var_os("RVC_STAGE_PYTHON").expect("run through `cargo xtask bench`, which sets up Python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/benches/rvc_reference.py");
    let output = Command::new(python)
        .arg(script)
        .arg(dir)
        .arg(n.to_string())
        .arg(d.to_string())
        .env("OPENBLAS_NUM_THREADS", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}{}", String::from_utf8_lossy(&output.stderr));
    let words: Vec<&str> = text.lines().last().unwrap().split_whitespace().collect();
    Reference {
        min_ms: words[1].parse().unwrap(),
        median_ms: words[2].parse().unwrap(),
        recall: words[4].parse().unwrap(),
        lists: words[6].parse().unwrap(),
    }
}

fn truth(path: &Path) -> Vec<i64> {
    std::fs::read(path).unwrap().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect()
}

/// Times the worker path per block and measures recall@8 of its searches.
fn measure(path: &Path, settings: SearchSettings, queries: &[f32], truth: &[i64]) -> (f64, f64, f64) {
    let index = FeatureIndex::load(path, settings).unwrap();
    let d = index.dim();
    let mut retriever = Retriever::new(&index, BLOCK);
    let mut out = vec![0.0; BLOCK * d];
    let mut times = Vec::new();
    for _ in 0..REPEATS {
        for block in queries.chunks(BLOCK * d) {
            let start = Instant::now();
            retriever.retrieve(&index, block, &[RATIO; BLOCK], &mut out[..block.len()]).unwrap();
            times.push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    times.sort_by(f64::total_cmp);
    let (mut labels, mut distances) = (vec![0; BLOCK * K], vec![0.0; BLOCK * K]);
    let mut hits = 0;
    for (block, queries) in queries.chunks(BLOCK * d).enumerate() {
        index.search_into(queries, &mut distances, &mut labels).unwrap();
        for (q, found) in labels.chunks(K).enumerate() {
            let expected = &truth[(block * BLOCK + q) * K..][..K];
            hits += found.iter().filter(|l| expected.contains(l)).count();
        }
    }
    (times[0], times[times.len() / 2], hits as f64 / truth.len() as f64)
}
