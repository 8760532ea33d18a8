//! Output files of heqc and heq-run: checking, before any work starts, that a path can be
//! written ([`check_writable`], [`check_distinct`]), and writing it atomically
//! ([`write_atomically`]), so that a finished computation is never thrown away because of its
//! output path and no reader ever sees a half-written file.
//!
//! Every file either binary writes (plans, `.npy` outputs, reports, profiles, charts) goes
//! through [`write_atomically`]. The binaries treat an [`OutputError`] as a usage error (exit
//! code 2).

use crate::error::OutputError;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Checks that `path` can be written: its folder exists and is a folder, `path` itself is not
/// a folder, and a file can be created in that folder (checked by creating and removing a
/// temporary file there; `path` itself is never touched).
///
/// # Errors
/// [`OutputError`] saying which of these fails.
pub fn check_writable(path: &Path) -> Result<(), OutputError> {
    let dir = folder_of(path);
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(OutputError::NotADirectory {
                path: path.to_path_buf(),
                dir: dir.to_path_buf(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(OutputError::NoDirectory {
                path: path.to_path_buf(),
                dir: dir.to_path_buf(),
            });
        }
        Err(error) => {
            return Err(OutputError::NotWritable {
                path: path.to_path_buf(),
                error,
            });
        }
    }
    if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err(OutputError::IsADirectory {
            path: path.to_path_buf(),
        });
    }
    let probe = temporary_path(path);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|error| OutputError::NotWritable {
            path: path.to_path_buf(),
            error,
        })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Checks that two output paths name different files, however they are spelled (`x`, `./x`,
/// `d/../x`, a symbolic link to the folder).
///
/// # Errors
/// [`OutputError::SameFile`] if both name the same file.
pub fn check_distinct(first: &Path, second: &Path) -> Result<(), OutputError> {
    if resolved(first) == resolved(second) {
        return Err(OutputError::SameFile {
            first: first.to_path_buf(),
            second: second.to_path_buf(),
        });
    }
    Ok(())
}

/// Writes `bytes` to a new temporary file next to `path`, syncs it and renames it to `path`,
/// so readers see the old file or the whole new one, never a part; on failure the temporary
/// file is removed and `path` is left as it was. The new file has default permissions.
///
/// # Errors
/// I/O failures creating, writing, syncing or renaming the file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temporary_path(path);
    let result = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The folder a file at `path` goes in (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A hidden file name next to `path`, unique in this process (process id and a counter).
fn temporary_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    folder_of(path).join(format!(".{name}.{}-{n}.tmp", std::process::id()))
}

/// The file `path` names: the canonical path if it exists, else its canonical folder joined
/// with its file name, else `path` as given.
fn resolved(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    match (std::fs::canonicalize(folder_of(path)), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh, empty folder for one test.
    fn test_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("heq-output-file-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("readable")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writable_paths_pass_without_leaving_files() {
        let dir = test_dir("ok");
        check_writable(&dir.join("y.npy")).expect("a file in an existing folder");
        std::fs::write(dir.join("old.npy"), b"old").expect("write");
        check_writable(&dir.join("old.npy")).expect("an existing file is replaced");
        assert_eq!(entries(&dir), ["old.npy"]);
        assert_eq!(std::fs::read(dir.join("old.npy")).expect("read"), b"old");
    }

    #[test]
    fn unwritable_paths_say_why() {
        let dir = test_dir("bad");
        let missing = dir.join("missing").join("y.npy");
        let err = check_writable(&missing).expect_err("no folder");
        assert!(matches!(err, OutputError::NoDirectory { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "cannot write {}: the directory {} does not exist",
                missing.display(),
                dir.join("missing").display()
            )
        );
        std::fs::write(dir.join("file"), b"").expect("write");
        let err = check_writable(&dir.join("file").join("y.npy")).expect_err("a file as folder");
        assert!(matches!(err, OutputError::NotADirectory { .. }), "{err}");
        let err = check_writable(&dir).expect_err("a folder as target");
        assert!(matches!(err, OutputError::IsADirectory { .. }), "{err}");
        assert_eq!(entries(&dir), ["file"]);
    }

    #[test]
    fn same_file_under_different_spellings() {
        let dir = test_dir("same");
        let a = dir.join("x.plan");
        let b = dir.join(".").join("sub").join("..").join("x.plan");
        std::fs::create_dir(dir.join("sub")).expect("mkdir");
        let err = check_distinct(&a, &b).expect_err("same file");
        assert!(matches!(err, OutputError::SameFile { .. }), "{err}");
        check_distinct(&a, &dir.join("y.plan")).expect("different files");
    }

    #[test]
    fn atomic_writes_replace_whole_files_and_clean_up_on_failure() {
        let dir = test_dir("atomic");
        let path = dir.join("y.bin");
        write_atomically(&path, b"first").expect("write");
        write_atomically(&path, b"second").expect("rewrite");
        assert_eq!(std::fs::read(&path).expect("read"), b"second");
        // Renaming a file onto a non-empty folder fails: the folder stays, no temporary file.
        std::fs::create_dir(dir.join("d")).expect("mkdir");
        std::fs::write(dir.join("d").join("inside"), b"").expect("write");
        write_atomically(&dir.join("d"), b"lost").expect_err("a folder cannot be replaced");
        assert_eq!(entries(&dir), ["d", "y.bin"]);
        assert!(write_atomically(&dir.join("missing").join("y"), b"").is_err());
        assert_eq!(entries(&dir), ["d", "y.bin"]);
    }
}
