//! Files dropped onto the editor's window (XDND 5, the target's side, through the proxy window
//! of [`super`]): answers the drag's source, fetches the `text/uri-list`, works out from each
//! file what it is, and hands the files to the editor with where they were dropped; the editor
//! (GUI thread) puts them on the row they were dropped onto, or on the row their kind belongs
//! to. Runs on the X11 helper's thread.

use std::path::{Path, PathBuf};

use percent_encoding::percent_decode_str;
use x11rb::connection::Connection;
use x11rb::errors::ReplyOrIdError;
use x11rb::protocol::xproto::{AtomEnum, ClientMessageEvent, ConnectionExt, EventMask, Window};
use x11rb::protocol::Event;

use super::Link;
use crate::features::onnx_wire::Graph;
use crate::plugin::editor::view::FileRole;

/// Files dropped at one place, each with the role its contents say it has (if any).
#[derive(Debug, Clone, PartialEq)]
pub struct DroppedFiles {
    /// Where, in the window's physical pixels.
    pub at: (f32, f32),
    pub files: Vec<(std::path::PathBuf, Option<FileRole>)>,
}

/// What the editor is shown of drags.
#[derive(Default)]
pub(super) struct Drops {
    /// Where a drag carrying files is over the window (physical pixels).
    pub hovering: Option<(f32, f32)>,
    pub dropped: Vec<DroppedFiles>,
}

/// One drag over the window, from its source's first message to its drop.
struct Session {
    source: Window,
    /// Whether it carries files (`text/uri-list`).
    files: bool,
    /// The last position, in the window's pixels.
    at: (f32, f32),
}

/// The drag in progress, if any.
#[derive(Default)]
pub(super) struct Drag {
    session: Option<Session>,
}

impl Drag {
    /// Answers one event; returns whether the editor has something new to show.
    pub fn on_event(&mut self, link: &Link, event: &Event) -> Result<bool, ReplyOrIdError> {
        match event {
            Event::ClientMessage(message) => self.on_message(link, message),
            Event::SelectionNotify(event) if event.requestor == link.proxy => self.on_data(link, event.property),
            _ => Ok(false),
        }
    }

    /// Forgets the drag (an X error interrupted it).
    pub fn end(&mut self, link: &Link) {
        self.session = None;
        link.shared.drops().hovering = None;
    }

    /// Answers one XDND message; returns whether the editor has something new to show.
    fn on_message(&mut self, link: &Link, message: &ClientMessageEvent) -> Result<bool, ReplyOrIdError> {
        // l[0] is the source; what l[1]..l[4] mean depends on the message.
        let [source, flags, a, b, c] = message.data.as_data32();
        let atoms = link.atoms;
        if message.type_ == atoms.XdndEnter {
            let types = if flags & 1 == 1 { Self::type_list(link, source)? } else { vec![a, b, c] };
            let files = types.contains(&atoms.TEXT_URI_LIST);
            self.session = Some(Session { source, files, at: (0.0, 0.0) });
            Ok(false)
        } else if message.type_ == atoms.XdndPosition {
            let (x, y) = ((a >> 16) as i16, a as i16);
            let inside = link.conn.translate_coordinates(link.root, link.window(), x, y)?.reply()?;
            let at = (f32::from(inside.dst_x), f32::from(inside.dst_y));
            let Some(session) = self.session.as_mut().filter(|s| s.source == source) else {
                return Self::reply(link, source, atoms.XdndStatus, [0, 0, 0, 0]).map(|_| false);
            };
            session.at = at;
            let files = session.files;
            // Accept (bit 0) and keep the position messages coming (bit 1).
            let status = if files { [3, 0, 0, atoms.XdndActionCopy] } else { [2, 0, 0, 0] };
            Self::reply(link, source, atoms.XdndStatus, status)?;
            if files {
                link.shared.drops().hovering = Some(at);
            }
            Ok(files)
        } else if message.type_ == atoms.XdndLeave {
            self.session = None;
            Ok(link.shared.drops().hovering.take().is_some())
        } else if message.type_ == atoms.XdndDrop {
            match &self.session {
                Some(session) if session.source == source && session.files => {
                    let time = a;
                    let (selection, wanted) = (atoms.XdndSelection, atoms.TEXT_URI_LIST);
                    link.conn.convert_selection(link.proxy, selection, wanted, atoms.RVC_STAGE_DROP, time)?;
                    link.conn.flush()?;
                    Ok(false)
                }
                _ => {
                    Self::reply(link, source, atoms.XdndFinished, [0, 0, 0, 0])?;
                    self.session = None;
                    Ok(link.shared.drops().hovering.take().is_some())
                }
            }
        } else {
            Ok(false)
        }
    }

    /// The dropped data arrived (or `property` is NONE: the source could not give it).
    fn on_data(&mut self, link: &Link, property: u32) -> Result<bool, ReplyOrIdError> {
        let Some(session) = self.session.take() else { return Ok(false) };
        let list = if property == u32::from(AtomEnum::NONE) {
            Vec::new()
        } else {
            let reply = link.conn.get_property(true, link.proxy, property, AtomEnum::ANY, 0, 1 << 20)?.reply()?;
            file_paths(&String::from_utf8_lossy(&reply.value))
        };
        let done = if list.is_empty() { [0, 0, 0, 0] } else { [1, link.atoms.XdndActionCopy, 0, 0] };
        Self::reply(link, session.source, link.atoms.XdndFinished, done)?;
        link.shared.drops().hovering = None;
        if !list.is_empty() {
            // Before taking the lock: working out what a file is reads it.
            let files = list.into_iter().map(|path| (path.clone(), guess_role(&path))).collect();
            link.shared.drops().dropped.push(DroppedFiles { at: session.at, files });
        }
        Ok(true)
    }

    /// The source's full list of offered types (when it offers more than three).
    fn type_list(link: &Link, source: Window) -> Result<Vec<u32>, ReplyOrIdError> {
        let reply = link.conn.get_property(false, source, link.atoms.XdndTypeList, AtomEnum::ATOM, 0, 1024)?.reply()?;
        Ok(reply.value32().map(Iterator::collect).unwrap_or_default())
    }

    /// Sends `kind` to the drag's source: our window first, then `data`.
    fn reply(link: &Link, source: Window, kind: u32, data: [u32; 4]) -> Result<(), ReplyOrIdError> {
        let [a, b, c, d] = data;
        let message = ClientMessageEvent::new(32, source, kind, [link.window(), a, b, c, d]);
        link.conn.send_event(false, source, EventMask::NO_EVENT, message)?;
        link.conn.flush()?;
        Ok(())
    }
}

/// The local files a `text/uri-list` names (`file:` URIs on this host; others are skipped).
fn file_paths(uri_list: &str) -> Vec<PathBuf> {
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
        // Not a model, or not readable as one: missing, or cut short as an interrupted
        // download leaves it.
        assert_eq!(guess_role(&models.join("../make_synth.py")), None);
        assert_eq!(guess_role(Path::new("/nowhere/missing.onnx")), None);
        let cut = std::env::temp_dir().join(format!("rvc-stage-cut-model-{}.onnx", std::process::id()));
        let bytes = std::fs::read(models.join("synth-tiny-rvc-768.onnx")).unwrap();
        std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
        let guessed = guess_role(&cut);
        std::fs::remove_file(&cut).unwrap();
        assert_eq!(guessed, None, "a truncated model");
    }
}
