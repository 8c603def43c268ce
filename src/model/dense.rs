//! A small dense layer computed in f64: sentence-transformers' `Dense` module after pooling,
//! and the task heads' layers (a cross-encoder's classifier, a reader's `qa_outputs`). A few
//! rows per call, so its cost is nothing beside the encoder's, and f64 keeps it exact.

/// A `Dense` module: `y = activation(W x + b)`, `W (out, in)`, then a LayerNorm if it has
/// one (ModernBERT's classification head: `norm(act(dense(x)))`).
#[derive(Debug)]
pub struct Dense {
    pub in_features: usize,
    pub out_features: usize,
    pub weight: Vec<f32>,
    pub bias: Option<Vec<f32>>,
    pub activation: DenseActivation,
    pub norm: Option<HeadNorm>,
}

/// A head's LayerNorm over each output row: `weight` (and `bias`, if any) of `out_features`.
#[derive(Debug)]
pub struct HeadNorm {
    pub weight: Vec<f32>,
    pub bias: Option<Vec<f32>>,
    pub eps: f64,
}

impl HeadNorm {
    /// LayerNorm of one row, in f64 (biased variance, as PyTorch).
    fn apply(&self, row: &mut [f64]) {
        let n = row.len() as f64;
        let mean = row.iter().sum::<f64>() / n;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let inv_std = 1.0 / (var + self.eps).sqrt();
        for (j, v) in row.iter_mut().enumerate() {
            let beta = self.bias.as_ref().map_or(0.0, |b| b[j] as f64);
            *v = (*v - mean) * inv_std * self.weight[j] as f64 + beta;
        }
    }
}

/// The `activation_function` of a `Dense` module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenseActivation {
    Identity,
    Tanh,
    Relu,
    Sigmoid,
    Gelu,
}

impl Dense {
    /// `out (n, out_features) = activation(inp (n, in_features) · Wᵀ + b)`, in f64 then
    /// rounded (a few rows per call: its cost is nothing beside the encoder's).
    pub fn forward(&self, inp: &[f32], n: usize) -> Vec<f32> {
        let (k, m) = (self.in_features, self.out_features);
        let mut out = Vec::with_capacity(n * m);
        let mut values = vec![0.0f64; m];
        for row in inp.chunks_exact(k).take(n) {
            for (j, value) in values.iter_mut().enumerate() {
                let w = &self.weight[j * k..(j + 1) * k];
                let dot: f64 = row.iter().zip(w).map(|(&a, &b)| a as f64 * b as f64).sum();
                let x = dot + self.bias.as_ref().map_or(0.0, |b| b[j] as f64);
                *value = self.activation.apply(x);
            }
            if let Some(norm) = &self.norm {
                norm.apply(&mut values);
            }
            out.extend(values.iter().map(|&v| v as f32));
        }
        out
    }
}

impl DenseActivation {
    fn apply(self, x: f64) -> f64 {
        match self {
            DenseActivation::Identity => x,
            DenseActivation::Tanh => x.tanh(),
            DenseActivation::Relu => x.max(0.0),
            DenseActivation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            DenseActivation::Gelu => {
                let erf = densa_kernels::math::erf((x / std::f64::consts::SQRT_2) as f32);
                0.5 * x * (1.0 + erf as f64)
            }
        }
    }

    /// The activation a sentence-transformers config names (`torch.nn.Tanh`, …).
    pub fn from_name(name: &str) -> Option<Self> {
        // "torch.nn.modules.activation.Tanh", "torch.nn.Tanh", "Tanh", ...
        match name.rsplit('.').next().unwrap_or(name) {
            "Identity" => Some(DenseActivation::Identity),
            "Tanh" => Some(DenseActivation::Tanh),
            "ReLU" => Some(DenseActivation::Relu),
            "Sigmoid" => Some(DenseActivation::Sigmoid),
            "GELU" => Some(DenseActivation::Gelu),
            _ => None,
        }
    }
}
