//! Full shapes against transformers: the Spanish DPR encoders' (768 hidden, 12 layers, 12
//! heads, FFN 3072, vocabulary 31002) and XLM-R base's (vocabulary 250002, 514 positions),
//! without committing gigabytes of weights: both sides draw the weights from the documented
//! PRNG in tools/prng.py / tests/common/prng.rs, and only transformers' outputs are committed
//! (tests/fixtures/golden/full-shape*.safetensors).

mod common;

use common::{max_rel_diff, model_dir, prng, Case, Golden};
use densa::checkpoint::{Checkpoint, Tensor};
use densa::config::ModelType;
use densa::model::parameter_shapes;
use densa::tokenizer::TextTokenizer;
use densa::{BertConfig, Encoder, Options};
use std::collections::HashMap;

/// Tolerance at full shape: max |diff| relative to the largest |value| of the tensor.
const REL_TOLERANCE: f32 = 1e-4;

/// The BERT trunk's tensors under `prefix`, drawn from the shared PRNG.
fn full_shape_weights(config: &BertConfig, prefix: &str) -> HashMap<String, Tensor> {
    parameter_shapes(config)
        .into_iter()
        .map(|(name, shape)| {
            let full = format!("{prefix}{name}");
            let (center, scale) = prng::center_scale(&full);
            let values = prng::uniform(&full, shape.iter().product(), center, scale);
            (full, Tensor::from_vec(shape, values))
        })
        .collect()
}

/// Runs the golden's cases through `config` with PRNG weights and the tokenizer of fixture
/// `tokenizer_model`; returns the encoder for further checks.
fn check_full_shape(
    golden_name: &str,
    config: BertConfig,
    tokenizer_model: &str,
    label: &str,
) -> Encoder {
    let golden = Golden::load(golden_name);
    let prefix = golden.metadata("prefix").unwrap();
    let max_length: usize = golden.metadata("max_length").unwrap().parse().unwrap();
    let cases: Vec<(String, serde_json::Value)> =
        serde_json::from_str(&golden.metadata("cases").unwrap()).unwrap();
    let cases: Vec<Case> = cases
        .into_iter()
        .map(|(kind, v)| match kind.as_str() {
            "text" => Case::Text(v.as_str().unwrap().into()),
            _ => Case::Pair(v[0].as_str().unwrap().into(), v[1].as_str().unwrap().into()),
        })
        .collect();
    let h = config.hidden_size;
    let checkpoint = Checkpoint::from_tensors(full_shape_weights(&config, &prefix));
    let tokenizer = TextTokenizer::from_dir(&model_dir(tokenizer_model), max_length).unwrap();
    let encoder = Encoder::from_parts(
        config,
        checkpoint,
        tokenizer,
        Options {
            threads: 2,
            pooling: densa::Pooling::Cls,
            ..Options::default()
        },
    )
    .unwrap();
    let inputs: Vec<_> = cases.iter().map(|c| c.input()).collect();
    let pooled = encoder.embed_inputs(&inputs).unwrap();
    let (mut worst_layer6, mut worst_last, mut worst_pooled) = (0.0f32, 0.0f32, 0.0f32);
    for (i, case) in cases.iter().enumerate() {
        let (tokens, states) = encoder.hidden_states(case.input()).unwrap();
        golden.assert_tokens(i, &tokens, label);
        let layers = states.len() - 1;
        let d6 = max_rel_diff(&states[6], &golden.f32(&format!("case{i}.layer6")).1);
        let dl = max_rel_diff(
            &states[layers],
            &golden.f32(&format!("case{i}.last_hidden_state")).1,
        );
        let dp = max_rel_diff(pooled.row(i), &golden.f32(&format!("case{i}.pooled")).1);
        assert!(
            d6 <= REL_TOLERANCE && dl <= REL_TOLERANCE && dp <= REL_TOLERANCE,
            "{label} case {i} ({} tokens): relative diff layer 6 {d6:e}, last {dl:e}, pooled {dp:e}",
            tokens.ids.len()
        );
        // Batch-invariance at full shape: the batched [CLS] equals the one run alone, bit for bit.
        assert!(
            pooled.row(i) == &states[layers][..h],
            "{label} case {i}: batched vector differs from the single run"
        );
        (worst_layer6, worst_last, worst_pooled) = (
            worst_layer6.max(d6),
            worst_last.max(dl),
            worst_pooled.max(dp),
        );
    }
    println!("FIDELITY {golden_name}: {} cases, worst relative diff layer 6 {worst_layer6:.3e}, last hidden {worst_last:.3e}, pooled {worst_pooled:.3e}", cases.len());
    encoder
}

#[test]
fn bert_base_shape_matches_transformers() {
    let mut config = BertConfig::bert_base(31002);
    config.model_type = ModelType::Dpr;
    // BETO-style tokenizer files (vocab.txt + tokenizer_config.json), as the seed ships them.
    let encoder = check_full_shape("full-shape", config, "dpr-ctx-tiny", "BERT-base");
    // Embeddings 31002·768 + 512·768 + 2·768 + 2·768 = 24_205_824; per layer 4·(768² + 768)
    // + (768·3072 + 3072) + (3072·768 + 768) + 4·768 = 7_087_872; no pooler.
    assert_eq!(
        encoder.model().parameter_count(),
        24_205_824 + 12 * 7_087_872
    );
}

#[test]
fn xlm_roberta_base_shape_matches_transformers() {
    let mut config = BertConfig::bert_base(250002);
    config.model_type = ModelType::Roberta;
    config.max_position_embeddings = 514;
    config.type_vocab_size = 1;
    config.pad_token_id = 1;
    config.position_offset = 2;
    config.layer_norm_eps = 1e-5;
    let encoder = check_full_shape("full-shape-xlmr", config, "xlmr-tiny", "XLM-R base");
    // Embeddings 250002·768 + 514·768 + 768 + 2·768, and 12 layers as BERT-base's.
    assert_eq!(
        encoder.model().parameter_count(),
        250002 * 768 + 514 * 768 + 768 + 2 * 768 + 12 * 7_087_872
    );
}

#[test]
fn modernbert_base_shape_matches_transformers() {
    // 22 layers of 768 (every third global, the others within 64 positions each side), GeGLU
    // 1152, rotary bases 160000 / 10000, no biases; cases of up to 300 tokens.
    let config = BertConfig::modernbert_base(50368);
    let encoder = check_full_shape(
        "full-shape-modernbert",
        config,
        "modernbert-tiny",
        "ModernBERT-base",
    );
    // Embeddings 50368·768 and their norm; per layer Wqkv 3·768², Wo 768², Wi 2·1152·768,
    // Wo 1152·768 and mlp_norm, plus attn_norm in layers 1..22 and the final norm: 149 M, as
    // the published model card says.
    let per_layer = 4 * 768 * 768 + 3 * 1152 * 768 + 768;
    assert_eq!(
        encoder.model().parameter_count(),
        50368 * 768 + 768 + 22 * per_layer + 21 * 768 + 768
    );
}
