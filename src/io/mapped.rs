//! Read-only memory maps: an index's vectors and codes (`.npy` matrices) and passages.

use super::npy::Dtype;
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

/// A whole file mapped read-only with its pages mapped in at once (Linux's `MAP_POPULATE`):
/// for a file searched at random (an HNSW graph), so that no question pays the page faults of
/// the pages it is the first to touch. The file is read at open if it is not in the page cache.
pub fn map_file_populated(path: &Path) -> Result<Arc<Mmap>> {
    let file = std::fs::File::open(path).map_err(|e| Error::reading(path, e))?;
    // SAFETY: as in `map_file`: read-only, never written through, never truncated while mapped.
    let map = unsafe { memmap2::MmapOptions::new().populate().map(&file) }
        .map_err(|e| Error::io(path, e))?;
    Ok(Arc::new(map))
}

/// A matrix `(rows, cols)` in a memory-mapped `.npy` file (an index's vectors, float32 or
/// float16, or its codes, int8 or packed bits): no copy, pages read on demand and shared
/// between processes.
pub struct MappedMatrix {
    map: Arc<Mmap>,
    dtype: Dtype,
    offset: usize,
    rows: usize,
    cols: usize,
}

impl MappedMatrix {
    /// Maps `path`, a C-order little-endian 2-D `.npy` file of one of densa's element types,
    /// checking its header against the file's size.
    pub fn open(path: &Path) -> Result<Self> {
        let map = map_file(path)?;
        let bad = |message: String| Error::InvalidInput(format!("{}: {message}", path.display()));
        let (dtype, rows, cols, offset) = super::npy::parse_header(&map).map_err(bad)?;
        let needed = rows
            .checked_mul(cols)
            .and_then(|n| n.checked_mul(dtype.size()))
            .and_then(|n| n.checked_add(offset));
        if needed != Some(map.len()) {
            return Err(bad(format!(
                "{} bytes, but a ({rows}, {cols}) '{}' array after a {offset}-byte header needs {}",
                map.len(),
                dtype.descr(),
                needed.map_or("more than 2^64".to_string(), |n| n.to_string())
            )));
        }
        if !(map.as_ptr() as usize + offset).is_multiple_of(dtype.size())
            || cfg!(target_endian = "big")
        {
            return Err(bad(format!(
                "data not {}-byte aligned little-endian values",
                dtype.size()
            )));
        }
        Ok(MappedMatrix {
            map,
            dtype,
            offset,
            rows,
            cols,
        })
    }

    /// Like [`MappedMatrix::open`], and its element type must be one of `dtypes`.
    pub fn open_as(path: &Path, dtypes: &[Dtype]) -> Result<Self> {
        let matrix = Self::open(path)?;
        if !dtypes.contains(&matrix.dtype) {
            let wanted: Vec<&str> = dtypes.iter().map(|d| d.descr()).collect();
            return Err(Error::InvalidInput(format!(
                "{}: holds '{}' values, expected {}",
                path.display(),
                matrix.dtype.descr(),
                wanted.join(" or ")
            )));
        }
        Ok(matrix)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// The data's bytes, row-major.
    fn bytes(&self) -> &[u8] {
        &self.map[self.offset..self.offset + self.rows * self.cols * self.dtype.size()]
    }

    /// The values of a float32 matrix, row-major `(rows, cols)`.
    ///
    /// # Panics
    /// On another element type (a caller's bug: check [`MappedMatrix::dtype`] first).
    pub fn as_f32(&self) -> &[f32] {
        assert_eq!(
            self.dtype,
            Dtype::F32,
            "as_f32 on a '{}' matrix",
            self.dtype.descr()
        );
        let bytes = self.bytes();
        // SAFETY: `bytes` holds rows · cols · 4 bytes (sliced above; the size was checked at
        // open), 4-byte aligned (checked at open; mmap bases are page-aligned); every bit
        // pattern is a valid f32; the Arc keeps the map alive for as long as `self`.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), bytes.len() / 4) }
    }

    /// The binary16 bits of a float16 matrix, row-major.
    ///
    /// # Panics
    /// On another element type.
    pub fn as_f16_bits(&self) -> &[u16] {
        assert_eq!(
            self.dtype,
            Dtype::F16,
            "as_f16_bits on a '{}' matrix",
            self.dtype.descr()
        );
        let bytes = self.bytes();
        // SAFETY: as for `as_f32`, with 2-byte elements (alignment checked at open); every
        // bit pattern is a valid u16.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<u16>(), bytes.len() / 2) }
    }

    /// The codes of an int8 matrix, row-major.
    ///
    /// # Panics
    /// On another element type.
    pub fn as_i8(&self) -> &[i8] {
        assert_eq!(
            self.dtype,
            Dtype::I8,
            "as_i8 on a '{}' matrix",
            self.dtype.descr()
        );
        let bytes = self.bytes();
        // SAFETY: one-byte elements of the same size and alignment as u8; every bit pattern
        // is a valid i8; the Arc keeps the map alive for as long as `self`.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<i8>(), bytes.len()) }
    }

    /// The bytes of a uint8 matrix (packed bits), row-major.
    ///
    /// # Panics
    /// On another element type.
    pub fn as_u8(&self) -> &[u8] {
        assert_eq!(
            self.dtype,
            Dtype::U8,
            "as_u8 on a '{}' matrix",
            self.dtype.descr()
        );
        self.bytes()
    }

    /// Row `i` of a float32 or float16 matrix as f32 values, into `out` (`cols` long).
    pub fn row_f32(&self, i: usize, out: &mut [f32]) {
        let range = i * self.cols..(i + 1) * self.cols;
        match self.dtype {
            Dtype::F16 => {
                let bits = &self.as_f16_bits()[range];
                for (o, &h) in out.iter_mut().zip(bits) {
                    *o = densa_kernels::search::f16_to_f32(h);
                }
            }
            _ => out.copy_from_slice(&self.as_f32()[range]),
        }
    }
}
