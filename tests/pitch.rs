//! RVC's pitch formulas against numpy implementations of the same formulas
//! (`tests/fixtures/rvc_pitch.py`): the log-mel spectrogram RMVPE takes, the decoding of its
//! salience, and the coarse pitch code.

mod common;

use std::path::Path;

use rvc_stage::pitch::{coarse_pitch, decode_salience, MelSpectrogram, MEL_BANDS, UNVOICED_THRESHOLD};

fn fixtures() -> &'static Path {
    common::generated("rvc_pitch.py")
}

fn array<T: npyz::Deserialize>(name: &str) -> (Vec<u64>, Vec<T>) {
    let bytes = std::fs::read(fixtures().join(name)).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec().unwrap())
}

#[test]
fn log_mel_equals_rvcs_within_1e_4() {
    let (_, audio) = array::<f32>("audio.npy");
    let (shape, expected) = array::<f32>("mel.npy");
    let mut mel = MelSpectrogram::new();
    let mut ours = Vec::new();
    let frames = mel.compute(&audio, &mut ours);
    assert_eq!(vec![MEL_BANDS as u64, frames as u64], shape, "[128, N / 160 + 1]");
    let worst = ours.iter().zip(&expected).map(|(a, b)| (a - b).abs() / b.abs().max(1.0)).fold(0.0, f32::max);
    assert!(worst <= 1e-4, "largest difference {worst}");
    // Computed again, the same (nothing carried over between calls).
    let mut again = Vec::new();
    mel.compute(&audio, &mut again);
    assert_eq!(again, ours);
}

#[test]
fn salience_decodes_like_rvc() {
    let (_, salience) = array::<f32>("salience.npy");
    let (_, expected) = array::<f32>("f0.npy");
    let mut f0 = Vec::new();
    decode_salience(&salience, UNVOICED_THRESHOLD, &mut f0);
    assert_eq!(f0.len(), expected.len());
    for (frame, (a, b)) in f0.iter().zip(&expected).enumerate() {
        assert!((a - b).abs() <= 1e-4 * b.max(1.0), "frame {frame}: {a} vs {b}");
    }
    assert!(f0.contains(&0.0) && f0.iter().any(|f| *f > 0.0), "voiced and unvoiced frames both tested");
}

#[test]
fn coarse_pitch_equals_get_f0_post() {
    let (_, f0) = array::<f32>("f0_in.npy");
    let (_, expected) = array::<i64>("coarse.npy");
    let mut codes = Vec::new();
    coarse_pitch(&f0, &mut codes);
    assert_eq!(codes, expected);
}
