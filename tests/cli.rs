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
    let cases: [(&[&str], &str); 3] = [
        (&["render", garbage.to_str().unwrap(), "-o", out.to_str().unwrap()], "cannot read"),
        (&["render", "/nonexistent.wav", "-o", out.to_str().unwrap()], "cannot read /nonexistent.wav"),
        (
            &["render", garbage.to_str().unwrap(), "-o", out.to_str().unwrap(), "--block-ms", "20"],
            "--block-ms must be within 50-500",
        ),
    ];
    for (args, message) in cases {
        let result = rvc_stage(args);
        assert_eq!(result.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
