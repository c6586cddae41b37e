//! Deterministic trees: `root/dNNNNN/episode-NNNN.mkv`, 100 files per directory, and the
//! change sets that touch 1 % of the files.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const FILES_PER_DIR: usize = 100;

/// A tree of `entries` files under `root`.
pub struct Tree {
    pub root: PathBuf,
    pub entries: usize,
    pub dirs: Vec<PathBuf>,
    /// Change sets applied so far (each toggles names, so the tree never grows).
    changes: usize,
}

fn file_name(index: usize) -> String {
    format!("episode-{index:04}.mkv")
}

fn moved_name(index: usize) -> String {
    format!("episode-{index:04}.part")
}

impl Tree {
    /// Makes the tree (an existing `root` is removed first).
    pub fn create(root: &Path, entries: usize) -> std::io::Result<Tree> {
        if root.exists() {
            fs::remove_dir_all(root)?;
        }
        fs::create_dir_all(root)?;
        let mut dirs = Vec::new();
        for d in 0..entries.div_ceil(FILES_PER_DIR) {
            let dir = root.join(format!("d{d:05}"));
            fs::create_dir(&dir)?;
            let files = FILES_PER_DIR.min(entries - d * FILES_PER_DIR);
            for f in 0..files {
                // A few bytes each, so a size change is an IN_MODIFY.
                File::create(dir.join(file_name(f)))?.write_all(b"x")?;
            }
            dirs.push(dir);
        }
        Ok(Tree { root: root.to_owned(), entries, dirs, changes: 0 })
    }

    /// The same tree seen through another path (a bindfs mount of `root`).
    pub fn seen_at(&self, mount: &Path) -> Tree {
        Tree {
            root: mount.to_owned(),
            entries: self.entries,
            dirs: self.dirs.iter().map(|d| mount.join(d.file_name().unwrap_or_default())).collect(),
            changes: self.changes,
        }
    }

    /// Every directory to watch: the root and the directories below it.
    pub fn watched_dirs(&self) -> Vec<PathBuf> {
        std::iter::once(self.root.clone()).chain(self.dirs.iter().cloned()).collect()
    }

    /// Entries held by the watched directories' listings: every file, and the root's dirs.
    pub fn listed_entries(&self) -> usize {
        self.entries + self.dirs.len()
    }

    /// Touches 1 % of the files: one per directory, half of them appended to (IN_MODIFY), half
    /// renamed (the directory's listing changes: IN_MOVED_FROM/IN_MOVED_TO).
    pub fn change_one_percent(&mut self) -> std::io::Result<()> {
        let round = self.changes;
        self.changes += 1;
        let index = round % FILES_PER_DIR;
        for (d, dir) in self.dirs.iter().enumerate() {
            if d % 2 == 0 {
                let path = [dir.join(file_name(index)), dir.join(moved_name(index))]
                    .into_iter()
                    .find(|p| p.exists());
                if let Some(path) = path {
                    OpenOptions::new().append(true).open(path)?.write_all(b"x")?;
                }
            } else {
                let (a, b) = (dir.join(file_name(index)), dir.join(moved_name(index)));
                if a.exists() {
                    fs::rename(a, b)?;
                } else if b.exists() {
                    fs::rename(b, a)?;
                }
            }
        }
        Ok(())
    }

    /// Up to `count` file paths, directory by directory.
    pub fn files(&self, count: usize) -> Vec<PathBuf> {
        let mut out = Vec::with_capacity(count);
        for dir in &self.dirs {
            for f in 0..FILES_PER_DIR {
                if out.len() == count {
                    return out;
                }
                let a = dir.join(file_name(f));
                out.push(if a.exists() { a } else { dir.join(moved_name(f)) });
            }
        }
        out
    }
}
