//! The distance loops of the worker's search that run outside faiss: the coarse step (each
//! frame against every list centroid) and the exact refine step (each frame against its
//! fast-scan candidates). faiss's `fvec_L2sqr` runs one dependent FMA chain per pair, about two
//! floats per cycle, and without BLAS (whose OpenBLAS build brings its own thread pool) the
//! coarse step was most of a block's time. These loops compare four frames per centroid load
//! with independent accumulators. Worker thread; no allocation.

use multiversion::multiversion;

use super::index_file::Metric;

/// Lanes per accumulator: one AVX2 register of f32.
const LANES: usize = 8;

/// Bytes of rows the coarse step keeps hot at a time (half a typical L2).
const TILE_BYTES: usize = 256 * 1024;

/// The `keep` best rows of `rows` (`dim`-long, row-major) for every query of `queries`,
/// best first, by squared L2 (smallest) or inner product (largest): ids into `best_ids` and
/// scores into `best_scores`, `keep` per query. Rows beyond the first `keep` that tie keep the
/// earlier row, as faiss's heaps do.
pub fn nearest_rows(
    metric: Metric,
    queries: &[f32],
    rows: &[f32],
    dim: usize,
    keep: usize,
    best_ids: &mut [i64],
    best_scores: &mut [f32],
) {
    let better = |a: f32, b: f32| match metric {
        Metric::L2 => a < b,
        Metric::InnerProduct => a > b,
    };
    let worst = match metric {
        Metric::L2 => f32::INFINITY,
        Metric::InnerProduct => f32::NEG_INFINITY,
    };
    best_ids.fill(-1);
    best_scores.fill(worst);
    let count = queries.len() / dim;
    // Tiles of rows small enough to stay in L2 while every query passes over them, so each
    // row comes from memory once per call, however many lists there are (RVC's files have
    // thousands: 16 MB of centroids at 200k × 768).
    let tile_rows = (TILE_BYTES / (dim * 4)).max(1);
    for (tile_number, tile) in rows.chunks(tile_rows * dim).enumerate() {
        let first_id = tile_number * tile_rows;
        for first in (0..count).step_by(4) {
            let group = [0, 1, 2, 3].map(|j| (first + j).min(count - 1));
            let q = group.map(|j| &queries[j * dim..][..dim]);
            for (offset, row) in tile.chunks_exact(dim).enumerate() {
                let scores = match metric {
                    Metric::L2 => four_l2(q, row),
                    Metric::InnerProduct => four_dot(q, row),
                };
                let id = (first_id + offset) as i64;
                for (j, score) in scores.into_iter().enumerate().take(count - first) {
                    let at = (first + j) * keep;
                    insert(&mut best_ids[at..][..keep], &mut best_scores[at..][..keep], id, score, better);
                }
            }
        }
    }
}

/// Exact squared L2 or inner product of `query` with four rows at once.
pub fn scores_of_four(metric: Metric, rows: [&[f32]; 4], query: &[f32]) -> [f32; 4] {
    match metric {
        Metric::L2 => four_l2(rows, query),
        Metric::InnerProduct => four_dot(rows, query),
    }
}

/// Inserts (id, score) into a best-first list if it beats the last entry.
pub fn insert(ids: &mut [i64], scores: &mut [f32], id: i64, score: f32, better: impl Fn(f32, f32) -> bool) {
    let Some(last) = scores.len().checked_sub(1) else { return };
    if !better(score, scores[last]) {
        return;
    }
    let mut at = last;
    while at > 0 && better(score, scores[at - 1]) {
        scores[at] = scores[at - 1];
        ids[at] = ids[at - 1];
        at -= 1;
    }
    scores[at] = score;
    ids[at] = id;
}

#[multiversion(targets("x86_64+avx2+fma"))]
fn four_l2(q: [&[f32]; 4], row: &[f32]) -> [f32; 4] {
    let mut acc = [[0.0f32; LANES]; 4];
    let whole = row.len() / LANES * LANES;
    for i in (0..whole).step_by(LANES) {
        let c = &row[i..i + LANES];
        for (acc, q) in acc.iter_mut().zip(q) {
            let q = &q[i..i + LANES];
            for l in 0..LANES {
                let diff = q[l] - c[l];
                acc[l] = diff.mul_add(diff, acc[l]);
            }
        }
    }
    let mut out = acc.map(horizontal_sum);
    for (out, q) in out.iter_mut().zip(q) {
        *out += q[whole..].iter().zip(&row[whole..]).map(|(x, y)| (x - y) * (x - y)).sum::<f32>();
    }
    out
}

#[multiversion(targets("x86_64+avx2+fma"))]
fn four_dot(q: [&[f32]; 4], row: &[f32]) -> [f32; 4] {
    let mut acc = [[0.0f32; LANES]; 4];
    let whole = row.len() / LANES * LANES;
    for i in (0..whole).step_by(LANES) {
        let c = &row[i..i + LANES];
        for (acc, q) in acc.iter_mut().zip(q) {
            let q = &q[i..i + LANES];
            for l in 0..LANES {
                acc[l] = q[l].mul_add(c[l], acc[l]);
            }
        }
    }
    let mut out = acc.map(horizontal_sum);
    for (out, q) in out.iter_mut().zip(q) {
        *out += q[whole..].iter().zip(&row[whole..]).map(|(x, y)| x * y).sum::<f32>();
    }
    out
}

#[inline(always)]
fn horizontal_sum(lanes: [f32; LANES]) -> f32 {
    let [a, b, c, d, e, f, g, h] = lanes;
    ((a + e) + (c + g)) + ((b + f) + (d + h))
}
