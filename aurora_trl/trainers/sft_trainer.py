"""AuroraSFTTrainer: TRL's SFTTrainer plus mask losses on the `[SEG]` masks and `[SEG]` feature distillation.

One forward serves both losses: TRL's fused LM head computes the response cross-entropy from the backbone's last
hidden state without materialising logits, and a forward hook on that same backbone call keeps the state, from
which the `[SEG]` embedding, the masks and their losses follow (no second LLM forward for the student).

What is frozen runs once: the teacher's `[SEG]` embedding of a row (one no-grad backbone forward on the prompt
followed by `It is {class} [SEG].`) is computed the first time the row is seen and kept
([`~aurora_trl.trainers.teacher_cache.TeacherCache`]), and SAM's frozen image encoder encodes each clip once
([`~aurora_trl.modeling.embedding_cache.SamEmbeddingCache`], bounded in memory, optionally on disk).
"""

import copy
import io
import logging
from contextlib import nullcontext

import soundfile as sf
import torch
from trl import SFTTrainer

from aurora_trl.data_row import as_image
from aurora_trl.losses import clip_mask_losses, seg_distill_loss
from aurora_trl.metrics import annotated_only, frame_iou
from aurora_trl.modeling import AuroraForSegmentation
from aurora_trl.modeling.embedding_cache import SamEmbeddingCache
from aurora_trl.modeling.modeling_aurora import unwrap_aurora_model
from aurora_trl.trainers.checkpointing import SafeSavingMixin
from aurora_trl.trainers.collator import AuroraCollator, sequence_length
from aurora_trl.trainers.hub_push import MergedModelPushMixin
from aurora_trl.trainers.sft_config import AuroraSFTConfig
from aurora_trl.trainers.teacher_cache import TeacherCache
from aurora_trl.trainers.utils import (
    adapters_disabled,
    backbone_hidden_state,
    each_eval_split,
    prepare_for_engine,
    weights_are_sharded,
)


logger = logging.getLogger(__name__)

# Keys the collator adds for the mask and distillation terms; the LLM forward must not see them.
EXTRA_KEYS = (
    "sam_pixel_values",
    "sam_input_sizes",
    "sam_original_sizes",
    "gt_masks",
    "annotated",
    "teacher_input_ids",
    "teacher_attention_mask",
    "uids",
    "clip_ids",
)
MULTIMODAL_KEYS = ("pixel_values", "image_grid_thw", "input_features", "feature_attention_mask")


def keep_rows_with_target(dataset, target: str, name: str):
    """Drop rows that cannot teach `target` (no reasoning text for Stage 1/2), saying how many."""
    if dataset is None or target == "direct":
        return dataset
    kept = dataset.filter(lambda text: bool((text or "").strip()), input_columns=[target])
    if len(kept) < len(dataset):
        logger.warning(
            "%s: %d of %d rows have no %s text and are left out", name, len(dataset) - len(kept), len(dataset), target
        )
    if len(kept) == 0:
        raise ValueError(f"{name} has no row with {target} text: build the data set with the matching dump")
    return kept


def keep_rows_within_length(dataset, processor, max_length: int | None, target: str, name: str):
    """Drop rows whose prompt + response is longer than `max_length` tokens, naming them: a cut sequence would lose
    the answer's `[SEG]` (or split a run of image tokens). Lengths come from the frame sizes and audio lengths, read
    from the stored bytes without decoding them."""
    if dataset is None or max_length is None:
        return dataset
    # the rows as stored (Arrow): frames as bytes, whose size PIL reads from the header alone, and nothing decoded
    stored = dataset.select_columns([c for c in dataset.column_names if c != "masks"]).with_format("arrow")
    too_long = []
    for index in range(len(dataset)):
        row = stored[index].to_pylist()[0]
        sizes = [as_image(image).size[::-1] for image in row["images"]]
        samples = sf.info(io.BytesIO(row["audio"])).frames
        length = sequence_length(processor, row, target, sizes, samples)
        if length > max_length:
            too_long.append((index, row.get("uid", index), length))
    if not too_long:
        return dataset
    examples = ", ".join(f"{uid}: {length} tokens" for _, uid, length in too_long[:5])
    logger.warning(
        "%s: %d of %d rows are longer than max_length=%d tokens and are left out (%s%s); raise max_length or lower "
        "max_pixels",
        name,
        len(too_long),
        len(dataset),
        max_length,
        examples,
        ", ..." if len(too_long) > 5 else "",
    )
    if len(too_long) == len(dataset):
        raise ValueError(f"{name}: every row is longer than max_length={max_length} tokens ({examples})")
    dropped = {index for index, _, _ in too_long}
    return dataset.select([i for i in range(len(dataset)) if i not in dropped])


class AuroraSFTTrainer(MergedModelPushMixin, SafeSavingMixin, SFTTrainer):
    """[`~trl.SFTTrainer`] for AURORA's supervised stages.

    Args:
        model: An [`~aurora_trl.modeling.AuroraForSegmentation`] (or its PEFT wrapper, e.g. from
            `apply_training_policy`).
        args ([`AuroraSFTConfig`]): Training configuration.
        train_dataset / eval_dataset: Data sets in the aurora-trl schema (`aurora-trl data build`).
        processing_class: The model's Omni processor (with `[SEG]` in its tokenizer).
        teacher_model (*optional*): A frozen distillation teacher; overrides `args.teacher_model_name_or_path`.
        **kwargs: Passed on to [`~trl.SFTTrainer`].
    """

    _tag_names = ["trl", "sft", "aurora-trl"]
    _name = "AURORA SFT"

    def __init__(
        self,
        model,
        args: AuroraSFTConfig,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        data_collator=None,
        teacher_model=None,
        **kwargs,
    ):
        if processing_class is None:
            raise ValueError("AuroraSFTTrainer needs the model's processor as processing_class")

        def usable_rows(dataset, name):
            dataset = keep_rows_with_target(dataset, args.sft_target, name)
            return keep_rows_within_length(dataset, processing_class, args.max_length, args.sft_target, name)

        train_dataset = usable_rows(train_dataset, "train_dataset")
        eval_dataset = each_eval_split(eval_dataset, usable_rows)
        distill = args.distill_loss_weight > 0
        data_collator = data_collator or AuroraCollator(
            processing_class, unwrap_aurora_model(model).config.sam_image_size, args.sft_target, with_teacher=distill
        )
        super().__init__(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            data_collator=data_collator,
            **kwargs,
        )
        prepare_for_engine(self)
        self.teacher_model = self._make_teacher(teacher_model) if distill else None
        # Per-process caches skip forwards, which a sharded model's processes must all run alike.
        caching = not weights_are_sharded(self)
        self.teacher_cache = TeacherCache(frozen_only=self.teacher_model is None, enabled=caching)
        self.sam_cache = SamEmbeddingCache(args.sam_cache_dir, args.sam_cache_max_clips, enabled=caching)

    def _make_teacher(self, teacher_model):
        """A frozen teacher, or None to use the adapter-disabled policy (PEFT)."""
        if teacher_model is None and self.args.teacher_model_name_or_path:
            dtype = unwrap_aurora_model(self.model).dtype  # same precision as the student, not float32 by default
            teacher_model = AuroraForSegmentation.from_pretrained(self.args.teacher_model_name_or_path, dtype=dtype)
        if teacher_model is None:
            if hasattr(self.model, "disable_adapter"):
                return None  # the policy with adapters off is the starting checkpoint
            teacher_model = copy.deepcopy(unwrap_aurora_model(self.model))
        teacher_model = teacher_model.to(self.accelerator.device).eval()
        teacher_model.requires_grad_(False)
        return teacher_model

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if model.training else "eval"
        extras = {key: inputs.pop(key) for key in EXTRA_KEYS if key in inputs}
        base = unwrap_aurora_model(model)
        with backbone_hidden_state(model) as captured:
            result = super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        ce, outputs = result if return_outputs else (result, None)

        seg, found = base.seg_embeddings(captured["hidden"], inputs["input_ids"], inputs["attention_mask"])
        pixels = extras["sam_pixel_values"]
        embeddings = [self.sam_cache.embeddings(base, c, p) for c, p in zip(extras["clip_ids"], pixels)]
        masks = base.predict_masks(
            seg,
            image_embeddings=torch.stack(embeddings),
            clip_index=torch.arange(seg.shape[0]),
            input_sizes=extras["sam_input_sizes"],
            original_sizes=extras["sam_original_sizes"],
        )
        targets = [gt.to(m.device) for gt, m in zip(extras["gt_masks"], masks)]
        masks, targets = annotated_only(masks, targets, extras["annotated"])
        bce, dice = clip_mask_losses(masks, targets)
        aux = self.args.mask_loss(bce, dice)
        distill = None
        if self.args.distill_loss_weight > 0:
            distill = seg_distill_loss(seg, self._teacher_seg_embeddings(model, inputs, extras))
            aux = aux + self.args.distill_loss_weight * distill

        # TRL normalises the cross-entropy by the tokens of the whole accumulated batch; the mask and distillation
        # terms are per-micro-batch means, so they are divided by the accumulation steps here (as TRL does for the
        # MoE aux loss) and not again by the Trainer.
        steps = self.current_gradient_accumulation_steps if (num_items_in_batch is not None and mode == "train") else 1
        loss = self.args.ce_loss_weight * ce + aux / steps

        metrics = self._metrics[mode]
        metrics["loss/ce"].append(self._mean(ce.detach() * steps))
        metrics["loss/bce"].append(self._mean(bce.detach()))
        metrics["loss/dice"].append(self._mean(dice.detach()))
        if distill is not None:
            metrics["loss/distill"].append(self._mean(distill.detach()))
        iou = torch.stack([frame_iou(m, gt).mean() for m, gt in zip(masks, targets)])
        metrics["mask/iou"].append(self._mean(iou.mean()))
        metrics["seg/found"].append(self._mean(found.float().mean()))
        return (loss, outputs) if return_outputs else loss

    def _mean(self, value: torch.Tensor) -> float:
        return self.accelerator.gather_for_metrics(value.reshape(1).to(self.accelerator.device)).mean().item()

    @torch.no_grad()
    def _teacher_seg_embeddings(self, model, inputs, extras) -> torch.Tensor:
        """The teacher's `[SEG]` embeddings for the prompt followed by `It is {class} [SEG].`: from the cache, or
        from one forward of the batch, then cached."""
        unwrapped = getattr(model, "module", model)
        teacher = self.teacher_model if self.teacher_model is not None else unwrapped
        uids = extras["uids"] if all(uid is not None for uid in extras["uids"]) else []
        cached = self.teacher_cache.lookup(teacher, uids)
        if cached is not None:
            return cached.to(inputs["input_ids"].device)
        multimodal = {key: inputs[key] for key in MULTIMODAL_KEYS if key in inputs}
        ids, mask = extras["teacher_input_ids"], extras["teacher_attention_mask"]
        # without a teacher of its own, the teacher is the policy with its adapters disabled
        with nullcontext() if self.teacher_model is not None else adapters_disabled(unwrapped):
            base = unwrap_aurora_model(teacher)
            hidden = base.get_backbone()(input_ids=ids, attention_mask=mask, **multimodal).last_hidden_state
            embeddings = base.seg_embeddings(hidden, ids, mask)[0]
        self.teacher_cache.store(uids, embeddings)
        return embeddings
