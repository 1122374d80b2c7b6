//! Which index is in use, and changing it without stopping the audio. The [`IndexSlot`] is
//! shared by the main thread (which asks for a file), a loader thread (which reads, checks and
//! loads it, so the main thread never waits on a large file) and the worker's [`IndexReader`]
//! (which picks the new index up between blocks). A failed load leaves the previous index in
//! place and says why. The previous index is freed on the loader thread once the worker has
//! let go of it — never on the audio thread, which does not touch indexes at all.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::faiss_index::{FeatureIndex, SearchSettings};
use super::index_file::IndexSummary;

/// How long the loader waits for the worker to release a replaced index before leaving the
/// last reference to whoever holds it (the worker frees it then, still off the audio thread).
const RELEASE_WAIT: Duration = Duration::from_secs(5);
const RELEASE_POLL: Duration = Duration::from_millis(2);

/// What the slot is doing, for display and logs.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexStatus {
    /// No index chosen: retrieval is off.
    Empty,
    /// A file is being loaded; the previous index (if any) stays in use meanwhile.
    Loading { path: PathBuf },
    /// This index is in use.
    Ready { path: PathBuf, summary: IndexSummary },
    /// The last request failed; `kept` is the index still in use, if any.
    Failed { path: PathBuf, reason: String, kept: Option<PathBuf> },
}

#[derive(Debug, Default)]
struct Published {
    current: Option<(PathBuf, Arc<FeatureIndex>)>,
    /// The path the user chose last (persisted by the plugin), loaded or not.
    chosen: Option<PathBuf>,
    status: Option<IndexStatus>,
}

#[derive(Debug, Default)]
struct Shared {
    published: Mutex<Published>,
    /// Numbers requests, so a slow load finishing after a newer request is discarded.
    requests: AtomicU64,
    /// Bumped whenever `current` changes.
    generation: AtomicU64,
}

/// The index chosen by the user. Main thread; cheap to clone a handle for the worker.
#[derive(Debug)]
pub struct IndexSlot {
    shared: Arc<Shared>,
    settings: SearchSettings,
    loaders: Mutex<Vec<JoinHandle<()>>>,
}

impl Default for IndexSlot {
    fn default() -> Self {
        Self::new(SearchSettings::default())
    }
}

impl IndexSlot {
    pub fn new(settings: SearchSettings) -> Self {
        IndexSlot { shared: Arc::default(), settings, loaders: Mutex::default() }
    }

    /// Starts loading `path` in the background (or turns retrieval off for `None`). Returns at
    /// once — it runs on the host's main thread, e.g. while a project loads — and
    /// [`status`](Self::status) tells how it went. The last request wins: a slower, older
    /// load that finishes later is discarded.
    pub fn request(&self, path: Option<PathBuf>) {
        let request = self.shared.requests.fetch_add(1, Ordering::AcqRel) + 1;
        let mut loaders = lock(&self.loaders);
        loaders.retain(|loader| !loader.is_finished());
        lock(&self.shared.published).chosen = path.clone();
        let Some(path) = path else {
            drop(publish(&self.shared, request, None)); // main thread: fine
            return;
        };
        lock(&self.shared.published).status = Some(IndexStatus::Loading { path: path.clone() });
        let shared = self.shared.clone();
        let settings = self.settings;
        let spawned = std::thread::Builder::new()
            .name("rvc-stage-index-loader".into())
            .spawn(move || load_and_publish(&shared, request, path, settings));
        match spawned {
            Ok(handle) => loaders.push(handle),
            Err(error) => {
                fail(&self.shared, request, Path::new(""), format!("could not start the loader thread: {error}"))
            }
        }
    }

    /// Blocks until every load started so far has finished. For tools and tests.
    pub fn wait(&self) {
        let loaders = std::mem::take(&mut *lock(&self.loaders));
        for loader in loaders {
            let _ = loader.join();
        }
    }

    /// The path last asked for, loaded or not (what the plugin saves in its state).
    pub fn chosen(&self) -> Option<PathBuf> {
        lock(&self.shared.published).chosen.clone()
    }

    pub fn status(&self) -> IndexStatus {
        lock(&self.shared.published).status.clone().unwrap_or(IndexStatus::Empty)
    }

    /// A reader for the worker thread.
    pub fn reader(&self) -> IndexReader {
        IndexReader { shared: self.shared.clone(), current: None, seen: u64::MAX }
    }
}

impl Drop for IndexSlot {
    fn drop(&mut self) {
        self.wait();
    }
}

fn load_and_publish(shared: &Shared, request: u64, path: PathBuf, settings: SearchSettings) {
    // A superseded result is dropped here, on the loader thread.
    match FeatureIndex::load(&path, settings) {
        Ok(index) => release(publish(shared, request, Some((path, Arc::new(index))))),
        Err(error) => fail(shared, request, &path, error.to_string()),
    }
}

/// Makes `index` current, unless a newer request was made, and returns the index it replaced
/// (or `index` itself when superseded), for the caller to drop.
fn publish(shared: &Shared, request: u64, index: Option<(PathBuf, Arc<FeatureIndex>)>) -> Option<Arc<FeatureIndex>> {
    let mut published = lock(&shared.published);
    if shared.requests.load(Ordering::Acquire) != request {
        return index.map(|(_, index)| index);
    }
    published.status = Some(match &index {
        Some((path, index)) => IndexStatus::Ready { path: path.clone(), summary: index.summary() },
        None => IndexStatus::Empty,
    });
    let replaced = std::mem::replace(&mut published.current, index).map(|(_, index)| index);
    shared.generation.fetch_add(1, Ordering::AcqRel);
    replaced
}

fn fail(shared: &Shared, request: u64, path: &Path, reason: String) {
    let mut published = lock(&shared.published);
    if shared.requests.load(Ordering::Acquire) != request {
        return;
    }
    let kept = published.current.as_ref().map(|(path, _)| path.clone());
    published.status = Some(IndexStatus::Failed { path: path.to_path_buf(), reason, kept });
}

/// Drops a replaced index here, once the worker has moved past it (bounded wait).
fn release(replaced: Option<Arc<FeatureIndex>>) {
    let Some(mut index) = replaced else { return };
    let deadline = Instant::now() + RELEASE_WAIT;
    loop {
        match Arc::try_unwrap(index) {
            Ok(last) => return drop(last),
            Err(shared_index) => index = shared_index,
        }
        if Instant::now() > deadline {
            return; // the worker frees it when it lets go
        }
        std::thread::sleep(RELEASE_POLL);
    }
}

/// The worker's view of the slot: the index it searches, swapped between blocks.
#[derive(Debug)]
pub struct IndexReader {
    shared: Arc<Shared>,
    current: Option<Arc<FeatureIndex>>,
    seen: u64,
}

impl IndexReader {
    /// Takes up a newly published index, if any. Worker thread, between blocks; never waits
    /// (a slot being updated right now is picked up next time).
    pub fn refresh(&mut self) -> bool {
        let generation = self.shared.generation.load(Ordering::Acquire);
        if generation == self.seen {
            return false;
        }
        let Ok(published) = self.shared.published.try_lock() else { return false };
        self.current = published.current.as_ref().map(|(_, index)| index.clone());
        drop(published);
        self.seen = generation;
        true
    }

    pub fn index(&self) -> Option<&FeatureIndex> {
        self.current.as_deref()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep using it.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
