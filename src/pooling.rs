//! Pooling: from the last hidden state `(T, H)` of a packed batch to one vector per sequence.

use crate::error::{Error, Result};
use crate::model::{BertModel, Linear, LinearInput, PackedBatch, Rows};
use densa_kernels as k;

/// How a sequence's token vectors become its embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooling {
    /// What the checkpoint implies: DPR → [`Pooling::Dpr`]; a sentence-transformers folder →
    /// its `1_Pooling` config; plain BERT with `pooler.dense` → [`Pooling::Pooler`]; else CLS.
    #[default]
    Auto,
    /// The last hidden state of the first token (`[CLS]`).
    Cls,
    /// The mean of the last hidden states over the sequence's real tokens.
    Mean,
    /// The elementwise maximum over real tokens (sentence-transformers' `max_tokens`).
    Max,
    /// The sum over real tokens divided by √length (sentence-transformers' `mean_sqrt_len_tokens`).
    MeanSqrtLen,
    /// The mean weighted by position, 1 for the first token (sentence-transformers' `weightedmean`).
    WeightedMean,
    /// The last token's vector (sentence-transformers' `lasttoken`).
    LastToken,
    /// BERT's pooler: `tanh(pooler.dense([CLS]))`.
    Pooler,
    /// DPR's pooled output: `[CLS]`, then `encode_proj` when the encoder has one.
    Dpr,
}

impl Pooling {
    /// Every mode, in the order the CLI lists them.
    pub const ALL: [Pooling; 9] = [
        Pooling::Auto,
        Pooling::Cls,
        Pooling::Mean,
        Pooling::Max,
        Pooling::MeanSqrtLen,
        Pooling::WeightedMean,
        Pooling::LastToken,
        Pooling::Pooler,
        Pooling::Dpr,
    ];

    /// The mode a name (as [`Pooling::name`] spells it) stands for.
    pub fn from_name(name: &str) -> Option<Pooling> {
        Pooling::ALL.into_iter().find(|p| p.name() == name)
    }

    /// A pooling by name as a user types it (`-` for `_` too, as in `mean-sqrt-len`); an
    /// unknown name is an error that lists the valid ones.
    pub fn parse(name: &str) -> Result<Pooling, String> {
        Pooling::from_name(&name.replace('-', "_")).ok_or_else(|| {
            let names: Vec<&str> = Pooling::ALL.iter().map(|p| p.name()).collect();
            format!("{name:?} is not a pooling: use one of {}", names.join(", "))
        })
    }

    /// Its name, as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Auto => "auto",
            Pooling::Cls => "cls",
            Pooling::Mean => "mean",
            Pooling::Max => "max",
            Pooling::MeanSqrtLen => "mean_sqrt_len",
            Pooling::WeightedMean => "weighted_mean",
            Pooling::LastToken => "last_token",
            Pooling::Pooler => "pooler",
            Pooling::Dpr => "dpr",
        }
    }

    /// The rows of the last hidden state this pooling reads: the first token's alone for
    /// `[CLS]`, the pooler and DPR, so the last layer can skip the others.
    pub fn output_rows(self) -> Rows {
        match self {
            Pooling::Cls | Pooling::Pooler | Pooling::Dpr => Rows::FirstOfEachSequence,
            Pooling::Auto
            | Pooling::Mean
            | Pooling::Max
            | Pooling::MeanSqrtLen
            | Pooling::WeightedMean
            | Pooling::LastToken => Rows::All,
        }
    }

    /// The width of the pooled vector for `model`, or an error if `model` cannot pool this way.
    pub fn output_dim(self, model: &BertModel) -> Result<usize> {
        let h = model.config.hidden_size;
        match self {
            Pooling::Auto => Err(Error::InvalidInput(
                "pooling must be resolved before use".into(),
            )),
            Pooling::Pooler if model.pooler.is_none() => Err(Error::InvalidInput(
                "pooling pooler: this checkpoint has no pooler.dense weights".into(),
            )),
            Pooling::Dpr => Ok(model.projection.as_ref().map_or(h, |p| p.out_features)),
            _ => Ok(h),
        }
    }
}

/// Pools `hidden (T, H)` into `out (num_sequences, dim)`. The first `skip` tokens of every
/// sequence are left out of cls, mean, max, mean_sqrt_len and weighted_mean (a prompt's tokens
/// under sentence-transformers' `include_prompt: false`, which also moves cls to the first
/// token after them); a sequence no longer than `skip` pools as sentence-transformers' masked
/// sums do (zeros, or -inf for max).
pub fn pool(
    model: &BertModel,
    pooling: Pooling,
    hidden: &[f32],
    batch: &PackedBatch,
    skip: usize,
    out: &mut [f32],
) -> Result<()> {
    let h = model.config.hidden_size;
    let n = batch.num_sequences();
    let dim = pooling.output_dim(model)?;
    if out.len() != n * dim {
        return Err(Error::InvalidInput(format!(
            "pool: the output holds {} values, {n} sequences of dimension {dim} need {}",
            out.len(),
            n * dim
        )));
    }
    if hidden.len() < batch.total_tokens() * h {
        return Err(Error::InvalidInput(format!(
            "pool: the hidden state holds {} rows, the batch has {} tokens",
            hidden.len() / h.max(1),
            batch.total_tokens()
        )));
    }
    // cls: (n, H), the first token of every sequence (never empty: a packed batch's sequences
    // hold at least one token).
    let cls = || -> Vec<f32> {
        let first = |s: usize| &hidden[batch.range(s).start * h..][..h];
        (0..n).flat_map(|s| first(s).iter().copied()).collect()
    };
    // A head on [CLS]: f32 (loaded so at every precision), so the int8 scratch stays empty.
    let head = |dense: &Linear, out: &mut [f32]| {
        let (rows, mut unused) = (cls(), k::Int8Scratch::default());
        let input = LinearInput::Rows(&rows, &mut unused);
        dense.forward(out, input, n, k::Activation::None);
    };
    match (pooling, &model.pooler, &model.projection) {
        (Pooling::Cls, _, _) if skip == 0 => out.copy_from_slice(&cls()),
        (Pooling::Pooler, Some(dense), _) => {
            head(dense, out);
            k::tanh(out);
        }
        (Pooling::Dpr, _, Some(projection)) => head(projection, out),
        (Pooling::Dpr, _, None) => out.copy_from_slice(&cls()),
        (Pooling::Auto | Pooling::Pooler, _, _) => unreachable!("rejected by output_dim"),
        _ => {
            for (s, row) in out.chunks_exact_mut(dim).enumerate() {
                let tokens =
                    |range: std::ops::Range<usize>| range.map(|t| &hidden[t * h..(t + 1) * h]);
                let range = batch.range(s);
                let pooled = (range.start + skip).min(range.end)..range.end;
                pool_tokens(pooling, row, tokens(range.clone()), tokens(pooled), skip);
            }
        }
    }
    Ok(())
}

/// One sequence's vector from its token rows: `all` the sequence's, `pooled` those after the
/// `skip` prompt tokens.
fn pool_tokens<'h>(
    pooling: Pooling,
    row: &mut [f32],
    mut all: impl Iterator<Item = &'h [f32]> + Clone,
    pooled: impl Iterator<Item = &'h [f32]> + Clone,
    skip: usize,
) {
    match pooling {
        // Nothing after the prompt: the masked argmax picks position 0.
        Pooling::Cls => match pooled.clone().next().or_else(|| all.next()) {
            Some(token) => row.copy_from_slice(token),
            None => row.fill(0.0),
        },
        Pooling::LastToken => {
            if let Some(token) = all.last() {
                row.copy_from_slice(token);
            }
        }
        Pooling::Max => {
            row.fill(f32::NEG_INFINITY);
            for token in pooled {
                row.iter_mut().zip(token).for_each(|(m, &v)| *m = m.max(v));
            }
        }
        _ => {
            // weighted_mean weighs token i (from the sequence's start) by i + 1.
            let mut sum = vec![0.0f64; row.len()];
            let mut total = 0.0f64;
            for (i, token) in pooled.enumerate() {
                let w = match pooling {
                    Pooling::WeightedMean => (skip + i + 1) as f64,
                    _ => 1.0,
                };
                total += w;
                sum.iter_mut()
                    .zip(token)
                    .for_each(|(a, &v)| *a += w * v as f64);
            }
            // sentence-transformers clamps the denominator at 1e-9.
            let total = total.max(1e-9);
            let div = match pooling {
                Pooling::MeanSqrtLen => total.sqrt(),
                _ => total,
            };
            row.iter_mut()
                .zip(&sum)
                .for_each(|(o, &a)| *o = (a / div) as f32);
        }
    }
}

/// Divides `v` by its L2 norm (as `torch.nn.functional.normalize`, with its 1e-12 floor).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt()
        .max(1e-12);
    v.iter_mut().for_each(|x| *x = (*x as f64 / norm) as f32);
}
