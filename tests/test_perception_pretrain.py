"""The tiny model's perception pretraining (`aurora_trl/modeling/perception_pretrain.py`): a real model's towers come
able to describe a clip; the tiny one's answers are the same whatever clip it is given until it has learnt to."""

import json

import pytest
import torch
from datasets import load_from_disk

from aurora_trl.cli import main as cli_main
from aurora_trl.modeling import load_processor
from aurora_trl.modeling.perception_pretrain import (
    another_clips_example,
    media_batch,
    media_examples,
    perception_parameters,
    pretrain_perception,
)
from aurora_trl.modeling.processing import media_token_count
from aurora_trl.tiny import build_tiny_model
from aurora_trl.tiny_processor import corpus_from_dataset


def test_examples_mark_each_step_and_swap_in_another_clips_media(tiny_aurora_dir, synth_dataset):
    processor = load_processor(tiny_aurora_dir)
    rows = load_from_disk(str(synth_dataset))["train"]
    examples = media_examples(processor, rows)
    assert len(examples) == sum(1 for row in rows if row["reasoning"]) > 1
    tokenizer = processor.tokenizer
    for example in examples:
        starts = [example.step_starts[step] for step in (1, 2, 3, 4)]
        assert starts == sorted(starts) and starts[0] == 0
        for step, start in example.step_starts.items():
            assert tokenizer.decode(example.text.response_ids[start:]).lstrip().startswith(f"Step {step} (")
    for index, example in enumerate(examples):
        other = another_clips_example(examples, index)
        assert other is not None and other.clip != example.clip
        batch = media_batch([example], tokenizer.pad_token_id, media=[other])
        assert torch.equal(batch["pixel_values"], other.media["pixel_values"])
        assert batch["input_ids"][0, : len(example.text.prompt_ids)].tolist() == example.text.prompt_ids


@pytest.mark.slow
def test_perception_pretraining_makes_the_answers_depend_on_their_clip(sixty_clips_dataset):
    """After the pretraining, the image and audio steps of the training answers are predicted better with each row's
    own frames and audio than with another clip's: the towers and the language model read the clip (the expressions
    recur across clips, so nothing else tells the answers apart). Only the towers and the language model change.

    Measured (seed 0, 118 training rows, 200 steps, about 70 s): own clip / another clip, Step 1 0.79 / 0.69, Step 2
    0.80 / 0.71 (from 0.00 / 0.00: the tiny model starts random). Held out, on more clips: `BENCHMARKS.md`."""
    dataset = load_from_disk(str(sixty_clips_dataset))
    model, processor = build_tiny_model(seed=0, corpus=corpus_from_dataset(sixty_clips_dataset))
    taught = {id(p) for p in perception_parameters(model)}
    untouched = {n: p.clone() for n, p in model.named_parameters() if id(p) not in taught}
    trainable = {n: p.requires_grad for n, p in model.named_parameters()}

    report = pretrain_perception(model, processor, dataset, steps=200, seed=0, eval_split="train")
    print(json.dumps(report))

    for step in ("step1", "step2"):
        assert report[f"{step}_own_clip"] > report[f"{step}_other_clip"] + 0.05
        assert report[f"{step}_own_clip"] > report[f"before_{step}_own_clip"] + 0.3
    assert all(torch.equal(p, untouched[n]) for n, p in model.named_parameters() if n in untouched)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == trainable


def test_tiny_model_gives_each_frame_the_llm_tokens_asked_for(tmp_path, capsys):
    # 9 tokens: a 3x3 grid, one column per slot of the synthetic clips; 4 (the default): a 2x2 grid
    for image_tokens in (4, 9):
        _, processor = build_tiny_model(image_tokens=image_tokens)
        assert media_token_count(processor, [(64, 64), (48, 48)], None) == 2 * image_tokens
    assert cli_main(["tiny", "--out", str(tmp_path / "nine"), "--image-tokens", "9"]) == 0
    capsys.readouterr()
    assert media_token_count(load_processor(tmp_path / "nine"), [(64, 64)], None) == 9


def test_perception_pretraining_without_enough_answers_says_so(synth_dataset):
    model, processor = build_tiny_model(seed=0)
    few = load_from_disk(str(synth_dataset))["train"].select(range(2))
    with pytest.raises(ValueError, match=r"rows of 'train' have a Stage-1 answer \(`reasoning`\): too few"):
        pretrain_perception(model, processor, {"train": few}, steps=1)
