//! MA-SOBA (Chen, Xiao, Balasubramanian, JMLR 2024, "Optimal algorithms for stochastic bilevel
//! optimization under relaxed smoothness conditions"): SOBA's single loop on y and the linear
//! system's solution, with x moved along a moving average of SOBA's direction D_x instead of
//! D_x itself:
//!
//! ```text
//! D_y = ∇_y g(x_k, y_k; B_1)
//! D_v = ∇²_yy g(x_k, y_k; B_2) v_k + ∇_y f(x_k, y_k; D_F)
//! D_x = ∇²_xy g(x_k, y_k; B_2) v_k + ∇_x f(x_k, y_k; D_F)
//! h_k = (1 − θ) h_{k−1} + θ D_x          (h_0 = D_x)
//! y ← y − α D_y;   v ← v − η D_v;   x ← x − β h_k
//! ```
//! (v ≈ −H⁻¹∇_y f is SOBA's sign convention, the paper's z = −v.) The averaging is what lets
//! the paper's analysis drop SOBA's higher-order smoothness assumptions; its steps are
//! constant, θ of the order of the outer step. θ is [`MaSoba::theta`] (0.1 by default), not a
//! [`Hyper`] field. The paper's analysis also projects v onto a ball of radius ρ ≥ ‖H⁻¹∇_y f‖,
//! which never binds near the solution; it is not applied here (a projection needs ‖v‖ on the
//! device, which the backend does not provide).

use super::soba::Soba;
use super::{Algorithm, Hyper, Step};
use crate::backend::{Backend, Coef};
use crate::problems::Problem;

/// The default averaging weight θ.
pub const DEFAULT_THETA: f64 = 0.1;

/// MA-SOBA's state: SOBA's (y's direction and v), and the moving average h of D_x.
pub struct MaSoba<B: Backend> {
    soba: Soba<B>,
    /// θ ∈ (0, 1]: the weight of the newest D_x in the average (1 gives SOBA).
    pub theta: f64,
    average: B::Vector,
    started: bool,
}

impl<B: Backend> MaSoba<B> {
    /// Workspaces sized for `p`, v starting at 0, θ = [`DEFAULT_THETA`]; `hyper` gives α, η
    /// and the batch sizes.
    pub fn new<P: Problem<B>>(be: &B, p: &P, hyper: Hyper) -> Self {
        MaSoba { soba: Soba::new(be, p, hyper), theta: DEFAULT_THETA, average: be.zeros(p.dim_x(), "ma_soba.average"), started: false }
    }
}

impl<B: Backend, P: Problem<B>> Algorithm<B, P> for MaSoba<B> {
    fn hyper_mut(&mut self) -> &mut Hyper {
        <Soba<B> as Algorithm<B, P>>::hyper_mut(&mut self.soba)
    }

    fn inner_and_hypergradient(&mut self, be: &B, p: &P, step: Step<'_, B>) {
        let Step { k, x, y, h, rng } = step;
        // SOBA's joint step on y and v, its D_x into h.
        self.soba.inner_and_hypergradient(be, p, Step { k, x, y, h, rng });
        // h_k = (1 − θ) h_{k−1} + θ D_x, starting from h_0 = D_x.
        let theta = if self.started { self.theta } else { 1.0 };
        be.axpby(Coef::c(theta), h, Coef::c(1.0 - theta), &mut self.average);
        be.copy(&self.average, h);
        self.started = true;
    }
}
