//! Search and blend against the reference implementation: indexes written by Python faiss-cpu
//! (RVC's IVF-Flat recipe and the fast-scan + RFlat recipe, d = 16 / 256 / 768, L2 and inner
//! product) searched by our worker path must give faiss's labels and distances, also where nprobe
//! and k_factor change them, and the blend must equal RVC's formula in numpy. Plus the edge
//! cases: fewer vectors than k, empty lists, exact duplicates, far-away and NaN queries,
//! dimension mismatches.

mod common;

use std::path::{Path, PathBuf};

use rvc_stage::npy::read_matrix;
use rvc_stage::retrieval::{FeatureIndex, RetrievalError, Retriever, SearchSettings};

const K: usize = 8;
/// Frames per worker block (0.5 s at 50 frames/s).
const BLOCK: usize = 25;

fn fixtures() -> &'static Path {
    common::generated("reference_search.py")
}

fn names() -> Vec<String> {
    let text = std::fs::read_to_string(fixtures().join("manifest.txt")).unwrap();
    text.lines().map(|line| line.split_whitespace().next().unwrap().to_string()).collect()
}

fn raw<T>(path: PathBuf, parse: fn([u8; 8]) -> T, width: usize) -> Vec<T> {
    let bytes = std::fs::read(path).unwrap();
    bytes
        .chunks_exact(width)
        .map(|b| {
            let mut word = [0u8; 8];
            word[..width].copy_from_slice(b);
            parse(word)
        })
        .collect()
}

struct Reference {
    queries: rvc_stage::npy::Matrix,
    labels: Vec<i64>,
    distances: Vec<f32>,
}

fn reference_for(name: &str) -> Reference {
    let (labels, distances) = faiss_results(name);
    Reference { queries: read_matrix(&fixtures().join(format!("{name}.queries.npy"))).unwrap(), labels, distances }
}

/// faiss's labels and distances, from `<stem>.labels.i64` and `<stem>.distances.f32`.
fn faiss_results(stem: &str) -> (Vec<i64>, Vec<f32>) {
    let file = |suffix: &str| fixtures().join(format!("{stem}.{suffix}"));
    (
        raw(file("labels.i64"), i64::from_le_bytes, 8),
        raw(file("distances.f32"), |w| f32::from_le_bytes([w[0], w[1], w[2], w[3]]), 4),
    )
}

fn load(name: &str) -> FeatureIndex {
    load_with(name, SearchSettings::default())
}

fn load_with(name: &str, settings: SearchSettings) -> FeatureIndex {
    FeatureIndex::load(&fixtures().join(format!("{name}.index")), settings).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn close(a: f32, b: f32) -> bool {
    a == b || (a - b).abs() <= 1e-4 * a.abs().max(b.abs()).max(1.0)
}

/// Asserts that our results (`K` per query) are faiss's: at every rank the distance agrees
/// within 1e-4 relative (unless both sides found no neighbour there, -1), so a label may differ
/// only as a tie: another vector at the same distance. Ties stay rare: at least 99.5 % of labels
/// must be equal.
fn assert_same_results(what: &str, ours: (&[i64], &[f32]), faiss: (&[i64], &[f32])) {
    assert_eq!(ours.0.len(), faiss.0.len(), "{what}: result counts");
    let mut same = 0;
    for at in 0..ours.0.len() {
        let (ours, theirs) = ((ours.0[at], ours.1[at]), (faiss.0[at], faiss.1[at]));
        same += usize::from(ours.0 == theirs.0);
        assert!(
            ours.0 == theirs.0 && ours.0 < 0 || close(ours.1, theirs.1),
            "{what}, query {}, rank {}: ours {ours:?}, faiss {theirs:?}",
            at / K,
            at % K
        );
    }
    let total = ours.0.len();
    assert!(same * 1000 >= total * 995, "{what}: only {same} of {total} labels equal faiss's");
}

#[test]
fn search_returns_faiss_labels_and_distances() {
    for name in names() {
        let index = load(&name);
        let reference = reference_for(&name);
        let d = index.dim();
        let (mut distances, mut labels) = (vec![0.0; reference.queries.rows * K], vec![0; reference.queries.rows * K]);
        let blocks = reference.queries.data.chunks(BLOCK * d).zip(distances.chunks_mut(BLOCK * K));
        for ((queries, distances), labels) in blocks.zip(labels.chunks_mut(BLOCK * K)) {
            index.search_into(queries, distances, labels).unwrap();
        }
        assert_same_results(&name, (&labels, &distances), (&reference.labels, &reference.distances));
    }
}

#[test]
fn blend_equals_rvcs_formula_on_faiss_results() {
    for name in names() {
        let index = load(&name);
        let reference = reference_for(&name);
        let d = index.dim();
        let mut retriever = Retriever::new(&index, BLOCK);
        for ratio in ["0.0", "0.3", "0.75", "1.0"] {
            let expected = read_matrix(&fixtures().join(format!("{name}.blend_{ratio}.npy"))).unwrap();
            let ratios = [ratio.parse::<f32>().unwrap(); BLOCK];
            let mut out = vec![f32::NAN; reference.queries.data.len()];
            for (queries, out) in reference.queries.data.chunks(BLOCK * d).zip(out.chunks_mut(BLOCK * d)) {
                // The worker path allocates nothing of its own once its buffers exist.
                nice_assert_no_alloc::assert_no_alloc(|| {
                    retriever.retrieve(&index, queries, &ratios[..queries.len() / d], out).unwrap()
                });
            }
            let mut compared = 0;
            for (frame, (ours, theirs)) in out.chunks(d).zip(expected.data.chunks(d)).enumerate() {
                let labels_equal = reference.labels[frame * K..][..K] == {
                    let (mut dist, mut lab) = ([0.0; K], [0i64; K]);
                    index.search_into(reference.queries.row(frame), &mut dist, &mut lab).unwrap();
                    lab
                };
                if !labels_equal {
                    continue; // a tie resolved the other way: different, equally near vectors
                }
                compared += 1;
                for (a, b) in ours.iter().zip(theirs) {
                    assert!(
                        (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                        "{name}, ratio {ratio}, frame {frame}: {a} vs {b}"
                    );
                }
            }
            assert!(compared * 100 >= expected.rows * 99, "{name}: only {compared} frames had faiss's neighbours");
        }
    }
}

#[test]
fn fewer_vectors_than_k_and_empty_lists_blend_what_exists() {
    // 5 vectors, k = 8: three missing neighbours per frame, skipped.
    let index = load("tiny_flat_16");
    let reference = reference_for("tiny_flat_16");
    let (mut distances, mut labels) = ([0.0; K], [0; K]);
    index.search_into(reference.queries.row(0), &mut distances, &mut labels).unwrap();
    assert_eq!(labels.iter().filter(|l| **l >= 0).count(), 5, "{labels:?}");
    // 12 vectors in 64 lists: far-away queries land in empty lists, find nothing, pass through.
    let index = load("sparse_fast_scan_16");
    let reference = reference_for("sparse_fast_scan_16");
    let mut retriever = Retriever::new(&index, reference.queries.rows);
    let mut out = vec![0.0; reference.queries.data.len()];
    let ratios = vec![1.0; reference.queries.rows];
    retriever.retrieve(&index, &reference.queries.data, &ratios, &mut out).unwrap();
    let mut empty = 0;
    for frame in 0..reference.queries.rows {
        let mut labels = [0; K];
        index.search_into(reference.queries.row(frame), &mut [0.0; K], &mut labels).unwrap();
        if labels.iter().all(|l| *l < 0) {
            empty += 1;
            assert_eq!(&out[frame * 16..][..16], reference.queries.row(frame));
        }
    }
    assert!(empty > 0, "no query met an empty list: the fixture does not test what it should");
    assert!(out.iter().all(|x| x.is_finite()));
}

#[test]
fn exact_duplicates_are_returned_exactly() {
    for name in ["rvc_flat_256", "fast_scan_768"] {
        let index = load(name);
        let d = index.dim();
        let mut stored = vec![0.0; d];
        index.vector_into(0, &mut stored).unwrap();
        let mut out = vec![f32::NAN; d];
        Retriever::new(&index, 1).retrieve(&index, &stored, &[1.0], &mut out).unwrap();
        // Vectors 0 and 1 are the same: distance 0, all weight shared between them.
        assert_eq!(out, stored, "{name}");
    }
}

#[test]
fn nan_queries_never_make_nan_and_zero_ratio_leaves_frames_alone() {
    let index = load("fast_scan_256");
    let reference = reference_for("fast_scan_256");
    let mut frames = reference.queries.data[..BLOCK * 256].to_vec();
    frames[3] = f32::NAN;
    frames[256 * 7 + 5] = f32::INFINITY;
    let mut retriever = Retriever::new(&index, BLOCK);
    let mut out = vec![0.0; frames.len()];
    retriever.retrieve(&index, &frames, &[1.0; BLOCK], &mut out).unwrap();
    assert!(out.iter().all(|x| x.is_finite()));
    assert_eq!(out[3], 0.0);
    retriever.retrieve(&index, &frames, &[0.0; BLOCK], &mut out).unwrap();
    let sanitized: Vec<f32> = frames.iter().map(|x| if x.is_finite() { *x } else { 0.0 }).collect();
    assert_eq!(out, sanitized);
}

#[test]
fn dimension_mismatches_and_oversized_blocks_are_errors() {
    let index = load("fast_scan_768");
    let mut retriever = Retriever::new(&index, BLOCK);
    let frames = vec![0.5; 256 * 4];
    let mut out = vec![0.0; frames.len()];
    let error = retriever.retrieve(&index, &frames, &[1.0; 4], &mut out).unwrap_err();
    assert!(matches!(error, RetrievalError::Dimension { index: 768, .. }), "{error}");
    let frames = vec![0.5; 768 * (BLOCK + 1)];
    let mut out = vec![0.0; frames.len()];
    let error = retriever.retrieve(&index, &frames, &[1.0; BLOCK + 1], &mut out).unwrap_err();
    assert!(matches!(error, RetrievalError::BlockTooLarge { .. }), "{error}");
    // A retriever sized for another index refuses instead of reading out of bounds.
    let other = load("rvc_flat_256");
    let frames = vec![0.5; 256];
    let error = retriever.retrieve(&other, &frames, &[1.0], &mut vec![0.0; 256]).unwrap_err();
    assert!(matches!(error, RetrievalError::Dimension { .. }), "{error}");
}

/// The index of reference_search.py's settings sweep: IVF128,PQ128x4fs,RFlat, 6000 × 256, L2.
const SWEEP: &str = "sweep_fast_scan_256";

/// nprobe and the refine depth (k_factor) are applied, observed through what searches return:
/// at each nprobe ∈ {1, 4} × k_factor ∈ {1, 4}, our search of a file written by faiss-cpu returns
/// faiss's labels and distances for the same settings, and the settings change those results.
///
/// Our refine has the semantics of faiss's `IndexRefineFlat::search` (faiss/IndexRefine.cpp):
/// the list scan returns `floor(k · k_factor)` candidates, all are re-ranked by exact distance
/// and the best `k` kept; only the order of ties may differ. Our coarse step must pick faiss's
/// lists too: at nprobe 4, four of them.
///
/// Measured on this fixture's 200 queries: nprobe 4 instead of 1 changes the neighbour sets of
/// 138 queries at k_factor 1 and 139 at k_factor 4; k_factor 4 instead of 1 changes 197 at
/// nprobe 1 and 200 at nprobe 4. Recall@8 against exact search: 0.31 (nprobe 1, k_factor 1),
/// 0.55 (1, 4), 0.35 (4, 1), 0.70 (4, 4). The floors (half and three quarters of the queries,
/// recall rising with each setting) sit well below that, so they only fail when a setting stops
/// mattering, not when a faiss upgrade moves a few results.
#[test]
fn nprobe_and_k_factor_change_results_as_they_change_faiss() {
    let queries = read_matrix(&fixtures().join(format!("{SWEEP}.queries.npy"))).unwrap();
    let exact = raw(fixtures().join(format!("{SWEEP}.exact.i64")), i64::from_le_bytes, 8);
    let labels_at = |nprobe: usize, k_factor: usize| {
        let index = load_with(SWEEP, SearchSettings { k: K, nprobe, k_factor: Some(k_factor as f32) });
        let (mut distances, mut labels) = (vec![0.0; queries.rows * K], vec![0; queries.rows * K]);
        index.search_into(&queries.data, &mut distances, &mut labels).unwrap();
        let setting = format!("{SWEEP}.nprobe{nprobe}_k_factor{k_factor}");
        let (faiss_labels, faiss_distances) = faiss_results(&setting);
        assert_same_results(&setting, (&labels, &distances), (&faiss_labels, &faiss_distances));
        labels
    };
    let (narrow_shallow, narrow_deep) = (labels_at(1, 1), labels_at(1, 4));
    let (wide_shallow, wide_deep) = (labels_at(4, 1), labels_at(4, 4));
    let queries_changed =
        |a: &[i64], b: &[i64]| a.chunks(K).zip(b.chunks(K)).filter(|(a, b)| a.iter().any(|l| !b.contains(l))).count();
    let recall = |labels: &[i64]| {
        let found: usize =
            labels.chunks(K).zip(exact.chunks(K)).map(|(l, e)| l.iter().filter(|x| e.contains(x)).count()).sum();
        found as f64 / exact.len() as f64
    };
    for (nprobe_1, nprobe_4, k_factor) in [(&narrow_shallow, &wide_shallow, 1), (&narrow_deep, &wide_deep, 4)] {
        let changed = queries_changed(nprobe_1, nprobe_4);
        assert!(changed * 2 >= queries.rows, "k_factor {k_factor}: nprobe 4 changed only {changed} queries");
        let (before, after) = (recall(nprobe_1), recall(nprobe_4));
        assert!(after > before, "k_factor {k_factor}: recall {before} at nprobe 1, {after} at nprobe 4");
    }
    for (k_factor_1, k_factor_4, nprobe) in [(&narrow_shallow, &narrow_deep, 1), (&wide_shallow, &wide_deep, 4)] {
        let changed = queries_changed(k_factor_1, k_factor_4);
        assert!(changed * 4 >= queries.rows * 3, "nprobe {nprobe}: k_factor 4 changed only {changed} queries");
        let (before, after) = (recall(k_factor_1), recall(k_factor_4));
        assert!(after > before, "nprobe {nprobe}: recall {before} at k_factor 1, {after} at k_factor 4");
    }
}

/// faiss builds its fast-scan kernels as scalar emulation unless AVX2 reaches the C++ build
/// (`.cargo/config.toml`): the kernel linked into this binary must use 256-bit shuffles.
#[test]
fn faiss_fast_scan_kernels_are_built_with_avx2() {
    let exe = std::env::current_exe().unwrap();
    let symbols = std::process::Command::new("nm").arg(&exe).output().expect("nm (binutils) is installed");
    let symbols = String::from_utf8_lossy(&symbols.stdout);
    let kernel = symbols
        .lines()
        .filter_map(|line| line.split_whitespace().nth(2))
        .find(|name| name.contains("kernel_accumulate_block") && !name.contains('.'))
        .expect("faiss's fast-scan kernel is linked");
    let code = std::process::Command::new("objdump")
        .args(["-d", "--no-show-raw-insn", &format!("--disassemble={kernel}")])
        .arg(&exe)
        .output()
        .expect("objdump (binutils) is installed");
    let code = String::from_utf8_lossy(&code.stdout);
    let shuffles = code.lines().filter(|l| l.contains("vpshufb") && l.contains("%ymm")).count();
    assert!(shuffles > 0, "{kernel} has no 256-bit shuffles:\n{code}");
}

/// Searching starts no threads: OpenMP is limited to the searching thread and BLAS is never
/// called. Runs in a child process, so the thread count is not disturbed by parallel tests.
#[test]
fn searching_starts_no_threads() {
    if std::env::var_os("RVC_STAGE_COUNT_THREADS").is_none() {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["searching_starts_no_threads", "--exact", "--test-threads=1"])
            .env("RVC_STAGE_COUNT_THREADS", "1")
            .env("RVC_STAGE_PYTHON", common::reference_python())
            .status()
            .unwrap();
        assert!(status.success());
        return;
    }
    let threads = || std::fs::read_dir("/proc/self/task").unwrap().count();
    let index = load("fast_scan_768");
    let queries = reference_for("fast_scan_768").queries;
    let before = threads();
    let during = std::thread::spawn(move || {
        let mut retriever = Retriever::new(&index, BLOCK);
        let mut out = vec![0.0; BLOCK * 768];
        for block in queries.data.chunks_exact(BLOCK * 768) {
            retriever.retrieve(&index, block, &[0.75; BLOCK], &mut out).unwrap();
        }
        threads()
    })
    .join()
    .unwrap();
    assert_eq!(during, before + 1, "only the searching thread itself");
    assert_eq!(threads(), before);
}
