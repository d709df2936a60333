//! What the four algorithms share: the configuration, a meta-batch of tasks resident on the
//! backend, the learner's state (outer variables and their Adam moments), and the dispatch to
//! each algorithm's meta-gradient.

use crate::backend::Coef;
use crate::meta::head::{Adaptation, HeadBackward, HeadShape};
use crate::meta::maml::MamlWork;
use crate::meta::model::{Activations, Conv4};
use crate::meta::ops::{MetaBackend, SumRows, View};
use crate::meta::{anil, fo_itd_bio, itd_bio, maml};
use crate::optim::{Adam, AdamSettings};
use crate::sampler::Sampler;
use crate::{Error, Result};

/// The meta-learning algorithms (SPEC §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum MetaAlg {
    /// Head adapted from one fixed random init; hypergradient through the whole adaptation.
    ItdBio,
    /// Head re-initialised randomly per task; the adaptation is not differentiated.
    FoItdBio,
    /// As ITD-BiO, and the head's initialisation is meta-learned too.
    Anil,
    /// All parameters adapted; second order through the whole network (or first order).
    Maml {
        /// FO-MAML: the adaptation is not differentiated (its Jacobian taken as the identity).
        first_order: bool,
    },
}

impl MetaAlg {
    /// Every algorithm, MAML and FO-MAML apart, in the order the CLI lists them.
    pub const ALL: [MetaAlg; 5] =
        [MetaAlg::ItdBio, MetaAlg::FoItdBio, MetaAlg::Anil, MetaAlg::Maml { first_order: false }, MetaAlg::Maml { first_order: true }];

    /// The display name, which [`MetaAlg::parse`] accepts.
    pub fn name(self) -> &'static str {
        match self {
            MetaAlg::ItdBio => "ITD-BiO",
            MetaAlg::FoItdBio => "FO-ITD-BiO",
            MetaAlg::Anil => "ANIL",
            MetaAlg::Maml { first_order: false } => "MAML",
            MetaAlg::Maml { first_order: true } => "FO-MAML",
        }
    }

    /// Parses a name as the CLI spells it (case-insensitive).
    pub fn parse(s: &str) -> Result<MetaAlg> {
        MetaAlg::ALL.into_iter().find(|a| a.name().eq_ignore_ascii_case(s)).ok_or_else(|| {
            Error::InvalidArgument(format!("unknown meta-learning algorithm {s:?} (ITD-BiO, FO-ITD-BiO, ANIL, MAML, FO-MAML)"))
        })
    }
}

/// Everything that defines a run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MetaConfig {
    /// The meta-learning algorithm.
    pub alg: MetaAlg,
    /// The network's shape (its `ways` is the tasks' number of classes).
    pub net: Conv4,
    /// Support images per class of a task (K of K-shot).
    pub shots: usize,
    /// Query images per class of a task.
    pub queries: usize,
    /// Tasks per meta-batch: the tasks one outer step averages over.
    pub meta_batch: usize,
    /// N: inner adaptation steps per task.
    pub inner_steps: usize,
    /// α: the inner adaptation's step size.
    pub inner_lr: f64,
    /// Adam's learning rate for the outer variables (the backbone; MAML's whole θ).
    pub outer_lr: f64,
    /// ANIL's learning rate for the head initialisation.
    pub head_lr: f64,
    /// Seed of the initialisation and of FO-ITD-BiO's random heads.
    pub seed: u64,
}

impl MetaConfig {
    /// Classes per task (N of N-way).
    pub fn ways(&self) -> usize {
        self.net.ways
    }
    /// Support images per task: ways × shots.
    pub fn support_rows(&self) -> usize {
        self.net.ways * self.shots
    }
    /// Query images per task: ways × queries.
    pub fn query_rows(&self) -> usize {
        self.net.ways * self.queries
    }
    /// The head's sizes for one meta-batch of this configuration.
    pub fn head_shape(&self) -> HeadShape {
        HeadShape { tasks: self.meta_batch, ns: self.support_rows(), nq: self.query_rows(), d: self.net.features(), ways: self.net.ways }
    }
    /// Rejects configurations no run can use: fewer than 2 ways, no support or query images,
    /// an empty meta-batch or network, images too small for the blocks, non-finite learning
    /// rates or a non-positive outer one.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if self.net.ways < 2 {
            return bad(format!("ways must be at least 2 (got {})", self.net.ways));
        }
        if self.shots == 0 || self.queries == 0 {
            return bad(format!("shots and queries must be positive (got {} and {})", self.shots, self.queries));
        }
        if self.meta_batch == 0 || self.net.hidden == 0 {
            return bad("meta_batch and width must be positive".into());
        }
        if self.net.features() == 0 {
            return bad(format!("images of {}×{} are too small for {} conv blocks", self.net.height, self.net.width, self.net.blocks));
        }
        if !(self.inner_lr.is_finite() && self.outer_lr.is_finite() && self.head_lr.is_finite()) || self.outer_lr <= 0.0 {
            return bad("learning rates must be finite and the outer one positive".into());
        }
        Ok(())
    }
}

/// A meta-batch of tasks on the host: per task, its support images then its query images
/// (class-major, as `data::episodes::Episode` stores them), and their labels in the same order.
#[derive(Clone, Debug)]
pub struct HostTasks {
    /// Tasks in the meta-batch.
    pub tasks: usize,
    /// Support images per task.
    pub ns: usize,
    /// Query images per task.
    pub nq: usize,
    /// Entries of one image (channels × height × width, NCHW).
    pub image_len: usize,
    /// `tasks × (ns + nq) × image_len` pixel values.
    pub images: Vec<f32>,
    /// The class (0..ways) of each image, `tasks × (ns + nq)`.
    pub labels: Vec<u32>,
}

/// A meta-batch resident on the backend: all images of each task together (the head-only
/// algorithms forward support and query at once, so BN statistics cover both), support and
/// query images apart (MAML adapts on the support alone), and the labels as reals.
pub struct TaskBatch<B: MetaBackend> {
    /// Tasks in the meta-batch.
    pub tasks: usize,
    /// Every image, per task its support then its query images.
    pub images: B::Vector,
    /// The support images alone, task by task.
    pub support: B::Vector,
    /// The query images alone, task by task.
    pub query: B::Vector,
    /// The support images' classes, as reals.
    pub labels_s: B::Vector,
    /// The query images' classes, as reals.
    pub labels_q: B::Vector,
}

impl<B: MetaBackend> TaskBatch<B> {
    /// Uploads a host meta-batch. Panics if `h.images` does not hold `tasks × (ns + nq)` images
    /// ([`HostTasks::from_episodes`] builds consistent ones).
    pub fn upload(be: &B, h: &HostTasks) -> Self {
        let n = h.ns + h.nq;
        assert_eq!(h.images.len(), h.tasks * n * h.image_len, "HostTasks: image buffer length");
        let part = |range: std::ops::Range<usize>, per: usize| -> Vec<f64> {
            (0..h.tasks).flat_map(|t| h.images[(t * n + range.start) * per..(t * n + range.end) * per].iter().map(|&v| v as f64)).collect()
        };
        let labels = |range: std::ops::Range<usize>| -> Vec<f64> {
            (0..h.tasks).flat_map(|t| h.labels[t * n + range.start..t * n + range.end].iter().map(|&v| v as f64)).collect()
        };
        TaskBatch {
            tasks: h.tasks,
            images: be.vector_from(&part(0..n, h.image_len), "meta images"),
            support: be.vector_from(&part(0..h.ns, h.image_len), "meta support images"),
            query: be.vector_from(&part(h.ns..n, h.image_len), "meta query images"),
            labels_s: be.vector_from(&labels(0..h.ns), "meta support labels"),
            labels_q: be.vector_from(&labels(h.ns..n), "meta query labels"),
        }
    }
}

/// The outer variables at one point of training.
pub struct Snapshot<B: MetaBackend> {
    theta: B::Vector,
    head: B::Vector,
}

/// Buffers of the head-only algorithms (ITD-BiO, FO-ITD-BiO, ANIL) for one meta-batch size.
pub(crate) struct HeadOnlyWork<B: MetaBackend> {
    /// The backbone's activations on all images of the meta-batch.
    pub act: Activations<B>,
    /// The heads' adaptation record.
    pub ad: Adaptation<B>,
    /// Scratch of the head-level hypergradient.
    pub hb: HeadBackward<B>,
}

/// The learner: outer variables, their optimiser state, and scratch buffers.
pub struct Learner<B: MetaBackend> {
    /// The run's configuration.
    pub cfg: MetaConfig,
    /// ITD-BiO, FO-ITD-BiO, ANIL: the backbone φ. MAML: θ = [backbone | head].
    pub theta: B::Vector,
    /// ITD-BiO: the fixed initial head; ANIL: the learned one; unused otherwise.
    pub head: B::Vector,
    /// The meta-gradients, written by [`Learner::meta_gradient`].
    pub grad_theta: B::Vector,
    /// ANIL's meta-gradient of the head initialisation (unused otherwise).
    pub grad_head: B::Vector,
    /// FO-ITD-BiO's per-task random heads (drawn on the host, seeded).
    pub random_heads: B::Vector,
    /// The seeded stream the initialisation and the random heads are drawn from.
    pub rng: Sampler,
    /// Factor on the outer learning rates (a schedule's; 1 by default).
    pub lr_scale: f64,
    opt_theta: Adam<B>,
    opt_head: Adam<B>,
    pub(crate) head_only: Option<HeadOnlyWork<B>>,
    pub(crate) maml: Option<MamlWork<B>>,
    pub(crate) fbar: B::Vector,
}

impl<B: MetaBackend> Learner<B> {
    /// A fresh learner: backbone and head drawn per SPEC §6.2 from `cfg.seed`.
    pub fn new(be: &B, cfg: MetaConfig) -> Result<Self> {
        cfg.validate()?;
        let net = cfg.net;
        let mut rng = Sampler::new(cfg.seed);
        let backbone = net.init_backbone(&mut rng);
        let head = net.init_head(&mut rng);
        let maml = matches!(cfg.alg, MetaAlg::Maml { .. });
        let theta: Vec<f64> = if maml { backbone.iter().chain(&head).copied().collect() } else { backbone };
        let s = cfg.head_shape();
        Ok(Learner {
            theta: be.vector_from(&theta, "meta theta"),
            head: be.vector_from(&head, "meta head init"),
            grad_theta: be.zeros(theta.len(), "meta grad theta"),
            grad_head: be.zeros(net.head_len(), "meta grad head"),
            random_heads: be.zeros(s.tasks * net.head_len(), "meta random heads"),
            opt_theta: Adam::new(be, theta.len(), "meta.theta", AdamSettings::default()),
            opt_head: Adam::new(be, net.head_len(), "meta.head", AdamSettings::default()),
            head_only: None,
            maml: None,
            fbar: be.zeros(if maml { 0 } else { s.tasks * (s.ns + s.nq) * s.d }, "meta feature grad"),
            rng,
            lr_scale: 1.0,
            cfg,
        })
    }

    /// A copy of the outer variables (for keeping the best model seen on meta-validation).
    pub fn snapshot(&self, be: &B) -> Snapshot<B> {
        let mut snap = Snapshot {
            theta: be.zeros(be.vector_len(&self.theta), "meta best theta"),
            head: be.zeros(be.vector_len(&self.head), "meta best head"),
        };
        self.save(be, &mut snap);
        snap
    }

    /// Overwrites `snap` with the current outer variables.
    pub fn save(&self, be: &B, snap: &mut Snapshot<B>) {
        be.copy(&self.theta, &mut snap.theta);
        be.copy(&self.head, &mut snap.head);
    }

    /// Puts the outer variables of `snap` back (the optimiser's moments are left as they are).
    pub fn restore(&mut self, be: &B, snap: &Snapshot<B>) {
        be.copy(&snap.theta, &mut self.theta);
        be.copy(&snap.head, &mut self.head);
    }

    /// Draws FO-ITD-BiO's per-task heads (PyTorch's Linear init), on the host, seeded.
    pub(crate) fn draw_random_heads(&mut self, be: &B) {
        let heads: Vec<f64> = (0..self.cfg.meta_batch).flat_map(|_| self.cfg.net.init_head(&mut self.rng)).collect();
        self.random_heads = be.vector_from(&heads, "meta random heads");
    }

    fn check_batch(&self, batch: &TaskBatch<B>) {
        assert_eq!(batch.tasks, self.cfg.meta_batch, "a task batch must hold meta_batch tasks");
    }

    /// The meta-gradient on `batch` into `grad_theta` (and `grad_head` for ANIL), scaled as the
    /// mean over tasks of each task's mean query cross-entropy. Query statistics of the adapted
    /// models are left in [`Learner::query_stats`].
    pub fn meta_gradient(&mut self, be: &B, batch: &TaskBatch<B>) {
        self.check_batch(batch);
        match self.cfg.alg {
            MetaAlg::ItdBio => itd_bio::meta_gradient(be, self, batch),
            MetaAlg::FoItdBio => fo_itd_bio::meta_gradient(be, self, batch),
            MetaAlg::Anil => anil::meta_gradient(be, self, batch),
            MetaAlg::Maml { first_order } => maml::meta_gradient(be, self, batch, first_order),
        }
    }

    /// One outer step: the meta-gradient, then Adam on the outer variables.
    pub fn step(&mut self, be: &B, batch: &TaskBatch<B>) {
        self.meta_gradient(be, batch);
        self.opt_theta.step(be, &self.grad_theta, &mut self.theta, self.lr_scale * self.cfg.outer_lr);
        if self.cfg.alg == MetaAlg::Anil {
            self.opt_head.step(be, &self.grad_head, &mut self.head, self.lr_scale * self.cfg.head_lr);
        }
    }

    /// Adaptation only (no meta-gradient): the adapted models' query statistics.
    pub fn evaluate(&mut self, be: &B, batch: &TaskBatch<B>) {
        self.check_batch(batch);
        match self.cfg.alg {
            MetaAlg::Maml { .. } => maml::adapt_and_query(be, self, batch),
            alg => {
                if alg == MetaAlg::FoItdBio {
                    self.draw_random_heads(be);
                }
                itd_bio::adapt_and_query(be, self, batch, alg == MetaAlg::FoItdBio);
            }
        }
    }

    /// Per task: the mean query cross-entropy and the number of correct query predictions
    /// (after [`Learner::meta_gradient`], [`Learner::step`] or [`Learner::evaluate`]).
    pub fn query_stats(&self) -> &B::Vector {
        match (&self.head_only, &self.maml) {
            (Some(w), _) if !matches!(self.cfg.alg, MetaAlg::Maml { .. }) => &w.ad.stats_q,
            (_, Some(m)) => &m.stats_q,
            _ => panic!("query_stats before any adaptation"),
        }
    }

    /// Reads the query statistics: (mean loss, accuracy per task).
    pub async fn read_query(&self, be: &B) -> Result<(f64, Vec<f64>)> {
        let st = be.read_vector(self.query_stats()).await?;
        let nq = self.cfg.query_rows() as f64;
        let loss = st.chunks(2).map(|c| c[0]).sum::<f64>() / (st.len() / 2) as f64;
        Ok((loss, st.chunks(2).map(|c| c[1] / nq).collect()))
    }
}

/// `out ← Σ_t x_t` for `tasks` blocks of `len` entries (a shared variable's gradient from
/// per-task ones).
pub(crate) fn sum_tasks<B: MetaBackend>(be: &B, tasks: usize, len: usize, x: &B::Vector, out: &mut B::Vector) {
    be.sum_rows(SumRows { tasks: 1, rows: tasks, cols: len, alpha: 1.0, beta: 0.0 }, View::shared(x), crate::meta::ViewMut::shared(out));
}

/// `out_t ← x` for every task (a shared variable broadcast into per-task blocks).
pub(crate) fn broadcast<B: MetaBackend>(be: &B, tasks: usize, len: usize, x: &B::Vector, out: &mut B::Vector) {
    be.fill(Coef::c(0.0), out);
    be.add_row_bias(1, tasks, len, View::shared(x), crate::meta::ViewMut::shared(out));
}
