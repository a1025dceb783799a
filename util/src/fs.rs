//! Files that readers never see half-written, and directories only one writer fills at a time.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Write `contents` to `path` atomically and durably: a hidden temporary file beside it (unique
/// to this process and call), flushed to disk, renamed over `path`, and the directory entry
/// flushed too. A reader sees the old file or the new one, never a torn one, even after a crash.
/// The parent directory must exist.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let (dir, file_name) = dir_and_name(path);
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{file_name}.tmp{}.{unique}", std::process::id()));
    let written = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return written;
    }
    // The rename is durable once the directory is; not every platform can open a directory.
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The directory of `path` (`.` for a bare name) and its file name.
fn dir_and_name(path: &Path) -> (&Path, String) {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    (dir, path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into()))
}

/// Create the directory `path` goes in, if it has one and it is missing; the error names it.
pub fn create_parent(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir).map_err(|e| std::io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display()))),
        None => Ok(()),
    }
}

/// Another process holds an output's lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{output}: another bitfusion process is writing it (it holds {lock}); wait for it to finish or write elsewhere")]
    Busy { output: PathBuf, lock: PathBuf },
    #[error("{path}: cannot lock: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// An exclusive, advisory lock on an output (a directory a run fills, or one file a build
/// writes), held until dropped: a lock file locked with the operating system's file lock. The
/// operating system releases it when the process ends, however it ends, so a killed run never
/// leaves a stale lock behind; the small lock file itself stays.
#[derive(Debug)]
pub struct OutputLock {
    _file: File,
    path: PathBuf,
}

impl OutputLock {
    /// Create `dir` if needed and lock it (through `dir/.lock`), or fail at once with
    /// [`LockError::Busy`].
    pub fn dir(dir: &Path) -> Result<OutputLock, LockError> {
        std::fs::create_dir_all(dir).map_err(|source| LockError::Io { path: dir.to_path_buf(), source })?;
        Self::take(dir, dir.join(".lock"))
    }

    /// Create `path`'s directory if needed and lock the output file `path` (through a hidden
    /// `.NAME.lock` beside it), or fail at once with [`LockError::Busy`].
    pub fn file(path: &Path) -> Result<OutputLock, LockError> {
        create_parent(path).map_err(|source| LockError::Io { path: path.to_path_buf(), source })?;
        let (dir, name) = dir_and_name(path);
        Self::take(path, dir.join(format!(".{name}.lock")))
    }

    fn take(output: &Path, path: PathBuf) -> Result<OutputLock, LockError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| LockError::Io { path: path.clone(), source })?;
        match file.try_lock() {
            Ok(()) => Ok(OutputLock { _file: file, path }),
            Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Busy { output: output.to_path_buf(), lock: path }),
            Err(std::fs::TryLockError::Error(source)) => Err(LockError::Io { path, source }),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bitfusion-util-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let d = scratch("atomic");
        let p = d.join("x.csv");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x.csv")]);
        assert!(write_atomic(&d.join("missing/x.csv"), b"x").is_err());
    }

    #[test]
    fn a_locked_output_refuses_a_second_writer_until_released() {
        let d = scratch("lock");
        let first = OutputLock::dir(&d).unwrap();
        let e = OutputLock::dir(&d).unwrap_err();
        assert!(matches!(e, LockError::Busy { .. }), "{e}");
        assert!(e.to_string().contains("another bitfusion process"), "{e}");
        drop(first);
        OutputLock::dir(&d).unwrap();
        let f = d.join("lut.json");
        let held = OutputLock::file(&f).unwrap();
        assert!(OutputLock::file(&f).is_err());
        assert!(OutputLock::file(&d.join("other.json")).is_ok(), "another file of the directory is free");
        drop(held);
        OutputLock::file(&f).unwrap();
    }
}
