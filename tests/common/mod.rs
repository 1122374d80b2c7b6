//! Helpers shared by the integration tests: signals, test stages and a render loop.
#![allow(dead_code)] // each test binary uses its own subset

pub mod ocr;
pub mod voices;
pub mod xdnd;
pub mod xvfb;

use rvc_stage::engine::{BlockFailed, Controls, Engine, Stage, StageControls};

/// Deterministic white noise in [-amplitude, amplitude].
pub fn noise(seed: u64, len: usize, amplitude: f32) -> Vec<f32> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| (rng.f32() * 2.0 - 1.0) * amplitude).collect()
}

/// Runs `input` (one Vec per channel) through `engine`, cutting it into calls whose sizes
/// come from `next_size`, and returns the output.
pub fn render<C: StageControls>(
    engine: &mut Engine<C>,
    input: &[Vec<f32>],
    controls: Controls<C>,
    mut next_size: impl FnMut() -> usize,
) -> Vec<Vec<f32>> {
    let mut output = input.to_vec();
    let len = input[0].len();
    let mut start = 0;
    while start < len {
        let end = (start + next_size().max(1)).min(len);
        let mut channels: Vec<&mut [f32]> = output.iter_mut().map(|c| &mut c[start..end]).collect();
        engine.process(&mut channels, controls);
        start = end;
    }
    output
}

/// Sizes drawn uniformly from 1..=max with a fixed seed.
pub fn random_sizes(seed: u64, max: usize) -> impl FnMut() -> usize {
    let mut rng = fastrand::Rng::with_seed(seed);
    move || rng.usize(1..=max)
}

/// Scales audio by a constant: wet audio that differs from dry, so crossfades are visible.
pub struct Scale(pub f32);

impl Stage for Scale {
    type Controls = ();
    fn process(&mut self, input: &[f32], _: &(), output: &mut [f32]) -> Result<(), BlockFailed> {
        for (out, x) in output.iter_mut().zip(input) {
            *out = x * self.0;
        }
        Ok(())
    }
}

/// A one-pole low-pass: a stage with memory, so block order and resets matter.
#[derive(Default)]
pub struct OnePole(f32);

impl Stage for OnePole {
    type Controls = ();
    fn process(&mut self, input: &[f32], _: &(), output: &mut [f32]) -> Result<(), BlockFailed> {
        for (out, x) in output.iter_mut().zip(input) {
            self.0 += 0.1 * (x - self.0);
            *out = self.0;
        }
        Ok(())
    }
    fn reset(&mut self) {
        self.0 = 0.0;
    }
}

/// Wraps a stage and sleeps before some blocks, like a worker starved of CPU.
pub struct Stalling<S> {
    pub inner: S,
    pub every: usize,
    pub stall: std::time::Duration,
    pub blocks: usize,
}

impl<S: Stage<Controls = ()>> Stage for Stalling<S> {
    type Controls = ();
    fn process(&mut self, input: &[f32], _: &(), output: &mut [f32]) -> Result<(), BlockFailed> {
        self.blocks += 1;
        if self.blocks.is_multiple_of(self.every) {
            std::thread::sleep(self.stall);
        }
        self.inner.process(input, &(), output)
    }
    fn reset(&mut self) {
        self.inner.reset();
    }
}

/// Asserts every sample is finite and not subnormal.
pub fn assert_clean(output: &[Vec<f32>]) {
    for (c, channel) in output.iter().enumerate() {
        for (i, x) in channel.iter().enumerate() {
            assert!(x.is_finite() && (*x == 0.0 || x.is_normal()), "channel {c} sample {i} is {x:e}");
        }
    }
}

/// Delays audio by a fixed number of samples and halves it: a stage with algorithmic delay.
pub struct DelayedHalf {
    pub line: std::collections::VecDeque<f32>,
}

impl DelayedHalf {
    pub fn new(delay: usize) -> Self {
        Self { line: std::iter::repeat_n(0.0, delay).collect() }
    }
}

impl Stage for DelayedHalf {
    type Controls = ();
    fn latency_samples(&self) -> usize {
        self.line.len()
    }
    fn process(&mut self, input: &[f32], _: &(), output: &mut [f32]) -> Result<(), BlockFailed> {
        for (out, x) in output.iter_mut().zip(input) {
            self.line.push_back(*x);
            *out = 0.5 * self.line.pop_front().unwrap();
        }
        Ok(())
    }
    fn reset(&mut self) {
        self.line.iter_mut().for_each(|x| *x = 0.0);
    }
}

/// The reference Python (faiss-cpu, numpy, onnx): what `cargo xtask test` exports, else where
/// `cargo xtask setup` puts it.
pub fn reference_python() -> std::path::PathBuf {
    let python = std::env::var_os("RVC_STAGE_PYTHON").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
            .join(".cache/rvc-stage/venv/bin/python")
    });
    assert!(
        python.exists(),
        "{} is missing: run `cargo xtask test`, which sets up the reference Python",
        python.display()
    );
    python
}

/// Runs `tests/fixtures/<script> OUT_DIR` with the reference Python once per test binary and
/// returns OUT_DIR (fixtures written by faiss-cpu / numpy / onnx).
pub fn generated(script: &str) -> &'static std::path::Path {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static DIRS: OnceLock<Mutex<HashMap<String, &'static std::path::Path>>> = OnceLock::new();
    let mut dirs = DIRS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    dirs.entry(script.to_string()).or_insert_with(|| {
        let dir = scratch(script.trim_end_matches(".py"));
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(script);
        let status = std::process::Command::new(reference_python())
            .arg(path)
            .arg(&dir)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "the fixture script {script} failed");
        Box::leak(dir.into_boxed_path())
    })
}

/// A fresh scratch directory for one test, unique to this process. The first call removes
/// those of test processes that have ended, so repeated runs do not fill the disk.
pub fn scratch(name: &str) -> std::path::PathBuf {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(remove_ended_processes_dirs);
    let dir = std::env::temp_dir().join(format!("rvc-stage-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Removes `rvc-stage-*-<pid>` directories whose process is gone.
fn remove_ended_processes_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name.strip_prefix("rvc-stage-").and_then(|rest| rest.rsplit('-').next()?.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Runs the `rvc-stage` command line built for this test run; returns whether it succeeded and
/// its stdout and stderr together.
pub fn rvc_stage_cli(args: &[&dyn AsRef<std::ffi::OsStr>]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_rvc-stage")).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

/// A file of the release bundles `cargo xtask test` builds (it exports `RVC_STAGE_CLAP`; the
/// default target dir is assumed otherwise), given relative to `bundled/`.
pub fn bundled(relative: &str) -> std::path::PathBuf {
    let clap = std::env::var_os("RVC_STAGE_CLAP")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bundled/rvc-stage.clap"));
    let path = clap.with_file_name(relative);
    assert!(path.exists(), "{} is missing: run `cargo xtask test`, which bundles the plugin first", path.display());
    path
}

/// The plugin's CLAP entry linked into this test binary: a debug build, so nice-plug's
/// `assert_process_allocs` guards every `process` and `reset`.
pub fn in_process_entry() -> clack_host::prelude::PluginEntry {
    // SAFETY: the entry is this crate's own CLAP export.
    unsafe { clack_host::prelude::PluginEntry::load_from_raw(&rvc_stage::plugin::clap_entry, c"rvc-stage.clap") }
        .unwrap()
}

/// Writes `channels` (equal lengths) as a 32-bit float WAV file.
pub fn write_wav(path: &std::path::Path, sample_rate: u32, channels: &[Vec<f32>]) {
    let spec = hound::WavSpec {
        channels: channels.len() as u16,
        sample_rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for n in 0..channels[0].len() {
        for channel in channels {
            writer.write_sample(channel[n]).unwrap();
        }
    }
    writer.finalize().unwrap();
}
