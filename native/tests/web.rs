//! The web page's CLI pieces: `bilevel mnist-subset` (the page's build-time asset, checked
//! against the MNIST files it comes from) and `bilevel landscape` (the landscape panel's
//! reference), plus their bad inputs as one-line errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bilevel_core::data::idx::{Mnist, MnistSubset, HYPERCLEAN_VAL};
use serde_json::Value;

fn bilevel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bilevel"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .env_remove("BILEVEL_DATA_DIR")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run bilevel")
}

fn assert_one_line_error(args: &[&str], needle: &str) {
    let out = bilevel(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.contains("XDG_RUNTIME_DIR")).collect();
    assert_eq!(lines.len(), 1, "{args:?}: expected one line, got {lines:?}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains(needle), "{args:?}: {:?} lacks {needle:?}", lines[0]);
}

fn temp_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("bilevel-web-{name}-{}", std::process::id()))
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn mnist_subset_holds_the_hyperclean_rows() {
    let out = temp_file("subset.bin");
    let o = bilevel(&["mnist-subset", "--train", "30", "--val", "7", "--test", "5", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let subset = MnistSubset::from_bytes(&std::fs::read(&out).unwrap(), "subset").unwrap();
    std::fs::remove_file(&out).ok();
    let mnist = Mnist::read(&repo().join("data/mnist")).unwrap();
    assert_eq!(subset.train.0.pixels, mnist.train_images.pixels[..30 * 784]);
    assert_eq!(subset.train.1, mnist.train_labels[..30]);
    assert_eq!(subset.val.0.image(6), mnist.train_images.image(HYPERCLEAN_VAL.start + 6));
    assert_eq!(subset.val.1, mnist.train_labels[HYPERCLEAN_VAL.start..HYPERCLEAN_VAL.start + 7]);
    assert_eq!(subset.test.1, mnist.test_labels[..5]);
    // The page's splits are the CLI's (same rows, same normalisation).
    let (train, val, _) = subset.hyperclean();
    let (full_train, full_val, _) = mnist.hyperclean();
    assert_eq!(train.x.row(29), full_train.x.row(29));
    assert_eq!(val.x.row(3), full_val.x.row(3));
}

#[test]
fn landscape_reference_is_consistent() {
    let o = bilevel(&["landscape", "--grid", "6", "--draws", "3", "--descent", "2", "--lambda=-2,0.5"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let nums = |k: &str| v[k].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect::<Vec<_>>();
    let (values, exact) = (nums("values"), nums("exact_values"));
    assert_eq!(values.len(), 36);
    for (a, b) in values.iter().zip(&exact) {
        assert!((a - b).abs() <= 1e-6 * b.abs(), "stacked grid {a} vs closed form {b}");
    }
    assert_eq!(v["estimates"]["stocBiO"].as_array().unwrap().len(), 3);
    assert_eq!(v["estimates"]["AID-CG"].as_array().unwrap().len(), 1);
    assert_eq!(v["inner_path"].as_array().unwrap().len(), 21);
    let descent = v["descent"].as_array().unwrap();
    assert_eq!(descent.len(), 2);
    assert_eq!(descent[0]["lambda"], serde_json::json!([-2.0, 0.5]));
}

#[test]
fn bad_web_inputs_are_one_line_errors() {
    assert_one_line_error(&["landscape", "--lambda", "1"], "--lambda must be two numbers");
    assert_one_line_error(&["landscape", "--grid", "1"], "--grid");
    assert_one_line_error(&["landscape", "--algs", "adam"], "unknown algorithm");
    assert_one_line_error(&["mnist-subset", "--train", "0", "--out", "/tmp/never.bin"], "sizes");
    assert_one_line_error(&["mnist-subset", "--data_dir", "/nonexistent", "--out", "/tmp/never.bin"], "setup.sh");
    assert_one_line_error(&["hyperclean", "--test_rows", "0", "--epochs", "1"], "--test_rows");
}
