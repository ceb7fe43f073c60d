"""Evaluation benchmark: `aurora-trl eval` clips/s on the tiny model, batched generation against one clip at a time.

    python bench/bench_eval.py [--clips 16] [--batch-size 4] [--max-new-tokens 32] [--repeats 3]

Both sides score the same Seen clips with the same code (`aurora_trl.apps.evaluate.evaluate`), once with
`--batch-size` clips per `generate` and once with 1; the script checks that they give the same metrics. On the
tiny model generation is under half of an eval (a profile: `generate` 40 %, the processor 15 %, the metrics 15 %),
and only generation gets cheaper per clip in a batch; on a real model on a GPU generation dominates, and a batch
also fills the device.
"""

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would bury the figures


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from datasets import load_from_disk

    from aurora_trl.apps.evaluate import evaluate
    from aurora_trl.modeling import AuroraForSegmentation, load_processor
    from aurora_trl.tiny import save_tiny_model
    from data_prep.build import build_dataset
    from data_prep.synth import write_synthetic_refavs

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_synthetic_refavs(work / "raw", clips=max(20, args.clips * 2), seed=0, size=64)
        build_dataset(work / "raw", work / "ds")
        save_tiny_model(work / "tiny", sam_image_size=64)
        dataset = load_from_disk(str(work / "ds"))
        clips = min(args.clips, len(dataset["test_s"]))
        model = AuroraForSegmentation.from_pretrained(work / "tiny").eval()
        processor = load_processor(work / "tiny")

        def run(batch_size):
            start = time.perf_counter()
            metrics = evaluate(
                model,
                processor,
                dataset,
                ["test_s"],
                work / f"out{batch_size}",
                max_new_tokens=args.max_new_tokens,
                limit=clips,
                overlays=0,
                batch_size=batch_size,
            )
            return time.perf_counter() - start, metrics

        run(args.batch_size)  # warm-up: first-call allocations and lazy imports
        times = {1: [], args.batch_size: []}
        results = {}
        for _ in range(args.repeats):
            for batch_size in times:  # interleaved, so machine noise hits both sides alike
                seconds, results[batch_size] = run(batch_size)
                times[batch_size].append(seconds)
    one, many = results[1]["test_s"], results[args.batch_size]["test_s"]
    assert abs(one["J"] - many["J"]) < 1e-4 and abs(one["F"] - many["F"]) < 1e-4, "batched eval changed the metrics"
    print(f"eval of {clips} Seen clips, tiny model, {args.max_new_tokens} new tokens, {args.threads} threads")
    for batch_size, runs in times.items():
        median = statistics.median(runs)
        print(f"  batch {batch_size:<3} {median:7.2f} s  {clips / median:6.2f} clips/s  (median of {len(runs)})")
    ratio = statistics.median(times[1]) / statistics.median(times[args.batch_size])
    print(f"  ratio     {ratio:.2f}x (same J and F to 1e-4)")
    print(f"  peak RSS  {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
