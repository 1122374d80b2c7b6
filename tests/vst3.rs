//! The built VST3 bundle as a DAW uses it: scanned (load the module, call `ModuleEntry`, list the
//! factory's classes) and run (create the component, set it up, process audio through it).

use std::ffi::{c_void, CStr};
use std::path::PathBuf;

use vst3::ComPtr;
use vst3::Steinberg::Vst::{
    AudioBusBuffers, AudioBusBuffers__type0, BusDirections_, IAudioProcessor, IAudioProcessorTrait, IComponent,
    IComponentTrait, IComponent_iid, MediaTypes_, ProcessData, ProcessModes_, ProcessSetup, SpeakerArr,
    SymbolicSampleSizes_,
};
use vst3::Steinberg::{
    kResultOk, IPluginBaseTrait, IPluginFactory, IPluginFactory2, IPluginFactory2Trait, IPluginFactoryTrait,
    PClassInfo2, PFactoryInfo,
};

mod common;

fn module() -> PathBuf {
    common::bundled("rvc-stage.vst3/Contents/x86_64-linux/rvc-stage.so")
}

fn text(chars: &[std::ffi::c_char]) -> String {
    // SAFETY: VST3 strings are NUL-terminated within their fixed-size arrays.
    unsafe { CStr::from_ptr(chars.as_ptr()) }.to_string_lossy().into_owned()
}

#[test]
fn factory_lists_one_audio_effect_with_our_class_id() {
    let module = Module::load();
    let factory = module.factory.as_ref().expect("GetPluginFactory returned null");
    unsafe {
        let mut info: PFactoryInfo = std::mem::zeroed();
        assert_eq!(factory.getFactoryInfo(&mut info), kResultOk);
        assert_eq!(text(&info.vendor), "RVC Stage");
        assert_eq!(factory.countClasses(), 1);

        let factory2 = factory.cast::<IPluginFactory2>().expect("IPluginFactory2 is supported");
        let mut class: PClassInfo2 = std::mem::zeroed();
        assert_eq!(factory2.getClassInfo2(0, &mut class), kResultOk);
        assert_eq!(text(&class.name), "RVC Stage");
        assert_eq!(text(&class.category), "Audio Module Class");
        assert_eq!(text(&class.subCategories), "Fx|Pitch Shift|Voice");
        let cid: Vec<u8> = class.cid.iter().map(|b| *b as u8).collect();
        assert_eq!(cid, b"RvcStageVoiceCnv");
    }
}

/// The module, loaded and entered, with its factory.
struct Module {
    factory: Option<ComPtr<IPluginFactory>>,
    library: libloading::Library,
}

impl Module {
    fn load() -> Self {
        // SAFETY: loading the module runs its initialisers, which is what is under test.
        unsafe {
            let library = libloading::Library::new(module()).unwrap();
            let module_entry = library.get::<unsafe extern "C" fn(*mut c_void) -> bool>(b"ModuleEntry").unwrap();
            assert!(module_entry(std::ptr::null_mut()));
            let get_factory =
                library.get::<unsafe extern "system" fn() -> *mut IPluginFactory>(b"GetPluginFactory").unwrap();
            let factory = ComPtr::from_raw(get_factory());
            Self { factory, library }
        }
    }

    fn component(&self) -> ComPtr<IComponent> {
        let factory = self.factory.as_ref().unwrap();
        unsafe {
            let mut class: PClassInfo2 = std::mem::zeroed();
            factory.cast::<IPluginFactory2>().unwrap().getClassInfo2(0, &mut class);
            let mut object = std::ptr::null_mut();
            let result = factory.createInstance(class.cid.as_ptr(), IComponent_iid.as_ptr(), &mut object);
            assert_eq!(result, kResultOk);
            ComPtr::from_raw(object.cast()).unwrap()
        }
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        self.factory = None;
        unsafe {
            let module_exit = self.library.get::<unsafe extern "C" fn() -> bool>(b"ModuleExit").unwrap();
            assert!(module_exit());
        }
    }
}

/// Sets the component up for stereo at `sample_rate`, processes `input` in blocks of
/// `block` frames and returns the output with the latency the plugin reported.
fn process(
    component: &ComPtr<IComponent>,
    sample_rate: f64,
    block: usize,
    offline: bool,
    input: &[Vec<f32>],
) -> (Vec<Vec<f32>>, u32) {
    let processor = component.cast::<IAudioProcessor>().expect("the component is an audio processor");
    let mode = if offline { ProcessModes_::kOffline } else { ProcessModes_::kRealtime } as i32;
    unsafe {
        let (mut ins, mut outs) = ([SpeakerArr::kStereo], [SpeakerArr::kStereo]);
        assert_eq!(processor.setBusArrangements(ins.as_mut_ptr(), 1, outs.as_mut_ptr(), 1), kResultOk);
        for direction in [BusDirections_::kInput, BusDirections_::kOutput] {
            component.activateBus(MediaTypes_::kAudio as i32, direction as i32, 0, 1);
        }
        let mut setup = ProcessSetup {
            processMode: mode,
            symbolicSampleSize: SymbolicSampleSizes_::kSample32 as i32,
            maxSamplesPerBlock: block as i32,
            sampleRate: sample_rate,
        };
        assert_eq!(processor.setupProcessing(&mut setup), kResultOk);
        assert_eq!(component.setActive(1), kResultOk);
        let latency = processor.getLatencySamples();
        assert_eq!(processor.setProcessing(1), kResultOk);

        let total = input[0].len();
        let mut output = vec![vec![f32::NAN; total]; 2];
        let mut in_block = vec![vec![0.0f32; block]; 2];
        let mut out_block = vec![vec![0.0f32; block]; 2];
        for start in (0..total).step_by(block) {
            let len = block.min(total - start);
            for c in 0..2 {
                in_block[c][..len].copy_from_slice(&input[c][start..start + len]);
                out_block[c][..len].fill(f32::NAN);
            }
            let mut in_ptrs: Vec<*mut f32> = in_block.iter_mut().map(|b| b.as_mut_ptr()).collect();
            let mut out_ptrs: Vec<*mut f32> = out_block.iter_mut().map(|b| b.as_mut_ptr()).collect();
            let mut in_bus = AudioBusBuffers {
                numChannels: 2,
                silenceFlags: 0,
                __field0: AudioBusBuffers__type0 { channelBuffers32: in_ptrs.as_mut_ptr() },
            };
            let mut out_bus = AudioBusBuffers {
                numChannels: 2,
                silenceFlags: 0,
                __field0: AudioBusBuffers__type0 { channelBuffers32: out_ptrs.as_mut_ptr() },
            };
            let mut data = ProcessData {
                processMode: mode,
                symbolicSampleSize: SymbolicSampleSizes_::kSample32 as i32,
                numSamples: len as i32,
                numInputs: 1,
                numOutputs: 1,
                inputs: &mut in_bus,
                outputs: &mut out_bus,
                inputParameterChanges: std::ptr::null_mut(),
                outputParameterChanges: std::ptr::null_mut(),
                inputEvents: std::ptr::null_mut(),
                outputEvents: std::ptr::null_mut(),
                processContext: std::ptr::null_mut(),
            };
            assert_eq!(processor.process(&mut data), kResultOk, "process at sample {start}");
            for c in 0..2 {
                output[c][start..start + len].copy_from_slice(&out_block[c][..len]);
            }
        }
        assert_eq!(processor.setProcessing(0), kResultOk);
        assert_eq!(component.setActive(0), kResultOk);
        (output, latency)
    }
}

#[test]
fn processes_with_exactly_the_reported_latency() {
    let module = Module::load();
    let component = module.component();
    unsafe { assert_eq!(component.initialize(std::ptr::null_mut()), kResultOk) };
    for (sample_rate, block, offline) in [(44_100.0, 512, true), (96_000.0, 64, true), (45_678.901, 1024, false)] {
        let at = 777;
        let mut impulse = vec![0.0f32; 80_000];
        impulse[at] = 1.0;
        let (output, latency) = process(&component, sample_rate, block, offline, &[impulse.clone(), impulse]);
        common::assert_clean(&output);
        if offline {
            for channel in &output {
                let peaks: Vec<usize> = (0..channel.len()).filter(|&n| channel[n] != 0.0).collect();
                assert_eq!(peaks, [at + latency as usize], "{sample_rate} Hz, {block} frames");
            }
        }
    }
    unsafe { assert_eq!(component.terminate(), kResultOk) };
}
