//! The plugin: nice-plug glue around the [`Engine`](crate::engine::Engine), and the only place
//! that knows plugin types. `activate`/`deactivate` run on the **main thread** (they start and
//! join the engine's worker); `process` and `reset` run on the **audio thread** and only forward
//! to the engine. The editor (`editor`, GUI thread) reads what the running engine publishes; the
//! live app (`live`) runs this same plugin in nice-plug's standalone wrapper.

pub mod editor;
pub mod live;
mod params;

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;

use nice_plug::prelude::*;

use crate::engine::{Controls, Engine, EngineConfig, RenderMode};
use crate::voice::{FeatureRecorder, VoiceControls, VoiceFiles, VoiceStage};
use editor::{Running, RunningEngine, RvcEditor};
pub use params::RvcStageParams;

/// Set to a `.npy` path, the plugin records the blended content features of each activation's
/// last stream and writes them there on deactivation (float32 `[frames, dim]`, as
/// `rvc-stage features` writes them): what the worker computed, for bug reports and for
/// comparing with the CLI. Read on activation.
pub const FEATURE_DUMP_VAR: &str = "RVC_STAGE_FEATURE_DUMP";

pub struct RvcStage {
    params: Arc<RvcStageParams>,
    /// What the running engine publishes, for the editor.
    running: Arc<Running>,
    /// The running engine; `None` while inactive. Created in `activate`, so constructing the
    /// plugin (what hosts do when they scan) costs nothing.
    engine: Option<Engine<VoiceControls>>,
    /// The block length the engine was activated with; a different parameter value asks the
    /// host to re-activate the plugin.
    active_block_ms: i32,
    /// Set once a re-activation was asked for, so the host is asked only once.
    restart_requested: bool,
    /// Where the running engine's features go on deactivation ([`FEATURE_DUMP_VAR`]).
    feature_dump: Option<(PathBuf, FeatureRecorder)>,
}

impl Default for RvcStage {
    fn default() -> Self {
        let params = Arc::new(RvcStageParams::default());
        live::choose_startup_files(&params);
        RvcStage {
            params,
            running: Arc::default(),
            engine: None,
            active_block_ms: 0,
            restart_requested: false,
            feature_dump: None,
        }
    }
}

impl RvcStage {
    /// The voice pipeline for one activation, recording its features if [`FEATURE_DUMP_VAR`]
    /// asks for it.
    fn voice_stage(&mut self, config: &EngineConfig) -> VoiceStage {
        let files = VoiceFiles::new(self.params.hubert.0.reader(), self.params.index.0.reader())
            .with_pitch_model(self.params.pitch_model.0.reader())
            .with_synth(self.params.synth.0.reader());
        let stage = VoiceStage::new(files, config.sample_rate, config.block_samples());
        self.feature_dump = std::env::var_os(FEATURE_DUMP_VAR)
            .filter(|path| !path.is_empty())
            .map(|path| (PathBuf::from(path), FeatureRecorder::default()));
        match &self.feature_dump {
            Some((_, recorder)) => stage.with_tap(Box::new(recorder.clone())),
            None => stage,
        }
    }

    /// Joins the worker, then writes the feature dump if one was asked for.
    fn stop_engine(&mut self) {
        self.running.set(None);
        self.engine = None;
        if let Some((path, recorder)) = self.feature_dump.take() {
            if let Err(error) = crate::npy::write_matrix(&path, &recorder.take()) {
                nice_error!("RVC Stage cannot write its feature dump: {error}");
            }
        }
    }

    fn controls(&self) -> Controls<VoiceControls> {
        Controls {
            mix: self.params.dry_wet.value(),
            gain: util::db_to_gain(self.params.output_gain.value()),
            bypass: self.params.bypass.value(),
            stage: VoiceControls {
                index_ratio: self.params.index_ratio.value(),
                context_frames: self.params.context_frames.value().max(0) as usize,
                transpose: self.params.transpose_semitones(),
                protect: self.params.protect.value(),
                rms_mix: self.params.rms_mix.value(),
                speaker: i64::from(self.params.speaker.value()),
                silence_db: self.params.silence_threshold.value(),
                formant: self.params.formant.value(),
            },
        }
    }
}

impl Plugin for RvcStage {
    const NAME: &'static str = "RVC Stage";
    const VENDOR: &'static str = "RVC Stage";
    const URL: &'static str = "";
    const EMAIL: &'static str = "";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    // The pipeline is mono; stereo hosts get the (mono) wet signal on both channels and their
    // own stereo image on the dry path.
    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = &[
        AudioIOLayout {
            main_input_channels: NonZeroU32::new(2),
            main_output_channels: NonZeroU32::new(2),
            ..AudioIOLayout::const_default()
        },
        AudioIOLayout {
            main_input_channels: NonZeroU32::new(1),
            main_output_channels: NonZeroU32::new(1),
            ..AudioIOLayout::const_default()
        },
    ];

    // Parameter changes split the host's buffer, so the controls a worker block gets are the
    // ones in effect at its first sample, whatever the host's buffer sizes: offline renders of
    // automation repeat exactly.
    const SAMPLE_ACCURATE_AUTOMATION: bool = true;

    type SysExMessage = ();
    type BackgroundTask = ();
    type Editor = RvcEditor;

    /// Before a state's fields are applied (in key order: the model before the ONNX Runtime
    /// library it needs), the library it names is recorded, so the model's load uses it.
    fn filter_state(state: &mut PluginState) {
        params::prefer_runtime_of(state);
    }

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn editor(&mut self, _executor: AsyncExecutor<Self>) -> Option<Self::Editor> {
        (!live::headless()).then(|| RvcEditor::new(self.params.clone(), self.running.clone()))
    }

    fn activate(
        &mut self,
        layout: &AudioIOLayout,
        buffer_config: &BufferConfig,
        context: &mut impl ActivateContext<Self>,
    ) -> bool {
        // Join the previous worker before starting the next one.
        self.stop_engine();
        let block_ms = self.params.block_ms.value();
        let config = EngineConfig {
            sample_rate: f64::from(buffer_config.sample_rate),
            max_buffer: buffer_config.max_buffer_size.max(1) as usize,
            channels: layout.main_output_channels.map_or(1, NonZeroU32::get) as usize,
            block_ms: f64::from(block_ms),
            mode: match buffer_config.process_mode {
                ProcessMode::Offline => RenderMode::Offline,
                ProcessMode::Realtime | ProcessMode::Buffered => RenderMode::Realtime,
            },
            ..EngineConfig::default()
        };
        let stage = self.voice_stage(&config);
        let status = stage.status();
        match Engine::start(config, stage) {
            Ok(engine) => {
                context.set_latency_samples(engine.latency_samples() as u32);
                self.running.set(Some(RunningEngine {
                    status,
                    stats: engine.stats().clone(),
                    plan: *engine.plan(),
                    sample_rate: config.sample_rate,
                    block_ms,
                }));
                self.engine = Some(engine);
                self.active_block_ms = block_ms;
                self.restart_requested = false;
                true
            }
            Err(error) => {
                nice_error!("RVC Stage cannot activate: {error}");
                false
            }
        }
    }

    fn reset(&mut self) {
        if let Some(engine) = &mut self.engine {
            engine.reset();
        }
    }

    fn process(
        &mut self,
        buffer: &mut Buffer,
        _aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        let controls = self.controls();
        if self.params.block_ms.value() != self.active_block_ms && !self.restart_requested {
            // The block length is part of the reported latency, which may only change while
            // the plugin is inactive.
            context.request_restart();
            self.restart_requested = true;
        }
        let Some(engine) = &mut self.engine else {
            return ProcessStatus::Error("RVC Stage was not activated");
        };
        engine.process(buffer.as_slice(), controls);
        // Input that stops now still has `latency` samples to come out.
        ProcessStatus::Tail(engine.latency_samples() as u32)
    }

    fn deactivate(&mut self) {
        self.stop_engine();
    }
}

impl ClapPlugin for RvcStage {
    const CLAP_ID: &'static str = "dev.rvc-stage.voice-conversion";
    const CLAP_DESCRIPTION: Option<&'static str> = Some("Real-time retrieval-based voice conversion");
    const CLAP_MANUAL_URL: Option<&'static str> = None;
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    // What it does today: it passes the voice through while computing its features. The pitch
    // shifter category comes back with the synthesizer.
    const CLAP_FEATURES: &'static [ClapFeature] =
        &[ClapFeature::AudioEffect, ClapFeature::PitchShifter, ClapFeature::Custom("rvc-stage:voice")];
}

impl Vst3Plugin for RvcStage {
    const VST3_CLASS_ID: [u8; 16] = *b"RvcStageVoiceCnv";
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] =
        &[Vst3SubCategory::Fx, Vst3SubCategory::PitchShift, Vst3SubCategory::Custom("Voice")];
}

nice_export_clap!(RvcStage);
nice_export_vst3!(RvcStage);
