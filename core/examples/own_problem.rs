//! Your own bilevel problem on every backend, written against bilevel-core's public API only.
//!
//! Per-coordinate shrinkage, with x, y ∈ R^d:
//!   inner  g(x, y) = ½‖y − a‖² + ½ Σ_j e^{x_j} y_j²   so  y*_j(x) = a_j / (1 + e^{x_j})
//!   outer  f(x, y) = ½‖y − b‖²
//!   Φ(x) = f(x, y*(x)),  dΦ/dx_j = −(y*_j − b_j) · a_j e^{x_j} / (1 + e^{x_j})²
//! With 0 < b_j < a_j the optimum is Φ = 0 at x*_j = ln(a_j / b_j − 1).
//!
//! The problem is deterministic: it has no data rows, so `Rows` (mini-batches) is ignored and
//! n_train = n_val = 1. Its elementwise operation (e^x ⊙ y ⊙ v) is not a `Backend` primitive,
//! so it lives in an extension trait implemented on the CPU with a loop and on the GPU with a
//! WGSL kernel through `bilevel_core::gpu::Kernel`. The problem's oracles are written once,
//! checked against finite differences by `check_oracles`, and solved by three algorithms on
//! both backends. Exits non-zero if a check fails or a run misses the closed-form optimum.
//!
//! Run: `cargo run --release -p bilevel-core --example own_problem`

use std::process::ExitCode;

use bilevel_core::algorithms::{AlgKind, Hyper};
use bilevel_core::check::{check_oracles_with, CheckOptions};
use bilevel_core::cpu::CpuBackend;
use bilevel_core::gpu::{Access, GpuBackend, GpuOptions, GpuVector, Kernel};
use bilevel_core::outer::{OuterLoop, OuterOpt};
use bilevel_core::problems::Problem;
use bilevel_core::{kernel_params, Backend, Coef, Rows};

/// The one operation the problem needs beyond `Backend`: `out_j ← (c + e^{x_j}) · y_j · v_j`.
trait ShrinkOps: Backend {
    fn exp_scale(&self, x: &Self::Vector, c: f64, y: &Self::Vector, v: &Self::Vector, out: &mut Self::Vector);
}

// The CPU backend's vectors are `Vec<f32>` / `Vec<f64>`: a host loop.
macro_rules! cpu_shrink_ops {
    ($($t:ty),*) => {$(
        impl ShrinkOps for CpuBackend<$t> {
            fn exp_scale(&self, x: &Vec<$t>, c: f64, y: &Vec<$t>, v: &Vec<$t>, out: &mut Vec<$t>) {
                for (o, ((x, y), v)) in out.iter_mut().zip(x.iter().zip(y).zip(v)) {
                    *o = (c as $t + x.exp()) * y * v;
                }
            }
        }
    )*};
}
cpu_shrink_ops!(f32, f64);

// On the GPU: the parameter struct is declared once (checked against the WGSL's `Params` when
// the pipeline is created), and the kernel lists its storage buffers in dispatch order.
kernel_params! {
    struct ExpScaleParams { n: u32, c: f32 }
}
const EXP_SCALE_WGSL: &str = r#"
struct Params { n: u32, c: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn exp_scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = gid.x + gid.y * nwg.x * 64u; // large grids spill into y
    if (j < p.n) { out[j] = (p.c + exp(x[j])) * y[j] * v[j]; }
}
"#;
const EXP_SCALE: Kernel = Kernel::new(
    "own_problem.wgsl",
    EXP_SCALE_WGSL,
    "exp_scale",
    &[(1, Access::Read), (2, Access::Read), (3, Access::Read), (4, Access::ReadWrite)],
);

impl ShrinkOps for GpuBackend {
    fn exp_scale(&self, x: &GpuVector, c: f64, y: &GpuVector, v: &GpuVector, out: &mut GpuVector) {
        let p = ExpScaleParams { n: out.len() as u32, c: c as f32 };
        self.dispatch(&EXP_SCALE, &p, &[x.binding(), y.binding(), v.binding(), out.binding()], out.len() as u32);
    }
}

/// The problem's data on one backend.
struct Shrinkage<B: Backend> {
    a: B::Vector,
    b: B::Vector,
    ones: B::Vector,
    d: usize,
}

impl<B: Backend> Shrinkage<B> {
    fn new(be: &B, a: &[f64], b: &[f64]) -> Self {
        Shrinkage { a: be.vector_from(a, "a"), b: be.vector_from(b, "b"), ones: be.vector_from(&vec![1.0; a.len()], "ones"), d: a.len() }
    }
}

/// The oracles, written once for every backend with `ShrinkOps`.
impl<B: ShrinkOps> Problem<B> for Shrinkage<B> {
    fn dim_x(&self) -> usize {
        self.d
    }
    fn dim_y(&self) -> usize {
        self.d
    }
    fn n_train(&self) -> usize {
        1
    }
    fn n_val(&self) -> usize {
        1
    }
    // ∇_y g = (1 + e^x) ⊙ y − a
    fn inner_grad(&self, be: &B, x: &B::Vector, y: &B::Vector, _: Rows<'_, B::Indices>, out: &mut B::Vector) {
        be.exp_scale(x, 1.0, y, &self.ones, out);
        be.axpy(Coef::c(-1.0), &self.a, out);
    }
    // ∇²_yy g · v = (1 + e^x) ⊙ v
    fn inner_hvp(&self, be: &B, x: &B::Vector, _: &B::Vector, v: &B::Vector, _: Rows<'_, B::Indices>, out: &mut B::Vector) {
        be.exp_scale(x, 1.0, v, &self.ones, out);
    }
    // ∇_x ⟨∇_y g, v⟩ = e^x ⊙ y ⊙ v
    fn mixed_jvp(&self, be: &B, x: &B::Vector, y: &B::Vector, v: &B::Vector, _: Rows<'_, B::Indices>, out: &mut B::Vector) {
        be.exp_scale(x, 0.0, y, v, out);
    }
    // ∇_y f = y − b (f has no direct x term: the default `add_outer_grad_x` adds nothing)
    fn outer_grad_y(&self, be: &B, _: &B::Vector, y: &B::Vector, _: Rows<'_, B::Indices>, out: &mut B::Vector) {
        be.copy(y, out);
        be.axpy(Coef::c(-1.0), &self.b, out);
    }
    fn inner_loss(&self, be: &B, x: &B::Vector, y: &B::Vector, _: Rows<'_, B::Indices>, out: &B::Scalar) {
        let mut t = be.zeros(self.d, "g.t");
        be.copy(y, &mut t);
        be.axpy(Coef::c(-1.0), &self.a, &mut t);
        be.dot(&t, &t, 0.5, out, false);
        be.exp_scale(x, 0.0, y, y, &mut t);
        be.sum(&t, 0.5, out, true);
    }
    fn outer_loss(&self, be: &B, _: &B::Vector, y: &B::Vector, _: Rows<'_, B::Indices>, out: &B::Scalar) {
        let mut t = be.zeros(self.d, "f.t");
        be.copy(y, &mut t);
        be.axpy(Coef::c(-1.0), &self.b, &mut t);
        be.dot(&t, &t, 0.5, out, false);
    }
}

/// The closed form: dΦ/dx at x.
fn hypergradient(a: &[f64], b: &[f64], x: &[f64]) -> Vec<f64> {
    (0..a.len()).map(|j| -(a[j] / (1.0 + x[j].exp()) - b[j]) * a[j] * x[j].exp() / (1.0 + x[j].exp()).powi(2)).collect()
}

fn rel_dist(u: &[f64], v: &[f64]) -> f64 {
    let d: f64 = u.iter().zip(v).map(|(p, q)| (p - q).powi(2)).sum();
    (d / v.iter().map(|q| q * q).sum::<f64>().max(1e-300)).sqrt()
}

const ITERS: usize = 300;

/// Checks the oracles, then solves with each algorithm from x = 0; errors if a check fails, the
/// first hypergradient estimate is off the closed form by more than 1e-3 (relative), or a run
/// ends farther than `tol` (max-norm) from x*.
async fn solve_all<B: ShrinkOps + 'static>(
    be: &B,
    checks: &CheckOptions,
    a: &[f64],
    b: &[f64],
    x_star: &[f64],
    tol: f64,
) -> Result<(), String> {
    let report = check_oracles_with(&Shrinkage::new(be, a, b), be, &vec![0.3; a.len()], b, checks).await.map_err(|e| e.to_string())?;
    println!("{report}");
    if !report.passed() {
        return Err(format!("{}: oracle check failed", be.describe()));
    }
    // Inner steps α·(1 + e^x) < 2 keep gradient descent stable for x < 1.9; K = 20 terms.
    let hyper = Hyper { t: 20, q: 20, eta: 0.25, alpha: 0.25, beta: 1.0, batch_size: 1, val_batch_size: 1 };
    for alg in [AlgKind::AidCg, AlgKind::AidFp, AlgKind::Reverse] {
        let problem = Shrinkage::new(be, a, b);
        let mut run = OuterLoop::new(be, problem, alg, hyper.clone(), OuterOpt::Sgd { momentum: 0.0 }, 0).map_err(|e| e.to_string())?;
        // The first estimate, at x = 0, against the closed form.
        run.estimate();
        let h0 = be.read_vector(&run.h).await.map_err(|e| e.to_string())?;
        let h0_err = rel_dist(&h0, &hypergradient(a, b, &vec![0.0; a.len()]));
        run.update();
        for _ in 1..ITERS {
            run.estimate();
            run.update();
        }
        run.wait().await.map_err(|e| e.to_string())?;
        let x = be.read_vector(&run.x).await.map_err(|e| e.to_string())?;
        let value = be.scalar("phi");
        run.problem.outer_loss(be, &run.x, &run.y, Rows::All, &value);
        let phi = be.read_scalar(&value).await.map_err(|e| e.to_string())?;
        let dist = x.iter().zip(x_star).map(|(u, v)| (u - v).abs()).fold(0.0, f64::max);
        let shown: Vec<String> = x.iter().map(|v| format!("{v:.4}")).collect();
        let name = alg.to_string();
        println!("{name:>8}: x = [{}]  f = {phi:.2e}  |x − x*|∞ = {dist:.1e}  first ĥ vs closed form: {h0_err:.1e}", shown.join(", "));
        if !(dist <= tol && h0_err <= 1e-3) {
            return Err(format!("{alg} on {}: |x − x*|∞ = {dist:.1e} (tolerance {tol:.0e}), first ĥ off by {h0_err:.1e}", be.describe()));
        }
    }
    Ok(())
}

async fn run() -> Result<(), String> {
    // x*_j spread over [−1, 1]; b from a so that x* is the optimum.
    let d = 8;
    let x_star: Vec<f64> = (0..d).map(|j| -1.0 + 2.0 * j as f64 / (d - 1) as f64).collect();
    let a: Vec<f64> = (0..d).map(|j| 2.0 + 0.25 * j as f64).collect();
    let b: Vec<f64> = a.iter().zip(&x_star).map(|(a, x)| a / (1.0 + x.exp())).collect();
    println!("x* = {x_star:.4?}");

    println!("== CPU (f64)");
    solve_all(&CpuBackend::<f64>::new(), &CheckOptions::default(), &a, &b, &x_star, 1e-10).await?;
    println!("== GPU (f32)");
    let gpu = GpuBackend::new(&GpuOptions::default()).await.map_err(|e| e.to_string())?;
    // f32 rounding (6e-8 relative) bounds how close x gets: a few 1e-7 here.
    solve_all(&gpu, &CheckOptions::for_f32(), &a, &b, &x_star, 1e-5).await
}

fn main() -> ExitCode {
    match pollster::block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("own_problem: {e}");
            ExitCode::FAILURE
        }
    }
}
