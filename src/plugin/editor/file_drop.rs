//! Files dropped onto the editor's window, received over X11's drag-and-drop protocol (XDND 5).
//!
//! baseview (under nice-plug-egui 0.5.1) takes part in XDND, but egui-baseview 0.7 turns its
//! drag events down and its window type cannot be wrapped, and no crate offers an XDND target
//! for a window another library owns. So the editor's window names a window of our own as its
//! *XDND proxy* (the protocol's `XdndProxy` property): drag sources then talk to that window,
//! over an X connection and a thread of our own ("rvc-stage-drop"). The thread answers the
//! source, fetches the `text/uri-list`, works out from each file what it is, and hands the
//! files to the editor with where they were dropped; the editor (GUI thread) puts them on the
//! row they were dropped onto, or on the row their kind belongs to.
//!
//! One thread per plugin instance, started when its editor first opens and ended with the
//! instance (main thread), serving whichever window is open: a thread per opening would make
//! glibc hand the next window thread a fresh allocation arena now and then, and a host that
//! opens the editor often would keep a few more megabytes each time.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use nice_plug_egui::RepaintNotifier;
use percent_encoding::percent_decode_str;
use x11rb::connection::Connection;
use x11rb::errors::ReplyOrIdError;
use x11rb::protocol::xproto::{
    AtomEnum, ClientMessageEvent, ConnectionExt, CreateWindowAux, EventMask, PropMode, Window, WindowClass,
};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

use super::view::FileRole;
use crate::features::onnx_wire::Graph;

/// The XDND version spoken (the current one; sources fall back to older ones themselves).
const XDND_VERSION: u32 = 5;

x11rb::atom_manager! {
    Atoms: AtomsCookie {
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

/// Files dropped at one place, each with the role its contents say it has (if any).
#[derive(Debug, Clone, PartialEq)]
pub struct DroppedFiles {
    /// Where, in the window's physical pixels.
    pub at: (f32, f32),
    pub files: Vec<(PathBuf, Option<FileRole>)>,
}

/// What the drop thread hands to the editor.
#[derive(Default)]
struct Drops {
    /// Where a drag carrying files is over the window (physical pixels).
    hovering: Option<(f32, f32)>,
    dropped: Vec<DroppedFiles>,
}

/// What the drop thread and the editor share.
struct Shared {
    drops: Mutex<Drops>,
    /// The editor window drops go to (0: none open).
    window: AtomicU32,
    repaint: RepaintNotifier,
}

impl Shared {
    fn drops(&self) -> std::sync::MutexGuard<'_, Drops> {
        self.drops.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A plugin instance's drop target: the proxy window and the thread that serves it.
pub struct DropTarget {
    conn: Arc<RustConnection>,
    atoms: Atoms,
    proxy: Window,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl DropTarget {
    /// Connects to the X server and starts the drop thread; `repaint` is asked for a redraw
    /// whenever the editor has something new to show. `None` without an X server.
    pub fn start(repaint: RepaintNotifier) -> Option<DropTarget> {
        let started = Self::connect(repaint);
        if let Err(error) = &started {
            tracing::warn!("RVC Stage's window cannot take dropped files: {error}");
        }
        started.ok()
    }

    fn connect(repaint: RepaintNotifier) -> Result<DropTarget, Box<dyn std::error::Error>> {
        let (conn, screen) = x11rb::connect(None)?;
        let root = conn.setup().roots[screen].root;
        let atoms = Atoms::new(&conn)?.reply()?;
        let proxy = conn.generate_id()?;
        conn.create_window(0, proxy, root, -1, -1, 1, 1, 0, WindowClass::INPUT_ONLY, 0, &CreateWindowAux::new())?;
        // The protocol wants the proxy to name itself and to say it speaks XDND.
        mark_as_drop_target(&conn, &atoms, proxy, proxy)?.check()?;
        let conn = Arc::new(conn);
        let shared = Arc::new(Shared { drops: Mutex::default(), window: AtomicU32::new(0), repaint });
        let (thread_conn, thread_shared) = (conn.clone(), shared.clone());
        let thread = std::thread::Builder::new().name("rvc-stage-drop".into()).spawn(move || {
            let mut drag = Drag { conn: &thread_conn, atoms, root, proxy, shared: &thread_shared, session: None };
            if let Err(error) = drag.serve() {
                tracing::warn!("RVC Stage's window stopped taking dropped files: {error}");
            }
        })?;
        Ok(DropTarget { conn, atoms, proxy, shared, thread: Some(thread) })
    }

    /// Makes the editor's new X11 window `window` take drops (GUI thread, as it opens).
    pub fn attach(&self, window: u32) {
        *self.shared.drops() = Drops::default();
        self.shared.window.store(window, Ordering::Release);
        let marked = mark_as_drop_target(&self.conn, &self.atoms, window, self.proxy)
            .map_err(ReplyOrIdError::from)
            .and_then(|cookie| Ok(cookie.check()?));
        if let Err(error) = marked {
            tracing::warn!("RVC Stage's window cannot take dropped files: {error}");
        }
    }

    /// Where files are being dragged over the window, if they are.
    pub fn hovering(&self) -> Option<(f32, f32)> {
        self.shared.drops().hovering
    }

    /// The drops since the last call.
    pub fn take(&self) -> Vec<DroppedFiles> {
        std::mem::take(&mut self.shared.drops().dropped)
    }
}

impl Drop for DropTarget {
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

/// One drag over the window, from its source's first message to its drop.
struct Session {
    source: Window,
    /// Whether it carries files (`text/uri-list`).
    files: bool,
    /// The last position, in the window's pixels.
    at: (f32, f32),
}

struct Drag<'a> {
    conn: &'a RustConnection,
    atoms: Atoms,
    root: Window,
    proxy: Window,
    shared: &'a Shared,
    session: Option<Session>,
}

impl Drag<'_> {
    /// Answers drag sources until told to stop. An X error (a window gone mid-drag, a source
    /// that vanished) ends that drag only; a lost connection ends the thread.
    fn serve(&mut self) -> Result<(), ReplyOrIdError> {
        loop {
            let handled = match self.conn.wait_for_event()? {
                Event::ClientMessage(message) if message.type_ == self.atoms.RVC_STAGE_STOP => return Ok(()),
                Event::ClientMessage(message) => self.on_message(&message),
                Event::SelectionNotify(event) if event.requestor == self.proxy => self.on_data(event.property),
                _ => Ok(false),
            };
            match handled {
                Ok(changed) => {
                    if changed {
                        self.shared.repaint.request_repaint();
                    }
                }
                Err(ReplyOrIdError::X11Error(error)) => {
                    tracing::debug!("A drag onto RVC Stage's window ended: {error:?}");
                    self.session = None;
                    self.shared.drops().hovering = None;
                    self.shared.repaint.request_repaint();
                }
                Err(fatal) => return Err(fatal),
            }
        }
    }

    /// The editor window open now.
    fn window(&self) -> Window {
        self.shared.window.load(Ordering::Acquire)
    }

    /// Answers one XDND message; returns whether the editor has something new to show.
    fn on_message(&mut self, message: &ClientMessageEvent) -> Result<bool, ReplyOrIdError> {
        // l[0] is the source; what l[1]..l[4] mean depends on the message.
        let [source, flags, a, b, c] = message.data.as_data32();
        let atoms = self.atoms;
        if message.type_ == atoms.XdndEnter {
            let types = if flags & 1 == 1 { self.type_list(source)? } else { vec![a, b, c] };
            let files = types.contains(&atoms.TEXT_URI_LIST);
            self.session = Some(Session { source, files, at: (0.0, 0.0) });
            Ok(false)
        } else if message.type_ == atoms.XdndPosition {
            let (x, y) = ((a >> 16) as i16, a as i16);
            let inside = self.conn.translate_coordinates(self.root, self.window(), x, y)?.reply()?;
            let at = (f32::from(inside.dst_x), f32::from(inside.dst_y));
            let Some(session) = self.session.as_mut().filter(|s| s.source == source) else {
                return self.reply(source, atoms.XdndStatus, [0, 0, 0, 0]).map(|_| false);
            };
            session.at = at;
            let files = session.files;
            // Accept (bit 0) and keep the position messages coming (bit 1).
            let status = if files { [3, 0, 0, atoms.XdndActionCopy] } else { [2, 0, 0, 0] };
            self.reply(source, atoms.XdndStatus, status)?;
            if files {
                self.shared.drops().hovering = Some(at);
            }
            Ok(files)
        } else if message.type_ == atoms.XdndLeave {
            self.session = None;
            Ok(self.shared.drops().hovering.take().is_some())
        } else if message.type_ == atoms.XdndDrop {
            match &self.session {
                Some(session) if session.source == source && session.files => {
                    let time = a;
                    let (selection, wanted) = (atoms.XdndSelection, atoms.TEXT_URI_LIST);
                    self.conn.convert_selection(self.proxy, selection, wanted, atoms.RVC_STAGE_DROP, time)?;
                    self.conn.flush()?;
                    Ok(false)
                }
                _ => {
                    self.reply(source, atoms.XdndFinished, [0, 0, 0, 0])?;
                    self.session = None;
                    Ok(self.shared.drops().hovering.take().is_some())
                }
            }
        } else {
            Ok(false)
        }
    }

    /// The dropped data arrived (or `property` is NONE: the source could not give it).
    fn on_data(&mut self, property: u32) -> Result<bool, ReplyOrIdError> {
        let Some(session) = self.session.take() else { return Ok(false) };
        let list = if property == u32::from(AtomEnum::NONE) {
            Vec::new()
        } else {
            let reply = self.conn.get_property(true, self.proxy, property, AtomEnum::ANY, 0, 1 << 20)?.reply()?;
            file_paths(&String::from_utf8_lossy(&reply.value))
        };
        let done = if list.is_empty() { [0, 0, 0, 0] } else { [1, self.atoms.XdndActionCopy, 0, 0] };
        self.reply(session.source, self.atoms.XdndFinished, done)?;
        self.shared.drops().hovering = None;
        if !list.is_empty() {
            // Before taking the lock: working out what a file is reads it.
            let files = list.into_iter().map(|path| (path.clone(), guess_role(&path))).collect();
            self.shared.drops().dropped.push(DroppedFiles { at: session.at, files });
        }
        Ok(true)
    }

    /// The source's full list of offered types (when it offers more than three).
    fn type_list(&self, source: Window) -> Result<Vec<u32>, ReplyOrIdError> {
        let reply = self.conn.get_property(false, source, self.atoms.XdndTypeList, AtomEnum::ATOM, 0, 1024)?.reply()?;
        Ok(reply.value32().map(Iterator::collect).unwrap_or_default())
    }

    /// Sends `kind` to the drag's source: our window first, then `data`.
    fn reply(&self, source: Window, kind: u32, data: [u32; 4]) -> Result<(), ReplyOrIdError> {
        let [a, b, c, d] = data;
        let message = ClientMessageEvent::new(32, source, kind, [self.window(), a, b, c, d]);
        self.conn.send_event(false, source, EventMask::NO_EVENT, message)?;
        self.conn.flush()?;
        Ok(())
    }
}

/// The local files a `text/uri-list` names (`file:` URIs on this host; others are skipped).
pub fn file_paths(uri_list: &str) -> Vec<PathBuf> {
    let local = |uri: &str| {
        let rest = uri.strip_prefix("file://")?;
        // An empty host or `localhost` is this machine; the path starts at the next slash.
        let path = rest.strip_prefix("localhost").unwrap_or(rest);
        path.starts_with('/').then(|| PathBuf::from(percent_decode_str(path).decode_utf8_lossy().into_owned()))
    };
    uri_list
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(local)
        .collect()
}

/// Which file of a voice `path` is, from its contents: an `.index` is the index; an ONNX model
/// is told by the inputs RVC's models declare — `waveform` + `threshold` or one log-mel
/// `[1, 128, frames]` is an RMVPE pitch model, three or more inputs a synthesizer, one audio
/// input a content model. `None` for anything else (the editor says so).
pub fn guess_role(path: &Path) -> Option<FileRole> {
    match path.extension()?.to_str()? {
        "index" => Some(FileRole::Index),
        "onnx" => onnx_role(&Graph::parse(&std::fs::read(path).ok()?)?),
        _ => None,
    }
}

fn onnx_role(graph: &Graph) -> Option<FileRole> {
    let named = |name: &str| graph.inputs.iter().any(|input| input == name);
    if named("waveform") && named("threshold") {
        return Some(FileRole::PitchModel);
    }
    match graph.input_dims.as_slice() {
        [Some(dims)] if dims.len() == 3 && dims[1] == Some(128) => Some(FileRole::PitchModel),
        [_] => Some(FileRole::ContentModel),
        inputs if inputs.len() >= 3 => Some(FileRole::Synthesizer),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_lists_give_local_paths_decoded() {
        let list = "# dragged from a file manager\r\nfile:///home/ana/My%20Voice/v2%C3%A9.onnx\r\n\
                    file://localhost/tmp/a.index\r\nhttps://example.com/b.onnx\r\nfile://otherhost/c.onnx\r\n\r\n";
        assert_eq!(file_paths(list), [PathBuf::from("/home/ana/My Voice/v2é.onnx"), PathBuf::from("/tmp/a.index")]);
        assert!(file_paths("").is_empty());
    }

    #[test]
    fn each_kind_of_voice_file_is_told_from_its_contents() {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models");
        let cases = [
            ("hubert-tiny-256.onnx", Some(FileRole::ContentModel)),
            ("hubert-tiny-768.onnx", Some(FileRole::ContentModel)),
            ("rmvpe-tiny-rvc.onnx", Some(FileRole::PitchModel)),
            ("rmvpe-tiny-wokada.onnx", Some(FileRole::PitchModel)),
            ("synth-tiny-rvc-768.onnx", Some(FileRole::Synthesizer)),
            ("synth-tiny-wokada-768.onnx", Some(FileRole::Synthesizer)),
            ("synth-tiny-wokada-nof0-768.onnx", Some(FileRole::Synthesizer)),
            ("demo-voice-768.onnx", Some(FileRole::Synthesizer)),
        ];
        for (name, role) in cases {
            assert_eq!(guess_role(&models.join(name)), role, "{name}");
        }
        // By name alone: an index is read by its own loader, which explains a bad one.
        assert_eq!(guess_role(Path::new("/nowhere/voice.index")), Some(FileRole::Index));
        // Not a model, or not readable as one.
        assert_eq!(guess_role(&models.join("../make_synth.py")), None);
        assert_eq!(guess_role(Path::new("/nowhere/missing.onnx")), None);
    }
}
