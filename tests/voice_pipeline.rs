//! The voice pipeline the plugin runs, end to end through the engine with the committed tiny
//! content model and indexes written by faiss-cpu: Index Ratio automation blends every frame
//! exactly as `rvc-stage retrieve` would, renders repeat, indexes swap between blocks, a
//! features/index mismatch is reported on the status board, files replaced mid-render never
//! stall it and take effect at the same block however long they take to load, and instances
//! loading the same files share one copy.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rvc_stage::engine::slot::SlotStatus;
use rvc_stage::engine::{Controls, Engine, EngineConfig, RenderMode};
use rvc_stage::features::{model_slot, ModelOptions, ModelSlot};
use rvc_stage::retrieval::{FeatureIndex, IndexSlot, Retriever, SearchSettings};
use rvc_stage::voice::{FeatureTap, Frames, VoiceControls, VoiceFiles, VoiceStage, VoiceStatus};

const RATE: f64 = 44_100.0;
const CALL: usize = 512;

fn fixture(name: &str) -> PathBuf {
    common::generated("reference_search.py").join(name)
}

fn tiny_model(dim: usize) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/models/hubert-tiny-{dim}.onnx"))
}

fn model_slot_with(path: &Path) -> ModelSlot {
    let runtime = std::env::var_os("RVC_STAGE_ONNXRUNTIME").map(|p| p.to_string_lossy().into_owned());
    let slot = model_slot(Arc::new(RwLock::new(runtime)), ModelOptions::default());
    load(&slot, path);
    slot
}

fn index_slot_with(name: &str) -> IndexSlot {
    let slot = IndexSlot::default();
    load(&slot, &fixture(name));
    slot
}

fn load<T: Send + Sync + 'static>(slot: &rvc_stage::engine::slot::Slot<T>, path: &Path) {
    slot.request(Some(path.to_path_buf()));
    slot.wait();
    assert!(matches!(slot.status(), SlotStatus::Ready { .. }), "{:?}", slot.status());
}

/// One block as the tap saw it: first frame number, blended frames, their ratios.
type Block = (u64, Vec<f32>, Vec<f32>);

/// Everything the pipeline blended, block by block.
#[derive(Clone, Default)]
struct Tap(Arc<Mutex<Vec<Block>>>);

impl FeatureTap for Tap {
    fn frames(&mut self, frames: &Frames, ratios: &[f32]) {
        self.0.lock().unwrap().push((frames.first(), frames.values().to_vec(), ratios.to_vec()));
    }
}

impl Tap {
    /// The frames and ratios seen, flattened, from frame 0 on.
    fn collected(&self) -> (Vec<f32>, Vec<f32>) {
        let blocks = self.0.lock().unwrap();
        (blocks.iter().flat_map(|b| b.1.clone()).collect(), blocks.iter().flat_map(|b| b.2.clone()).collect())
    }
}

fn engine(
    mode: RenderMode,
    model: &ModelSlot,
    index: &IndexSlot,
    tap: &Tap,
) -> (Engine<VoiceControls>, Arc<VoiceStatus>) {
    let config =
        EngineConfig { sample_rate: RATE, max_buffer: CALL, channels: 1, block_ms: 100.0, mode, ..Default::default() };
    engine_with(config, model, index, tap)
}

fn engine_with(
    config: EngineConfig,
    model: &ModelSlot,
    index: &IndexSlot,
    tap: &Tap,
) -> (Engine<VoiceControls>, Arc<VoiceStatus>) {
    let files = VoiceFiles::new(model.reader(), index.reader());
    let stage = VoiceStage::new(files, config.sample_rate, config.block_samples()).with_tap(Box::new(tap.clone()));
    let status = stage.status();
    (Engine::start(config, stage).unwrap(), status)
}

fn input(seconds: f64) -> Vec<f32> {
    common::noise(5, (seconds * RATE) as usize, 0.3)
}

/// Runs `audio` in 512-sample calls under the allocation guard; `ratio_at(t)` is the Index
/// Ratio at time t; `between_calls(position)` runs after each call.
fn run(
    engine: &mut Engine<VoiceControls>,
    audio: &[f32],
    ratio_at: impl Fn(f64) -> f32,
    mut between_calls: impl FnMut(usize),
) {
    for (call, chunk) in audio.chunks(CALL).enumerate() {
        let mut samples = chunk.to_vec();
        let t = (call * CALL) as f64 / RATE;
        let stage = VoiceControls { index_ratio: ratio_at(t), ..VoiceControls::default() };
        let controls = Controls { stage, ..Controls::default() };
        nice_assert_no_alloc::assert_no_alloc(|| engine.process(&mut [&mut samples[..]], controls));
        between_calls((call + 1) * CALL);
    }
}

/// The content features of `audio` without any blend. The pipeline is causal, so these are the
/// frames of any other run of the same audio; a second of silence after it makes sure every
/// frame of the audio is computed before the engine stops.
fn plain_features(model: &ModelSlot, audio: &[f32]) -> Vec<f32> {
    let tap = Tap::default();
    let (mut engine, status) = engine(RenderMode::Offline, model, &IndexSlot::default(), &tap);
    let mut padded = audio.to_vec();
    padded.resize(audio.len() + RATE as usize, 0.0);
    run(&mut engine, &padded, |_| 1.0, |_| ());
    drop(engine);
    assert_eq!(status.errors(), Vec::<String>::new());
    let plain = tap.collected().0;
    assert!(plain.len() >= (audio.len() as f64 / RATE * 50.0) as usize * 256 - 3 * 256, "{} frames", plain.len() / 256);
    plain
}

/// What `rvc-stage retrieve` computes for these frames and ratios.
fn retrieved(index: &FeatureIndex, frames: &[f32], ratios: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; frames.len()];
    let mut retriever = Retriever::new(index, ratios.len().max(1));
    retriever.retrieve(index, frames, ratios, &mut out).unwrap();
    out
}

fn load_index(name: &str) -> FeatureIndex {
    FeatureIndex::load(&fixture(name), SearchSettings::default()).unwrap()
}

#[test]
fn automated_ratio_blends_every_frame_like_the_retrieve_command() {
    let model = model_slot_with(&tiny_model(256));
    let index = index_slot_with("fast_scan_256.index");
    let audio = input(3.0);
    let tap = Tap::default();
    let (mut engine, status) = engine(RenderMode::Offline, &model, &index, &tap);
    let automation = |t: f64| {
        if t < 1.0 {
            0.0
        } else if t < 2.0 {
            1.0
        } else {
            0.4
        }
    };
    run(&mut engine, &audio, automation, |_| ());
    drop(engine);
    assert_eq!(status.errors(), Vec::<String>::new());

    let (blended, ratios) = tap.collected();
    let frames = ratios.len();
    assert!(frames >= 140, "3 s at 50 frames/s minus the block in flight: {frames}");
    // In stream order, none missing: the content frames 0, 1, 2, … blended.
    let plain = plain_features(&model, &audio);
    let expected = retrieved(&load_index("fast_scan_256.index"), &plain[..frames * 256], &ratios);
    assert_eq!(blended, expected);
    assert_ne!(blended, plain[..frames * 256], "the index changed the features");
    // The ratio follows the automation a block late at most, one fifth of its range per frame.
    assert_eq!(ratios[0], 0.0);
    let first_move = ratios.iter().position(|r| *r > 0.0).unwrap();
    assert!((50..=56).contains(&first_move), "the change at 1 s reached frame {first_move}");
    for pair in ratios.windows(2) {
        assert!((pair[1] - pair[0]).abs() <= 0.2 + 1e-6, "{pair:?}");
    }
    assert!(ratios[first_move + 5..100].iter().all(|r| *r == 1.0));
    assert!((ratios[frames - 1] - 0.4).abs() < 1e-6);
}

#[test]
fn offline_renders_blend_identically() {
    let model = model_slot_with(&tiny_model(256));
    let index = index_slot_with("rvc_flat_256.index");
    let audio = input(2.0);
    let taps: Vec<Tap> = (0..2).map(|_| Tap::default()).collect();
    for tap in &taps {
        let (mut engine, _) = engine(RenderMode::Offline, &model, &index, tap);
        run(&mut engine, &audio, |t| (t / 2.0) as f32, |_| ());
    }
    // The worker may finish a block or two beyond what the render needed before the engine is
    // dropped; everything both renders computed must be identical, and that is nearly all.
    let ((a, ra), (b, rb)) = (taps[0].collected(), taps[1].collected());
    let frames = ra.len().min(rb.len());
    assert!(frames >= 85, "{frames} frames in 2 s");
    assert_eq!((&a[..frames * 256], &ra[..frames]), (&b[..frames * 256], &rb[..frames]));
}

#[test]
fn indexes_swap_between_blocks_without_a_gap_and_a_failed_load_keeps_the_last() {
    let model = model_slot_with(&tiny_model(256));
    let index = index_slot_with("fast_scan_256.index");
    let audio = input(4.0);
    let tap = Tap::default();
    let (mut engine, _) = engine(RenderMode::Realtime, &model, &index, &tap);
    let corrupt = common::scratch("voice-swap").join("corrupt.index");
    std::fs::write(&corrupt, b"IxRF not really an index").unwrap();
    let (mut asked_b, mut asked_corrupt) = (false, false);
    run(
        &mut engine,
        &audio,
        |_| 1.0,
        |position| {
            // Paced at real time, as live audio comes: the worker keeps up and takes the index
            // up live, and a busy machine's stalls stay far below what restarts the stream.
            std::thread::sleep(Duration::from_secs_f64(CALL as f64 / RATE));
            let t = position as f64 / RATE;
            if t > 1.0 && !asked_b {
                index.request(Some(fixture("rvc_flat_256.index")));
                asked_b = true;
            }
            if t > 2.5 && !asked_corrupt {
                index.wait();
                index.request(Some(corrupt.clone()));
                asked_corrupt = true;
            }
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(engine.stats().restarts(), 0, "the worker kept up with live audio");
    drop(engine);
    index.wait();
    match index.status() {
        SlotStatus::Failed { reason, kept, .. } => {
            assert!(reason.contains("not a usable index"), "{reason}");
            assert_eq!(kept, Some(fixture("rvc_flat_256.index")));
        }
        other => panic!("the corrupt file should have failed: {other:?}"),
    }

    // Every block was blended whole with one index: first A, then B from some block on, never
    // A again; the failed load changed nothing.
    let (a, b) = (load_index("fast_scan_256.index"), load_index("rvc_flat_256.index"));
    let plain = plain_features(&model, &audio);
    let mut used = Vec::new();
    for (first, blended, ratios) in tap.0.lock().unwrap().iter().filter(|block| !block.2.is_empty()) {
        let source = &plain[*first as usize * 256..][..blended.len()];
        let with_a = retrieved(&a, source, ratios) == *blended;
        let with_b = retrieved(&b, source, ratios) == *blended;
        assert!(with_a || with_b, "a block matches neither index");
        used.push(if with_b && !with_a { 'B' } else { 'A' });
    }
    let switch = used.iter().position(|u| *u == 'B').expect("index B was never used");
    assert!(used[switch..].iter().all(|u| *u == 'B'), "{used:?}");
    assert!(switch > 5, "B only became current after its request at 1 s: {used:?}");
    assert!(used.len() >= 35, "every block of 4 s was blended: {used:?}");
}

#[test]
fn a_features_index_dimension_mismatch_turns_retrieval_off_and_says_why() {
    let model = model_slot_with(&tiny_model(256));
    let index = index_slot_with("fast_scan_768.index");
    let audio = input(1.0);
    let tap = Tap::default();
    let (mut engine, status) = engine(RenderMode::Offline, &model, &index, &tap);
    run(&mut engine, &audio, |_| 1.0, |_| ());
    drop(engine);
    let (blended, _) = tap.collected();
    assert_eq!(blended, plain_features(&model, &audio)[..blended.len()], "features pass unchanged");
    let errors = status.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("index blend: ")
            && errors[0].contains("256 values per frame")
            && errors[0].contains("768-dimensional"),
        "{errors:?}"
    );
    let board = status.snapshot();
    assert!(matches!(&board[1].file, Some(SlotStatus::Ready { path, .. }) if *path == tiny_model(256)), "{board:?}");
    assert!(board[1].times.blocks > 0 && board[1].error.is_none(), "{board:?}");
}

/// A model and an index replaced in the middle of an offline render, with the worker's wait
/// for loads made unbounded: the render completes (the loader never waits for the worker, the
/// worker only for the loads), and the replacement takes effect at the same block as in a
/// render that waited for the loads before going on.
#[test]
fn files_replaced_mid_render_never_stall_it_and_apply_at_the_same_block() {
    let dir = common::scratch("voice-replace");
    let other_model = dir.join("other-256.onnx");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_hubert.py");
    let status = std::process::Command::new(common::reference_python())
        .arg(&script)
        .arg(&other_model)
        .args(["--seed", "7"])
        .status()
        .unwrap();
    assert!(status.success());
    let audio = input(3.0);
    let config = EngineConfig {
        sample_rate: RATE,
        max_buffer: CALL,
        channels: 1,
        block_ms: 100.0,
        mode: RenderMode::Offline,
        file_wait: Duration::from_secs(24 * 3600),
    };
    let block = config.block_samples();
    let replace_after_block = 12;
    let render = |wait_for_loads: bool, replace: bool| {
        let model = model_slot_with(&tiny_model(256));
        let index = index_slot_with("fast_scan_256.index");
        let tap = Tap::default();
        let (mut engine, _) = engine_with(config, &model, &index, &tap);
        let stats = engine.stats().clone();
        let mut replaced = false;
        run(
            &mut engine,
            &audio,
            |_| 0.8,
            |position| {
                // Once the worker has finished block 12, and before block 13 is complete: the
                // replacement is requested between the same two blocks in every render.
                if replace && !replaced && position > (replace_after_block + 1) * block {
                    while stats.blocks() < replace_after_block as u64 + 1 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    model.request(Some(other_model.clone()));
                    index.request(Some(fixture("rvc_flat_256.index")));
                    if wait_for_loads {
                        model.wait();
                        index.wait();
                    }
                    replaced = true;
                }
            },
        );
        drop(engine);
        tap.collected().0
    };
    // Timed for the record (the closing note's table), not asserted: machines differ.
    let timed = |wait_for_loads: bool, replace: bool| {
        let started = std::time::Instant::now();
        let features = render(wait_for_loads, replace);
        eprintln!(
            "3 s rendered offline in {:.0} ms (replacement: {replace}, loads awaited by the test: {wait_for_loads})",
            started.elapsed().as_secs_f64() * 1000.0
        );
        features
    };
    fixture("rvc_flat_256.index"); // the faiss-cpu fixtures are written once, before any timing
    let in_flight = timed(false, true);
    let waited = timed(true, true);
    let unchanged = timed(false, false);
    let frames = in_flight.len().min(waited.len()).min(unchanged.len());
    assert!(frames >= 140 * 256, "{} frames", frames / 256);
    assert!(in_flight[..frames] == waited[..frames], "the replacement took effect at another block");
    let first_difference = (0..frames).find(|&i| in_flight[i] != unchanged[i]).expect("the new files were used");
    let frame = first_difference / 256;
    assert!((60..70).contains(&frame), "the new files took effect from frame {frame}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Two instances choosing the same files hold one copy of each.
#[test]
fn slots_loading_the_same_files_share_one_copy() {
    let (first_model, second_model) = (model_slot_with(&tiny_model(768)), model_slot_with(&tiny_model(768)));
    let (first_index, second_index) = (index_slot_with("fast_scan_768.index"), index_slot_with("fast_scan_768.index"));
    let (mut a, mut b) = (first_model.reader(), second_model.reader());
    let (mut c, mut d) = (first_index.reader(), second_index.reader());
    for refreshed in [a.refresh(), b.refresh(), c.refresh(), d.refresh()] {
        assert!(refreshed);
    }
    assert!(std::ptr::eq(a.get().unwrap(), b.get().unwrap()), "one content model");
    assert!(std::ptr::eq(c.get().unwrap(), d.get().unwrap()), "one index");
    let other = index_slot_with("fast_scan_256.index");
    let mut e = other.reader();
    e.refresh();
    assert!(!std::ptr::eq(c.get().unwrap(), e.get().unwrap()), "another file is another index");
}
