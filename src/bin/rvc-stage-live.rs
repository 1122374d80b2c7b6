//! `rvc-stage-live`: the plugin as a stand-alone app (see `rvc_stage::plugin::live`).

fn main() -> std::process::ExitCode {
    rvc_stage::plugin::live::main()
}
