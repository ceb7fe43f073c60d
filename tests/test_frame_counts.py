"""Nothing assumes Ref-AVS's 10 frames: on a 5-frame data set (AVSBench's clip length) one SFT step and one GRPO
step train, and eval scores every frame it is given. Frames whose mask is not ground truth (the `annotated` column;
AVSBench's S4 training clips annotate only the first) count in no loss, reward or metric."""

import math

import pytest
import torch
from datasets import DatasetDict, load_from_disk
from PIL import Image

from aurora_trl.apps.evaluate import evaluate
from aurora_trl.data_row import annotated_frames
from aurora_trl.modeling import AuroraForSegmentation, load_processor
from aurora_trl.scripts.common import check_prompts
from aurora_trl.text import build_prompt
from aurora_trl.trainers.grpo_trainer import AuroraGRPOTrainer
from aurora_trl.trainers.sft_trainer import AuroraSFTTrainer
from tests.helpers import grpo_config, sft_config, tiny_policy_model


FRAMES = 5


FIRST_ONLY = [True] + [False] * (FRAMES - 1)


def first_frame_annotated(dataset, garbage: bool = False):
    """Only the first frame annotated; with `garbage`, the other frames' masks are all foreground (they must not
    count)."""
    full = Image.new("L", (48, 48), 255)

    def mark(row):
        masks = row["masks"][:1] + [full] * (FRAMES - 1) if garbage else row["masks"]
        return {"annotated": FIRST_ONLY, "masks": masks}

    return dataset.map(mark)


def test_annotated_frames_default_to_all_and_must_match_the_frames():
    assert annotated_frames({"uid": "a"}, 3).tolist() == [True, True, True]  # a data set built before the column
    assert annotated_frames({"annotated": FIRST_ONLY}, FRAMES).tolist() == FIRST_ONLY
    with pytest.raises(ValueError, match="2 annotated flags for 5 frames"):
        annotated_frames({"uid": "a", "annotated": [True, False]}, FRAMES)


@pytest.fixture(scope="module")
def five_frames(synth_dataset):
    """The synthetic data set cut to its first 5 frames and masks, with the 5-frame prompt."""

    def cut(row):
        prompt = build_prompt(row["expression"], num_frames=FRAMES)
        cut = {key: row[key][:FRAMES] for key in ("images", "masks", "annotated")}
        return {**cut, "prompt": prompt}

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


def test_sft_losses_ignore_frames_without_ground_truth(tiny_aurora_dir, five_frames, tmp_path):
    rows = five_frames["train"].select(range(2))
    model, processor = tiny_policy_model(tiny_aurora_dir)
    model.eval()
    trainer = AuroraSFTTrainer(
        model=model, args=sft_config(tmp_path / "sft", max_steps=1), train_dataset=rows, processing_class=processor
    )
    losses = {}
    for name, dataset in {
        "all": rows,
        "first": first_frame_annotated(rows),
        "first+garbage": first_frame_annotated(rows, garbage=True),
    }.items():
        with torch.no_grad():
            trainer.compute_loss(model, trainer.data_collator(list(dataset)))
        losses[name] = (trainer._metrics["eval"]["loss/bce"][-1], trainer._metrics["eval"]["loss/dice"][-1])
    assert losses["first"] == losses["first+garbage"]  # the unannotated frames' masks do not count
    assert losses["first"] != losses["all"]  # ... and scoring all frames is another number


def test_a_grpo_step_on_first_frame_annotations(tiny_aurora_dir, five_frames, tmp_path):
    model = AuroraForSegmentation.from_pretrained(tiny_aurora_dir)
    seg = model.config.seg_token_id
    model, processor = tiny_policy_model(tiny_aurora_dir)
    trainer = AuroraGRPOTrainer(
        model=model,
        args=grpo_config(tmp_path / "grpo", seg, max_steps=1),
        train_dataset=first_frame_annotated(five_frames["train"].select(range(2)), garbage=True),
        processing_class=processor,
    )
    trainer.train()
    logged = trainer.state.log_history[0]
    assert math.isfinite(logged["reward"]) and math.isfinite(logged["iou/mean"])


def test_eval_scores_only_annotated_frames(tiny_aurora_dir, five_frames, tmp_path):
    model = AuroraForSegmentation.from_pretrained(tiny_aurora_dir).eval()
    processor = load_processor(tiny_aurora_dir)
    scores = {}
    for garbage in (False, True):
        data = DatasetDict({"test_s": first_frame_annotated(five_frames["test_s"].select(range(2)), garbage)})
        metrics = evaluate(model, processor, data, ["test_s"], tmp_path / str(garbage), max_new_tokens=4, overlays=0)
        scores[garbage] = (metrics["test_s"]["J"], metrics["test_s"]["F"])
    assert scores[False] == scores[True]


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
