//! An RVC synthesizer ONNX as users bring it, in either export: RVC's (`phone`,
//! `phone_lengths`, `pitch`, `pitchf`, `ds`, `rnd` → `audio [1, 1, N]`) or w-okada's (`feats`
//! f32 or f16, `p_len`, `pitch`, `pitchf`, `sid` → `audio [N]` or `[1, 1, N]`; its no-f0 variant
//! takes only `feats`, `p_len`, `sid`). Inputs are recognised by name, their shapes and dtypes
//! read from the model; the feature width, the speaker count (from the speaker embedding's
//! table) and the output rate (w-okada's JSON metadata, checked against a probe run, else the
//! probe's samples per frame × 100) are read at load, and the probe must give finite, audible
//! audio. Every mismatch is an error in words. Loaded on a loader thread, run on the worker
//! thread (the pipeline's synthesizer step).

use std::path::{Path, PathBuf};

use half::f16;
use ort::session::{Session, SessionInputValue};
use ort::value::{TensorElementType, TensorRef, ValueType};
use thiserror::Error;

use super::graph::{cut_before_decoder, replace_random_normals, speaker_count, NOISE_SEED_INPUT};
use crate::features::{ModelOptions, RuntimeError};

/// Frames the load-time probe renders.
const PROBE_FRAMES: usize = 24;
/// Output rates RVC trains at.
const RATES: [u32; 3] = [32_000, 40_000, 48_000];
/// Feature widths of RVC v1 and v2.
const DIMS: [usize; 2] = [256, 768];

#[derive(Debug, Error)]
pub enum SynthError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("{path} is not a model ONNX Runtime can load: {message}")]
    Load { path: PathBuf, message: String },
    #[error("{path} does not look like an RVC synthesizer: {problem}")]
    Contract { path: PathBuf, problem: String },
    #[error("the synthesizer failed: {0}")]
    Run(String),
}

/// What a model was recognised as, for displays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthInfo {
    /// `"RVC"` or `"w-okada"`.
    pub export: &'static str,
    /// Output sample rate in Hz.
    pub rate: u32,
    /// Content-feature values per frame it takes (256 or 768).
    pub dim: usize,
    /// Whether it follows a pitch track (NSF models); no-f0 models ignore pitch.
    pub uses_pitch: bool,
    /// Speakers its embedding table holds, when the file says.
    pub speakers: Option<usize>,
    /// Whether its features go in as float16.
    pub half_features: bool,
    /// Whether it runs cut before its decoder (the decoder then runs over the new frames only).
    pub decoder_cut: bool,
}

impl std::fmt::Display for SynthInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let version = if self.dim == 768 { "v2" } else { "v1" };
        let pitch = if self.uses_pitch { "f0" } else { "no f0" };
        write!(f, "{} export, RVC {version} {} kHz, {pitch}", self.export, self.rate / 1000)?;
        if let Some(speakers) = self.speakers.filter(|&n| n > 1) {
            write!(f, ", {speakers} speakers")?;
        }
        Ok(())
    }
}

/// The model's input names, by role.
#[derive(Debug, Clone)]
struct Inputs {
    features: String,
    lengths: String,
    speaker: String,
    /// `pitch` (coarse codes) and `pitchf` (Hz), for f0 models.
    pitch: Option<(String, String)>,
    /// RVC's prior noise `[1, channels, T]`, and its channels.
    noise: Option<(String, usize)>,
    /// Our seed input, where random nodes inside the graph were replaced (w-okada's exports).
    seed: bool,
}

/// One call's inputs: `frames` frames at 100 per second.
pub struct SynthInput<'a> {
    /// Row-major, [`SynthInfo::dim`] values per frame.
    pub features: &'a [f32],
    /// Coarse pitch codes 1…255, one per frame (ignored by no-f0 models).
    pub coarse: &'a [i64],
    /// f0 in Hz, 0 = unvoiced, one per frame.
    pub f0: &'a [f32],
    pub speaker: i64,
    /// N(0, 1)·0.66666 prior noise, channel-major `[noise_channels, frames]`; empty for
    /// models that make their own.
    pub noise: &'a [f32],
    /// Seeds the noise inside models that make their own (w-okada's), so renders repeat.
    pub seed: f32,
}

/// A loaded synthesizer.
#[derive(Debug)]
pub struct SynthModel {
    session: Session,
    inputs: Inputs,
    output: String,
    info: SynthInfo,
    half_scratch: Vec<f16>,
    runs: u64,
    /// The model cut before its decoder, when that works.
    halves: Option<DecoderHalves>,
}

/// The two halves of a model cut before its decoder (see [`cut_before_decoder`]).
#[derive(Debug)]
struct DecoderHalves {
    front: Session,
    back: Session,
    latent: String,
    crossing: Vec<String>,
    back_inputs: Vec<String>,
    latent_scratch: Vec<f32>,
}

/// The one-value inputs of a run.
struct Scalars {
    length: [i64; 1],
    speaker: [i64; 1],
    seed: [f32; 1],
}

impl Scalars {
    fn of(input: &SynthInput) -> Self {
        Scalars { length: [input.f0.len() as i64], speaker: [input.speaker], seed: [input.seed] }
    }
}

fn run_error(e: ort::Error) -> SynthError {
    SynthError::Run(e.to_string())
}

/// The model's inputs for `input`, by name (features as float16 from `half` where the model
/// takes those).
fn model_inputs<'a>(
    inputs: &Inputs,
    info: &SynthInfo,
    input: &'a SynthInput,
    scalars: &'a Scalars,
    half: &'a [f16],
) -> Result<Vec<(String, SessionInputValue<'a>)>, SynthError> {
    let frames = input.f0.len();
    let mut values: Vec<(String, SessionInputValue<'a>)> = Vec::with_capacity(7);
    let features: SessionInputValue<'a> = if info.half_features {
        TensorRef::from_array_view(([1, frames, info.dim], half)).map_err(run_error)?.into()
    } else {
        TensorRef::from_array_view(([1, frames, info.dim], input.features)).map_err(run_error)?.into()
    };
    values.push((inputs.features.clone(), features));
    values.push((
        inputs.lengths.clone(),
        TensorRef::from_array_view(([1], &scalars.length[..])).map_err(run_error)?.into(),
    ));
    values.push((
        inputs.speaker.clone(),
        TensorRef::from_array_view(([1], &scalars.speaker[..])).map_err(run_error)?.into(),
    ));
    if let Some((coarse, f0)) = &inputs.pitch {
        values
            .push((coarse.clone(), TensorRef::from_array_view(([1, frames], input.coarse)).map_err(run_error)?.into()));
        values.push((f0.clone(), TensorRef::from_array_view(([1, frames], input.f0)).map_err(run_error)?.into()));
    }
    if let Some((noise, channels)) = &inputs.noise {
        values.push((
            noise.clone(),
            TensorRef::from_array_view(([1, *channels, frames], input.noise)).map_err(run_error)?.into(),
        ));
    }
    if inputs.seed {
        values.push((
            NOISE_SEED_INPUT.into(),
            TensorRef::from_array_view(([1], &scalars.seed[..])).map_err(run_error)?.into(),
        ));
    }
    Ok(values)
}

impl SynthModel {
    /// Loads ONNX Runtime if needed (`runtime`: a user-chosen library), then the model; reads
    /// its contract and checks it with a probe run.
    pub fn load(path: &Path, runtime: Option<&Path>, options: ModelOptions) -> Result<Self, SynthError> {
        let environment = crate::features::runtime::environment(runtime)?;
        let load_error = |message: String| SynthError::Load { path: path.into(), message };
        let contract_error = |problem: String| SynthError::Contract { path: path.into(), problem };
        let bytes = std::fs::read(path).map_err(|e| load_error(e.to_string()))?;
        let speakers = speaker_count(&bytes);
        // Random nodes would make every render different: they become our seeded noise.
        let bytes = replace_random_normals(&bytes).unwrap_or(bytes);
        let session = crate::features::session(environment, &bytes, options).map_err(load_error)?;
        let (inputs, half_features, declared_dim) = inputs_of(&session).map_err(contract_error)?;
        let output = output_of(&session).map_err(contract_error)?;
        let metadata_rate = metadata_rate(&session);
        let mut model = SynthModel {
            session,
            info: SynthInfo {
                export: if inputs.features == "phone" { "RVC" } else { "w-okada" },
                rate: 0,
                dim: declared_dim.unwrap_or(DIMS[1]),
                uses_pitch: inputs.pitch.is_some(),
                speakers,
                half_features,
                decoder_cut: false,
            },
            inputs,
            output,
            half_scratch: Vec::new(),
            runs: 0,
            halves: None,
        };
        model.probe(declared_dim.is_none(), metadata_rate).map_err(contract_error)?;
        match model.cut(&bytes, environment, options) {
            Ok(()) => model.info.decoder_cut = true,
            Err(why) => {
                tracing::info!("RVC Stage: {} runs whole ({why}): its decoder runs over whole windows", path.display())
            }
        }
        Ok(model)
    }

    pub fn info(&self) -> &SynthInfo {
        &self.info
    }

    /// Times the model has run since it was loaded (the probe included).
    pub fn runs(&self) -> u64 {
        self.runs
    }

    /// Prior-noise channels per frame the caller passes ([`SynthInput::noise`]); 0 when the
    /// model makes its own.
    pub fn noise_channels(&self) -> usize {
        self.inputs.noise.as_ref().map_or(0, |(_, channels)| *channels)
    }

    /// Output samples per frame (the rate / 100).
    pub fn frame_samples(&self) -> usize {
        self.info.rate as usize / 100
    }

    /// Renders `input`'s frames into `audio` (frames × [`frame_samples`](Self::frame_samples)
    /// samples; non-finite samples become 0).
    pub fn run(&mut self, input: &SynthInput, audio: &mut Vec<f32>) -> Result<(), SynthError> {
        let frames = input.f0.len();
        self.render(input, audio)?;
        let wanted = frames * self.frame_samples();
        if audio.len() < wanted {
            return Err(SynthError::Run(format!("it gave {} samples for {frames} frames", audio.len())));
        }
        audio.truncate(wanted);
        for x in audio.iter_mut().filter(|x| !x.is_finite()) {
            *x = 0.0;
        }
        Ok(())
    }

    /// Every sample the model gives for `input`, as it gives them.
    fn render(&mut self, input: &SynthInput, audio: &mut Vec<f32>) -> Result<(), SynthError> {
        self.check(input)?;
        let scalars = Scalars::of(input);
        self.fill_half_features(input);
        let values = model_inputs(&self.inputs, &self.info, input, &scalars, &self.half_scratch)?;
        self.runs += 1;
        let outputs = self.session.run(values).map_err(run_error)?;
        let (_, samples) = outputs[self.output.as_str()].try_extract_tensor::<f32>().map_err(run_error)?;
        audio.clear();
        audio.extend_from_slice(samples);
        Ok(())
    }

    /// Whether the model runs cut before its decoder, so [`run_decoding_from`](Self::run_decoding_from)
    /// decodes only part of a window.
    pub fn decodes_separately(&self) -> bool {
        self.halves.is_some()
    }

    /// Like [`run`](Self::run), but the decoder runs only over the frames from `first` on:
    /// everything before it (text encoder, prior, flow) sees the whole window, and `audio`
    /// gets the samples of frames `first ..`. Needs a model cut before its decoder.
    pub fn run_decoding_from(
        &mut self,
        input: &SynthInput,
        first: usize,
        audio: &mut Vec<f32>,
    ) -> Result<(), SynthError> {
        self.check(input)?;
        let frames = input.f0.len();
        if first >= frames {
            return Err(SynthError::Run(format!("decoding from frame {first} of {frames}")));
        }
        let scalars = Scalars::of(input);
        self.fill_half_features(input);
        let frame_samples = self.frame_samples();
        let values = model_inputs(&self.inputs, &self.info, input, &scalars, &self.half_scratch)?;
        let halves = self.halves.as_mut().ok_or_else(|| SynthError::Run("the model is not cut".into()))?;
        self.runs += 1;
        let outputs = halves.front.run(values).map_err(run_error)?;
        // The latent of the decoded frames, and what else crosses the cut, as it came.
        let (shape, latent) = outputs[halves.latent.as_str()].try_extract_tensor::<f32>().map_err(run_error)?;
        let [1, channels, total] = **shape else {
            return Err(SynthError::Run(format!("the decoder's latent came as {:?}", &**shape)));
        };
        let (channels, total) = (channels as usize, total as usize);
        let kept = total - first;
        halves.latent_scratch.clear();
        for row in latent.chunks_exact(total).take(channels) {
            halves.latent_scratch.extend_from_slice(&row[first..]);
        }
        let mut crossing = Vec::with_capacity(halves.crossing.len());
        for name in &halves.crossing {
            let (shape, values) = outputs[name.as_str()].try_extract_tensor::<f32>().map_err(run_error)?;
            crossing.push((name.clone(), shape.to_vec(), values.to_vec()));
        }
        drop(outputs);
        let f0 = &input.f0[first..];
        let seed = [input.seed];
        let mut values: Vec<(String, SessionInputValue<'_>)> = Vec::new();
        for name in &halves.back_inputs {
            let value: SessionInputValue<'_> = if *name == halves.latent {
                TensorRef::from_array_view(([1, channels, kept], halves.latent_scratch.as_slice()))
                    .map_err(run_error)?
                    .into()
            } else if let Some((_, shape, data)) = crossing.iter().find(|(n, _, _)| n == name) {
                TensorRef::from_array_view((shape.clone(), data.as_slice())).map_err(run_error)?.into()
            } else if self.inputs.pitch.as_ref().is_some_and(|(_, pitchf)| pitchf == name) {
                TensorRef::from_array_view(([1, kept], f0)).map_err(run_error)?.into()
            } else if name == NOISE_SEED_INPUT {
                TensorRef::from_array_view(([1], &seed[..])).map_err(run_error)?.into()
            } else {
                return Err(SynthError::Run(format!("the decoder reads {name:?}, which cannot be cut to its frames")));
            };
            values.push((name.clone(), value));
        }
        let outputs = halves.back.run(values).map_err(run_error)?;
        let (_, samples) = outputs[self.output.as_str()].try_extract_tensor::<f32>().map_err(run_error)?;
        let wanted = kept * frame_samples;
        if samples.len() < wanted {
            return Err(SynthError::Run(format!("its decoder gave {} samples for {kept} frames", samples.len())));
        }
        audio.clear();
        audio.extend(samples[..wanted].iter().map(|x| if x.is_finite() { *x } else { 0.0 }));
        Ok(())
    }

    /// The halves of the model cut before its decoder, if the cut computes what the whole does
    /// (checked on the probe: the same window through both ways).
    fn cut(
        &mut self,
        bytes: &[u8],
        environment: &ort::environment::Environment,
        options: ModelOptions,
    ) -> Result<(), String> {
        let cut = cut_before_decoder(bytes).ok_or("no decoder found (no `/dec/conv_pre` convolution)")?;
        let front = crate::features::session(environment, &cut.front, options)?;
        let back = crate::features::session(environment, &cut.back, options)?;
        let back_inputs = back.inputs().iter().map(|i| i.name().to_string()).collect();
        self.halves = Some(DecoderHalves {
            front,
            back,
            latent: cut.latent,
            crossing: cut.crossing,
            back_inputs,
            latent_scratch: Vec::new(),
        });
        let (features, coarse, f0, noise) = self.probe_inputs();
        let input = SynthInput { features: &features, coarse: &coarse, f0: &f0, speaker: 0, noise: &noise, seed: 1.0 };
        let (mut whole, mut halves) = (Vec::new(), Vec::new());
        let checked = self
            .run(&input, &mut whole)
            .and_then(|()| self.run_decoding_from(&input, 0, &mut halves))
            .map_err(|e| e.to_string())
            .and_then(|()| {
                let worst = whole.iter().zip(&halves).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                if whole.len() == halves.len() && worst < 1e-4 {
                    Ok(())
                } else {
                    Err(format!("the halves differ from the whole model by {worst}"))
                }
            });
        if checked.is_err() {
            self.halves = None;
        }
        checked
    }

    /// Checks `input` against the model: frame counts, the speaker.
    fn check(&self, input: &SynthInput) -> Result<(), SynthError> {
        let frames = input.f0.len();
        let dim = self.info.dim;
        if input.features.len() != frames * dim || input.coarse.len() != frames {
            return Err(SynthError::Run(format!(
                "{} feature values and {} pitch codes for {frames} frames of {dim}",
                input.features.len(),
                input.coarse.len()
            )));
        }
        if let Some(speakers) = self.info.speakers {
            if !(0..speakers as i64).contains(&input.speaker) {
                return Err(SynthError::Run(format!(
                    "speaker {} does not exist: the model has speakers 0 to {}",
                    input.speaker,
                    speakers - 1
                )));
            }
        }
        if self.inputs.noise.as_ref().is_some_and(|(_, channels)| input.noise.len() != channels * frames) {
            return Err(SynthError::Run(format!("{} noise values for {frames} frames", input.noise.len())));
        }
        Ok(())
    }

    fn fill_half_features(&mut self, input: &SynthInput) {
        if self.info.half_features {
            self.half_scratch.clear();
            self.half_scratch.extend(input.features.iter().map(|&x| f16::from_f32(x)));
        }
    }

    /// Renders a voiced probe: finds the rate (and the feature width where the file leaves it
    /// open) and refuses models whose output is not finite audio.
    fn probe(&mut self, find_dim: bool, metadata_rate: Option<u32>) -> Result<(), String> {
        let widths: &[usize] = if find_dim { &DIMS } else { &[self.info.dim] };
        let mut failure = String::new();
        for &dim in widths.iter().rev() {
            self.info.dim = dim;
            match self.probe_run() {
                Ok(samples) => return self.check_probe(&samples, metadata_rate),
                Err(e) => failure = e,
            }
        }
        Err(format!("a probe run of {PROBE_FRAMES} frames failed: {failure}"))
    }

    fn probe_run(&mut self) -> Result<Vec<f32>, String> {
        let (features, coarse, f0, noise) = self.probe_inputs();
        let input = SynthInput { features: &features, coarse: &coarse, f0: &f0, speaker: 0, noise: &noise, seed: 1.0 };
        let mut audio = Vec::new();
        self.render(&input, &mut audio).map_err(|e| e.to_string())?;
        Ok(audio)
    }

    /// Smooth, bounded features and a steady 150 Hz voice, with silent noise.
    fn probe_inputs(&self) -> (Vec<f32>, Vec<i64>, Vec<f32>, Vec<f32>) {
        let features: Vec<f32> = (0..PROBE_FRAMES * self.info.dim).map(|i| (i as f32 * 0.37).sin() * 0.5).collect();
        let f0 = vec![150.0; PROBE_FRAMES];
        let mut coarse = Vec::new();
        crate::pitch::coarse_pitch(&f0, &mut coarse);
        (features, coarse, f0, vec![0.0; self.noise_channels() * PROBE_FRAMES])
    }

    fn check_probe(&mut self, samples: &[f32], metadata_rate: Option<u32>) -> Result<(), String> {
        if samples.is_empty() || !samples.len().is_multiple_of(PROBE_FRAMES) {
            return Err(format!("it gave {} samples for {PROBE_FRAMES} frames of 10 ms", samples.len()));
        }
        let rate = (samples.len() / PROBE_FRAMES * 100) as u32;
        if let Some(stated) = metadata_rate.filter(|&stated| stated != rate) {
            return Err(format!(
                "its metadata says {stated} Hz, but it gives {rate} Hz ({} samples per 10 ms frame)",
                rate / 100
            ));
        }
        if !RATES.contains(&rate) {
            return Err(format!("it gives {rate} Hz; RVC's synthesizers give 32, 40 or 48 kHz"));
        }
        if samples.iter().any(|x| !x.is_finite()) {
            return Err("its output is not a number (NaN or infinite) on a plain voiced probe".into());
        }
        let peak = samples.iter().fold(0f32, |m, x| m.max(x.abs()));
        if peak < 1e-6 {
            return Err("its output is silent on a voiced probe".into());
        }
        self.info.rate = rate;
        Ok(())
    }
}

/// Recognises the inputs by name: features, lengths and speaker always; `pitch` and `pitchf`
/// together (f0 models); RVC's `rnd`. Returns them, whether features are float16, and the
/// feature width the file declares.
fn inputs_of(session: &Session) -> Result<(Inputs, bool, Option<usize>), String> {
    let found = || -> Vec<String> { session.inputs().iter().map(|i| format!("{}: {}", i.name(), i.dtype())).collect() };
    let expected = "RVC's export takes phone, phone_lengths, pitch, pitchf, ds and rnd; w-okada's feats, p_len, pitch, pitchf and sid (or feats, p_len and sid)";
    let (mut features, mut lengths, mut speaker, mut coarse, mut f0, mut noise) = (None, None, None, None, None, None);
    let (mut half, mut dim, mut seed) = (false, None, false);
    for input in session.inputs() {
        let name = input.name().to_string();
        let ValueType::Tensor { ty, shape, .. } = input.dtype() else {
            return Err(format!("its input {name:?} is not a tensor"));
        };
        let wrong_type = |wanted: &str| format!("its input {name:?} is {}; {wanted}", input.dtype());
        match name.as_str() {
            "phone" | "feats" => {
                half = match ty {
                    TensorElementType::Float32 => false,
                    TensorElementType::Float16 => true,
                    _ => return Err(wrong_type("features are float32 or float16 [1, frames, 256 | 768]")),
                };
                if shape.len() != 3 {
                    return Err(wrong_type("features are [1, frames, 256 | 768]"));
                }
                dim = usize::try_from(shape[2]).ok().filter(|&d| d > 0);
                if let Some(d) = dim.filter(|d| !DIMS.contains(d)) {
                    return Err(format!(
                        "it takes {d} feature values per frame; RVC's content features have 256 or 768"
                    ));
                }
                features = Some(name);
            }
            "phone_lengths" | "p_len" | "ds" | "sid" | "pitch" if *ty != TensorElementType::Int64 => {
                return Err(wrong_type("it must be int64"));
            }
            "phone_lengths" | "p_len" => lengths = Some(name),
            "ds" | "sid" => speaker = Some(name),
            "pitch" => coarse = Some(name),
            "pitchf" | "rnd" if *ty != TensorElementType::Float32 => return Err(wrong_type("it must be float32")),
            "pitchf" => f0 = Some(name),
            "rnd" => {
                let channels = shape.get(1).and_then(|&c| usize::try_from(c).ok()).filter(|&c| c > 0).unwrap_or(192);
                noise = Some((name, channels));
            }
            NOISE_SEED_INPUT => seed = true,
            _ => {
                return Err(format!(
                    "it has an input {name:?} no RVC synthesizer has (inputs: {:?}); {expected}",
                    found()
                ))
            }
        }
    }
    let (Some(features), Some(lengths), Some(speaker)) = (features, lengths, speaker) else {
        return Err(format!("its inputs are {:?}; {expected}", found()));
    };
    let pitch = match (coarse, f0) {
        (Some(coarse), Some(f0)) => Some((coarse, f0)),
        (None, None) => None,
        _ => return Err(format!("it takes only one of pitch and pitchf (inputs: {:?}); f0 models take both", found())),
    };
    Ok((Inputs { features, lengths, speaker, pitch, noise, seed }, half, dim))
}

/// The audio: the first float32 output, `[1, 1, N]` or `[N]`.
fn output_of(session: &Session) -> Result<String, String> {
    let audio = session.outputs().iter().find(|o| {
        matches!(o.dtype(), ValueType::Tensor { ty: TensorElementType::Float32, shape, .. } if matches!(shape.len(), 1 | 3))
    });
    match audio {
        Some(output) => Ok(output.name().to_string()),
        None => {
            let outputs: Vec<String> =
                session.outputs().iter().map(|o| format!("{}: {}", o.name(), o.dtype())).collect();
            Err(format!("its outputs are {outputs:?}; a synthesizer gives float32 audio [1, 1, samples] or [samples]"))
        }
    }
}

/// The sample rate w-okada's exports state in their JSON metadata (`samplingRate`).
fn metadata_rate(session: &Session) -> Option<u32> {
    let json = session.metadata().ok()?.custom("metadata")?;
    let metadata: serde_json::Value = serde_json::from_str(&json).ok()?;
    metadata.get("samplingRate")?.as_u64().and_then(|rate| u32::try_from(rate).ok())
}
