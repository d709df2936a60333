//! Ridge regression with one regularisation hyperparameter per feature, on seeded synthetic
//! data. Its hypergradient has a closed form, which makes it the reference problem for every
//! estimator.
//!
//! ```text
//! g(w, λ) = 1/(2n) ‖X w − y‖² + ½ Σ_j e^{λ_j} w_j²        (train)
//! f(w, λ) = 1/(2m) ‖X_v w − y_v‖² + (μ/2)‖λ‖²              (validation)
//! ∇_w g   = Xᵀ(Xw − y)/n + e^λ∘w          H[v] = XᵀX v/n + e^λ∘v
//! J[v]    = ∇_λ⟨∇_w g, v⟩ = e^λ∘w∘v        ∇_w f = X_vᵀ(X_v w − y_v)/m,   ∇_λ f = μ λ
//! w*(λ)   = (XᵀX/n + diag e^λ)⁻¹ Xᵀy/n     ∇Φ(λ) = μ λ − J H⁻¹ ∇_w f   at w*(λ)
//! ```
//! On a mini-batch B the data terms use X_B and 1/|B|. The outer penalty μ (0 unless set by
//! [`RidgeData::with_outer_penalty`]) is the one problem here whose f depends on λ directly: it
//! exercises every algorithm's `∇_x f` term.

use super::glm::{Glm, GlmData, HyperKind};
use crate::backend::{GlmBackend, HostMatrix, LossKind};
use crate::sampler::Sampler;

/// Host copy of a ridge instance, in f64 (the reference data for every backend).
#[derive(Clone, Debug)]
pub struct RidgeData {
    /// Training rows.
    pub n: usize,
    /// Validation rows.
    pub m: usize,
    /// Features: the dimension of both w and λ.
    pub d: usize,
    /// n × d row-major.
    pub x_train: Vec<f64>,
    /// Training targets (n).
    pub y_train: Vec<f64>,
    /// m × d row-major.
    pub x_val: Vec<f64>,
    /// Validation targets (m).
    pub y_val: Vec<f64>,
    /// μ of the outer penalty (μ/2)‖λ‖² in f.
    pub outer_penalty: f64,
}

impl RidgeData {
    /// Seeded synthetic instance: X ~ N(0, 1)/√d entries, a ground truth whose first half of
    /// features carry signal and second half are zero, and noisy targets. The per-feature
    /// optimum of λ then differs between informative and noise features.
    pub fn synthetic(n: usize, m: usize, d: usize, noise: f64, seed: u64) -> Self {
        let mut s = Sampler::new(seed);
        let w_true: Vec<f64> = (0..d).map(|j| if j < d.div_ceil(2) { s.normal() } else { 0.0 }).collect();
        Self::generate(&mut s, n, m, &w_true, noise)
    }

    /// Seeded instance with the given ground truth (X ~ N(0, 1)/√d entries, noisy targets).
    pub fn with_truth(n: usize, m: usize, w_true: &[f64], noise: f64, seed: u64) -> Self {
        Self::generate(&mut Sampler::new(seed), n, m, w_true, noise)
    }

    fn generate(s: &mut Sampler, n: usize, m: usize, w_true: &[f64], noise: f64) -> Self {
        let d = w_true.len();
        let scale = 1.0 / (d as f64).sqrt();
        let mut make = |rows: usize| {
            let x: Vec<f64> = (0..rows * d).map(|_| s.normal() * scale).collect();
            let y: Vec<f64> = (0..rows).map(|i| dot(&x[i * d..(i + 1) * d], w_true) + noise * s.normal()).collect();
            (x, y)
        };
        let (x_train, y_train) = make(n);
        let (x_val, y_val) = make(m);
        RidgeData { n, m, d, x_train, y_train, x_val, y_val, outer_penalty: 0.0 }
    }

    /// The same instance with the outer objective `f(w, λ) = val_loss(w) + (μ/2)‖λ‖²`.
    pub fn with_outer_penalty(mut self, mu: f64) -> Self {
        self.outer_penalty = mu;
        self
    }

    /// The inner solution w*(λ), by Cholesky in f64.
    pub fn inner_solution(&self, lambda: &[f64]) -> Vec<f64> {
        self.inner_solution_with(&self.hessian_cholesky(lambda))
    }

    /// w*(λ) from the Cholesky factor of its Hessian.
    fn inner_solution_with(&self, h: &[f64]) -> Vec<f64> {
        let mut rhs = vec![0.0; self.d];
        for i in 0..self.n {
            let xi = &self.x_train[i * self.d..(i + 1) * self.d];
            for j in 0..self.d {
                rhs[j] += xi[j] * self.y_train[i] / self.n as f64;
            }
        }
        cholesky_solve(h, self.d, &rhs)
    }

    /// The exact hypergradient ∇Φ(λ) = μ λ − J H⁻¹ ∇_w f at w*(λ), and Φ(λ) = f(w*(λ), λ).
    pub fn exact_hypergradient(&self, lambda: &[f64]) -> (Vec<f64>, f64) {
        let l = self.hessian_cholesky(lambda);
        let w = self.inner_solution_with(&l);
        let (grad_f, loss) = self.outer_grad_loss(&w);
        let v = cholesky_solve(&l, self.d, &grad_f);
        let mu = self.outer_penalty;
        let h = (0..self.d).map(|j| mu * lambda[j] - lambda[j].exp() * w[j] * v[j]).collect();
        (h, loss + 0.5 * mu * dot(lambda, lambda))
    }

    /// ∇_w f and the validation loss at w (f64): f's data term, without the outer penalty.
    pub fn outer_grad_loss(&self, w: &[f64]) -> (Vec<f64>, f64) {
        let mut g = vec![0.0; self.d];
        let mut loss = 0.0;
        for i in 0..self.m {
            let xi = &self.x_val[i * self.d..(i + 1) * self.d];
            let r = dot(xi, w) - self.y_val[i];
            loss += r * r / (2.0 * self.m as f64);
            for j in 0..self.d {
                g[j] += xi[j] * r / self.m as f64;
            }
        }
        (g, loss)
    }

    /// Cholesky factor L (lower, row-major) of H = XᵀX/n + diag e^λ.
    fn hessian_cholesky(&self, lambda: &[f64]) -> Vec<f64> {
        let d = self.d;
        let mut h = vec![0.0; d * d];
        for i in 0..self.n {
            let xi = &self.x_train[i * d..(i + 1) * d];
            for a in 0..d {
                for b in 0..=a {
                    h[a * d + b] += xi[a] * xi[b] / self.n as f64;
                }
            }
        }
        for (j, l) in lambda.iter().enumerate() {
            h[j * d + j] += l.exp();
        }
        // In-place Cholesky on the lower triangle; H is SPD because e^λ > 0.
        for j in 0..d {
            let mut s = h[j * d + j];
            for k in 0..j {
                s -= h[j * d + k] * h[j * d + k];
            }
            h[j * d + j] = s.sqrt();
            for i in j + 1..d {
                let mut s = h[i * d + j];
                for k in 0..j {
                    s -= h[i * d + k] * h[j * d + k];
                }
                h[i * d + j] = s / h[j * d + j];
            }
        }
        h
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Solves L Lᵀ x = b with L lower-triangular row-major.
fn cholesky_solve(l: &[f64], d: usize, b: &[f64]) -> Vec<f64> {
    let mut z = b.to_vec();
    for i in 0..d {
        for k in 0..i {
            z[i] -= l[i * d + k] * z[k];
        }
        z[i] /= l[i * d + i];
    }
    for i in (0..d).rev() {
        for k in i + 1..d {
            z[i] -= l[k * d + i] * z[k];
        }
        z[i] /= l[i * d + i];
    }
    z
}

impl RidgeData {
    /// The same instance's data as a [`GlmData`]: squared loss, one class column (the outer
    /// penalty is the problem's, which [`Glm::ridge`] sets).
    pub fn glm(&self) -> GlmData {
        GlmData {
            x_train: HostMatrix::Dense { rows: self.n, cols: self.d, data: self.x_train.clone() },
            t_train: self.y_train.clone(),
            x_val: HostMatrix::Dense { rows: self.m, cols: self.d, data: self.x_val.clone() },
            t_val: self.y_val.clone(),
            loss: LossKind::Squared,
            classes: 1,
        }
    }
}

/// The ridge problem resident on a backend.
pub type Ridge<B> = Glm<B>;

impl<B: GlmBackend> Glm<B> {
    /// Uploads a ridge instance: `g = 1/(2n)‖Xw − y‖² + ½ Σ e^{λ_j} w_j²`,
    /// `f = 1/(2m)‖X_v w − y_v‖² + (μ/2)‖λ‖²`.
    pub fn ridge(be: &B, data: &RidgeData) -> Self {
        Glm::new(be, &data.glm(), HyperKind::FeatureRidge { scale: 1.0 }).with_outer_penalty(data.outer_penalty)
    }
}
