//! End-to-end forward passes at the BERT-base shape of the Spanish DPR encoders
//! (768/12/12/3072, vocabulary 31002), random weights from the test PRNG:
//! `cargo bench --bench end_to_end`. Threads: `DENSA_BENCH_THREADS` (default 2).

#[path = "../tests/common/prng.rs"]
mod prng;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use densa::checkpoint::{Checkpoint, Tensor};
use densa::config::ModelType;
use densa::model::parameter_shapes;
use densa::tokenizer::TextTokenizer;
use densa::{BertConfig, Encoder, Options};
use std::collections::HashMap;
use std::path::Path;

fn bert_base_encoder(threads: usize) -> Encoder {
    let mut config = BertConfig::bert_base(31002);
    config.model_type = ModelType::Dpr;
    let prefix = "ctx_encoder.bert_model.";
    let tensors: HashMap<String, Tensor> = parameter_shapes(&config)
        .into_iter()
        .map(|(name, shape)| {
            let full = format!("{prefix}{name}");
            let (center, scale) = prng::center_scale(&full);
            (
                full.clone(),
                Tensor::from_vec(
                    shape.clone(),
                    prng::uniform(&full, shape.iter().product(), center, scale),
                ),
            )
        })
        .collect();
    let vocab_dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/dpr-ctx-tiny");
    let tokenizer = TextTokenizer::from_dir(&vocab_dir, 512).unwrap();
    Encoder::from_parts(
        config,
        Checkpoint::from_tensors(tensors),
        tokenizer,
        Options {
            threads,
            batch_size: 64,
            ..Options::default()
        },
    )
    .unwrap()
}

fn end_to_end(c: &mut Criterion) {
    let threads = std::env::var("DENSA_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let encoder = bert_base_encoder(threads);
    let mut group = c.benchmark_group(format!("bert_base_f32_{threads}threads"));
    group.sample_size(10);
    for &(batch, seq) in &[(1usize, 16usize), (1, 128), (1, 512), (8, 128), (32, 128)] {
        // [CLS] = 4 and [SEP] = 5 in the BETO-style vocabulary.
        let inputs = densa::bench::synthetic_inputs(batch, seq, 31002, 4, 5);
        group.throughput(Throughput::Elements((batch * seq) as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{batch}x{seq}")),
            &inputs,
            |b, inputs| b.iter(|| encoder.embed_tokenized(inputs).unwrap()),
        );
    }
    group.finish();
}

criterion_group!(benches, end_to_end);
criterion_main!(benches);
