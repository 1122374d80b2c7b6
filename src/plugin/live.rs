//! `rvc-stage-live`: the plugin as a stand-alone app for streamers (nice-plug's standalone
//! wrapper: JACK, ALSA or a dummy backend), with the same editor. Adds its own options in front
//! of the wrapper's: the voice's files (by default the ones used last, from the recent-files
//! list) and `--headless` (no window: runs until SIGINT). Runs on the main thread before the
//! wrapper starts; the plugin instance reads the choices when it is made.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;

use super::editor::recent::RecentFiles;
use super::editor::view::FileRole;
use super::{RvcStage, RvcStageParams};

/// What the live app was asked for; unset in a plugin host.
static LIVE: OnceLock<LiveOptions> = OnceLock::new();

#[derive(Debug, Default)]
struct LiveOptions {
    headless: bool,
    files: Vec<(FileRole, PathBuf)>,
}

const USAGE: &str = "\
rvc-stage-live: RVC Stage as a stand-alone app, with its editor.

Voice (each defaults to the file used last; --fresh starts with none):
      --hubert <FILE>        content model (HuBERT / ContentVec .onnx)
      --index <FILE>         feature index (.index)
      --synth <FILE>         synthesizer (.onnx)
      --pitch-model <FILE>   RMVPE pitch model (.onnx)
      --fresh                ignore the recently used files
      --headless             no window; runs until interrupted (Ctrl+C)

Audio options of the stand-alone wrapper follow (-b dummy|jack|alsa, -r RATE, -p PERIOD,
--input-device, --output-device, ...):
";

/// Runs the live app with the process's arguments; returns its exit code.
pub fn main() -> std::process::ExitCode {
    let mut options = LiveOptions::default();
    let mut fresh = false;
    let mut rest = Vec::new();
    let mut args = std::env::args();
    rest.extend(args.next());
    while let Some(arg) = args.next() {
        let role = match arg.as_str() {
            "--hubert" => Some(FileRole::ContentModel),
            "--index" => Some(FileRole::Index),
            "--synth" => Some(FileRole::Synthesizer),
            "--pitch-model" => Some(FileRole::PitchModel),
            _ => None,
        };
        match (role, arg.as_str()) {
            (Some(role), _) => match args.next() {
                Some(path) => options.files.push((role, PathBuf::from(path))),
                None => {
                    eprintln!("rvc-stage-live: {arg} needs a file");
                    return std::process::ExitCode::from(2);
                }
            },
            (None, "--fresh") => fresh = true,
            (None, "--headless") => options.headless = true,
            (None, "-h" | "--help") => {
                print!("{USAGE}");
                rest.push(arg);
            }
            _ => rest.push(arg),
        }
    }
    if !fresh {
        let recent = RecentFiles::load();
        for role in FileRole::ALL {
            if !options.files.iter().any(|(chosen, _)| *chosen == role) {
                options.files.extend(recent.list(role).first().map(|path| (role, path.clone())));
            }
        }
    }
    // Set once, before the wrapper makes the plugin.
    let _ = LIVE.set(options);
    let ran = nice_plug::wrapper::standalone::nice_export_standalone_with_args::<RvcStage, _>(rest);
    if ran {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

/// In the live app, makes SIGINT close the editor's window too (the wrapper then deactivates
/// the plugin and returns). The editor calls this when its window opens, which is after the
/// wrapper installed its own SIGINT handler; signal-hook chains the handler it finds, so both
/// run. Nothing in a host, and only once.
pub fn close_window_on_sigint() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    if LIVE.get().is_none() {
        return;
    }
    REGISTERED.call_once(|| {
        let quit = super::editor::quit_flag();
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let registered = unsafe {
            signal_hook::low_level::register(signal_hook::consts::SIGINT, move || quit.store(true, Ordering::Relaxed))
        };
        if let Err(error) = registered {
            tracing::warn!("RVC Stage cannot close its window on Ctrl+C: {error}");
        }
    });
}

/// Whether the live app runs without a window.
pub fn headless() -> bool {
    LIVE.get().is_some_and(|live| live.headless)
}

/// In the live app, starts loading the files it was given (or used last). Nothing in a host.
pub fn choose_startup_files(params: &RvcStageParams) {
    let Some(live) = LIVE.get() else { return };
    for (role, path) in &live.files {
        params.choose_file(*role, Some(path.clone()));
    }
}
