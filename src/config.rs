//! `config.json`: the architecture of a BERT-family checkpoint (BERT, DPR, RoBERTa / XLM-R /
//! CamemBERT, DistilBERT, ModernBERT / mmBERT). What differs between them is data here (the
//! position offset, token types, sinusoidal or rotary positions, where the LayerNorms sit, the
//! gated feed-forward, biases, attention windows) and in the loader's tensor names, not a
//! second forward pass.

mod modernbert;

use crate::error::{Error, Result};
use serde::Deserialize;
use std::path::Path;

/// The activation of the feed-forward layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`: the exact erf form.
    GeluErf,
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
}

/// The family of checkpoint, which decides the tensor names and the default pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelType {
    Bert,
    Dpr,
    /// `roberta`, `xlm-roberta`, `camembert`: BERT's layers; positions start at
    /// `pad_token_id + 1`, one token type.
    Roberta,
    /// `distilbert`: `transformer.layer.N` with its own names, no token types.
    DistilBert,
    /// `modernbert` (ModernBERT, mmBERT): pre-norm layers, rotary positions, GeGLU, no biases,
    /// global and sliding-window layers alternating.
    ModernBert,
}

/// Where a layer's LayerNorms sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormPlacement {
    /// After each sub-layer's residual add (BERT): the residual stream is normalised,
    /// `x = LayerNorm(x + sublayer(x))`.
    Post,
    /// Before each sub-layer (ModernBERT): the residual stream is the raw sum,
    /// `x = x + sublayer(LayerNorm(x))`, and a final LayerNorm closes the encoder.
    Pre,
}

/// Rotary position embeddings' bases (`rope_theta`) of the global and the sliding-window
/// layers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RotaryBases {
    pub global: f32,
    pub local: f32,
}

impl ModelType {
    /// The name `densa inspect` prints.
    pub fn name(self) -> &'static str {
        match self {
            ModelType::Bert => "BERT",
            ModelType::Dpr => "DPR (BERT)",
            ModelType::Roberta => "RoBERTa / XLM-RoBERTa",
            ModelType::DistilBert => "DistilBERT",
            ModelType::ModernBert => "ModernBERT / mmBERT",
        }
    }
}

/// The parts of `config.json` that describe the network.
#[derive(Debug, Clone, PartialEq)]
pub struct BertConfig {
    pub model_type: ModelType,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f32,
    pub hidden_act: Activation,
    /// DPR only: the size of `encode_proj`, 0 when the encoder has no projection.
    pub projection_dim: usize,
    /// `pad_token_id` (RoBERTa's positions start after it).
    pub pad_token_id: usize,
    /// The position id of every sequence's first token: 0, or `pad_token_id + 1` for RoBERTa
    /// and XLM-R (so `max_position_embeddings` 514 holds 512 usable positions).
    pub position_offset: usize,
    /// DistilBERT's `sinusoidal_pos_embds`: fixed sine/cosine position embeddings (computed
    /// when a checkpoint does not store them).
    pub sinusoidal_positions: bool,
    /// Where the LayerNorms sit (post-norm BERT, pre-norm ModernBERT).
    pub norm_placement: NormPlacement,
    /// Rotary positions instead of a position table (ModernBERT).
    pub rotary: Option<RotaryBases>,
    /// Each layer's attention: `None` global, `Some(w)` within `w` positions of each query
    /// (ModernBERT's sliding layers: `w = local_attention / 2`). Empty: every layer global.
    pub attention_windows: Vec<Option<usize>>,
    /// Whether Q/K/V and the attention output have biases (`attention_bias`).
    pub attention_bias: bool,
    /// Whether the feed-forward's linear layers have biases (`mlp_bias`).
    pub mlp_bias: bool,
    /// Whether the LayerNorms have biases (`norm_bias`).
    pub norm_bias: bool,
    /// A gated feed-forward (ModernBERT's GeGLU): the intermediate layer gives `2F` values,
    /// `GELU(first half) · second half`.
    pub gated_mlp: bool,
}

#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    intermediate_size: Option<usize>,
    max_position_embeddings: Option<usize>,
    type_vocab_size: Option<usize>,
    layer_norm_eps: Option<f64>,
    hidden_act: Option<String>,
    position_embedding_type: Option<String>,
    projection_dim: Option<usize>,
    pad_token_id: Option<usize>,
    // DistilBERT's names for the same things.
    dim: Option<usize>,
    n_layers: Option<usize>,
    n_heads: Option<usize>,
    hidden_dim: Option<usize>,
    activation: Option<String>,
    sinusoidal_pos_embds: Option<bool>,
    // ModernBERT's.
    hidden_activation: Option<String>,
    norm_eps: Option<f64>,
    norm_bias: Option<bool>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    layer_types: Option<Vec<String>>,
    global_attn_every_n_layers: Option<usize>,
    local_attention: Option<usize>,
    global_rope_theta: Option<f64>,
    local_rope_theta: Option<f64>,
    rope_parameters: Option<serde_json::Value>,
    rope_scaling: Option<serde_json::Value>,
}

/// Upper bounds that no real BERT reaches; they turn a corrupt config into an error instead
/// of a multi-terabyte allocation.
const MAX_DIM: usize = 1 << 16;
const MAX_LAYERS: usize = 256;
const MAX_VOCAB: usize = 1 << 22;
const MAX_POSITIONS: usize = 1 << 16;

/// `value` if present and in `1..=max`, else an error naming the field.
fn need(value: Option<usize>, name: &str, max: usize) -> std::result::Result<usize, String> {
    let v = value.ok_or_else(|| format!("missing field {name}"))?;
    if v == 0 || v > max {
        return Err(format!("{name} = {v} is out of range (1..={max})"));
    }
    Ok(v)
}

impl RawConfig {
    /// The fields of a `config.json` text; a field of the wrong type is named.
    fn parse(text: &str) -> std::result::Result<Self, String> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not a valid config: {e}"))?;
        let fields = value
            .as_object()
            .ok_or("not a valid config: expected a JSON object")?;
        serde_json::from_value(value.clone()).map_err(|e| {
            // Name the offending field: every field of RawConfig is optional, so the one
            // that fails on its own is the culprit.
            let culprit = fields.iter().find(|(name, v)| {
                let alone = serde_json::json!({ name.as_str(): v });
                serde_json::from_value::<RawConfig>(alone).is_err()
            });
            match culprit {
                Some((name, v)) => format!("not a valid config: field {name} = {v}: {e}"),
                None => format!("not a valid config: {e}"),
            }
        })
    }

    /// DistilBERT spells the shape its own way (and has no token types).
    fn use_distilbert_names(&mut self) {
        self.hidden_size = self.dim;
        self.num_hidden_layers = self.n_layers;
        self.num_attention_heads = self.n_heads;
        self.intermediate_size = self.hidden_dim;
        self.hidden_act = self.activation.clone();
        self.layer_norm_eps = Some(1e-12);
    }

    /// ModernBERT spells the shape its own way (and has no token types).
    fn use_modernbert_names(&mut self) {
        self.hidden_act = self.hidden_activation.clone();
        self.layer_norm_eps = Some(self.norm_eps.unwrap_or(1e-5));
        self.type_vocab_size = None;
        self.pad_token_id = Some(self.pad_token_id.unwrap_or(50283));
    }

    fn hidden_act(&self) -> std::result::Result<Activation, String> {
        match self.hidden_act.as_deref().unwrap_or("gelu") {
            "gelu" => Ok(Activation::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" => Ok(Activation::GeluTanh),
            other => Err(format!(
                "hidden_act {other:?} is not supported (gelu, gelu_new, gelu_pytorch_tanh)"
            )),
        }
    }

    fn layer_norm_eps(&self) -> std::result::Result<f32, String> {
        let eps = self.layer_norm_eps.unwrap_or(1e-12);
        if !(eps.is_finite() && eps > 0.0) {
            return Err(format!("layer_norm_eps = {eps} must be a positive number"));
        }
        Ok(eps as f32)
    }

    /// `(pad_token_id, position_offset, max_position_embeddings)`: RoBERTa's positions start
    /// after its pad token; only absolute positions are supported.
    fn positions(
        &self,
        model_type: ModelType,
    ) -> std::result::Result<(usize, usize, usize), String> {
        // ModernBERT has no position table (transformers ignores the key for it).
        let position_embedding_type = match model_type {
            ModelType::ModernBert => None,
            _ => self.position_embedding_type.as_deref(),
        };
        match position_embedding_type.unwrap_or("absolute") {
            "absolute" => {}
            other => {
                return Err(format!(
                    "position_embedding_type {other:?} is not supported (absolute only)"
                ))
            }
        }
        let pad_token_id = self.pad_token_id.unwrap_or(match model_type {
            ModelType::Roberta => 1,
            _ => 0,
        });
        let position_offset = match model_type {
            ModelType::Roberta => pad_token_id + 1,
            _ => 0,
        };
        let max = need(
            self.max_position_embeddings,
            "max_position_embeddings",
            MAX_POSITIONS,
        )?;
        if position_offset >= max {
            return Err(format!("pad_token_id {pad_token_id} leaves no position: RoBERTa's positions start at pad_token_id + 1 and max_position_embeddings is {max}"));
        }
        Ok((pad_token_id, position_offset, max))
    }
}

impl BertConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::reading(path, e))?;
        Self::from_json(&text).map_err(|message| Error::Config {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses and validates the text of a `config.json`.
    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        let mut raw = RawConfig::parse(text)?;
        let model_type = match raw.model_type.as_deref() {
            Some("bert") | None => ModelType::Bert,
            Some("dpr") => ModelType::Dpr,
            Some("roberta" | "xlm-roberta" | "camembert") => ModelType::Roberta,
            Some("distilbert") => ModelType::DistilBert,
            Some("modernbert") => ModelType::ModernBert,
            Some(other) => {
                return Err(format!(
                    "model_type {other:?} is not supported (bert, dpr, roberta, xlm-roberta, camembert, distilbert, modernbert)"
                ))
            }
        };
        match model_type {
            ModelType::DistilBert => raw.use_distilbert_names(),
            ModelType::ModernBert => raw.use_modernbert_names(),
            _ => {}
        }
        let hidden_size = need(raw.hidden_size, "hidden_size", MAX_DIM)?;
        let num_attention_heads = need(raw.num_attention_heads, "num_attention_heads", MAX_DIM)?;
        if hidden_size % num_attention_heads != 0 {
            return Err(format!("hidden_size {hidden_size} is not divisible by num_attention_heads {num_attention_heads}"));
        }
        let (pad_token_id, position_offset, max_position_embeddings) = raw.positions(model_type)?;
        let type_vocab_size = match model_type {
            ModelType::DistilBert | ModelType::ModernBert => 0,
            _ => need(
                Some(raw.type_vocab_size.unwrap_or(2)),
                "type_vocab_size",
                1024,
            )?,
        };
        let projection_dim = raw.projection_dim.unwrap_or(0);
        if projection_dim > MAX_DIM {
            return Err(format!("projection_dim = {projection_dim} is out of range"));
        }
        let num_hidden_layers = need(raw.num_hidden_layers, "num_hidden_layers", MAX_LAYERS)?;
        let modern = match model_type {
            ModelType::ModernBert => Some(modernbert::layers(&raw, num_hidden_layers)?),
            _ => None,
        };
        let head_dim = hidden_size / num_attention_heads;
        if modern.is_some() && !head_dim.is_multiple_of(2) {
            return Err(format!("rotary positions need an even head width; hidden_size {hidden_size} / num_attention_heads {num_attention_heads} is {head_dim}"));
        }
        if let (Some(_), Some(activation)) = (&modern, &raw.hidden_activation) {
            if activation != "gelu" {
                return Err(format!("hidden_activation {activation:?} is not supported for ModernBERT's gated feed-forward (gelu)"));
            }
        }
        Ok(BertConfig {
            model_type,
            vocab_size: need(raw.vocab_size, "vocab_size", MAX_VOCAB)?,
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            intermediate_size: need(raw.intermediate_size, "intermediate_size", MAX_DIM * 4)?,
            max_position_embeddings,
            type_vocab_size,
            layer_norm_eps: raw.layer_norm_eps()?,
            hidden_act: raw.hidden_act()?,
            projection_dim,
            pad_token_id,
            position_offset,
            sinusoidal_positions: model_type == ModelType::DistilBert
                && raw.sinusoidal_pos_embds.unwrap_or(false),
            norm_placement: match modern {
                Some(_) => NormPlacement::Pre,
                None => NormPlacement::Post,
            },
            rotary: modern.as_ref().map(|m| m.rotary),
            attention_windows: modern.map(|m| m.windows).unwrap_or_default(),
            // BERT's layers all have biases; ModernBERT's config says (none, as published).
            attention_bias: model_type != ModelType::ModernBert || raw.attention_bias == Some(true),
            mlp_bias: model_type != ModelType::ModernBert || raw.mlp_bias == Some(true),
            norm_bias: model_type != ModelType::ModernBert || raw.norm_bias == Some(true),
            gated_mlp: model_type == ModelType::ModernBert,
        })
    }

    /// The default truncation length (when no sentence-transformers `max_seq_length` says
    /// otherwise): BERT-family models' 512 positions at most, ModernBERT's every rotary position
    /// (8192 as published: it was trained on them, and its local layers keep long inputs cheap).
    pub fn default_max_length(&self) -> usize {
        match self.rotary {
            Some(_) => self.max_positions(),
            None => self.max_positions().min(512),
        }
    }

    /// Layer `i`'s attention window (`None`: global).
    pub fn attention_window(&self, i: usize) -> Option<usize> {
        self.attention_windows.get(i).copied().flatten()
    }

    /// The rotary base of layer `i` (`None`: the model has absolute positions).
    pub fn rotary_theta(&self, i: usize) -> Option<f32> {
        let bases = self.rotary?;
        Some(match self.attention_window(i) {
            Some(_) => bases.local,
            None => bases.global,
        })
    }

    /// The width of the feed-forward's first linear layer: `2F` when gated, else `F`.
    pub fn intermediate_width(&self) -> usize {
        match self.gated_mlp {
            true => 2 * self.intermediate_size,
            false => self.intermediate_size,
        }
    }

    /// The longest sequence the position embeddings hold (`max_position_embeddings` less
    /// RoBERTa's offset).
    pub fn max_positions(&self) -> usize {
        self.max_position_embeddings - self.position_offset
    }

    /// Whether the model reads token types (DistilBERT has none; RoBERTa's one type is
    /// always 0, whatever a tokenizer's template says).
    pub fn uses_token_types(&self) -> bool {
        self.type_vocab_size > 1
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// BERT-base with BETO's vocabulary: the shape of the Spanish DPR encoders.
    pub fn bert_base(vocab_size: usize) -> Self {
        BertConfig {
            model_type: ModelType::Bert,
            vocab_size,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_act: Activation::GeluErf,
            projection_dim: 0,
            pad_token_id: 0,
            position_offset: 0,
            sinusoidal_positions: false,
            norm_placement: NormPlacement::Post,
            rotary: None,
            attention_windows: Vec::new(),
            attention_bias: true,
            mlp_bias: true,
            norm_bias: true,
            gated_mlp: false,
        }
    }

    /// ModernBERT-base's shape (answerdotai/ModernBERT-base's config.json): 22 layers of 768,
    /// GeGLU 1152, every third layer global, the others within 64 positions, 8192 positions.
    pub fn modernbert_base(vocab_size: usize) -> Self {
        let text = serde_json::json!({
            "model_type": "modernbert", "vocab_size": vocab_size, "hidden_size": 768,
            "num_hidden_layers": 22, "num_attention_heads": 12, "intermediate_size": 1152,
            "max_position_embeddings": 8192, "global_attn_every_n_layers": 3,
            "local_attention": 128, "global_rope_theta": 160000.0, "local_rope_theta": 10000.0,
            "norm_eps": 1e-5, "pad_token_id": 50283,
        });
        Self::from_json(&text.to_string()).expect("ModernBERT-base's config is valid")
    }
}
