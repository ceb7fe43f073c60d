"""Small builders shared by the trainer tests (fixtures live in conftest.py)."""

import concurrent.futures
import shutil
from types import SimpleNamespace

from aurora_trl.modeling import AuroraForSegmentation, load_processor
from aurora_trl.modeling.policy import TrainingPolicy, apply_training_policy
from aurora_trl.trainers.grpo_config import AuroraGRPOConfig
from aurora_trl.trainers.sft_config import AuroraSFTConfig


# What every tiny training run in the tests shares: CPU, fp32, no logging service, no checkpoints, fixed seed.
CPU_RUN = dict(report_to="none", use_cpu=True, bf16=False, save_strategy="no", gradient_checkpointing=False, seed=0)


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
