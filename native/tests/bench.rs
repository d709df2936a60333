//! `bilevel bench --setting benchopt`: the Benchopt bilevel benchmark's MNIST cleaning and ijcnn1
//! cases on the real data (data/mnist and ../shared/data/ijcnn1), briefly.

use std::process::{Command, Output};

fn bilevel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bilevel"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .env_remove("BILEVEL_DATA_DIR")
        .output()
        .expect("run bilevel")
}

/// Both cases run on the real data with Benchopt's settings, and the output says so: the
/// printed table names each case and its setting, and each JSON record holds the setting, the
/// real data's shape and stocBiO's batch 64, T = Q = 10.
#[test]
fn bench_benchopt_times_both_cases_in_benchopt_settings() {
    let path = std::env::temp_dir().join(format!("bilevel-bench-benchopt-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let out = bilevel(&[
        "bench",
        "--setting",
        "benchopt",
        "--backends",
        "cpu32",
        "--iters",
        "2",
        "--min_time",
        "0",
        "--out",
        path.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    for needle in [
        "hyperclean (benchopt setting): MNIST cleaning, 20000 + 5000 random training images, 784 standardised features, no bias, p = 0.5, ρ = 0.2; batch 64, T = 10, Q = 10",
        "hyperclean: 20000 training rows × 784 features",
        "5000 validation rows",
        "ijcnn1 (benchopt setting): ijcnn1, Benchopt's split: the training file for training, the whole test file for validation",
        "ijcnn1: 49990 training rows × 22 features",
        "91701 validation rows",
    ] {
        assert!(stdout.contains(needle), "the output lacks {needle:?}:\n{stdout}");
    }
    // One table row per case: stocBiO with Benchopt's slices.
    for problem in ["hyperclean", "ijcnn1"] {
        let row = stdout.lines().find(|l| l.starts_with(problem) && l.contains("stocBiO"));
        assert!(row.is_some_and(|r| r.contains("slices")), "no timing row for {problem}:\n{stdout}");
    }
    let text = std::fs::read_to_string(&path).expect("bench output");
    let _ = std::fs::remove_file(&path);
    let records: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(records.len(), 2, "{text}");
    for (r, problem) in records.iter().zip(["hyperclean", "ijcnn1"]) {
        assert_eq!(
            (r["problem"].as_str(), r["setting"].as_str(), r["data"].as_str()),
            (Some(problem), Some("benchopt"), Some("real")),
            "{r}"
        );
        assert_eq!((r["alg"].as_str(), r["batches"].as_str()), (Some("stocBiO"), Some("slices")), "{r}");
        let s = &r["settings"];
        assert_eq!(
            (s["t"].as_u64(), s["q"].as_u64(), s["batch_size"].as_u64(), s["val_batch_size"].as_u64()),
            (Some(10), Some(10), Some(64), Some(64)),
            "{r}"
        );
        assert!(r["s_per_iter_median"].as_f64().is_some_and(|t| t > 0.0), "{r}");
        // T = 10 inner gradients, Q = 10 HVPs; 64-row batches.
        assert_eq!((r["per_iter"]["inner_grads"].as_f64(), r["per_iter"]["hvps"].as_f64()), (Some(10.0), Some(10.0)), "{r}");
    }
}

/// The Benchopt setting has no 20 Newsgroups case, and needs the real data.
#[test]
fn bench_benchopt_bad_input_is_one_line() {
    for (args, needle) in [
        (vec!["--problems", "20news"], "no Benchopt setting for the benchmark problem \"20news\""),
        (vec!["--data_dir", "/nonexistent/data"], "not found at /nonexistent/data"),
    ] {
        let mut all =
            vec!["bench", "--setting", "benchopt", "--backends", "cpu32", "--iters", "1", "--min_time", "0", "--out", "/dev/null"];
        all.extend(args.iter().copied());
        let out = bilevel(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.contains("XDG_RUNTIME_DIR")).collect();
        assert!(!out.status.success() && !err.contains("panicked"), "{args:?}: {err}");
        assert!(lines.len() == 1 && lines[0].starts_with("error: ") && lines[0].contains(needle), "{args:?}: {lines:?} lacks {needle:?}");
    }
}
