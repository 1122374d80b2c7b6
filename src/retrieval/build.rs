//! Building indexes the way RVC's faiss tuning tips recommend: `IVF{n},PQ{d/2}x4fs,RFlat` with
//! nprobe = 1 and a refine depth that makes nprobe = 1 accurate, from RVC feature files or from
//! the vectors of an existing index. Runs on the main thread of the CLI (training uses all
//! cores through faiss's OpenMP); never in the plugin.

use std::path::{Path, PathBuf};

use faiss::index::autotune::ParameterSpace;
use faiss::{Index, MetricType};

use super::faiss_index::{check, path_str, FeatureIndex, RetrievalError, SearchSettings, DEFAULT_K_FACTOR};
use super::index_file::Metric;
use crate::npy::{read_matrix, Matrix, NpyError};

/// Vectors added to the index per step (progress granularity).
const ADD_BATCH: usize = 8192;

/// Everything `index build` can choose.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildOptions {
    /// A faiss factory string; `None` builds `IVF{n_ivf},PQ{d/2}x4fs,RFlat`.
    pub factory: Option<String>,
    /// Inverted lists; `None` uses [`default_n_ivf`].
    pub n_ivf: Option<usize>,
    pub metric: Metric,
    /// Refine depth stored in the file (RFlat layouts).
    pub k_factor: f32,
    /// Shuffle seed, so builds are reproducible.
    pub seed: u64,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions { factory: None, n_ivf: None, metric: Metric::L2, k_factor: DEFAULT_K_FACTOR, seed: 0x5EED }
    }
}

/// Default list count for `n` vectors: √n, capped so k-means gets its 39 points per list.
/// faiss's guideline (4√N … 16√N) assumes several lists are probed; at RVC's nprobe = 1 a
/// query only finds neighbours in its own list, so fewer, longer lists find more of them, and
/// fast-scan makes long lists cheap. Measured (`cargo xtask bench`, 100k × 768 synthetic, PQ
/// d/2, k_factor 4): recall@8 0.95 at √N lists against 0.78 at 4√N, in less time.
/// `rvc-stage index tune` measures it on real features.
pub fn default_n_ivf(vectors: usize) -> usize {
    let root = (vectors as f64).sqrt().round() as usize;
    root.min(vectors / 39).max(1)
}

/// The factory string [`BuildOptions`] resolve to for `vectors` vectors of `dim` values.
pub fn factory_string(options: &BuildOptions, vectors: usize, dim: usize) -> String {
    match &options.factory {
        Some(factory) => factory.clone(),
        None => {
            let lists = options.n_ivf.unwrap_or_else(|| default_n_ivf(vectors));
            format!("IVF{lists},PQ{}x4fs,RFlat", dim.div_ceil(2))
        }
    }
}

/// Reads RVC feature files: each path is a `.npy` file or a directory whose `*.npy` files are
/// taken in file-name order; all are concatenated.
pub fn read_feature_files(paths: &[PathBuf]) -> Result<Matrix, NpyError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let io = |source| NpyError::Io { path: path.clone(), source };
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(io)?
                .map(|entry| entry.map(|e| e.path()))
                .collect::<Result<_, _>>()
                .map_err(io)?;
            found.retain(|p| p.extension().is_some_and(|e| e == "npy"));
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    let mut all = Matrix { rows: 0, cols: 0, data: Vec::new() };
    for file in &files {
        let part = read_matrix(file)?;
        if all.rows > 0 && part.cols != all.cols {
            let found = format!("{} values per frame where earlier files have {}", part.cols, all.cols);
            return Err(NpyError::Shape { path: file.clone(), found });
        }
        all.cols = part.cols;
        all.rows += part.rows;
        all.data.extend_from_slice(&part.data);
    }
    Ok(all)
}

/// Every vector stored in an index (for `index convert`), in id order.
pub fn vectors_of(index: &FeatureIndex) -> Result<Matrix, RetrievalError> {
    let (rows, cols) = (index.len(), index.dim());
    let mut data = vec![0.0; rows * cols];
    for (id, row) in data.chunks_exact_mut(cols).enumerate() {
        index.vector_into(id as i64, row)?;
    }
    Ok(Matrix { rows, cols, data })
}

/// Build phases reported to the caller's progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Training,
    Adding { done: usize, total: usize },
    Writing,
}

/// Trains an index on `features` (shuffled, so faiss's training subsample is not biased by
/// file order), adds them all in their original order (ids are frame numbers in the inputs),
/// stores nprobe = 1 and the refine depth, and writes `output` in faiss's format.
pub fn build_index(
    features: &Matrix,
    options: &BuildOptions,
    output: &Path,
    mut progress: impl FnMut(Phase),
) -> Result<(), RetrievalError> {
    if features.rows == 0 || features.cols == 0 {
        return Err(RetrievalError::Settings("no feature vectors to build from"));
    }
    if features.data.iter().any(|x| !x.is_finite()) {
        return Err(RetrievalError::Settings("the feature files contain NaN or infinite values"));
    }
    let factory = factory_string(options, features.rows, features.cols);
    let metric = match options.metric {
        Metric::L2 => MetricType::L2,
        Metric::InnerProduct => MetricType::InnerProduct,
    };
    let faiss_error = |action| move |e: faiss::error::Error| RetrievalError::Faiss { action, message: e.to_string() };
    let mut index =
        faiss::index_factory(features.cols as u32, &factory, metric).map_err(faiss_error("create the index"))?;
    progress(Phase::Training);
    index.train(&shuffled_rows(features, options.seed)).map_err(faiss_error("train the index"))?;
    for (batch, rows) in features.data.chunks(ADD_BATCH * features.cols).enumerate() {
        index.add(rows).map_err(faiss_error("add vectors"))?;
        let done = (batch * ADD_BATCH + rows.len() / features.cols).min(features.rows);
        progress(Phase::Adding { done, total: features.rows });
    }
    let space = ParameterSpace::new().map_err(faiss_error("set nprobe"))?;
    space.set_index_parameter(&index, "nprobe", 1).map_err(faiss_error("set nprobe"))?;
    let refine = unsafe { faiss_sys::faiss_IndexRefineFlat_cast(index.inner_ptr()) };
    if !refine.is_null() {
        unsafe { faiss_sys::faiss_IndexRefineFlat_set_k_factor(refine, options.k_factor) };
    }
    progress(Phase::Writing);
    let path = path_str(output)?;
    let path = std::ffi::CString::new(path).map_err(|_| RetrievalError::Settings("the output path contains NUL"))?;
    check(unsafe { faiss_sys::faiss_write_index_fname(index.inner_ptr(), path.as_ptr()) }, "write the index")?;
    // What we wrote must pass our own loader, as a user's file would.
    FeatureIndex::load(output, SearchSettings { k_factor: None, ..SearchSettings::default() }).map(drop)
}

/// The rows in a seeded random order (RVC shuffles before training as well).
fn shuffled_rows(features: &Matrix, seed: u64) -> Vec<f32> {
    let mut order: Vec<usize> = (0..features.rows).collect();
    fastrand::Rng::with_seed(seed).shuffle(&mut order);
    let mut rows = Vec::with_capacity(features.data.len());
    for row in order {
        rows.extend_from_slice(features.row(row));
    }
    rows
}
