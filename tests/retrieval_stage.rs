//! The retrieval path the plugin runs, end to end through the engine, with a test feature
//! source standing in for the content-feature stage (which does not exist yet): known frames
//! go in with the host's audio, Index Ratio automation travels with the samples, indexes are
//! loaded and swapped by the slot under running audio, and the blended frames that come out
//! must be exactly what the worker's retrieval path (`rvc-stage retrieve`) computes.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rvc_stage::engine::slot::SlotStatus;
use rvc_stage::engine::{Controls, Engine, EngineConfig, RenderMode, StageControls};
use rvc_stage::npy::{read_matrix, Matrix};
use rvc_stage::retrieval::{
    FeatureIndex, FeatureSink, FeatureSource, IndexSlot, RetrievalStage, Retriever, SearchSettings, FRAME_RATE,
};

const RATE: f64 = 44_100.0;

/// Emits the rows of a feature matrix, cycling, at 50 frames per second of host audio.
struct KnownFeatures {
    rows: Matrix,
    samples: u64,
    emitted: u64,
}

impl FeatureSource for KnownFeatures {
    fn dim(&self) -> Option<usize> {
        Some(self.rows.cols)
    }

    fn frames_for(&mut self, block: &[f32], frames: &mut Vec<f32>) {
        self.samples += block.len() as u64;
        let complete = (self.samples as f64 * FRAME_RATE / RATE).floor() as u64;
        while self.emitted < complete {
            frames.extend_from_slice(self.rows.row(self.emitted as usize % self.rows.rows));
            self.emitted += 1;
        }
    }

    fn reset(&mut self) {
        (self.samples, self.emitted) = (0, 0);
    }
}

/// One block as the sink received it: blended frames and their ratios.
type Block = (Vec<f32>, Vec<f32>);

/// Everything the stage hands on, block by block.
#[derive(Clone, Default)]
struct Tap(Arc<Mutex<Vec<Block>>>);

impl FeatureSink for Tap {
    fn accept(&mut self, frames: &[f32], ratios: &[f32]) {
        self.0.lock().unwrap().push((frames.to_vec(), ratios.to_vec()));
    }
}

fn fixture(name: &str) -> PathBuf {
    common::generated("reference_search.py").join(name)
}

fn queries() -> Matrix {
    read_matrix(&fixture("fast_scan_256.queries.npy")).unwrap()
}

fn engine(mode: RenderMode, slot: &IndexSlot, tap: &Tap) -> Engine {
    let source = KnownFeatures { rows: queries(), samples: 0, emitted: 0 };
    let stage = RetrievalStage::new(Box::new(source), Box::new(tap.clone()), slot.reader());
    let config = EngineConfig { sample_rate: RATE, max_buffer: 512, channels: 1, block_ms: 100.0, mode };
    Engine::start(config, Box::new(stage)).unwrap()
}

/// Runs `seconds` of noise in 512-sample calls; `ratio_at(t)` is the Index Ratio at time t.
fn run(engine: &mut Engine, seconds: f64, ratio_at: impl Fn(f64) -> f32, mut between_calls: impl FnMut(f64)) {
    let input = common::noise(5, (seconds * RATE) as usize, 0.3);
    for (call, chunk) in input.chunks(512).enumerate() {
        let t = (call * 512) as f64 / RATE;
        let mut samples = chunk.to_vec();
        let controls = Controls {
            stage: StageControls { index_ratio: ratio_at(t), ..StageControls::default() },
            ..Controls::default()
        };
        nice_assert_no_alloc::assert_no_alloc(|| engine.process(&mut [&mut samples[..]], controls));
        between_calls(t);
    }
}

fn load(slot: &IndexSlot, name: &str) {
    slot.request(Some(fixture(name)));
    slot.wait();
    assert!(matches!(slot.status(), SlotStatus::Ready { .. }), "{:?}", slot.status());
}

/// The frames and ratios the tap saw, flattened.
fn collected(tap: &Tap) -> (Vec<f32>, Vec<f32>) {
    let blocks = tap.0.lock().unwrap();
    (blocks.iter().flat_map(|b| b.0.clone()).collect(), blocks.iter().flat_map(|b| b.1.clone()).collect())
}

/// What `rvc-stage retrieve` computes for these frames and ratios.
fn retrieved(index: &FeatureIndex, frames: &[f32], ratios: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; frames.len()];
    let mut retriever = Retriever::new(index, ratios.len().max(1));
    retriever.retrieve(index, frames, ratios, &mut out).unwrap();
    out
}

fn source_frames(count: usize) -> Vec<f32> {
    let rows = queries();
    (0..count).flat_map(|f| rows.row(f % rows.rows).to_vec()).collect()
}

#[test]
fn automated_ratio_blends_every_frame_like_the_retrieve_command() {
    let slot = IndexSlot::default();
    load(&slot, "fast_scan_256.index");
    let tap = Tap::default();
    let mut engine = engine(RenderMode::Offline, &slot, &tap);
    let automation = |t: f64| {
        if t < 1.0 {
            0.0
        } else if t < 2.0 {
            1.0
        } else {
            0.4
        }
    };
    run(&mut engine, 3.0, automation, |_| ());
    drop(engine);

    let (blended, ratios) = collected(&tap);
    let frames = ratios.len();
    assert!(frames >= 140, "3 s at 50 frames/s minus the block in flight: {frames}");
    // In stream order, none missing: the source's frames 0, 1, 2, … blended.
    let index = FeatureIndex::load(&fixture("fast_scan_256.index"), SearchSettings::default()).unwrap();
    assert_eq!(blended, retrieved(&index, &source_frames(frames), &ratios));
    // The ratio follows the automation a block late at most, one fifth of its range per frame.
    assert_eq!(ratios[0], 0.0);
    let first_move = ratios.iter().position(|r| *r > 0.0).unwrap();
    assert!((50..=55).contains(&first_move), "the change at 1 s reached frame {first_move}");
    for pair in ratios.windows(2) {
        assert!((pair[1] - pair[0]).abs() <= 0.2 + 1e-6, "{pair:?}");
    }
    assert!(ratios[first_move + 5..100].iter().all(|r| *r == 1.0));
    assert!((ratios[frames - 1] - 0.4).abs() < 1e-6);
}

#[test]
fn offline_renders_blend_identically() {
    let slot = IndexSlot::default();
    load(&slot, "rvc_flat_256.index");
    let taps: Vec<Tap> = (0..2).map(|_| Tap::default()).collect();
    for tap in &taps {
        let mut engine = engine(RenderMode::Offline, &slot, tap);
        run(&mut engine, 2.0, |t| (t / 2.0) as f32, |_| ());
    }
    // The worker may finish a block or two beyond what the render needed before the engine is
    // dropped; everything both renders computed must be identical, and that is nearly all.
    let ((a, ra), (b, rb)) = (collected(&taps[0]), collected(&taps[1]));
    let frames = ra.len().min(rb.len());
    assert!(frames >= 85, "{frames} frames in 2 s");
    assert_eq!((&a[..frames * 256], &ra[..frames]), (&b[..frames * 256], &rb[..frames]));
}

#[test]
fn indexes_swap_between_blocks_without_a_gap_and_a_failed_load_keeps_the_last() {
    let slot = IndexSlot::default();
    load(&slot, "fast_scan_256.index");
    let tap = Tap::default();
    let mut engine = engine(RenderMode::Realtime, &slot, &tap);
    let corrupt = std::env::temp_dir().join(format!("rvc-stage-corrupt-{}.index", std::process::id()));
    std::fs::write(&corrupt, b"IxRF not really an index").unwrap();
    let (mut asked_b, mut asked_corrupt) = (false, false);
    run(
        &mut engine,
        4.0,
        |_| 1.0,
        |t| {
            // Paced near real time, so the worker keeps up and takes the index up live.
            std::thread::sleep(Duration::from_secs_f64(512.0 / RATE / 4.0));
            if t > 1.0 && !asked_b {
                slot.request(Some(fixture("rvc_flat_256.index")));
                asked_b = true;
            }
            if t > 2.5 && !asked_corrupt {
                slot.wait();
                slot.request(Some(corrupt.clone()));
                asked_corrupt = true;
            }
        },
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && tap.0.lock().unwrap().len() < 35 {
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(engine);
    slot.wait();
    match slot.status() {
        SlotStatus::Failed { reason, kept, .. } => {
            assert!(reason.contains("not a usable index"), "{reason}");
            assert_eq!(kept, Some(fixture("rvc_flat_256.index")));
        }
        other => panic!("the corrupt file should have failed: {other:?}"),
    }
    std::fs::remove_file(corrupt).unwrap();

    // Every block was blended whole with one index: first A, then B from some block on, never
    // A again; the failed load changed nothing.
    let settings = SearchSettings::default();
    let a = FeatureIndex::load(&fixture("fast_scan_256.index"), settings).unwrap();
    let b = FeatureIndex::load(&fixture("rvc_flat_256.index"), settings).unwrap();
    let blocks = tap.0.lock().unwrap().clone();
    let mut frame = 0;
    let mut used = Vec::new();
    for (blended, ratios) in &blocks {
        let source = &source_frames(frame + ratios.len())[frame * 256..];
        frame += ratios.len();
        if ratios.is_empty() {
            continue;
        }
        let with_a = retrieved(&a, source, ratios) == *blended;
        let with_b = retrieved(&b, source, ratios) == *blended;
        assert!(with_a || with_b, "a block matches neither index");
        used.push(if with_b && !with_a { 'B' } else { 'A' });
    }
    let switch = used.iter().position(|u| *u == 'B').expect("index B was never used");
    assert!(used[switch..].iter().all(|u| *u == 'B'), "{used:?}");
    assert!(switch > 5, "B only became current after its request at 1 s: {used:?}");
}

#[test]
fn a_features_index_dimension_mismatch_turns_retrieval_off_and_says_why() {
    let slot = IndexSlot::default();
    load(&slot, "fast_scan_768.index");
    let tap = Tap::default();
    let source = KnownFeatures { rows: queries(), samples: 0, emitted: 0 };
    let stage = RetrievalStage::new(Box::new(source), Box::new(tap.clone()), slot.reader());
    let problem = stage.problem();
    let config =
        EngineConfig { sample_rate: RATE, max_buffer: 512, channels: 1, block_ms: 100.0, mode: RenderMode::Offline };
    let mut engine = Engine::start(config, Box::new(stage)).unwrap();
    run(&mut engine, 1.0, |_| 1.0, |_| ());
    drop(engine);
    let (blended, ratios) = collected(&tap);
    assert_eq!(blended, source_frames(ratios.len()), "features pass unchanged");
    let problem = problem.lock().unwrap().clone().unwrap();
    assert!(problem.contains("256 values per frame") && problem.contains("768-dimensional"), "{problem}");
}
