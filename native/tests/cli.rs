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
    let out = bilevel(&["toy", "--alg", "aid-cg", "--epochs", "4", "--features", "10", "--n_train", "60", "--n_val", "50", "--out", p]);
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
    // AID-CG with K = 10 ≥ d = 10 CG steps is close to exact after the first warm start.
    assert!(records[3]["hypergrad_rel_err"].as_f64().unwrap() < 1e-2, "{}", records[3]);
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
