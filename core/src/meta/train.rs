//! The meta-training loop (SPEC §6.5): per iteration one outer step on a meta-batch of training
//! tasks and the adaptation on a meta-batch of test tasks; the wall time counts both (as the
//! reference's `running_time`). At the end, the accuracy over at least `final_tasks` meta-test
//! tasks with its 95 % confidence half-width, outside the timed region.

use crate::data::episodes::Episode;
use crate::meta::learner::{HostTasks, Learner, TaskBatch};
use crate::meta::ops::MetaBackend;
use crate::{Error, Result};

/// Which part of the class split a meta-batch comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
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
    pub iterations: usize,
    /// Stop once this much training time (seconds) has passed, whatever `iterations` says.
    pub time_budget_s: Option<f64>,
    /// Meta-test tasks of the final evaluation (rounded up to whole meta-batches).
    pub final_tasks: usize,
}

/// One iteration's record (a JSON line of `bilevel meta`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct IterRecord {
    pub iter: usize,
    /// Cumulative wall time of training steps and per-iteration test adaptations.
    pub time_s: f64,
    /// Mean query cross-entropy and accuracy of the adapted models on the training tasks.
    pub train_loss: f64,
    pub train_acc: f64,
    /// Mean query accuracy on a meta-batch of meta-test tasks.
    pub test_acc: f64,
}

/// The final evaluation.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FinalRecord {
    pub iterations: usize,
    pub time_s: f64,
    pub test_tasks: usize,
    pub test_acc: f64,
    /// Half-width of the 95 % confidence interval of `test_acc` (1.96·sd/√tasks).
    pub test_acc_ci95: f64,
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
    for iter in 0..opts.iterations {
        if opts.time_budget_s.is_some_and(|b| elapsed >= b) {
            break;
        }
        let train = sample(Split::Train)?;
        let test = sample(Split::Test)?;
        let start = now();
        let batch = TaskBatch::upload(be, &train);
        learner.step(be, &batch);
        let (train_loss, train_acc) = learner.read_query(be).await?;
        let batch = TaskBatch::upload(be, &test);
        learner.evaluate(be, &batch);
        let (_, test_acc) = learner.read_query(be).await?;
        elapsed += now() - start;
        iterations = iter + 1;
        if !train_loss.is_finite() {
            return Err(Error::NonFinite { iter, quantity: "the meta-training loss".into() });
        }
        on_iter(&IterRecord { iter, time_s: elapsed, train_loss, train_acc: mean(&train_acc), test_acc: mean(&test_acc) })?;
    }
    let batches = opts.final_tasks.div_ceil(learner.cfg.meta_batch).max(1);
    let mut acc = Vec::with_capacity(batches * learner.cfg.meta_batch);
    for _ in 0..batches {
        let batch = TaskBatch::upload(be, &sample(Split::Test)?);
        learner.evaluate(be, &batch);
        acc.extend(learner.read_query(be).await?.1);
    }
    let (test_acc, test_acc_ci95) = mean_ci95(&acc);
    Ok(FinalRecord { iterations, time_s: elapsed, test_tasks: acc.len(), test_acc, test_acc_ci95 })
}
