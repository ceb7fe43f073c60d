"""bf16 and fp16 end to end: SAM decoding in any dtype (with or without autocast), what trains kept in float32, and
training steps that change as much in bf16 as in fp32. The CPU runs bf16, so these run the users' precision."""

import math

import pytest
import torch
from datasets import load_from_disk

from aurora_trl.modeling import AuroraForSegmentation, load_processor
from aurora_trl.modeling.policy import TrainingPolicy, apply_training_policy
from aurora_trl.modeling.sam import SamSpec, build_sam, decode_masks, image_positional_encoding, init_sam_module
from aurora_trl.trainers.grpo_trainer import AuroraGRPOTrainer
from aurora_trl.trainers.sft_trainer import AuroraSFTTrainer
from tests.helpers import grpo_config, sft_config


HALF = (torch.bfloat16, torch.float16)
# Measured when written (largest difference / largest fp32 logit; share of mask pixels on the same side of 0):
# segment() with the model loaded in bf16 0.24 % and 100 %, in fp16 0.05 % and 100 %; the decoder cast whole
# (as DeepSpeed casts it) bf16 0.99 % and 100 %, fp16 0.15 % and 100 %. The bars leave room for other seeds.
RELATIVE_TOLERANCE = {torch.bfloat16: 0.03, torch.float16: 0.01}
AGREEMENT = {torch.bfloat16: 0.98, torch.float16: 0.99}


def _sam(seed=0):
    torch.manual_seed(seed)
    sam = build_sam(
        SamSpec(image_size=64, embed_dim=32, depth=1, num_heads=2, global_attn_indexes=(0,), window_size=0)
    )
    for module in sam.modules():
        init_sam_module(module)
    with torch.no_grad():  # the constructors leave parts at zero; random weights make the comparison meaningful
        for parameter in sam.mask_decoder.parameters():
            parameter.normal_(0, 0.1)
    return sam.eval()


def assert_close_masks(reference: torch.Tensor, other: torch.Tensor, dtype) -> None:
    assert other.dtype == torch.float32 or other.dtype == dtype
    scale = reference.abs().max()
    assert (other.float() - reference).abs().max() <= RELATIVE_TOLERANCE[dtype] * scale
    assert ((other > 0) == (reference > 0)).float().mean() >= AGREEMENT[dtype]


def test_position_encoding_is_segment_anythings_in_float32_whatever_the_dtype():
    sam = _sam()
    reference = sam.prompt_encoder.get_dense_pe()
    torch.testing.assert_close(image_positional_encoding(sam.prompt_encoder), reference, atol=1e-6, rtol=1e-6)
    sam.to(torch.bfloat16)  # segment-anything's own get_dense_pe fails now (a float32 grid times a bf16 buffer)
    with pytest.raises(RuntimeError, match="dtype"):
        sam.prompt_encoder.get_dense_pe()
    encoding = image_positional_encoding(sam.prompt_encoder)
    assert encoding.dtype == torch.float32
    # only the buffer's own rounding to bf16 remains
    gaussian = sam.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix.float()
    assert (encoding - reference).abs().max() <= 2 * math.pi * 2 * gaussian.abs().sum(0).max() * 2**-8


@pytest.mark.parametrize("dtype", HALF, ids=["bf16", "fp16"])
@pytest.mark.parametrize("autocast", [False, True], ids=["plain", "autocast"])
def test_decoding_in_half_precision_matches_float32(dtype, autocast):
    """The decoder cast whole to bf16/fp16 (as DeepSpeed casts the module) with float32 inputs, with and without
    autocast: no dtype mismatch, masks close to the float32 ones."""
    sam = _sam()
    embeddings, prompts = torch.randn(6, 256, 4, 4), torch.randn(6, 256)
    with torch.no_grad():
        reference = decode_masks(sam, embeddings, prompts)
        sam.to(dtype)
        context = torch.autocast("cpu", dtype=dtype) if autocast else torch.autocast("cpu", enabled=False)
        with context:
            half = decode_masks(sam, embeddings, prompts)
    assert half.shape == reference.shape
    assert_close_masks(reference, half, dtype)


def test_loading_in_bf16_keeps_what_trains_in_float32(tiny_aurora_dir):
    model = AuroraForSegmentation.from_pretrained(tiny_aurora_dir, dtype=torch.bfloat16)
    assert model.model.language_model.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
    assert model.sam.image_encoder.patch_embed.proj.weight.dtype == torch.bfloat16
    for module in (model.seg_projector, model.sam.mask_decoder, model.sam.prompt_encoder):
        assert {p.dtype for p in module.parameters()} == {torch.float32}
    peft_model = apply_training_policy(model, TrainingPolicy())
    trained = {n: p.dtype for n, p in peft_model.named_parameters() if p.requires_grad}
    assert any("lora_B" in n for n in trained) and any("trainable_tokens_delta" in n for n in trained)
    assert set(trained.values()) == {torch.float32}


def _perturbed_checkpoint(tiny_aurora_dir, folder):
    """The tiny model with random projector and decoder weights (so masks are far from zero), saved in fp32."""
    model = AuroraForSegmentation.from_pretrained(tiny_aurora_dir)
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in [*model.seg_projector.parameters(), *model.sam.mask_decoder.parameters()]:
            parameter.normal_(0, 0.1)
    model.save_pretrained(folder)
    load_processor(tiny_aurora_dir).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("dtype", HALF, ids=["bf16", "fp16"])
def test_segment_with_a_half_precision_model_matches_float32(dtype, tiny_aurora_dir, tiny_clip, tmp_path):
    folder = _perturbed_checkpoint(tiny_aurora_dir, tmp_path / "model")
    frames, audio = tiny_clip
    processor = load_processor(folder)
    outputs = {}
    for loaded in (torch.float32, dtype):
        model = AuroraForSegmentation.from_pretrained(folder, dtype=loaded).eval()
        outputs[loaded] = model.segment(frames, audio, "the dog", processor=processor, max_new_tokens=4)
    reference, half = outputs[torch.float32], outputs[dtype]
    assert half.mask_logits.dtype == torch.float32 and half.mask_logits.shape == (10, 48, 64)
    assert_close_masks(reference.mask_logits, half.mask_logits, dtype)


TRAINED_GROUPS = {
    "LoRA": "lora_B",
    "[SEG] rows": "trainable_tokens_delta",
    "projector": "seg_projector.modules_to_save",
    "mask decoder": "mask_decoder.modules_to_save",
}


def _changed_share(before: dict, model) -> dict[str, float]:
    """Per trained group, the share of its elements that the steps changed."""
    share = {}
    for group, fragment in TRAINED_GROUPS.items():
        changed = total = 0
        for name, parameter in model.named_parameters():
            if fragment in name and parameter.requires_grad:
                changed += (parameter.detach() != before[name]).sum().item()
                total += parameter.numel()
        if total:  # (no token rows when the whole matrices train)
            share[group] = changed / total
    return share


def _sft_steps(tiny_aurora_dir, synth_dataset, out, dtype):
    model = AuroraForSegmentation.from_pretrained(tiny_aurora_dir, dtype=dtype)
    model = apply_training_policy(model, TrainingPolicy())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = AuroraSFTTrainer(
        model=model,
        args=sft_config(out, max_steps=3, learning_rate=1e-5, bf16=dtype == torch.bfloat16, distill_loss_weight=0),
        train_dataset=load_from_disk(str(synth_dataset))["train"],
        processing_class=load_processor(tiny_aurora_dir),
    )
    trainer.train()
    assert all(math.isfinite(h["loss"]) for h in trainer.state.log_history if "loss" in h)
    return _changed_share(before, trainer.model)


def test_bf16_steps_at_grpo_learning_rate_change_as_much_as_fp32(tiny_aurora_dir, synth_dataset, tmp_path):
    """Three AdamW steps at lr 1e-5 on a model loaded in bf16 (`bf16: True`, as the real recipes) change each trained
    group's elements as often as the fp32 run does: what trains has float32 weights and optimizer state. With bf16
    weights and no float32 master, most updates at this rate round away."""
    fp32 = _sft_steps(tiny_aurora_dir, synth_dataset, tmp_path / "fp32", torch.float32)
    bf16 = _sft_steps(tiny_aurora_dir, synth_dataset, tmp_path / "bf16", torch.bfloat16)
    for group in TRAINED_GROUPS:
        assert fp32[group] > 0.5, (group, fp32)
        assert bf16[group] >= 0.9 * fp32[group], (group, bf16[group], fp32[group])


@pytest.mark.parametrize("token_rows", ["seg", "all"])
def test_grpo_steps_on_a_bf16_model(token_rows, tiny_aurora_dir, synth_dataset, tmp_path):
    """GRPO generates outside autocast: float32 trained parts (token rows, or whole float32 copies of the embeddings
    and the head with `token_rows="all"`) must cast at their use next to the bf16 backbone."""
    model = AuroraForSegmentation.from_pretrained(tiny_aurora_dir, dtype=torch.bfloat16)
    seg = model.config.seg_token_id
    model = apply_training_policy(model, TrainingPolicy(token_rows=token_rows))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = AuroraGRPOTrainer(
        model=model,
        args=grpo_config(tmp_path / "grpo", seg, bf16=True, learning_rate=1e-5),
        train_dataset=load_from_disk(str(synth_dataset))["train"],
        processing_class=load_processor(tiny_aurora_dir),
    )
    trainer.train()
    logged = trainer.state.log_history[0]
    assert math.isfinite(logged["loss"]) and math.isfinite(logged["mask/bce"])
    share = _changed_share(before, trainer.model)
    assert share["projector"] > 0.5 and share["mask decoder"] > 0.5, share


def test_eval_and_predict_run_a_checkpoint_saved_in_bf16(tiny_aurora_dir, synth_dataset, tiny_clip, tmp_path):
    """A bf16-trained merged model reloads in bf16 (transformers reads the saved dtype): `eval` and `predict` (which
    the demo shares) run on it."""
    from aurora_trl.cli import main as cli_main
    from tests.test_predict import write_frames

    folder = tmp_path / "bf16"
    AuroraForSegmentation.from_pretrained(tiny_aurora_dir, dtype=torch.bfloat16).save_pretrained(folder)
    load_processor(tiny_aurora_dir).save_pretrained(folder)
    assert AuroraForSegmentation.from_pretrained(folder).dtype == torch.bfloat16
    common = ["--model", str(folder), "--max-new-tokens", "4"]
    out = tmp_path / "eval"
    assert cli_main(["eval", *common, "--data", str(synth_dataset), "--out", str(out), "--limit", "2"]) == 0
    assert (out / "metrics.json").is_file()
    frames, _ = tiny_clip
    frames_dir = write_frames(tmp_path / "frames", frames)
    out = tmp_path / "predict"
    assert (
        cli_main(["predict", *common, "--frames", str(frames_dir), "--expression", "the dog", "--out", str(out)]) == 0
    )
    assert len(list((out / "masks").glob("*.png"))) == 10
