"""Run every benchmark of `bench/` with its default settings, one after the other, and collect their reports.

    python bench/run_all.py [--only metrics eval ...] [--out bench/results.md]

Each script runs in its own process (so peak-memory figures are its own) and prints its figures; this script
prints them as they come and writes them all, with the machine they ran on and the load average each one started
under, to `--out`. BENCHMARKS.md explains each figure. The trainer benchmarks (`sft`, `grpo`) interleave their
sides in one process (`bench/common.py`, `run_interleaved`), so that load from other jobs on a shared machine lands
on every side of a ratio; they print the load average they ran under too.
"""

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path


HERE = Path(__file__).resolve().parent
BENCHMARKS = {
    "data": "bench_data.py",
    "model": "bench_model.py",
    "sft": "bench_sft.py",
    "grpo": "bench_grpo.py",
    "metrics": "bench_metrics.py",
    "eval": "bench_eval.py",
    "memory": "bench_memory.py",
}


def machine() -> str:
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only"
    return (
        f"{platform.node()}: {os.cpu_count()} cores, {platform.machine()}, {device}; Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these")
    parser.add_argument("--out", default=str(HERE / "results.md"), help="where the collected reports go")
    args = parser.parse_args()
    sections = [f"# Benchmark run, {time.strftime('%Y-%m-%d %H:%M')}\n\nMachine: {machine()}\n"]
    failed = []
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TQDM_DISABLE": "1",
        "TOKENIZERS_PARALLELISM": "false",  # tokenisation in the calling (measured) thread
    }
    for name in args.only or BENCHMARKS:
        command = [sys.executable, str(HERE / BENCHMARKS[name])]
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"=== {name}: {' '.join(command[1:])} (load average {load})", flush=True)
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        print(done.stdout, flush=True)
        if done.returncode != 0:
            failed.append(name)
            print(done.stderr[-3000:], file=sys.stderr)
        status = "" if done.returncode == 0 else f" (FAILED, exit code {done.returncode})"
        sections.append(
            f"## {name}{status}: `python bench/{BENCHMARKS[name]}`, {seconds:.0f} s, started under load average "
            f"{load}\n\n```\n{done.stdout}```\n"
        )
    Path(args.out).write_text("\n".join(sections), encoding="utf-8")
    print(f"reports written to {args.out}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
