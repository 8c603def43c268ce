//! The safetensors loader on hand-made files: f32 used in place when aligned and copied when
//! not, F16 and BF16 converted, values checked against hand-computed numbers.

use densa::checkpoint::Checkpoint;

/// A safetensors file whose header is padded to `header_len` bytes (so its data section starts
/// at byte 8 + header_len, aligned or not).
fn handmade(dir: &std::path::Path, header_len: usize) -> std::path::PathBuf {
    let header = r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"h":{"dtype":"F16","shape":[2],"data_offsets":[12,16]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[16,20]}}"#;
    assert!(header.len() <= header_len);
    let mut bytes = (header_len as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.resize(8 + header_len, b' ');
    for v in [1.5f32, -2.0, 3.25] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    // F16: 1.0 = 0x3C00, -0.5 = 0xB800; BF16: 1.0 = 0x3F80, 2.0 = 0x4000.
    for bits in [0x3C00u16, 0xB800, 0x3F80, 0x4000] {
        bytes.extend_from_slice(&bits.to_le_bytes());
    }
    let path = dir.join(format!("h{header_len}.safetensors"));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn aligned_f32_is_mapped_misaligned_is_copied_halves_are_converted() {
    let dir = tempfile::tempdir().unwrap();
    for (header_len, aligned) in [(200usize, true), (201, false), (203, false)] {
        let path = handmade(dir.path(), header_len);
        let ck = Checkpoint::open_files(&[path]).unwrap();
        let a = ck.tensor("a", &[3]).unwrap();
        assert_eq!(a.as_slice(), &[1.5, -2.0, 3.25]);
        assert_eq!(a.is_mapped(), aligned, "header {header_len}");
        assert_eq!(ck.tensor("h", &[2]).unwrap().as_slice(), &[1.0, -0.5]);
        assert_eq!(ck.tensor("b", &[2]).unwrap().as_slice(), &[1.0, 2.0]);
        assert!(ck.tensor("a", &[4]).is_err(), "shape is checked");
        assert!(ck.tensor("missing", &[1]).is_err());
    }
}

#[test]
fn fixture_f32_weights_are_used_in_place() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/bert-tiny");
    let ck = Checkpoint::open_dir(&dir).unwrap();
    let t = ck
        .tensor("bert.encoder.layer.0.intermediate.dense.weight", &[64, 32])
        .unwrap();
    assert!(t.is_mapped(), "an aligned f32 tensor is not copied");
}
