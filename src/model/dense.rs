//! A small dense layer computed in f64: sentence-transformers' `Dense` module after pooling,
//! and the task heads' layers (a cross-encoder's classifier, a reader's `qa_outputs`). A few
//! rows per call, so its cost is nothing beside the encoder's, and f64 keeps it exact.

/// A `Dense` module: `y = activation(W x + b)`, `W (out, in)`.
#[derive(Debug)]
pub struct Dense {
    pub in_features: usize,
    pub out_features: usize,
    pub weight: Vec<f32>,
    pub bias: Option<Vec<f32>>,
    pub activation: DenseActivation,
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
        for row in inp.chunks_exact(k).take(n) {
            for j in 0..m {
                let w = &self.weight[j * k..(j + 1) * k];
                let dot: f64 = row.iter().zip(w).map(|(&a, &b)| a as f64 * b as f64).sum();
                let x = dot + self.bias.as_ref().map_or(0.0, |b| b[j] as f64);
                out.push(self.activation.apply(x) as f32);
            }
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
