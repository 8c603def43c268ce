//! A question-answering service in miniature: one question encoder and one memory-mapped
//! index, loaded once and shared by worker threads that each answer questions as they come.
//! This is how a service links densa: `Encoder` and `Index` are `Send + Sync`; every call runs
//! on the encoder's own thread pool, so callers need no pool of their own.
//!
//!     cargo run --release -- index --model CTX_DIR --passages examples/demo/pasajes.jsonl --output /tmp/demo-index
//!     cargo run --release --example qa_service -- Q_DIR /tmp/demo-index < examples/demo/preguntas.txt
//!
//! With the Spanish DPR pair, CTX_DIR is the passage encoder and Q_DIR the question encoder;
//! with a sentence-transformers model both are the same folder.

use densa::{Encoder, Index, Options};
use std::io::BufRead;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

fn main() -> Result<(), densa::Error> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: qa_service QUESTION_ENCODER_DIR INDEX_DIR < questions.txt");
        std::process::exit(2);
    }
    // Loaded once: the weights are packed, the index is mapped (no copy).
    let encoder = Arc::new(Encoder::from_dir(&args[1], Options::default())?);
    let index = Arc::new(Index::open(&args[2])?);

    // Requests arrive on a queue; four workers take them as they come.
    let (requests, queue) = mpsc::channel::<(usize, String)>();
    let queue = Arc::new(Mutex::new(queue));
    let (answers, results) = mpsc::channel();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (encoder, index, queue, answers) = (
                encoder.clone(),
                index.clone(),
                queue.clone(),
                answers.clone(),
            );
            std::thread::spawn(move || loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                let Ok((n, question)) = next else { break };
                let start = Instant::now();
                let hits = index.search_questions(&encoder, &[question.as_str()], 3);
                let _ = answers.send((n, question, hits, start.elapsed()));
            })
        })
        .collect();
    drop(answers);
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.map_err(|e| densa::Error::InvalidInput(format!("stdin: {e}")))?;
        if !line.trim().is_empty() {
            let _ = requests.send((n, line));
        }
    }
    drop(requests);

    let mut answered: Vec<_> = results.iter().collect();
    answered.sort_by_key(|(n, ..)| *n);
    for (_, question, hits, latency) in answered {
        println!("{question}  ({:.1} ms)", latency.as_secs_f64() * 1e3);
        for hit in hits?.remove(0) {
            let title = hit.passage.title.as_deref().unwrap_or("");
            println!("  {:.3}  [{}] {title}", hit.score, hit.passage.id);
        }
    }
    for worker in workers {
        let _ = worker.join();
    }
    Ok(())
}
