//! Dense passage retrieval with the library API: encode passages as (title, text) pairs with
//! the context encoder, questions with the question encoder, rank by inner product.
//!
//!     cargo run --release --example dpr_retrieval -- CTX_DIR QUESTION_DIR
//!
//! Without arguments it uses the tiny random context-encoder fixture for both sides (the
//! ranking is then meaningless, but every step runs). With the Spanish DPR pair converted to safetensors (see the README), it
//! answers the questions below.

use densa::{Encoder, Options};
use std::sync::Arc;

fn main() -> Result<(), densa::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/models");
    let ctx_dir = args
        .first()
        .cloned()
        .unwrap_or(format!("{fixtures}/dpr-ctx-tiny"));
    let question_dir = args
        .get(1)
        .cloned()
        .unwrap_or(format!("{fixtures}/dpr-ctx-tiny"));

    // Two threads per encoder; a service would size this to its cores and request rate.
    let options = Options {
        threads: 2,
        ..Options::default()
    };
    let ctx_encoder = Encoder::from_dir(&ctx_dir, options.clone())?;
    let question_encoder = Arc::new(Encoder::from_dir(&question_dir, options)?);

    let passages = [
        (
            "Miguel de Cervantes",
            "Miguel de Cervantes Saavedra escribió Don Quijote de la Mancha, publicado en 1605.",
        ),
        (
            "Paella",
            "La paella es un plato de arroz originario de la Comunidad Valenciana.",
        ),
        (
            "Río Ebro",
            "El Ebro nace en Fontibre, en Cantabria, y desemboca en el mar Mediterráneo.",
        ),
    ];
    let passage_vectors = ctx_encoder.embed_pairs(&passages)?;
    if passage_vectors.dim != question_encoder.dim() {
        return Err(densa::Error::InvalidInput(format!(
            "the encoders do not match: passages have {} dimensions, questions {}",
            passage_vectors.dim,
            question_encoder.dim()
        )));
    }

    // The encoder is Send + Sync: questions can arrive on many threads at once.
    let questions = [
        "¿Quién escribió el Quijote?",
        "¿De dónde es la paella?",
        "¿Dónde nace el Ebro?",
    ];
    std::thread::scope(|scope| {
        for question in questions {
            let (encoder, passage_vectors, passages) =
                (Arc::clone(&question_encoder), &passage_vectors, &passages);
            scope.spawn(move || {
                let q = encoder.embed(&[question]).expect("question embeds");
                let scores: Vec<f32> = passage_vectors
                    .rows()
                    .map(|p| p.iter().zip(q.row(0)).map(|(a, b)| a * b).sum())
                    .collect();
                let best = (0..scores.len())
                    .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
                    .unwrap();
                println!(
                    "{question}  ->  {} (score {:.3})",
                    passages[best].0, scores[best]
                );
            });
        }
    });
    Ok(())
}
