//! densa against Hugging Face `transformers`: token ids, every layer's hidden states and the
//! pooled outputs of the tiny fixture checkpoints, written by tools/make_fixtures.py.
//!
//! Run with `--nocapture` to see the worst differences (recorded in docs/FIDELITY.md).

mod common;

use common::{cases, max_abs_diff, model_dir, Golden};
use densa::{Encoder, Options, Pooling};

/// Tolerance for the tiny models, absolute.
const TOLERANCE: f32 = 1e-5;

/// Checks one fixture: ids equal, hidden states and pooled outputs within TOLERANCE.
fn check_fixture(name: &str) {
    let golden = Golden::load(name);
    let encoder = Encoder::from_dir(
        model_dir(name),
        Options {
            threads: 2,
            ..Options::default()
        },
    )
    .unwrap();
    let cases = cases();
    let (mut worst_hidden, mut worst_pooled) = (0.0f32, 0.0f32);
    let mut pooled_all = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (tokens, states) = encoder.hidden_states(case.input()).unwrap();
        golden.assert_tokens(i, &tokens, name);
        let (shape, expected) = golden.f32(&format!("case{i}.hidden_states"));
        assert_eq!(shape[0], states.len(), "{name}: number of hidden states");
        let per_layer = shape[1] * shape[2];
        for (layer, state) in states.iter().enumerate() {
            let diff = max_abs_diff(state, &expected[layer * per_layer..(layer + 1) * per_layer]);
            assert!(
                diff <= TOLERANCE,
                "{name} case {i} layer {layer}: max |diff| {diff:e} > {TOLERANCE:e}"
            );
            worst_hidden = worst_hidden.max(diff);
        }
        pooled_all.push(golden.f32(&format!("case{i}.pooled")).1);
    }
    // Pooled outputs, all cases in one batch through the public API.
    let inputs: Vec<_> = cases.iter().map(|c| c.input()).collect();
    let embeddings = encoder.embed_inputs(&inputs).unwrap();
    assert_eq!(embeddings.len(), cases.len());
    for (i, expected) in pooled_all.iter().enumerate() {
        let diff = max_abs_diff(embeddings.row(i), expected);
        assert!(
            diff <= TOLERANCE,
            "{name} case {i}: pooled max |diff| {diff:e}"
        );
        worst_pooled = worst_pooled.max(diff);
    }
    println!("FIDELITY {name}: {} cases, worst |diff| hidden states {worst_hidden:.3e}, pooled {worst_pooled:.3e} (pooling {})", cases.len(), encoder.pooling().name());
}

#[test]
fn bert_tiny_matches_transformers() {
    check_fixture("bert-tiny");
}

#[test]
fn bert_tiny_f16_matches_transformers() {
    check_fixture("bert-tiny-f16");
}

#[test]
fn dpr_ctx_tiny_matches_transformers() {
    check_fixture("dpr-ctx-tiny");
}

#[test]
fn dpr_question_tiny_sharded_with_projection_matches_transformers() {
    check_fixture("dpr-question-tiny");
}

#[test]
fn xlm_roberta_tiny_unigram_with_pooler_matches_transformers() {
    check_fixture("xlmr-tiny");
}

#[test]
fn roberta_tiny_byte_level_bpe_under_a_task_head_matches_transformers() {
    check_fixture("roberta-tiny");
}

#[test]
fn modernbert_tiny_rotary_geglu_pre_norm_sliding_windows_matches_transformers() {
    // Six layers (global, local, local, ...), a window of 8 positions each side: most cases
    // are longer than it.
    check_fixture("modernbert-tiny");
}

#[test]
fn distilbert_tiny_with_computed_sinusoidal_positions_matches_transformers() {
    check_fixture("distilbert-tiny");
}

#[test]
fn default_pooling_follows_the_checkpoint() {
    let pooling = |name: &str| {
        Encoder::from_dir(
            model_dir(name),
            Options {
                threads: 1,
                ..Options::default()
            },
        )
        .unwrap()
    };
    assert_eq!(pooling("bert-tiny").pooling(), Pooling::Pooler);
    let ctx = pooling("dpr-ctx-tiny");
    assert_eq!((ctx.pooling(), ctx.dim()), (Pooling::Dpr, 32));
    let question = pooling("dpr-question-tiny");
    assert_eq!((question.pooling(), question.dim()), (Pooling::Dpr, 16));
    assert!(question.model().pooler.is_none());
    // DPR's leftover pooler tensors are in the file but never loaded.
    assert!(ctx
        .checkpoint()
        .contains("ctx_encoder.bert_model.pooler.dense.weight"));
    assert!(ctx.model().pooler.is_none());
}

/// cls, mean and --normalize computed by densa against numpy-free arithmetic on the golden
/// last hidden state (transformers' output, not densa's).
#[test]
fn cls_mean_and_normalize_pooling_match_golden_hidden_states() {
    let name = "dpr-ctx-tiny";
    let golden = Golden::load(name);
    let cases = cases();
    let inputs: Vec<_> = cases.iter().map(|c| c.input()).collect();
    for (pooling, normalize) in [
        (Pooling::Cls, false),
        (Pooling::Mean, false),
        (Pooling::Mean, true),
        (Pooling::WeightedMean, false),
        (Pooling::LastToken, false),
    ] {
        let encoder = Encoder::from_dir(
            model_dir(name),
            Options {
                threads: 2,
                pooling,
                normalize,
                ..Options::default()
            },
        )
        .unwrap();
        let embeddings = encoder.embed_inputs(&inputs).unwrap();
        for i in 0..cases.len() {
            let (shape, hs) = golden.f32(&format!("case{i}.hidden_states"));
            let (t, h) = (shape[1], shape[2]);
            let last = &hs[(shape[0] - 1) * t * h..];
            let mut expected: Vec<f32> = match pooling {
                Pooling::Cls => last[..h].to_vec(),
                Pooling::LastToken => last[(t - 1) * h..t * h].to_vec(),
                // sentence-transformers' weightedmean: token r weighs r + 1.
                Pooling::WeightedMean => (0..h)
                    .map(|j| {
                        let sum: f64 = (0..t)
                            .map(|r| (r + 1) as f64 * last[r * h + j] as f64)
                            .sum();
                        (sum / (t * (t + 1) / 2) as f64) as f32
                    })
                    .collect(),
                _ => (0..h)
                    .map(|j| {
                        ((0..t).map(|r| last[r * h + j] as f64).sum::<f64>() / t as f64) as f32
                    })
                    .collect(),
            };
            if normalize {
                let norm = expected
                    .iter()
                    .map(|v| (*v as f64).powi(2))
                    .sum::<f64>()
                    .sqrt() as f32;
                expected.iter_mut().for_each(|v| *v /= norm);
            }
            let diff = max_abs_diff(embeddings.row(i), &expected);
            assert!(
                diff <= TOLERANCE,
                "{pooling:?} normalize={normalize} case {i}: {diff:e}"
            );
        }
    }
}
