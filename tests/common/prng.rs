//! The Rust twin of tools/prng.py: counter-based splitmix64 weights (see docs/FIDELITY.md).

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

pub fn fnv1a64(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01B3)
    })
}

/// `count` values `f32(center + scale * (2u - 1))`, u uniform in [0, 1) from splitmix64.
pub fn uniform(name: &str, count: usize, center: f64, scale: f64) -> Vec<f32> {
    let seed = fnv1a64(name);
    (1..=count as u64)
        .map(|i| {
            let mut z = seed.wrapping_add(i.wrapping_mul(GAMMA));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let u = (z >> 40) as f64 / (1u64 << 24) as f64;
            (center + scale * (2.0 * u - 1.0)) as f32
        })
        .collect()
}

/// `(center, scale)` by the tensor's role, as tools/prng.py.
pub fn center_scale(name: &str) -> (f64, f64) {
    // BERT's `LayerNorm.weight`; ModernBERT's `norm`, `attn_norm`, `mlp_norm`, `final_norm`.
    if name.ends_with("LayerNorm.weight") || name.ends_with("norm.weight") {
        (1.0, 0.2)
    } else if name.ends_with("LayerNorm.bias") {
        (0.0, 0.1)
    } else {
        (0.0, 0.05)
    }
}
