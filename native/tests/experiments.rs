//! Short end-to-end runs of `hyperclean`, `l2reg` and `ijcnn1` on the real data (small slices,
//! few iterations), and their bad-input errors.

use std::process::{Command, Output};

fn bilevel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bilevel")).args(args).env("XDG_RUNTIME_DIR", std::env::temp_dir()).output().expect("run bilevel")
}

/// Runs a subcommand writing JSON lines, and returns the records and the summary.
fn records(args: &[&str], name: &str) -> (Vec<serde_json::Value>, serde_json::Value) {
    let (lines, summary) = all_lines(args, name);
    let records = lines.into_iter().filter(|l| l.get("iter").is_some()).collect();
    (records, summary)
}

/// Runs a subcommand writing JSON lines, and returns every line before the summary, and the summary.
fn all_lines(args: &[&str], name: &str) -> (Vec<serde_json::Value>, serde_json::Value) {
    let path = std::env::temp_dir().join(format!("bilevel-exp-{}-{name}.jsonl", std::process::id()));
    let mut all = args.to_vec();
    all.extend(["--out", path.to_str().unwrap()]);
    let out = bilevel(&all);
    assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).ok();
    let mut lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let summary = lines.pop().unwrap();
    assert_eq!(summary["summary"], true, "{name}: the last line is the summary");
    (lines, summary)
}

fn check(records: &[serde_json::Value], iters: usize) {
    assert_eq!(records.len(), iters + 1, "the starting point and one record per outer iteration");
    let mut last_time = 0.0;
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["iter"], i);
        for key in ["time_s", "test_loss", "test_acc", "val_loss", "lambda_norm"] {
            assert!(r[key].as_f64().is_some_and(f64::is_finite), "record {i} lacks {key}: {r}");
        }
        let t = r["time_s"].as_f64().unwrap();
        assert!(t >= last_time, "time is cumulative");
        last_time = t;
        assert!(r["oracle_counts"]["inner_grads"].as_u64().is_some());
    }
}

/// MNIST's stored training labels and 28 × 28 images (the files the runs read).
fn mnist_train() -> (Vec<u8>, Vec<u8>) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist");
    let labels = std::fs::read(dir.join("train-labels-idx1-ubyte")).expect("MNIST labels (scripts/setup.sh)")[8..].to_vec();
    let images = std::fs::read(dir.join("train-images-idx3-ubyte")).expect("MNIST images (scripts/setup.sh)")[16..].to_vec();
    (labels, images)
}

/// A hyper-cleaning results file: the baselines first (clean data above uniform weights), the
/// records, then the lowest-weight images — lowest first, each with MNIST's own label as its
/// true label, its given label differing exactly where the run flagged it corrupted, and its
/// pixels the stored image stretched to 0–255.
#[test]
fn hyperclean_on_a_slice_of_mnist() {
    let (lines, summary) = all_lines(
        &[
            "hyperclean",
            "--alg",
            "stocBiO",
            "--noise_rate",
            "0.4",
            "--training_size",
            "600",
            "--validation_size",
            "200",
            "--epochs",
            "3",
            "--T",
            "5",
            "--batch_size",
            "50",
            "--backend",
            "cpu32",
        ],
        "hyperclean",
    );
    let baselines = &lines[0];
    assert_eq!(baselines["baselines"], true, "the first line holds the baselines: {baselines}");
    let (uniform, clean) = (baselines["uniform_test_acc"].as_f64().unwrap(), baselines["clean_test_acc"].as_f64().unwrap());
    assert!(0.1 < uniform && uniform < clean && clean < 1.0, "uniform weights {uniform} below the clean data {clean}");
    let recs: Vec<_> = lines[1..lines.len() - 1].to_vec();
    check(&recs, 3);
    for r in &recs {
        assert!(r["precision"].as_f64().is_some() && r["recall"].as_f64().is_some(), "cleaning precision and recall: {r}");
    }
    assert!(summary["test_acc"].as_f64().unwrap() > 0.5, "a linear model on 600 MNIST images: {summary}");

    let images = lines.last().unwrap()["downweighted"].as_array().expect("the down-weighted images before the summary").clone();
    assert_eq!(images.len(), 16);
    let (labels, pixels) = mnist_train();
    let mut last_weight = 0.0;
    for im in &images {
        let (index, weight) = (im["index"].as_u64().unwrap() as usize, im["weight"].as_f64().unwrap());
        assert!(index < 600 && weight >= last_weight && weight < 1.0, "lowest weight first: {im}");
        last_weight = weight;
        assert_eq!(im["true_label"].as_u64().unwrap(), labels[index] as u64, "image {index}'s true label");
        assert!(im["given_label"].as_u64().unwrap() < 10);
        assert_eq!(im["side"], 28);
        let got: Vec<u8> = im["pixels"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap() as u8).collect();
        let stored = &pixels[index * 784..(index + 1) * 784];
        let (lo, hi) = (*stored.iter().min().unwrap() as f64, *stored.iter().max().unwrap() as f64);
        assert_eq!(got.len(), 784);
        for (g, s) in got.iter().zip(stored) {
            let want = (*s as f64 - lo) / (hi - lo) * 255.0;
            assert!((*g as f64 - want).abs() <= 1.0, "image {index}: pixel {g} for stored {s}");
        }
    }
    let corrupted = images.iter().filter(|im| im["given_label"] != im["true_label"]).count();
    assert!(corrupted > 0, "some of the lowest-weight images have corrupted labels");

    // --no_baselines: no baselines line, the records first.
    let (without, _) = all_lines(
        &[
            "hyperclean",
            "--noise_rate",
            "0.4",
            "--training_size",
            "500",
            "--epochs",
            "1",
            "--T",
            "2",
            "--batch_size",
            "50",
            "--backend",
            "cpu32",
            "--no_baselines",
        ],
        "hyperclean-nob",
    );
    assert!(without[0].get("iter").is_some() && without.iter().all(|l| l.get("baselines").is_none()), "{}", without[0]);
}

#[test]
fn l2reg_on_20_newsgroups() {
    // The reference figure's stocBiO-1000 settings (its first point: test loss 2.57 < ln 20).
    let (recs, _) = records(&["l2reg", "--alg", "stocBiO", "--epochs", "2", "--batch_size", "1000", "--backend", "cpu32"], "l2reg");
    check(&recs, 2);
    // Row 0 is the zero model: test loss ln 20.
    assert!((recs[0]["test_loss"].as_f64().unwrap() - 20f64.ln()).abs() < 1e-5, "{}", recs[0]);
    assert!(recs[2]["test_loss"].as_f64().unwrap() < recs[0]["test_loss"].as_f64().unwrap(), "{} {}", recs[0], recs[2]);
}

#[test]
fn ijcnn1_on_its_files() {
    let (recs, _) = records(
        &["ijcnn1", "--alg", "AID-CG", "--epochs", "2", "--T", "20", "--hessian_q", "5", "--inner_lr", "1", "--backend", "cpu32"],
        "ijcnn1",
    );
    check(&recs, 2);
    assert!(recs[2]["test_acc"].as_f64().unwrap() > 0.85, "ijcnn1 is about 90 % negative: {}", recs[2]);
}

/// stocBiO on ijcnn1 with Benchopt's slices (`--batches slices`: the rows shuffled once, fixed
/// consecutive batches): it learns, and the summary says how batches were drawn.
#[test]
fn ijcnn1_with_slices() {
    let (recs, summary) =
        records(&["ijcnn1", "--alg", "stocBiO", "--epochs", "5", "--batches", "slices", "--backend", "cpu32"], "ijcnn1-slices");
    check(&recs, 5);
    assert_eq!(summary["batches"], "slices", "{summary}");
    assert_eq!(recs[5]["oracle_counts"]["samples"].as_u64().map(|s| s > 0), Some(true), "{}", recs[5]);
    assert!(recs[5]["val_loss"].as_f64().unwrap() < recs[0]["val_loss"].as_f64().unwrap(), "{} {}", recs[0], recs[5]);
}

#[test]
fn run_bad_input_is_one_line() {
    for (args, needle) in [
        (vec!["hyperclean", "--noise_rate", "2"], "--noise_rate must be in [0, 1]"),
        (vec!["hyperclean", "--training_size", "0"], "--training_size must be in 1..=20000"),
        // The Benchopt setting draws from the 60,000 training images: more is an error, not a panic.
        (
            vec!["hyperclean", "--setting", "benchopt", "--training_size", "50000", "--validation_size", "10001"],
            "together at most 60000 (the MNIST training images the Benchopt setting draws from), got 50000 + 10001",
        ),
        (vec!["hyperclean", "--setting", "benchopt", "--validation_size", "0"], "must be at least 1"),
        (vec!["l2reg", "--alg", "MAML"], "unknown algorithm \"MAML\""),
        (vec!["ijcnn1", "--inner_lr", "-1"], "--inner_lr must be a positive finite number"),
        (vec!["ijcnn1", "--data_dir", "/nonexistent/data"], "not found at /nonexistent/data"),
        // The reference's flag name for the data folder works too.
        (vec!["hyperclean", "--data_path", "/nonexistent/mnist"], "not found at /nonexistent/mnist"),
    ] {
        let out = bilevel(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
        assert!(!out.status.success() && !err.contains("panicked"), "{args:?}: {err}");
        assert!(lines.len() == 1 && lines[0].contains(needle), "{args:?}: {lines:?} lacks {needle:?}");
    }
}

#[test]
fn reproduce_writes_the_figures_and_the_table() {
    // The whole figure set on tiny budgets: 20news runs of 0.3 s, MNIST on 400 images.
    let dir = std::env::temp_dir().join(format!("bilevel-reproduce-{}", std::process::id()));
    let out = bilevel(&[
        "reproduce",
        "--out_dir",
        dir.to_str().unwrap(),
        "--backend",
        "cpu32",
        "--budget_s",
        "0.3",
        "--mnist_epochs",
        "1",
        "--mnist_t",
        "2",
        "--mnist_training_size",
        "400",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = std::fs::read_to_string(dir.join("table.md")).unwrap();
    for row in ["| reverse |", "| AID-CG |", "| AID-FP |", "| HOAG |", "| stocBiO-100 |", "| stocBiO-2000 |", "| 0.4 | SOBA |"] {
        assert!(table.contains(row), "the table lacks {row}:\n{table}");
    }
    for fig in ["20news_alg.png", "20news_batch.png", "mnist_noise0.1.png", "mnist_noise0.4.png"] {
        assert!(std::fs::metadata(dir.join(fig)).map(|m| m.len() > 1000).unwrap_or(false), "{fig} missing");
    }
    std::fs::remove_dir_all(&dir).ok();
}
