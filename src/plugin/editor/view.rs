//! What the editor shows, as plain data computed from the plugin's status: the rows of the
//! Voice section, the timing bars, the under-run advice, the pitch and the levels. No egui
//! here, so every display decision is unit-tested. Runs on the editor's (GUI) thread.

use std::path::{Path, PathBuf};

use crate::engine::slot::SlotStatus;
use crate::voice::{Step, StepStatus, LAG_ADVICE};

/// The files a voice is made of, in the order audio flows through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRole {
    ContentModel,
    Index,
    PitchModel,
    Synthesizer,
}

impl FileRole {
    pub const ALL: [FileRole; 4] =
        [FileRole::ContentModel, FileRole::Index, FileRole::PitchModel, FileRole::Synthesizer];

    pub fn label(self) -> &'static str {
        match self {
            FileRole::ContentModel => "Content model",
            FileRole::Index => "Index",
            FileRole::PitchModel => "Pitch model",
            FileRole::Synthesizer => "Synthesizer",
        }
    }

    /// The key its recently used files are kept under.
    pub fn key(self) -> &'static str {
        match self {
            FileRole::ContentModel => "content-model",
            FileRole::Index => "index",
            FileRole::PitchModel => "pitch-model",
            FileRole::Synthesizer => "synthesizer",
        }
    }

    /// The file name extension the browser offers.
    pub fn extension(self) -> &'static str {
        match self {
            FileRole::Index => "index",
            _ => "onnx",
        }
    }

    /// One line on what the file is, for its tooltip.
    pub fn help(self) -> &'static str {
        match self {
            FileRole::ContentModel => "HuBERT / ContentVec .onnx: what is said, 50 frames per second",
            FileRole::Index => "The voice's RVC .index: its training features, blended in by Index Ratio",
            FileRole::PitchModel => "RMVPE .onnx (RVC's or w-okada's export); optional",
            FileRole::Synthesizer => "The voice's RVC synthesizer .onnx (RVC's or w-okada's export)",
        }
    }

    /// What happens while no file is chosen.
    fn when_empty(self) -> &'static str {
        match self {
            FileRole::ContentModel => "none chosen: nothing is converted without one",
            FileRole::Index => "none chosen: the features are used as they are",
            FileRole::PitchModel => "none chosen: the built-in estimator tracks the pitch",
            FileRole::Synthesizer => "none chosen: the voice passes through unchanged",
        }
    }

    /// The pipeline step that reads the file (its errors are shown on the file's row).
    fn step(self) -> Step {
        match self {
            FileRole::ContentModel => Step::ContentFeatures,
            FileRole::Index => Step::IndexBlend,
            FileRole::PitchModel => Step::Pitch,
            FileRole::Synthesizer => Step::Synthesizer,
        }
    }
}

/// The colour of a row's light.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Light {
    /// No file: the step is off.
    Off,
    Loading,
    Ready,
    /// Loaded, but the step cannot use it with the other files (a mismatch).
    Warning,
    Failed,
}

/// One row of the Voice section.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRow {
    pub role: FileRole,
    /// The file's name, or "—".
    pub name: String,
    /// What the file is, that it is loading, why it failed, or what happens without one.
    pub detail: String,
    pub light: Light,
    /// A problem of the step that uses the file (e.g. feature widths that do not match).
    pub problem: Option<String>,
}

/// The row for `role`, whose slot reports `file`; `steps` is the running pipeline's board
/// (empty while the plugin is inactive).
pub fn file_row(role: FileRole, file: &SlotStatus, steps: &[StepStatus]) -> FileRow {
    let step_error = steps.iter().find(|s| s.step == role.step()).and_then(|s| s.error.clone());
    let (name, detail, light) = match file {
        SlotStatus::Empty => ("—".to_string(), role.when_empty().to_string(), Light::Off),
        SlotStatus::Loading { path } => (file_name(path), "loading…".to_string(), Light::Loading),
        SlotStatus::Ready { path, about } => (file_name(path), about.clone(), Light::Ready),
        SlotStatus::Failed { path, reason, kept } => {
            let still = match kept {
                Some(kept) => format!("Still using {}.", file_name(kept)),
                None => "Nothing loaded for this step.".to_string(),
            };
            // The row names the file already; the reason need not repeat its path.
            let reason = reason.replace(&*path.to_string_lossy(), "the file");
            (file_name(path), format!("{} {still}", sentence(&reason)), Light::Failed)
        }
    };
    // A missing file is already said by the row; the step's own words are for loaded files
    // it still cannot use.
    let problem = step_error.filter(|_| matches!(file, SlotStatus::Ready { .. }));
    let light = if problem.is_some() { Light::Warning } else { light };
    FileRow { role, name, detail, light, problem }
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap_or(path.as_os_str()).to_string_lossy().into_owned()
}

/// `text` with a capital first letter and a full stop.
fn sentence(text: &str) -> String {
    let mut chars = text.trim().chars();
    let mut out: String = chars.next().map(|c| c.to_uppercase().collect()).unwrap_or_default();
    out.extend(chars);
    if !out.ends_with(['.', '!', '?', ')']) {
        out.push('.');
    }
    out
}

/// One step's bar: its time on the last block against the block's length.
#[derive(Debug, Clone, PartialEq)]
pub struct StepBar {
    pub name: &'static str,
    pub ms: f64,
    /// `ms` over the block's length (1 = the whole block's real time).
    pub share: f32,
}

/// The Live status section's timing.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    pub latency: String,
    pub bars: Vec<StepBar>,
    /// Worker time per block over the block's real time.
    pub realtime_factor: f64,
    pub underruns: String,
    /// What to do about under-runs or a worker slower than real time.
    pub advice: Option<String>,
}

/// What the worker and audio thread last reported, in the units the display needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineReport {
    pub latency_samples: usize,
    pub sample_rate: f64,
    pub block_ms: f64,
    pub underruns: u64,
    /// Seconds since the last under-run began.
    pub since_underrun: Option<f64>,
}

/// Above this real-time factor the worker has too little headroom for a busy machine.
pub const RTF_WARNING: f64 = 0.8;
/// An under-run this recent gets advice.
const RECENT_UNDERRUN_S: f64 = 60.0;

pub fn timing(steps: &[StepStatus], engine: &EngineReport) -> Timing {
    let bars: Vec<StepBar> = steps
        .iter()
        .filter(|s| s.times.blocks > 0)
        .map(|s| {
            let ms = s.times.last.as_secs_f64() * 1000.0;
            StepBar { name: s.step.name(), ms, share: (ms / engine.block_ms) as f32 }
        })
        .collect();
    let realtime_factor = bars.iter().map(|bar| bar.ms).sum::<f64>() / engine.block_ms;
    let latency_ms = engine.latency_samples as f64 * 1000.0 / engine.sample_rate;
    let underruns = match (engine.underruns, engine.since_underrun) {
        (0, _) | (_, None) => "none".to_string(),
        (n, Some(seconds)) => format!("{n}, the last {}", ago(seconds)),
    };
    let recent_underrun = engine.since_underrun.is_some_and(|s| s < RECENT_UNDERRUN_S);
    let advice = if realtime_factor >= 1.0 {
        Some(format!(
            "The worker needs {realtime_factor:.2}× real time, so the output falls back to the dry voice: \
             {LAG_ADVICE}. A Silence Threshold saves the pauses; RVC_STAGE_MODEL_THREADS=2 gives the models \
             a second core."
        ))
    } else if recent_underrun {
        Some(
            "The worker keeps up on average but was late: another program or the host held the CPU. \
             A longer Block Size gives it more headroom."
                .to_string(),
        )
    } else if realtime_factor > RTF_WARNING {
        Some(format!(
            "The worker needs {realtime_factor:.2}× real time: little headroom left. A longer Block Size \
             or a shorter Context gives more."
        ))
    } else {
        None
    };
    Timing {
        latency: format!("{latency_ms:.0} ms ({} samples)", engine.latency_samples),
        bars,
        realtime_factor,
        underruns,
        advice,
    }
}

fn ago(seconds: f64) -> String {
    match seconds {
        s if s < 1.0 => "just now".to_string(),
        s if s < 120.0 => format!("{s:.0} s ago"),
        s if s < 7200.0 => format!("{:.0} min ago", s / 60.0),
        s => format!("{:.0} h ago", s / 3600.0),
    }
}

const NOTE_NAMES: [&str; 12] = ["C", "C♯", "D", "D♯", "E", "F", "F♯", "G", "G♯", "A", "A♯", "B"];

/// "A3 +2 ct", the nearest equal-tempered note to `hz` (A4 = 440 Hz).
pub fn note_name(hz: f32) -> String {
    let midi = 69.0 + 12.0 * (f64::from(hz) / 440.0).log2();
    let nearest = midi.round();
    let cents = ((midi - nearest) * 100.0).round() as i32;
    let name = NOTE_NAMES[(nearest as i64).rem_euclid(12) as usize];
    let octave = (nearest as i64).div_euclid(12) - 1;
    format!("{name}{octave} {cents:+} ct")
}

/// The current pitch line: the output's f0 (transposed) and the input's it came from.
/// `tracking` says whether pitch is tracked at all (only for a loaded synthesizer).
pub fn pitch_text(output_hz: Option<f32>, transpose_semitones: f32, tracking: bool) -> String {
    if !tracking {
        return "— (tracked once a synthesizer is loaded)".to_string();
    }
    let Some(hz) = output_hz else { return "— (unvoiced)".to_string() };
    let input = hz / 2f32.powf(transpose_semitones / 12.0);
    if transpose_semitones == 0.0 {
        format!("{hz:.1} Hz, {}", note_name(hz))
    } else {
        format!("{hz:.1} Hz, {} (sung: {input:.1} Hz, {})", note_name(hz), note_name(input))
    }
}

/// The lowest level a meter shows.
pub const METER_FLOOR_DB: f32 = -60.0;

/// A peak in dBFS for a meter, never below [`METER_FLOOR_DB`].
pub fn meter_db(peak: f32) -> f32 {
    nice_plug::util::gain_to_db(peak).max(METER_FLOOR_DB)
}

/// The meter's fill, 0 at the floor to 1 at 0 dBFS (more when clipping).
pub fn meter_fill(db: f32) -> f32 {
    (db - METER_FLOOR_DB) / -METER_FLOOR_DB
}

/// The Block Size tooltip: what changing it costs, with the latency at `new_ms`.
pub fn block_size_hint(active_ms: i32, new_ms: i32, new_latency_ms: Option<f64>) -> String {
    let latency = new_latency_ms.map_or_else(String::new, |ms| format!(" The latency becomes {ms:.0} ms."));
    if new_ms == active_ms {
        format!("Changing it re-activates the plugin (a short pause in most hosts).{latency}")
    } else {
        format!("{new_ms} ms takes effect when the host re-activates the plugin.{latency}")
    }
}

/// Where dropped files go: the first onto the row it was `dropped_on` (if any), every other to
/// the row its kind belongs to (`files` carry the role their contents say, if any); one file
/// per row, the first of several. Returns the choices and, when some files found no row, the
/// sentence that says why.
pub fn place_dropped(
    dropped_on: Option<FileRole>,
    files: &[(PathBuf, Option<FileRole>)],
) -> (Vec<(FileRole, PathBuf)>, Option<String>) {
    let mut placed: Vec<(FileRole, PathBuf)> = Vec::new();
    let mut unknown = Vec::new();
    let mut extra = Vec::new();
    for (i, (path, kind)) in files.iter().enumerate() {
        let role = if i == 0 { dropped_on.or(*kind) } else { *kind };
        match role {
            Some(role) if placed.iter().any(|(taken, _)| *taken == role) => extra.push(file_name(path)),
            Some(role) => placed.push((role, path.clone())),
            None => unknown.push(file_name(path)),
        }
    }
    let mut notes = Vec::new();
    if !unknown.is_empty() {
        notes.push(format!(
            "Not recognised as a content model, index, pitch model or synthesizer: {}. To use a file anyway, drop it onto its row.",
            unknown.join(", ")
        ));
    }
    if !extra.is_empty() {
        notes.push(format!("One file per step: left out {}.", extra.join(", ")));
    }
    (placed, (!notes.is_empty()).then(|| notes.join(" ")))
}

/// What the Voice section says while files are dragged over the window.
pub fn drag_hint(over: Option<FileRole>) -> String {
    match over {
        Some(role) => format!("Drop to use it as the {}", role.label().to_lowercase()),
        None => {
            "Drop onto a row to use a file for that step, or anywhere else to have each file go where its kind belongs"
                .into()
        }
    }
}

/// A one-line explanation of each parameter, by its name.
pub fn param_help(name: &str) -> &'static str {
    match name {
        "Bypass" => "Latency-compensated dry voice, crossfaded",
        "Dry/Wet" => "Share of the converted voice in the output",
        "Output Gain" => "Gain after mixing",
        "Block Size" => {
            "Audio the worker converts at a time; longer blocks give the models more headroom and cost latency"
        }
        "Index Ratio" => "How far the voice's features are pulled towards the index's (0 = not at all, 1 = replaced)",
        "Context" => {
            "Audio before each block the content model hears; more is closer to an offline render and costs time"
        }
        "Transpose" => "Pitch shift in semitones (12 = an octave)",
        "Fine Tune" => "Pitch shift in cents, added to Transpose",
        "Protect" => "On breaths and consonants, keep only this share of the index blend (0.5 = off)",
        "RMS Mix" => "0: the converted voice follows the input's loudness; 1: it keeps its own",
        "Formant" => "Moves the voice's timbre up or down without changing its pitch",
        "Speaker" => "The synthesizer's speaker, for models trained on several voices",
        "Silence Threshold" => "Blocks quieter than this skip all inference and put out silence (−60 dB = off)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::voice::StepTimes;

    fn step(step: Step, error: Option<&str>, last_ms: u64) -> StepStatus {
        let last = Duration::from_millis(last_ms);
        StepStatus {
            step,
            file: None,
            error: error.map(str::to_string),
            times: StepTimes { blocks: u64::from(last_ms > 0), last, total: last },
        }
    }

    fn report(underruns: u64, since_underrun: Option<f64>) -> EngineReport {
        EngineReport { latency_samples: 20_832, sample_rate: 48_000.0, block_ms: 100.0, underruns, since_underrun }
    }

    #[test]
    fn an_empty_slot_says_what_runs_without_it() {
        let row = file_row(FileRole::PitchModel, &SlotStatus::Empty, &[]);
        assert_eq!((row.name.as_str(), row.light), ("—", Light::Off));
        assert_eq!(row.detail, "none chosen: the built-in estimator tracks the pitch");
        let row = file_row(FileRole::Synthesizer, &SlotStatus::Empty, &[]);
        assert_eq!(row.detail, "none chosen: the voice passes through unchanged");
    }

    #[test]
    fn a_loading_file_shows_its_name_and_a_spinner() {
        let row =
            file_row(FileRole::Index, &SlotStatus::Loading { path: PathBuf::from("/voices/alto/added.index") }, &[]);
        assert_eq!((row.name.as_str(), row.detail.as_str(), row.light), ("added.index", "loading…", Light::Loading));
    }

    #[test]
    fn a_ready_file_says_what_it_is() {
        let about = "IVF316,PQ384x4fs,RFlat, 100 000 vectors, 768-d".to_string();
        let status = SlotStatus::Ready { path: PathBuf::from("/v/alto.index"), about: about.clone() };
        let row = file_row(FileRole::Index, &status, &[]);
        assert_eq!((row.name.as_str(), row.detail, row.light, row.problem), ("alto.index", about, Light::Ready, None));
    }

    #[test]
    fn a_failed_file_gives_the_reason_in_a_sentence_and_the_file_still_in_use() {
        let status = SlotStatus::Failed {
            path: PathBuf::from("/v/broken.onnx"),
            reason: "the file ends early (truncated download?)".into(),
            kept: Some(PathBuf::from("/v/alto.onnx")),
        };
        let row = file_row(FileRole::Synthesizer, &status, &[]);
        assert_eq!(row.light, Light::Failed);
        assert_eq!(row.name, "broken.onnx");
        assert_eq!(row.detail, "The file ends early (truncated download?) Still using alto.onnx.");
        let status = SlotStatus::Failed {
            path: PathBuf::from("/v/x.onnx"),
            reason: "/v/x.onnx is not a model ONNX Runtime can load".into(),
            kept: None,
        };
        assert_eq!(
            file_row(FileRole::ContentModel, &status, &[]).detail,
            "The file is not a model ONNX Runtime can load. Nothing loaded for this step."
        );
    }

    #[test]
    fn a_mismatch_is_shown_on_the_row_of_the_file_that_cannot_be_used() {
        let steps = [
            step(Step::ContentFeatures, None, 5),
            step(Step::Synthesizer, Some("the synthesizer takes 256-d features, the content model gives 768-d"), 1),
        ];
        let ready =
            SlotStatus::Ready { path: PathBuf::from("/v/v1.onnx"), about: "RVC export, RVC v1 40 kHz, f0".into() };
        let synth = file_row(FileRole::Synthesizer, &ready, &steps);
        assert_eq!(synth.light, Light::Warning);
        assert_eq!(
            synth.problem.as_deref(),
            Some("the synthesizer takes 256-d features, the content model gives 768-d")
        );
        let content = file_row(FileRole::ContentModel, &ready, &steps);
        assert_eq!((content.light, content.problem), (Light::Ready, None), "the other rows stay as they are");
        // A step error while the file itself failed or is missing is already said by the row.
        assert_eq!(file_row(FileRole::Synthesizer, &SlotStatus::Empty, &steps).problem, None);
    }

    #[test]
    fn timing_bars_are_shares_of_the_block_and_sum_to_the_realtime_factor() {
        let steps =
            [step(Step::ContentFeatures, None, 30), step(Step::Synthesizer, None, 20), step(Step::Pitch, None, 0)];
        let timing = timing(&steps, &report(0, None));
        assert_eq!(timing.bars.len(), 2, "steps that never ran have no bar");
        assert_eq!((timing.bars[0].name, timing.bars[0].share), ("content features", 0.3));
        assert!((timing.realtime_factor - 0.5).abs() < 1e-9);
        assert_eq!(timing.latency, "434 ms (20832 samples)");
        assert_eq!((timing.underruns.as_str(), timing.advice), ("none", None));
    }

    #[test]
    fn a_worker_slower_than_real_time_gets_advice_with_the_factor() {
        let steps = [step(Step::Synthesizer, None, 230)];
        let timing = timing(&steps, &report(4, Some(0.4)));
        assert_eq!(timing.underruns, "4, the last just now");
        let advice = timing.advice.unwrap();
        assert!(advice.contains("2.30× real time") && advice.contains("a longer Block Size"), "{advice}");
    }

    #[test]
    fn a_recent_underrun_of_a_fast_worker_blames_the_machine_and_an_old_one_is_only_counted() {
        let steps = [step(Step::Synthesizer, None, 30)];
        let recent = timing(&steps, &report(2, Some(12.0)));
        assert_eq!(recent.underruns, "2, the last 12 s ago");
        assert!(recent.advice.unwrap().contains("another program or the host held the CPU"));
        let old = timing(&steps, &report(2, Some(600.0)));
        assert_eq!((old.underruns.as_str(), old.advice), ("2, the last 10 min ago", None));
    }

    #[test]
    fn little_headroom_is_said_before_it_runs_out() {
        let timing = timing(&[step(Step::Synthesizer, None, 90)], &report(0, None));
        assert!(timing.advice.unwrap().contains("little headroom"));
    }

    #[test]
    fn notes_are_named_with_octave_and_cents() {
        assert_eq!(note_name(440.0), "A4 +0 ct");
        assert_eq!(note_name(261.63), "C4 +0 ct");
        assert_eq!(note_name(110.0 * 2f32.powf(0.3 / 12.0)), "A2 +30 ct");
        assert_eq!(note_name(440.0 * 2f32.powf(-0.6 / 12.0)), "G♯4 +40 ct");
    }

    #[test]
    fn the_pitch_line_names_output_and_sung_pitch_when_transposed() {
        assert_eq!(pitch_text(Some(220.0), 0.0, true), "220.0 Hz, A3 +0 ct");
        assert_eq!(pitch_text(Some(440.0), 12.0, true), "440.0 Hz, A4 +0 ct (sung: 220.0 Hz, A3 +0 ct)");
        assert_eq!(pitch_text(None, 0.0, true), "— (unvoiced)");
        assert_eq!(pitch_text(Some(220.0), 0.0, false), "— (tracked once a synthesizer is loaded)");
    }

    #[test]
    fn meters_show_dbfs_from_the_floor() {
        assert_eq!(meter_db(1.0), 0.0);
        assert!((meter_db(0.1) + 20.0).abs() < 1e-4);
        assert_eq!((meter_db(0.0), meter_db(1e-9)), (METER_FLOOR_DB, METER_FLOOR_DB));
        assert_eq!((meter_fill(METER_FLOOR_DB), meter_fill(0.0), meter_fill(-30.0)), (0.0, 1.0, 0.5));
    }

    #[test]
    fn the_block_size_hint_says_it_reactivates_and_gives_the_new_latency() {
        assert_eq!(
            block_size_hint(100, 100, Some(434.4)),
            "Changing it re-activates the plugin (a short pause in most hosts). The latency becomes 434 ms."
        );
        assert_eq!(
            block_size_hint(100, 250, Some(734.0)),
            "250 ms takes effect when the host re-activates the plugin. The latency becomes 734 ms."
        );
    }

    #[test]
    fn dropped_files_go_to_the_row_under_them_or_where_their_kind_belongs() {
        let file = |name: &str, kind| (PathBuf::from(format!("/v/{name}")), kind);
        let voice = [
            file("hubert.onnx", Some(FileRole::ContentModel)),
            file("added.index", Some(FileRole::Index)),
            file("singer.onnx", Some(FileRole::Synthesizer)),
        ];
        // Anywhere: each by its kind.
        let (placed, note) = place_dropped(None, &voice);
        let roles: Vec<FileRole> = placed.iter().map(|(role, _)| *role).collect();
        assert_eq!(roles, [FileRole::ContentModel, FileRole::Index, FileRole::Synthesizer]);
        assert_eq!(placed[2].1, PathBuf::from("/v/singer.onnx"));
        assert_eq!(note, None);
        // Onto a row: the first file goes there whatever it looks like; the loader will say if
        // it does not fit.
        let (placed, _) = place_dropped(Some(FileRole::PitchModel), &voice[..1]);
        assert_eq!(placed, [(FileRole::PitchModel, PathBuf::from("/v/hubert.onnx"))]);
        // Unrecognised files and a second file for one step are named, not silently dropped.
        let (placed, note) = place_dropped(
            None,
            &[file("take1.wav", None), voice[2].clone(), file("other.onnx", Some(FileRole::Synthesizer))],
        );
        assert_eq!(placed, [(FileRole::Synthesizer, PathBuf::from("/v/singer.onnx"))]);
        let note = note.unwrap();
        assert!(note.contains("take1.wav") && note.contains("drop it onto its row"), "{note}");
        assert!(note.contains("left out other.onnx"), "{note}");
        // An unrecognised file dropped onto a row is used there.
        let (placed, note) = place_dropped(Some(FileRole::Index), &[file("voice.bin", None)]);
        assert_eq!(placed, [(FileRole::Index, PathBuf::from("/v/voice.bin"))]);
        assert_eq!(note, None);
    }

    #[test]
    fn the_drag_hint_names_the_row_under_the_pointer() {
        assert_eq!(drag_hint(Some(FileRole::Synthesizer)), "Drop to use it as the synthesizer");
        assert!(drag_hint(None).contains("onto a row"));
    }
}
