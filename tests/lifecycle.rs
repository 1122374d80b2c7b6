//! Worker threads live exactly as long as an activation: one while active, none after
//! deactivation or after the plugin is destroyed. Alone in its test binary, so no other test's
//! threads are counted.

#[path = "../xtask/src/clap_host.rs"]
#[allow(dead_code)] // each test binary uses part of the host
mod clap_host;
mod common;

use clap_host::{Plugin, Settings};

/// Threads of this process whose name starts like the engine's worker ("rvc-stage-worker",
/// which Linux truncates to 15 bytes).
fn worker_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.unwrap().path().join("comm")).ok())
        .filter(|name| name.starts_with("rvc-stage-work"))
        .count()
}

/// The worker count while active: a new thread names itself only once it runs, so this waits
/// (up to 2 s) for the worker's name to appear.
fn worker_threads_once_named() -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while worker_threads() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    worker_threads()
}

/// The worker count after a deactivation: the join returns once the thread has exited, and the
/// kernel removes its task from /proc a few microseconds later, so this waits (up to 2 s) for it
/// to go. A leaked worker never goes.
fn worker_threads_once_gone() -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while worker_threads() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    worker_threads()
}

#[test]
fn a_worker_lives_exactly_as_long_as_an_activation() {
    let entry = common::in_process_entry();
    let mut first = Plugin::new(&entry).unwrap();
    let mut second = Plugin::new(&entry).unwrap();
    assert_eq!(worker_threads(), 0, "instantiating starts nothing");

    let settings = Settings::new(48_000.0, 64, false);
    let input = vec![vec![0.0f32; 64]; 2];
    let mut during = Vec::new();
    first
        .render(settings, &input, &[], || {
            during.push(worker_threads_once_named());
            64
        })
        .unwrap();
    assert_eq!(during, [1], "one worker while active");
    assert_eq!(worker_threads_once_gone(), 0, "deactivation joins the worker");

    // Re-activation and a second instance each run one fresh worker; none leaks.
    for index in [0, 1, 0] {
        let plugin = if index == 0 { &mut first } else { &mut second };
        plugin
            .render(settings, &input, &[], || {
                during.push(worker_threads_once_named());
                64
            })
            .unwrap();
        assert_eq!(worker_threads_once_gone(), 0);
    }
    assert_eq!(during, [1, 1, 1, 1]);
    drop((first, second));
    assert_eq!(worker_threads_once_gone(), 0);
}

/// Loading the built plugin starts no thread in the host: faiss's BLAS dependency resolves to
/// OpenBLAS's serial build (build.rs), not the threaded one that starts a pool when loaded.
/// The host is a fresh Python process that has loaded no BLAS of its own.
#[test]
fn loading_the_plugin_starts_no_thread() {
    let script = "import ctypes, os, sys, time\n\
                  before = len(os.listdir('/proc/self/task'))\n\
                  ctypes.CDLL(sys.argv[1])\n\
                  time.sleep(0.2)\n\
                  print(before, len(os.listdir('/proc/self/task')))";
    let output = std::process::Command::new(common::reference_python())
        .args(["-c", script])
        .arg(common::bundled("rvc-stage.clap"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let counts: Vec<usize> =
        String::from_utf8_lossy(&output.stdout).split_whitespace().map(|n| n.parse().unwrap()).collect();
    assert_eq!(counts[0], counts[1], "threads before and after loading the plugin");
}
