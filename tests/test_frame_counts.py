"""Nothing assumes Ref-AVS's 10 frames: on a 5-frame data set (AVSBench's clip length) one SFT step and one GRPO
step train, and eval scores every frame it is given."""

import math

import pytest
import torch
from datasets import load_from_disk

from aurora_trl.apps.evaluate import evaluate
from aurora_trl.modeling import AuroraForSegmentation, load_processor
from aurora_trl.scripts.common import check_prompts
from aurora_trl.text import build_prompt
from aurora_trl.trainers.grpo_trainer import AuroraGRPOTrainer
from aurora_trl.trainers.sft_trainer import AuroraSFTTrainer
from tests.helpers import grpo_config, sft_config, tiny_policy_model


FRAMES = 5


@pytest.fixture(scope="module")
def five_frames(synth_dataset):
    """The synthetic data set cut to its first 5 frames and masks, with the 5-frame prompt."""

    def cut(row):
        prompt = build_prompt(row["expression"], num_frames=FRAMES)
        return {"images": row["images"][:FRAMES], "masks": row["masks"][:FRAMES], "prompt": prompt}

    return load_from_disk(str(synth_dataset)).map(cut)


def trainable(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def changed(model, before) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad and not torch.equal(before[name], p)}


def test_one_sft_step_on_five_frames(tiny_aurora_dir, five_frames, tmp_path):
    train = five_frames["train"].select(range(2))
    check_prompts(train, "train")  # the stored prompts are this version's, for 5 frames
    assert {len(row["images"]) for row in train} == {FRAMES}
    model, processor = tiny_policy_model(tiny_aurora_dir)
    before = trainable(model)
    trainer = AuroraSFTTrainer(
        model=model, args=sft_config(tmp_path / "sft", max_steps=1), train_dataset=train, processing_class=processor
    )
    trainer.train()
    logged = trainer.state.log_history[0]
    assert all(math.isfinite(logged[key]) for key in ("loss", "loss/ce", "loss/bce", "loss/dice"))
    names = changed(model, before)
    assert any("lora_" in n for n in names) and any("mask_decoder" in n for n in names)


def test_one_grpo_step_on_five_frames(tiny_aurora_dir, five_frames, tmp_path):
    model = AuroraForSegmentation.from_pretrained(tiny_aurora_dir)
    seg = model.config.seg_token_id
    model, processor = tiny_policy_model(tiny_aurora_dir)
    before = trainable(model)
    trainer = AuroraGRPOTrainer(
        model=model,
        args=grpo_config(tmp_path / "grpo", seg, max_steps=1),
        train_dataset=five_frames["train"].select(range(2)),
        processing_class=processor,
    )
    trainer.train()
    logged = trainer.state.log_history[0]
    assert math.isfinite(logged["reward"]) and math.isfinite(logged["iou/mean"])
    assert any("mask_decoder" in n for n in changed(model, before))


def test_eval_scores_five_frame_clips(tiny_aurora_dir, five_frames, tmp_path):
    model = AuroraForSegmentation.from_pretrained(tiny_aurora_dir).eval()
    metrics = evaluate(
        model,
        load_processor(tiny_aurora_dir),
        five_frames,
        ["test_s"],
        tmp_path,
        max_new_tokens=4,
        limit=2,
        overlays=1,
    )
    assert metrics["test_s"]["clips"] == 2 and 0.0 <= metrics["test_s"]["J"] <= 1.0
