"""Which checkpoint a run resumes from: the last *complete* one, never one a killed run left half-written.

The Trainer (transformers 5.23, `Trainer._save_checkpoint`) writes straight into `output_dir/checkpoint-N/`, one file
after the other: the weights (`adapter_model.safetensors` or `model.safetensors`) and processor files, `optimizer.pt`,
`scheduler.pt`, `rng_state.pth` and, last, `trainer_state.json`; no temporary folder, no rename. A run killed in
between leaves a `checkpoint-N` folder that `transformers.trainer_utils.get_last_checkpoint` still returns as the
latest, because it looks only at folder names, and `trainer.train(resume_from_checkpoint=True)` then dies on it
(`SafetensorError` on a cut adapter, `FileNotFoundError` without `trainer_state.json`, `JSONDecodeError` on a cut
one) every time, until someone deletes the folder by hand. Where a file is missing but the state is there (a folder
copied in part), the Trainer goes on without it: no `rng_state.pth` gives other dropout masks and GRPO samples
(on the tiny recipes, resumed without it, the weights are 6e-3 off after 4 more steps).

`resume_checkpoint(training_args)` is what the stage scripts pass to `trainer.train(resume_from_checkpoint=...)`:
`--resume_from_checkpoint True` (the command line gives the string "True") picks the last complete checkpoint, and an
explicit path is checked before any of it is loaded.
"""

import json
import logging
import os
import re
import struct
import zipfile
from pathlib import Path


logger = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE = "trainer_state.json"
WEIGHT_NAMES = ("adapter_model.safetensors", "model.safetensors", "adapter_model.bin", "pytorch_model.bin")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
# FSDP (sharded state dict) and DeepSpeed keep their weights in a subfolder; those formats are not checked further.
WEIGHT_FOLDER_PREFIXES = ("pytorch_model_fsdp", "global_step")
# Files `torch.save` writes (zip archives since torch 1.6); the Trainer writes them only when saving them is asked for.
TORCH_FILES = ("*.pt", "*.pth", "*.bin")
TRUE_VALUES = ("true", "last")
FALSE_VALUES = ("", "false", "none")


def _safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file is truncated or corrupt, from its header alone (no tensor is read)."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return f"{path.name} is truncated ({size} bytes)"
        (header_size,) = struct.unpack("<Q", head)
        if 8 + header_size > size:
            return f"{path.name} is truncated (its header needs {8 + header_size} bytes, the file has {size})"
        try:
            header = json.loads(handle.read(header_size))
        except ValueError:
            return f"{path.name} has an unreadable header"
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    needed = 8 + header_size + max(ends, default=0)
    if needed != size:
        return f"{path.name} is truncated (its tensors need {needed} bytes, the file has {size})"
    return None


def _torch_file_problem(path: Path) -> str | None:
    """A `torch.save` file is a zip archive whose directory is written at its end: a cut file has none."""
    if not zipfile.is_zipfile(path):
        return f"{path.name} is truncated or not a torch.save archive"
    return None


def checkpoint_problem(folder: str | os.PathLike) -> str | None:
    """Why `folder` is not a complete Trainer checkpoint, or None when it is.

    Complete means: `trainer_state.json` (written last) parses and names the folder's step, the weights are there
    (with every shard an index names), and no .safetensors or torch.save file in it is cut short.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return f"{folder} is not a folder"
    state_file = folder / TRAINER_STATE
    if not state_file.is_file():
        return f"no {TRAINER_STATE} (the Trainer writes it last, so the save did not finish)"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return f"{TRAINER_STATE} is unreadable ({err})"
    match = CHECKPOINT_RE.match(folder.name)
    if match and state.get("global_step") != int(match.group(1)):
        return f"{TRAINER_STATE} is at step {state.get('global_step')}, not {match.group(1)}"
    names = {p.name for p in folder.iterdir()}
    shards = set()
    for index in WEIGHT_INDEXES:
        if index in names:
            try:
                shards |= set(json.loads((folder / index).read_text(encoding="utf-8"))["weight_map"].values())
            except (OSError, ValueError, KeyError) as err:
                return f"{index} is unreadable ({err})"
    folders = any(p.is_dir() and p.name.startswith(WEIGHT_FOLDER_PREFIXES) for p in folder.iterdir())
    if not shards and not names & set(WEIGHT_NAMES) and not folders:
        return f"no weights (none of {', '.join(WEIGHT_NAMES)})"
    if shards - names:
        return f"missing weight shards {sorted(shards - names)}"
    for path in sorted(folder.glob("*.safetensors")):
        if problem := _safetensors_problem(path):
            return problem
    for pattern in TORCH_FILES:
        for path in sorted(folder.glob(pattern)):
            if problem := _torch_file_problem(path):
                return problem
    return None


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The `checkpoint-N` folder of `output_dir` with the highest N that is complete; incomplete ones are logged."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    steps = sorted(
        ((int(m.group(1)), p) for p in output_dir.iterdir() if (m := CHECKPOINT_RE.match(p.name)) and p.is_dir()),
        reverse=True,
    )
    for _, folder in steps:
        problem = checkpoint_problem(folder)
        if problem is None:
            return str(folder)
        logger.warning("Skipping incomplete checkpoint %s: %s", folder, problem)
    return None


def resume_checkpoint(training_args) -> str | None:
    """The checkpoint `trainer.train(resume_from_checkpoint=...)` should load, from `training_args`.

    `resume_from_checkpoint` True (or the string "true"/"last", as the command line gives it) means the last complete
    checkpoint under `output_dir`; a path must be a complete checkpoint. Either way an incomplete one raises a
    ValueError that says what is missing, rather than letting the Trainer load part of it.
    """
    value = training_args.resume_from_checkpoint
    if value is None or value is False or str(value).strip().lower() in FALSE_VALUES:
        return None
    if value is True or str(value).strip().lower() in TRUE_VALUES:
        found = last_complete_checkpoint(training_args.output_dir)
        if found is None:
            raise ValueError(f"resume_from_checkpoint: no complete checkpoint in {training_args.output_dir}")
        return found
    problem = checkpoint_problem(value)
    if problem is not None:
        raise ValueError(f"resume_from_checkpoint: {value} is not a complete checkpoint: {problem}")
    return str(value)
