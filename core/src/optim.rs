//! Adam (Kingma & Ba), written once for every outer loop: the bilevel [`OuterLoop`]'s
//! `--outer_opt adam` and the meta-learners' outer step. The moments stay on the device; the
//! bias corrections are host scalars folded into the step ([`AdamStep::at`]), so the backend
//! runs one fused update.
//!
//! [`OuterLoop`]: crate::outer::OuterLoop

use serde::Serialize;

use crate::backend::Backend;

/// Adam's constants.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct AdamSettings {
    /// Decay of the first moment (0.9 in PyTorch).
    pub beta1: f64,
    /// Decay of the second moment (0.999 in PyTorch).
    pub beta2: f64,
    /// Added to √v for stability (1e-8 in PyTorch).
    pub eps: f64,
}

impl Default for AdamSettings {
    /// `torch.optim.Adam`'s defaults.
    fn default() -> Self {
        AdamSettings { beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

/// One update as [`Backend::adam`] applies it:
/// `m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;  x ← x − lr·m/(√v + eps)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    /// The step, bias corrections included.
    pub lr: f64,
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε, bias correction included.
    pub eps: f64,
}

impl AdamStep {
    /// Step `t` (1-based) at learning rate `lr`, with the bias corrections folded in:
    /// `lr_t = lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ)` and `eps_t = eps·√(1 − β₂ᵗ)`, which is Adam's
    /// `m̂/(√v̂ + eps)` with `m̂ = m/(1 − β₁ᵗ)`, `v̂ = v/(1 − β₂ᵗ)`.
    ///
    /// ```
    /// use bilevel_core::optim::{AdamSettings, AdamStep};
    /// let first = AdamStep::at(1, 0.1, AdamSettings::default());
    /// // At t = 1 the corrected step is lr·√(1 − β₂)/(1 − β₁).
    /// assert!((first.lr - 0.1 * 0.001f64.sqrt() / 0.1).abs() < 1e-12);
    /// ```
    pub fn at(t: u32, lr: f64, s: AdamSettings) -> Self {
        let t = t.max(1) as i32;
        let c2 = (1.0 - s.beta2.powi(t)).sqrt();
        AdamStep { lr: lr * c2 / (1.0 - s.beta1.powi(t)), beta1: s.beta1, beta2: s.beta2, eps: s.eps * c2 }
    }
}

/// Adam's state for one resident vector: the two moments and the step count.
pub struct Adam<B: Backend> {
    m: B::Vector,
    v: B::Vector,
    t: u32,
    settings: AdamSettings,
}

impl<B: Backend> Adam<B> {
    /// Zero moments for a vector of `len` entries (`label` names the device buffers).
    pub fn new(be: &B, len: usize, label: &str, settings: AdamSettings) -> Self {
        Adam { m: be.zeros(len, &format!("{label}.adam_m")), v: be.zeros(len, &format!("{label}.adam_v")), t: 0, settings }
    }

    /// `x ← x − lr·m̂/(√v̂ + eps)` after updating the moments with `grad` (enqueued).
    pub fn step(&mut self, be: &B, grad: &B::Vector, x: &mut B::Vector, lr: f64) {
        self.t += 1;
        be.adam(grad, &mut self.m, &mut self.v, x, AdamStep::at(self.t, lr, self.settings));
    }
}
