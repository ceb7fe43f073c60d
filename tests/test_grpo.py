"""AuroraGRPOTrainer on the tiny model: audio-visual rollouts, rewards and mask loss, aligned log-probs, bad input."""

import json
import math

import pytest
import torch
from datasets import load_from_disk

from aurora_trl.metrics import clip_iou
from aurora_trl.modeling import AuroraForSegmentation, load_processor
from aurora_trl.modeling.policy import TrainingPolicy, apply_training_policy
from aurora_trl.modeling.sam import preprocess_frames
from aurora_trl.rewards import format_reward, iou_reward
from aurora_trl.text import ANSWER_SUFFIX
from aurora_trl.trainers.collator import mask_tensor
from aurora_trl.trainers.grpo_trainer import AuroraGRPOTrainer
from aurora_trl.trainers.utils import aurora_model
from tests.helpers import grpo_config


def make_trainer(model_dir, dataset, tmp_path, **overrides):
    model = AuroraForSegmentation.from_pretrained(model_dir)
    seg = model.config.seg_token_id
    model = apply_training_policy(model, TrainingPolicy())
    return AuroraGRPOTrainer(
        model=model,
        args=grpo_config(tmp_path / "grpo", seg, **overrides),
        train_dataset=dataset,
        processing_class=load_processor(model_dir),
    )


def test_grpo_steps_see_audio_and_frames_and_train(tiny_aurora_dir, synth_dataset, tmp_path):
    trainer = make_trainer(tiny_aurora_dir, load_from_disk(str(synth_dataset))["train"], tmp_path)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    logged = trainer.state.log_history[0]
    for key in (
        "rewards/format_reward/mean",
        "rewards/class_reward/mean",
        "rewards/iou_reward/mean",
        "iou/mean",
        "mask/bce",
        "mask/dice",
        "completions/mean_length",
    ):
        assert math.isfinite(logged[key]), key
    changed = [n for n, p in trainer.model.named_parameters() if p.requires_grad and not torch.equal(before[n], p)]
    assert any("lora_" in n for n in changed) and any("mask_decoder" in n for n in changed)
    assert len(changed) == len(before)
    # each clip was encoded once for its three rollouts
    assert trainer.sam_cache.misses == 2 * 1 and trainer.sam_cache.hits["memory"] == 0


def test_logprobs_are_read_at_the_completion_tokens(tiny_aurora_dir, synth_dataset, tmp_path):
    """TRL's fused log-probs with our audio override equal log_softmax of a plain full forward (AURORA's GRPO read
    them at unexpanded positions)."""
    dataset = load_from_disk(str(synth_dataset))["train"]
    trainer = make_trainer(tiny_aurora_dir, dataset, tmp_path)
    rows = [dataset[0]] * 3
    with torch.no_grad():
        batch = trainer._generate_and_score_completions(rows)
        input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
        attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
        n = batch["completion_ids"].size(1)
        trainer._logps_audio = {k: batch[k] for k in ("input_features", "feature_attention_mask")}
        ours, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model,
            input_ids,
            attention_mask,
            n,
            pixel_values=batch["pixel_values"],
            image_grid_thw=batch["image_grid_thw"],
            num_images=batch["num_images"],
        )
        logits = trainer.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values=batch["pixel_values"],
            image_grid_thw=batch["image_grid_thw"],
            input_features=batch["input_features"],
            feature_attention_mask=batch["feature_attention_mask"],
        ).logits
    reference = torch.log_softmax(logits[:, -n - 1 : -1].float() / trainer.temperature, dim=-1)
    reference = reference.gather(-1, batch["completion_ids"][..., None])[..., 0]
    mask = batch["completion_mask"].bool()
    assert mask.sum() > 0
    assert (ours[mask] - reference[mask]).abs().max().item() < 1e-5


def test_null_clips_give_finite_losses_and_rewards(tiny_aurora_dir, synth_dataset, tmp_path):
    null_rows = load_from_disk(str(synth_dataset))["test_n"]
    trainer = make_trainer(tiny_aurora_dir, null_rows, tmp_path, max_steps=1)
    trainer.train()
    logged = trainer.state.log_history[0]
    assert all(math.isfinite(logged[k]) for k in ("loss", "mask/bce", "mask/dice", "iou/mean", "reward"))


def test_vllm_is_refused_at_start_with_the_reason(tiny_aurora_dir, synth_dataset, tmp_path):
    with pytest.raises(ValueError, match="use_vllm is not supported.*hidden state at \\[SEG\\]"):
        make_trainer(tiny_aurora_dir, load_from_disk(str(synth_dataset))["train"], tmp_path, use_vllm=True)


@pytest.mark.parametrize("seg_bias", [-100.0, 8.0], ids=["no_seg", "many_seg"])
def test_odd_rollouts_and_none_rewards_keep_the_loss_finite(tiny_aurora_dir, synth_dataset, tmp_path, seg_bias):
    """Rollouts with no [SEG] (masks from the appended `It is [SEG].`) or many, and a reward that is None for some
    rows."""

    def sometimes_none(completions, **kwargs):
        return [None if i % 2 else 0.5 * (len(c) % 3) for i, c in enumerate(completions)]

    model = AuroraForSegmentation.from_pretrained(tiny_aurora_dir)
    seg = model.config.seg_token_id
    args = grpo_config(tmp_path / "grpo", seg, max_steps=1, generation_kwargs={"sequence_bias": [[[seg], seg_bias]]})
    trainer = AuroraGRPOTrainer(
        model=apply_training_policy(model, TrainingPolicy()),
        reward_funcs=[format_reward, iou_reward, sometimes_none],
        args=args,
        train_dataset=load_from_disk(str(synth_dataset))["train"],
        processing_class=load_processor(tiny_aurora_dir),
    )
    trainer.train()
    logged = trainer.state.log_history[0]
    assert all(math.isfinite(logged[k]) for k in ("loss", "reward", "mask/bce", "mask/dice", "iou/mean"))
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert (logged["mask/seg_emitted"] == 0) == (seg_bias < 0), logged["mask/seg_emitted"]


def test_rollouts_without_seg_are_scored_on_the_masks_inference_decodes(tiny_aurora_dir, synth_dataset, tmp_path):
    """A completion without [SEG] is read as inference reads it (`It is [SEG].` appended): its IoU reward and the
    state its mask loss uses are those of the appended [SEG], not of its last token."""
    dataset = load_from_disk(str(synth_dataset))["train"]
    seg = json.loads((tiny_aurora_dir / "config.json").read_text())["seg_token_id"]
    trainer = make_trainer(tiny_aurora_dir, dataset, tmp_path, generation_kwargs={"sequence_bias": [[[seg], -100.0]]})
    base, tokenizer = aurora_model(trainer.model), trainer.processing_class.tokenizer
    row, group = dataset[0], 3
    with torch.no_grad():
        batch = trainer._generate_and_score_completions([row] * group)
        completions = [c[m.bool()].tolist() for c, m in zip(batch["completion_ids"], batch["completion_mask"])]
        rewards = trainer._rollout_ious(completions, "train")
        states = trainer._answer_seg_states["train"]
        sam = preprocess_frames([image.convert("RGB") for image in row["images"]], base.config.sam_image_size)
        for i, completion in enumerate(completions):
            assert seg not in completion
            answer, emitted = base.mask_answer_ids(completion, tokenizer)
            assert not emitted and tokenizer.decode(answer).endswith(ANSWER_SUFFIX)
            prompt = batch["prompt_ids"][i][batch["prompt_mask"][i].bool()].tolist()
            ids = torch.tensor([prompt + answer])
            full = trainer.model(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                pixel_values=batch["pixel_values"].chunk(group)[i],
                image_grid_thw=batch["image_grid_thw"].chunk(group)[i],
                input_features=batch["input_features"][i : i + 1],
                feature_attention_mask=batch["feature_attention_mask"][i : i + 1],
                output_hidden_states=True,
            )
            at_seg = full.hidden_states[-1][0, len(prompt) + answer.index(seg)]
            last_token = full.hidden_states[-1][0, len(prompt) + len(completion) - 1]
            torch.testing.assert_close(states[i], at_seg, atol=1e-5, rtol=1e-5)
            assert not torch.allclose(states[i], last_token, atol=1e-3)  # the old fallback would differ
            masks = base.predict_masks(
                base.project_seg(at_seg[None]),
                pixel_values=sam.pixel_values[None],
                input_sizes=sam.input_size,
                original_sizes=sam.original_size,
            )[0]
            assert rewards[i] == pytest.approx(clip_iou(masks, mask_tensor(row["masks"])), abs=1e-6)


def test_qlora_4bit_grpo_step_through_the_script(tiny_aurora_dir, synth_dataset, tmp_path):
    from bitsandbytes.nn import Linear4bit
    from trl import ModelConfig

    from aurora_trl.grpo import AuroraGRPOScriptArguments, main

    seg = AuroraForSegmentation.from_pretrained(tiny_aurora_dir).config.seg_token_id
    trainer = main(
        AuroraGRPOScriptArguments(dataset_name=str(synth_dataset)),
        grpo_config(tmp_path / "grpo", seg, max_steps=1),
        ModelConfig(model_name_or_path=str(tiny_aurora_dir), use_peft=True, load_in_4bit=True, dtype="float32"),
    )
    base = trainer.model.get_base_model()
    assert isinstance(base.model.language_model.layers[0].self_attn.q_proj.base_layer, Linear4bit)
    assert not any(isinstance(m, Linear4bit) for m in base.sam.modules())  # SAM stays in full precision
    assert math.isfinite(trainer.state.log_history[0]["loss"])
    assert (tmp_path / "grpo" / "merged" / "config.json").is_file()


@pytest.mark.parametrize("lora", [True, False], ids=["lora_reference", "copy_reference"])
def test_kl_term_with_a_reference_model(tiny_aurora_dir, synth_dataset, tmp_path, lora):
    """beta > 0 (AURORA declares 0.04 but never applies it): with LoRA the reference is the adapter-free policy;
    without, TRL rebuilds it from the checkpoint by class name."""
    model = AuroraForSegmentation.from_pretrained(tiny_aurora_dir)
    seg = model.config.seg_token_id
    model = apply_training_policy(model, TrainingPolicy(use_lora=lora, train_llm=not lora))
    trainer = AuroraGRPOTrainer(
        model=model,
        args=grpo_config(tmp_path / "grpo", seg, max_steps=1, beta=0.04),
        train_dataset=load_from_disk(str(synth_dataset))["train"],
        processing_class=load_processor(tiny_aurora_dir),
    )
    assert (trainer.ref_model is None) == lora
    trainer.train()
    assert math.isfinite(trainer.state.log_history[0]["kl"])


def test_buffered_rollouts_are_reused_across_iterations_and_steps(tiny_aurora_dir, synth_dataset, tmp_path):
    """`num_iterations: 2` and `steps_per_generation: 2`: TRL keeps one generated batch for four optimizer steps and
    hands its slices over again; the audio features and rollout indices must still be in them."""
    dataset = load_from_disk(str(synth_dataset))["train"]
    trainer = make_trainer(
        tiny_aurora_dir,
        dataset,
        tmp_path,
        num_iterations=2,
        steps_per_generation=2,
        max_steps=4,
        max_completion_length=6,
    )
    trainer.train()
    assert trainer.state.global_step == 4
    assert all(math.isfinite(entry["mask/bce"]) for entry in trainer.state.log_history if "mask/bce" in entry)


def test_grpo_recipe_is_aurora_loss_and_one_dropout_free_policy(tiny_aurora_dir, synth_dataset, tmp_path):
    """recipes/grpo.yaml: AURORA's per-rollout mean (`loss_type: grpo`, not TRL's default `dapo`), rollouts long
    enough for a CoT, and no dropout anywhere, LoRA's included, so the rollouts, the IoU forward and the loss forward
    see one policy."""
    from pathlib import Path

    from torch import nn

    from aurora_trl.launch import parse_recipe

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "grpo.yaml"
    _, (_, training_args, model_args) = parse_recipe(recipe, ["--use_cpu", "True", "--bf16", "False"])
    assert training_args.loss_type == "grpo"
    assert training_args.max_completion_length >= 1024  # AURORA's 150 cuts a four-step CoT before `It is [SEG].`
    model = AuroraForSegmentation.from_pretrained(tiny_aurora_dir)
    model = apply_training_policy(model, TrainingPolicy(lora_dropout=model_args.lora_dropout))
    assert any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules())  # the recipe's LoRA has dropout
    trainer = AuroraGRPOTrainer(
        model=model,
        args=grpo_config(tmp_path / "grpo", disable_dropout=training_args.disable_dropout),
        train_dataset=load_from_disk(str(synth_dataset))["train"],
        processing_class=load_processor(tiny_aurora_dir),
    )
    assert all(m.p == 0 for m in trainer.model.modules() if isinstance(m, nn.Dropout))
