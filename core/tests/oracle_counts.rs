//! Every algorithm's oracle counts against its formula: a few outer iterations through
//! [`OuterLoop`] (which counts every oracle call, the reference stocBiO's validation-as-train
//! view included) on ridge regression, whose batch sizes divide its set sizes so every batch
//! is full.
//!
//! Notation: k outer iterations, T inner steps, Q Neumann terms or K CG/fixed-point/backprop
//! steps (`hessian_q`), B and B_v the training and validation batch sizes, n and m the training
//! and validation set sizes. `samples` is the sum over calls of the rows each read.

use bilevel_core::algorithms::stocbio::Reference;
use bilevel_core::algorithms::{AlgKind, Hyper};
use bilevel_core::cpu::CpuBackend;
use bilevel_core::outer::{OuterLoop, OuterOpt};
use bilevel_core::problems::counted::OracleCounts;
use bilevel_core::problems::ridge::{Ridge, RidgeData};

type Cpu = CpuBackend<f64>;

const N: u64 = 120;
const M: u64 = 90;
const B: u64 = 24;
const BV: u64 = 18;
const ITERS: u64 = 5;

fn hyper(t: usize, q: usize) -> Hyper {
    Hyper { t, q, eta: 0.5, alpha: 0.2, beta: 0.5, batch_size: B as usize, val_batch_size: BV as usize }
}

/// The counts after `ITERS` outer iterations of `alg`.
fn counts(alg: AlgKind, h: &Hyper) -> OracleCounts {
    let be = Cpu::new();
    let data = RidgeData::synthetic(N as usize, M as usize, 7, 0.4, 3);
    let p = Ridge::ridge(&be, &data);
    alg.check::<Cpu, _>(&p).unwrap();
    let mut run = OuterLoop::new(&be, p, alg, h.clone(), OuterOpt::Sgd { momentum: 0.0 }, 11).unwrap();
    for _ in 0..ITERS {
        run.estimate();
        run.update();
    }
    run.counts()
}

/// Counts of `per_iter` outer iterations' worth: (inner_grads, hvps, jvps, outer_grads, samples),
/// no loss evaluations (the algorithms evaluate none).
fn total(inner_grads: u64, hvps: u64, jvps: u64, outer_grads: u64, samples: u64) -> OracleCounts {
    OracleCounts { inner_grads, hvps, jvps, outer_grads, losses: 0, samples }
}

fn per_iter(inner_grads: u64, hvps: u64, jvps: u64, outer_grads: u64, samples: u64) -> OracleCounts {
    let k = ITERS;
    total(k * inner_grads, k * hvps, k * jvps, k * outer_grads, k * samples)
}

/// Counts of estimators evaluated at the current point every iteration and at the previous one
/// from the second iteration on: 2k − 1 evaluations of the per-point calls.
fn at_both_points(inner_grads: u64, hvps: u64, jvps: u64, outer_grads: u64, samples: u64) -> OracleCounts {
    let e = 2 * ITERS - 1;
    total(e * inner_grads, e * hvps, e * jvps, e * outer_grads, e * samples)
}

#[test]
fn deterministic_counts_match_their_formulas() {
    for (t, q) in [(4usize, 3usize), (20, 20), (7, 30)] {
        let h = hyper(t, q);
        let (t, q) = (t as u64, q as u64);
        let cases = [
            // stocBiO (paper): T inner steps on B rows, v_0 on B_v rows, Q HVPs and one J on B rows.
            (AlgKind::StocBiO, per_iter(t, q, 1, 1, (t + q + 1) * B + BV)),
            // stocBiO (reference, v1 and HEAD): T inner steps on training batches of B rows; v_0,
            // the Q HVPs and J on validation batches of B_v rows (the HVPs and J through the
            // validation-as-train view).
            (AlgKind::StocBiOReference(Reference::V1), per_iter(t, q, 1, 1, t * B + (q + 2) * BV)),
            (AlgKind::StocBiOReference(Reference::Head), per_iter(t, q, 1, 1, t * B + (q + 2) * BV)),
            // AID-CG: T full-batch inner steps, ∇_y f on all m rows, K CG HVPs and J on all n rows.
            (AlgKind::AidCg, per_iter(t, q, 1, 1, (t + q + 1) * N + M)),
            // AID-FP: the same calls: T inner steps, K fixed-point HVPs, one J.
            (AlgKind::AidFp, per_iter(t, q, 1, 1, (t + q + 1) * N + M)),
            // SOBA: one inner gradient, one HVP and one J on B rows each, ∇_y f on B_v rows.
            (AlgKind::Soba, per_iter(1, 1, 1, 1, 3 * B + BV)),
            // SABA: SOBA's calls each iteration, and first its memory's start: the three
            // training terms on each of the n/B batches and ∇f on each of the m/B_v ones.
            // SRBA, period q = ⌊(n + m)/(2B)⌋ = 4: every term on all rows at k = 0 and k = 4, the
            // terms at the current and the previous point on B and B_v rows otherwise.
            (AlgKind::Srba, {
                let q = (N + M) / (2 * B);
                let restarts = (0..ITERS).filter(|k| k % q == 0).count() as u64;
                let recursive = ITERS - restarts;
                total(
                    restarts + 2 * recursive,
                    restarts + 2 * recursive,
                    restarts + 2 * recursive,
                    restarts + 2 * recursive,
                    restarts * (3 * N + M) + recursive * 2 * (3 * B + BV),
                )
            }),
            (AlgKind::Saba, {
                let c = per_iter(1, 1, 1, 1, 3 * B + BV);
                let (slots, val_slots) = (N / B, M / BV);
                OracleCounts {
                    inner_grads: c.inner_grads + slots,
                    hvps: c.hvps + slots,
                    jvps: c.jvps + slots,
                    outer_grads: c.outer_grads + val_slots,
                    samples: c.samples + 3 * N + M,
                    ..c
                }
            }),
            // AmIGO: stocBiO's calls: T inner steps, Q v steps (one HVP each) and J on B rows,
            // ∇f on B_v rows.
            (AlgKind::Amigo, per_iter(t, q, 1, 1, (t + q + 1) * B + BV)),
            // MA-SOBA: SOBA's calls (the average costs none).
            (AlgKind::MaSoba, per_iter(1, 1, 1, 1, 3 * B + BV)),
            // MRBO: at the current point and, from the second iteration on, at the previous one
            // on the same batches: one inner gradient (B rows), ∇_y f (B_v), Q Neumann HVPs and
            // one J (B rows each), so k + (k − 1) evaluations of each.
            (AlgKind::Mrbo, at_both_points(1, q, 1, 1, (q + 2) * B + BV)),
            // HOAG: T gated inner steps (each computes its gradient), K gated CG steps, one more
            // HVP for the warm start's residual from the second outer iteration on, one J. The
            // tolerance only gates the steps, so the count does not depend on the data.
            (AlgKind::Hoag, {
                let c = per_iter(t, q, 1, 1, (t + q + 1) * N + M);
                OracleCounts { hvps: c.hvps + (ITERS - 1), samples: c.samples + (ITERS - 1) * N, ..c }
            }),
            // reverse: with K' = min(K, T) backpropagated steps and c = min(K', 8) checkpoints
            // every s = ⌈K'/c⌉ steps, the forward pass takes T steps, the backward pass K' HVPs,
            // K' J products and recomputes Σ_{i<K'} (i mod s) steps from the checkpoints.
            (AlgKind::Reverse, {
                let k = q.min(t);
                let s = k.div_ceil(k.min(8));
                let recomputed: u64 = (0..k).map(|i| i % s).sum();
                per_iter(t + recomputed, k, k, 1, (t + recomputed + 2 * k) * N + M)
            }),
            // BSA and TTSA with Q = 1 draw a truncation length q ~ U{0} = 0: no HVP. BSA: T inner
            // steps; TTSA: one. Then ∇_y f on B_v rows and J on B rows.
            (AlgKind::Bsa, per_iter(t, 0, 1, 1, (t + 1) * B + BV)),
            (AlgKind::Ttsa, per_iter(1, 0, 1, 1, 2 * B + BV)),
            // SUSTAIN with Q = 1: MRBO's calls with q = 0 HVPs.
            (AlgKind::Sustain, at_both_points(1, 0, 1, 1, 2 * B + BV)),
        ];
        for (alg, want) in cases {
            let h = if matches!(alg, AlgKind::Bsa | AlgKind::Ttsa | AlgKind::Sustain) { Hyper { q: 1, ..h.clone() } } else { h.clone() };
            assert_eq!(counts(alg, &h), want, "{alg} with T = {t}, Q = {}", h.q);
        }
    }
}

#[test]
fn randomly_truncated_neumann_counts_match_their_formulas() {
    // BSA and TTSA draw q_k ~ U{0, …, Q−1} HVPs per outer iteration, so only their sum H is
    // random: 0 ≤ H ≤ k (Q − 1), and every other count and the samples follow exactly from H
    // (BSA: k·T inner steps; TTSA: k; both k·(B_v + B) rows for ∇_y f and J, H·B for the HVPs).
    let (t, q) = (4u64, 6u64);
    let h = hyper(t as usize, q as usize);
    for (alg, inner_per_iter) in [(AlgKind::Bsa, t), (AlgKind::Ttsa, 1)] {
        let c = counts(alg, &h);
        assert!(c.hvps <= ITERS * (q - 1), "{alg}: {} HVPs exceed k (Q − 1)", c.hvps);
        assert!(c.hvps > 0, "{alg}: five draws of q ~ U{{0..5}} all 0 (seeded: not expected)");
        let want = total(ITERS * inner_per_iter, c.hvps, ITERS, ITERS, ITERS * (inner_per_iter * B + BV + B) + c.hvps * B);
        assert_eq!(c, want, "{alg}");
    }
}

#[test]
fn sustain_counts_match_their_formula() {
    // SUSTAIN draws q_k ~ U{0, …, Q−1} per iteration and runs q_k HVPs at the current point and,
    // from the second iteration on, q_k more at the previous one: 0 ≤ H ≤ (2k − 1)(Q − 1), and
    // every other count follows (2k − 1 inner gradients, ∇_y f and J; H·B HVP rows).
    let q = 6u64;
    let c = counts(AlgKind::Sustain, &hyper(1, q as usize));
    let e = 2 * ITERS - 1;
    assert!(c.hvps <= e * (q - 1), "SUSTAIN: {} HVPs exceed (2k − 1)(Q − 1)", c.hvps);
    assert!(c.hvps > 0, "SUSTAIN: five draws of q ~ U{{0..5}} all 0 (seeded: not expected)");
    assert_eq!(c, total(e, c.hvps, e, e, e * (2 * B + BV) + c.hvps * B));
}
