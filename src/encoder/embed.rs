//! Embedding: tokenizing (with the prompt), packing inputs into passes, the forward pass,
//! pooling and what follows it; the encoder as a [`BatchTask`].

use super::{Embeddings, Encoder, Encoding, PassKey};
use crate::batching::BatchTask;
use crate::error::{Error, Result};
use crate::model::{PackedBatch, Rows, Workspace};
use crate::pooling::{l2_normalize, pool};
use crate::tokenizer::{Input, Tokenized};
use rayon::prelude::*;
use std::borrow::{Borrow, Cow};

/// Where [`Encoder::run_passes`] hands each input's vector: `(input, vector)`.
type Emit<'a> = dyn FnMut(usize, &[f32]) + Send + 'a;

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

    /// [`Encoder::embed_inputs`] with another encoding (from [`Encoder::encoding_builder`]).
    pub fn embed_inputs_with(
        &self,
        inputs: &[Input<'_>],
        encoding: &Encoding,
    ) -> Result<Embeddings> {
        let tokenized = self.tokenize_on_pool(inputs, encoding)?;
        self.embed_tokenized_with(&tokenized, encoding)
    }

    /// Tokenizes inputs as the model will see them, with the default encoding's prompt, on the
    /// encoder's threads. The prompt, if any, goes before each text (before the title of a
    /// pair); a model without token types (RoBERTa, XLM-R, DistilBERT) gets type 0 throughout.
    pub fn tokenize(&self, inputs: &[Input<'_>]) -> Result<Vec<Tokenized>> {
        self.tokenize_on_pool(inputs, &self.encoding)
    }

    /// Tokenizes inputs with `encoding`'s prompt, in parallel on the encoder's threads.
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

    /// [`Encoder::tokenize`] with `encoding`'s prompt, on the calling thread instead of the
    /// encoder's (a server's request thread: tokenizing then never waits for the forward
    /// passes that keep the encoder's threads busy).
    pub fn tokenize_on_caller_thread(
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
    /// Inputs are sorted by length, cut into passes of at most `batch_size` inputs and
    /// `max_batch_tokens` tokens, each pass packed (no padding) and run; rows come back in
    /// input order. Every input is checked as it is packed (at least one token, as many type
    /// ids as ids) and by the model (no longer than its positions, every id in its tables). An
    /// embedding holding NaN or ±Inf is an error naming the input unless the encoder was
    /// opened with [`super::Options::allow_non_finite`].
    pub fn embed_tokenized(&self, tokenized: &[Tokenized]) -> Result<Embeddings> {
        self.embed_tokenized_with(tokenized, &self.encoding)
    }

    /// [`Encoder::embed_tokenized`] with another encoding (`tokenized` made with its prompt).
    pub fn embed_tokenized_with(
        &self,
        tokenized: &[Tokenized],
        encoding: &Encoding,
    ) -> Result<Embeddings> {
        self.embed_in_passes(tokenized, encoding, self.batch_size)
    }

    /// [`Encoder::embed_tokenized_with`] with passes of at most `max_inputs` inputs (and
    /// `max_batch_tokens` tokens).
    pub(crate) fn embed_in_passes(
        &self,
        tokenized: &[Tokenized],
        encoding: &Encoding,
        max_inputs: usize,
    ) -> Result<Embeddings> {
        let dim = self.dim_of(encoding);
        let settings = encoding.vector_settings();
        let mut data = vec![0.0f32; tokenized.len() * dim];
        let mut emit = |i: usize, vector: &[f32]| {
            settings.apply(vector, &mut data[i * dim..(i + 1) * dim]);
        };
        self.run_passes(tokenized, encoding.pass_key(), max_inputs, &mut emit)?;
        for (input, row) in data.chunks_exact(dim.max(1)).enumerate() {
            self.check_finite(input, row)?;
        }
        Ok(Embeddings {
            dim,
            data,
            truncated: tokenized.iter().filter(|t| t.truncated).count(),
        })
    }

    /// Runs `tokenized` through the model in passes of at most `max_inputs` inputs and
    /// `max_batch_tokens` tokens (longest inputs first), pools each with `pass`, applies the
    /// folder's modules, and hands each input's vector (the modules' width) to `emit`.
    fn run_passes<T: Borrow<Tokenized>>(
        &self,
        tokenized: &[T],
        pass: PassKey,
        max_inputs: usize,
        emit: &mut Emit<'_>,
    ) -> Result<()> {
        let length = |i: usize| tokenized[i].borrow().ids.len();
        let mut order: Vec<usize> = (0..tokenized.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(length(i)));
        let batches = self.packed_batches(tokenized, &order, max_inputs)?;
        // Leaving the prompt out moves cls off the first token: every row is needed.
        let rows = match pass.prompt_tokens {
            0 => self.pooling.output_rows(),
            _ => Rows::All,
        };
        let mut workspace = self.take_workspace();
        let result = self.pool.install(|| -> Result<()> {
            let mut pooled = Vec::new();
            for batch in &batches {
                let hidden = self.model.forward(batch, &mut workspace, rows, None)?;
                let n = batch.num_sequences();
                pooled.resize(n * self.pooled_dim(), 0.0);
                pool(
                    &self.model,
                    self.pooling,
                    hidden,
                    batch,
                    pass.prompt_tokens,
                    &mut pooled,
                )?;
                let vectors = self.after_pooling(&mut pooled, n);
                let width = self.modules_dim().max(1);
                for (vector, &i) in vectors.chunks_exact(width).zip(batch.inputs()) {
                    emit(i, vector);
                }
            }
            Ok(())
        });
        self.put_workspace(workspace);
        result
    }

    /// The inputs `order` lists, packed into consecutive passes of at most `max_inputs`
    /// inputs and `max_batch_tokens` tokens; each input is checked as it is packed and against
    /// the model's tables, all before any pass runs.
    fn packed_batches<T: Borrow<Tokenized>>(
        &self,
        tokenized: &[T],
        order: &[usize],
        max_inputs: usize,
    ) -> Result<Vec<PackedBatch>> {
        let lengths: Vec<usize> = order
            .iter()
            .map(|&i| tokenized[i].borrow().ids.len())
            .collect();
        batch_ranges(&lengths, max_inputs, self.max_batch_tokens)
            .map(|range| {
                let mut batch = PackedBatch::new();
                for &i in &order[range] {
                    let t = tokenized[i].borrow();
                    batch.push(i, &t.ids, &t.type_ids)?;
                }
                batch.check_against(&self.model.config)?;
                Ok(batch)
            })
            .collect()
    }

    /// The folder's modules after pooling, in sentence-transformers' order: its Dense modules,
    /// then its Normalize. `pooled (n, pooled_dim)` in, `(n, modules_dim)` out.
    fn after_pooling<'a>(&self, pooled: &'a mut [f32], n: usize) -> Cow<'a, [f32]> {
        let pooled = &mut pooled[..n * self.pooled_dim()];
        let width = self.modules_dim().max(1);
        if self.st.dense.is_empty() {
            // The common case: no copy (a Normalize works in place).
            if self.st.normalize {
                pooled.chunks_exact_mut(width).for_each(l2_normalize);
            }
            return Cow::Borrowed(pooled);
        }
        let mut vectors = pooled.to_vec();
        for dense in &self.st.dense {
            vectors = dense.forward(&vectors, n);
        }
        if self.st.normalize {
            vectors.chunks_exact_mut(width).for_each(l2_normalize);
        }
        Cow::Owned(vectors)
    }

    /// Refuses a vector holding NaN or ±Inf, naming its input, unless the encoder allows them.
    fn check_finite(&self, input: usize, vector: &[f32]) -> Result<()> {
        let count = vector.iter().filter(|v| !v.is_finite()).count();
        match count {
            0 => Ok(()),
            _ if self.allow_non_finite => Ok(()),
            _ => Err(Error::NonFiniteOutput { input, count }),
        }
    }

    /// The embedding output and every layer's output for one input, each `(T, hidden)`
    /// row-major: what `transformers` returns with `output_hidden_states=True`.
    pub fn hidden_states(&self, input: Input<'_>) -> Result<(Tokenized, Vec<Vec<f32>>)> {
        let tokenized = self.tokenize(&[input])?.remove(0);
        let mut batch = PackedBatch::new();
        batch.push(0, &tokenized.ids, &tokenized.type_ids)?;
        let mut states = Vec::with_capacity(self.model.layers.len() + 1);
        let mut workspace = Workspace::default();
        self.pool.install(|| {
            self.model
                .forward(&batch, &mut workspace, Rows::All, Some(&mut states))
        })?;
        Ok((tokenized, states))
    }

    /// The last hidden state `(T, H)` of every token of `tokenized`, in input order (for heads
    /// that read every token), in passes of at most `max_batch_tokens` tokens on one of the
    /// encoder's idle workspaces.
    pub(crate) fn last_hidden_state<T: Borrow<Tokenized>>(
        &self,
        tokenized: &[T],
    ) -> Result<Vec<f32>> {
        let order: Vec<usize> = (0..tokenized.len()).collect();
        let batches = self.packed_batches(tokenized, &order, usize::MAX)?;
        let h = self.model.config.hidden_size;
        let tokens = batches.iter().map(PackedBatch::total_tokens).sum::<usize>();
        let mut workspace = self.take_workspace();
        let hidden = self.install(|| {
            let mut all = Vec::with_capacity(tokens * h);
            for batch in &batches {
                let hidden = self.model.forward(batch, &mut workspace, Rows::All, None)?;
                all.extend_from_slice(hidden);
            }
            Ok(all)
        });
        self.put_workspace(workspace);
        hidden
    }
}

/// Embeddings: one vector per input. Calls that agree on their [`PassKey`] (the prompt tokens
/// pooling leaves out) share one pass; each call's truncation and normalisation are applied
/// to its own rows afterwards (text-embeddings-inference's per-request settings).
impl BatchTask for Encoder {
    type Settings = Encoding;
    type PassKey = PassKey;
    type Output = Vec<f32>;

    fn pass_key(encoding: &Encoding) -> PassKey {
        encoding.pass_key()
    }

    fn max_batch_tokens(&self) -> usize {
        self.max_batch_tokens
    }

    /// The merged call in passes bounded by tokens alone (the batcher bounded it already).
    fn run(&self, pass: &PassKey, inputs: &[Tokenized]) -> Result<Vec<Vec<f32>>> {
        let mut vectors = vec![Vec::new(); inputs.len()];
        let mut emit = |i: usize, vector: &[f32]| vectors[i] = vector.to_vec();
        self.run_passes(inputs, *pass, usize::MAX, &mut emit)?;
        Ok(vectors)
    }

    fn finish(&self, encoding: &Encoding, vectors: Vec<Vec<f32>>) -> Result<Vec<Vec<f32>>> {
        let (settings, dim) = (encoding.vector_settings(), self.dim_of(encoding));
        let mut rows = Vec::with_capacity(vectors.len());
        for (input, vector) in vectors.iter().enumerate() {
            let mut row = vec![0.0f32; dim];
            settings.apply(vector, &mut row);
            self.check_finite(input, &row)?;
            rows.push(row);
        }
        Ok(rows)
    }
}

/// Cuts a run of inputs of the given lengths into consecutive batches of at most
/// `max_inputs` inputs and `max_tokens` tokens; an input longer than `max_tokens` forms a
/// batch of its own.
fn batch_ranges(
    lengths: &[usize],
    max_inputs: usize,
    max_tokens: usize,
) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
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
        // No token limit, no input limit: one batch.
        let all: Vec<_> = batch_ranges(&lengths, usize::MAX, usize::MAX).collect();
        assert_eq!(all, vec![0..8]);
        assert_eq!(batch_ranges(&[], 8, 10).count(), 0);
    }
}
