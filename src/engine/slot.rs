//! A file-backed resource (a feature index, a content model) that can change while audio runs.
//! The [`Slot`] is shared by the main thread (which asks for a file), a loader thread (which
//! reads, checks and loads it, so the main thread never waits on a large file) and the worker's
//! [`SlotReader`] (which picks the new resource up between blocks). A failed load leaves the
//! previous resource in place and says why.
//!
//! Nobody waits for anybody here: the main thread never joins a loader (a load still running
//! when the plugin is deactivated or dropped is abandoned and cleans up after itself on its own
//! thread), the loader never waits for the worker to let go of a replaced resource (the last
//! holder frees it), and the worker's offline wait for loads in flight ends at its deadline or
//! when the worker is stopped. Resources are freed by whichever of the loader, the worker or a
//! short-lived release thread drops them last — never the audio thread, which touches none of
//! this. Loaded files are shared by every slot of the process that asks for the same file with
//! the same settings ([`SharedFiles`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use super::FileWait;

const WAIT_POLL: Duration = Duration::from_millis(2);

/// What the slot is doing, for display and logs.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum SlotStatus {
    /// Nothing chosen: the step that uses it is off.
    #[default]
    Empty,
    /// A file is being loaded; the previous resource (if any) stays in use meanwhile.
    Loading { path: PathBuf },
    /// This file is in use; `about` says what it is ("RVC v2 48 kHz, f0").
    Ready { path: PathBuf, about: String },
    /// The last request failed; `kept` is the file still in use, if any.
    Failed { path: PathBuf, reason: String, kept: Option<PathBuf> },
}

/// A read-only view of a slot's status, for whoever displays it (the voice pipeline's status
/// board, an editor). Any thread; takes a lock held only to copy a status.
#[derive(Debug, Clone, Default)]
pub struct SlotWatch(Arc<Mutex<SlotStatus>>);

impl SlotWatch {
    pub fn status(&self) -> SlotStatus {
        lock(&self.0).clone()
    }
}

struct Published<T> {
    current: Option<(PathBuf, Arc<T>)>,
    /// The path the user chose last (persisted by the plugin), loaded or not.
    chosen: Option<PathBuf>,
}

struct Shared<T> {
    published: Mutex<Published<T>>,
    status: SlotWatch,
    /// Numbers requests, so a slow load finishing after a newer request is discarded.
    requests: AtomicU64,
    /// Bumped whenever `current` changes.
    generation: AtomicU64,
    /// The newest request whose outcome is known (published, failed, or superseded by a newer
    /// one that is known): loads still running for older requests no longer matter.
    resolved: AtomicU64,
}

impl<T> Shared<T> {
    /// Whether the outcome of the newest request is known.
    fn is_resolved(&self) -> bool {
        self.resolved.load(Ordering::Acquire) >= self.requests.load(Ordering::Acquire)
    }
}

/// Reads a file into the resource, or says why it cannot. Runs on a loader thread.
pub type Loader<T> = Arc<dyn Fn(&Path) -> Result<Arc<T>, String> + Send + Sync>;

/// What a loaded resource is, in a few words, for displays. Runs on the loader thread.
pub type Describe<T> = fn(&T) -> String;

/// The resource chosen by the user. Main thread; hands readers to workers.
pub struct Slot<T: Send + Sync + 'static> {
    shared: Arc<Shared<T>>,
    load: Loader<T>,
    describe: Describe<T>,
}

impl<T: Send + Sync + 'static> std::fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot").field("status", &self.shared.status.status()).finish()
    }
}

impl<T: Send + Sync + 'static> Slot<T> {
    pub fn new(load: Loader<T>) -> Self {
        let shared = Arc::new(Shared {
            published: Mutex::new(Published { current: None, chosen: None }),
            status: SlotWatch::default(),
            requests: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            resolved: AtomicU64::new(0),
        });
        Slot { shared, load, describe: |_| String::new() }
    }

    /// The slot with `describe` saying what its loaded files are.
    pub fn describing(mut self, describe: Describe<T>) -> Self {
        self.describe = describe;
        self
    }

    /// Starts loading `path` in the background (or turns the step off for `None`). Returns at
    /// once — it runs on the host's main thread, e.g. while a project loads — and
    /// [`status`](Self::status) tells how it went. The last request wins: a slower, older
    /// load that finishes later is discarded.
    pub fn request(&self, path: Option<PathBuf>) {
        let request = self.shared.requests.fetch_add(1, Ordering::AcqRel) + 1;
        lock(&self.shared.published).chosen = path.clone();
        let Some(path) = path else {
            if let Some(replaced) = publish(&self.shared, request, None, String::new()) {
                release_off_thread(replaced);
            }
            self.shared.resolved.fetch_max(request, Ordering::AcqRel);
            return;
        };
        *lock(&self.shared.status.0) = SlotStatus::Loading { path: path.clone() };
        let (shared, load, describe) = (self.shared.clone(), self.load.clone(), self.describe);
        let spawned = spawn_detached("rvc-stage-loader", move || {
            load_and_publish(&shared, request, path, &*load, describe);
            shared.resolved.fetch_max(request, Ordering::AcqRel);
        });
        if let Err(error) = spawned {
            fail(&self.shared, request, Path::new(""), format!("could not start the loader thread: {error}"));
            self.shared.resolved.fetch_max(request, Ordering::AcqRel);
        }
    }

    /// Blocks until the outcome of the last request is known. For tools and tests.
    pub fn wait(&self) {
        while !self.shared.is_resolved() {
            std::thread::sleep(WAIT_POLL);
        }
    }

    /// The path last asked for, loaded or not (what the plugin saves in its state).
    pub fn chosen(&self) -> Option<PathBuf> {
        lock(&self.shared.published).chosen.clone()
    }

    pub fn status(&self) -> SlotStatus {
        self.shared.status.status()
    }

    /// A reader for the worker thread.
    pub fn reader(&self) -> SlotReader<T> {
        SlotReader { shared: self.shared.clone(), current: None, seen: u64::MAX, gave_up_on: 0 }
    }
}

impl<T: Send + Sync + 'static> Drop for Slot<T> {
    /// Returns at once, on the main thread: a load in flight finishes (and is dropped) on its
    /// own thread, and the resource in use is freed on a release thread if this was its last
    /// holder.
    fn drop(&mut self) {
        // A load finishing later must not publish into a slot nobody reads.
        self.shared.requests.fetch_add(1, Ordering::AcqRel);
        if let Some((_, current)) = lock(&self.shared.published).current.take() {
            release_off_thread(current);
        }
    }
}

fn load_and_publish<T>(
    shared: &Shared<T>,
    request: u64,
    path: PathBuf,
    load: &dyn Fn(&Path) -> Result<Arc<T>, String>,
    describe: Describe<T>,
) {
    // A panic in a loader (a library asserting on a bad file) must not leave the slot loading
    // forever: it becomes a failure like any other.
    let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load(&path)))
        .unwrap_or_else(|panic| Err(format!("loading it crashed: {}", super::worker::panic_message(&*panic))));
    // A superseded or replaced resource is dropped here, on the loader thread, unless the
    // worker still holds it (it frees it then, when it lets go).
    match loaded {
        Ok(resource) => {
            let about = describe(&resource);
            tracing::info!("RVC Stage loaded {} ({about})", path.display());
            drop(publish(shared, request, Some((path, resource)), about))
        }
        Err(reason) => fail(shared, request, &path, reason),
    }
}

/// Makes `resource` current, unless a newer request was made, and returns the one it replaced
/// (or `resource` itself when superseded), for the caller to drop.
fn publish<T>(shared: &Shared<T>, request: u64, resource: Option<(PathBuf, Arc<T>)>, about: String) -> Option<Arc<T>> {
    let mut published = lock(&shared.published);
    if shared.requests.load(Ordering::Acquire) != request {
        return resource.map(|(_, resource)| resource);
    }
    *lock(&shared.status.0) = match &resource {
        Some((path, _)) => SlotStatus::Ready { path: path.clone(), about },
        None => SlotStatus::Empty,
    };
    let replaced = std::mem::replace(&mut published.current, resource).map(|(_, resource)| resource);
    shared.generation.fetch_add(1, Ordering::AcqRel);
    replaced
}

fn fail<T>(shared: &Shared<T>, request: u64, path: &Path, reason: String) {
    let published = lock(&shared.published);
    if shared.requests.load(Ordering::Acquire) != request {
        return; // superseded: a newer request decides what the user sees
    }
    // Where a host shows plugin output (its log, a terminal), the user reads why.
    if reason.contains(&*path.to_string_lossy()) {
        tracing::error!("RVC Stage: {reason}");
    } else {
        tracing::error!("RVC Stage cannot use {}: {reason}", path.display());
    }
    let kept = published.current.as_ref().map(|(path, _)| path.clone());
    *lock(&shared.status.0) = SlotStatus::Failed { path: path.to_path_buf(), reason, kept };
}

/// The worker's view of a slot: the resource it uses, swapped between blocks.
pub struct SlotReader<T> {
    shared: Arc<Shared<T>>,
    current: Option<Arc<T>>,
    seen: u64,
    /// The newest request an offline wait already gave up on: not waited for again, so a load
    /// that hangs (a dead network drive) costs one deadline, not one per block.
    gave_up_on: u64,
}

impl<T> SlotReader<T> {
    /// Takes up a newly published resource, if any. Worker thread, between blocks. The lock it
    /// may take is only ever held to swap a pointer or copy a status, never while loading. The
    /// resource it lets go of is freed here if it was the last holder (off the audio thread).
    pub fn refresh(&mut self) -> bool {
        let generation = self.shared.generation.load(Ordering::Acquire);
        if generation == self.seen {
            return false;
        }
        let published = lock(&self.shared.published);
        let replaced =
            std::mem::replace(&mut self.current, published.current.as_ref().map(|(_, resource)| resource.clone()));
        // Read under the lock: it matches `current` exactly.
        self.seen = self.shared.generation.load(Ordering::Acquire);
        drop(published);
        drop(replaced);
        true
    }

    /// Waits until the outcome of the newest request is known, so the next
    /// [`refresh`](Self::refresh) sees it (older loads still running do not matter). Offline
    /// renders call this before each block: a bounce right after a project opens must not
    /// depend on how fast its files load. Returns when `wait` is over (its deadline, shared
    /// with the other files, or the worker's stop); a load given up on is not waited for again.
    pub fn settle(&mut self, wait: &FileWait) {
        let newest = self.shared.requests.load(Ordering::Acquire);
        if newest <= self.gave_up_on {
            return;
        }
        while !self.shared.is_resolved() {
            if wait.is_over() {
                self.gave_up_on = newest;
                return;
            }
            std::thread::sleep(WAIT_POLL);
        }
    }

    pub fn get(&self) -> Option<&T> {
        self.current.as_deref()
    }

    /// The slot's status (for displays).
    pub fn watch(&self) -> SlotWatch {
        self.shared.status.clone()
    }
}

/// Files loaded once per process and shared by every slot that asks for the same file (same
/// device, inode, size and modification time) with the same load settings: four instances of
/// the plugin with one voice hold one copy of its model and index. An entry lives as long as
/// some slot or worker holds the resource; the last holder frees it. Loader threads only.
pub struct SharedFiles<T> {
    entries: Mutex<HashMap<String, Arc<Mutex<Weak<T>>>>>,
}

impl<T> Default for SharedFiles<T> {
    fn default() -> Self {
        Self { entries: Mutex::default() }
    }
}

impl<T> SharedFiles<T> {
    /// The resource for `path` loaded with `settings` (a description of everything that changes
    /// what `load` makes): the one already in memory, or a new one from `load`. A second loader
    /// of the same file waits for the first instead of loading it twice.
    pub fn get_or_load(
        &self,
        path: &Path,
        settings: &str,
        load: impl FnOnce() -> Result<T, String>,
    ) -> Result<Arc<T>, String> {
        let Some(identity) = file_identity(path) else {
            return load().map(Arc::new); // unreadable: `load` says why
        };
        let key = format!("{identity} {settings}");
        let entry = {
            let mut entries = lock(&self.entries);
            entries.retain(|_, entry| Arc::strong_count(entry) > 1 || lock(entry).strong_count() > 0);
            entries.entry(key).or_default().clone()
        };
        let mut cached = lock(&entry);
        if let Some(resource) = cached.upgrade() {
            return Ok(resource);
        }
        let resource = Arc::new(load()?);
        *cached = Arc::downgrade(&resource);
        Ok(resource)
    }
}

/// Device, inode, size and modification time: a file replaced or rewritten in place is a new
/// file.
fn file_identity(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(format!("{}:{}:{}:{}.{}", meta.dev(), meta.ino(), meta.len(), meta.mtime(), meta.mtime_nsec()))
}

/// Starts a thread nobody joins: loads and releases must never hold up the host's main
/// thread. The library is pinned first, so a host unloading it cannot pull its code from
/// under a thread still running.
fn spawn_detached(name: &str, work: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    static PIN: std::sync::Once = std::sync::Once::new();
    PIN.call_once(pin_this_library);
    std::thread::Builder::new().name(name.into()).spawn(work)?;
    Ok(())
}

/// Makes the library that holds this code stay loaded until the process ends, whatever the
/// host's `dlclose` calls (a host closing the last instance may unload a plugin's library while
/// a detached load still runs in it). The alternative, waiting in a library destructor, would
/// run under the loader's lock and could hang the host.
fn pin_this_library() {
    // SAFETY: dladdr only reads the loader's tables; dlopen with RTLD_NOLOAD never loads
    // anything, it takes one more reference on the already loaded object (marked never to be
    // unloaded), whose handle is deliberately never closed.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(pin_this_library as *const () as *const libc::c_void, &mut info) != 0
            && !info.dli_fname.is_null()
        {
            libc::dlopen(info.dli_fname, libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE);
        }
    }
}

/// Drops `resource` on a release thread if this is its last holder (freeing a model takes
/// time the main thread does not have), else just lets go of it.
fn release_off_thread<T: Send + Sync + 'static>(resource: Arc<T>) {
    if Arc::strong_count(&resource) > 1 {
        return;
    }
    // If the thread cannot start, the closure (and the resource) is dropped here instead.
    let _ = spawn_detached("rvc-stage-release", move || drop(resource));
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep using it.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::time::Instant;

    use super::*;

    fn forever(stop: &AtomicBool) -> FileWait<'_> {
        FileWait::new(Instant::now() + Duration::from_secs(3600), stop)
    }

    #[test]
    fn a_panicking_loader_is_a_failure_and_settles() {
        let slot: Slot<u32> = Slot::new(Arc::new(|_: &Path| panic!("bad file")));
        slot.request(Some(PathBuf::from("/x.bin")));
        let stop = AtomicBool::new(false);
        slot.reader().settle(&forever(&stop));
        match slot.status() {
            SlotStatus::Failed { reason, kept: None, .. } => assert!(reason.contains("crashed: bad file"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn settle_waits_for_the_load_in_flight() {
        let slot: Slot<u32> = Slot::new(Arc::new(|_: &Path| {
            std::thread::sleep(Duration::from_millis(200));
            Ok(Arc::new(7))
        }));
        slot.request(Some(PathBuf::from("/slow.bin")));
        let mut reader = slot.reader();
        let stop = AtomicBool::new(false);
        reader.settle(&forever(&stop));
        assert!(reader.refresh());
        assert_eq!(reader.get(), Some(&7));
    }

    /// A loader that blocks until the test opens `gate`.
    fn gated(gate: Arc<Mutex<()>>) -> Loader<u32> {
        Arc::new(move |_: &Path| {
            drop(lock(&gate));
            Ok(Arc::new(1))
        })
    }

    #[test]
    fn settle_ends_at_its_deadline_or_stop_and_does_not_wait_again_for_that_load() {
        let gate = Arc::new(Mutex::new(()));
        let closed = lock(&gate);
        let slot = Slot::new(gated(gate.clone()));
        slot.request(Some(PathBuf::from("/hung.bin")));
        let mut reader = slot.reader();
        let stop = AtomicBool::new(true);
        let start = Instant::now();
        reader.settle(&forever(&stop));
        let not_stopped = AtomicBool::new(false);
        reader.settle(&forever(&not_stopped));
        assert!(start.elapsed() < Duration::from_secs(5), "stopped, then given up on");
        drop(closed);
        slot.wait();
        assert!(reader.refresh());
    }

    #[test]
    fn dropping_a_slot_does_not_wait_for_its_load_and_the_load_ends_when_released() {
        let gate = Arc::new(Mutex::new(()));
        let closed = lock(&gate);
        let loader = gated(gate.clone());
        let slot = Slot::new(loader.clone());
        slot.request(Some(PathBuf::from("/slow.bin")));
        drop(slot); // would block here if it joined the loader
        assert_eq!(Arc::strong_count(&loader), 2, "the loader thread still runs, blocked");
        drop(closed);
        // The loader thread holds the other reference until it ends.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&loader) > 1 && Instant::now() < deadline {
            std::thread::sleep(WAIT_POLL);
        }
        assert_eq!(Arc::strong_count(&loader), 1, "the abandoned load finished and let go");
    }

    #[test]
    fn shared_files_load_each_file_once_while_someone_holds_it() {
        let dir = std::env::temp_dir().join(format!("rvc-stage-shared-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.bin");
        std::fs::write(&path, b"a").unwrap();
        let files = SharedFiles::<u32>::default();
        let loads = AtomicUsize::new(0);
        let load = || {
            loads.fetch_add(1, Ordering::Relaxed);
            Ok(5)
        };
        let first = files.get_or_load(&path, "x", load).unwrap();
        let second = files.get_or_load(&path, "x", load).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        let other_settings = files.get_or_load(&path, "y", load).unwrap();
        assert!(!Arc::ptr_eq(&first, &other_settings));
        assert_eq!(loads.load(Ordering::Relaxed), 2);
        drop((first, second));
        files.get_or_load(&path, "x", load).unwrap();
        assert_eq!(loads.load(Ordering::Relaxed), 3, "freed with its last holder, loaded again");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
