//! The editor in a host: embedded in an X11 window (Xvfb, with Mesa's software OpenGL) through
//! the CLAP harness, as a DAW embeds it, while the audio thread runs under nice-plug's
//! `assert_process_allocs` (this debug test binary links the plugin in process). A binary of its
//! own, so no other test loads the machine while the X server serves it.

#[path = "../xtask/src/clap_host.rs"]
#[allow(dead_code)] // each test binary uses part of the host
mod clap_host;
mod common;

use std::time::Duration;

use clap_host::{check_clean, Plugin, Settings};
use common::{in_process_entry, noise};

/// A synthesizer for the 256-value content model: w-okada's export with float16 features.
fn synth() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/synth-tiny-wokada-f16-256.onnx")
}

/// The editor open in an X11 window (Xvfb) — and drawing — while the audio thread runs under
/// the allocation guard with a model and a synthesizer loaded, a state round trip with it open,
/// then opened and closed many times: its window really appears and goes, and no thread or
/// memory is left behind; then embedded in a host's window and given files by drag and drop.
/// Runs in a child process that has the virtual display.
#[test]
fn with_the_editor_open_the_audio_thread_still_allocates_nothing_and_reopening_leaks_nothing() {
    if let Ok(display) = std::env::var("RVC_STAGE_EDITOR_CHILD") {
        render_with_editor(&display);
        return;
    }
    let x = common::xvfb::Xvfb::start(0);
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "with_the_editor_open_the_audio_thread_still_allocates_nothing_and_reopening_leaks_nothing",
            "--exact",
            "--nocapture",
        ])
        .env("RVC_STAGE_EDITOR_CHILD", &x.display)
        .env("DISPLAY", &x.display)
        .env("LIBGL_ALWAYS_SOFTWARE", "1")
        .env("XDG_CONFIG_HOME", common::scratch("editor-config"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    let summary = text.lines().find(|line| line.contains("editor reopened"));
    eprintln!("{}", summary.expect("the child ran the test"));
}

fn render_with_editor(display: &str) {
    use common::xvfb::{root_window, windows_named};
    let editors = || windows_named(display, "RVC Stage");
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models");
    let mut plugin = Plugin::new(&in_process_entry()).unwrap();
    plugin.set_persisted_path("hubert-path", &models.join("hubert-tiny-256.onnx")).unwrap();
    plugin.set_persisted_path("synth-path", &synth()).unwrap();
    let root = root_window(display);
    let (width, height) = plugin.open_gui(root).unwrap();
    assert!(width >= 560 && height >= 420, "editor size {width}×{height}");
    wait_until("the editor's window appears", || editors() == 1);
    let picture = common::scratch("editor-drawn").join("editor.png");
    wait_until("the editor draws", || common::xvfb::window_drawn(display, "RVC Stage", &picture));

    let input = vec![noise(9, 96_000, 0.5); 2];
    let mut sizes = common::random_sizes(23, 2048);
    let render =
        plugin.render(Settings::new(48_000.0, 2048, false), &input, &[("Transpose", "5")], &mut sizes).unwrap();
    check_clean(&render.output).unwrap();
    // What validators check, with the editor open: other rates and buffer sizes, offline.
    for (rate, max_frames) in [(22_050.0, 16_384), (96_000.0, 17), (44_100.0, 1)] {
        let input = vec![noise(10, rate as usize / 2, 0.5); 2];
        let render = plugin.render(Settings::new(rate, max_frames, true), &input, &[], || max_frames as usize).unwrap();
        check_clean(&render.output).unwrap();
        assert_eq!(render.latency, plugin.latency().unwrap(), "at {rate} Hz");
    }
    let state = plugin.save_state().unwrap();
    assert!(String::from_utf8_lossy(&state).contains("editor-size"), "the editor's size is in the state");
    plugin.load_state(&state).unwrap();
    plugin.close_gui().unwrap();
    wait_until("the editor's window goes", || editors() == 0);

    let (threads, memory, files) = (process_status("Threads:"), process_status("VmRSS:"), open_files());
    for _ in 0..15 {
        plugin.open_gui(root).unwrap();
        wait_until("the editor's window appears", || editors() == 1);
        plugin.close_gui().unwrap();
        wait_until("the editor's window goes", || editors() == 0);
    }
    wait_until("the editor's threads end", || process_status("Threads:") <= threads);
    let grown_kb = process_status("VmRSS:").saturating_sub(memory);
    assert!(grown_kb < 20_000, "15 openings kept {grown_kb} kB");
    let kept_files = open_files().saturating_sub(files);
    eprintln!(
        "editor reopened 15 times: {grown_kb} kB kept, {kept_files} files (X connections) kept, threads {threads}"
    );
    assert!(kept_files <= 2, "15 openings kept {kept_files} open files");
    drop_files_onto_the_editor_in_a_host_window(&mut plugin, display);
    the_editor_follows_the_desktop_scale(&mut plugin, display, (width, height));
}

/// On a desktop set to twice the usual resolution (`Xft.dpi: 192`, as GNOME and KDE set it),
/// the editor opens at twice the pixels it had at 1× — what it tells the host and the window it
/// makes — and draws.
fn the_editor_follows_the_desktop_scale(plugin: &mut Plugin, display: &str, at_1x: (u32, u32)) {
    use common::xvfb::{set_desktop_dpi, window_drawn, window_named, HostWindow};
    set_desktop_dpi(display, 192);
    let host = HostWindow::open(display, (1700, 1700));
    let (width, height) = plugin.open_gui(u64::from(host.id)).unwrap();
    let png = common::scratch("editor-scaled").join("editor.png");
    wait_until("the editor draws at 2×", || window_drawn(display, "RVC Stage", &png));
    let window = window_named(display, "RVC Stage").unwrap();
    let doubled = (at_1x.0 * 2, at_1x.1 * 2);
    // Told when the host asks for the size (before the window exists), or asked for once the
    // window knows its scale: either way the host's window ends up fitting it.
    for _ in 0..50 {
        plugin.pump_callbacks();
        std::thread::sleep(Duration::from_millis(20));
    }
    let asked = plugin.requested_gui_size();
    assert!(
        (width, height) == doubled || asked == Some(doubled),
        "the host was told {width}×{height} and asked for {asked:?}; the editor is {doubled:?} at 2× (at 1×: {at_1x:?})"
    );
    assert_eq!((window.width as u32, window.height as u32), doubled, "the window's size at 2×");
    plugin.close_gui().unwrap();
    set_desktop_dpi(display, 96);
}

/// The editor in a host's window that is already on screen (baseview alone never draws there;
/// the editor wakes it), and files dragged onto it from a file manager (an XDND source,
/// `tests/common/xdnd.rs`): dropped anywhere but a file's row, each goes to the row its
/// contents say it belongs to and one that is no voice file is left out; dropped onto a row
/// (found by reading the picture), the file goes to that row even where its contents say
/// otherwise. What went where is read back from the plugin state.
fn drop_files_onto_the_editor_in_a_host_window(plugin: &mut Plugin, display: &str) {
    use common::ocr::{voice_rows, FileRow, Page};
    use common::xdnd::{drop_files, Outcome};
    use common::xvfb::{window_drawn, window_named, HostWindow};
    let taken = Outcome { accepted_over: true, finished: true };
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models");
    let dir = common::scratch("editor-drops");
    let index = dir.join("my voice.index");
    std::fs::write(&index, b"not really an index").unwrap();
    let notes = dir.join("notes.txt");
    std::fs::write(&notes, b"take 3 was best").unwrap();
    let (rmvpe, synth) = (models.join("rmvpe-tiny-wokada.onnx"), models.join("synth-tiny-wokada-768.onnx"));

    let host = HostWindow::open(display, (900, 850));
    let (width, height) = plugin.open_gui(u64::from(host.id)).unwrap();
    let png = dir.join("editor.png");
    wait_until("the editor draws in the host's window", || window_drawn(display, "RVC Stage", &png));
    let window = window_named(display, "RVC Stage").unwrap();
    let on_screen = |(x, y): (i32, i32)| (window.x + x, window.y + y);

    let corner = (width as i32 - 15, height as i32 - 15);
    assert_eq!(drop_files(display, on_screen(corner), &[&rmvpe, &synth, &index, &notes], || {}), taken);
    for (key, path) in [("pitch-model-path", &rmvpe), ("synth-path", &synth), ("index-path", &index)] {
        wait_for_persisted(plugin, key, path);
    }
    assert_eq!(persisted_path(plugin, "hubert-path"), Some(models.join("hubert-tiny-256.onnx")));

    // The content model dropped onto the pitch model's row goes there (found once the window
    // shows what was dropped: the failed index's reason moves the rows below it).
    wait_until("the editor shows the dropped files", || {
        window_drawn(display, "RVC Stage", &png) && !Page::read(&png).find("rmvpe-tiny-wokada.onnx").is_empty()
    });
    let (_, pitch_row) = voice_rows(&png).into_iter().find(|(row, _)| *row == FileRow::Pitch).unwrap();
    let hubert = models.join("hubert-tiny-768.onnx");
    assert_eq!(drop_files(display, on_screen(pitch_row), &[&hubert], || {}), taken);
    wait_for_persisted(plugin, "pitch-model-path", &hubert);
    assert_eq!(persisted_path(plugin, "hubert-path"), Some(models.join("hubert-tiny-256.onnx")));
    plugin.close_gui().unwrap();
}

/// A file path the plugin state holds (a persisted field is stored as its own JSON text).
fn persisted_path(plugin: &mut Plugin, key: &str) -> Option<std::path::PathBuf> {
    let state = plugin.save_state().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&state[8..]).unwrap();
    let text = json["fields"][key].as_str().unwrap_or_else(|| panic!("no {key} in the state"));
    serde_json::from_str::<Option<String>>(text).unwrap().map(Into::into)
}

fn wait_for_persisted(plugin: &mut Plugin, key: &str, path: &std::path::Path) {
    let started = std::time::Instant::now();
    loop {
        let now = persisted_path(plugin, key);
        if now.as_deref() == Some(path) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{key} is {now:?}, not {}", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Open file descriptors of this process (X connections among them).
fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// A number from /proc/self/status (kB for memory).
fn process_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with(field)).unwrap();
    line[field.len()..].split_whitespace().next().unwrap().parse().unwrap()
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(20), "{what}: not within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}
