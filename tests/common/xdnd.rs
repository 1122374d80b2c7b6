//! A drag-and-drop *source*, as a file manager is one: drags files over a point of the screen
//! and drops them, speaking XDND 5 over its own X connection (x11rb). It finds its target as Qt
//! does, going down from the root window to the first window that says it speaks XDND
//! (`XdndAware`), and follows that window's `XdndProxy` as every toolkit does.

use std::path::Path;
use std::time::{Duration, Instant};

use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    AtomEnum, ClientMessageEvent, ConnectionExt, CreateWindowAux, EventMask, PropMode, SelectionNotifyEvent, Window,
    WindowClass,
};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;
use x11rb::CURRENT_TIME;

x11rb::atom_manager! {
    Atoms: AtomsCookie {
        XdndAware,
        XdndProxy,
        XdndEnter,
        XdndPosition,
        XdndStatus,
        XdndDrop,
        XdndFinished,
        XdndSelection,
        XdndActionCopy,
        TEXT_URI_LIST: b"text/uri-list",
    }
}

/// What the target answered.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    /// It said it would take the files while they were over the point (XdndStatus).
    pub accepted_over: bool,
    /// It said it took them after the drop (XdndFinished).
    pub finished: bool,
}

/// Drags `files` to `(x, y)` on `display`'s screen, runs `while_over` once the target has
/// answered, and drops them there.
pub fn drop_files(display: &str, (x, y): (i32, i32), files: &[&Path], while_over: impl FnOnce()) -> Outcome {
    let (x, y) = (i16::try_from(x).unwrap(), i16::try_from(y).unwrap());
    let (conn, screen) = x11rb::connect(Some(display)).expect("X connection");
    let root = conn.setup().roots[screen].root;
    let atoms = Atoms::new(&conn).unwrap().reply().unwrap();
    let source = conn.generate_id().unwrap();
    conn.create_window(0, source, root, 0, 0, 1, 1, 0, WindowClass::INPUT_ONLY, 0, &CreateWindowAux::new()).unwrap();
    conn.set_selection_owner(source, atoms.XdndSelection, CURRENT_TIME).unwrap();
    let target = aware_window_at(&conn, &atoms, root, x, y).expect("a window that takes drops under the point");
    let proxy = property_window(&conn, target, atoms.XdndProxy).unwrap_or(target);

    let send = |kind, data: [u32; 4]| {
        let [a, b, c, d] = data;
        let message = ClientMessageEvent::new(32, target, kind, [source, a, b, c, d]);
        conn.send_event(false, proxy, EventMask::NO_EVENT, message).unwrap();
        conn.flush().unwrap();
    };
    send(atoms.XdndEnter, [5 << 24, atoms.TEXT_URI_LIST, 0, 0]);
    let position = (u32::from(x as u16) << 16) | u32::from(y as u16);
    send(atoms.XdndPosition, [0, position, CURRENT_TIME, atoms.XdndActionCopy]);
    let status = wait_for_message(&conn, &atoms, atoms.XdndStatus, &uri_list(files));
    while_over();
    send(atoms.XdndDrop, [0, CURRENT_TIME, 0, 0]);
    let finished = wait_for_message(&conn, &atoms, atoms.XdndFinished, &uri_list(files));
    Outcome { accepted_over: status[1] & 1 == 1, finished: finished[1] & 1 == 1 }
}

/// `file://` URIs, percent-encoded as file managers write them.
fn uri_list(files: &[&Path]) -> String {
    let encode = |path: &Path| {
        let text = path.to_str().unwrap();
        text.bytes()
            .map(|b| match b {
                b'/' | b'-' | b'_' | b'.' | b'~' | b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    files.iter().map(|path| format!("file://{}\r\n", encode(path))).collect()
}

/// The first window from the root down under `(x, y)` that has `XdndAware`.
fn aware_window_at(conn: &RustConnection, atoms: &Atoms, root: Window, x: i16, y: i16) -> Option<Window> {
    let mut window = root;
    loop {
        let child = conn.translate_coordinates(root, window, x, y).ok()?.reply().ok()?.child;
        if child == x11rb::NONE {
            return None;
        }
        let aware = conn.get_property(false, child, atoms.XdndAware, AtomEnum::ATOM, 0, 1).ok()?.reply().ok()?;
        if aware.value_len > 0 {
            return Some(child);
        }
        window = child;
    }
}

fn property_window(conn: &RustConnection, window: Window, property: u32) -> Option<Window> {
    let reply = conn.get_property(false, window, property, AtomEnum::WINDOW, 0, 1).ok()?.reply().ok()?;
    let window = reply.value32()?.next();
    window
}

/// Waits (up to 20 s) for the target's message `kind`, giving it the files when it asks for
/// them; returns the message's data.
fn wait_for_message(conn: &RustConnection, atoms: &Atoms, kind: u32, uri_list: &str) -> [u32; 5] {
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(20), "no answer from the drop target");
        let Some(event) = conn.poll_for_event().unwrap() else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        match event {
            Event::ClientMessage(message) if message.type_ == kind => return message.data.as_data32(),
            Event::SelectionRequest(request) => {
                let given = request.target == atoms.TEXT_URI_LIST;
                if given {
                    conn.change_property8(
                        PropMode::REPLACE,
                        request.requestor,
                        request.property,
                        atoms.TEXT_URI_LIST,
                        uri_list.as_bytes(),
                    )
                    .unwrap();
                }
                let notify = SelectionNotifyEvent {
                    response_type: x11rb::protocol::xproto::SELECTION_NOTIFY_EVENT,
                    sequence: 0,
                    time: request.time,
                    requestor: request.requestor,
                    selection: request.selection,
                    target: request.target,
                    property: if given { request.property } else { x11rb::NONE },
                };
                conn.send_event(false, request.requestor, EventMask::NO_EVENT, notify).unwrap();
                conn.flush().unwrap();
            }
            _ => {}
        }
    }
}
