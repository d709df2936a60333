//! The public oracle checker (`bilevel_core::check`): every shipped problem configuration passes
//! it in f64 (dense and sparse, all rows and a mini-batch, with and without an outer penalty),
//! in f32 on the CPU and on the GPU with the f32 settings; and it fails, on the oracle at fault,
//! for a problem with one wrong oracle. A new problem is added to `setups()` here.

mod common;

use bilevel_core::backend::LossKind;
use bilevel_core::check::{CheckOptions, Oracle, OracleReport};
use bilevel_core::cpu::CpuBackend;
use bilevel_core::problems::glm::{Glm, GlmData, HyperKind};
use bilevel_core::problems::ridge::RidgeData;
use bilevel_core::problems::synthetic::SyntheticSpec;
use bilevel_core::problems::{NeumannStep, Problem};
use bilevel_core::sampler::Sampler;
use bilevel_core::{check_oracles, check_oracles_with, Backend, Error, GlmBackend, Rows};
use common::{block, gpu, randn};

type Cpu = CpuBackend<f64>;

/// Every problem configuration, as data: ridge, logreg (ijcnn1-like), multilogreg on sparse data
/// (20news, both regulariser scalings), and hyper-cleaning (per-sample weights, bias column);
/// each also with an outer penalty (μ/2)‖λ‖², which makes f depend on λ.
fn configurations() -> Vec<(String, GlmData, HyperKind, f64)> {
    let spec = |loss, classes, nnz, bias, seed| SyntheticSpec {
        n_train: 37,
        n_val: 29,
        features: 13,
        classes,
        loss,
        nnz_per_row: nnz,
        bias,
        seed,
    };
    let plain: Vec<(&str, GlmData, HyperKind)> = vec![
        ("ridge", RidgeData::synthetic(37, 29, 13, 0.3, 7).glm(), HyperKind::FeatureRidge { scale: 1.0 }),
        ("logreg", spec(LossKind::Logistic, 1, None, false, 8).generate(), HyperKind::FeatureRidge { scale: 1.0 }),
        ("multilogreg sparse", spec(LossKind::Softmax, 4, Some(5), false, 9).generate(), HyperKind::FeatureRidge { scale: 1.0 }),
        (
            "multilogreg sparse, mean-scaled",
            spec(LossKind::Softmax, 4, Some(5), false, 10).generate(),
            HyperKind::FeatureRidge { scale: 1.0 / 52.0 },
        ),
        ("hyperclean", spec(LossKind::Softmax, 3, None, true, 11).generate(), HyperKind::SampleWeights { rho: 0.05 }),
    ];
    plain
        .into_iter()
        .flat_map(|(name, data, hyper)| {
            [(name.to_string(), data.clone(), hyper, 0.0), (format!("{name}, outer penalty"), data, hyper, 0.37)]
        })
        .collect()
}

/// A configuration on a backend, at a seeded random point (λ, W).
struct Setup<B: GlmBackend> {
    name: String,
    p: Glm<B>,
    lam: Vec<f64>,
    w: Vec<f64>,
}

fn setups<B: GlmBackend>(be: &B) -> Vec<Setup<B>> {
    configurations()
        .into_iter()
        .map(|(name, data, hyper, mu)| {
            let p = Glm::new(be, &data, hyper).with_outer_penalty(mu);
            let mut s = Sampler::new(99);
            let lam = randn(&mut s, p.dim_x(), 0.7);
            let w = randn(&mut s, p.dim_y(), 1.0);
            Setup { name, p, lam, w }
        })
        .collect()
}

/// Every (oracle, rows) a full report has: each oracle on all rows and on the batch.
fn assert_complete(report: &OracleReport, what: &str) {
    for oracle in Oracle::ALL {
        let rows: Vec<&str> = report.checks.iter().filter(|c| c.oracle == oracle).map(|c| c.rows.as_str()).collect();
        assert!(rows.contains(&"all rows") && rows.iter().any(|r| r.starts_with("batch of")), "{what}: {oracle} checked on {rows:?}");
    }
}

#[test]
fn every_problem_passes_in_f64_at_the_default_and_a_strict_tolerance() {
    let be = Cpu::new();
    for s in setups(&be) {
        let report = block(check_oracles(&s.p, &be, &s.lam, &s.w)).unwrap();
        assert!(report.passed(), "{}:\n{report}", s.name);
        assert_complete(&report, &s.name);
        // The view with the validation set as training set is checked too, where it exists.
        let has_view = s.p.val_as_train().is_some();
        assert_eq!(report.checks.iter().any(|c| c.rows.starts_with("val_as_train")), has_view, "{}", s.name);
        // Central differences in f64 are good to ~1e-10; a tolerance of 1e-8 still passes.
        let strict = CheckOptions { tolerance: 1e-8, seed: 5, batch: Some(11), ..CheckOptions::default() };
        let report = block(check_oracles_with(&s.p, &be, &s.lam, &s.w, &strict)).unwrap();
        assert!(report.passed(), "{} (tolerance 1e-8):\n{report}", s.name);
        assert!(report.worst().unwrap().error > 0.0, "{}: differences are never exact", s.name);
    }
}

#[test]
fn every_problem_passes_in_f32_on_the_cpu_with_the_f32_settings() {
    let be = CpuBackend::<f32>::new();
    for s in setups(&be) {
        let report = block(check_oracles_with(&s.p, &be, &s.lam, &s.w, &CheckOptions::for_f32())).unwrap();
        assert!(report.passed(), "{}:\n{report}", s.name);
        assert_complete(&report, &s.name);
    }
}

#[test]
fn glm_problems_pass_on_the_gpu_with_the_f32_settings() {
    let be = gpu();
    for s in setups(&be).into_iter().filter(|s| s.name.starts_with("logreg") || s.name.starts_with("hyperclean")) {
        let report = block(check_oracles_with(&s.p, &be, &s.lam, &s.w, &CheckOptions::for_f32())).unwrap();
        assert!(report.passed(), "{} on {}:\n{report}", s.name, be.describe());
        assert_complete(&report, &s.name);
    }
}

#[test]
fn the_report_is_a_table_with_a_verdict() {
    let be = Cpu::new();
    let s = setups(&be).remove(0);
    let report = block(check_oracles(&s.p, &be, &s.lam, &s.w)).unwrap();
    let text = report.to_string();
    let lines: Vec<&str> = text.lines().collect();
    // A title, a header, one line per check, the verdict.
    assert_eq!(lines.len(), report.checks.len() + 3, "{text}");
    assert!(lines.last().unwrap().starts_with("passed: all"), "{text}");
    // Aligned: every check's error starts in the header's column (counted in characters: the
    // references hold ⟨⟩ and Greek letters).
    let column = lines[1].chars().count() - lines[1][lines[1].find("rel. error").unwrap()..].chars().count();
    for (line, check) in lines[2..lines.len() - 1].iter().zip(&report.checks) {
        assert!(line.starts_with(&format!("  {}", check.oracle)), "{line}");
        let at: String = line.chars().skip(column).take(9).collect();
        assert_eq!(at.trim_end(), format!("{:.2e}", check.error), "{line}");
    }
}

#[test]
fn wrong_lengths_and_bad_options_are_errors() {
    let be = Cpu::new();
    let s = setups(&be).remove(0);
    let short = &s.lam[1..];
    let run = |x: &[f64], y: &[f64], o: &CheckOptions| block(check_oracles_with(&s.p, &be, x, y, o));
    let message = |r: bilevel_core::Result<OracleReport>| match r {
        Err(Error::InvalidArgument(m)) => m,
        other => panic!("expected an invalid-argument error, got {other:?}"),
    };
    let d = CheckOptions::default();
    assert!(message(run(short, &s.w, &d)).contains("dim_x"));
    assert!(message(run(&s.lam, &s.w[..3], &d)).contains("dim_y"));
    let mut nan = s.w.clone();
    nan[2] = f64::NAN;
    assert!(message(run(&s.lam, &nan, &d)).contains("y[2]"));
    assert!(message(run(&s.lam, &s.w, &CheckOptions { fd_step: 0.0, ..d.clone() })).contains("fd_step"));
    assert!(message(run(&s.lam, &s.w, &CheckOptions { tolerance: f64::NAN, ..d.clone() })).contains("tolerance"));
    assert!(message(run(&s.lam, &s.w, &CheckOptions { directions: 0, ..d.clone() })).contains("directions"));
    assert!(message(run(&s.lam, &s.w, &CheckOptions { batch: Some(0), ..d })).contains("batch"));
}

/// One oracle gone wrong, the rest forwarded.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// `inner_grad` 1 % too large.
    InnerGrad,
    /// `inner_grad` adding into `out` instead of overwriting it.
    InnerGradAccumulates,
    /// `inner_hvp` plus an asymmetric rank-one term `0.1 e₀ e₁ᵀ v`.
    InnerHvp,
    /// `mixed_jvp` 1 % too large.
    Mixed,
    /// `outer_grad_y` 1 % too large.
    OuterY,
    /// `add_outer_grad_x` adding 1e-3 too much to its first entry.
    OuterX,
    /// `add_outer_grad_x` overwriting `out` instead of adding to it.
    OuterXOverwrites,
    /// `inner_step` moving the first entry 1e-3 too far.
    InnerStep,
    /// `neumann_step` moving the first entry 1e-3 too far.
    NeumannStep,
}

struct Faulty<'a> {
    p: &'a Glm<Cpu>,
    fault: Fault,
}

impl Problem<Cpu> for Faulty<'_> {
    fn dim_x(&self) -> usize {
        self.p.dim_x()
    }
    fn dim_y(&self) -> usize {
        self.p.dim_y()
    }
    fn n_train(&self) -> usize {
        self.p.n_train()
    }
    fn n_val(&self) -> usize {
        self.p.n_val()
    }
    fn inner_grad(&self, be: &Cpu, x: &Vec<f64>, y: &Vec<f64>, rows: Rows<'_, Vec<u32>>, out: &mut Vec<f64>) {
        match self.fault {
            Fault::InnerGradAccumulates => {
                let mut g = vec![0.0; out.len()];
                self.p.inner_grad(be, x, y, rows, &mut g);
                out.iter_mut().zip(g).for_each(|(o, g)| *o += g);
            }
            _ => self.p.inner_grad(be, x, y, rows, out),
        }
        if self.fault == Fault::InnerGrad {
            out.iter_mut().for_each(|o| *o *= 1.01);
        }
    }
    fn inner_hvp(&self, be: &Cpu, x: &Vec<f64>, y: &Vec<f64>, v: &Vec<f64>, rows: Rows<'_, Vec<u32>>, out: &mut Vec<f64>) {
        self.p.inner_hvp(be, x, y, v, rows, out);
        if self.fault == Fault::InnerHvp {
            out[0] += 0.1 * v[1];
        }
    }
    fn mixed_jvp(&self, be: &Cpu, x: &Vec<f64>, y: &Vec<f64>, v: &Vec<f64>, rows: Rows<'_, Vec<u32>>, out: &mut Vec<f64>) {
        self.p.mixed_jvp(be, x, y, v, rows, out);
        if self.fault == Fault::Mixed {
            out.iter_mut().for_each(|o| *o *= 1.01);
        }
    }
    fn outer_grad_y(&self, be: &Cpu, x: &Vec<f64>, y: &Vec<f64>, rows: Rows<'_, Vec<u32>>, out: &mut Vec<f64>) {
        self.p.outer_grad_y(be, x, y, rows, out);
        if self.fault == Fault::OuterY {
            out.iter_mut().for_each(|o| *o *= 1.01);
        }
    }
    fn add_outer_grad_x(&self, be: &Cpu, x: &Vec<f64>, y: &Vec<f64>, rows: Rows<'_, Vec<u32>>, out: &mut Vec<f64>) {
        if self.fault == Fault::OuterXOverwrites {
            out.iter_mut().for_each(|o| *o = 0.0);
        }
        self.p.add_outer_grad_x(be, x, y, rows, out);
        if self.fault == Fault::OuterX {
            out[0] += 1e-3;
        }
    }
    fn inner_step(&self, be: &Cpu, x: &Vec<f64>, y: &mut Vec<f64>, alpha: f64, rows: Rows<'_, Vec<u32>>, scratch: &mut Vec<f64>) {
        self.p.inner_step(be, x, y, alpha, rows, scratch);
        if self.fault == Fault::InnerStep {
            y[0] += 1e-3;
        }
    }
    fn neumann_step(
        &self,
        be: &Cpu,
        x: &Vec<f64>,
        y: &Vec<f64>,
        r: &mut Vec<f64>,
        step: NeumannStep<'_, Vec<u32>>,
        scratch: &mut Vec<f64>,
    ) {
        self.p.neumann_step(be, x, y, r, step, scratch);
        if self.fault == Fault::NeumannStep {
            r[0] += 1e-3;
        }
    }
    fn inner_loss(&self, be: &Cpu, x: &Vec<f64>, y: &Vec<f64>, rows: Rows<'_, Vec<u32>>, out: &std::cell::Cell<f64>) {
        self.p.inner_loss(be, x, y, rows, out)
    }
    fn outer_loss(&self, be: &Cpu, x: &Vec<f64>, y: &Vec<f64>, rows: Rows<'_, Vec<u32>>, out: &std::cell::Cell<f64>) {
        self.p.outer_loss(be, x, y, rows, out)
    }
}

/// On every configuration (with the outer penalty, so ∇_x f is not zero), the `fault` makes the
/// report fail on every rows of each `failing` oracle (others may fail with them), while the oracles in `unaffected` (those
/// whose references do not go through the faulty one) still pass.
fn assert_fault_caught(fault: Fault, failing: &[Oracle], unaffected: &[Oracle]) {
    let be = Cpu::new();
    for s in setups(&be).into_iter().filter(|s| s.name.ends_with("outer penalty")) {
        let p = Faulty { p: &s.p, fault };
        let report = block(check_oracles(&p, &be, &s.lam, &s.w)).unwrap();
        let what = format!("{} with {fault:?}", s.name);
        assert!(!report.passed(), "{what}: the report should fail:\n{report}");
        assert_complete(&report, &what);
        assert!(!report.worst().unwrap().passed, "{what}: the worst check is a failure: {:?}", report.worst());
        for c in &report.checks {
            if failing.contains(&c.oracle) {
                assert!(!c.passed, "{what}: {} ({}) should fail:\n{report}", c.oracle, c.rows);
            }
            if unaffected.contains(&c.oracle) {
                assert!(c.passed, "{what}: {} ({}) should pass:\n{report}", c.oracle, c.rows);
            }
        }
        assert!(report.to_string().lines().last().unwrap().starts_with("FAILED"), "{report}");
    }
}

use Oracle::*;

#[test]
fn a_wrong_inner_gradient_fails_its_check() {
    // The HVP, J and descent-step references are built on the gradient: they fail with it.
    assert_fault_caught(Fault::InnerGrad, &[InnerGrad], &[HvpSymmetry, OuterGradY, OuterGradX, OuterGradXAdds, NeumannStep]);
}

#[test]
fn an_oracle_that_adds_into_its_output_fails_on_a_named_non_finite_value() {
    // Outputs start as NaN: an oracle that reads its output instead of overwriting it shows.
    assert_fault_caught(Fault::InnerGradAccumulates, &[InnerGrad], &[OuterGradY, OuterGradX, OuterGradXAdds]);
    let be = Cpu::new();
    let s = setups(&be).remove(0);
    let report = block(check_oracles(&Faulty { p: &s.p, fault: Fault::InnerGradAccumulates }, &be, &s.lam, &s.w)).unwrap();
    let c = report.checks.iter().find(|c| c.oracle == InnerGrad).unwrap();
    assert_eq!(c.non_finite.as_deref(), Some("non-finite inner_grad output"));
    assert!(c.error.is_infinite() && !c.passed);
    assert!(report.to_string().contains("FAIL: non-finite inner_grad output"), "{report}");
}

#[test]
fn a_wrong_hessian_vector_product_fails_its_check_and_symmetry() {
    assert_fault_caught(
        Fault::InnerHvp,
        &[InnerHvp, HvpSymmetry],
        &[InnerGrad, MixedJvp, OuterGradY, OuterGradX, OuterGradXAdds, InnerStep],
    );
}

#[test]
fn a_wrong_mixed_product_fails_its_check() {
    let others: Vec<Oracle> = Oracle::ALL.into_iter().filter(|&o| o != MixedJvp).collect();
    assert_fault_caught(Fault::Mixed, &[MixedJvp], &others);
}

#[test]
fn a_wrong_outer_y_gradient_fails_its_check() {
    let others: Vec<Oracle> = Oracle::ALL.into_iter().filter(|&o| o != OuterGradY).collect();
    assert_fault_caught(Fault::OuterY, &[OuterGradY], &others);
}

#[test]
fn a_wrong_outer_x_gradient_fails_its_check() {
    let others: Vec<Oracle> = Oracle::ALL.into_iter().filter(|&o| o != OuterGradX).collect();
    assert_fault_caught(Fault::OuterX, &[OuterGradX], &others);
}

#[test]
fn an_outer_x_gradient_that_overwrites_fails_the_adding_check() {
    let others: Vec<Oracle> = Oracle::ALL.into_iter().filter(|&o| o != OuterGradXAdds).collect();
    assert_fault_caught(Fault::OuterXOverwrites, &[OuterGradXAdds], &others);
}

#[test]
fn a_wrong_fused_inner_step_fails_its_check() {
    let others: Vec<Oracle> = Oracle::ALL.into_iter().filter(|&o| o != InnerStep).collect();
    assert_fault_caught(Fault::InnerStep, &[InnerStep], &others);
}

#[test]
fn a_wrong_fused_neumann_step_fails_its_check() {
    let others: Vec<Oracle> = Oracle::ALL.into_iter().filter(|&o| o != NeumannStep).collect();
    assert_fault_caught(Fault::NeumannStep, &[NeumannStep], &others);
}
