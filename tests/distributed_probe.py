"""Run a recipe under `accelerate launch` and write what each rank saw: `accelerate launch [flags]
tests/distributed_probe.py RECIPE [options]` writes `output_dir/probe-rank{R}.json`.

Used by the multi-process tests to check the engine (DDP, ZeRO-2, ZeRO-3), the precision it trained in and how much
of the model and of the optimizer state each rank holds; a callback reads them from the live trainer when training
begins (accelerate has wrapped and sharded the model then) and after the first step (the optimizer state exists).
"""

import json
import os
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback

from aurora_trl.scripts.launch import parse_any_recipe


def _local_and_total(tensor) -> tuple[int, int]:
    """Elements this rank holds and the full size: ZeRO-3 parameters keep a shard in `ds_tensor`, FSDP2 ones are
    DTensors; anything else is whole."""
    from torch.distributed.tensor import DTensor

    if hasattr(tensor, "ds_tensor"):
        return tensor.ds_tensor.numel(), tensor.ds_numel
    if isinstance(tensor, DTensor):
        return tensor.to_local().numel(), tensor.numel()
    return tensor.numel(), tensor.numel()


def _optimizer_state_elements(optimizer) -> int:
    """Elements of optimizer state this rank keeps: torch's per-parameter state under the accelerate/DeepSpeed
    wrappers (ZeRO's optimizer steps a torch optimizer over this rank's flat float32 partition)."""
    while hasattr(optimizer, "optimizer"):
        optimizer = optimizer.optimizer
    return sum(
        _local_and_total(value)[0]
        for state in optimizer.state.values()
        for value in state.values()
        if torch.is_tensor(value) and value.dim() > 0
    )


class Probe(TrainerCallback):
    """Counts the weights each rank holds when training begins (the model is wrapped and sharded then) and the
    optimizer state after the first step (it exists then); writes the report once."""

    def __init__(self):
        self.report = {}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        from accelerate.state import AcceleratorState

        accelerate_state = AcceleratorState()
        totals = dict.fromkeys(("parameters_local", "parameters_total", "trainable_local", "trainable_total"), 0)
        dtypes = set()
        for parameter in model.parameters():
            held, full = _local_and_total(parameter)
            totals["parameters_local"] += held
            totals["parameters_total"] += full
            if parameter.requires_grad:
                totals["trainable_local"] += held
                totals["trainable_total"] += full
                dtypes.add(str(parameter.dtype))
        plugin = accelerate_state.deepspeed_plugin
        self.report = {
            "rank": accelerate_state.process_index,
            "world_size": accelerate_state.num_processes,
            "distributed_type": str(accelerate_state.distributed_type),
            "mixed_precision": str(accelerate_state.mixed_precision),
            "zero_stage": plugin.zero_stage if plugin is not None else None,
            **totals,
            "trainable_dtypes": sorted(dtypes),
        }

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        if "optimizer_state_local" in self.report:
            return
        self.report["optimizer_state_local"] = _optimizer_state_elements(optimizer)
        path = Path(args.output_dir) / f"probe-rank{self.report['rank']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.report, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    script, parsed = parse_any_recipe(sys.argv[1], sys.argv[2:])
    probe = Probe()
    trainer = script.main(*parsed, callbacks=[probe])
    # Whether the trainer's per-process caches are on (they must be off when the weights are sharded).
    caches = [trainer.sam_cache] + ([trainer.teacher_cache] if hasattr(trainer, "teacher_cache") else [])
    path = Path(parsed[1].output_dir) / f"probe-rank{probe.report['rank']}.json"
    path.write_text(json.dumps({**probe.report, "caches_enabled": [c.enabled for c in caches]}, indent=1))
