"""AuroraGRPOTrainer: TRL's GRPOTrainer with audio-visual rollouts, a mask-IoU reward and AURORA's rollout mask loss.

TRL 1.16 handles images but not audio, and its fused LM head returns no hidden states. The overrides, in the order
a step meets them, share one [`~aurora_trl.trainers.rollouts.RolloutBatch`] per mode (train, eval), built at the
first; the batch TRL shuffles and buffers carries each row's `rollout_index` into it:

1. `_generate_and_score_completions`: builds the batch's rollouts, once per group of G rollouts of one prompt: its
   frames and masks, the processor's image tensors and Whisper features, the prompt's ids, SAM's image embeddings
   (through the embedding cache). TRL gets the rows without their frames, so that it does not run the processor
   on each rollout again; the rollouts' own tensors go to every forward instead.
2. `_tokenize_prompts`: the groups' prompt ids and tensors, one row per rollout.
3. `_generate_single_turn`: TRL's generation, during which [`SegStateRecorder`] keeps each rollout's state at its
   answer's `[SEG]`. The answer is read as inference reads it: a completion without `[SEG]` gets `It is [SEG].`
   appended, forwarded on top of the generation's KV cache, so its reward is the IoU of the mask that inference
   would give it. No second forward of the prompts.
4. `_get_per_token_logps_and_entropies`: passes the rollouts' image and audio tensors to every forward (policy,
   old, reference); one chunk per call keeps them aligned with the rows.
5. `_calculate_rewards`: the masks of every rollout, decoded from its `[SEG]` state, and their IoU, written into the
   rows as the `iou` column that `iou_reward` returns; the `seg_token_id` column lets `format_reward` check that
   the answer's `[SEG]` is the real token.
6. `_compute_loss`: TRL's policy loss plus `(bce·BCE + dice·Dice) / accumulation steps` on the masks decoded from
   the `[SEG]` states of that same policy forward (a forward hook on the backbone keeps them). A rollout that wrote
   no `[SEG]` has none there: its masks come from its generation-time state at the appended `[SEG]` (detached, so
   its mask loss trains the projector and the decoder only); `mask/seg_emitted` logs the share of rollouts that
   wrote one.
7. `log`: with `log_completions`, writes the logged prompts and completions as text, which every `report_to`
   backend takes (W&B refuses TRL's message lists).

Log-probs are read on the processor-expanded sequence (the Omni processor expands the image and audio placeholders
before tokenisation), so completion tokens are scored at their own positions, unlike AURORA's GRPO code.
"""

import torch
import transformers
from trl import GRPOTrainer
from trl.models.utils import disable_gradient_checkpointing

from aurora_trl.losses import clip_mask_losses
from aurora_trl.metrics import clip_iou
from aurora_trl.modeling.embedding_cache import SamEmbeddingCache
from aurora_trl.modeling.generation_states import SegStateRecorder
from aurora_trl.modeling.modeling_aurora import unwrap_aurora_model
from aurora_trl.modeling.tokens import multimodal_token_ids
from aurora_trl.reporting import conversation_text
from aurora_trl.rewards import REWARD_FUNCS
from aurora_trl.trainers.checkpointing import SafeSavingMixin
from aurora_trl.trainers.grpo_config import AuroraGRPOConfig
from aurora_trl.trainers.hub_push import MergedModelPushMixin
from aurora_trl.trainers.rollouts import ClipMedia, ModelWithInputs, RolloutBatch, build_rollouts, without_media
from aurora_trl.trainers.utils import (
    backbone_hidden_state,
    each_eval_split,
    prepare_for_engine,
    weights_are_sharded,
)


AURORA_REWARDS = ("format", "class", "iou")


class AuroraGRPOTrainer(MergedModelPushMixin, SafeSavingMixin, GRPOTrainer):
    """[`~trl.GRPOTrainer`] for AURORA's Stage 3.

    Args:
        model: An [`~aurora_trl.modeling.AuroraForSegmentation`] (or its PEFT wrapper).
        reward_funcs (*optional*): TRL reward functions; default AURORA's `format`, `class` and `iou` rewards.
        args ([`AuroraGRPOConfig`]): Training configuration.
        train_dataset / eval_dataset: Data sets in the aurora-trl schema (`aurora-trl data build`).
        processing_class: The model's Omni processor.
        **kwargs: Passed on to [`~trl.GRPOTrainer`].
    """

    _tag_names = ["trl", "grpo", "aurora-trl"]
    _name = "AURORA GRPO"

    def __init__(
        self,
        model,
        reward_funcs=None,
        args: AuroraGRPOConfig = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        **kwargs,
    ):
        if processing_class is None:
            raise ValueError("AuroraGRPOTrainer needs the model's processor as processing_class")
        base = unwrap_aurora_model(model)
        # A sampled image/audio marker breaks the next forward; TRL suppresses only the image token.
        suppress = multimodal_token_ids(base.config) + [processing_class.tokenizer.pad_token_id]
        args.generation_kwargs = {"suppress_tokens": sorted(set(suppress)), **(args.generation_kwargs or {})}
        if args.beta > 0 and not hasattr(model, "disable_adapter"):
            # Without PEFT, TRL rebuilds the reference model by class name from the transformers namespace.
            setattr(transformers, type(base).__name__, type(base))
        if reward_funcs is None:
            reward_funcs = [REWARD_FUNCS[name] for name in AURORA_REWARDS]
        # TRL reads every row G times (and `datasets` decodes its images each time): the frames and masks are read
        # from their stored bytes instead, once per group.
        self.clip_media = ClipMedia()
        train_dataset = self.clip_media.take(train_dataset)
        eval_dataset = each_eval_split(eval_dataset, lambda split, _: self.clip_media.take(split))
        super().__init__(
            model=model,
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            **kwargs,
        )
        prepare_for_engine(self)
        # A per-process cache skips encoder forwards, which a sharded model's processes must all run alike.
        self.sam_cache = SamEmbeddingCache(
            args.sam_cache_dir, args.sam_cache_max_clips, enabled=not weights_are_sharded(self)
        )
        # The rollouts of the latest generation batch of each mode: an evaluation between two buffered training
        # steps leaves the training batch's rollouts in place.
        self._rollouts: dict[str, RolloutBatch | None] = {"train": None, "eval": None}

    def _mode(self) -> str:
        return "train" if self.model.training else "eval"

    # ------------------------------------------------------------------------------------------ rollouts
    def _generate_and_score_completions(self, inputs):
        rollouts = build_rollouts(
            inputs, self.processing_class, unwrap_aurora_model(self.model), self.sam_cache, self.clip_media
        )
        self._rollouts[self._mode()] = rollouts
        # Without frames TRL runs no processor of its own (once per rollout); the rollouts' tensors replace it.
        output = super()._generate_and_score_completions([without_media(row) for row in inputs])
        output["rollout_index"] = torch.arange(len(inputs), device=self.accelerator.device)
        return output

    def _tokenize_prompts(self, prompts):
        rollouts = self._rollouts[self._mode()]
        return rollouts.prompt_ids(), None, rollouts.model_inputs(range(len(rollouts)))

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        base = unwrap_aurora_model(self.model)
        with SegStateRecorder(base, sharded=weights_are_sharded(self)) as recorder:
            completion_ids, logprobs = super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )
        answers = [base.mask_answer_ids(ids, self.processing_class.tokenizer)[0] for ids in completion_ids]
        # gradient checkpointing would drop the KV cache the answers' remaining tokens are forwarded on
        with disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            self._rollouts[self._mode()].seg_states = recorder.answer_states(completion_ids, answers)
        return completion_ids, logprobs

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        mode = self._mode()
        rollouts = self._rollouts[mode]
        base = unwrap_aurora_model(self.model)
        with torch.no_grad():
            masks, targets = rollouts.masks(base, base.project_seg(rollouts.seg_states), range(len(rollouts)))
        rollouts.ious = [clip_iou(m, t, self.args.iou_threshold) for m, t in zip(masks, targets)]
        metric = self.accelerator.gather(torch.tensor(rollouts.ious, device=self.accelerator.device)).mean().item()
        self._metrics[mode]["iou/mean"].append(metric)
        # `iou` is the IoU reward's column; `seg_token_id` lets the format reward check the real `[SEG]` token.
        seg = base.seg_token_id
        inputs = [{**row, "iou": iou, "seg_token_id": seg} for row, iou in zip(inputs, rollouts.ious)]
        return super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)

    # ------------------------------------------------------------------------------------------ loss
    def _get_per_token_logps_and_entropies(
        self, model, input_ids, attention_mask, logits_to_keep, batch_size=None, **kwargs
    ):
        if not isinstance(model, ModelWithInputs):  # TRL's old/reference forwards: all rollouts, in order
            rollouts = self._rollouts[self._mode()]
            model = ModelWithInputs(model, rollouts.model_inputs(range(len(rollouts))))
        return super()._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, logits_to_keep, batch_size=input_ids.size(0), **kwargs
        )

    def _compute_loss(self, model, inputs):
        mode = self._mode()
        rollouts = self._rollouts[mode]
        # TRL buffers the generated batch and passes its slices again (num_iterations > 1, steps_per_generation > 1):
        # read the rollout indices from a copy, never by popping them from the buffer.
        inputs = dict(inputs)
        indices = inputs.pop("rollout_index").tolist()
        with_inputs = ModelWithInputs(model, rollouts.model_inputs(indices))
        with backbone_hidden_state(model) as captured:
            loss = super()._compute_loss(with_inputs, inputs)
        if not self.args.trains_masks:
            return loss
        base = unwrap_aurora_model(model)
        input_ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        attention_mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        # A rollout without `[SEG]` has no `[SEG]` state in this forward; its masks at inference come from an appended
        # `It is [SEG].`, whose state generation kept (detached): the mask loss trains the projector and the decoder
        # on it, rather than on the last token's state, which inference never decodes.
        fallback = rollouts.seg_states[torch.tensor(indices, device=rollouts.seg_states.device)]
        seg, found = base.seg_embeddings(captured["hidden"], input_ids, attention_mask, fallback_states=fallback)
        masks, targets = rollouts.masks(base, seg, indices)
        bce, dice = clip_mask_losses(masks, targets)
        mask_loss = self.args.mask_loss(bce, dice)
        # TRL's policy loss is already scaled for gradient accumulation; this per-micro-batch mean is not.
        loss = loss + mask_loss / self.current_gradient_accumulation_steps
        self._metrics[mode]["mask/bce"].append(self.accelerator.gather(bce.detach()).mean().item())
        self._metrics[mode]["mask/dice"].append(self.accelerator.gather(dice.detach()).mean().item())
        self._metrics[mode]["mask/seg_emitted"].append(self.accelerator.gather(found.float()).mean().item())
        return loss

    # ------------------------------------------------------------------------------------------ logging
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # TRL's completions table holds each prompt and completion as a list of messages whose content blocks differ
        # in their keys; W&B refuses that column ("Data row contained incompatible types"). Written as text, they go
        # to every backend and to the parquet files under output_dir/completions alike.
        if self.accelerator.is_main_process and self.log_completions:
            prompts = [p if isinstance(p, str) else conversation_text(p) for p in self._logs["prompt"]]
            completions = [conversation_text(c) for c in self._logs["completion"]]
            for key, texts in (("prompt", prompts), ("completion", completions)):
                self._logs[key].clear()  # the same bounded deque TRL appends the next rollouts to
                self._logs[key].extend(texts)
        super().log(logs, start_time)
