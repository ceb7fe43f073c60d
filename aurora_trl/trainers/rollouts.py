"""The rollouts of one GRPO generation batch, as one object that AuroraGRPOTrainer's hooks share.

TRL's `GRPOTrainer` runs, for each generation batch, `_generate_and_score_completions`, which calls
`_tokenize_prompts`, `_generate_single_turn`, the old and reference log-prob forwards and `_calculate_rewards`; it
then shuffles the batch, splits it into `steps_per_generation` slices and hands each slice to `_compute_loss`
`num_iterations` times. [`RolloutBatch`] is built at the start of a generation batch and holds what the later hooks
need, per rollout: its group (the clip and prompt it shares with the other G − 1), the `[SEG]` state generation
found, its masks' IoU. The batch TRL shuffles carries only each row's `rollout_index` into it.

Everything a group's G rollouts share is computed once per group ([`RolloutGroup`]): the frames and masks decoded
from their PNG bytes, the processor's image tensors and Whisper features, the prompt's token ids, and SAM's image
embeddings (through the embedding cache, also across groups of one clip and across epochs). TRL's sampler repeats
each row G times and `datasets` decodes every image of a row each time it is read, so the frames and masks are
taken out of the rows TRL loads ([`ClipMedia`]) and decoded here, once per group.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import datasets
import numpy as np
import torch

from aurora_trl.data_row import annotated_frames, as_image, clip_id, decode_audio, mask_tensor
from aurora_trl.metrics import annotated_only
from aurora_trl.modeling.processing import prompt_inputs
from aurora_trl.modeling.sam import preprocess_frames


@dataclass
class RolloutGroup:
    """What the G rollouts of one prompt share, computed once.

    Args:
        clip_id (`str`): The clip (its SAM embeddings are shared by every prompt about it).
        prompt_ids (`list[int]`): The prompt as the processor expands it (image and audio placeholders included).
        model_inputs (`dict[str, torch.Tensor]`): The processor's image and audio tensors of the prompt (one row).
        sam_embeddings (`torch.Tensor` of shape `(T, C, h, w)`): SAM's image embeddings of the frames.
        input_size, original_size (`tuple[int, int]`): The frames' size inside SAM's square, and their own.
        gt_masks (`torch.Tensor` of shape `(T, H, W)`): The ground-truth masks.
        annotated (`torch.Tensor` of shape `(T,)`): The frames whose mask is ground truth (the ones scored).
    """

    clip_id: str
    prompt_ids: list[int]
    model_inputs: dict[str, torch.Tensor]
    sam_embeddings: torch.Tensor
    input_size: tuple[int, int]
    original_size: tuple[int, int]
    gt_masks: torch.Tensor
    annotated: torch.Tensor


@dataclass
class RolloutBatch:
    """The rollouts of one generation batch: their groups, and what generation and the rewards found.

    Args:
        groups (`list[RolloutGroup]`): The distinct prompts of the batch.
        group_of (`list[int]`): Each rollout's group.
        seg_states (`torch.Tensor` of shape `(N, H)`, *optional*): Each rollout's state at its answer's `[SEG]`,
            read during generation (the appended `It is [SEG].` for a rollout that wrote none).
        ious (`list[float]`, *optional*): Each rollout's mask IoU (its `iou` reward).
    """

    groups: list[RolloutGroup]
    group_of: list[int]
    seg_states: torch.Tensor | None = None
    ious: list[float] | None = field(default=None)

    def __len__(self) -> int:
        return len(self.group_of)

    def prompt_ids(self) -> list[list[int]]:
        return [self.groups[g].prompt_ids for g in self.group_of]

    def model_inputs(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """The image and audio tensors of the given rollouts, in their order (rows of one forward), on the device."""
        groups = [self.groups[self.group_of[int(i)]] for i in indices]
        return {key: torch.cat([g.model_inputs[key] for g in groups]) for key in groups[0].model_inputs}

    def masks(self, model, seg_embeddings: torch.Tensor, indices: Sequence[int]):
        """Mask logits `(T, H, W)` of the given rollouts, decoded from their `[SEG]` embeddings `(len(indices), C)`,
        and their ground truth; each clip's embeddings are stacked once, for all the rollouts about it."""
        groups = [self.groups[self.group_of[int(i)]] for i in indices]
        clips = {g.clip_id: g for g in groups}  # one entry per clip, in first-seen order
        clip_ids = list(clips)
        masks = model.predict_masks(
            seg_embeddings,
            image_embeddings=torch.stack([g.sam_embeddings for g in clips.values()]),
            clip_index=torch.tensor([clip_ids.index(g.clip_id) for g in groups]),
            input_sizes=[g.input_size for g in clips.values()],
            original_sizes=[g.original_size for g in clips.values()],
        )
        return annotated_only(masks, [g.gt_masks for g in groups], [g.annotated for g in groups])


MEDIA_COLUMNS = ("images", "masks")


class ClipMedia:
    """The frames and masks of data-set rows, by `uid`, read as stored bytes and decoded when asked for."""

    def __init__(self):
        self._sources: dict[str, tuple] = {}  # uid -> (the media columns as Arrow, row index)

    def take(self, dataset):
        """`dataset` without its frames and masks (what TRL loads, for every rollout), remembering where each row's
        are. A data set that is not indexable, or whose `uid`s are not unique (in it and among the data sets taken
        before), keeps them: they are then decoded for each rollout, as TRL reads them."""
        if not isinstance(dataset, datasets.Dataset) or "uid" not in dataset.column_names:
            return dataset
        if not set(MEDIA_COLUMNS) <= set(dataset.column_names):
            return dataset
        uids = list(dataset["uid"])
        if len(set(uids)) < len(uids) or any(uid in self._sources for uid in uids):
            return dataset
        stored = dataset.select_columns(list(MEDIA_COLUMNS)).with_format("arrow")
        self._sources.update((uid, (stored, index)) for index, uid in enumerate(uids))
        return dataset.remove_columns(list(MEDIA_COLUMNS))

    def of(self, row: dict) -> tuple[list, list]:
        """The row's frames and masks (PIL images, or their stored bytes and paths for [`as_image`])."""
        if "images" in row:
            return row["images"], row["masks"]
        stored, index = self._sources[row["uid"]]
        record = stored[index]
        return tuple(record.column(column)[0].as_py() for column in MEDIA_COLUMNS)


def without_media(row: dict) -> dict:
    """A row as TRL sees it: no frames (TRL would process them for each rollout) and no ground-truth masks."""
    return {key: value for key, value in row.items() if key not in (*MEDIA_COLUMNS, "image")}


def build_rollouts(rows: Sequence[dict], processor, model, sam_cache, media: ClipMedia) -> RolloutBatch:
    """The [`RolloutBatch`] of a generation batch's rows (G consecutive copies of each prompt, as TRL samples them).

    Rows with the same `uid` are one group; a row without one is a group of its own. The groups' tensors are moved
    to the model's device once, here, not at each forward that reads them.
    """
    groups, index, group_of = [], {}, []
    for position, row in enumerate(rows):
        key = row.get("uid") or f"row {position}"
        if key not in index:
            index[key] = len(groups)
            groups.append(_group(row, *media.of(row), processor, model, sam_cache))
        group_of.append(index[key])
    return RolloutBatch(groups=groups, group_of=group_of)


def _group(row: dict, images: list, masks: list, processor, model, sam_cache) -> RolloutGroup:
    frames = [as_image(image).convert("RGB") for image in images]
    encoded = prompt_inputs(processor, row, frames, decode_audio(row["audio"]))
    prompt_ids = encoded.pop("input_ids")[0].tolist()
    encoded.pop("attention_mask", None)
    clip = clip_id(row)
    sam = preprocess_frames(frames, model.config.sam_image_size)
    with torch.no_grad():  # the rollouts' masks decode from fixed embeddings, reused across buffered steps
        embeddings = sam_cache.embeddings(model, clip, sam.pixel_values)
    return RolloutGroup(
        clip_id=clip,
        prompt_ids=prompt_ids,
        model_inputs={key: torch.as_tensor(np.asarray(value)).to(model.device) for key, value in encoded.items()},
        sam_embeddings=embeddings,
        input_size=sam.input_size,
        original_size=sam.original_size,
        gt_masks=mask_tensor([as_image(mask) for mask in masks]).to(embeddings.device),  # where the masks are decoded
        annotated=annotated_frames(row, len(frames)),
    )


class ModelWithInputs:
    """`module` called with the given image and audio tensors added to every call: the rows' own inputs for TRL's
    log-prob forwards, which pass only token ids (`unwrap_aurora_model` reads the model from `module`)."""

    def __init__(self, module, inputs: dict[str, torch.Tensor]):
        self.module = module
        self.inputs = inputs

    def __call__(self, **kwargs):
        return self.module(**kwargs, **self.inputs)
