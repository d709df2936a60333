//! SABA (Dagréou, Ablin, Vaiter, Moreau, NeurIPS 2022, Algorithm 3): SOBA's single loop with
//! each of its five stochastic terms variance-reduced by SAGA, so that with constant steps it
//! converges like a full-batch method at the cost of a mini-batch one:
//!
//! ```text
//! pick a training batch i and a validation batch j
//! D_y = SAGA_i[∇_y g(x, y)]
//! D_v = SAGA_i[∇²_yy g(x, y) v] + SAGA_j[∇_y f(x, y)]
//! D_x = SAGA_i[∇²_xy g(x, y) v] + SAGA_j[∇_x f(x, y)]            (ĥ = D_x)
//! y ← y − ρ D_y;   v ← v − ρ D_v;   x ← x − γ D_x
//! SAGA_i[φ] = φ_i − m_i + m̄,  then m̄ ← m̄ + w_i (φ_i − m_i),  m_i ← φ_i
//! ```
//!
//! ρ is [`Hyper::alpha`] (the paper steps y and v alike), γ the outer loop's β; T and Q are not
//! used. The memory m holds one entry per *batch* of a fixed partition of each set into
//! consecutive batches ([`Sampler::train_slice`](crate::sampler::Sampler::train_slice)), as the
//! Benchopt bilevel benchmark's SABA does, with `w_i = |batch i| / n`. It costs
//! `⌈n/b⌉·(2·dim y + dim x) + ⌈m/b_v⌉·(dim y + dim x)` numbers ([`Saba::memory_len`]): on
//! 20 Newsgroups at `bilevel l2reg`'s batches of 100, 57 batches of each set, 1.9 GB in f32.
//! The memory starts as the paper's, every batch's terms at the starting point (an epoch of
//! oracle calls, made on the first step and counted); [`MemoryInit::Zero`] is Benchopt's
//! cheaper default.

use super::{Algorithm, Hyper, Step, Terms};
use crate::backend::{Backend, Coef, Rows};
use crate::problems::Problem;
use crate::sampler::Slice;

/// How SABA's memory starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MemoryInit {
    /// Every batch's terms at the starting point (the paper's): each direction is unbiased
    /// from the first step.
    #[default]
    Full,
    /// All zeros (the Benchopt benchmark's `mode_init_memory = "zero"`): no start-up epoch, but
    /// the directions are biased until every batch has been visited once.
    Zero,
}

/// One term's SAGA memory: an entry per batch and their weighted mean m̄.
struct Memory<B: Backend> {
    entries: Vec<B::Vector>,
    /// `|batch i| / n` for each batch.
    weights: Vec<f64>,
    mean: B::Vector,
}

impl<B: Backend> Memory<B> {
    /// Zeroed memory of `dim`-sized entries for a set of `n` rows cut into batches of `b`.
    fn new(be: &B, dim: usize, n: usize, b: usize, label: &str) -> Self {
        let slots = Slice::count(n, b);
        Memory {
            entries: (0..slots).map(|i| be.zeros(dim, &format!("{label}.m{i}"))).collect(),
            weights: (0..slots).map(|i| Slice::nth(i, n, b).rows.len() as f64 / n as f64).collect(),
            mean: be.zeros(dim, &format!("{label}.mean")),
        }
    }

    /// Stores `phi` as batch `i`'s entry (the memory's start).
    fn seed(&mut self, be: &B, i: usize, phi: &B::Vector) {
        be.copy(phi, &mut self.entries[i]);
        be.axpy(Coef::c(self.weights[i]), phi, &mut self.mean);
    }

    /// `phi ← phi − m_i + m̄` (the SAGA direction, in place), with the memory moved to `phi`.
    fn reduce(&mut self, be: &B, i: usize, phi: &mut B::Vector) {
        let w = self.weights[i];
        // Δ = φ − m_i;  m_i ← m_i + Δ = φ;  m̄ ← m̄ + w·Δ;  and φ − m_i + m̄_old = (1 − w)·Δ + m̄_new.
        be.axpy(Coef::c(-1.0), &self.entries[i], phi);
        be.axpy(Coef::c(1.0), phi, &mut self.entries[i]);
        be.axpy(Coef::c(w), phi, &mut self.mean);
        be.axpby(Coef::c(1.0), &self.mean, Coef::c(1.0 - w), phi);
    }
}

/// SABA's state: y's partner v, the five memories, the terms' workspaces and settings.
pub struct Saba<B: Backend> {
    hyper: Hyper,
    /// How the memory starts (read on the first step).
    pub init: MemoryInit,
    v: B::Vector,
    terms: Terms<B>,
    grad_g: Memory<B>,
    hvp: Memory<B>,
    cross: Memory<B>,
    grad_f_y: Memory<B>,
    grad_f_x: Memory<B>,
    started: bool,
}

impl<B: Backend> Saba<B> {
    /// Memories and workspaces sized for `p` and `hyper`'s batch sizes, v starting at 0, the
    /// memory started as the paper's ([`MemoryInit::Full`]).
    pub fn new<P: Problem<B>>(be: &B, p: &P, hyper: Hyper) -> Self {
        let (dx, dy, n, m) = (p.dim_x(), p.dim_y(), p.n_train(), p.n_val());
        let (b, bv) = (hyper.batch_size, hyper.val_batch_size);
        Saba {
            init: MemoryInit::Full,
            v: be.zeros(dy, "saba.v"),
            terms: Terms::zeros(be, p, "saba"),
            grad_g: Memory::new(be, dy, n, b, "saba.grad_g"),
            hvp: Memory::new(be, dy, n, b, "saba.hvp"),
            cross: Memory::new(be, dx, n, b, "saba.cross"),
            grad_f_y: Memory::new(be, dy, m, bv, "saba.grad_f_y"),
            grad_f_x: Memory::new(be, dx, m, bv, "saba.grad_f_x"),
            started: false,
            hyper,
        }
    }

    /// The numbers the memory holds (entries and means): what SABA costs beyond SOBA.
    pub fn memory_len(&self, be: &B) -> usize {
        [&self.grad_g, &self.hvp, &self.cross, &self.grad_f_y, &self.grad_f_x]
            .iter()
            .map(|m| (m.entries.len() + 1) * be.vector_len(&m.mean))
            .sum()
    }

    /// The paper's start: every batch's terms at (x, y, v).
    fn fill_memory<P: Problem<B>>(&mut self, be: &B, p: &P, x: &B::Vector, y: &B::Vector) {
        let (b, bv) = (self.hyper.batch_size, self.hyper.val_batch_size);
        for i in 0..self.grad_g.entries.len() {
            let rows = be.indices(&Slice::nth(i, p.n_train(), b).indices());
            self.terms.eval_g(be, p, [x, y, &self.v], Rows::Batch(&rows));
            self.grad_g.seed(be, i, &self.terms.grad_g);
            self.hvp.seed(be, i, &self.terms.hvp);
            self.cross.seed(be, i, &self.terms.cross);
        }
        for j in 0..self.grad_f_y.entries.len() {
            let rows = be.indices(&Slice::nth(j, p.n_val(), bv).indices());
            self.terms.eval_f(be, p, [x, y], Rows::Batch(&rows));
            self.grad_f_y.seed(be, j, &self.terms.grad_f_y);
            self.grad_f_x.seed(be, j, &self.terms.grad_f_x);
        }
    }
}

impl<B: Backend, P: Problem<B>> Algorithm<B, P> for Saba<B> {
    fn hyper_mut(&mut self) -> &mut Hyper {
        &mut self.hyper
    }

    fn inner_and_hypergradient(&mut self, be: &B, p: &P, step: Step<'_, B>) {
        let Step { x, y, h, rng, .. } = step;
        let Hyper { alpha: rho, batch_size, val_batch_size, .. } = self.hyper;
        if !self.started {
            self.started = true;
            if self.init == MemoryInit::Full {
                self.fill_memory(be, p, x, y);
            }
        }
        let i = rng.train_slice(p.n_train(), batch_size);
        let j = rng.val_slice(p.n_val(), val_batch_size);
        let (b_i, d_j) = (be.indices(&i.indices()), be.indices(&j.indices()));

        // The five terms at the current (x, y, v), each turned into its SAGA direction.
        let t = &mut self.terms;
        t.eval_g(be, p, [x, y, &self.v], Rows::Batch(&b_i));
        t.eval_f(be, p, [x, y], Rows::Batch(&d_j));
        self.grad_g.reduce(be, i.index, &mut t.grad_g);
        self.hvp.reduce(be, i.index, &mut t.hvp);
        self.cross.reduce(be, i.index, &mut t.cross);
        self.grad_f_y.reduce(be, j.index, &mut t.grad_f_y);
        self.grad_f_x.reduce(be, j.index, &mut t.grad_f_x);

        // D_x = SAGA[J v] + SAGA[∇_x f] is the hypergradient estimate; the outer loop steps x.
        be.copy(&t.cross, h);
        be.axpy(Coef::c(1.0), &t.grad_f_x, h);
        // y ← y − ρ D_y;  v ← v − ρ (SAGA[H v] + SAGA[∇_y f]).
        be.axpy(Coef::c(-rho), &t.grad_g, y);
        be.axpy(Coef::c(-rho), &t.hvp, &mut self.v);
        be.axpy(Coef::c(-rho), &t.grad_f_y, &mut self.v);
    }
}
