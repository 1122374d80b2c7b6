//! Recently used files, per role, shared by every instance and the live app: a small JSON file
//! in the user's configuration folder (`$XDG_CONFIG_HOME/rvc-stage/recent-files.json`, else
//! `~/.config/...`). Read and written on the editor's (GUI) thread; the file is a few hundred
//! bytes, and a missing or unreadable one is an empty list.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::view::FileRole;

/// How many files each role remembers.
pub const REMEMBERED: usize = 8;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecentFiles {
    /// Where the list is saved; `None` when no configuration folder is known.
    file: Option<PathBuf>,
    /// Newest first, per role key.
    lists: BTreeMap<String, Vec<PathBuf>>,
}

impl RecentFiles {
    /// The user's list.
    pub fn load() -> Self {
        Self::load_from(config_dir().map(|dir| dir.join("recent-files.json")))
    }

    fn load_from(file: Option<PathBuf>) -> Self {
        let lists = file
            .as_deref()
            .and_then(|file| std::fs::read(file).ok())
            .and_then(|bytes| serde_json::from_slice::<BTreeMap<String, Vec<PathBuf>>>(&bytes).ok())
            .unwrap_or_default();
        RecentFiles { file, lists }
    }

    /// Newest first.
    pub fn list(&self, role: FileRole) -> &[PathBuf] {
        self.lists.get(role.key()).map_or(&[], Vec::as_slice)
    }

    /// Puts `path` first in `role`'s list and saves the lists; returns whether anything changed.
    pub fn note(&mut self, role: FileRole, path: &Path) -> bool {
        let list = self.lists.entry(role.key().to_string()).or_default();
        if list.first().is_some_and(|first| first == path) {
            return false;
        }
        list.retain(|known| known != path);
        list.insert(0, path.to_path_buf());
        list.truncate(REMEMBERED);
        self.save();
        true
    }

    /// Best effort: a list that cannot be saved is still used in this session.
    fn save(&self) {
        let Some(file) = &self.file else { return };
        let Ok(json) = serde_json::to_vec_pretty(&self.lists) else { return };
        let written = file.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| std::fs::write(file, json));
        if let Err(error) = written {
            tracing::warn!("RVC Stage cannot save its recent files to {}: {error}", file.display());
        }
    }
}

fn config_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".config")))?;
    Some(base.join("rvc-stage"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_first_without_repeats_bounded_and_saved_between_sessions() {
        let dir = std::env::temp_dir().join(format!("rvc-stage-recent-{}", std::process::id()));
        let file = dir.join("nested/recent-files.json");
        let mut recent = RecentFiles::load_from(Some(file.clone()));
        assert!(recent.list(FileRole::Index).is_empty());
        for n in 0..REMEMBERED + 2 {
            assert!(recent.note(FileRole::Index, Path::new(&format!("/v/{n}.index"))));
        }
        assert!(recent.note(FileRole::Index, Path::new("/v/5.index")), "an older file moves to the front");
        assert!(!recent.note(FileRole::Index, Path::new("/v/5.index")), "the newest again changes nothing");
        recent.note(FileRole::Synthesizer, Path::new("/v/alto.onnx"));
        let reloaded = RecentFiles::load_from(Some(file));
        let index = reloaded.list(FileRole::Index);
        assert_eq!(index.len(), REMEMBERED);
        assert_eq!(index[..3], [PathBuf::from("/v/5.index"), PathBuf::from("/v/9.index"), PathBuf::from("/v/8.index")]);
        assert_eq!(reloaded.list(FileRole::Synthesizer), [PathBuf::from("/v/alto.onnx")]);
        assert!(reloaded.list(FileRole::PitchModel).is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_unreadable_list_is_empty() {
        let file = std::env::temp_dir().join(format!("rvc-stage-recent-bad-{}.json", std::process::id()));
        std::fs::write(&file, b"{ not json").unwrap();
        assert!(RecentFiles::load_from(Some(file.clone())).list(FileRole::Index).is_empty());
        std::fs::remove_file(file).unwrap();
    }
}
