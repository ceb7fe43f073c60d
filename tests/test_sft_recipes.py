"""The tiny recipes run end to end: the Stage 0 -> 1 -> 2 chain in-process, and the promised launch commands."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import load_from_disk

from aurora_trl.scripts.launch import run_any_recipe
from tests.helpers import probe_reports


RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "tiny"


@pytest.fixture(scope="module")
def inputs(synth_dataset, tiny_aurora_dir):
    return {"data": str(synth_dataset), "model": str(tiny_aurora_dir)}


def overrides(inputs, out, model=None, steps=2):
    return [
        "--model_name_or_path",
        model or inputs["model"],
        "--dataset_name",
        inputs["data"],
        "--output_dir",
        str(out),
        "--max_steps",
        str(steps),
        "--eval_steps",
        "2",
        "--save_steps",
        "2",
        "--logging_steps",
        "1",
    ]


def test_stage_chain_teacher_sft_reflect(inputs, tmp_path):
    teacher = run_any_recipe(RECIPES / "teacher.yaml", overrides(inputs, tmp_path / "teacher"))
    assert teacher.args.sft_target == "direct" and (tmp_path / "teacher" / "merged" / "config.json").is_file()
    assert (tmp_path / "teacher" / "adapter_model.safetensors").is_file()
    teacher_dir = str(tmp_path / "teacher" / "merged")
    sft = run_any_recipe(RECIPES / "sft.yaml", overrides(inputs, tmp_path / "sft", model=teacher_dir))
    logs = [h for h in sft.state.log_history if "loss/distill" in h]
    assert logs and all(k in logs[0] for k in ("loss/ce", "loss/bce", "loss/dice", "loss/distill"))
    assert any("eval_mask/iou" in h for h in sft.state.log_history)
    reflect = run_any_recipe(
        RECIPES / "reflect.yaml",
        overrides(inputs, tmp_path / "reflect", model=str(tmp_path / "sft" / "merged"))
        + ["--teacher_model_name_or_path", teacher_dir],
    )
    assert reflect.args.sft_target == "reflective" and reflect.teacher_model is not None
    assert (tmp_path / "reflect" / "merged" / "model.safetensors").is_file()


def launch(command, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def trained_epochs(out: Path) -> float:
    return json.loads((out / "trainer_state.json").read_text())["epoch"]


def accelerate_launch(flags, recipe, options, cwd):
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).parent / "accelerate")
    return launch([accelerate, "launch", *flags, str(recipe), *options], cwd)


NO_EVAL = ["--eval_strategy", "no", "--distill_loss_weight", "0"]


@pytest.mark.parametrize(
    "flags",
    [["--num_processes", "2"], ["--config_file", str(RECIPES.parent / "accelerate" / "ddp.yaml"), "--cpu"]],
    ids=["num-processes-alone", "ddp-config-on-cpu"],
)
def test_a_launch_that_asks_for_two_processes_but_starts_one_stops(inputs, tmp_path, flags):
    """Both launches start a single process on a CPU, silently; the stage script stops before loading anything."""
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).parent / "accelerate")
    out = tmp_path / "run"
    command = [accelerate, "launch", *flags, str(RECIPES / "sft.yaml"), *overrides(inputs, out, steps=1)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert result.returncode != 0
    assert "asked for more than one process" in result.stderr and "--multi_gpu" in result.stderr
    assert not out.exists()


def test_accelerate_launch_recipe_literally(inputs, tmp_path):
    """`accelerate launch recipes/tiny/sft.yaml`: the recipe file itself is the program accelerate runs."""
    out = tmp_path / "run"
    accelerate_launch(
        ["--num_processes", "1"], RECIPES / "sft.yaml", overrides(inputs, out, steps=1) + NO_EVAL, tmp_path
    )
    assert (out / "merged" / "config.json").is_file()


def test_two_cpu_ranks_run_to_the_end(inputs, tmp_path):
    """`accelerate launch --config_file recipes/accelerate/ddp.yaml --num_processes 2` on a CPU: two gloo ranks, each
    with its own batches, in the recipe's precision (the shipped configuration used to force bf16 over a recipe's
    `bf16: False`). The GRPO twin of this test launches with `--multi_gpu`."""
    one, two = tmp_path / "one", tmp_path / "two"
    options = NO_EVAL + ["--save_strategy", "no"]
    accelerate_launch(["--num_processes", "1"], RECIPES / "sft.yaml", overrides(inputs, one) + options, tmp_path)
    probes = probe_reports("ddp.yaml", "sft", overrides(inputs, two) + options, tmp_path)
    assert all(p["world_size"] == 2 and p["mixed_precision"] == "no" for p in probes), probes
    assert (two / "merged" / "config.json").is_file()
    # each rank gets half of the rows (DistributedSampler), so the same 2 steps cover about twice the epochs
    rows = sum(bool(r) for r in load_from_disk(inputs["data"])["train"]["reasoning"])
    assert trained_epochs(one) == pytest.approx(2 / math.ceil(rows / 2))
    assert trained_epochs(two) == pytest.approx(2 / math.ceil(math.ceil(rows / 2) / 2))


def test_aurora_trl_train_uses_the_recipe_accelerate_block(inputs, tmp_path):
    out = tmp_path / "run"
    script = shutil.which("aurora-trl") or str(Path(sys.executable).parent / "aurora-trl")
    launch(
        [script, "train", str(RECIPES / "teacher.yaml"), *overrides(inputs, out, steps=1), "--eval_strategy", "no"],
        tmp_path,
    )
    assert (out / "merged" / "config.json").is_file()


def test_trl_script_style_with_config(inputs, tmp_path):
    """`python -m aurora_trl.scripts.sft --config RECIPE [flags]`, as TRL's own scripts are run."""
    out = tmp_path / "run"
    options = overrides(inputs, out, steps=1) + ["--eval_strategy", "no"]
    launch(
        [sys.executable, "-m", "aurora_trl.scripts.sft", "--config", str(RECIPES / "teacher.yaml"), *options], tmp_path
    )
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 1
