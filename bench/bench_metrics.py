"""Metric benchmark: the vectorised J + F against a per-frame, per-threshold loop of the same definitions.

    python bench/bench_metrics.py [--frames 1000] [--size 256] [--repeats 3]

Frames are scored in the benchmark's batches of 40 (4 clips of 10 frames). The loop is the definition as the
benchmark's code writes it (`tests/test_metrics.py`); both sides must agree, and the script checks that they do.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aurora_trl.metrics import f_measure, mask_iou  # noqa: E402
from tests.test_metrics import loop_f_measure, loop_mask_iou  # noqa: E402


def score(batches, iou, f):
    return [(iou(x, t), f(x, t)) for x, t in batches]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    logits = torch.randn(args.frames, args.size, args.size) * 3
    target = torch.rand(args.frames, args.size, args.size) > 0.7
    target[::7] = False  # some frames without a target
    batches = [(logits[i : i + 40], target[i : i + 40]) for i in range(0, args.frames, 40)]

    times = {}
    for name, iou, f, repeats in (
        ("vectorised", mask_iou, f_measure, args.repeats),
        ("loop", loop_mask_iou, loop_f_measure, 1),
    ):
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            values = score(batches, iou, f)
            runs.append(time.perf_counter() - start)
        times[name] = (statistics.median(runs), values)
    for (j1, f1), (j2, f2) in zip(times["vectorised"][1], times["loop"][1]):
        assert abs(j1 - j2) < 1e-6 and abs(f1 - f2) < 1e-6, "vectorised and loop metrics disagree"
    print(f"J + F on {args.frames} frames of {args.size}x{args.size} (batches of 40), {args.threads} threads")
    for name, (seconds, _) in times.items():
        print(f"  {name:<11} {seconds:8.2f} s  {args.frames / seconds:10.1f} frames/s")
    print(f"  ratio       {times['loop'][0] / times['vectorised'][0]:.1f}x (same values to 1e-6)")


if __name__ == "__main__":
    main()
