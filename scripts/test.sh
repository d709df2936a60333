#!/usr/bin/env bash
# Every test: installs what it needs (idempotent), then formatting and lint gates, the Rust
# tests (CPU reference, finite differences, closed forms, GPU parity on lavapipe, CLI), and the
# browser end-to-end test (trunk-built page in headless Chromium on SwiftShader WebGPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --all
source scripts/env.sh

echo "== rustfmt"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --all-targets -- -D warnings
wasm_env cargo clippy --target wasm32-unknown-unknown -p bilevel-web -- -D warnings
echo "== cargo doc (warnings are errors; every public item of bilevel-core documented)"
RUSTDOCFLAGS="-D warnings" cargo doc -p bilevel-core --no-deps
echo "== cargo test"
cargo test --no-fail-fast
cargo test -p bilevel-web --lib
echo "== examples"
cargo run -q -p bilevel-core --example own_problem
cargo run -q -p bilevel-core --example custom_algorithm
cargo run -q -p bilevel-core --example clean_csv
echo "== packaging (bilevel-core and the shaders it depends on, built from the packaged sources)"
# The packaged crates carry no profiles; the workspace's is passed in so the verifying build reuses
# the dependencies compiled above instead of building (and storing) a second, unoptimised set.
cargo package --offline -q -p bilevel-shaders -p bilevel-core --allow-dirty \
  --config 'profile.dev.package."*".opt-level=2'
echo "== a user crate outside the workspace (bilevel-core by path)"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}" cargo run -q --offline --manifest-path tests/user_crate/Cargo.toml
echo "== browser"
bash tests/browser/run.sh
