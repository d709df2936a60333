//! stocBiO (Ji, Yang, Liang 2021, Algorithms 2 and 3). Paper mode (the default): fresh
//! mini-batches for every inner step, for every Neumann HVP and for the J product.
//!
//! ```text
//! for t = 1..T:  y ← y − α ∇_y g(x, y; S_t)
//! v_0 = ∇_y f(x, y; D_F)
//! v_Q = η Σ_{q=0..Q} Π_{j=Q+1−q..Q} (I − η ∇²_yy g(x, y; B_j)) v_0
//! ĥ   = ∇_x f(x, y; D_F) − ∇_x∇_y g(x, y; D_G) v_Q
//! ```
//!
//! The reference code's two versions are available for reproducing its published curves
//! (SPEC §2.4, §4), never by default: both cut shuffled train and validation sets into fixed
//! batch lists once, evaluate g's HVP and J on *validation* batches, and mis-scale the sum:
//! - [`Reference::Head`]: the first T training batches every epoch; validation batches 0, 1, 2 for
//!   v_0, the HVPs and J; `v_Q = η r_Q + Σ_{q=1..Q} r_q`.
//! - [`Reference::V1`] (made the 2020 figures): a random order of the training batches each outer
//!   step, random validation batches; `v_Q = η v_0 + Σ_{q=1..Q} r_q`.
//!
//! Both return `ĥ = −J[v_Q]` with no `∇_x f` term, as the reference code does (its problems'
//! f does not depend on x); on a problem whose f does, they miss that term by design.

use serde::Serialize;

use super::{inner_descent, neumann_hypergradient, Algorithm, Hyper, InnerSteps, NeumannBatches, NeumannSeries, NeumannWork, Point, Step};
use crate::backend::{Backend, Coef, Rows};
use crate::problems::{NeumannStep, Problem};
use crate::sampler::Sampler;

/// A version of the reference code's stocBiO (the paper's algorithm is the plain [`StocBiO`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Reference {
    /// The reference code at its 2020 version (the published figures).
    V1,
    /// The reference code at HEAD.
    Head,
}

/// stocBiO's workspaces (inner gradient, the Neumann terms and their sum), settings, and which
/// version runs: the paper's or one of the reference code's.
pub struct StocBiO<B: Backend> {
    hyper: Hyper,
    /// `None`: the paper's algorithm; else the reference code's version.
    reference: Option<Reference>,
    grad: B::Vector,
    /// r: the current Neumann term Π(I − ηH) v_0.
    r: B::Vector,
    hr: B::Vector,
    /// Σ_q r_q.
    sum: B::Vector,
    /// The reference code's fixed batch lists (reference versions), uploaded once.
    lists: Option<BatchLists<B>>,
}

/// Training and validation batch lists.
type BatchLists<B> = (Vec<<B as Backend>::Indices>, Vec<<B as Backend>::Indices>);

impl<B: Backend> StocBiO<B> {
    /// The paper's algorithm.
    pub fn new<P: Problem<B>>(be: &B, p: &P, hyper: Hyper) -> Self {
        Self::build(be, p, hyper, None)
    }

    /// The reference code's version `reference`. It needs g on validation batches
    /// ([`Problem::val_as_train`]); [`AlgKind::check`](super::AlgKind::check) refuses a problem
    /// without them, on which this would run the paper's algorithm.
    pub fn with_reference<P: Problem<B>>(be: &B, p: &P, hyper: Hyper, reference: Reference) -> Self {
        Self::build(be, p, hyper, Some(reference))
    }

    fn build<P: Problem<B>>(be: &B, p: &P, hyper: Hyper, reference: Option<Reference>) -> Self {
        let n = p.dim_y();
        StocBiO {
            hyper,
            reference,
            grad: be.zeros(n, "stocbio.grad"),
            r: be.zeros(n, "stocbio.r"),
            hr: be.zeros(n, "stocbio.hr"),
            sum: be.zeros(n, "stocbio.sum"),
            lists: None,
        }
    }

    /// The paper's algorithm.
    fn paper<P: Problem<B>>(&mut self, be: &B, p: &P, step: Step<'_, B>) {
        let Step { x, y, h, rng, .. } = step;
        let Hyper { t: big_t, q: big_q, eta, alpha, batch_size, val_batch_size, .. } = self.hyper;

        // Inner SGD from the warm start, a fresh training batch S_t per step.
        inner_descent(be, p, x, y, &mut self.grad, InnerSteps { steps: big_t, alpha, batch: Some(batch_size) }, rng);

        // v_0 = ∇_y f(x, y; D_F), the truncated Neumann series for H⁻¹ v_0 with a fresh training
        // batch B_j per HVP, and ĥ = ∇_x f − J_{D_G}[v_Q], v_Q = η Σ_q r_q (η folded into J's
        // scale). The batches in that order: D_F, B_1..B_Q, D_G.
        let d_f = be.indices(&rng.val_batch(p.n_val(), val_batch_size));
        let hvp = (0..big_q).map(|_| be.indices(&rng.train_batch(p.n_train(), batch_size))).collect();
        let d_g = be.indices(&rng.train_batch(p.n_train(), batch_size));
        let batches = NeumannBatches { d_f, hvp, d_g };
        let work = NeumannWork { r: &mut self.r, hr: &mut self.hr, sum: Some(&mut self.sum) };
        neumann_hypergradient(be, p, Point { x, y }, NeumannSeries { batches: &batches, eta, c: eta }, work, h);
    }

    /// The reference code's version `version` (see the module docs).
    fn reference_code<P: Problem<B>>(&mut self, be: &B, p: &P, version: Reference, val: &dyn Problem<B>, step: Step<'_, B>) {
        let Step { x, y, h, rng, .. } = step;
        let Hyper { t: big_t, q: big_q, eta, alpha, batch_size, val_batch_size, .. } = self.hyper;
        let (train_lists, val_lists) = self.lists.get_or_insert_with(|| {
            // Shuffle once, cut into consecutive batches (the last one partial).
            let cut = |rng: &mut Sampler, n: usize, bs: usize| -> Vec<B::Indices> {
                rng.permutation(n).chunks(bs.max(1)).map(|c| be.indices(c)).collect()
            };
            (cut(rng, p.n_train(), batch_size), cut(rng, p.n_val(), val_batch_size))
        });
        let (lt, lv) = (train_lists.len(), val_lists.len());
        // Batch order: HEAD takes the lists in order; v1 a fresh random order each outer step.
        let (train_order, val_order): (Vec<usize>, Vec<usize>) = match version {
            Reference::Head => ((0..lt).collect(), (0..lv).collect()),
            Reference::V1 => {
                (rng.permutation(lt).iter().map(|&i| i as usize).collect(), rng.permutation(lv).iter().map(|&i| i as usize).collect())
            }
        };
        // Which validation batch serves v_0, the HVPs and J (HEAD: 0, 1, 2; v1: pv[1], pv[0], pv[2]).
        let pick = |i: usize| &val_lists[val_order[i % lv]];
        let (v0_batch, hvp_batch, j_batch) = match version {
            Reference::Head => (pick(0), pick(1), pick(2)),
            Reference::V1 => (pick(1), pick(0), pick(2)),
        };

        for t in 0..big_t {
            p.inner_step(be, x, y, alpha, Rows::Batch(&train_lists[train_order[t % lt]]), &mut self.grad);
        }
        p.outer_grad_y(be, x, y, Rows::Batch(v0_batch), &mut self.r);
        // HEAD: S starts empty and v_Q = η r_Q + S;  v1: v_Q = η v_0 + S.
        match version {
            Reference::Head => be.fill(Coef::c(0.0), &mut self.sum),
            Reference::V1 => be.axpby(Coef::c(eta), &self.r, Coef::c(0.0), &mut self.sum),
        }
        for _ in 0..big_q {
            val.neumann_step(be, x, y, &mut self.r, NeumannStep { eta, rows: Rows::Batch(hvp_batch) }, &mut self.hr);
            be.axpy(Coef::c(1.0), &self.r, &mut self.sum);
        }
        if version == Reference::Head {
            be.axpy(Coef::c(eta), &self.r, &mut self.sum);
        }
        // ĥ = −J[v_Q]: no ∇_x f term, as in the reference code (see the module docs).
        val.mixed_jvp(be, x, y, &self.sum, Rows::Batch(j_batch), h);
        be.scale(Coef::c(-1.0), h);
    }
}

impl<B: Backend, P: Problem<B>> Algorithm<B, P> for StocBiO<B> {
    fn hyper_mut(&mut self) -> &mut Hyper {
        &mut self.hyper
    }

    fn inner_and_hypergradient(&mut self, be: &B, p: &P, step: Step<'_, B>) {
        // The reference versions need g on validation batches; a problem without it is refused
        // earlier (AlgKind::check).
        match self.reference.and_then(|version| Some((version, p.val_as_train()?))) {
            Some((version, val)) => self.reference_code(be, p, version, &*val, step),
            None => self.paper(be, p, step),
        }
    }
}
