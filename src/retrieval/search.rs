//! Per-block retrieval on the worker thread: all frames of a block go to faiss in one search
//! call, each frame's neighbour vectors are copied out of the index itself, and the
//! index-ratio blend is applied. Buffers are sized once, so a block allocates nothing on the
//! Rust side. The first call on a thread limits OpenMP to that thread, so faiss starts no
//! thread pool in a host process.

use std::cell::Cell;
use std::ffi::c_int;

use super::blend::{blend_frame, Neighbours};
use super::faiss_index::{FeatureIndex, RetrievalError, SearchScratch};
use super::index_file::Metric;

extern "C" {
    // libgomp, linked by faiss-sys for faiss's OpenMP loops. Its limits are per thread.
    fn omp_set_num_threads(threads: c_int);
}

thread_local! {
    static SEARCH_THREAD_READY: Cell<bool> = const { Cell::new(false) };
}

/// Makes faiss single-threaded on the calling thread: OpenMP teams of one. libgomp keeps this
/// limit per thread, so it must run on the searching thread itself; without it faiss's list
/// scan starts a pool of OpenMP threads in the host process that outlives the search. (The
/// search never reaches BLAS: the coarse and refine steps are our own kernels.)
fn prepare_search_thread() {
    if !SEARCH_THREAD_READY.get() {
        // SAFETY: a plain setter without preconditions.
        unsafe { omp_set_num_threads(1) };
        SEARCH_THREAD_READY.set(true);
    }
}

/// Searches and blends blocks of feature frames against one index shape.
#[derive(Debug)]
pub struct Retriever {
    dim: usize,
    k: usize,
    max_frames: usize,
    scratch: SearchScratch,
    queries: Vec<f32>,
    distances: Vec<f32>,
    labels: Vec<i64>,
    /// The current frame's neighbour vectors, `k × dim`.
    neighbours: Vec<f32>,
    /// Squared L2 distances of those neighbours (inner-product indexes score differently).
    l2: Vec<f32>,
}

impl Retriever {
    /// Buffers for blocks of up to `max_frames` frames searched in `index`.
    pub fn new(index: &FeatureIndex, max_frames: usize) -> Self {
        let (dim, k) = (index.dim(), index.settings().k);
        Retriever {
            dim,
            k,
            max_frames,
            scratch: index.scratch(max_frames),
            queries: vec![0.0; max_frames * dim],
            distances: vec![0.0; max_frames * k],
            labels: vec![-1; max_frames * k],
            neighbours: vec![0.0; k * dim],
            l2: vec![0.0; k],
        }
    }

    /// Whether blocks of `frames` frames fit the buffers.
    pub fn fits_frames(&self, frames: usize) -> bool {
        frames <= self.max_frames
    }

    /// Whether this retriever's buffers fit `index` (dimension and search settings).
    pub fn fits(&self, index: &FeatureIndex) -> bool {
        self.dim == index.dim() && self.k == index.settings().k && self.scratch.fits(index, self.max_frames)
    }

    /// Blends `frames` (`T × dim`, row-major) into `out` with one ratio per frame. Frames that
    /// are not finite come out zeroed where they were not finite and are not searched with.
    pub fn retrieve(
        &mut self,
        index: &FeatureIndex,
        frames: &[f32],
        ratios: &[f32],
        out: &mut [f32],
    ) -> Result<(), RetrievalError> {
        if !self.fits(index) || !frames.len().is_multiple_of(self.dim) {
            return Err(RetrievalError::Dimension { features: frames.len(), index: index.dim() });
        }
        let count = frames.len() / self.dim;
        if count > self.max_frames {
            return Err(RetrievalError::BlockTooLarge { frames: count, capacity: self.max_frames });
        }
        assert!(ratios.len() == count && out.len() == frames.len(), "one ratio and one output per frame");
        if ratios.iter().all(|r| *r == 0.0) || index.is_empty() {
            sanitized_copy(frames, out);
            return Ok(());
        }
        prepare_search_thread();
        let queries = &mut self.queries[..frames.len()];
        sanitized_copy(frames, queries);
        let (k, d) = (self.k, self.dim);
        let (distances, labels) = (&mut self.distances[..count * k], &mut self.labels[..count * k]);
        index.search_with(queries, &mut self.scratch, distances, labels)?;
        for (t, ((frame, out), &ratio)) in frames.chunks_exact(d).zip(out.chunks_exact_mut(d)).zip(ratios).enumerate() {
            let labels = &self.labels[t * k..][..k];
            let mut distances = &self.distances[t * k..][..k];
            // RFlat layouts keep every vector in one array: read in place. IVF-Flat lists are
            // copied out by id.
            let stored = index.stored_vectors();
            if stored.is_none() {
                for (slot, &label) in labels.iter().enumerate() {
                    if label >= 0 {
                        index.vector_into(label, &mut self.neighbours[slot * d..][..d])?;
                    }
                }
            }
            let gathered = &self.neighbours;
            let neighbour = |slot: usize| match stored {
                Some(all) => &all[labels[slot].max(0) as usize * d..][..d],
                None => &gathered[slot * d..][..d],
            };
            if index.summary().metric == Metric::InnerProduct {
                // RVC's weights are inverse squared L2 distances; an inner-product index
                // scores by similarity, so measure the distance to what it found.
                let query = &queries[t * d..][..d];
                for (slot, l2) in self.l2.iter_mut().enumerate() {
                    *l2 = squared_l2(query, neighbour(slot));
                }
                distances = &self.l2;
            }
            blend_frame(frame, Neighbours { labels, distances }, neighbour, ratio, out);
        }
        Ok(())
    }
}

fn sanitized_copy(from: &[f32], to: &mut [f32]) {
    for (t, f) in to.iter_mut().zip(from) {
        *t = if f.is_finite() { *f } else { 0.0 };
    }
}

fn squared_l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}
