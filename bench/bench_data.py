"""Dataset-build benchmark: throughput at 1 and 2 worker processes, and peak memory against the clip count.

    python bench/bench_data.py [--clips 200] [--big-clips 800] [--repeats 3] [--work DIR]

Each build runs in a fresh subprocess, so its peak resident memory (its own and its workers') is measured alone.
Throughput is clips/s (a clip is one video; Ref-AVS has about 3-6 rows per clip), median over the repeats. The
builder streams rows to disk in small batches, so peak memory should not grow with the number of clips.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


# The child samples its anonymous resident memory (heap: what the build itself holds) next to ru_maxrss, which also
# counts the pages of memory-mapped Arrow files that datasets reads while saving (file-backed and reclaimable).
CHILD = """
import json, resource, sys, threading, time
from data_prep.build import build_dataset
peak_anon = [0]
def sample():
    while True:
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                peak_anon[0] = max(peak_anon[0], int(line.split()[1]))
        time.sleep(0.02)
threading.Thread(target=sample, daemon=True).start()
root, out, num_proc = sys.argv[1], sys.argv[2], int(sys.argv[3])
start = time.perf_counter()
report = build_dataset(root, out, stage1=root + "/stage1_cot.json", num_proc=num_proc)
elapsed = time.perf_counter() - start
rows = sum(c["out"] for c in report["splits"].values())
self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": elapsed, "rows": rows, "peak_mb": max(self_kb, children_kb) / 1024,
                  "peak_anon_mb": peak_anon[0] / 1024}))
"""


def build_once(root: Path, out: Path, num_proc: int) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), str(out), str(num_proc)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--big-clips", type=int, default=800)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=64, help="frame size of the synthetic clips")
    parser.add_argument("--work", help="scratch folder (default: a temporary one)")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from data_prep.synth import write_synthetic_refavs

    work = Path(args.work or tempfile.mkdtemp(prefix="bench_data_"))
    roots = {}
    for clips in (args.clips, args.big_clips):
        roots[clips] = work / f"synth{clips}"
        if not (roots[clips] / "metadata.csv").exists():
            write_synthetic_refavs(roots[clips], clips=clips, seed=0, size=args.size)

    print(f"build throughput, {args.clips} clips of {args.size} px, median of {args.repeats}")
    speed = {}
    for num_proc in (1, 2):
        runs = [build_once(roots[args.clips], work / f"out-{num_proc}-{i}", num_proc) for i in range(args.repeats)]
        seconds = statistics.median(r["seconds"] for r in runs)
        speed[num_proc] = args.clips / seconds
        print(
            f"  num_proc={num_proc}: {seconds:6.2f} s  {speed[num_proc]:6.1f} clips/s  "
            f"{runs[0]['rows'] / seconds:6.1f} rows/s  peak {max(r['peak_mb'] for r in runs):.0f} MB"
        )
    print(f"  ratio num_proc 2 / 1: {speed[2] / speed[1]:.2f}x")

    print("peak memory against clip count (num_proc=1)")
    peaks = {}
    for clips in (args.clips, args.big_clips):
        peaks[clips] = result = build_once(roots[clips], work / f"mem-{clips}", 1)
        print(
            f"  {clips:5d} clips ({result['rows']} rows): peak anonymous {result['peak_anon_mb']:.0f} MB, "
            f"max RSS {result['peak_mb']:.0f} MB (incl. mapped Arrow pages), {result['seconds']:.1f} s"
        )
    small, big = peaks[args.clips], peaks[args.big_clips]
    print(
        f"  ratio {args.big_clips} / {args.clips} clips (clip count {args.big_clips / args.clips:.0f}x): "
        f"anonymous {big['peak_anon_mb'] / small['peak_anon_mb']:.2f}x, max RSS {big['peak_mb'] / small['peak_mb']:.2f}x"
    )


if __name__ == "__main__":
    main()
