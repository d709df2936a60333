#!/usr/bin/env bash
# The web page's build-time assets (Trunk.toml runs this before every `trunk build`):
# target/web-assets/mnist-subset.bin, the MNIST subset of the hyper-cleaning panel (2,000 training,
# 500 validation and 1,000 test images as bytes), written by the native CLI from data/mnist.
# Fails with one clear line when MNIST is missing (scripts/setup.sh fetches it).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="$ROOT/target/web-assets/mnist-subset.bin"
if [ ! -f "$ROOT/data/mnist/train-images-idx3-ubyte" ]; then
    echo "web-assets: MNIST is missing (data/mnist/train-images-idx3-ubyte); run scripts/setup.sh first" >&2
    exit 1
fi
if [ -s "$OUT" ] && [ "$OUT" -nt "$ROOT/data/mnist/train-images-idx3-ubyte" ] && [ "$OUT" -nt "$ROOT/core/src/data/idx.rs" ]; then
    exit 0
fi
# trunk runs this with the wasm environment (Debian's cargo first, build-std, target/wasm):
# build the native CLI with rustup's toolchain in the normal target folder instead.
NATIVE_CARGO="${NATIVE_CARGO:-$HOME/.cargo/bin/cargo}"
[ -x "$NATIVE_CARGO" ] || NATIVE_CARGO=cargo
env -u RUSTC_BOOTSTRAP -u CARGO_UNSTABLE_BUILD_STD -u CARGO_TARGET_DIR -u CARGO_BUILD_TARGET \
    PATH="$HOME/.cargo/bin:$PATH" "$NATIVE_CARGO" build -q -p bilevel
"$ROOT/target/debug/bilevel" mnist-subset --train 2000 --val 500 --test 1000 --out "$OUT"
