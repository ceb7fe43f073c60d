"""Perception pretraining of a tiny model: frames and audio turned into words, as a real model's towers come able to.

A real AURORA model starts from Qwen2.5-Omni, whose towers and LLM describe what a clip shows and sounds like: its
Step 1 lists the objects in the frames and its Step 2 what is heard. A tiny model built at random cannot, and the
stages do not teach it: after the tiny recipes, no generated Step 1 lists its clip's objects, so every reasoning
answer settles on an object of a clip it has not seen, and no rollout is more often right about where the object
is than another.

This module teaches it the way a captioning model learns: next-token prediction of each training row's Stage-1
answer after its full prompt (the frames, the audio and the reference), with the audio and vision towers and the
language model training. The projector and SAM are untouched. [`pretrain_perception`] reports, per step of the
held-out answers, the teacher-forced token accuracy with the row's own clip and with another clip's frames and
audio in its place: the words that only the clip can tell (colours, slots, pitches, onsets) are right under the
own clip alone, so the gap between the two is what the model perceives.
"""

import random
import time
from dataclasses import dataclass

import torch

from aurora_trl.data_row import clip_id, decode_audio
from aurora_trl.modeling.lm_pretrain import TextExample, language_model_parameters, response_token_index, text_batch
from aurora_trl.modeling.policy import trainable
from aurora_trl.modeling.processing import prompt_inputs
from aurora_trl.modeling.tokens import response_ids
from aurora_trl.text import step_header_offsets, target_text


# Steps of 8 rows. On 1,000 synthetic clips of 84 px (about 1,930 training rows) at 9 tokens per frame, 1,600 steps
# take about 11 min on 2 CPU cores; held out and teacher-forced, the image step then names the objects' colours and
# classes right on 85 % of those words (chance: 17 %). At 4 tokens per frame (a 2x2 grid) the colours stay at chance.
PERCEPTION_STEPS = 1600
MAX_GRAD_NORM = 1.0
# The media tensors the processor returns for a prompt, concatenated over a batch's rows.
MEDIA_KEYS = ("pixel_values", "image_grid_thw", "input_features", "feature_attention_mask")


@dataclass
class MediaExample:
    """One row's example: its prompt's ids (placeholders expanded) and answer's ids, its media tensors, and where
    each step begins."""

    text: TextExample
    media: dict[str, torch.Tensor]
    step_starts: dict[int, int]  # step number -> index in `text.response_ids` of its header's first token
    clip: str


def media_examples(processor, rows) -> list[MediaExample]:
    """The examples of every row with a Stage-1 answer (`reasoning`), prompted as the stages prompt it."""
    tokenizer = processor.tokenizer
    examples = []
    for row in rows:
        if not row.get("reasoning"):
            continue
        frames = [image.convert("RGB") for image in row["images"]]
        encoded = prompt_inputs(processor, row, frames, decode_audio(row["audio"]))
        answer = target_text(row, "reasoning")
        starts = {
            step: response_token_index(tokenizer, answer, at) for step, at in step_header_offsets(answer).items()
        }
        examples.append(
            MediaExample(
                TextExample(encoded["input_ids"][0].tolist(), response_ids(tokenizer, answer), None),
                {key: encoded[key] for key in MEDIA_KEYS},
                starts,
                clip_id(row),
            )
        )
    return examples


def media_batch(examples: list[MediaExample], pad_id: int, media: list[MediaExample] | None = None) -> dict:
    """[`~aurora_trl.modeling.lm_pretrain.text_batch`] of the rows, with the media tensors of `media` (by default each
    row's own; they must expand to the same placeholders as the rows' prompts)."""
    batch = text_batch([e.text for e in examples], pad_id)
    for key in MEDIA_KEYS:
        batch[key] = torch.cat([m.media[key] for m in (media or examples)])
    return batch


def another_clips_example(examples: list[MediaExample], index: int) -> MediaExample | None:
    """The next example (cyclically) of another clip whose frames and audio expand to as many placeholders as
    example `index`'s (same frame grids, same audio length); `None` if none."""
    here = examples[index]
    for step in range(1, len(examples)):
        other = examples[(index + step) % len(examples)]
        if other.clip != here.clip and _same_placeholders(here, other):
            return other
    return None


def _same_placeholders(a: MediaExample, b: MediaExample) -> bool:
    return (
        torch.equal(a.media["image_grid_thw"], b.media["image_grid_thw"])
        and a.media["input_features"].shape == b.media["input_features"].shape
        and torch.equal(a.media["feature_attention_mask"].sum(-1), b.media["feature_attention_mask"].sum(-1))
    )


def step_accuracy(model, examples: list[MediaExample], pad_id: int, other_clip: bool = False, batch_size: int = 16):
    """Teacher-forced accuracy of the greedy next token over each step's tokens of the answers, `{"step1": ...}`;
    with `other_clip`, each row is given another clip's frames and audio (rows without one are left out)."""
    pairs = [(e, another_clips_example(examples, i) if other_clip else e) for i, e in enumerate(examples)]
    pairs = [(e, m) for e, m in pairs if m is not None]
    right, total = {}, {}
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            batch = media_batch([e for e, _ in chunk], pad_id, media=[m for _, m in chunk])
            labels = batch.pop("labels")
            hits = model(**batch).logits.argmax(-1)[:, :-1] == labels[:, 1:]  # position i predicts token i + 1
            for row, (example, _) in enumerate(chunk):
                offset = len(example.text.prompt_ids) - 1  # where the prediction of the answer's first token sits
                bounds = sorted(example.step_starts.items()) + [(None, len(example.text.response_ids))]
                for (step, begin), (_, end) in zip(bounds, bounds[1:]):
                    key = f"step{step}"
                    right[key] = right.get(key, 0) + hits[row, offset + begin : offset + end].sum().item()
                    total[key] = total.get(key, 0) + end - begin
    return {key: right[key] / total[key] for key in sorted(total)}


def perception_parameters(model) -> list[torch.nn.Parameter]:
    """The towers' weights (audio and vision) and the language model's."""
    prefixes = (model._aurora_audio_tower, model._aurora_vision_tower)
    towers = [p for name, p in model.named_parameters() if name.startswith(prefixes)]
    return [*towers, *language_model_parameters(model)]


def pretrain_perception(
    model,
    processor,
    dataset,
    steps: int = PERCEPTION_STEPS,
    learning_rate: float = 2e-3,
    batch_size: int = 8,
    seed: int = 0,
    train_split: str = "train",
    eval_split: str = "val",
) -> dict[str, float]:
    """Train `model`'s towers and language model in place on `dataset[train_split]` (each row's prompt with its
    frames and audio, then its Stage-1 answer); returns [`step_accuracy`] on `dataset[eval_split]` with each row's
    own clip and with another clip's, before and after, the rows and the seconds taken.

    Args:
        model ([`AuroraForSegmentation`]):
            A model whose towers are to learn to perceive (e.g. a tiny one whose language model is pretrained on
            the answers' text, see [`~aurora_trl.modeling.lm_pretrain.pretrain_language_model`]). Its projector and
            SAM are not touched.
        processor: The model's processor (frames and audio are expanded as the stages expand them).
        dataset (`datasets.DatasetDict`):
            A data set built by `aurora-trl data build` with Stage-1 answers; rows without one are left out.
        steps, learning_rate, batch_size (*optional*):
            AdamW steps on random batches of rows ([`PERCEPTION_STEPS`] by default), gradients clipped at norm 1.
        seed (`int`, *optional*, defaults to `0`):
            Seed of the batches.
    """
    start = time.perf_counter()
    pad_id = processor.tokenizer.pad_token_id
    train = media_examples(processor, dataset[train_split])
    held_out = media_examples(processor, dataset[eval_split]) if eval_split in dataset else []
    if len(train) < batch_size:
        raise ValueError(
            f"{len(train)} rows of {train_split!r} have a Stage-1 answer (`reasoning`): too few to pretrain the "
            f"towers in batches of {batch_size}"
        )
    was_training = model.training
    model.eval()
    report = {f"before_{k}": v for k, v in _report(model, held_out, pad_id).items()}
    parameters = perception_parameters(model)
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0)
    rng = random.Random(seed)
    model.train()
    with trainable(parameters):
        for _ in range(steps):
            loss = model(**media_batch(rng.sample(train, batch_size), pad_id)).loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, MAX_GRAD_NORM)
            optimizer.step()
    model.eval()
    report.update(_report(model, held_out, pad_id))
    model.train(was_training)
    return {**report, "rows": len(train), "seconds": time.perf_counter() - start}


def _report(model, held_out: list[MediaExample], pad_id: int) -> dict[str, float]:
    if not held_out:
        return {}
    own = step_accuracy(model, held_out, pad_id)
    other = step_accuracy(model, held_out, pad_id, other_clip=True)
    return {**{f"{k}_own_clip": v for k, v in own.items()}, **{f"{k}_other_clip": v for k, v in other.items()}}
