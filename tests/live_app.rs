//! The live app (`rvc-stage-live`) and its editor, for real: opened under Xvfb with Mesa's
//! software OpenGL and the dummy audio backend, photographed with ImageMagick's `import`, and
//! read back with Tesseract OCR (all installed by `cargo xtask setup`). The pictures go to
//! `<target>/screenshots/`, where `cargo xtask screenshots` takes the README's from.

mod common;

use common::xvfb::Xvfb;

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

/// The text Tesseract reads in `png` (enlarged, inverted to dark on light), lower-cased and
/// without white space, so a word split by the OCR still matches.
fn read_text(png: &Path) -> String {
    let prepared = png.with_extension("ocr.png");
    let status = Command::new("convert")
        .arg(png)
        .args(["-resize", "300%", "-colorspace", "Gray", "-negate"])
        .arg(&prepared)
        .status()
        .unwrap();
    assert!(status.success());
    let output = Command::new("tesseract").arg(&prepared).arg("-").stderr(Stdio::null()).output().unwrap();
    assert!(output.status.success(), "tesseract failed");
    String::from_utf8_lossy(&output.stdout).to_lowercase().split_whitespace().collect()
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

/// Whether `text` holds `pattern` with at most one OCR slip (a wrong, missing or extra
/// character) per five characters: the least edit distance from `pattern` to any stretch of
/// `text` (Sellers' algorithm).
fn reads_like(text: &str, pattern: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    // best[i]: edits to match pattern[..i] ending at the current text position.
    let mut best: Vec<usize> = (0..=pattern.len()).collect();
    let allowed = pattern.len() / 5;
    for c in text.chars() {
        let mut diagonal = best[0];
        for i in 1..=pattern.len() {
            let substituted = diagonal + usize::from(pattern[i - 1] != c);
            diagonal = best[i];
            best[i] = substituted.min(best[i] + 1).min(best[i - 1] + 1);
        }
        if best[pattern.len()] <= allowed {
            return true;
        }
    }
    false
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
