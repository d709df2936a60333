//! `bilevel meta`: few-shot meta-learning on Omniglot, miniImageNet or FC100 (SPEC §6) with
//! ITD-BiO, FO-ITD-BiO, ANIL or MAML. One JSON line per iteration (iter, time_s, train_loss, train_acc, test_acc) streamed
//! to `--out` as it goes, then a final line with the accuracy over at least `--final_tasks`
//! meta-test tasks and its 95 % confidence half-width.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bilevel_core::cpu::{CpuBackend, Threads};
use bilevel_core::data::episodes::{random_shift, sample_episode, split_classes, ImageSet};
use bilevel_core::data::pickle::FewShotSplit;
use bilevel_core::gpu::{GpuBackend, GpuOptions};
use bilevel_core::meta::train::{meta_train, IterRecord, LrSchedule, Split, TrainOptions};
use bilevel_core::meta::{Conv4, HostTasks, Learner, MetaAlg, MetaBackend, MetaConfig};
use bilevel_core::sampler::Sampler;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::common::{BackendArgs, BackendKind};
use crate::data::{DataArgs, Dataset, OMNIGLOT_SIZE};

#[derive(Args, Debug)]
#[command(rename_all = "snake_case")]
pub struct MetaArgs {
    /// ITD-BiO, FO-ITD-BiO, ANIL, MAML or FO-MAML (first-order MAML), case-insensitive.
    #[arg(long, default_value = "ITD-BiO")]
    alg: String,
    /// omniglot (the background-small subsets in ../shared/data/omniglot, split into classes by
    /// --val_classes and --test_classes), miniimagenet (learn2learn's
    /// mini-imagenet-cache-{train,validation,test}.pkl, 3×84×84) or fc100 (learn2learn's
    /// FC100_{train,val,test}.pickle, 3×32×32) in --data_dir or its miniimagenet/ or fc100/
    /// folder; those two keep their files' class splits.
    #[arg(long, default_value = "omniglot")]
    dataset: String,
    #[arg(long, default_value_t = 5)]
    ways: usize,
    #[arg(long, default_value_t = 1)]
    shots: usize,
    /// Query images per class (default: as many as shots, like the reference's KShots(2·shots)).
    #[arg(long)]
    queries: Option<usize>,
    #[arg(long, default_value_t = 32)]
    meta_batch: usize,
    /// N: inner (adaptation) steps.
    #[arg(long, default_value_t = 5)]
    inner_steps: usize,
    #[arg(long, default_value_t = 0.1)]
    inner_lr: f64,
    /// Adam's learning rate for the outer variables.
    #[arg(long, default_value_t = 0.002)]
    outer_lr: f64,
    /// ANIL's Adam learning rate for the head initialisation (default: --outer_lr).
    #[arg(long)]
    head_lr: Option<f64>,
    /// Outer iterations.
    #[arg(long, default_value_t = 1000)]
    iterations: usize,
    /// Stop training once this many seconds (training steps and per-iteration test adaptation) have passed.
    #[arg(long)]
    time_budget: Option<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Channels of every conv block (64 in the reference).
    #[arg(long, default_value_t = 64)]
    width: usize,
    /// Omniglot's image side after resizing (default 28; miniImageNet and FC100 keep their
    /// files' size).
    #[arg(long)]
    size: Option<usize>,
    /// Add each meta-training character rotated by 90, 180, 270 degrees as new classes (Omniglot).
    #[arg(long, default_value_t = false)]
    rotations: bool,
    /// Translate every meta-training image by a random offset of up to this many pixels in
    /// each direction (0: off, as the reference); meta-validation and meta-test images are never
    /// shifted.
    #[arg(long, default_value_t = 0)]
    shift: usize,
    /// Omniglot's characters held out for meta-validation and meta-test (default 40 and 60; the
    /// rest is meta-train).
    #[arg(long)]
    val_classes: Option<usize>,
    #[arg(long)]
    test_classes: Option<usize>,
    /// Meta-test tasks of the final evaluation (rounded up to whole meta-batches).
    #[arg(long, default_value_t = 600)]
    final_tasks: usize,
    /// Outer learning-rate schedule: constant (the reference's) or cosine (decayed to 0 over the
    /// iterations or the time budget).
    #[arg(long, value_enum, default_value = "constant", ignore_case = true)]
    lr_schedule: Schedule,
    /// Evaluate on meta-validation tasks every this many iterations and test the best model at
    /// the end instead of the last (0: off, as the reference).
    #[arg(long, default_value_t = 0)]
    val_every: usize,
    /// Meta-validation tasks per evaluation.
    #[arg(long, default_value_t = 160)]
    val_tasks: usize,
    /// Write the JSON lines here (flushed as they go).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    backend: BackendArgs,
    #[command(flatten)]
    data: DataArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Schedule {
    Constant,
    Cosine,
}

/// The meta-learning splits of the chosen data set: Omniglot's classes split by the seed,
/// miniImageNet's and FC100's the files' own (meta-validation read only when it is used).
fn meta_splits(args: &MetaArgs, dataset: Dataset) -> Result<(ImageSet, ImageSet, ImageSet)> {
    if dataset == Dataset::Omniglot {
        let set = args.data.omniglot(args.size.unwrap_or(OMNIGLOT_SIZE))?;
        let split = split_classes(set, args.val_classes.unwrap_or(40), args.test_classes.unwrap_or(60), args.seed)?;
        let train = if args.rotations { split.train.with_rotations() } else { split.train };
        return Ok((train, split.val, split.test));
    }
    let name = dataset.name();
    for (flag, given) in
        [("--val_classes", args.val_classes.is_some()), ("--test_classes", args.test_classes.is_some()), ("--rotations", args.rotations)]
    {
        if given {
            bail!("{flag} is for omniglot: {name} keeps its files' class splits and images");
        }
    }
    let train = args.data.pickled_split(dataset, FewShotSplit::Train)?;
    let test = args.data.pickled_split(dataset, FewShotSplit::Test)?;
    let val = if args.val_every > 0 {
        args.data.pickled_split(dataset, FewShotSplit::Validation)?
    } else {
        ImageSet { channels: test.channels, height: test.height, width: test.width, class_names: Vec::new(), images: Vec::new() }
    };
    for (file, set) in [("training", &train), ("validation", &val), ("test", &test)] {
        let shape = (set.channels, set.height, set.width);
        if set.num_classes() > 0 && shape != (train.channels, train.height, train.width) {
            bail!(
                "{name}'s {file} images are {shape:?} (channels, height, width), its training images {:?}",
                (train.channels, train.height, train.width)
            );
        }
    }
    if let Some(size) = args.size.filter(|&s| (s, s) != (train.height, train.width)) {
        bail!("--size {size}: {name}'s images are {}×{} (its files' own size; no resizing)", train.height, train.width);
    }
    Ok((train, val, test))
}

pub fn run(args: MetaArgs) -> Result<()> {
    let alg = MetaAlg::parse(&args.alg)?;
    let dataset = args
        .dataset
        .parse::<Dataset>()
        .ok()
        .filter(|d| matches!(d, Dataset::Omniglot | Dataset::MiniImagenet | Dataset::Fc100))
        .with_context(|| format!("unknown meta-learning dataset {:?} (expected omniglot, miniimagenet or fc100)", args.dataset))?;
    if args.shots == 0 {
        bail!("--shots must be at least 1");
    }
    let queries = args.queries.unwrap_or(args.shots);
    let (train, val, test) = meta_splits(&args, dataset)?;
    if 2 * args.shift >= train.height.min(train.width) {
        bail!(
            "--shift {} would move whole {}×{} images out of view (it must be less than half the side)",
            args.shift,
            train.height,
            train.width
        );
    }
    let mut checked = vec![("meta-train", &train), ("meta-test", &test)];
    if args.val_every > 0 {
        checked.push(("meta-validation", &val));
    }
    for (name, s) in checked {
        if s.num_classes() < args.ways {
            bail!("{}-way tasks need {} classes but the {name} split has {}", args.ways, args.ways, s.num_classes());
        }
        // Every other episode error (too few images per class, zero queries) before any output.
        sample_episode(s, args.ways, args.shots, queries, Sampler::new(0).rng()).with_context(|| format!("the {name} split"))?;
    }
    let cfg = MetaConfig {
        alg,
        net: Conv4 { channels: train.channels, height: train.height, width: train.width, hidden: args.width, blocks: 4, ways: args.ways },
        shots: args.shots,
        queries,
        meta_batch: args.meta_batch,
        inner_steps: args.inner_steps,
        inner_lr: args.inner_lr,
        outer_lr: args.outer_lr,
        head_lr: args.head_lr.unwrap_or(args.outer_lr),
        seed: args.seed,
    };
    cfg.validate()?;
    let job = MetaJob { cfg, dataset, train, val, test, args };
    match job.args.backend.kind() {
        BackendKind::Cpu => job.run(&CpuBackend::<f64>::new()),
        BackendKind::Cpu32 => job.run(&CpuBackend::<f32>::new()),
        BackendKind::Cpu32Avx2 => job.run(&CpuBackend::<f32>::new().without_avx512()),
        BackendKind::Cpu32OneThread => job.run(&CpuBackend::<f32>::new().threads(Threads::One)),
        BackendKind::Gpu => {
            let gpu = pollster::block_on(GpuBackend::new(&GpuOptions { adapter: job.args.backend.adapter.clone() }))?;
            job.run(&gpu)
        }
    }
}

struct MetaJob {
    cfg: MetaConfig,
    dataset: Dataset,
    train: ImageSet,
    val: ImageSet,
    test: ImageSet,
    args: MetaArgs,
}

impl MetaJob {
    fn run<B: MetaBackend>(self, be: &B) -> Result<()> {
        let MetaJob { cfg, dataset, train, val, test, args } = self;
        let mut out = match &args.out {
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
                }
                Some(BufWriter::new(File::create(path).with_context(|| format!("cannot create {}", path.display()))?))
            }
            None => None,
        };
        eprintln!(
            "meta: {} {}-way {}-shot on {}, {} (width {}, meta-batch {}, {} inner steps, {} train / {} test classes)",
            cfg.alg.name(),
            cfg.ways(),
            cfg.shots,
            dataset.name(),
            be.describe(),
            cfg.net.hidden,
            cfg.meta_batch,
            cfg.inner_steps,
            train.num_classes(),
            test.num_classes()
        );
        let mut learner = Learner::new(be, cfg.clone())?;
        // Episodes are drawn on the host from their own seeded stream, so every backend sees
        // the same tasks.
        let mut rng = Sampler::new(cfg.seed ^ 0x5eed_7a5c);
        // The shifts have a stream of their own, so the tasks drawn do not depend on --shift.
        let mut shift_rng = Sampler::new(cfg.seed ^ 0x5417_f700);
        let (ways, shots, queries, tasks) = (cfg.ways(), cfg.shots, cfg.queries, cfg.meta_batch);
        let sample = |split: Split| -> bilevel_core::Result<HostTasks> {
            let set = match split {
                Split::Train => &train,
                Split::Val => &val,
                Split::Test => &test,
            };
            let mut eps = (0..tasks)
                .map(|_| sample_episode(set, ways, shots, queries, rng.rng()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bilevel_core::Error::InvalidArgument(e.to_string()))?;
            if split == Split::Train {
                for e in &mut eps {
                    random_shift(&mut e.images, set.channels, set.height, set.width, args.shift, shift_rng.rng());
                }
            }
            HostTasks::from_episodes(&eps)
        };
        let bar = ProgressBar::new(args.iterations as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed_precise}]").unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let start = Instant::now();
        let opts = TrainOptions {
            iterations: args.iterations,
            time_budget_s: args.time_budget,
            final_tasks: args.final_tasks,
            schedule: match args.lr_schedule {
                Schedule::Constant => LrSchedule::Constant,
                Schedule::Cosine => LrSchedule::Cosine,
            },
            val_every: args.val_every,
            val_tasks: args.val_tasks,
        };
        let mut on_iter = |r: &IterRecord| -> bilevel_core::Result<()> {
            if let Some(w) = out.as_mut() {
                let line = serde_json::to_string(r).map_err(|e| bilevel_core::Error::InvalidArgument(e.to_string()))?;
                writeln!(w, "{line}")
                    .and_then(|_| w.flush())
                    .map_err(|e| bilevel_core::Error::InvalidArgument(format!("cannot write: {e}")))?;
            }
            bar.set_message(format!("train acc {:.1}% test acc {:.1}%", 100.0 * r.train_acc, 100.0 * r.test_acc));
            bar.inc(1);
            Ok(())
        };
        let fin = pollster::block_on(meta_train(be, &mut learner, &opts, sample, move || start.elapsed().as_secs_f64(), &mut on_iter));
        let fin = match fin {
            Ok(f) => f,
            Err(e) => {
                bar.abandon();
                return Err(e.into());
            }
        };
        bar.finish();
        let summary = json!({
            "final": true,
            "alg": cfg.alg.name(),
            "dataset": dataset.name(),
            "image_shape": [cfg.net.channels, cfg.net.height, cfg.net.width],
            "backend": be.describe(),
            "ways": cfg.ways(),
            "shots": cfg.shots,
            "queries": cfg.queries,
            "width": cfg.net.hidden,
            "meta_batch": cfg.meta_batch,
            "inner_steps": cfg.inner_steps,
            "inner_lr": cfg.inner_lr,
            "outer_lr": cfg.outer_lr,
            "rotations": args.rotations,
            "shift": args.shift,
            "seed": cfg.seed,
            "iterations": fin.iterations,
            "time_s": fin.time_s,
            "test_tasks": fin.test_tasks,
            "test_acc": fin.test_acc,
            "test_acc_ci95": fin.test_acc_ci95,
            "lr_schedule": format!("{:?}", args.lr_schedule).to_lowercase(),
            "val_every": args.val_every,
            "selected_iter": fin.selected_iter,
            "val_acc": fin.val_acc,
        });
        if let Some(w) = out.as_mut() {
            writeln!(w, "{summary}")?;
            w.flush()?;
        }
        println!("{summary}");
        Ok(())
    }
}
