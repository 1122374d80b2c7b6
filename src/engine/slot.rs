//! A file-backed resource (a feature index, a content model) that can change while audio runs.
//! The [`Slot`] is shared by the main thread (which asks for a file), a loader thread (which
//! reads, checks and loads it, so the main thread never waits on a large file) and the worker's
//! [`SlotReader`] (which picks the new resource up between blocks). A failed load leaves the
//! previous resource in place and says why. The previous one is freed on the loader thread
//! once the worker has let go of it — never on the audio thread, which touches none of this.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the loader waits for the worker to release a replaced resource before leaving the
/// last reference to whoever holds it (the worker frees it then, still off the audio thread).
const RELEASE_WAIT: Duration = Duration::from_secs(5);
const RELEASE_POLL: Duration = Duration::from_millis(2);

/// How long an offline render waits for a file still being loaded before going on without it;
/// below the engine's offline wait for the worker, so the audio thread keeps waiting meanwhile.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(20);

/// What the slot is doing, for display and logs.
#[derive(Debug, Clone, PartialEq)]
pub enum SlotStatus {
    /// Nothing chosen: the stage that uses it is off.
    Empty,
    /// A file is being loaded; the previous resource (if any) stays in use meanwhile.
    Loading { path: PathBuf },
    /// This file is in use.
    Ready { path: PathBuf },
    /// The last request failed; `kept` is the file still in use, if any.
    Failed { path: PathBuf, reason: String, kept: Option<PathBuf> },
}

struct Published<T> {
    current: Option<(PathBuf, Arc<T>)>,
    /// The path the user chose last (persisted by the plugin), loaded or not.
    chosen: Option<PathBuf>,
    status: Option<SlotStatus>,
}

impl<T> Default for Published<T> {
    fn default() -> Self {
        Published { current: None, chosen: None, status: None }
    }
}

struct Shared<T> {
    published: Mutex<Published<T>>,
    /// Numbers requests, so a slow load finishing after a newer request is discarded.
    requests: AtomicU64,
    /// Bumped whenever `current` changes.
    generation: AtomicU64,
    /// Loads started and not yet published or failed.
    in_flight: AtomicUsize,
}

/// Reads a file into the resource, or says why it cannot. Runs on the loader thread.
pub type Loader<T> = Arc<dyn Fn(&Path) -> Result<T, String> + Send + Sync>;

/// The resource chosen by the user. Main thread; hands readers to workers.
pub struct Slot<T> {
    shared: Arc<Shared<T>>,
    load: Loader<T>,
    loaders: Mutex<Vec<JoinHandle<()>>>,
}

impl<T> std::fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot").field("status", &lock(&self.shared.published).status).finish()
    }
}

impl<T: Send + Sync + 'static> Slot<T> {
    pub fn new(load: Loader<T>) -> Self {
        let shared = Arc::new(Shared {
            published: Mutex::default(),
            requests: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        });
        Slot { shared, load, loaders: Mutex::default() }
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
        lock(&self.shared.published).status = Some(SlotStatus::Loading { path: path.clone() });
        let (shared, load) = (self.shared.clone(), self.load.clone());
        self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        let spawned = std::thread::Builder::new().name("rvc-stage-loader".into()).spawn(move || {
            load_and_publish(&shared, request, path, &*load);
            shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        });
        match spawned {
            Ok(handle) => loaders.push(handle),
            Err(error) => {
                self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
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

    pub fn status(&self) -> SlotStatus {
        lock(&self.shared.published).status.clone().unwrap_or(SlotStatus::Empty)
    }

    /// A reader for the worker thread.
    pub fn reader(&self) -> SlotReader<T> {
        SlotReader { shared: self.shared.clone(), current: None, seen: u64::MAX }
    }
}

impl<T> Drop for Slot<T> {
    fn drop(&mut self) {
        let loaders = std::mem::take(&mut *lock(&self.loaders));
        for loader in loaders {
            let _ = loader.join();
        }
    }
}

fn load_and_publish<T>(shared: &Shared<T>, request: u64, path: PathBuf, load: &dyn Fn(&Path) -> Result<T, String>) {
    // A panic in a loader (a library asserting on a bad file) must not leave the slot loading
    // forever: it becomes a failure like any other.
    let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load(&path))).unwrap_or_else(|panic| {
        let message = panic.downcast_ref::<&str>().copied().or(panic.downcast_ref::<String>().map(String::as_str));
        Err(format!("loading it crashed: {}", message.unwrap_or("no message")))
    });
    // A superseded result is dropped here, on the loader thread.
    match loaded {
        Ok(resource) => {
            tracing::info!("RVC Stage loaded {}", path.display());
            release(publish(shared, request, Some((path, Arc::new(resource)))))
        }
        Err(reason) => fail(shared, request, &path, reason),
    }
}

/// Makes `resource` current, unless a newer request was made, and returns the one it replaced
/// (or `resource` itself when superseded), for the caller to drop.
fn publish<T>(shared: &Shared<T>, request: u64, resource: Option<(PathBuf, Arc<T>)>) -> Option<Arc<T>> {
    let mut published = lock(&shared.published);
    if shared.requests.load(Ordering::Acquire) != request {
        return resource.map(|(_, resource)| resource);
    }
    published.status = Some(match &resource {
        Some((path, _)) => SlotStatus::Ready { path: path.clone() },
        None => SlotStatus::Empty,
    });
    let replaced = std::mem::replace(&mut published.current, resource).map(|(_, resource)| resource);
    shared.generation.fetch_add(1, Ordering::AcqRel);
    replaced
}

fn fail<T>(shared: &Shared<T>, request: u64, path: &Path, reason: String) {
    // Where a host shows plugin output (its log, a terminal), the user reads why.
    if reason.contains(&*path.to_string_lossy()) {
        tracing::error!("RVC Stage: {reason}");
    } else {
        tracing::error!("RVC Stage cannot use {}: {reason}", path.display());
    }
    let mut published = lock(&shared.published);
    if shared.requests.load(Ordering::Acquire) != request {
        return;
    }
    let kept = published.current.as_ref().map(|(path, _)| path.clone());
    published.status = Some(SlotStatus::Failed { path: path.to_path_buf(), reason, kept });
}

/// Drops a replaced resource here, once the worker has moved past it (bounded wait).
fn release<T>(replaced: Option<Arc<T>>) {
    let Some(mut resource) = replaced else { return };
    let deadline = Instant::now() + RELEASE_WAIT;
    loop {
        match Arc::try_unwrap(resource) {
            Ok(last) => return drop(last),
            Err(still_shared) => resource = still_shared,
        }
        if Instant::now() > deadline {
            return; // the worker frees it when it lets go
        }
        std::thread::sleep(RELEASE_POLL);
    }
}

/// The worker's view of a slot: the resource it uses, swapped between blocks.
pub struct SlotReader<T> {
    shared: Arc<Shared<T>>,
    current: Option<Arc<T>>,
    seen: u64,
}

impl<T> SlotReader<T> {
    /// Takes up a newly published resource, if any. Worker thread, between blocks. The lock it
    /// may take is only ever held to swap a pointer or copy a status, never while loading.
    pub fn refresh(&mut self) -> bool {
        let generation = self.shared.generation.load(Ordering::Acquire);
        if generation == self.seen {
            return false;
        }
        let published = lock(&self.shared.published);
        self.current = published.current.as_ref().map(|(_, resource)| resource.clone());
        // Read under the lock: it matches `current` exactly.
        self.seen = self.shared.generation.load(Ordering::Acquire);
        true
    }

    /// Waits until no load is in flight, so the next [`refresh`](Self::refresh) sees the outcome
    /// of every request made so far. Offline renders call this before each block: a bounce
    /// right after a project opens must not depend on how fast its files load. Gives up after
    /// [`SETTLE_LIMIT`] (a hung network drive must not hang the host forever).
    pub fn settle(&self) {
        let deadline = Instant::now() + SETTLE_LIMIT;
        while self.shared.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(RELEASE_POLL);
        }
    }

    pub fn get(&self) -> Option<&T> {
        self.current.as_deref()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep using it.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_loader_is_a_failure_and_settles() {
        let slot: Slot<u32> = Slot::new(Arc::new(|_: &Path| panic!("bad file")));
        slot.request(Some(PathBuf::from("/x.bin")));
        let reader = slot.reader();
        let start = Instant::now();
        reader.settle();
        assert!(start.elapsed() < SETTLE_LIMIT, "settled because the load ended, not by giving up");
        match slot.status() {
            SlotStatus::Failed { reason, kept: None, .. } => assert!(reason.contains("crashed: bad file"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn settle_waits_for_the_load_in_flight() {
        let slot: Slot<u32> = Slot::new(Arc::new(|_: &Path| {
            std::thread::sleep(Duration::from_millis(200));
            Ok(7)
        }));
        slot.request(Some(PathBuf::from("/slow.bin")));
        let mut reader = slot.reader();
        reader.settle();
        assert!(reader.refresh());
        assert_eq!(reader.get(), Some(&7));
    }
}
