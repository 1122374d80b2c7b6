//! The distance loops of the worker's search that run outside faiss: the coarse step (each
//! frame against every list centroid) and the exact refine step (each frame against its
//! fast-scan candidates). faiss's `fvec_L2sqr` runs one dependent FMA chain per pair, about two
//! floats per cycle, and without BLAS (whose OpenBLAS build brings its own thread pool) the
//! coarse step was most of a block's time. These loops compare four frames per centroid load
//! with independent accumulators. Worker thread; no allocation.

use super::index_file::Metric;

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
    let four_scores = kernels(metric);
    for (tile_number, tile) in rows.chunks(tile_rows * dim).enumerate() {
        let first_id = tile_number * tile_rows;
        for first in (0..count).step_by(4) {
            let group = [0, 1, 2, 3].map(|j| (first + j).min(count - 1));
            let q = group.map(|j| &queries[j * dim..][..dim]);
            for (offset, row) in tile.chunks_exact(dim).enumerate() {
                let scores = four_scores(q, row);
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
    kernels(metric)(rows, query)
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

/// Scores of four query rows against one row (or one query against four rows).
type FourScores = fn([&[f32]; 4], &[f32]) -> [f32; 4];

/// The fastest implementations this CPU runs, chosen once per call. Hand-written AVX2: the
/// compiler's auto-vectorisation of the portable loops proved fragile (the same source came out
/// as 256-bit code in one build and 128-bit code with spills in another, 4× slower).
fn kernels(metric: Metric) -> FourScores {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        return match metric {
            // SAFETY (both): the CPU supports AVX2 and FMA, checked just above.
            Metric::L2 => |q, row| unsafe { avx2::four(q, row, avx2::Kind::L2) },
            Metric::InnerProduct => |q, row| unsafe { avx2::four(q, row, avx2::Kind::Dot) },
        };
    }
    match metric {
        Metric::L2 => |q, row| q.map(|q| q.iter().zip(row).map(|(x, y)| (x - y) * (x - y)).sum()),
        Metric::InnerProduct => |q, row| q.map(|q| q.iter().zip(row).map(|(x, y)| x * y).sum()),
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    #[derive(Clone, Copy, PartialEq, Eq)]
    pub enum Kind {
        L2,
        Dot,
    }

    /// Squared L2 or dot product of each `q[j]` with `row`, eight lanes and four independent
    /// accumulators at a time.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn four(q: [&[f32]; 4], row: &[f32], kind: Kind) -> [f32; 4] {
        let n = row.len();
        assert!(q.iter().all(|q| q.len() >= n), "query rows shorter than the row");
        let whole = n / 8 * 8;
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i < whole {
            // SAFETY: i + 8 <= whole <= n, and every q[j] holds at least n floats.
            unsafe {
                let c = _mm256_loadu_ps(row.as_ptr().add(i));
                for (acc, q) in acc.iter_mut().zip(q) {
                    let x = _mm256_loadu_ps(q.as_ptr().add(i));
                    *acc = match kind {
                        Kind::L2 => {
                            let d = _mm256_sub_ps(x, c);
                            _mm256_fmadd_ps(d, d, *acc)
                        }
                        Kind::Dot => _mm256_fmadd_ps(x, c, *acc),
                    };
                }
            }
            i += 8;
        }
        let mut out = acc.map(|a| sum_lanes(a));
        for (out, q) in out.iter_mut().zip(q) {
            for (x, y) in q[whole..n].iter().zip(&row[whole..]) {
                *out += match kind {
                    Kind::L2 => (x - y) * (x - y),
                    Kind::Dot => x * y,
                };
            }
        }
        out
    }

    #[target_feature(enable = "avx2,fma")]
    fn sum_lanes(v: __m256) -> f32 {
        let halves = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let pairs = _mm_add_ps(halves, _mm_movehl_ps(halves, halves));
        _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps::<1>(pairs, pairs)))
    }
}
