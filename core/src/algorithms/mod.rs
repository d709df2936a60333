//! Hypergradient algorithms, one file each, written against [`Backend`] and [`Problem`] only.
//! Each implements [`Algorithm`]: T inner steps from the warm start, then a hypergradient
//! estimate. The shared outer update lives in [`crate::outer`].

pub mod aid_cg;
pub mod stocbio;

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::backend::Backend;
use crate::problems::Problem;
use crate::sampler::Sampler;
use crate::{Error, Result};

/// The algorithms' settings, with the paper's names.
#[derive(Clone, Debug, Serialize)]
pub struct Hyper {
    /// T: inner steps per outer iteration (warm-started).
    pub t: usize,
    /// Q: Neumann terms of stocBiO; K: CG iterations of AID-CG (`--hessian_q`).
    pub q: usize,
    /// η: Neumann step size.
    pub eta: f64,
    /// α: inner step size.
    pub alpha: f64,
    /// β: outer step size.
    pub beta: f64,
    /// Mini-batch size for the training-set oracles (stocBiO).
    pub batch_size: usize,
    /// Mini-batch size for the validation-set oracle (stocBiO's D_F).
    pub val_batch_size: usize,
}

impl Hyper {
    /// Rejects settings no run can use: non-positive or non-finite step sizes, zero counts.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [("eta", self.eta), ("inner_lr", self.alpha), ("outer_lr", self.beta)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::InvalidArgument(format!("--{name} must be a positive finite number, got {v}")));
            }
        }
        for (name, v) in [("T", self.t), ("hessian_q", self.q), ("batch_size", self.batch_size), ("val_batch_size", self.val_batch_size)] {
            if v == 0 {
                return Err(Error::InvalidArgument(format!("--{name} must be at least 1")));
            }
        }
        Ok(())
    }
}

/// One outer iteration's inner loop and hypergradient estimate.
pub trait Algorithm<B: Backend, P: Problem<B>> {
    /// Runs the inner loop on `y` (warm start) at hyperparameters `x`, then writes the
    /// hypergradient estimate into `h`. Enqueues work only: nothing is read back.
    fn inner_and_hypergradient(&mut self, be: &B, p: &P, x: &B::Vector, y: &mut B::Vector, h: &mut B::Vector, rng: &mut Sampler);
}

/// The algorithms by name (names as in the reference code, parsed case-insensitively).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum AlgKind {
    #[serde(rename = "stocBiO")]
    StocBiO,
    #[serde(rename = "AID-CG")]
    AidCg,
}

impl AlgKind {
    pub const ALL: [AlgKind; 2] = [AlgKind::StocBiO, AlgKind::AidCg];

    pub fn name(self) -> &'static str {
        match self {
            AlgKind::StocBiO => "stocBiO",
            AlgKind::AidCg => "AID-CG",
        }
    }

    /// A fresh instance with workspaces sized for `p`.
    pub fn build<B: Backend + 'static, P: Problem<B>>(self, be: &B, p: &P, hyper: &Hyper) -> Box<dyn Algorithm<B, P>> {
        match self {
            AlgKind::StocBiO => Box::new(stocbio::StocBiO::new(be, p, hyper.clone())),
            AlgKind::AidCg => Box::new(aid_cg::AidCg::new(be, p, hyper.clone())),
        }
    }
}

impl fmt::Display for AlgKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AlgKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        AlgKind::ALL.into_iter().find(|a| a.name().eq_ignore_ascii_case(s)).ok_or_else(|| {
            let names: Vec<_> = AlgKind::ALL.iter().map(|a| a.name()).collect();
            Error::InvalidArgument(format!("unknown algorithm {s:?} (expected one of: {})", names.join(", ")))
        })
    }
}
