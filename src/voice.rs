//! The voice-conversion pipeline: one [`Stage`] built from typed steps, each in its own module,
//! in the order audio flows — read [`VoiceStage::convert`] top to bottom:
//!
//! 1. [`to_model_rate`]: host rate → 16 kHz, into the buffer every 16 kHz step reads;
//! 2. [`content`] features and [`pitch`] (the built-in estimator), both from that buffer;
//! 3. [`index_blend`]: content frames pulled towards the index's voice;
//! 4. [`synthesizer`]: the converted voice, rendered over a short window and stitched (SOLA);
//! 5. [`to_host_rate`]: the voice back at the host's rate, at a constant delay.
//!
//! Without a synthesizer the stage passes its (mono) input on, delayed by its latency; a block
//! the synthesizer cannot make (it failed, or a model was just taken up) passes dry through the
//! engine's crossfades.
//!
//! Built on the main thread (plugin activation, the CLI), run on the worker thread. The plugin
//! and the CLI run this same code. Every step reports its outcome on the [`VoiceStatus`] board.

mod content;
mod index_blend;
mod pitch;
mod resampler;
mod status;
mod synthesizer;
mod to_host_rate;
mod to_model_rate;

use std::sync::{Arc, Mutex};

pub use content::{ContentFeatures, DEFAULT_CONTEXT_FRAMES};
pub use pitch::{PitchFrames, PITCH_HOP};
pub use status::{Step, StepStatus, StepTimes, VoiceStatus};
use synthesizer::LOOKAHEAD as SYNTH_LOOKAHEAD;
pub use to_model_rate::Audio16k;

use crate::engine::{BlockFailed, FileWait, Stage};
use crate::features::ModelReader;
use crate::npy::Matrix;
use crate::pitch::PitchModelReader;
use crate::retrieval::IndexReader;
use crate::rt::DelayLine;
use crate::synth::SynthReader;
use index_blend::IndexBlend;
use pitch::Pitch;
use status::StatusWriter;
use synthesizer::{ModelAudio, Synthesizer};
use to_host_rate::ToHostRate;
use to_model_rate::ToModelRate;

/// The longest content context the controls accept: RVC's own (2.5 s, 125 frames of 20 ms).
pub const CONTEXT_FRAMES_MAX: usize = 125;

/// Host-automated values the pipeline reads. The engine sends them with every worker block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VoiceControls {
    /// How far content features are pulled towards the index's voice, 0 ..= 1 (RVC's
    /// `index_rate`).
    pub index_ratio: f32,
    /// Left context the content model sees for each block, in 20 ms content frames (at most
    /// [`CONTEXT_FRAMES_MAX`]).
    pub context_frames: usize,
    /// Pitch shift in semitones (Transpose plus Fine Tune's cents / 100).
    pub transpose: f32,
    /// RVC's protect, 0 ..= 0.5: on unvoiced frames the features keep this share of the
    /// blend (the rest unblended); 0.5 turns it off.
    pub protect: f32,
    /// RVC's RMS mix rate, 0 ..= 1: 0 gives the voice the input's loudness contour, 1 keeps
    /// the synthesizer's own.
    pub rms_mix: f32,
    /// The synthesizer's speaker id.
    pub speaker: i64,
    /// RVC's formant shift in semitones (−2 ..= 2): moves the voice's formants, not its pitch.
    pub formant: f32,
    /// Blocks quieter than this (dB RMS) skip all inference and put out silence (RVC's
    /// threshold); at [`SILENCE_OFF_DB`] or below, off.
    pub silence_db: f32,
}

/// The Silence Threshold value that turns the gate off (RVC's −60 dB).
pub const SILENCE_OFF_DB: f32 = -60.0;

impl Default for VoiceControls {
    fn default() -> Self {
        // RVC's own defaults (index rate, protect and RMS mix as its web UI has them).
        Self {
            index_ratio: 0.75,
            context_frames: DEFAULT_CONTEXT_FRAMES,
            transpose: 0.0,
            protect: 0.33,
            rms_mix: 0.25,
            speaker: 0,
            formant: 0.0,
            silence_db: SILENCE_OFF_DB,
        }
    }
}

/// The files the pipeline reads, as the worker sees them.
pub struct VoiceFiles {
    pub model: ModelReader,
    pub index: IndexReader,
    /// An RMVPE pitch model; without one (or with none loaded) the built-in estimator runs.
    pub pitch_model: Option<PitchModelReader>,
    /// The synthesizer; without one the voice passes dry.
    pub synth: Option<SynthReader>,
}

impl VoiceFiles {
    /// A content model and an index, with the built-in pitch estimator.
    pub fn new(model: ModelReader, index: IndexReader) -> Self {
        VoiceFiles { model, index, pitch_model: None, synth: None }
    }

    /// Converts the voice with the synthesizer of `synth` when it has one.
    pub fn with_synth(self, synth: SynthReader) -> Self {
        VoiceFiles { synth: Some(synth), ..self }
    }

    /// Tracks pitch with the RMVPE model of `pitch_model` when it has one.
    pub fn with_pitch_model(self, pitch_model: PitchModelReader) -> Self {
        VoiceFiles { pitch_model: Some(pitch_model), ..self }
    }
}

/// Content frames of one block: `count` frames of `dim` values, the first of them frame
/// number `first` of the stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frames {
    first: u64,
    dim: usize,
    values: Vec<f32>,
}

impl Frames {
    pub fn first(&self) -> u64 {
        self.first
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn count(&self) -> usize {
        self.values.len() / self.dim.max(1)
    }

    /// Row-major values, `dim` per frame.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    fn values_mut(&mut self) -> &mut [f32] {
        &mut self.values
    }

    /// No frames; the next would be number `first`.
    fn clear(&mut self, first: u64) {
        self.first = first;
        self.values.clear();
    }

    fn set(&mut self, first: u64, dim: usize, values: &[f32]) {
        (self.first, self.dim) = (first, dim);
        self.values.clear();
        self.values.extend_from_slice(values);
    }

    fn copy_from(&mut self, other: &Frames) {
        self.set(other.first, other.dim, &other.values);
    }
}

/// Sees every block's blended frames: `rvc-stage features`, the plugin's feature dump, tests.
pub trait FeatureTap: Send {
    /// One block's blended frames and the index ratio each was blended with.
    fn frames(&mut self, frames: &Frames, ratios: &[f32]);
    /// Whether this tap reads pitch (the pitch step runs only when something does).
    fn wants_pitch(&self) -> bool {
        false
    }
    /// One block's pitch frames.
    fn pitch(&mut self, _pitch: &PitchFrames) {}
    /// The stream restarts.
    fn reset(&mut self) {}
}

/// The voice-conversion stage.
pub struct VoiceStage {
    /// The resampler, or why the host rate cannot be resampled.
    to_model_rate: Result<ToModelRate, String>,
    content: ContentFeatures,
    pitch: Pitch,
    index_blend: IndexBlend,
    synthesizer: Synthesizer,
    to_host_rate: ToHostRate,
    tap: Option<Box<dyn FeatureTap>>,
    status: StatusWriter,
    /// What flows between the steps, kept so blocks allocate nothing once warmed up.
    audio_16k: Audio16k,
    frames: Frames,
    f0: PitchFrames,
    blended: Frames,
    voice: ModelAudio,
    latency: usize,
    /// The input delayed by the latency: the output while no synthesizer is in use.
    passthrough: DelayLine,
    delayed: Vec<f32>,
}

/// The pipeline's latency in host samples, and the voice queue's part of it: everything
/// before the synthesizer decides a frame at most [`pitch::DECISION_LAG`] 16 kHz samples (plus
/// the 16 kHz resampler's delay) after its start, the synthesizer looks [`SYNTH_LOOKAHEAD`]
/// frames further, and its output lags by the SOLA margin (centred on the search range).
fn latency(host_rate: f64, to_model_rate: &Result<ToModelRate, String>) -> (usize, ToHostRate) {
    let delay_16k = to_model_rate.as_ref().map_or(0, |resampler| resampler.delay()) as u64;
    let lag_16k = delay_16k + pitch::DECISION_LAG + SYNTH_LOOKAHEAD * PITCH_HOP as u64;
    let to_host_rate = ToHostRate::new(host_rate, lag_16k as f64 * host_rate / f64::from(crate::features::SAMPLE_RATE));
    let frame = host_rate / 100.0;
    let sola = synthesizer::SOLA_OVERLAP_FRAMES as f64 + synthesizer::SOLA_SEARCH_FRAMES as f64 / 2.0;
    let latency = to_host_rate.queue_delay() as usize + (sola * frame).round() as usize;
    (latency, to_host_rate)
}

/// What lightens the worker when it is late (the log and the editor say it).
pub const LAG_ADVICE: &str = "a longer Block Size, a shorter Context or RVC_STAGE_MODEL_PRECISION=int8 lighten it; \
     a 32 or 40 kHz synthesizer is lighter than a 48 kHz one";

/// The pipeline's latency in host samples at `host_rate` with blocks of `block` samples, as
/// [`VoiceStage::new`] would report it (for displays that preview a setting).
pub fn latency_samples(host_rate: f64, block: usize) -> usize {
    latency(host_rate, &ToModelRate::new(host_rate, block)).0
}

impl VoiceStage {
    /// The pipeline for a host at `host_rate` whose engine runs blocks of `block` samples
    /// ([`EngineConfig::block_samples`](crate::engine::EngineConfig::block_samples)). Its
    /// latency follows from these two alone, whatever files are loaded.
    pub fn new(files: VoiceFiles, host_rate: f64, block: usize) -> Self {
        let to_model_rate = ToModelRate::new(host_rate, block);
        let (latency, to_host_rate) = latency(host_rate, &to_model_rate);
        let pitch_watch = files.pitch_model.as_ref().map(|reader| reader.watch());
        let synth_watch = files.synth.as_ref().map(|reader| reader.watch());
        let status = StatusWriter::new(files.model.watch(), files.index.watch(), pitch_watch, synth_watch);
        VoiceStage {
            to_model_rate,
            content: ContentFeatures::new(files.model),
            pitch: Pitch::new(files.pitch_model),
            index_blend: IndexBlend::new(files.index),
            synthesizer: Synthesizer::new(files.synth),
            to_host_rate,
            tap: None,
            status,
            audio_16k: Audio16k::default(),
            frames: Frames::default(),
            f0: PitchFrames::default(),
            blended: Frames::default(),
            voice: ModelAudio::default(),
            latency,
            passthrough: DelayLine::new(latency.max(1)),
            delayed: Vec::with_capacity(block),
        }
    }

    /// Hands every block's blended frames to `tap` too.
    pub fn with_tap(mut self, tap: Box<dyn FeatureTap>) -> Self {
        self.tap = Some(tap);
        self
    }

    /// The status board, for displays.
    pub fn status(&self) -> Arc<VoiceStatus> {
        self.status.board()
    }

    /// The whole chain for one block.
    fn convert(&mut self, input: &[f32], controls: &VoiceControls, output: &mut [f32]) -> Result<(), BlockFailed> {
        self.take_up_new_files();
        self.delay_input(input);
        let status = &mut self.status;
        // 1. Host rate → 16 kHz, into the buffer the 16 kHz steps share.
        status.run(Step::ToModelRate, || match &mut self.to_model_rate {
            Ok(resampler) => resampler.push(input, &mut self.audio_16k),
            Err(why) => Err(why.clone()),
        });
        // 2. Content features and pitch of what the block completed; none for a silent block.
        let silent = is_below(input, controls.silence_db);
        let mut silence = (0, 0);
        let pitch_wanted = self.synthesizer.is_ready() || self.tap.as_ref().is_some_and(|tap| tap.wants_pitch());
        if silent {
            silence = self.content.skip(&self.audio_16k, &mut self.frames);
            self.pitch.skip(&self.audio_16k, &mut self.f0);
        } else {
            status.run(Step::ContentFeatures, || {
                self.content.frames(&self.audio_16k, controls.context_frames, &mut self.frames)
            });
            status
                .run(Step::Pitch, || self.pitch.track(&self.audio_16k, controls.transpose, pitch_wanted, &mut self.f0));
        }
        status.pitch(newest_voiced(self.f0.f0()).filter(|_| !silent && pitch_wanted));
        // 3. The features pulled towards the index's voice.
        status.run(Step::IndexBlend, || self.index_blend.apply(&self.frames, controls.index_ratio, &mut self.blended));
        if let Some(tap) = &mut self.tap {
            tap.frames(&self.blended, self.index_blend.ratios());
            tap.pitch(&self.f0);
        }
        // 4. The voice, at the synthesizer's rate; 5. back at the host's.
        let mut voiced = false;
        status.run(Step::Synthesizer, || {
            let (blended, plain, audio) = (&self.blended, &self.frames, &self.audio_16k);
            self.synthesizer.render(blended, plain, silence, &self.f0, audio, controls, &mut self.voice)
        });
        status.run(Step::ToHostRate, || {
            voiced = self.to_host_rate.convert(&self.voice, output)?;
            Ok(())
        });
        status.publish();
        self.forget_unneeded_audio();
        if voiced {
            Ok(())
        } else if !self.synthesizer.is_ready() {
            output.copy_from_slice(&self.delayed);
            Ok(())
        } else {
            Err(BlockFailed)
        }
    }

    /// Keeps `delayed` as the block's input delayed by the latency.
    fn delay_input(&mut self, input: &[f32]) {
        self.delayed.clear();
        self.delayed.extend_from_slice(input);
        self.passthrough.process_runs(&mut self.delayed, |run, line, _| run.swap_with_slice(line));
    }

    /// Takes up a model or index loaded since the last block (the blend follows the model's
    /// feature width).
    fn take_up_new_files(&mut self) {
        self.content.take_up_model(&self.audio_16k);
        self.index_blend.take_up(self.content.dim());
        self.synthesizer.take_up();
    }

    /// Keeps only the 16 kHz audio a step still needs.
    fn forget_unneeded_audio(&mut self) {
        let needed = [self.content.keep_from(), self.pitch.keep_from(), self.synthesizer.keep_from()]
            .into_iter()
            .flatten()
            .min();
        self.audio_16k.trim_before(needed.unwrap_or(self.audio_16k.end()));
    }
}

/// The newest voiced f0 of the last 100 ms of a track, for displays.
fn newest_voiced(f0: &[f32]) -> Option<f32> {
    f0.iter().rev().take(10).copied().find(|hz| *hz > 0.0)
}

impl Stage for VoiceStage {
    type Controls = VoiceControls;

    fn latency_samples(&self) -> usize {
        self.latency
    }

    fn process(&mut self, input: &[f32], controls: &VoiceControls, output: &mut [f32]) -> Result<(), BlockFailed> {
        self.convert(input, controls, output)
    }

    fn reset(&mut self) {
        if let Ok(resampler) = &mut self.to_model_rate {
            resampler.reset();
        }
        self.audio_16k = Audio16k::default();
        self.passthrough.clear();
        self.content.reset();
        self.index_blend.reset();
        self.pitch.reset();
        self.synthesizer.reset();
        self.to_host_rate.reset();
        if let Some(tap) = &mut self.tap {
            tap.reset();
        }
    }

    fn settle(&mut self, wait: &FileWait) {
        self.content.settle(wait);
        self.index_blend.settle(wait);
        self.pitch.settle(wait);
        self.synthesizer.settle(wait);
    }

    fn idle(&mut self) {
        self.take_up_new_files();
    }

    fn lag_advice(&self) -> &'static str {
        LAG_ADVICE
    }
}

/// Whether `block` is quieter than `threshold_db` (dB RMS, full scale 0 dB), with the gate on.
fn is_below(block: &[f32], threshold_db: f32) -> bool {
    if threshold_db <= SILENCE_OFF_DB || block.is_empty() {
        return false;
    }
    let power = block.iter().map(|x| x * x).sum::<f32>() / block.len() as f32;
    10.0 * power.max(1e-20).log10() < threshold_db
}

/// Keeps every blended frame of the stream since the last reset: the output of
/// `rvc-stage features`, and the plugin's feature dump. Grows without bound (150 KB per second
/// of 768-value frames), so it is for tools and diagnostics, not a live session.
#[derive(Debug, Clone, Default)]
pub struct FeatureRecorder(Arc<Mutex<Matrix>>);

impl FeatureRecorder {
    /// The frames recorded so far (`cols` is 0 before the first frame), leaving it empty.
    pub fn take(&self) -> Matrix {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl FeatureTap for FeatureRecorder {
    fn frames(&mut self, frames: &Frames, _ratios: &[f32]) {
        if frames.count() == 0 {
            return;
        }
        let mut recorded = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if recorded.cols != frames.dim() {
            // A model of another width was taken up: the recording starts over with it.
            *recorded = Matrix { rows: 0, cols: frames.dim(), data: Vec::new() };
        }
        recorded.rows += frames.count();
        recorded.data.extend_from_slice(frames.values());
    }

    fn reset(&mut self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Matrix::default();
    }
}
