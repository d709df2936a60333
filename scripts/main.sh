#!/usr/bin/env bash
# The main job: installs what it needs, then runs the toy bilevel problem (per-feature ridge
# regression with a closed-form hypergradient) with stocBiO and AID-CG on the CPU and on the GPU
# backend, printing progress and writing one JSON line per outer iteration under results/toy/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh

cargo build --release -p bilevel
mkdir -p results/toy
for alg in stocBiO AID-CG; do
  for backend in cpu gpu; do
    ./target/release/bilevel toy --alg "$alg" --backend "$backend" --epochs 50 --out "results/toy/${alg}_${backend}.jsonl" \
      | awk 'NR <= 3 || NR % 10 == 0'
  done
done
echo "results written to results/toy/"
