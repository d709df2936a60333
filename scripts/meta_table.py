#!/usr/bin/env python3
"""Markdown table of `bilevel meta` runs: final meta-test accuracy ± 95 % CI and the time to reach a
target accuracy, from the JSON lines files given (default: results/meta/*.jsonl).

The per-iteration test accuracy is over one meta-batch of test tasks, so it is noisy; "time to X %"
is the first time at which its moving average over the last WINDOW iterations reaches X."""
import glob
import json
import sys

WINDOW = 20
TARGET = 0.90


def row(path):
    recs, final = [], None
    with open(path) as f:
        for line in f:
            v = json.loads(line)
            if v.get("final"):
                final = v
            else:
                recs.append(v)
    t90 = None
    for i in range(len(recs)):
        w = recs[max(0, i - WINDOW + 1):i + 1]
        if len(w) == WINDOW and sum(r["test_acc"] for r in w) / WINDOW >= TARGET:
            t90 = (recs[i]["time_s"], recs[i]["iter"] + 1)
            break
    last = recs[-1] if recs else {}
    return final, last, t90


def main():
    paths = sys.argv[1:] or sorted(glob.glob("results/meta/*.jsonl"))
    print("| algorithm | task | final meta-test acc (± 95 % CI, tasks) | iterations | train time (s) | time to 90 % (s, iteration) | settings |")
    print("|---|---|---|---|---|---|---|")
    for p in paths:
        final, last, t90 = row(p)
        if final is None:
            print(f"| {p} | (running: iteration {last.get('iter')}, {last.get('time_s', 0):.0f} s) | | | | | |")
            continue
        t = f"{t90[0]:.0f} ({t90[1]})" if t90 else "not reached"
        settings = (f"width {final['width']}, meta-batch {final['meta_batch']}, N = {final['inner_steps']}, "
                    f"α = {final['inner_lr']}, Adam {final['outer_lr']}, {final['queries']} queries/class, "
                    f"rotations {'on' if final['rotations'] else 'off'}, {final['backend']}")
        print(f"| {final['alg']} | {final['ways']}-way {final['shots']}-shot | {100 * final['test_acc']:.2f} ± "
              f"{100 * final['test_acc_ci95']:.2f} % ({final['test_tasks']}) | {final['iterations']} | {final['time_s']:.0f} | {t} | {settings} |")


if __name__ == "__main__":
    main()
