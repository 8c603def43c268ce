//! Writing `.npy` files (NumPy's format, version 1.0): a float32 matrix `(rows, cols)`.

use std::io::Write;

/// Writes `data` as a C-order little-endian float32 array of shape `(rows, cols)`.
pub fn write_f32_matrix(
    out: &mut impl Write,
    data: &[f32],
    rows: usize,
    cols: usize,
) -> std::io::Result<()> {
    assert_eq!(
        data.len(),
        rows * cols,
        "npy: data does not match ({rows}, {cols})"
    );
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + header length (2) + header + '\n' is a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    out.write_all(b"\x93NUMPY\x01\x00")?;
    out.write_all(&(header.len() as u16).to_le_bytes())?;
    out.write_all(header.as_bytes())?;
    for v in data {
        out.write_all(&v.to_le_bytes())?;
    }
    Ok(())
}
