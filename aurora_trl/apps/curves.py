"""Training curves of consecutive stages in one PNG: loss terms, rewards per function, mask IoU.

Each run's `trainer_state.json` (written by `finish_run`) holds its log history; the stages are laid end to end on
one step axis, with a dashed line where a stage starts.
"""

import json
from pathlib import Path


# Panel -> which logged keys it draws. Names are what the trainers log (`loss/ce`, `rewards/<func>/mean`, ...).
PANELS = {
    "loss terms": lambda key: key.startswith(("loss/", "mask/bce", "mask/dice")),
    "rewards per function": lambda key: key.startswith("rewards/") and key.endswith("/mean"),
    "mask IoU (train batches)": lambda key: key in ("mask/iou", "iou/mean"),
}


def training_logs(run_dir: Path) -> list[dict]:
    """The training (not evaluation) entries of a run's log history; empty when the run wrote none."""
    path = Path(run_dir) / "trainer_state.json"
    if not path.is_file():
        return []
    history = json.loads(path.read_text(encoding="utf-8")).get("log_history", [])
    return [
        e for e in history if "step" in e and not any(k.startswith("eval_") for k in e) and "train_runtime" not in e
    ]


def curve_series(runs: dict[str, Path]) -> tuple[dict[str, dict[str, list[tuple[int, float]]]], list[tuple[int, str]]]:
    """`{panel: {key: [(global step, value)]}}` and the `(first step, label)` of each stage."""
    series = {panel: {} for panel in PANELS}
    starts, offset = [], 0
    for label, run_dir in runs.items():
        logs = training_logs(run_dir)
        starts.append((offset, label))
        for entry in logs:
            for key, value in entry.items():
                for panel, wanted in PANELS.items():
                    if wanted(key) and isinstance(value, (int, float)):
                        series[panel].setdefault(key, []).append((offset + entry["step"], float(value)))
        offset += max((e["step"] for e in logs), default=0)
    return series, starts


def plot_training_curves(runs: dict[str, Path], path: Path) -> Path:
    """Draw the curves of `runs` (`{stage label: output_dir}`, in training order) into the PNG `path`."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    series, starts = curve_series(runs)
    fig, axes = plt.subplots(1, len(PANELS), figsize=(6 * len(PANELS), 4.2), constrained_layout=True)
    for ax, (panel, lines) in zip(axes, series.items()):
        for key, points in sorted(lines.items()):
            steps, values = zip(*points)
            ax.plot(steps, values, marker=".", label=key)
        for step, label in starts:
            ax.axvline(step, color="grey", linestyle="--", linewidth=0.8)
            ax.text(step, 1.0, " " + label.split(":")[0], transform=ax.get_xaxis_transform(), fontsize=7, va="top")
        ax.set_title(panel)
        ax.set_xlabel("optimizer step (stages end to end)")
        if lines:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "nothing logged", transform=ax.transAxes, ha="center")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
