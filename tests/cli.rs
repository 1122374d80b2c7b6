//! The `rvc-stage` command line: renders through the same engine as the plugin, latency
//! compensated, and explains bad input in plain words.

mod common;

use std::path::Path;
use std::process::Command;

fn rvc_stage(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rvc-stage")).args(args).output().unwrap()
}

fn read_wav(path: &Path) -> (u32, Vec<f32>) {
    let mut reader = hound::WavReader::open(path).unwrap();
    let rate = reader.spec().sample_rate;
    (rate, reader.samples::<f32>().map(Result::unwrap).collect())
}

#[test]
fn render_is_latency_compensated_and_identical_to_the_input_through_identity() {
    let dir = std::env::temp_dir().join(format!("rvc-stage-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (input, output) = (dir.join("in.wav"), dir.join("out.wav"));
    let mono = common::noise(1, 30_000, 0.5);
    common::write_wav(&input, 22_050, &[mono.clone(), mono.clone()]);
    let result = rvc_stage(&["render", input.to_str().unwrap(), "-o", output.to_str().unwrap(), "--buffer", "333"]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    assert!(String::from_utf8_lossy(&result.stdout).contains("compensated"));
    let (rate, samples) = read_wav(&output);
    assert_eq!(rate, 22_050);
    let interleaved: Vec<f32> = mono.iter().flat_map(|x| [*x, *x]).collect();
    assert_eq!(samples, interleaved);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_input_is_explained_not_crashed_on() {
    let dir = std::env::temp_dir().join(format!("rvc-stage-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.wav");
    std::fs::write(&garbage, b"RIFF\x10\x00\x00\x00WAVEnot really").unwrap();
    let out = dir.join("out.wav");
    let (g, o) = (garbage.to_str().unwrap(), out.to_str().unwrap());
    let cases: [(&[&str], &str); 6] = [
        (&["render", g, "-o", o], "cannot read"),
        (&["render", "/nonexistent.wav", "-o", o], "cannot read /nonexistent.wav"),
        (&["render", g, "-o", o, "--block-ms", "20"], "--block-ms must be within 50-500"),
        // An index blends content features: without a model it would change nothing.
        (
            &["render", g, "-o", o, "--index", "x.index"],
            "--index blends the content model's features: give the model with --hubert too",
        ),
        (
            &["render", g, "-o", o, "--context-ms", "2600"],
            "--context-ms must be within 0-2500 (the plugin's Context range), got 2600",
        ),
        (&["features", g, "-o", o, "--hubert", "m.onnx", "--context-ms=-20"], "--context-ms must be within 0-2500"),
    ];
    for (args, message) in cases {
        let result = rvc_stage(args);
        assert_eq!(result.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// With a model and an index, `render` runs the plugin's whole voice pipeline: the files load
/// (a bad one is an error naming it), and the audio passes with its latency compensated.
#[test]
fn render_runs_the_voice_pipeline_with_a_model_and_an_index() {
    let dir = common::scratch("cli-render-files");
    let (input, output) = (dir.join("in.wav"), dir.join("out.wav"));
    let mono = common::noise(2, 44_100, 0.5);
    common::write_wav(&input, 44_100, std::slice::from_ref(&mono));
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/hubert-tiny-256.onnx");
    let index = common::generated("reference_search.py").join("fast_scan_256.index");
    let (ok, text) =
        common::rvc_stage_cli(&[&"render", &input, &"-o", &output, &"--hubert", &model, &"--index", &index]);
    assert!(ok, "{text}");
    assert_eq!(read_wav(&output).1, mono);
    let wide = common::generated("reference_search.py").join("fast_scan_768.index");
    let (ok, text) =
        common::rvc_stage_cli(&[&"render", &input, &"-o", &output, &"--hubert", &model, &"--index", &wide]);
    assert!(!ok && text.contains("index blend: the content features have 256 values per frame"), "{text}");
    std::fs::remove_dir_all(dir).unwrap();
}
