//! The plugin: nice-plug glue around the [`Engine`](crate::engine::Engine), and the only place
//! that knows plugin types. `activate`/`deactivate` run on the **main thread** (they start and
//! join the engine's worker); `process` and `reset` run on the **audio thread** and only forward
//! to the engine.

mod params;

use std::num::NonZeroU32;
use std::sync::Arc;

use nice_plug::prelude::*;

use crate::engine::{Controls, Engine, EngineConfig, RenderMode, StageControls};
use crate::pipeline::voice_stages;
pub use params::RvcStageParams;

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
}

impl RvcStage {
    fn controls(&self) -> Controls {
        Controls {
            mix: self.params.dry_wet.value(),
            gain: util::db_to_gain(self.params.output_gain.value()),
            bypass: self.params.bypass.value(),
            stage: StageControls { index_ratio: self.params.index_ratio.value() },
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
        self.engine = None;
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
        let stages = voice_stages(self.params.hubert.0.reader(), self.params.index.0.reader(), config.sample_rate);
        match Engine::start(config, stages) {
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
        self.engine = None;
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
