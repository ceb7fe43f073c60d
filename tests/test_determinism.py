"""Two runs of a tiny recipe with the same seed, each in its own process, give the same losses and weights on a CPU.

Separate processes matter: in one process a test could share RNG state, caches or a model object between the runs
and hide a missing seed. (One was missing: `prepare_run` adds the LoRA adapter, whose A matrices are random, before
the Trainer seeds; the stage scripts now call `set_seed(training_args.seed)` first.) The helpers here also run the
kill-and-resume tests (tests/test_kill_resume.py).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file


RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "tiny"
# Offline, and one thread each: two runs side by side on a 2-core CI machine, and float sums in a fixed order.
ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def recipe_inputs(synth_dataset, tiny_aurora_dir) -> dict:
    """The session's synthetic data set and tiny AURORA folder, as the recipes take them, and its `[SEG]` id."""
    seg = json.loads((Path(tiny_aurora_dir) / "config.json").read_text())["seg_token_id"]
    return {"data": str(synth_dataset), "model": str(tiny_aurora_dir), "seg": seg}


@pytest.fixture(scope="module")
def inputs(synth_dataset, tiny_aurora_dir):
    return recipe_inputs(synth_dataset, tiny_aurora_dir)


def recipe_command(stage: str, inputs: dict, out: Path, *extra: str, steps: int = 6) -> list[str]:
    """`python recipes/tiny/<stage>.yaml` on the tiny inputs: `steps` steps, a checkpoint every 2, a log every step.

    The recipes' own values stay (LoRA with dropout, loss weights, SFT's distillation from the adapter-free policy,
    GRPO's G = 3 sampling at temperature 1 / top-p 0.9, save_total_limit 2). GRPO's sampling is biased towards
    `[SEG]`, as in tests/helpers.py: a random tiny policy rarely emits it, and without it every reward is 0, every
    advantage 0, and the sampled tokens would not reach the weights at all.
    """
    command = [sys.executable, str(RECIPES / f"{stage}.yaml"), "--model_name_or_path", inputs["model"]]
    command += ["--dataset_name", inputs["data"], "--output_dir", str(out), "--max_steps", str(steps)]
    command += ["--save_steps", "2", "--logging_steps", "1"]
    if stage == "grpo":
        bias = {"sequence_bias": [[[inputs["seg"]], 3.0]]}
        command += ["--max_completion_length", "8", "--generation_kwargs", json.dumps(bias)]
    return command + list(extra)


def start(command: list[str], log: Path, extra_env: dict | None = None) -> subprocess.Popen:
    """Start a run with its stdout and stderr in `log` (read it when an assertion fails)."""
    env = {**os.environ, **ENV, **(extra_env or {})}
    with log.open("w") as handle:  # the child keeps its own descriptor
        return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=log.parent)


def finish(process: subprocess.Popen, log: Path, expect: int = 0, timeout: int = 300) -> str:
    """Wait for a run started with `start`; check its exit status (-9: killed by SIGKILL); its output."""
    returncode = process.wait(timeout=timeout)
    output = log.read_text(errors="replace")
    assert returncode == expect, f"exit status {returncode}, expected {expect}:\n{output[-4000:]}"
    return output


def logged_metrics(out: Path, leave_out: tuple[str, ...] = ()) -> dict[int, dict]:
    """`{step: metrics}` of every training log in `out/trainer_state.json`, less wall-clock times and `leave_out`."""
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return {
        entry["step"]: {k: v for k, v in entry.items() if k not in ("step_time", *leave_out)}
        for entry in history
        if "loss" in entry
    }


def weights(path: Path) -> dict:
    return load_file(str(path / "adapter_model.safetensors"))


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[name] - b[name]).abs().max().item() for name in a)


# SFT alone takes about 35 s on 2 cores; GRPO adds about 25 s more, so it is marked slow (CI runs it all the same).
@pytest.mark.parametrize("stage", ["sft", pytest.param("grpo", marks=pytest.mark.slow)])
def test_same_seed_same_losses_and_weights(stage, inputs, tmp_path):
    runs = [tmp_path / "first", tmp_path / "second"]
    processes = []
    for out in runs:
        out.mkdir()
        command = recipe_command(stage, inputs, out / "run", "--save_strategy", "no", steps=4)
        processes.append((start(command, out / "log.txt"), out / "log.txt"))
    for process, log in processes:  # side by side: one core each
        finish(process, log)
    first, second = (out / "run" for out in runs)
    # every logged number (loss terms, grad norm, rewards, entropy, token counts), exactly, not approximately
    assert len(logged_metrics(first)) == 4
    assert logged_metrics(first) == logged_metrics(second)
    assert max_difference(weights(first), weights(second)) == 0.0
    # the weights did train (LoRA's B starts at 0 and moved), so equal weights are not equal zeros
    assert any(t.abs().max() > 0 for n, t in weights(first).items() if "lora_B" in n)
