//! `cargo xtask bench`: the built-in pitch estimator's cost per worker block of 0.1 and 0.25 s
//! (ten and twenty-five 10 ms frames, each analysed over 1024 samples at 16 kHz, plus the
//! fixed-lag Viterbi step), as milliseconds and as a share of the block's real time (the
//! target is under 2 %), next to a plain 1024-point FFT per frame measured the same way; and
//! its accuracy on the tests' voice-like signals next to `librosa.pyin` (the reference, from
//! the setup venv) on the same signals and frames.

use std::hint::black_box;
use std::time::Instant;

use rvc_stage::npy::{read_matrix, write_matrix, Matrix};
use rvc_stage::pitch::{PitchTracker, RmvpeModel, TRACKER_FRAME};

#[path = "shared/cache.rs"]
mod cache;
#[path = "../common/voices.rs"]
mod voices;

const RATE: f64 = 16_000.0;
const HOP: usize = 160;
/// Frames the pipeline's pitch step adds on either side of a block for an RMVPE model.
const EDGE: usize = 4;

fn main() {
    let audio: Vec<f32> = {
        let mut phase = 0.0f64;
        (0..16_000 * 20)
            .map(|n| {
                let t = n as f64 / RATE;
                phase += std::f64::consts::TAU * (140.0 + 60.0 * (0.5 * t).sin()) / RATE;
                ((1..8).map(|h| (h as f64 * phase).sin() / h as f64).sum::<f64>() * 0.2) as f32
            })
            .collect()
    };
    println!("built-in pitch estimator per worker block (16 kHz, 10 ms frames, one thread)");
    println!();
    println!("| block | estimator ms (median) | share of real time | FFT-only reference ms | × FFT-only |");
    println!("|---:|---:|---:|---:|---:|");
    for block_s in [0.1, 0.25] {
        let frames = (block_s * 100.0) as usize;
        let (ours, reference) = (measure_tracker(&audio, frames), measure_fft(&audio, frames));
        println!(
            "| {block_s} s | {ours:.3} | {:.2} % | {reference:.3} | {:.1} |",
            ours / (block_s * 1000.0) * 100.0,
            ours / reference
        );
    }
    rmvpe(&audio);
    accuracy();
}

/// Milliseconds per block of the real-size RMVPE model: ours against RVC's schedule.
fn rmvpe(audio: &[f32]) {
    let path = cache::cache().join("rmvpe-real-rvc.onnx");
    if !path.exists() {
        let python = std::env::var_os("RVC_STAGE_PYTHON").expect("run through `cargo xtask bench`");
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_rmvpe.py");
        let status = std::process::Command::new(python)
            .arg(script)
            .arg(&path)
            .args(["--contract", "rvc", "--size", "real"])
            .status()
            .unwrap();
        assert!(status.success(), "generating the real-size RMVPE model failed");
    }
    let runtime = std::env::var_os("RVC_STAGE_ONNXRUNTIME").map(std::path::PathBuf::from);
    let mut model = RmvpeModel::load(&path, runtime.as_deref()).unwrap();
    println!();
    println!("RMVPE-size model (RVC's contract, 90 M parameters, random weights) per worker block, one thread");
    println!();
    println!("| block | ours: block + 2 × 4 frames, ms | share of real time | RVC: block + 50 ms in 32-frame groups, ms | × ours |");
    println!("|---:|---:|---:|---:|---:|");
    for block_s in [0.1, 0.25] {
        let block = (block_s * RATE) as usize;
        let ours_len = block + 2 * EDGE * HOP;
        // RVC (rtrvc.py): block + 800 samples, rounded up to 5120·k − 160 for RMVPE.
        let rvc_len = (block + 800 + 160).div_ceil(5120) * 5120 - 160;
        let time = |len: usize, model: &mut RmvpeModel| {
            let mut f0 = Vec::new();
            median(
                (0..5)
                    .map(|i| {
                        let start = Instant::now();
                        model.f0(&audio[i * block..][..len], &mut f0).unwrap();
                        start.elapsed().as_secs_f64() * 1000.0
                    })
                    .collect(),
            )
        };
        let (ours, rvc) = (time(ours_len, &mut model), time(rvc_len, &mut model));
        println!(
            "| {block_s} s | {ours:.1} | {:.1} % | {rvc:.1} | {:.2} |",
            ours / (block_s * 1000.0) * 100.0,
            rvc / ours
        );
    }
}

/// Gross errors, median error and voicing errors of ours and of `librosa.pyin` per signal.
fn accuracy() {
    let python = std::env::var_os("RVC_STAGE_PYTHON").expect("run through `cargo xtask bench`, which sets up Python");
    let dir = std::env::temp_dir().join(format!("rvc-stage-pitch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let signals = voices::signals();
    for (i, signal) in signals.iter().enumerate() {
        let audio = Matrix { rows: 1, cols: signal.audio.len(), data: signal.audio.clone() };
        write_matrix(&dir.join(format!("{i:02}.npy")), &audio).unwrap();
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/benches/pyin_reference.py");
    let status = std::process::Command::new(python).arg(script).arg(&dir).status().unwrap();
    assert!(status.success(), "librosa.pyin failed");
    println!();
    println!("accuracy on voice-like signals with known f0 (targets: gross ≤ 2 %, median ≤ 10 cents, voicing ≤ 5 %)");
    println!();
    println!("| signal | ours: gross / median / voicing | librosa.pyin: gross / median / voicing |");
    println!("|---|---:|---:|");
    for (i, signal) in signals.iter().enumerate() {
        let ours = voices::score(signal, &voices::track(&signal.audio));
        let pyin = read_matrix(&dir.join(format!("{i:02}.pyin.npy"))).unwrap().data;
        let theirs = voices::score(signal, &pyin);
        let cell = |(gross, median, voicing): (f32, f32, f32)| {
            format!("{:.2} % / {median:.1} ct / {:.2} %", gross * 100.0, voicing * 100.0)
        };
        println!("| {} | {} | {} |", signal.name, cell(ours), cell(theirs));
    }
    std::fs::remove_dir_all(dir).unwrap();
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn measure_tracker(audio: &[f32], frames: usize) -> f64 {
    let mut tracker = PitchTracker::new();
    let mut times = Vec::new();
    let mut frame = 0;
    while (frame + frames) * HOP + TRACKER_FRAME <= audio.len() {
        let start = Instant::now();
        for k in frame..frame + frames {
            black_box(tracker.push(&audio[k * HOP..][..TRACKER_FRAME]));
        }
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        frame += frames;
    }
    median(times)
}

/// One forward 1024-point real FFT per frame: the least any frame-wise estimator does.
fn measure_fft(audio: &[f32], frames: usize) -> f64 {
    let fft = realfft::RealFftPlanner::<f32>::new().plan_fft_forward(TRACKER_FRAME);
    let (mut input, mut output, mut scratch) = (fft.make_input_vec(), fft.make_output_vec(), fft.make_scratch_vec());
    let mut times = Vec::new();
    let mut frame = 0;
    while (frame + frames) * HOP + TRACKER_FRAME <= audio.len() {
        let start = Instant::now();
        for k in frame..frame + frames {
            input.copy_from_slice(&audio[k * HOP..][..TRACKER_FRAME]);
            fft.process_with_scratch(&mut input, &mut output, &mut scratch).unwrap();
            black_box(&output);
        }
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        frame += frames;
    }
    median(times)
}
