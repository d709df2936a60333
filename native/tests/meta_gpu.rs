//! `bilevel meta --backend gpu` end to end on lavapipe (a missing adapter fails): the same
//! episodes and seeds as `--backend cpu32`, so the per-iteration training losses agree to f32
//! precision.

use std::process::Command;

fn meta_run(backend: &str, alg: &str) -> Vec<serde_json::Value> {
    let path = std::env::temp_dir().join(format!("bilevel-meta-gpu-{}-{backend}-{alg}.jsonl", std::process::id()));
    #[rustfmt::skip]
    let args = [
        "meta", "--backend", backend, "--adapter", "llvmpipe", "--alg", alg, "--size", "16", "--width", "6",
        "--meta_batch", "3", "--inner_steps", "2", "--iterations", "2", "--final_tasks", "3", "--out", path.to_str().unwrap(),
    ];
    let out = Command::new(env!("CARGO_BIN_EXE_bilevel")).args(args).env("XDG_RUNTIME_DIR", std::env::temp_dir()).output().expect("run");
    assert!(out.status.success(), "bilevel meta --backend {backend} failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&path).expect("output file");
    let _ = std::fs::remove_file(&path);
    text.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect()
}

#[test]
fn meta_on_the_gpu_runs_end_to_end_and_matches_cpu32() {
    for alg in ["ITD-BiO", "MAML"] {
        let (cpu, gpu) = (meta_run("cpu32", alg), meta_run("gpu", alg));
        assert_eq!(cpu.len(), 3, "{alg}: two iterations and a final line");
        assert_eq!(gpu.len(), cpu.len());
        assert!(gpu[0]["backend"].is_null() && gpu[2]["backend"].as_str().unwrap().starts_with("gpu"), "{alg}: {:?}", gpu[2]);
        for (c, g) in cpu.iter().zip(&gpu).take(2) {
            let (lc, lg) = (c["train_loss"].as_f64().unwrap(), g["train_loss"].as_f64().unwrap());
            assert!((lc - lg).abs() < 1e-4 * lc.abs(), "{alg}: train loss cpu32 {lc} vs gpu {lg}");
        }
        let acc = gpu[2]["test_acc"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{alg}: final accuracy {acc}");
    }
}
