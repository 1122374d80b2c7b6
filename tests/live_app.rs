//! The live app (`rvc-stage-live`) and its editor, for real: opened under Xvfb with Mesa's
//! software OpenGL and the dummy audio backend, photographed with ImageMagick's `import`, and
//! read back with Tesseract OCR (all installed by `cargo xtask setup`). The pictures go to
//! `<target>/screenshots/`, where `cargo xtask screenshots` takes the README's from.

mod common;

use common::ocr::{read_text, reads_like, voice_rows, FileRow, Page};
use common::xdnd::{drop_files, Outcome};
use common::xvfb::{window_named, Xvfb};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the window may take to show what the test waits for (loading ONNX Runtime and
/// the models under a debug build on a busy 2-core machine).
const SHOW_TIMEOUT: Duration = Duration::from_secs(90);

fn model(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models").join(name)
}

fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn normalised(text: &str) -> String {
    text.to_lowercase().split_whitespace().collect()
}

/// Starts `rvc-stage-live` with the dummy backend, a fresh configuration folder and `args`.
fn live_app(display: Option<&str>, config: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rvc-stage-live"));
    command.args(["-b", "dummy"]).args(args).env("XDG_CONFIG_HOME", config).env("LIBGL_ALWAYS_SOFTWARE", "1");
    match display {
        Some(display) => command.env("DISPLAY", display),
        None => command.env_remove("DISPLAY").env_remove("WAYLAND_DISPLAY"),
    };
    command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Sends SIGINT and checks the app exits within 20 s with status 0 and no panic.
fn interrupt_cleanly(mut app: Child) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(app.id() as i32, libc::SIGINT) }, 0);
    let started = Instant::now();
    loop {
        if let Some(status) = app.try_wait().unwrap() {
            let output = app.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
            assert!(status.success(), "exit {status} after SIGINT:\n{text}");
            assert!(!text.contains("panicked"), "{text}");
            return;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = app.kill();
            panic!("rvc-stage-live did not exit within 20 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Photographs the screen until its text contains every one of `expected` (or the timeout);
/// returns the text read last.
fn wait_for_text(x: &Xvfb, app: &mut Child, png: &Path, expected: &[&str]) -> String {
    let started = Instant::now();
    loop {
        if let Some(status) = app.try_wait().unwrap() {
            panic!("rvc-stage-live exited early ({status})");
        }
        if !x.screenshot("RVC Stage", png) {
            assert!(started.elapsed() < SHOW_TIMEOUT, "the window never opened");
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        let text = read_text(png);
        let missing: Vec<_> = expected.iter().filter(|want| !reads_like(&text, &normalised(want))).collect();
        if missing.is_empty() {
            return text;
        }
        assert!(started.elapsed() < SHOW_TIMEOUT, "the window never showed {missing:?}; it read:\n{text}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn ocr_matching_tolerates_slips_and_nothing_more() {
    assert!(reads_like("x-vivpe,rvcexport(log-melin)", "rmvpe,rvcexport"));
    assert!(reads_like("rvcv240khz,fo,", "rvcv248khz,f0"));
    assert!(!reads_like("nothingwasloaded", "nothingloadedforthisstep"));
    assert!(!reads_like("broken", "broken-voice.onnx"));
}

/// Pixels within a small distance of `colour`.
fn count_pixels_near(png: &Path, colour: [u8; 3]) -> usize {
    let output = Command::new("convert").arg(png).args(["-depth", "8", "rgb:-"]).output().unwrap();
    assert!(output.status.success());
    output
        .stdout
        .chunks_exact(3)
        .filter(|p| p.iter().zip(colour).all(|(&a, b)| (i16::from(a) - i16::from(b)).abs() <= 12))
        .count()
}

/// The editor's colour for failures (`FAILED` in src/plugin/editor.rs).
const FAILED: [u8; 3] = [225, 70, 60];

#[test]
fn the_editor_shows_every_file_and_a_broken_one_in_words_and_sigint_closes_it() {
    let dir = common::scratch("live-broken");
    // A synthesizer cut short, as an interrupted download leaves it.
    let bytes = std::fs::read(model("synth-tiny-rvc-768.onnx")).unwrap();
    let broken = dir.join("broken-voice.onnx");
    std::fs::write(&broken, &bytes[..3000]).unwrap();
    let x = Xvfb::start(0);
    let hubert = model("hubert-tiny-768.onnx");
    let rmvpe = model("rmvpe-tiny-rvc.onnx");
    let mut app =
        live_app(Some(&x.display), &dir, &[&"--hubert", &hubert, &"--pitch-model", &rmvpe, &"--synth", &broken]);
    let png = screenshots_dir().join("editor-broken-synthesizer.png");
    let text = wait_for_text(
        &x,
        &mut app,
        &png,
        &[
            "Content model",
            "hubert-tiny-768.onnx",
            "768-d",
            "Index",
            "none chosen",
            "Pitch model",
            "RMVPE, RVC export",
            "Synthesizer",
            "broken-voice.onnx",
            "protobuf parsing failed",
            "Nothing loaded for this step",
            "Transpose",
            "Block Size",
            "Live status",
            "Latency",
            "Under-runs",
        ],
    );
    assert!(!text.contains("loading"), "every file has finished loading: {text}");
    // The failure is drawn in the failure colour (its light and its reason), not only written.
    let red = count_pixels_near(&png, FAILED);
    assert!(red > 300, "only {red} pixels in the failure colour");
    interrupt_cleanly(app);
}

#[test]
fn the_editor_with_a_working_voice_shows_its_files_and_timing() {
    let dir = common::scratch("live-ready");
    let x = Xvfb::start(1);
    let hubert = model("hubert-tiny-768.onnx");
    let synth = model("demo-voice-768.onnx");
    let mut app = live_app(Some(&x.display), &dir, &[&"--hubert", &hubert, &"--synth", &synth, &"--fresh"]);
    let png = screenshots_dir().join("editor-voice-ready.png");
    let text = wait_for_text(
        &x,
        &mut app,
        &png,
        &[
            "demo-voice-768.onnx",
            "RVC export, RVC v2 40 kHz, f0",
            "built-in estimator",
            "content features",
            "synthesizer",
            "ms of 100 ms",
            "Real-time factor",
        ],
    );
    assert!(!text.contains("failed"), "{text}");
    interrupt_cleanly(app);
    // What loaded is remembered for the next start.
    let recent = std::fs::read_to_string(dir.join("rvc-stage/recent-files.json")).unwrap();
    assert!(recent.contains("demo-voice-768.onnx") && recent.contains("hubert-tiny-768.onnx"), "{recent}");
}

/// Files dragged from a file manager (an XDND source, `tests/common/xdnd.rs`) onto the window.
/// Dropped anywhere but a file's row, each goes to the row its contents say it belongs to, and
/// one that is no voice file is named as such; dragged over a row, the window says what a drop
/// there does; dropped onto a row, the file goes to that row even where its contents say
/// otherwise, and the row says why it cannot be used.
#[test]
fn files_dropped_onto_the_window_go_to_their_rows() {
    let dir = common::scratch("live-drops");
    let index = dir.join("my voice.index");
    std::fs::write(&index, b"not really an index").unwrap();
    let notes = dir.join("notes.txt");
    std::fs::write(&notes, b"take 3 was best").unwrap();
    let x = Xvfb::start(2);
    let mut app = live_app(Some(&x.display), &dir, &[&"--fresh"]);
    let png = dir.join("window.png");
    wait_for_text(&x, &mut app, &png, &["Pitch model", "Live status"]);
    let window = window_named(&x.display, "RVC Stage").unwrap();
    let on_screen = |(x, y): (i32, i32)| (window.x + x, window.y + y);
    let taken = Outcome { accepted_over: true, finished: true };

    let page = Page::read(&png);
    let anywhere_else = *page.find("Live status").first().expect("the status heading is read");
    let (rmvpe, synth) = (model("rmvpe-tiny-wokada.onnx"), model("synth-tiny-wokada-768.onnx"));
    let files = [rmvpe.as_path(), synth.as_path(), index.as_path(), notes.as_path()];
    assert_eq!(drop_files(&x.display, on_screen(anywhere_else), &files, || {}), taken);
    let expected =
        ["rmvpe-tiny-wokada.onnx", "synth-tiny-wokada-768.onnx", "voice.index", "Not recognised", "notes.txt"];
    wait_for_text(&x, &mut app, &png, &expected);
    let (page, rows) = (Page::read(&png), voice_rows(&png));
    assert_in_row(&page, &rows, FileRow::Pitch, "rmvpe-tiny-wokada.onnx");
    assert_in_row(&page, &rows, FileRow::Synthesizer, "synth-tiny-wokada-768.onnx");
    assert_in_row(&page, &rows, FileRow::Index, "voice.index");

    let pitch_row = rows[2].1;
    let hubert = model("hubert-tiny-768.onnx");
    let dragging = screenshots_dir().join("editor-dragging-onto-a-row.png");
    let outcome = drop_files(&x.display, on_screen(pitch_row), &[&hubert], || {
        wait_for_text(&x, &mut app, &dragging, &["Drop to use it as the pitch model"]);
    });
    assert_eq!(outcome, taken);
    wait_for_text(&x, &mut app, &png, &["hubert-tiny-768.onnx", "does not look like an RMVPE pitch model"]);
    let (page, rows) = (Page::read(&png), voice_rows(&png));
    assert_in_row(&page, &rows, FileRow::Pitch, "hubert-tiny-768.onnx");
    assert_eq!(page.find("hubert-tiny-768.onnx").len(), 1, "in one row only");
    interrupt_cleanly(app);
}

/// Checks the file name `value` is read in `row` (`page` and `rows` read from one picture). A
/// row's name is centred on the row's lines and the file name is its first line, so the row
/// is the nearest name at or below it.
fn assert_in_row(page: &Page, rows: &[(FileRow, (i32, i32))], row: FileRow, value: &str) {
    let labels: Vec<(FileRow, i32)> = rows.iter().map(|(r, (_, y))| (*r, *y)).collect();
    let values = page.find(value);
    let (_, value_y) = *values.first().unwrap_or_else(|| panic!("{value} not read"));
    let below = labels.iter().filter(|(_, y)| *y >= value_y - 3 && *y - value_y <= 40);
    let found = below.min_by_key(|(_, y)| *y - value_y).map(|(r, _)| *r);
    assert_eq!(found, Some(row), "{value} read at y {value_y}; rows at {labels:?}");
}

#[test]
fn the_live_app_runs_headless_and_exits_cleanly_on_sigint() {
    let dir = common::scratch("live-headless");
    let mut app = live_app(None, &dir, &[&"--headless", &"--fresh"]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(app.try_wait().unwrap().is_none(), "it keeps running until interrupted");
    interrupt_cleanly(app);
}

#[test]
fn help_lists_the_voice_options_and_the_wrappers_audio_options() {
    let output = Command::new(env!("CARGO_BIN_EXE_rvc-stage-live")).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    for option in [
        "--hubert",
        "--index",
        "--synth",
        "--pitch-model",
        "--fresh",
        "--headless",
        "--backend",
        "--sample-rate",
        "--period-size",
        "--input-device",
        "--output-device",
    ] {
        assert!(text.contains(option), "{option} missing from:\n{text}");
    }
}
