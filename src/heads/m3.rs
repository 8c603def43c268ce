//! BAAI/bge-m3's three outputs from one forward pass, as FlagEmbedding's `BGEM3FlagModel`
//! defines them (`FlagEmbedding/inference/embedder/encoder_only/m3.py` and the model's
//! `_dense_embedding`, `_sparse_embedding`, `_colbert_embedding`):
//!
//! ```text
//! h (T, H) = XLM-R(ids)                                 one pass, every token's last state
//! dense    = h[0] / |h[0]|                               [CLS], normalised
//! sparse   = relu(sparse_linear(h[t]))  (T)             one weight per token; per token id
//!            the largest, special tokens (cls, eos, pad, unk) left out, weights > 0 kept
//! colbert  = colbert_linear(h[1:T]) / |…|  (T-1, C)     every token after [CLS] (the closing
//!                                                       </s> included), each row normalised
//! ```
//!
//! The heads sit beside the trunk as `sparse_linear.safetensors` (`weight (1, H)`, `bias (1)`)
//! and `colbert_linear.safetensors` (`weight (C, H)`, `bias (C)`), converted from the published
//! `sparse_linear.pt` and `colbert_linear.pt` by `tools/convert_to_safetensors.py` (densa never
//! unpickles). Scores as FlagEmbedding's `compute_score`: [`sparse_score`] (the lexical match)
//! and [`colbert_score`] (MaxSim averaged over the query's vectors).

use super::head_encoder;
use crate::checkpoint::Checkpoint;
use crate::encoder::{Encoder, Options};
use crate::error::{Error, Result};
use crate::io::read_json;
use crate::model::{Dense, DenseActivation};
use crate::pooling::Pooling;
use crate::tokenizer::{Input, Tokenized};
use densa_kernels as k;
use std::path::Path;

/// A bge-m3 model: the trunk and its sparse and ColBERT heads.
pub struct M3 {
    encoder: Encoder,
    heads: M3Heads,
}

/// bge-m3's sparse and ColBERT heads, applied to an encoder's last hidden states (a server
/// keeps them beside the encoder it already holds).
pub struct M3Heads {
    /// `sparse_linear`: one weight per token, ReLU (f64, one output).
    sparse: Dense,
    /// `colbert_linear (C, H)`, packed for the GEMM, and its bias.
    colbert: k::PackedWeight,
    colbert_bias: Vec<f32>,
    /// The ids FlagEmbedding leaves out of the sparse output: cls, eos, pad and unk.
    unused_ids: Vec<u32>,
}

/// What bge-m3 gives for one text.
#[derive(Debug, Clone, PartialEq)]
pub struct M3Output {
    /// `(H)`: the normalised `[CLS]` state.
    pub dense: Vec<f32>,
    /// `(token id, weight)`, ascending ids, each weight > 0.
    pub sparse: Vec<(u32, f32)>,
    /// `(T - 1, C)` row-major: one normalised vector per token after `[CLS]`.
    pub colbert: Vec<f32>,
    /// `C`.
    pub colbert_dim: usize,
}

impl M3Output {
    /// The ColBERT vectors, one per token after `[CLS]`.
    pub fn colbert_rows(&self) -> impl Iterator<Item = &[f32]> {
        self.colbert.chunks_exact(self.colbert_dim.max(1))
    }
}

/// Which of bge-m3's outputs a caller wants (`densa embed --output-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    Dense,
    Sparse,
    Colbert,
}

impl OutputKind {
    pub const NAMES: [&'static str; 3] = ["dense", "sparse", "colbert"];

    pub fn from_name(name: &str) -> Option<OutputKind> {
        match name {
            "dense" => Some(OutputKind::Dense),
            "sparse" => Some(OutputKind::Sparse),
            "colbert" => Some(OutputKind::Colbert),
            _ => None,
        }
    }
}

/// The file beside the trunk that holds a head, and what to tell a user who lacks it.
fn head_file(dir: &Path, name: &str) -> Result<Checkpoint> {
    let path = dir.join(format!("{name}.safetensors"));
    if !path.is_file() {
        let pickle = dir.join(format!("{name}.pt"));
        let hint = if pickle.is_file() {
            format!(
                "convert {} with tools/convert_to_safetensors.py {} (densa does not read pickles)",
                pickle.display(),
                dir.display()
            )
        } else {
            format!("bge-m3 publishes {name}.pt beside the trunk: download it and convert it with tools/convert_to_safetensors.py")
        };
        return Err(Error::Config {
            path,
            message: format!("not found; {hint}"),
        });
    }
    Checkpoint::open_files(&[path])
}

/// `name.weight (out, in)` and `name.bias (out)` of a head file, `out` read from the file.
fn linear_of(checkpoint: &Checkpoint, in_features: usize) -> Result<(Vec<f32>, Vec<f32>, usize)> {
    let out_features = checkpoint
        .raw("weight")
        .map(|(_, shape, _)| shape.first().copied().unwrap_or(0))
        .ok_or_else(|| Error::MissingTensor {
            name: "weight".into(),
            prefixes: "\"\"".into(),
        })?;
    let weight = checkpoint.tensor("weight", &[out_features, in_features])?;
    let bias = checkpoint.tensor("bias", &[out_features])?;
    Ok((
        weight.as_slice().to_vec(),
        bias.as_slice().to_vec(),
        out_features,
    ))
}

impl M3 {
    /// Loads a bge-m3 folder: the XLM-R trunk (as any encoder, `options` applied: threads,
    /// precision, max length) and `sparse_linear.safetensors` and `colbert_linear.safetensors`
    /// beside it.
    pub fn from_dir(dir: impl AsRef<Path>, options: Options) -> Result<Self> {
        let dir = dir.as_ref();
        let encoder = head_encoder(dir, Pooling::Cls, options)?;
        let heads = M3Heads::from_dir(dir, &encoder)?;
        Ok(M3 { encoder, heads })
    }

    /// The trunk.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// `C`, the ColBERT vectors' width.
    pub fn colbert_dim(&self) -> usize {
        self.heads.colbert_dim()
    }

    /// The three outputs of each text, in input order (tokenized as the folder's tokenizer
    /// does, cut at the encoder's max length).
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<M3Output>> {
        let inputs: Vec<Input> = texts.iter().map(|t| Input::Text(t)).collect();
        let tokenized = self.encoder.tokenize(&inputs)?;
        self.heads.encode_tokenized(&self.encoder, &tokenized)
    }
}

impl std::fmt::Debug for M3Heads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("M3Heads")
            .field("colbert_dim", &self.colbert_dim())
            .field("unused_ids", &self.unused_ids)
            .finish_non_exhaustive()
    }
}

impl M3Heads {
    /// Whether `dir` holds bge-m3's heads (converted) beside its trunk.
    pub fn present(dir: &Path) -> bool {
        ["sparse_linear", "colbert_linear"]
            .iter()
            .all(|name| dir.join(format!("{name}.safetensors")).is_file())
    }

    /// `sparse_linear.safetensors` and `colbert_linear.safetensors` of the folder `dir`, for
    /// the trunk `encoder` loaded from it.
    pub fn from_dir(dir: &Path, encoder: &Encoder) -> Result<Self> {
        let h = encoder.model().config.hidden_size;
        let (weight, bias, out) = linear_of(&head_file(dir, "sparse_linear")?, h)?;
        if out != 1 {
            return Err(Error::Config {
                path: dir.join("sparse_linear.safetensors"),
                message: format!("weight has {out} outputs; bge-m3's sparse head has one"),
            });
        }
        let sparse = Dense {
            in_features: h,
            out_features: 1,
            weight,
            bias: Some(bias),
            activation: DenseActivation::Relu,
            norm: None,
        };
        let (weight, colbert_bias, colbert_dim) = linear_of(&head_file(dir, "colbert_linear")?, h)?;
        let colbert = k::PackedWeight::new(&weight, colbert_dim, h);
        let unused_ids = unused_ids(dir, encoder)?;
        Ok(M3Heads {
            sparse,
            colbert,
            colbert_bias,
            unused_ids,
        })
    }

    /// `C`, the ColBERT vectors' width.
    pub fn colbert_dim(&self) -> usize {
        self.colbert_bias.len()
    }

    /// The three outputs of each of `tokenized` (made by `encoder`'s tokenizer), from one
    /// pass of `encoder` over them.
    pub fn encode_tokenized(
        &self,
        encoder: &Encoder,
        tokenized: &[Tokenized],
    ) -> Result<Vec<M3Output>> {
        let h = encoder.model().config.hidden_size;
        let c = self.colbert_dim();
        // (ΣT, H): every token's last hidden state, input after input.
        let hidden = encoder.last_hidden_state(tokenized)?;
        let rows = hidden.len() / h.max(1);
        // (ΣT, 1) and (ΣT, C): both heads on every row at once ([CLS]'s ColBERT row dropped
        // below).
        let weights = self.sparse.forward(&hidden, rows);
        let mut colbert = vec![0.0f32; rows * c];
        let epilogue = k::Epilogue {
            bias: Some(&self.colbert_bias),
            activation: k::Activation::None,
        };
        encoder.install(|| k::linear_packed(&mut colbert, &hidden, &self.colbert, rows, epilogue));
        let mut outputs = Vec::with_capacity(tokenized.len());
        let mut start = 0;
        for t in tokenized {
            let len = t.ids.len();
            let mut dense = hidden[start * h..(start + 1) * h].to_vec();
            normalize(&mut dense);
            let mut vectors = colbert[(start + 1) * c..(start + len) * c].to_vec();
            vectors.chunks_exact_mut(c.max(1)).for_each(normalize);
            outputs.push(M3Output {
                dense,
                sparse: lexical_weights(&t.ids, &weights[start..start + len], &self.unused_ids),
                colbert: vectors,
                colbert_dim: c,
            });
            start += len;
        }
        Ok(outputs)
    }
}

/// bge-m3's heads on a shared encoder as a batching task: concurrent calls (a server's
/// `/embed_sparse` and `/search` requests) merged into one pass; every call is run alike.
pub struct M3Task {
    pub encoder: std::sync::Arc<Encoder>,
    pub heads: std::sync::Arc<M3Heads>,
}

impl crate::batching::BatchTask for M3Task {
    type Settings = ();
    type PassKey = ();
    type Output = M3Output;

    fn pass_key(_: &()) {}

    fn max_batch_tokens(&self) -> usize {
        self.encoder.max_batch_tokens()
    }

    fn run(&self, _: &(), inputs: &[Tokenized]) -> Result<Vec<M3Output>> {
        self.heads.encode_tokenized(&self.encoder, inputs)
    }

    fn finish(&self, _: &(), outputs: Vec<M3Output>) -> Result<Vec<M3Output>> {
        Ok(outputs)
    }
}

/// The ids of the tokenizer's cls, eos, pad and unk tokens (`special_tokens_map.json`, as
/// FlagEmbedding reads them from the tokenizer's `special_tokens_map`).
fn unused_ids(dir: &Path, encoder: &Encoder) -> Result<Vec<u32>> {
    let path = dir.join("special_tokens_map.json");
    let map = if path.is_file() {
        read_json(&path)?
    } else {
        serde_json::Value::Null
    };
    let mut ids: Vec<u32> = ["cls_token", "eos_token", "pad_token", "unk_token"]
        .iter()
        .filter_map(|key| {
            let token = match &map[key] {
                serde_json::Value::String(s) => Some(s.as_str()),
                other => other["content"].as_str(),
            }?;
            encoder.tokenizer().token_to_id(token)
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Err(Error::Config {
            path,
            message: "names none of cls_token, eos_token, pad_token, unk_token in the tokenizer's vocabulary: bge-m3's sparse output leaves those tokens out (FlagEmbedding reads them from this file)".into(),
        });
    }
    Ok(ids)
}

/// FlagEmbedding's `_process_token_weights`: per token id the largest weight, special ids
/// left out, only weights > 0; ascending ids.
pub fn lexical_weights(ids: &[u32], weights: &[f32], unused_ids: &[u32]) -> Vec<(u32, f32)> {
    let mut best = std::collections::BTreeMap::new();
    for (&id, &w) in ids.iter().zip(weights) {
        if w > 0.0 && !unused_ids.contains(&id) {
            let entry = best.entry(id).or_insert(0.0f32);
            if w > *entry {
                *entry = w;
            }
        }
    }
    best.into_iter().collect()
}

/// `x / max(|x|, 1e-12)`, torch's `F.normalize`.
fn normalize(x: &mut [f32]) {
    let norm = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
    let scale = 1.0 / norm.max(1e-12);
    x.iter_mut().for_each(|v| *v = (*v as f64 * scale) as f32);
}

/// FlagEmbedding's lexical matching score: Σ over the token ids both hold of the product of
/// their weights (f64).
pub fn sparse_score(query: &[(u32, f32)], passage: &[(u32, f32)]) -> f64 {
    let (mut i, mut j, mut score) = (0, 0, 0.0);
    while i < query.len() && j < passage.len() {
        match query[i].0.cmp(&passage[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                score += query[i].1 as f64 * passage[j].1 as f64;
                i += 1;
                j += 1;
            }
        }
    }
    score
}

/// FlagEmbedding's ColBERT score: for each query vector the largest inner product with a
/// passage vector, averaged over the query's vectors (the inner products by the search
/// kernel, f32; the mean in f64). 0 when either side has no vectors; NaN when their widths
/// differ (vectors of two different models).
pub fn colbert_score(query: &M3Output, passage: &M3Output) -> f64 {
    let c = query.colbert_dim;
    if c != passage.colbert_dim {
        return f64::NAN;
    }
    let (q, p) = (
        query.colbert.len() / c.max(1),
        passage.colbert.len() / c.max(1),
    );
    if q == 0 || p == 0 {
        return 0.0;
    }
    // (p, q): scores[r · q + j] = passage[r] · query[j].
    let mut scores = vec![0.0f32; p * q];
    k::search::inner_products(&query.colbert, &passage.colbert, &mut scores, c);
    let total: f64 = (0..q)
        .map(|j| {
            (0..p)
                .map(|r| scores[r * q + j])
                .fold(f32::NEG_INFINITY, f32::max) as f64
        })
        .sum();
    total / q as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_weights_keep_the_largest_per_id_and_drop_specials() {
        // ids 0 and 2 are special; id 7 twice (keep 0.5); id 9 weight 0 dropped.
        let ids = [0, 7, 9, 7, 5, 2];
        let weights = [0.9, 0.25, 0.0, 0.5, 0.125, 0.75];
        assert_eq!(
            lexical_weights(&ids, &weights, &[0, 1, 2, 3]),
            vec![(5, 0.125), (7, 0.5)]
        );
    }

    #[test]
    fn scores_by_hand() {
        let q = [(3, 0.5), (7, 2.0)];
        let p = [(1, 9.0), (7, 0.25), (8, 1.0)];
        assert_eq!(sparse_score(&q, &p), 0.5);
        let output = |rows: Vec<f32>| M3Output {
            dense: vec![],
            sparse: vec![],
            colbert: rows,
            colbert_dim: 2,
        };
        // Query rows (1,0), (0,1); passage rows (0.6,0.8), (1,0): maxima 1 and 0.8 → 0.9.
        let score = colbert_score(
            &output(vec![1.0, 0.0, 0.0, 1.0]),
            &output(vec![0.6, 0.8, 1.0, 0.0]),
        );
        assert!((score - 0.9).abs() < 1e-7, "{score}");
    }
}
