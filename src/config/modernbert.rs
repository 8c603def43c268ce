//! ModernBERT's layer plan from its `config.json`: which layers attend globally and which
//! within a sliding window, and the rotary bases of each kind. Two spellings are in use:
//! transformers 5's `layer_types` and `rope_parameters`, and the published checkpoints'
//! `global_attn_every_n_layers`, `global_rope_theta` and `local_rope_theta`.

use super::{RawConfig, RotaryBases};
use serde_json::Value;

/// The defaults of `ModernBertConfig`.
const GLOBAL_ATTENTION_EVERY: usize = 3;
const LOCAL_ATTENTION: usize = 128;
const GLOBAL_THETA: f64 = 160_000.0;
const LOCAL_THETA: f64 = 10_000.0;

/// Each layer's window and the rotary bases.
pub(super) struct LayerPlan {
    pub windows: Vec<Option<usize>>,
    pub rotary: RotaryBases,
}

/// The plan of a ModernBERT of `layers` layers.
pub(super) fn layers(raw: &RawConfig, layers: usize) -> Result<LayerPlan, String> {
    // `local_attention` is the whole window; a query sees `local_attention / 2` positions on
    // each side (transformers' `sliding_window`, its mask `|i - j| <= sliding_window`).
    let local_attention = raw.local_attention.unwrap_or(LOCAL_ATTENTION);
    if local_attention > 1 << 20 {
        return Err(format!(
            "local_attention = {local_attention} is out of range"
        ));
    }
    let half_window = local_attention / 2;
    let global = match &raw.layer_types {
        Some(types) => {
            if types.len() != layers {
                return Err(format!(
                    "layer_types names {} layers, num_hidden_layers is {layers}",
                    types.len()
                ));
            }
            types
                .iter()
                .map(|t| match t.as_str() {
                    "full_attention" => Ok(true),
                    "sliding_attention" => Ok(false),
                    other => Err(format!(
                        "layer_types: {other:?} is not a layer type (full_attention, sliding_attention)"
                    )),
                })
                .collect::<Result<Vec<bool>, String>>()?
        }
        None => {
            let every = raw
                .global_attn_every_n_layers
                .unwrap_or(GLOBAL_ATTENTION_EVERY);
            if every == 0 {
                return Err("global_attn_every_n_layers must be at least 1".into());
            }
            (0..layers).map(|i| i % every == 0).collect()
        }
    };
    let windows = global
        .into_iter()
        .map(|g| (!g).then_some(half_window))
        .collect();
    Ok(LayerPlan {
        windows,
        rotary: rotary_bases(raw)?,
    })
}

/// `rope_parameters[full_attention | sliding_attention].rope_theta`, else `global_rope_theta` /
/// `local_rope_theta`, else ModernBERT's defaults; only the default rotation (no scaling) is
/// supported. As transformers 5 reads it, a `rope_parameters` without the per-kind entries
/// (`{"rope_theta": …}` alone) sets neither base.
fn rotary_bases(raw: &RawConfig) -> Result<RotaryBases, String> {
    if raw.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
        return Err("rope_scaling is not supported (the default rotary positions only)".into());
    }
    let from_parameters = |kind: &str| -> Result<Option<f64>, String> {
        let Some(parameters) = raw.rope_parameters.as_ref().filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let Some(set) = parameters.get(kind) else {
            return Ok(None);
        };
        match set.get("rope_type").and_then(Value::as_str) {
            None | Some("default") => {}
            Some(other) => {
                return Err(format!(
                    "rope_parameters.{kind}.rope_type {other:?} is not supported (default)"
                ))
            }
        }
        match set.get("rope_theta") {
            None => Ok(None),
            Some(theta) => theta.as_f64().map(Some).ok_or_else(|| {
                format!("rope_parameters.{kind}.rope_theta = {theta} is not a number")
            }),
        }
    };
    let global = from_parameters("full_attention")?
        .or(raw.global_rope_theta)
        .unwrap_or(GLOBAL_THETA);
    let local = from_parameters("sliding_attention")?
        .or(raw.local_rope_theta)
        .unwrap_or(LOCAL_THETA);
    for (name, theta) in [("global", global), ("local", local)] {
        if !(theta.is_finite() && theta > 1.0) {
            return Err(format!(
                "the {name} rope_theta = {theta} must be a number above 1"
            ));
        }
    }
    Ok(RotaryBases {
        global: global as f32,
        local: local as f32,
    })
}
