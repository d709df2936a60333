//! The real data sets for the CLI: where their files are (`--data_dir`, `$BILEVEL_DATA_DIR`, or the
//! defaults `data/` for MNIST and `../shared/data` for the others, looked up from the current
//! folder and from the repository the executable was built in), and `bilevel data-info`.
//! miniImageNet and FC100 are learn2learn's pickles, which the user brings (see
//! [`bilevel_core::data::pickle`]).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use anyhow::{bail, Result};
use bilevel_core::backend::HostMatrix;
use bilevel_core::data::episodes::ImageSet;
use bilevel_core::data::idx::{self, Mnist, HYPERCLEAN_TRAIN, HYPERCLEAN_VAL};
use bilevel_core::data::newsgroups::{self, Cache, Newsgroups};
use bilevel_core::data::omniglot::{load_omniglot, load_omniglot_runs, OMNIGLOT_RUNS_ZIP, OMNIGLOT_ZIPS};
use bilevel_core::data::pickle::{load_fc100, load_mini_imagenet, FewShotSplit};
use bilevel_core::data::{class_counts, ijcnn1, Labeled};
use clap::Args;
use serde_json::{json, Value};

/// The data sets the CLI knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dataset {
    Mnist,
    Newsgroups,
    Ijcnn1,
    Omniglot,
    MiniImagenet,
    Fc100,
}

impl FromStr for Dataset {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_lowercase().as_str() {
            "mnist" => Dataset::Mnist,
            "20news" | "20newsgroups" | "newsgroups" => Dataset::Newsgroups,
            "ijcnn1" => Dataset::Ijcnn1,
            "omniglot" => Dataset::Omniglot,
            "miniimagenet" | "mini-imagenet" | "mini_imagenet" => Dataset::MiniImagenet,
            "fc100" => Dataset::Fc100,
            _ => bail!("unknown dataset {s:?} (expected mnist, 20news, ijcnn1, omniglot, miniimagenet or fc100)"),
        })
    }
}

impl Dataset {
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Mnist => "mnist",
            Dataset::Newsgroups => "20news",
            Dataset::Ijcnn1 => "ijcnn1",
            Dataset::Omniglot => "omniglot",
            Dataset::MiniImagenet => "miniimagenet",
            Dataset::Fc100 => "fc100",
        }
    }

    /// The default data folder, relative to the current folder or the repository.
    fn default_dir(self) -> &'static str {
        match self {
            Dataset::Mnist => "data",
            Dataset::Newsgroups | Dataset::Ijcnn1 | Dataset::Omniglot | Dataset::MiniImagenet | Dataset::Fc100 => "../shared/data",
        }
    }

    /// Where the data set's files are under a data folder: the files' own folder and the file
    /// whose presence marks it. Every data set but 20news may also sit directly in the given folder.
    fn locate(self, root: &Path) -> (PathBuf, PathBuf) {
        let (sub, marker) = match self {
            Dataset::Mnist => ("mnist", idx::MNIST_FILES[0]),
            Dataset::Ijcnn1 => ("ijcnn1", "ijcnn1.trn.bz2"),
            Dataset::Omniglot => ("omniglot", OMNIGLOT_ZIPS[0]),
            Dataset::MiniImagenet => ("miniimagenet", FewShotSplit::Train.mini_imagenet_file()),
            Dataset::Fc100 => ("fc100", FewShotSplit::Train.fc100_file()),
            Dataset::Newsgroups => return (root.to_path_buf(), root.join(newsgroups::ARCHIVE)),
        };
        let direct = root.join(marker);
        if !root.join(sub).join(marker).exists() && direct.exists() {
            return (root.to_path_buf(), direct);
        }
        (root.join(sub), root.join(sub).join(marker))
    }
}

/// Where to read the data and cache it.
#[derive(Args, Debug, Clone, Default)]
#[command(rename_all = "snake_case")]
pub struct DataArgs {
    /// Data folder, laid out as ../shared/data (20news-bydate.tar.gz, ijcnn1/, omniglot/,
    /// miniimagenet/, fc100/) and data/ (mnist/), or the folder holding one data set's files.
    /// Default: $BILEVEL_DATA_DIR, else data/ for MNIST and ../shared/data for the others, from the
    /// current folder or else from the repository.
    /// (`--data_path`, the reference's name for it, is accepted too.)
    #[arg(long, alias = "data_path")]
    pub data_dir: Option<PathBuf>,
    /// Where 20news's vectorised matrices are cached (default: data/cache in the repository).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Do not read or write the cache.
    #[arg(long)]
    pub no_cache: bool,
}

/// The repository the executable was built in (`<repo>/target/<profile>/bilevel`), if any.
pub(crate) fn repo_root() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.ancestors().skip(1).find(|d| d.join("scripts/setup.sh").is_file() && d.join("Cargo.toml").is_file()).map(Path::to_path_buf)
}

impl DataArgs {
    /// The data set's folder: the first candidate holding its files, else the first candidate
    /// (so that the "not found" message names where it was expected).
    pub fn dir(&self, ds: Dataset) -> PathBuf {
        let env = std::env::var_os("BILEVEL_DATA_DIR").filter(|v| !v.is_empty()).map(PathBuf::from);
        let candidates: Vec<PathBuf> = match self.data_dir.clone().or(env) {
            Some(dir) => vec![dir],
            None => std::iter::once(PathBuf::from(ds.default_dir())).chain(repo_root().map(|r| r.join(ds.default_dir()))).collect(),
        };
        let found = candidates.iter().map(|root| ds.locate(root)).find(|(_, marker)| marker.exists());
        found.unwrap_or_else(|| ds.locate(&candidates[0])).0
    }

    fn cache(&self) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        self.cache_dir.clone().or_else(|| Some(repo_root().unwrap_or_default().join("data/cache")))
    }

    pub fn mnist(&self) -> Result<Mnist> {
        Ok(Mnist::read(&self.dir(Dataset::Mnist))?)
    }

    pub fn newsgroups(&self) -> Result<(Newsgroups, Cache)> {
        let path = self.dir(Dataset::Newsgroups).join(newsgroups::ARCHIVE);
        Ok(newsgroups::load(&path, self.cache().as_deref())?)
    }

    /// Omniglot's background subset, resized to `size`×`size`.
    pub fn omniglot(&self, size: usize) -> Result<ImageSet> {
        Ok(load_omniglot(&self.dir(Dataset::Omniglot), size)?)
    }

    /// One of learn2learn's pickled class splits of miniImageNet or FC100 (`ds`), as stored:
    /// miniImageNet 3×84×84 raw 0..255, FC100 3×32×32 in [0, 1].
    pub fn pickled_split(&self, ds: Dataset, split: FewShotSplit) -> Result<ImageSet> {
        let dir = self.dir(ds);
        Ok(match ds {
            Dataset::MiniImagenet => load_mini_imagenet(&dir.join(split.mini_imagenet_file()))?,
            Dataset::Fc100 => load_fc100(&dir.join(split.fc100_file()))?,
            other => bail!("{} is not one of learn2learn's pickled data sets (miniimagenet, fc100)", other.name()),
        })
    }

    /// ijcnn1's training and test sets.
    pub fn ijcnn1(&self) -> Result<(Labeled, Labeled)> {
        Ok(ijcnn1::read(&self.dir(Dataset::Ijcnn1))?)
    }
}

#[derive(Args, Debug)]
#[command(rename_all = "snake_case")]
pub struct DataInfoArgs {
    /// mnist, 20news, ijcnn1, omniglot, miniimagenet or fc100.
    dataset: String,
    #[command(flatten)]
    data: DataArgs,
    /// Seed of 20news's stratified train/validation split.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Shape, non-zeros and class counts of a split (labels as indices into the class list).
fn split_info(x: &HostMatrix, labels: &[usize], classes: usize) -> Value {
    let (rows, cols) = x.shape();
    let nnz = match x {
        HostMatrix::Csr { values, .. } => values.len(),
        HostMatrix::Dense { data, .. } => data.iter().filter(|&&v| v != 0.0).count(),
    };
    json!({ "rows": rows, "cols": cols, "nnz": nnz, "class_counts": class_counts(labels, classes) })
}

fn indices(labels: &[f64]) -> Vec<usize> {
    labels.iter().map(|&y| y as usize).collect()
}

/// MNIST images `range` as stored: rows, pixels, non-zero pixels, class counts.
fn images_info(images: &idx::IdxImages, labels: &[u8], range: std::ops::Range<usize>) -> Value {
    let d = images.rows * images.cols;
    let nnz = images.pixels[range.start * d..range.end * d].iter().filter(|&&p| p != 0).count();
    let labels: Vec<usize> = labels[range.clone()].iter().map(|&y| y as usize).collect();
    json!({ "rows": range.len(), "cols": d, "nnz": nnz, "class_counts": class_counts(&labels, 10) })
}

/// The side Omniglot is resized to (learn2learn's and the paper's 28×28).
pub const OMNIGLOT_SIZE: usize = 28;

pub fn run(args: DataInfoArgs) -> Result<()> {
    let ds: Dataset = args.dataset.parse()?;
    let start = Instant::now();
    let dir = args.data.dir(ds);
    let mut out = match ds {
        Dataset::Mnist => {
            let m = args.data.mnist()?;
            let (train, test) = (&m.train_images, &m.test_images);
            json!({
                "image_shape": [train.rows, train.cols],
                "features": train.rows * train.cols,
                "classes": (0..10).collect::<Vec<_>>(),
                "stored": {
                    "train": images_info(train, &m.train_labels, 0..train.count),
                    "test": images_info(test, &m.test_labels, 0..test.count),
                },
                "splits": {
                    "train": images_info(train, &m.train_labels, HYPERCLEAN_TRAIN),
                    "val": images_info(train, &m.train_labels, HYPERCLEAN_VAL),
                    "test": images_info(test, &m.test_labels, 0..test.count),
                },
                "split": "hyper-cleaning: training rows 0..20000 (their labels get corrupted), validation rows 20000..25000, \
                          the 10000 test images; nnz counts non-zero pixels",
            })
        }
        Dataset::Newsgroups => {
            let (ng, cache) = args.data.newsgroups()?;
            let c = ng.groups.len();
            let (train, val) = ng.paper_split(args.seed);
            let cache_info = match &cache {
                Cache::Off => json!({ "status": cache.status() }),
                Cache::Hit(path) => json!({ "status": cache.status(), "path": path }),
                Cache::Built { path, stale, error } => json!({ "status": cache.status(), "path": path, "stale": stale, "error": error }),
            };
            json!({
                "features": ng.vocabulary.len(),
                "classes": ng.groups,
                "train_subset": split_info(&ng.train.x, &indices(&ng.train.labels), c),
                "splits": {
                    "train": split_info(&train.x, &indices(&train.labels), c),
                    "val": split_info(&val.x, &indices(&val.labels), c),
                    "test": split_info(&ng.test.x, &indices(&ng.test.labels), c),
                },
                "split": format!("stratified 50/50 of the training subset, seed {} (our own draw: scikit-learn's numpy split cannot be reproduced)", args.seed),
                "cache": cache_info,
            })
        }
        Dataset::Ijcnn1 => {
            let (train, test) = args.data.ijcnn1()?;
            let pm = |l: &[f64]| l.iter().map(|&y| usize::from(y == 1.0)).collect::<Vec<_>>();
            json!({
                "features": train.x.shape().1,
                "classes": [-1, 1],
                "splits": {
                    "train": split_info(&train.x, &pm(&train.labels), 2),
                    "test": split_info(&test.x, &pm(&test.labels), 2),
                },
            })
        }
        Dataset::Omniglot => {
            let set = args.data.omniglot(OMNIGLOT_SIZE)?;
            // The one-shot runs are optional: reported when their zip is there.
            let runs_dir = args.data.dir(Dataset::Omniglot);
            let runs = if runs_dir.join(OMNIGLOT_RUNS_ZIP).exists() {
                let runs = load_omniglot_runs(&runs_dir, OMNIGLOT_SIZE)?;
                json!({ "runs": runs.len(), "ways": runs[0].ways, "shots": runs[0].shots, "queries": runs[0].queries })
            } else {
                json!(format!("{OMNIGLOT_RUNS_ZIP} not present"))
            };
            let per_class: Vec<usize> = (0..set.num_classes()).map(|c| set.images_in(c)).collect();
            let alphabets: std::collections::BTreeSet<&str> = set.class_names.iter().filter_map(|n| n.split('/').next()).collect();
            json!({
                "classes": set.num_classes(),
                "images": set.total_images(),
                "images_per_class": { "min": per_class.iter().min(), "max": per_class.iter().max() },
                "alphabets": alphabets,
                "image_shape": [set.channels, set.height, set.width],
                "with_rotations": { "classes": 4 * set.num_classes() },
                "one_shot_runs": runs,
                "files": OMNIGLOT_ZIPS,
                "preprocessing": "105x105 1-bit PNGs inverted (strokes 1.0) and area-averaged to 28x28",
            })
        }
        Dataset::MiniImagenet | Dataset::Fc100 => {
            let mut splits = serde_json::Map::new();
            for split in FewShotSplit::ALL {
                let set = args.data.pickled_split(ds, split)?;
                let file = if ds == Dataset::Fc100 { split.fc100_file() } else { split.mini_imagenet_file() };
                let per_class: Vec<usize> = (0..set.num_classes()).map(|c| set.images_in(c)).collect();
                let (lo, hi) = set.images.iter().flatten().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                splits.insert(
                    format!("{split:?}").to_lowercase(),
                    json!({
                        "file": file,
                        "classes": set.num_classes(),
                        "images": set.total_images(),
                        "images_per_class": { "min": per_class.iter().min(), "max": per_class.iter().max() },
                        "image_shape": [set.channels, set.height, set.width],
                        "value_range": [lo, hi],
                    }),
                );
            }
            json!({ "splits": splits, "split": "the files' own class splits (learn2learn's)" })
        }
    };
    out["dataset"] = json!(ds.name());
    out["source"] = json!(if ds == Dataset::Newsgroups { dir.join(newsgroups::ARCHIVE) } else { dir });
    out["time_s"] = json!(start.elapsed().as_secs_f64());
    println!("{out}");
    Ok(())
}
