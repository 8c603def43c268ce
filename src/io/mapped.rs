//! Read-only memory maps: an index's vectors (a `.npy` float32 matrix) and passages.

use crate::error::{Error, Result};
use memmap2::Mmap;
use std::path::Path;
use std::sync::Arc;

/// A whole file mapped read-only (an index's passages), shared.
pub fn map_file(path: &Path) -> Result<Arc<Mmap>> {
    let file = std::fs::File::open(path).map_err(|e| Error::reading(path, e))?;
    // SAFETY: read-only mapping that densa never writes through; as for checkpoints, the file
    // must not be truncated while mapped (an index folder is written once, then only read).
    let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    Ok(Arc::new(map))
}

/// A float32 matrix `(rows, cols)` in a memory-mapped `.npy` file (an index's vectors): no
/// copy, pages read on demand and shared between processes.
pub struct MappedMatrix {
    map: Arc<Mmap>,
    offset: usize,
    rows: usize,
    cols: usize,
}

impl MappedMatrix {
    /// Maps `path`, a C-order little-endian float32 2-D `.npy` file, checking its header
    /// against the file's size.
    pub fn open(path: &Path) -> Result<Self> {
        let map = map_file(path)?;
        let bad = |message: String| Error::InvalidInput(format!("{}: {message}", path.display()));
        let (rows, cols, offset) = super::npy::parse_f32_header(&map).map_err(bad)?;
        let needed = rows
            .checked_mul(cols)
            .and_then(|n| n.checked_mul(4))
            .and_then(|n| n.checked_add(offset));
        if needed != Some(map.len()) {
            return Err(bad(format!(
                "{} bytes, but a ({rows}, {cols}) float32 array after a {offset}-byte header needs {}",
                map.len(),
                needed.map_or("more than 2^64".to_string(), |n| n.to_string())
            )));
        }
        if !(map.as_ptr() as usize + offset).is_multiple_of(std::mem::align_of::<f32>())
            || cfg!(target_endian = "big")
        {
            return Err(bad("data not 4-byte aligned little-endian f32".into()));
        }
        Ok(MappedMatrix {
            map,
            offset,
            rows,
            cols,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The values, row-major `(rows, cols)`.
    pub fn as_slice(&self) -> &[f32] {
        let len = self.rows * self.cols;
        let bytes = &self.map[self.offset..self.offset + len * 4];
        // SAFETY: `bytes` is in bounds (sliced above; the size was checked at open) and holds
        // exactly `len * 4` bytes starting 4-byte aligned (checked at open; mmap bases are
        // page-aligned); every bit pattern is a valid f32; the Arc keeps the map alive for
        // as long as `self`.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), len) }
    }
}
