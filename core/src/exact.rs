//! A reference hypergradient at a given x: the inner problem solved by damped Newton–CG to a
//! tight gradient norm, the linear system H v = ∇_y f by CG to a tight residual, then
//! `∇Φ ≈ ∇_x f − J[v]`. A reference, not a fast path: it reads norms back every Newton step.

use crate::algorithms::{Cg, CgSolve, Point};
use crate::backend::{Backend, Coef, Rows};
use crate::problems::Problem;
use crate::{Error, Result};

/// The reference's output.
pub struct Exact<B: Backend> {
    /// The inner solution y*(x) (to the requested tolerance).
    pub y: B::Vector,
    /// ∇Φ(x) = ∇_x f − J H⁻¹ ∇_y f at that y.
    pub hypergradient: B::Vector,
    /// ‖∇_y g(x, y)‖ at the returned y: how well the inner problem is solved.
    pub inner_grad_norm: f64,
    /// f(x, y) on the whole validation set.
    pub outer_loss: f64,
    /// Newton steps the inner solve took.
    pub newton_steps: usize,
}

/// How far [`solve_inner`] goes: it stops once ‖∇_y g‖ ≤ max(`tol`, `rel_tol`·‖∇_y g(y0)‖) or
/// after `max_newton` steps, each a CG solve of at most `cg_iters` iterations to a relative
/// residual of `cg_rel` (a truncated Newton step when `cg_iters` is small).
#[derive(Clone, Copy, Debug)]
pub struct InnerSolve {
    /// Absolute target on ‖∇_y g‖.
    pub tol: f64,
    /// Target on ‖∇_y g‖ relative to its value at `y0` (0: absolute only).
    pub rel_tol: f64,
    /// The most Newton steps.
    pub max_newton: usize,
    /// The most CG iterations per Newton step.
    pub cg_iters: usize,
    /// CG's stopping residual, relative to the current ‖∇_y g‖.
    pub cg_rel: f64,
}

/// The inner problem's solution at a fixed x.
pub struct InnerSolution<B: Backend> {
    /// The minimiser found.
    pub y: B::Vector,
    /// ‖∇_y g(x, y)‖ there.
    pub grad_norm: f64,
    /// Newton steps taken.
    pub newton_steps: usize,
}

/// Minimises g(x, ·) from `y0` by damped Newton–CG (backtracking on g) as `solve` says.
pub async fn solve_inner<B: Backend, P: Problem<B>>(
    be: &B,
    p: &P,
    x: &B::Vector,
    y0: &B::Vector,
    solve: &InnerSolve,
) -> Result<InnerSolution<B>> {
    let n = p.dim_y();
    let (mut y, mut trial, mut g, mut step) =
        (be.zeros(n, "exact.y"), be.zeros(n, "exact.trial"), be.zeros(n, "exact.g"), be.zeros(n, "exact.step"));
    be.copy(y0, &mut y);
    let (s, loss) = (be.scalar("exact.s"), be.scalar("exact.loss"));
    let mut cg = Cg::new(be, n);
    let mut newton_steps = 0;
    let mut target = solve.tol;
    let mut grad_norm;
    loop {
        p.inner_grad(be, x, &y, Rows::All, &mut g);
        be.dot(&g, &g, 1.0, &s, false);
        grad_norm = be.read_scalar(&s).await?.sqrt();
        if !grad_norm.is_finite() {
            return Err(Error::NonFinite { iter: newton_steps, quantity: "inner gradient (exact solve)".into() });
        }
        if newton_steps == 0 {
            target = target.max(solve.rel_tol * grad_norm);
        }
        if grad_norm <= target || newton_steps == solve.max_newton {
            break;
        }
        // Newton direction H d = g, then backtracking on g.
        cg.solve(
            be,
            p,
            Point { x, y: &y },
            &g,
            &mut step,
            CgSolve { iters: solve.cg_iters, warm: false, tol: Some(solve.cg_rel * grad_norm) },
        );
        p.inner_loss(be, x, &y, Rows::All, &loss);
        let f0 = be.read_scalar(&loss).await?;
        be.dot(&g, &step, 1.0, &s, false);
        let slope = be.read_scalar(&s).await?;
        let mut t = 1.0;
        loop {
            be.copy(&y, &mut trial);
            be.axpy(Coef::c(-t), &step, &mut trial);
            p.inner_loss(be, x, &trial, Rows::All, &loss);
            let f1 = be.read_scalar(&loss).await?;
            if f1 <= f0 - 1e-4 * t * slope || t < 1e-10 {
                break;
            }
            t *= 0.5;
        }
        std::mem::swap(&mut y, &mut trial);
        newton_steps += 1;
    }
    Ok(InnerSolution { y, grad_norm, newton_steps })
}

/// Solves the inner problem from `y0` to ‖∇_y g‖ ≤ `tol` and returns the hypergradient there.
///
/// ```
/// use bilevel_core::cpu::CpuBackend;
/// use bilevel_core::exact::exact_hypergradient;
/// use bilevel_core::problems::ridge::{Ridge, RidgeData};
/// use bilevel_core::Backend;
///
/// let be = CpuBackend::<f64>::new();
/// let data = RidgeData::synthetic(50, 40, 4, 0.1, 0);
/// let p = Ridge::ridge(&be, &data);
/// let (x, y0) = (be.zeros(4, "x"), be.zeros(4, "y0"));
/// let exact = pollster::block_on(exact_hypergradient(&be, &p, &x, &y0, 1e-12)).unwrap();
/// let h = pollster::block_on(be.read_vector(&exact.hypergradient)).unwrap();
/// let (closed_form, _) = data.exact_hypergradient(&[0.0; 4]); // ridge's own closed form
/// assert!(h.iter().zip(&closed_form).all(|(a, b)| (a - b).abs() < 1e-8));
/// ```
pub async fn exact_hypergradient<B: Backend, P: Problem<B>>(be: &B, p: &P, x: &B::Vector, y0: &B::Vector, tol: f64) -> Result<Exact<B>> {
    let n = p.dim_y();
    let cg_iters = n.clamp(50, 2000);
    let solve = InnerSolve { tol, rel_tol: 0.0, max_newton: 100, cg_iters, cg_rel: 1e-6 };
    let InnerSolution { y, grad_norm, newton_steps } = solve_inner(be, p, x, y0, &solve).await?;
    let (mut g, mut step) = (be.zeros(n, "exact.g"), be.zeros(n, "exact.step"));
    let (s, loss) = (be.scalar("exact.s"), be.scalar("exact.loss"));
    let mut cg = Cg::new(be, n);
    // v = H⁻¹ ∇_y f, then ∇Φ = ∇_x f − J[v].
    p.outer_grad_y(be, x, &y, Rows::All, &mut g);
    be.dot(&g, &g, 1.0, &s, false);
    let rhs_norm = be.read_scalar(&s).await?.sqrt();
    cg.solve(be, p, Point { x, y: &y }, &g, &mut step, CgSolve { iters: cg_iters, warm: false, tol: Some(1e-10 * rhs_norm.max(1e-300)) });
    let mut h = be.zeros(p.dim_x(), "exact.h");
    p.mixed_jvp(be, x, &y, &step, Rows::All, &mut h);
    be.scale(Coef::c(-1.0), &mut h);
    p.add_outer_grad_x(be, x, &y, Rows::All, &mut h);
    p.outer_loss(be, x, &y, Rows::All, &loss);
    let outer_loss = be.read_scalar(&loss).await?;
    Ok(Exact { y, hypergradient: h, inner_grad_norm: grad_norm, outer_loss, newton_steps })
}
