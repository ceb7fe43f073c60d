"""A tiny SFT or GRPO run killed with SIGKILL resumes to the result of a run that was never killed.

Each test runs the recipe in a subprocess and kills it with SIGKILL in two ways:

1. from outside (`Popen.kill`, SIGKILL) as soon as `checkpoint-2` is complete;
2. from inside, while the Trainer writes one file of `checkpoint-4` (a fault from `FAULTS`): a `sitecustomize`
   module that the test writes and puts first on the subprocess's PYTHONPATH wraps the library call that writes the
   file (`safetensors.torch.save_file`, `torch.save`, `TrainerState.save_to_json`), writes part of the bytes and
   SIGKILLs its own process, so the moment is hit every time instead of by a race.

The Trainer writes a checkpoint straight into `checkpoint-N/`, `trainer_state.json` last, and
`transformers.trainer_utils.get_last_checkpoint` picks the highest N whatever is in it; the tests show it picking
the half-written `checkpoint-4`, and `--resume_from_checkpoint True` (aurora_trl/trainers/resume.py) picking
`checkpoint-2`. After the faults, one last resume runs to the end, and its logged losses and final weights equal
those of an uninterrupted run with the same seed, started beside the killed one.
"""

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers.trainer_utils import get_last_checkpoint

from aurora_trl.trainers.resume import checkpoint_problem, last_complete_checkpoint, resume_checkpoint
from tests.helpers import sft_config
from tests.test_determinism import (
    finish,
    logged_metrics,
    max_difference,
    recipe_command,
    recipe_inputs,
    start,
    weights,
)


pytestmark = pytest.mark.slow

KILLED = -signal.SIGKILL
RESUME = ["--resume_from_checkpoint", "True", "--log_level", "info"]  # info: the Trainer logs the folder it loads
# `(file in checkpoint-4, how much of it is written before SIGKILL)`: "half" of its bytes, or "none" (killed just
# before it is opened: the files written before it are complete, it and those after it are missing).
FAULTS = {
    "sft": [("adapter_model.safetensors", "half"), ("optimizer.pt", "none"), ("trainer_state.json", "half")],
    "grpo": [("rng_state.pth", "half")],
}
# Measured on a 2-core CPU, fp32: 0.0 for both stages (bitwise equal); the bound leaves room for other CPUs' kernels.
TOLERANCE = 1e-6

KILL_HOOK = '''
"""Test-only fault injection (tests/test_kill_resume.py): SIGKILL this process in the middle of writing one file.

AURORA_TEST_KILL_WHILE_WRITING="checkpoint-4/optimizer.pt:half": when the Trainer writes that file, write the first
half of its bytes, then SIGKILL ("none": SIGKILL before the file is opened); every other write goes through unchanged.
"""
import dataclasses
import io
import json
import os
import signal

_target, _, _mode = os.environ["AURORA_TEST_KILL_WHILE_WRITING"].partition(":")


def _hit(path):
    return isinstance(path, (str, os.PathLike)) and os.fspath(path).endswith(os.sep + _target)


def _die(path, data):
    if _mode == "half":
        with open(path, "wb") as handle:
            handle.write(data[: len(data) // 2])
    os.kill(os.getpid(), signal.SIGKILL)


import safetensors.torch  # noqa: E402  (peft binds save_file when it is imported, after this module)
import torch  # noqa: E402

_save_file, _torch_save = safetensors.torch.save_file, torch.save


def save_file(tensors, filename, metadata=None):
    if _hit(filename):
        _die(filename, safetensors.torch.save(tensors, metadata=metadata))
    return _save_file(tensors, filename, metadata=metadata)


def save(obj, f, *args, **kwargs):
    if _hit(f):
        buffer = io.BytesIO()
        _torch_save(obj, buffer, *args, **kwargs)
        _die(f, buffer.getvalue())
    return _torch_save(obj, f, *args, **kwargs)


safetensors.torch.save_file, torch.save = save_file, save

from transformers.trainer_callback import TrainerState  # noqa: E402

_save_to_json = TrainerState.save_to_json


def save_to_json(self, json_path):
    if _hit(json_path):
        _die(json_path, (json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\\n").encode())
    return _save_to_json(self, json_path)


TrainerState.save_to_json = save_to_json
'''


@pytest.fixture(scope="module")
def inputs(synth_dataset, tiny_aurora_dir):
    return recipe_inputs(synth_dataset, tiny_aurora_dir)


def kill_hook_env(folder: Path, target: str) -> dict:
    """Environment that loads KILL_HOOK (as `sitecustomize`, first on PYTHONPATH) armed for `target`."""
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(KILL_HOOK)
    path = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, "AURORA_TEST_KILL_WHILE_WRITING": target}


def trainer_state_written(folder: Path, step: int) -> bool:
    """The Trainer's own "done" mark: `trainer_state.json`, written last, parses and names `step`."""
    try:
        return json.loads((folder / "trainer_state.json").read_text())["global_step"] == step
    except (OSError, ValueError, KeyError):
        return False


def kill_after_checkpoint(process, log: Path, folder: Path, step: int, timeout: float = 300) -> str:
    """SIGKILL `process` from outside as soon as `folder` holds a complete checkpoint."""
    deadline = time.monotonic() + timeout
    while not trainer_state_written(folder, step):
        assert process.poll() is None, f"the run ended before {folder.name}:\n{log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"no {folder.name} after {timeout} s"
        time.sleep(0.02)
    process.kill()
    return finish(process, log, expect=KILLED)


def loaded_checkpoints(output: str) -> list[str]:
    """The folders the Trainer logged loading a model from (`--log_level info`)."""
    marker = "Loading model from "
    return [line.split(marker, 1)[1].rstrip(".") for line in output.splitlines() if marker in line]


@pytest.mark.parametrize("stage", ["sft", "grpo"])
def test_killed_run_resumes_to_the_uninterrupted_result(stage, inputs, tmp_path):
    straight_dir, cut_dir = tmp_path / "straight", tmp_path / "cut"
    # the uninterrupted run, side by side with the first killed one (one core each)
    straight = start(recipe_command(stage, inputs, straight_dir), tmp_path / "straight.log")

    # 1. SIGKILL from outside, right after checkpoint-2
    first = start(recipe_command(stage, inputs, cut_dir), tmp_path / "cut-0.log")
    kill_after_checkpoint(first, tmp_path / "cut-0.log", cut_dir / "checkpoint-2", 2)
    finish(straight, tmp_path / "straight.log")
    assert last_complete_checkpoint(cut_dir) == str(cut_dir / "checkpoint-2")

    # 2. resume, and SIGKILL while checkpoint-4 is being written, one file at a time
    for number, (name, mode) in enumerate(FAULTS[stage], start=1):
        env = kill_hook_env(tmp_path / "hook", f"checkpoint-4/{name}:{mode}")
        log = tmp_path / f"cut-{number}.log"
        output = finish(start(recipe_command(stage, inputs, cut_dir, *RESUME), log, env), log, expect=KILLED)
        assert loaded_checkpoints(output) == [str(cut_dir / "checkpoint-2")], output[-4000:]
        assert "Resuming training from checkpoint with epoch 0 and global step 2" in output
        half_written = cut_dir / "checkpoint-4"
        # the kill came where it was aimed: the file is cut (or not there yet) and the state was never written
        assert (half_written / name).exists() == (mode == "half"), sorted(p.name for p in half_written.iterdir())
        assert name == "trainer_state.json" or not (half_written / "trainer_state.json").exists()
        assert checkpoint_problem(half_written) is not None, name
        # transformers' own choice is the half-written folder; ours is the last complete one
        assert get_last_checkpoint(str(cut_dir)) == str(half_written)
        assert last_complete_checkpoint(cut_dir) == str(cut_dir / "checkpoint-2")

    # 3. resume to the end
    log = tmp_path / "cut-last.log"
    output = finish(start(recipe_command(stage, inputs, cut_dir, *RESUME), log), log)
    assert loaded_checkpoints(output) == [str(cut_dir / "checkpoint-2")]
    assert "Resuming training from checkpoint with epoch 0 and global step 2" in output
    # it trained steps 3..6 only: the Trainer prints one `{'loss': ...}` line per logged step
    assert output.count("{'loss': ") == 4, output[-4000:]
    assert sorted(p.name for p in cut_dir.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]
    assert checkpoint_problem(cut_dir / "checkpoint-4") is None  # rewritten over the half-written one

    # the same logs at every step (1-2 from checkpoint-2's log, 3-6 trained again) and the same final weights. Left
    # out: TRL's SFTTrainer counts `num_tokens` in a trainer attribute that starts at 0 in each process and is not
    # in the checkpoint, so after a resume it misses the tokens of steps 1-2 (GRPO counts in the Trainer state).
    leave_out = ("num_tokens",) if stage == "sft" else ()
    expected, got = logged_metrics(straight_dir, leave_out), logged_metrics(cut_dir, leave_out)
    assert sorted(got) == list(range(1, 7))
    for step in expected:
        assert got[step] == pytest.approx(expected[step], abs=TOLERANCE, rel=0), step
    difference = max_difference(weights(straight_dir), weights(cut_dir))
    print(f"{stage}: max |resumed - uninterrupted| over the adapter and trained modules = {difference:.3g}")
    assert difference <= TOLERANCE


# ---- the completeness check itself, on checkpoint folders written here (real files, cut or left out) ----


def write_checkpoint(folder: Path, step: int) -> Path:
    """A checkpoint folder with the files the completeness check reads: weights, optimizer, state (written last)."""
    folder.mkdir(parents=True)
    save_file({"lora_A": torch.ones(16, 64), "lora_B": torch.zeros(64, 16)}, folder / "adapter_model.safetensors")
    torch.save({"state": {0: {"exp_avg": torch.ones(1024)}}}, folder / "optimizer.pt")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    return folder


def cut(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def shard_index(folder: Path) -> None:
    """Sharded weights whose index names a shard that is not there."""
    (folder / "adapter_model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    shards = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": shards}))


DAMAGES = {
    "cut weights": (lambda f: cut(f / "adapter_model.safetensors"), "adapter_model.safetensors is truncated"),
    "cut weights header": (lambda f: cut(f / "adapter_model.safetensors", 0.0005), "truncated"),
    "cut optimizer": (lambda f: cut(f / "optimizer.pt"), "optimizer.pt is truncated"),
    "cut state": (lambda f: cut(f / "trainer_state.json"), "trainer_state.json is unreadable"),
    "no state": (lambda f: (f / "trainer_state.json").unlink(), "no trainer_state.json"),
    "state of another step": (
        lambda f: (f / "trainer_state.json").write_text('{"global_step": 3}'),
        "at step 3, not 4",
    ),
    "no weights": (lambda f: (f / "adapter_model.safetensors").unlink(), "no weights"),
    "missing shard": (shard_index, "missing weight shards"),
}


def test_a_complete_checkpoint_has_no_problem(tmp_path):
    assert checkpoint_problem(write_checkpoint(tmp_path / "checkpoint-4", 4)) is None


@pytest.mark.parametrize("damage", DAMAGES, ids=list(DAMAGES))
def test_each_damage_is_named(damage, tmp_path):
    folder = write_checkpoint(tmp_path / "checkpoint-4", 4)
    apply, message = DAMAGES[damage]
    apply(folder)
    assert message in checkpoint_problem(folder)


def test_the_last_complete_checkpoint_is_picked_by_step_not_by_name(tmp_path, caplog):
    for step in (2, 4, 10):  # "checkpoint-10" sorts before "checkpoint-2" as text
        write_checkpoint(tmp_path / f"checkpoint-{step}", step)
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    cut(tmp_path / "checkpoint-10" / "optimizer.pt")
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    assert "checkpoint-10: optimizer.pt is truncated" in caplog.text  # the skipped folder is named, and why
    assert last_complete_checkpoint(tmp_path / "nothing here") is None


def test_resume_checkpoint_reads_the_command_line_values(tmp_path):
    write_checkpoint(tmp_path / "checkpoint-2", 2)
    write_checkpoint(tmp_path / "checkpoint-4", 4)
    (tmp_path / "checkpoint-4" / "trainer_state.json").unlink()

    def resolved(value):
        return resume_checkpoint(sft_config(tmp_path, resume_from_checkpoint=value))

    assert resolved(None) is None and resolved("False") is None
    # `--resume_from_checkpoint True` reaches TrainingArguments as the string "True"
    assert resolved("True") == resolved(True) == str(tmp_path / "checkpoint-2")
    assert resolved(str(tmp_path / "checkpoint-2")) == str(tmp_path / "checkpoint-2")
    with pytest.raises(ValueError, match="checkpoint-4 is not a complete checkpoint: no trainer_state.json"):
        resolved(str(tmp_path / "checkpoint-4"))
    with pytest.raises(ValueError, match="no complete checkpoint in"):
        resume_checkpoint(sft_config(tmp_path / "empty", resume_from_checkpoint="True"))
