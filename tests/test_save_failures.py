"""Unwritable output and a disk that fills up.

- An `output_dir` that cannot be written fails before anything is loaded, with the path and the reason.
- A checkpoint save that fails half-way (ENOSPC while writing `optimizer.pt`) is reported, its folder removed, and
  the previous checkpoint stays complete: it is what `get_last_checkpoint` returns and a resume finishes from it.
"""

import errno
import os
import stat

import pytest
import torch
from datasets import load_from_disk
from transformers import set_seed
from transformers.trainer_utils import get_last_checkpoint
from trl import ModelConfig

from aurora_trl.modeling import AuroraForSegmentation, load_processor
from aurora_trl.modeling.policy import TrainingPolicy, apply_training_policy
from aurora_trl.scripts.common import AuroraScriptArguments, OutputDirError, check_output_dir
from aurora_trl.scripts.sft import main as sft_main
from aurora_trl.trainers.checkpointing import CheckpointSaveError, SafeSavingMixin
from aurora_trl.trainers.grpo_trainer import AuroraGRPOTrainer
from aurora_trl.trainers.sft_trainer import AuroraSFTTrainer
from tests.helpers import sft_config


# ---------------------------------------------------------------------------------------------- output_dir
def run_sft(output_dir):
    """The stage entry point with a model path that does not exist: only a check made before loading can answer."""
    sft_main(
        AuroraScriptArguments(dataset_name="/nonexistent/dataset"),
        sft_config(output_dir),
        ModelConfig(model_name_or_path="/nonexistent/model"),
    )


def test_output_dir_that_is_a_file_fails_before_loading(tmp_path):
    existing = tmp_path / "run"
    existing.write_text("not a folder")
    with pytest.raises(OutputDirError, match=f"output_dir {existing} is not writable: it is an existing file"):
        run_sft(existing)
    assert existing.read_text() == "not a folder"


def test_output_dir_under_a_file_fails_before_loading(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(
        OutputDirError, match=f"output_dir {tmp_path / 'file' / 'run'} is not writable: Not a directory"
    ):
        run_sft(tmp_path / "file" / "run")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through read-only permissions")
@pytest.mark.parametrize("below", [False, True])
def test_read_only_output_dir_fails_before_loading(tmp_path, below):
    """An existing read-only folder passes the Trainer's `makedirs(exist_ok=True)`: without the check the run would
    fail at its first checkpoint."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    target = folder / "run" if below else folder
    try:
        with pytest.raises(OutputDirError, match=f"output_dir {target} is not writable: Permission denied"):
            run_sft(target)
    finally:
        folder.chmod(stat.S_IRWXU)


def test_a_writable_output_dir_is_created_and_left_clean(tmp_path):
    target = tmp_path / "a" / "b" / "run"
    check_output_dir(target)
    assert target.is_dir() and list(target.iterdir()) == []  # the probe file is gone


# ---------------------------------------------------------------------------------------------- disk full
def sft_trainer(model_dir, data, output_dir, **overrides):
    set_seed(0)
    model = apply_training_policy(AuroraForSegmentation.from_pretrained(model_dir), TrainingPolicy())
    values = dict(max_steps=2, save_strategy="steps", save_steps=1, distill_loss_weight=0.0)  # no teacher: faster
    args = sft_config(output_dir, **{**values, **overrides})
    return AuroraSFTTrainer(
        model=model,
        args=args,
        train_dataset=load_from_disk(str(data))["train"],
        processing_class=load_processor(model_dir),
    )


def fill_disk_on(monkeypatch, name: str, call: int):
    """Make the `call`-th `torch.save` to a file called `name` behave like a full disk: part of the bytes land,
    then ENOSPC (the Trainer writes optimizer.pt, scheduler.pt and rng_state.pth with torch.save)."""
    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        if isinstance(f, str | os.PathLike) and os.path.basename(f) == name:
            calls.append(f)
            if len(calls) == call:
                with open(f, "wb") as handle:
                    handle.write(b"PK\x03\x04 half")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    return calls


def test_a_failed_save_is_reported_and_keeps_the_previous_checkpoint(
    tiny_aurora_dir, synth_dataset, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    calls = fill_disk_on(monkeypatch, "optimizer.pt", call=2)  # checkpoint-1 saves, checkpoint-2 hits a full disk
    trainer = sft_trainer(tiny_aurora_dir, synth_dataset, out)
    with pytest.raises(CheckpointSaveError) as failure:
        trainer.train()
    message = str(failure.value)
    assert len(calls) == 2
    assert f"saving checkpoint {out / 'checkpoint-2'} failed" in message
    assert "No space left on device" in message and "half-written folder was removed" in message
    assert f"--resume_from_checkpoint {out / 'checkpoint-1'}" in message
    assert isinstance(failure.value.__cause__, OSError) and failure.value.__cause__.errno == errno.ENOSPC

    assert not (out / "checkpoint-2").exists()
    assert get_last_checkpoint(str(out)) == str(out / "checkpoint-1")
    checkpoint = out / "checkpoint-1"
    for name in ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json"):
        assert (checkpoint / name).is_file(), name
    assert torch.load(checkpoint / "optimizer.pt", weights_only=True)["state"]  # intact, not the truncated write

    monkeypatch.undo()  # the disk has room again: the run resumes from checkpoint-1 and finishes
    resumed = sft_trainer(tiny_aurora_dir, synth_dataset, out)
    resumed.train(resume_from_checkpoint=get_last_checkpoint(str(out)))
    assert resumed.state.global_step == 2 and (out / "checkpoint-2" / "optimizer.pt").is_file()


def test_a_failure_after_the_checkpoint_is_complete_keeps_it(tiny_aurora_dir, synth_dataset, tmp_path, monkeypatch):
    """Rotating old checkpoints comes after `trainer_state.json`: a failure there must not delete the new one."""
    out = tmp_path / "run"
    trainer = sft_trainer(tiny_aurora_dir, synth_dataset, out, max_steps=1)

    def rotation_fails(*args, **kwargs):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr("transformers.trainer.rotate_checkpoints", rotation_fails)
    with pytest.raises(CheckpointSaveError, match="Input/output error") as failure:
        trainer.train()
    assert "half-written" not in str(failure.value)
    assert get_last_checkpoint(str(out)) == str(out / "checkpoint-1")
    assert (out / "checkpoint-1" / "trainer_state.json").is_file()


def test_both_trainers_save_safely():
    assert issubclass(AuroraSFTTrainer, SafeSavingMixin) and issubclass(AuroraGRPOTrainer, SafeSavingMixin)
