//! `densa pack`: the folder it writes holds the encoder's f32 weights in the GEMM's panels,
//! used in place at load, and gives the original folder's vectors bit for bit, whichever CPU
//! packed it; a damaged or foreign folder is refused with the way to redo it.

mod common;

use common::cli::{densa, fails, ok, s};
use common::{cases, model_dir, rewrite_weights, Metadata, StoredTensor};
use densa::pack::{pack_dir, LAYOUT_KEY};
use densa::{Encoder, Input, Options, Precision};
use densa_kernels::Isa;
use std::path::{Path, PathBuf};

fn options(precision: Precision) -> Options {
    Options {
        threads: 2,
        precision,
        ..Options::default()
    }
}

/// The bits of every test case's vector.
fn vectors(dir: &Path, precision: Precision) -> Vec<u32> {
    let encoder = Encoder::from_dir(dir, options(precision)).unwrap();
    let cases = cases();
    let inputs: Vec<Input> = cases.iter().map(|c| c.input()).collect();
    let out = encoder.embed_inputs(&inputs).unwrap();
    out.data.iter().map(|v| v.to_bits()).collect()
}

fn packed(model: &str, isa: Isa) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("packed");
    pack_dir(&model_dir(model), &out, false, isa).unwrap();
    (dir, out)
}

/// Every architecture's names (BERT, DPR's prefix, XLM-R, DistilBERT): the packed folder's
/// vectors are the original's at f32 and at int8, and its weights are the mapped file's.
#[test]
fn packed_folder_gives_the_original_vectors() {
    for model in [
        "bert-tiny",
        "dpr-question-tiny",
        "xlmr-tiny",
        "distilbert-tiny",
        "modernbert-tiny",
    ] {
        let (_dir, out) = packed(model, Isa::selected());
        for precision in [Precision::F32, Precision::Int8] {
            assert_eq!(
                vectors(&out, precision),
                vectors(&model_dir(model), precision),
                "{model} {precision:?}"
            );
        }
        let encoder = Encoder::from_dir(&out, options(Precision::F32)).unwrap();
        assert!(encoder.model().borrows_weights(), "{model}: copied at load");
        // Only the linear weights changed: the folder's other files are copies.
        for file in ["config.json", "tokenizer.json"] {
            if model_dir(model).join(file).exists() {
                assert_eq!(
                    std::fs::read(out.join(file)).unwrap(),
                    std::fs::read(model_dir(model).join(file)).unwrap()
                );
            }
        }
    }
}

/// A folder packed for another kernel's width (here the scalar kernel's, as another CPU would
/// write it) loads on this one, packed again, with the same vectors.
#[test]
fn a_folder_packed_for_another_cpu_loads_with_the_same_vectors() {
    let (_dir, out) = packed("bert-tiny", Isa::Scalar);
    let encoder = Encoder::from_dir(&out, options(Precision::F32)).unwrap();
    let same_width = densa_kernels::gemm::kernel_shape(Isa::selected()).1
        == densa_kernels::gemm::kernel_shape(Isa::Scalar).1;
    assert_eq!(encoder.model().borrows_weights(), same_width);
    assert_eq!(
        vectors(&out, Precision::F32),
        vectors(&model_dir("bert-tiny"), Precision::F32)
    );
}

#[test]
fn foreign_or_damaged_folders_are_refused() {
    let weight = "bert.encoder.layer.1.intermediate.dense.weight_packed";
    let load = |edit: &dyn Fn(&mut Vec<StoredTensor>, &mut Metadata)| {
        let (dir, out) = packed("bert-tiny", Isa::selected());
        rewrite_weights(&out, |t, m| edit(t, m));
        let e = match Encoder::from_dir(&out, options(Precision::F32)) {
            Ok(_) => panic!("loaded"),
            Err(e) => e.to_string(),
        };
        drop(dir);
        assert!(e.contains("re-run densa pack"), "{e}");
        e
    };
    let e = load(&|_, m| {
        m.insert(LAYOUT_KEY.into(), "panels-nr32-v9".into());
    });
    assert!(e.contains("panels-nr32-v9"), "{e}");
    let tensor = |t: &mut Vec<StoredTensor>| t.iter().position(|(n, ..)| n == weight).unwrap();
    // A NaN in output 0, input 3 (the panel's row 3, column 0).
    let e = load(&|t, _| {
        let at = tensor(t);
        let nr = t[at].2[2];
        t[at].3[3 * nr * 4..3 * nr * 4 + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    assert!(
        e.contains(weight) && e.contains("NaN or infinity at output 0, input 3"),
        "{e}"
    );
    // The wrong shape.
    let e = load(&|t, _| {
        let at = tensor(t);
        t[at].2[1] -= 1;
        let len: usize = t[at].2.iter().product();
        t[at].3.truncate(len * 4);
    });
    assert!(e.contains(weight), "{e}");
}

/// The CLI: `densa pack` writes the folder, refuses to pack or quantize it again, and
/// `densa embed` gives the original folder's output from it.
#[test]
fn pack_cli_writes_a_folder_that_embeds_alike() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("packed");
    let model = model_dir("bert-tiny");
    let stderr = densa(&["pack", "--model", s(&model), "--output", s(&out)], None);
    assert!(stderr.status.success());
    let embed = |m: &Path| {
        ok(&densa(
            &["embed", "--model", s(m), "--input", "-"],
            Some("hola mundo\n¿Quién escribió el Quijote?\n".as_bytes()),
        ))
    };
    assert_eq!(embed(&out), embed(&model));
    let again = fails(&densa(
        &[
            "pack",
            "--model",
            s(&out),
            "--output",
            s(&dir.path().join("b")),
        ],
        None,
    ));
    assert!(again.contains("written by densa pack"), "{again}");
    let quantize = fails(&densa(
        &[
            "quantize",
            "--model",
            s(&out),
            "--output",
            s(&dir.path().join("c")),
        ],
        None,
    ));
    assert!(quantize.contains("written by densa pack"), "{quantize}");
    let existing = fails(&densa(
        &["pack", "--model", s(&model), "--output", s(&out)],
        None,
    ));
    assert!(existing.contains("--force"), "{existing}");
}
