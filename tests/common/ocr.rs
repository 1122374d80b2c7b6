//! Reading the editor's pictures back with Tesseract OCR (installed by `cargo xtask setup`):
//! egui draws light text on dark, so a picture is enlarged and inverted first.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How much a picture is enlarged before Tesseract reads it (small UI text reads badly).
const ENLARGE: i32 = 3;

fn prepared(png: &Path, crop: &[&str]) -> PathBuf {
    let prepared = png.with_extension("ocr.png");
    let status = Command::new("convert")
        .arg(png)
        .args(crop)
        .args(["-resize", &format!("{}%", ENLARGE * 100), "-colorspace", "Gray", "-negate"])
        .arg(&prepared)
        .status()
        .unwrap();
    assert!(status.success());
    prepared
}

fn tesseract(png: &Path, crop: &[&str], format: &[&str]) -> String {
    let prepared = prepared(png, crop);
    let output = Command::new("tesseract").arg(prepared).arg("-").args(format).stderr(Stdio::null()).output().unwrap();
    assert!(output.status.success(), "tesseract failed");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The text Tesseract reads in `png`, lower-cased and without white space, so a word split by
/// the OCR still matches.
pub fn read_text(png: &Path) -> String {
    tesseract(png, &[], &[]).to_lowercase().split_whitespace().collect()
}

/// Whether `text` holds `pattern` with at most one OCR slip (a wrong, missing or extra
/// character) per five characters: the least edit distance from `pattern` to any stretch of
/// `text` (Sellers' algorithm).
pub fn reads_like(text: &str, pattern: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    // best[i]: edits to match pattern[..i] ending at the current text position.
    let mut best: Vec<usize> = (0..=pattern.len()).collect();
    let allowed = pattern.len() / 5;
    for c in text.chars() {
        let mut diagonal = best[0];
        for i in 1..=pattern.len() {
            let substituted = diagonal + usize::from(pattern[i - 1] != c);
            diagonal = best[i];
            best[i] = substituted.min(best[i] + 1).min(best[i - 1] + 1);
        }
        if best[pattern.len()] <= allowed {
            return true;
        }
    }
    false
}

/// The words Tesseract reads in a picture, with where they are.
pub struct Page {
    words: Vec<Word>,
}

impl Page {
    pub fn read(png: &Path) -> Page {
        Page { words: read_words(png, &[]) }
    }

    /// The words in the strip of `png` from `left` that is `width` pixels wide: a column of a
    /// layout reads far better alone than beside its neighbours.
    pub fn read_strip(png: &Path, left: i32, width: i32) -> Page {
        let crop = format!("{width}x100000+{left}+0");
        let mut words = read_words(png, &["-crop", &crop, "+repage"]);
        for word in &mut words {
            word.left += left * ENLARGE;
            word.right += left * ENLARGE;
        }
        Page { words }
    }

    /// The centres, in the picture's pixels, of the places where `phrase` is read on one line,
    /// in Tesseract's reading order. Compared as [`read_text`] reads (lower-cased, spaces left
    /// out, so a name the OCR splits at its dots still matches) with the slips [`reads_like`]
    /// allows.
    pub fn find(&self, phrase: &str) -> Vec<(i32, i32)> {
        find_in(&self.words, phrase)
    }
}

fn find_in(words: &[Word], phrase: &str) -> Vec<(i32, i32)> {
    let phrase: String = phrase.to_lowercase().split_whitespace().collect();
    let mut found = Vec::new();
    for start in 0..words.len() {
        let mut joined = String::new();
        for end in start..words.len() {
            if words[end].line != words[start].line || joined.chars().count() > phrase.chars().count() + 2 {
                break;
            }
            joined.push_str(&words[end].text);
            let close_in_length = joined.chars().count().abs_diff(phrase.chars().count()) <= phrase.chars().count() / 5;
            if close_in_length && reads_like(&joined, &phrase) {
                found.push(centre(&words[start..=end]));
                break;
            }
        }
    }
    found
}

/// A word Tesseract read: its text (lower-cased), its line and its box in the enlarged picture.
struct Word {
    text: String,
    line: (i32, i32, i32),
    left: i32,
    top: i32,
    right: i32,
    bottom: i32,
}

fn read_words(png: &Path, crop: &[&str]) -> Vec<Word> {
    // TSV columns: level, page, block, paragraph, line, word, left, top, width, height, conf, text.
    tesseract(png, crop, &["tsv"])
        .lines()
        .skip(1)
        .filter_map(|line| {
            let columns: Vec<&str> = line.split('\t').collect();
            let number = |i: usize| columns.get(i)?.parse::<i32>().ok();
            let text = columns.get(11)?.trim().to_lowercase();
            let (left, top) = (number(6)?, number(7)?);
            let word = Word {
                line: (number(2)?, number(3)?, number(4)?),
                left,
                top,
                right: left + number(8)?,
                bottom: top + number(9)?,
                text,
            };
            (!word.text.is_empty()).then_some(word)
        })
        .collect()
}

/// The centre of `words`' boxes, in the picture's own pixels.
fn centre(words: &[Word]) -> (i32, i32) {
    let left = words.iter().map(|w| w.left).min().unwrap_or(0);
    let right = words.iter().map(|w| w.right).max().unwrap_or(0);
    let top = words.iter().map(|w| w.top).min().unwrap_or(0);
    let bottom = words.iter().map(|w| w.bottom).max().unwrap_or(0);
    ((left + right) / 2 / ENLARGE, (top + bottom) / 2 / ENLARGE)
}

/// The Voice section's rows, by the words of their names.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FileRow {
    Content,
    Index,
    Pitch,
    Synthesizer,
}

impl FileRow {
    pub const ALL: [FileRow; 4] = [FileRow::Content, FileRow::Index, FileRow::Pitch, FileRow::Synthesizer];

    pub fn name(self) -> &'static str {
        match self {
            FileRow::Content => "Content model",
            FileRow::Index => "Index",
            FileRow::Pitch => "Pitch model",
            FileRow::Synthesizer => "Synthesizer",
        }
    }
}

/// The width of the Voice section's first column (light and row name) at the default size.
const ROW_NAMES_WIDTH: i32 = 124;

/// The Voice section's rows in `png`: where each row's name is, read in the picture's first
/// column alone (beside the file names, Tesseract misreads them), above the Controls heading.
pub fn voice_rows(png: &Path) -> Vec<(FileRow, (i32, i32))> {
    let names = Page::read_strip(png, 0, ROW_NAMES_WIDTH);
    let controls = names.find("Controls").first().map_or(i32::MAX, |(_, y)| *y);
    let row = |row: FileRow| {
        let found = names.find(row.name()).into_iter().find(|(_, y)| *y < controls);
        (row, found.unwrap_or_else(|| panic!("{row:?} not read in {}", png.display())))
    };
    FileRow::ALL.map(row).to_vec()
}
