//! A text's vector does not depend on its batch-mates, the batch size or the thread count.
//! Both are checked bit for bit: the packed forward pass does no work across sequences, and
//! every output element is the same dot product in the same order however work is split.

mod common;

use common::{cases, model_dir};
use densa::{Encoder, Input, Options, Precision};

fn encoder(name: &str, threads: usize, batch_size: usize) -> Encoder {
    encoder_at(name, threads, batch_size, Precision::F32)
}

fn encoder_at(name: &str, threads: usize, batch_size: usize, precision: Precision) -> Encoder {
    let options = Options {
        threads,
        batch_size,
        precision,
        ..Options::default()
    };
    Encoder::from_dir(model_dir(name), options).unwrap()
}

#[test]
fn batch_invariance_bitwise() {
    for name in ["bert-tiny", "dpr-ctx-tiny", "dpr-question-tiny"] {
        let cases = cases();
        let inputs: Vec<Input> = cases.iter().map(|c| c.input()).collect();
        let together = encoder(name, 2, 64).embed_inputs(&inputs).unwrap();
        let alone = encoder(name, 2, 1);
        let mut gap = 0.0f32;
        for (i, input) in inputs.iter().enumerate() {
            let single = alone.embed_inputs(std::slice::from_ref(input)).unwrap();
            gap = gap.max(common::max_abs_diff(single.row(0), together.row(i)));
        }
        // Uneven batches: 3 per batch, in reverse order.
        let reversed: Vec<Input> = inputs.iter().rev().copied().collect();
        let by_three = encoder(name, 2, 3).embed_inputs(&reversed).unwrap();
        for i in 0..inputs.len() {
            gap = gap.max(common::max_abs_diff(
                by_three.row(inputs.len() - 1 - i),
                together.row(i),
            ));
        }
        // A token budget that splits every batch (max_batch_tokens): still the same vectors.
        let budget = Encoder::from_dir(
            model_dir(name),
            Options {
                threads: 2,
                batch_size: 64,
                max_batch_tokens: 40,
                ..Options::default()
            },
        )
        .unwrap()
        .embed_inputs(&inputs)
        .unwrap();
        gap = gap.max(common::max_abs_diff(&budget.data, &together.data));
        println!("FIDELITY {name}: batch-invariance gap {gap:e}");
        assert_eq!(gap, 0.0, "{name}: a vector changed with its batch");
    }
}

#[test]
fn thread_count_invariance_bitwise() {
    let cases = cases();
    let inputs: Vec<Input> = cases.iter().map(|c| c.input()).collect();
    let reference = encoder("dpr-ctx-tiny", 1, 8).embed_inputs(&inputs).unwrap();
    for threads in [2, 3, 5] {
        let e = encoder("dpr-ctx-tiny", threads, 8);
        assert_eq!(e.threads(), threads, "thread count respected");
        let other = e.embed_inputs(&inputs).unwrap();
        assert!(
            other.data == reference.data,
            "{threads} threads give other vectors than 1 thread"
        );
    }
}

#[test]
fn one_encoder_shared_by_many_threads() {
    let cases = cases();
    let inputs: Vec<Input> = cases.iter().map(|c| c.input()).collect();
    let encoder = std::sync::Arc::new(encoder("dpr-question-tiny", 2, 4));
    let expected = encoder.embed_inputs(&inputs).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (encoder, inputs, expected) = (&encoder, &inputs, &expected);
            s.spawn(move || {
                for round in 0..5 {
                    let i = (t * 7 + round * 3) % inputs.len();
                    let got = encoder.embed_inputs(&inputs[i..i + 1]).unwrap();
                    assert!(
                        got.row(0) == expected.row(i),
                        "thread {t}: input {i} differs"
                    );
                }
            });
        }
    });
}

/// int8 quantizes activations per token, so batch-mates and thread counts still change nothing.
#[test]
fn int8_batch_and_thread_invariance_bitwise() {
    let cases = cases();
    let inputs: Vec<Input> = cases.iter().map(|c| c.input()).collect();
    let together = encoder_at("dpr-question-tiny", 2, 64, Precision::Int8)
        .embed_inputs(&inputs)
        .unwrap();
    let alone = encoder_at("dpr-question-tiny", 3, 1, Precision::Int8);
    for (i, input) in inputs.iter().enumerate() {
        let single = alone.embed_inputs(std::slice::from_ref(input)).unwrap();
        assert!(
            single.row(0) == together.row(i),
            "int8: input {i} changed with its batch or threads"
        );
    }
}

#[test]
fn first_token_last_layer_equals_the_full_pass_bitwise() {
    // Pooling that reads [CLS] alone runs the last layer on each sequence's first row: those
    // rows must be exactly what the full pass computes (f32 and int8, several batch shapes).
    for precision in [Precision::F32, Precision::Int8] {
        for name in ["bert-tiny", "dpr-ctx-tiny"] {
            let encoder = encoder_at(name, 2, 64, precision);
            let cases = cases();
            let inputs: Vec<Input> = cases.iter().map(|c| c.input()).collect();
            let tokenized = encoder.tokenize(&inputs).unwrap();
            let mut batch = densa::model::PackedBatch::new();
            for (i, t) in tokenized.iter().enumerate() {
                batch.push(i, &t.ids, &t.type_ids).unwrap();
            }
            let h = encoder.model().config.hidden_size;
            let (full, first) = encoder.install(|| {
                let mut workspace = densa::model::Workspace::default();
                let all = densa::Rows::All;
                let full = encoder.model().forward(&batch, &mut workspace, all, None);
                let full = full.unwrap().to_vec();
                let first_only = densa::Rows::FirstOfEachSequence;
                let first = encoder
                    .model()
                    .forward(&batch, &mut workspace, first_only, None);
                (full, first.unwrap().to_vec())
            });
            for s in 0..batch.num_sequences() {
                let t0 = batch.range(s).start;
                assert!(
                    full[t0 * h..(t0 + 1) * h] == first[t0 * h..(t0 + 1) * h],
                    "{name} {precision:?}: sequence {s}'s first row differs"
                );
            }
        }
    }
}
