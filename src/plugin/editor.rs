//! The plugin's window (nice-plug-egui 0.5.1 on egui 0.36, the newest pair that
//! `egui-file-dialog` 0.15 supports, so files are browsed in a dialog egui draws itself and no
//! GUI toolkit is loaded into the host): the **Voice** section (one row per file: what it is,
//! loading / ready / failed and why, browse, recent files, files dropped onto the window —
//! [`x11`]), every **control** with its unit and a tooltip, and the **live status** the
//! worker and the audio thread publish (latency, time per step against the block, real-time
//! factor, under-runs with advice, levels, pitch).
//!
//! Runs on the host's GUI thread. It reads atomics and status locks held only to copy a value,
//! asks the slots to load files (their loader threads read them), and never touches the audio
//! thread. The window's size is part of the plugin state.

pub mod recent;
pub mod view;
pub mod x11;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use egui::{Color32, RichText, Ui};
use egui_file_dialog::{DialogState, FileDialog, Filter};
use nice_plug::context::gui::GuiContext;
use nice_plug::editor::dpi::{LogicalSize, NativeSize, Size};
use nice_plug::editor::{HostMethods, SizeConstraints, SpawnedEditor};
use nice_plug::params::persist::PersistentField;
use nice_plug::prelude::*;
use nice_plug_egui::{
    create_egui_editor, widgets, EguiEditorHandle, EguiEditorState, EguiNiceSettings, NiceEguiApp, RepaintNotifier,
};

use crate::engine::slot::SlotStatus;
use crate::engine::EngineStats;
use crate::engine::{samples_for_ms, LatencyPlan};
use crate::voice::{StepStatus, VoiceStatus};
use recent::RecentFiles;
use view::{FileRole, Light};
use x11::WindowHelper;

use super::RvcStageParams;

/// The window's first size, in logical points.
const DEFAULT_SIZE: (u32, u32) = (780, 800);
const MIN_SIZE: (f32, f32) = (560.0, 420.0);
/// How often the live status is redrawn.
const REFRESH: Duration = Duration::from_millis(200);
/// How fast a level meter falls after a peak, in dB per second.
const METER_FALL_DB_PER_S: f32 = 24.0;

/// What the running engine publishes, for the editor: swapped on activation and deactivation
/// (main thread), copied by the editor (GUI thread). The audio thread never touches it.
#[derive(Default)]
pub struct Running(Mutex<Option<RunningEngine>>);

#[derive(Clone)]
pub struct RunningEngine {
    pub status: Arc<VoiceStatus>,
    pub stats: Arc<EngineStats>,
    pub plan: LatencyPlan,
    pub sample_rate: f64,
    /// The block length the engine runs with.
    pub block_ms: i32,
}

impl Running {
    pub fn set(&self, engine: Option<RunningEngine>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = engine;
    }

    pub fn get(&self) -> Option<RunningEngine> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The editor's size in logical points, saved with the plugin state.
#[derive(Debug)]
pub struct EditorSize(Arc<Mutex<(u32, u32)>>);

impl Default for EditorSize {
    fn default() -> Self {
        EditorSize(Arc::new(Mutex::new(DEFAULT_SIZE)))
    }
}

impl EditorSize {
    fn get(&self) -> (u32, u32) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<'a> PersistentField<'a, (u32, u32)> for EditorSize {
    fn set(&self, size: (u32, u32)) {
        let (width, height) = (size.0.max(MIN_SIZE.0 as u32), size.1.max(MIN_SIZE.1 as u32));
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = (width, height);
    }

    fn map<F, R>(&self, f: F) -> R
    where
        F: Fn(&(u32, u32)) -> R,
    {
        f(&self.get())
    }
}

/// Set by the live app when it should close its window (SIGINT).
static QUIT: AtomicBool = AtomicBool::new(false);

/// Asks an open editor window to close (the live app's SIGINT handler).
pub fn quit_flag() -> &'static AtomicBool {
    &QUIT
}

/// The plugin's [`Editor`]: each time the host opens the window it builds a fresh egui editor
/// at the size saved in the state, so a restored project reopens at its size.
pub struct RvcEditor {
    params: Arc<RvcStageParams>,
    running: Arc<Running>,
    /// Asks the open window for a redraw from any thread.
    repaint: RepaintNotifier,
    /// Takes files dropped onto the window and wakes a window that never drew: made when the
    /// window first opens (X11 only).
    x11: std::sync::OnceLock<Option<Arc<WindowHelper>>>,
    /// The window's scale (pixels per point): what the open window reported, or before it
    /// exists, what baseview will give it. Hosts ask for the size in pixels before the window
    /// exists, and nice-plug-egui would answer at 1× (its window never asks them to resize).
    scale: Arc<AtomicF32>,
}

impl RvcEditor {
    pub fn new(params: Arc<RvcStageParams>, running: Arc<Running>) -> Self {
        let (repaint, x11) = (RepaintNotifier::new(), std::sync::OnceLock::new());
        RvcEditor { params, running, repaint, x11, scale: Arc::new(AtomicF32::new(1.0)) }
    }

    fn settings() -> EguiNiceSettings {
        let min = LogicalSize::new(MIN_SIZE.0, MIN_SIZE.1);
        EguiNiceSettings::new().with_tile("RVC Stage").with_resize_hint(ResizeHint {
            size_constraints: SizeConstraints::Logical { min_size: Some(min), max_size: None },
            ..ResizeHint::RESIZABLE
        })
    }
}

impl Editor for RvcEditor {
    type Handle = EguiEditorHandle;

    fn spawn(
        &self,
        parent: Option<ParentWindowHandle>,
        wait_for_parent: bool,
        fallback_scale_factor: Option<f64>,
        gui_context: GuiContext,
        host: Option<HostMethods>,
    ) -> Result<SpawnedEditor<Self::Handle>, Box<dyn std::error::Error>> {
        let (width, height) = self.params.editor_size.get();
        let state = EguiEditorState::from_size(LogicalSize::new(f64::from(width), f64::from(height)), 1.0);
        let x11 = self.x11.get_or_init(|| WindowHelper::start(self.repaint.clone()).map(Arc::new)).clone();
        // As baseview on X11: the desktop's scale, else the host's, else 1.
        let desktop = x11.as_ref().and_then(|x11| x11.desktop_scale());
        self.scale.store(desktop.or(fallback_scale_factor).unwrap_or(1.0) as f32, Ordering::Relaxed);
        let embedded = parent.is_some() || wait_for_parent;
        let app = EditorApp::new(self.params.clone(), self.running.clone(), x11, embedded, self.scale.clone());
        let editor = create_egui_editor(state, self.repaint.clone(), Self::settings(), app)
            .ok_or("nice-plug-egui made no editor")?;
        editor.spawn(parent, wait_for_parent, fallback_scale_factor, gui_context, host)
    }

    fn size(&self) -> NativeSize<u32> {
        let (width, height) = self.params.editor_size.get();
        let scale = f64::from(self.scale.load(Ordering::Relaxed));
        NativeSize::from_size(Size::Logical(LogicalSize::new(f64::from(width), f64::from(height))), scale)
    }

    fn resize_hint(&self) -> ResizeHint {
        Self::settings().resize_hint
    }
}

/// A file browser open for one role.
struct Browser {
    role: FileRole,
    dialog: FileDialog,
}

/// The window's contents and the little state it keeps between frames.
pub struct EditorApp {
    params: Arc<RvcStageParams>,
    running: Arc<Running>,
    gui: Option<GuiContext>,
    recent: RecentFiles,
    browser: Option<Browser>,
    /// Shown levels (dBFS) and when they were last updated, for the meters' fall.
    levels: (f32, f32),
    levels_at: Instant,
    /// The latency a Block Size value would give, cached by value.
    block_latency: Option<(i32, f64)>,
    /// Dropped files and the first frame (none where the window system is not X11).
    x11: Option<Arc<WindowHelper>>,
    /// Whether the window is put into a host's (a plugin's) rather than one of its own.
    embedded: bool,
    /// Where the window's scale is kept for [`RvcEditor::size`].
    scale: Arc<AtomicF32>,
    /// What the last drop could not place, until the next drop.
    drop_note: Option<String>,
}

impl EditorApp {
    fn new(
        params: Arc<RvcStageParams>,
        running: Arc<Running>,
        x11: Option<Arc<WindowHelper>>,
        embedded: bool,
        scale: Arc<AtomicF32>,
    ) -> Self {
        EditorApp {
            params,
            running,
            gui: None,
            recent: RecentFiles::load(),
            browser: None,
            levels: (view::METER_FLOOR_DB, view::METER_FLOOR_DB),
            levels_at: Instant::now(),
            block_latency: None,
            x11,
            embedded,
            scale,
            drop_note: None,
        }
    }

    fn open_browser(&mut self, role: FileRole, current: Option<&Path>) {
        let filter = format!("{} (.{})", role.label(), role.extension());
        let mut dialog = FileDialog::new()
            .title(&format!("Choose the {}", role.label().to_lowercase()))
            .add_file_filter(
                &filter,
                Filter::new(move |path: &Path| path.extension().is_some_and(|e| e == role.extension())),
            )
            .default_file_filter(&filter);
        if let Some(folder) = current.and_then(Path::parent) {
            dialog = dialog.initial_directory(folder.to_path_buf());
        }
        dialog.pick_file();
        self.browser = Some(Browser { role, dialog });
    }

    /// Shows the browser while it is open and takes up what it picked.
    fn update_browser(&mut self, ctx: &egui::Context) {
        let Some(browser) = &mut self.browser else { return };
        browser.dialog.update(ctx);
        match browser.dialog.state() {
            DialogState::Open => {}
            DialogState::Picked(path) => {
                let (role, path) = (browser.role, path.clone());
                self.browser = None;
                self.params.choose_file(role, Some(path));
            }
            _ => self.browser = None,
        }
    }

    /// Files that loaded go to the front of their role's recent list.
    fn remember_loaded_files(&mut self) {
        for role in FileRole::ALL {
            if let SlotStatus::Ready { path, .. } = self.params.file_status(role) {
                self.recent.note(role, &path);
            }
        }
    }

    fn sections(&mut self, ui: &mut Ui, running: Option<&RunningEngine>, steps: &[StepStatus]) {
        self.voice_section(ui, steps);
        ui.separator();
        self.controls_section(ui, running);
        ui.separator();
        self.status_section(ui, running, steps);
    }

    fn voice_section(&mut self, ui: &mut Ui, steps: &[StepStatus]) {
        heading(ui, "Voice");
        let hovering = self.x11.as_ref().and_then(|x11| x11.hovering()).map(|at| window_point(ui, at));
        let mut chosen = None;
        let mut rows = Vec::with_capacity(FileRole::ALL.len());
        egui::Grid::new("voice-files").num_columns(3).spacing([12.0, 6.0]).striped(true).show(ui, |ui| {
            for role in FileRole::ALL {
                let status = self.params.file_status(role);
                let row = view::file_row(role, &status, steps);
                let name = ui.horizontal(|ui| {
                    light(ui, row.light);
                    ui.label(RichText::new(role.label()).strong()).on_hover_text(role.help());
                });
                let file = ui.vertical(|ui| {
                    ui.set_min_width(FILE_COLUMN_WIDTH);
                    ui.set_max_width(FILE_COLUMN_WIDTH);
                    ui.label(RichText::new(&row.name).monospace());
                    let detail = RichText::new(&row.detail);
                    ui.label(if row.light == Light::Failed { detail.color(FAILED) } else { detail });
                    if let Some(problem) = &row.problem {
                        ui.label(RichText::new(problem).color(WARNING));
                    }
                });
                let buttons = ui.horizontal(|ui| {
                    let current = match &status {
                        SlotStatus::Ready { path, .. }
                        | SlotStatus::Loading { path }
                        | SlotStatus::Failed { path, .. } => Some(path.clone()),
                        SlotStatus::Empty => None,
                    };
                    if ui.button("Browse…").on_hover_text(role.help()).clicked() {
                        chosen = Some(Choice::Browse(role, current.clone()));
                    }
                    ui.menu_button("Recent", |ui| {
                        let list = self.recent.list(role);
                        if list.is_empty() {
                            ui.label("No recent files");
                        }
                        for path in list {
                            if ui.button(path.display().to_string()).clicked() {
                                chosen = Some(Choice::File(role, Some(path.clone())));
                                ui.close();
                            }
                        }
                    });
                    if current.is_some() && ui.button("✖").on_hover_text("Use no file for this step").clicked() {
                        chosen = Some(Choice::File(role, None));
                    }
                });
                rows.push((role, name.response.rect.union(file.response.rect).union(buttons.response.rect)));
                ui.end_row();
            }
        });
        self.take_drops(ui, &rows, hovering);
        match chosen {
            Some(Choice::Browse(role, current)) => self.open_browser(role, current.as_deref()),
            Some(Choice::File(role, path)) => self.params.choose_file(role, path),
            None => {}
        }
    }

    /// While files are dragged over the window: the row under them outlined and what a drop
    /// there does. Dropped files: onto their row, or where their kind belongs.
    fn take_drops(&mut self, ui: &mut Ui, rows: &[(FileRole, egui::Rect)], hovering: Option<egui::Pos2>) {
        let Some(x11) = self.x11.clone() else { return };
        let row_at = |at: egui::Pos2| rows.iter().find(|(_, rect)| rect.expand(3.0).contains(at));
        if let Some(at) = hovering {
            let over = row_at(at);
            if let Some((_, rect)) = over {
                let stroke = egui::Stroke::new(2.0, ui.visuals().selection.stroke.color);
                ui.painter().rect_stroke(rect.expand(3.0), 4.0, stroke, egui::StrokeKind::Outside);
            }
            ui.label(RichText::new(view::drag_hint(over.map(|(role, _)| *role))).strong());
        }
        for dropped in x11.take_drops() {
            let on = row_at(window_point(ui, dropped.at)).map(|(role, _)| *role);
            let (placed, note) = view::place_dropped(on, &dropped.files);
            for (role, path) in placed {
                self.params.choose_file(role, Some(path));
            }
            self.drop_note = note;
            // The rows above were drawn before the drop: show its files now, not at the next refresh.
            ui.ctx().request_repaint();
        }
        if let Some(note) = &self.drop_note {
            ui.label(RichText::new(note).color(WARNING));
        }
    }

    fn controls_section(&mut self, ui: &mut Ui, running: Option<&RunningEngine>) {
        heading(ui, "Controls");
        let Some(gui) = self.gui.clone() else { return };
        let setter = gui.param_setter();
        let params = self.params.clone();
        let block_hint = self.block_hint(running);
        ui.columns(2, |columns| {
            param_rows(
                &mut columns[0],
                "controls-voice",
                &setter,
                &[
                    &params.transpose,
                    &params.fine_tune,
                    &params.index_ratio,
                    &params.protect,
                    &params.formant,
                    &params.rms_mix,
                    &params.speaker,
                ],
            );
            param_rows(
                &mut columns[1],
                "controls-engine",
                &setter,
                &[
                    &params.block_ms,
                    &params.context_frames,
                    &params.silence_threshold,
                    &params.dry_wet,
                    &params.output_gain,
                    &params.bypass,
                ],
            );
            columns[1].label(block_hint);
        });
    }

    /// The Block Size line: what a change costs and the latency the slider's value gives.
    fn block_hint(&mut self, running: Option<&RunningEngine>) -> String {
        let wanted = self.params.block_ms.value();
        let Some(engine) = running else {
            return view::block_size_hint(wanted, wanted, None);
        };
        let latency_ms = match self.block_latency {
            Some((ms, latency)) if ms == wanted => latency,
            _ => {
                let block = samples_for_ms(f64::from(wanted), engine.sample_rate);
                let stage = crate::voice::latency_samples(engine.sample_rate, block);
                let plan = LatencyPlan::new(engine.sample_rate, engine.plan.host_buffer, f64::from(wanted), stage);
                let latency = plan.total() as f64 * 1000.0 / engine.sample_rate;
                self.block_latency = Some((wanted, latency));
                latency
            }
        };
        view::block_size_hint(engine.block_ms, wanted, Some(latency_ms))
    }

    fn status_section(&mut self, ui: &mut Ui, running: Option<&RunningEngine>, steps: &[StepStatus]) {
        heading(ui, "Live status");
        let Some(engine) = running else {
            ui.label("Not processing: the host has not activated the plugin.");
            return;
        };
        let report = view::EngineReport {
            latency_samples: engine.plan.total(),
            sample_rate: engine.sample_rate,
            block_ms: f64::from(engine.block_ms),
            underruns: engine.stats.underruns(),
            since_underrun: engine.stats.samples_since_underrun().map(|n| n as f64 / engine.sample_rate),
        };
        let timing = view::timing(steps, &report);
        egui::Grid::new("live-status").num_columns(2).spacing([12.0, 4.0]).show(ui, |ui| {
            ui.label("Latency").on_hover_text("Reported to the host, which compensates it");
            ui.label(&timing.latency);
            ui.end_row();
            ui.label("Real-time factor")
                .on_hover_text("Worker time per block over the block's length; under 1 keeps up");
            let rtf = RichText::new(format!("{:.2}", timing.realtime_factor));
            ui.label(if timing.realtime_factor >= view::RTF_WARNING { rtf.color(WARNING) } else { rtf });
            ui.end_row();
            for bar in &timing.bars {
                ui.label(bar.name);
                let fill = if bar.share >= 1.0 { FAILED } else { READY };
                level_bar(ui, bar.share, fill, &format!("{:.1} ms of {} ms", bar.ms, engine.block_ms));
                ui.end_row();
            }
            ui.label("Under-runs").on_hover_text("Times the converted voice was late and the dry voice filled in");
            ui.label(&timing.underruns);
            ui.end_row();
            let (input, output) = self.levels(&engine.stats);
            ui.label("Input");
            meter(ui, input);
            ui.end_row();
            ui.label("Output");
            meter(ui, output);
            ui.end_row();
            ui.label("Pitch");
            let transpose = self.params.transpose_semitones();
            let tracking = matches!(self.params.synth.0.status(), SlotStatus::Ready { .. });
            ui.label(view::pitch_text(engine.status.pitch_hz(), transpose, tracking));
            ui.end_row();
        });
        if let Some(advice) = &timing.advice {
            ui.label(RichText::new(advice).color(WARNING));
        }
        // Errors of steps without a file (e.g. an odd host rate); the others are on their rows.
        for error in steps.iter().filter(|s| s.file.is_none()).filter_map(|s| s.error.as_ref()) {
            ui.label(RichText::new(error).color(FAILED));
        }
    }

    /// The meters' levels: the peaks since the last frame, falling slowly.
    fn levels(&mut self, stats: &EngineStats) -> (f32, f32) {
        let (input, output) = stats.take_peaks();
        let fall = self.levels_at.elapsed().as_secs_f32() * METER_FALL_DB_PER_S;
        self.levels_at = Instant::now();
        let settle = |shown: f32, peak: f32| view::meter_db(peak).max(shown - fall).max(view::METER_FLOOR_DB);
        self.levels = (settle(self.levels.0, input), settle(self.levels.1, output));
        self.levels
    }
}

enum Choice {
    Browse(FileRole, Option<PathBuf>),
    File(FileRole, Option<PathBuf>),
}

const READY: Color32 = Color32::from_rgb(80, 170, 100);
const WARNING: Color32 = Color32::from_rgb(230, 160, 40);
const FAILED: Color32 = Color32::from_rgb(225, 70, 60);

impl NiceEguiApp for EditorApp {
    fn build(
        &mut self,
        egui_ctx: egui::Context,
        gui: GuiContext,
        frame: &mut nice_plug_egui::Frame,
    ) -> Result<(), nice_plug_egui::baseview::HandlerError> {
        egui_ctx.set_visuals(egui::Visuals::dark());
        self.gui = Some(gui);
        match (&self.x11, x11_window(frame)) {
            (Some(x11), Some(window)) => x11.attach(window, self.embedded),
            _ => self.x11 = None,
        }
        super::live::close_window_on_sigint();
        Ok(())
    }

    fn ui(&mut self, ui: &mut Ui, _frame: &mut nice_plug_egui::Frame) {
        if let Some(x11) = &self.x11 {
            x11.frame_drawn();
        }
        let ctx = ui.ctx().clone();
        if QUIT.load(Ordering::Relaxed) {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        self.remember_loaded_files();
        let running = self.running.get();
        let steps = running.as_ref().map(|engine| engine.status.snapshot()).unwrap_or_default();
        egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| {
            egui::Frame::new().inner_margin(12.0).show(ui, |ui| self.sections(ui, running.as_ref(), &steps));
        });
        self.update_browser(&ctx);
        ctx.request_repaint_after(REFRESH);
    }

    fn resized(&mut self, size: nice_plug_egui::baseview::WindowSize) {
        self.scale.store(size.scale_factor as f32, Ordering::Relaxed);
        self.params.editor_size.set((size.logical.width.round() as u32, size.logical.height.round() as u32));
    }
}

/// The X11 window egui draws into (`None` on other window systems).
fn x11_window(frame: &nice_plug_egui::Frame) -> Option<u32> {
    use raw_window_handle::{HasWindowHandle, RawWindowHandle};
    match frame.baseview_window().window_handle().ok()?.as_raw() {
        RawWindowHandle::Xlib(handle) => u32::try_from(handle.window).ok(),
        RawWindowHandle::Xcb(handle) => Some(handle.window.get()),
        _ => None,
    }
}

/// A point in the window's physical pixels, in egui's points.
fn window_point(ui: &Ui, (x, y): (f32, f32)) -> egui::Pos2 {
    let pixels_per_point = ui.ctx().pixels_per_point();
    egui::pos2(x / pixels_per_point, y / pixels_per_point)
}

fn heading(ui: &mut Ui, text: &str) {
    ui.label(RichText::new(text).heading());
}

fn light(ui: &mut Ui, light: Light) {
    if light == Light::Loading {
        ui.add(egui::Spinner::new().size(10.0));
        return;
    }
    let colour = match light {
        Light::Off => Color32::GRAY,
        Light::Ready => READY,
        Light::Warning => WARNING,
        Light::Failed | Light::Loading => FAILED,
    };
    let (rect, _) = ui.allocate_exact_size(egui::vec2(10.0, 10.0), egui::Sense::hover());
    ui.painter().circle_filled(rect.center(), 5.0, colour);
}

fn meter(ui: &mut Ui, db: f32) {
    let fill = if db > -1.0 { FAILED } else { READY };
    let text = if db <= view::METER_FLOOR_DB { "silent".to_string() } else { format!("{db:.1} dBFS") };
    level_bar(ui, view::meter_fill(db), fill, &text);
}

/// A horizontal bar filled to `share` (clamped to 0…1) with `text` on it.
fn level_bar(ui: &mut Ui, share: f32, fill: Color32, text: &str) {
    let (rect, _) = ui.allocate_exact_size(egui::vec2(BAR_WIDTH, 16.0), egui::Sense::hover());
    let painter = ui.painter();
    painter.rect_filled(rect, 3.0, ui.visuals().extreme_bg_color);
    let mut filled = rect;
    filled.set_width(rect.width() * share.clamp(0.0, 1.0));
    painter.rect_filled(filled, 3.0, fill);
    let font = egui::FontId::proportional(12.0);
    painter.text(rect.left_center() + egui::vec2(6.0, 0.0), egui::Align2::LEFT_CENTER, text, font, Color32::WHITE);
}

const BAR_WIDTH: f32 = 300.0;
/// The Voice section's middle column: file name, what it is, why it failed.
const FILE_COLUMN_WIDTH: f32 = 380.0;

/// A parameter as the editor draws it: name with its tooltip, then its slider.
trait EditorParam {
    fn row(&self, ui: &mut Ui, setter: &ParamSetter);
}

impl<P: Param> EditorParam for P {
    fn row(&self, ui: &mut Ui, setter: &ParamSetter) {
        let help = view::param_help(self.name());
        let label = ui.label(self.name());
        if !help.is_empty() {
            label.on_hover_text(help);
        }
        let slider = ui.add(widgets::ParamSlider::for_param(self, setter).with_width(170.0));
        if !help.is_empty() {
            slider.on_hover_text(help);
        }
        ui.end_row();
    }
}

fn param_rows(ui: &mut Ui, id: &str, setter: &ParamSetter, params: &[&dyn EditorParam]) {
    egui::Grid::new(id).num_columns(2).spacing([8.0, 6.0]).show(ui, |ui| {
        for param in params {
            param.row(ui, setter);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameter_has_a_tooltip() {
        let params = RvcStageParams::default();
        for (id, param, _) in params.param_map() {
            // SAFETY: the pointer is into `params`, alive for this loop.
            let name = unsafe { param.name() };
            assert!(!view::param_help(name).is_empty(), "{id} ({name}) has no tooltip");
        }
    }
}
