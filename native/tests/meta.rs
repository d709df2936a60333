//! `bilevel meta` on the real Omniglot subset (../shared/data/omniglot) at a tiny size: JSON lines
//! per iteration and a final line; bad input gives one `error:` line and a non-zero exit.

use std::process::{Command, Output};

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
    assert_one_line_error(&with(&["--dataset", "cifar"]), "only omniglot");
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
