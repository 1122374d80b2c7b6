//! A virtual X server (Xvfb, with Mesa's software OpenGL, installed by `cargo xtask setup`) for
//! tests that open the editor.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A virtual X server for one test, stopped on drop.
pub struct Xvfb {
    pub display: String,
    server: Child,
}

impl Xvfb {
    /// A server on a display number of its own (`offset` tells apart several in one process).
    /// `-noreset`: an X server resets whenever its last client leaves (as `xwininfo` and a closed
    /// editor do here, unlike a desktop, where a window manager stays), and a connection made
    /// during the reset fails.
    pub fn start(offset: u32) -> Self {
        let number = 200 + (std::process::id() % 400) * 4 + offset;
        let display = format!(":{number}");
        let server = Command::new("Xvfb")
            .args([&display, "-screen", "0", "1700x1700x24", "-nolisten", "tcp", "-noreset"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb runs (installed by `cargo xtask setup`)");
        // Ready when it answers (a socket left by an earlier server on this number is not enough).
        let started = Instant::now();
        while !Command::new("xwininfo").args(["-root", "-display", &display]).output().is_ok_and(|o| o.status.success())
        {
            assert!(started.elapsed() < Duration::from_secs(20), "Xvfb did not start on {display}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Xvfb { display, server }
    }

    /// The top-level window called `title` as a PNG at `path`; false while there is no such
    /// window to photograph yet (it is being made, or not mapped).
    pub fn screenshot(&self, title: &str, path: &Path) -> bool {
        screenshot(&self.display, title, path)
    }
}

/// The window of `display` called `title` (a child of the root) as a PNG at `path`; false while
/// there is none to photograph.
pub fn screenshot(display: &str, title: &str, path: &Path) -> bool {
    let Some(window) = window_named(display, title) else { return false };
    Command::new("import")
        .args(["-display", display, "-window", &window.id])
        .arg(path)
        .stderr(Stdio::null())
        .status()
        .expect("ImageMagick's import runs (installed by `cargo xtask setup`)")
        .success()
}

/// A window as `xwininfo` gives it: its id, where it is on the screen and its size in pixels.
pub struct WindowPlace {
    pub id: String,
    pub x: i32,
    pub y: i32,
    pub width: i32,
    pub height: i32,
}

/// The first window of `display` called `title` (at any depth).
pub fn window_named(display: &str, title: &str) -> Option<WindowPlace> {
    let quoted = format!("\"{title}\"");
    let listing = xwininfo(display, &["-root", "-tree"]);
    let id = listing.lines().find(|line| line.contains(&quoted))?.split_whitespace().next()?.to_string();
    let info = xwininfo(display, &["-id", &id]);
    let field = |name: &str| -> Option<i32> { info.split(name).nth(1)?.split_whitespace().next()?.parse().ok() };
    Some(WindowPlace {
        x: field("Absolute upper-left X:")?,
        y: field("Absolute upper-left Y:")?,
        width: field("Width:")?,
        height: field("Height:")?,
        id,
    })
}

/// The id of `display`'s root window, which stands in for a host's window in embedding tests.
pub fn root_window(display: &str) -> u64 {
    let text = xwininfo(display, &["-root"]);
    let id = text.split("Window id: ").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap();
    u64::from_str_radix(id.trim_start_matches("0x"), 16).unwrap()
}

/// How many windows called `title` the root window of `display` has as children (an embedded
/// editor is one; GL and X connections add nameless 1×1 ones).
pub fn windows_named(display: &str, title: &str) -> usize {
    let quoted = format!("\"{title}\"");
    xwininfo(display, &["-root", "-children"]).lines().filter(|line| line.contains(&quoted)).count()
}

fn xwininfo(display: &str, args: &[&str]) -> String {
    let output = Command::new("xwininfo").args(args).args(["-display", display]).output().unwrap();
    assert!(output.status.success(), "xwininfo failed on {display}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// A host's window for the editor to be embedded in, as a DAW's plugin window is: a top-level
/// window already on screen (the case in which baseview alone never draws). Closed on drop.
pub struct HostWindow {
    pub id: u32,
    conn: x11rb::rust_connection::RustConnection,
}

impl HostWindow {
    pub fn open(display: &str, (width, height): (u16, u16)) -> Self {
        use x11rb::connection::Connection;
        use x11rb::protocol::xproto::{ConnectionExt, CreateWindowAux, WindowClass};
        let (conn, screen) = x11rb::connect(Some(display)).expect("X connection");
        let root = conn.setup().roots[screen].root;
        let id = conn.generate_id().unwrap();
        let (class, attributes) = (WindowClass::INPUT_OUTPUT, CreateWindowAux::new());
        conn.create_window(0, id, root, 0, 0, width, height, 0, class, 0, &attributes).unwrap();
        conn.map_window(id).unwrap();
        // A round trip: mapped before the editor is put into it.
        conn.get_input_focus().unwrap().reply().unwrap();
        HostWindow { id, conn }
    }
}

impl Drop for HostWindow {
    fn drop(&mut self) {
        use x11rb::connection::Connection;
        use x11rb::protocol::xproto::ConnectionExt;
        let _ = self.conn.destroy_window(self.id);
        let _ = self.conn.flush();
    }
}

/// Whether the window called `title` shows anything: its picture's mean brightness (an
/// undrawn window is black; the editor's dark theme is not).
pub fn window_drawn(display: &str, title: &str, png: &Path) -> bool {
    if !screenshot(display, title, png) {
        return false;
    }
    let output =
        Command::new("convert").arg(png).args(["-colorspace", "Gray", "-format", "%[fx:mean]", "info:"]).output();
    let mean = output.ok().and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok());
    mean.is_some_and(|mean| mean > 0.03)
}

/// Sets the desktop's font resolution (`Xft.dpi`, as `xrdb` does: the root window's
/// `RESOURCE_MANAGER` property), which X11 programs take their scale from (96 is 1×).
pub fn set_desktop_dpi(display: &str, dpi: u32) {
    use x11rb::connection::Connection;
    use x11rb::protocol::xproto::{AtomEnum, ConnectionExt, PropMode};
    use x11rb::wrapper::ConnectionExt as _;
    let (conn, screen) = x11rb::connect(Some(display)).expect("X connection");
    let root = conn.setup().roots[screen].root;
    let resources = format!("Xft.dpi:\t{dpi}\n");
    let property = AtomEnum::RESOURCE_MANAGER;
    conn.change_property8(PropMode::REPLACE, root, property, AtomEnum::STRING, resources.as_bytes()).unwrap();
    conn.get_input_focus().unwrap().reply().unwrap();
}
