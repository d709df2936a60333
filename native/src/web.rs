//! What the web page needs from the CLI: its MNIST asset (`mnist-subset`, run at page build
//! time) and the native reference for its landscape panel (`landscape`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bilevel_core::algorithms::{AlgKind, Hyper};
use bilevel_core::landscape::{Landscape, LandscapeConfig};
use bilevel_core::GlmBackend;
use clap::Args;
use serde_json::json;

use crate::common::{on_backend, BackendArgs, HyperArgs, Job};
use crate::data::DataArgs;

#[derive(Args, Debug)]
#[command(rename_all = "snake_case")]
pub struct MnistSubsetArgs {
    /// Training images: the first N hyper-cleaning training rows.
    #[arg(long, default_value_t = 2_000)]
    train: usize,
    /// Validation images: the first N hyper-cleaning validation rows.
    #[arg(long, default_value_t = 500)]
    val: usize,
    /// Test images: the first N of the test set.
    #[arg(long, default_value_t = 1_000)]
    test: usize,
    /// Output file (the page fetches it as mnist-subset.bin).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    data: DataArgs,
}

/// Writes the page's MNIST subset (raw u8 pixels and labels; about 785 bytes per image).
pub fn mnist_subset(args: MnistSubsetArgs) -> Result<()> {
    let subset = args.data.mnist()?.subset(args.train, args.val, args.test)?;
    let bytes = subset.to_bytes();
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&args.out, &bytes).with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!("mnist-subset: {} + {} + {} images, {} bytes -> {}", args.train, args.val, args.test, bytes.len(), args.out.display());
    Ok(())
}

#[derive(Args, Debug)]
#[command(rename_all = "snake_case", allow_negative_numbers = true)]
pub struct LandscapeArgs {
    #[command(flatten)]
    backend: BackendArgs,
    #[command(flatten)]
    hyper: HyperArgs,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 30)]
    n_train: usize,
    #[arg(long, default_value_t = 100)]
    n_val: usize,
    #[arg(long, default_value_t = 2.0)]
    noise: f64,
    /// The two features' true weights, as "a,b".
    #[arg(long, default_value = "1,0.4", allow_hyphen_values = true)]
    truth: String,
    /// Both λ axes span [lo, hi].
    #[arg(long, default_value_t = -4.0)]
    lo: f64,
    #[arg(long, default_value_t = 2.0)]
    hi: f64,
    /// Grid points per axis.
    #[arg(long, default_value_t = 25)]
    grid: usize,
    /// CG iterations of the stacked grid solve (the web page's 60).
    #[arg(long, default_value_t = 60)]
    cg_iters: usize,
    /// The point λ = (λ₀, λ₁) where the estimators are evaluated, as "a,b".
    #[arg(long, default_value = "-1,1", allow_hyphen_values = true)]
    lambda: String,
    /// Estimators (comma-separated).
    #[arg(long, default_value = "stocBiO,AID-FP,AID-CG,reverse")]
    algs: String,
    /// Estimates per stochastic estimator (mini-batch seeds seed, seed+1, …).
    #[arg(long, default_value_t = 8)]
    draws: u64,
    /// Outer descent steps from --lambda with the first of --algs (step size --outer_lr).
    #[arg(long, default_value_t = 0)]
    descent: usize,
    /// Write the JSON object here instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The page's landscape defaults: T = 20 inner steps, Q = K = 20, η = α = 0.2 (stable up to
/// e^λ ≈ 9, beyond the plane's edge), batches of 8 of the 30 training rows.
pub const LANDSCAPE: Hyper = Hyper { t: 20, q: 20, eta: 0.2, alpha: 0.2, beta: 3.0, batch_size: 8, val_batch_size: 8 };

/// One JSON object: the grid of Φ (backend and closed form), and at λ the exact hypergradient,
/// each estimator's estimates and the inner path — what the web page shows, for comparison.
pub fn landscape(args: LandscapeArgs) -> Result<()> {
    let lambda = pair("--lambda", &args.lambda)?;
    let truth = pair("--truth", &args.truth)?;
    let algs: Vec<AlgKind> = args.algs.split(',').map(|a| a.trim().parse()).collect::<Result<_, _>>()?;
    let config = LandscapeConfig {
        n_train: args.n_train,
        n_val: args.n_val,
        noise: args.noise,
        seed: args.seed,
        truth: [truth[0], truth[1]],
        lo: args.lo,
        hi: args.hi,
        grid: args.grid,
    };
    args.hyper.refuse_auto("landscape")?;
    let job = LandscapeJob { landscape: Landscape::new(config)?, hyper: args.hyper.hyper(LANDSCAPE), lambda, algs, args };
    on_backend(&job.args.backend.clone(), job)
}

/// "a,b" as two finite numbers.
fn pair(flag: &str, text: &str) -> Result<Vec<f64>> {
    let v: Vec<f64> = text.split(',').map(|v| v.trim().parse::<f64>()).collect::<Result<_, _>>().unwrap_or_default();
    if v.len() != 2 || v.iter().any(|x| !x.is_finite()) {
        bail!("{flag} must be two numbers \"a,b\", got {text:?}");
    }
    Ok(v)
}

struct LandscapeJob {
    landscape: Landscape,
    hyper: Hyper,
    lambda: Vec<f64>,
    algs: Vec<AlgKind>,
    args: LandscapeArgs,
}

impl Job for LandscapeJob {
    fn run<B: GlmBackend + 'static>(self, be: &B) -> Result<()> {
        let l = &self.landscape;
        let points = l.grid_points();
        let start = Instant::now();
        let values = pollster::block_on(l.outer_values(be, &points, self.args.cg_iters))?;
        let grid_s = start.elapsed().as_secs_f64();
        let exact_values: Vec<f64> = points.iter().map(|p| l.exact(p).1).collect();
        let (exact, exact_loss) = l.exact(&self.lambda);
        let mut estimates = serde_json::Map::new();
        for &alg in &self.algs {
            let draws = if alg.is_stochastic() { self.args.draws.max(1) } else { 1 };
            let h: Vec<Vec<f64>> = (0..draws)
                .map(|k| pollster::block_on(l.estimate(be, alg, &self.hyper, &self.lambda, self.args.seed + k)))
                .collect::<Result<_, _>>()?;
            estimates.insert(alg.name().to_string(), json!(h));
        }
        let path = pollster::block_on(l.inner_path(be, &self.hyper, &self.lambda, self.args.seed))?;
        let mut descent = Vec::new();
        if let (Some(&alg), true) = (self.algs.first(), self.args.descent > 0) {
            let mut run = l.descent(be, alg, &self.hyper, &self.lambda, self.args.seed)?;
            for _ in 0..self.args.descent {
                descent.push(pollster::block_on(run.step())?);
            }
        }
        let out = json!({
            "backend": be.describe(),
            "config": l.config,
            "hyper": self.hyper,
            "axis": (0..l.config.grid).map(|k| l.axis(k)).collect::<Vec<_>>(),
            "values": values,
            "exact_values": exact_values,
            "grid_time_s": grid_s,
            "lambda": self.lambda,
            "exact_hypergradient": exact,
            "exact_loss": exact_loss,
            "inner_solution": l.inner_solution(&self.lambda),
            "estimates": estimates,
            "inner_path": path,
            "descent": descent,
        });
        let text = serde_json::to_string(&out)?;
        match &self.args.out {
            Some(p) => std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))?,
            None => println!("{text}"),
        }
        Ok(())
    }
}
