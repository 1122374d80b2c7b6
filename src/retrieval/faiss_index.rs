//! A loaded faiss index, owned through the faiss C API. Loading (main or loader thread) reads
//! the file once, validates the bytes with [`inspect`](super::inspect) and hands faiss exactly
//! those bytes through a custom reader, so what faiss parses is what was checked. Searching
//! (worker thread) goes through `faiss_Index_search` with caller-owned buffers and a shared
//! reference: faiss CPU indexes allow concurrent const searches, and the settings that
//! searches read (nprobe, k_factor) are only written here, before the index is shared.

use std::cell::Cell;
use std::ffi::{c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr;

use faiss::index::IndexImpl;
use faiss_sys::*;
use thiserror::Error;

use super::index_file::{inspect, IndexFileError, IndexLayout, IndexSummary};

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
#[derive(Debug)]
pub struct FeatureIndex {
    index: IndexImpl,
    summary: IndexSummary,
    settings: SearchSettings,
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
        let summary = inspect(bytes).map_err(|source| RetrievalError::File { path: PathBuf::new(), source })?;
        let index = read_from_memory(bytes)?;
        let mut loaded = FeatureIndex { index, summary, settings };
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

    /// Changes the search settings. Takes `&mut self`: faiss reads them during searches, so they
    /// may only change while nobody searches.
    pub fn apply(&mut self, settings: SearchSettings) -> Result<(), RetrievalError> {
        if settings.k == 0 || settings.nprobe == 0 {
            return Err(RetrievalError::Settings("k and nprobe must be at least 1"));
        }
        let nprobe = settings.nprobe.min(self.summary.nlist.max(1) as usize);
        set_index_parameter(&self.index, "nprobe", nprobe as f64)?;
        if let IndexLayout::IvfPqFastScanRefineFlat { ref mut k_factor, .. } = self.summary.layout {
            if let Some(wanted) = settings.k_factor {
                if !(1.0..=1024.0).contains(&wanted) {
                    return Err(RetrievalError::Settings("k_factor must be between 1 and 1024"));
                }
                // SAFETY: the layout says the file's top index is an IndexRefineFlat (faiss's
                // reader promotes IxRF with a flat refine index); the cast checks it anyway.
                let refine = unsafe { faiss_IndexRefineFlat_cast(self.index.inner_ptr()) };
                if refine.is_null() {
                    return Err(RetrievalError::Faiss { action: "set k_factor", message: "not a refine index".into() });
                }
                // SAFETY: `refine` is a live IndexRefineFlat owned by `self.index`.
                *k_factor = unsafe {
                    faiss_IndexRefineFlat_set_k_factor(refine, wanted);
                    faiss_IndexRefineFlat_k_factor(refine)
                };
            }
        }
        if self.summary.layout == IndexLayout::IvfFlat {
            // Neighbour vectors are copied out of the lists by id; that needs the id → list map
            // (8 bytes per vector, built once).
            let ivf = unsafe { faiss_IndexIVF_cast(self.index.inner_ptr()) };
            if ivf.is_null() {
                return Err(RetrievalError::Faiss { action: "map vector ids", message: "not an IVF index".into() });
            }
            check(unsafe { faiss_IndexIVF_make_direct_map(ivf, 1) }, "map vector ids")?;
        }
        self.summary.nprobe = nprobe as u64;
        self.settings = SearchSettings { nprobe, ..settings };
        Ok(())
    }

    /// Searches `queries.len() / dim` vectors at once, writing `k` labels and distances per
    /// query. Allocates nothing on the Rust side.
    pub fn search_into(
        &self,
        queries: &[f32],
        distances: &mut [f32],
        labels: &mut [i64],
    ) -> Result<(), RetrievalError> {
        let d = self.dim();
        let k = self.settings.k;
        if queries.len() % d != 0 {
            return Err(RetrievalError::Dimension { features: queries.len(), index: d });
        }
        let n = queries.len() / d;
        assert!(distances.len() >= n * k && labels.len() >= n * k, "result buffers smaller than n·k");
        // SAFETY: buffers hold n·d queries and n·k results; faiss CPU indexes are safe to
        // search concurrently through a const pointer.
        let code = unsafe {
            faiss_Index_search(
                self.index.inner_ptr(),
                n as idx_t,
                queries.as_ptr(),
                k as idx_t,
                distances.as_mut_ptr(),
                labels.as_mut_ptr(),
            )
        };
        check(code, "search")
    }

    /// Copies the stored vector with id `label` into `out` (`dim` floats): from RFlat's flat
    /// storage or the IVF-Flat list that holds it. Exact for both layouts.
    pub fn vector_into(&self, label: i64, out: &mut [f32]) -> Result<(), RetrievalError> {
        if label < 0 || label as u64 >= self.summary.vectors || out.len() != self.dim() {
            return Err(RetrievalError::Faiss { action: "copy a vector", message: format!("no vector {label}") });
        }
        // SAFETY: label is in range and `out` holds dim floats.
        check(unsafe { faiss_Index_reconstruct(self.index.inner_ptr(), label, out.as_mut_ptr()) }, "copy a vector")
    }

    /// Writes the index as a faiss file.
    pub fn write(&self, path: &Path) -> Result<(), RetrievalError> {
        faiss::index::io::write_index(&self.index, path_str(path)?)
            .map_err(|e| RetrievalError::Faiss { action: "write the index", message: e.to_string() })
    }
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

fn set_index_parameter(index: &IndexImpl, name: &str, value: f64) -> Result<(), RetrievalError> {
    let name = CString::new(name).expect("parameter names have no NUL");
    let mut space = ptr::null_mut();
    check(unsafe { faiss_ParameterSpace_new(&mut space) }, "set search parameters")?;
    let code = unsafe { faiss_ParameterSpace_set_index_parameter(space, index.inner_ptr(), name.as_ptr(), value) };
    unsafe { faiss_ParameterSpace_free(space) };
    check(code, "set search parameters")
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
