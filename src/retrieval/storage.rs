//! How an index stores its vectors for search (`--vectors`), sentence-transformers'
//! `quantize_embeddings` recipe with its rescoring:
//!
//! | kind | files | scanned | bytes per dimension |
//! |---|---|---|---|
//! | `f32` | `vectors.npy` (`<f4`) | the vectors | 4 |
//! | `f16` | `vectors.npy` (`<f2`) | the vectors | 2 |
//! | `int8` | `vectors.npy` (`<f4`), `vectors.int8.npy` (`\|i1`), `calibration.int8.npy` | the codes, then the best candidates rescored against `vectors.npy` | 1 |
//! | `binary` | `vectors.npy` (`<f4`), `vectors.binary.npy` (`\|u1`, 8 bits a byte), `calibration.binary.npy` | the bits by Hamming distance, then rescored | 1/8 |
//!
//! The codes are calibrated on the collection, per dimension `j`: int8 codes are
//! `round(x_j / s_j)` with `s_j = max |x_j| / 127` over the vectors (symmetric, so a query's
//! scores against the codes are its inner products with the decoded vectors: weights
//! `q_j · s_j`); bits are `x_j > t_j` with `t_j` the dimension's mean (the sign of the centred
//! value), packed as `numpy.packbits` packs them (the first dimension in the high bit). The
//! codes are what stays in memory while searching; `vectors.npy` is only read at the
//! candidates' rows, for their exact scores.

use crate::error::{Error, Result};
use crate::io::mapped::MappedMatrix;
use crate::io::npy::{self, Dtype};
use crate::io::output::write_output;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// How an index stores its vectors for search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VectorKind {
    #[default]
    F32,
    F16,
    Int8,
    Binary,
}

impl VectorKind {
    pub const ALL: [VectorKind; 4] = [
        VectorKind::F32,
        VectorKind::F16,
        VectorKind::Int8,
        VectorKind::Binary,
    ];

    /// Its name, as the CLI and the manifest spell it.
    pub fn name(self) -> &'static str {
        match self {
            VectorKind::F32 => "f32",
            VectorKind::F16 => "f16",
            VectorKind::Int8 => "int8",
            VectorKind::Binary => "binary",
        }
    }

    /// A kind by name; an unknown name is an error that lists the valid ones.
    pub fn parse(name: &str) -> std::result::Result<VectorKind, String> {
        VectorKind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = VectorKind::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "{name:?} is not a vector kind: use one of {}",
                    names.join(", ")
                )
            })
    }

    /// The element type of `vectors.npy` for this kind (f16 stores the vectors themselves as
    /// float16; the others keep float32 vectors).
    pub fn vectors_dtype(self) -> Dtype {
        match self {
            VectorKind::F16 => Dtype::F16,
            _ => Dtype::F32,
        }
    }

    /// The codes and calibration files of a kind that has them (int8, binary).
    pub fn code_files(self, dir: &Path) -> Option<(PathBuf, PathBuf)> {
        let name = match self {
            VectorKind::Int8 | VectorKind::Binary => self.name(),
            VectorKind::F32 | VectorKind::F16 => return None,
        };
        Some((
            dir.join(format!("vectors.{name}.npy")),
            dir.join(format!("calibration.{name}.npy")),
        ))
    }

    /// Values (int8) or bytes (binary) per code row of a `dim`-dimensional vector.
    pub fn code_width(self, dim: usize) -> usize {
        match self {
            VectorKind::Binary => dim.div_ceil(8),
            _ => dim,
        }
    }
}

/// The per-dimension calibration of int8 codes (scales) or bits (thresholds).
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    pub kind: VectorKind,
    /// Per dimension: the int8 scale `s_j`, or the binary threshold `t_j`.
    pub values: Vec<f32>,
}

impl Calibration {
    /// Measured on every vector of `vectors` (float32 or float16 `(n, dim)`), in parallel.
    pub fn measure(kind: VectorKind, vectors: &MappedMatrix) -> Calibration {
        let dim = vectors.cols();
        let blocks = vectors.rows().div_ceil(BLOCK_ROWS);
        // Per block: the largest |x_j| and the sum of x_j (in f64), merged.
        let (largest, sums) = (0..blocks)
            .into_par_iter()
            .map(|b| {
                let (mut largest, mut sums) = (vec![0.0f32; dim], vec![0.0f64; dim]);
                let mut row = vec![0.0f32; dim];
                for i in b * BLOCK_ROWS..((b + 1) * BLOCK_ROWS).min(vectors.rows()) {
                    vectors.row_f32(i, &mut row);
                    for j in 0..dim {
                        largest[j] = largest[j].max(row[j].abs());
                        sums[j] += row[j] as f64;
                    }
                }
                (largest, sums)
            })
            .reduce(
                || (vec![0.0f32; dim], vec![0.0f64; dim]),
                |(l1, s1), (l2, s2)| {
                    let largest = l1.iter().zip(&l2).map(|(a, b)| a.max(*b)).collect();
                    let sums = s1.iter().zip(&s2).map(|(a, b)| a + b).collect();
                    (largest, sums)
                },
            );
        let n = vectors.rows().max(1) as f64;
        let values = match kind {
            // A dimension that is 0 (or NaN) everywhere keeps scale 1: its codes are 0.
            VectorKind::Int8 => largest
                .iter()
                .map(|&m| {
                    if m > 0.0 && m.is_finite() {
                        m / 127.0
                    } else {
                        1.0
                    }
                })
                .collect(),
            _ => sums.iter().map(|&s| (s / n) as f32).collect(),
        };
        Calibration { kind, values }
    }

    /// The code row of `vector` into `out` ([`VectorKind::code_width`] bytes): int8 codes
    /// (two's complement bytes) or packed bits.
    pub fn encode(&self, vector: &[f32], out: &mut [u8]) {
        match self.kind {
            VectorKind::Int8 => {
                for ((o, &x), &s) in out.iter_mut().zip(vector).zip(&self.values) {
                    *o = (x / s).round().clamp(-127.0, 127.0) as i8 as u8;
                }
            }
            _ => {
                out.fill(0);
                for (j, (&x, &t)) in vector.iter().zip(&self.values).enumerate() {
                    if x > t {
                        out[j / 8] |= 0x80 >> (j % 8);
                    }
                }
            }
        }
    }

    /// The int8 scan's weights of `queries (q, dim)`: `q_j · s_j`, so that a query's score
    /// against a code row is its inner product with the decoded vector.
    pub fn query_weights(&self, queries: &[f32]) -> Vec<f32> {
        let dim = self.values.len();
        queries
            .chunks_exact(dim)
            .flat_map(|q| q.iter().zip(&self.values).map(|(x, s)| x * s))
            .collect()
    }

    /// The code rows of `queries (q, dim)` ((q, width) bytes).
    pub fn encode_all(&self, queries: &[f32]) -> Vec<u8> {
        let dim = self.values.len();
        let width = self.kind.code_width(dim);
        let mut out = vec![0u8; queries.len() / dim.max(1) * width];
        for (q, o) in queries.chunks_exact(dim).zip(out.chunks_exact_mut(width)) {
            self.encode(q, o);
        }
        out
    }

    /// Reads `calibration.<kind>.npy` (float32 `(1, dim)`).
    pub fn read(kind: VectorKind, path: &Path, dim: usize) -> Result<Calibration> {
        let matrix = MappedMatrix::open_as(path, &[Dtype::F32])?;
        if (matrix.rows(), matrix.cols()) != (1, dim) {
            return Err(Error::InvalidInput(format!(
                "{}: holds ({}, {}), expected (1, {dim})",
                path.display(),
                matrix.rows(),
                matrix.cols()
            )));
        }
        let values = matrix.as_f32().to_vec();
        let valid = |v: &f32| match kind {
            VectorKind::Int8 => v.is_finite() && *v > 0.0,
            _ => v.is_finite(),
        };
        if let Some(j) = values.iter().position(|v| !valid(v)) {
            return Err(Error::InvalidInput(format!(
                "{}: dimension {j} holds {}, not a valid {} calibration value",
                path.display(),
                values[j],
                kind.name()
            )));
        }
        Ok(Calibration { kind, values })
    }
}

/// Vectors per block when reading a collection.
const BLOCK_ROWS: usize = 4096;

/// Writes the codes of `kind` (int8 or binary) of an index's `vectors.npy` in `dir`, with their
/// calibration: each file whole (a temporary renamed into place), the vectors read and encoded
/// block by block, so memory stays bounded whatever the collection's size. Returns the
/// calibration.
pub fn write_codes(dir: &Path, kind: VectorKind) -> Result<Calibration> {
    let Some((codes_path, _)) = kind.code_files(dir) else {
        return Err(Error::InvalidInput(format!(
            "{} vectors have no codes to write",
            kind.name()
        )));
    };
    let vectors = MappedMatrix::open_as(&dir.join("vectors.npy"), &[Dtype::F32, Dtype::F16])?;
    let calibration = write_calibration(dir, kind)?;
    let (n, dim) = (vectors.rows(), vectors.cols());
    let width = kind.code_width(dim);
    let dtype = match kind {
        VectorKind::Int8 => Dtype::I8,
        _ => Dtype::U8,
    };
    write_output(&codes_path, |out| {
        npy::write_header(out, dtype, n, width)?;
        for b in 0..n.div_ceil(BLOCK_ROWS) {
            let rows = b * BLOCK_ROWS..((b + 1) * BLOCK_ROWS).min(n);
            let mut block = vec![0u8; rows.len() * width];
            block
                .par_chunks_mut(width.max(1))
                .zip(rows.clone())
                .for_each(|(code, i)| {
                    let mut row = vec![0.0f32; dim];
                    vectors.row_f32(i, &mut row);
                    calibration.encode(&row, code);
                });
            out.write_all(&block)?;
        }
        Ok(())
    })?;
    Ok(calibration)
}

/// Measures the calibration of `kind` (int8 or binary) on an index's `vectors.npy` in `dir`
/// and writes `calibration.<kind>.npy` (whole: a temporary renamed into place). The same
/// vectors give the same bytes.
pub fn write_calibration(dir: &Path, kind: VectorKind) -> Result<Calibration> {
    let Some((_, path)) = kind.code_files(dir) else {
        return Err(Error::InvalidInput(format!(
            "{} vectors have no calibration",
            kind.name()
        )));
    };
    let vectors = MappedMatrix::open_as(&dir.join("vectors.npy"), &[Dtype::F32, Dtype::F16])?;
    let calibration = Calibration::measure(kind, &vectors);
    let dim = vectors.cols();
    write_output(&path, |out| {
        npy::write_f32_matrix(out, &calibration.values, 1, dim)
    })?;
    Ok(calibration)
}
