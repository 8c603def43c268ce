//! Where each architecture keeps its tensors: the prefixes of the trunk (tried in order) and
//! each layer's names relative to `{layer}.{N}.`. BERT, DPR and RoBERTa / XLM-R share BERT's;
//! DistilBERT calls the same layers `q_lin`, `sa_layer_norm`, `ffn.lin1`, …; ModernBERT stores
//! Q/K/V stacked (`attn.Wqkv`) and its LayerNorms before each sub-layer (`attn_norm`,
//! `mlp_norm`, `final_norm`).

use crate::checkpoint::Checkpoint;
use crate::config::{BertConfig, ModelType, NormPlacement};
use crate::error::{Error, Result};

/// One architecture's tensor names.
#[derive(Debug, Clone, Copy)]
pub struct TensorNames {
    pub prefixes: &'static [&'static str],
    /// The token embedding table (without `.weight`).
    pub word_embeddings: &'static str,
    /// The embeddings' LayerNorm.
    pub embeddings_layer_norm: &'static str,
    pub layer: &'static str,
    /// Q, K and V: three layers, or one stacked (ModernBERT's `attn.Wqkv`, `(3H, H)`).
    pub query_key_value: &'static [&'static str],
    pub attention_output: &'static str,
    /// Post-norm: the attention block's LayerNorm; pre-norm: the layer's `mlp_norm`, through
    /// which the feed-forward reads the stream.
    pub attention_layer_norm: &'static str,
    pub intermediate: &'static str,
    pub output: &'static str,
    /// Post-norm: the feed-forward block's LayerNorm; pre-norm: the *next* layer's
    /// `attn_norm` (the last layer's: [`TensorNames::final_norm`]).
    pub output_layer_norm: &'static str,
    /// Pre-norm: the LayerNorm after the last layer.
    pub final_norm: Option<&'static str>,
}

const BERT_LAYER: TensorNames = TensorNames {
    prefixes: &[
        "",
        "bert.",
        "ctx_encoder.bert_model.",
        "question_encoder.bert_model.",
    ],
    word_embeddings: "embeddings.word_embeddings",
    embeddings_layer_norm: "embeddings.LayerNorm",
    layer: "encoder.layer",
    query_key_value: &[
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
    ],
    attention_output: "attention.output.dense",
    attention_layer_norm: "attention.output.LayerNorm",
    intermediate: "intermediate.dense",
    output: "output.dense",
    output_layer_norm: "output.LayerNorm",
    final_norm: None,
};

/// A layer's linear layers as the model runs them, each `(name, out_features, in_features)`:
/// Q/K/V (stacked into one), the attention output, the intermediate, the output.
pub type LinearGroups = [Vec<(String, usize, usize)>; 4];

impl TensorNames {
    /// The names `model_type` uses.
    pub fn of(model_type: ModelType) -> TensorNames {
        match model_type {
            ModelType::Bert | ModelType::Dpr => BERT_LAYER,
            ModelType::Roberta => TensorNames {
                prefixes: &["", "roberta."],
                ..BERT_LAYER
            },
            ModelType::DistilBert => TensorNames {
                prefixes: &["", "distilbert."],
                layer: "transformer.layer",
                query_key_value: &["attention.q_lin", "attention.k_lin", "attention.v_lin"],
                attention_output: "attention.out_lin",
                attention_layer_norm: "sa_layer_norm",
                intermediate: "ffn.lin1",
                output: "ffn.lin2",
                output_layer_norm: "output_layer_norm",
                ..BERT_LAYER
            },
            // `ModernBertModel` at the root, or under `model.` (`ModernBertForMaskedLM`, the
            // published checkpoints, and `…ForSequenceClassification`).
            ModelType::ModernBert => TensorNames {
                prefixes: &["", "model."],
                word_embeddings: "embeddings.tok_embeddings",
                embeddings_layer_norm: "embeddings.norm",
                layer: "layers",
                query_key_value: &["attn.Wqkv"],
                attention_output: "attn.Wo",
                attention_layer_norm: "mlp_norm",
                intermediate: "mlp.Wi",
                output: "mlp.Wo",
                output_layer_norm: "attn_norm",
                final_norm: Some("final_norm"),
            },
        }
    }

    /// Layer `i`'s linear layers, grouped by input: `[[Q, K, V] or [QKV], [attention output],
    /// [intermediate], [output]]`.
    pub fn linear_groups(&self, i: usize, config: &BertConfig) -> LinearGroups {
        let (h, f) = (config.hidden_size, config.intermediate_size);
        let l = |name: &str| format!("{}.{i}.{name}", self.layer);
        let qkv_rows = 3 * h / self.query_key_value.len();
        [
            self.query_key_value
                .iter()
                .map(|name| (l(name), qkv_rows, h))
                .collect(),
            vec![(l(self.attention_output), h, h)],
            vec![(l(self.intermediate), config.intermediate_width(), h)],
            vec![(l(self.output), h, f)],
        ]
    }

    /// Layer `i`'s two LayerNorms as the forward pass applies them (see the fields'
    /// comments): the attention block's and the feed-forward block's.
    pub fn layer_norms(&self, i: usize, num_layers: usize) -> [String; 2] {
        let l = |i: usize, name: &str| format!("{}.{i}.{name}", self.layer);
        let output = match self.final_norm {
            Some(last) if i + 1 == num_layers => last.to_string(),
            Some(_) => l(i + 1, self.output_layer_norm),
            None => l(i, self.output_layer_norm),
        };
        [l(i, self.attention_layer_norm), output]
    }

    /// The prefix under which `checkpoint` stores this trunk.
    pub fn find_prefix(&self, checkpoint: &Checkpoint) -> Result<&'static str> {
        let embeddings = format!("{}.weight", self.word_embeddings);
        self.prefixes
            .iter()
            .copied()
            .find(|p| checkpoint.contains(&format!("{p}{embeddings}")))
            .ok_or_else(|| Error::MissingTensor {
                name: embeddings,
                prefixes: self
                    .prefixes
                    .iter()
                    .map(|p| format!("{p:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// The name of several linear layers of the same input stacked into one, as `densa quantize`
/// stores their packed weight: the first's parent and every last component, joined by `_`
/// (`….attention.self.query`, `key`, `value` → `….attention.self.query_key_value`). One name
/// is itself.
pub(crate) fn fused_name(names: &[String]) -> String {
    let last = |n: &str| n.rsplit_once('.').map_or(n, |(_, last)| last).to_string();
    match names {
        [one] => one.clone(),
        _ => {
            let parent = names[0].rsplit_once('.').map_or("", |(parent, _)| parent);
            let joined: Vec<String> = names.iter().map(|n| last(n)).collect();
            match parent {
                "" => joined.join("_"),
                parent => format!("{parent}.{joined}", joined = joined.join("_")),
            }
        }
    }
}

/// Every tensor a trunk of this configuration needs (no pooler, no projection), with its
/// name relative to the trunk prefix and its PyTorch shape, in `named_parameters()` order.
pub fn parameter_shapes(config: &BertConfig) -> Vec<(String, Vec<usize>)> {
    let h = config.hidden_size;
    let names = TensorNames::of(config.model_type);
    let mut shapes: Vec<(String, Vec<usize>)> = vec![(
        format!("{}.weight", names.word_embeddings),
        vec![config.vocab_size, h],
    )];
    if config.rotary.is_none() {
        shapes.push((
            "embeddings.position_embeddings.weight".into(),
            vec![config.max_position_embeddings, h],
        ));
    }
    if config.type_vocab_size > 0 {
        shapes.push((
            "embeddings.token_type_embeddings.weight".into(),
            vec![config.type_vocab_size, h],
        ));
    }
    let norm = |name: &str| {
        let mut v = vec![(format!("{name}.weight"), vec![h])];
        if config.norm_bias {
            v.push((format!("{name}.bias"), vec![h]));
        }
        v
    };
    let linear = |(name, out, inp): &(String, usize, usize), bias: bool| {
        let mut v = vec![(format!("{name}.weight"), vec![*out, inp.to_owned()])];
        if bias {
            v.push((format!("{name}.bias"), vec![*out]));
        }
        v
    };
    shapes.extend(norm(names.embeddings_layer_norm));
    let n = config.num_hidden_layers;
    for i in 0..n {
        let [qkv, attention_output, intermediate, output] = names.linear_groups(i, config);
        let [attention_norm, output_norm] = names.layer_norms(i, n);
        let (attention_bias, mlp_bias) = (config.attention_bias, config.mlp_bias);
        // named_parameters() order. BERT: Q, K, V, attention output, its LayerNorm, FFN,
        // LayerNorm. ModernBERT: attn_norm (not in layer 0), Wqkv, Wo, mlp_norm, Wi, Wo.
        if config.norm_placement == NormPlacement::Pre && i > 0 {
            shapes.extend(norm(&format!(
                "{}.{i}.{}",
                names.layer, names.output_layer_norm
            )));
        }
        qkv.iter()
            .chain(&attention_output)
            .for_each(|l| shapes.extend(linear(l, attention_bias)));
        shapes.extend(norm(&attention_norm));
        shapes.extend(linear(&intermediate[0], mlp_bias));
        shapes.extend(linear(&output[0], mlp_bias));
        if config.norm_placement == NormPlacement::Post {
            shapes.extend(norm(&output_norm));
        }
    }
    if let Some(last) = names.final_norm {
        shapes.extend(norm(last));
    }
    shapes
}
