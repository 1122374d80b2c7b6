//! A loaded faiss index, owned through the faiss C API. Loading (main or loader thread) reads
//! the file once, validates the bytes with [`inspect`](super::inspect) and hands faiss exactly
//! those bytes through a custom reader, so what faiss parses is what was checked. Searching
//! (worker thread) goes through `faiss_Index_search` with caller-owned buffers and a shared
//! reference: faiss CPU indexes allow concurrent const searches, and the settings that
//! searches read (nprobe, k_factor) are only written here, before the index is shared.

use std::cell::Cell;
use std::ffi::{c_int, c_void, CStr};
use std::path::{Path, PathBuf};
use std::ptr;

use faiss::index::IndexImpl;
use faiss_sys::*;
use thiserror::Error;

use super::index_file::{inspect_parts, IndexFileError, IndexLayout, IndexSummary, Metric};
use super::kernels;

/// How searches run. Defaults are RVC's (k = 8, nprobe = 1) plus a refine depth that makes the
/// fast-scan + RFlat layout accurate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchSettings {
    /// Neighbours per frame.
    pub k: usize,
    /// Inverted lists probed per frame.
    pub nprobe: usize,
    /// Candidates per wanted neighbour that the exact refine step re-ranks (RFlat indexes
    /// only). `None` keeps the file's value, which is usually 1: refine then only re-sorts.
    pub k_factor: Option<f32>,
}

/// Refine depth used when the caller does not choose one: at nprobe = 1 and k = 8, k_factor 4
/// lifted recall@8 from 0.56 to 0.96 on 100k × 768 clustered data, for ~12 % more time
/// (faiss.md §10 B; `rvc-stage index tune` measures it on a user's own features).
pub const DEFAULT_K_FACTOR: f32 = 4.0;

impl Default for SearchSettings {
    fn default() -> Self {
        SearchSettings { k: 8, nprobe: 1, k_factor: Some(DEFAULT_K_FACTOR) }
    }
}

/// Why an index could not be loaded or searched.
#[derive(Debug, Error)]
pub enum RetrievalError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a usable index: {source}")]
    File { path: PathBuf, source: IndexFileError },
    #[error("faiss could not {action}: {message}")]
    Faiss { action: &'static str, message: String },
    #[error("this build of RVC Stage searches with AVX2 and FMA instructions, which this CPU lacks")]
    CpuFeatures,
    #[error("the features have {features} values per frame but the index holds {index}-dimensional vectors")]
    Dimension { features: usize, index: usize },
    #[error("invalid search settings: {0}")]
    Settings(&'static str),
    #[error("a block of {frames} frames is larger than the {capacity} this searcher was prepared for")]
    BlockTooLarge { frames: usize, capacity: usize },
}

/// A validated, fully loaded ("preloaded") index, ready to search.
///
/// Searches run in three steps: the coarse step (nearest list centroids) in our own kernels,
/// the list scan in faiss (`search_preassigned`: IVF-Flat lists, or the PQ fast-scan kernel),
/// and for RFlat layouts the exact refine over `k · k_factor` candidates, again ours. faiss's
/// `IndexRefineFlat` is not used: its base index cannot be reached through the C API, so an
/// `IxRF` file is loaded as its two nested indexes (byte ranges found by the inspector).
#[derive(Debug)]
pub struct FeatureIndex {
    /// The IVF index whose lists are scanned (`IwFl` or `IwPf`).
    ivf: IndexImpl,
    /// RFlat's exact vectors (`IxF2` / `IxFI`), for refine layouts: owns what `exact` points at.
    _refine: Option<IndexImpl>,
    /// The coarse quantizer's centroids, `nlist × dim`, owned by `ivf`.
    centroids: RawRows,
    /// RFlat's vectors, `vectors × dim`, owned by `refine`.
    exact: Option<RawRows>,
    summary: IndexSummary,
    settings: SearchSettings,
}

/// Row-major floats owned by a faiss index this struct also holds; read-only after loading.
#[derive(Debug)]
struct RawRows {
    data: *const f32,
    len: usize,
}

// SAFETY: the rows are never written after loading and live as long as the owning IndexImpl,
// which is Send + Sync and dropped together with them.
unsafe impl Send for RawRows {}
unsafe impl Sync for RawRows {}

impl RawRows {
    /// The float storage of a flat index.
    fn of_flat(flat: *mut FaissIndex, expected: usize) -> Result<Self, RetrievalError> {
        // SAFETY: the cast checks the type; xb stays valid while the index is not modified.
        let flat = unsafe { faiss_IndexFlat_cast(flat) };
        if flat.is_null() {
            return Err(RetrievalError::Faiss { action: "read stored vectors", message: "not a flat index".into() });
        }
        let (mut data, mut len) = (ptr::null_mut(), 0);
        unsafe { faiss_IndexFlat_xb(flat, &mut data, &mut len) };
        if len != expected || (len > 0 && data.is_null()) {
            let message = format!("{len} floats where {expected} were expected");
            return Err(RetrievalError::Faiss { action: "read stored vectors", message });
        }
        Ok(RawRows { data, len })
    }

    fn as_slice(&self) -> &[f32] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: see `of_flat`; the owner outlives every borrow of self.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }
}

/// Reusable buffers for one search call, sized by [`FeatureIndex::scratch`].
#[derive(Debug, Default)]
pub struct SearchScratch {
    assign: Vec<i64>,
    coarse: Vec<f32>,
    candidate_labels: Vec<i64>,
    candidate_scores: Vec<f32>,
}

impl SearchScratch {
    /// Whether these buffers serve `queries` queries of `index` as it is set now.
    pub fn fits(&self, index: &FeatureIndex, queries: usize) -> bool {
        self.assign.len() >= queries * index.settings.nprobe
            && self.candidate_labels.len() >= queries * index.candidates()
    }
}

impl FeatureIndex {
    /// Reads, validates and loads an index file.
    pub fn load(path: &Path, settings: SearchSettings) -> Result<Self, RetrievalError> {
        let bytes = std::fs::read(path).map_err(|source| RetrievalError::Io { path: path.into(), source })?;
        Self::from_bytes(&bytes, settings).map_err(|error| match error {
            RetrievalError::File { source, .. } => RetrievalError::File { path: path.into(), source },
            other => other,
        })
    }

    /// Validates and loads an index from the bytes of a file.
    pub fn from_bytes(bytes: &[u8], settings: SearchSettings) -> Result<Self, RetrievalError> {
        require_search_cpu()?;
        let (summary, parts) =
            inspect_parts(bytes).map_err(|source| RetrievalError::File { path: PathBuf::new(), source })?;
        let dim = summary.dim as usize;
        let (ivf, refine) = match parts {
            None => (read_from_memory(bytes)?, None),
            Some(parts) => (read_from_memory(&bytes[parts.base])?, Some(read_from_memory(&bytes[parts.refine])?)),
        };
        let ivf_ptr = ivf_of(&ivf)?;
        // SAFETY: a live IVF index; its quantizer is owned by it.
        let quantizer = unsafe { faiss_IndexIVF_quantizer(ivf_ptr) };
        let centroids = RawRows::of_flat(quantizer, summary.nlist as usize * dim)?;
        let exact = match &refine {
            Some(refine) => Some(RawRows::of_flat(refine.inner_ptr(), summary.vectors as usize * dim)?),
            None => {
                // IVF-Flat neighbours are copied out of the lists by id, which needs the
                // id → list map (8 bytes per vector, built once).
                check(unsafe { faiss_IndexIVF_make_direct_map(ivf_ptr, 1) }, "map vector ids")?;
                None
            }
        };
        let mut loaded = FeatureIndex { ivf, _refine: refine, centroids, exact, summary, settings };
        loaded.apply(settings)?;
        Ok(loaded)
    }

    /// What the file described, with nprobe / k_factor as they are now set.
    pub fn summary(&self) -> IndexSummary {
        self.summary
    }

    pub fn settings(&self) -> SearchSettings {
        self.settings
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.summary.dim as usize
    }

    /// Stored vectors.
    pub fn len(&self) -> usize {
        self.summary.vectors as usize
    }

    pub fn is_empty(&self) -> bool {
        self.summary.vectors == 0
    }

    /// Changes the search settings. Takes `&mut self`: faiss reads nprobe during searches, so
    /// it may only change while nobody searches.
    pub fn apply(&mut self, settings: SearchSettings) -> Result<(), RetrievalError> {
        if settings.k == 0 || settings.nprobe == 0 {
            return Err(RetrievalError::Settings("k and nprobe must be at least 1"));
        }
        if settings.k_factor.is_some_and(|f| !(1.0..=1024.0).contains(&f)) {
            return Err(RetrievalError::Settings("k_factor must be between 1 and 1024"));
        }
        let nprobe = settings.nprobe.min(self.summary.nlist.max(1) as usize);
        // search_preassigned reads the index's nprobe as the width of our assignment table.
        unsafe { faiss_IndexIVF_set_nprobe(ivf_of(&self.ivf)?, nprobe) };
        if let IndexLayout::IvfPqFastScanRefineFlat { ref mut k_factor, .. } = self.summary.layout {
            *k_factor = settings.k_factor.unwrap_or(*k_factor);
        }
        self.summary.nprobe = nprobe as u64;
        self.settings = SearchSettings { nprobe, ..settings };
        Ok(())
    }

    /// Candidates the list scan returns per query: `k`, or `k · k_factor` before refining.
    fn candidates(&self) -> usize {
        match self.summary.layout {
            IndexLayout::IvfFlat => self.settings.k,
            IndexLayout::IvfPqFastScanRefineFlat { k_factor, .. } => {
                ((self.settings.k as f32 * k_factor) as usize).max(self.settings.k)
            }
        }
    }

    /// Buffers for searching up to `queries` vectors per call.
    pub fn scratch(&self, queries: usize) -> SearchScratch {
        let (probes, candidates) = (self.settings.nprobe, self.candidates());
        SearchScratch {
            assign: vec![0; queries * probes],
            coarse: vec![0.0; queries * probes],
            candidate_labels: vec![0; queries * candidates],
            candidate_scores: vec![0.0; queries * candidates],
        }
    }

    /// Searches `queries.len() / dim` vectors at once, writing `k` labels and scores per query
    /// (squared L2, or inner product for IP indexes; −1 labels where fewer were found). The
    /// scratch must come from [`scratch`](Self::scratch) for at least this many queries; then
    /// nothing is allocated on the Rust side.
    pub fn search_with(
        &self,
        queries: &[f32],
        scratch: &mut SearchScratch,
        distances: &mut [f32],
        labels: &mut [i64],
    ) -> Result<(), RetrievalError> {
        let (d, k, probes, candidates) = (self.dim(), self.settings.k, self.settings.nprobe, self.candidates());
        if !queries.len().is_multiple_of(d) {
            return Err(RetrievalError::Dimension { features: queries.len(), index: d });
        }
        let n = queries.len() / d;
        assert!(distances.len() >= n * k && labels.len() >= n * k, "result buffers smaller than n·k");
        assert!(scratch.fits(self, n), "scratch made for fewer queries or other settings");
        let metric = self.summary.metric;
        let (assign, coarse) = (&mut scratch.assign[..n * probes], &mut scratch.coarse[..n * probes]);
        kernels::nearest_rows(metric, queries, self.centroids.as_slice(), d, probes, assign, coarse);
        let (scan_labels, scan_scores) = match self.exact {
            None => (&mut labels[..n * k], &mut distances[..n * k]),
            Some(_) => {
                (&mut scratch.candidate_labels[..n * candidates], &mut scratch.candidate_scores[..n * candidates])
            }
        };
        // SAFETY: every buffer holds what faiss writes or reads for n queries; assignments are
        // list numbers below nlist; a const search on a CPU index.
        let code = unsafe {
            faiss_IndexIVF_search_preassigned(
                ivf_of(&self.ivf)?,
                n as idx_t,
                queries.as_ptr(),
                scan_labels.len() as idx_t / n.max(1) as idx_t,
                assign.as_ptr(),
                coarse.as_ptr(),
                scan_scores.as_mut_ptr(),
                scan_labels.as_mut_ptr(),
                0,
            )
        };
        check(code, "search")?;
        if let Some(exact) = &self.exact {
            let candidate_labels = &scratch.candidate_labels[..n * candidates];
            let (labels, distances) = (&mut labels[..n * k], &mut distances[..n * k]);
            refine(metric, exact.as_slice(), d, queries, candidate_labels, candidates, labels, distances);
        }
        Ok(())
    }

    /// [`search_with`](Self::search_with) with fresh buffers: for tools and tests, not the
    /// worker.
    pub fn search_into(
        &self,
        queries: &[f32],
        distances: &mut [f32],
        labels: &mut [i64],
    ) -> Result<(), RetrievalError> {
        let mut scratch = self.scratch(queries.len() / self.dim().max(1));
        self.search_with(queries, &mut scratch, distances, labels)
    }

    /// All stored vectors as one row-major slice, where the layout keeps them that way (RFlat).
    pub fn stored_vectors(&self) -> Option<&[f32]> {
        self.exact.as_ref().map(RawRows::as_slice)
    }

    /// Copies the stored vector with id `label` into `out` (`dim` floats): from RFlat's flat
    /// storage or the IVF-Flat list that holds it. Exact for both layouts.
    pub fn vector_into(&self, label: i64, out: &mut [f32]) -> Result<(), RetrievalError> {
        if label < 0 || label as u64 >= self.summary.vectors || out.len() != self.dim() {
            return Err(RetrievalError::Faiss { action: "copy a vector", message: format!("no vector {label}") });
        }
        if let Some(all) = self.stored_vectors() {
            out.copy_from_slice(&all[label as usize * out.len()..][..out.len()]);
            return Ok(());
        }
        // SAFETY: label is in range and `out` holds dim floats.
        check(unsafe { faiss_Index_reconstruct(self.ivf.inner_ptr(), label, out.as_mut_ptr()) }, "copy a vector")
    }
}

/// Re-ranks each query's candidates by exact distance and keeps the best `k`.
#[allow(clippy::too_many_arguments)]
fn refine(
    metric: Metric,
    exact: &[f32],
    d: usize,
    queries: &[f32],
    candidates: &[i64],
    per_query: usize,
    labels: &mut [i64],
    scores: &mut [f32],
) {
    let k = labels.len() / (queries.len() / d).max(1);
    let (worst, better): (f32, fn(f32, f32) -> bool) = match metric {
        Metric::L2 => (f32::MAX, |a, b| a < b),
        Metric::InnerProduct => (-f32::MAX, |a, b| a > b),
    };
    labels.fill(-1);
    scores.fill(worst);
    for (q, query) in queries.chunks_exact(d).enumerate() {
        let (labels, scores) = (&mut labels[q * k..][..k], &mut scores[q * k..][..k]);
        let valid = candidates[q * per_query..][..per_query].iter().copied().filter(|&l| l >= 0);
        for label in valid.clone() {
            prefetch_row(&exact[label as usize * d..][..d]);
        }
        let mut group = [0i64; 4];
        let mut filled = 0;
        let flush = |group: &[i64], labels: &mut [i64], scores: &mut [f32]| {
            let rows = [0, 1, 2, 3].map(|j| &exact[group[j.min(group.len() - 1)] as usize * d..][..d]);
            let found = kernels::scores_of_four(metric, rows, query);
            for (&label, score) in group.iter().zip(found) {
                kernels::insert(labels, scores, label, score, better);
            }
        };
        for label in valid {
            group[filled] = label;
            filled += 1;
            if filled == 4 {
                flush(&group, labels, scores);
                filled = 0;
            }
        }
        if filled > 0 {
            flush(&group[..filled], labels, scores);
        }
    }
}

/// Asks for the start of a stored vector ahead of use: refine candidates are scattered over
/// the whole index, so their rows come from DRAM; requesting them all at once overlaps the
/// misses (the hardware prefetcher streams the rest of each row).
fn prefetch_row(row: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in row.chunks(16).take(4) {
        // SAFETY: prefetching is a hint and cannot fault; the address is inside `row`.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(line.as_ptr().cast()) };
    }
}

fn ivf_of(index: &IndexImpl) -> Result<*mut FaissIndexIVF, RetrievalError> {
    // SAFETY: a checked dynamic cast of a live index.
    let ivf = unsafe { faiss_IndexIVF_cast(index.inner_ptr()) };
    if ivf.is_null() {
        return Err(RetrievalError::Faiss { action: "search", message: "not an IVF index".into() });
    }
    Ok(ivf)
}

/// The C++ fast-scan kernels are compiled for AVX2 (see `.cargo/config.toml`): refuse rather
/// than die of an illegal instruction.
fn require_search_cpu() -> Result<(), RetrievalError> {
    #[cfg(target_arch = "x86_64")]
    if !(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")) {
        return Err(RetrievalError::CpuFeatures);
    }
    Ok(())
}

pub(super) fn path_str(path: &Path) -> Result<&str, RetrievalError> {
    path.to_str().ok_or(RetrievalError::Faiss { action: "use the path", message: "it is not valid UTF-8".into() })
}

/// Turns a faiss C API status into a Result, with the C++ exception's message.
pub(super) fn check(code: c_int, action: &'static str) -> Result<(), RetrievalError> {
    if code == 0 {
        return Ok(());
    }
    // SAFETY: faiss keeps the last error per thread until the next failing call.
    let message = unsafe {
        let text = faiss_get_last_error();
        if text.is_null() {
            format!("error code {code}")
        } else {
            CStr::from_ptr(text).to_string_lossy().trim().to_owned()
        }
    };
    Err(RetrievalError::Faiss { action, message })
}

thread_local! {
    /// The bytes faiss's custom reader serves on this thread: the C callback has no user-data
    /// pointer, and `faiss_read_index_custom` calls it synchronously on the calling thread.
    static READ_SOURCE: Cell<(*const u8, usize)> = const { Cell::new((ptr::null(), 0)) };
}

unsafe extern "C" fn read_callback(dest: *mut c_void, size: usize, items: usize) -> usize {
    READ_SOURCE.with(|source| {
        let (data, left) = source.get();
        if size == 0 {
            return 0;
        }
        let whole_items = items.min(left / size);
        let bytes = whole_items * size;
        // SAFETY: `data` points at `left` readable bytes; faiss passes room for size·items.
        unsafe { ptr::copy_nonoverlapping(data, dest.cast::<u8>(), bytes) };
        source.set((unsafe { data.add(bytes) }, left - bytes));
        whole_items
    })
}

/// Loads an index from validated bytes through faiss's custom-reader API.
fn read_from_memory(bytes: &[u8]) -> Result<IndexImpl, RetrievalError> {
    struct Reader(*mut FaissCustomIOReader);
    impl Drop for Reader {
        fn drop(&mut self) {
            unsafe { faiss_CustomIOReader_free(self.0) };
            READ_SOURCE.with(|source| source.set((ptr::null(), 0)));
        }
    }
    let mut reader = Reader(ptr::null_mut());
    check(unsafe { faiss_CustomIOReader_new(&mut reader.0, Some(read_callback)) }, "open the index")?;
    READ_SOURCE.with(|source| source.set((bytes.as_ptr(), bytes.len())));
    let mut raw = ptr::null_mut();
    // SAFETY: a CustomIOReader is an IOReader (single inheritance, same address), as the C
    // API's own casts assume.
    check(unsafe { faiss_read_index_custom(reader.0.cast(), 0, &mut raw) }, "read the index")?;
    // SAFETY: faiss returned a fresh index that we now own.
    Ok(unsafe { <IndexImpl as faiss::index::FromInnerPtr>::from_inner_ptr(raw) })
}
