//! Finding and loading ONNX Runtime (`libonnxruntime.so.1.31.1`, taken from the PyPI wheel by
//! `cargo xtask setup`). ort's implicit loader panics when the library is missing, and inside a
//! plugin that takes the host down, so loading only ever goes through [`environment`], which
//! returns errors. ort allows one environment per process: it lives in a static that is never
//! dropped, and the first successful load decides for the whole process. A failed load is not
//! remembered: the next model load tries again (the user may have pointed the plugin at the
//! library meanwhile). Main or loader thread.

use std::ffi::{c_void, CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use thiserror::Error;

/// The library this build speaks to (ort `api-31`).
pub const LIBRARY_NAME: &str = "libonnxruntime.so.1.31.1";

/// Why content models cannot run: the plugin then passes audio through and says this.
#[derive(Debug, Clone, Error)]
pub enum RuntimeError {
    #[error("ONNX Runtime ({LIBRARY_NAME}) was not found; looked for {0}")]
    NotFound(String),
    #[error("ONNX Runtime at {path} cannot be used: {reason}")]
    Load { path: PathBuf, reason: String },
}

static ENVIRONMENT: OnceLock<(PathBuf, Environment)> = OnceLock::new();
/// Held while a load is attempted, so two loader threads do not race to load the library.
static LOADING: Mutex<()> = Mutex::new(());

/// The process's ONNX Runtime environment, loading the library on first use from the first
/// of [`runtime_candidates`] that exists.
pub(crate) fn environment(explicit: Option<&Path>) -> Result<&'static Environment, RuntimeError> {
    let _loading = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((path, environment)) = ENVIRONMENT.get() {
        if explicit.is_some_and(|explicit| explicit != path) {
            tracing::warn!(
                "RVC Stage uses ONNX Runtime from {} (loaded first in this process) instead of {}",
                path.display(),
                explicit.unwrap_or(path).display()
            );
        }
        return Ok(environment);
    }
    let loaded = load(explicit)?;
    Ok(&ENVIRONMENT.get_or_init(|| loaded).1)
}

/// The library the process loaded, if it did.
pub fn runtime_path() -> Option<&'static Path> {
    ENVIRONMENT.get().map(|(path, _)| path.as_path())
}

/// The library named by the plugin state being restored. A host restores a state's fields in
/// key order, so `hubert-path` (which starts loading the model, and with it the runtime) comes
/// before `onnxruntime-path`; the plugin records the state's choice here first, so the very
/// first load already honours it.
static STATE_RUNTIME: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Records the library a plugin state names (see [`STATE_RUNTIME`]). Main thread.
pub fn prefer_runtime_from_state(path: Option<PathBuf>) {
    *STATE_RUNTIME.lock().unwrap_or_else(|e| e.into_inner()) = path;
}

/// Where the library is looked for, in order: the path a user chose, the one the plugin state
/// being restored names, `ORT_DYLIB_PATH`, next to this plugin or program, the setup cache.
/// Relative paths are skipped: ort would resolve them against the host's executable.
pub fn runtime_candidates(explicit: Option<&Path>) -> Vec<PathBuf> {
    let mut candidates: Vec<PathBuf> = explicit.map(Path::to_path_buf).into_iter().collect();
    candidates.extend(STATE_RUNTIME.lock().unwrap_or_else(|e| e.into_inner()).clone());
    candidates.extend(std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from));
    candidates.extend(own_directory().map(|dir| dir.join(LIBRARY_NAME)));
    candidates.extend(setup_cache().map(|dir| dir.join("onnxruntime-1.31.1").join(LIBRARY_NAME)));
    candidates.retain(|path| path.is_absolute());
    candidates
}

/// Loads the first candidate that works; if none does, the first one's reason (the most
/// specific choice: the user's, or the state's).
fn load(explicit: Option<&Path>) -> Result<(PathBuf, Environment), RuntimeError> {
    let candidates = runtime_candidates(explicit);
    let mut first_failure = None;
    for path in candidates.iter().filter(|path| path.is_file()) {
        match load_from(path) {
            Ok(environment) => return Ok((path.clone(), environment)),
            Err(reason) => {
                tracing::warn!("RVC Stage cannot use ONNX Runtime at {}: {reason}", path.display());
                first_failure.get_or_insert(RuntimeError::Load { path: path.clone(), reason });
            }
        }
    }
    Err(first_failure.unwrap_or_else(|| {
        let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        RuntimeError::NotFound(looked.join(", "))
    }))
}

fn load_from(path: &Path) -> Result<Environment, String> {
    // The system loader maps a truncated library and dies of SIGBUS on first touch: check the
    // file holds every segment it declares before handing it over.
    check_elf(path)?;
    let builder = ort::init_from(path).map_err(|e| e.to_string())?;
    builder.with_name("rvc-stage").build().map_err(|e| e.to_string())
}

/// Checks that `path` is a 64-bit little-endian ELF file whose program headers and loadable
/// segments all lie inside the file.
fn check_elf(path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let field = |at: usize, len: usize| bytes.get(at..at + len).ok_or("it is truncated (ELF header)".to_string());
    let word = |at: usize| field(at, 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    let half = |at: usize| field(at, 2).map(|b| u16::from_le_bytes(b.try_into().expect("2 bytes")));
    if field(0, 6)? != b"\x7fELF\x02\x01" {
        return Err("it is not a 64-bit little-endian shared library".into());
    }
    let (table, entry, count) = (word(0x20)? as usize, half(0x36)? as usize, half(0x38)? as usize);
    for header in (0..count).map(|i| table.saturating_add(i.saturating_mul(entry))) {
        let kind = field(header, 4).map_err(|_| "it is truncated (program headers)".to_string())?;
        let (offset, size) = (word(header + 8)?, word(header + 32)?);
        if kind == [1, 0, 0, 0] && offset.saturating_add(size) > bytes.len() as u64 {
            return Err(format!("it is truncated: a segment ends at byte {} of {}", offset + size, bytes.len()));
        }
    }
    Ok(())
}

/// The directory of the binary this code is in (the plugin's `.so` inside a host).
fn own_directory() -> Option<PathBuf> {
    // SAFETY: dladdr only reads the loader's tables; the name it returns lives as long as the
    // library is loaded, and is copied at once.
    let file = unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        let address = own_directory as *const () as *const c_void;
        if libc::dladdr(address, &mut info) == 0 || info.dli_fname.is_null() {
            return None;
        }
        PathBuf::from(OsStr::from_bytes(CStr::from_ptr(info.dli_fname).to_bytes()))
    };
    file.canonicalize().ok()?.parent().map(Path::to_path_buf)
}

/// `$RVC_STAGE_CACHE`, else `$XDG_CACHE_HOME/rvc-stage`, else `~/.cache/rvc-stage` (as setup).
fn setup_cache() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("RVC_STAGE_CACHE") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("rvc-stage"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/rvc-stage"))
}
