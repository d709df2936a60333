//! A solver of your own, run by the library's driver.
//!
//! T1–T2 (Luketina et al., 2016, "Scalable gradient-based tuning of continuous regularization
//! hyperparameters") approximates the hypergradient by differentiating through *one* inner step:
//!
//! ```text
//! y ← y − α ∇_y g(x, y; S_t)        T times, warm-started across outer iterations
//! ĥ = ∇ₓf(x, y; D_f) − α·J_{D_g}[∇_y f(x, y; D_f)]
//! ```
//!
//! (stocBiO with Q = 0 Neumann terms). Written here against the public API only, it gets the
//! same outer optimiser, data-chosen α, oracle counts, records and time budget as the shipped
//! solvers, and is compared with stocBiO on the same seeded logistic-regression problem with
//! one L2 strength per feature. Records stream to `custom_algorithm.jsonl` in the temporary
//! folder, one JSON object per line, as the CLI writes them.
//!
//! Run: `cargo run --release -p bilevel-core --example custom_algorithm`

use std::io::Write;
use std::time::Instant;

use bilevel_core::algorithms::{implicit_hypergradient, inner_descent, Adjoint, AlgKind, Algorithm, Hyper, InnerSteps, Step};
use bilevel_core::backend::LossKind;
use bilevel_core::cpu::CpuBackend;
use bilevel_core::experiment::{Event, Experiment, Plan, Record, Run};
use bilevel_core::outer::OuterOpt;
use bilevel_core::problems::glm::HyperKind;
use bilevel_core::problems::synthetic::SyntheticSpec;
use bilevel_core::problems::Problem;
use bilevel_core::steps::AutoSteps;
use bilevel_core::{Backend, Rows};

/// T1–T2's state: its settings and two y-sized work vectors.
struct T1T2<B: Backend> {
    hyper: Hyper,
    grad: B::Vector,
    grad_f: B::Vector,
}

impl<B: Backend> T1T2<B> {
    fn new<P: Problem<B>>(be: &B, p: &P, hyper: Hyper) -> Self {
        T1T2 { hyper, grad: be.zeros(p.dim_y(), "t1t2.grad"), grad_f: be.zeros(p.dim_y(), "t1t2.grad_f") }
    }
}

impl<B: Backend, P: Problem<B>> Algorithm<B, P> for T1T2<B> {
    fn inner_and_hypergradient(&mut self, be: &B, p: &P, step: Step<'_, B>) {
        let Step { x, y, h, rng, .. } = step;
        let Hyper { t, alpha, batch_size, val_batch_size, .. } = self.hyper;
        inner_descent(be, p, x, y, &mut self.grad, InnerSteps { steps: t, alpha, batch: Some(batch_size) }, rng);
        // ĥ = ∇ₓf − α·J[∇_y f]: the adjoint after one step is α·∇_y f.
        let d_f = be.indices(&rng.val_batch(p.n_val(), val_batch_size));
        let d_g = be.indices(&rng.train_batch(p.n_train(), batch_size));
        p.outer_grad_y(be, x, y, Rows::Batch(&d_f), &mut self.grad_f);
        implicit_hypergradient(be, p, x, y, Adjoint { v: &self.grad_f, c: alpha, rows: Rows::Batch(&d_g) }, Rows::Batch(&d_f), h);
    }

    fn hyper_mut(&mut self) -> &mut Hyper {
        &mut self.hyper
    }
}

/// A seeded binary classification problem whose second half of features is noise, with a test
/// split: what per-feature L2 strengths should learn to switch off.
fn problem() -> Experiment {
    let spec = SyntheticSpec {
        n_train: 2000,
        n_val: 1000,
        features: 60,
        classes: 1,
        loss: LossKind::Logistic,
        nnz_per_row: None,
        bias: false,
        seed: 3,
    };
    let test = SyntheticSpec { n_train: 2000, n_val: 1, ..spec.clone() }.generate();
    Experiment {
        data: spec.generate(),
        hyper_kind: HyperKind::FeatureRidge { scale: 1.0 },
        global: false,
        x_test: test.x_train,
        t_test: test.t_train,
        corrupted: None,
        true_labels: None,
    }
}

/// Drives one run for `plan`, streaming its records to `out`; returns the first and last.
fn drive<B: bilevel_core::GlmBackend + 'static>(
    mut run: Run<'_, B>,
    plan: &Plan,
    out: &mut impl Write,
    name: &str,
) -> bilevel_core::Result<(Record, Record)> {
    // The same data-chosen α (and η, for stocBiO) the CLI uses: 0.5 / L̂ from power iteration.
    run.outer.set_auto_steps(AutoSteps { alpha: true, eta: true, ..AutoSteps::off() }.with_batch(Some(run.outer.hyper.batch_size)));
    let start = Instant::now();
    let now = move || start.elapsed().as_secs_f64();
    let mut first = None;
    let last = pollster::block_on(run.drive(plan, &now, &mut |event| {
        if let Event::Record(r) = event {
            first.get_or_insert_with(|| r.clone());
            let line = format!("{{\"alg\":{name:?},\"record\":{}}}", serde_json::to_string(r).expect("a record serialises"));
            writeln!(out, "{line}").map_err(|e| bilevel_core::Error::Output(e.to_string()))?;
        }
        Ok(())
    }))?;
    Ok((first.expect("the starting point is recorded"), last))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let be = CpuBackend::<f32>::new();
    let exp = problem();
    let hyper = Hyper { t: 10, q: 10, eta: 0.1, alpha: 0.1, beta: 0.05, batch_size: 64, val_batch_size: 64 };
    let plan = Plan::epochs(300);
    let path = std::env::temp_dir().join("custom_algorithm.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);

    // Your algorithm: a constructor for the problem the driver runs (the counted one).
    let h = hyper.clone();
    let mine = Run::with_algorithm(&be, &exp, move |be, p| T1T2::new(be, p, h), OuterOpt::adam(), 0)?;
    let (start, t1t2) = drive(mine, &plan, &mut out, "T1-T2")?;
    // A shipped one by name, on the same problem, seed and plan.
    let shipped = Run::new(&be, &exp, AlgKind::StocBiO, hyper, OuterOpt::adam(), 0)?;
    let (_, stocbio) = drive(shipped, &plan, &mut out, "stocBiO")?;
    out.flush()?;

    println!("start:   validation loss {:.4}, test accuracy {:.2} %", start.val_loss, 100.0 * start.test_acc);
    for (name, r) in [("T1-T2", &t1t2), ("stocBiO", &stocbio)] {
        let c = &r.oracle_counts;
        println!(
            "{name:8} validation loss {:.4}, test accuracy {:.2} % after {} iterations, {:.2} s ({} gradients, {} HVPs, {} J products)",
            r.val_loss,
            100.0 * r.test_acc,
            r.iter,
            r.time_s,
            c.inner_grads,
            c.hvps,
            c.jvps
        );
    }
    println!("records: {}", path.display());
    // T1–T2 makes no HVPs in its estimate (its only ones choose α), one J product per iteration.
    assert_eq!(t1t2.oracle_counts.jvps, plan.epochs as u64);
    assert!(t1t2.oracle_counts.hvps < stocbio.oracle_counts.hvps / 5, "T1–T2 should need far fewer HVPs than stocBiO");
    if !(t1t2.val_loss < start.val_loss - 0.05 && stocbio.val_loss < start.val_loss - 0.05) {
        return Err(format!(
            "no progress: validation loss {:.4} → T1-T2 {:.4}, stocBiO {:.4}",
            start.val_loss, t1t2.val_loss, stocbio.val_loss
        )
        .into());
    }
    Ok(())
}
