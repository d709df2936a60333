#!/usr/bin/env bash
# The main job: installs what it needs (MNIST included), then runs MNIST data hyper-cleaning with
# stocBiO at noise 0.1 — the reference README's first command, `bilevel hyperclean` in place of
# `python3 mnist_exp.py` — printing progress, writing one JSON line per outer iteration to
# results/hyperclean_stocBiO_noise0.1.jsonl and the figure beside it. Then the toy problem with a
# closed-form hypergradient, on the CPU and on the GPU backend.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh

cargo build --release -p bilevel
bin=./target/release/bilevel
mkdir -p results
$bin hyperclean --alg stocBiO --batch_size 50 --noise_rate 0.1 --backend cpu32 --out results/hyperclean_stocBiO_noise0.1.jsonl
$bin plot results/hyperclean_stocBiO_noise0.1.jsonl -o results/hyperclean_stocBiO_noise0.1.png

mkdir -p results/toy
for alg in stocBiO AID-CG; do
  for backend in cpu gpu; do
    $bin toy --alg "$alg" --backend "$backend" --epochs 50 --out "results/toy/${alg}_${backend}.jsonl" | awk 'NR <= 3 || NR % 10 == 0'
  done
done
# Meta-learning: a short ITD-BiO run on Omniglot 5-way 1-shot (README "Meta-learning" has the
# long runs), then accuracy against time.
$bin meta --alg ITD-BiO --dataset omniglot --ways 5 --shots 1 --meta_batch 16 --inner_steps 10 \
  --inner_lr 0.05 --outer_lr 0.001 --width 32 --rotations --time_budget 60 --final_tasks 100 \
  --backend cpu32 --out results/meta_itd_bio_1shot.jsonl
$bin plot results/meta_itd_bio_1shot.jsonl -o results/meta_itd_bio_1shot.png
echo "results written to results/"
