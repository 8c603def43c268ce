//! `.npy` files (NumPy's format, version 1.0) holding a float32 matrix `(rows, cols)`: written
//! by `densa embed` and `densa index`, read (mapped) by `densa search`.

use std::io::Write;

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
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
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
    if !compact.contains("'descr':'<f4'") {
        return Err(format!(
            "dtype must be little-endian float32 ('<f4'): {header}"
        ));
    }
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
        [rows, cols] => Ok((rows, cols, start + len)),
        _ => Err(format!("expected a 2-D array, found shape ({shape})")),
    }
}
