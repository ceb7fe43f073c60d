"""Point-prompt pretraining of a tiny SAM's mask decoder: what SAM's released weights bring to a real AURORA model.

A real model starts from SAM ViT-H, whose mask decoder segments the object that a prompt points at; AURORA's
projector then only has to map the `[SEG]` state into that prompt space. A tiny SAM built at random has no such
skill. Trained from random together with the language model, its decoder learns to segment the objects it sees in
the frames whatever its prompt says (after the tiny stages, another answer's `[SEG]` prompt moves the mask logits by
about 1e-7 of their size), so nothing the model writes can change its masks, and neither the IoU reward nor the
rollout mask loss can reward a better answer.

This module gives the tiny SAM that skill the way SAM learnt it: the mask decoder alone is trained to segment the
object under one positive point prompt (its centre in the clip's first annotated frame), on a built data set's
non-null training rows, with the stages' mask losses. The image encoder stays as it is (frozen, as in every stage),
so each clip is encoded once. [`pretrain_mask_decoder`] reports how well the result follows its prompt: the
held-out IoU with each row's own point and with a point elsewhere in the frame.
"""

import random
import time
from dataclasses import dataclass

import torch

from aurora_trl.data_row import annotated_frames, clip_id, mask_tensor
from aurora_trl.losses import clip_mask_losses
from aurora_trl.metrics import clip_iou
from aurora_trl.modeling.policy import trainable
from aurora_trl.modeling.sam import preprocess_frames


# The tiny recipes' mask-loss weights: Dice keeps the tiny decoder predicting the small shapes (see recipes/tiny/).
BCE_WEIGHT, DICE_WEIGHT = 0.5, 2.0
# Steps of 4 rows: about 50 s on 2 CPU cores for the tiny SAM at 128 px, after which it segments the object under a
# held-out point with IoU 0.88-0.92 on the quickstart's data (0.0 for a point elsewhere).
PRETRAINING_STEPS = 400


@dataclass
class PointExample:
    """One row's pretraining example: its clip's SAM image embeddings, sizes, ground truth and point prompt."""

    image_embeddings: torch.Tensor  # (T, C, h, w)
    input_size: tuple[int, int]
    original_size: tuple[int, int]
    masks: torch.Tensor  # (T, H, W)
    point: torch.Tensor  # (2,) as (x, y) in SAM input pixels


def target_point(masks: torch.Tensor, frames: torch.Tensor, input_size, original_size) -> torch.Tensor | None:
    """The centre of the target in the first annotated frame that shows it, in SAM input pixels `(x, y)`; `None`
    when no annotated frame shows it (a null row)."""
    for t in torch.nonzero(frames).flatten().tolist():
        ys, xs = torch.nonzero(masks[t] > 0, as_tuple=True)
        if len(xs):
            scale_y, scale_x = input_size[0] / original_size[0], input_size[1] / original_size[1]
            return torch.stack([(xs.float().mean() + 0.5) * scale_x, (ys.float().mean() + 0.5) * scale_y])
    return None


def point_examples(model, rows, cache: dict) -> list[PointExample]:
    """The examples of every row whose target is shown; `cache` maps a clip id to its encoded frames (filled here,
    so that the clips shared by several rows, and by the training and held-out calls, are encoded once)."""
    examples = []
    for row in rows:
        masks = mask_tensor(row["masks"])
        key = clip_id(row)
        if key not in cache:
            frames = preprocess_frames([image.convert("RGB") for image in row["images"]], model.config.sam_image_size)
            with torch.no_grad():
                cache[key] = (model.encode_images(frames.pixel_values), frames.input_size, frames.original_size)
        embeddings, input_size, original_size = cache[key]
        point = target_point(masks, annotated_frames(row, masks.shape[0]), input_size, original_size)
        if point is not None:
            examples.append(PointExample(embeddings, input_size, original_size, masks, point))
    return examples


def point_prompts(sam, points: torch.Tensor) -> torch.Tensor:
    """SAM's embedding of one positive point per row `(N, C)`, from points `(N, 2)` in input pixels: the same
    sum of the point's position encoding and the positive-point embedding as `PromptEncoder` makes."""
    encoder = sam.prompt_encoder
    size = encoder.input_image_size
    return (
        encoder.pe_layer.forward_with_coords(points[:, None].float(), size)[:, 0] + encoder.point_embeddings[1].weight
    )


def decode_prompts(model, examples: list[PointExample], prompts: torch.Tensor) -> list[torch.Tensor]:
    """Each example's masks `(T, H, W)` under its SAM prompt embedding (`prompts`, `(N, C)`)."""
    return model.predict_masks(
        prompts,
        image_embeddings=torch.stack([e.image_embeddings for e in examples]),
        input_sizes=[e.input_size for e in examples],
        original_sizes=[e.original_size for e in examples],
    )


def decode_with_points(model, examples: list[PointExample], points: torch.Tensor) -> list[torch.Tensor]:
    return decode_prompts(model, examples, point_prompts(model.sam, points))


def elsewhere(examples: list[PointExample], index: int) -> torch.Tensor:
    """The point of the next example (cyclically) whose point lies at least a sixth of the frame's width away from
    example `index`'s: a point on another object, or on none. Its own point when there is no such example."""
    here = examples[index]
    for step in range(1, len(examples)):
        there = examples[(index + step) % len(examples)].point
        if (there - here.point).norm() >= here.input_size[1] / 6:
            return there
    return here.point


def prompt_following(model, examples: list[PointExample], batch_size: int = 8) -> dict[str, float]:
    """Mean IoU of `examples` under their own point and under a point elsewhere ([`elsewhere`]): a decoder that
    ignores its prompt scores the same under both."""
    own, other = [], []
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = examples[start : start + batch_size]
            points = torch.stack([e.point for e in batch])
            shifted = torch.stack([elsewhere(examples, start + i) for i in range(len(batch))])
            own += [clip_iou(m, e.masks) for m, e in zip(decode_with_points(model, batch, points), batch)]
            other += [clip_iou(m, e.masks) for m, e in zip(decode_with_points(model, batch, shifted), batch)]
    return {"iou_own_point": sum(own) / len(own), "iou_other_point": sum(other) / len(other)}


def pretrain_mask_decoder(
    model,
    dataset,
    steps: int = PRETRAINING_STEPS,
    learning_rate: float = 1e-3,
    batch_size: int = 4,
    seed: int = 0,
    train_split: str = "train",
    eval_split: str = "val",
) -> dict[str, float]:
    """Train `model`'s SAM mask decoder (and its positive-point embedding) in place to segment the object under a
    point prompt, on `dataset[train_split]`; returns [`prompt_following`] on `dataset[eval_split]` before and
    after, and the seconds taken.

    Args:
        model ([`AuroraForSegmentation`]):
            A model whose SAM is to be pretrained (e.g. a fresh tiny one). Its other weights are not touched.
        dataset (`datasets.DatasetDict`):
            A data set built by `aurora-trl data build`; rows without a shown target (null rows) are left out.
        steps, learning_rate, batch_size (*optional*):
            AdamW steps on random batches of rows ([`PRETRAINING_STEPS`] by default; lr 3e-3 was unstable).
        seed (`int`, *optional*, defaults to `0`):
            Seed of the batches.
    """
    start = time.perf_counter()
    cache = {}
    train = point_examples(model, dataset[train_split], cache)
    held_out = point_examples(model, dataset[eval_split], cache) if eval_split in dataset else []
    if len(train) < batch_size:
        raise ValueError(f"{len(train)} rows of {train_split!r} show their target: too few to pretrain SAM")
    report = {f"before_{k}": v for k, v in prompt_following(model, held_out).items()} if held_out else {}
    sam = model.sam
    parameters = [*sam.mask_decoder.parameters(), *sam.prompt_encoder.point_embeddings[1].parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0)
    rng = random.Random(seed)
    with trainable(parameters):
        for _ in range(steps):
            batch = rng.sample(train, batch_size)
            masks = decode_with_points(model, batch, torch.stack([e.point for e in batch]))
            bce, dice = clip_mask_losses(masks, [e.masks for e in batch])
            optimizer.zero_grad()
            (BCE_WEIGHT * bce + DICE_WEIGHT * dice).backward()
            optimizer.step()
    if held_out:
        report.update(prompt_following(model, held_out))
    return {**report, "rows": len(train), "seconds": time.perf_counter() - start}
