//! The I/O room: everything densa reads from or writes to the file system, apart from the
//! checkpoint loader.
//!
//! - [`output`]: the one writer for files a user asked for (`--output`, index files, a
//!   quantized folder): regular files through a synced temporary renamed into place, devices,
//!   FIFOs and standard output straight through, never renamed over; the temporaries an
//!   interrupt must remove.
//! - [`records`]: input texts, one per line or JSON lines.
//! - [`npy`]: NumPy's `.npy` float32 matrices.
//! - [`mapped`]: read-only memory maps (an index's vectors and passages).
//! - [`read_json`]: the one reader of JSON files (manifests, sentence-transformers configs).

pub mod mapped;
pub mod npy;
pub mod output;
pub mod records;

use crate::error::{Error, Result};
use std::path::Path;

/// Reads and parses a JSON file; errors name the file.
pub fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::reading(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Config {
        path: path.to_owned(),
        message: format!("not valid JSON: {e}"),
    })
}

/// Reads a JSON file if it exists (`Ok(None)` when it does not).
pub fn read_json_if_present(path: &Path) -> Result<Option<serde_json::Value>> {
    if path.is_file() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

/// Stops here, forever, when the environment variable `DENSA_FAILPOINT` names `point`: the
/// fault-injection hook of the reliability tests, which wait for the message on standard error
/// and then kill the process with SIGKILL at exactly this step (docs/RELIABILITY.md).
pub(crate) fn failpoint(point: &str) {
    if std::env::var_os("DENSA_FAILPOINT").is_some_and(|v| v == point) {
        eprintln!("densa: failpoint {point} reached");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}
