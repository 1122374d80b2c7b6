//! A small CLAP host on clack-host: loads a built `.clap` bundle — the binary a DAW loads —
//! renders audio through it like a DAW (main thread plus a separate audio thread) and reads its
//! latency, parameters and state. `cargo xtask demo` uses it, and the integration tests include
//! this same file, so what the demo shows is what the tests check.

use std::cell::Cell;
use std::ffi::CString;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::thread::ThreadId;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use clack_extensions::audio_ports_config::{AudioPortsConfigBuffer, MainPortInfo, PluginAudioPortsConfig};
use clack_extensions::gui::{GuiApiType, GuiConfiguration, GuiSize, HostGui, HostGuiImpl, PluginGui, Window};
use clack_extensions::latency::{HostLatency, HostLatencyImpl, PluginLatency};
use clack_extensions::log::{HostLog, HostLogImpl, LogSeverity};
use clack_extensions::params::{ParamInfoBuffer, PluginParams};
use clack_extensions::render::{PluginRender, RenderMode};
use clack_extensions::state::{HostState, HostStateImpl, PluginState};
use clack_extensions::thread_check::{HostThreadCheck, HostThreadCheckImpl};
use clack_host::events::event_types::ParamValueEvent;
use clack_host::prelude::*;

/// Loads a `.clap` file (on Linux the bundle is the shared library itself).
pub fn load(path: &Path) -> Result<PluginEntry> {
    // SAFETY: loading runs the library's initialisers; that is what the test is about.
    unsafe { PluginEntry::load(path) }.with_context(|| format!("loading {}", path.display()))
}

/// What one render activates the plugin with.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub sample_rate: f64,
    pub max_frames: u32,
    pub offline: bool,
    /// Call the plugin's `reset` (on the audio thread) before every this many process calls.
    pub reset_every: Option<usize>,
}

impl Settings {
    pub fn new(sample_rate: f64, max_frames: u32, offline: bool) -> Self {
        Self { sample_rate, max_frames, offline, reset_every: None }
    }
}

/// Output of one render, one `Vec` per channel, plus what the plugin reported.
pub struct Render {
    pub output: Vec<Vec<f32>>,
    pub latency: u32,
}

/// One plugin instance, created and used on the calling (main) thread.
pub struct Plugin {
    instance: PluginInstance<Host>,
}

impl Plugin {
    /// Instantiates the first plugin of `entry`.
    pub fn new(entry: &PluginEntry) -> Result<Self> {
        let factory = entry.get_plugin_factory().ok_or_else(|| anyhow!("the bundle has no plugin factory"))?;
        let descriptor = factory.plugin_descriptors().next().ok_or_else(|| anyhow!("the bundle exports no plugin"))?;
        let id = CString::from(descriptor.id().ok_or_else(|| anyhow!("the plugin has no id"))?);
        let info = HostInfo::new("rvc-stage test host", "RVC Stage", "https://example.invalid", "1.0")?;
        let main_thread = std::thread::current().id();
        let instance =
            PluginInstance::<Host>::new(|_| Shared::new(main_thread), |_| MainThread::default(), entry, &id, &info)?;
        Ok(Self { instance })
    }

    fn extension<E: Copy>(&self, pick: impl Fn(&Shared) -> &OnceLock<Option<E>>, name: &str) -> Result<E> {
        self.instance
            .access_shared_handler(|shared| pick(shared).get().copied().flatten())
            .ok_or_else(|| anyhow!("the plugin does not implement the {name} extension"))
    }

    /// The latency the plugin reports now, in samples.
    pub fn latency(&mut self) -> Result<u32> {
        let latency = self.extension(|s| &s.latency, "latency")?;
        Ok(latency.get(&self.instance.plugin_handle()))
    }

    /// How often the plugin told the host its latency changed.
    pub fn latency_notifications(&mut self) -> u32 {
        self.instance.access_handler(|main| main.latency_changes.get())
    }

    pub fn save_state(&mut self) -> Result<Vec<u8>> {
        let state = self.extension(|s| &s.state, "state")?;
        let mut bytes = Vec::new();
        state.save(&self.instance.plugin_handle(), &mut bytes).map_err(|e| anyhow!("saving state: {e}"))?;
        Ok(bytes)
    }

    pub fn load_state(&mut self, bytes: &[u8]) -> Result<()> {
        let state = self.extension(|s| &s.state, "state")?;
        state
            .load(&self.instance.plugin_handle(), &mut std::io::Cursor::new(bytes))
            .map_err(|e| anyhow!("loading state: {e}"))
    }

    /// Sets the persisted field `key` (e.g. `index-path`) to `path` by editing the saved state
    /// and loading it back, as restoring a project does. nice-plug's CLAP state is a u64 length
    /// and JSON, with persisted fields as JSON strings; the field must be unset (`null`).
    pub fn set_persisted_path(&mut self, key: &str, path: &Path) -> Result<Vec<u8>> {
        self.set_persisted_paths(&[(key, path)])
    }

    /// Sets several persisted fields to paths in one state load, as restoring a project that
    /// names them all does.
    pub fn set_persisted_paths(&mut self, fields: &[(&str, &Path)]) -> Result<Vec<u8>> {
        let saved = self.save_state()?;
        let mut state: serde_json::Value = serde_json::from_slice(saved.get(8..).unwrap_or_default())?;
        for (key, path) in fields {
            let path = path.to_str().ok_or_else(|| anyhow!("not UTF-8: {}", path.display()))?;
            let field = state["fields"].get_mut(*key).ok_or_else(|| anyhow!("the state has no {key:?}"))?;
            // A persisted field is stored as its own JSON text.
            *field = serde_json::Value::String(serde_json::to_string(path)?);
        }
        let json = serde_json::to_string(&state)?;
        let state = [(json.len() as u64).to_le_bytes().as_slice(), json.as_bytes()].concat();
        self.load_state(&state)?;
        Ok(state)
    }

    /// Opens the plugin's editor embedded in the X11 window `parent`, as a DAW opens it in its
    /// own window; returns the editor's size in pixels.
    pub fn open_gui(&mut self, parent: u64) -> Result<(u32, u32)> {
        let gui = self.extension(|s| &s.gui, "gui")?;
        let handle = self.instance.plugin_handle();
        let config = GuiConfiguration { api_type: GuiApiType::X11, is_floating: false };
        ensure!(gui.is_api_supported(&handle, config), "the plugin cannot embed its editor in an X11 window");
        gui.create(&handle, config).map_err(|e| anyhow!("creating the editor: {e:?}"))?;
        let size = gui.get_size(&handle).ok_or_else(|| anyhow!("the editor has no size"))?;
        // SAFETY: the caller keeps `parent` alive until `close_gui`.
        unsafe { gui.set_parent(&handle, Window::from_x11_handle(parent)) }
            .map_err(|e| anyhow!("embedding the editor: {e:?}"))?;
        gui.show(&handle).map_err(|e| anyhow!("showing the editor: {e:?}"))?;
        Ok((size.width, size.height))
    }

    /// The editor size the plugin last asked the host for, if it asked.
    pub fn requested_gui_size(&mut self) -> Option<(u32, u32)> {
        self.instance.access_shared_handler(|s| *s.requested_gui_size.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Hides and destroys the editor.
    pub fn close_gui(&mut self) -> Result<()> {
        let gui = self.extension(|s| &s.gui, "gui")?;
        let handle = self.instance.plugin_handle();
        gui.hide(&handle).map_err(|e| anyhow!("hiding the editor: {e:?}"))?;
        gui.destroy(&handle);
        Ok(())
    }

    /// The CLAP id of the parameter called `name`.
    pub fn param_id(&mut self, name: &str) -> Result<ClapId> {
        let params = self.extension(|s| &s.params, "params")?;
        let handle = self.instance.plugin_handle();
        let mut buffer = ParamInfoBuffer::new();
        (0..params.count(&handle))
            .filter_map(|index| params.get_info(&handle, index, &mut buffer).map(|info| (info.id, info.name.to_vec())))
            .find(|(_, param_name)| param_name.as_slice() == name.as_bytes())
            .map(|(id, _)| id)
            .ok_or_else(|| anyhow!("the plugin has no parameter named {name:?}"))
    }

    /// Converts `text` (as a user would type it, e.g. "-3 dB") to the parameter's CLAP value.
    pub fn param_from_text(&mut self, name: &str, text: &str) -> Result<(ClapId, f64)> {
        let id = self.param_id(name)?;
        let params = self.extension(|s| &s.params, "params")?;
        let c_text = CString::new(text)?;
        let value = params
            .text_to_value(&self.instance.plugin_handle(), id, &c_text)
            .ok_or_else(|| anyhow!("{name:?} does not accept {text:?}"))?;
        Ok((id, value))
    }

    /// The parameter's current value as the plugin displays it.
    pub fn param_text(&mut self, name: &str) -> Result<String> {
        let id = self.param_id(name)?;
        let params = self.extension(|s| &s.params, "params")?;
        let handle = self.instance.plugin_handle();
        let value = params.get_value(&handle, id).ok_or_else(|| anyhow!("no value for {name:?}"))?;
        let mut buffer = [0u8; 256];
        let text =
            params.value_to_text(&handle, id, value, &mut buffer).map_err(|_| anyhow!("no text for {name:?}"))?;
        Ok(String::from_utf8_lossy(text).into_owned())
    }

    /// Selects the port configuration whose main input and output have `channels` channels.
    pub fn select_channels(&mut self, channels: usize) -> Result<()> {
        let configs = self.extension(|s| &s.ports_config, "audio-ports-config")?;
        let handle = self.instance.plugin_handle();
        let mut buffer = AudioPortsConfigBuffer::new();
        let has = |port: Option<MainPortInfo>| port.is_some_and(|p| p.channel_count as usize == channels);
        let mut found = None;
        for index in 0..configs.count(&handle) {
            if let Some(config) = configs.get(&handle, index, &mut buffer) {
                if has(config.main_input) && has(config.main_output) {
                    found = Some(config.id);
                    break;
                }
            }
        }
        let id = found.ok_or_else(|| anyhow!("the plugin has no {channels}-channel layout"))?;
        configs.select(&handle, id).map_err(|_| anyhow!("the plugin refused its own {channels}-channel layout"))
    }

    /// Activates the plugin with `settings` and the layout matching `input`'s channel count, sends `params` (name, plain value) with the first
    /// call, processes `input` in calls whose sizes come from `next_size` on a separate audio
    /// thread, and deactivates again. Output buffers are filled with NaN before each call, so
    /// samples the plugin did not write stand out.
    pub fn render(
        &mut self,
        settings: Settings,
        input: &[Vec<f32>],
        params: &[(&str, &str)],
        next_size: impl FnMut() -> usize + Send,
    ) -> Result<Render> {
        self.render_automated(settings, input, params, &Automation::default(), next_size)
    }

    /// [`render`](Self::render) with `automation`: parameter values at given input samples,
    /// sent in the call that contains each sample, at its offset (sample-accurate).
    pub fn render_automated(
        &mut self,
        settings: Settings,
        input: &[Vec<f32>],
        params: &[(&str, &str)],
        automation: &Automation,
        mut next_size: impl FnMut() -> usize + Send,
    ) -> Result<Render> {
        let render_mode = if settings.offline { RenderMode::Offline } else { RenderMode::Realtime };
        self.select_channels(input.len())?;
        let render = self.extension(|s| &s.render, "render")?;
        render
            .set(&self.instance.plugin_handle(), render_mode)
            .map_err(|_| anyhow!("the plugin refused render mode {render_mode:?}"))?;
        let mut events = EventBuffer::new();
        for (name, text) in params {
            let (id, value) = self.param_from_text(name, text)?;
            events.push(&ParamValueEvent::new(0, id, Pckn::match_all(), value));
        }
        let configuration = PluginAudioConfiguration {
            sample_rate: settings.sample_rate,
            min_frames_count: 1,
            max_frames_count: settings.max_frames,
        };
        let processor = self.instance.activate(|_, _| (), configuration)?;
        let latency = self.latency()?;
        let finished = AtomicBool::new(false);
        let result = std::thread::scope(|scope| {
            let audio = scope.spawn(|| {
                let outcome = process_all(processor, input, &events, automation, settings, &mut next_size);
                finished.store(true, Ordering::Release);
                outcome
            });
            // Serve main-thread callbacks the plugin asks for while the audio thread runs.
            while !finished.load(Ordering::Acquire) {
                self.pump_callbacks();
                std::thread::sleep(Duration::from_millis(1));
            }
            audio.join().map_err(|_| anyhow!("the audio thread panicked"))
        })?;
        let (stopped, output) = result?;
        self.instance.deactivate(stopped);
        self.pump_callbacks();
        Ok(Render { output, latency })
    }

    /// Runs the main-thread callback the plugin asked for (`request_callback`), if it did, as
    /// a host's event loop does.
    pub fn pump_callbacks(&mut self) {
        if self.instance.access_shared_handler(|s| s.callback_requested.swap(false, Ordering::AcqRel)) {
            self.instance.call_on_main_thread_callback();
        }
    }
}

/// The audio thread's part of [`Plugin::render`].
fn process_all(
    processor: StoppedPluginAudioProcessor<Host>,
    input: &[Vec<f32>],
    events: &EventBuffer,
    automation: &Automation,
    settings: Settings,
    next_size: &mut dyn FnMut() -> usize,
) -> Result<(StoppedPluginAudioProcessor<Host>, Vec<Vec<f32>>)> {
    let channels = input.len();
    let total = input.first().map_or(0, Vec::len);
    let max_frames = settings.max_frames as usize;
    let mut processor = processor.start_processing().map_err(|_| anyhow!("the plugin refused to start processing"))?;
    let mut output = vec![vec![0.0f32; total]; channels];
    let mut input_block = vec![vec![0.0f32; max_frames]; channels];
    let mut output_block = vec![vec![0.0f32; max_frames]; channels];
    let mut input_ports = AudioPorts::with_capacity(channels, 1);
    let mut output_ports = AudioPorts::with_capacity(channels, 1);
    let mut call_events = EventBuffer::new();
    let mut out_events = EventBuffer::new();
    let (mut start, mut calls) = (0, 0);
    while start < total {
        if settings.reset_every.is_some_and(|every| calls > 0 && calls % every == 0) {
            processor.reset();
        }
        calls += 1;
        let len = next_size().clamp(1, max_frames).min(total - start);
        for c in 0..channels {
            input_block[c][..len].copy_from_slice(&input[c][start..start + len]);
            output_block[c][..len].fill(f32::NAN);
        }
        let inputs = input_ports.with_input_buffers([AudioPortBuffer {
            latency: 0,
            channels: AudioPortBufferType::f32_input_only(
                input_block.iter_mut().map(|b| InputChannel::variable(&mut b[..len])),
            ),
        }]);
        let mut outputs = output_ports.with_output_buffers([AudioPortBuffer {
            latency: 0,
            channels: AudioPortBufferType::f32_output_only(output_block.iter_mut().map(|b| &mut b[..len])),
        }]);
        call_events.clear();
        if start == 0 {
            call_events.push_all(events.iter());
        }
        automation.events_in(start..start + len, &mut call_events);
        out_events.clear();
        processor
            .process(
                &inputs,
                &mut outputs,
                &call_events.as_input(),
                &mut out_events.as_output(),
                Some(start as u64),
                None,
            )
            .with_context(|| format!("process call at sample {start} ({len} frames)"))?;
        for c in 0..channels {
            // Bitwise, so NaN inputs compare equal to themselves.
            let unchanged = input_block[c][..len]
                .iter()
                .zip(&input[c][start..start + len])
                .all(|(a, b)| a.to_bits() == b.to_bits());
            ensure!(unchanged, "the plugin modified its input (call at sample {start})");
            output[c][start..start + len].copy_from_slice(&output_block[c][..len]);
        }
        start += len;
    }
    Ok((processor.stop_processing(), output))
}

/// Parameter changes at input samples: `(sample, parameter id, CLAP value)`, in sample order.
#[derive(Debug, Default)]
pub struct Automation(pub Vec<(usize, ClapId, f64)>);

impl Automation {
    /// Appends the changes in `range` to `events`, timed from the range's start.
    fn events_in(&self, range: std::ops::Range<usize>, events: &mut EventBuffer) {
        let first = self.0.partition_point(|(at, _, _)| *at < range.start);
        for &(at, id, value) in self.0[first..].iter().take_while(|(at, _, _)| *at < range.end) {
            events.push(&ParamValueEvent::new((at - range.start) as u32, id, Pckn::match_all(), value));
        }
    }
}

struct Host;

impl HostHandlers for Host {
    type Shared<'a> = Shared;
    type MainThread<'a> = MainThread;
    type AudioProcessor<'a> = ();

    fn declare_extensions(builder: &mut HostExtensions<Self>, _shared: &Self::Shared<'_>) {
        builder
            .register::<HostLatency>()
            .register::<HostLog>()
            .register::<HostState>()
            .register::<HostThreadCheck>()
            .register::<HostGui>();
    }
}

struct Shared {
    main_thread: ThreadId,
    callback_requested: AtomicBool,
    latency: OnceLock<Option<PluginLatency>>,
    state: OnceLock<Option<PluginState>>,
    params: OnceLock<Option<PluginParams>>,
    gui: OnceLock<Option<PluginGui>>,
    render: OnceLock<Option<PluginRender>>,
    ports_config: OnceLock<Option<PluginAudioPortsConfig>>,
    /// The editor size the plugin last asked for (`gui.request_resize`).
    requested_gui_size: std::sync::Mutex<Option<(u32, u32)>>,
}

impl Shared {
    fn new(main_thread: ThreadId) -> Self {
        Self {
            main_thread,
            callback_requested: AtomicBool::new(false),
            latency: OnceLock::new(),
            state: OnceLock::new(),
            params: OnceLock::new(),
            gui: OnceLock::new(),
            render: OnceLock::new(),
            ports_config: OnceLock::new(),
            requested_gui_size: std::sync::Mutex::new(None),
        }
    }
}

impl<'a> SharedHandler<'a> for Shared {
    fn initializing(&self, instance: InitializingPluginHandle<'a>) {
        let _ = self.latency.set(instance.get_extension());
        let _ = self.state.set(instance.get_extension());
        let _ = self.params.set(instance.get_extension());
        let _ = self.gui.set(instance.get_extension());
        let _ = self.render.set(instance.get_extension());
        let _ = self.ports_config.set(instance.get_extension());
    }
    fn request_restart(&self) {}
    fn request_process(&self) {}
    fn request_callback(&self) {
        self.callback_requested.store(true, Ordering::Release);
    }
}

impl HostThreadCheckImpl for Shared {
    fn is_main_thread(&self) -> bool {
        std::thread::current().id() == self.main_thread
    }
    fn is_audio_thread(&self) -> bool {
        !self.is_main_thread()
    }
}

/// A host window that keeps the editor's size and never hides it on request.
impl HostGuiImpl for Shared {
    fn resize_hints_changed(&self) {}
    /// Noted, not done: the tests look at what was asked for.
    fn request_resize(&self, new_size: GuiSize) -> Result<(), HostError> {
        *self.requested_gui_size.lock().unwrap_or_else(|e| e.into_inner()) = Some((new_size.width, new_size.height));
        Ok(())
    }
    fn request_show(&self) -> Result<(), HostError> {
        Ok(())
    }
    fn request_hide(&self) -> Result<(), HostError> {
        Ok(())
    }
    fn closed(&self, _was_destroyed: bool) {}
}

impl HostLogImpl for Shared {
    fn log(&self, severity: LogSeverity, message: &str) {
        eprintln!("[plugin {severity}] {message}");
    }
}

#[derive(Default)]
struct MainThread {
    latency_changes: Cell<u32>,
}

impl<'a> MainThreadHandler<'a> for MainThread {}

impl HostLatencyImpl for MainThread {
    fn changed(&self) {
        self.latency_changes.set(self.latency_changes.get() + 1);
    }
}

impl HostStateImpl for MainThread {
    fn mark_dirty(&self) {}
}

/// Fails with a message naming the first non-finite, subnormal or unwritten (NaN) sample.
pub fn check_clean(output: &[Vec<f32>]) -> Result<()> {
    for (c, channel) in output.iter().enumerate() {
        if let Some((i, x)) =
            channel.iter().enumerate().find(|(_, x)| !(x.is_finite() && (**x == 0.0 || x.is_normal())))
        {
            bail!("channel {c} sample {i} is {x:e} (NaN means the plugin did not write it)");
        }
    }
    Ok(())
}
