//! The text path on arbitrary bytes: tokenize and embed with the dpr-ctx-tiny fixture (BETO
//! special ids, WordPiece from vocab.txt). Valid UTF-8 must give one finite row per input, in
//! order; a NUL byte splits the input into a (title, text) pair.
#![no_main]

use densa::{Encoder, Input, Options};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn encoder() -> &'static Encoder {
    static ENCODER: OnceLock<Encoder> = OnceLock::new();
    ENCODER.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/models/dpr-ctx-tiny");
        let options = Options { threads: 1, ..Options::default() };
        Encoder::from_dir(dir, options).expect("fixture model")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut inputs: Vec<Input> = text.lines().map(Input::Text).collect();
    if let Some((title, body)) = text.split_once('\0') {
        inputs.push(Input::Pair(title, body));
    }
    let embeddings = encoder().embed_inputs(&inputs).expect("valid UTF-8 always embeds");
    assert_eq!(embeddings.len(), inputs.len());
    assert!(embeddings.data.iter().all(|v| v.is_finite()));
});
