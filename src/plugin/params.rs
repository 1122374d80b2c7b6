//! The plugin's parameters, all in one place. Read on the audio thread (lock-free atomics),
//! written by the host from any thread.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use nice_plug::params::persist::PersistentField;
use nice_plug::prelude::*;

use super::editor::view::FileRole;
use crate::engine::slot::{Slot, SlotStatus};
use crate::engine::BLOCK_MS_RANGE;
use crate::features::{model_slot, prefer_runtime_from_state, ContentModel, ModelOptions, ModelSlot, Precision};
use crate::pitch::{pitch_model_slot, PitchModelSlot, RmvpeModel};
use crate::retrieval::IndexSlot;
use crate::synth::{synth_slot, SynthModel, SynthSlot};
use crate::voice::{VoiceControls, CONTEXT_FRAMES_MAX, SILENCE_OFF_DB};

/// One content-feature frame (50 per second).
const CONTENT_FRAME_MS: i32 = 20;
/// The persisted key of the ONNX Runtime library path.
const RUNTIME_KEY: &str = "onnxruntime-path";

/// Raises the content model's ONNX Runtime threads for every instance started in this
/// environment (1 by default).
pub const MODEL_THREADS_VAR: &str = "RVC_STAGE_MODEL_THREADS";
/// `int8` runs the content model's matrix products in int8 (float32 by default).
pub const MODEL_PRECISION_VAR: &str = "RVC_STAGE_MODEL_PRECISION";

fn model_options() -> ModelOptions {
    let threads = std::env::var(MODEL_THREADS_VAR).ok().and_then(|value| value.trim().parse().ok());
    let int8 = std::env::var(MODEL_PRECISION_VAR).is_ok_and(|value| value.trim().eq_ignore_ascii_case("int8"));
    let defaults = ModelOptions::default();
    ModelOptions {
        intra_threads: threads.filter(|n| (1..=64).contains(n)).unwrap_or(defaults.intra_threads),
        precision: if int8 { Precision::Int8 } else { defaults.precision },
        ..defaults
    }
}

#[derive(Params)]
pub struct RvcStageParams {
    /// Latency-compensated dry output (crossfaded). Hosts show it as the plugin's bypass.
    #[id = "bypass"]
    pub bypass: BoolParam,
    /// Share of processed signal in the output.
    #[id = "mix"]
    pub dry_wet: FloatParam,
    /// Gain after mixing, in dB.
    #[id = "gain"]
    pub output_gain: FloatParam,
    /// Worker block length in milliseconds. Longer blocks give the neural stages more context
    /// and headroom at the cost of latency. It is part of the reported latency, so changing it
    /// makes the host re-activate the plugin (a short pause in playback in most hosts).
    #[id = "block"]
    pub block_ms: IntParam,
    /// How far the voice's content features are pulled towards the index's (RVC's index
    /// rate): 0 leaves them, 1 replaces them with the weighted nearest training vectors.
    /// Smoothed per feature frame on the worker.
    #[id = "index_ratio"]
    pub index_ratio: FloatParam,
    /// Left context the content model sees for each block, in 20 ms content frames (shown in
    /// milliseconds). More context gives features closer to the model's view of the whole
    /// phrase and costs worker time (the transformer runs over context + block). RVC recomputes
    /// 2.5 s every block.
    #[id = "context"]
    pub context_frames: IntParam,
    /// Pitch shift of the voice in semitones (an octave is 12), applied to the f0 track from
    /// the next worker block on.
    #[id = "transpose"]
    pub transpose: IntParam,
    /// Fine pitch shift in cents (a semitone is 100), added to Transpose.
    #[id = "fine_tune"]
    pub fine_tune: IntParam,
    /// RVC's protect: on unvoiced frames (breaths, consonants) the features keep only this
    /// share of the index blend. 0.5 turns it off; lower protects more.
    #[id = "protect"]
    pub protect: FloatParam,
    /// RVC's RMS mix: 0 gives the converted voice the input's loudness contour, 1 keeps the
    /// synthesizer's own.
    #[id = "rms_mix"]
    pub rms_mix: FloatParam,
    /// RVC's formant shift, in semitones: moves the voice's timbre (its formants) up or down
    /// without changing its pitch.
    #[id = "formant"]
    pub formant: FloatParam,
    /// The synthesizer's speaker, for models trained on several voices.
    #[id = "speaker"]
    pub speaker: IntParam,
    /// Worker blocks quieter than this skip all inference (saving the CPU) and put out
    /// silence, faded. −60 dB turns it off.
    #[id = "silence"]
    pub silence_threshold: FloatParam,
    /// The feature index (`.index` file), saved with the project. Restoring a state loads it
    /// in the background; the previous index stays in use until the new one is ready.
    #[persist = "index-path"]
    pub index: SlotFile<crate::retrieval::FeatureIndex>,
    /// The content model (HuBERT / ContentVec `.onnx`), saved with the project and loaded in
    /// the background like the index.
    #[persist = "hubert-path"]
    pub hubert: SlotFile<Mutex<ContentModel>>,
    /// An RMVPE pitch model (`.onnx`, RVC's or w-okada's export), saved with the project and
    /// loaded in the background like the others; without one the built-in estimator runs.
    #[persist = "pitch-model-path"]
    pub pitch_model: SlotFile<Mutex<RmvpeModel>>,
    /// The RVC synthesizer (`.onnx`, RVC's or w-okada's export), saved with the project and
    /// loaded in the background like the others; without one the voice passes dry.
    #[persist = "synth-path"]
    pub synth: SlotFile<Mutex<SynthModel>>,
    /// `libonnxruntime.so.1.31.1` to use before the usual places (see the README). ONNX
    /// Runtime loads once per process, so this matters only until the first model is loaded.
    #[persist = "onnxruntime-path"]
    pub onnxruntime: RuntimeFile,
    /// The editor window's size in logical points.
    #[persist = "editor-size"]
    pub editor_size: super::editor::EditorSize,
}

/// The ONNX Runtime library path in the plugin state. Changing it while no runtime is loaded
/// yet loads the chosen content, pitch and synthesizer models again (the library may be what it lacked, and a load
/// still running may have started without it; the newest request wins).
#[derive(Debug)]
pub struct RuntimeFile {
    path: Arc<RwLock<Option<String>>>,
    model: Arc<ModelSlot>,
    pitch_model: Arc<PitchModelSlot>,
    synth: Arc<SynthSlot>,
}

impl<'a> PersistentField<'a, Option<String>> for RuntimeFile {
    fn set(&self, path: Option<String>) {
        let path = path.filter(|p| !p.is_empty());
        let changed = *self.path.read().unwrap_or_else(|e| e.into_inner()) != path;
        *self.path.write().unwrap_or_else(|e| e.into_inner()) = path;
        if changed && crate::features::runtime_path().is_none() {
            if !matches!(self.model.status(), SlotStatus::Ready { .. }) {
                self.model.request(self.model.chosen());
            }
            if !matches!(self.pitch_model.status(), SlotStatus::Ready { .. }) {
                self.pitch_model.request(self.pitch_model.chosen());
            }
            if !matches!(self.synth.status(), SlotStatus::Ready { .. }) {
                self.synth.request(self.synth.chosen());
            }
        }
    }

    fn map<F, R>(&self, f: F) -> R
    where
        F: Fn(&Option<String>) -> R,
    {
        f(&self.path.read().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Records the ONNX Runtime library a state about to be restored names, before its fields are
/// applied (see [`prefer_runtime_from_state`]).
pub fn prefer_runtime_of(state: &PluginState) {
    if let Some(data) = state.fields.get(RUNTIME_KEY) {
        if let Ok(path) = nice_plug::params::persist::deserialize_field::<Option<String>>(data) {
            prefer_runtime_from_state(path.filter(|p| !p.is_empty()).map(PathBuf::from));
        }
    }
}

/// A file path in the plugin state, backed by the [`Slot`] that loads it: restoring a state
/// starts loading the file.
#[derive(Debug)]
pub struct SlotFile<T: Send + Sync + 'static>(pub Arc<Slot<T>>);

impl<'a, T: Send + Sync + 'static> PersistentField<'a, Option<String>> for SlotFile<T> {
    fn set(&self, path: Option<String>) {
        let path = path.filter(|p| !p.is_empty()).map(PathBuf::from);
        let unchanged = self.0.chosen() == path && !matches!(self.0.status(), SlotStatus::Failed { .. });
        if !unchanged {
            self.0.request(path);
        }
    }

    fn map<F, R>(&self, f: F) -> R
    where
        F: Fn(&Option<String>) -> R,
    {
        f(&self.0.chosen().map(|path| path.to_string_lossy().into_owned()))
    }
}

impl RvcStageParams {
    /// Transpose plus Fine Tune, in semitones.
    pub fn transpose_semitones(&self) -> f32 {
        self.transpose.value() as f32 + self.fine_tune.value() as f32 / 100.0
    }

    /// Starts loading `path` as the file for `role` (on a loader thread); `None` turns its step
    /// off. Returns at once.
    pub fn choose_file(&self, role: FileRole, path: Option<PathBuf>) {
        match role {
            FileRole::ContentModel => self.hubert.0.request(path),
            FileRole::Index => self.index.0.request(path),
            FileRole::PitchModel => self.pitch_model.0.request(path),
            FileRole::Synthesizer => self.synth.0.request(path),
        }
    }

    /// How loading the file for `role` went.
    pub fn file_status(&self, role: FileRole) -> SlotStatus {
        match role {
            FileRole::ContentModel => self.hubert.0.status(),
            FileRole::Index => self.index.0.status(),
            FileRole::PitchModel => self.pitch_model.0.status(),
            FileRole::Synthesizer => self.synth.0.status(),
        }
    }
}

impl Default for RvcStageParams {
    fn default() -> Self {
        let runtime = Arc::new(RwLock::new(None));
        let hubert = Arc::new(model_slot(runtime.clone(), model_options()));
        let pitch_model = Arc::new(pitch_model_slot(runtime.clone()));
        let synth = Arc::new(synth_slot(runtime.clone(), model_options()));
        let voice = VoiceControls::default();
        Self {
            bypass: BoolParam::new("Bypass", false)
                .with_value_to_string(formatters::v2s_bool_bypass())
                .with_string_to_value(formatters::s2v_bool_bypass())
                .make_bypass(),
            dry_wet: FloatParam::new("Dry/Wet", 1.0, FloatRange::Linear { min: 0.0, max: 1.0 })
                .with_unit("%")
                .with_value_to_string(formatters::v2s_f32_percentage(0))
                .with_string_to_value(formatters::s2v_f32_percentage()),
            output_gain: FloatParam::new("Output Gain", 0.0, FloatRange::Linear { min: -36.0, max: 12.0 })
                .with_unit(" dB")
                .with_step_size(0.1)
                .with_value_to_string(formatters::v2s_f32_rounded(1)),
            block_ms: IntParam::new(
                "Block Size",
                100,
                IntRange::Linear { min: *BLOCK_MS_RANGE.start() as i32, max: *BLOCK_MS_RANGE.end() as i32 },
            )
            .with_unit(" ms")
            .non_automatable(),
            index_ratio: FloatParam::new(
                "Index Ratio",
                VoiceControls::default().index_ratio,
                FloatRange::Linear { min: 0.0, max: 1.0 },
            )
            .with_value_to_string(formatters::v2s_f32_rounded(2)),
            context_frames: IntParam::new(
                "Context",
                VoiceControls::default().context_frames as i32,
                IntRange::Linear { min: 0, max: CONTEXT_FRAMES_MAX as i32 },
            )
            .with_value_to_string(Arc::new(|frames| format!("{} ms", frames * CONTENT_FRAME_MS)))
            .with_string_to_value(Arc::new(|text| {
                let ms: f32 = text.trim().trim_end_matches("ms").trim().parse().ok()?;
                Some((ms / CONTENT_FRAME_MS as f32).round() as i32)
            }))
            .non_automatable(),
            transpose: IntParam::new("Transpose", 0, IntRange::Linear { min: -24, max: 24 }).with_unit(" st"),
            fine_tune: IntParam::new("Fine Tune", 0, IntRange::Linear { min: -100, max: 100 }).with_unit(" ct"),
            protect: FloatParam::new("Protect", voice.protect, FloatRange::Linear { min: 0.0, max: 0.5 })
                .with_step_size(0.01)
                .with_value_to_string(formatters::v2s_f32_rounded(2)),
            rms_mix: FloatParam::new("RMS Mix", voice.rms_mix, FloatRange::Linear { min: 0.0, max: 1.0 })
                .with_step_size(0.01)
                .with_value_to_string(formatters::v2s_f32_rounded(2)),
            formant: FloatParam::new("Formant", voice.formant, FloatRange::Linear { min: -2.0, max: 2.0 })
                .with_unit(" st")
                .with_step_size(0.05)
                .with_value_to_string(formatters::v2s_f32_rounded(2)),
            speaker: IntParam::new("Speaker", voice.speaker as i32, IntRange::Linear { min: 0, max: 255 }),
            silence_threshold: FloatParam::new(
                "Silence Threshold",
                voice.silence_db,
                FloatRange::Linear { min: SILENCE_OFF_DB, max: 0.0 },
            )
            .with_step_size(1.0)
            .with_value_to_string(Arc::new(
                |db| {
                    if db <= SILENCE_OFF_DB {
                        "off".into()
                    } else {
                        format!("{db:.0} dB")
                    }
                },
            ))
            .with_string_to_value(Arc::new(|text| {
                let text = text.trim();
                if text.eq_ignore_ascii_case("off") {
                    return Some(SILENCE_OFF_DB);
                }
                text.trim_end_matches("dB").trim().parse().ok()
            })),
            index: SlotFile(Arc::new(IndexSlot::default())),
            hubert: SlotFile(hubert.clone()),
            pitch_model: SlotFile(pitch_model.clone()),
            synth: SlotFile(synth.clone()),
            onnxruntime: RuntimeFile { path: runtime, model: hubert, pitch_model, synth },
            editor_size: Default::default(),
        }
    }
}
