"""Saving that fails safely: a failed checkpoint leaves no half-written folder, and no file holds a Hub token.

Both trainers mix in [`SafeSavingMixin`] (`class AuroraSFTTrainer(SafeSavingMixin, SFTTrainer)`).

**A failed save.** The Trainer (transformers 5.23, `Trainer._save_checkpoint`) writes straight into
`output_dir/checkpoint-N/`, file after file, with no temporary folder and no rename. When a write fails (disk full,
quota, I/O error) the exception leaves a `checkpoint-N` holding part of the files, and
`transformers.trainer_utils.get_last_checkpoint` (which looks at folder names only) returns it as the latest: a
resume would then load new weights with a missing or cut optimizer state. Here the half-written folder is removed
and the error is raised again as [`CheckpointSaveError`], naming the checkpoint, the cause and the last complete
checkpoint to resume from. (A run killed *during* a save cannot clean up after itself: for that,
`aurora_trl.trainers.resume` skips incomplete checkpoints when resuming.)

**Hub tokens.** `Trainer._save` ends with `torch.save(self.args, "training_args.bin")`, and the pickled arguments
hold `hub_token` in clear text: in `output_dir`, in every checkpoint and, with `push_to_hub`, in the Hub repository.
`_save` here pickles a copy of the arguments with every `*_token` field set to None (the Trainer never reads the
file back; the run keeps using its own arguments).
"""

import copy
import dataclasses
import logging
import shutil
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from aurora_trl.trainers.resume import checkpoint_problem, last_complete_checkpoint


logger = logging.getLogger(__name__)


class CheckpointSaveError(RuntimeError):
    """Writing a checkpoint failed; the partial folder was removed and earlier checkpoints are untouched."""


def without_tokens(args):
    """A shallow copy of training arguments with every `*_token` field (`hub_token`) set to None."""
    clean = copy.copy(args)
    for field in dataclasses.fields(args):
        if field.name.endswith("_token") and getattr(args, field.name, None) is not None:
            setattr(clean, field.name, None)
    return clean


class SafeSavingMixin:
    """Overrides `_save_checkpoint` and `_save` of a `transformers.Trainer` subclass (see the module docstring)."""

    def _save_checkpoint(self, model, trial):
        step = self.state.global_step
        run_dir = Path(self._get_output_dir(trial=trial))
        folder = run_dir / f"{PREFIX_CHECKPOINT_DIR}-{step}"
        existed = folder.exists()
        try:
            super()._save_checkpoint(model, trial)
        except Exception as err:
            # A failure after the checkpoint is complete (pushing, rotating old ones) keeps it.
            incomplete = folder.exists() and checkpoint_problem(folder) is not None
            removed = self.args.should_save and not existed and incomplete
            if removed:
                shutil.rmtree(folder, ignore_errors=True)
            previous = last_complete_checkpoint(run_dir)  # never one a killed run left half-written
            message = (
                f"saving checkpoint {folder} failed: {type(err).__name__}: {err}. "
                + ("The half-written folder was removed. " if removed else "")
                + (
                    f"The last complete checkpoint is {previous}; resume with --resume_from_checkpoint {previous}."
                    if previous
                    else "There is no earlier checkpoint."
                )
            )
            logger.error(message)
            raise CheckpointSaveError(message) from err

    def _save(self, output_dir=None, state_dict=None):
        args = self.args
        self.args = without_tokens(args)  # what `torch.save(self.args, ...)` at the end of `_save` pickles
        try:
            super()._save(output_dir, state_dict=state_dict)
        finally:
            self.args = args
