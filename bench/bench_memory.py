"""Trainable parameters and static training memory of AURORA on full-size Qwen2.5-Omni thinkers, before and after
training only the `[SEG]` rows in float32.

    python bench/bench_memory.py                      # Omni-3B and Omni-7B, on the meta device (no weights)
    python bench/bench_memory.py --device cuda        # also measure one AdamW step of the 3B model on the GPU

The models are built on the meta device from the published dimensions (thinker only: text, vision and audio towers;
SAM ViT-H at AURORA's 224 px; `[SEG]` at id 151665, inside the embedding matrix), and the two training policies are
applied with PEFT exactly as the trainers apply them:

- **before**: full trainable copies of the embeddings and the LM head (`modules_to_save`), in the model's bf16, with
  AdamW state in bf16 (torch keeps it in the parameter's dtype);
- **after** (this package): the `[SEG]` row of each matrix (`trainable_token_indices`); everything that trains in
  float32 with float32 AdamW state.

Static memory per GPU = weights + gradients + AdamW's two moments, replicated on every GPU (data parallel, the
recipes' `ddp.yaml`). Activations are not included. `--device cuda` builds the 3B model with random bf16 weights,
runs one step on a short text batch and reports `torch.cuda.max_memory_allocated`.
"""

import argparse
import json
import os
import sys
from collections import defaultdict


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from aurora_trl.modeling import AuroraConfig, AuroraForSegmentation  # noqa: E402
from aurora_trl.modeling.policy import TrainingPolicy, apply_training_policy  # noqa: E402


SEG_TOKEN_ID = 151665
# Published dimensions of the two thinkers' LLMs. Both share the towers: a 32-block, 1280-wide vision ViT and a
# 32-layer, 1280-wide Whisper-style audio encoder, each projecting to the LLM's width.
THINKERS = {
    "Qwen2.5-Omni-3B": dict(
        vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
        num_key_value_heads=2,
    ),
    "Qwen2.5-Omni-7B": dict(
        vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4,
    ),
}  # fmt: skip
GROUPS = (
    ("LoRA", lambda n: "lora_" in n),
    ("[SEG] rows / embedding + head copies", lambda n: "embed_tokens" in n or "lm_head" in n),
    ("projector", lambda n: "seg_projector" in n),
    ("mask decoder", lambda n: "mask_decoder" in n),
)


def aurora_config(text: dict) -> AuroraConfig:
    hidden = text["hidden_size"]
    return AuroraConfig(
        text_config={
            **text,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
        },
        vision_config={
            "depth": 32,
            "hidden_size": 1280,
            "intermediate_size": 3420,
            "num_heads": 16,
            "out_hidden_size": hidden,
        },
        audio_config={"output_dim": hidden},
        seg_token_id=SEG_TOKEN_ID,
        tie_word_embeddings=False,
        dtype="bfloat16",
    )


def policy_model(name: str, rows_only: bool, device: str = "meta"):
    """The 3B/7B AURORA model with the before (`rows_only=False`) or after policy applied."""
    config = aurora_config(THINKERS[name])
    with torch.device(device):
        model = AuroraForSegmentation(config).to(torch.bfloat16)
    if rows_only:
        # the class keeps these in float32 when loading a checkpoint in bf16
        for module in (model.seg_projector, model.sam.prompt_encoder, model.sam.mask_decoder):
            module.float()
        return apply_training_policy(model, TrainingPolicy())
    return apply_training_policy(model, TrainingPolicy(token_rows="all"))  # its float32 cast: see `memory_report`


def memory_report(model, fp32_trained: bool) -> dict:
    """Trainable parameters by group, and static bytes (weights, gradients, AdamW moments) per GPU."""
    trainable = defaultdict(int)
    weights = gradients = moments = 0
    for name, parameter in model.named_parameters():
        size = parameter.numel()
        dtype = parameter.dtype
        if parameter.requires_grad and not fp32_trained and "lora_" not in name:
            dtype = torch.bfloat16  # before: the trainable copies stayed in the model's bf16
        element = torch.finfo(dtype).bits // 8
        weights += size * element
        if parameter.requires_grad:
            group = next((g for g, match in GROUPS if match(name)), "other")
            trainable[group] += size
            gradients += size * element
            moments += 2 * size * element
    return {
        "trainable": dict(trainable),
        "trainable_total": sum(trainable.values()),
        "weights_gb": weights / 1e9,
        "gradients_gb": gradients / 1e9,
        "adamw_gb": moments / 1e9,
        "static_gb": (weights + gradients + moments) / 1e9,
    }


def measured_step_gb(name: str) -> float:
    """Peak CUDA memory of one AdamW step of the after-policy model on a 64-token text batch (random weights)."""
    torch.cuda.reset_peak_memory_stats()
    model = policy_model(name, rows_only=True, device="cuda")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    ids = torch.randint(0, 150000, (1, 64), device="cuda")
    ids[0, -1] = SEG_TOKEN_ID
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    return torch.cuda.max_memory_allocated() / 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["meta", "cuda"], default="meta")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    results = {}
    print("| model | policy | LoRA | [SEG] rows / copies | projector | mask decoder | trainable | static GB per GPU |")
    print("|---|---|---|---|---|---|---|---|")
    for name in THINKERS:
        for label, rows_only in (("before", False), ("after", True)):
            report = memory_report(policy_model(name, rows_only), fp32_trained=rows_only)
            results[f"{name}/{label}"] = report
            groups = [report["trainable"].get(g, 0) for g, _ in GROUPS]
            print(
                f"| {name} | {label} | "
                + " | ".join(f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n:,}" for n in groups)
                + f" | {report['trainable_total'] / 1e6:.1f} M | {report['static_gb']:.2f} "
                f"(weights {report['weights_gb']:.2f}, grads {report['gradients_gb']:.2f}, AdamW {report['adamw_gb']:.2f}) |"
            )
    if args.device == "cuda":
        results["measured_3b_step_gb"] = measured_step_gb("Qwen2.5-Omni-3B")
        print(f"measured on {torch.cuda.get_device_name(0)}: one AdamW step of the 3B model (after): "
              f"{results['measured_3b_step_gb']:.2f} GB peak")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
