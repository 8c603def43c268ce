//! Packed int8 weights as bytes: the panel layout written to a file once (`densa quantize`)
//! and used in place from the mapped file afterwards, so a model starts without repacking or
//! copying its weights.
//!
//! The layout is the one every int8 path reads (see the module above):
//!
//! ```text
//! panels (P, K_pad / 4, 16, 4) i8:  panels[p][g][j][t] = w_q[16·p + j, 4·g + t]
//! P = 2 · ceil(N / 32)   (an even count: the 512-bit kernels take two panels per tile)
//! K_pad = K rounded up to a multiple of 64; every value outside (N, K) is 0
//! ```
//!
//! A stored weight is checked where it is used: its length against `(N, K)`, every value
//! within ±63 (AVX2's `vpmaddubsw` pair sums are exact only there) and every padding value 0
//! (the kernels multiply the padding too). The per-channel sums the kernels need
//! (`Σ_k w_q[n, k]`) are computed in the same pass, so a file cannot lie about them.

use super::{padded_k, QuantizedWeight, K_GROUP, PANEL_WIDTH, WEIGHT_MAX};
use crate::memory::SharedBytes;
use rayon::prelude::*;

/// The packed values: built at load, or borrowed from a mapped file written in this layout.
pub(super) enum PanelData {
    Owned(Vec<i8>),
    Shared(SharedBytes),
}

impl PanelData {
    pub(super) fn as_i8(&self) -> &[i8] {
        match self {
            PanelData::Owned(values) => values,
            PanelData::Shared(bytes) => bytes.as_i8(),
        }
    }
}

/// `(panels, K_pad / 4, 16, 4)`: the shape of the packed weight of an `(n, k)` linear layer.
pub fn packed_shape(n: usize, k: usize) -> [usize; 4] {
    [
        n.div_ceil(2 * PANEL_WIDTH) * 2,
        padded_k(k) / K_GROUP,
        PANEL_WIDTH,
        K_GROUP,
    ]
}

/// Why stored panels cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PanelError {
    /// The bytes are not `(n, k)`'s packed size.
    Length { expected: usize, found: usize },
    /// A value outside ±63: `column`, `k` in the unpacked weight.
    OutOfRange { column: usize, k: usize, value: i8 },
    /// A padding value (outside `(n, k)`) that is not 0.
    Padding { column: usize, k: usize },
    /// Not one scale per output channel.
    Scales { expected: usize, found: usize },
}

impl std::fmt::Display for PanelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PanelError::Length { expected, found } => {
                write!(
                    f,
                    "{found} bytes, the panel layout of this shape has {expected}"
                )
            }
            PanelError::OutOfRange { column, k, value } => write!(
                f,
                "value {value} at output {column}, input {k} is outside ±{WEIGHT_MAX}"
            ),
            PanelError::Padding { column, k } => {
                write!(f, "padding at output {column}, input {k} is not 0")
            }
            PanelError::Scales { expected, found } => {
                write!(f, "{found} scales for {expected} output channels")
            }
        }
    }
}

impl std::error::Error for PanelError {}

impl QuantizedWeight {
    /// Uses `panels` (the packed layout of `w_q (n, k)`, e.g. mapped from a file) in place,
    /// with the per-channel `scales (n)`, `W ≈ scales[:, None] · w_q`. Checks the length, the
    /// ±63 range and the zero padding while computing the channel sums (one pass, in
    /// parallel); nothing is copied.
    pub fn from_panels(
        panels: SharedBytes,
        scales: Vec<f32>,
        n: usize,
        k: usize,
    ) -> Result<Self, PanelError> {
        let expected: usize = packed_shape(n, k).iter().product();
        if panels.len() != expected {
            return Err(PanelError::Length {
                expected,
                found: panels.len(),
            });
        }
        if scales.len() != n {
            return Err(PanelError::Scales {
                expected: n,
                found: scales.len(),
            });
        }
        let channel_sums = checked_channel_sums(panels.as_i8(), n, k)?;
        let isa = super::Int8Isa::selected();
        Ok(QuantizedWeight {
            isa,
            k,
            k_pad: padded_k(k),
            n,
            data: PanelData::Shared(panels),
            scales,
            channel_sums,
        })
    }

    /// The packed values, as [`QuantizedWeight::from_panels`] takes them (what `densa
    /// quantize` writes).
    pub fn panels(&self) -> &[i8] {
        self.data.as_i8()
    }

    /// Whether the packed values are borrowed (from a mapped file) rather than owned.
    pub fn is_borrowed(&self) -> bool {
        matches!(self.data, PanelData::Shared(_))
    }

    /// `(n)`: the dequantization scale of each output channel.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// `(out_features, in_features)`
    pub fn shape(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    /// `w_q (n, k)` row by row, unpacked from the panels.
    pub fn rows(&self) -> Vec<i8> {
        let (n, k) = (self.n, self.k);
        let panel_len = self.k_pad * PANEL_WIDTH;
        let data = self.data.as_i8();
        let mut rows = vec![0i8; n * k];
        for (column, row) in rows.chunks_exact_mut(k.max(1)).enumerate().take(n) {
            let (p, j) = (column / PANEL_WIDTH, column % PANEL_WIDTH);
            for (kk, value) in row.iter_mut().enumerate() {
                let (g, t) = (kk / K_GROUP, kk % K_GROUP);
                *value = data[p * panel_len + g * PANEL_WIDTH * K_GROUP + j * K_GROUP + t];
            }
        }
        rows
    }
}

/// `Σ_k w_q[n, k]` of each column of the packed `data`, checking the range and the padding.
fn checked_channel_sums(data: &[i8], n: usize, k: usize) -> Result<Vec<i32>, PanelError> {
    let k_pad = padded_k(k);
    let panel_len = k_pad * PANEL_WIDTH;
    const LANES: usize = PANEL_WIDTH * K_GROUP;
    let per_panel: Vec<Result<[i32; PANEL_WIDTH], PanelError>> = data
        .par_chunks(panel_len.max(1))
        .enumerate()
        .map(|(p, panel)| {
            // Vertical sums and extremes over the groups, lane by lane (vectorises): lane
            // j·4 + t holds column j's inputs 4·g + t.
            let mut sums = [0i32; LANES];
            let (mut low, mut high) = ([0i8; LANES], [0i8; LANES]);
            for group in panel.chunks_exact(LANES) {
                for lane in 0..LANES {
                    sums[lane] += group[lane] as i32;
                    low[lane] = low[lane].min(group[lane]);
                    high[lane] = high[lane].max(group[lane]);
                }
            }
            let columns = n.saturating_sub(p * PANEL_WIDTH).min(PANEL_WIDTH);
            for lane in 0..LANES {
                let (j, t) = (lane / K_GROUP, lane % K_GROUP);
                let worst = if (low[lane] as i32).abs() > high[lane] as i32 {
                    low[lane]
                } else {
                    high[lane]
                };
                if (worst as i32).abs() as f32 > WEIGHT_MAX {
                    let g = panel
                        .chunks_exact(LANES)
                        .position(|group| group[lane] == worst)
                        .unwrap_or(0);
                    return Err(PanelError::OutOfRange {
                        column: p * PANEL_WIDTH + j,
                        k: g * K_GROUP + t,
                        value: worst,
                    });
                }
                // A padding column: every value 0.
                if j >= columns && (low[lane], high[lane]) != (0, 0) {
                    let g = panel
                        .chunks_exact(LANES)
                        .position(|group| group[lane] != 0)
                        .unwrap_or(0);
                    return Err(PanelError::Padding {
                        column: p * PANEL_WIDTH + j,
                        k: g * K_GROUP + t,
                    });
                }
            }
            // The padded inputs k .. k_pad of the real columns: only the last groups.
            for (g, group) in panel.chunks_exact(LANES).enumerate().skip(k / K_GROUP) {
                for (lane, &value) in group.iter().enumerate().take(columns * K_GROUP) {
                    let kk = g * K_GROUP + lane % K_GROUP;
                    if kk >= k && value != 0 {
                        return Err(PanelError::Padding {
                            column: p * PANEL_WIDTH + lane / K_GROUP,
                            k: kk,
                        });
                    }
                }
            }
            let mut column_sums = [0i32; PANEL_WIDTH];
            for (lane, sum) in sums.iter().enumerate() {
                column_sums[lane / K_GROUP] += sum;
            }
            Ok(column_sums)
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for sums in per_panel {
        out.extend_from_slice(&sums?);
    }
    out.truncate(n);
    Ok(out)
}
