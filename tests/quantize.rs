//! `densa quantize`: the int8 folder it writes gives the same vectors as quantizing at load,
//! loads as int8 by default, and keeps everything but the encoder's linear weights as it was.

mod common;

use common::{cases, model_dir};
use densa::checkpoint::Checkpoint;
use densa::quantize::{quantize_dir, METADATA_KEY, METADATA_VALUE};
use densa::{Encoder, Input, Options, Precision};

#[test]
fn quantized_folder_equals_quantizing_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dpr-question-int8");
    // The source is sharded; the output is one file.
    let report = quantize_dir(&model_dir("dpr-question-tiny"), &out, false).unwrap();
    assert_eq!(
        report.quantized_tensors,
        2 * 6,
        "2 layers × Q, K, V, attention output, FFN in, FFN out"
    );

    let checkpoint = Checkpoint::open_dir(&out).unwrap();
    assert_eq!(
        checkpoint.metadata(METADATA_KEY).as_deref(),
        Some(METADATA_VALUE)
    );
    let infos = checkpoint.tensor_infos();
    let dtype = |name: &str| {
        infos
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.dtype.clone())
    };
    let p = "question_encoder.bert_model.encoder.layer.1.";
    assert_eq!(
        dtype(&format!("{p}intermediate.dense.weight_panels")).as_deref(),
        Some("I8")
    );
    assert_eq!(
        dtype(&format!("{p}attention.self.query_key_value.weight_panels")).as_deref(),
        Some("I8"),
        "Q, K and V stacked as the model runs them"
    );
    assert_eq!(
        checkpoint.metadata(densa::quantize::LAYOUT_KEY).as_deref(),
        Some(densa::quantize::LAYOUT_VALUE)
    );
    assert_eq!(
        dtype(&format!("{p}intermediate.dense.weight_scale")).as_deref(),
        Some("F32")
    );
    assert_eq!(
        dtype(&format!("{p}intermediate.dense.bias")).as_deref(),
        Some("F32")
    );
    assert_eq!(
        dtype("question_encoder.bert_model.embeddings.word_embeddings.weight").as_deref(),
        Some("F32")
    );
    assert_eq!(
        dtype("question_encoder.encode_proj.weight").as_deref(),
        Some("F32"),
        "the projection stays f32"
    );
    assert!(out.join("vocab.txt").is_file() && out.join("tokenizer_config.json").is_file());

    let cases = cases();
    let inputs: Vec<Input> = cases.iter().map(|c| c.input()).collect();
    let opts = |precision| Options {
        threads: 2,
        precision,
        ..Options::default()
    };
    let from_file = Encoder::from_dir(&out, opts(Precision::Auto)).unwrap();
    assert_eq!(
        from_file.model().precision,
        Precision::Int8,
        "auto loads a quantized folder as int8"
    );
    let at_load = Encoder::from_dir(model_dir("dpr-question-tiny"), opts(Precision::Int8)).unwrap();
    let (a, b) = (
        from_file.embed_inputs(&inputs).unwrap(),
        at_load.embed_inputs(&inputs).unwrap(),
    );
    assert!(
        a.data == b.data,
        "the quantized folder and quantizing at load give other vectors"
    );

    // Asked for f32, the quantized folder is dequantized: close to the f32 original.
    let dequantized = Encoder::from_dir(&out, opts(Precision::F32))
        .unwrap()
        .embed_inputs(&inputs)
        .unwrap();
    let original = Encoder::from_dir(model_dir("dpr-question-tiny"), opts(Precision::F32))
        .unwrap()
        .embed_inputs(&inputs)
        .unwrap();
    for i in 0..inputs.len() {
        let cos = common::cosine(dequantized.row(i), original.row(i));
        assert!(
            cos > 0.99,
            "case {i}: dequantized weights drift: cosine {cos}"
        );
    }

    let again = quantize_dir(&out, &dir.path().join("twice"), false).unwrap_err();
    assert!(again.to_string().contains("already quantized"), "{again}");
}

/// `panels[p][g][j][t] = w_q[16·p + j, 4·g + t]`, unpacked as docs/QUANTIZATION.md states
/// the layout (not with densa's code): `(panels, K_pad / 4, 16, 4)`, K_pad = K rounded up to
/// 64, an even number of panels; every value outside `(n, k)` must be 0.
fn unpack_panels(bytes: &[u8], shape: &[usize], n: usize, k: usize) -> Vec<i8> {
    let k_pad = k.div_ceil(64) * 64;
    assert_eq!(shape, [n.div_ceil(32) * 2, k_pad / 4, 16, 4], "panel shape");
    assert_eq!(bytes.len(), shape.iter().product::<usize>());
    let mut rows = vec![0i8; n * k];
    for (at, &byte) in bytes.iter().enumerate() {
        let (p, g, j, t) = (
            at / (k_pad * 16),
            at / 64 % (k_pad / 4),
            at / 4 % 16,
            at % 4,
        );
        let (column, kk) = (16 * p + j, 4 * g + t);
        if column < n && kk < k {
            rows[column * k + kk] = byte as i8;
        } else {
            assert_eq!(byte, 0, "padding at ({column}, {kk}) is not 0");
        }
    }
    rows
}

#[test]
fn stored_int8_weights_follow_the_definition() {
    // Every packed weight of the folder against the rule written out here from
    // docs/QUANTIZATION.md, not with densa's code: scale = max|w| / 63 per output row,
    // q = round_ties_even(w · (1 / scale)) clamped to ±63, Q, K and V stacked in that order.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q");
    let src = model_dir("dpr-question-tiny");
    quantize_dir(&src, &out, false).unwrap();
    let (original, quantized) = (
        Checkpoint::open_dir(&src).unwrap(),
        Checkpoint::open_dir(&out).unwrap(),
    );
    let mut checked = 0;
    for info in quantized.tensor_infos() {
        let Some(name) = info.name.strip_suffix(".weight_panels") else {
            continue;
        };
        assert_eq!(info.dtype, "I8", "{}", info.name);
        let sources: Vec<String> = match name.strip_suffix("query_key_value") {
            Some(parent) => ["query", "key", "value"]
                .iter()
                .map(|l| format!("{parent}{l}.weight"))
                .collect(),
            None => vec![format!("{name}.weight")],
        };
        assert!(
            sources.iter().all(|s| !quantized.contains(s)),
            "{name}: the row-major weight is stored too"
        );
        let mut weight = Vec::new();
        let mut k = 0;
        for source in &sources {
            let shape = original
                .tensor_infos()
                .into_iter()
                .find(|t| &t.name == source)
                .unwrap_or_else(|| panic!("{source} not in the original"))
                .shape;
            k = shape[1];
            weight.extend_from_slice(original.tensor(source, &shape).unwrap().as_slice());
        }
        let n = weight.len() / k;
        let (_, shape, bytes) = quantized.raw(&info.name).unwrap();
        let q = unpack_panels(bytes, shape, n, k);
        let scales = quantized
            .tensor(&format!("{name}.weight_scale"), &[n])
            .unwrap();
        for (j, row) in weight.chunks_exact(k).enumerate() {
            let amax = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let scale = if amax > 0.0 { amax / 63.0 } else { 1.0 };
            assert_eq!(scales.as_slice()[j], scale, "{name} row {j}: scale");
            let inv = 1.0 / scale;
            for (kk, &w) in row.iter().enumerate() {
                let want = (w * inv).round_ties_even().clamp(-63.0, 63.0) as i8;
                assert_eq!(q[j * k + kk], want, "{name} [{j}, {kk}]");
            }
        }
        checked += sources.len();
    }
    assert_eq!(checked, 12, "2 layers × 6 linear weights");
}

/// int8 on every architecture: the quantize folder finds each one's linear layers by its own
/// names, and its vectors stay close to transformers' f32 outputs (the goldens).
#[test]
fn int8_on_roberta_xlmr_and_distilbert_stays_close_to_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let cases = cases();
    let inputs: Vec<Input> = cases.iter().map(|c| c.input()).collect();
    // ModernBERT: 6 layers × Wqkv (stored stacked), Wo, Wi, Wo.
    for (name, linear_tensors) in [
        ("xlmr-tiny", 2 * 6),
        ("roberta-tiny", 2 * 6),
        ("distilbert-tiny", 2 * 6),
        ("modernbert-tiny", 6 * 4),
    ] {
        let out = dir.path().join(name);
        let report = quantize_dir(&model_dir(name), &out, false).unwrap();
        assert_eq!(
            report.quantized_tensors, linear_tensors,
            "{name}: every linear layer"
        );
        let golden = common::Golden::load(name);
        for folder in [model_dir(name), out] {
            // The f32 folder quantized at load, and the quantize folder (int8 by default).
            let options = Options {
                threads: 2,
                precision: if folder == model_dir(name) {
                    Precision::Int8
                } else {
                    Precision::Auto
                },
                ..Options::default()
            };
            let encoder = Encoder::from_dir(&folder, options).unwrap();
            assert_eq!(encoder.model().precision, Precision::Int8);
            let got = encoder.embed_inputs(&inputs).unwrap();
            let worst = (0..cases.len())
                .map(|i| common::cosine(got.row(i), &golden.f32(&format!("case{i}.pooled")).1))
                .fold(1.0f64, f64::min);
            println!(
                "ACCURACY {name} int8 ({}): worst cosine to transformers' f32 {worst:.5}",
                folder.display()
            );
            assert!(worst >= 0.99, "{name}: int8 worst cosine {worst}");
        }
    }
}

use common::{rewrite_weights as rewrite_quantized, Metadata, StoredTensor};

fn quantized_tiny() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q");
    quantize_dir(&model_dir("dpr-question-tiny"), &out, false).unwrap();
    (dir, out)
}

fn int8_options() -> Options {
    Options {
        threads: 2,
        ..Options::default()
    }
}

/// The quantize folder's int8 weights are the mapped file's bytes, used in place: nothing is
/// repacked or copied at load (what makes the cold start cheap).
#[test]
fn stored_panels_are_used_in_place() {
    let (_dir, out) = quantized_tiny();
    let encoder = Encoder::from_dir(&out, int8_options()).unwrap();
    let mut borrowed = 0;
    for layer in &encoder.model().layers {
        for linear in [
            &layer.attention.self_attention.query_key_value,
            &layer.attention.output.dense,
            &layer.intermediate.dense,
            &layer.output.dense,
        ] {
            match &linear.weight {
                densa::model::LinearWeight::Int8(w) => {
                    assert!(w.is_borrowed(), "a weight was copied at load");
                    borrowed += 1;
                }
                densa::model::LinearWeight::F32(_) => panic!("an f32 weight in an int8 model"),
            }
        }
    }
    assert_eq!(borrowed, 2 * 4);
}

/// A folder written before the panel layout (`<layer>.weight` I8 rows, no layout key; made
/// here from the panels by the documented layout) still loads, packed at load, and gives the
/// same vectors bit for bit.
#[test]
fn a_folder_in_the_row_layout_loads_with_the_same_vectors() {
    let (dir, out) = quantized_tiny();
    let rows_folder = dir.path().join("rows");
    common::copy_folder(&out, &rows_folder);
    rewrite_quantized(&rows_folder, |tensors, metadata| {
        metadata.remove(densa::quantize::LAYOUT_KEY);
        let mut rewritten = Vec::new();
        for (name, dtype, shape, bytes) in tensors.drain(..) {
            let Some(layer) = name.strip_suffix(".weight_panels") else {
                if let Some(layer) = name.strip_suffix("query_key_value.weight_scale") {
                    for (i, part) in bytes.chunks_exact(bytes.len() / 3).enumerate() {
                        let l = ["query", "key", "value"][i];
                        let n = shape[0] / 3;
                        rewritten.push((
                            format!("{layer}{l}.weight_scale"),
                            dtype,
                            vec![n],
                            part.to_vec(),
                        ));
                    }
                } else {
                    rewritten.push((name, dtype, shape, bytes));
                }
                continue;
            };
            // (out, in) of each layer of the fixture (hidden 32, intermediate 64).
            let (n, k) = match layer.rsplit('.').nth(1).zip(layer.rsplit('.').next()) {
                Some((_, "query_key_value")) => (96, 32),
                Some(("attention", _)) | Some(("output", _)) if layer.contains("attention") => {
                    (32, 32)
                }
                Some(("intermediate", _)) => (64, 32),
                _ => (32, 64),
            };
            let q: Vec<u8> = unpack_panels(&bytes, &shape, n, k)
                .into_iter()
                .map(|v| v as u8)
                .collect();
            match layer.strip_suffix("query_key_value") {
                Some(parent) => {
                    for (i, part) in q.chunks_exact(q.len() / 3).enumerate() {
                        let l = ["query", "key", "value"][i];
                        rewritten.push((
                            format!("{parent}{l}.weight"),
                            dtype,
                            vec![n / 3, k],
                            part.to_vec(),
                        ));
                    }
                }
                None => rewritten.push((format!("{layer}.weight"), dtype, vec![n, k], q)),
            }
        }
        *tensors = rewritten;
    });
    let cases = cases();
    let inputs: Vec<Input> = cases.iter().map(|c| c.input()).collect();
    let embed = |folder: &std::path::Path| {
        Encoder::from_dir(folder, int8_options())
            .unwrap()
            .embed_inputs(&inputs)
            .unwrap()
    };
    assert!(
        embed(&out).data == embed(&rows_folder).data,
        "the row layout and the panel layout give other vectors"
    );
}

/// A layout this densa does not read, or panels that break its rules, are errors that name
/// the tensor and say how to redo the folder, never wrong vectors.
#[test]
fn foreign_or_damaged_panels_are_refused() {
    let panels = "question_encoder.bert_model.encoder.layer.1.intermediate.dense.weight_panels";
    let load = |edit: &dyn Fn(&mut Vec<StoredTensor>, &mut Metadata)| {
        let (dir, out) = quantized_tiny();
        rewrite_quantized(&out, |t, m| edit(t, m));
        let e = match Encoder::from_dir(&out, int8_options()) {
            Ok(_) => panic!("loaded"),
            Err(e) => e.to_string(),
        };
        drop(dir);
        assert!(e.contains("re-run densa quantize"), "{e}");
        e
    };
    let e = load(&|_, m| {
        m.insert(densa::quantize::LAYOUT_KEY.into(), "panels-32x8-v9".into());
    });
    assert!(e.contains("panels-32x8-v9"), "{e}");

    let tensor = |t: &mut Vec<StoredTensor>| t.iter().position(|(n, ..)| n == panels).unwrap();
    // intermediate.dense is (64, 32): K padded to 64, so byte 2 of group 8 is padding.
    let e = load(&|t, _| {
        let at = tensor(t);
        t[at].3[8 * 64 + 2] = 1;
    });
    assert!(
        e.contains(panels) && e.contains("padding at output 0, input 34"),
        "{e}"
    );
    let e = load(&|t, _| {
        let at = tensor(t);
        t[at].3[64 + 4 * 3 + 1] = 64;
    });
    assert!(
        e.contains(panels) && e.contains("value 64 at output 3, input 5"),
        "{e}"
    );
    let e = load(&|t, _| {
        let at = tensor(t);
        t[at].2[0] -= 2;
        let len = t[at].2.iter().product();
        t[at].3.truncate(len);
    });
    assert!(e.contains(panels), "{e}");
}
