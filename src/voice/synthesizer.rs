//! Step 4, the synthesizer, on the worker thread: blended content frames and the pitch track
//! become the converted voice, at the model's rate, as one continuous stream.
//!
//! Frames are RVC's 10 ms synthesizer frames: frame `j` takes content frame `j / 2` (RVC's ×2)
//! and pitch frame `j`. Every block, the frames both inputs have decided are rendered, but the
//! newest [`LOOKAHEAD`] of them only as right context: frames `next .. target` are new. The
//! model never runs over RVC's whole 2.5 s window. Cut before its decoder (the usual case,
//! found at load), text encoder and flow see [`CUT_CONTEXT`] frames of left context and the
//! decoder, the heaviest part, runs over the new frames, the SOLA margin before them,
//! [`DECODER_MARGIN`] frames and the look-ahead only (RVC's torch path does the same with
//! skip_head / return_length). A model that cannot be cut runs whole over [`CONTEXT`] frames
//! of left context, the margin, the new frames and the look-ahead. The rendered piece
//! (new frames plus the SOLA margin before them) is loudness-matched to the input (RMS Mix) and
//! stitched to the previous one ([`Sola`]); what comes out lags the new frames by the SOLA
//! margin, 40 to 50 ms, and that is part of the pipeline's constant latency.
//!
//! Protect (RVC's): on unvoiced frames the blended features are pulled back towards the
//! unblended ones, keeping breaths and consonants the index would smear. Formant (RVC's
//! stretch-and-resample): the window is rendered stretched in time by 2^(semitones / 12) at a
//! pitch that much lower, then compressed back, so the formants move and the pitch does not.

use std::collections::VecDeque;

use super::to_model_rate::Audio16k;
use super::{Frames, PitchFrames, VoiceControls};
use crate::engine::FileWait;
use crate::features::SYNTH_HOP;
use crate::pitch::coarse_pitch;
use crate::synth::{PriorNoise, Sola, SynthInfo, SynthInput, SynthReader};

/// Frames after the new ones the model sees as right context (the decoder reaches about 10
/// frames either way; these are part of the latency). Chosen from the window measurement in
/// the README.
pub const LOOKAHEAD: u64 = 6;
/// Frames of left context the model sees before the SOLA margin, when it runs whole (its
/// decoder runs over all of them).
pub const CONTEXT: u64 = 24;
/// Frames of left context text encoder and flow see, when the model runs cut before its
/// decoder (RVC's skip_head economy): the decoder then runs over the new frames, the SOLA
/// margin and [`DECODER_MARGIN`] only.
pub const CUT_CONTEXT: u64 = 100;
/// Frames before the SOLA margin the cut model's decoder sees (its receptive field reaches
/// about 10 frames either way).
pub const DECODER_MARGIN: u64 = 10;
/// SOLA overlap and search, in frames (RVC: up to 40 ms and 10 ms).
pub const SOLA_OVERLAP_FRAMES: u64 = 4;
pub const SOLA_SEARCH_FRAMES: u64 = 1;
/// Frames before the new ones each piece covers.
const SOLA_FRAMES: u64 = SOLA_OVERLAP_FRAMES + SOLA_SEARCH_FRAMES;
/// RMS Mix measures loudness over 40 ms (RVC), centred on each frame.
const RMS_WINDOW_FRAMES: u64 = 4;

/// Voice at a model's rate: the samples the synthesizer added to its stream in one block.
#[derive(Debug, Default)]
pub struct ModelAudio {
    /// Samples per second; 0 while no synthesizer is in use.
    pub rate: u32,
    /// Whether these samples start a new stream (the first after a model was taken up): the
    /// stream's first sample belongs to frame `first_frame`.
    pub starts: bool,
    pub first_frame: u64,
    pub samples: Vec<f32>,
}

/// Values per 100 fps frame from some frame on.
#[derive(Debug, Default)]
struct Track<T> {
    first: u64,
    values: VecDeque<T>,
}

impl<T: Copy> Track<T> {
    fn end(&self) -> u64 {
        self.first + self.values.len() as u64
    }

    fn get(&self, frame: u64) -> Option<T> {
        frame.checked_sub(self.first).and_then(|i| self.values.get(i as usize).copied())
    }

    /// Appends values starting at frame `first` (values before the end are already held).
    fn extend(&mut self, first: u64, values: impl Iterator<Item = T>) {
        if self.values.is_empty() || first > self.end() {
            self.values.clear();
            self.first = first;
        }
        let skip = (self.end() - first) as usize;
        self.values.extend(values.skip(skip));
    }

    fn forget_before(&mut self, frame: u64) {
        let drop = (frame.saturating_sub(self.first) as usize).min(self.values.len());
        self.values.drain(..drop);
        self.first += drop as u64;
    }

    fn clear(&mut self) {
        self.values.clear();
        self.first = 0;
    }
}

/// Content frames (50 per second) of one kind, as rows, and which of them were silent (skipped
/// by the silence threshold: zero rows).
#[derive(Debug, Default)]
struct ContentTrack {
    dim: usize,
    silent: Track<bool>,
    rows: VecDeque<f32>,
}

impl ContentTrack {
    fn push(&mut self, frames: &Frames) {
        if frames.count() > 0 {
            self.start_at(frames.first(), frames.dim());
            self.silent.values.extend(std::iter::repeat_n(false, frames.count()));
            self.rows.extend(frames.values());
        }
    }

    /// `count` silent frames from content frame `first` on.
    fn push_silence(&mut self, first: u64, count: u64) {
        if count > 0 {
            self.start_at(first, self.dim);
            self.silent.values.extend(std::iter::repeat_n(true, count as usize));
            self.rows.resize(self.rows.len() + count as usize * self.dim, 0.0);
        }
    }

    /// Continues at frame `first`, or starts over there (a gap, another width).
    fn start_at(&mut self, first: u64, dim: usize) {
        if dim != self.dim || first != self.silent.end() {
            (self.dim, self.silent.values, self.rows) = (dim, VecDeque::new(), VecDeque::new());
            self.silent.first = first;
        }
    }

    /// 100 fps frames decided: two per content frame.
    fn end_synth_frame(&self) -> u64 {
        2 * self.silent.end()
    }

    /// Whether 100 fps frame `frame` is silent (frames not held are not).
    fn is_silent(&self, frame: u64) -> bool {
        self.silent.get(frame / 2).unwrap_or(false)
    }

    fn row(&self, frame: u64) -> Option<impl Iterator<Item = f32> + '_> {
        let index = frame.checked_sub(self.silent.first).filter(|&i| i < self.silent.values.len() as u64)? as usize;
        Some(self.rows.range(index * self.dim..(index + 1) * self.dim).copied())
    }

    fn forget_before(&mut self, content_frame: u64) {
        let drop = (content_frame.saturating_sub(self.silent.first) as usize).min(self.silent.values.len());
        self.silent.values.drain(..drop);
        self.rows.drain(..drop * self.dim);
        self.silent.first += drop as u64;
    }
}

pub struct Synthesizer {
    model: Option<SynthReader>,
    /// What the model in use is (`None` while there is none).
    info: Option<SynthInfo>,
    blended: ContentTrack,
    plain: ContentTrack,
    f0: Track<f32>,
    /// The first frame not rendered yet.
    next: u64,
    noise: PriorNoise,
    sola: Sola,
    /// Whether the next piece starts the voice stream.
    starting: bool,
    window: Window,
}

/// Scratch for one model run.
#[derive(Debug, Default)]
struct Window {
    features: Vec<f32>,
    f0: Vec<f32>,
    coarse: Vec<i64>,
    noise: Vec<f32>,
    audio: Vec<f32>,
    piece: Vec<f32>,
}

impl Window {
    /// RVC's formant shift, first half: the window's frames stretched in time by `factor`
    /// (linear interpolation, prior noise from the nearest frame), so the model renders about
    /// `factor` times as many frames; their f0 is lowered by the exact ratio the audio will be
    /// compressed by (RVC scales `pitchf` the same way), so the pitch comes out unchanged.
    fn stretch(&mut self, factor: f32, dim: usize, channels: usize) {
        let frames = self.f0.len();
        let stretched = (frames as f32 * factor).ceil() as usize;
        let compression = stretched as f32 / frames as f32;
        let at = |k: usize| {
            ((k as f32 / factor).min((frames - 1) as f32), ((k as f32 / factor).round() as usize).min(frames - 1))
        };
        let mut features = Vec::with_capacity(stretched * dim);
        let mut f0 = Vec::with_capacity(stretched);
        for k in 0..stretched {
            let (position, _) = at(k);
            let (i, t) = (position.floor() as usize, position.fract());
            let j = (i + 1).min(frames - 1);
            let (a, b) = (&self.features[i * dim..(i + 1) * dim], &self.features[j * dim..(j + 1) * dim]);
            features.extend(a.iter().zip(b).map(|(a, b)| a + (b - a) * t));
            let hz = if self.f0[i] > 0.0 && self.f0[j] > 0.0 {
                self.f0[i] + (self.f0[j] - self.f0[i]) * t
            } else {
                self.f0[i]
            };
            f0.push(hz / compression);
        }
        let mut noise = vec![0.0; channels * stretched];
        for c in 0..channels {
            for k in 0..stretched {
                noise[c * stretched + k] = self.noise[c * frames + at(k).1];
            }
        }
        coarse_pitch(&f0, &mut self.coarse);
        (self.features, self.f0, self.noise) = (features, f0, noise);
    }

    /// Second half: the rendered audio compressed back to `samples` (linear interpolation),
    /// which raises the formants by the factor.
    fn compress_audio(&mut self, samples: usize) {
        let step = self.audio.len() as f64 / samples as f64;
        let last = self.audio.len() - 1;
        self.piece.clear();
        self.piece.extend((0..samples).map(|n| {
            let position = n as f64 * step;
            let (i, t) = (position as usize, position.fract() as f32);
            let (a, b) = (self.audio[i.min(last)], self.audio[(i + 1).min(last)]);
            a + (b - a) * t
        }));
        std::mem::swap(&mut self.audio, &mut self.piece);
    }
}

impl Synthesizer {
    pub fn new(model: Option<SynthReader>) -> Self {
        Synthesizer {
            model,
            info: None,
            blended: ContentTrack::default(),
            plain: ContentTrack::default(),
            f0: Track::default(),
            next: 0,
            noise: PriorNoise::new(),
            sola: Sola::new(0, 0),
            starting: true,
            window: Window::default(),
        }
    }

    /// Whether a model is in use (the pitch step runs for it).
    pub fn is_ready(&self) -> bool {
        self.info.is_some()
    }

    /// Takes up a newly loaded model at the next frame.
    pub fn take_up(&mut self) {
        let Some(model) = &mut self.model else { return };
        if model.refresh() {
            let before = self.info.as_ref().map(|info| info.rate);
            self.info = model.get().map(|m| m.lock().unwrap_or_else(|e| e.into_inner()).info().clone());
            let rate = self.info.as_ref().map(|info| info.rate);
            // A model of the same rate carries on the stream: its first piece crossfades
            // into the last one's tail. Another rate starts a new one.
            if rate != before {
                let upp = rate.unwrap_or(0) as usize / 100;
                self.sola = Sola::new(SOLA_OVERLAP_FRAMES as usize * upp, SOLA_SEARCH_FRAMES as usize * upp);
                self.starting = true;
            }
        }
    }

    /// Offline, before a block: wait for a synthesizer still loading.
    pub fn settle(&mut self, wait: &FileWait) {
        if let Some(model) = &mut self.model {
            model.settle(wait);
        }
    }

    /// Renders what this block decided into `voice`. Without a model, frames pass unrendered
    /// and `voice` stays empty at rate 0.
    #[allow(clippy::too_many_arguments)] // the step's inputs, each from another step
    pub fn render(
        &mut self,
        blended: &Frames,
        plain: &Frames,
        silence: (u64, u64),
        pitch: &PitchFrames,
        audio: &Audio16k,
        controls: &VoiceControls,
        voice: &mut ModelAudio,
    ) -> Result<(), String> {
        self.blended.push(blended);
        self.plain.push(plain);
        self.blended.push_silence(silence.0, silence.1);
        self.plain.push_silence(silence.0, silence.1);
        self.f0.extend(pitch.first(), pitch.f0().iter().copied());
        voice.samples.clear();
        voice.starts = false;
        voice.rate = self.info.as_ref().map_or(0, |info| info.rate);
        let decided = self.blended.end_synth_frame().min(self.f0.end());
        let target = decided.saturating_sub(LOOKAHEAD);
        if target <= self.next {
            return Ok(());
        }
        let rendered = match self.info.as_ref().map(|info| info.dim) {
            Some(dim) if dim != self.blended.dim && self.blended.dim != 0 => Err(format!(
                "the synthesizer takes {dim} values per frame, the content model gives {}: choose files of the same RVC version",
                self.blended.dim
            )),
            Some(_) => self.render_piece(target, decided, audio, controls, voice),
            None => Ok(()),
        };
        // Frames that failed are skipped: the next piece fades in from silence.
        if rendered.is_err() {
            self.sola.reset();
        }
        self.next = target;
        self.forget_old_frames();
        rendered
    }

    /// Runs the model over `[next − SOLA − CONTEXT, decided)` and stitches the frames
    /// `next .. target` (with the SOLA margin before them) onto the voice.
    fn render_piece(
        &mut self,
        target: u64,
        decided: u64,
        audio: &Audio16k,
        controls: &VoiceControls,
        voice: &mut ModelAudio,
    ) -> Result<(), String> {
        let piece_start = self.next as i64 - SOLA_FRAMES as i64;
        // A cut model decodes only from `decode_from` on; formant shifts stretch the whole
        // window, so they run the model whole.
        let cut = self.info.as_ref().is_some_and(|info| info.decoder_cut) && controls.formant == 0.0;
        let context = if cut { CUT_CONTEXT } else { CONTEXT };
        let from = (piece_start - context as i64).max(0) as u64;
        let decode_from = if cut { (piece_start - DECODER_MARGIN as i64).max(from as i64) as u64 } else { from };
        let upp = self.info.as_ref().map_or(0, |info| info.rate as usize / 100);
        if (piece_start.max(0) as u64..target).all(|frame| self.blended.is_silent(frame)) {
            // Below the silence threshold: no model run, the voice fades out into silence.
            self.window.piece.clear();
            self.window.piece.resize((target as i64 - piece_start) as usize * upp, 0.0);
            self.stitch(target, upp, voice);
            return Ok(());
        }
        self.fill_window(from, decided, controls);
        let model = self.model.as_ref().and_then(|m| m.get()).ok_or("no synthesizer")?;
        let mut model = model.lock().unwrap_or_else(|e| e.into_inner());
        let channels = model.noise_channels();
        self.noise.window(from, decided, channels, &mut self.window.noise);
        let stretch = 2f32.powf(controls.formant / 12.0);
        if stretch != 1.0 {
            self.window.stretch(stretch, self.blended.dim, channels);
        }
        let w = &mut self.window;
        let input = SynthInput {
            features: &w.features,
            coarse: &w.coarse,
            f0: &w.f0,
            speaker: controls.speaker,
            noise: &w.noise,
            seed: self.noise.seed(),
        };
        if cut {
            model.run_decoding_from(&input, (decode_from - from) as usize, &mut w.audio)
        } else {
            model.run(&input, &mut w.audio)
        }
        .map_err(|e| e.to_string())?;
        drop(model);
        if stretch != 1.0 {
            w.compress_audio((decided - from) as usize * upp);
        }
        // The piece: frames piece_start .. target, silence before the stream's start.
        w.piece.clear();
        let before_stream = (-piece_start).max(0) as usize * upp;
        w.piece.resize(before_stream, 0.0);
        let skip = (piece_start.max(0) as u64 - decode_from) as usize * upp;
        w.piece.extend_from_slice(&w.audio[skip..(target - decode_from) as usize * upp]);
        if controls.rms_mix < 1.0 {
            follow_input_loudness(&mut w.piece, piece_start, upp, audio, controls.rms_mix);
        }
        silence_gated_frames(&mut w.piece, piece_start, upp, |frame| self.blended.is_silent(frame));
        self.stitch(target, upp, voice);
        Ok(())
    }

    /// Stitches the piece in `window.piece` onto the voice, emitting the frames up to `target`.
    fn stitch(&mut self, target: u64, upp: usize, voice: &mut ModelAudio) {
        if std::mem::take(&mut self.starting) {
            self.sola.reset();
            (voice.starts, voice.first_frame) = (true, self.next);
        }
        let emit = (target - self.next) as usize * upp;
        self.sola.stitch(&self.window.piece, emit, &mut voice.samples);
    }

    /// The model's inputs for frames `from .. to`: features (Protect applied), f0 and coarse
    /// codes. Frames the tracks do not hold (before the stream or a model change) are silent
    /// and unvoiced.
    fn fill_window(&mut self, from: u64, to: u64, controls: &VoiceControls) {
        let w = &mut self.window;
        let dim = self.blended.dim;
        w.features.clear();
        w.f0.clear();
        let protect = controls.protect.clamp(0.0, 0.5);
        for frame in from..to {
            let f0 = self.f0.get(frame).unwrap_or(0.0);
            w.f0.push(f0);
            let start = w.features.len();
            match self.blended.row(frame / 2) {
                Some(row) => w.features.extend(row),
                None => w.features.resize(start + dim, 0.0),
            }
            // RVC: feats = mask·blended + (1 − mask)·plain, mask = 1 voiced, `protect` unvoiced.
            if protect < 0.5 && f0 <= 0.0 {
                if let Some(plain) = self.plain.row(frame / 2) {
                    for (x, p) in w.features[start..].iter_mut().zip(plain) {
                        *x = protect * *x + (1.0 - protect) * p;
                    }
                }
            }
        }
        coarse_pitch(&w.f0, &mut w.coarse);
    }

    /// Frames no later window reaches.
    fn forget_old_frames(&mut self) {
        let oldest = self.next.saturating_sub(SOLA_FRAMES + CONTEXT.max(CUT_CONTEXT));
        self.f0.forget_before(oldest);
        self.blended.forget_before(oldest / 2);
        self.plain.forget_before(oldest / 2);
        self.noise.forget_before(oldest);
    }

    /// The earliest 16 kHz sample a later block reads (RMS Mix's input loudness).
    pub fn keep_from(&self) -> Option<u64> {
        self.info.as_ref()?;
        let frame = self.next.saturating_sub(SOLA_FRAMES + RMS_WINDOW_FRAMES);
        Some(frame * SYNTH_HOP as u64)
    }

    pub fn reset(&mut self) {
        self.blended = ContentTrack::default();
        self.plain = ContentTrack::default();
        self.f0.clear();
        self.next = 0;
        self.noise.reset();
        self.sola.reset();
        self.starting = true;
    }
}

/// RVC's RMS Mix on a piece whose first sample is at frame `first_frame`: the output's
/// loudness follows the input's, `gain = (rms_in / max(rms_out, 1e-3))^(1 − rate)`, with both
/// RMS over 40 ms around each frame's centre and the gain interpolated linearly between
/// frame centres.
fn follow_input_loudness(piece: &mut [f32], first_frame: i64, upp: usize, audio: &Audio16k, rate: f32) {
    let frames = piece.len() / upp;
    let half_window_out = RMS_WINDOW_FRAMES as usize * upp / 2;
    let gains: Vec<f32> = (0..frames)
        .map(|k| {
            let centre_out = k * upp + upp / 2;
            let out =
                &piece[centre_out.saturating_sub(half_window_out)..(centre_out + half_window_out).min(piece.len())];
            let rms_out = rms(out);
            let centre_in = (first_frame + k as i64) * SYNTH_HOP as i64 + SYNTH_HOP as i64 / 2;
            let half_in = RMS_WINDOW_FRAMES as i64 * SYNTH_HOP as i64 / 2;
            let rms_in = input_rms(audio, centre_in - half_in, centre_in + half_in);
            (rms_in / rms_out.max(1e-3)).powf(1.0 - rate)
        })
        .collect();
    for (i, x) in piece.iter_mut().enumerate() {
        let position = (i as f32 - (upp / 2) as f32) / upp as f32;
        let k = position.floor().clamp(0.0, frames.saturating_sub(1) as f32) as usize;
        let next = (k + 1).min(frames - 1);
        let t = (position - k as f32).clamp(0.0, 1.0);
        *x *= gains[k] * (1.0 - t) + gains[next] * t;
    }
}

/// Silences the frames of a piece (its first sample at frame `first_frame`) that the silence
/// threshold skipped, ramping over one frame at each edge.
fn silence_gated_frames(piece: &mut [f32], first_frame: i64, upp: usize, is_silent: impl Fn(u64) -> bool) {
    let frames = piece.len() / upp;
    let open: Vec<f32> =
        (0..frames).map(|k| if is_silent((first_frame + k as i64).max(0) as u64) { 0.0 } else { 1.0 }).collect();
    if open.iter().all(|&g| g == 1.0) {
        return;
    }
    for (k, frame) in piece.chunks_exact_mut(upp).enumerate() {
        let (from, to) = (open[k.saturating_sub(1)].min(open[k]), open[k]);
        for (i, x) in frame.iter_mut().enumerate() {
            *x *= from + (to - from) * i as f32 / upp as f32;
        }
    }
}

fn rms(samples: &[f32]) -> f32 {
    (samples.iter().map(|x| x * x).sum::<f32>() / samples.len().max(1) as f32).sqrt()
}

/// RMS of the 16 kHz input over stream positions `from .. to` (what is held of it; silence
/// before the stream).
fn input_rms(audio: &Audio16k, from: i64, to: i64) -> f32 {
    let from = from.max(audio.start() as i64) as u64;
    let held = audio.since(from);
    let count = (to.max(0) as u64).saturating_sub(from).min(held.len() as u64) as usize;
    rms(&held[..count])
}
