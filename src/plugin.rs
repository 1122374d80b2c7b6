//! The plugin: nice-plug glue around the [`Engine`](crate::engine::Engine), and the only place
//! that knows plugin types. `activate`/`deactivate` run on the **main thread** (they start and
//! join the engine's worker); `process` and `reset` run on the **audio thread** and only forward
//! to the engine.

mod params;

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;

use nice_plug::prelude::*;

use crate::engine::{Controls, Engine, EngineConfig, RenderMode, StageControls};
use crate::pipeline::voice_stages;
use crate::retrieval::{DiscardFeatures, FeatureRecorder, FeatureSink};
pub use params::RvcStageParams;

/// Set to a `.npy` path, the plugin records the blended content features of each activation's
/// last stream and writes them there on deactivation (float32 `[frames, dim]`, as
/// `rvc-stage features` writes them): what the worker computed, for bug reports and for
/// comparing with the CLI. Read on activation.
pub const FEATURE_DUMP_VAR: &str = "RVC_STAGE_FEATURE_DUMP";

#[derive(Default)]
pub struct RvcStage {
    params: Arc<RvcStageParams>,
    /// The running engine; `None` while inactive. Created in `activate`, so constructing the
    /// plugin (what hosts do when they scan) costs nothing.
    engine: Option<Engine>,
    /// The block length the engine was activated with; a different parameter value asks the
    /// host to re-activate the plugin.
    active_block_ms: i32,
    /// Set once a re-activation was asked for, so the host is asked only once.
    restart_requested: bool,
    /// Where the running engine's features go on deactivation ([`FEATURE_DUMP_VAR`]).
    feature_dump: Option<(PathBuf, FeatureRecorder)>,
}

impl RvcStage {
    /// The sink for the blended features: nothing until the synthesizer exists, or the
    /// recorder [`FEATURE_DUMP_VAR`] asks for.
    fn feature_sink(&mut self) -> Box<dyn FeatureSink> {
        self.feature_dump = std::env::var_os(FEATURE_DUMP_VAR)
            .filter(|path| !path.is_empty())
            .map(|path| (PathBuf::from(path), FeatureRecorder::default()));
        match &self.feature_dump {
            Some((_, recorder)) => Box::new(recorder.clone()),
            None => Box::new(DiscardFeatures),
        }
    }

    /// Joins the worker, then writes the feature dump if one was asked for.
    fn stop_engine(&mut self) {
        self.engine = None;
        if let Some((path, recorder)) = self.feature_dump.take() {
            if let Err(error) = crate::npy::write_matrix(&path, &recorder.take()) {
                nice_error!("RVC Stage cannot write its feature dump: {error}");
            }
        }
    }

    fn controls(&self) -> Controls {
        Controls {
            mix: self.params.dry_wet.value(),
            gain: util::db_to_gain(self.params.output_gain.value()),
            bypass: self.params.bypass.value(),
            stage: StageControls {
                index_ratio: self.params.index_ratio.value(),
                context_frames: self.params.context_frames.value().max(0) as usize,
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

    type SysExMessage = ();
    type BackgroundTask = ();
    type Editor = ();

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
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
        };
        let sink = self.feature_sink();
        let (model, index) = (self.params.hubert.0.reader(), self.params.index.0.reader());
        let stages = voice_stages(model, index, config.sample_rate, sink);
        match Engine::start(config, Box::new(stages.stage)) {
            Ok(engine) => {
                context.set_latency_samples(engine.latency_samples() as u32);
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
