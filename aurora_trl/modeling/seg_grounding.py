"""Text-only grounding of a tiny model's `[SEG]` token: the link from an answer to a place that a real model brings.

A real AURORA model's `[SEG]` state, after segmentation training on far more data than ours, carries where the
object its answer names is, and its projector turns that into a SAM prompt there. A tiny model built at random has
no such link, even with SAM taught to follow point prompts and the language model taught its answers: its masks are
the same whichever object the answer settles on (teacher-forced on held-out rows, the right answer and another
object's answer give the same IoU), so neither the stages' mask losses nor GRPO's IoU reward can tell a right
answer from a wrong one, and the stages' few hundred rows do not build the link.

This module builds it the way the two pretrainings before it teach their parts, on text alone: each training row's
prompt without frames and audio, followed by its Stage-1 answer (which names the target and where it is). The
language model and the projector learn to map the answer's `[SEG]` state onto SAM's embedding of one positive
point at the target's centre (the point the SAM pretraining segments by), while keeping the answer's next-token
loss. SAM and the towers are untouched. [`pretrain_seg_grounding`] reports the held-out IoU of the masks decoded
from each row's own answer, and from the answer of another row of the same clip that names another object.
"""

import random
import time
from dataclasses import dataclass

import torch

from aurora_trl.data_row import clip_id
from aurora_trl.metrics import clip_iou
from aurora_trl.modeling.lm_pretrain import TextExample, language_model_parameters, text_batch, text_examples
from aurora_trl.modeling.policy import trainable
from aurora_trl.modeling.sam_pretrain import PointExample, decode_prompts, point_examples, point_prompts
from aurora_trl.modeling.tokens import select_seg_hidden_states


# Steps of 8 rows: about 20 s on 2 CPU cores for the quickstart's tiny model (SAM and language model pretrained
# first), after which its held-out masks follow the answer: IoU 0.88 under the row's own answer, 0.00 under another
# object's (0.33 under both before).
GROUNDING_STEPS = 400
# The prompt loss is normalised by the size of SAM's point embedding. Weighted 5 (everything at 3e-3), the
# next-token loss held the language model where it was and the projector learnt only the mean prompt.
PROMPT_LOSS_WEIGHT = 33.0
# The language model takes small, clipped steps so that its answers survive; with everything at 3e-3 and no
# clipping the next-token loss spiked and the grounding stalled half-way.
PROJECTOR_LEARNING_RATE = 3e-3
MAX_GRAD_NORM = 1.0


@dataclass
class GroundingExample:
    """One row's example: its text-only prompt and answer, its clip, and its target's point prompt."""

    text: TextExample
    clip: str
    target: int
    point: PointExample


def grounding_examples(model, processor, rows, cache: dict) -> list[GroundingExample]:
    """The examples of every row with a Stage-1 answer and a shown target (null rows have none); `cache` maps a clip
    id to its encoded frames (see [`~aurora_trl.modeling.sam_pretrain.point_examples`])."""
    examples = []
    for row in rows:
        texts = text_examples(processor, [row])
        points = point_examples(model, [row], cache) if texts else []
        if points:
            examples.append(GroundingExample(texts[0], clip_id(row), row["fid"], points[0]))
    return examples


def answer_prompts(model, texts: list[TextExample], pad_id: int, with_loss: bool = False):
    """The projected `[SEG]` prompt `(N, C)` of each teacher-forced answer, and the answers' next-token loss when
    `with_loss` (else `None`)."""
    batch = text_batch(texts, pad_id)
    if not with_loss:
        batch.pop("labels")
    outputs = model(**batch, output_hidden_states=True)
    states, _, _ = select_seg_hidden_states(
        outputs.hidden_states, batch["input_ids"], model.seg_token_id, batch["attention_mask"]
    )
    return model.project_seg(states), outputs.loss


def another_objects_answer(examples: list[GroundingExample], index: int) -> TextExample | None:
    """The answer of another row of example `index`'s clip whose target is another object; `None` if none."""
    here = examples[index]
    for other in examples:
        if other.clip == here.clip and other.target != here.target:
            return other.text
    return None


def grounding_following(
    model, examples: list[GroundingExample], pad_id: int, batch_size: int = 16
) -> dict[str, float | int]:
    """Mean held-out IoU of the rows with another object's row in their clip, with the masks of their own answer and
    of that other answer: a `[SEG]` state that ignores its answer scores the same under both."""
    pairs = []
    for index, example in enumerate(examples):
        other = another_objects_answer(examples, index)
        if other is not None:
            pairs.append((example, other))
    own, other = [], []
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            points = [example.point for example, _ in chunk]
            for scores, texts in ((own, [e.text for e, _ in chunk]), (other, [t for _, t in chunk])):
                masks = decode_prompts(model, points, answer_prompts(model, texts, pad_id)[0])
                scores += [clip_iou(m, p.masks) for m, p in zip(masks, points)]
    return {
        "iou_own_answer": sum(own) / max(len(own), 1),
        "iou_other_answer": sum(other) / max(len(other), 1),
        "pairs": len(pairs),
    }


def pretrain_seg_grounding(
    model,
    processor,
    dataset,
    steps: int = GROUNDING_STEPS,
    learning_rate: float = 1e-3,
    batch_size: int = 8,
    seed: int = 0,
    train_split: str = "train",
    eval_split: str = "val",
) -> dict[str, float]:
    """Train `model`'s language model and `[SEG]` projector in place so that each training answer's `[SEG]` prompt
    points SAM at its target (rows' prompts without media, then their Stage-1 answers); returns
    [`grounding_following`] on `dataset[eval_split]` before and after, the rows and the seconds taken.

    Args:
        model ([`AuroraForSegmentation`]):
            A model whose SAM follows point prompts (see
            [`~aurora_trl.modeling.sam_pretrain.pretrain_mask_decoder`]). Its SAM and towers are not touched.
        processor: The model's processor (its tokenizer and chat template).
        dataset (`datasets.DatasetDict`):
            A data set built by `aurora-trl data build` with Stage-1 answers; rows without one are left out.
        steps, learning_rate, batch_size (*optional*):
            AdamW steps on random batches of rows ([`GROUNDING_STEPS`] by default); `learning_rate` is the language
            model's, the projector's is [`PROJECTOR_LEARNING_RATE`].
        seed (`int`, *optional*, defaults to `0`):
            Seed of the batches.
    """
    start = time.perf_counter()
    pad_id = processor.tokenizer.pad_token_id
    cache = {}
    train = grounding_examples(model, processor, dataset[train_split], cache)
    held_out = grounding_examples(model, processor, dataset[eval_split], cache) if eval_split in dataset else []
    if len(train) < batch_size:
        raise ValueError(
            f"{len(train)} rows of {train_split!r} have a Stage-1 answer (`reasoning`) and a shown target: too few "
            f"to ground the [SEG] token in batches of {batch_size}"
        )
    was_training = model.training
    model.eval()
    report = {f"before_{k}": v for k, v in grounding_following(model, held_out, pad_id).items() if k != "pairs"}
    language, projector = language_model_parameters(model), list(model.seg_projector.parameters())
    parameters = [*language, *projector]
    optimizer = torch.optim.AdamW(
        [{"params": language}, {"params": projector, "lr": PROJECTOR_LEARNING_RATE}],
        lr=learning_rate,
        weight_decay=0.0,
    )
    rng = random.Random(seed)
    model.train()
    with trainable(parameters):
        for _ in range(steps):
            batch = rng.sample(train, batch_size)
            prompts, text_loss = answer_prompts(model, [e.text for e in batch], pad_id, with_loss=True)
            with torch.no_grad():
                goals = point_prompts(model.sam, torch.stack([e.point.point for e in batch]))
            prompt_loss = (prompts - goals).pow(2).mean() / goals.pow(2).mean()
            optimizer.zero_grad()
            (text_loss + PROMPT_LOSS_WEIGHT * prompt_loss).backward()
            torch.nn.utils.clip_grad_norm_(parameters, MAX_GRAD_NORM)
            optimizer.step()
    model.eval()
    report.update(grounding_following(model, held_out, pad_id))
    model.train(was_training)
    return {**report, "rows": len(train), "seconds": time.perf_counter() - start}
