//! Real recorded speech for `cargo xtask demo`: one utterance of Debian's `festvox-ru` voice
//! (a Russian male speaker, 16 kHz studio recordings under a BSD-like licence), fetched with
//! `apt-get download` into the setup cache the first time and kept there with its copyright
//! file; the 170 MB package itself is not kept. Main thread of the xtask.

use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};

const PACKAGE: &str = "festvox-ru";
const UTTERANCE: &str = "usr/share/festival/voices/russian/msu_ru_nsh_clunits/wav/ru_0003.wav";
const COPYRIGHT: &str = "usr/share/doc/festvox-ru/copyright";

/// The utterance's samples, its rate and a description, fetching it if needed.
pub fn recording() -> Result<(Vec<f32>, u32, String)> {
    let dir = crate::setup::cache_dir()?.join("speech");
    let wav = dir.join("ru_0003.wav");
    if !wav.exists() {
        fetch(&dir).with_context(|| format!("fetching {PACKAGE} with apt-get download"))?;
    }
    let mut reader = hound::WavReader::open(&wav)?;
    let spec = reader.spec();
    ensure!(spec.channels == 1 && spec.sample_format == hound::SampleFormat::Int, "{} is not mono PCM", wav.display());
    let scale = 1.0 / (1u32 << (spec.bits_per_sample - 1)) as f32;
    let samples = reader.samples::<i32>().map(|s| s.map(|s| s as f32 * scale)).collect::<Result<_, _>>()?;
    let name = format!("{PACKAGE}'s ru_0003.wav (recorded male speech; licence: {})", dir.join("copyright").display());
    Ok((samples, spec.sample_rate, name))
}

fn fetch(dir: &Path) -> Result<()> {
    let work = dir.join("download");
    std::fs::create_dir_all(&work)?;
    let download = || Command::new("apt-get").args(["download", "-qq", PACKAGE]).current_dir(&work).status();
    if !download()?.success() {
        // A bare machine may have no package lists yet.
        ensure!(Command::new("apt-get").args(["update", "-qq"]).status()?.success(), "apt-get update failed");
        ensure!(download()?.success(), "apt-get download {PACKAGE} failed");
    }
    let deb = std::fs::read_dir(&work)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("no .deb was downloaded")?;
    let extracted = work.join("root");
    ensure!(Command::new("dpkg").arg("-x").arg(&deb).arg(&extracted).status()?.success(), "dpkg -x failed");
    std::fs::copy(extracted.join(COPYRIGHT), dir.join("copyright"))?;
    std::fs::copy(extracted.join(UTTERANCE), dir.join("ru_0003.wav"))?;
    std::fs::remove_dir_all(&work)?;
    Ok(())
}
