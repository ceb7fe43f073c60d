"""Small builders shared by the trainer tests (fixtures live in conftest.py)."""

import concurrent.futures
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

from aurora_trl.modeling import AuroraForSegmentation, load_processor
from aurora_trl.modeling.policy import TrainingPolicy, apply_training_policy
from aurora_trl.trainers.grpo_config import AuroraGRPOConfig
from aurora_trl.trainers.sft_config import AuroraSFTConfig


# What every tiny training run in the tests shares: CPU, fp32, no logging service, no checkpoints, fixed seed.
CPU_RUN = dict(report_to="none", use_cpu=True, bf16=False, save_strategy="no", gradient_checkpointing=False, seed=0)


def built_synthetic_dataset(folder: Path, clips: int, seed: int, size: int) -> Path:
    """Synthetic Ref-AVS clips written to `folder/raw` and built, with both annotation dumps, into `folder/ds`
    (returned; read it with `load_from_disk`)."""
    from data_prep.build import build_dataset
    from data_prep.synth import write_synthetic_refavs

    raw = folder / "raw"
    write_synthetic_refavs(raw, clips=clips, seed=seed, size=size)
    build_dataset(raw, folder / "ds", stage1=raw / "stage1_cot.json", stage2=raw / "stage2_reflective.jsonl")
    return folder / "ds"


def sft_config(output_dir, **overrides) -> AuroraSFTConfig:
    """A CPU AuroraSFTConfig for a few steps of the tiny model; `overrides` replace any default."""
    values = dict(max_steps=2, per_device_train_batch_size=2, learning_rate=1e-2, logging_steps=1, **CPU_RUN)
    return AuroraSFTConfig(output_dir=str(output_dir), **{**values, **overrides})


def grpo_config(output_dir, seg_token_id=None, **overrides) -> AuroraGRPOConfig:
    """A CPU AuroraGRPOConfig: 1 clip x G = 3 rollouts of up to 12 tokens per step.

    With `seg_token_id`, sampling favours `[SEG]`: a random tiny policy rarely samples it, and the bias gives groups
    whose rollouts do and do not emit it."""
    values = dict(
        max_steps=2,
        per_device_train_batch_size=3,
        num_generations=3,
        max_completion_length=12,
        learning_rate=1e-2,
        logging_steps=1,
        **CPU_RUN,
    )
    if seg_token_id is not None:
        values["generation_kwargs"] = {"sequence_bias": [[[seg_token_id], 3.0]]}
    return AuroraGRPOConfig(output_dir=str(output_dir), **{**values, **overrides})


def tiny_policy_model(path, lora: bool = True):
    """`(model, processor)` from a tiny AURORA folder, with AURORA's training policy applied."""
    model = AuroraForSegmentation.from_pretrained(path)
    policy = TrainingPolicy(use_lora=lora, train_llm=not lora)
    return apply_training_policy(model, policy), load_processor(path)


def use_local_hub(monkeypatch, folder) -> None:
    """Replace the Hub client the Trainer pushes with by one that copies into `folder/<repo id>/` (no network)."""

    class LocalHub:
        def create_repo(self, repo_id, **kwargs):
            (folder / repo_id).mkdir(parents=True, exist_ok=True)
            return SimpleNamespace(repo_id=repo_id)

        def upload_folder(
            self, repo_id, folder_path, path_in_repo=None, run_as_future=False, ignore_patterns=(), **kw
        ):
            target = folder / repo_id / (path_in_repo or "")
            ignore = shutil.ignore_patterns(*(ignore_patterns or ()))
            shutil.copytree(folder_path, target, dirs_exist_ok=True, ignore=ignore)
            result = SimpleNamespace(commit_url=f"local:{target}")
            if not run_as_future:
                return result
            future = concurrent.futures.Future()
            future.set_result(result)
            return future

    monkeypatch.setattr("transformers.trainer.hf_api", LocalHub)


ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def torch_extensions_dir() -> str:
    """A folder of this test session for the C++ ops DeepSpeed compiles on a CPU (its shared-memory collective op).

    torch guards its build folder with a lock file that only the building process removes; a build killed by a
    timeout in an earlier session leaves that file behind, and every later DeepSpeed run then waits on it forever
    (the shared `~/.cache/torch_extensions` did exactly that). A session's own folder cannot hold another session's
    lock; the op is built once, by the first multi-process test, and reused by the others."""
    return tempfile.mkdtemp(prefix="aurora-trl-torch-extensions-")


def launch_probe(config: str, recipe: str, options: list[str], cwd, flags=()) -> subprocess.CompletedProcess:
    """`accelerate launch --config_file recipes/accelerate/CONFIG --num_processes 2 [flags] tests/distributed_probe.py
    recipes/tiny/RECIPE.yaml [options]`, offline, one thread per rank."""
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).parent / "accelerate")
    command = [accelerate, "launch", "--config_file", str(ROOT / "recipes" / "accelerate" / config)]
    command += ["--num_processes", "2", *flags, str(ROOT / "tests" / "distributed_probe.py")]
    command += [str(ROOT / "recipes" / "tiny" / f"{recipe}.yaml"), *options]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env["TORCH_EXTENSIONS_DIR"] = torch_extensions_dir()
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=cwd)


def probe_reports(config: str, recipe: str, options: list[str], cwd, flags=()) -> list[dict]:
    """Run [`launch_probe`] and return what each of the two ranks reported (`output_dir/probe-rank{R}.json`)."""
    result = launch_probe(config, recipe, options, cwd, flags)
    assert result.returncode == 0, result.stderr[-4000:]
    out = Path(options[options.index("--output_dir") + 1])
    return [json.loads((out / f"probe-rank{rank}.json").read_text()) for rank in range(2)]
