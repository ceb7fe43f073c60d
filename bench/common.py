"""Shared by the trainer benchmarks: an interleaved driver for several Trainers, a region profiler, and the tiny
model + synthetic data they train on.

Why interleave: these machines are shared, and another job's load lands on whatever runs at that moment. Running all
steps of one side and then all of the other puts a burst of load on one side only (the same SFT script once gave
ratios from 0.26x to 5.8x). `run_interleaved` runs each side's own `trainer.train()` in its own thread and lets
only one of them run at a time, handing a baton from side to side every `chunk` optimizer steps, so that a burst of
load is shared by all the sides.

What a step is: from the moment a side resumes (or ends its previous step) to its next `on_step_end`. The Trainer
fetches and collates the next batch before `on_step_begin`, so data loading and collation are inside the step, as
they are in a real run. The benchmarks use `dataloader_num_workers=0` so that collation runs in the measured
thread. CPU figures are `time.thread_time()` of that thread: with `torch.set_num_threads(1)` torch's kernels (and
the CPU autograd engine) run in the calling thread, so the thread's CPU time is the step's compute, and the gap
between wall and CPU time is time the thread waited for a core. With more torch threads, the CPU time of torch's
worker threads is not counted.
"""

import functools
import os
import resource
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback


# Tokenizers' Rust thread pool would run batch tokenisation outside the measured thread.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@dataclass
class StepStats:
    """Per-step figures of one side, in step order; the first `warmup` steps are left out of the medians."""

    warmup: int
    wall: list[float] = field(default_factory=list)  # seconds, data fetch and collation included
    cpu: list[float] = field(default_factory=list)  # CPU seconds of the side's thread
    fetch_wall: list[float] = field(default_factory=list)  # the part before `on_step_begin`: fetch + collation
    fetch_cpu: list[float] = field(default_factory=list)
    items: list[float] = field(default_factory=list)  # work done per step (SFT rows, GRPO completion tokens)
    regions: list[dict] = field(default_factory=list)  # per step: region -> (exclusive wall, exclusive CPU)

    @property
    def measured(self) -> int:
        return max(len(self.wall) - self.warmup, 0)

    def median(self, name: str) -> float:
        """Median of a per-step list (`wall`, `cpu`, `fetch_wall`, `fetch_cpu`, `items`) after the warm-up."""
        values = getattr(self, name)[self.warmup :]
        return statistics.median(values) if values else float("nan")


@dataclass
class Interleaved:
    """What `run_interleaved` measured: each side's steps, and the load average the run ran under."""

    sides: dict[str, StepStats]
    load_start: tuple[float, float, float]
    load_end: tuple[float, float, float]
    seconds: float

    def load_line(self) -> str:
        start, end = (", ".join(f"{x:.2f}" for x in load) for load in (self.load_start, self.load_end))
        return f"load average it ran under (1, 5, 15 min): {start} at start, {end} at end ({os.cpu_count()} cores)"


class _Aborted(Exception):
    """Raised inside a side's training loop to stop it because another side failed."""


class _Baton:
    """Whose turn it is. Only the side holding the baton runs; the others wait in their callback or before train()."""

    def __init__(self, order: list[str]):
        self._cond = threading.Condition()
        self._running = list(order)  # the sides still training, in turn order
        self._turn = order[0]
        self.error: tuple[str, BaseException] | None = None  # the first side that failed, and why

    def wait_turn(self, side: str) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._turn == side or self.error is not None)
            self.check()

    def check(self) -> None:
        if self.error is not None:
            raise _Aborted(f"stopped: side {self.error[0]!r} failed")

    def hand_over(self, side: str) -> None:
        """Give the turn to the next running side, then wait for it to come back (at once if `side` is alone)."""
        with self._cond:
            index = self._running.index(side)
            self._turn = self._running[(index + 1) % len(self._running)]
            self._cond.notify_all()
        self.wait_turn(side)

    def finish(self, side: str, error: BaseException | None = None) -> None:
        """`side` is done (or failed): it leaves the rotation and the next side runs; a failure stops all."""
        with self._cond:
            if error is not None and not isinstance(error, _Aborted) and self.error is None:
                self.error = (side, error)
            index = self._running.index(side)
            self._running.remove(side)
            if self._running:
                self._turn = self._running[index % len(self._running)]
            self._cond.notify_all()

    def abort(self, error: BaseException) -> None:
        with self._cond:
            self.error = self.error or ("main thread", error)
            self._cond.notify_all()


class _SideCallback(TrainerCallback):
    """Times one side's steps and hands the baton on every `chunk` steps (at `on_step_end`, after the optimizer)."""

    def __init__(self, side: str, baton: _Baton, stats: StepStats, chunk: int, items, profiler):
        self.side, self.baton, self.stats, self.chunk = side, baton, stats, chunk
        self.items, self.profiler = items, profiler

    def _mark(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.thread_time()
        if self.profiler is not None:
            self.profiler.lap()  # what ran while the side was not being timed is not part of a step

    def on_train_begin(self, args, state, control, **kwargs):
        self._mark()

    def on_step_begin(self, args, state, control, **kwargs):
        self.stats.fetch_wall.append(time.perf_counter() - self._wall)
        self.stats.fetch_cpu.append(time.thread_time() - self._cpu)

    def on_step_end(self, args, state, control, **kwargs):
        self.stats.wall.append(time.perf_counter() - self._wall)
        self.stats.cpu.append(time.thread_time() - self._cpu)
        if self.items is not None:
            self.stats.items.append(self.items())
        if self.profiler is not None:
            self.stats.regions.append(self.profiler.lap())
        self.baton.check()
        steps = len(self.stats.wall)
        if steps % self.chunk == 0 and state.global_step < state.max_steps:
            self.baton.hand_over(self.side)
        self._mark()


def run_interleaved(
    trainers: dict,
    chunk: int = 4,
    warmup: int = 2,
    items: dict[str, Callable[[], float]] | None = None,
    profilers: dict | None = None,
) -> Interleaved:
    """Train every trainer (its own `trainer.train()`, in its own thread), `chunk` steps at a time in turn.

    Args:
        trainers: side name -> Trainer, in turn order; give them the same `max_steps` so that every chunk of the
            run is interleaved (a side that finishes early leaves the rotation, the others go on).
        chunk: optimizer steps a side runs before it hands the baton to the next.
        warmup: steps of each side left out of the medians.
        items: side name -> a function called at each step's end that returns the work done in that step.
        profilers: side name -> a [`RegionProfiler`] whose regions are recorded per step.

    A failure in one side stops the others at their next step and is raised here, with the side named in a note.
    """
    items, profilers = items or {}, profilers or {}
    baton = _Baton(list(trainers))
    stats = {side: StepStats(warmup) for side in trainers}
    for side, trainer in trainers.items():
        for printer in (PrinterCallback, ProgressCallback):  # the benchmark prints its own figures
            trainer.remove_callback(printer)
        trainer.add_callback(_SideCallback(side, baton, stats[side], chunk, items.get(side), profilers.get(side)))

    def train(side: str, trainer) -> None:
        error = None
        try:
            baton.wait_turn(side)
            trainer.train()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which raises it
            error = exc
        finally:
            baton.finish(side, error)

    load_start, start = os.getloadavg(), time.perf_counter()
    threads = [
        threading.Thread(target=train, args=item, name=f"bench-{item[0]}", daemon=True) for item in trainers.items()
    ]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():  # a timed join keeps Ctrl-C working in the main thread
                thread.join(0.5)
    except BaseException as exc:
        baton.abort(exc)
        raise
    if baton.error is not None:
        side, error = baton.error
        error.add_note(f"(in side {side!r} of the interleaved benchmark run)")
        raise error
    return Interleaved(stats, load_start, os.getloadavg(), time.perf_counter() - start)


class RegionProfiler:
    """Exclusive wall and thread-CPU time of named regions, by wrapping bound methods on instances.

    `wrap(obj, "method", "region")` replaces `obj.method` (an instance attribute, so `super()` calls inside the
    class are not wrapped twice). Regions nest through a stack: the time of a region nested in another is taken
    out of the outer one, so the regions of a step add up to at most the step. One profiler serves one thread.
    """

    def __init__(self):
        self._stack: list[list[float]] = []  # open calls: [wall at entry, CPU at entry, nested wall, nested CPU]
        self._totals = defaultdict(lambda: [0.0, 0.0])

    def wrap(self, obj, method: str, region: str) -> None:
        original = getattr(obj, method)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            frame = [time.perf_counter(), time.thread_time(), 0.0, 0.0]
            self._stack.append(frame)
            try:
                return original(*args, **kwargs)
            finally:
                self._stack.pop()
                wall, cpu = time.perf_counter() - frame[0], time.thread_time() - frame[1]
                total = self._totals[region]
                total[0] += wall - frame[2]
                total[1] += cpu - frame[3]
                if self._stack:
                    self._stack[-1][2] += wall
                    self._stack[-1][3] += cpu

        setattr(obj, method, timed)

    def lap(self) -> dict[str, tuple[float, float]]:
        """The regions' `(wall, CPU)` seconds since the last lap (and start a new one)."""
        totals = {region: (wall, cpu) for region, (wall, cpu) in self._totals.items()}
        self._totals.clear()
        return totals


def region_times(stats: StepStats, regions: list[str], data_region: str = "data") -> dict[str, tuple[float, float]]:
    """Each region's mean `(wall, CPU)` seconds per measured step, with `data` and `other` rows.

    The data loader's fetch (before `on_step_begin`) is added to `data_region`; `other` is what no region covers
    (optimizer, scheduler, logging, callbacks).
    """
    steps = range(stats.warmup, len(stats.wall))
    n = max(len(steps), 1)
    rows = {region: [0.0, 0.0] for region in [*regions, data_region]}
    for i in steps:
        for region, (wall, cpu) in stats.regions[i].items():
            row = rows.setdefault(region, [0.0, 0.0])
            row[0] += wall
            row[1] += cpu
        rows[data_region][0] += stats.fetch_wall[i]
        rows[data_region][1] += stats.fetch_cpu[i]
    total_wall, total_cpu = (sum(getattr(stats, name)[i] for i in steps) for name in ("wall", "cpu"))
    rows["other"] = [total_wall - sum(r[0] for r in rows.values()), total_cpu - sum(r[1] for r in rows.values())]
    return {region: (wall / n, cpu / n) for region, (wall, cpu) in rows.items()}


def share_table(sides: dict[str, StepStats], regions: list[str], data_region: str = "data") -> list[str]:
    """Lines of a table, one row per region and three columns per side: its mean wall time per measured step, and
    its share of the steps' wall and CPU time (exclusive times: the shares of a side add up to 100 %)."""
    times = {side: region_times(stats, regions, data_region) for side, stats in sides.items()}
    names = list(dict.fromkeys(region for side_times in times.values() for region in side_times))
    names.append(names.pop(names.index("other")))  # last, as the remainder
    width = max(len(name) for name in [*names, "region"])
    head = "".join(f"  {side:>9} {'wall%':>6} {'CPU%':>6}" for side in sides)
    lines = [f"  {'region':<{width}}{head}"]
    for name in names:
        cells = []
        for side_times in times.values():
            wall, cpu = side_times.get(name, (0.0, 0.0))
            total_wall, total_cpu = (sum(t[k] for t in side_times.values()) for k in (0, 1))
            cells.append(f"  {wall:7.3f} s {100 * wall / total_wall:5.1f}% {100 * cpu / total_cpu:5.1f}%")
        lines.append(f"  {name:<{width}}{''.join(cells)}")
    return lines


def paired_ratio(a: StepStats, b: StepStats, chunk: int, name: str = "wall") -> float:
    """Median over the rounds of the run of (a's median step in the round / b's median step in the same round).

    Both sides of a round ran within seconds of each other, so a slow drift of the machine's load cancels out in
    each round's ratio; the warm-up steps are left out.
    """
    ratios = []
    for start in range(0, min(len(a.wall), len(b.wall)), chunk):
        rounds = [getattr(stats, name)[max(start, stats.warmup) : start + chunk] for stats in (a, b)]
        if all(rounds):
            ratios.append(statistics.median(rounds[0]) / statistics.median(rounds[1]))
    return statistics.median(ratios) if ratios else float("nan")


def peak_rss_line() -> str:
    """The process's peak resident set size (Linux reports `ru_maxrss` in KiB)."""
    return f"peak RSS of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"


def ratio_line(a: StepStats, b: StepStats, chunk: int) -> str:
    """`a / b` of the median wall and CPU steps, and the same paired by round ([`paired_ratio`])."""
    medians = [a.median(name) / b.median(name) for name in ("wall", "cpu")]
    paired = [paired_ratio(a, b, chunk, name) for name in ("wall", "cpu")]
    return (
        f"medians: wall {medians[0]:5.2f}x  CPU {medians[1]:5.2f}x   "
        f"paired by round: wall {paired[0]:5.2f}x  CPU {paired[1]:5.2f}x"
    )


# Training options of every timed run: fp32 on the CPU, nothing saved or logged inside the timed steps (the Trainer's
# final log comes after them), the data loader's collation in the measured thread.
TIMED_TRAINING = dict(
    learning_rate=1e-3,
    report_to="none",
    use_cpu=True,
    bf16=False,
    save_strategy="no",
    gradient_checkpointing=False,
    logging_steps=10**6,
    disable_tqdm=True,
    dataloader_num_workers=0,
    seed=0,
)


def tiny_setup(work: Path, sam_size: int, clips: int = 12):
    """Synthetic data (64-px frames, Stage-1 reasoning) and a tiny AURORA model: `(train split, processor, model dir)`."""
    from datasets import load_from_disk

    from aurora_trl.modeling import load_processor
    from aurora_trl.tiny import save_tiny_model
    from data_prep.build import build_dataset
    from data_prep.synth import write_synthetic_refavs

    write_synthetic_refavs(work / "raw", clips=clips, seed=0, size=64)
    build_dataset(work / "raw", work / "ds", stage1=work / "raw" / "stage1_cot.json")
    save_tiny_model(work / "tiny", sam_image_size=sam_size)
    return load_from_disk(str(work / "ds"))["train"], load_processor(work / "tiny"), work / "tiny"
