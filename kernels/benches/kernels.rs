//! Kernel benchmarks at BERT-base shapes: `cargo bench -p densa-kernels`.
//!
//! The linear layer is measured against a single call of matrixmultiply's `sgemm` (the
//! baseline the hand-tuned GEMM has to beat). Throughput is reported in FLOP (elements for
//! the memory-bound kernels).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use densa_kernels as k;
use std::hint::black_box;

fn data(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32
                / (1u32 << 24) as f32)
                - 0.5
        })
        .collect()
}

fn linear(c: &mut Criterion) {
    let mut group = c.benchmark_group("linear");
    group.sample_size(10);
    for &m in &[1usize, 16, 128, 512, 2048] {
        for &(kk, n) in &[(768usize, 768usize), (768, 3072), (3072, 768)] {
            let (inp, weight, bias) = (data(m * kk, 1), data(n * kk, 2), data(n, 3));
            let packed = k::PackedWeight::new(&weight, n, kk);
            let mut out = vec![0.0f32; m * n];
            group.throughput(Throughput::Elements((2 * m * kk * n) as u64));
            let shape = format!("{m}x{kk}x{n}");
            group.bench_with_input(BenchmarkId::new("densa", &shape), &m, |b, _| {
                let epilogue = k::Epilogue {
                    bias: Some(&bias),
                    ..k::Epilogue::NONE
                };
                b.iter(|| k::linear_packed(black_box(&mut out), &inp, &packed, m, epilogue))
            });
            group.bench_with_input(
                BenchmarkId::new("matrixmultiply_rayon", &shape),
                &m,
                |b, _| {
                    b.iter(|| {
                        k::linear_forward(black_box(&mut out), &inp, &weight, Some(&bias), m, kk, n)
                    })
                },
            );
            group.bench_with_input(BenchmarkId::new("matrixmultiply", &shape), &m, |b, _| {
                // SAFETY: inp (m, kk), weightᵀ (kk, n) via strides, out (m, n): all in bounds.
                b.iter(|| unsafe {
                    matrixmultiply::sgemm(
                        m,
                        kk,
                        n,
                        1.0,
                        inp.as_ptr(),
                        kk as isize,
                        1,
                        weight.as_ptr(),
                        1,
                        kk as isize,
                        0.0,
                        out.as_mut_ptr(),
                        n as isize,
                        1,
                    )
                })
            });
        }
    }
    group.finish();
}

fn elementwise(c: &mut Criterion) {
    let mut group = c.benchmark_group("elementwise");
    let (rows, hidden, ffn) = (128usize, 768usize, 3072usize);
    let (weight, bias) = (data(hidden, 4), data(hidden, 5));
    let base = data(rows * ffn, 6);
    group.throughput(Throughput::Elements((rows * hidden) as u64));
    group.bench_function("layer_norm_128x768", |b| {
        let mut x = base[..rows * hidden].to_vec();
        b.iter(|| k::layer_norm(black_box(&mut x), &weight, Some(&bias), rows, hidden, 1e-12))
    });
    group.throughput(Throughput::Elements((rows * ffn) as u64));
    group.bench_function("gelu_erf_128x3072", |b| {
        b.iter_batched_ref(
            || base.clone(),
            |x| k::gelu_erf(x),
            criterion::BatchSize::LargeInput,
        )
    });
    group.throughput(Throughput::Elements((12 * rows * rows) as u64));
    group.bench_function("softmax_12x128x128", |b| {
        let x = data(12 * rows * rows, 7);
        b.iter_batched_ref(
            || x.clone(),
            |x| k::softmax_rows(x, 12 * rows, rows),
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn attention(c: &mut Criterion) {
    let mut group = c.benchmark_group("attention");
    group.sample_size(20);
    let (heads, head_dim) = (12usize, 64usize);
    for &t in &[16usize, 128, 512] {
        let width = heads * head_dim;
        let qkv = data(t * 3 * width, 8);
        let mut ctx = vec![0.0f32; t * width];
        group.throughput(Throughput::Elements((4 * t * t * width) as u64));
        group.bench_with_input(BenchmarkId::new("bert_base_heads", t), &t, |b, _| {
            b.iter(|| {
                k::attention_forward(
                    k::Isa::selected(),
                    k::Rows::All,
                    black_box(&mut ctx),
                    &qkv,
                    &[0, t],
                    heads,
                    head_dim,
                )
            })
        });
    }
    group.finish();
}

/// Exact top-10 search over 100k vectors (a DPR index of 100k passages), one question: the
/// latency `densa search` adds to encoding the question. 768 = BERT-base / DPR, 384 = MiniLM.
fn search(c: &mut Criterion) {
    let mut group = c.benchmark_group("search_top10_100k");
    group.sample_size(20);
    for dim in [768usize, 384] {
        let n = 100_000;
        let vectors = data(n * dim, 7);
        let query = data(dim, 8);
        group.throughput(Throughput::Bytes((n * dim * 4) as u64));
        group.bench_with_input(BenchmarkId::new("dim", dim), &dim, |b, &dim| {
            b.iter(|| k::top_k_inner_product(&query, &vectors, dim, 10))
        });
    }
    group.finish();
}

criterion_group!(benches, linear, elementwise, attention, search);
criterion_main!(benches);
