//! The editor window's own X11 connection, for two things baseview 0.3.7 (under nice-plug-egui
//! 0.5.1) leaves undone. It runs on one thread per plugin instance ("rvc-stage-x11"), started
//! when the editor first opens and ended with the instance (main thread): a thread per opening
//! would make glibc hand the next window thread a fresh allocation arena now and then, and a
//! host that opens the editor often would keep a few more megabytes each time.
//!
//! - **Dropped files** ([`file_drop`]): egui-baseview 0.7 turns baseview's drag events down and
//!   its window type cannot be wrapped, so the editor's window names a window of ours as its
//!   XDND proxy (the protocol's `XdndProxy` property) and this thread answers drag sources.
//! - **The first frame of an embedded window**: baseview draws when the X server's Present
//!   extension says a frame is due. When the host's window is already on screen as the editor
//!   is put into it, baseview asks for its first frame before it asks to hear of frames, misses
//!   the answer and waits for it for ever: the editor stays black (seen with Xorg and Xvfb; the
//!   live app's own window is not affected). If nothing was drawn shortly after the window was
//!   shown, this thread unmaps and maps it — baseview then asks to hear of frames — and asks
//!   for that first frame again, so its answer reaches baseview.
//!
//! No crate offers either for a window another library owns (x11rb is the X protocol itself).

mod file_drop;

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nice_plug_egui::RepaintNotifier;
use x11rb::connection::Connection;
use x11rb::errors::ReplyOrIdError;
use x11rb::protocol::present::ConnectionExt as _;
use x11rb::protocol::xproto::{
    AtomEnum, ClientMessageEvent, ConnectionExt, CreateWindowAux, EventMask, MapState, PropMode, Window, WindowClass,
};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

pub use file_drop::DroppedFiles;

/// The XDND version spoken (the current one; sources fall back to older ones themselves).
const XDND_VERSION: u32 = 5;
/// How long a shown window may go without a frame before it is woken, and how often.
const FIRST_FRAME_WAIT: Duration = Duration::from_millis(400);
const WAKE_ATTEMPTS: u32 = 3;

x11rb::atom_manager! {
    pub(crate) Atoms: AtomsCookie {
        XdndAware,
        XdndProxy,
        XdndEnter,
        XdndPosition,
        XdndStatus,
        XdndLeave,
        XdndDrop,
        XdndFinished,
        XdndSelection,
        XdndTypeList,
        XdndActionCopy,
        TEXT_URI_LIST: b"text/uri-list",
        RVC_STAGE_DROP,
        RVC_STAGE_STOP,
    }
}

/// What the thread and the editor share.
struct Shared {
    drops: Mutex<file_drop::Drops>,
    /// The editor window open now (0: none yet).
    window: AtomicU32,
    /// Counts the embedded windows attached, so the thread sees a new one to watch.
    openings: AtomicU64,
    /// Frames the open window has drawn.
    frames: AtomicU64,
    repaint: RepaintNotifier,
}

impl Shared {
    fn drops(&self) -> std::sync::MutexGuard<'_, file_drop::Drops> {
        self.drops.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A plugin instance's X11 helper: the proxy window and the thread that serves it.
pub struct WindowHelper {
    conn: Arc<RustConnection>,
    atoms: Atoms,
    proxy: Window,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl WindowHelper {
    /// Connects to the X server and starts the thread; `repaint` is asked for a redraw whenever
    /// the editor has something new to show. `None` without an X server.
    pub fn start(repaint: RepaintNotifier) -> Option<WindowHelper> {
        let started = Self::connect(repaint);
        if let Err(error) = &started {
            tracing::warn!("RVC Stage's window cannot take dropped files: {error}");
        }
        started.ok()
    }

    fn connect(repaint: RepaintNotifier) -> Result<WindowHelper, Box<dyn std::error::Error>> {
        let (conn, screen) = x11rb::connect(None)?;
        let root = conn.setup().roots[screen].root;
        let atoms = Atoms::new(&conn)?.reply()?;
        let proxy = conn.generate_id()?;
        conn.create_window(0, proxy, root, -1, -1, 1, 1, 0, WindowClass::INPUT_ONLY, 0, &CreateWindowAux::new())?;
        // The protocol wants the proxy to name itself and to say it speaks XDND.
        mark_as_drop_target(&conn, &atoms, proxy, proxy)?.check()?;
        let conn = Arc::new(conn);
        let shared = Arc::new(Shared {
            drops: Mutex::default(),
            window: AtomicU32::new(0),
            openings: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            repaint,
        });
        let (thread_conn, thread_shared) = (conn.clone(), shared.clone());
        let thread = std::thread::Builder::new().name("rvc-stage-x11".into()).spawn(move || {
            let link = Link { conn: &thread_conn, atoms, root, proxy, shared: &thread_shared };
            if let Err(error) = Helper::new(link).serve() {
                tracing::warn!("RVC Stage's window stopped taking dropped files: {error}");
            }
        })?;
        Ok(WindowHelper { conn, atoms, proxy, shared, thread: Some(thread) })
    }

    /// Takes on the editor's new X11 window `window` (GUI thread, as it opens): drops onto it,
    /// and, if it is `embedded` in a host's window, its first frame (a window of its own, the
    /// live app's, is not affected, and a window manager would take unmapping it as closing
    /// it). Sends only, so the thread alone reads the connection.
    pub fn attach(&self, window: u32, embedded: bool) {
        *self.shared.drops() = file_drop::Drops::default();
        self.shared.frames.store(0, Ordering::Relaxed);
        self.shared.window.store(window, Ordering::Release);
        if embedded {
            self.shared.openings.fetch_add(1, Ordering::Release);
        }
        let marked = mark_as_drop_target(&self.conn, &self.atoms, window, self.proxy).and_then(|_| self.conn.flush());
        if let Err(error) = marked {
            tracing::warn!("RVC Stage's window cannot take dropped files: {error}");
        }
    }

    /// The desktop's scale as baseview will apply it to a new window: `Xft.dpi` / 96, if the
    /// desktop sets it (main thread; one round trip).
    pub fn desktop_scale(&self) -> Option<f64> {
        let resources = x11rb::resource_manager::new_from_default(&*self.conn).ok()?;
        let dpi = resources.get_value::<u32>("Xft.dpi", "").ok()??;
        Some(f64::from(dpi) / 96.0)
    }

    /// The editor drew a frame (GUI thread).
    pub fn frame_drawn(&self) {
        self.shared.frames.fetch_add(1, Ordering::Relaxed);
    }

    /// Where files are being dragged over the window (physical pixels), if they are.
    pub fn hovering(&self) -> Option<(f32, f32)> {
        self.shared.drops().hovering
    }

    /// The drops since the last call.
    pub fn take_drops(&self) -> Vec<DroppedFiles> {
        std::mem::take(&mut self.shared.drops().dropped)
    }
}

impl Drop for WindowHelper {
    /// Wakes the thread with a message only it understands, and waits for it (it answers at
    /// once: it only ever waits for X events).
    fn drop(&mut self) {
        let stop = ClientMessageEvent::new(32, self.proxy, self.atoms.RVC_STAGE_STOP, [0u32; 5]);
        let sent = self.conn.send_event(false, self.proxy, EventMask::NO_EVENT, stop).map(|_| self.conn.flush());
        if let (Ok(Ok(())), Some(thread)) = (sent, self.thread.take()) {
            let _ = thread.join();
        }
    }
}

/// Sets `window`'s XDND properties: it speaks XDND, through `proxy`.
fn mark_as_drop_target<'c>(
    conn: &'c RustConnection,
    atoms: &Atoms,
    window: Window,
    proxy: Window,
) -> Result<x11rb::cookie::VoidCookie<'c, RustConnection>, x11rb::errors::ConnectionError> {
    conn.change_property32(PropMode::REPLACE, window, atoms.XdndAware, AtomEnum::ATOM, &[XDND_VERSION])?;
    conn.change_property32(PropMode::REPLACE, window, atoms.XdndProxy, AtomEnum::WINDOW, &[proxy])
}

/// What the thread's parts use: the connection, the windows, what they share with the editor.
struct Link<'a> {
    conn: &'a RustConnection,
    atoms: Atoms,
    root: Window,
    proxy: Window,
    shared: &'a Shared,
}

impl Link<'_> {
    /// The editor window open now.
    fn window(&self) -> Window {
        self.shared.window.load(Ordering::Acquire)
    }
}

/// The window being watched for its first frame.
struct FirstFrame {
    window: Window,
    since: Instant,
    wakes: u32,
}

/// The thread's state.
struct Helper<'a> {
    link: Link<'a>,
    drag: file_drop::Drag,
    openings: u64,
    first_frame: Option<FirstFrame>,
}

impl<'a> Helper<'a> {
    fn new(link: Link<'a>) -> Self {
        Helper { link, drag: file_drop::Drag::default(), openings: 0, first_frame: None }
    }

    /// Serves the window until told to stop. An X error (a window gone mid-drag, a source that
    /// vanished) ends what it interrupted only; a lost connection ends the thread.
    fn serve(&mut self) -> Result<(), ReplyOrIdError> {
        loop {
            while let Some(event) = self.link.conn.poll_for_event()? {
                if matches!(&event, Event::ClientMessage(m) if m.type_ == self.link.atoms.RVC_STAGE_STOP) {
                    return Ok(());
                }
                let handled = self.drag.on_event(&self.link, &event);
                self.settle(handled)?;
            }
            let woken = self.wake_first_frame();
            if woken.is_err() {
                // The window went before it drew (closed at once): nothing left to wake.
                self.first_frame = None;
            }
            self.settle(woken.map(|()| false))?;
            // Bounded: another thread's request may have read our next event off the socket.
            let timeout = if self.first_frame.is_some() { 100 } else { 1000 };
            let mut socket = libc::pollfd { fd: self.link.conn.stream().as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd for the duration of the call.
            unsafe { libc::poll(&mut socket, 1, timeout) };
        }
    }

    /// Asks for a redraw when something changed; an X error ends the drag it interrupted.
    fn settle(&mut self, handled: Result<bool, ReplyOrIdError>) -> Result<(), ReplyOrIdError> {
        match handled {
            Ok(false) => Ok(()),
            Ok(true) => {
                self.link.shared.repaint.request_repaint();
                Ok(())
            }
            Err(ReplyOrIdError::X11Error(error)) => {
                tracing::debug!("RVC Stage's window: X error {error:?}");
                self.drag.end(&self.link);
                self.link.shared.repaint.request_repaint();
                Ok(())
            }
            Err(fatal) => Err(fatal),
        }
    }

    /// Wakes an embedded window that has not drawn since it was shown (see the module doc).
    fn wake_first_frame(&mut self) -> Result<(), ReplyOrIdError> {
        let openings = self.link.shared.openings.load(Ordering::Acquire);
        if openings != self.openings {
            self.openings = openings;
            self.first_frame = Some(FirstFrame { window: self.link.window(), since: Instant::now(), wakes: 0 });
        }
        let Some(watch) = &mut self.first_frame else { return Ok(()) };
        if self.link.shared.frames.load(Ordering::Relaxed) > 0 {
            self.first_frame = None;
            return Ok(());
        }
        if watch.wakes == WAKE_ATTEMPTS {
            tracing::warn!("RVC Stage's window has drawn nothing; closing and opening it again may help");
            self.first_frame = None;
            return Ok(());
        }
        if watch.since.elapsed() < FIRST_FRAME_WAIT {
            return Ok(());
        }
        let conn = self.link.conn;
        if conn.get_window_attributes(watch.window)?.reply()?.map_state != MapState::VIEWABLE {
            // Not shown yet: when it is, baseview sees it become visible and asks for frames.
            watch.since = Instant::now();
            return Ok(());
        }
        conn.unmap_window(watch.window)?;
        conn.map_window(watch.window)?;
        // The round trip lets baseview see the map before the frame is asked for again.
        conn.get_input_focus()?.reply()?;
        std::thread::sleep(Duration::from_millis(50));
        // Serial 0: the first request, the one whose answer baseview is waiting for.
        conn.present_notify_msc(watch.window, 0, 0, 1, 0)?;
        conn.flush()?;
        watch.wakes += 1;
        watch.since = Instant::now();
        Ok(())
    }
}
