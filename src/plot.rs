//! Shared by the command line's plots (`index tune`, `features --plot`; main thread): plotters
//! lays text out with a registered TrueType font, in SVG as in PNG.

use std::sync::OnceLock;

/// Debian's fonts-dejavu-core, installed by `cargo xtask setup`.
pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Registers [`FONT`] as plotters' "sans-serif" (once per process).
pub fn register_font() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let bytes = std::fs::read(FONT)
                .map_err(|e| format!("cannot read {FONT} (Debian package fonts-dejavu-core): {e}"))?;
            // plotters keeps the font for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, bytes)
                .map_err(|_| format!("{FONT} is not a usable font"))
        })
        .clone()
}
