"""Shared by the trainer benchmarks: a step timer and the tiny model + synthetic data they train on."""

import time
from pathlib import Path

from transformers import TrainerCallback


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step (data loading excluded: the Trainer fetches the batch before the step)."""

    def __init__(self):
        self.times, self._start = [], None

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._start)


def tiny_setup(work: Path, sam_size: int, clips: int = 12):
    """Synthetic data (64-px frames, Stage-1 reasoning) and a tiny AURORA model: `(train split, processor, model dir)`."""
    from datasets import load_from_disk

    from aurora_trl.modeling import load_processor
    from aurora_trl.modeling.tiny import save_tiny_model
    from data_prep.build import build_dataset
    from data_prep.synth import write_synthetic_refavs

    write_synthetic_refavs(work / "raw", clips=clips, seed=0, size=64)
    build_dataset(work / "raw", work / "ds", stage1=work / "raw" / "stage1_cot.json")
    save_tiny_model(work / "tiny", sam_image_size=sam_size)
    return load_from_disk(str(work / "ds"))["train"], load_processor(work / "tiny"), work / "tiny"
