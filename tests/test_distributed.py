"""Two processes on a CPU with the shipped accelerate configurations: ZeRO-2 and ZeRO-3 really shard (the optimizer
state; and under ZeRO-3 the weights too), train, save, resume and write a complete merged model; the configurations
leave the precision to the recipe (DDP's `ddp.yaml`: tests/test_sft_recipes.py); FSDP, which accelerate runs only on
accelerators, is refused with a message.

Each run is `accelerate launch` of `tests/distributed_probe.py`, which runs the recipe and writes what each rank
held after its first step. DeepSpeed's CPU-Adam build is avoided: no run offloads (ZeRO-2's AURORA offload is
switched off on the command line).
"""

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel

from aurora_trl.modeling import AuroraForSegmentation
from tests.helpers import launch_probe, probe_reports


pytest.importorskip("deepspeed")
pytestmark = pytest.mark.slow

NO_OFFLOAD = ["--offload_optimizer_device", "none"]
BF16 = ["--dtype", "bfloat16", "--bf16", "True"]


def options(inputs, out, recipe, steps=2, model=None):
    values = ["--model_name_or_path", model or inputs["model"], "--dataset_name", inputs["data"]]
    values += ["--output_dir", str(out), "--max_steps", str(steps), "--logging_steps", "1", "--save_strategy", "no"]
    values += ["--token_rows", "seg"]  # the real recipes' rows (the tiny recipes train the random head whole)
    if recipe == "grpo":
        return values + ["--max_completion_length", "8"]
    return values + ["--eval_strategy", "no"]


@pytest.fixture(scope="module")
def inputs(synth_dataset, tiny_aurora_dir):
    return {"data": str(synth_dataset), "model": str(tiny_aurora_dir)}


def assert_sharded(probes, stage: int, mixed_precision: str) -> None:
    for probe in probes:
        assert probe["world_size"] == 2 and probe["zero_stage"] == stage, probe
        assert probe["mixed_precision"] == mixed_precision, probe
        # AdamW keeps two moments; each rank holds those of its half of the trainable elements
        assert 0.45 < probe["optimizer_state_local"] / (2 * probe["trainable_total"]) < 0.55, probe
        held = probe["parameters_local"] / probe["parameters_total"]
        assert (0.45 < held < 0.55) if stage == 3 else held == 1, probe
        # sharded weights: every rank runs the same forwards, so no per-rank cache may skip one
        assert set(probe["caches_enabled"]) == {stage != 3}, probe


def assert_merged_loads(out: Path, dtype=torch.float32) -> AuroraForSegmentation:
    merged = AuroraForSegmentation.from_pretrained(out / "merged")
    assert merged.model.language_model.layers[0].self_attn.q_proj.weight.dtype == dtype
    return merged


@pytest.mark.parametrize("recipe", ["sft", "grpo"])
def test_zero2_shards_the_optimizer_state(recipe, inputs, tmp_path):
    """ZeRO-2: the optimizer state is split between the ranks, the weights are not. The SFT run keeps the tiny
    recipe's fp32 (the shipped configuration no longer forces bf16); the GRPO run trains in bf16."""
    precision = BF16 if recipe == "grpo" else []
    out = tmp_path / "run"
    probes = probe_reports("zero2.yaml", recipe, options(inputs, out, recipe) + precision, tmp_path, flags=NO_OFFLOAD)
    assert_sharded(probes, stage=2, mixed_precision="bf16" if precision else "no")
    assert_merged_loads(out, torch.bfloat16 if precision else torch.float32)


def test_zero3_builds_sharded_trains_resumes_and_merges_sft(inputs, tmp_path):
    """ZeRO-3 on Stage 1: the model is built under `zero.Init` (SAM included), each rank holds half of every
    weight, checkpoints resume, and `merged/`, gathered from the shards, equals the saved adapter merged by PEFT."""
    out = tmp_path / "run"
    first = options(inputs, out, "sft") + ["--save_strategy", "steps", "--save_steps", "2"]
    assert_sharded(probe_reports("zero3.yaml", "sft", first, tmp_path), stage=3, mixed_precision="no")
    assert (out / "checkpoint-2" / "global_step2").is_dir()

    resumed = options(inputs, out, "sft", steps=3) + ["--resume_from_checkpoint", "True"]
    result = launch_probe("zero3.yaml", "sft", resumed, tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert [h["step"] for h in state["log_history"] if "loss" in h] == [1, 2, 3]  # steps 1-2 came from checkpoint-2

    merged = assert_merged_loads(out).state_dict()
    base = AuroraForSegmentation.from_pretrained(inputs["model"])
    start = {k: v.clone() for k, v in base.state_dict().items()}
    expected = PeftModel.from_pretrained(base, out).merge_and_unload().state_dict()
    assert merged.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(merged[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    # the token matrices trained as masked copies: only the [SEG] row moved
    seg = base.config.seg_token_id
    for key in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
        assert (merged[key] != start[key]).any(dim=1).nonzero().flatten().tolist() == [seg], key


def test_zero3_grpo_in_bf16(inputs, tmp_path):
    out = tmp_path / "run"
    probes = probe_reports("zero3.yaml", "grpo", options(inputs, out, "grpo") + BF16, tmp_path)
    assert_sharded(probes, stage=3, mixed_precision="bf16")
    assert all(p["trainable_dtypes"] == ["torch.bfloat16"] for p in probes)  # DeepSpeed keeps the fp32 master
    assert_merged_loads(out, torch.bfloat16)


def test_fsdp_on_a_cpu_is_refused_with_a_message(inputs, tmp_path):
    result = launch_probe("fsdp.yaml", "sft", options(inputs, tmp_path / "run", "sft", steps=1), tmp_path)
    assert result.returncode != 0
    assert "FSDP needs GPUs" in result.stderr and "zero3.yaml" in result.stderr
