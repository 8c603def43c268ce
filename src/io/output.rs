//! The one output writer: what a user asked to be written is written whole or not at all, and
//! nothing else at the path is ever destroyed.
//!
//! | the path is | what happens |
//! |---|---|
//! | `-` | written to standard output |
//! | absent, or a regular file | a temporary in the same folder, synced, renamed over the path (an existing file keeps its permissions; a new one gets the umask's, 0644 by default) |
//! | a symbolic link | followed (links to links too) to its target, which is treated as above |
//! | a character or block device, a FIFO | opened and written straight through, never renamed over or truncated |
//! | a folder, a socket | refused with an error |
//!
//! Temporaries are named `.NAME.PID.densa-tmp` and listed here while they exist, so that an
//! interrupt handler can remove them ([`remove_pending`]); scratch folders can be listed too.

use crate::error::{Error, Result};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where the bytes for an output path go, once links are followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `-`: the process's standard output.
    Stdout,
    /// A device or a FIFO: written straight through.
    Stream(PathBuf),
    /// A regular file, or a path where nothing exists yet: temporary, sync, rename.
    File(PathBuf),
}

/// How many symbolic links are followed before giving up (Linux's own limit).
const MAX_LINKS: usize = 40;

/// Where writing `path` would put the bytes (see the module's table).
pub fn destination(path: &Path) -> Result<Destination> {
    if path.as_os_str() == "-" {
        return Ok(Destination::Stdout);
    }
    let target = follow_links(path)?;
    match std::fs::metadata(&target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if target.file_name().is_none() {
                return Err(Error::InvalidInput(format!(
                    "{}: not a file name",
                    path.display()
                )));
            }
            Ok(Destination::File(target))
        }
        Err(e) => Err(Error::io(&target, e)),
        Ok(meta) if meta.is_file() => Ok(Destination::File(target)),
        Ok(meta) if meta.is_dir() => Err(Error::InvalidInput(format!(
            "{}: is a folder; an output must be a file, a device, a FIFO or - (standard output)",
            path.display()
        ))),
        Ok(meta) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::FileTypeExt;
                let kind = meta.file_type();
                if kind.is_char_device() || kind.is_block_device() || kind.is_fifo() {
                    return Ok(Destination::Stream(target));
                }
            }
            let _ = meta;
            Err(Error::InvalidInput(format!(
                "{}: neither a regular file, a device nor a FIFO; refusing to write there",
                path.display()
            )))
        }
    }
}

/// `path` with every symbolic link followed, even a dangling last one (the target is then a
/// file still to be created).
fn follow_links(path: &Path) -> Result<PathBuf> {
    let mut current = path.to_owned();
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = std::fs::read_link(&current).map_err(|e| Error::io(&current, e))?;
                current = match current.parent() {
                    Some(parent) if link.is_relative() => parent.join(link),
                    _ => link,
                };
            }
            _ => return Ok(current),
        }
    }
    Err(Error::InvalidInput(format!(
        "{}: more than {MAX_LINKS} symbolic links (a loop?)",
        path.display()
    )))
}

/// Writes an output (see the module's table): `write` gets a buffered writer and produces the
/// whole content. On any error, a regular file's old content is untouched and no temporary
/// remains.
pub fn write_output(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    match destination(path)? {
        Destination::Stdout => {
            let mut out = BufWriter::new(std::io::stdout().lock());
            match write(&mut out).and_then(|()| out.flush()) {
                // A closed pipe (`densa embed | head`) ends the output, not the program.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(Error::io("<stdout>", e))
                }
                _ => Ok(()),
            }
        }
        Destination::Stream(target) => {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&target)
                .map_err(|e| Error::io(&target, e))?;
            let mut out = BufWriter::new(file);
            write(&mut out)
                .and_then(|()| out.flush())
                .map_err(|e| Error::io(&target, e))
        }
        Destination::File(target) => write_file_atomically(&target, write),
    }
}

/// The temporary name a file is written under before it is renamed to `path`: hidden, in the
/// same folder, with this process's id (two processes never share one).
pub fn temporary_path(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.{}.densa-tmp", std::process::id()))
}

/// Whether `name` is a temporary of [`temporary_path`] for the file `of` (any process).
pub fn is_temporary_of(name: &str, of: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|rest| rest.strip_suffix(".densa-tmp"))
        .and_then(|rest| rest.strip_prefix(of))
        .and_then(|rest| rest.strip_prefix('.'))
        .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// Writes a regular file through a synced temporary renamed over it: the file exists whole or
/// not at all, and a crash leaves the old content.
fn write_file_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let tmp = temporary_path(path);
    let _pending = Pending::new(&tmp);
    // An existing file keeps its permissions; a new one gets 0666 less the umask.
    let keep_permissions = std::fs::metadata(path).ok().map(|m| m.permissions());
    let result = (|| {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        if let Some(permissions) = keep_permissions {
            file.set_permissions(permissions)?;
        }
        let mut out = BufWriter::new(file);
        write(&mut out)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_folder_of(path);
        Ok(())
    })();
    result.map_err(|e: std::io::Error| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Makes a rename in `path`'s folder durable (best effort: not every file system can).
pub fn sync_folder_of(path: &Path) {
    #[cfg(unix)]
    if let Some(folder) = path.parent() {
        let folder = if folder.as_os_str().is_empty() {
            Path::new(".")
        } else {
            folder
        };
        if let Ok(dir) = std::fs::File::open(folder) {
            let _ = dir.sync_all();
        }
    }
}

/// One file of a folder to write: its path inside the folder and its content.
pub struct FolderFile {
    pub name: PathBuf,
    pub content: FileContent,
}

/// What a [`FolderFile`] holds.
pub enum FileContent {
    Bytes(Vec<u8>),
    /// The bytes of this file, read when written.
    CopyOf(PathBuf),
}

/// Writes `files` into the folder `dst`. A new folder is written under a temporary name
/// beside it and renamed into place whole, so it exists complete or not at all. An existing
/// folder must hold none of `files` unless `overwrite` is set; each file is then replaced
/// whole (see [`write_output`]) and every other file in it is left alone.
pub fn write_folder(dst: &Path, files: &[FolderFile], overwrite: bool) -> Result<()> {
    let write_into = |folder: &Path| -> Result<()> {
        for file in files {
            let path = folder.join(&file.name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            match &file.content {
                FileContent::Bytes(bytes) => write_output(&path, |out| out.write_all(bytes))?,
                FileContent::CopyOf(source) => {
                    let mut input =
                        std::fs::File::open(source).map_err(|e| Error::reading(source, e))?;
                    write_output(&path, |out| std::io::copy(&mut input, out).map(drop))?
                }
            }
        }
        Ok(())
    };
    match std::fs::metadata(dst) {
        Ok(meta) if meta.is_dir() => {
            let existing: Vec<String> = files
                .iter()
                .filter(|f| std::fs::symlink_metadata(dst.join(&f.name)).is_ok())
                .map(|f| f.name.display().to_string())
                .collect();
            if !existing.is_empty() && !overwrite {
                return Err(Error::WouldOverwrite {
                    dir: dst.to_owned(),
                    files: existing,
                });
            }
            write_into(dst)
        }
        Ok(_) => Err(Error::InvalidInput(format!(
            "{}: exists and is not a folder",
            dst.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let staging = temporary_path(dst);
            let _pending = Pending::new(&staging);
            if let Some(parent) = dst.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            std::fs::create_dir(&staging).map_err(|e| Error::io(&staging, e))?;
            let result = write_into(&staging).and_then(|()| {
                std::fs::rename(&staging, dst).map_err(|e| Error::io(dst, e))?;
                sync_folder_of(dst);
                Ok(())
            });
            if result.is_err() {
                let _ = std::fs::remove_dir_all(&staging);
            }
            result
        }
        Err(e) => Err(Error::io(dst, e)),
    }
}

/// The absolute path a folder has or would have once created: its longest existing ancestor
/// with every link resolved, then the rest of the path (`.` and `..` applied by name).
pub fn resolve_folder(path: &Path) -> Result<PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io(".", e))?
            .join(path)
    };
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        match std::fs::canonicalize(existing) {
            Ok(mut resolved) => {
                for part in rest.iter().rev() {
                    match part {
                        std::path::Component::ParentDir => {
                            resolved.pop();
                        }
                        std::path::Component::CurDir => {}
                        other => resolved.push(other),
                    }
                }
                return Ok(resolved);
            }
            Err(_) => match (existing.parent(), existing.components().next_back()) {
                (Some(parent), Some(last)) => {
                    rest.push(last);
                    existing = parent;
                }
                _ => return Ok(absolute),
            },
        }
    }
}

/// What an interrupt must remove: temporaries being written, scratch folders.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A path listed for removal on interrupt while this guard lives.
pub struct Pending {
    path: PathBuf,
}

impl Pending {
    /// Lists a temporary file or a scratch folder (a folder goes with everything in it),
    /// removed by [`remove_pending`] until the guard is dropped.
    pub fn new(path: &Path) -> Pending {
        PENDING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(path.to_owned());
        Pending {
            path: path.to_owned(),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = pending.iter().rposition(|p| *p == self.path) {
            pending.swap_remove(i);
        }
    }
}

/// Removes every listed temporary and scratch folder: for an interrupt handler (Ctrl-C,
/// SIGTERM), after which the process exits. Files already renamed into place are not listed.
pub fn remove_pending() {
    // ctrlc runs the handler on a thread of its own, so taking the lock is safe: it is held
    // only for a push or a removal.
    let pending = PENDING.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for path in pending {
        if path.is_dir() {
            let _ = std::fs::remove_dir_all(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_temporary_of;

    #[test]
    fn temporary_names() {
        assert!(is_temporary_of(".vectors.npy.123.densa-tmp", "vectors.npy"));
        assert!(!is_temporary_of(".vectors.npy..densa-tmp", "vectors.npy"));
        assert!(!is_temporary_of(
            ".vectors.npy.12a.densa-tmp",
            "vectors.npy"
        ));
        assert!(!is_temporary_of("vectors.npy.123.densa-tmp", "vectors.npy"));
        assert!(!is_temporary_of(".other.npy.123.densa-tmp", "vectors.npy"));
    }
}
