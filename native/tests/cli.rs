//! The `bilevel` binary end to end: output format, and bad input giving one line on stderr and
//! a non-zero exit, never a panic.

use std::process::{Command, Output};

fn bilevel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bilevel")).args(args).env("XDG_RUNTIME_DIR", std::env::temp_dir()).output().expect("run bilevel")
}

/// The error lines the program itself printed (Mesa's loader may add its own noise).
fn own_error_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr).lines().filter(|l| !l.contains("XDG_RUNTIME_DIR")).map(String::from).collect()
}

fn assert_one_line_error(args: &[&str], needle: &str) {
    let out = bilevel(args);
    let lines = own_error_lines(&out);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"), "{args:?} panicked: {lines:?}");
    let errors: Vec<&String> = lines.iter().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{args:?}: expected one error line, got {lines:?}");
    assert!(errors[0].to_lowercase().contains(&needle.to_lowercase()), "{args:?}: {:?} lacks {needle:?}", errors[0]);
}

#[test]
fn toy_writes_one_json_record_per_outer_iteration() {
    let path = std::env::temp_dir().join(format!("bilevel-cli-{}.jsonl", std::process::id()));
    let p = path.to_str().unwrap();
    let out = bilevel(&[
        "toy",
        "--alg",
        "aid-cg",
        "--epochs",
        "4",
        "--outer_lr",
        "1",
        "--features",
        "10",
        "--n_train",
        "60",
        "--n_val",
        "50",
        "--out",
        p,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).ok();
    let records: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 4);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["iter"], i + 1);
        for key in ["time_s", "outer_loss", "hypergrad_rel_err"] {
            assert!(r[key].as_f64().is_some_and(f64::is_finite), "record {i} lacks a finite {key}: {r}");
        }
    }
    // AID-CG with K = 10 ≥ d = 10 CG steps is close to exact after the first warm start
    // (with a small β, so the warm-started inner iterate keeps up with λ).
    assert!(records[3]["hypergrad_rel_err"].as_f64().unwrap() < 1e-2, "{}", records[3]);
}

/// The toy's records (JSON lines) for `args`, run with `--out`.
fn toy_records(args: &[&str]) -> Vec<serde_json::Value> {
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("bilevel-cli-toy-{}-{n}.jsonl", std::process::id()));
    let p = path.to_str().unwrap();
    let out = bilevel(&[&["toy", "--out", p], args].concat());
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).ok();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn compat_picks_stocbios_version_and_paper_is_the_plain_algorithm() {
    let small = ["--epochs", "2", "--features", "6", "--n_train", "64", "--n_val", "48", "--batch_size", "16", "--record_vectors"];
    let run = |extra: &[&str]| toy_records(&[&small[..], extra].concat());
    let plain = run(&["--alg", "stocBiO"]);
    let estimates = |records: &[serde_json::Value]| records.iter().map(|r| r["hypergradient"].clone()).collect::<Vec<_>>();
    assert_eq!(estimates(&run(&["--alg", "stocBiO", "--compat", "paper"])), estimates(&plain), "--compat paper is the plain stocBiO");
    for version in ["v1", "head"] {
        // Fixed steps: data-chosen ones would add the curvature estimate's (counted) HVPs.
        let records = run(&["--alg", "stocBiO", "--compat", version, "--eta", "0.5", "--inner_lr", "0.5"]);
        assert_eq!(records.len(), 2);
        assert_ne!(records[0]["hypergradient"], plain[0]["hypergradient"], "--compat {version} should differ from the paper's");
        // The validation-as-train view's HVPs and J are counted: Q = 10 HVPs and one J each step.
        assert_eq!((records[1]["oracle_counts"]["hvps"].as_u64(), records[1]["oracle_counts"]["jvps"].as_u64()), (Some(20), Some(2)));
    }
}

#[test]
fn outer_penalty_enters_the_exact_and_the_estimated_hypergradient() {
    // AID-CG with K = d CG steps and long inner loops estimates the penalised ∇Φ closely.
    let args = ["--alg", "aid-cg", "--epochs", "3", "--features", "6", "--n_train", "60", "--n_val", "50", "--T", "300", "--outer_lr", "1"];
    let plain = toy_records(&args);
    let penalised = toy_records(&[&args[..], &["--outer_penalty", "0.5"]].concat());
    // At λ = 0 the penalty adds nothing; after a step it moves the exact hypergradient.
    assert_eq!(plain[0]["exact_outer_loss"], penalised[0]["exact_outer_loss"]);
    assert_ne!(plain[2]["exact_outer_loss"], penalised[2]["exact_outer_loss"]);
    for r in &penalised {
        assert!(r["hypergrad_rel_err"].as_f64().unwrap() < 1e-6, "{r}");
    }
    let help = String::from_utf8_lossy(&bilevel(&["toy", "--help"]).stdout).to_string();
    assert!(help.contains("--outer_penalty") && help.contains("(μ/2)‖λ‖²"), "{help}");
}

#[test]
fn bad_input_gives_one_line_and_a_nonzero_exit() {
    assert_one_line_error(&["toy", "--alg", "MAML"], "unknown algorithm \"MAML\"");
    assert_one_line_error(&["toy", "--backend", "tpu"], "invalid value 'tpu'");
    assert_one_line_error(&["toy", "--inner_lr", "0"], "--inner_lr must be a positive finite number");
    assert_one_line_error(&["toy", "--outer_lr", "-1"], "--outer_lr must be a positive finite number");
    assert_one_line_error(&["toy", "--eta", "nan"], "--eta must be a positive finite number");
    assert_one_line_error(&["toy", "--hessian_q", "0"], "--hessian_q must be at least 1");
    assert_one_line_error(&["toy", "--batch_size", "0"], "--batch_size must be at least 1");
    assert_one_line_error(&["toy", "--epochs", "ten"], "invalid value 'ten' for '--epochs");
    assert_one_line_error(&["toy", "--out", "/nonexistent-dir/x.jsonl", "--epochs", "1"], "cannot create");
    assert_one_line_error(&["toy", "--outer_penalty", "-1"], "--outer_penalty must be finite and non-negative");
    assert_one_line_error(&["toy", "--alg", "aid-cg", "--compat", "v1"], "--compat applies to stocBiO only");
    assert_one_line_error(&["toy", "--compat", "paper2"], "invalid value 'paper2'");
}

#[test]
fn gpu_backend_without_a_matching_adapter_is_a_clean_error() {
    assert_one_line_error(&["toy", "--backend", "gpu", "--adapter", "no-such-gpu-anywhere"], "no GPU adapter");
}

#[test]
fn gpu_backend_with_no_vulkan_driver_is_a_clean_error() {
    // Point the Vulkan loader at no driver at all: wgpu then finds no adapter.
    let out = Command::new(env!("CARGO_BIN_EXE_bilevel"))
        .args(["toy", "--backend", "gpu", "--epochs", "1"])
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && !stderr.contains("panicked"), "{stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("error: no GPU adapter found")), "{stderr}");
}

#[test]
fn non_finite_values_stop_the_run_with_the_iteration_named() {
    let path = std::env::temp_dir().join(format!("bilevel-cli-nan-{}.jsonl", std::process::id()));
    let p = path.to_str().unwrap();
    // A huge inner step diverges within a few iterations.
    let out = bilevel(&["toy", "--alg", "aid-cg", "--inner_lr", "1e6", "--epochs", "50", "--out", p]);
    let lines = own_error_lines(&out);
    assert!(!out.status.success(), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("error:") && l.contains("non-finite at outer iteration")), "{lines:?}");
    std::fs::remove_file(&path).ok();
}

#[test]
fn devices_lists_the_lavapipe_adapter() {
    let out = bilevel(&["devices"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.contains("llvmpipe")), "lavapipe missing: {text}");
}

/// Writes svmlight text to a temporary file and returns its path.
fn svm_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("bilevel-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// A small separable-ish binary problem in svmlight form.
fn logreg_text(rows: usize, seed: u64) -> String {
    let mut s = String::new();
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as f64 / (1u64 << 31) as f64) - 0.5
    };
    for _ in 0..rows {
        let f: Vec<f64> = (0..5).map(|_| next()).collect();
        let label = if f[0] + 0.5 * f[1] - f[2] + 0.1 * next() > 0.0 { "+1" } else { "-1" };
        let feats: Vec<String> = f.iter().enumerate().map(|(j, v)| format!("{}:{v:.4}", j + 1)).collect();
        s += &format!("{label} {}\n", feats.join(" "));
    }
    s
}

#[test]
fn hypergrad_prints_one_json_object_and_estimators_agree_with_exact() {
    let (tr, va) = (svm_file("tr.svm", &logreg_text(120, 1)), svm_file("va.svm", &logreg_text(80, 2)));
    let run = |estimator: &str, backend: &str| -> serde_json::Value {
        let out = bilevel(&[
            "hypergrad",
            "--problem",
            "logreg",
            "--train",
            tr.to_str().unwrap(),
            "--val",
            va.to_str().unwrap(),
            "--lambda",
            "-2",
            "--estimator",
            estimator,
            "--backend",
            backend,
            "--T",
            "3000",
            "--hessian_q",
            "30",
            "--inner_lr",
            "1",
        ]);
        assert!(out.status.success(), "{estimator}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let exact = run("exact", "cpu");
    let h: Vec<f64> = exact["hypergradient"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(h.len(), 5);
    assert!(exact["inner_grad_norm"].as_f64().unwrap() < 1e-8);
    assert!(exact["outer_loss"].as_f64().unwrap().is_finite());
    for (estimator, backend, tol) in [("AID-CG", "cpu", 1e-5), ("exact", "gpu", 1e-4)] {
        let other = run(estimator, backend);
        let g: Vec<f64> = other["hypergradient"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let err = h.iter().zip(&g).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt() / h.iter().map(|a| a * a).sum::<f64>().sqrt();
        assert!(err < tol, "{estimator} on {backend} vs exact: rel err {err:e}");
    }
    std::fs::remove_file(tr).ok();
    std::fs::remove_file(va).ok();
}

#[test]
fn check_passes_every_problem_on_cpu_and_gpu_prints_json_and_refuses_bad_values() {
    let out = bilevel(&["check", "--outer_penalty", "0.3"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for problem in ["ridge", "logreg", "multilogreg", "hyperclean"] {
        assert!(text.lines().any(|l| l.starts_with(&format!("{problem}: "))), "{problem} missing:\n{text}");
    }
    assert_eq!(text.lines().filter(|l| l.starts_with("passed: all")).count(), 4, "{text}");
    for backend in ["cpu", "gpu"] {
        let out = bilevel(&["check", "--json", "--problem", "hyperclean", "--backend", backend]);
        assert!(out.status.success(), "{backend}: {}", String::from_utf8_lossy(&out.stderr));
        let lines: Vec<serde_json::Value> =
            String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let report = &lines[0];
        assert_eq!(report["problem"], "hyperclean");
        assert_eq!(report["passed"], true, "{report}");
        let checks = report["checks"].as_array().unwrap();
        // Nine checks on all rows and nine on the batch (hyper-cleaning has no val_as_train view).
        assert_eq!(checks.len(), 18, "{report}");
        for c in checks {
            assert!(c["error"].as_f64().unwrap() <= c["tolerance"].as_f64().unwrap(), "{backend}: {c}");
        }
    }
    assert_one_line_error(&["check", "--fd_step", "0"], "--fd_step must be positive");
    assert_one_line_error(&["check", "--tolerance", "-1"], "--tolerance must be positive");
    assert_one_line_error(&["check", "--problem", "nope"], "nope");
    // A tolerance no finite difference meets: the checks fail, with one line naming the problem.
    assert_one_line_error(&["check", "--problem", "ridge", "--tolerance", "1e-15"], "oracle checks failed: ridge");
}

#[test]
fn hypergrad_bad_input_is_named_with_file_and_line() {
    let good = svm_file("good.svm", &logreg_text(20, 3));
    let g = good.to_str().unwrap();
    let bad_line = svm_file("badline.svm", "+1 1:0.5 2:0.1\n-1 1:0.2 2:oops\n");
    let bad_order = svm_file("badorder.svm", "+1 3:0.5 2:0.1\n");
    let wide = svm_file("wide.svm", "+1 1:0.5 9:0.1\n");
    let labels = svm_file("labels.svm", "+2 1:0.5\n-1 1:0.1\n");
    let lam3 = svm_file("lam3.txt", "0.1 0.2 0.3\n");
    let lam_nan = svm_file("lamnan.txt", "0.1 0.2 nan 0.3 0.4\n");
    let hg = |train: &str, val: &str, lambda: &str| -> Vec<String> {
        vec![
            "hypergrad".into(),
            "--problem".into(),
            "logreg".into(),
            "--train".into(),
            train.into(),
            "--val".into(),
            val.into(),
            "--lambda".into(),
            lambda.into(),
        ]
    };
    let cases: Vec<(Vec<String>, String)> = vec![
        (hg("/nonexistent/train.svm", g, "0"), "cannot open /nonexistent/train.svm".into()),
        (hg(bad_line.to_str().unwrap(), g, "0"), format!("{}:2: feature value \"oops\" is not a number", bad_line.display())),
        (hg(bad_order.to_str().unwrap(), g, "0"), format!("{}:1: feature indices must increase", bad_order.display())),
        (hg(g, wide.to_str().unwrap(), "0"), "dimension mismatch: the validation set has 9 features but the training set only 5".into()),
        (
            hg(labels.to_str().unwrap(), labels.to_str().unwrap(), "0"),
            "training sample 1: logistic (logreg) labels must be ±1 (or 0/1), got 2".into(),
        ),
        (hg(g, g, lam3.to_str().unwrap()), "λ has 3 entries, the problem needs 5".into()),
        (hg(g, g, lam_nan.to_str().unwrap()), "entry 3 (\"nan\") is not a finite number".into()),
        (hg(g, g, "not-a-number-or-file"), "is neither a number nor a readable file".into()),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_one_line_error(&args, &needle);
    }
    // A diverging estimator is reported, not printed as a result.
    assert_one_line_error(
        &["hypergrad", "--problem", "logreg", "--train", g, "--val", g, "--lambda", "0", "--estimator", "AID-FP", "--inner_lr", "1e30"],
        "non-finite",
    );
}

#[test]
fn plot_draws_png_and_svg_from_results_and_rejects_bad_files() {
    let dir = std::env::temp_dir().join(format!("bilevel-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let results = dir.join("run.jsonl");
    let lines = [
        r#"{"iter":0,"time_s":0.0,"test_loss":2.3,"test_acc":0.1}"#,
        r#"{"iter":1,"time_s":0.5,"test_loss":1.2,"test_acc":0.6}"#,
        r#"{"summary":true,"name":"demo","alg":"stocBiO"}"#,
    ];
    std::fs::write(&results, lines.join("\n")).unwrap();
    for ext in ["png", "svg"] {
        let fig = dir.join(format!("fig.{ext}"));
        let out = bilevel(&["plot", results.to_str().unwrap(), "-o", fig.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(std::fs::metadata(&fig).unwrap().len() > 1000, "{ext} figure is empty");
    }
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "{\"iter\":0}\nnot json\n").unwrap();
    assert_one_line_error(&["plot", bad.to_str().unwrap(), "-o", dir.join("x.png").to_str().unwrap()], "bad.jsonl:1: a record needs");
    assert_one_line_error(
        &["plot", results.to_str().unwrap(), "-o", dir.join("x.pdf").to_str().unwrap()],
        "--out must end in .png or .svg",
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A hyper-cleaning results file (baselines, records with precision and recall, down-weighted
/// images, summary) draws the three-panel cleaning figure, not the loss/accuracy pair: the PNG's
/// size says which. A down-weighted image whose pixels do not fill its side is a one-line error.
#[test]
fn plot_draws_the_hyperclean_figure_from_a_cleaning_results_file() {
    let dir = std::env::temp_dir().join(format!("bilevel-plot-hc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let image = |given: u8, truth: u8, weight: f64| {
        let pixels: Vec<String> = (0..784).map(|p| (if (p / 28 + p % 28) % 9 < 3 { 255 } else { 0 }).to_string()).collect();
        format!(r#"{{"index":7,"weight":{weight},"given_label":{given},"true_label":{truth},"side":28,"pixels":[{}]}}"#, pixels.join(","))
    };
    let mut lines = vec![r#"{"baselines":true,"uniform_test_acc":0.80,"clean_test_acc":0.90}"#.to_string()];
    for i in 0..5 {
        let (t, acc, p) = (i as f64 * 0.4, 0.8 + 0.015 * i as f64, 0.2 * i as f64);
        lines.push(format!(r#"{{"iter":{i},"time_s":{t},"test_loss":1.0,"test_acc":{acc},"precision":{p},"recall":{}}}"#, p * 0.9));
    }
    lines.push(format!(r#"{{"downweighted":[{},{}]}}"#, image(3, 5, 0.01), image(4, 4, 0.2)));
    lines.push(r#"{"summary":true,"name":"hyperclean","alg":"stocBiO","backend":"cpu (f32)"}"#.to_string());
    let results = dir.join("hyperclean.jsonl");
    std::fs::write(&results, lines.join("\n")).unwrap();
    let fig = dir.join("hyperclean.png");
    let out = bilevel(&["plot", results.to_str().unwrap(), "-o", fig.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let png = std::fs::read(&fig).unwrap();
    let size = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    assert_eq!((size(16), size(20)), (1860, 660), "the three-panel cleaning figure");
    let svg = dir.join("hyperclean.svg");
    let out = bilevel(&["plot", results.to_str().unwrap(), "-o", svg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&svg).unwrap();
    for caption in ["given 3 · true 5", "given 4 · true 4", "every sample weighted equally", "clean samples only", "σ(λ_i)"] {
        assert!(text.contains(caption), "the figure names {caption}");
    }

    let bad = dir.join("bad.jsonl");
    let short = lines[6].replacen("\"side\":28", "\"side\":27", 1);
    std::fs::write(&bad, [lines[1].clone(), short].join("\n")).unwrap();
    assert_one_line_error(&["plot", bad.to_str().unwrap(), "-o", dir.join("x.png").to_str().unwrap()], "bad.jsonl:2: an image of side 27");
    std::fs::remove_dir_all(&dir).ok();
}

/// `bilevel bench` writes one JSON line per case with the measured time and oracle counts, on
/// synthetic data of a problem's shape and on the real data set (MNIST hyper-cleaning, whose
/// mini-batches the CPU backend reads through its sparse batch form).
#[test]
fn bench_appends_one_record_per_case() {
    let path = std::env::temp_dir().join(format!("bilevel-bench-{}.jsonl", std::process::id()));
    let p = path.to_str().unwrap();
    let _ = std::fs::remove_file(&path);
    // (The real hyper-cleaning case times stocBiO alone: a full-batch algorithm on 20,000 MNIST
    // rows takes a minute in a debug build.)
    for (backend, extra) in [
        ("cpu32", &["--problems", "ijcnn1", "--algs", "stocBiO,AID-CG"][..]),
        ("cpu32", &["--problems", "hyperclean", "--real", "--algs", "stocBiO"][..]),
        ("cpu32-avx2", &["--problems", "ijcnn1", "--algs", "stocBiO", "--batches", "slices"][..]),
        ("cpu32-1t", &["--problems", "hyperclean", "--real", "--algs", "stocBiO", "--batches", "slices"][..]),
    ] {
        let mut args = vec!["bench", "--backends", backend, "--iters", "2", "--min_time", "0", "--out", p];
        args.extend_from_slice(extra);
        let out = bilevel(&args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = std::fs::read_to_string(&path).expect("bench output");
    let records: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(records.len(), 5);
    for (r, (problem, data, alg, batches, backend)) in records.iter().zip([
        ("ijcnn1", "synthetic", "stocBiO", "independent", "cpu (f32)"),
        ("ijcnn1", "synthetic", "AID-CG", "independent", "cpu (f32)"),
        ("hyperclean", "real", "stocBiO", "independent", "cpu (f32)"),
        ("ijcnn1", "synthetic", "stocBiO", "slices", "cpu (f32, AVX-512 off)"),
        ("hyperclean", "real", "stocBiO", "slices", "cpu (f32, one thread)"),
    ]) {
        assert_eq!(r["backend"].as_str(), Some(backend), "{r}");
        assert_eq!((r["problem"].as_str(), r["data"].as_str(), r["alg"].as_str()), (Some(problem), Some(data), Some(alg)), "{r}");
        assert_eq!(r["batches"].as_str(), Some(batches), "{r}");
        assert!(r["s_per_iter_median"].as_f64().is_some_and(|t| t > 0.0), "{r}");
        assert_eq!(r["iters"].as_u64(), Some(2), "{r}");
        // stocBiO: T = 10 inner gradients and Q = 10 HVPs per outer iteration.
        if alg == "stocBiO" {
            assert_eq!((r["per_iter"]["inner_grads"].as_f64(), r["per_iter"]["hvps"].as_f64()), (Some(10.0), Some(10.0)), "{r}");
        }
    }
    let _ = std::fs::remove_file(&path);
}
