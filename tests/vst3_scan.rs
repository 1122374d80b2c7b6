//! The built VST3 bundle scanned the way a DAW scans it: load the module, call `ModuleEntry`,
//! ask the factory for its classes, and check what hosts file the plugin under.

use std::ffi::{c_void, CStr};
use std::path::PathBuf;

use vst3::Steinberg::{IPluginFactory, IPluginFactory2, IPluginFactory2Trait, IPluginFactoryTrait, PClassInfo2, PFactoryInfo};
use vst3::ComPtr;

fn module() -> PathBuf {
    let clap = std::env::var_os("RVC_STAGE_CLAP")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bundled/rvc-stage.clap"));
    let module = clap.with_file_name("rvc-stage.vst3/Contents/x86_64-linux/rvc-stage.so");
    assert!(module.exists(), "{} is missing: run `cargo xtask test`, which bundles the plugin first", module.display());
    module
}

fn text(chars: &[std::ffi::c_char]) -> String {
    // SAFETY: VST3 strings are NUL-terminated within their fixed-size arrays.
    unsafe { CStr::from_ptr(chars.as_ptr()) }.to_string_lossy().into_owned()
}

#[test]
fn factory_lists_one_audio_effect_with_our_class_id() {
    // SAFETY: loading the module runs its initialisers, which is what is under test.
    let library = unsafe { libloading::Library::new(module()) }.unwrap();
    unsafe {
        let module_entry = library.get::<unsafe extern "C" fn(*mut c_void) -> bool>(b"ModuleEntry").unwrap();
        assert!(module_entry(std::ptr::null_mut()));
        let get_factory = library.get::<unsafe extern "system" fn() -> *mut IPluginFactory>(b"GetPluginFactory").unwrap();
        let factory = ComPtr::from_raw(get_factory()).expect("GetPluginFactory returned null");

        let mut info: PFactoryInfo = std::mem::zeroed();
        assert_eq!(factory.getFactoryInfo(&mut info), vst3::Steinberg::kResultOk);
        assert_eq!(text(&info.vendor), "RVC Stage");
        assert_eq!(factory.countClasses(), 1);

        let factory2 = factory.cast::<IPluginFactory2>().expect("IPluginFactory2 is supported");
        let mut class: PClassInfo2 = std::mem::zeroed();
        assert_eq!(factory2.getClassInfo2(0, &mut class), vst3::Steinberg::kResultOk);
        assert_eq!(text(&class.name), "RVC Stage");
        assert_eq!(text(&class.category), "Audio Module Class");
        assert_eq!(text(&class.subCategories), "Fx|Pitch Shift|Voice");
        let cid: Vec<u8> = class.cid.iter().map(|b| *b as u8).collect();
        assert_eq!(cid, b"RvcStageVoiceCnv");
        drop(factory2);
        drop(factory);
        let module_exit = library.get::<unsafe extern "C" fn() -> bool>(b"ModuleExit").unwrap();
        assert!(module_exit());
    }
}
