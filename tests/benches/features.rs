//! `cargo xtask bench`: the content model's cost per block against its left context, on a
//! HuBERT-base-size model (random weights, generated once into `~/.cache/rvc-stage/bench`),
//! one ONNX Runtime thread, the two schemes of `ContentFeatures`: "whole" runs the model over
//! the new samples plus the context; "split" runs the conv front end over the new samples only
//! and the transformer over the cached front-end frames of the context. Whole with 2.5 s is
//! RVC's schedule, measured in the same run. Cosine: the new frames against the same frames
//! computed with the whole 12 s clip as context by the float32 model. (The front end's
//! first-layer GroupNorm normalises over time, so split frames are not exactly whole frames: the
//! cosine shows it.) "split, int8" is the same model with its matrix products quantized at load.

use std::time::Instant;

use rvc_stage::features::{frames_for, ContentModel, ModelOptions, Precision, HOP};

#[path = "shared/cache.rs"]
mod cache;
use cache::base_model;

const RATE: usize = 16_000;
const CLIP_S: f64 = 12.0;

fn main() {
    let model_path = base_model();
    let mut model = ContentModel::load(&model_path, None, ModelOptions::default()).expect("the base model loads");
    assert!(model.is_split(), "the base fixture is cut after its front end (found by its strides)");
    // A cut model keeps only its halves, so the whole-model rows load it whole.
    let whole_options = ModelOptions { split_front_end: false, ..ModelOptions::default() };
    let mut whole = ContentModel::load(&model_path, None, whole_options).expect("the base model loads whole");
    let int8_options = ModelOptions { precision: Precision::Int8, ..ModelOptions::default() };
    let mut int8 = ContentModel::load(&model_path, None, int8_options).expect("the base model quantizes");
    assert!(int8.precision() == Precision::Int8 && int8.is_split());
    let audio = voice_like((CLIP_S * RATE as f64) as usize);
    let mut reference = Vec::new();
    whole.run(&audio, &mut reference).unwrap();
    let dim = model.dim();
    println!(
        "content model per block: HuBERT-base-size ({}), one thread; cosine of new frames vs float32 whole-clip context",
        model_path.display()
    );
    println!();
    println!("| block | scheme | context | ms per block (median) | real-time factor | × cheaper than RVC | cosine mean / min |");
    println!("|---:|---|---:|---:|---:|---:|---:|");
    for block_s in [0.1, 0.25] {
        let rvc = measure(&mut whole, &audio, &reference, dim, block_s, 2.5, false);
        let schemes = [("whole", false, false), ("split", true, false), ("split, int8", true, true)];
        for (scheme, split, quantized) in schemes {
            for context_s in [0.5, 1.0, 2.5] {
                let is_rvc = context_s == 2.5 && !split;
                let ours = match (is_rvc, quantized) {
                    (true, _) => rvc,
                    (false, false) if !split => measure(&mut whole, &audio, &reference, dim, block_s, context_s, false),
                    (false, false) => measure(&mut model, &audio, &reference, dim, block_s, context_s, true),
                    (false, true) => measure(&mut int8, &audio, &reference, dim, block_s, context_s, split),
                };
                let scheme = if is_rvc { "whole (RVC's schedule)" } else { scheme };
                println!(
                    "| {block_s} s | {scheme} | {context_s} s | {:.1} | {:.3} | {:.2} | {:.4} / {:.4} |",
                    ours.median_ms,
                    ours.median_ms / (block_s * 1000.0),
                    rvc.median_ms / ours.median_ms,
                    ours.cosine_mean,
                    ours.cosine_min
                );
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Measured {
    median_ms: f64,
    cosine_mean: f64,
    cosine_min: f64,
}

/// Streams the clip in blocks after the first 3 s (so every window is full), as
/// `ContentFeatures` does: windows start on a frame boundary; `split` runs the front end over
/// the new samples only and the transformer over cached front-end frames.
fn measure(
    model: &mut ContentModel,
    audio: &[f32],
    reference: &[f32],
    dim: usize,
    block_s: f64,
    context_s: f64,
    split: bool,
) -> Measured {
    let block = (block_s * RATE as f64) as usize;
    let context_frames = (context_s * RATE as f64 / HOP as f64).round() as usize;
    let (mut times, mut cosines) = (Vec::new(), Vec::new());
    let mut produced = frames_for(3 * RATE);
    let mut end = 3 * RATE + block;
    let mut features = Vec::new();
    // Front-end frames of the warm-up, as the stream would have cached them block by block.
    let mut conv = Vec::new();
    if split {
        let mut at = 0;
        while at < produced {
            let upto = (at + block / HOP).min(produced);
            model.front_end(&audio[at * HOP..(upto - 1) * HOP + 400], &mut conv).unwrap();
            at = upto;
        }
    }
    while end <= audio.len() {
        let complete = frames_for(end);
        let first = produced.saturating_sub(context_frames);
        features.clear();
        let start = Instant::now();
        if split {
            let (_, channels) = model.front_end(&audio[produced * HOP..end], &mut conv).unwrap();
            model.transformer(&conv[first * channels..], &mut features).unwrap();
        } else {
            model.run(&audio[first * HOP..end], &mut features).unwrap();
        }
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        for frame in produced..complete {
            let ours = &features[(frame - first) * dim..][..dim];
            cosines.push(cosine(ours, &reference[frame * dim..][..dim]));
        }
        produced = complete;
        end += block;
    }
    times.sort_by(f64::total_cmp);
    Measured {
        median_ms: times[times.len() / 2],
        cosine_mean: cosines.iter().sum::<f64>() / cosines.len() as f64,
        cosine_min: cosines.iter().copied().fold(1.0, f64::min),
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b)).max(1e-30)
}

/// A voiced-speech-like test signal: a gliding fundamental with harmonics and syllable-rate
/// amplitude changes, plus a little noise.
fn voice_like(len: usize) -> Vec<f32> {
    let mut rng = fastrand::Rng::with_seed(4);
    let mut phase = 0.0f64;
    (0..len)
        .map(|n| {
            let t = n as f64 / RATE as f64;
            let f0 = 140.0 + 40.0 * (2.0 * std::f64::consts::PI * 0.7 * t).sin();
            phase += 2.0 * std::f64::consts::PI * f0 / RATE as f64;
            let voiced: f64 = (1..8).map(|h| (h as f64 * phase).sin() / h as f64).sum();
            let envelope = 0.5 + 0.5 * (2.0 * std::f64::consts::PI * 4.0 * t).sin().abs();
            (0.2 * voiced * envelope + 0.01 * (rng.f64() * 2.0 - 1.0)) as f32
        })
        .collect()
}
