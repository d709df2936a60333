//! Seeded synthetic GLM data of any shape, dense or sparse: for tests, and for benchmarks at the
//! real problems' shapes when the real data is not needed.

use super::glm::GlmData;
use crate::backend::{HostMatrix, LossKind};
use crate::sampler::Sampler;

/// Shape and kind of a synthetic data set.
#[derive(Clone, Debug)]
pub struct SyntheticSpec {
    /// Training rows.
    pub n_train: usize,
    /// Validation rows.
    pub n_val: usize,
    /// Feature columns d (before the bias column, if any).
    pub features: usize,
    /// Output columns c (1 for squared and logistic losses; 0 is taken as 1).
    pub classes: usize,
    /// The loss, which decides how targets are drawn (real values, 0/1 labels, class indices).
    pub loss: LossKind,
    /// Non-zeros per row; `None` for dense data.
    pub nnz_per_row: Option<usize>,
    /// Append a constant-1 feature (a bias column), as hyper-cleaning does.
    pub bias: bool,
    /// Seed of the features, the ground-truth model and the noise.
    pub seed: u64,
}

impl SyntheticSpec {
    /// Features from N(0, 1) (dense, scaled by 1/√d) or unit-norm sparse rows with random
    /// columns (like tf vectors); targets from a random linear model plus noise.
    pub fn generate(&self) -> GlmData {
        let mut s = Sampler::new(self.seed);
        let (d, c) = (self.features + self.bias as usize, self.classes.max(1));
        let truth: Vec<f64> = (0..d * c).map(|_| s.normal()).collect();
        let (x_train, t_train) = self.split(&mut s, self.n_train, &truth);
        let (x_val, t_val) = self.split(&mut s, self.n_val, &truth);
        GlmData { x_train, t_train, x_val, t_val, loss: self.loss, classes: c }
    }

    fn split(&self, s: &mut Sampler, rows: usize, truth: &[f64]) -> (HostMatrix, Vec<f64>) {
        let d = self.features + self.bias as usize;
        let c = self.classes.max(1);
        let mut targets = Vec::with_capacity(rows);
        let mut row_pred = |entries: &[(usize, f64)], s: &mut Sampler| {
            let z: Vec<f64> = (0..c).map(|k| entries.iter().map(|&(j, v)| v * truth[j * c + k]).sum::<f64>() + 0.3 * s.normal()).collect();
            targets.push(match self.loss {
                LossKind::Squared => z[0],
                LossKind::Logistic => (z[0] > 0.0) as u8 as f64,
                LossKind::Softmax => z.iter().enumerate().fold(0, |best, (k, &v)| if v > z[best] { k } else { best }) as f64,
            });
        };
        let matrix = match self.nnz_per_row {
            None => {
                let scale = 1.0 / (self.features as f64).sqrt();
                let mut data = Vec::with_capacity(rows * d);
                for _ in 0..rows {
                    let mut row: Vec<f64> = (0..self.features).map(|_| scale * s.normal()).collect();
                    if self.bias {
                        row.push(1.0);
                    }
                    let entries: Vec<(usize, f64)> = row.iter().copied().enumerate().collect();
                    row_pred(&entries, s);
                    data.extend(row);
                }
                HostMatrix::Dense { rows, cols: d, data }
            }
            Some(k) => {
                let (mut indptr, mut indices, mut values) = (vec![0u32], Vec::new(), Vec::new());
                for _ in 0..rows {
                    let mut cols: Vec<u32> = s.batch(self.features, k.min(self.features));
                    cols.sort_unstable();
                    let raw: Vec<f64> = cols.iter().map(|_| s.normal().abs() + 0.1).collect();
                    let norm = raw.iter().map(|v| v * v).sum::<f64>().sqrt();
                    let mut entries: Vec<(usize, f64)> = cols.iter().zip(&raw).map(|(&j, &v)| (j as usize, v / norm)).collect();
                    if self.bias {
                        entries.push((self.features, 1.0));
                    }
                    row_pred(&entries, s);
                    for (j, v) in entries {
                        indices.push(j as u32);
                        values.push(v);
                    }
                    indptr.push(indices.len() as u32);
                }
                HostMatrix::Csr { rows, cols: d, indptr, indices, values }
            }
        };
        (matrix, targets)
    }
}
