//! `rvc-stage index build / convert / info` and `rvc-stage retrieve` from the outside: built
//! files load and search identically in Python faiss, conversions keep every vector, `retrieve`
//! is the worker's path, and bad input is one plain error line.

mod common;

use std::path::Path;
use std::process::Command;

use rvc_stage::npy::{read_matrix, write_matrix, Matrix};
use rvc_stage::retrieval::{FeatureIndex, Retriever, SearchSettings};

/// Clustered float32 features, like content features of one voice.
fn features(seed: u64, rows: usize, cols: usize) -> Matrix {
    let mut rng = fastrand::Rng::with_seed(seed);
    let centres: Vec<f32> = (0..16 * cols).map(|_| rng.f32() * 4.0 - 2.0).collect();
    let data = (0..rows)
        .flat_map(|_| {
            let c = rng.usize(..16);
            let noise: Vec<f32> = (0..cols).map(|_| rng.f32() - 0.5).collect();
            centres[c * cols..][..cols].iter().zip(noise).map(|(a, n)| a + 0.5 * n).collect::<Vec<_>>()
        })
        .collect();
    Matrix { rows, cols, data }
}

fn search(index: &FeatureIndex, queries: &Matrix) -> (Vec<i64>, Vec<f32>) {
    let (mut labels, mut distances) = (vec![0; queries.rows * 8], vec![0.0; queries.rows * 8]);
    index.search_into(&queries.data, &mut distances, &mut labels).unwrap();
    (labels, distances)
}

fn python_search(index: &Path, queries: &Path, out: &Path) -> (String, Vec<i64>, Vec<f32>) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/faiss_search.py");
    let status = Command::new(common::reference_python()).arg(script).arg(index).arg(queries).arg(out).status();
    assert!(status.unwrap().success());
    let words = |file: &str, width: usize| -> Vec<[u8; 8]> {
        std::fs::read(out.join(file))
            .unwrap()
            .chunks_exact(width)
            .map(|b| {
                let mut w = [0; 8];
                w[..width].copy_from_slice(b);
                w
            })
            .collect()
    };
    let labels = words("labels.i64", 8).into_iter().map(i64::from_le_bytes).collect();
    let distances =
        words("distances.f32", 4).into_iter().map(|w| f32::from_le_bytes([w[0], w[1], w[2], w[3]])).collect();
    (std::fs::read_to_string(out.join("info.txt")).unwrap().trim().to_string(), labels, distances)
}

#[test]
fn built_indexes_load_and_search_identically_in_python_faiss() {
    let dir = common::scratch("index-cli-build");
    let inputs = dir.join("3_feature256");
    std::fs::create_dir_all(&inputs).unwrap();
    // Written out of name order: the build must concatenate by file name.
    let parts =
        [("b.npy", features(2, 1500, 256)), ("a.npy", features(1, 1700, 256)), ("c.npy", features(3, 800, 256))];
    for (name, part) in &parts {
        write_matrix(&inputs.join(name), part).unwrap();
    }
    std::fs::write(inputs.join("notes.txt"), "not a feature file").unwrap();
    let built = dir.join("built.index");
    let (ok, text) = common::rvc_stage_cli(&[&"index", &"build", &inputs, &"-o", &built]);
    assert!(ok, "{text}");
    assert!(text.contains("IVF63,PQ128x4fs,RFlat"), "default recipe for 4000 × 256: {text}");

    let (ok, text) = common::rvc_stage_cli(&[&"index", &"info", &built]);
    assert!(ok && text.contains("refine k_factor 4") && text.contains("4000 of dimension 256"), "{text}");
    let index = FeatureIndex::load(&built, SearchSettings::default()).unwrap();
    // Ids are frame numbers of the inputs in file-name order: a, b, c.
    let mut stored = vec![0.0; 256];
    index.vector_into(1700, &mut stored).unwrap();
    assert_eq!(stored, parts[0].1.row(0));

    let queries = features(9, 100, 256);
    let queries_path = dir.join("queries.npy");
    write_matrix(&queries_path, &queries).unwrap();
    let (info, labels, distances) = python_search(&built, &queries_path, &dir);
    assert_eq!(info, "4000 256 1 4.0", "Python faiss reads: ntotal d nprobe k_factor");
    let (our_labels, our_distances) = search(&index, &queries);
    assert_eq!(our_labels, labels);
    for (a, b) in our_distances.iter().zip(&distances) {
        assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{a} vs {b}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn convert_rebuilds_an_rvc_index_with_every_vector() {
    let fixtures = common::generated("reference_search.py");
    let dir = common::scratch("index-cli-convert");
    let old_path = fixtures.join("rvc_flat_768_ip.index");
    let new_path = dir.join("converted.index");
    let (ok, text) = common::rvc_stage_cli(&[&"index", &"convert", &old_path, &"-o", &new_path, &"--n-ivf", &"20"]);
    assert!(ok, "{text}");
    let (ok, text) = common::rvc_stage_cli(&[&"index", &"info", &new_path]);
    assert!(
        ok && text.contains("IVF-PQ fast-scan") && text.contains("inner product") && text.contains("lists       20"),
        "{text}"
    );
    let settings = SearchSettings { k_factor: None, ..SearchSettings::default() };
    let (old, new) =
        (FeatureIndex::load(&old_path, settings).unwrap(), FeatureIndex::load(&new_path, settings).unwrap());
    assert_eq!((old.len(), old.dim()), (new.len(), new.dim()));
    let (mut a, mut b) = (vec![0.0; 768], vec![0.0; 768]);
    for id in 0..old.len() as i64 {
        old.vector_into(id, &mut a).unwrap();
        new.vector_into(id, &mut b).unwrap();
        assert_eq!(a, b, "vector {id}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn retrieve_is_the_worker_path() {
    let fixtures = common::generated("reference_search.py");
    let dir = common::scratch("index-cli-retrieve");
    let (index_path, queries_path) = (fixtures.join("fast_scan_768.index"), fixtures.join("fast_scan_768.queries.npy"));
    let out = dir.join("out.npy");
    let (ok, text) = common::rvc_stage_cli(&[
        &"retrieve",
        &"--index",
        &index_path,
        &"--features",
        &queries_path,
        &"--ratio",
        &"0.75",
        &"-o",
        &out,
    ]);
    assert!(ok, "{text}");
    let ours = read_matrix(&out).unwrap();
    let queries = read_matrix(&queries_path).unwrap();
    let index = FeatureIndex::load(&index_path, SearchSettings::default()).unwrap();
    let mut retriever = Retriever::new(&index, 25);
    let mut expected = vec![0.0; queries.data.len()];
    for (q, e) in queries.data.chunks(25 * 768).zip(expected.chunks_mut(25 * 768)) {
        retriever.retrieve(&index, q, &[0.75; 25][..q.len() / 768], e).unwrap();
    }
    assert_eq!((ours.rows, ours.cols), (queries.rows, 768));
    assert_eq!(ours.data, expected);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_input_is_one_plain_error_line() {
    let fixtures = common::generated("reference_search.py");
    let dir = common::scratch("index-cli-errors");
    let index = fixtures.join("fast_scan_768.index");
    let small = dir.join("small.npy");
    write_matrix(&small, &features(4, 10, 256)).unwrap();
    let out = dir.join("out.npy");
    let cases: Vec<(Vec<&dyn AsRef<std::ffi::OsStr>>, &str)> = vec![
        (
            vec![&"retrieve", &"--index", &index, &"--features", &small, &"--ratio", &"1", &"-o", &out],
            "256 values per frame but the index holds 768",
        ),
        (
            vec![&"retrieve", &"--index", &small, &"--features", &small, &"--ratio", &"1", &"-o", &out],
            "is not a usable index",
        ),
        (vec![&"retrieve", &"--index", &index, &"--features", &index, &"--ratio", &"1", &"-o", &out], "cannot read"),
        (
            vec![&"retrieve", &"--index", &index, &"--features", &small, &"--ratio", &"2", &"-o", &out],
            "--ratio must be within 0-1",
        ),
        (vec![&"index", &"build", &index, &"-o", &out], "cannot read"),
        (vec![&"index", &"convert", &small, &"-o", &out], "is not a usable index"),
    ];
    for (args, expected) in cases {
        let (ok, text) = common::rvc_stage_cli(&args);
        assert!(!ok && text.starts_with("error: ") && text.contains(expected), "{expected}: {text}");
        assert_eq!(text.trim_end().lines().count(), 1, "{text}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn tune_measures_recall_and_time_plots_and_recommends() {
    let dir = common::scratch("index-cli-tune");
    let inputs = dir.join("features.npy");
    write_matrix(&inputs, &features(8, 3000, 32)).unwrap();
    let plot = dir.join("tune.svg");
    let args: [&dyn AsRef<std::ffi::OsStr>; 12] = [
        &"index",
        &"tune",
        &inputs,
        &"--lists",
        &"8,24",
        &"--k-factors",
        &"1,4",
        &"--held-out",
        &"100",
        &"--plot",
        &plot,
        &"--metric=l2",
    ];
    let (ok, text) = common::rvc_stage_cli(&args);
    assert!(ok, "{text}");
    let rows: Vec<Vec<f64>> = text
        .lines()
        .filter(|l| l.starts_with("| ") && !l.contains("lists"))
        .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 4, "{text}");
    for pair in rows.chunks(2) {
        let (one, four) = (&pair[0], &pair[1]);
        assert_eq!((one[0], one[1], four[1]), (four[0], 1.0, 4.0));
        // A deeper refine re-ranks a superset of candidates: recall cannot drop.
        assert!((0.0..=1.0).contains(&one[2]) && four[2] >= one[2], "{text}");
        assert!(one[3] > 0.0 && four[3] > 0.0);
    }
    assert!(text.contains("recommended: ") && text.contains("--n-ivf"), "{text}");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.contains("<svg") && svg.contains("8 lists") && svg.contains("24 lists"), "{svg}");
    std::fs::remove_dir_all(dir).unwrap();
}
