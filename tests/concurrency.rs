//! One `Encoder` shared by many threads: every vector bitwise equal to the sequential
//! result, no deadlock from OS threads or from inside another rayon pool, and the thread
//! count setting respected. A watchdog turns a hang into a failure.

mod common;

use common::model_dir;
use densa::{Encoder, Options, Precision};
use rayon::prelude::*;
use std::sync::Arc;
use std::time::Duration;

/// Texts of mixed lengths: empty, short questions, long passages (truncated).
fn texts() -> Vec<String> {
    let mut texts = vec![String::new(), "¿Qué?".to_string()];
    for i in 0..18 {
        let words = [1, 3, 7, 15, 40, 120, 600][i % 7];
        texts.push(
            (0..words)
                .map(|w| ["año", "paella", "río", "biblioteca", "😀", "東京"][(w + i) % 6])
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    texts
}

/// Runs `f` on a thread and fails if it takes longer than `limit` (a deadlock).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .expect("did not finish in time: deadlock?")
}

fn shared_encoder(precision: Precision) -> (Arc<Encoder>, Vec<String>, Vec<Vec<f32>>) {
    let options = Options {
        threads: 2,
        precision,
        ..Options::default()
    };
    let encoder = Arc::new(Encoder::from_dir(model_dir("dpr-ctx-tiny"), options).unwrap());
    let texts = texts();
    // The sequential reference: one text per call, one call at a time.
    let expected: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| encoder.embed(&[t]).unwrap().row(0).to_vec())
        .collect();
    (encoder, texts, expected)
}

#[test]
fn eight_threads_a_thousand_calls_each_bitwise_equal() {
    for precision in [Precision::F32, Precision::Int8] {
        let (encoder, texts, expected) = shared_encoder(precision);
        let (texts, expected) = (Arc::new(texts), Arc::new(expected));
        within(Duration::from_secs(300), move || {
            let workers: Vec<_> = (0..8)
                .map(|thread| {
                    let (encoder, texts, expected) =
                        (encoder.clone(), texts.clone(), expected.clone());
                    std::thread::spawn(move || {
                        for call in 0..1000 {
                            // 1 to 4 texts per call, a different mix on every thread and call.
                            let n = 1 + (call + thread) % 4;
                            let picks: Vec<usize> = (0..n)
                                .map(|j| (call * 7 + thread * 13 + j * 5) % texts.len())
                                .collect();
                            let batch: Vec<&str> =
                                picks.iter().map(|&i| texts[i].as_str()).collect();
                            let got = encoder.embed(&batch).unwrap();
                            for (row, &i) in picks.iter().enumerate() {
                                assert!(
                                    got.row(row) == expected[i].as_slice(),
                                    "thread {thread}, call {call}: text {i} differs"
                                );
                            }
                        }
                    })
                })
                .collect();
            for w in workers {
                w.join().expect("a worker failed");
            }
        });
    }
}

#[test]
fn calls_from_inside_another_rayon_pool_do_not_deadlock() {
    let (encoder, texts, expected) = shared_encoder(Precision::F32);
    within(Duration::from_secs(120), move || {
        let outer = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        outer.install(|| {
            (0..400).into_par_iter().for_each(|call| {
                let i = call % texts.len();
                let got = encoder.embed(&[&texts[i]]).unwrap();
                assert!(got.row(0) == expected[i].as_slice(), "call {call}");
            });
        });
        // And from the global pool, nested in a parallel iterator.
        (0..100).into_par_iter().for_each(|call| {
            let i = (call * 3) % texts.len();
            assert!(encoder.embed(&[&texts[i]]).unwrap().row(0) == expected[i].as_slice());
        });
    });
}

#[test]
fn thread_count_is_respected() {
    for threads in [1, 3] {
        let options = Options {
            threads,
            ..Options::default()
        };
        let encoder = Encoder::from_dir(model_dir("dpr-ctx-tiny"), options).unwrap();
        assert_eq!(encoder.threads(), threads);
        // The work runs on the encoder's pool, whatever pool the caller is on.
        let (inside, name) = encoder.install(|| {
            (
                rayon::current_num_threads(),
                std::thread::current().name().map(str::to_owned),
            )
        });
        assert_eq!(inside, threads);
        assert!(name.unwrap_or_default().starts_with("densa-"));
    }
}
