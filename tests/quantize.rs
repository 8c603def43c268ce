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
        dtype(&format!("{p}intermediate.dense.weight")).as_deref(),
        Some("I8")
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

#[test]
fn stored_int8_weights_follow_the_definition() {
    // Every quantized tensor of the folder against the rule written out here from
    // docs/QUANTIZATION.md, not with densa's code: scale = max|w| / 63 per output row,
    // q = round_ties_even(w · (1 / scale)) clamped to ±63.
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
        if info.dtype != "I8" {
            continue;
        }
        let (n, k) = (info.shape[0], info.shape[1]);
        let weight = original.tensor(&info.name, &[n, k]).unwrap();
        let (_, _, q_bytes) = quantized.raw(&info.name).unwrap();
        let scales = quantized
            .tensor(&format!("{}_scale", info.name), &[n])
            .unwrap();
        for (j, row) in weight.as_slice().chunks_exact(k).enumerate() {
            let amax = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let scale = if amax > 0.0 { amax / 63.0 } else { 1.0 };
            assert_eq!(scales.as_slice()[j], scale, "{} row {j}: scale", info.name);
            let inv = 1.0 / scale;
            for (kk, &w) in row.iter().enumerate() {
                let want = (w * inv).round_ties_even().clamp(-63.0, 63.0) as i8;
                assert_eq!(q_bytes[j * k + kk] as i8, want, "{} [{j}, {kk}]", info.name);
            }
        }
        checked += 1;
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
    for name in ["xlmr-tiny", "roberta-tiny", "distilbert-tiny"] {
        let out = dir.path().join(name);
        let report = quantize_dir(&model_dir(name), &out, false).unwrap();
        assert_eq!(
            report.quantized_tensors,
            2 * 6,
            "{name}: 2 layers × 6 linear layers"
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
