//! The bundles carry faiss's run-time libraries — libgomp, OpenBLAS's serial BLAS and LAPACK,
//! libgfortran, libquadmath — and load on a machine that lacks them (build.rs, `cargo xtask
//! bundle`). Such a machine is made for one child process at a time: a private mount namespace in
//! which /dev/null is bind-mounted over every system copy of those libraries, so the loader finds
//! only empty files, whichever path (its cache, its default directories, a RUNPATH, Debian's
//! alternatives) leads it there. Making the namespace needs root, as the tests have (CI too).
//!
//! The child is a fresh Python process loading the plugin with ctypes, as a host would load it.

mod common;

use std::collections::BTreeSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// What the hidden files' names start with: faiss's run-time libraries, in every build the system
/// may have (OpenBLAS's serial, pthread and OpenMP builds, the reference BLAS and LAPACK).
const HIDDEN: &[&str] =
    &["libgomp.so", "libblas.so", "liblapack.so", "libopenblas", "libgfortran.so", "libquadmath.so"];

/// The libraries the loader must take from beside the plugin binary.
const SHIPPED: &[&str] =
    &["libgomp.so.1", "libblas.so.3", "liblapack.so.3", "libopenblas.so.0", "libgfortran.so.5", "libquadmath.so.0"];

/// Loads the plugin binary in argv[1], resolving every symbol at once (`LD_BIND_NOW`, set by the
/// caller: each BLAS, LAPACK and OpenMP function faiss calls must exist in what was loaded), looks
/// up the entry symbol in argv[2], then runs what faiss's search and training run on: a matrix
/// product through `sgemm_`, and an OpenMP region after `omp_set_num_threads(1)`, as the search
/// thread does. Prints the threads of the process before and after, the product, the size of the
/// OpenMP team and the path of every library mapped.
const LOAD: &str = r#"
import ctypes, os, sys
threads = len(os.listdir('/proc/self/task'))
plugin = ctypes.CDLL(sys.argv[1])
ctypes.c_void_p.in_dll(plugin, sys.argv[2])
blas = ctypes.CDLL('libblas.so.3')  # the plugin's: the loader matches loaded libraries by name
f = ctypes.c_float * 4
n, one, zero, c = ctypes.c_int(2), ctypes.c_float(1), ctypes.c_float(0), f()
blas.sgemm_(b'N', b'N', *[ctypes.byref(n)] * 3, ctypes.byref(one), f(1, 3, 2, 4), ctypes.byref(n),
            f(5, 7, 6, 8), ctypes.byref(n), ctypes.byref(zero), c, ctypes.byref(n))
omp = ctypes.CDLL('libgomp.so.1')
omp.omp_set_num_threads(1)
team = []
region = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda _: team.append(omp.omp_get_num_threads()))
omp.GOMP_parallel(region, None, 0, 0)
print('threads', threads, len(os.listdir('/proc/self/task')))
print('product', *[int(x) for x in c])
print('team', *team)
for line in open('/proc/self/maps'):
    fields = line.split(maxsplit=5)
    if len(fields) == 6 and '.so' in fields[5]:
        print('mapped', fields[5].strip())
"#;

/// Every file a loader on this machine could open for one of the hidden libraries: matching
/// names in its default and configured directories and one level below them (where RUNPATHs and
/// Debian's alternatives point: openblas-serial/, openblas-pthread/, lapack/), and what its cache
/// names. Symlinks are followed, so the real files are hidden and every link to them breaks.
fn system_copies() -> BTreeSet<PathBuf> {
    let cache = std::process::Command::new("ldconfig").arg("-p").output().expect("ldconfig -p runs");
    let cached: Vec<PathBuf> = String::from_utf8_lossy(&cache.stdout)
        .lines()
        .filter_map(|line| line.split_once(" => ").map(|(_, path)| PathBuf::from(path.trim())))
        .collect();
    let mut dirs: BTreeSet<PathBuf> =
        ["/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib", "/usr/lib/x86_64-linux-gnu"]
            .iter()
            .map(PathBuf::from)
            .chain(cached.iter().filter_map(|path| path.parent().map(Path::to_path_buf)))
            .filter_map(|dir| std::fs::canonicalize(dir).ok())
            .collect();
    let below: Vec<PathBuf> = dirs.iter().flat_map(|dir| entries(dir)).filter(|path| path.is_dir()).collect();
    dirs.extend(below);
    dirs.iter()
        .flat_map(|dir| entries(dir))
        .chain(cached)
        .filter(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            HIDDEN.iter().any(|hidden| name.starts_with(hidden))
        })
        .filter_map(|path| std::fs::canonicalize(path).ok())
        .filter(|path| path.is_file())
        .collect()
}

/// The paths in `dir`; none where it cannot be read.
fn entries(dir: &Path) -> Vec<PathBuf> {
    let Ok(listing) = std::fs::read_dir(dir) else { return Vec::new() };
    listing.filter_map(|entry| entry.ok().map(|entry| entry.path())).collect()
}

/// Runs the `LOAD` script on `plugin` with every system copy of faiss's run-time libraries hidden.
/// Returns whether it succeeded, and its stdout and stderr.
fn load_with_system_libraries_hidden(plugin: &Path, entry: &str) -> (bool, String, String) {
    let copies: Vec<CString> =
        system_copies().iter().map(|path| CString::new(path.as_os_str().as_bytes()).unwrap()).collect();
    let mut command = std::process::Command::new(common::reference_python());
    command.args(["-c", LOAD]).arg(plugin).arg(entry).env("LD_BIND_NOW", "1");
    // SAFETY: between fork and exec the child only makes system calls (no allocation, no locks).
    unsafe {
        command.pre_exec(move || {
            let fail = || Err(std::io::Error::last_os_error());
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return fail();
            }
            // Nothing mounted below reaches the machine's own mount namespace.
            let (none, root) = (c"none".as_ptr(), c"/".as_ptr());
            if libc::mount(none, root, std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0 {
                return fail();
            }
            for copy in &copies {
                let null = c"/dev/null".as_ptr();
                if libc::mount(null, copy.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) != 0 {
                    return fail();
                }
            }
            Ok(())
        });
    }
    let output = command.output().unwrap_or_else(|error| {
        panic!("could not hide the system's libraries in a private mount namespace (the tests need root): {error}")
    });
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

/// Loads `plugin` with the system's copies hidden and checks that it worked with the libraries
/// shipped beside it.
fn assert_loads_alone(plugin: &Path, entry: &str) {
    let (ok, stdout, stderr) = load_with_system_libraries_hidden(plugin, entry);
    assert!(ok, "{} did not load without the system's libraries:\n{stderr}", plugin.display());
    let values = |key: &str| -> Vec<String> {
        stdout
            .lines()
            .filter_map(|line| line.strip_prefix(key).and_then(|rest| rest.strip_prefix(' ')))
            .map(String::from)
            .collect()
    };
    let beside = std::fs::canonicalize(plugin.parent().unwrap()).unwrap();
    let mapped: Vec<PathBuf> = values("mapped").iter().map(PathBuf::from).collect();
    for name in SHIPPED {
        assert!(mapped.contains(&beside.join(name)), "{name} was not loaded from {}: {mapped:?}", beside.display());
    }
    assert_eq!(values("product"), ["19 43 22 50"], "[1 2; 3 4]·[5 6; 7 8] by sgemm_, column-major");
    assert_eq!(values("team"), ["1"], "one OpenMP region, run by a team of one");
    let threads: Vec<usize> = values("threads")[0].split(' ').map(|n| n.parse().unwrap()).collect();
    assert_eq!(threads[0], threads[1], "threads before loading and after computing");
}

#[test]
fn the_clap_plugin_loads_without_the_system_libraries() {
    assert_loads_alone(&common::bundled("rvc-stage.clap"), "clap_entry");
}

#[test]
fn the_vst3_module_loads_without_the_system_libraries() {
    assert_loads_alone(&common::bundled("rvc-stage.vst3/Contents/x86_64-linux/rvc-stage.so"), "GetPluginFactory");
}

/// The hiding works: the same plugin binary with nothing beside it does not load, and the
/// loader names a hidden library.
#[test]
fn without_the_shipped_libraries_the_plugin_does_not_load() {
    let alone = common::scratch("bundle-deps-alone").join("rvc-stage.clap");
    std::fs::copy(common::bundled("rvc-stage.clap"), &alone).unwrap();
    let (ok, _, stderr) = load_with_system_libraries_hidden(&alone, "clap_entry");
    std::fs::remove_dir_all(alone.parent().unwrap()).unwrap();
    assert!(!ok, "the plugin loaded without its libraries: the system's copies were not hidden");
    assert!(HIDDEN.iter().any(|hidden| stderr.contains(hidden)), "failed for another reason:\n{stderr}");
}
