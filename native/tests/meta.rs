//! `bilevel meta` on the real Omniglot subset (../shared/data/omniglot) at a tiny size, and on
//! tiny miniImageNet and FC100 pickles the tests write (learn2learn's file names and layouts):
//! JSON lines per iteration and a final line; bad input gives one `error:` line and a non-zero
//! exit.

// The core's pickle writer (byte-exact with CPython's pickler), shared by path.
#[path = "../../core/tests/pickler/mod.rs"]
mod pickler;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pickler::{fc100, hwc_images, mini_cache, Pickler};
use serde_json::Value;

fn bilevel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bilevel"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .env_remove("BILEVEL_DATA_DIR")
        .output()
        .expect("run bilevel")
}

fn assert_one_line_error(args: &[&str], needle: &str) {
    let out = bilevel(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.contains("XDG_RUNTIME_DIR")).collect();
    assert_eq!(lines.len(), 1, "{args:?}: expected one line, got {lines:?}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains(needle), "{args:?}: {:?} lacks {needle:?}", lines[0]);
}

const TINY: &[&str] =
    &["meta", "--meta_batch", "2", "--width", "4", "--size", "16", "--inner_steps", "2", "--final_tasks", "5", "--backend", "cpu32"];

#[test]
fn meta_streams_a_json_line_per_iteration_and_a_final_line_with_a_confidence_interval() {
    for alg in ["ITD-BiO", "FO-ITD-BiO", "ANIL", "MAML", "FO-MAML"] {
        let out_path = std::env::temp_dir().join(format!("bilevel-meta-{}-{alg}.jsonl", std::process::id()));
        let mut args = TINY.to_vec();
        args.extend([
            "--alg",
            alg,
            "--iterations",
            "3",
            "--ways",
            "3",
            "--shots",
            "1",
            "--queries",
            "2",
            "--out",
            out_path.to_str().unwrap(),
        ]);
        let out = bilevel(&args);
        assert!(out.status.success(), "{alg}: {}", String::from_utf8_lossy(&out.stderr));
        let text = std::fs::read_to_string(&out_path).expect("--out written");
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
        assert_eq!(lines.len(), 4, "{alg}: 3 iterations + final: {text}");
        for (i, l) in lines[..3].iter().enumerate() {
            assert_eq!(l["iter"], i);
            for key in ["time_s", "train_acc", "test_acc", "train_loss"] {
                assert!(l[key].as_f64().is_some_and(f64::is_finite), "{alg}: {key} in {l}");
            }
            let acc = l["test_acc"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&acc));
        }
        let fin = &lines[3];
        assert_eq!(fin["final"], true);
        assert_eq!(fin["alg"], alg);
        // At least --final_tasks, in whole meta-batches.
        assert_eq!(fin["test_tasks"], 6);
        assert!(fin["test_acc_ci95"].as_f64().is_some_and(|c| c > 0.0 && c < 1.0), "{fin}");
        // stdout carries the same final line.
        let stdout: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).expect("final line on stdout");
        assert_eq!(stdout["test_acc"], fin["test_acc"]);
        let _ = std::fs::remove_file(&out_path);
    }
}

#[test]
fn meta_bad_input_gives_one_error_line() {
    let with = |extra: &[&'static str]| -> Vec<&'static str> { TINY.iter().copied().chain(extra.iter().copied()).collect() };
    assert_one_line_error(&with(&["--shots", "0"]), "shots");
    assert_one_line_error(&with(&["--queries", "0"]), "queries");
    assert_one_line_error(&with(&["--ways", "100"]), "100-way tasks need 100 classes");
    assert_one_line_error(&with(&["--ways", "1"]), "ways");
    assert_one_line_error(&with(&["--shots", "15", "--queries", "10"]), "need 25 images per class");
    assert_one_line_error(&with(&["--alg", "reptile"]), "unknown meta-learning algorithm");
    assert_one_line_error(
        &with(&["--dataset", "cifar"]),
        "unknown meta-learning dataset \"cifar\" (expected omniglot, miniimagenet or fc100)",
    );
    assert_one_line_error(&with(&["--dataset", "mnist"]), "unknown meta-learning dataset \"mnist\"");
    assert_one_line_error(&with(&["--data_dir", "/nonexistent"]), "not found");
    assert_one_line_error(&with(&["--shift", "8"]), "--shift 8 would move whole 16×16 images out of view");
}

#[test]
fn shift_changes_the_training_images_and_is_seeded() {
    let run = |shift: &str| -> Vec<Value> {
        let out_path = std::env::temp_dir().join(format!("bilevel-meta-shift{shift}-{}.jsonl", std::process::id()));
        let mut args = TINY.to_vec();
        args.extend(["--iterations", "2", "--ways", "3", "--queries", "2", "--shift", shift, "--out", out_path.to_str().unwrap()]);
        let out = bilevel(&args);
        assert!(out.status.success(), "--shift {shift}: {}", String::from_utf8_lossy(&out.stderr));
        let text = std::fs::read_to_string(&out_path).expect("--out written");
        let _ = std::fs::remove_file(&out_path);
        text.lines()
            .map(|l| {
                let mut v: Value = serde_json::from_str(l).expect("JSON line");
                v.as_object_mut().expect("an object").remove("time_s"); // wall clock: differs
                v
            })
            .collect()
    };
    let (plain, shifted, again) = (run("0"), run("2"), run("2"));
    assert_eq!(shifted, again, "the shifts are seeded");
    assert_eq!(shifted[2]["shift"], 2);
    // The first training loss is that of the initial model on the training images: shifted or not.
    assert_ne!(plain[0]["train_loss"], shifted[0]["train_loss"]);
}

/// A fresh empty folder under the system temp folder.
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bilevel-meta-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Tiny learn2learn files of `dataset` in `dir`: 3×16×16 images, 4 training classes of 3 images,
/// 3 validation and 3 test classes of 2 (miniImageNet in protocol 4 with numpy 2's names, FC100
/// as Python 2 pickles, as learn2learn's own files are).
fn write_tiny_pickles(dataset: &str, dir: &Path) {
    // (miniImageNet's split name, FC100's, classes, images per class, FC100's first label)
    for (mini_split, fc_split, classes, per_class, first_label) in
        [("train", "train", 4, 3, 0), ("validation", "val", 3, 2, 60), ("test", "test", 3, 2, 80)]
    {
        let n = classes * per_class;
        let images = hwc_images(n, 16, 16, 3);
        let (file, bytes) = if dataset == "miniimagenet" {
            // Class c holds images c, c + classes, …
            let names: Vec<String> = (0..classes).map(|c| format!("n{mini_split}{c}")).collect();
            let idx: Vec<Vec<i64>> = (0..classes).map(|c| (0..per_class).map(|i| (i * classes + c) as i64).collect()).collect();
            let dict: Vec<(&str, &[i64])> = names.iter().map(String::as_str).zip(idx.iter().map(Vec::as_slice)).collect();
            (format!("mini-imagenet-cache-{mini_split}.pkl"), Pickler::dumps(&mini_cache(images, &dict), 4, 2))
        } else {
            // Labels are the global class numbers (each split has classes of its own).
            let labels: Vec<i64> = (0..n).map(|i| first_label + (i % classes) as i64).collect();
            (format!("FC100_{fc_split}.pickle"), Pickler::dumps_python2(&fc100(images, &labels)))
        };
        std::fs::write(dir.join(file), bytes).unwrap();
    }
}

/// `bilevel meta --dataset miniimagenet|fc100` on the tiny pickles: the files' own splits
/// (meta-validation read when --val_every asks for it), 3-channel images at the files' size,
/// the JSON lines per iteration and the final line naming the data set and the image shape.
#[test]
fn meta_trains_on_learn2learn_pickles() {
    for dataset in ["miniimagenet", "fc100"] {
        let dir = temp_dir(dataset);
        write_tiny_pickles(dataset, &dir);
        let out_path = dir.join("run.jsonl");
        let args = [
            "meta",
            "--dataset",
            dataset,
            "--data_dir",
            dir.to_str().unwrap(),
            "--iterations",
            "2",
            "--ways",
            "3",
            "--shots",
            "1",
            "--queries",
            "1",
            "--meta_batch",
            "2",
            "--width",
            "4",
            "--inner_steps",
            "2",
            "--final_tasks",
            "2",
            "--val_every",
            "1",
            "--val_tasks",
            "2",
            "--backend",
            "cpu32",
            "--out",
            out_path.to_str().unwrap(),
        ];
        let out = bilevel(&args);
        assert!(out.status.success(), "{dataset}: {}", String::from_utf8_lossy(&out.stderr));
        let text = std::fs::read_to_string(&out_path).expect("--out written");
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
        assert_eq!(lines.len(), 3, "{dataset}: 2 iterations + final: {text}");
        for (i, l) in lines[..2].iter().enumerate() {
            assert_eq!(l["iter"], i, "{dataset}: {l}");
            for key in ["time_s", "train_acc", "test_acc", "train_loss"] {
                assert!(l[key].as_f64().is_some_and(f64::is_finite), "{dataset}: {key} in {l}");
            }
        }
        let fin = &lines[2];
        assert_eq!((fin["final"].as_bool(), fin["dataset"].as_str()), (Some(true), Some(dataset)), "{fin}");
        assert_eq!(fin["image_shape"], serde_json::json!([3, 16, 16]), "{fin}");
        assert_eq!(fin["test_tasks"], 2, "{fin}");
        assert!(fin["val_acc"].as_f64().is_some_and(|a| (0.0..=1.0).contains(&a)), "meta-validation ran: {fin}");
        assert!(fin["test_acc"].as_f64().is_some_and(|a| (0.0..=1.0).contains(&a)), "{fin}");
        // `data-info` reads the same files: the three splits as stored.
        let info = bilevel(&["data-info", dataset, "--data_dir", dir.to_str().unwrap()]);
        assert!(info.status.success(), "{dataset}: {}", String::from_utf8_lossy(&info.stderr));
        let info: Value = serde_json::from_slice(&info.stdout).expect("one JSON object");
        for (split, classes, images) in [("train", 4, 12), ("validation", 3, 6), ("test", 3, 6)] {
            let s = &info["splits"][split];
            assert_eq!((s["classes"].as_u64(), s["images"].as_u64()), (Some(classes), Some(images)), "{dataset} {split}: {info}");
            assert_eq!(s["image_shape"], serde_json::json!([3, 16, 16]), "{info}");
        }
        // The pixels cover 0..=255: miniImageNet keeps them raw, FC100 scales them to [0, 1].
        let top = if dataset == "fc100" { 1.0 } else { 255.0 };
        assert_eq!(info["splits"]["train"]["value_range"], serde_json::json!([0.0, top]), "{info}");
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// Missing files name what to put where; Omniglot's flags and a resize are refused.
#[test]
fn meta_pickle_bad_input_gives_one_error_line() {
    let empty = temp_dir("empty");
    let dir = empty.to_str().unwrap();
    let base = |dataset: &'static str, extra: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> =
            ["meta", "--dataset", dataset, "--data_dir", dir, "--iterations", "1", "--backend", "cpu32"].map(String::from).to_vec();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let check = |args: Vec<String>, needle: &str| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_one_line_error(&refs, needle);
    };
    check(
        base("miniimagenet", &[]),
        &format!("miniImageNet not found at {dir}/miniimagenet/mini-imagenet-cache-train.pkl: put learn2learn's"),
    );
    check(
        base("fc100", &[]),
        &format!("FC100 not found at {dir}/fc100/FC100_train.pickle: put learn2learn's FC100_{{train,val,test}}.pickle"),
    );
    // With the training and test files only, meta-validation needs the third.
    write_tiny_pickles("fc100", &empty);
    std::fs::remove_file(empty.join("FC100_val.pickle")).unwrap();
    check(base("fc100", &["--val_every", "1"]), &format!("FC100 not found at {dir}/FC100_val.pickle"));
    check(base("fc100", &["--val_classes", "5"]), "--val_classes is for omniglot: fc100 keeps its files' class splits");
    check(base("fc100", &["--rotations"]), "--rotations is for omniglot");
    check(base("fc100", &["--size", "8"]), "--size 8: fc100's images are 16×16 (its files' own size; no resizing)");
    check(base("fc100", &["--ways", "5"]), "5-way tasks need 5 classes but the meta-train split has 4");
    std::fs::remove_dir_all(&empty).ok();
}
