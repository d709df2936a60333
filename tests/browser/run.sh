#!/usr/bin/env bash
# Browser end-to-end test of the web page (index.html + the bilevel-web crate).
#
#   bash tests/browser/run.sh          (from anywhere)
#
# 1. builds the native CLI (rustup's toolchain) and the page (trunk, Debian's rustc-web with
#    std built from source for wasm32, see /work/shared/TOOLCHAIN.md) into dist/;
# 2. writes the native CPU (f64) reference for each algorithm into target/browser/;
# 3. serves dist/ on 127.0.0.1 and runs tests/browser/e2e.mjs in headless Chromium with
#    SwiftShader's WebGPU: the page's f32 GPU records must match the CPU reference, and a
#    browser without WebGPU must get a visible explanation.
# 4. drives the landscape, hyper-cleaning and race panels against `bilevel landscape`,
#    `bilevel hyperclean` (CPU, same subset and seed) and the toy references; screenshots and
#    target/browser/metrics.json (first result, per-iteration times beside native wgpu, frame rates).
# Exits non-zero on any failure. Environment knobs: E2E_EPOCHS (default 10), E2E_SETTINGS,
# E2E_TESTS, CHROMIUM, NATIVE_CARGO. The page build needs MNIST in data/mnist (scripts/setup.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
OUT="$ROOT/target/browser"
mkdir -p "$OUT"

log() { printf '\n== %s\n' "$*"; }
need() {
    if ! command -v "$1" >/dev/null 2>&1 && [ ! -x "$1" ]; then
        echo "run.sh: $1 not found ($2)" >&2
        exit 2
    fi
}

# The one list of settings shared by the CPU reference and the page (CLI flag = query key).
# outer_lr=50 (the CLI default) moves λ a long way in a few iterations (‖λ‖ ≈ 5 after 10),
# so the comparison follows a real trajectory, not a nearly fixed point.
EPOCHS="${E2E_EPOCHS:-10}"
SETTINGS=(seed=0 "epochs=$EPOCHS" T=10 hessian_q=10 eta=0.5 inner_lr=0.5 outer_lr=50
    batch_size=64 n_train=500 n_val=500 features=40 noise=0.5)
# E2E_SETTINGS="seed=1 epochs=30 ..." replaces the whole list (unset keys: CLI/page defaults).
if [ -n "${E2E_SETTINGS:-}" ]; then
    read -ra SETTINGS <<<"$E2E_SETTINGS"
fi
ALGS=(stocBiO AID-CG)
# The race panel's algorithms (their CPU references are written too).
RACE_ALGS=(stocBiO AID-FP AID-CG reverse SABA SRBA)
# E2E_TESTS=landscape,clean,... runs a subset of e2e.mjs's tests.
TESTS="${E2E_TESTS:-landscape,clean,race,toy,controls,errors,no-webgpu}"

# Native builds use rustup's toolchain; wasm builds Debian's 1.96 with rust-src.
NATIVE_CARGO="${NATIVE_CARGO:-$HOME/.cargo/bin/cargo}"
[ -x "$NATIVE_CARGO" ] || NATIVE_CARGO=cargo
WASM_ENV=(env "PATH=/usr/bin:$HOME/.cargo/bin:$PATH" RUSTC_BOOTSTRAP=1
    CARGO_UNSTABLE_BUILD_STD=std,panic_abort
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld
    "CARGO_TARGET_DIR=$ROOT/target/wasm")
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

need /usr/bin/cargo "apt-get install -t bookworm-security rustc-web cargo-web rust-web-src"
need wasm-ld "apt-get install lld"
need "$HOME/.cargo/bin/trunk" "cargo install trunk --version 0.21.14 --locked"
need "$HOME/.cargo/bin/wasm-bindgen" "cargo install wasm-bindgen-cli --version 0.2.130"
need "$CHROMIUM" "apt-get install chromium"
need node "install Node.js"
need python3 "install python3"
if [ ! -d tests/browser/node_modules/playwright-core ]; then
    log "installing playwright-core (npm ci)"
    (cd tests/browser && npm ci --no-audit --no-fund)
fi

log "native CLI: cargo build -p bilevel"
t0=$SECONDS
env -u RUSTC_BOOTSTRAP -u CARGO_UNSTABLE_BUILD_STD -u CARGO_TARGET_DIR \
    "$NATIVE_CARGO" build -p bilevel
BILEVEL="$ROOT/target/debug/bilevel"
echo "native build: $((SECONDS - t0)) s"

log "page: trunk build --release (dist/)"
t0=$SECONDS
"${WASM_ENV[@]}" trunk build --release
echo "page build: $((SECONDS - t0)) s"

log "CPU reference (f64): ${SETTINGS[*]}"
cli_args=()
query=""
for kv in "${SETTINGS[@]}"; do
    cli_args+=("--${kv%%=*}" "${kv#*=}")
    query+="${kv}&"
done
for alg in $(printf '%s\n' "${ALGS[@]}" "${RACE_ALGS[@]}" | sort -u); do
    ref="$OUT/cpu_reference_$alg.jsonl"
    "$BILEVEL" toy --backend cpu --alg "$alg" "${cli_args[@]}" --record_vectors \
        --out "$ref" >"$OUT/cpu_reference_$alg.log" 2>&1 ||
        { cat "$OUT/cpu_reference_$alg.log" >&2; exit 1; }
    echo "$alg: $(wc -l <"$ref") records -> ${ref#"$ROOT"/}"
done
# The stocBiO file is also the brief's single reference path.
cp "$OUT/cpu_reference_stocBiO.jsonl" "$OUT/cpu_reference.jsonl"
# The same run on native wgpu (lavapipe here): the per-iteration time the browser is compared with.
"$BILEVEL" toy --backend gpu --alg stocBiO "${cli_args[@]}" --out "$OUT/native_gpu_stocBiO.jsonl" \
    >"$OUT/native_gpu_stocBiO.log" 2>&1 || { cat "$OUT/native_gpu_stocBiO.log" >&2; exit 1; }

log "serving dist/ on 127.0.0.1"
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
python3 -m http.server "$PORT" --bind 127.0.0.1 --directory "$ROOT/dist" \
    >"$OUT/http.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/', timeout=1)" 2>/dev/null; then
        break
    fi
    kill -0 "$SERVER" 2>/dev/null || { cat "$OUT/http.log" >&2; exit 1; }
    sleep 0.2
done
echo "http://127.0.0.1:$PORT/"

log "browser tests (tests/browser/e2e.mjs)"
t0=$SECONDS
node "$ROOT/tests/browser/e2e.mjs" \
    --port "$PORT" \
    --query "${query%&}" \
    --algs "$(IFS=,; echo "${ALGS[*]}")" \
    --reference-dir "$OUT" \
    --out "$OUT" \
    --chromium "$CHROMIUM" \
    --bilevel "$BILEVEL" \
    --race-algs "$(IFS=,; echo "${RACE_ALGS[*]}")" \
    --epochs "$EPOCHS" \
    --tests "$TESTS"
echo "browser tests: $((SECONDS - t0)) s"
