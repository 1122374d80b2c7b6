//! Content models through ONNX Runtime: the committed tiny HuBERT-shaped models (random
//! weights, RVC's I/O contract) give the frame counts of the contract and the same features as
//! the ONNX Runtime Python API; wrong files and a missing or wrong runtime library are plain
//! errors, never a panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use rvc_stage::features::{frames_for, ContentModel, ModelError, ModelOptions, Precision};
use rvc_stage::npy::{read_matrix, write_matrix, Matrix};

fn runtime() -> PathBuf {
    std::env::var_os("RVC_STAGE_ONNXRUNTIME").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap())
            .join(".cache/rvc-stage/onnxruntime-1.31.1/libonnxruntime.so.1.31.1")
    })
}

fn model_path(dim: usize) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/models/hubert-tiny-{dim}.onnx"))
}

fn load(path: &Path) -> Result<ContentModel, ModelError> {
    ContentModel::load(path, Some(&runtime()), ModelOptions::default())
}

fn python(args: &[&dyn AsRef<std::ffi::OsStr>]) {
    let status = Command::new(common::reference_python()).args(args).status().unwrap();
    assert!(status.success());
}

/// Writes `name`.onnx with the fixture script and `args` (tiny, 256 wide unless they say
/// otherwise) into `dir`.
fn make_model(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(format!("{name}.onnx"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_hubert.py");
    let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&script, &path];
    all.extend(args.iter().map(|arg| arg as &dyn AsRef<std::ffi::OsStr>));
    python(&all);
    path
}

/// Same length, and every value within `tolerance` (relative above 1, absolute below).
fn assert_close(ours: &[f32], expected: &[f32], tolerance: f32, what: &str) {
    assert_eq!(ours.len(), expected.len(), "{what}");
    for (a, b) in ours.iter().zip(expected) {
        assert!((a - b).abs() <= tolerance * b.abs().max(1.0), "{what}: {a} vs {b}");
    }
}

/// What the ONNX Runtime Python API computes for `samples`.
fn reference(model: &Path, samples: &[f32], dir: &Path) -> Matrix {
    let (audio, out) = (dir.join("audio.npy"), dir.join("out.npy"));
    write_matrix(&audio, &Matrix { rows: 1, cols: samples.len(), data: samples.to_vec() }).unwrap();
    // The script wants [N]: flatten the one-row matrix on its side.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run_onnx.py");
    let flatten = format!("import numpy as np; np.save('{0}', np.load('{0}')[0])", audio.display());
    python(&[&"-c", &flatten]);
    python(&[&script, &model, &audio, &out]);
    read_matrix(&out).unwrap()
}

#[test]
fn tiny_models_follow_the_contract_and_match_onnxruntime_in_python() {
    let dir = common::scratch("content-reference");
    for dim in [256, 768] {
        let mut model = load(&model_path(dim)).unwrap();
        assert_eq!((model.dim(), model.input_name(), model.output_name()), (dim, "source", "embed"));
        for samples in [399, 400, 719, 720, 16_000, 16_013] {
            let audio = common::noise(samples as u64, samples, 0.5);
            let mut features = Vec::new();
            let frames = model.run(&audio, &mut features).unwrap();
            assert_eq!(frames, frames_for(samples), "{samples} samples");
            assert_eq!(features.len(), frames * dim);
            if frames == 0 {
                continue;
            }
            let expected = reference(&model_path(dim), &audio, &dir);
            assert_eq!((expected.rows, expected.cols), (frames, dim));
            assert_close(&features, &expected.data, 1e-4, &format!("dim {dim}, {samples} samples"));
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// Int8 models: our load-time rewrite computes what ONNX Runtime's own `quantize_dynamic`
/// model computes (same pattern, same weight rounding), stays close to float32, and is still
/// cut after its front end.
#[test]
fn int8_models_match_onnxruntime_quantize_dynamic() {
    let dir = common::scratch("content-int8");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quantize_dynamic.py");
    for dim in [256, 768] {
        let reference_model = dir.join(format!("reference-int8-{dim}.onnx"));
        python(&[&script, &model_path(dim), &reference_model]);
        let options = ModelOptions { precision: Precision::Int8, ..ModelOptions::default() };
        let mut int8 = ContentModel::load(&model_path(dim), Some(&runtime()), options).unwrap();
        assert_eq!(int8.precision(), Precision::Int8);
        assert!(int8.is_split(), "the quantized model is still cut after its front end");
        let mut float = load(&model_path(dim)).unwrap();
        let audio = common::noise(dim as u64, 16_013, 0.5);
        let (mut ours, mut float_features) = (Vec::new(), Vec::new());
        int8.run(&audio, &mut ours).unwrap();
        float.run(&audio, &mut float_features).unwrap();
        let expected = reference(&reference_model, &audio, &dir);
        assert_close(&ours, &expected.data, 1e-3, &format!("dim {dim}"));
        assert_ne!(ours, float_features, "int8 is not float32");
        let cosine = cosine(&ours, &float_features);
        assert!(cosine > 0.99, "dim {dim}: cosine to float32 {cosine}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// Older exports declare every initializer as a graph input too: such a model loads, is cut
/// after its front end, and its int8 version still has one input.
#[test]
fn initializers_declared_as_inputs_are_fine_in_float32_and_int8() {
    let dir = common::scratch("content-initializer-inputs");
    let path = make_model(&dir, "old-export", &["--initializers-as-inputs"]);
    let audio = common::noise(6, 4000, 0.5);
    for precision in [Precision::Float32, Precision::Int8] {
        let options = ModelOptions { precision, ..ModelOptions::default() };
        let mut model = ContentModel::load(&path, Some(&runtime()), options).unwrap();
        assert_eq!((model.precision(), model.input_name()), (precision, "source"));
        assert!(model.is_split(), "{precision:?}");
        let mut features = Vec::new();
        assert_eq!(model.run(&audio, &mut features).unwrap(), frames_for(4000));
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// Exports name their input differently: the name is read from the model.
#[test]
fn the_input_name_is_read_from_the_model() {
    let dir = common::scratch("content-input-name");
    let path = make_model(&dir, "wav", &["--input-name", "wav"]);
    let mut model = load(&path).unwrap();
    assert_eq!(model.input_name(), "wav");
    let mut features = Vec::new();
    assert_eq!(model.run(&common::noise(4, 4000, 0.5), &mut features).unwrap(), frames_for(4000));
    assert!(model.is_split());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn rank_two_inputs_are_accepted() {
    let dir = common::scratch("content-rank2");
    let path = make_model(&dir, "rank2", &["--rank", "2", "--dim", "768"]);
    let mut model = load(&path).unwrap();
    let mut features = Vec::new();
    assert_eq!(model.run(&common::noise(3, 4000, 0.5), &mut features).unwrap(), frames_for(4000));
    assert!(model.is_split(), "the front end's end is found behind the input's Unsqueeze too");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A model whose output needs more than the front end's output (here the raw input) cannot be
/// cut: it runs whole, and still right.
#[test]
fn models_that_cannot_be_cut_run_whole() {
    let dir = common::scratch("content-uncut");
    let path = make_model(&dir, "shortcut", &["--input-shortcut"]);
    let mut model = load(&path).unwrap();
    assert!(!model.is_split());
    let audio = common::noise(5, 5000, 0.5);
    let mut features = Vec::new();
    assert_eq!(model.run(&audio, &mut features).unwrap(), frames_for(5000));
    let expected = reference(&path, &audio, &dir);
    assert_close(&features, &expected.data, 1e-4, "uncut model");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn wrong_model_files_are_explained() {
    let dir = common::scratch("content-wrong");
    let good = std::fs::read(model_path(256)).unwrap();
    let truncated = dir.join("truncated.onnx");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let odd_width = make_model(&dir, "odd-width", &["--dim", "100"]);
    let two_inputs = make_model(&dir, "two-inputs", &["--padding-mask"]);
    let cases = [
        (truncated, "is not a model ONNX Runtime can load"),
        (odd_width, "has 100 values per frame; RVC uses 256 or 768"),
        (two_inputs, r#"it has 2 inputs (["source", "padding_mask"]); a content model has one, the audio"#),
        (dir.join("missing.onnx"), "is not a model ONNX Runtime can load"),
    ];
    for (path, expected) in cases {
        let error = load(&path).unwrap_err().to_string();
        assert!(error.contains(expected) && error.contains(&*path.to_string_lossy()), "{error}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// A stand-in for an older ONNX Runtime (1.16): the entry point ort calls first, reporting
/// that version, and no API of the version we need. Built with the system C compiler.
fn old_runtime(dir: &Path) -> PathBuf {
    let source = dir.join("old_runtime.c");
    std::fs::write(
        &source,
        r#"typedef struct {
    const void *(*GetApi)(unsigned version);
    const char *(*GetVersionString)(void);
} OrtApiBase;
static const void *get_api(unsigned version) { (void)version; return 0; }
static const char *version_string(void) { return "1.16.3"; }
static const OrtApiBase base = { get_api, version_string };
const OrtApiBase *OrtGetApiBase(void) { return &base; }
"#,
    )
    .unwrap();
    let library = dir.join("libonnxruntime.so.1.16.3");
    let status = Command::new("cc").args(["-shared", "-fPIC", "-o"]).arg(&library).arg(&source).status().unwrap();
    assert!(status.success(), "cc could not build the stand-in library");
    library
}

/// The runtime is loaded once per process, so each broken-runtime case runs in a child.
#[test]
fn a_missing_or_wrong_runtime_library_is_an_error_not_a_panic() {
    if let Some(case) = std::env::var_os("RVC_STAGE_RUNTIME_CASE") {
        let explicit = PathBuf::from(case);
        let result = ContentModel::load(&model_path(256), Some(&explicit), ModelOptions::default());
        println!("ERROR: {}", result.unwrap_err());
        return;
    }
    let dir = common::scratch("content-runtime");
    let broken = dir.join("libonnxruntime.so.1.31.1");
    std::fs::write(&broken, &std::fs::read(runtime()).unwrap()[..4096]).unwrap();
    let old = old_runtime(&dir);
    let cases = [
        (PathBuf::from("/nonexistent/libonnxruntime.so.1.31.1"), "was not found; looked for /nonexistent"),
        (PathBuf::from("/lib/x86_64-linux-gnu/libm.so.6"), "does not export `OrtGetApiBase`"),
        (broken, "cannot be used: it is truncated"),
        (old, "expected version >= '1.31.x', but got '1.16.3'"),
    ];
    for (library, expected) in cases {
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["a_missing_or_wrong_runtime_library_is_an_error_not_a_panic", "--exact", "--nocapture"])
            .env("RVC_STAGE_RUNTIME_CASE", &library)
            // Nothing else may be found: no ORT_DYLIB_PATH, no setup cache.
            .env_remove("ORT_DYLIB_PATH")
            .env("RVC_STAGE_CACHE", "/nonexistent")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{library:?}: the child failed\n{text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(text.contains(expected), "{library:?}: {text}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// The tiny models (unnamed tensors, as community exports) are cut after their conv front end,
/// found by its strides, and the halves compute what the whole
/// model does: on every frame, whatever the input length.
#[test]
fn models_split_after_the_front_end_compute_the_same_features() {
    for dim in [256, 768] {
        let mut split = load(&model_path(dim)).unwrap();
        assert!(split.is_split(), "the cut is found by the front end's strides");
        let whole_options = ModelOptions { split_front_end: false, ..ModelOptions::default() };
        let mut whole = ContentModel::load(&model_path(dim), Some(&runtime()), whole_options).unwrap();
        assert!(!whole.is_split());
        for samples in [400, 720, 5_000, 16_013] {
            let audio = common::noise(samples as u64, samples, 0.5);
            let (mut conv, mut ours, mut reference) = (Vec::new(), Vec::new(), Vec::new());
            let (frames, channels) = split.front_end(&audio, &mut conv).unwrap();
            assert_eq!((frames, conv.len()), (frames_for(samples), frames * channels));
            assert_eq!(split.transformer(&conv, &mut ours).unwrap(), frames);
            whole.run(&audio, &mut reference).unwrap();
            assert_close(&ours, &reference, 1e-4, &format!("dim {dim}, {samples} samples"));
        }
    }
}

/// Streams 16 kHz audio through the content-feature step block by block, trimming the shared
/// buffer as the pipeline does; returns every frame it emitted.
fn streamed(path: &Path, options: ModelOptions, audio: &[f32], block: usize, context: usize) -> Vec<f32> {
    use rvc_stage::voice::{Audio16k, ContentFeatures};
    let runtime = Some(runtime().to_string_lossy().into_owned());
    let slot = rvc_stage::features::model_slot(std::sync::Arc::new(std::sync::RwLock::new(runtime)), options);
    slot.request(Some(path.to_path_buf()));
    slot.wait();
    let mut step = ContentFeatures::new(slot.reader());
    let mut buffer = Audio16k::default();
    let mut frames = rvc_stage::voice::Frames::default();
    let mut emitted = Vec::new();
    for samples in audio.chunks_exact(block) {
        buffer.append(samples);
        step.take_up_model(&buffer);
        step.frames(&buffer, context, &mut frames).unwrap();
        if frames.count() > 0 {
            assert_eq!(frames.first() as usize, emitted.len() / step.dim().unwrap(), "frames come in stream order");
        }
        emitted.extend_from_slice(frames.values());
        buffer.trim_before(step.keep_from().unwrap());
    }
    emitted
}

/// The streamed features equal an independent reference of the scheme in Python (ONNX
/// Runtime's Python API on the same windows: the whole model over context + block, or the cut
/// model's front half over each block's new samples and its back half over the context's
/// front-end frames), frame by frame — an off-by-one frame or a wrong context fails.
#[test]
fn streamed_features_equal_the_python_reference_block_by_block() {
    let dir = common::scratch("content-stream");
    let audio = common::noise(9, 3 * 16_000 + 777, 0.4);
    let audio_path = dir.join("audio.npy");
    write_matrix(&audio_path, &Matrix { rows: 1, cols: audio.len(), data: audio.clone() }).unwrap();
    let flatten = format!("import numpy as np; np.save('{0}', np.load('{0}')[0])", audio_path.display());
    python(&[&"-c", &flatten]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stream_reference.py");
    let path = model_path(768);
    let halves = rvc_stage::features::split_after_front_end(&std::fs::read(&path).unwrap(), 320).unwrap();
    let (front, back) = (dir.join("front.onnx"), dir.join("back.onnx"));
    std::fs::write(&front, &halves.front).unwrap();
    std::fs::write(&back, &halves.back).unwrap();
    // 100 ms and 230 ms blocks, with a context shorter than the stream (so it is cut) and none.
    for (block, context) in [(1600, 25), (3680, 7), (1600, 0)] {
        for split in [false, true] {
            let options = ModelOptions { split_front_end: split, ..ModelOptions::default() };
            assert_eq!(ContentModel::load(&path, Some(&runtime()), options).unwrap().is_split(), split);
            let ours = streamed(&path, options, &audio, block, context);
            let out = dir.join("expected.npy");
            let (b, c) = (block.to_string(), context.to_string());
            let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&script, &audio_path, &b, &c, &out];
            if split {
                args.extend([&"split" as &dyn AsRef<std::ffi::OsStr>, &front, &back, &halves.cut]);
            } else {
                args.extend([&"whole" as &dyn AsRef<std::ffi::OsStr>, &path]);
            }
            python(&args);
            let expected = read_matrix(&out).unwrap();
            let what = format!("block {block}, context {context}, split {split}");
            assert_eq!(ours.len(), expected.data.len(), "{what}: frames");
            for (frame, (a, b)) in ours.chunks(768).zip(expected.data.chunks(768)).enumerate() {
                assert_close(a, b, 1e-4, &format!("{what}, frame {frame}"));
            }
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}
