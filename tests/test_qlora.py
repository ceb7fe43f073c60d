"""QLoRA in all four stages, as the real recipes run it (`--load_in_4bit True`, bf16): only the LLM's layers are
4-bit, what trains is float32, and each stage's `merged/` is a dequantised model that the next stage loads."""

import json

import torch
from bitsandbytes.nn import Linear4bit
from safetensors import safe_open

from aurora_trl.scripts.launch import run_any_recipe
from tests.test_sft_recipes import RECIPES, overrides


# as the real recipes: bf16, and only the [SEG] rows of the embeddings and the head (the tiny recipes train them whole)
QLORA = [
    "--load_in_4bit",
    "True",
    "--dtype",
    "bfloat16",
    "--bf16",
    "True",
    "--eval_strategy",
    "no",
    "--token_rows",
    "seg",
]


def quantised_modules(model) -> dict[str, int]:
    """`Linear4bit` count per top-level part of the AURORA model inside the trainer's PEFT wrapper."""
    base = model.get_base_model()
    parts = {
        "llm layers": base.model.language_model.layers,
        "vision tower": base.model.visual,
        "audio tower": base.model.audio_tower,
        "sam": base.sam,
        "projector": base.seg_projector,
        "lm head": base.lm_head,
    }
    return {name: sum(isinstance(m, Linear4bit) for m in part.modules()) for name, part in parts.items()}


def assert_dequantised(merged_dir) -> None:
    config = json.loads((merged_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "bfloat16"
    with safe_open(merged_dir / "model.safetensors", "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
        assert dtypes == {"BF16", "F32"}, dtypes  # bf16 backbone, float32 projector / decoder / prompt encoder
        assert not any("absmax" in k or "quant" in k for k in f.keys())


def test_qlora_runs_every_stage_and_hands_on_a_dequantised_model(synth_dataset, tiny_aurora_dir, tmp_path):
    inputs = {"data": str(synth_dataset), "model": str(tiny_aurora_dir)}
    start = str(tiny_aurora_dir)
    for recipe in ("teacher", "sft", "reflect", "grpo"):
        out = tmp_path / recipe
        options = overrides(inputs, out, model=start) + QLORA
        if recipe == "reflect":
            options += ["--teacher_model_name_or_path", str(tmp_path / "teacher" / "merged")]
        if recipe == "grpo":
            options += ["--max_completion_length", "8"]
        trainer = run_any_recipe(RECIPES / f"{recipe}.yaml", options)
        counts = quantised_modules(trainer.model)
        assert counts["llm layers"] == 2 * 7, counts  # q, k, v, o, gate, up, down in each of the 2 layers
        assert sum(counts.values()) == counts["llm layers"], counts  # towers, SAM, projector, head unquantised
        trained = {p.dtype for p in trainer.model.parameters() if p.requires_grad}
        assert trained == {torch.float32}
        assert all(torch.isfinite(torch.tensor(h["loss"])) for h in trainer.state.log_history if "loss" in h)
        assert_dequantised(out / "merged")
        start = str(out / "merged")  # the next stage starts from this stage's merged model
