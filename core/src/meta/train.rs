//! The meta-training loop (SPEC §6.5): per iteration one outer step on a meta-batch of training
//! tasks and the adaptation on a meta-batch of test tasks; the wall time counts both (as the
//! reference's `running_time`). At the end, the accuracy over at least `final_tasks` meta-test
//! tasks with its 95 % confidence half-width, outside the timed region.
//!
//! Two options the reference does not have, both off by default: a cosine decay of the outer
//! learning rates over the run, and model selection on meta-validation classes (every
//! `val_every` iterations the model is evaluated on `val_tasks` meta-validation tasks, inside the
//! timed region; the final evaluation then uses the best one seen, never chosen on test tasks).

use crate::data::episodes::Episode;
use crate::meta::learner::{HostTasks, Learner, Snapshot, TaskBatch};
use crate::meta::ops::MetaBackend;
use crate::{Error, Result};

/// Which part of the class split a meta-batch comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Meta-training classes: the outer steps' tasks.
    Train,
    /// Meta-validation classes: model selection only.
    Val,
    /// Meta-test classes: the reported accuracies.
    Test,
}

/// How the outer learning rates change over the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum LrSchedule {
    /// The configured learning rates throughout (the reference's).
    Constant,
    /// `lr · ½(1 + cos(π p))` at progress p ∈ [0, 1] (of the iterations or of the time budget,
    /// whichever is further along).
    Cosine,
}

impl HostTasks {
    /// One meta-batch from episodes of equal shape (support then query each, as sampled).
    pub fn from_episodes(episodes: &[Episode]) -> Result<HostTasks> {
        let first = episodes.first().ok_or_else(|| Error::InvalidArgument("a meta-batch needs at least one task".into()))?;
        let (ns, nq) = (first.support_len(), first.query_len());
        let n = ns + nq;
        let image_len = first.images.len() / n.max(1);
        if episodes.iter().any(|e| e.support_len() != ns || e.query_len() != nq || e.images.len() != n * image_len) {
            return Err(Error::InvalidArgument("episodes of one meta-batch differ in shape".into()));
        }
        Ok(HostTasks {
            tasks: episodes.len(),
            ns,
            nq,
            image_len,
            images: episodes.iter().flat_map(|e| e.images.iter().copied()).collect(),
            labels: episodes.iter().flat_map(|e| e.labels.iter().copied()).collect(),
        })
    }
}

/// How long to train and how to evaluate.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Outer iterations (meta-batches) to train for, at most.
    pub iterations: usize,
    /// Stop once this much training time (seconds) has passed, whatever `iterations` says.
    pub time_budget_s: Option<f64>,
    /// Meta-test tasks of the final evaluation (rounded up to whole meta-batches).
    pub final_tasks: usize,
    /// How the outer learning rates change over the run.
    pub schedule: LrSchedule,
    /// Evaluate on meta-validation tasks every this many iterations (and after the last) and
    /// keep the best model for the final evaluation; 0: never (the final model is evaluated).
    pub val_every: usize,
    /// Meta-validation tasks per evaluation (rounded up to whole meta-batches).
    pub val_tasks: usize,
}

impl TrainOptions {
    /// The reference's loop: constant learning rate, no model selection.
    pub fn plain(iterations: usize, time_budget_s: Option<f64>, final_tasks: usize) -> Self {
        TrainOptions { iterations, time_budget_s, final_tasks, schedule: LrSchedule::Constant, val_every: 0, val_tasks: 0 }
    }
}

/// One iteration's record (a JSON line of `bilevel meta`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct IterRecord {
    /// The iteration, 0-based.
    pub iter: usize,
    /// Cumulative wall time of training steps and per-iteration test adaptations.
    pub time_s: f64,
    /// Mean query cross-entropy of the adapted models on the training tasks.
    pub train_loss: f64,
    /// Mean query accuracy of the adapted models on the training tasks.
    pub train_acc: f64,
    /// Mean query accuracy on a meta-batch of meta-test tasks.
    pub test_acc: f64,
    /// Mean query accuracy on the meta-validation tasks, at the iterations that evaluate them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_acc: Option<f64>,
}

/// The final evaluation.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FinalRecord {
    /// Iterations trained (fewer than asked when the time budget ran out).
    pub iterations: usize,
    /// Total training wall time in seconds (the final evaluation excluded).
    pub time_s: f64,
    /// Meta-test tasks evaluated.
    pub test_tasks: usize,
    /// Mean query accuracy over them.
    pub test_acc: f64,
    /// Half-width of the 95 % confidence interval of `test_acc` (1.96·sd/√tasks).
    pub test_acc_ci95: f64,
    /// With model selection: the iteration (0-based, after its step) of the evaluated model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selected_iter: Option<usize>,
    /// With model selection: that model's meta-validation accuracy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_acc: Option<f64>,
}

/// The mean per-task query accuracy of the current model over `tasks` tasks of `split`
/// (rounded up to whole meta-batches), and the per-task accuracies.
async fn accuracy<B: MetaBackend>(
    be: &B,
    learner: &mut Learner<B>,
    tasks: usize,
    split: Split,
    sample: &mut impl FnMut(Split) -> Result<HostTasks>,
) -> Result<Vec<f64>> {
    let batches = tasks.div_ceil(learner.cfg.meta_batch).max(1);
    let mut acc = Vec::with_capacity(batches * learner.cfg.meta_batch);
    for _ in 0..batches {
        let batch = TaskBatch::upload(be, &sample(split)?);
        learner.evaluate(be, &batch);
        acc.extend(learner.read_query(be).await?.1);
    }
    Ok(acc)
}

/// Mean and 95 % confidence half-width of per-task accuracies.
pub fn mean_ci95(acc: &[f64]) -> (f64, f64) {
    let n = acc.len() as f64;
    let mean = acc.iter().sum::<f64>() / n;
    let var = acc.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, 1.96 * (var / n).sqrt())
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Runs the meta-training. `sample` draws a meta-batch of tasks from a split; `now` is a clock in
/// seconds (the caller's: `Instant` natively, `performance.now()` in a browser); `on_iter` sees
/// every iteration's record as it completes.
pub async fn meta_train<B: MetaBackend>(
    be: &B,
    learner: &mut Learner<B>,
    opts: &TrainOptions,
    mut sample: impl FnMut(Split) -> Result<HostTasks>,
    now: impl Fn() -> f64,
    mut on_iter: impl FnMut(&IterRecord) -> Result<()>,
) -> Result<FinalRecord> {
    let mut elapsed = 0.0;
    let mut iterations = 0;
    // Model selection: the best meta-validation accuracy, its iteration and a copy of the model.
    let mut best: Option<(f64, usize, Snapshot<B>)> = None;
    for iter in 0..opts.iterations {
        if opts.time_budget_s.is_some_and(|b| elapsed >= b) {
            break;
        }
        learner.lr_scale = match opts.schedule {
            LrSchedule::Constant => 1.0,
            LrSchedule::Cosine => {
                let by_iter = iter as f64 / opts.iterations as f64;
                let by_time = opts.time_budget_s.map_or(0.0, |b| elapsed / b);
                0.5 * (1.0 + (std::f64::consts::PI * by_iter.max(by_time).min(1.0)).cos())
            }
        };
        let train = sample(Split::Train)?;
        let test = sample(Split::Test)?;
        let start = now();
        let batch = TaskBatch::upload(be, &train);
        learner.step(be, &batch);
        let (train_loss, train_acc) = learner.read_query(be).await?;
        let batch = TaskBatch::upload(be, &test);
        learner.evaluate(be, &batch);
        let (_, test_acc) = learner.read_query(be).await?;
        if !train_loss.is_finite() {
            return Err(Error::NonFinite { iter, quantity: "the meta-training loss".into() });
        }
        // Validate every val_every iterations and after what may be the last one.
        let last = iter + 1 == opts.iterations || opts.time_budget_s.is_some_and(|b| elapsed + now() - start >= b);
        let val_acc = if opts.val_every > 0 && ((iter + 1) % opts.val_every == 0 || last) {
            let val = mean(&accuracy(be, learner, opts.val_tasks, Split::Val, &mut sample).await?);
            match &mut best {
                Some((acc, at, snap)) if val > *acc => {
                    (*acc, *at) = (val, iter);
                    learner.save(be, snap);
                }
                Some(_) => {}
                None => best = Some((val, iter, learner.snapshot(be))),
            }
            Some(val)
        } else {
            None
        };
        elapsed += now() - start;
        iterations = iter + 1;
        on_iter(&IterRecord { iter, time_s: elapsed, train_loss, train_acc: mean(&train_acc), test_acc: mean(&test_acc), val_acc })?;
    }
    let selected = best.map(|(acc, at, snap)| {
        learner.restore(be, &snap);
        (at, acc)
    });
    let acc = accuracy(be, learner, opts.final_tasks, Split::Test, &mut sample).await?;
    let (test_acc, test_acc_ci95) = mean_ci95(&acc);
    Ok(FinalRecord {
        iterations,
        time_s: elapsed,
        test_tasks: acc.len(),
        test_acc,
        test_acc_ci95,
        selected_iter: selected.map(|s| s.0),
        val_acc: selected.map(|s| s.1),
    })
}
