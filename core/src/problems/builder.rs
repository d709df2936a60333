//! A GLM bilevel problem from a user's own data: a loss × a kind of hyperparameter × the data
//! (dense or CSR, from slices, svmlight or CSV). The shipped problems are instances of it
//! ([`ProblemKind::builder`](super::ProblemKind::builder)).
//!
//! ```
//! use bilevel_core::backend::{HostMatrix, LossKind};
//! use bilevel_core::data::Labeled;
//! use bilevel_core::problems::builder::GlmBuilder;
//!
//! // Four samples with two features, labels 3 and 7: binary classes mapped to 0/1 in order.
//! let x = HostMatrix::Dense { rows: 4, cols: 2, data: vec![0.0, 1.0, 1.0, 0.0, 0.5, 0.5, 1.0, 1.0] };
//! let split = Labeled { x, labels: vec![3.0, 7.0, 3.0, 7.0] };
//! let built = GlmBuilder::new(LossKind::Softmax).per_sample_weights(1e-3).with_bias().build(split.clone(), split)?;
//! assert_eq!(built.data.classes, 2);
//! assert_eq!(built.data.t_train, vec![0.0, 1.0, 0.0, 1.0]);
//! assert_eq!(built.data.x_train.shape(), (4, 3)); // the bias column appended
//! assert_eq!(built.class_labels, vec![3.0, 7.0]);
//! # Ok::<(), bilevel_core::Error>(())
//! ```

use super::glm::{Glm, GlmData, HyperKind};
use super::tied::Tied;
use super::{with_bias, Problem};
use crate::backend::{GlmBackend, HostMatrix, LossKind};
use crate::data::Labeled;
use crate::experiment::Experiment;
use crate::{Error, Result};

/// How a per-feature penalty `(s/2) Σ_j e^{λ_j} ‖W_j‖²` is scaled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum RegScale {
    /// s = 1: a sum over features (the papers').
    Sum,
    /// s = 1/(d·c): the mean over the d × c weights (the 20 Newsgroups reference code's).
    Mean,
}

/// The hyperparameters x of a GLM problem.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum Hyperparameters {
    /// One L2 strength per feature, λ ∈ R^d (ridge, ijcnn1, 20 Newsgroups).
    PerFeatureL2(RegScale),
    /// One weight σ(λ_i) per training sample, λ ∈ R^n, with a fixed `ρ‖W‖²` (hyper-cleaning).
    PerSampleWeights {
        /// ρ: the strength of the inner problem's `ρ‖W‖²`.
        rho: f64,
    },
    /// One L2 strength for all features, λ ∈ R (the per-feature penalty with its λ's tied:
    /// [`Tied::global`]).
    GlobalL2(RegScale),
}

/// A problem's data on the host, ready for [`Glm::new`](super::glm::Glm::new).
#[derive(Clone, Debug)]
pub struct Built {
    /// Features and targets of both splits, targets in the loss's encoding.
    pub data: GlmData,
    /// The hyperparameters and regulariser (for one global L2, the per-feature one that
    /// [`Built::problem`] ties).
    pub hyper_kind: HyperKind,
    /// Whether the per-feature hyperparameters are tied into one.
    pub global: bool,
    /// For classification, the original label of each class index (sorted): target `k` stands
    /// for `class_labels[k]`.
    pub class_labels: Vec<f64>,
}

impl Built {
    /// The problem resident on `be`: the GLM, its per-feature hyperparameters tied into one
    /// when [`Built::global`].
    pub fn problem<B: GlmBackend + 'static>(&self, be: &B) -> Box<dyn Problem<B>> {
        resident(be, &self.data, self.hyper_kind, self.global)
    }
}

/// The GLM of `data` resident on `be`, its per-feature hyperparameters tied into one when
/// `global`: what [`Built::problem`] and [`Experiment::problem`] build.
pub(crate) fn resident<B: GlmBackend + 'static>(be: &B, data: &GlmData, hyper_kind: HyperKind, global: bool) -> Box<dyn Problem<B>> {
    let glm = Glm::new(be, data, hyper_kind);
    if global {
        Box::new(Tied::global(be, glm))
    } else {
        Box::new(glm)
    }
}

/// Builds a GLM bilevel problem from labelled splits. The default hyperparameters are one L2
/// strength per feature, summed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GlmBuilder {
    loss: LossKind,
    hyper: Hyperparameters,
    bias: bool,
}

impl GlmBuilder {
    /// A problem with loss `loss`: `Squared` (real targets), `Logistic` (labels ±1 or 0/1),
    /// `Softmax` (integer labels, any values: mapped to 0..c−1 in sorted order).
    pub fn new(loss: LossKind) -> Self {
        GlmBuilder { loss, hyper: Hyperparameters::PerFeatureL2(RegScale::Sum), bias: false }
    }

    /// One L2 strength per feature, scaled as `scale` says.
    pub fn per_feature_l2(self, scale: RegScale) -> Self {
        GlmBuilder { hyper: Hyperparameters::PerFeatureL2(scale), ..self }
    }

    /// One L2 strength shared by all features, scaled as `scale` says.
    pub fn global_l2(self, scale: RegScale) -> Self {
        GlmBuilder { hyper: Hyperparameters::GlobalL2(scale), ..self }
    }

    /// One weight per training sample, with the fixed penalty `ρ‖W‖²_F`.
    pub fn per_sample_weights(self, rho: f64) -> Self {
        GlmBuilder { hyper: Hyperparameters::PerSampleWeights { rho }, ..self }
    }

    /// Appends a constant-1 feature to every split (an intercept).
    pub fn with_bias(self) -> Self {
        GlmBuilder { bias: true, ..self }
    }

    /// The training and validation splits as a problem. The validation set may have fewer
    /// features than the training set (a file whose last features are all zero), not more;
    /// labels the loss cannot take are errors naming the sample.
    pub fn build(&self, train: Labeled, val: Labeled) -> Result<Built> {
        let (n, d) = train.x.shape();
        let (m, dv) = val.x.shape();
        if n == 0 || m == 0 {
            return Err(Error::InvalidArgument(format!("empty split: {n} training and {m} validation samples")));
        }
        if dv > d {
            return Err(Error::InvalidArgument(format!(
                "dimension mismatch: the validation set has {dv} features but the training set only {d}"
            )));
        }
        if let Hyperparameters::PerSampleWeights { rho } = self.hyper {
            if !(rho.is_finite() && rho >= 0.0) {
                return Err(Error::InvalidArgument(format!("the weight penalty ρ must be a finite non-negative number, got {rho}")));
            }
        }
        let val = val.with_cols(d);
        let class_labels = self.classes(&train.labels, &val.labels)?;
        let t_train = self.targets(&train.labels, &class_labels, "training")?;
        let t_val = self.targets(&val.labels, &class_labels, "validation")?;
        let classes = class_labels.len().max(1);
        let (x_train, x_val) = (self.features(train.x), self.features(val.x));
        let d = x_train.shape().1;
        let hyper_kind = match self.hyper {
            Hyperparameters::PerFeatureL2(RegScale::Sum) | Hyperparameters::GlobalL2(RegScale::Sum) => {
                HyperKind::FeatureRidge { scale: 1.0 }
            }
            Hyperparameters::PerFeatureL2(RegScale::Mean) | Hyperparameters::GlobalL2(RegScale::Mean) => {
                HyperKind::FeatureRidge { scale: 1.0 / (d * classes) as f64 }
            }
            Hyperparameters::PerSampleWeights { rho } => HyperKind::SampleWeights { rho },
        };
        let global = matches!(self.hyper, Hyperparameters::GlobalL2(_));
        Ok(Built { data: GlmData { x_train, t_train, x_val, t_val, loss: self.loss, classes }, hyper_kind, global, class_labels })
    }

    /// [`GlmBuilder::build`] with a test split, encoded with the training classes (a test
    /// label the other splits never show is an error): what a
    /// [`Run`](crate::experiment::Run) solves and evaluates, for every hyperparameter kind.
    pub fn experiment(&self, train: Labeled, val: Labeled, test: Labeled) -> Result<Experiment> {
        let Built { data, hyper_kind, class_labels, global } = self.build(train, val)?;
        let d = data.x_train.shape().1 - self.bias as usize;
        if test.x.shape().1 > d {
            return Err(Error::InvalidArgument(format!("the test set has {} features but the training set only {d}", test.x.shape().1)));
        }
        let t_test = self.targets(&test.labels, &class_labels, "test")?;
        let x_test = self.features(test.with_cols(d).x);
        Ok(Experiment { data, hyper_kind, global, x_test, t_test, corrupted: None, true_labels: None })
    }

    /// The sorted distinct labels of a classification problem (empty for regression).
    fn classes(&self, train: &[f64], val: &[f64]) -> Result<Vec<f64>> {
        match self.loss {
            LossKind::Squared | LossKind::Logistic => Ok(Vec::new()),
            LossKind::Softmax => {
                let mut classes: Vec<f64> = Vec::new();
                for (i, &y) in train.iter().chain(val).enumerate() {
                    if y.fract() != 0.0 {
                        return Err(Error::InvalidArgument(format!("sample {}: multiclass labels must be integers, got {y}", i + 1)));
                    }
                    classes.push(y);
                }
                classes.sort_by(f64::total_cmp);
                classes.dedup();
                Ok(classes)
            }
        }
    }

    /// Labels in the loss's encoding: real values, 0/1, or class indices.
    fn targets(&self, labels: &[f64], classes: &[f64], which: &str) -> Result<Vec<f64>> {
        let bad = |i: usize, what: &str, y: f64| Error::InvalidArgument(format!("{which} sample {}: {what}, got {y}", i + 1));
        labels
            .iter()
            .enumerate()
            .map(|(i, &y)| match self.loss {
                LossKind::Squared => Ok(y),
                LossKind::Logistic => match y {
                    1.0 => Ok(1.0),
                    -1.0 | 0.0 => Ok(0.0),
                    _ => Err(bad(i, "logistic (logreg) labels must be ±1 (or 0/1)", y)),
                },
                LossKind::Softmax => classes
                    .binary_search_by(|c| c.total_cmp(&y))
                    .map(|k| k as f64)
                    .map_err(|_| bad(i, "a class the training and validation sets do not have", y)),
            })
            .collect()
    }

    /// A split's features as the problem stores them: with the bias column if asked for, dense
    /// or CSR by density.
    fn features(&self, x: HostMatrix) -> HostMatrix {
        if self.bias {
            with_bias(&x)
        } else {
            x.by_density()
        }
    }
}
