//! `.npy` files (NumPy's format, version 1.0) holding a matrix `(rows, cols)`: float32 as
//! `densa embed` and `densa index` write them, and the other element types an index's
//! compressed vectors use (float16, int8 codes, packed bits as uint8); read (mapped) by
//! `densa search`.

use std::io::Write;

/// The element types densa's `.npy` files hold, all little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    I8,
    U8,
}

impl Dtype {
    /// NumPy's `descr` for it.
    pub fn descr(self) -> &'static str {
        match self {
            Dtype::F32 => "<f4",
            Dtype::F16 => "<f2",
            Dtype::I8 => "|i1",
            Dtype::U8 => "|u1",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 => 2,
            Dtype::I8 | Dtype::U8 => 1,
        }
    }

    fn from_descr(descr: &str) -> Option<Dtype> {
        // NumPy writes one-byte types as '|i1' / '|u1', some writers as '<i1'.
        match descr {
            "<f4" => Some(Dtype::F32),
            "<f2" => Some(Dtype::F16),
            "|i1" | "<i1" => Some(Dtype::I8),
            "|u1" | "<u1" => Some(Dtype::U8),
            _ => None,
        }
    }
}

/// Writes `data` as a C-order little-endian float32 array of shape `(rows, cols)`.
pub fn write_f32_matrix(
    out: &mut (impl Write + ?Sized),
    data: &[f32],
    rows: usize,
    cols: usize,
) -> std::io::Result<()> {
    if rows.checked_mul(cols) != Some(data.len()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "npy: {} values do not make a ({rows}, {cols}) matrix",
                data.len()
            ),
        ));
    }
    write_f32_header(out, rows, cols)?;
    for v in data {
        out.write_all(&v.to_le_bytes())?;
    }
    Ok(())
}

/// Writes the header of a `(rows, cols)` float32 array; `rows · cols` values must follow.
pub fn write_f32_header(
    out: &mut (impl Write + ?Sized),
    rows: usize,
    cols: usize,
) -> std::io::Result<()> {
    write_header(out, Dtype::F32, rows, cols)
}

/// Writes the header of a `(rows, cols)` array of `dtype`; `rows · cols` values must follow.
pub fn write_header(
    out: &mut (impl Write + ?Sized),
    dtype: Dtype,
    rows: usize,
    cols: usize,
) -> std::io::Result<()> {
    let descr = dtype.descr();
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + header length (2) + header + '\n' is a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    out.write_all(b"\x93NUMPY\x01\x00")?;
    out.write_all(&(header.len() as u16).to_le_bytes())?;
    out.write_all(header.as_bytes())
}

/// Reads the header of a float32 2-D array: `(rows, cols, data_offset)`. Accepts what
/// [`write_f32_header`] and NumPy (`np.save` of a C-order float32 matrix) write.
pub fn parse_f32_header(bytes: &[u8]) -> Result<(usize, usize, usize), String> {
    match parse_header(bytes)? {
        (Dtype::F32, rows, cols, offset) => Ok((rows, cols, offset)),
        (dtype, ..) => Err(format!(
            "dtype must be little-endian float32 ('<f4'), not '{}'",
            dtype.descr()
        )),
    }
}

/// Reads the header of a 2-D array of one of densa's element types: `(dtype, rows, cols,
/// data_offset)`. Accepts what [`write_header`] and NumPy (`np.save` of a C-order matrix)
/// write.
pub fn parse_header(bytes: &[u8]) -> Result<(Dtype, usize, usize, usize), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file".into());
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = bytes
        .get(start..start + len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated or non-UTF-8 .npy header")?;
    let compact: String = header.chars().filter(|c| !c.is_whitespace()).collect();
    let dtype = compact
        .split("'descr':'")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .and_then(Dtype::from_descr)
        .ok_or_else(|| {
            format!(
                "dtype must be float32 '<f4', float16 '<f2', int8 '|i1' or uint8 '|u1': {header}"
            )
        })?;
    if !compact.contains("'fortran_order':False") {
        return Err("the array must be C-order".into());
    }
    let shape = compact
        .split("'shape':(")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or("no shape in the .npy header")?;
    let dims: Vec<usize> = shape
        .split(',')
        .filter(|d| !d.is_empty())
        .map(|d| {
            d.parse::<usize>()
                .map_err(|_| format!("bad shape ({shape})"))
        })
        .collect::<Result<_, _>>()?;
    match dims[..] {
        [rows, cols] => Ok((dtype, rows, cols, start + len)),
        _ => Err(format!("expected a 2-D array, found shape ({shape})")),
    }
}
