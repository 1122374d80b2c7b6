//! RMVPE pitch models as users bring them, in either contract (read from the model's inputs):
//! RVC's `rmvpe.onnx` takes RVC's log-mel `[1, 128, T']` (T' padded with zeros to a multiple of
//! 32) and gives a 360-bin salience `[1, T', 360]`, decoded here as RVC does; w-okada's export
//! takes the waveform `[1, N]` and a threshold `[1]` and gives f0 in Hz, one frame per 160
//! samples from the first. Anything else is an error naming what was found, and so is a model
//! whose output on a probe tone is not finite. Loaded on a loader
//! thread, run on the worker thread (the pipeline's pitch step, when the user chose a model).

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::{TensorElementType, TensorRef, ValueType};
use thiserror::Error;

use super::{decode_salience, MelSpectrogram, MEL_BANDS, MEL_HOP, UNVOICED_THRESHOLD};
use crate::features::{ModelOptions, RuntimeError};

/// The threshold w-okada and vc-rs pass to w-okada's export.
const WOKADA_THRESHOLD: f32 = 0.3;
/// RMVPE's U-Net halves the time axis five times: frames go in multiples of 32.
const FRAME_MULTIPLE: usize = 32;

#[derive(Debug, Error)]
pub enum PitchModelError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("{path} is not a model ONNX Runtime can load: {message}")]
    Load { path: PathBuf, message: String },
    #[error("{path} does not look like an RMVPE pitch model: {problem}")]
    Contract { path: PathBuf, problem: String },
    #[error("the pitch model failed: {0}")]
    Run(String),
}

/// Which of the two exports a file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RmvpeContract {
    /// RVC's: log-mel in, salience out.
    Mel { input: String, output: String },
    /// w-okada's: waveform and threshold in, f0 out.
    Waveform { waveform: String, threshold: String, output: String },
}

impl std::fmt::Display for RmvpeContract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RmvpeContract::Mel { .. } => "RMVPE, RVC export (log-mel in)",
            RmvpeContract::Waveform { .. } => "RMVPE, w-okada export (waveform in)",
        })
    }
}

/// A loaded RMVPE model.
#[derive(Debug)]
pub struct RmvpeModel {
    session: Session,
    contract: RmvpeContract,
    mel: Option<MelSpectrogramBox>,
    /// The log-mel, band-major, and the same padded to whole 32-frame groups.
    bands: Vec<f32>,
    scratch: Vec<f32>,
}

/// The mel computer, boxed so `RmvpeModel` stays `Debug` without printing FFT plans.
struct MelSpectrogramBox(MelSpectrogram);

impl std::fmt::Debug for MelSpectrogramBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MelSpectrogram")
    }
}

impl RmvpeModel {
    /// Loads ONNX Runtime if needed (`runtime`: a user-chosen library), then the model, and
    /// reads its contract.
    pub fn load(path: &Path, runtime: Option<&Path>) -> Result<Self, PitchModelError> {
        let environment = crate::features::runtime::environment(runtime)?;
        let load_error = |message: String| PitchModelError::Load { path: path.into(), message };
        let bytes = std::fs::read(path).map_err(|e| load_error(e.to_string()))?;
        let session = crate::features::session(environment, &bytes, ModelOptions::default()).map_err(load_error)?;
        let contract =
            contract_of(&session).map_err(|problem| PitchModelError::Contract { path: path.into(), problem })?;
        let mel = matches!(contract, RmvpeContract::Mel { .. }).then(|| MelSpectrogramBox(MelSpectrogram::new()));
        let mut model = RmvpeModel { session, contract, mel, bands: Vec::new(), scratch: Vec::new() };
        model.probe().map_err(|problem| PitchModelError::Contract { path: path.into(), problem })?;
        Ok(model)
    }

    /// Runs the model on 0.2 s of a 200 Hz tone: it must give finite values, one per frame.
    fn probe(&mut self) -> Result<(), String> {
        let tone: Vec<f32> =
            (0..3200).map(|n| (std::f32::consts::TAU * 200.0 * n as f32 / 16_000.0).sin() * 0.3).collect();
        self.f0(&tone, &mut Vec::new()).map_err(|e| format!("a probe run failed: {e}"))
    }

    pub fn contract(&self) -> &RmvpeContract {
        &self.contract
    }

    /// f0 in Hz (0 = unvoiced) of `audio` (16 kHz), one frame per 160 samples from the first
    /// (`N / 160 + 1` frames), into `f0`.
    pub fn f0(&mut self, audio: &[f32], f0: &mut Vec<f32>) -> Result<(), PitchModelError> {
        let run_error = |e: ort::Error| PitchModelError::Run(e.to_string());
        let frames = audio.len() / MEL_HOP + 1;
        f0.clear();
        match &self.contract {
            RmvpeContract::Mel { input, output } => {
                let mel = &mut self.mel.as_mut().expect("made for this contract").0;
                mel.compute(audio, &mut self.bands);
                let padded = frames.div_ceil(FRAME_MULTIPLE) * FRAME_MULTIPLE;
                self.scratch.clear();
                self.scratch.resize(MEL_BANDS * padded, 0.0);
                for (band, row) in self.bands.chunks_exact(frames).enumerate() {
                    self.scratch[band * padded..][..frames].copy_from_slice(row);
                }
                let tensor =
                    TensorRef::from_array_view(([1, MEL_BANDS, padded], self.scratch.as_slice())).map_err(run_error)?;
                let outputs = self.session.run(ort::inputs![input.as_str() => tensor]).map_err(run_error)?;
                let (shape, salience) = outputs[output.as_str()].try_extract_tensor::<f32>().map_err(run_error)?;
                if **shape != [1, padded as i64, super::SALIENCE_BINS as i64] {
                    return Err(PitchModelError::Run(format!("salience of shape {:?}", &**shape)));
                }
                let salience = &salience[..frames * super::SALIENCE_BINS];
                if salience.iter().any(|x| !x.is_finite()) {
                    return Err(PitchModelError::Run("its output is not a number (NaN or infinite)".into()));
                }
                decode_salience(salience, UNVOICED_THRESHOLD, f0);
            }
            RmvpeContract::Waveform { waveform, threshold, output } => {
                let samples = TensorRef::from_array_view(([1, audio.len()], audio)).map_err(run_error)?;
                let limit = [WOKADA_THRESHOLD];
                let limit = TensorRef::from_array_view(([1], &limit[..])).map_err(run_error)?;
                let outputs = self
                    .session
                    .run(ort::inputs![waveform.as_str() => samples, threshold.as_str() => limit])
                    .map_err(run_error)?;
                let (_, hz) = outputs[output.as_str()].try_extract_tensor::<f32>().map_err(run_error)?;
                if hz.len() < frames {
                    return Err(PitchModelError::Run(format!("{} f0 frames where {frames} were due", hz.len())));
                }
                if hz[..frames].iter().any(|f| !f.is_finite()) {
                    return Err(PitchModelError::Run("its output is not a number (NaN or infinite)".into()));
                }
                f0.extend(hz[..frames].iter().map(|f| f.max(0.0)));
            }
        }
        if f0.len() != frames {
            return Err(PitchModelError::Run(format!("{} f0 frames where {frames} were due", f0.len())));
        }
        Ok(())
    }
}

/// RVC's contract (one float input `[1, 128, T]`) or w-okada's (`waveform` and `threshold`).
fn contract_of(session: &Session) -> Result<RmvpeContract, String> {
    let float_shape = |dtype: &ValueType| match dtype {
        ValueType::Tensor { ty: TensorElementType::Float32, shape, .. } => Some(shape.to_vec()),
        _ => None,
    };
    let inputs: Vec<(&str, Option<Vec<i64>>)> =
        session.inputs().iter().map(|i| (i.name(), float_shape(i.dtype()))).collect();
    let output = session.outputs().first().map(|o| o.name().to_string()).ok_or("it has no output")?;
    match inputs.as_slice() {
        [(name, Some(shape))] if shape.len() == 3 && shape[1] == MEL_BANDS as i64 => {
            Ok(RmvpeContract::Mel { input: name.to_string(), output })
        }
        [_, _] if inputs.iter().any(|(n, _)| *n == "waveform") && inputs.iter().any(|(n, _)| *n == "threshold") => {
            Ok(RmvpeContract::Waveform { waveform: "waveform".into(), threshold: "threshold".into(), output })
        }
        _ => {
            let found: Vec<String> =
                session.inputs().iter().map(|i| format!("{:?}: {}", i.name(), i.dtype())).collect();
            Err(format!(
                "its inputs are {found:?}; RVC's rmvpe.onnx takes one float32 log-mel [1, 128, frames], w-okada's export takes `waveform` and `threshold`"
            ))
        }
    }
}
