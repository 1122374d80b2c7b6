//! The index-ratio blend against RVC's own formula in numpy (reference Python from the setup
//! venv), and the hazards RVC leaves open: missing neighbours, exact matches, tiny distances,
//! NaN queries.

mod common;

use std::path::Path;

use rvc_stage::retrieval::{blend_frame, Neighbours};

const D: usize = 256;
const K: usize = 8;

fn floats(path: &Path) -> Vec<f32> {
    std::fs::read(path).unwrap().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

fn blend_all(vectors: &[f32], queries: &[f32], labels: &[i64], distances: &[f32], ratio: f32) -> Vec<f32> {
    let mut out = vec![0.0; queries.len()];
    for (frame, (query, out)) in queries.chunks(D).zip(out.chunks_mut(D)).enumerate() {
        let labels = &labels[frame * K..][..K];
        let neighbours = Neighbours { labels, distances: &distances[frame * K..][..K] };
        // The worker blends every block: no allocation allowed.
        nice_assert_no_alloc::assert_no_alloc(|| {
            blend_frame(query, neighbours, |slot| &vectors[labels[slot] as usize * D..][..D], ratio, out)
        });
    }
    out
}

#[test]
fn matches_rvcs_formula_in_numpy() {
    let dir = std::env::temp_dir().join(format!("rvc-stage-blend-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rvc_blend.py");
    assert!(std::process::Command::new(common::reference_python()).arg(script).arg(&dir).status().unwrap().success());
    let vectors = floats(&dir.join("vectors.f32"));
    let queries = floats(&dir.join("queries.f32"));
    let distances = floats(&dir.join("distances.f32"));
    let labels: Vec<i64> = std::fs::read(dir.join("labels.i64"))
        .unwrap()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let ratios = std::fs::read_to_string(dir.join("ratios.txt")).unwrap();
    for ratio in ratios.split_whitespace() {
        let expected = floats(&dir.join(format!("blend_{ratio}.f32")));
        let ours = blend_all(&vectors, &queries, &labels, &distances, ratio.parse().unwrap());
        for (i, (a, b)) in ours.iter().zip(&expected).enumerate() {
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "ratio {ratio}, value {i}: ours {a}, numpy {b}");
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

fn one_frame(labels: &[i64], distances: &[f32], ratio: f32) -> [f32; 2] {
    let vectors = [[1.0f32, 0.0], [0.0, 1.0], [4.0, 4.0]];
    let mut out = [f32::NAN; 2];
    blend_frame(&[2.0, 2.0], Neighbours { labels, distances }, |slot| &vectors[labels[slot] as usize], ratio, &mut out);
    out
}

#[test]
fn exact_matches_take_all_the_weight() {
    assert_eq!(one_frame(&[0, 1, 2], &[0.0, 1.0, 9.0], 1.0), [1.0, 0.0]);
    assert_eq!(one_frame(&[0, 1, 2], &[0.0, 0.0, 9.0], 1.0), [0.5, 0.5]);
    assert_eq!(one_frame(&[2, 0], &[0.0, 1.0], 0.5), [3.0, 3.0]);
}

#[test]
fn missing_neighbours_are_skipped_not_fatal() {
    let with_gaps = one_frame(&[0, -1, 1, -1], &[1.0, 3.4e38, 1.0, 5.0], 1.0);
    assert_eq!(with_gaps, one_frame(&[0, 1], &[1.0, 1.0], 1.0));
    assert_eq!(with_gaps, [0.5, 0.5]);
    // Nothing usable, or a zero ratio: the frame passes unchanged.
    assert_eq!(one_frame(&[-1, -1], &[1.0, 2.0], 1.0), [2.0, 2.0]);
    assert_eq!(one_frame(&[], &[], 1.0), [2.0, 2.0]);
    assert_eq!(one_frame(&[0, 1], &[1.0, 2.0], 0.0), [2.0, 2.0]);
}

#[test]
fn tiny_distances_do_not_overflow_and_bad_input_never_makes_nan() {
    let out = one_frame(&[0, 1], &[1e-30, 4e-30], 1.0);
    assert!((out[0] - 16.0 / 17.0).abs() < 1e-6 && (out[1] - 1.0 / 17.0).abs() < 1e-6, "{out:?}");
    let out = one_frame(&[0, 1], &[f32::NAN, 1.0], 1.0);
    assert_eq!(out, [0.0, 1.0]);
    let vectors = [[1.0f32, 1.0]];
    let mut out = [0.0f32; 2];
    blend_frame(&[f32::NAN, 3.0], Neighbours { labels: &[0], distances: &[1.0] }, |_| &vectors[0], 0.5, &mut out);
    assert_eq!(out, [0.0, 3.0]);
}
