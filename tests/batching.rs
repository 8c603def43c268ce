//! The dynamic-batching queue in front of an encoder: calls that differ only in what happens to
//! their vectors after the pass (`truncate_dim`, `normalize`) share one forward pass, calls
//! whose pass differs (how many prompt tokens pooling leaves out) do not, and every call's rows
//! are still sentence-transformers' vectors for its own settings
//! (tests/fixtures/golden/st-tiny.safetensors, written by tools/make_fixtures.py).

mod common;

use common::{max_abs_diff, model_dir, Golden};
use densa::{BatchLimits, Batcher, Encoder, Encoding, Options, Prompt};
use std::sync::Arc;
use std::time::Duration;

/// Vectors are L2-normalised (or tanh-bounded): the absolute tolerance of
/// tests/sentence_transformers.rs.
const TOLERANCE: f32 = 1e-5;

#[test]
fn calls_differing_after_the_pass_share_it_and_get_their_own_vectors() {
    let golden = Golden::load("st-tiny");
    let texts: Vec<String> = serde_json::from_str(&golden.metadata("texts").unwrap()).unwrap();
    let options = Options {
        threads: 2,
        ..Options::default()
    };
    let encoder = Arc::new(Encoder::from_dir(model_dir("st-tiny"), options).unwrap());
    let truncated = |normalize: bool| {
        let builder = encoder.encoding_builder().truncate_dim(Some(8));
        builder.normalize(normalize).build().unwrap()
    };
    // (the golden's name, the call's encoding): the folder's default ("query: " prompt, its
    // Normalize), its first 8 values, and those normalised again.
    let calls: Vec<(&str, Encoding)> = vec![
        ("default", encoder.encoding().clone()),
        ("truncated", truncated(false)),
        ("truncated_normalized", truncated(true)),
    ];
    let passes = calls.iter().map(|(_, e)| e.pass_key());
    assert!(passes.clone().all(|key| key == calls[0].1.pass_key()));
    // A literal prompt of another length leaves out another number of tokens: another pass.
    let literal = encoder
        .encoding_builder()
        .prompt(Prompt::Text("pregunta: ".into()))
        .build()
        .unwrap();
    assert_ne!(literal.pass_key(), calls[0].1.pass_key());

    // The oldest call would wait a minute for company: all four are queued before the worker
    // takes any, and closing the queue then runs them at once.
    let limits = BatchLimits {
        max_wait: Duration::from_secs(60),
        ..BatchLimits::default()
    };
    let batcher = Batcher::new(encoder.clone(), limits).unwrap();
    let inputs: Vec<densa::Input> = texts.iter().map(|t| densa::Input::Text(t)).collect();
    let tokens = |encoding: &Encoding| encoder.tokenize_on_caller_thread(&inputs, encoding);
    let mut pending = Vec::new();
    for (_, encoding) in &calls {
        let tokenized = tokens(encoding).unwrap();
        pending.push(batcher.submit(encoding.clone(), tokenized).unwrap());
    }
    let other = batcher
        .submit(literal.clone(), tokens(&literal).unwrap())
        .unwrap();
    batcher.close();
    for ((label, _), pending) in calls.iter().zip(pending) {
        let done = pending.wait().unwrap();
        assert_eq!(
            done.batch_inputs,
            calls.len() * texts.len(),
            "{label}: the three calls ran in one pass"
        );
        let (shape, want) = golden.f32(label);
        assert_eq!(
            (done.outputs.len(), done.outputs[0].len()),
            (shape[0], shape[1])
        );
        for (i, row) in done.outputs.iter().enumerate() {
            let diff = max_abs_diff(row, &want[i * shape[1]..(i + 1) * shape[1]]);
            assert!(diff <= TOLERANCE, "{label} text {i}: {diff:e}");
        }
    }
    let done = other.wait().unwrap();
    assert_eq!(
        done.batch_inputs,
        texts.len(),
        "another pass key runs alone"
    );
    let (shape, want) = golden.f32("literal");
    for (i, row) in done.outputs.iter().enumerate() {
        let diff = max_abs_diff(row, &want[i * shape[1]..(i + 1) * shape[1]]);
        assert!(diff <= TOLERANCE, "literal text {i}: {diff:e}");
    }
    let stats = batcher.stats();
    assert_eq!(
        stats.batches, 2,
        "one pass for the three calls, one for the other"
    );
}
