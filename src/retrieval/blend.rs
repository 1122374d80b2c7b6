//! The index-ratio blend: each content-feature frame is pulled towards its nearest
//! training-voice vectors. RVC's formula (infer/lib/rtrvc.py): weights `1 / d²` over the k
//! neighbours' squared L2 distances `d`, normalised per frame, then
//! `out = ratio · Σ wᵢ vᵢ + (1 − ratio) · query`. Its hazards are fixed here: a missing
//! neighbour (label −1) is skipped rather than cancelling the whole block, an exact match
//! (`d = 0`) gets all the weight instead of producing NaN, and weights are computed relative
//! to the closest neighbour so tiny distances cannot overflow. Runs on the worker thread;
//! allocates nothing.

/// The neighbours found for one frame: `k` labels (−1 where there is none) and their squared
/// L2 distances, as faiss returns them.
#[derive(Debug, Clone, Copy)]
pub struct Neighbours<'a> {
    pub labels: &'a [i64],
    pub distances: &'a [f32],
}

/// Blends one frame. `vector(slot)` returns the stored training vector of neighbour number
/// `slot` (its position in `neighbours`); `query` and `out` have
/// the index's dimension. With no usable neighbour, or a query that is not finite, the frame is
/// left as it was (non-finite values zeroed), so NaN never comes out.
pub fn blend_frame<'v>(
    query: &[f32],
    neighbours: Neighbours<'_>,
    vector: impl Fn(usize) -> &'v [f32],
    ratio: f32,
    out: &mut [f32],
) {
    let usable = || {
        neighbours
            .labels
            .iter()
            .zip(neighbours.distances)
            .enumerate()
            .filter(|(_, (label, distance))| **label >= 0 && distance.is_finite() && **distance >= 0.0)
            .map(|(slot, (_, distance))| (slot, *distance))
    };
    let closest = usable().map(|(_, d)| d).fold(f32::INFINITY, f32::min);
    if ratio == 0.0 || !closest.is_finite() || !query.iter().all(|x| x.is_finite()) {
        for (o, q) in out.iter_mut().zip(query) {
            *o = if q.is_finite() { *q } else { 0.0 };
        }
        return;
    }
    // w = 1/d², scaled by closest²: the same normalised weights, in (0, 1]. An exact match
    // (closest = 0) takes all the weight, shared with any other exact matches.
    let weight = |distance: f32| -> f64 {
        if closest == 0.0 {
            f64::from(u8::from(distance == 0.0))
        } else {
            (f64::from(closest) / f64::from(distance)).powi(2)
        }
    };
    let total: f64 = usable().map(|(_, d)| weight(d)).sum();
    let keep = 1.0 - ratio;
    for (o, q) in out.iter_mut().zip(query) {
        *o = keep * q;
    }
    for (slot, distance) in usable() {
        let share = (f64::from(ratio) * weight(distance) / total) as f32;
        for (o, v) in out.iter_mut().zip(vector(slot)) {
            *o += share * v;
        }
    }
}
