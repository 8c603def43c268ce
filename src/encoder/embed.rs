//! Embedding: tokenizing (with the prompt), batching, the forward pass, pooling and what
//! follows it.

use super::{Embeddings, Encoder, Encoding};
use crate::error::{Error, Result};
use crate::model::{OutputRows, PackedBatch, Workspace};
use crate::pooling::{l2_normalize, pool};
use crate::tokenizer::{Input, Tokenized};
use rayon::prelude::*;
use std::borrow::Borrow;

impl Encoder {
    /// Embeds single texts (questions).
    pub fn embed(&self, texts: &[&str]) -> Result<Embeddings> {
        let inputs: Vec<Input> = texts.iter().map(|&t| Input::Text(t)).collect();
        self.embed_inputs(&inputs)
    }

    /// Embeds pairs: for DPR passages, `(title, text)`.
    pub fn embed_pairs(&self, pairs: &[(&str, &str)]) -> Result<Embeddings> {
        let inputs: Vec<Input> = pairs.iter().map(|&(a, b)| Input::Pair(a, b)).collect();
        self.embed_inputs(&inputs)
    }

    /// Embeds any mix of texts and pairs, one row per input, in input order.
    pub fn embed_inputs(&self, inputs: &[Input<'_>]) -> Result<Embeddings> {
        self.embed_inputs_with(inputs, &self.encoding)
    }

    /// [`Encoder::embed_inputs`] with another encoding (from [`Encoder::encoding_for`]).
    pub fn embed_inputs_with(
        &self,
        inputs: &[Input<'_>],
        encoding: &Encoding,
    ) -> Result<Embeddings> {
        let tokenized = self.tokenize_on_pool(inputs, encoding)?;
        self.embed_tokenized_with(&tokenized, encoding)
    }

    /// Tokenizes inputs as the model will see them, on the encoder's pool.
    /// The prompt, if any, goes before each text (before the title of a pair); a model
    /// without token types (RoBERTa, XLM-R, DistilBERT) gets type 0 throughout.
    pub fn tokenize(&self, inputs: &[Input<'_>]) -> Result<Vec<Tokenized>> {
        self.tokenize_on_pool(inputs, &self.encoding)
    }

    fn tokenize_on_pool(
        &self,
        inputs: &[Input<'_>],
        encoding: &Encoding,
    ) -> Result<Vec<Tokenized>> {
        self.pool.install(|| {
            inputs
                .par_iter()
                .map(|&input| self.tokenize_one(input, encoding))
                .collect()
        })
    }

    /// Tokenizes inputs with `encoding`'s prompt on the calling thread (a server's request
    /// thread, so that tokenizing never waits for the pool's forward passes).
    pub fn tokenize_with(
        &self,
        inputs: &[Input<'_>],
        encoding: &Encoding,
    ) -> Result<Vec<Tokenized>> {
        inputs
            .iter()
            .map(|&input| self.tokenize_one(input, encoding))
            .collect()
    }

    fn tokenize_one(&self, input: Input<'_>, encoding: &Encoding) -> Result<Tokenized> {
        let mut tokens = match encoding.prompt() {
            None => self.tokenizer.encode(input)?,
            Some(prompt) => match input {
                Input::Text(t) => self
                    .tokenizer
                    .encode(Input::Text(&format!("{prompt}{t}")))?,
                Input::Pair(a, b) => self
                    .tokenizer
                    .encode(Input::Pair(&format!("{prompt}{a}"), b))?,
            },
        };
        if !self.model.config.uses_token_types() {
            tokens.type_ids.iter_mut().for_each(|t| *t = 0);
        }
        Ok(tokens)
    }

    /// Embeds already tokenized inputs.
    ///
    /// Inputs are sorted by length, cut into batches of at most `batch_size` inputs and
    /// `max_batch_tokens` tokens, each batch packed (no padding) and run; rows come back in
    /// input order. Every input is checked first: at least one token, as many type ids as
    /// ids, no longer than the model's positions, every id in the embedding tables. An
    /// embedding holding NaN or ±Inf is an error naming the input unless the encoder was
    /// opened with [`super::Options::allow_non_finite`].
    pub fn embed_tokenized(&self, tokenized: &[Tokenized]) -> Result<Embeddings> {
        self.embed_tokenized_with(tokenized, &self.encoding)
    }

    /// [`Encoder::embed_tokenized`] with another encoding (from [`Encoder::encoding_for`];
    /// `tokenized` made with the same one).
    pub fn embed_tokenized_with(
        &self,
        tokenized: &[Tokenized],
        encoding: &Encoding,
    ) -> Result<Embeddings> {
        let dim = self.dim_of(encoding);
        self.check_tokenized(tokenized)?;
        let mut data = vec![0.0f32; tokenized.len() * dim];
        let mut order: Vec<usize> = (0..tokenized.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(tokenized[i].ids.len()));
        let mut workspace = self.take_workspace();
        let result = self.pool.install(|| -> Result<()> {
            let mut pooled = Vec::new();
            let lengths: Vec<usize> = order.iter().map(|&i| tokenized[i].ids.len()).collect();
            for batch_range in batch_ranges(&lengths, self.batch_size, self.max_batch_tokens) {
                let batch_indices = &order[batch_range];
                let mut batch = PackedBatch::new();
                for &i in batch_indices {
                    batch.push(&tokenized[i].ids, &tokenized[i].type_ids);
                }
                // Leaving the prompt out moves cls off the first token: every row is needed.
                let rows = match encoding.prompt_tokens() {
                    0 => self.pooling.output_rows(),
                    _ => OutputRows::All,
                };
                let hidden = self.model.forward(&batch, &mut workspace, None, rows)?;
                let n = batch_indices.len();
                pooled.resize(n * self.pooled_dim(), 0.0);
                pool(
                    &self.model,
                    self.pooling,
                    hidden,
                    &batch,
                    encoding.prompt_tokens(),
                    &mut pooled,
                )?;
                let vectors = self.after_pooling(&mut pooled, n, encoding);
                for (row, &i) in vectors.chunks_exact(dim).zip(batch_indices) {
                    data[i * dim..(i + 1) * dim].copy_from_slice(row);
                }
            }
            Ok(())
        });
        self.put_workspace(workspace);
        result?;
        if !self.allow_non_finite {
            for (input, row) in data.chunks_exact(dim.max(1)).enumerate() {
                let count = row.iter().filter(|v| !v.is_finite()).count();
                if count > 0 {
                    return Err(Error::NonFiniteOutput { input, count });
                }
            }
        }
        Ok(Embeddings {
            dim,
            data,
            truncated: tokenized.iter().filter(|t| t.truncated).count(),
        })
    }

    /// What follows pooling, in sentence-transformers' order: the folder's Dense modules and
    /// Normalize, then `truncate_dim`, then the asked-for normalisation. `(n, dim)` out.
    fn after_pooling<'a>(
        &self,
        pooled: &'a mut [f32],
        n: usize,
        encoding: &Encoding,
    ) -> std::borrow::Cow<'a, [f32]> {
        let pooled = &mut pooled[..n * self.pooled_dim()];
        let dim = self.dim_of(encoding);
        if self.st.dense.is_empty() && dim == self.pooled_dim() {
            // The common case (no Dense, no truncation): normalise in place, no copy.
            // The folder's Normalize, then an explicit one, as sentence-transformers runs both.
            for _ in 0..(usize::from(self.st.normalize) + usize::from(encoding.normalize())) {
                pooled.chunks_exact_mut(dim.max(1)).for_each(l2_normalize);
            }
            return std::borrow::Cow::Borrowed(pooled);
        }
        let mut vectors = pooled.to_vec();
        for dense in &self.st.dense {
            vectors = dense.forward(&vectors, n);
        }
        let width = vectors.len() / n.max(1);
        if self.st.normalize {
            vectors
                .chunks_exact_mut(width.max(1))
                .for_each(l2_normalize);
        }
        if dim < width {
            vectors = vectors
                .chunks_exact(width)
                .flat_map(|row| row[..dim].iter().copied())
                .collect();
        }
        if encoding.normalize() {
            vectors.chunks_exact_mut(dim.max(1)).for_each(l2_normalize);
        }
        std::borrow::Cow::Owned(vectors)
    }

    /// The embedding output and every layer's output for one input, each `(T, hidden)`
    /// row-major: what `transformers` returns with `output_hidden_states=True`.
    pub fn hidden_states(&self, input: Input<'_>) -> Result<(Tokenized, Vec<Vec<f32>>)> {
        let tokenized = self.tokenize(&[input])?.remove(0);
        let mut batch = PackedBatch::new();
        batch.push(&tokenized.ids, &tokenized.type_ids);
        let mut states = Vec::with_capacity(self.model.layers.len() + 1);
        let mut workspace = Workspace::default();
        self.pool.install(|| {
            self.model
                .forward(&batch, &mut workspace, Some(&mut states), OutputRows::All)
        })?;
        Ok((tokenized, states))
    }

    /// Refuses inputs the model cannot run, naming the input.
    pub(crate) fn check_tokenized<T: Borrow<Tokenized>>(&self, tokenized: &[T]) -> Result<()> {
        let cfg = &self.model.config;
        for (i, t) in tokenized.iter().map(Borrow::borrow).enumerate() {
            let problem = if t.ids.is_empty() {
                "has no tokens (even an empty text has its special tokens)".to_string()
            } else if t.type_ids.len() != t.ids.len() {
                format!("has {} ids but {} type ids", t.ids.len(), t.type_ids.len())
            } else if t.ids.len() > cfg.max_positions() {
                format!(
                    "has {} tokens, more than the model's {} positions",
                    t.ids.len(),
                    cfg.max_positions()
                )
            } else if let Some(id) = t.ids.iter().find(|&&id| id as usize >= cfg.vocab_size) {
                format!(
                    "holds token id {id}, beyond the embedding table ({} rows)",
                    cfg.vocab_size
                )
            } else if let Some(tt) = t
                .type_ids
                .iter()
                .find(|&&tt| tt as usize >= cfg.type_vocab_size.max(1))
            {
                format!(
                    "holds token type {tt}, beyond the {} token types",
                    cfg.type_vocab_size
                )
            } else {
                continue;
            };
            return Err(Error::InvalidInput(format!(
                "tokenized input {i} (counting from 0) {problem}"
            )));
        }
        Ok(())
    }
}

/// Cuts a run of inputs of the given lengths into consecutive batches of at most
/// `max_inputs` inputs and `max_tokens` tokens (0: no token limit); an input longer than
/// `max_tokens` forms a batch of its own.
fn batch_ranges(
    lengths: &[usize],
    max_inputs: usize,
    max_tokens: usize,
) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let max_tokens = if max_tokens == 0 {
        usize::MAX
    } else {
        max_tokens
    };
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= lengths.len() {
            return None;
        }
        let (mut end, mut tokens) = (start, 0usize);
        while end < lengths.len()
            && end - start < max_inputs
            && (end == start || tokens + lengths[end] <= max_tokens)
        {
            tokens += lengths[end];
            end += 1;
        }
        let range = start..end;
        start = end;
        Some(range)
    })
}

#[cfg(test)]
mod tests {
    use super::batch_ranges;

    #[test]
    fn batches_respect_both_limits() {
        let lengths = [512, 300, 200, 100, 100, 50, 2, 2];
        // At most 3 inputs and 600 tokens: 512 alone (+ 300 would pass 600), then
        // 300 + 200 + 100 = 600, then 100 + 50 + 2 (3 inputs), then the last 2.
        let got: Vec<_> = batch_ranges(&lengths, 3, 600).collect();
        assert_eq!(got, vec![0..1, 1..4, 4..7, 7..8]);
        // An input longer than the token limit still runs, alone.
        let got: Vec<_> = batch_ranges(&lengths, 8, 100).collect();
        assert_eq!(got, vec![0..1, 1..2, 2..3, 3..4, 4..5, 5..8]);
        // 0 = no token limit.
        assert_eq!(batch_ranges(&lengths, 8, 0).collect::<Vec<_>>(), vec![0..8]);
        assert_eq!(batch_ranges(&[], 8, 10).count(), 0);
    }
}
